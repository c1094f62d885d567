import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { DType } from '../../src/core/dtypes/dtype';
import type { CheckpointTensor } from '../../src/core/safetensors/checkpoint';
import { buildLayerMap } from '../../src/core/checkpoint/scheme';
import { vectorsDir } from '../helpers/paths';

/** Header-level tensor records (no data is needed for scheme detection). */
function tensors(list: [string, DType, number[]][]): CheckpointTensor[] {
  let offset = 0;
  return list.map(([name, dtype, shape]) => {
    const t = { name, dtype, shape, numel: shape.reduce((a, b) => a * b, 1), dataOffsets: [offset, offset] as [number, number], byteLength: 0, fileOffset: offset, shard: 'model.safetensors' };
    offset++;
    return t;
  });
}

const H = 256;
const I = 768;
const PROJ: [string, number, number][] = [
  ['self_attn.q_proj', H, H],
  ['self_attn.k_proj', 128, H],
  ['self_attn.v_proj', 128, H],
  ['self_attn.o_proj', H, H],
  ['mlp.gate_proj', I, H],
  ['mlp.up_proj', I, H],
  ['mlp.down_proj', H, I],
];

function model(layers: number, perLinear: (name: string, out: number, inF: number) => [string, DType, number[]][], lmHead: [string, DType, number[]][] = [['lm_head.weight', 'BF16', [1000, H]]]) {
  const list: [string, DType, number[]][] = [['model.embed_tokens.weight', 'BF16', [1000, H]]];
  for (let l = 0; l < layers; l++) {
    list.push([`model.layers.${l}.input_layernorm.weight`, 'BF16', [H]]);
    for (const [p, out, inF] of PROJ) list.push(...perLinear(`model.layers.${l}.${p}`, out, inF));
  }
  list.push(['model.norm.weight', 'BF16', [H]], ...lmHead);
  return tensors(list);
}

