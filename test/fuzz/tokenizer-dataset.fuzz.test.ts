/**
 * Fuzzing the tokenizer files and calibration datasets: mutated tokenizer.json / tokenizer_config.json
 * (chat templates included: endless loops, huge repeats, recursion through macros and namespaces, huge
 * strings) and mutated JSONL (text / messages), JSON and txt datasets. Every case must end in a valid result
 * or a TokenizerError / DatasetError naming the file — never an untyped exception, a hang or unbounded
 * memory. Seeds are printed on failure (rng(seed) of test/helpers/random.ts replays a case).
 */
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from '../helpers/random';
import { mutateJsonValue, mutateText, pick, runFuzz, type Random } from '../helpers/mutate';
import { tempDir } from '../helpers/paths';
import { tinyByteTokenizerJson } from '../helpers/tinyTokenizer';
import { ModelTokenizer, TokenizerError } from '../../src/core/runtime/tokenizer';
import { DatasetError, loadCalibrationDataset } from '../../src/core/runtime/dataset';

const TEMPLATE = "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | trim }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

/** Template pieces that stress the interpreter; a mutation splices one into the template. */
const HOSTILE_PIECES = [
  "{% for i in range(100000000) %}{{ 'xxxxxxxxxx' }}{% endfor %}",
  '{% for a in range(3000) %}{% for b in range(3000) %}.{% endfor %}{% endfor %}',
  '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
  '{% macro g(n) %}{% if n > 0 %}{{ g(n - 1) }}{{ g(n - 1) }}{% endif %}{% endmacro %}{{ g(30) }}',
  "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
  '{% set ns = namespace(l=[0]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}',
  "{{ messages[0]['content'].replace('', 'yyyyyyyyyyyyyyyy' * 1) }}",
  "{% set ns = namespace(s='x') %}{% for i in range(22) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s.replace('x', ns.s) }}",
  "{{ 'a\\nb' | indent(2000000000) }}",
  '{{ messages | tojson(indent=1000000000) }}',
  '{{ raise_exception("refused") }}',
  '{% for m in messages %}{{ m.content',
  '{{ ' + '('.repeat(5000) + '1' + ')'.repeat(5000) + ' }}',
  '{{ ' + '['.repeat(3000) + ']'.repeat(3000) + ' }}',
  "{{ '" + 'z'.repeat(200_000) + "' }}",
  '{% for x in messages %}{% for y in messages %}{% for z in range(100000) %}{% endfor %}{% endfor %}{% endfor %}',
];

function tokenizerConfigCase(random: Random, index: number): Uint8Array {
  const config: Record<string, unknown> = { bos_token: '<s>', eos_token: '</s>', add_bos_token: true, chat_template: TEMPLATE };
  const roll = random();
  if (roll < 0.35) {
    const at = Math.floor(random() * (TEMPLATE.length + 1));
    config.chat_template = TEMPLATE.slice(0, at) + pick(HOSTILE_PIECES, random) + TEMPLATE.slice(at);
    return new Uint8Array(Buffer.from(JSON.stringify(config)));
  }
  if (roll < 0.55) return new Uint8Array(Buffer.from(JSON.stringify(mutateJsonValue(config, random))));
  return mutateText(JSON.stringify(config, null, 2), random, index).bytes;
}

function tokenizerJsonCase(random: Random, index: number): Uint8Array {
  const json = tinyByteTokenizerJson({ bosPostProcessor: random() < 0.5 });
  if (random() < 0.5) return new Uint8Array(Buffer.from(JSON.stringify(mutateJsonValue(json, random))));
  return mutateText(JSON.stringify(json), random, index).bytes;
}

const MESSAGES = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'What is 4-bit quantization? ёжик 🙂' },
  { role: 'assistant', content: 'Fewer bits per weight.' },
];

function datasetCase(random: Random, index: number): { name: string; bytes: Uint8Array } {
  const format = index % 4;
  if (format === 0) {
    const lines = Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `Sample ${i}: the quick brown fox jumps over the lazy dog. ёжик 🙂` }));
    return { name: 'data.jsonl', bytes: mutateText(lines.join('\n'), random, index).bytes };
  }
  if (format === 1) {
    const lines = Array.from({ length: 4 }, () => JSON.stringify({ messages: MESSAGES }));
    const text = random() < 0.4 ? lines.map((l) => JSON.stringify(mutateJsonValue(JSON.parse(l), random))).join('\n') : mutateText(lines.join('\n'), random, index);
    return { name: 'chat.jsonl', bytes: typeof text === 'string' ? new Uint8Array(Buffer.from(text)) : text.bytes };
  }
  if (format === 2) {
    const records = [{ text: 'one sample of text' }, { messages: MESSAGES }, { text: 'another' }];
    const value = random() < 0.4 ? JSON.stringify(mutateJsonValue(records, random)) : undefined;
    return { name: 'data.json', bytes: value !== undefined ? new Uint8Array(Buffer.from(value)) : mutateText(JSON.stringify(records, null, 1), random, index).bytes };
  }
  const text = 'First paragraph of calibration text.\n\nSecond paragraph, with ёжик and 🙂.\n\nThird one.\n';
  return { name: 'data.txt', bytes: mutateText(text, random, index).bytes };
}

