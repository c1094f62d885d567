import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { analyzeRecipe, hoverAt, validateRecipe } from '../../src/core/recipe';
import { pathAt, parseText } from '../../src/core/recipe/tree';
import { repoRoot } from '../helpers/paths';

const fixtures = join(repoRoot(), 'test', 'fixtures', 'recipes');

/**
 * Recipes that current llm-compressor rejects, with the diagnostic each must get: the retired field, where
 * it is, and what the message must say (why, and what replaces it).
 */
const OLD_RECIPES: Record<string, { code: string; field: string; line: number; character: number; mentions: readonly string[] }[]> = {
  'ct__examples__llama_1.1b__example_quant_recipe.yaml': [
    { code: 'retired-field', field: 'scheme_overrides', line: 14, character: 12, mentions: ['scheme_overrides', 'QuantizationModifier', 'sparseml', 'config_groups', 'extra fields are forbidden'] },
  ],
};

describe('real recipes (test/fixtures/recipes, from llm-compressor and compressed-tensors)', () => {
  const files = readdirSync(fixtures).filter((f) => /\.ya?ml$/.test(f)).sort();
  const manifest = readFileSync(join(fixtures, 'MANIFEST.tsv'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => line.split('\t'));

  it('keeps the attribution: every fixture is listed in MANIFEST.tsv, and a README names the licence', () => {
    assert.ok(files.length >= 20, `found ${files.length} recipes`);
    const listed = new Set(manifest.map((row) => row[0]));
    for (const f of files) assert.ok(listed.has(f), `${f} is in MANIFEST.tsv`);
    for (const row of manifest) assert.equal(row.length, 4, `manifest row ${row[0]} has file, repo, path, commit`);
    const readme = readFileSync(join(fixtures, 'README.md'), 'utf8');
    assert.match(readme, /Apache License 2\.0/);
    assert.match(readme, /MANIFEST\.tsv/);
  });

  it('the fixtures are unmodified: every file has the SHA-256 that SHA256SUMS recorded when it was copied', () => {
    // SHA256SUMS is in `sha256sum` format (`<hex>  <file>`), so `sha256sum -c SHA256SUMS` checks the same by hand.
    const recorded = new Map(
      readFileSync(join(fixtures, 'SHA256SUMS'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => {
          const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
          assert.ok(m, `SHA256SUMS line ${JSON.stringify(line)} is "<sha256>  <file>"`);
          return [m[2]!, m[1]!] as const;
        }),
    );
    assert.deepEqual([...recorded.keys()].sort(), files, 'SHA256SUMS lists exactly the recipe files of the folder');
    for (const f of files) {
      const actual = createHash('sha256').update(readFileSync(join(fixtures, f))).digest('hex');
      assert.equal(actual, recorded.get(f), `${f}: its SHA-256 differs from SHA256SUMS (the copy was modified)`);
    }
  });

  for (const file of files) {
    const text = readFileSync(join(fixtures, file), 'utf8');
    const expected = OLD_RECIPES[file];
    if (!expected) {
      it(`${file}: accepted by current llm-compressor → zero errors and zero warnings`, () => {
        const diagnostics = validateRecipe(text);
        assert.deepEqual(
          diagnostics.map((d) => `${d.severity} ${d.range.start.line}:${d.range.start.character} ${d.message}`),
          [],
        );
        assert.ok(analyzeRecipe(text).modifiers.length > 0, 'modifiers were found');
      });
    } else {
      it(`${file}: an older recipe → a precise diagnostic naming the retired field`, () => {
        const diagnostics = validateRecipe(text);
        const errors = diagnostics.filter((d) => d.severity === 'error');
        assert.equal(errors.length, expected.length, errors.map((d) => d.message).join('\n'));
        for (const e of expected) {
          const d = errors.find((x) => x.code === e.code && x.range.start.line === e.line);
          assert.ok(d, `a ${e.code} error on line ${e.line + 1}`);
          assert.deepEqual(d.range, { start: { line: e.line, character: e.character }, end: { line: e.line, character: e.character + e.field.length } });
          assert.equal(text.split('\n')[e.line]!.slice(e.character, e.character + e.field.length), e.field);
          for (const m of e.mentions) assert.ok(d.message.includes(m), `message mentions ${m}: ${d.message}`);
        }
      });
    }
  }

  it('every key of every real recipe has hover documentation', () => {
    for (const file of files) {
      const text = readFileSync(join(fixtures, file), 'utf8');
      const parsed = parseText(text);
      const keys: { offset: number; key: string }[] = [];
      const retired = new Set((OLD_RECIPES[file] ?? []).map((e) => e.field));
      const walk = (node: NonNullable<typeof parsed.root>): void => {
        if (node.kind === 'map') {
          for (const e of node.entries) {
            keys.push({ offset: e.keySpan.start, key: e.key });
            // Inside a retired field nothing is documented: the field itself says what replaces it.
            if (!retired.has(e.key)) walk(e.value);
          }
        } else if (node.kind === 'seq') node.items.forEach(walk);
      };
      walk(parsed.root!);
      for (const { offset, key } of keys) {
        // Retired fields are documented too (with what replaces them).
        const { steps } = pathAt(parsed.root, offset);
        assert.equal(steps.at(-1)?.key, key);
        const lines = text.slice(0, offset).split('\n');
        const hover = hoverAt(text, { line: lines.length - 1, character: lines.at(-1)!.length + 1 });
        assert.ok(hover, `${file}: hover for ${key}`);
        assert.ok(hover.contents.includes(key), `${file}: hover for ${key} names it`);
        assert.ok(hover.contents.length > key.length + 20, `${file}: hover for ${key} documents it`);
      }
    }
  });
});