describe('scheme detection and layer map', () => {
  it('unquantized bf16: every linear layer unquantized, no config scheme', () => {
    const map = buildLayerMap(model(2, (n, o, i) => [[`${n}.weight`, 'BF16', [o, i]]]), undefined, { numHiddenLayers: 2, tieWordEmbeddings: false, hasConfig: true });
    assert.equal(map.scheme.family, 'unquantized');
    assert.equal(map.scheme.description, 'Unquantized bf16 checkpoint');
    assert.deepEqual(map.counts, { quantized: 0, ignored: 0, unquantized: 15, missing: 0, elsewhere: 0 });
  });

  it('AutoFP8 static (Llama-3-8B-Instruct-FP8 layout): FP8 weights and activations, per-tensor static scales, lm_head not quantized', () => {
    const fp8 = JSON.parse(readFileSync(vectorsDir('configs', 'autofp8_config.json'), 'utf8')).quantization_config_static;
    const map = buildLayerMap(
      model(2, (n, o, i) => [[`${n}.weight`, 'F8_E4M3', [o, i]], [`${n}.weight_scale`, 'F32', []], [`${n}.input_scale`, 'F32', []]]),
      fp8,
      { numHiddenLayers: 2, tieWordEmbeddings: false, hasConfig: true },
    );
    assert.equal(map.scheme.family, 'fp8');
    assert.equal(map.scheme.description, 'FP8 weights and activations, per-tensor static scales, lm_head not quantized');
    assert.deepEqual(map.counts, { quantized: 14, ignored: 1, unquantized: 0, missing: 0, elsewhere: 0 });
    assert.deepEqual(map.modules.flatMap((m) => m.issues), []);
  });

  it('compressed-tensors W8A8 int-quantized: INT8 weights per channel, INT8 activations per token (dynamic)', () => {
    const config = {
      quant_method: 'compressed-tensors',
      format: 'int-quantized',
      ignore: ['lm_head'],
      config_groups: {
        group_0: {
          targets: ['Linear'],
          weights: { num_bits: 8, type: 'int', symmetric: true, strategy: 'channel', dynamic: false },
          input_activations: { num_bits: 8, type: 'int', symmetric: true, strategy: 'token', dynamic: true },
        },
      },
    };
    const map = buildLayerMap(model(1, (n, o, i) => [[`${n}.weight`, 'I8', [o, i]], [`${n}.weight_scale`, 'BF16', [o, 1]]]), config, { numHiddenLayers: 1, tieWordEmbeddings: false, hasConfig: true });
    assert.equal(map.scheme.description, 'INT8 weights per channel, INT8 activations per token (dynamic), lm_head not quantized');
    assert.deepEqual(map.counts, { quantized: 7, ignored: 1, unquantized: 0, missing: 0, elsewhere: 0 });
    assert.deepEqual(map.modules.flatMap((m) => m.issues), []);
  });

  it('GPTQ v1, group 128, act-order: INT4 GPTQ, group 128, act-order, symmetric; shapes give bits and groups', () => {
    const config = { quant_method: 'gptq', bits: 4, group_size: 128, desc_act: true, sym: true };
    const map = buildLayerMap(
      model(1, (n, o, i) => [
        [`${n}.qweight`, 'I32', [(i * 4) / 32, o]],
        [`${n}.qzeros`, 'I32', [i / 128, (o * 4) / 32]],
        [`${n}.scales`, 'F16', [i / 128, o]],
        [`${n}.g_idx`, 'I32', [i]],
      ]),
      config,
      { numHiddenLayers: 1, tieWordEmbeddings: false, hasConfig: true },
    );
    assert.equal(map.scheme.description, 'INT4 GPTQ, group 128, act-order, symmetric, lm_head not quantized');
    const down = map.modules.find((m) => m.name.endsWith('down_proj'))!;
    assert.equal(down.observed?.bits, 4);
    assert.equal(down.observed?.groupSize, 128);
    assert.deepEqual(down.observed?.shape, [H, I]);
    assert.deepEqual(map.modules.flatMap((m) => m.issues), []);
  });

  it('flags disagreements: config says quantized but a layer is bf16, missing layers, a quantized layer no group targets', () => {
    const config = {
      quant_method: 'compressed-tensors',
      format: 'pack-quantized',
      ignore: ['re:.*lm_head'],
      config_groups: { group_0: { targets: ['re:.*self_attn\\..*'], weights: { num_bits: 4, strategy: 'group', group_size: 128 } } },
    };
    const list = model(1, (n, o, i) =>
      n.includes('self_attn') && !n.endsWith('o_proj')
        ? [[`${n}.weight_packed`, 'I32', [o, i / 8]], [`${n}.weight_scale`, 'BF16', [o, i / 128]], [`${n}.weight_shape`, 'I64', [2]]]
        : n.includes('mlp.up_proj')
          ? [[`${n}.weight_packed`, 'I32', [o, i / 8]], [`${n}.weight_scale`, 'BF16', [o, i / 128]], [`${n}.weight_shape`, 'I64', [2]]]
          : [[`${n}.weight`, 'BF16', [o, i]]],
    );
    const map = buildLayerMap(list, config, { numHiddenLayers: 2, tieWordEmbeddings: false, hasConfig: true });
    const byName = new Map(map.modules.map((m) => [m.name, m]));
    assert.match(byName.get('model.layers.0.self_attn.o_proj')!.issues[0]!, /config quantizes this layer, but its weight is BF16/);
    assert.match(byName.get('model.layers.0.mlp.up_proj')!.issues[0]!, /no config group targets this layer, but its weight is quantized/);
    assert.equal(byName.get('lm_head')!.state, 'ignored');
    assert.equal(map.counts.missing, 7, 'layer 1 is promised by num_hidden_layers but absent');
    assert.equal(map.scheme.disagreements.length, 2);
  });

  it('infers a scheme from tensors when config.json has no quantization_config', () => {
    const map = buildLayerMap(model(1, (n, o, i) => [[`${n}.weight`, 'F8_E4M3', [o, i]], [`${n}.weight_scale`, 'F32', []]]), undefined, { numHiddenLayers: 1, hasConfig: true });
    assert.equal(map.scheme.source, 'tensors');
    assert.ok(map.scheme.disagreements.some((d) => /no quantization_config/.test(d)));
  });

  it('reports invalid config groups and bad regexes as config errors instead of throwing', () => {
    const map = buildLayerMap(model(1, (n, o, i) => [[`${n}.weight`, 'BF16', [o, i]]]), {
      quant_method: 'compressed-tensors',
      config_groups: { g: { targets: ['re:(unclosed'], weights: { strategy: 'group' } } },
    });
    assert.ok(map.scheme.configErrors.some((e) => /group_size/.test(e)), map.scheme.configErrors.join('\n'));
  });
});
