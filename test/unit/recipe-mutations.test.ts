import assert from 'node:assert/strict';
import { applyFix } from '../helpers/fixes';
import { Diagnostic, Range, validateRecipe } from '../../src/core/recipe';

/** A valid GPTQ W4A16 recipe with SmoothQuant in front (block style, quoted and plain scalars). */
const BASE = `quant_stage:
  quant_modifiers:
    SmoothQuantModifier:
      smoothing_strength: 0.8
      mappings:
        - [["re:.*q_proj", "re:.*k_proj", "re:.*v_proj"], "re:.*input_layernorm"]
    GPTQModifier:
      ignore: ["lm_head"]
      block_size: 128
      dampening_frac: 0.01
      config_groups:
        group_0:
          targets: ["Linear"]
          weights:
            num_bits: 4
            type: int
            symmetric: true
            strategy: group
            group_size: 128
            observer: minmax
          input_activations: null
`;

/**
 * The range of `token` in `text`: its only occurrence, or the n-th (0-based) when `nth` is given, or its
 * occurrence inside the unique string `within`.
 */
function rangeOf(text: string, token: string, nth?: number, within?: string): Range {
  let offset = -1;
  if (within !== undefined) {
    const base = text.indexOf(within);
    assert.ok(base >= 0 && text.indexOf(within, base + 1) === -1, `${JSON.stringify(within)} occurs once`);
    const inner = within.indexOf(token);
    assert.ok(inner >= 0, `${JSON.stringify(token)} is inside ${JSON.stringify(within)}`);
    offset = base + inner;
  } else {
    for (let i = 0; i <= (nth ?? 0); i++) {
      offset = text.indexOf(token, offset + 1);
      assert.ok(offset >= 0, `token ${JSON.stringify(token)} occurs in the text`);
    }
    if (nth === undefined) assert.equal(text.indexOf(token, offset + 1), -1, `token ${JSON.stringify(token)} is unique`);
  }
  const pos = (o: number) => {
    const before = text.slice(0, o).split('\n');
    return { line: before.length - 1, character: before.at(-1)!.length };
  };
  return { start: pos(offset), end: pos(offset + token.length) };
}

const replaceOnce = (text: string, from: string, to: string): string => {
  assert.equal(text.split(from).length, 2, `${JSON.stringify(from)} occurs once in the base recipe`);
  return text.replace(from, to);
};

interface Case {
  readonly name: string;
  readonly text: string;
  /** The token the diagnostic must cover exactly (unique in the mutated text unless nth is given). */
  readonly token: string;
  readonly nth?: number;
  /** A unique string around the token, when the token itself repeats. */
  readonly within?: string;
  readonly code: string;
  readonly severity?: Diagnostic['severity'];
  /** Words the message must contain (the field name first). */
  readonly says: readonly string[];
  /** Title of the quick fix; applying it must remove every error. */
  readonly fix?: string;
}

const m = (from: string, to: string) => replaceOnce(BASE, from, to);

