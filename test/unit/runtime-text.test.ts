import assert from 'node:assert/strict';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelTokenizer, StreamingDecoder, TokenizerError, strftime, type ChatMessage } from '../../src/core/runtime/tokenizer';
import { repoRoot, tempDir } from '../helpers/paths';
import { writeTinyTokenizerFolder } from '../helpers/tinyTokenizer';

const llama31Files = () => join(repoRoot(), 'node_modules', '@lenml', 'tokenizer-llama3_1', 'models');
const exampleModel = () => join(repoRoot(), 'examples', 'tiny-llama');

/** The Llama-3 prompt of docs/runtime.md §6, written out by hand. */
const EXPECTED_PROMPT =
  '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a concise assistant.<|eot_id|>' +
  '<|start_header_id|>user<|end_header_id|>\n\nWhat is 4-bit quantization?<|eot_id|>' +
  '<|start_header_id|>assistant<|end_header_id|>\n\n';
const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are a concise assistant.' },
  { role: 'user', content: 'What is 4-bit quantization?' },
];

const MIXED_TEXTS = [
  'Hello world',
  'Quantization: FP8 (E4M3), INT8 W8A8 and INT4 — 4× smaller.',
  'Emoji 🤗🚀 family 👨‍👩‍👧‍👦 flag 🇫🇷 skin 👍🏽, and a lone 🦙.',
  '中文：量子化は重みを小さくする。한국어 텍스트. 日本語のテキスト',
  'def rms_norm(x, w, eps=1e-6):\n\treturn x * w / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()  # ok?\n',
  'Arabic مرحبا بالعالم, Hindi नमस्ते, combining e\u0301 and \u00e9, math ∑∫√ ≤ ≥ ≠',
  '  leading and trailing spaces  \r\n\r\nwindows line endings\n\n\n',
  'x = a ? b : c; y = "don \' t" , z .',
];

function expectTokenizerError(fn: () => unknown, code: string, ...fragments: string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof TokenizerError, `expected a TokenizerError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const f of fragments) assert.ok(error.message.includes(f), `"${error.message}" should mention "${f}"`);
    return true;
  });
}

async function expectLoadError(folder: string, code: string, ...fragments: string[]): Promise<void> {
  await assert.rejects(ModelTokenizer.load(folder), (error: unknown) => {
    assert.ok(error instanceof TokenizerError, `expected a TokenizerError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const f of fragments) assert.ok(error.message.includes(f), `"${error.message}" should mention "${f}"`);
    return true;
  });
}

