import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Diagnostic, completionsAt, hoverAt, validateQuantizationConfig, validateRecipe } from '../../src/core/recipe';
import { repoRoot } from '../helpers/paths';

const fixtures = join(repoRoot(), 'test', 'fixtures', 'recipes');
const GOOD = 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n      scheme: W4A16\n      targets: Linear\n';

/** Diagnostics are well formed: ranges inside the document, start before end, a message and a code. */
function assertWellFormed(text: string, diagnostics: readonly Diagnostic[]): void {
  const lines = text.split('\n');
  for (const d of diagnostics) {
    assert.ok(d.message.length > 10, `message: ${d.message}`);
    assert.ok(d.code.length > 0);
    assert.ok(['error', 'warning', 'info'].includes(d.severity));
    const { start, end } = d.range;
    assert.ok(start.line >= 0 && start.character >= 0 && end.line < lines.length + 1, `range ${JSON.stringify(d.range)} inside ${lines.length} lines`);
    assert.ok(start.line < end.line || (start.line === end.line && start.character <= end.character), `ordered range ${JSON.stringify(d.range)}`);
    assert.ok(start.character <= (lines[start.line] ?? '').length, `start column inside line ${start.line}`);
  }
}

function errorsOf(text: string): Diagnostic[] {
  const diagnostics = validateRecipe(text);
  assertWellFormed(text, diagnostics);
  return diagnostics.filter((d) => d.severity === 'error');
}

