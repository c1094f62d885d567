/**
 * GPTQ against an independent float64 implementation written here straight from the paper's pseudo-code
 * (Frantar et al. 2023, Algorithm 1 without the lazy batching): H⁻¹ formed explicitly, its upper Cholesky
 * factor U, then column by column q_j = quant(w_j), e = (w_j − q_j) / U_jj, w_k −= e · U_jk for k > j.
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
import { loadOrt } from '../../src/core/quant/gemm';
import { dequantizeRtn, quantizeRtn } from '../../src/core/quant/rtn';
import { rng } from '../helpers/random';
import { roundToBf16 as bf16 } from '../helpers/weights';

// ---------------------------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------------------------

function gaussian(random: () => number): () => number {
  return () => {
    const u = Math.max(random(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
}

/** Heavy-tailed weight: Student-t-like rows with a few outlier input columns, rounded to bf16. */
function heavyTailedWeight(rows: number, cols: number, seed: number): Float32Array {
  const random = rng(seed);
  const normal = gaussian(random);
  const colScale = Array.from({ length: cols }, () => (random() < 0.03 ? 3 : 1));
  const w = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const t = normal() / Math.sqrt(0.3 + random()); // heavier tails than a Gaussian
      w[r * cols + c] = bf16(0.02 * t * colScale[c]!);
    }
  }
  return w;
}

/** Correlated activations X [tokens, cols] = Z · M with heavy-tailed channel scales, and H = 2/n XᵀX. */
function correlatedInputs(tokens: number, cols: number, seed: number, deadColumns: readonly number[] = []): { x: Float64Array; h: Float64Array } {
  const random = rng(seed);
  const normal = gaussian(random);
  const channel = Array.from({ length: cols }, () => Math.exp(1.2 * normal()));
  const mixing = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) mixing[i * cols + j] = (i === j ? 1 : 0) + 0.25 * normal() / Math.sqrt(cols);
  const z = new Float64Array(cols);
  const x = new Float64Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < cols; i++) z[i] = normal() * channel[i]!;
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let i = 0; i < cols; i++) s += z[i]! * mixing[i * cols + j]!;
      x[t * cols + j] = s;
    }
    for (const d of deadColumns) x[t * cols + d] = 0;
  }
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) {
    const row = t * cols;
    for (let i = 0; i < cols; i++) {
      const xi = x[row + i]!;
      if (xi === 0) continue;
      for (let j = 0; j < cols; j++) h[i * cols + j]! += xi * x[row + j]!;
    }
  }
  for (let i = 0; i < h.length; i++) h[i] = (2 / tokens) * h[i]!;
  return { x, h };
}


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

// ---------------------------------------------------------------------------------------------------------
// The reference: unblocked, explicit inverse, float64
// ---------------------------------------------------------------------------------------------------------

function choleskyLower(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let s = a[j * n + j]!;
    for (let p = 0; p < j; p++) s -= l[j * n + p]! ** 2;
    if (!(s > 0)) throw new Error(`reference: not positive definite at ${j}`);
    l[j * n + j] = Math.sqrt(s);
    for (let i = j + 1; i < n; i++) {
      let t = a[i * n + j]!;
      for (let p = 0; p < j; p++) t -= l[i * n + p]! * l[j * n + p]!;
      l[i * n + j] = t / l[j * n + j]!;
    }
  }
  return l;
}

interface ReferenceOptions {
  args: QuantArgs;
  damp: number;
  lazy: boolean;
}

