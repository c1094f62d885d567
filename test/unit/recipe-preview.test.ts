// The recipe preview's view model (src/core/recipe/preview.ts) on the real recipes in test/fixtures/recipes
// and the shipped example checkpoint (examples/tiny-llama, written by `npm run example`). Layer counts and
// sizes are checked against figures computed here from the safetensors headers, read with a few lines of
// code of this test's own and the compressed-tensors storage layout (docs/formats.md §3.5).
import assert from 'node:assert/strict';
import { existsSync, openSync, readFileSync, readSync, closeSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLayers, buildRecipePreview, modelLayersFromCheckpoint, queryPreviewLayers, runAvailability } from '../../src/core/recipe';
import type { RecipePreview } from '../../src/core/recipe/preview';
import { repoRoot } from '../helpers/paths';

const FIXTURES = join(repoRoot(), 'test', 'fixtures', 'recipes');
const EXAMPLE = join(repoRoot(), 'examples', 'tiny-llama');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');
const ACTORDER = 'llmc__e2e__recipes__actorder__recipe_w4a16_actorder_weight.yaml';
const SMOOTHQUANT_W8A8 = 'llmc__llmcompressor__transformers__compression__recipes__smoothquant_gptq_w8a8.yaml';
const KV_CACHE = 'llmc__e2e__recipes__kv_cache__default.yaml';

interface HeaderTensor {
  name: string;
  shape: number[];
  bytes: number;
}

/** Every tensor of the example, from its shards' headers (u64 little-endian length, then JSON). */
function exampleTensors(): HeaderTensor[] {
  const tensors: HeaderTensor[] = [];
  for (const file of readdirSync(EXAMPLE).filter((f) => f.endsWith('.safetensors'))) {
    const fd = openSync(join(EXAMPLE, file), 'r');
    try {
      const prefix = Buffer.alloc(8);
      readSync(fd, prefix, 0, 8, 0);
      const length = Number(prefix.readBigUInt64LE(0));
      const header = Buffer.alloc(length);
      readSync(fd, header, 0, length, 8);
      const json = JSON.parse(header.toString('utf8')) as Record<string, { shape: number[]; data_offsets: [number, number] }>;
      for (const [name, t] of Object.entries(json)) if (name !== '__metadata__') tensors.push({ name, shape: t.shape, bytes: t.data_offsets[1] - t.data_offsets[0] });
    } finally {
      closeSync(fd);
    }
  }
  return tensors;
}

/** Linear layers of the example: 2-D `.weight` tensors that are not the embedding. */
function exampleLinears(tensors: readonly HeaderTensor[]): { name: string; out: number; in: number; bytes: number }[] {
  return tensors
    .filter((t) => t.name.endsWith('.weight') && t.shape.length === 2 && !t.name.includes('embed_tokens'))
    .map((t) => ({ name: t.name.slice(0, -'.weight'.length), out: t.shape[0]!, in: t.shape[1]!, bytes: t.bytes }));
}

function recipeOf(preview: RecipePreview): Extract<RecipePreview, { isRecipe: true }> {
  assert.ok(preview.isRecipe, preview.isRecipe ? '' : preview.reason);
  return preview;
}

