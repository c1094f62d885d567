import assert from 'node:assert/strict';
import { applyFix } from '../helpers/fixes';
import { readFileSync } from 'node:fs';
import { Diagnostic, Range, modelLayersFromList, validateQuantizationConfig } from '../../src/core/recipe';
import { vectorsDir } from '../helpers/paths';

function rangeOf(text: string, token: string, within?: string): Range {
  const base = within === undefined ? 0 : text.indexOf(within);
  assert.ok(base >= 0, `${within} occurs`);
  const offset = text.indexOf(token, base);
  assert.ok(offset >= 0, `${token} occurs`);
  if (within === undefined) assert.equal(text.indexOf(token, offset + 1), -1, `${token} is unique`);
  const pos = (o: number) => {
    const before = text.slice(0, o).split('\n');
    return { line: before.length - 1, character: before.at(-1)!.length };
  };
  return { start: pos(offset), end: pos(offset + token.length) };
}

/** `text` with the only occurrence of `from` (a string or pattern) replaced. */
function m(text: string, from: string | RegExp, to: string): string {
  const out = text.replace(from, to);
  assert.notEqual(out, text, `${String(from)} occurs in the base config`);
  return out;
}

const errors = (d: readonly Diagnostic[]) => d.filter((x) => x.severity === 'error');

/** The config.json fragment llm-compressor writes for W4A16 (docs/formats.md §7.1), inside a model config. */
const W4A16 = JSON.stringify(
  {
    architectures: ['LlamaForCausalLM'],
    hidden_size: 64,
    quantization_config: {
      config_groups: {
        group_0: {
          format: 'pack-quantized',
          input_activations: null,
          output_activations: null,
          targets: ['Linear'],
          weights: { actorder: 'static', block_structure: null, dynamic: false, group_size: 128, num_bits: 4, observer: 'memoryless_minmax', observer_kwargs: {}, scale_dtype: null, strategy: 'group', symmetric: true, type: 'int', zp_dtype: null },
        },
      },
      format: 'pack-quantized',
      global_compression_ratio: null,
      ignore: ['lm_head'],
      kv_cache_scheme: null,
      quant_method: 'compressed-tensors',
      quantization_status: 'compressed',
      sparsity_config: {},
      transform_config: {},
      version: '0.12.2',
    },
    torch_dtype: 'bfloat16',
  },
  null,
  2,
);

const GPTQ = JSON.stringify({ bits: 4, group_size: 128, damp_percent: 0.01, desc_act: false, static_groups: false, sym: true, true_sequential: true, model_name_or_path: null, model_file_base_name: 'model', quant_method: 'gptq', checkpoint_format: 'gptq' }, null, 2);