describe('runtime tokenizer: the real Llama-3.1 tokenizer', function () {
  this.timeout(60_000);
  let llama: ModelTokenizer;

  before(async () => {
    llama = await ModelTokenizer.load(llama31Files());
  });

  it('reads the special tokens and the BOS rule', () => {
    assert.deepEqual(llama.bosToken, { text: '<|begin_of_text|>', id: 128000 });
    assert.deepEqual(llama.eosToken, { text: '<|eot_id|>', id: 128009 });
    assert.equal(llama.vocabSize, 128256);
    assert.equal(llama.addsBos, true);
    assert.equal(llama.addsEos, false);
    assert.deepEqual(llama.stopTokenIds, [128009]);
    assert.equal(llama.padTokenId, 128009, 'no pad_token: padding uses eos');
    assert.deepEqual(llama.chatTemplateNames, ['default']);
  });

  it('renders the Llama-3 prompt of the guide exactly, 29 tokens without extra specials', () => {
    const prompt = llama.applyChatTemplate(CONVERSATION, { addGenerationPrompt: true });
    assert.equal(prompt, EXPECTED_PROMPT);
    const ids = llama.encodeChat(CONVERSATION, { addGenerationPrompt: true });
    assert.equal(ids.length, 29);
    assert.equal(ids[0], 128000, 'exactly one BOS, written by the template');
    assert.equal(ids.filter((id) => id === 128000).length, 1);
    assert.equal(llama.decode(ids), EXPECTED_PROMPT);
    // Without the generation prompt the assistant header is absent.
    assert.equal(llama.applyChatTemplate(CONVERSATION), EXPECTED_PROMPT.slice(0, -'<|start_header_id|>assistant<|end_header_id|>\n\n'.length));
  });

  it('encodes known Llama-3 ids and adds BOS only with special tokens', () => {
    // "Hello" = 9906 and " world" = 1917 in the Llama-3 vocabulary (tiktoken cl100k-derived merges).
    assert.deepEqual(llama.encode('Hello world', { addSpecialTokens: false }), [9906, 1917]);
    assert.deepEqual(llama.encode('Hello world'), [128000, 9906, 1917]);
    // Special-token text inside a string is that special token, as in transformers.
    assert.deepEqual(llama.encode('<|eot_id|>', { addSpecialTokens: false }), [128009]);
  });

  it('round-trips mixed text exactly (emoji, CJK, code, spaces)', () => {
    for (const text of MIXED_TEXTS) {
      const ids = llama.encode(text, { addSpecialTokens: false });
      assert.equal(llama.decode(ids), text, JSON.stringify(text));
      const withBos = llama.encode(text);
      assert.deepEqual(withBos, [128000, ...ids]);
      assert.equal(llama.decode(withBos), `<|begin_of_text|>${text}`);
      assert.equal(llama.decode(withBos, { skipSpecialTokens: true }), text);
    }
  });

  it('streaming decode, token by token, equals the full decode and never emits a broken character', () => {
    for (const text of MIXED_TEXTS) {
      const ids = llama.encode(text);
      for (const skipSpecialTokens of [false, true]) {
        const stream = llama.streamingDecoder({ skipSpecialTokens });
        const pieces = ids.map((id) => stream.push(id));
        pieces.push(stream.flush());
        assert.equal(pieces.join(''), llama.decode(ids, { skipSpecialTokens }), JSON.stringify(text));
        assert.equal(stream.text, pieces.join(''));
        for (const piece of pieces) assert.ok(!piece.includes('\uFFFD'), `piece ${JSON.stringify(piece)} of ${JSON.stringify(text)}`);
      }
    }
    // A run of special tokens that decode to nothing when skipped: the window moves on, the text stays exact.
    const specials = [128000, 9906, ...new Array<number>(12).fill(128009), 1917, 128009];
    const quiet = llama.streamingDecoder({ skipSpecialTokens: true });
    assert.equal(specials.map((id) => quiet.push(id)).join('') + quiet.flush(), 'Hello world');
    // An emoji that the vocabulary splits into byte tokens: nothing comes out until its last byte.
    const ids = llama.encode('🦙', { addSpecialTokens: false });
    assert.ok(ids.length > 1, 'the llama emoji is several byte tokens');
    const stream = llama.streamingDecoder();
    const pieces = ids.map((id) => stream.push(id));
    assert.deepEqual(pieces, [...new Array<string>(ids.length - 1).fill(''), '🦙']);
  });

  it('rejects token ids outside the vocabulary', () => {
    expectTokenizerError(() => llama.decode([9906, 128256]), 'InvalidInput', 'token id 128256', 'position 1', '128256 tokens');
    expectTokenizerError(() => llama.decode([-1]), 'InvalidInput', 'token id -1');
    assert.equal(llama.decode([]), '');
  });

  it('the example model folder gives the same prompt, and its generation_config.json stop tokens', async function () {
    if (!existsSync(join(exampleModel(), 'tokenizer.json'))) throw new Error('the example checkpoint is missing: run `npm run example`');
    const example = await ModelTokenizer.load(exampleModel());
    assert.equal(example.applyChatTemplate(CONVERSATION, { addGenerationPrompt: true }), EXPECTED_PROMPT);
    assert.equal(example.encodeChat(CONVERSATION, { addGenerationPrompt: true }).length, 29);
    // generation_config.json: eos_token_id [128001, 128008, 128009] (end_of_text, eom, eot).
    assert.deepEqual(example.stopTokenIds, [128001, 128008, 128009]);
    assert.deepEqual(example.bosToken, { text: '<|begin_of_text|>', id: 128000 });
  });
});

