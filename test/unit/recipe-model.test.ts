import assert from 'node:assert/strict';
import { applyFix } from '../helpers/fixes';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLayers, modelLayersFromCheckpoint, quantizedBytes, resolveRecipe, validateRecipe } from '../../src/core/recipe';
import { presetScheme } from '../../src/core/quant/args';
import { rawSafetensors } from '../helpers/safetensorsBytes';
import { repoRoot, tempDir } from '../helpers/paths';

const HIDDEN = 64;
const INTERMEDIATE = 96;
const VOCAB = 100;

/** A 2-layer Llama-shaped bf16 checkpoint (hidden 64, intermediate 96: 96 is not a multiple of 64). */
function writeTinyLlama(dir: string, options: { tied?: boolean } = {}): void {
  const tensors: [string, number[]][] = [['model.embed_tokens.weight', [VOCAB, HIDDEN]]];
  for (let l = 0; l < 2; l++) {
    const p = `model.layers.${l}`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) tensors.push([`${p}.self_attn.${proj}.weight`, [HIDDEN, HIDDEN]]);
    tensors.push([`${p}.mlp.gate_proj.weight`, [INTERMEDIATE, HIDDEN]], [`${p}.mlp.up_proj.weight`, [INTERMEDIATE, HIDDEN]], [`${p}.mlp.down_proj.weight`, [HIDDEN, INTERMEDIATE]]);
    tensors.push([`${p}.input_layernorm.weight`, [HIDDEN]], [`${p}.post_attention_layernorm.weight`, [HIDDEN]]);
  }
  tensors.push(['model.norm.weight', [HIDDEN]]);
  if (!options.tied) tensors.push(['lm_head.weight', [VOCAB, HIDDEN]]);
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.safetensors'), rawSafetensors(JSON.stringify(header), new Uint8Array(offset)));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], hidden_size: HIDDEN, intermediate_size: INTERMEDIATE, num_hidden_layers: 2, vocab_size: VOCAB, torch_dtype: 'bfloat16', tie_word_embeddings: options.tied === true }));
}

const recipe = (fields: string) => `quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n${fields.replace(/^/gm, '      ')}\n`;

