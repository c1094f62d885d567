/**
 * GPTQ against an independent float64 implementation straight from the paper's pseudo-code (test/helpers/
 * gptqReference.ts: Algorithm 1 without the lazy batching, H⁻¹ formed explicitly, its upper Cholesky factor).
 * The module under test uses a blocked, reversed-Cholesky formulation; the two must give the same integer
 * codes. Tolerance: with the float64 JS engine, identical codes except at exact rounding ties (we allow
 * 1 code in 10⁴ and have seen none); with onnxruntime in float32 (upstream's precision), a flipped near-tie code
 * changes the rest of its row, so we require ≥ 97 % identical codes and a loss within 2 % of the reference.
 *
 * Quality: on heavy-tailed weights with correlated inputs (X = Z · M, Z heavy-tailed per channel, M a random
 * mixing matrix), GPTQ's output error ‖(W − Q) Xᵀ‖ must be below round-to-nearest's for every layer.
 */
import assert from 'node:assert/strict';
import type { QuantArgs } from '../../src/core/quant/args';
import { GptqError, dequantizeGptqResult, quantizeGptq, type GptqResult } from '../../src/core/quant/gptq';
import { tryLoadOrt } from '../../src/core/util/ort';
import { dequantizeRtn, quantizeRtn } from '../../src/core/quant/rtn';
import { correlatedInputs, heavyTailedWeight, referenceGptq } from '../helpers/gptqReference';

/** ‖(W − Ŵ) Xᵀ‖_F. */
function outputError(w: Float32Array, approx: Float32Array, rows: number, cols: number, x: Float64Array, tokens: number): number {
  let sum = 0;
  const diff = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) diff[c] = w[r * cols + c]! - approx[r * cols + c]!;
    for (let t = 0; t < tokens; t++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += diff[c]! * x[t * cols + c]!;
      sum += s * s;
    }
  }
  return Math.sqrt(sum);
}

const int = (bits: number, symmetric: boolean, groupSize: number | undefined, actorder?: 'weight' | 'group'): QuantArgs => ({
  numBits: bits,
  type: 'int',
  symmetric,
  strategy: groupSize === undefined ? 'channel' : 'group',
  ...(groupSize !== undefined ? { groupSize } : {}),
  dynamic: false,
  ...(actorder ? { actorder } : {}),
});