describe('malformed YAML: always diagnostics, never an exception', () => {
  const cases: Record<string, { text: string; line?: number; says?: RegExp }> = {
    'tab indentation': { text: 'quant_stage:\n\tquant_modifiers:\n\t\tQuantizationModifier: {scheme: W4A16}\n', line: 1, says: /tab/i },
    'tab after a key': { text: GOOD.replace('      ignore', '\t  ignore'), line: 3, says: /tab/i },
    'unclosed double quote': { text: GOOD.replace('[lm_head]', '["lm_head]'), line: 3, says: /quote/i },
    'unclosed single quote': { text: GOOD.replace('W4A16', "'W4A16"), line: 4, says: /quote/i },
    'unclosed bracket': { text: GOOD.replace('[lm_head]', '[lm_head'), line: 3 },
    'unclosed brace': { text: 'quant_stage: {quant_modifiers: {QuantizationModifier: {scheme: W4A16}\n', line: 0 },
    'stray closing bracket': { text: GOOD.replace('[lm_head]', '[lm_head]]'), line: 3 },
    'duplicate keys': { text: GOOD.replace('      scheme: W4A16\n', '      scheme: W4A16\n      scheme: W8A8\n'), line: 5, says: /duplicate key scheme/ },
    'duplicate stage': { text: `${GOOD}${GOOD}`, line: 6, says: /duplicate key quant_stage/ },
    'undefined alias': { text: GOOD.replace('W4A16', '*preset'), line: 4, says: /alias/ },
    'recursive alias': { text: `base: &b [*b]\n${GOOD}`, line: 0, says: /alias/ },
    'python tag': { text: GOOD.replace('W4A16', '!!python/object:os.system W4A16'), line: 4, says: /safe_load/ },
    'custom tag': { text: GOOD.replace('W4A16', '!preset W4A16'), line: 4, says: /tag/ },
    'list at the top level': { text: '- QuantizationModifier\n- GPTQModifier\n', line: 0, says: /mapping/ },
    'string at the top level': { text: 'just a sentence\n', line: 0, says: /mapping/ },
    'number at the top level': { text: '42\n', line: 0, says: /mapping/ },
    'null at the top level': { text: '~\n', says: /empty/ },
    'empty file': { text: '', says: /empty/ },
    'whitespace only': { text: '   \n\n  \n', says: /empty/ },
    'comments only': { text: '# a recipe\n# nothing else\n', says: /empty/ },
    'document marker only': { text: '---\n', says: /empty/ },
    'several documents': { text: `${GOOD}---\n${GOOD}`, says: /single YAML document/ },
    'bad indentation': { text: 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      scheme: W4A16\n     ignore: [lm_head]\n', line: 4 },
    'nested mapping on one line': { text: 'quant_stage: quant_modifiers: x\n', line: 0 },
    'complex key': { text: '? [a, b]\n: 1\n', says: /key/ },
    'NUL bytes': { text: 'quant_stage:\u0000\n', line: 0, says: /unacceptable character/ },
    'PNG header': { text: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52]).toString('latin1'), says: /unacceptable character/ },
    'lone surrogate': { text: `quant_stage: "\uD800"\n`, says: /unacceptable character/ },
    'deep flow nesting': { text: `a: ${'['.repeat(20000)}${']'.repeat(20000)}\n`, says: /deep/ },
    'deep block nesting': { text: Array.from({ length: 300 }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n'), says: /deep/ },
    'deep mapping nesting': { text: `a: ${'{a: '.repeat(3000)}1${'}'.repeat(3000)}\n`, says: /deep/ },
  };

  for (const [name, c] of Object.entries(cases)) {
    it(name, () => {
      let errors: Diagnostic[] = [];
      assert.doesNotThrow(() => {
        errors = errorsOf(c.text);
      });
      assert.ok(errors.length > 0, `at least one error for ${name}`);
      if (c.line !== undefined) assert.ok(errors.some((e) => e.range.start.line === c.line), `an error on line ${c.line}: ${errors.map((e) => `${e.range.start.line}: ${e.message}`).join(' | ')}`);
      if (c.says) assert.ok(errors.some((e) => c.says!.test(e.message)), `an error saying ${c.says}: ${errors.map((e) => e.message).join(' | ')}`);
      // The editor services survive the same input.
      assert.doesNotThrow(() => hoverAt(c.text, { line: 0, character: 2 }));
      assert.doesNotThrow(() => completionsAt(c.text, { line: 0, character: 2 }));
    });
  }

  it('the unclosed quote is reported where it opens', () => {
    const text = GOOD.replace('[lm_head]', '["lm_head]');
    const quote = errorsOf(text).find((e) => /quote/.test(e.message))!;
    assert.deepEqual(quote.range.start, { line: 3, character: 15 });
  });

  it('anchors, aliases and merge keys are expanded like PyYAML does', () => {
    const text = [
      'defaults: &w4 {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 128}',
      'quant_stage:',
      '  quant_modifiers:',
      '    GPTQModifier:',
      '      config_groups:',
      '        group_0:',
      '          targets: [Linear]',
      '          weights:',
      '            <<: *w4',
      '            group_size: 64',
      '        group_1:',
      '          targets: [lm_head]',
      '          weights: *w4',
      '',
    ].join('\n');
    const diagnostics = validateRecipe(text);
    assert.deepEqual(diagnostics.map((d) => d.code), ['ignored-key'], 'only the (ignored) anchor holder is reported');
    const broken = text.replace('strategy: group, group_size: 128', 'strategy: grop');
    const errors = errorsOf(broken);
    // The error sits in the anchored text, once per use.
    assert.ok(errors.length >= 1 && errors.every((e) => e.range.start.line === 0));
  });

  it('CRLF line endings and a byte-order mark keep columns exact', () => {
    const text = `\uFEFF${GOOD.replace('W4A16', 'W4A61')}`.replace(/\n/g, '\r\n');
    const d = validateRecipe(text.replace(/^\uFEFF/, ''));
    assert.equal(d.length, 1);
    assert.deepEqual(d[0]!.range, { start: { line: 4, character: 14 }, end: { line: 4, character: 19 } });
  });

  it('YAML 1.1 as PyYAML reads it: yes/on are booleans, y/n are strings', () => {
    const text = 'q_stage:\n  q_modifiers:\n    GPTQModifier:\n      scheme: W4A16\n      offload_hessians: on\n';
    assert.deepEqual(validateRecipe(text), []);
    const n = text.replace('offload_hessians: on', 'offload_hessians: n');
    // "n" is a string for PyYAML; pydantic's lax bool still reads it as false.
    assert.deepEqual(validateRecipe(n), []);
    const odd = text.replace('offload_hessians: on', 'offload_hessians: nope');
    assert.match(validateRecipe(odd)[0]!.message, /offload_hessians must be true or false/);
  });

  it('truncations and byte flips of every real recipe never throw', function () {
    this.timeout(60_000);
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const noise = ['\t', '"', "'", '[', ']', '{', '}', ':', '-', '&a', '*a', '!!str', '\u0000', '#', '\n', ' ', '|', '>', '?', ',', '%'];
    let runs = 0;
    for (const file of readdirSync(fixtures).filter((f) => f.endsWith('.yaml'))) {
      const text = readFileSync(join(fixtures, file), 'utf8');
      for (let cut = 0; cut < text.length; cut += Math.max(1, Math.floor(text.length / 25))) {
        const variants = [text.slice(0, cut), text.slice(cut), text.slice(0, cut) + noise[Math.floor(random() * noise.length)]! + text.slice(cut + 1)];
        for (const v of variants) {
          const d = validateRecipe(v);
          assertWellFormed(v, d);
          const lines = v.split('\n');
          const line = Math.floor(random() * lines.length);
          const position = { line, character: Math.floor(random() * ((lines[line]?.length ?? 0) + 1)) };
          hoverAt(v, position);
          completionsAt(v, position);
          runs++;
        }
      }
    }
    assert.ok(runs > 1000);
  });

  it('malformed JSON configs give diagnostics, never an exception', () => {
    const bad = ['', '{', '{"quantization_config": ', '[1, 2]', '"text"', '{"a": 1,}', "{'a': 1}", '{"quantization_config": {"quant_method": "compressed-tensors", "config_groups": 3}}', '\u0000\u0001', '{"a": NaN}', `${'['.repeat(5000)}${']'.repeat(5000)}`];
    for (const text of bad) {
      let d: Diagnostic[] = [];
      assert.doesNotThrow(() => {
        d = validateQuantizationConfig(text);
      }, text.slice(0, 40));
      assertWellFormed(text, d);
      assert.ok(d.some((x) => x.severity === 'error'), `an error for ${JSON.stringify(text.slice(0, 40))}`);
    }
    const trailing = validateQuantizationConfig('{"a": 1,}');
    assert.deepEqual(trailing[0]!.range.start, { line: 0, character: 8 });
  });
});
