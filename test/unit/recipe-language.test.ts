import assert from 'node:assert/strict';
import { CompletionItem, MODIFIERS, completionsAt, hoverAt, isQuantConfigDocument, isRecipeDocument, modelLayersFromList } from '../../src/core/recipe';
import { QUANT_ARGS_FIELDS } from '../../src/core/quant/args';

/** Position of the `|` marker; returns the text without it. */
function cursor(marked: string): { text: string; position: { line: number; character: number } } {
  const at = marked.indexOf('|');
  assert.ok(at >= 0);
  const before = marked.slice(0, at).split('\n');
  return { text: marked.slice(0, at) + marked.slice(at + 1), position: { line: before.length - 1, character: before.at(-1)!.length } };
}

const complete = (marked: string, options?: Parameters<typeof completionsAt>[2]): CompletionItem[] => {
  const { text, position } = cursor(marked);
  return completionsAt(text, position, options);
};
const labels = (items: readonly CompletionItem[]) => items.map((i) => i.label);
const hover = (marked: string, kind?: 'recipe' | 'config') => {
  const { text, position } = cursor(marked);
  return hoverAt(text, position, kind);
};

const RECIPE = `quant_stage:
  quant_modifiers:
    GPTQModifier:
      ignore: [lm_head]
      actorder: static
      config_groups:
        group_0:
          targets: [Linear]
          weights:
            num_bits: 4
            strategy: group
            group_size: 128
            observer: mse
`;

