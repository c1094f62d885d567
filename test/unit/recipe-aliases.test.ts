/**
 * YAML alias bombs and their variants: every one ends in a normal diagnostic at the alias that passes the
 * expansion limit, within a second, through the CLI and the editor services alike; recipes that use a few
 * anchors, aliases and merge keys keep validating as PyYAML reads them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { validateCommand } from '../../src/cli/validate';
import { Diagnostic, analyzeRecipe, buildRecipePreview, completionsAt, hoverAt, validateRecipe } from '../../src/core/recipe';
import { MAX_ALIAS_USES, MAX_ALIAS_VALUES } from '../../src/core/recipe/aliases';
import { repoRoot, tempDir } from '../helpers/paths';

/** Nine aliases of nine aliases, `levels` deep: 9^levels values behind the last anchor. */
function nestedBomb(levels: number): string {
  const names = 'abcdefghijklmnop';
  const lines = [`a: &a [${Array(9).fill('"x"').join(',')}]`];
  for (let i = 1; i < levels; i++) lines.push(`${names[i]}: &${names[i]} [${Array(9).fill(`*${names[i - 1]}`).join(',')}]`);
  lines.push('quant_stage:', '  quant_modifiers:', '    QuantizationModifier:', `      targets: *${names[levels - 1]}`);
  return `${lines.join('\n')}\n`;
}

const BOMB = nestedBomb(8);

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

/** Validates `text` and returns its diagnostics with the time it took. */
function timed(text: string): { diagnostics: Diagnostic[]; ms: number } {
  const started = performance.now();
  const diagnostics = validateRecipe(text);
  return { diagnostics, ms: performance.now() - started };
}

function aliasLimit(diagnostics: readonly Diagnostic[]): Diagnostic {
  const found = diagnostics.filter((d) => d.code === 'too-many-aliases');
  assert.equal(found.length, 1, `one too-many-aliases diagnostic: ${diagnostics.map((d) => d.message).join(' | ')}`);
  assert.equal(found[0]!.severity, 'error');
  return found[0]!;
}

/** 0-based line and column of the `n`-th (0-based) occurrence of `needle` in `text`. */
function positionOf(text: string, needle: string, n = 0): { line: number; character: number } {
  let at = -1;
  for (let i = 0; i <= n; i++) at = text.indexOf(needle, at + 1);
  assert.ok(at >= 0, `${needle} #${n} in the text`);
  const before = text.slice(0, at);
  return { line: before.split('\n').length - 1, character: at - before.lastIndexOf('\n') - 1 };
}