function mismatches(a: Int8Array, b: Int8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

// ---------------------------------------------------------------------------------------------------------

describe('GPTQ algorithm', function () {
  this.timeout(300_000);

  const cases: { name: string; rows: number; cols: number; args: QuantArgs; lazy?: boolean; dead?: number[] }[] = [
    { name: 'INT4 sym g128', rows: 48, cols: 256, args: int(4, true, 128) },
    { name: 'INT4 asym g128', rows: 40, cols: 256, args: int(4, false, 128) },
    { name: 'INT4 sym g128 act-order static', rows: 48, cols: 384, args: int(4, true, 128, 'weight') },
    { name: 'INT4 sym g128 act-order group', rows: 32, cols: 256, args: int(4, true, 128, 'group') },
    { name: 'INT4 asym g64 act-order group, lazy group parameters (AutoGPTQ desc_act)', rows: 32, cols: 256, args: int(4, false, 64, 'group'), lazy: true },
    { name: 'INT4 sym g32 lazy, block 128 (groups inside blocks)', rows: 24, cols: 256, args: int(4, true, 32), lazy: true },
    { name: 'INT4 sym channel', rows: 40, cols: 192, args: int(4, true, undefined) },
    { name: 'INT8 asym channel with act-order and dead inputs', rows: 32, cols: 160, args: int(8, false, undefined, 'weight'), dead: [3, 77, 150] },
    { name: 'INT8 sym g128', rows: 16, cols: 256, args: int(8, true, 128) },
  ];

  for (const [index, c] of cases.entries()) {
    it(`matches the float64 reference and beats RTN: ${c.name}`, async () => {
      const tokens = 2 * c.cols;
      const weight = heavyTailedWeight(c.rows, c.cols, 100 + index);
      const { x, h } = correlatedInputs(tokens, c.cols, 200 + index, c.dead);
      const result = await quantizeGptq(weight, c.rows, c.cols, h, c.args, { dampeningFrac: 0.1, engine: 'js', groupParams: c.lazy ? 'lazy' : 'upfront', scaleDtype: 'BF16' });
      assert.equal(result.engine, 'js');
      assert.equal(result.precision, 'float64');
      const ref = referenceGptq(weight, c.rows, c.cols, h, { args: c.args, damp: 0.1, lazy: c.lazy === true });
      const bad = mismatches(result.q, ref.q);
      assert.ok(bad <= Math.floor(result.q.length / 1e4), `${bad} of ${result.q.length} codes differ from the reference`);
      assert.deepEqual(Array.from(result.scale), Array.from(ref.scale));
      if (ref.zeroPoint) assert.deepEqual(Array.from(result.zeroPoint!), Array.from(ref.zeroPoint));
      if (ref.gIdx) assert.deepEqual(Array.from(result.gIdx!), Array.from(ref.gIdx));
      assert.equal(result.saveGIdx, c.args.actorder === 'group');
      assert.equal(result.deadColumns, c.dead?.length ?? 0);
      if (c.dead) for (const d of c.dead) for (let r = 0; r < c.rows; r++) assert.equal(dequantizeGptqResult(result)[r * c.cols + d], 0, 'a dead input column quantizes its (zeroed) weight to 0');

      const gptqError = outputError(weight, dequantizeGptqResult(result), c.rows, c.cols, x, tokens);
      const rtn = quantizeRtn(weight, c.rows, c.cols, { ...c.args, actorder: undefined });
      const rtnError = outputError(weight, dequantizeRtn(rtn), c.rows, c.cols, x, tokens);
      assert.ok(gptqError < rtnError, `GPTQ output error ${gptqError} is not below RTN's ${rtnError}`);
    });
  }

  it('is independent of the block size up to rounding (block 16 vs 128 vs 1000)', async () => {
    const weight = heavyTailedWeight(24, 256, 7);
    const { h } = correlatedInputs(512, 256, 8);
    const args = int(4, true, 128, 'weight');
    const runs = await Promise.all([16, 128, 1000].map((blockSize) => quantizeGptq(weight, 24, 256, h, args, { blockSize, engine: 'js' })));
    assert.equal(mismatches(runs[0]!.q, runs[1]!.q), 0);
    assert.equal(mismatches(runs[1]!.q, runs[2]!.q), 0);
    assert.ok(Math.abs(runs[0]!.loss - runs[2]!.loss) <= 1e-9 * runs[2]!.loss);
  });

  it('with onnxruntime in float32 stays close to the float64 reference', async function () {
    if (!tryLoadOrt()) this.skip();
    const rows = 128;
    const cols = 512;
    const weight = heavyTailedWeight(rows, cols, 31);
    const { h } = correlatedInputs(2 * cols, cols, 32);
    const args = int(4, true, 128, 'weight');
    const fast = await quantizeGptq(weight, rows, cols, Float32Array.from(h), args, { engine: 'ort', precision: 'float32' });
    const exact = await quantizeGptq(weight, rows, cols, h, args, { engine: 'js' });
    const ref = referenceGptq(weight, rows, cols, h, { args, damp: 0.1, lazy: false });
    assert.equal(fast.engine, 'ort');
    assert.equal(mismatches(exact.q, ref.q), 0);
    const same = 1 - mismatches(fast.q, ref.q) / ref.q.length;
    assert.ok(same >= 0.97, `only ${(same * 100).toFixed(2)} % of the codes agree`);
    assert.ok(Math.abs(fast.loss - exact.loss) <= 0.02 * exact.loss, `loss ${fast.loss} vs ${exact.loss}`);
  });

  it('rejects a Hessian of the wrong size, naming the module', async () => {
    const weight = heavyTailedWeight(8, 64, 1);
    await assert.rejects(quantizeGptq(weight, 8, 64, new Float32Array(63 * 63), int(4, true, 32), { module: 'model.layers.0.mlp.down_proj' }), (e: Error) => {
      assert.ok(e instanceof GptqError);
      assert.match(e.message, /^model\.layers\.0\.mlp\.down_proj: the Hessian has 3969 values \(\[63, 63\]\), but in_features is 64/);
      return true;
    });
  });

  it('rejects NaN in the Hessian and in the weight', async () => {
    const weight = heavyTailedWeight(8, 64, 1);
    const { h } = correlatedInputs(128, 64, 2);
    h[5 * 64 + 9] = NaN;
    await assert.rejects(quantizeGptq(weight, 8, 64, h, int(4, true, 32), { module: 'm' }), /m: the Hessian holds NaN at \[5, 9\]/);
    h[5 * 64 + 9] = 0;
    weight[3] = Infinity;
    await assert.rejects(quantizeGptq(weight, 8, 64, h, int(4, true, 32), { module: 'm' }), /m: the weight holds Infinity at \[0, 3\]/);
  });

  it('says when the Hessian is not positive definite after dampening, and suggests a larger dampening_frac', async () => {
    const cols = 64;
    const weight = heavyTailedWeight(8, cols, 1);
    // Indefinite: a positive diagonal with a large negative eigenvalue direction.
    const h = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) h[i * cols + j] = i === j ? 1 : -0.5;
    await assert.rejects(quantizeGptq(weight, 8, cols, h, int(4, true, 32), { module: 'model.layers.3.self_attn.o_proj', dampeningFrac: 0.01 }), (e: Error) => {
      assert.match(e.message, /^model\.layers\.3\.self_attn\.o_proj: the Hessian is not positive definite after dampening .*increase dampening_frac \(now 0\.01, try 0\.1\)/);
      return true;
    });
  });

  it('rejects float weights and group sizes that do not divide the input', async () => {
    const weight = heavyTailedWeight(8, 96, 1);
    const { h } = correlatedInputs(192, 96, 2);
    await assert.rejects(quantizeGptq(weight, 8, 96, h, { numBits: 8, type: 'float', symmetric: true, strategy: 'tensor', dynamic: false }), /integer weights/);
    await assert.rejects(quantizeGptq(weight, 8, 96, h, int(4, true, 64)), /group_size 64 does not divide in_features 96/);
  });

  it('reports which columns it quantized first (act-order) and the loss', async () => {
    const weight = heavyTailedWeight(16, 128, 3);
    const { h } = correlatedInputs(256, 128, 4);
    const result: GptqResult = await quantizeGptq(weight, 16, 128, h, int(4, true, 64, 'weight'), { engine: 'js' });
    const diag = Array.from({ length: 128 }, (_, i) => h[i * 128 + i]!);
    for (let j = 1; j < 128; j++) assert.ok(diag[result.perm![j - 1]!]! >= diag[result.perm![j]!]!);
    assert.ok(result.loss > 0 && Number.isFinite(result.loss));
  });
});