describe('recipes against a model (checkpoint layers)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let model: ModelLayers;

  before(async () => {
    tmp = tempDir('quantlens-recipe-');
    writeTinyLlama(join(tmp.path, 'llama'));
    writeTinyLlama(join(tmp.path, 'tied'), { tied: true });
    model = await modelLayersFromCheckpoint(join(tmp.path, 'llama'));
  });
  after(() => tmp.cleanup());

  it('reads linear layers with their input features, and every module name, from headers', async () => {
    const byName = new Map(model.layers.map((l) => [l.name, l]));
    assert.equal(model.layers.filter((l) => l.className === 'Linear').length, 15);
    assert.deepEqual(byName.get('model.layers.1.mlp.down_proj'), { name: 'model.layers.1.mlp.down_proj', className: 'Linear', inFeatures: 96, outFeatures: 64 });
    assert.equal(byName.get('model.layers.0.self_attn.q_proj')?.inFeatures, 64);
    assert.equal(byName.get('lm_head')?.outFeatures, VOCAB);
    assert.equal(byName.get('model.embed_tokens')?.className, 'Embedding');
    for (const name of ['model', 'model.layers.0', 'model.layers.0.input_layernorm', 'model.norm', 'model.layers.1.self_attn']) assert.ok(model.modules.includes(name), name);
    assert.equal(model.dtypeBytes, 2);
    assert.ok(model.totalBytes! > 0 && model.linearBytes! > 0 && model.linearBytes! < model.totalBytes!);

    const tied = await modelLayersFromCheckpoint(join(tmp.path, 'tied'));
    const head = tied.layers.find((l) => l.name === 'lm_head');
    assert.ok(head?.tied, 'a tied lm_head is still a Linear module of the model');
    assert.deepEqual(validateRecipe(recipe('ignore: [lm_head]\nscheme: W8A8'), { model: tied }), []);
  });

  it('names the layers whose input features group_size does not divide', () => {
    const text = recipe('ignore: [lm_head]\nconfig_groups:\n  group_0:\n    targets: [Linear]\n    weights: {num_bits: 4, strategy: group, group_size: 64}');
    const d = validateRecipe(text, { model });
    assert.equal(d.length, 1);
    assert.equal(d[0]!.code, 'group-size-indivisible');
    const line = text.split('\n').findIndex((l) => l.includes('group_size: 64'));
    const col = text.split('\n')[line]!.indexOf('64}');
    assert.deepEqual(d[0]!.range, { start: { line, character: col }, end: { line, character: col + 2 } });
    assert.match(d[0]!.message, /group_size 64.*2 targeted layers: model\.layers\.0\.mlp\.down_proj \(in_features 96\), model\.layers\.1\.mlp\.down_proj \(in_features 96\)/);
    assert.match(d[0]!.message, /ignore/);
    // Ignoring them, or bypassing the check, clears it; layers narrower than a group are not checked.
    assert.deepEqual(validateRecipe(text.replace('ignore: [lm_head]', 'ignore: [lm_head, "re:.*down_proj$"]'), { model }), []);
    assert.deepEqual(validateRecipe(text.replace('ignore: [lm_head]', 'ignore: [lm_head]\n      bypass_divisibility_checks: true'), { model }), []);
    assert.deepEqual(validateRecipe(recipe('ignore: [lm_head]\nscheme: W4A16'), { model }), [], 'W4A16 group 128 is wider than every layer here');
    const preset = validateRecipe(recipe('ignore: [lm_head]\nscheme: MXFP4A16'), { model });
    assert.deepEqual(preset.map((x) => x.code), []);
    const gs32 = recipe('ignore: [lm_head]\nscheme: {W4A16: [Linear]}');
    assert.deepEqual(validateRecipe(gs32, { model }), []);
  });

  it('warns for targets and ignore entries that match nothing, with the fix', () => {
    const text = recipe('ignore: [lm_haed, model.layers.7.mlp.down_proj, LlamaRMSNorm]\nconfig_groups:\n  group_0:\n    targets: ["re:q_proj$", "re:.*mlp$"]\n    weights: {num_bits: 8, strategy: channel}');
    const d = validateRecipe(text, { model });
    const byCode = (code: string) => d.filter((x) => x.code === code);
    const missing = byCode('no-match');
    assert.equal(missing.length, 3, d.map((x) => x.message).join(' | '));
    const typo = missing.find((x) => x.message.includes('lm_haed'))!;
    assert.match(typo.message, /did you mean lm_head/);
    assert.match(applyFix(text, typo.fix!), /ignore: \[lm_head,/);
    const absent = missing.find((x) => x.message.includes('layers.7'))!;
    assert.match(absent.message, /matches no module/);
    const anchored = missing.find((x) => x.message.includes('q_proj'))!;
    assert.match(anchored.message, /re\.match.*re:\.\*q_proj\$/);
    const fixed = applyFix(text, anchored.fix!);
    assert.match(fixed, /"re:\.\*q_proj\$"/);
    assert.equal(validateRecipe(fixed, { model }).filter((x) => x.message.includes('q_proj')).length, 0);
    const notLinear = byCode('no-linear-match');
    assert.equal(notLinear.length, 1);
    assert.match(notLinear[0]!.message, /re:\.\*mlp\$.*no Linear layer/);
    assert.ok(!d.some((x) => x.message.includes('LlamaRMSNorm')), 'class names QuantLens cannot see are not flagged');
    assert.ok(d.every((x) => x.severity === 'warning'));
  });

  it('checks SmoothQuant and AWQ mappings against module names (norms included)', () => {
    const ok = 'q_stage:\n  q_modifiers:\n    SmoothQuantModifier:\n      mappings:\n        - [["re:.*q_proj", "re:.*k_proj"], "re:.*input_layernorm"]\n    AWQModifier:\n      mappings:\n        - smooth_layer: "re:.*post_attention_layernorm$"\n          balance_layers: ["re:.*gate_proj$", "re:.*up_proj$"]\n    GPTQModifier: {scheme: W8A8, ignore: [lm_head]}\n';
    assert.deepEqual(validateRecipe(ok, { model }), []);
    const bad = ok.replace('re:.*input_layernorm', 're:.*input_layrnorm').replace('re:.*up_proj$', 're:.*upproj$');
    const d = validateRecipe(bad, { model });
    assert.deepEqual(d.map((x) => x.code), ['no-match', 'no-match']);
  });

  it('every current real recipe validates against the model without errors', () => {
    const dir = join(repoRoot(), 'test', 'fixtures', 'recipes');
    for (const f of ['llmc__e2e__recipes__non_uniform__recipe_gptq_awq.yaml', 'llmc__e2e__recipes__FP8__recipe_fp8_dynamic.yaml', 'llmc__llmcompressor__transformers__compression__recipes__smoothquant_gptq_w8a8.yaml']) {
      const d = validateRecipe(readFileSync(join(dir, f), 'utf8'), { model });
      assert.deepEqual(d.filter((x) => x.severity === 'error').map((x) => x.message), [], f);
    }
  });

  it('resolves a recipe to per-layer schemes and an estimated size', () => {
    const text = readFileSync(join(repoRoot(), 'test', 'fixtures', 'recipes', 'llmc__e2e__recipes__non_uniform__recipe_gptq_awq.yaml'), 'utf8');
    const plan = resolveRecipe(text, model);
    assert.deepEqual(plan.modifiers.map((m) => m.type), ['AWQModifier', 'QuantizationModifier', 'GPTQModifier']);
    const layer = (name: string) => plan.layers.find((l) => l.name === name)!;
    const q = layer('model.layers.0.self_attn.q_proj');
    assert.equal(q.state, 'quantized');
    assert.equal(q.modifier, 'QuantizationModifier');
    assert.equal(q.format, 'pack-quantized');
    assert.equal(q.scheme?.weights?.numBits, 4);
    const down = layer('model.layers.1.mlp.down_proj');
    assert.equal(down.modifier, 'GPTQModifier');
    assert.equal(down.format, 'int-quantized');
    assert.ok(down.algorithms.includes('GPTQ'));
    assert.equal(layer('lm_head').state, 'ignored');
    assert.equal(layer('lm_head').ignoredBy, 'lm_head');
    assert.equal(layer('model.embed_tokens').state, 'untouched');
    assert.deepEqual(plan.counts, { quantized: 14, ignored: 1, untouched: 1 });
    // W4A16 (group 128) on a 64×64 layer: 64 rows × 8 int32 words + weight_shape, and one bf16 scale per row.
    assert.equal(q.originalBytes, 64 * 64 * 2);
    assert.equal(q.estimatedBytes, 64 * 8 * 4 + 16 + 64 * 2);
    assert.equal(quantizedBytes({ inFeatures: 64, outFeatures: 64 }, presetScheme('W4A16')!, 2), 2192);
    assert.ok(plan.size.originalBytes !== undefined && plan.size.estimatedBytes !== undefined);
    assert.equal(plan.size.originalBytes, model.totalBytes);
    assert.ok(plan.size.estimatedBytes! < plan.size.originalBytes! * 0.7, `${plan.size.estimatedBytes} vs ${plan.size.originalBytes}`);
  });

  it('later quantization modifiers override earlier ones; KV cache modules are listed', () => {
    const text = 'q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      scheme: W8A16\n      ignore: [lm_head]\n      kv_cache_scheme: {num_bits: 8, type: float, strategy: tensor}\n    GPTQModifier:\n      scheme: W4A16\n      targets: ["re:.*self_attn.*"]\n';
    const plan = resolveRecipe(text, model);
    assert.deepEqual(plan.diagnostics, []);
    const q = plan.layers.find((l) => l.name === 'model.layers.0.self_attn.q_proj')!;
    assert.equal(q.modifier, 'GPTQModifier');
    assert.equal(q.scheme?.weights?.numBits, 4);
    assert.equal(q.scheme?.weights?.actorder, 'weight', 'GPTQ applies its default static (weight) activation ordering');
    assert.equal(plan.layers.find((l) => l.name === 'model.layers.0.mlp.up_proj')!.scheme?.weights?.numBits, 8);
    assert.deepEqual(plan.kvCache?.modules, ['model.layers.0.self_attn', 'model.layers.1.self_attn']);
  });
});