describe('YAML alias bombs: bounded expansion, reported at the alias', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    tmp = tempDir('quantlens-aliases-');
  });
  after(() => tmp.cleanup());

  it('quantlens validate reports the 8-level bomb (43 million values) at its line in under a second', async () => {
    const file = join(tmp.path, 'bomb.yaml');
    writeFileSync(file, BOMB);
    const out = new Capture();
    const started = performance.now();
    const code = await validateCommand([file], out);
    const ms = performance.now() - started;
    assert.equal(code, 1);
    assert.ok(ms < 1000, `validate took ${ms.toFixed(0)} ms`);
    // Lines 2-4 resolve 9 + 90 + 819 aliases; the first *d of line 5 resolves 820 more, past the 1,000 allowed.
    assert.match(out.text, /bomb\.yaml:5:8: error: alias \*d is not expanded: it resolves 820 aliases, which would bring this file to 1,738 alias resolutions \(QuantLens expands at most 1,000\)/);
    assert.match(out.text, /&d \(line 4\) is built from aliases of other anchors/);
    assert.match(out.text.trim().split('\n').at(-1)!, /1 error, 0 warnings/);
  });

  it('the built CLI (bin/quantlens.js) answers the bomb at once instead of hanging at 2 GB', function () {
    if (!existsSync(join(repoRoot(), 'dist', 'cli.js'))) this.skip(); // node esbuild.mjs builds it
    const file = join(tmp.path, 'bomb-cli.yaml');
    writeFileSync(file, BOMB);
    const started = performance.now();
    const result = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'quantlens.js'), 'validate', file], { encoding: 'utf8', timeout: 20_000 });
    const ms = performance.now() - started;
    assert.equal(result.status, 1, `exit status (signal ${result.signal}, ${ms.toFixed(0)} ms): ${result.stderr}`);
    assert.match(result.stdout, /bomb-cli\.yaml:5:8: error: alias \*d is not expanded/);
  });

  it('deeper bombs stay as fast: the cost of an alias is computed, never expanded', () => {
    for (const levels of [5, 12, 16]) {
      const text = nestedBomb(levels);
      const { diagnostics, ms } = timed(text);
      assert.ok(ms < 1000, `${levels} levels: ${ms.toFixed(0)} ms`);
      const limit = aliasLimit(diagnostics);
      // The first *d passes the limit (line 5, as above), however deep the anchors go.
      assert.deepEqual(limit.range.start, positionOf(text, '*d'), `${levels} levels: ${limit.message}`);
    }
  });

  it('wide aliases: 2,000 uses of a one-value anchor stop at the 1,001st', () => {
    const uses = 2_000;
    const text = `one: &one x\nmany: [${Array(uses).fill('*one').join(', ')}]\n${'quant_stage:\n  quant_modifiers:\n    QuantizationModifier: {scheme: W4A16, targets: [Linear]}\n'}`;
    const { diagnostics, ms } = timed(text);
    assert.ok(ms < 1000, `${ms.toFixed(0)} ms`);
    const limit = aliasLimit(diagnostics);
    assert.deepEqual(limit.range.start, positionOf(text, '*one', MAX_ALIAS_USES));
    assert.match(limit.message, /it resolves 1 alias, which would bring this file to 1,001 alias resolutions \(QuantLens expands at most 1,000\)/);
    assert.match(limit.message, /repeats aliases of its anchors \(here &one, line 1\)/);
  });

  it('an alias of a large mapping used many times stops where the values pass 100,000', () => {
    const keys = 500;
    const big = `big: &big {${Array.from({ length: keys }, (_, i) => `k${i}: ${i}`).join(', ')}}`;
    const perUse = 1 + 2 * keys; // the mapping, then a key and a value per entry
    const uses = Array.from({ length: 150 }, (_, i) => `use${i}: *big`);
    const text = [big, ...uses, 'quant_stage:', '  quant_modifiers:', '    QuantizationModifier: {scheme: W4A16}', ''].join('\n');
    const { diagnostics, ms } = timed(text);
    assert.ok(ms < 1000, `${ms.toFixed(0)} ms`);
    const limit = aliasLimit(diagnostics);
    const fitting = Math.floor(MAX_ALIAS_VALUES / perUse);
    assert.equal(limit.range.start.line, 1 + fitting, `the ${fitting + 1}th use passes the limit: ${limit.message}`);
    assert.match(limit.message, new RegExp(`it stands for ${perUse.toLocaleString('en-US')} values`));

    // Forty uses (40,040 values) are within the limit: every use is a full copy, and nothing is reported.
    const few = [big, ...uses.slice(0, 40), 'quant_stage:', '  quant_modifiers:', '    QuantizationModifier: {scheme: W4A16}', ''].join('\n');
    const parsed = analyzeRecipe(few).parsed;
    assert.equal(parsed.diagnostics.length, 0, parsed.diagnostics.map((d) => d.message).join(' | '));
    assert.equal(parsed.root!.kind, 'map');
    const last = parsed.root!.kind === 'map' ? parsed.root!.entries.find((e) => e.key === 'use39')!.value : undefined;
    assert.equal(last?.kind === 'map' ? last.entries.length : -1, keys);
  });

  it('nested merge keys (<<: *x) that multiply are stopped the same way', () => {
    const lines = [`m0: &m0 {${Array.from({ length: 9 }, (_, i) => `v${i}: ${i}`).join(', ')}}`];
    for (let level = 1; level <= 9; level++) {
      const fields = Array.from({ length: 9 }, (_, i) => `f${i}: *m${level - 1}`).join(', ');
      lines.push(`m${level}: &m${level} {<<: *m${level - 1}, ${fields}}`);
    }
    lines.push('quant_stage:', '  quant_modifiers:', '    QuantizationModifier:', '      <<: *m9', '');
    const text = lines.join('\n');
    const { diagnostics, ms } = timed(text);
    assert.ok(ms < 1000, `${ms.toFixed(0)} ms`);
    const limit = aliasLimit(diagnostics);
    assert.match(limit.message, /^alias \*m\d is not expanded/);
    assert.ok(limit.range.start.line >= 3 && limit.range.start.line <= 9, `reported in the anchors: ${limit.range.start.line}`);
    assert.equal(text.split('\n')[limit.range.start.line]!.slice(limit.range.start.character, limit.range.start.character + 3), limit.message.slice(6, 9), 'the range starts at the alias it names');
  });

  it('recipes with a few anchors, aliases and merges validate as PyYAML reads them', () => {
    const text = [
      'base: &base {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 128}',
      'w8: &w8 {<<: *base, num_bits: 8, strategy: channel, group_size: null}',
      'skip: &skip [lm_head, "re:.*mlp.gate$"]',
      'quant_stage:',
      '  quant_modifiers:',
      '    GPTQModifier:',
      '      ignore: *skip',
      '      config_groups:',
      '        group_0:',
      '          targets: ["re:.*self_attn.*"]',
      '          weights: {<<: [*w8, *base], symmetric: false}',
      '        group_1:',
      '          targets: ["re:.*mlp.*"]',
      '          weights: *base',
      '    QuantizationModifier:',
      '      ignore: *skip',
      '      kv_cache_scheme: {<<: *base, num_bits: 8, type: float, strategy: tensor, group_size: null}',
      '',
    ].join('\n');
    const analysis = analyzeRecipe(text);
    assert.deepEqual(analysis.diagnostics.map((d) => d.code), ['ignored-key', 'ignored-key', 'ignored-key'], analysis.diagnostics.map((d) => d.message).join(' | '));
    const gptq = analysis.modifiers.find((m) => m.type === 'GPTQModifier')!;
    assert.deepEqual(gptq.ignore, ['lm_head', 're:.*mlp.gate$']);
    const [group0, group1] = gptq.groups;
    // Explicit keys win over merged ones, and the first merge source over later ones (w8 over base).
    assert.deepEqual([group0!.scheme.weights!.numBits, group0!.scheme.weights!.strategy, group0!.scheme.weights!.symmetric], [8, 'channel', false]);
    assert.deepEqual([group1!.scheme.weights!.numBits, group1!.scheme.weights!.strategy, group1!.scheme.weights!.groupSize], [4, 'group', 128]);
    assert.deepEqual(analysis.modifiers.find((m) => m.type === 'QuantizationModifier')!.ignore, ['lm_head', 're:.*mlp.gate$']);
  });

  it('hover, completion and the preview answer the bomb within a second too', () => {
    const started = performance.now();
    const hover = hoverAt(BOMB, { line: 10, character: 6 }, 'recipe');
    assert.match(hover?.contents ?? '', /QuantizationModifier/);
    completionsAt(BOMB, { line: 11, character: 6 }, { kind: 'recipe' });
    const preview = buildRecipePreview(BOMB, { fileName: 'recipe.yaml' });
    const ms = performance.now() - started;
    assert.ok(ms < 1000, `${ms.toFixed(0)} ms`);
    assert.ok(preview.isRecipe);
    assert.ok(preview.isRecipe && preview.diagnostics.some((d) => d.code === 'too-many-aliases' && d.range.start.line === 4));
  });
});