describe('runtime tokenizer: loading rules and chat templates', function () {
  this.timeout(30_000);
  let tmp: { path: string; cleanup: () => void };
  let n = 0;
  const folder = () => join(tmp.path, `m${n++}`);

  beforeEach(() => {
    tmp = tempDir('quantlens-tokenizer-');
  });
  afterEach(() => tmp.cleanup());

  it('a folder without tokenizer.json: says so and how to make one', async () => {
    const dir = folder();
    mkdirSync(dir);
    writeFileSync(join(dir, 'tokenizer.model'), 'sentencepiece');
    await expectLoadError(dir, 'NoTokenizer', dir, 'no tokenizer.json', 'save_pretrained');
  });

  it('an unreadable tokenizer.json: names the file, line and column', async () => {
    const dir = folder();
    mkdirSync(dir);
    writeFileSync(join(dir, 'tokenizer.json'), '{\n  "version": "1.0",\n  "model": {,\n}');
    await expectLoadError(dir, 'UnreadableTokenizer', join(dir, 'tokenizer.json'), 'not valid JSON', 'line 3');
    writeFileSync(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    await expectLoadError(dir, 'UnreadableTokenizer', 'no "model"');
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'NoSuchModel', vocab: {} } }));
    await expectLoadError(dir, 'UnreadableTokenizer', 'cannot be loaded');
  });

  it('tokenizer_config.json naming a token the vocabulary lacks, and a bad generation_config.json', async () => {
    await expectLoadError(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { bos_token: '<|begin_of_text|>' } }), 'BadTokenizerConfig', 'bos_token', '<|begin_of_text|>', 'not a token');
    await expectLoadError(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { add_bos_token: 'yes' } }), 'BadTokenizerConfig', 'add_bos_token', 'true or false');
    await expectLoadError(writeTinyTokenizerFolder(folder(), { 'generation_config.json': { eos_token_id: [257, '258'] } }), 'BadTokenizerConfig', 'generation_config.json', 'eos_token_id');
    await expectLoadError(writeTinyTokenizerFolder(folder(), { 'generation_config.json': { eos_token_id: 9999 } }), 'BadTokenizerConfig', 'vocabulary size 258');
  });

  it('special tokens as AddedToken objects; stop tokens from generation_config.json, else config.json', async () => {
    const a = await ModelTokenizer.load(
      writeTinyTokenizerFolder(folder(), {
        'tokenizer_config.json': { bos_token: { __type: 'AddedToken', content: '<s>' }, eos_token: '</s>' },
        'generation_config.json': { eos_token_id: [257, 10] },
        'config.json': { eos_token_id: 11 },
      }),
    );
    assert.deepEqual(a.bosToken, { text: '<s>', id: 256 });
    assert.deepEqual(a.stopTokenIds, [257, 10]);
    const b = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { eos_token: '</s>' }, 'config.json': { eos_token_id: 11, bos_token_id: 256 } }));
    assert.deepEqual(b.stopTokenIds, [11, 257]);
    assert.deepEqual(b.bosToken, { text: '<s>', id: 256 }, 'bos from config.json when tokenizer_config.json has none');
  });

  it('add_bos_token: the post-processor decides unless tokenizer_config.json says otherwise', async () => {
    const viaPostProcessor = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { bos_token: '<s>' } }, { bosPostProcessor: true }));
    assert.equal(viaPostProcessor.addsBos, true);
    assert.deepEqual(viaPostProcessor.encode('hi'), [256, 104, 105]);
    const turnedOff = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { bos_token: '<s>', add_bos_token: false } }, { bosPostProcessor: true }));
    assert.equal(turnedOff.addsBos, false);
    assert.deepEqual(turnedOff.encode('hi'), [104, 105]);
    const turnedOn = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { bos_token: '<s>', eos_token: '</s>', add_bos_token: true, add_eos_token: true } }));
    assert.deepEqual(turnedOn.encode('hi'), [256, 104, 105, 257]);
    assert.deepEqual(turnedOn.encode('hi', { addSpecialTokens: false }), [104, 105]);
    const none = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { bos_token: '<s>' } }));
    assert.equal(none.addsBos, false);
    assert.deepEqual(none.encode('hi'), [104, 105]);
  });

  it('streaming decode over byte tokens: a 4-byte emoji appears only with its last byte', async () => {
    const tiny = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), {}));
    const ids = tiny.encode('a🤗é', { addSpecialTokens: false });
    assert.deepEqual(ids, [0x61, 0xf0, 0x9f, 0xa4, 0x97, 0xc3, 0xa9]);
    const stream = tiny.streamingDecoder();
    assert.deepEqual(
      ids.map((id) => stream.push(id)),
      ['a', '', '', '', '🤗', '', 'é'],
    );
    // A stream cut inside a character: flush gives the replacement character, as a full decode does.
    const cut = tiny.streamingDecoder();
    assert.deepEqual([cut.push(0x61), cut.push(0xf0), cut.push(0x9f)], ['a', '', '']);
    assert.equal(cut.flush(), tiny.decode([0xf0, 0x9f]));
    assert.ok(cut.text.startsWith('a') && cut.text.includes('\uFFFD'));
    // Invalid bytes (stray continuation bytes) are not held back forever and come out as a full decode has them.
    const invalid = [0x61, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x62, 0xe2, 0x82, 0xac];
    const junk = tiny.streamingDecoder();
    const junkPieces = invalid.map((id) => junk.push(id));
    assert.equal(junkPieces.join('') + junk.flush(), tiny.decode(invalid));
    assert.equal(junkPieces.at(-1), '€');
  });

  it('no chat template: a plain-words error, and the plain fallback only when asked', async () => {
    const tiny = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { bos_token: '<s>', add_bos_token: true } }));
    assert.equal(tiny.hasChatTemplate, false);
    expectTokenizerError(() => tiny.applyChatTemplate(CONVERSATION), 'NoChatTemplate', 'no chat template', 'base model', 'plain fallback');
    assert.equal(
      tiny.applyChatTemplate(CONVERSATION, { addGenerationPrompt: true, fallback: 'plain' }),
      '<s>System: You are a concise assistant.\n\nUser: What is 4-bit quantization?\n\nAssistant:',
    );
  });

  it('named templates: default, tool_use when tools are given, by name, and no default among several', async () => {
    const templates = [
      { name: 'default', template: '{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}' },
      { name: 'tool_use', template: '{{ bos_token }}TOOLS={{ tools | tojson }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}' },
      { name: 'rag', template: '{% for d in documents %}<doc>{{ d.text }}</doc>{% endfor %}{{ messages[-1].content }}' },
    ];
    const tiny = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { bos_token: '<s>', eos_token: '</s>', chat_template: templates } }));
    assert.deepEqual(tiny.chatTemplateNames, ['default', 'tool_use', 'rag']);
    const hi: ChatMessage[] = [{ role: 'user', content: 'hi' }];
    assert.equal(tiny.applyChatTemplate(hi, { addGenerationPrompt: true }), '<s>[user]hi[assistant]');
    const tool = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };
    assert.equal(tiny.applyChatTemplate(hi, { tools: [tool] }), `<s>TOOLS=${JSON.stringify([tool]).replace(/,/g, ', ').replace(/:/g, ': ')}[user]hi`);
    assert.equal(tiny.applyChatTemplate(hi, { templateName: 'rag', documents: [{ text: 'A' }, { text: 'B' }] }), '<doc>A</doc><doc>B</doc>hi');
    expectTokenizerError(() => tiny.applyChatTemplate(hi, { templateName: 'nope' }), 'InvalidInput', 'no chat template named "nope"', '"default", "tool_use", "rag"');

    const noDefault = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { chat_template: templates.slice(1) } }));
    expectTokenizerError(() => noDefault.applyChatTemplate(hi), 'InvalidInput', 'none is called "default"', '"tool_use", "rag"');
  });

  it('chat_template.jinja beside the config wins, as in transformers; chat_template.json is read too', async () => {
    const dir = writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { chat_template: 'from config' }, 'chat_template.jinja': 'from jinja {{ messages | length }}' });
    const a = await ModelTokenizer.load(dir);
    assert.equal(a.applyChatTemplate([{ role: 'user', content: 'x' }]), 'from jinja 1');
    assert.equal(a.chatTemplateFile, join(dir, 'chat_template.jinja'));
    const b = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'chat_template.json': { chat_template: 'from json' } }));
    assert.equal(b.applyChatTemplate([{ role: 'user', content: 'x' }]), 'from json');
  });

  it('passes raise_exception, strftime_now and extra variables; template errors are plain words', async () => {
    const template =
      "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}" +
      "Today {{ strftime_now('%d %b %Y') }} / {{ strftime_now('%A %-d %B %y, %H:%M:%S %p %j %%') }}" +
      '{% if date_string is defined %} date={{ date_string }}{% endif %}{{ eos_token }}';
    const tiny = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { eos_token: '</s>', chat_template: template } }));
    const now = new Date(2024, 6, 6, 9, 5, 7); // local time, 6 July 2024, a Saturday, day 188 of a leap year
    assert.equal(tiny.applyChatTemplate([{ role: 'user', content: 'x' }], { now }), 'Today 06 Jul 2024 / Saturday 6 July 24, 09:05:07 AM 188 %</s>');
    assert.equal(tiny.applyChatTemplate([{ role: 'user', content: 'x' }], { now, variables: { date_string: '26 Jul 2024' } }), 'Today 06 Jul 2024 / Saturday 6 July 24, 09:05:07 AM 188 % date=26 Jul 2024</s>');
    expectTokenizerError(() => tiny.applyChatTemplate([{ role: 'assistant', content: 'x' }]), 'ChatTemplateRefused', 'refused', 'Conversations must start with a user message');

    const broken = await ModelTokenizer.load(writeTinyTokenizerFolder(folder(), { 'tokenizer_config.json': { chat_template: '{% for m in messages %}{{ m.content }' } }));
    expectTokenizerError(() => broken.applyChatTemplate([{ role: 'user', content: 'x' }]), 'BadChatTemplate', 'tokenizer_config.json', 'does not parse');
    expectTokenizerError(() => broken.applyChatTemplate([{ role: 7 } as unknown as ChatMessage]), 'InvalidInput', 'chat message 1', 'role');
  });

  it('strftime in the C locale for the afternoon and the 12 o’clock hours', () => {
    assert.equal(strftime(new Date(2025, 0, 1, 0, 0, 0), '%I %p %-I|%e|%j|%a'), '12 AM 12| 1|001|Wed');
    assert.equal(strftime(new Date(2025, 11, 31, 13, 0, 0), '%I %p|%j|%-m/%-d'), '01 PM|365|12/31');
  });

  it('loads from the path of tokenizer.json itself, through a symlinked file', async () => {
    const dir = folder();
    mkdirSync(dir);
    symlinkSync(join(llama31Files(), 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const bare = await ModelTokenizer.load(join(dir, 'tokenizer.json'));
    assert.equal(bare.folder, dir);
    assert.equal(bare.bosToken, null, 'no tokenizer_config.json: no named specials');
    assert.equal(bare.addsBos, false);
    // The post-processor still adds <|begin_of_text|> when asked for special tokens.
    assert.deepEqual(bare.encode('Hello world'), [128000, 9906, 1917]);
    expectTokenizerError(() => bare.applyChatTemplate(CONVERSATION), 'NoChatTemplate');
  });
});

describe('runtime tokenizer: StreamingDecoder with a SentencePiece-style decoder', () => {
  // A decoder written here that behaves like SentencePiece's: "▁" is a space and the first token of a
  // decoded sequence loses its leading space. Decoding token by token would glue words together.
  const pieces = ['▁Hello', '▁world', ',', '▁how', '▁are', '▁you', '?', '▁', 'x'];
  const decode = (ids: readonly number[]) => ids.map((id) => pieces[id]!).join('').replace(/▁/g, ' ').replace(/^ /, '');

  it('keeps the spaces between words', () => {
    const ids = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    const stream = new StreamingDecoder(decode);
    const out = ids.map((id) => stream.push(id));
    out.push(stream.flush());
    assert.equal(out.join(''), decode(ids));
    assert.equal(out.join(''), 'Hello world, how are you? x');
    assert.deepEqual(out.slice(0, 3), ['Hello', ' world', ',']);
  });
});
