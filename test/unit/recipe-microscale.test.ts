// Recipes and quantization configs naming the 2026 schemes: the presets compressed-tensors defines
// (quant_scheme.py), strategies block and tensor_group with their fields, the microscale save-time rules
// (mxfp_utils.py, compressors/nvfp4) and llm-compressor's fused NVFP4 global scales (observers/helpers.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLayers, validateQuantizationConfig, validateRecipe } from '../../src/core/recipe';
import { repoRoot } from '../helpers/paths';

const recipe = (body: string) => `quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n${body.replace(/^/gm, '      ')}\n`;
const codes = (text: string, model?: ModelLayers) => validateRecipe(text, model ? { model } : {}).map((d) => `${d.severity}:${d.code}`);

/** A 2-layer Llama with its linear layers (hidden 64, intermediate 128). */
function llama(): ModelLayers {
  const layers: { name: string; className: string; inFeatures: number; outFeatures: number }[] = [];
  for (let l = 0; l < 2; l++) {
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) layers.push({ name: `model.layers.${l}.self_attn.${p}`, className: 'Linear', inFeatures: 64, outFeatures: 64 });
    layers.push({ name: `model.layers.${l}.mlp.gate_proj`, className: 'Linear', inFeatures: 64, outFeatures: 128 }, { name: `model.layers.${l}.mlp.up_proj`, className: 'Linear', inFeatures: 64, outFeatures: 128 }, { name: `model.layers.${l}.mlp.down_proj`, className: 'Linear', inFeatures: 128, outFeatures: 64 });
  }
  layers.push({ name: 'lm_head', className: 'Linear', inFeatures: 64, outFeatures: 32 });
  return { layers, modules: layers.map((l) => l.name), dtypeBytes: 2 };
}

describe('recipes and configs with FP8 blocks, NVFP4 and MX schemes', () => {
  for (const preset of ['FP8_BLOCK', 'NVFP4', 'NVFP4A16', 'MXFP4', 'MXFP4A16', 'MXFP8', 'MXFP8A16']) {
    it(`scheme: ${preset} validates with no diagnostics, with and without a model`, () => {
      const text = recipe(`targets: [Linear]\nignore: [lm_head]\nscheme: ${preset}`);
      assert.deepEqual(codes(text), []);
      assert.deepEqual(codes(text, llama()), []);
    });
  }

  it('strategy block needs block_structure; tensor_group needs group_size; dynamic "local" only with tensor_group', () => {
    const group = (weights: string, activations = '') =>
      recipe(`config_groups:\n  g:\n    targets: [Linear]\n    weights: {${weights}}${activations ? `\n    input_activations: {${activations}}` : ''}`);
    assert.deepEqual(codes(group('num_bits: 8, type: float, strategy: block, block_structure: [128, 128]', 'num_bits: 8, type: float, strategy: group, group_size: 128, dynamic: true')), []);
    assert.deepEqual(codes(group('num_bits: 8, type: float, strategy: block, block_structure: "128x128"')), []);
    assert.deepEqual(codes(group('num_bits: 8, type: float, strategy: block')), ['error:invalid-scheme']);
    assert.deepEqual(codes(group('num_bits: 4, type: float, strategy: tensor_group, scale_dtype: float8_e4m3fn')), ['error:invalid-scheme']);
    assert.deepEqual(codes(group('num_bits: 4, type: float, strategy: tensor_group, group_size: 16, scale_dtype: float8_e4m3fn', 'num_bits: 4, type: float, strategy: tensor_group, group_size: 16, dynamic: local')), []);
    assert.deepEqual(codes(group('num_bits: 4, type: float, strategy: group, group_size: 16', 'num_bits: 4, type: float, strategy: group, group_size: 16, dynamic: local')), ['error:invalid-scheme']);
    assert.deepEqual(codes(group('num_bits: 8, type: float, strategy: group, group_size: 128', 'num_bits: 8, type: float, strategy: block, block_structure: [1, 128]')), ['error:invalid-scheme']);
  });

  it('FP4 in groups of 32 without scale_dtype uint8 warns that the MX scales would be truncated; NVFP4 scales other than FP8 warn', () => {
    const group = (weights: string) => recipe(`config_groups:\n  g:\n    targets: [Linear]\n    weights: {${weights}}`);
    assert.deepEqual(codes(group('num_bits: 4, type: float, strategy: group, group_size: 32')), ['warning:mx-scale-dtype']);
    assert.deepEqual(codes(group('num_bits: 4, type: float, strategy: group, group_size: 32, scale_dtype: uint8')), []);
    assert.deepEqual(codes(group('num_bits: 4, type: float, strategy: tensor_group, group_size: 16, scale_dtype: bfloat16')), ['warning:nvfp4-scale-dtype']);
    const message = validateRecipe(group('num_bits: 4, type: float, strategy: group, group_size: 32'))[0]!.message;
    assert.match(message, /scale_dtype: uint8/);
  });

  it('NVFP4 on q_proj but not on its fused k_proj / v_proj stops llm-compressor: an error naming the set', () => {
    const text = recipe(`config_groups:\n  nvfp4:\n    targets: ["re:.*q_proj$", "re:.*mlp.*"]\n    weights: {num_bits: 4, type: float, strategy: tensor_group, group_size: 16, scale_dtype: float8_e4m3fn}\nignore: [lm_head]`);
    const diagnostics = validateRecipe(text, { model: llama() });
    assert.deepEqual(diagnostics.map((d) => d.code), ['fused-global-scale']);
    assert.match(diagnostics[0]!.message, /model\.layers\.0\.self_attn\.q_proj, model\.layers\.0\.self_attn\.k_proj, model\.layers\.0\.self_attn\.v_proj/);
    assert.match(diagnostics[0]!.message, /2 sets/);
    // Ignoring the whole set (or targeting all three) is what llm-compressor accepts.
    assert.deepEqual(codes(text.replace('"re:.*q_proj$"', '"re:.*[qkv]_proj$"'), llama()), []);
  });

  it('the upstream NVFP4 + FP8 mixed recipe validates against a model; a config.json with the new fields validates', () => {
    const upstream = readFileSync(join(repoRoot(), 'test', 'fixtures', 'recipes', 'llmc__e2e__recipes__non_uniform__recipe_nvfp4_fp8_mixed.yaml'), 'utf8');
    assert.deepEqual(codes(upstream, llama()), []);
    const config = {
      quant_method: 'compressed-tensors',
      format: 'mixed-precision',
      quantization_status: 'compressed',
      ignore: ['lm_head'],
      config_groups: {
        group_0: { format: 'float-quantized', targets: ['re:.*down_proj$'], weights: { num_bits: 8, type: 'float', strategy: 'block', block_structure: [128, 128], symmetric: true, dynamic: false }, input_activations: { num_bits: 8, type: 'float', strategy: 'group', group_size: 128, dynamic: true, symmetric: true } },
        group_1: { format: 'nvfp4-pack-quantized', targets: ['Linear'], weights: { num_bits: 4, type: 'float', strategy: 'tensor_group', group_size: 16, scale_dtype: 'torch.float8_e4m3fn', zp_dtype: null, symmetric: true, dynamic: false } },
        group_2: { format: 'mxfp8-quantized', targets: ['re:.*o_proj$'], weights: { num_bits: 8, type: 'float', strategy: 'group', group_size: 32, scale_dtype: 'torch.uint8', symmetric: true, dynamic: false } },
      },
    };
    assert.deepEqual(validateQuantizationConfig(JSON.stringify(config)).filter((d) => d.severity === 'error'), []);
  });
});
