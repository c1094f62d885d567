/**
 * Bench section `webgpu`: the shipped example on onnxruntime's WebGPU provider, on the Vulkan adapter the loader
 * finds (SwiftShader's when VK_ICD_FILENAMES is unset and Debian's chromium has it, as in the tests; a GPU
 * machine's own driver otherwise). Rows say why when there is no adapter.
 * - prefill of 128 tokens (fp32 graph, logits of every position): the WebGPU graph (plain-op attention,
 *   llama/attention.ts) in one run, against the old path — a GroupQueryAttention graph fed in runs of
 *   WEBGPU_GQA_MAX_TOKENS_PER_RUN — and against that graph in one run (wrong logits on WebGPU: the fused
 *   kernel's speed, what plain ops cost against it);
 * - the calibrate job (absmax taps): 128-token windows in one pass against the 16-token windows WebGPU was
 *   limited to before, the same number of tokens.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { OnnxCausalLM } from '../../src/core/runtime/causalLM';
import { buildDecoderGraph } from '../../src/core/runtime/graphCache';
import { WEBGPU_GQA_MAX_TOKENS_PER_RUN, graphOptionsFor, requireDevice } from '../../src/core/runtime/device';
import { runCalibrationJob } from '../../src/core/jobs/calibrate';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { SWIFTSHADER_ICD } from '../helpers/swiftShader';
import { BenchRow, interleavedMedians, ms } from './harness';

const root = join(__dirname, '..', '..');
const PREFILL = 128;

export async function webgpuSection(rows: BenchRow[]): Promise<void> {
  const example = join(root, 'examples', 'tiny-llama');
  if (!existsSync(join(example, 'config.json'))) throw new Error(`${example} is missing: run \`npm run example\` first`);
  const scratch = mkdtempSync(join(tmpdir(), 'quantlens-webgpu-bench-'));
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    process.env.XDG_RUNTIME_DIR ??= scratch;
  }
  try {
    let adapter: string;
    try {
      adapter = (await requireDevice('webgpu')).reason;
    } catch (error) {
      rows.push({ section: 'webgpu', what: 'WebGPU', result: `not run: ${(error as Error).message}`, baseline: '-', ratio: '-', target: '-' });
      return;
    }
    console.log(`webgpu: ${adapter}`);
    const cacheDir = join(scratch, 'graphs');
    const plain = await buildDecoderGraph(example, cacheDir, graphOptionsFor('webgpu'));
    const gqa = await buildDecoderGraph(example, cacheDir, { ...graphOptionsFor('webgpu'), attention: 'gqa' });
    const providers = { executionProviders: ['webgpu'] };
    const onePass = await OnnxCausalLM.load(plain.modelPath, providers);
    const chunked = await OnnxCausalLM.load(gqa.modelPath, { ...providers, maxTokensPerRun: WEBGPU_GQA_MAX_TOKENS_PER_RUN });
    const fused = await OnnxCausalLM.load(gqa.modelPath, providers);
    try {
      const vocab = onePass.vocabSize;
      const ids = Array.from({ length: PREFILL }, (_, i) => (i * 7919 + 13) % vocab);
      const prefill = (model: OnnxCausalLM) => async () => void (await model.forward(ids, null));
      // One timed run each after a warm-up: on SwiftShader a run of the example costs seconds whatever its length.
      const [newTime, oldTime] = await interleavedMedians(1, prefill(onePass), prefill(chunked));
      rows.push({
        section: 'webgpu',
        what: `example fp32: prefill of ${PREFILL} tokens, plain-op attention in one run`,
        result: ms(newTime),
        baseline: `${ms(oldTime)} GroupQueryAttention in runs of ${WEBGPU_GQA_MAX_TOKENS_PER_RUN} (the old path)`,
        ratio: `${(oldTime / newTime).toFixed(2)}× faster`,
        target: '-',
      });
      const [plainTime, fusedTime] = await interleavedMedians(1, prefill(onePass), prefill(fused));
      rows.push({
        section: 'webgpu',
        what: `example fp32: prefill of ${PREFILL} tokens, plain-op attention in one run`,
        result: ms(plainTime),
        baseline: `${ms(fusedTime)} GroupQueryAttention in one run (wrong logits on WebGPU)`,
        ratio: `${(plainTime / fusedTime).toFixed(2)}× the fused kernel's time`,
        target: '-',
      });
    } finally {
      await Promise.all([onePass.release(), chunked.release(), fused.release()]);
    }
    // Calibration: the same 256 tokens as 2 windows of 128 (one pass each) and as 16 windows of 16.
    const calibrate = async (samples: number, seqLen: number) =>
      runCalibrationJob({ model: example, out: join(scratch, `stats-${seqLen}.safetensors`), dataset: defaultCalibrationDataset(), samples, seqLen, hessians: false, graphCacheDir: scratch, device: 'webgpu' });
    const short = await calibrate(16, 16);
    const long = await calibrate(2, 128);
    rows.push({
      section: 'webgpu',
      what: `example calibrate job (absmax), ${long.tokens} tokens in 2 × 128-token windows, one pass each`,
      result: `${long.tokensPerSecond.toFixed(0)} tokens/s (${long.seconds.toFixed(1)} s)`,
      baseline: `${short.tokensPerSecond.toFixed(0)} tokens/s (${short.seconds.toFixed(1)} s): ${short.tokens} tokens in 16 × 16-token windows, the old limit`,
      ratio: `${(long.tokensPerSecond / short.tokensPerSecond).toFixed(2)}× the tokens/s`,
      target: '-',
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
