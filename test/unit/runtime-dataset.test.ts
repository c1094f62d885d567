import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DatasetError,
  calibrationMetadata,
  defaultCalibrationDataset,
  loadCalibrationDataset,
  packBatch,
  toInt64,
  type CalibrationOptions,
} from '../../src/core/runtime/dataset';
import { ModelTokenizer, type ChatMessage } from '../../src/core/runtime/tokenizer';
import { repoRoot, tempDir } from '../helpers/paths';
import { writeTinyTokenizerFolder } from '../helpers/tinyTokenizer';

const llama31Files = () => join(repoRoot(), 'node_modules', '@lenml', 'tokenizer-llama3_1', 'models');
const BOS = 128000;
const EOT = 128009;

/** English paragraphs, generated deterministically (the words do not matter, the token counts do). */
function paragraphs(count: number, seed = 1): string {
  const words = ['the', 'model', 'weights', 'are', 'quantized', 'to', 'eight', 'bits', 'with', 'a', 'scale', 'per', 'channel', 'and', 'activations', 'calibrated', 'on', 'text', 'from', 'Wikipedia'];
  let s = seed;
  const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  const out: string[] = [];
  for (let p = 0; p < count; p++) {
    const n = 20 + Math.floor(next() * 40);
    const sentence = Array.from({ length: n }, () => words[Math.floor(next() * words.length)]!).join(' ');
    out.push(` = Section ${p} = \n\n ${sentence[0]!.toUpperCase()}${sentence.slice(1)} . 4.5 @-@ bit \n`);
  }
  return out.join('\n');
}

async function expectDatasetError(promise: Promise<unknown>, ...fragments: (string | RegExp)[]): Promise<DatasetError> {
  let caught: unknown;
  await assert.rejects(promise, (error: unknown) => {
    caught = error;
    assert.ok(error instanceof DatasetError, `expected a DatasetError, got ${String(error)}`);
    for (const f of fragments) {
      if (typeof f === 'string') assert.ok(error.message.includes(f), `"${error.message}" should mention "${f}"`);
      else assert.match(error.message, f);
    }
    return true;
  });
  return caught as DatasetError;
}

