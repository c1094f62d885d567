/**
 * Chat templates run within a budget: hostile templates from tokenizer_config.json end in a typed error that
 * names the file and the limit, fast and without memory growth; real templates (Llama-3.1's) stay far below
 * the limits, with the margins measured here.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Environment, Template } from '@huggingface/jinja';
import { ModelTokenizer, TokenizerError, MAX_TOKENIZER_FILE_BYTES, type ChatMessage } from '../../src/core/runtime/tokenizer';
import { DEFAULT_TEMPLATE_BUDGET, renderWithBudget } from '../../src/core/runtime/chatTemplate';
import { describeChatError } from '../../src/core/chat/errorMessages';
import { repoRoot, tempDir } from '../helpers/paths';
import { writeTinyTokenizerFolder } from '../helpers/tinyTokenizer';

const llama31 = () => join(repoRoot(), 'node_modules', '@lenml', 'tokenizer-llama3_1', 'models');

/** A long real conversation: a system prompt and 40 turns of 2,000 characters (tools are passed; this template ignores them). */
function longConversation(): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: 'system', content: 'You are a careful assistant. '.repeat(20) }];
  for (let i = 0; i < 40; i++) messages.push({ role: i % 2 === 0 ? 'user' : 'assistant', content: `turn ${i}: ${'word '.repeat(400)}` });
  return messages;
}
const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
  { type: 'function', function: { name: 'search', description: 'Web search', parameters: { type: 'object', properties: { q: { type: 'string' }, n: { type: 'integer' } } } } },
];

export const HOSTILE_TEMPLATES: Record<string, string> = {
  hugeRange: "{% for i in range(100000000) %}{{ 'xxxxxxxxxx' }}{% endfor %}",
  nestedLoops: '{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}',
  doublingString: "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
  doublingList: '{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}',
  recursiveMacro: '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
  fanOutMacro: '{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}x{% endmacro %}{{ f(40) }}',
  replaceBomb: "{% set ns = namespace(s='x') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s.replace('', ns.s) }}",
  replaceFilterBomb: "{% set ns = namespace(s='x') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | replace('x', ns.s) }}",
  indentBomb: "{{ 'a\\nb\\nc' | indent(900000000) }}",
  joinBomb: "{% set ns = namespace(s='x', l=[1]) %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | join(ns.s) }}",
  tojsonBomb: '{% set ns = namespace(l=[1]) %}{% for i in range(18) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | tojson(indent=100000) }}',
  whileTrueViaRecursion: '{% macro again() %}{% for m in messages %}{{ again() }}{% endfor %}{% endmacro %}{{ again() }}',
  hugeLiteralRepeat: `{% for i in range(1000000) %}{{ '${'y'.repeat(1000)}' }}{% endfor %}`,
};

describe('chat templates within a budget', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('quantlens-template-budget-')));
  after(() => tmp.cleanup());

  it('the real Llama-3.1 template with a long conversation and tools stays far below every limit (margins measured)', async () => {
    const config = JSON.parse(await fs.readFile(join(llama31(), 'tokenizer_config.json'), 'utf8')) as { chat_template: string };
    const scope = new Environment();
    for (const [name, value] of Object.entries({ messages: longConversation(), tools: TOOLS, add_generation_prompt: true, bos_token: '<|begin_of_text|>', true: true, false: false, none: null })) scope.set(name, value);
    scope.set('raise_exception', (m: unknown) => {
      throw new Error(String(m));
    });
    const { text, stats } = renderWithBudget(new Template(config.chat_template).parsed, scope);
    assert.ok(text.startsWith('<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a careful assistant.'));
    assert.ok(text.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n'));
    const margins = {
      steps: DEFAULT_TEMPLATE_BUDGET.steps / stats.steps,
      depth: DEFAULT_TEMPLATE_BUDGET.depth / stats.maxDepth,
      totalChars: DEFAULT_TEMPLATE_BUDGET.totalChars / stats.totalChars,
      output: DEFAULT_TEMPLATE_BUDGET.valueSize / text.length,
    };
    console.log(`      Llama-3.1 template, ${text.length} chars out: ${stats.steps} steps, depth ${stats.maxDepth}, ${stats.totalChars} chars produced; margins ${JSON.stringify(Object.fromEntries(Object.entries(margins).map(([k, v]) => [k, Math.round(v)])))}`);
    // The comment on TemplateBudget states these margins; keep them true.
    assert.ok(margins.steps > 100 && margins.depth > 5 && margins.totalChars > 30 && margins.output > 50, JSON.stringify(margins));
  });

  it('the Llama-3.1 tokenizer renders chat as before (budget applied through applyChatTemplate)', async () => {
    const tokenizer = await ModelTokenizer.load(llama31());
    const text = tokenizer.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true, variables: { date_string: '26 Jul 2024' } });
    assert.equal(text, '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n');
  });

  for (const [name, template] of Object.entries(HOSTILE_TEMPLATES)) {
    it(`hostile template "${name}" ends in ChatTemplateBudgetExceeded naming tokenizer_config.json, fast, without memory growth`, async () => {
      const folder = writeTinyTokenizerFolder(join(tmp.path, name), { 'tokenizer_config.json': { bos_token: '<s>', eos_token: '</s>', chat_template: template } });
      const tokenizer = await ModelTokenizer.load(folder);
      const rss = process.memoryUsage().rss;
      const started = Date.now();
      const error = (() => {
        try {
          tokenizer.applyChatTemplate([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }], { addGenerationPrompt: true });
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      const ms = Date.now() - started;
      assert.ok(error instanceof TokenizerError, `${name}: ${String(error)}`);
      assert.equal(error.code, 'ChatTemplateBudgetExceeded', error.message);
      assert.equal(error.file, join(folder, 'tokenizer_config.json'));
      assert.match(error.message, /tokenizer_config\.json: the chat template exceeded its budget of [\d,]+ (evaluation steps|nesting depth|value size|characters produced)/);
      assert.ok(ms < 5000, `${name} took ${ms} ms`);
      const growth = process.memoryUsage().rss - rss;
      assert.ok(growth < 400 * 1024 * 1024, `${name}: RSS grew ${(growth / 1048576).toFixed(0)} MiB`);
      const view = describeChatError(error);
      assert.equal(view.code, 'ChatTemplateBudgetExceeded');
      assert.match(view.message, /tokenizer_config\.json/);
    });
  }

  it('a tokenizer.json larger than the limit is refused before it is read', async () => {
    const folder = join(tmp.path, 'huge');
    writeTinyTokenizerFolder(folder, {});
    // A sparse file: 2 GiB on paper, no disk used.
    const handle = await fs.open(join(folder, 'tokenizer.json'), 'r+');
    await handle.truncate(2 * 1024 * 1024 * 1024);
    await handle.close();
    const rss = process.memoryUsage().rss;
    await assert.rejects(ModelTokenizer.load(folder), (error: unknown) => {
      assert.ok(error instanceof TokenizerError);
      assert.equal(error.code, 'TokenizerFileTooLarge');
      assert.equal(error.file, join(folder, 'tokenizer.json'));
      assert.match(error.message, /tokenizer\.json: is 2048 MiB; tokenizer files are read up to 256 MiB/);
      return true;
    });
    assert.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024);
    assert.equal(MAX_TOKENIZER_FILE_BYTES, 256 * 1024 * 1024);
  });
});