/** GPTQ as in the paper (no blocking), returning the codes [rows, cols] in the original column order. */
function referenceGptq(weight: Float32Array, rows: number, cols: number, hessian: Float64Array, o: ReferenceOptions): { q: Int8Array; scale: Float32Array; zeroPoint?: Int8Array; gIdx?: Int32Array } {
  const { args } = o;
  const gs = args.strategy === 'group' ? args.groupSize! : cols;
  const G = cols / gs;
  const diag = Array.from({ length: cols }, (_, i) => hessian[i * cols + i]!);
  const order = Array.from({ length: cols }, (_, i) => i);
  if (args.actorder) order.sort((a, b) => diag[b]! - diag[a]! || a - b);
  const groupAt = (j: number) => (args.strategy !== 'group' ? 0 : args.actorder === 'weight' ? Math.floor(order[j]! / gs) : Math.floor(j / gs));
  const gIdx = new Int32Array(cols);
  for (let j = 0; j < cols; j++) gIdx[order[j]!] = groupAt(j);
  // Permuted working copies.
  const w = new Float64Array(rows * cols);
  const h = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) h[i * cols + j] = hessian[order[i]! * cols + order[j]!]!;
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) w[r * cols + j] = weight[r * cols + order[j]!]!;
  for (let i = 0; i < cols; i++) {
    if (h[i * cols + i] === 0) {
      h[i * cols + i] = 1;
      for (let r = 0; r < rows; r++) w[r * cols + i] = 0;
    }
  }
  let mean = 0;
  for (let i = 0; i < cols; i++) mean += h[i * cols + i]! / cols;
  for (let i = 0; i < cols; i++) h[i * cols + i]! += o.damp * mean;
  // H⁻¹ = L⁻ᵀ L⁻¹, then U = cholesky(H⁻¹)ᵀ (upper).
  const l = choleskyLower(h, cols);
  const linv = new Float64Array(cols * cols);
  for (let c = 0; c < cols; c++) {
    linv[c * cols + c] = 1 / l[c * cols + c]!;
    for (let r = c + 1; r < cols; r++) {
      let t = 0;
      for (let p = c; p < r; p++) t -= l[r * cols + p]! * linv[p * cols + c]!;
      linv[r * cols + c] = t / l[r * cols + r]!;
    }
  }
  const hinv = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let p = Math.max(i, j); p < cols; p++) s += linv[p * cols + i]! * linv[p * cols + j]!;
      hinv[i * cols + j] = s;
    }
  }
  const lower = choleskyLower(hinv, cols);
  const U = (i: number, j: number) => lower[j * cols + i]!;
  // Parameters: upfront from the original weight (RTN's observer), or per group when it starts.
  let scale: Float32Array;
  let zeroPoint: Int8Array | undefined;
  if (!o.lazy) {
    const rtn = quantizeRtn(weight, rows, cols, args, args.actorder === 'group' ? { gIdx } : {});
    scale = rtn.scale;
    zeroPoint = rtn.zeroPoint as Int8Array | undefined;
  } else {
    scale = new Float32Array(rows * G);
    zeroPoint = args.symmetric ? undefined : new Int8Array(rows * G);
  }
  const qmin = -(2 ** (args.numBits - 1));
  const qmax = -qmin - 1;
  const q = new Int8Array(rows * cols);
  for (let j = 0; j < cols; j++) {
    const g = groupAt(j);
    if (o.lazy && j % gs === 0) {
      const slice = new Float32Array(rows * gs);
      for (let r = 0; r < rows; r++) for (let k = 0; k < gs; k++) slice[r * gs + k] = w[r * cols + j + k]!;
      const p = quantizeRtn(slice, rows, gs, { ...args, strategy: 'channel', groupSize: undefined, actorder: undefined }, { computeDtype: 'F32' });
      for (let r = 0; r < rows; r++) {
        scale[r * G + g] = p.scale[r]!;
        if (zeroPoint) zeroPoint[r * G + g] = (p.zeroPoint as Int8Array)[r]!;
      }
    }
    for (let r = 0; r < rows; r++) {
      const cell = r * G + g;
      const s = scale[cell]!;
      const z = zeroPoint ? zeroPoint[cell]! : 0;
      const value = w[r * cols + j]!;
      // Round half to even.
      const v = value / s + z;
      let code = Math.round(v);
      if (Math.abs(v - Math.trunc(v)) === 0.5) code = 2 * Math.round(v / 2);
      code = Math.min(qmax, Math.max(qmin, code));
      q[r * cols + order[j]!] = code;
      const e = (value - (code - z) * s) / U(j, j);
      for (let k = j + 1; k < cols; k++) w[r * cols + k]! -= e * U(j, k);
    }
  }
  return { q, scale, zeroPoint, ...(args.strategy === 'group' ? { gIdx } : {}) };
}

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
    if (!loadOrt()) this.skip();
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
