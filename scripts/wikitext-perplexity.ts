/**
 * Held-out perplexity of the `wikitext-llama` example (or of a quantized copy of it) with QuantLens's own
 * runtime, on exactly the windows scripts/train-tiny-llama.py held out and measured in PyTorch:
 *
 *   node out/scripts/wikitext-perplexity.js MODEL_DIR [--record examples/wikitext-llama] [--slice] [--device cpu]
 *
 * MODEL_DIR is the example or a quantized copy; --record names the folder whose training.json defines the
 * split and holds the PyTorch figures (default: MODEL_DIR when it has one, else examples/wikitext-llama).
 * Without --slice the whole held-out part is re-tokenized from media/calibration/wikitext-2-raw-test.txt with
 * the model's tokenizer (checked against the recorded window count and the recorded test-slice ids) and
 * scored; with --slice only the recorded test-slice windows are (what the unit test does, in seconds).
 * Each window is scored on its tokens 1..L−1 given everything before them, the figure the training script
 * records.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { perplexity } from '../src/core/chat/generation';
import type { CausalLM } from '../src/core/runtime/causalLM';
import { loadChatModel } from '../src/core/chat/modelPair';
import { defaultCalibrationDataset, loadCalibrationDataset } from '../src/core/runtime/dataset';
import type { DevicePreference } from '../src/core/runtime/device';
import type { ModelTokenizer } from '../src/core/runtime/tokenizer';

export interface WindowFigures {
  readonly windows: number;
  readonly tokens: number;
  /** Mean next-token negative log-likelihood, nats. */
  readonly loss: number;
  readonly perplexity: number;
}

/** The parts of examples/wikitext-llama/training.json this script and the tests rely on. */
export interface TrainingRecord {
  readonly data: {
    readonly text_sha256: string;
    readonly windows: number;
    readonly seq_len: number;
    readonly train_windows: readonly [number, number];
    readonly held_out_windows: readonly [number, number];
    readonly test_slice_windows: readonly [number, number];
    readonly test_slice_ids: readonly (readonly number[])[];
  };
  readonly figures: { readonly train: WindowFigures; readonly held_out: WindowFigures; readonly held_out_test_slice: WindowFigures };
}

function fail(file: string, detail: string): never {
  throw new Error(`${file}: ${detail}`);
}