describe('recipe documents: detection, hover and completion', () => {
  it('recognises recipes and quantization configs', () => {
    assert.ok(isRecipeDocument('/x/recipe.yaml', ''));
    assert.ok(isRecipeDocument('/x/w4a16_recipe.yml', ''));
    assert.ok(isRecipeDocument('/x/Recipe-GPTQ.YAML', ''));
    assert.ok(isRecipeDocument('/x/anything.yaml', RECIPE));
    assert.ok(!isRecipeDocument('/x/anything.yaml', 'name: ci\non: push\njobs:\n  build: {}\n'));
    assert.ok(!isRecipeDocument('/x/recipe.json', RECIPE), 'JSON recipes are not YAML documents');
    assert.ok(!isRecipeDocument('/x/stage.yaml', 'quant_stage: 1\n'), 'a _stage key alone is not enough');
    assert.ok(isQuantConfigDocument('/m/config.json', '{"quantization_config": {}}'));
    assert.ok(!isQuantConfigDocument('/m/config.json', '{"hidden_size": 4096}'));
    assert.ok(isQuantConfigDocument('/m/quantize_config.json', '{}'));
    assert.ok(!isQuantConfigDocument('/m/tokenizer_config.json', '{"quantization_config": {}}'));
  });

  it('hovers document stages, groups, modifiers, fields and values', () => {
    assert.match(hover('quant_st|age:\n  quant_modifiers: {}\n')!.contents, /_stage/);
    assert.match(hover(RECIPE.replace('GPTQModifier', 'GPTQ|Modifier'))!.contents, /\*\*GPTQModifier\*\*.*Hessian/s);
    const blockSize = hover(RECIPE.replace('actorder', 'actor|der'))!;
    assert.match(blockSize.contents, /\*\*actorder\*\* — GPTQModifier/);
    assert.match(blockSize.contents, /default `static`/);
    assert.deepEqual(blockSize.range, { start: { line: 4, character: 6 }, end: { line: 4, character: 14 } });
    assert.match(hover(RECIPE.replace('num_bits', 'num_|bits'))!.contents, /\*\*num_bits\*\*.*default `8`/s);
    assert.match(hover(RECIPE.replace('strategy: group', 'strategy: gr|oup'))!.contents, /group_size/);
    assert.match(hover(RECIPE.replace('observer: mse', 'observer: m|se'))!.contents, /MSE/);
    assert.match(hover(RECIPE.replace('actorder: static', 'actorder: sta|tic'))!.contents, /Alias of `weight`/);
    assert.match(hover('s_stage:\n  m_modifiers:\n    QuantizationModifier: {scheme: W4A|16}\n')!.contents, /INT4 weights, group 128/);
    assert.match(hover('s_stage:\n  m_modifiers:\n    GPTQModifier: {sequential_tar|gets: [x]}\n')!.contents, /retired.*oneshot/s);
    assert.equal(hover('s_stage:\n  m_modifiers:\n    GPTQModifier: {nonsense|: 1}\n'), undefined);
  });

  it('every field of every modifier, and every QuantizationArgs field, has documentation', () => {
    for (const m of MODIFIERS) {
      for (const f of m.fields) assert.ok(f.doc.length > 5, `${m.name}.${f.name}`);
      const text = `s_stage:\n  m_modifiers:\n    ${m.name}:\n      |\n`;
      const items = complete(text);
      assert.ok(items.length > 3, `${m.name} offers its fields`);
      for (const i of items) assert.ok(i.documentation && i.documentation.length > 20, `${m.name}.${i.label} documented`);
    }
    const args = complete(RECIPE.replace('            observer: mse\n', '            |\n'));
    for (const f of QUANT_ARGS_FIELDS) {
      if (['num_bits', 'strategy', 'group_size'].includes(f)) assert.ok(!labels(args).includes(f), `${f} is already present`);
      else assert.ok(labels(args).includes(f), f);
    }
  });

  it('completes keys by context: stages, groups, modifiers, fields, scheme keys, args keys', () => {
    assert.ok(labels(complete('qu|')).includes('quant_stage'));
    assert.ok(labels(complete('quant_stage:\n  qu|')).includes('quant_modifiers'));
    const modifiers = complete('quant_stage:\n  quant_modifiers:\n    GP|');
    assert.ok(labels(modifiers).includes('GPTQModifier'));
    assert.ok(!labels(modifiers).includes('LogarithmicEqualizationModifier'), 'deprecated modifiers are not offered');
    const gptq = labels(complete('quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      |'));
    assert.equal(gptq[0], 'block_size', "the modifier's own fields come first");
    assert.ok(gptq.includes('config_groups') && gptq.includes('scheme') && !gptq.includes('group'));
    const scheme = labels(complete(RECIPE.replace('          targets: [Linear]\n', '          |\n')));
    assert.deepEqual(scheme.sort(), ['format', 'input_activations', 'output_activations', 'targets']);
    const item = complete('quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      block_s|')[0]!;
    assert.equal(item.label, 'block_size');
    assert.deepEqual(item.range, { start: { line: 3, character: 6 }, end: { line: 3, character: 13 } });
    assert.equal(item.insertText, 'block_size: ');
    const awq = labels(complete('q_stage:\n  q_modifiers:\n    AWQModifier:\n      mappings:\n        - smooth_layer: x\n          |'));
    assert.deepEqual(awq, ['balance_layers', 'activation_hook_target']);
    const flow = labels(complete('q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 4, str|'));
    assert.ok(flow.includes('strategy') && !flow.includes('num_bits'));
  });

  it('completes values: enums, presets, observers, actorder, booleans, targets', () => {
    assert.deepEqual(labels(complete(RECIPE.replace('strategy: group', 'strategy: gr|'))), ['group']);
    assert.ok(labels(complete(RECIPE.replace('strategy: group', 'strategy: |'))).includes('tensor_group'));
    assert.ok(labels(complete('q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      scheme: FP8|')).includes('FP8_DYNAMIC'));
    assert.deepEqual(labels(complete(RECIPE.replace('actorder: static', 'actorder: |'))), ['static', 'weight', 'group', 'dynamic', 'null']);
    assert.ok(labels(complete(RECIPE.replace('observer: mse', 'observer: |'))).includes('memoryless_minmax'));
    assert.deepEqual(labels(complete('q_stage:\n  q_modifiers:\n    GPTQModifier:\n      offload_hessians: |')), ['true', 'false']);
    assert.ok(labels(complete(RECIPE.replace('weights:\n            num_bits: 4', 'weights:\n            num_bits: 4\n            type: |'))).includes('float'));
    const flowValue = labels(complete('q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          weights: {num_bits: 4, type: fl|'));
    assert.deepEqual(flowValue, ['float']);
  });

  it('completes targets and ignore entries from the associated model', () => {
    const model = modelLayersFromList([
      { name: 'model.layers.0.self_attn.q_proj', inFeatures: 64 },
      { name: 'model.layers.0.mlp.down_proj', inFeatures: 96 },
      { name: 'lm_head', inFeatures: 64 },
    ]);
    const ignore = labels(complete(RECIPE.replace('ignore: [lm_head]', 'ignore: [|]'), { model }));
    assert.ok(ignore.includes('lm_head') && ignore.includes('model.layers.0.mlp.down_proj') && ignore.includes('re:.*down_proj$'));
    const items = complete(RECIPE.replace('ignore: [lm_head]', 'ignore:\n        - model.layers.0.m|'), { model });
    assert.ok(labels(items).includes('model.layers.0.mlp.down_proj'));
    const targets = labels(complete(RECIPE.replace('targets: [Linear]', 'targets: [Linear, |]'), { model }));
    assert.ok(targets.includes('re:.*q_proj$') && targets.includes('Linear'));
  });

  it('completes and hovers config.json keys and values', () => {
    const keys = labels(complete('{"quantization_config": {"quant_method": "compressed-tensors", "|', { kind: 'config' }));
    assert.ok(keys.includes('config_groups') && keys.includes('ignore') && keys.includes('format'));
    const formats = complete('{"quantization_config": {"format": "pa|', { kind: 'config' });
    assert.deepEqual(labels(formats), ['pack-quantized']);
    assert.equal(formats[0]!.insertText, '"pack-quantized"');
    assert.deepEqual(formats[0]!.range, { start: { line: 0, character: 35 }, end: { line: 0, character: 38 } });
    const gptq = labels(complete('{"bits": 4, "|', { kind: 'config' }));
    assert.ok(gptq.includes('group_size') && gptq.includes('desc_act'));
    assert.match(hover('{"quantization_config": {"quant_method": "gptq", "desc_a|ct": true}}', 'config')!.contents, /Act-order/);
    assert.match(hover('{"quantization_config": {"config_groups": {"g": {"weights": {"strat|egy": "group"}}}}}', 'config')!.contents, /Scale granularity/);
  });

  it('never throws on any position of any prefix', () => {
    for (let i = 0; i <= RECIPE.length; i += 3) {
      const text = RECIPE.slice(0, i);
      const lines = text.split('\n');
      const position = { line: lines.length - 1, character: lines.at(-1)!.length };
      assert.doesNotThrow(() => completionsAt(text, position));
      assert.doesNotThrow(() => hoverAt(text, position));
    }
  });
});