const CASES: readonly Case[] = [
  { name: 'misspelt QuantizationArgs key', text: m('num_bits: 4', 'num_bit: 4'), token: 'num_bit', code: 'unknown-field', says: ['num_bit', 'did you mean "num_bits"'], fix: 'Rename to num_bits' },
  { name: 'misspelt modifier field', text: m('dampening_frac', 'dampning_frac'), token: 'dampning_frac', code: 'unknown-field', says: ['dampning_frac', 'GPTQModifier', 'dampening_frac'], fix: 'Rename to dampening_frac' },
  { name: 'misspelt modifier', text: m('GPTQModifier:', 'GPTQModifer:'), token: 'GPTQModifer', code: 'unknown-modifier', says: ['GPTQModifer', 'GPTQModifier'], fix: 'Change to GPTQModifier' },
  { name: 'misspelt key in a config group', text: m('targets: ["Linear"]', 'target: ["Linear"]'), token: 'target', code: 'unknown-field', says: ['target', 'targets'], fix: 'Rename to targets' },
  { name: 'wrong strategy enum', text: m('strategy: group', 'strategy: grop'), token: 'grop', code: 'invalid-scheme', says: ['strategy', 'grop', 'group'], fix: 'Change to group' },
  { name: 'wrong type enum', text: m('type: int', 'type: integer'), token: 'integer', code: 'invalid-scheme', says: ['type', 'integer'], fix: 'Change to int' },
  { name: 'num_bits of the wrong type', text: m('num_bits: 4', 'num_bits: four'), token: 'four', code: 'invalid-scheme', says: ['num_bits', 'integer'] },
  { name: 'symmetric of the wrong type', text: m('symmetric: true', 'symmetric: maybe'), token: 'maybe', code: 'invalid-scheme', says: ['symmetric'] },
  { name: 'group strategy without group_size', text: m('            group_size: 128\n', ''), token: 'group', within: 'strategy: group', code: 'invalid-scheme', says: ['group_size', 'strategy group'], fix: 'Add group_size: 128' },
  { name: 'group_size with another strategy', text: m('strategy: group', 'strategy: channel'), token: '128', within: 'group_size: 128', code: 'invalid-scheme', says: ['group_size', 'channel'] },
  { name: 'non-positive group_size', text: m('group_size: 128', 'group_size: 0'), token: '0', within: 'group_size: 0', code: 'invalid-scheme', says: ['group_size'], fix: 'Set group_size to 128' },
  { name: 'token strategy on weights', text: m('strategy: group\n            group_size: 128', 'strategy: token\n            dynamic: true'), token: 'token', code: 'invalid-combination', says: ['weights', 'token'] },
  { name: 'FP8 without 8 bits', text: m('num_bits: 4\n            type: int', 'num_bits: 6\n            type: float'), token: '6', code: 'invalid-scheme', says: ['float', '6', '8 bits'] },
  { name: 'dynamic local outside tensor_group', text: m('observer: minmax', 'dynamic: local'), token: 'local', code: 'invalid-scheme', says: ['dynamic', 'local', 'tensor_group'] },
  { name: 'unknown observer', text: m('observer: minmax', 'observer: minmaxx'), token: 'minmaxx', code: 'invalid-value', says: ['observer', 'minmaxx', 'minmax'], fix: 'Change to minmax' },
  { name: 'bad block_structure', text: m('strategy: group\n            group_size: 128', 'strategy: block\n            block_structure: 128xfoo'), token: '128xfoo', code: 'invalid-scheme', says: ['block_structure'] },
  { name: 'scale_dtype that is no torch dtype', text: m('observer: minmax', 'scale_dtype: float8_e4m3'), token: 'float8_e4m3', code: 'invalid-value', says: ['scale_dtype', 'float8_e4m3fn'], fix: 'Change to float8_e4m3fn' },
  { name: 'activation strategy channel', text: m('input_activations: null', 'input_activations: {num_bits: 8, strategy: channel}'), token: 'channel', code: 'invalid-scheme', says: ['channel', 'activation'] },
  { name: 'actorder on activations', text: m('input_activations: null', 'input_activations: {num_bits: 8, strategy: token, dynamic: true, actorder: weight}'), token: 'weight', within: 'actorder: weight', code: 'invalid-scheme', says: ['actorder', 'activations'] },
  { name: 'scheme together with config_groups', text: m('      block_size: 128', '      scheme: W4A16\n      block_size: 128'), token: 'scheme', code: 'scheme-and-config-groups', says: ['scheme', 'config_groups'] },
  { name: 'config group outside config_groups', text: m('      config_groups:\n        group_0:\n', '      group_0:\n        x:\n').replace(/\n {10}/g, '\n        '), token: 'group_0', code: 'misplaced-field', says: ['group_0', 'config_groups'] },
  { name: 'QuantizationArgs field at the modifier level', text: m('      block_size: 128', '      num_bits: 4\n      block_size: 128'), token: 'num_bits', within: '      num_bits: 4\n      block_size', code: 'misplaced-field', says: ['num_bits', 'weights'] },
  { name: 'QuantizationArgs field directly in a config group', text: m('          targets: ["Linear"]', '          targets: ["Linear"]\n          group_size: 64'), token: 'group_size', within: 'group_size: 64', code: 'misplaced-field', says: ['group_size', 'weights'] },
  { name: 'invalid re: regex in ignore', text: m('["lm_head"]', '["lm_head", "re:.*(q_proj"]'), token: '"re:.*(q_proj"', code: 'bad-regex', says: ['ignore', '.*(q_proj'] },
  { name: 'invalid re: regex in targets', text: m('["Linear"]', '["re:*q_proj"]'), token: '"re:*q_proj"', code: 'bad-regex', says: ['targets', '*q_proj'] },
  { name: 'invalid re: regex in SmoothQuant mappings', text: m('"re:.*input_layernorm"', '"re:.*input_layernorm["'), token: '"re:.*input_layernorm["', code: 'bad-regex', says: ['mappings', 'input_layernorm['] },
  { name: 'regex without re: prefix', text: m('["lm_head"]', '[".*lm_head"]'), token: '".*lm_head"', code: 'regex-without-prefix', severity: 'warning', says: ['.*lm_head', 're:'], fix: 'Add the re: prefix' },
  { name: 'targets as a single string in a config group', text: m('targets: ["Linear"]', 'targets: Linear'), token: 'Linear', code: 'invalid-scheme', says: ['targets'] },
  { name: 'GPTQ block_size 0', text: m('block_size: 128', 'block_size: 0'), token: '0', within: 'block_size: 0', code: 'invalid-value', says: ['block_size', 'at least 1'] },
  { name: 'GPTQ dampening_frac out of range', text: m('dampening_frac: 0.01', 'dampening_frac: 1.5'), token: '1.5', code: 'invalid-value', says: ['dampening_frac', '1.5'] },
  { name: 'GPTQ dampening_frac of the wrong type', text: m('dampening_frac: 0.01', 'dampening_frac: high'), token: 'high', code: 'wrong-type', says: ['dampening_frac', 'number'] },
  { name: 'SmoothQuant smoothing_strength out of range', text: m('smoothing_strength: 0.8', 'smoothing_strength: 8'), token: '8', within: 'smoothing_strength: 8', code: 'invalid-value', says: ['smoothing_strength', '8'] },
  { name: 'GPTQ actorder typo', text: m('      block_size: 128', '      actorder: wieght\n      block_size: 128'), token: 'wieght', code: 'invalid-value', says: ['actorder', 'wieght', 'weight'], fix: 'Change to weight' },
  { name: 'GPTQ actorder contradicting the scheme', text: m('      block_size: 128', '      actorder: group\n      block_size: 128').replace('observer: minmax', 'actorder: weight'), token: 'group', within: 'actorder: group', code: 'actorder-conflict', says: ['actorder', 'group_0', 'Cannot resolve activation ordering'] },
  { name: 'unknown preset', text: BASE.replace(/ {6}config_groups:[\s\S]*$/, '      scheme: W4A61\n'), token: 'W4A61', code: 'unknown-preset', says: ['W4A61', 'W4A16'], fix: 'Change to W4A16' },
  { name: 'retired sequential_targets', text: m('      block_size: 128', '      sequential_targets: [LlamaDecoderLayer]\n      block_size: 128'), token: 'sequential_targets', code: 'retired-field', says: ['sequential_targets', 'GPTQModifier', '2026-04-08', 'oneshot'] },
  { name: 'retired quantize on GPTQModifier', text: m('      block_size: 128', '      quantize: true\n      block_size: 128'), token: 'quantize', code: 'retired-field', says: ['quantize', 'GPTQModifier', 'scheme'] },
  { name: 'group field in a recipe', text: m('      block_size: 128', '      group: quant\n      block_size: 128'), token: 'group', within: '      group: quant', code: 'group-field', says: ['group', 'quant_modifiers'] },
  { name: 'stage key typo', text: m('quant_stage:', 'quant_stag:'), token: 'quant_stag', code: 'ignored-key', severity: 'warning', says: ['quant_stag', '_stage'], fix: 'Rename to quant_stage' },
  { name: 'group key typo', text: m('quant_modifiers:', 'quant_modifier:'), token: 'quant_modifier', code: 'ignored-key', severity: 'warning', says: ['quant_modifier', '_modifiers'], fix: 'Rename to quant_modifiers' },
  { name: 'modifier with an empty value', text: m('    SmoothQuantModifier:\n      smoothing_strength: 0.8\n      mappings:\n        - [["re:.*q_proj", "re:.*k_proj", "re:.*v_proj"], "re:.*input_layernorm"]\n', '    SmoothQuantModifier:\n'), token: 'SmoothQuantModifier', code: 'wrong-type', says: ['SmoothQuantModifier', '{}'], fix: 'Use {} (defaults)' },
  { name: 'duplicate modifier in one group', text: `${BASE}    SmoothQuantModifier:\n      smoothing_strength: 0.5\n`, token: 'SmoothQuantModifier', nth: 1, code: 'duplicate-key', says: ['SmoothQuantModifier', 'last'] },
];