describe('recipe preview view model (real recipes, the shipped example)', () => {
  let model: ModelLayers;
  let tensors: HeaderTensor[];

  before(async function () {
    if (!existsSync(join(EXAMPLE, 'model.safetensors.index.json'))) throw new Error(`${EXAMPLE} is missing: run \`npm run example\` first`);
    model = await modelLayersFromCheckpoint(EXAMPLE);
    tensors = exampleTensors();
  });

  it('summarises the GPTQ act-order recipe in words, with targets, ignore and the lines they are on', () => {
    const text = fixture(ACTORDER);
    const preview = recipeOf(buildRecipePreview(text, { fileName: ACTORDER }));
    assert.equal(preview.resolved, undefined, 'no model, no layer map');
    assert.equal(preview.stages.length, 1);
    const [stage] = preview.stages;
    assert.equal(stage!.name, 'quant_stage');
    assert.equal(stage!.line, 0);
    const [gptq] = stage!.modifiers;
    assert.equal(gptq!.type, 'GPTQModifier');
    assert.equal(gptq!.group, 'quant_modifiers');
    assert.match(text.split('\n')[gptq!.line]!, /^\s+GPTQModifier:/);
    assert.equal(gptq!.schemes.length, 1);
    assert.equal(gptq!.schemes[0]!.description, 'INT4 weights, group 128, symmetric, GPTQ act-order static, dampening 0.01');
    assert.deepEqual(gptq!.schemes[0]!.targets, ['Linear']);
    assert.match(text.split('\n')[gptq!.schemes[0]!.line]!, /group_0:/);
    assert.deepEqual(gptq!.ignore, ['lm_head', 're:.*vision_tower.*', 're:.*multi_modal_projector.*', 're:.*visual.*', 're:.*vision_model.*']);
    assert.deepEqual(preview.diagnostics, []);

    // The words follow the recipe: dampening and activation ordering as written.
    const edited = text.replace('actorder: "weight"', 'actorder: "weight"\n      dampening_frac: 0.1');
    assert.equal(recipeOf(buildRecipePreview(edited, { fileName: ACTORDER })).stages[0]!.modifiers[0]!.schemes[0]!.description, 'INT4 weights, group 128, symmetric, GPTQ act-order static, dampening 0.1');
    const dynamicOrder = text.replace('actorder: "weight"', 'actorder: "group"');
    assert.equal(recipeOf(buildRecipePreview(dynamicOrder, { fileName: ACTORDER })).stages[0]!.modifiers[0]!.schemes[0]!.description, 'INT4 weights, group 128, symmetric, GPTQ act-order dynamic, dampening 0.01');
  });

  it('resolves it on the example: 28 layers INT4, lm_head ignored, and the output size of the packed layout', () => {
    const preview = recipeOf(buildRecipePreview(fixture(ACTORDER), { fileName: ACTORDER, model }));
    const resolved = preview.resolved!;
    const linears = exampleLinears(tensors);
    assert.equal(linears.length, 29);
    assert.deepEqual(resolved.counts, { total: 29, quantized: 28, ignored: 1, unmatched: 0, indivisible: 0 });
    assert.deepEqual(resolved.layers.map((l) => l.name).sort(), linears.map((l) => l.name).sort());
    const head = resolved.layers.find((l) => l.name === 'lm_head')!;
    assert.equal(head.state, 'ignored');
    assert.equal(head.ignoredBy, 'lm_head');
    for (const l of resolved.layers.filter((x) => x.name !== 'lm_head')) {
      assert.equal(l.state, 'quantized', l.name);
      assert.equal(l.scheme, 'INT4 g128 sym');
      assert.equal(l.format, 'pack-quantized');
      assert.deepEqual(l.algorithms, ['GPTQ']);
    }
    // Model-aware checks: the vision ignore entries match nothing in a text-only Llama (warnings, on line 4).
    assert.equal(preview.errors, 0);
    assert.equal(preview.warnings, 4);
    for (const d of preview.diagnostics) {
      assert.equal(d.range.start.line, 3);
      assert.match(d.message, /matches no module of the model/);
    }

    // Independent size: int32-packed 4-bit values [out, in/8], bf16 scales [out, in/128], weight_shape (2 × i64).
    const input = tensors.reduce((sum, t) => sum + t.bytes, 0);
    let expected = input;
    for (const l of linears) {
      if (l.name === 'lm_head') continue;
      expected += l.out * (l.in / 8) * 4 + l.out * (l.in / 128) * 2 + 16 - l.bytes;
    }
    assert.equal(resolved.size.inputBytes, input);
    assert.equal(resolved.size.estimatedBytes, expected);
    const quantizedLinear = linears.filter((l) => l.name !== 'lm_head');
    const before = linears.reduce((s, l) => s + l.bytes, 0);
    assert.equal(resolved.size.linearOriginalBytes, before);
    assert.equal(resolved.size.linearEstimatedBytes, before - quantizedLinear.reduce((s, l) => s + l.bytes - (l.out * (l.in / 8) * 4 + l.out * (l.in / 128) * 2 + 16), 0));
  });

  it('summarises SmoothQuant and resolves W8A8 (int8 values, per-channel bf16 scales, dynamic activations)', () => {
    const preview = recipeOf(buildRecipePreview(fixture(SMOOTHQUANT_W8A8), { fileName: SMOOTHQUANT_W8A8, model }));
    const [smooth, gptq] = preview.stages[0]!.modifiers;
    assert.equal(smooth!.kind, 'other');
    assert.equal(smooth!.headline, 'SmoothQuant, strength 0.8, 2 mappings');
    assert.equal(gptq!.schemes[0]!.description, 'INT8 weights, per channel, symmetric, INT8 activations per token, dynamic, GPTQ act-order static, dampening 0.01');
    assert.deepEqual(gptq!.targets, ['Linear']);
    const resolved = preview.resolved!;
    assert.deepEqual(resolved.counts, { total: 29, quantized: 28, ignored: 1, unmatched: 0, indivisible: 0 });
    for (const l of resolved.layers.filter((x) => x.state === 'quantized')) assert.deepEqual([...l.algorithms].sort(), ['GPTQ', 'SmoothQuant'], l.name);
    const input = tensors.reduce((sum, t) => sum + t.bytes, 0);
    const expected = exampleLinears(tensors)
      .filter((l) => l.name !== 'lm_head')
      .reduce((total, l) => total - l.bytes + l.out * l.in + l.out * 2, input);
    assert.equal(resolved.size.estimatedBytes, expected);
  });

  it('flags the layers whose in-features group_size does not divide, and the validator blocks Run', () => {
    const text = fixture(ACTORDER).replace('group_size: 128', 'group_size: 512');
    const preview = recipeOf(buildRecipePreview(text, { fileName: ACTORDER, model }));
    const resolved = preview.resolved!;
    // in_features 768 (down_proj) is not a multiple of 512; 256 is narrower than one group (not checked).
    const expected = exampleLinears(tensors).filter((l) => l.name !== 'lm_head' && l.in >= 512 && l.in % 512 !== 0).map((l) => l.name).sort();
    assert.deepEqual(expected, [0, 1, 2, 3].map((i) => `model.layers.${i}.mlp.down_proj`));
    assert.equal(resolved.counts.indivisible, 4);
    assert.deepEqual(resolved.layers.filter((l) => l.indivisibleGroupSize === 512).map((l) => l.name).sort(), expected);
    const errors = preview.diagnostics.filter((d) => d.severity === 'error');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'group-size-indivisible');
    assert.match(text.split('\n')[errors[0]!.range.start.line]!, /group_size: 512/);
    const run = runAvailability(preview, { model: EXAMPLE, trusted: true });
    assert.equal(run.enabled, false);
    assert.deepEqual(run.reasons, ['The recipe has 1 error: fix it first.']);
    const page = queryPreviewLayers(resolved.layers, { filter: '', state: 'indivisible', offset: 0, limit: 100 });
    assert.deepEqual(page.rows.map((r) => r.name).sort(), expected);
  });

  it('withholds the layer map and size while the recipe has errors that change what it quantizes', () => {
    // An unknown preset: validation fails, and a map built from the rest would show every layer unmatched.
    const text = 'quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      ignore: ["lm_head"]\n      scheme: W4A61\n      targets: ["Linear"]\n';
    const preview = recipeOf(buildRecipePreview(text, { fileName: 'recipe.yaml', model }));
    const errors = preview.diagnostics.filter((d) => d.severity === 'error');
    assert.ok(errors.length >= 1 && errors.some((d) => d.code === 'unknown-preset'), JSON.stringify(preview.diagnostics));
    assert.equal(preview.errors, errors.length);
    assert.equal(preview.resolved, undefined);
    assert.match(preview.layerMapWithheld ?? '', new RegExp(`^Not computed: with ${errors.length} errors? in the recipe`));
    // Without a model there is nothing to withhold.
    assert.equal(recipeOf(buildRecipePreview(text, { fileName: 'recipe.yaml' })).layerMapWithheld, undefined);
  });

  it('pages and filters the layer table', () => {
    const layers = recipeOf(buildRecipePreview(fixture(ACTORDER), { fileName: ACTORDER, model })).resolved!.layers;
    assert.equal(queryPreviewLayers(layers, { filter: 're:\\.mlp\\.', state: '', offset: 0, limit: 100 }).total, 12);
    assert.deepEqual(queryPreviewLayers(layers, { filter: '', state: 'ignored', offset: 0, limit: 100 }).rows.map((r) => r.name), ['lm_head']);
    const page = queryPreviewLayers(layers, { filter: 'PROJ', state: 'quantized', offset: 20, limit: 5 });
    assert.equal(page.total, 28);
    assert.equal(page.offset, 20);
    assert.equal(page.rows.length, 5);
    assert.deepEqual(page.rows, layers.filter((l) => l.name.includes('proj')).slice(20, 25));
    const bad = queryPreviewLayers(layers, { filter: 're:(', state: '', offset: 0, limit: 10 });
    assert.match(bad.filterError ?? '', /invalid regular expression/);
  });

  it('describes the KV cache and the attention modules it applies to', () => {
    const preview = recipeOf(buildRecipePreview(fixture(KV_CACHE), { fileName: KV_CACHE, model }));
    assert.equal(preview.stages[0]!.modifiers[0]!.kvCache, 'FP8 KV cache per tensor, static');
    const attention = new Set(tensors.map((t) => t.name.match(/^(model\.layers\.\d+\.self_attn)\./)?.[1]).filter(Boolean));
    assert.deepEqual(preview.resolved!.kvCache, { description: 'FP8 KV cache per tensor, static', modules: attention.size });
    assert.equal(preview.resolved!.counts.quantized, 0);
  });

  it('reads every real recipe: each stage and modifier points at its own line, schemes are in words', () => {
    for (const name of readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml'))) {
      const text = fixture(name);
      const lines = text.split('\n');
      const preview = recipeOf(buildRecipePreview(text, { fileName: name, model }));
      assert.ok(preview.stages.length > 0, name);
      for (const stage of preview.stages) {
        assert.match(lines[stage.line]!, new RegExp(`^${stage.name}:`), `${name}: stage ${stage.name}`);
        for (const m of stage.modifiers) {
          assert.match(lines[m.line]!, new RegExp(`^\\s+${m.type}:`), `${name}: ${m.type}`);
          for (const s of m.schemes) assert.match(s.description, /^(INT|FP)\d+ (weights|activations)/, `${name}: ${s.description}`);
        }
      }
      for (const d of preview.diagnostics) assert.ok(d.range.start.line < lines.length, `${name}: ${d.message}`);
      // One sparseml-era recipe has an error (a retired field): its map is withheld, the others resolve.
      if (preview.layerMapWithheld !== undefined) assert.ok(preview.errors > 0 && preview.resolved === undefined, name);
      else assert.equal(preview.resolved!.counts.total, preview.resolved!.layers.length);
    }
  });

  it('says clearly when a YAML file is not a recipe', () => {
    const compose = 'services:\n  web:\n    image: nginx\n';
    const preview = buildRecipePreview(compose, { fileName: '/w/docker-compose.yml' });
    assert.equal(preview.isRecipe, false);
    assert.match(preview.isRecipe ? '' : preview.reason, /^docker-compose\.yml is not an llm-compressor recipe: a recipe has top-level `<name>_stage:` keys/);
    assert.equal(buildRecipePreview('{}', { fileName: 'config.json' }).isRecipe, false);
    // Recognised by content whatever the name …
    assert.equal(buildRecipePreview(fixture(ACTORDER), { fileName: '/w/int4.yaml' }).isRecipe, true);
    // … and a file called recipe.yaml that is broken still previews, with its errors.
    const broken = recipeOf(buildRecipePreview('quant_stage: [1, 2]\n', { fileName: '/w/recipe.yaml' }));
    assert.ok(broken.errors > 0 || broken.warnings > 0);
    assert.ok(!runAvailability(broken, { model: EXAMPLE, trusted: true }).enabled);
  });

  it('Run is available only for a valid recipe, a readable model and a trusted workspace, and says why not', () => {
    const preview = buildRecipePreview(fixture(ACTORDER), { fileName: ACTORDER, model });
    assert.deepEqual(runAvailability(preview, { model: EXAMPLE, trusted: true }), { enabled: true, reasons: [] });
    const untrusted = runAvailability(preview, { model: EXAMPLE, trusted: false });
    assert.equal(untrusted.enabled, false);
    assert.match(untrusted.reasons[0]!, /not trusted.*trust the workspace/);
    assert.deepEqual(runAvailability(preview, { trusted: true }).reasons, ['Choose a model to quantize.']);
    assert.match(runAvailability(preview, { model: '/nowhere', modelError: 'ENOENT', trusted: true }).reasons[0]!, /model cannot be read: ENOENT/);
    assert.deepEqual(runAvailability({ isRecipe: false, reason: 'x' }, { model: EXAMPLE, trusted: true }).reasons, ['This file is not an llm-compressor recipe.']);
  });
});
