/**
 * Bench section `runtime`: graph build time against a plain copy of the checkpoint's weight bytes, and
 * prefill / decode tokens per second on CPU (2 intra-op threads) through the decoder the chat runs
 * (runtime/causalLM.ts OnnxCausalLM: the same session settings and KV-cache handling) for the
 * shipped example and a TinyLlama-shaped synthetic model (hidden 2048, 22 layers, vocab 32000, random bf16
 * weights written to bench-data/ once), in fp32 and from INT4 (W4A16 RTN), INT8 (W8A8) and FP8 (dynamic)
 * checkpoints made by the quantize job, with ratios to the fp32 graph measured in the same run. FP8 runs
 * twice: as the CPU policy builds it (weights expanded to float32 at build) and with the stored F8E4M3FN
 * weights dequantized in every run (the CUDA form, and the CPU's before the expansion). `--runtime-fp8-only`
 * measures fp32 and the two FP8 graphs alone.
 */
import { promises as fs, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ensureSyntheticLlama } from './syntheticLlama';
import { runQuantizeJob, SchemeName } from '../../src/core/jobs/quantize';
import { buildDecoderGraph } from '../../src/core/runtime/graphCache';
import type { DecoderGraphOptions } from '../../src/core/runtime/llama/graph';
import { KVCache, OnnxCausalLM } from '../../src/core/runtime/causalLM';
import { graphOptionsFor } from '../../src/core/runtime/device';
import { BenchRow, ms } from './harness';

const root = join(__dirname, '..', '..');
const dataDir = join(root, 'bench-data');

const TINYLLAMA = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 2048,
  intermediate_size: 5632,
  num_hidden_layers: 22,
  num_attention_heads: 32,
  num_key_value_heads: 4,
  vocab_size: 32000,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 2048,
  tie_word_embeddings: false,
  hidden_act: 'silu',
  torch_dtype: 'bfloat16',
};

async function ensureQuantized(model: string, scheme: SchemeName): Promise<string> {
  const out = join(dataDir, `${basename(model)}-${scheme}`);
  if (!existsSync(join(out, 'config.json'))) await runQuantizeJob({ model, out, scheme });
  return out;
}

async function copyBaseline(folder: string, scratch: string): Promise<number> {
  const started = performance.now();
  for (const name of await fs.readdir(folder)) if (name.endsWith('.safetensors')) await fs.copyFile(join(folder, name), join(scratch, name));
  const elapsed = performance.now() - started;
  await fs.rm(scratch, { recursive: true, force: true });
  await fs.mkdir(scratch, { recursive: true });
  return elapsed;
}

interface Speed {
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

async function measure(model: OnnxCausalLM, prompt: number, steps: number): Promise<Speed> {
  const ids = Array.from({ length: prompt }, (_, i) => (i * 7919 + 13) % 1000);
  await model.forward(ids.slice(0, 4), null); // warm-up: first-run allocations
  let best = Infinity;
  let past: KVCache | undefined;
  for (let r = 0; r < 2; r++) {
    const t = performance.now();
    const out = await model.forward(ids, null, { lastOnly: true });
    best = Math.min(best, performance.now() - t);
    past = out.cache;
  }
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t = performance.now();
    const out = await model.forward([(s * 31 + 7) % 1000], past!, { lastOnly: true });
    times.push(performance.now() - t);
    past = out.cache;
  }
  times.sort((a, b) => a - b);
  return { prefillTokensPerSecond: (prompt / best) * 1000, decodeTokensPerSecond: 1000 / times[Math.floor(times.length / 2)]! };
}

export async function runtimeSection(rows: BenchRow[]): Promise<void> {
  const cache = join(dataDir, 'graph-cache');
  const scratch = join(dataDir, 'copy-scratch');
  await fs.mkdir(scratch, { recursive: true });
  const models: { label: string; folder: string; prompt: number; steps: number }[] = [];
  const fp8Only = process.argv.includes('--runtime-fp8-only');
  const example = join(root, 'examples', 'tiny-llama');
  if (existsSync(join(example, 'config.json'))) models.push({ label: 'example (tiny-llama, vocab 128256)', folder: example, prompt: 32, steps: 16 });
  if (!process.argv.includes('--runtime-example-only')) {
    const tinyllama = join(dataDir, 'tinyllama-synthetic');
    process.stderr.write('bench runtime: writing the TinyLlama-shaped checkpoint (once)…\n');
    await ensureSyntheticLlama(tinyllama, TINYLLAMA);
    models.push({ label: 'TinyLlama-shaped (2048×22, vocab 32000)', folder: tinyllama, prompt: 32, steps: 8 });
  }
  try {
    for (const m of models) {
      const variants: [string, string, DecoderGraphOptions][] = [['fp32', m.folder, {}]];
      const schemes = [['INT4 (W4A16 RTN)', 'w4a16-rtn'], ['INT8 (W8A8)', 'w8a8'], ['FP8 (dynamic)', 'fp8-dynamic']] as const;
      for (const [label, scheme] of schemes.filter(([, s]) => !fp8Only || s === 'fp8-dynamic')) {
        process.stderr.write(`bench runtime: ${m.label}: quantizing ${scheme} (once)…\n`);
        const folder = await ensureQuantized(m.folder, scheme);
        variants.push([label, folder, {}]);
        if (scheme === 'fp8-dynamic') variants.push([`${label}, DequantizeLinear per run`, folder, { fp8Weights: 'stored' }]);
      }
      let fp32: Speed | undefined;
      for (const [label, folder, graphOptions] of variants) {
        await fs.rm(cache, { recursive: true, force: true });
        const copy = await copyBaseline(folder, scratch);
        const started = performance.now();
        // The CPU's graph options as the chat builds them (device.ts), with the variant's override.
        const built = await buildDecoderGraph(folder, cache, { ...graphOptionsFor('cpu'), maxSequenceLength: 512, ...graphOptions });
        const build = performance.now() - started;
        rows.push({ section: 'runtime', what: `${m.label} ${label}: graph build`, result: ms(build), baseline: `${ms(copy)} copy of the weight files`, ratio: `${(build / copy).toFixed(2)}× the copy`, target: '—' });
        const model = await OnnxCausalLM.load(built.modelPath, { intraOpNumThreads: 2, maxPositions: built.info.maxSequenceLength });
        try {
          const speed = await measure(model, m.prompt, m.steps);
          fp32 ??= speed;
          const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}× fp32`;
          rows.push({ section: 'runtime', what: `${m.label} ${label}: prefill ${m.prompt} tokens`, result: `${speed.prefillTokensPerSecond.toFixed(1)} tok/s`, baseline: `${fp32.prefillTokensPerSecond.toFixed(1)} tok/s fp32`, ratio: ratio(speed.prefillTokensPerSecond, fp32.prefillTokensPerSecond), target: '—' });
          rows.push({
            section: 'runtime',
            what: `${m.label} ${label}: decode`,
            result: `${speed.decodeTokensPerSecond.toFixed(1)} tok/s`,
            baseline: `${fp32.decodeTokensPerSecond.toFixed(1)} tok/s fp32`,
            ratio: ratio(speed.decodeTokensPerSecond, fp32.decodeTokensPerSecond),
            target: !m.label.startsWith('TinyLlama') ? '—' : label.startsWith('INT4') ? 'INT4 ≥ 5× fp32' : label === 'FP8 (dynamic)' ? 'FP8 ≥ 1.0× fp32' : '—',
          });
        } finally {
          await model.release();
        }
      }
    }
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
    await fs.rm(cache, { recursive: true, force: true });
  }
}
