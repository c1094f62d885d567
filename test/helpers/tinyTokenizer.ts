import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * GPT-2's reversible byte → printable-character table, written out from its definition: the printable
 * Latin-1 bytes map to themselves, the other 68 bytes to U+0100 upwards in byte order.
 */
export function byteLevelAlphabet(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) out[b] = printable(b) ? String.fromCodePoint(b) : String.fromCodePoint(next++);
  return out;
}

/**
 * A real byte-level BPE tokenizer.json with no merges: every UTF-8 byte is one token (ids 0–255), so
 * multi-byte characters always split over tokens. Specials <s> = 256 and </s> = 257. Loads in milliseconds,
 * for tests of loading rules and chat templates; the Llama-3.1 files cover real vocabulary behaviour.
 */
export function tinyByteTokenizerJson(options: { bosPostProcessor?: boolean } = {}): Record<string, unknown> {
  const alphabet = byteLevelAlphabet();
  const vocab: Record<string, number> = {};
  alphabet.forEach((ch, b) => (vocab[ch] = b));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(256, '<s>'), special(257, '</s>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: options.bosPostProcessor
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { '<s>': { id: '<s>', ids: [256], tokens: ['<s>'] } },
        }
      : null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

/** Writes a model folder with the tiny tokenizer and the given extra files (objects are written as JSON). */
export function writeTinyTokenizerFolder(folder: string, files: Record<string, unknown>, options: { bosPostProcessor?: boolean } = {}): string {
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'tokenizer.json'), JSON.stringify(tinyByteTokenizerJson(options)));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(folder, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return folder;
}
