import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inferFormat, parseQuantArgs, parseQuantScheme, presetScheme } from '../../src/core/quant/args';
import { vectorsDir } from '../helpers/paths';

interface ArgsCase {
  in: Record<string, unknown>;
  valid: boolean;
  normalised?: Record<string, unknown>;
  why?: string;
}

describe('QuantizationArgs validation (compressed-tensors test vectors)', () => {
  const { cases } = JSON.parse(readFileSync(vectorsDir('quant_args_validation.json'), 'utf8')) as { cases: ArgsCase[] };

  for (const c of cases) {
    it(`${JSON.stringify(c.in)} is ${c.valid ? 'valid' : 'invalid'}${c.why ? ` (${c.why})` : ''}`, () => {
      const { args, errors } = parseQuantArgs(c.in);
      if (!c.valid) {
        assert.equal(args, undefined);
        assert.ok(errors.length > 0);
        for (const e of errors) assert.ok(e.message.length > 10, 'errors say what is wrong');
        return;
      }
      assert.deepEqual(errors, []);
      assert.ok(args);
      for (const [key, value] of Object.entries(c.normalised ?? {})) {
        const expected = typeof value === 'string' ? value.split(' ')[0] : value;
        const table: Record<string, unknown> = { num_bits: args.numBits, type: args.type, symmetric: args.symmetric, strategy: args.strategy, group_size: args.groupSize ?? null, block_structure: args.blockStructure ?? null, dynamic: args.dynamic, observer: args.observer, actorder: args.actorder ?? null };
        const actual = table[key];
        assert.deepEqual(actual, expected, key);
      }
    });
  }

  it('points each error at its field', () => {
    const { errors } = parseQuantArgs({ strategy: 'tensor', group_size: 128, num_bits: 'four' });
    assert.deepEqual(errors.map((e) => e.path.join('.')).sort(), ['group_size', 'num_bits']);
  });
});

describe('presets and format inference (compressed-tensors tests)', () => {
  const { preset_to_format } = JSON.parse(readFileSync(vectorsDir('preset_to_format.json'), 'utf8')) as { preset_to_format: Record<string, string> };
  for (const [preset, format] of Object.entries(preset_to_format)) {
    it(`${preset} saves as ${format}`, () => {
      const scheme = presetScheme(preset);
      assert.ok(scheme);
      assert.equal(inferFormat(scheme), format);
    });
  }

  it('expands the seed schemes as the model cards describe them', () => {
    const w8a8 = presetScheme('w8a8')!;
    assert.equal(w8a8.weights?.strategy, 'channel');
    assert.equal(w8a8.inputActivations?.strategy, 'token');
    assert.equal(w8a8.inputActivations?.dynamic, true);
    const fp8 = presetScheme('FP8')!;
    assert.equal(fp8.weights?.strategy, 'tensor');
    assert.equal(fp8.inputActivations?.dynamic, false);
    assert.equal(presetScheme('W4A16')!.weights?.groupSize, 128);
    assert.equal(presetScheme('NOPE'), undefined);
  });

  it('validates config groups: unknown fields, activation strategies, actorder on activations', () => {
    const { errors } = parseQuantScheme({
      targets: ['Linear'],
      weights: { num_bits: 4, group_size: 128 },
      input_activations: { num_bits: 8, strategy: 'channel', actorder: 'group' },
      extras: 1,
    });
    const paths = errors.map((e) => e.path.join('.'));
    assert.ok(paths.includes('extras'));
    assert.ok(paths.includes('input_activations.actorder'), paths.join());
  });
});