describe('runtime calibration datasets', function () {
  this.timeout(120_000);
  let llama: ModelTokenizer;
  let tmp: { path: string; cleanup: () => void };
  const file = (name: string, content: string | Buffer) => {
    const path = join(tmp.path, name);
    writeFileSync(path, content);
    return path;
  };
  const load = (path: string, options: Partial<CalibrationOptions> & Pick<CalibrationOptions, 'samples' | 'seqLen'>) => loadCalibrationDataset(path, llama, options);

  before(async () => {
    llama = await ModelTokenizer.load(llama31Files());
    tmp = tempDir('quantlens-dataset-');
  });
  after(() => tmp.cleanup());

  describe('plain text', () => {
    const text = paragraphs(60);
    // The token stream the windows must come from, computed here with the tokenizer directly.
    let stream: number[];
    before(() => {
      stream = llama.encode(text, { addSpecialTokens: false });
    });

    it('cuts the token stream into windows of exactly L tokens, each BOS + L−1 text tokens, in file order without shuffle', async () => {
      const L = 64;
      const body = L - 1;
      const windows = Math.floor(stream.length / body);
      assert.ok(windows >= 10, `the test text has ${stream.length} tokens`);
      const set = await load(file('a.txt', text), { samples: 10, seqLen: L, shuffle: false });
      assert.equal(set.samples.length, 10);
      set.samples.forEach((sample, w) => {
        assert.equal(sample.inputIds.length, L);
        assert.equal(sample.inputIds[0], BOS);
        assert.deepEqual(Array.from(sample.inputIds.subarray(1)), stream.slice(w * body, (w + 1) * body), `window ${w}`);
        assert.deepEqual(Array.from(sample.attentionMask), new Array<number>(L).fill(1));
        assert.equal(sample.tokens, L);
        assert.equal(sample.origin, `tokens ${w * body}–${(w + 1) * body - 1}`);
      });
      assert.deepEqual(set.warnings, []);
      assert.equal(set.info.format, 'text');
      assert.equal(set.info.samples, 10);
      assert.equal(set.info.seq_len, L);
      assert.equal(set.info.tokens, 10 * L);
      assert.equal(set.info.dataset, 'a.txt');
      assert.equal(set.info.sha256, createHash('sha256').update(text).digest('hex'));
      assert.deepEqual(calibrationMetadata(set.info), { dataset: 'a.txt', samples: 10, seq_len: L, tokens: 10 * L });
    });

    it('the seeded shuffle picks distinct windows, the same for the same seed, other ones for another seed', async () => {
      const path = file('b.txt', text);
      const L = 32;
      const body = L - 1;
      const windows = Math.floor(stream.length / body);
      const a = await load(path, { samples: 12, seqLen: L, seed: 7 });
      const b = await load(path, { samples: 12, seqLen: L, seed: 7 });
      const c = await load(path, { samples: 12, seqLen: L, seed: 8 });
      const starts = (set: typeof a) => set.samples.map((s) => Number(/^tokens (\d+)/.exec(s.origin)![1]));
      assert.deepEqual(starts(a), starts(b));
      assert.notDeepEqual(starts(a), starts(c));
      assert.equal(new Set(starts(a)).size, 12);
      for (const [i, start] of starts(a).entries()) {
        assert.equal(start % body, 0);
        assert.ok(start / body < windows);
        assert.deepEqual(Array.from(a.samples[i]!.inputIds.subarray(1)), stream.slice(start, start + body));
      }
      assert.equal(a.info.seed, 7);
      assert.equal(a.info.shuffle, true);
    });

    it('tokenizing in blocks gives the same tokens as the whole text; \\r\\n line endings read as \\n', async () => {
      const whole = await load(file('c.txt', text), { samples: 1000, seqLen: 48, shuffle: false, textBlockChars: 1 << 30 });
      const blocks = await load(file('d.txt', text), { samples: 1000, seqLen: 48, shuffle: false, textBlockChars: 300 });
      const crlf = await load(file('e.txt', text.replace(/\n/g, '\r\n')), { samples: 1000, seqLen: 48, shuffle: false, textBlockChars: 500 });
      assert.equal(whole.samples.length, Math.floor(stream.length / 47));
      assert.deepEqual(blocks.samples.map((s) => Array.from(s.inputIds)), whole.samples.map((s) => Array.from(s.inputIds)));
      assert.deepEqual(crlf.samples.map((s) => Array.from(s.inputIds)), whole.samples.map((s) => Array.from(s.inputIds)));
    });

    it('fewer windows than samples: all of them and a warning; fewer tokens than one sample: an error with the count', async () => {
      const path = file('short.txt', text);
      const set = await load(path, { samples: 500, seqLen: 256 });
      const windows = Math.floor(stream.length / 255);
      assert.equal(set.samples.length, windows);
      assert.deepEqual(set.warnings, [`short.txt has ${stream.length} tokens: ${windows} samples of 256 tokens, not the 500 asked for`]);
      const tiny = file('tiny.txt', 'Only a few words here.');
      const count = llama.encode('Only a few words here.', { addSpecialTokens: false }).length;
      await expectDatasetError(load(tiny, { samples: 4, seqLen: 64 }), tiny, `has ${count} tokens; one sample of 64 tokens needs 63 (plus BOS)`);
    });

    it('a tokenizer without BOS: windows are L text tokens', async () => {
      const dir = writeTinyTokenizerFolder(join(tmp.path, 'tiny-model'), {});
      const bytes = await ModelTokenizer.load(dir);
      const set = await loadCalibrationDataset(file('bytes.txt', 'abcdefghij'), bytes, { samples: 5, seqLen: 4, shuffle: false });
      assert.deepEqual(
        set.samples.map((s) => Array.from(s.inputIds)),
        [
          [97, 98, 99, 100],
          [101, 102, 103, 104],
        ],
      );
    });

    it('empty, blank, missing and non-UTF-8 files', async () => {
      await expectDatasetError(load(file('empty.txt', ''), { samples: 1, seqLen: 8 }), 'empty.txt', 'is empty');
      await expectDatasetError(load(file('blank.txt', ' \n\n\t\n'), { samples: 1, seqLen: 8 }), 'holds only whitespace');
      await expectDatasetError(load(join(tmp.path, 'nope.txt'), { samples: 1, seqLen: 8 }), 'nope.txt', 'does not exist');
      await expectDatasetError(load(file('latin1.txt', Buffer.from([0x61, 0x62, 0xe9, 0x20, 0x63])), { samples: 1, seqLen: 8 }), 'is not UTF-8 text (line 1, byte 2)');
      await expectDatasetError(load(file('big.txt', text), { samples: 1, seqLen: 8, maxFileBytes: 1000 }), 'calibration reads files up to');
      await assert.rejects(load(file('ok.txt', text), { samples: 0, seqLen: 8 }), /positive integer/);
      await assert.rejects(load(file('ok.txt', text), { samples: 1, seqLen: 1 }), /≥ 2/);
    });
  });

  describe('JSONL and JSON records', () => {
    const texts = Array.from({ length: 9 }, (_, i) => (i % 2 === 1 ? `Record ${i}: a short one, 4-bit.` : `Record ${i}: ${paragraphs(1 + (i % 3), i + 10)}`));
    const conversations: ChatMessage[][] = Array.from({ length: 6 }, (_, i) => [
      { role: 'system', content: 'You are a concise assistant.' },
      { role: 'user', content: `Question ${i}: what is ${i + 2}-bit quantization?` },
      { role: 'assistant', content: `Storing weights in ${i + 2} bits with a scale. ${paragraphs(1, i)}` },
    ]);

    it('"text" records: BOS + tokens, truncated to L, kept at their length, in file order', async () => {
      const path = file('t.jsonl', `${texts.map((t) => JSON.stringify({ text: t, id: 1 })).join('\n')}\n`);
      const L = 40;
      const set = await load(path, { samples: 5, seqLen: L, shuffle: false });
      assert.equal(set.info.format, 'jsonl-text');
      assert.equal(set.samples.length, 5);
      let tokens = 0;
      set.samples.forEach((sample, i) => {
        const expected = [BOS, ...llama.encode(texts[i]!, { addSpecialTokens: false })].slice(0, L);
        assert.deepEqual(Array.from(sample.inputIds), expected, `record ${i}`);
        assert.equal(sample.tokens, expected.length);
        assert.equal(sample.origin, `line ${i + 1}`);
        tokens += expected.length;
      });
      assert.ok(set.samples.some((s) => s.tokens < L) && set.samples.some((s) => s.tokens === L), 'both a truncated and a short record');
      assert.equal(set.info.tokens, tokens);
    });

    it('padding to L: pad with eos (the model has no pad_token), mask 0; packBatch and int64', async () => {
      const path = file('p.jsonl', texts.map((t) => JSON.stringify({ text: t })).join('\r\n'));
      const L = 200;
      const set = await load(path, { samples: 3, seqLen: L, shuffle: false, pad: true });
      for (const [i, sample] of set.samples.entries()) {
        const real = [BOS, ...llama.encode(texts[i]!, { addSpecialTokens: false })].slice(0, L);
        assert.ok(real.length < L);
        assert.equal(sample.inputIds.length, L);
        assert.deepEqual(Array.from(sample.inputIds), [...real, ...new Array<number>(L - real.length).fill(EOT)]);
        assert.deepEqual(Array.from(sample.attentionMask), [...new Array<number>(real.length).fill(1), ...new Array<number>(L - real.length).fill(0)]);
        assert.equal(sample.tokens, real.length);
      }
      const batch = packBatch(set.samples, llama.padTokenId);
      assert.deepEqual(batch.dims, [3, L]);
      assert.equal(batch.inputIds[L + 1], BigInt(set.samples[1]!.inputIds[1]!));
      assert.equal(batch.attentionMask[L - 1], 0n);
      assert.deepEqual(Array.from(toInt64(new Int32Array([BOS, 5]))), [128000n, 5n]);
      const unpadded = await load(path, { samples: 3, seqLen: L, shuffle: false });
      const packed = packBatch(unpadded.samples, EOT, L);
      assert.ok(packed.inputIds.every((v, i) => v === batch.inputIds[i]), 'packing short samples to L pads them the same way');
      assert.ok(packed.attentionMask.every((v, i) => v === batch.attentionMask[i]));
      const longest = Math.max(...unpadded.samples.map((s) => s.tokens));
      assert.deepEqual(packBatch(unpadded.samples, EOT).dims, [3, longest], 'without a width: the longest sample');
    });

    it('"messages" records: rendered with the chat template (no generation prompt), no extra BOS, truncated', async () => {
      const path = file('c.jsonl', conversations.map((messages) => JSON.stringify({ messages })).join('\n'));
      const L = 60;
      const set = await load(path, { samples: 4, seqLen: L, shuffle: false });
      assert.equal(set.info.format, 'jsonl-chat');
      set.samples.forEach((sample, i) => {
        const rendered = llama.applyChatTemplate(conversations[i]!);
        assert.ok(rendered.startsWith('<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a concise assistant.<|eot_id|>'));
        assert.ok(rendered.endsWith('<|eot_id|>'), 'the assistant turn is included, no generation prompt');
        const expected = llama.encode(rendered, { addSpecialTokens: false }).slice(0, L);
        assert.deepEqual(Array.from(sample.inputIds), expected);
        assert.equal(sample.inputIds.filter((id) => id === BOS).length, 1);
      });
    });

    it('a .json array of records (and of plain strings), with the shuffle choosing among them', async () => {
      const chat = await load(file('c.json', JSON.stringify(conversations.map((messages) => ({ messages })), null, 2)), { samples: 6, seqLen: 30 });
      assert.equal(chat.info.format, 'json-chat');
      assert.equal(chat.samples.length, 6);
      assert.deepEqual(new Set(chat.samples.map((s) => s.origin.replace(/ \(.*/, ''))), new Set(conversations.map((_, i) => `element ${i + 1}`)));
      const strings = await load(file('s.json', JSON.stringify(texts.slice(0, 3))), { samples: 2, seqLen: 10, shuffle: false });
      assert.equal(strings.info.format, 'json-text');
      assert.deepEqual(Array.from(strings.samples[1]!.inputIds), [BOS, ...llama.encode(texts[1]!, { addSpecialTokens: false })].slice(0, 10));
    });

    it('empty texts are skipped with a warning; fewer records than samples is a warning', async () => {
      const lines = [JSON.stringify({ text: '' }), JSON.stringify({ text: texts[0] }), '', JSON.stringify({ text: '   ' }), JSON.stringify({ text: texts[1] })];
      const set = await load(file('e.jsonl', lines.join('\n')), { samples: 5, seqLen: 16, shuffle: false });
      assert.deepEqual(set.samples.map((s) => s.origin), ['line 2', 'line 5']);
      assert.deepEqual(set.warnings, ['2 records with empty text skipped', 'e.jsonl has 2 usable records, not the 5 samples asked for']);
    });

    it('errors name the file and the line: bad JSON on line 17, missing text / messages on line 4', async () => {
      const lines = texts.concat(texts).map((t) => JSON.stringify({ text: t }));
      lines.splice(16, 0, '{"text": "unterminated');
      const bad = file('bad.jsonl', lines.join('\n'));
      const error = await expectDatasetError(load(bad, { samples: 2, seqLen: 16 }), `${bad}:17:`, 'bad JSON on line 17');
      assert.equal(error.line, 17);

      const missing = [0, 1, 2].map((i) => JSON.stringify({ text: texts[i] }));
      missing.splice(3, 0, JSON.stringify({ txt: 'typo' }));
      await expectDatasetError(load(file('m.jsonl', missing.join('\n')), { samples: 2, seqLen: 16 }), 'm.jsonl:4:', 'line 4: missing "text" (records hold plain "text", as line 1 does)');

      const chat = conversations.slice(0, 3).map((messages) => JSON.stringify({ messages }));
      chat.splice(3, 0, JSON.stringify({ text: 'not a chat' }));
      await expectDatasetError(load(file('mc.jsonl', chat.join('\n')), { samples: 2, seqLen: 16 }), 'mc.jsonl:4:', 'line 4: missing "messages"');

      await expectDatasetError(load(file('n.jsonl', `${JSON.stringify({ prompt: 'x' })}\n`), { samples: 1, seqLen: 16 }), 'line 1: a record needs a "text" string or a "messages" list; it has "prompt"');
      await expectDatasetError(load(file('nt.jsonl', `${JSON.stringify({ text: 'a' })}\n${JSON.stringify({ text: 5 })}`), { samples: 1, seqLen: 16 }), 'line 2: "text" must be a string, found number');
      await expectDatasetError(
        load(file('role.jsonl', JSON.stringify({ messages: [{ content: 'no role' }] })), { samples: 1, seqLen: 16 }),
        'line 1: message 1 needs a "role" string',
      );
      await expectDatasetError(load(file('blank.jsonl', '\n\n  \n'), { samples: 1, seqLen: 16 }), 'holds only whitespace');
    });

    it('JSON errors: position as line and column, elements by index and line, the wrong top-level type', async () => {
      const broken = file('broken.json', '[\n  {"text": "a"},\n  {"text": "b",}\n]');
      await expectDatasetError(load(broken, { samples: 1, seqLen: 8 }), /broken\.json:3: bad JSON on line 3, column \d+/);
      const missing = file('missing.json', '[\n  {"text": "a"},\n  {"text": "b, [still] a string"},\n\n  {"body": "c"}\n]');
      await expectDatasetError(load(missing, { samples: 1, seqLen: 8 }), 'missing.json:5:', 'element 3 (line 5): missing "text"');
      await expectDatasetError(load(file('obj.json', '{"messages": []}'), { samples: 1, seqLen: 8 }), 'must hold a JSON array of records', '.jsonl');
      await expectDatasetError(load(file('none.json', '[]'), { samples: 1, seqLen: 8 }), 'is an empty array');
    });

    it('chat records for a model without a chat template: the error says so; the plain fallback on request', async () => {
      const dir = writeTinyTokenizerFolder(join(tmp.path, 'base-model'), { 'tokenizer_config.json': { bos_token: '<s>', add_bos_token: true } });
      const base = await ModelTokenizer.load(dir);
      const path = file('chat-base.jsonl', JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }));
      await expectDatasetError(loadCalibrationDataset(path, base, { samples: 1, seqLen: 64 }), 'chat-base.jsonl:1:', 'the records are chat "messages", but', 'no chat template');
      const set = await loadCalibrationDataset(path, base, { samples: 1, seqLen: 64, chatFallback: 'plain' });
      assert.equal(base.decode(set.samples[0]!.inputIds), '<s>User: hi');
    });

    it('a template that refuses a conversation: the line of the record', async () => {
      const dir = writeTinyTokenizerFolder(join(tmp.path, 'strict-model'), {
        'tokenizer_config.json': { chat_template: "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tool turns') }}{% endif %}{{ m.content }}{% endfor %}" },
      });
      const strict = await ModelTokenizer.load(dir);
      const path = file('tool.jsonl', [{ messages: [{ role: 'user', content: 'a' }] }, { messages: [{ role: 'tool', content: 'b' }] }].map((r) => JSON.stringify(r)).join('\n'));
      await expectDatasetError(loadCalibrationDataset(path, strict, { samples: 2, seqLen: 8, shuffle: false }), 'tool.jsonl:2:', 'refused', 'no tool turns');
    });
  });

  it('the shipped default: WikiText-2 raw test with its attribution, cut into windows of the whole file', async () => {
    const path = defaultCalibrationDataset();
    assert.equal(path, join(repoRoot(), 'media', 'calibration', 'wikitext-2-raw-test.txt'));
    const bytes = readFileSync(path);
    const sha = createHash('sha256').update(bytes).digest('hex');
    assert.equal(sha, '71fa921e51ba607b4364d8787d05f4513b41b33732dd3504ff1af8952c6e7e77');
    const readme = readFileSync(join(repoRoot(), 'media', 'calibration', 'README.md'), 'utf8');
    for (const needed of ['CC BY-SA 3.0', 'Deathnetworks/rotorquant', 'Salesforce', sha]) assert.ok(readme.includes(needed), `README mentions ${needed}`);

    const progress: number[] = [];
    const set = await load(path, { samples: 100_000, seqLen: 512, onProgress: (f) => progress.push(f) });
    const tokens = llama.encode(bytes.toString('utf8').replace(/\r\n/g, '\n'), { addSpecialTokens: false }).length;
    const windows = Math.floor(tokens / 511);
    assert.equal(set.samples.length, windows);
    assert.ok(windows > 500 && windows < 600, `${windows} windows of 512 from ${tokens} tokens`);
    assert.match(set.warnings[0]!, new RegExp(`has ${tokens} tokens: ${windows} samples of 512 tokens`));
    assert.equal(set.info.sha256, sha);
    assert.equal(progress.at(-1), 1);
    assert.ok(progress.every((f, i) => i === 0 || f >= progress[i - 1]!), 'progress only grows');
    assert.throws(() => defaultCalibrationDataset(tmp.path), /was not found in any folder above/);
  });

  it('cancellation stops tokenizing', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stopped by the user'));
    await assert.rejects(load(defaultCalibrationDataset(), { samples: 8, seqLen: 128, signal: controller.signal }), /stopped by the user/);
  });
});