describe('fuzz: mutated tokenizer files and calibration datasets', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('quantlens-fuzz-tok-')));
  after(() => tmp.cleanup());

  it('300 mutated tokenizer.json / tokenizer_config.json folders load and render chat, or end in a TokenizerError naming the file', async () => {
    const folder = join(tmp.path, 'tok');
    mkdirSync(folder, { recursive: true });
    const good = new Uint8Array(Buffer.from(JSON.stringify(tinyByteTokenizerJson())));
    const outcomes = await runFuzz({
      cases: 300,
      seedBase: 40_000,
      caseMs: 10_000,
      maxRssGrowth: 512 * 1024 * 1024,
      run: async (i, seed) => {
        const random = rng(seed);
        const mutateTokenizer = i % 3 === 0;
        writeFileSync(join(folder, 'tokenizer.json'), mutateTokenizer ? tokenizerJsonCase(random, i) : good);
        writeFileSync(join(folder, 'tokenizer_config.json'), mutateTokenizer ? Buffer.from(JSON.stringify({ bos_token: '<s>', eos_token: '</s>', chat_template: TEMPLATE })) : tokenizerConfigCase(random, i));
        let stage = 'load';
        try {
          const tokenizer = await ModelTokenizer.load(folder);
          stage = 'chat';
          const ids = tokenizer.encodeChat(MESSAGES, { addGenerationPrompt: true, fallback: 'plain' });
          assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tokenizer.vocabSize));
          assert.equal(typeof tokenizer.decode(ids), 'string');
          return 'ok';
        } catch (error) {
          assert.ok(error instanceof TokenizerError, `${stage}: untyped ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
          assert.ok(error.message.startsWith(folder), `the message names the file: ${error.message.slice(0, 300)}`);
          return `${stage}:${error.code}`;
        }
      },
    });
    assert.ok((outcomes['ok'] ?? 0) > 30, JSON.stringify(outcomes));
    assert.ok((outcomes['chat:ChatTemplateBudgetExceeded'] ?? 0) > 5, JSON.stringify(outcomes));
  });

  it('240 mutated calibration datasets (JSONL text / messages, JSON, txt) tokenize or end in a DatasetError naming the file', async () => {
    const folder = join(tmp.path, 'data');
    mkdirSync(folder, { recursive: true });
    const tokFolder = join(tmp.path, 'data-tok');
    mkdirSync(tokFolder, { recursive: true });
    writeFileSync(join(tokFolder, 'tokenizer.json'), JSON.stringify(tinyByteTokenizerJson({ bosPostProcessor: true })));
    writeFileSync(join(tokFolder, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', chat_template: TEMPLATE }));
    const tokenizer = await ModelTokenizer.load(tokFolder);
    const outcomes = await runFuzz({
      cases: 240,
      seedBase: 50_000,
      caseMs: 10_000,
      maxRssGrowth: 512 * 1024 * 1024,
      run: async (i, seed) => {
        const random = rng(seed);
        const { name, bytes } = datasetCase(random, i);
        const path = join(folder, name);
        writeFileSync(path, bytes);
        try {
          const dataset = await loadCalibrationDataset(path, tokenizer, { samples: 4, seqLen: 16, seed: 1 });
          assert.ok(dataset.samples.length >= 1 && dataset.samples.length <= 4);
          for (const sample of dataset.samples) assert.ok(sample.tokens >= 1 && sample.tokens <= 16);
          return 'ok';
        } catch (error) {
          assert.ok(error instanceof DatasetError, `untyped ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
          assert.ok(error.message.startsWith(path), `the message names the file: ${error.message.slice(0, 300)}`);
          return 'error';
        }
      },
    });
    assert.ok((outcomes['ok'] ?? 0) > 30 && (outcomes['error'] ?? 0) > 30, JSON.stringify(outcomes));
  });
});