/** Reads and checks training.json (the split must be consistent: held-out windows after every training window). */
export async function readTrainingRecord(folder: string): Promise<TrainingRecord> {
  const file = join(folder, 'training.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (error) {
    fail(file, `cannot be read as JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const record = raw as TrainingRecord;
  const d = record?.data;
  const range = (r: unknown): r is [number, number] => Array.isArray(r) && r.length === 2 && r.every(Number.isSafeInteger) && (r[0] as number) < (r[1] as number);
  if (!d || !Number.isSafeInteger(d.windows) || !Number.isSafeInteger(d.seq_len) || !range(d.train_windows) || !range(d.held_out_windows) || !range(d.test_slice_windows)) {
    fail(file, 'data must give windows, seq_len and the train_windows / held_out_windows / test_slice_windows ranges');
  }
  if (d.train_windows[1] > d.held_out_windows[0] || d.held_out_windows[1] > d.windows) fail(file, `the held-out windows ${d.held_out_windows.join('–')} overlap the training windows ${d.train_windows.join('–')} or pass the ${d.windows} windows`);
  if (d.test_slice_windows[0] < d.held_out_windows[0] || d.test_slice_windows[1] > d.held_out_windows[1]) fail(file, 'the test slice is not inside the held-out windows');
  const slice = d.test_slice_windows[1] - d.test_slice_windows[0];
  if (!Array.isArray(d.test_slice_ids) || d.test_slice_ids.length !== slice || !d.test_slice_ids.every((w) => Array.isArray(w) && w.length === d.seq_len && w.every(Number.isSafeInteger))) {
    fail(file, `test_slice_ids must hold ${slice} windows of ${d.seq_len} token ids`);
  }
  for (const key of ['train', 'held_out', 'held_out_test_slice'] as const) {
    const f = record.figures?.[key];
    if (!f || !(f.loss > 0) || !(f.perplexity > 1)) fail(file, `figures.${key} must give a loss and a perplexity`);
  }
  return record;
}

/** Perplexity over windows, each scored from its own start (tokens 1..L−1), summed over all windows. */
export async function windowsPerplexity(model: CausalLM, windows: readonly (readonly number[])[]): Promise<WindowFigures> {
  let nll = 0;
  let tokens = 0;
  for (const ids of windows) {
    const r = await perplexity(model, ids);
    nll += r.meanNll * r.tokens;
    tokens += r.tokens;
  }
  return { windows: windows.length, tokens, loss: nll / tokens, perplexity: Math.exp(nll / tokens) };
}

/** The held-out windows re-tokenized from the shipped text, checked against the record. */
export async function heldOutWindows(record: TrainingRecord, tokenizer: ModelTokenizer): Promise<number[][]> {
  const d = record.data;
  const dataset = await loadCalibrationDataset(defaultCalibrationDataset(), tokenizer, { samples: d.windows + 1, seqLen: d.seq_len, shuffle: false });
  if (dataset.info.sha256 !== d.text_sha256) throw new Error(`the shipped text's sha256 is ${dataset.info.sha256}; the model was trained on ${d.text_sha256}`);
  if (dataset.samples.length !== d.windows) throw new Error(`the text makes ${dataset.samples.length} windows of ${d.seq_len} with this tokenizer; training had ${d.windows}: not the same tokens`);
  const windows = dataset.samples.slice(d.held_out_windows[0], d.held_out_windows[1]).map((s) => Array.from(s.inputIds));
  const sliceStart = d.test_slice_windows[0] - d.held_out_windows[0];
  d.test_slice_ids.forEach((ids, i) => {
    if (windows[sliceStart + i]!.some((id, j) => id !== ids[j])) throw new Error(`held-out window ${d.test_slice_windows[0] + i} differs from the recorded test-slice ids: not the same tokens`);
  });
  return windows;
}

async function main(args: string[]): Promise<void> {
  const take = (flag: string): string | undefined => {
    const at = args.indexOf(flag);
    return at >= 0 ? args.splice(at, 2)[1] : undefined;
  };
  const sliceOnly = args.includes('--slice');
  if (sliceOnly) args.splice(args.indexOf('--slice'), 1);
  const device = (take('--device') ?? 'cpu') as DevicePreference;
  const model = args[0];
  if (!model) throw new Error('usage: wikitext-perplexity MODEL_DIR [--record FOLDER] [--slice] [--device cpu|cuda|webgpu|auto]');
  const recordFolder = take('--record') ?? (existsSync(join(model, 'training.json')) ? model : 'examples/wikitext-llama');
  const record = await readTrainingRecord(recordFolder);
  const loaded = await loadChatModel(model, { cacheDir: '.cache/graphs', device, onProgress: (line) => process.stderr.write(`${line}\n`) });
  try {
    const windows = sliceOnly ? record.data.test_slice_ids : await heldOutWindows(record, loaded.tokenizer);
    const started = Date.now();
    const ours = await windowsPerplexity(loaded.model, windows);
    const torch = sliceOnly ? record.figures.held_out_test_slice : record.figures.held_out;
    process.stdout.write(
      `${model}: ${sliceOnly ? 'test slice' : 'held-out'} (${ours.windows} windows, ${ours.tokens} tokens): loss ${ours.loss.toFixed(6)}, perplexity ${ours.perplexity.toFixed(4)} ` +
        `in ${((Date.now() - started) / 1000).toFixed(1)} s; PyTorch (float32 over the bf16 weights): loss ${torch.loss.toFixed(6)}, perplexity ${torch.perplexity.toFixed(4)}; ` +
        `relative difference ${((ours.perplexity / torch.perplexity - 1) * 100).toFixed(4)} %\n`,
    );
  } finally {
    await loaded.model.release();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`wikitext-perplexity: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