describe('quantization configs: config.json quantization_config and quantize_config.json', () => {
  it('accepts the reference configs (vectors/configs) and the canonical W4A16 config.json', () => {
    for (const name of ['ct_example_quant_config.json', 'ct_int4_config.json']) {
      const text = readFileSync(vectorsDir('configs', name), 'utf8');
      assert.deepEqual(validateQuantizationConfig(text), [], name);
    }
    const fp8 = JSON.parse(readFileSync(vectorsDir('configs', 'autofp8_config.json'), 'utf8')) as Record<string, unknown>;
    for (const key of ['quantization_config_static', 'quantization_config_dynamic']) {
      assert.deepEqual(validateQuantizationConfig(JSON.stringify({ quantization_config: fp8[key] }, null, 2)), [], key);
    }
    assert.deepEqual(validateQuantizationConfig(W4A16), []);
    assert.deepEqual(validateQuantizationConfig(GPTQ), []);
    assert.deepEqual(validateQuantizationConfig(JSON.stringify({ quantization_config: JSON.parse(GPTQ) })), []);
  });

  it('ignores a config.json without a quantization_config', () => {
    assert.deepEqual(validateQuantizationConfig('{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096}'), []);
  });

  it('tab-indented JSON keeps exact ranges', () => {
    const text = readFileSync(vectorsDir('configs', 'ct_example_quant_config.json'), 'utf8').replace('"strategy": "tensor"', '"strategy": "tensr"');
    const d = errors(validateQuantizationConfig(text))[0]!;
    assert.deepEqual(d.range, rangeOf(text, '"tensr"'));
    assert.equal(applyFix(text, d.fix!).includes('"strategy": "tensor"'), true);
  });

  const cases: { name: string; text: string; token: string; within?: string; code: string; severity?: Diagnostic['severity']; says: string[]; fixed?: RegExp }[] = [
    { name: 'misspelt top-level key (ignored by compressed-tensors: a warning)', text: m(W4A16, '"format": "pack-quantized",\n    "global', '"fromat": "pack-quantized",\n    "global'), token: '"fromat"', code: 'unknown-field', severity: 'warning', says: ['fromat', 'format'], fixed: /"format": "pack-quantized",\n {4}"global/ },
    { name: 'misspelt QuantizationArgs key (vLLM validates every group: an error)', text: m(W4A16, '"num_bits"', '"num_bit"'), token: '"num_bit"', code: 'unknown-field', says: ['num_bit', 'num_bits'], fixed: /"num_bits": 4/ },
    { name: 'group strategy without group_size', text: m(W4A16, '"group_size": 128,', ''), token: '"group"', within: '"strategy"', code: 'invalid-scheme', says: ['group_size'], fixed: /"strategy": "group", "group_size": 128/ },
    { name: 'wrong enum value', text: m(W4A16, '"type": "int"', '"type": "integer"'), token: '"integer"', code: 'invalid-scheme', says: ['type', 'integer'], fixed: /"type": "int"/ },
    { name: 'unknown format', text: m(W4A16, '"format": "pack-quantized",\n    "global', '"format": "packed",\n    "global'), token: '"packed"', code: 'invalid-value', says: ['format', 'pack-quantized'] },
    { name: 'invalid regex in ignore', text: m(W4A16, '"lm_head"', '"re:lm_head("'), token: '"re:lm_head("', code: 'bad-regex', says: ['ignore', 'lm_head('] },
    { name: 'quantization_status out of the enum', text: m(W4A16, '"compressed"', '"compresed"'), token: '"compresed"', code: 'invalid-value', says: ['quantization_status', 'compressed'], fixed: /"quantization_status": "compressed"/ },
    { name: 'preset group that is no preset', text: m(W4A16, /"group_0": \{[\s\S]*?\n {6}\}/, '"W4A61": ["Linear"]'), token: '"W4A61"', code: 'unknown-preset', says: ['W4A61', 'W4A16'] },
    { name: 'missing quant_method', text: m(W4A16, '"quant_method": "compressed-tensors",', ''), token: '"quantization_config"', code: 'missing-field', says: ['quant_method'] },
    { name: 'int weight-only group stored as int-quantized (vLLM AssertionError)', text: m(W4A16, /"format": "pack-quantized",(\s+)"input/, '"format": "int-quantized",$1"input'), token: '"int-quantized"', code: 'vllm-format', severity: 'warning', says: ['int-quantized', 'pack-quantized'] },
    { name: 'kv_cache_scheme with a bad field', text: m(W4A16, '"kv_cache_scheme": null', '"kv_cache_scheme": {"num_bits": 8, "type": "float", "stratgy": "tensor"}'), token: '"stratgy"', code: 'unknown-field', says: ['stratgy', 'strategy'] },
    { name: 'GPTQ bits', text: m(GPTQ, '"bits": 4', '"bits": 5'), token: '5', code: 'invalid-value', says: ['bits', '2, 3, 4 or 8'] },
    { name: 'GPTQ group_size 0', text: m(GPTQ, '"group_size": 128', '"group_size": 0'), token: '0', within: '"group_size"', code: 'invalid-value', says: ['group_size'], fixed: /"group_size": 128/ },
    { name: 'GPTQ damp_percent', text: m(GPTQ, '"damp_percent": 0.01', '"damp_percent": 1.5'), token: '1.5', code: 'invalid-value', says: ['damp_percent'] },
    { name: 'GPTQ misspelt key', text: m(GPTQ, '"desc_act"', '"desc_actt"'), token: '"desc_actt"', code: 'unknown-field', severity: 'warning', says: ['desc_actt', 'desc_act'], fixed: /"desc_act": false/ },
    { name: 'GPTQ desc_act of the wrong type', text: m(GPTQ, '"desc_act": false', '"desc_act": "maybe"'), token: '"maybe"', code: 'wrong-type', says: ['desc_act'] },
    { name: 'FP8 without activation_scheme', text: '{"quantization_config": {"quant_method": "fp8", "ignored_layers": ["lm_head"]}}', token: '{"quant_method"', code: 'missing-field', says: ['activation_scheme'] },
    { name: 'FP8 block scales with static activations', text: '{"quantization_config": {"quant_method": "fp8", "activation_scheme": "static", "weight_block_size": [128, 128]}}', token: '"weight_block_size"', code: 'invalid-combination', says: ['weight_block_size', 'dynamic'] },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const diagnostics = validateQuantizationConfig(c.text);
      const hit = diagnostics.find((d) => d.code === c.code);
      assert.ok(hit, `${c.code} among ${diagnostics.map((d) => `[${d.code}] ${d.message}`).join(' | ')}`);
      const expected = rangeOf(c.text, c.token, c.within);
      if (c.code === 'missing-field' && c.token.startsWith('{')) assert.deepEqual(hit.range.start, expected.start);
      else assert.deepEqual(hit.range, expected);
      assert.equal(hit.severity, c.severity ?? 'error');
      for (const word of c.says) assert.ok(hit.message.includes(word), `mentions ${word}: ${hit.message}`);
      if (c.fixed) {
        assert.ok(hit.fix, 'has a fix');
        const fixed = applyFix(c.text, hit.fix);
        assert.doesNotThrow(() => JSON.parse(fixed), 'the fix keeps valid JSON');
        assert.match(fixed, c.fixed);
        assert.equal(validateQuantizationConfig(fixed).filter((d) => d.code === c.code).length, 0);
      }
    });
  }

  it('checks targets, ignore and group sizes against a model', () => {
    const model = modelLayersFromList([
      { name: 'model.layers.0.self_attn.q_proj', inFeatures: 64, outFeatures: 64 },
      { name: 'model.layers.0.mlp.down_proj', inFeatures: 96, outFeatures: 64 },
      { name: 'lm_head', inFeatures: 64, outFeatures: 100 },
    ]);
    const text = m(W4A16, '"group_size": 128', '"group_size": 64').replace('"lm_head"', '"lm_hed"');
    const d = validateQuantizationConfig(text, { model });
    const divisible = d.find((x) => x.code === 'group-size-indivisible')!;
    assert.deepEqual(divisible.range, rangeOf(text, '64', '"group_size": 64'));
    assert.match(divisible.message, /model\.layers\.0\.mlp\.down_proj \(in_features 96\)/);
    assert.doesNotMatch(divisible.message, /q_proj/);
    const ignored = d.find((x) => x.code === 'no-match')!;
    assert.deepEqual(ignored.range, rangeOf(text, '"lm_hed"'));
    assert.match(applyFix(text, ignored.fix!), /"lm_head"/);
    const gptq = m(GPTQ, '"group_size": 128', '"group_size": 64');
    assert.match(validateQuantizationConfig(gptq, { model }).find((x) => x.code === 'group-size-indivisible')!.message, /down_proj/);
  });

  it('flags the legacy compression_config key', () => {
    const text = JSON.stringify({ compression_config: JSON.parse(W4A16).quantization_config });
    const d = validateQuantizationConfig(text);
    assert.equal(d.length, 1);
    assert.equal(d[0]!.code, 'legacy-key');
  });
});
