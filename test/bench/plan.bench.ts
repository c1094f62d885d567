/**
 * Cost of the plan's sensitivity measurement (src/core/plan/sensitivity.ts) relative to one calibration pass
 * (the calibrate job with Hessians) over the same tokens, in the same run, on TinyLlama-1.1B's block shape
 * (random bf16 weights; the example's tokenizer and its 128,256-token vocabulary, 4× TinyLlama's, so the KL
 * head weighs more than it would) with fewer blocks so that it finishes in
 * minutes on a laptop CPU. The measurement is about 2 + 7 · C · (L + 1) / 2 calibration passes (C candidates
 * that quantize, L blocks): the row gives the measured ratio beside that count, and what the count is for the
 * full 22 blocks.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ensureSyntheticLlama } from './syntheticLlama';
import { TINYLLAMA_1_1B } from './llamaShapes';
import { runCalibrationJob } from '../../src/core/jobs/calibrate';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { openDecoderModel } from '../../src/core/runtime/llama/graph';
import { measureSensitivity } from '../../src/core/plan/sensitivity';
import { parseCandidates } from '../../src/core/plan/candidates';
import { BenchRow } from './harness';

const root = join(__dirname, '..', '..');
const dataDir = join(root, 'bench-data');
const example = join(root, 'examples', 'tiny-llama');
const BLOCKS = 2;

async function ensureModel(): Promise<string> {
  const folder = join(dataDir, `plan-tinyllama-shape-${BLOCKS}-blocks`);
  if (existsSync(join(folder, 'config.json'))) return folder;
  const exampleConfig = JSON.parse(await fs.readFile(join(example, 'config.json'), 'utf8')) as Record<string, unknown>;
  const s = TINYLLAMA_1_1B;
  // The example's tokenizer (Llama-3.1 vocabulary) so the shipped text tokenizes; the blocks are TinyLlama's.
  await ensureSyntheticLlama(folder, { ...exampleConfig, hidden_size: s.hidden, intermediate_size: s.intermediate, num_hidden_layers: BLOCKS, num_attention_heads: s.heads, num_key_value_heads: s.kvHeads, head_dim: s.hidden / s.heads, vocab_size: exampleConfig.vocab_size as number });
  for (const file of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) await fs.copyFile(join(example, file), join(folder, file));
  return folder;
}

export async function planSection(rows: BenchRow[]): Promise<void> {
  const model = await ensureModel();
  const scratch = join(dataDir, 'plan-out');
  await fs.rm(scratch, { recursive: true, force: true });
  await fs.mkdir(scratch, { recursive: true });
  const samples = 2;
  const seqLen = 128;
  const calibration = await runCalibrationJob({ model, out: join(scratch, 'stats.safetensors'), dataset: defaultCalibrationDataset(), samples, seqLen, hessians: true, graphCacheDir: scratch });
  for (const list of ['w4a16']) {
    const candidates = parseCandidates(list);
    const decoder = await openDecoderModel(model);
    try {
      const report = await measureSensitivity({ model: decoder, dataset: defaultCalibrationDataset(), samples, seqLen, candidates, device: 'cpu', graphCacheDir: scratch });
      const C = candidates.length;
      const passes = (L: number) => 2 + (7 * C * (L + 1)) / 2;
      rows.push({
        section: 'plan',
        what: `sensitivity, TinyLlama block shape × ${BLOCKS} blocks, ${C} candidate${C === 1 ? '' : 's'} (${list}), ${report.tokens} tokens`,
        result: `${report.seconds.toFixed(1)} s (${report.blockRuns} block runs)`,
        baseline: `${calibration.seconds.toFixed(1)} s calibration pass with Hessians`,
        ratio: `${(report.seconds / calibration.seconds).toFixed(1)}× (count: ${passes(BLOCKS).toFixed(1)} passes)`,
        target: `≈ ${passes(TINYLLAMA_1_1B.layers).toFixed(0)} passes at 22 blocks`,
      });
    } finally {
      await decoder.checkpoint.close();
    }
  }
  await fs.rm(scratch, { recursive: true, force: true });
}
