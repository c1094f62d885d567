// A group size equal to a layer's input features gives one group per row: the scale tensor is [out, 1], the same
// shape per-channel scales have. Checkpoints written here by the quantize job (group 128 INT4 on 128-input layers,
// compressed-tensors and GPTQ layouts; MXFP4 / MXFP8 groups of 32 on 32-input layers; NVFP4 groups of 16 on
// 16-input layers) must read back as their config.json says, with no disagreement and "group N" in words; a
// checkpoint really quantized per channel whose config.json claims group 64 on 128-input layers must still be
// flagged on every such layer.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { OutputFormat, SchemeName, runQuantizeJob } from '../../src/core/jobs/quantize';
import { RawTensor, writeCheckpoint } from '../helpers/safetensorsBytes';
import { heavyTailedWeights, toBf16 } from '../helpers/weights';
import { tempDir } from '../helpers/paths';

/** A one-block BF16 Llama with hidden size h (the input features of q/k/v/o/gate/up) and MLP width n (down_proj's). */
function denseModel(dir: string, h: number, n: number): string {
  const tensors: RawTensor[] = [];
  let seed = 11;
  const bf16 = (name: string, shape: number[]) => tensors.push({ name, dtype: 'BF16', shape, bytes: toBf16(heavyTailedWeights(seed++, shape.reduce((a, b) => a * b, 1))).bytes });
  bf16('model.embed_tokens.weight', [32, h]);
  bf16('model.layers.0.input_layernorm.weight', [h]);
  bf16('model.layers.0.post_attention_layernorm.weight', [h]);
  for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) bf16(`model.layers.0.self_attn.${p}.weight`, [h, h]);
  bf16('model.layers.0.mlp.gate_proj.weight', [n, h]);
  bf16('model.layers.0.mlp.up_proj.weight', [n, h]);
  bf16('model.layers.0.mlp.down_proj.weight', [h, n]);
  bf16('model.norm.weight', [h]);
  bf16('lm_head.weight', [32, h]);
  writeCheckpoint(dir, tensors);
  const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: h, intermediate_size: n, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'bfloat16', rms_norm_eps: 1e-5 };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

async function layerMapOf(folder: string) {
  const checkpoint = await Checkpoint.open(folder);
  try {
    return await analyzeCheckpoint(checkpoint, folder);
  } finally {
    await checkpoint.close();
  }
}

const ONE_GROUP_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj'];

describe('scheme detection: a group size equal to in_features (one group per row) is not per-channel', function () {
  this.timeout(120_000);
  const tmp = tempDir('quantlens-one-group-');
  after(() => tmp.cleanup());

  const cases: { scheme: SchemeName; format?: OutputFormat; h: number; group: number; words: RegExp }[] = [
    { scheme: 'w4a16-rtn', h: 128, group: 128, words: /group 128/ },
    { scheme: 'w4a16-rtn', format: 'gptq', h: 128, group: 128, words: /group 128/ },
    { scheme: 'mxfp4a16', h: 32, group: 32, words: /MXFP4 weights, groups of 32/ },
    { scheme: 'mxfp8', h: 32, group: 32, words: /MXFP8 weights and activations, groups of 32/ },
    { scheme: 'nvfp4a16', h: 16, group: 16, words: /NVFP4 weights \(W4A16\), groups of 16/ },
  ];
  for (const { scheme, format, h, group, words } of cases) {
    it(`${scheme}${format ? ` (${format} layout)` : ''}: group ${group} on ${h}-input layers reads back as group ${group}, with no disagreement`, async () => {
      const model = denseModel(join(tmp.path, `${scheme}-${format ?? 'ct'}-in`), h, 2 * h);
      const out = join(tmp.path, `${scheme}-${format ?? 'ct'}-out`);
      await runQuantizeJob({ model, out, scheme, ...(format ? { format } : {}) });
      const { summary, layerMap } = await layerMapOf(out);
      assert.deepEqual(summary.scheme.disagreements, []);
      assert.deepEqual(layerMap.modules.flatMap((m) => m.issues.map((i) => `${m.name}: ${i}`)), []);
      assert.match(summary.scheme.description, words);
      for (const p of ONE_GROUP_PROJECTIONS) {
        const module = layerMap.modules.find((m) => m.name.endsWith(`.${p}`))!;
        assert.equal(module.state, 'quantized', module.name);
        assert.equal(module.observed?.groupSize, group, `${module.name}: ${JSON.stringify(module.observed)}`);
        assert.notEqual(module.observed?.strategy, 'channel', module.name);
      }
      // down_proj (2h inputs) has two groups per row: its scales are unambiguous.
      assert.equal(layerMap.modules.find((m) => m.name.endsWith('.down_proj'))!.observed?.strategy, scheme === 'nvfp4a16' ? 'tensor_group' : 'group');
    });
  }

  it('a per-channel checkpoint whose config.json claims group 64 is flagged on each 128-input layer; declared per-channel, nothing', async () => {
    const model = denseModel(join(tmp.path, 'channel-in'), 128, 256);
    const out = join(tmp.path, 'channel-out');
    const recipe = 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n      config_groups:\n        group_0:\n          targets: [Linear]\n          weights: {num_bits: 4, type: int, symmetric: true, strategy: channel}\n';
    await runQuantizeJob({ model, out, recipe: { text: recipe, path: 'channel.yaml' } });
    const asWritten = await layerMapOf(out);
    assert.deepEqual(asWritten.layerMap.modules.flatMap((m) => m.issues), []);
    assert.equal(asWritten.layerMap.modules.find((m) => m.name.endsWith('.q_proj'))!.observed?.strategy, 'channel');

    const configPath = join(out, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as { quantization_config: { config_groups: { group_0: { weights: Record<string, unknown> } } } };
    config.quantization_config.config_groups.group_0.weights = { ...config.quantization_config.config_groups.group_0.weights, strategy: 'group', group_size: 64 };
    writeFileSync(configPath, JSON.stringify(config));
    const { summary, layerMap } = await layerMapOf(out);
    const flagged = layerMap.modules.filter((m) => m.issues.length > 0);
    // Every quantized layer: the six 128-input ones (one scale per row, group 64 needs two) and down_proj (256 inputs).
    assert.deepEqual(flagged.map((m) => m.projection).sort(), [...ONE_GROUP_PROJECTIONS, 'down_proj'].sort());
    for (const m of flagged.filter((x) => x.projection !== 'down_proj')) assert.deepEqual(m.issues, ['config declares group scales, the scale tensor\'s shape is channel'], m.name);
    assert.equal(summary.scheme.disagreements.length, 1);
    assert.match(summary.scheme.disagreements[0]!, /^7 layers disagree with config\.json/);
  });
});