describe('recipe mutations: each mistake is caught at the exact range with a message naming the field', () => {
  it('the base recipe is valid', () => {
    assert.deepEqual(validateRecipe(BASE), []);
  });

  for (const c of CASES) {
    it(c.name, () => {
      const diagnostics = validateRecipe(c.text);
      const expected = rangeOf(c.text, c.token, c.nth, c.within);
      const hit = diagnostics.find((d) => d.code === c.code);
      assert.ok(hit, `a ${c.code} diagnostic among: ${diagnostics.map((d) => `[${d.code}] ${d.message}`).join(' | ')}`);
      assert.deepEqual(hit.range, expected, `range of ${hit.message}`);
      assert.equal(hit.severity, c.severity ?? 'error');
      for (const word of c.says) assert.ok(hit.message.includes(word), `message mentions ${JSON.stringify(word)}: ${hit.message}`);
      if (c.fix) {
        assert.ok(hit.fix, 'has a quick fix');
        assert.equal(hit.fix.title, c.fix);
        const fixed = applyFix(c.text, hit.fix);
        const after = validateRecipe(fixed).filter((d) => d.severity === 'error' || d.code === c.code);
        assert.deepEqual(after.map((d) => d.message), [], `after "${c.fix}":\n${fixed}`);
      }
    });
  }

  it('reports every mistake, not only the first', () => {
    const text = m('num_bits: 4', 'num_bit: 4').replace('strategy: group', 'strategy: grop').replace('block_size: 128', 'block_size: -4');
    const codes = validateRecipe(text).map((d) => d.code);
    assert.ok(codes.includes('unknown-field'));
    assert.ok(codes.includes('invalid-scheme'));
    assert.ok(codes.includes('invalid-value'));
  });

  it('AWQModifier must be followed by a quantization modifier', () => {
    const ok = 'q_stage:\n  q_modifiers:\n    AWQModifier: {duo_scaling: both}\n    QuantizationModifier: {scheme: W4A16_ASYM, ignore: [lm_head]}\n';
    assert.deepEqual(validateRecipe(ok), []);
    const bad = 'q_stage:\n  q_modifiers:\n    QuantizationModifier: {scheme: W4A16_ASYM, ignore: [lm_head]}\n    AWQModifier: {duo_scaling: both}\n';
    const d = validateRecipe(bad).find((x) => x.code === 'awq-order')!;
    assert.deepEqual(d.range, rangeOf(bad, 'AWQModifier'));
    assert.match(d.message, /no subsequent quantization modifier/);
    // Across stages, as Recipe.from_dict flattens them.
    const staged = 'a_stage:\n  m_modifiers:\n    AWQModifier: {}\nb_stage:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16}\n';
    assert.deepEqual(validateRecipe(staged), []);
  });

  it('AWQModifier no longer takes scheme / targets / ignore (transform-only since 2026-04)', () => {
    const text = 'q_stage:\n  q_modifiers:\n    AWQModifier:\n      scheme: W4A16\n      ignore: [lm_head]\n    QuantizationModifier: {scheme: W4A16}\n';
    const d = validateRecipe(text).filter((x) => x.code === 'retired-field');
    assert.deepEqual(d.map((x) => x.range), [rangeOf(text, 'scheme', undefined, '      scheme: W4A16\n      ignore'), rangeOf(text, 'ignore')]);
    assert.match(d[0]!.message, /transform-only.*QuantizationModifier/);
  });

  it('fields and modifiers of older releases get a precise migration message', () => {
    const text = [
      'sparsity_stage:',
      '  run_type: oneshot',
      '  obcq_modifiers:',
      '    SparseGPTModifier:',
      '      sparsity: 0.5',
      '      percdamp: 0.01',
      '      target_ids: ["attention_mask", "position_ids"]',
      'distill_stage:',
      '  distill_modifiers:',
      '    OutputDistillationModifier: {targets: [Linear]}',
      '',
    ].join('\n');
    const d = validateRecipe(text);
    const by = (code: string, token: string) => d.find((x) => x.code === code && x.message.includes(token))!;
    const runType = by('ignored-key', 'run_type');
    assert.equal(runType.severity, 'warning');
    assert.deepEqual(runType.range, rangeOf(text, 'run_type'));
    assert.match(runType.message, /2025-06-27/);
    const percdamp = by('retired-field', 'percdamp');
    assert.deepEqual(percdamp.range, rangeOf(text, 'percdamp'));
    assert.match(percdamp.message, /dampening_frac/);
    assert.match(applyFix(text, percdamp.fix!), /dampening_frac: 0\.01/);
    assert.match(by('retired-field', 'target_ids').message, /sparseml OBCQ/);
    const distill = by('retired-modifier', 'OutputDistillationModifier');
    assert.deepEqual(distill.range, rangeOf(text, 'OutputDistillationModifier'));
    assert.match(distill.message, /training support/);
  });

  it('unquoted N:M mask structures are YAML 1.1 sexagesimal numbers', () => {
    const text = 'p_stage:\n  p_modifiers:\n    SparseGPTModifier:\n      sparsity: 0.5\n      mask_structure: 2:4\n';
    const d = validateRecipe(text)[0]!;
    assert.deepEqual(d.range, rangeOf(text, '2:4'));
    assert.match(d.message, /mask_structure.*124/);
    assert.deepEqual(validateRecipe(applyFix(text, d.fix!)), []);
  });

  it('required fields and modifier-specific rules', () => {
    const text = 'p_stage:\n  p_modifiers:\n    SparseGPTModifier:\n      mask_structure: "2:4"\n';
    const d = validateRecipe(text);
    assert.equal(d.length, 1);
    assert.equal(d[0]!.code, 'missing-field');
    assert.deepEqual(d[0]!.range, rangeOf(text, 'SparseGPTModifier'));
    assert.match(d[0]!.message, /sparsity/);
    const sq = 'q_stage:\n  q_modifiers:\n    SmoothQuantModifier: {start: 3}\n    GPTQModifier: {scheme: W8A8}\n';
    assert.match(validateRecipe(sq)[0]!.message, /one-shot.*start/);
    const noScheme = 'q_stage:\n  q_modifiers:\n    QuantizationModifier: {}\n';
    assert.match(validateRecipe(noScheme)[0]!.message, /requires that quantization fields be specified/);
    const gptqAlone = 'q_stage:\n  q_modifiers:\n    GPTQModifier: {block_size: 128}\n';
    assert.match(validateRecipe(gptqAlone)[0]!.message, /unable to find any modules to quantize/);
  });

  it('accepts pydantic-style values: quoted numbers, YAML 1.1 booleans, upper-case enums', () => {
    const text = m('num_bits: 4', 'num_bits: "4"').replace('symmetric: true', 'symmetric: yes').replace('strategy: group', 'strategy: GROUP').replace('type: int', 'type: INT');
    assert.deepEqual(validateRecipe(text), []);
  });

  it('flow-style recipes get the same ranges', () => {
    const text = '{q_stage: {q_modifiers: {QuantizationModifier: {config_groups: {g: {targets: [Linear], weights: {num_bits: 4, strategy: group}}}}}}}';
    const d = validateRecipe(text);
    assert.equal(d.length, 1);
    assert.deepEqual(d[0]!.range, rangeOf(text, 'group', undefined, 'strategy: group}'));
    const fixed = applyFix(text, d[0]!.fix!);
    assert.match(fixed, /strategy: group, group_size: 128\}/);
    assert.deepEqual(validateRecipe(fixed), []);
  });
});