describe('wide mappings: duplicate keys found in linear time', () => {
  it('a 20,000-key mapping with one repeated key is reported at the repeat in a fraction of the old 8 s', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `k${i}: ${i}`);
    keys.push('k123: again');
    const text = `layers:\n${keys.map((k) => `  ${k}`).join('\n')}\nquant_stage:\n  quant_modifiers:\n    QuantizationModifier: {scheme: W4A16}\n`;
    const { diagnostics, ms } = timed(text);
    // ~0.3-0.5 s is the yaml package parsing 20,000 pairs; its own duplicate check added ~8 s on top.
    assert.ok(ms < 2000, `${ms.toFixed(0)} ms`);
    const duplicates = diagnostics.filter((d) => d.code === 'duplicate-key');
    assert.equal(duplicates.length, 1, diagnostics.map((d) => d.message).join(' | '));
    assert.deepEqual(duplicates[0]!.range, { start: { line: 20_001, character: 2 }, end: { line: 20_001, character: 6 } });
    assert.match(duplicates[0]!.message, /^duplicate key k123: PyYAML keeps only the last one/);
  });

  it('keys repeat as PyYAML compares them: by value and type, in flow and block mappings', () => {
    const dupes = (yaml: string) => validateRecipe(yaml).filter((d) => d.code === 'duplicate-key').map((d) => [d.range.start.line, d.range.start.character]);
    assert.deepEqual(dupes('a: {1: x, "1": y, 1.0: z}\n'), [[0, 18]], '1 and "1" differ; 1.0 equals 1');
    assert.deepEqual(dupes('a:\n  x: 1\n  "x": 2\n  y: 3\n'), [[2, 2]], 'a quoted key equals the plain one');
    assert.deepEqual(dupes('a: {.nan: 1, .nan: 2, true: 3, yes: 4}\n'), [[0, 31]], 'NaN never repeats; yes is true in YAML 1.1');
  });
});
