/**
 * Calibration slices for the GPTQ quality check of docs/performance.md §6: disjoint sets of training windows
 * of the `wikitext-llama` example (never its held-out windows, on which perplexity is then measured), each
 * written twice — as token ids for the PyTorch reference (scripts/bench/gptq_sequential_torch.py --ids) and as
 * a JSONL of text records for `quantlens quantize --calib` — plus the GPTQ W4A16 group-64 recipe both run.
 *
 *   node out/scripts/gptq-slices.js OUT_DIR [--slices 4] [--samples 16] [--seed 1]
 *
 * The windows are the ones the model was trained on (loadCalibrationDataset, shuffle off, training.json's
 * train_windows), shuffled once with the seed and cut into consecutive slices. A record's text is its window
 * decoded without BOS; QuantLens encodes it again with BOS, which gives the same ids except where a window
 * starts inside a word (the re-encoded text gets SentencePiece's "▁" there): the script reports how many
 * windows come back identical.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { defaultCalibrationDataset, loadCalibrationDataset } from '../src/core/runtime/dataset';
import { SeededRandom } from '../src/core/runtime/sampling';
import { ModelTokenizer } from '../src/core/runtime/tokenizer';

/** GPTQ W4A16, groups of 64, act-order static, dampening 0.01, lm_head kept: the "INT4 g64". */
const RECIPE = `quant_stage:
  quant_modifiers:
    GPTQModifier:
      ignore: [lm_head]
      dampening_frac: 0.01
      block_size: 128
      config_groups:
        group_0:
          targets: [Linear]
          weights:
            num_bits: 4
            type: int
            symmetric: true
            strategy: group
            group_size: 64
            actorder: static
`;

interface TrainingSplit {
  readonly text_sha256: string;
  readonly windows: number;
  readonly seq_len: number;
  readonly train_windows: readonly [number, number];
}

async function main(args: string[]): Promise<void> {
  const take = (flag: string, fallback: number): number => {
    const at = args.indexOf(flag);
    if (at < 0) return fallback;
    const value = Number(args.splice(at, 2)[1]);
    if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`${flag} must be a positive integer`);
    return value;
  };
  const slices = take('--slices', 4);
  const samples = take('--samples', 16);
  const seed = take('--seed', 1);
  const out = args[0];
  if (!out) throw new Error('usage: gptq-slices OUT_DIR [--slices 4] [--samples 16] [--seed 1]');
  const example = 'examples/wikitext-llama';
  // training.json's split (wikitext-perplexity.ts checks it in full; not imported: bundling that script here
  // would run its command line too).
  const d = (JSON.parse(await fs.readFile(join(example, 'training.json'), 'utf8')) as { data: TrainingSplit }).data;
  const tokenizer = await ModelTokenizer.load(example);
  const dataset = await loadCalibrationDataset(defaultCalibrationDataset(), tokenizer, { samples: d.windows + 1, seqLen: d.seq_len, shuffle: false });
  if (dataset.info.sha256 !== d.text_sha256 || dataset.samples.length !== d.windows) throw new Error('the shipped text does not give the windows the example was trained on');
  const training = dataset.samples.slice(d.train_windows[0], d.train_windows[1]).map((s) => Array.from(s.inputIds));
  if (slices * samples > training.length) throw new Error(`${slices} slices of ${samples} need ${slices * samples} windows; there are ${training.length} training windows`);
  // Fisher–Yates with the seeded generator.
  const order = training.map((_, i) => i);
  const random = new SeededRandom(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = random.nextBelow(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  await fs.mkdir(out, { recursive: true });
  await fs.writeFile(join(out, 'recipe.yaml'), RECIPE);
  let identical = 0;
  for (let k = 0; k < slices; k++) {
    const windows = order.slice(k * samples, (k + 1) * samples).map((w) => training[w]!);
    const texts = windows.map((ids) => tokenizer.decode(ids.slice(1), { skipSpecialTokens: true }));
    for (const [i, text] of texts.entries()) {
      const again = tokenizer.encode(text).slice(0, d.seq_len);
      if (again.length === windows[i]!.length && again.every((id, j) => id === windows[i]![j])) identical++;
    }
    await fs.writeFile(join(out, `slice-${k + 1}.ids.json`), JSON.stringify({ samples: windows }));
    await fs.writeFile(join(out, `slice-${k + 1}.jsonl`), texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
  }
  process.stdout.write(`${slices} slices of ${samples} training windows of ${d.seq_len} tokens in ${out} (seed ${seed}); ${identical} of ${slices * samples} windows re-encode to the same ids\n`);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`gptq-slices: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
