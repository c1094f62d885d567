import assert from 'node:assert/strict';
import type { QuantArgs } from '../../src/core/quant/args';
import { rng as randomStream } from '../helpers/random';
import { dequantizeRtn, quantizeAutoFp8, quantizeRtn, QuantizeError, rtnSimdAvailable, type RtnResult, type ScaleDtype } from '../../src/core/quant/rtn';

// ---------------------------------------------------------------------------------------------------------
// Independent reference (float64, straight from docs/formats.md §2/§3.7 and the torch op order read upstream).
// Roundings are written from their definitions here: nearest of the two neighbours, ties to the even one.
// ---------------------------------------------------------------------------------------------------------

function bitsOf(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}
function fromBits(b: number): number {
  return new Float32Array(new Uint32Array([b >>> 0]).buffer)[0]!;
}

/** Nearest bfloat16 (ties to even) of the float32 value of x, by comparing the two bf16 neighbours. */
function refBf16(x: number): number {
  const v = Math.fround(x);
  if (v !== v || !Number.isFinite(v)) return v;
  const truncated = bitsOf(v) & 0xffff0000;
  const lo = fromBits(truncated); // toward zero
  if (lo === v) return v;
  const hi = fromBits(truncated + 0x10000); // away from zero
  const dlo = Math.abs(v - lo);
  const dhi = Math.abs(hi - v);
  if (dlo !== dhi) return dlo < dhi ? lo : hi;
  return ((truncated >>> 16) & 1) === 0 ? lo : hi;
}

/** Nearest IEEE binary16 (ties to even) of the float32 value of x. */
function refF16(x: number): number {
  const v = Math.fround(x);
  if (v === 0 || !Number.isFinite(v)) return v;
  const a = Math.abs(v);
  if (a >= 65520) return v > 0 ? Infinity : -Infinity;
  let e = -14; // subnormals share the spacing of the first binade
  while (e < 15 && 2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 10);
  const k = Math.floor(a / ulp);
  const lo = k * ulp;
  const hi = (k + 1) * ulp;
  const r = a - lo < hi - a ? lo : a - lo > hi - a ? hi : k % 2 === 0 ? lo : hi;
  return v < 0 ? -r : r;
}

/** float8_e4m3fn: all 127 non-negative finite values by code, from the layout (bias 7, no Inf, max 448). */
const E4M3_VALUES = Array.from({ length: 127 }, (_, c) => {
  const e = c >> 3;
  const m = c & 7;
  return e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7);
});

/** e4m3fn code of x (|x| ≤ 448 expected), nearest with ties to the even code; the sign of −0 is kept. */
function refE4M3(x: number): number {
  const neg = x < 0 || Object.is(x, -0);
  const a = Math.min(Math.abs(x), 448);
  let lo = 0;
  let hi = 126;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (E4M3_VALUES[mid]! <= a) lo = mid;
    else hi = mid - 1;
  }
  let code = lo;
  if (lo < 126 && E4M3_VALUES[lo] !== a) {
    const dlo = a - E4M3_VALUES[lo]!;
    const dhi = E4M3_VALUES[lo + 1]! - a;
    if (dhi < dlo || (dhi === dlo && lo % 2 === 1)) code = lo + 1;
  }
  return neg ? code | 0x80 : code;
}
function e4m3Value(code: number): number {
  const v = E4M3_VALUES[code & 0x7f]!;
  return code & 0x80 ? -v : v;
}

/** Round half to even, from the definition. */
function refRint(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** torch: an op evaluated in float32 whose result is stored in a tensor of dtype `dt`. */
function rd(dt: ScaleDtype, v: number): number {
  return dt === 'F32' ? Math.fround(v) : dt === 'BF16' ? refBf16(v) : refF16(v);
}
const EPS: Record<ScaleDtype, number> = { BF16: 2 ** -7, F16: 2 ** -10, F32: 2 ** -23 };

interface RefOptions {
  compute: ScaleDtype;
  scaleDtype: ScaleDtype;
  device: 'cpu' | 'cuda';
  gIdx?: Int32Array;
}
interface RefResult {
  q: number[];
  scale: number[];
  zp?: number[];
}

/** compressed-tensors observer + calculate_qparams + quantize, in float64 with explicit roundings. */
function refRtn(w: Float32Array, rows: number, cols: number, a: QuantArgs, o: RefOptions): RefResult {
  const isFloat = a.type === 'float';
  const qmin = isFloat ? -448 : -(2 ** (a.numBits - 1));
  const qmax = isFloat ? 448 : 2 ** (a.numBits - 1) - 1;
  let nCells: number;
  let cellOf: (r: number, c: number) => number;
  if (a.strategy === 'tensor') {
    nCells = 1;
    cellOf = () => 0;
  } else if (a.strategy === 'channel') {
    nCells = rows;
    cellOf = (r) => r;
  } else if (a.strategy === 'group') {
    const G = cols / a.groupSize!;
    nCells = rows * G;
    cellOf = (r, c) => r * G + (o.gIdx ? o.gIdx[c]! : Math.floor(c / a.groupSize!));
  } else {
    const [br, bc] = a.blockStructure!;
    const BC = Math.ceil(cols / bc);
    nCells = Math.ceil(rows / br) * BC;
    cellOf = (r, c) => Math.floor(r / br) * BC + Math.floor(c / bc);
  }
  const mn = new Array<number>(nCells).fill(0);
  const mx = new Array<number>(nCells).fill(0);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const k = cellOf(r, c);
      const v = w[r * cols + c]!;
      mn[k] = Math.min(mn[k]!, v);
      mx[k] = Math.max(mx[k]!, v);
    }
  const c = o.compute;
  const divide = (v: number, d: number) => (o.device === 'cuda' ? Math.fround(v * Math.fround(1 / d)) : v / d);
  const scale: number[] = [];
  const zp: number[] = [];
  const zpv: number[] = [];
  for (let k = 0; k < nCells; k++) {
    let s: number;
    if (a.symmetric) {
      s = rd(c, divide(Math.max(-mn[k]!, mx[k]!), (qmax - qmin) / 2));
      zp.push(0);
      zpv.push(0);
    } else {
      const d = rd(c, mx[k]! - mn[k]!);
      s = rd(c, divide(d, qmax - qmin));
      const t = rd(c, mn[k]! / s);
      let z = rd(c, qmin - t);
      z = Math.min(Math.max(z, qmin), qmax);
      if (Number.isNaN(z)) z = 0; // documented deviation: upstream's 0/0 zero point
      if (isFloat) {
        zp.push(refE4M3(z));
        zpv.push(e4m3Value(refE4M3(z)));
      } else {
        zp.push(refRint(z));
        zpv.push(refRint(z));
      }
    }
    let stored = o.scaleDtype === c ? s : rd(o.scaleDtype, s);
    if (stored === 0) stored = EPS[o.scaleDtype];
    scale.push(stored);
  }
  const q: number[] = [];
  for (let r = 0; r < rows; r++)
    for (let col = 0; col < cols; col++) {
      const k = cellOf(r, col);
      let v = rd(c, w[r * cols + col]! / scale[k]!);
      v = rd(c, v + zpv[k]!); // the zero point is always added (zero for symmetric)
      if (isFloat) q.push(refE4M3(Math.min(Math.max(v, -448), 448)));
      else q.push(Math.min(Math.max(refRint(v), qmin), qmax));
    }
  return { q, scale, ...(a.symmetric ? {} : { zp }) };
}

// ---------------------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------------------

const rng = (seed: number) => randomStream(seed, { openInterval: true });

/**
 * Heavy-tailed weights in the model dtype: Student-t (df 3), two outlier columns (×30), a zero row, an
 * all-positive row, an all-negative row, some −0.
 */
function heavyTailed(rows: number, cols: number, seed: number, dtype: ScaleDtype = 'BF16'): Float32Array {
  const u = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  const w = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const chi2 = gauss() ** 2 + gauss() ** 2 + gauss() ** 2;
      let v = (0.02 * gauss()) / Math.sqrt(chi2 / 3);
      if (c === 5 % cols || c === (cols * 2) / 3) v *= 30;
      if (r === 2 % rows) v = 0;
      if (r === 3 % rows) v = Math.abs(v);
      if (r === 4 % rows) v = -Math.abs(v) - 0.001;
      if (r === 1 % rows && c % 7 === 0) v = -0;
      w[r * cols + c] = rd(dtype, v);
    }
  return w;
}

const int = (numBits: number, symmetric: boolean, strategy: QuantArgs['strategy'], extra: Partial<QuantArgs> = {}): QuantArgs => ({ numBits, type: 'int', symmetric, strategy, dynamic: false, ...extra });
const fp8 = (symmetric: boolean, strategy: QuantArgs['strategy'], extra: Partial<QuantArgs> = {}): QuantArgs => ({ numBits: 8, type: 'float', symmetric, strategy, dynamic: false, ...extra });
const describeArgs = (a: QuantArgs) => `${a.type}${a.numBits} ${a.symmetric ? 'sym' : 'asym'} ${a.strategy}${a.groupSize ? ` ${a.groupSize}` : ''}${a.blockStructure ? ` [${a.blockStructure.join('x')}]` : ''}`;

function assertMatchesReference(res: RtnResult, ref: RefResult, label: string): void {
  const q = Array.from(res.kind === 'fp8' ? res.q : res.q);
  let bad = -1;
  for (let i = 0; i < q.length; i++) if (q[i] !== ref.q[i]) { bad = i; break; }
  assert.equal(bad, -1, `${label}: q[${bad}] = ${q[bad]}, reference ${ref.q[bad]}`);
  assert.deepEqual(Array.from(res.scale), ref.scale, `${label}: scales`);
  if (ref.zp) assert.deepEqual(Array.from(res.zeroPoint!), ref.zp, `${label}: zero points`);
  else assert.equal(res.zeroPoint, undefined, `${label}: symmetric schemes store no zero point`);
}

const ROWS = 24;
const COLS = 192;

// ---------------------------------------------------------------------------------------------------------

describe('quantizeRtn against an independent float64 reference', function () {
  this.timeout(60_000);
  const schemes: QuantArgs[] = [];
  for (const bits of [4, 8])
    for (const sym of [true, false]) {
      schemes.push(int(bits, sym, 'tensor'), int(bits, sym, 'channel'), int(bits, sym, 'group', { groupSize: 64 }), int(bits, sym, 'group', { groupSize: 32 }), int(bits, sym, 'block', { blockStructure: [10, 80] }));
    }
  for (const sym of [true, false]) schemes.push(fp8(sym, 'tensor'), fp8(sym, 'channel'), fp8(sym, 'group', { groupSize: 64 }), fp8(sym, 'block', { blockStructure: [16, 128] }));

  for (const dtype of ['BF16', 'F32', 'F16'] as const) {
    for (const device of ['cuda', 'cpu'] as const) {
      it(`${dtype} model, ${device} qparams: every strategy × sym/asym × int4/int8/fp8, both engines`, () => {
        const w = heavyTailed(ROWS, COLS, dtype.length * 31 + device.length, dtype);
        for (const a of schemes) {
          const ref = refRtn(w, ROWS, COLS, a, { compute: dtype, scaleDtype: dtype, device });
          for (const engine of ['auto', 'js'] as const) {
            const res = quantizeRtn(w, ROWS, COLS, a, { scaleDtype: dtype, torchDevice: device, engine });
            assertMatchesReference(res, ref, `${describeArgs(a)} ${engine}`);
          }
        }
      });
    }
  }

  it('every bit width 1–8, symmetric and asymmetric, group 32 and channel', () => {
    const w = heavyTailed(ROWS, COLS, 7);
    for (let bits = 1; bits <= 8; bits++)
      for (const sym of [true, false])
        for (const a of [int(bits, sym, 'group', { groupSize: 32 }), int(bits, sym, 'channel')]) {
          const ref = refRtn(w, ROWS, COLS, a, { compute: 'BF16', scaleDtype: 'BF16', device: 'cuda' });
          for (const engine of ['auto', 'js'] as const) assertMatchesReference(quantizeRtn(w, ROWS, COLS, a, { engine }), ref, `${describeArgs(a)} ${engine}`);
        }
  });

  it('shapes the SIMD engine pads (cols not a multiple of 16) and single rows/columns', () => {
    for (const [rows, cols] of [[5, 37], [1, 1], [1, 16], [3, 250], [17, 8]] as const) {
      const w = heavyTailed(rows, cols, rows * 100 + cols);
      for (const a of [int(8, true, 'channel'), int(4, false, 'channel'), int(4, true, 'tensor'), int(8, false, 'tensor')]) {
        const ref = refRtn(w, rows, cols, a, { compute: 'BF16', scaleDtype: 'BF16', device: 'cuda' });
        for (const engine of ['auto', 'js'] as const) assertMatchesReference(quantizeRtn(w, rows, cols, a, { engine }), ref, `${rows}x${cols} ${describeArgs(a)} ${engine}`);
      }
    }
  });

  it('act-order g_idx: groups are the columns g_idx assigns to them', () => {
    const u = rng(99);
    const cols = 128;
    const perm = Array.from({ length: cols }, (_, i) => i).sort(() => u() - 0.5);
    const gIdx = new Int32Array(cols);
    perm.forEach((c, i) => (gIdx[c] = Math.floor(i / 32)));
    const w = heavyTailed(ROWS, cols, 5);
    for (const a of [int(4, true, 'group', { groupSize: 32, actorder: 'group' }), int(4, false, 'group', { groupSize: 32, actorder: 'group' }), fp8(true, 'group', { groupSize: 32 })]) {
      const ref = refRtn(w, ROWS, cols, a, { compute: 'BF16', scaleDtype: 'BF16', device: 'cuda', gIdx });
      const res = quantizeRtn(w, ROWS, cols, a, { gIdx });
      assertMatchesReference(res, ref, describeArgs(a));
      assert.equal(res.gIdx, gIdx);
      // and it differs from plain column-order grouping (the permutation matters)
      assert.notDeepEqual(Array.from(res.scale), Array.from(quantizeRtn(w, ROWS, cols, a).scale));
    }
  });

  it('a scale dtype other than the compute dtype is rounded after calculate_qparams (zp from the unrounded scale)', () => {
    const w = heavyTailed(ROWS, COLS, 12, 'F32');
    for (const a of [int(4, false, 'group', { groupSize: 64 }), int(8, true, 'channel'), fp8(true, 'channel')]) {
      const ref = refRtn(w, ROWS, COLS, a, { compute: 'F32', scaleDtype: 'BF16', device: 'cuda' });
      assertMatchesReference(quantizeRtn(w, ROWS, COLS, a, { scaleDtype: 'BF16', computeDtype: 'F32' }), ref, describeArgs(a));
    }
  });
});

describe('quantizeRtn semantics', function () {
  this.timeout(60_000);
  it('rounds half to even (scale exactly 1: amax 127.5 for int8)', () => {
    const xs = [127.5, 0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 126.5, -126.5, -127.5, 100.5, 101.5];
    const w = new Float32Array(xs);
    const res = quantizeRtn(w, 1, xs.length, int(8, true, 'channel'), { computeDtype: 'F32', scaleDtype: 'F32', torchDevice: 'cpu' });
    assert.deepEqual(Array.from(res.scale), [1]);
    // 127.5 → 128 (even) → clamped to 127; −127.5 → −128 (even)
    assert.deepEqual(Array.from(res.q), [127, 0, 2, 2, 4, 0, -2, -2, 126, -126, -128, 100, 102]);
  });

  it('ties of the bf16 rounding of x/s go to the even bf16 value (float32 inputs can hit them)', () => {
    // scale 1 (amax 127.5); 101.25 lies halfway between the bf16 values 101 (even) and 101.5 (odd):
    // ties-to-even gives 101, so q = 101 (half-up would give 101.5 and then 102).
    const w = new Float32Array([127.5, 101.25, 103.25, -101.25, 100.75, 64.25]);
    for (const engine of ['auto', 'js'] as const) {
      const res = quantizeRtn(w, 1, w.length, int(8, true, 'channel'), { engine });
      assert.deepEqual(Array.from(res.scale), [1]);
      assert.deepEqual(Array.from(res.q), [127, 101, 103, -101, 101, 64], engine);
      assertMatchesReference(res, refRtn(w, 1, w.length, int(8, true, 'channel'), { compute: 'BF16', scaleDtype: 'BF16', device: 'cuda' }), engine);
    }
  });

  it('bf16 arithmetic rounds x/s to bf16 before rounding to an integer (differs from float32 arithmetic)', () => {
    // int8 per-channel on Gaussian rows: |x/s| reaches [64, 128), where bf16 has a spacing of 0.5, so some
    // quotients in (k + 0.25, k + 0.5) with k odd first become k + 0.5 and then k + 1.
    const u = rng(3);
    const rows = 64;
    const cols = 512;
    const w = new Float32Array(rows * cols).map(() => refBf16(Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u())));
    const a = int(8, true, 'channel');
    const bf = quantizeRtn(w, rows, cols, a, { scaleDtype: 'BF16' });
    const f32 = quantizeRtn(w, rows, cols, a, { scaleDtype: 'BF16', computeDtype: 'F32' });
    assert.deepEqual(Array.from(bf.scale), Array.from(f32.scale)); // same bf16 scales: bf16(fround(amax / 127.5)) either way
    let differ = 0;
    let beyondHalf = 0;
    for (let i = 0; i < w.length; i++) {
      if (bf.q[i] !== f32.q[i]) differ++;
      const s = bf.scale[Math.floor(i / cols)]!;
      const err = Math.abs(w[i]! - bf.q[i]! * s);
      if (err > s / 2) beyondHalf++;
      const v = Math.abs(w[i]! / s);
      // the bound that holds with bf16 arithmetic: half a step plus half a bf16 ulp of x/s
      const ulp = 2 ** (Math.floor(Math.log2(Math.max(v, 2 ** -126))) - 7);
      if (v < 127.5) assert.ok(err <= s * (0.5 + ulp / 2) + 1e-12, `element ${i}: error ${err} > bound`);
    }
    assert.ok(differ > 0, 'bf16 and float32 arithmetic must differ somewhere on this data');
    assert.ok(beyondHalf > 0, 'bf16 double rounding exceeds half a step somewhere');
    assertMatchesReference(bf, refRtn(w, rows, cols, a, { compute: 'BF16', scaleDtype: 'BF16', device: 'cuda' }), 'bf16');
  });

  it('error bound |x − x̂| ≤ scale/2 inside the range with float32 arithmetic (int4/int8, sym/asym, group/channel)', () => {
    const rows = 32;
    const cols = 256;
    const w = heavyTailed(rows, cols, 21, 'F32');
    for (const a of [int(4, true, 'group', { groupSize: 64 }), int(4, false, 'group', { groupSize: 64 }), int(8, true, 'channel'), int(8, false, 'channel')]) {
      const res = quantizeRtn(w, rows, cols, a, { scaleDtype: 'F32', computeDtype: 'F32' }) as Extract<RtnResult, { kind: 'int' }>;
      const deq = dequantizeRtn(res);
      const G = res.scaleShape[1]!;
      const gs = cols / G;
      const qmax = 2 ** (a.numBits - 1) - 1;
      const qmin = -qmax - 1;
      let checked = 0;
      for (let i = 0; i < w.length; i++) {
        const cell = Math.floor(i / cols) * G + Math.floor((i % cols) / gs);
        const s = res.scale[cell]!;
        const z = res.zeroPoint ? res.zeroPoint[cell]! : 0;
        const v = w[i]! / s + z;
        if (v < qmin - 0.5 || v > qmax + 0.5) continue;
        checked++;
        // exact x̂ in float64; the float32 roundings of x/s and of + zp may move a quotient by 2^-24 relative
        const exact = (res.q[i]! - z) * s;
        assert.ok(Math.abs(w[i]! - exact) <= (s / 2) * (1 + 2 ** -14), `${describeArgs(a)} element ${i}`);
        assert.equal(deq[i], Math.fround(exact));
      }
      assert.ok(checked > w.length * 0.99);
    }
  });

  it('zero rows and an all-zero tensor: scale = eps of the scale dtype, q = 0, zero point 0', () => {
    const w = new Float32Array(4 * 32);
    for (const [dtype, eps] of [['BF16', 2 ** -7], ['F16', 2 ** -10], ['F32', 2 ** -23]] as const) {
      for (const a of [int(4, true, 'channel'), int(4, false, 'group', { groupSize: 16 }), int(8, false, 'tensor'), fp8(true, 'tensor'), fp8(false, 'channel')]) {
        for (const engine of ['auto', 'js'] as const) {
          const res = quantizeRtn(w, 4, 32, a, { scaleDtype: dtype, engine });
          assert.ok(res.scale.every((s) => s === eps), `${dtype} ${describeArgs(a)}`);
          assert.ok(Array.from(res.q).every((v) => v === 0));
          if (res.zeroPoint) assert.ok(Array.from(res.zeroPoint).every((v) => v === 0));
          assert.ok(dequantizeRtn(res).every((v) => v === 0));
        }
      }
    }
  });

  it('FP8 saturates at ±448 (code 0x7E/0xFE, never NaN) when the rounded scale is below amax/448', () => {
    // Find a bf16 amax whose bf16 scale rounds down, so amax / scale > 448.
    let amax = 0;
    for (let b = 0x3c00; b < 0x3d00; b++) {
      const x = fromBits(b << 16);
      if (x / refBf16(x / 448) > 448) { amax = x; break; }
    }
    assert.ok(amax > 0);
    const w = new Float32Array([amax, -amax, amax / 2, 0]);
    for (const engine of ['auto', 'js'] as const) {
      const res = quantizeRtn(w, 1, 4, fp8(true, 'tensor'), { engine });
      assert.deepEqual(Array.from(res.q.subarray(0, 2)), [0x7e, 0xfe]);
    }
  });

  it('FP8 symmetric: −0 becomes +0 (upstream adds the zero zero-point) and negative tiny values keep their sign', () => {
    const w = new Float32Array([-0, 448, -1e-6, 1e-6]);
    const res = quantizeRtn(w, 1, 4, fp8(true, 'tensor'), { scaleDtype: 'F32' });
    assert.deepEqual(Array.from(res.q), [0x00, 0x7e, 0x80, 0x00]);
  });

  it('stored scales are values of the scale dtype (exactly representable)', () => {
    const w = heavyTailed(ROWS, COLS, 4, 'F32');
    for (const dtype of ['BF16', 'F16', 'F32'] as const)
      for (const a of [int(4, true, 'group', { groupSize: 32 }), int(8, false, 'channel'), fp8(true, 'channel')]) {
        const res = quantizeRtn(w, ROWS, COLS, a, { scaleDtype: dtype, computeDtype: 'F32' });
        for (const s of res.scale) assert.equal(rd(dtype, s), s, `${dtype} ${describeArgs(a)} scale ${s}`);
      }
  });

  it('dequantize is exactly (q − zp) · stored scale', () => {
    const w = heavyTailed(ROWS, COLS, 8);
    for (const a of [int(4, false, 'group', { groupSize: 64 }), int(8, true, 'tensor'), int(4, true, 'block', { blockStructure: [7, 50] }), fp8(false, 'channel'), fp8(true, 'block', { blockStructure: [16, 128] })]) {
      const res = quantizeRtn(w, ROWS, COLS, a);
      const deq = dequantizeRtn(res);
      const ref = refRtn(w, ROWS, COLS, a, { compute: 'BF16', scaleDtype: 'BF16', device: 'cuda' });
      // recompute each product independently from the reference's q/scale/zp (exact in float64)
      let i = 0;
      for (let r = 0; r < ROWS; r++)
        for (let c = 0; c < COLS; c++, i++) {
          const cell =
            a.strategy === 'tensor' ? 0 : a.strategy === 'group' ? r * (COLS / a.groupSize!) + Math.floor(c / a.groupSize!) : a.strategy === 'channel' ? r : Math.floor(r / a.blockStructure![0]) * Math.ceil(COLS / a.blockStructure![1]) + Math.floor(c / a.blockStructure![1]);
          const qv = a.type === 'float' ? e4m3Value(ref.q[i]!) : ref.q[i]!;
          const z = ref.zp ? (a.type === 'float' ? e4m3Value(ref.zp[cell]!) : ref.zp[cell]!) : 0;
          assert.equal(deq[i], Math.fround((qv - z) * ref.scale[cell]!), `${describeArgs(a)} [${r}, ${c}]`);
          if (a.type === 'int') assert.equal(deq[i], (qv - z) * ref.scale[cell]!, 'int × bf16 scale is exact in float32');
        }
      // rounding to the scale dtype, as torch's dequantize does
      const rounded = dequantizeRtn(res, { roundTo: 'BF16' });
      for (let k = 0; k < deq.length; k++) assert.equal(rounded[k], refBf16(deq[k]!));
    }
  });

  it('group size that does not divide the columns is an error naming rows, cols and the group size', () => {
    const w = new Float32Array(3 * 100);
    assert.throws(
      () => quantizeRtn(w, 3, 100, int(4, true, 'group', { groupSize: 64 })),
      (e: unknown) => e instanceof QuantizeError && /rows 3/.test(e.message) && /cols 100/.test(e.message) && /group_size 64/.test(e.message),
    );
  });

  it('rejects what RTN cannot do, with the reason', () => {
    const w = new Float32Array(8);
    const cases: [QuantArgs, RegExp, object?][] = [
      [{ numBits: 8, type: 'int', symmetric: true, strategy: 'token', dynamic: true }, /dynamic/],
      [{ numBits: 4, type: 'float', symmetric: true, strategy: 'tensor_group', groupSize: 16, dynamic: false }, /tensor_group|FP4/],
      [{ numBits: 8, type: 'int', symmetric: true, strategy: 'channel', dynamic: false, scaleDtype: 'float8_e4m3fn' }, /scale_dtype/],
      [int(8, true, 'channel'), /g_idx applies to strategy group/, { gIdx: new Int32Array(4) }],
      [int(4, true, 'group', { groupSize: 2 }), /exactly group_size 2/, { gIdx: new Int32Array([0, 0, 0, 1]) }],
      [int(8, true, 'channel'), /elements/, { out: new Int8Array(3) }],
    ];
    for (const [a, re, opts] of cases) assert.throws(() => quantizeRtn(w, 2, 4, a, opts), (e: unknown) => e instanceof QuantizeError && re.test(e.message), describeArgs(a));
    assert.throws(() => quantizeRtn(w, 3, 4, int(8, true, 'channel')), /rows × cols/);
  });

  it('NaN and ±Inf in the weight are errors that say where', () => {
    for (const engine of ['auto', 'js'] as const)
      for (const a of [int(8, true, 'channel'), int(4, false, 'group', { groupSize: 16 }), int(8, true, 'tensor'), fp8(true, 'channel')]) {
        const w = heavyTailed(4, 32, 1);
        w[2 * 32 + 20] = NaN;
        assert.throws(() => quantizeRtn(w, 4, 32, a, { engine }), (e: unknown) => e instanceof QuantizeError && /NaN/.test(e.message) && (a.strategy === 'tensor' || /row 2/.test(e.message)), `${describeArgs(a)} ${engine}`);
        w[2 * 32 + 20] = -Infinity;
        assert.throws(() => quantizeRtn(w, 4, 32, a, { engine }), (e: unknown) => e instanceof QuantizeError && /Inf/.test(e.message), `${describeArgs(a)} ${engine}`);
      }
  });

  it('pack: true gives compressed-tensors weight_packed (fused in the SIMD pass or packed afterwards)', () => {
    const w = heavyTailed(ROWS, COLS, 17);
    for (const a of [int(4, true, 'group', { groupSize: 32 }), int(8, true, 'channel'), int(4, false, 'channel'), int(3, true, 'group', { groupSize: 64 }), int(4, true, 'block', { blockStructure: [8, 64] })]) {
      for (const engine of ['auto', 'js'] as const) {
        const res = quantizeRtn(w, ROWS, COLS, a, { pack: true, engine });
        assert.ok(res.kind === 'int' && res.packed);
        // independent packer: LSB-first dense stream of q + 2^(b-1), rows padded to words
        const b = a.numBits;
        const wpr = Math.ceil((COLS * b) / 32);
        for (let r = 0; r < ROWS; r++) {
          let acc = 0n;
          for (let c = COLS - 1; c >= 0; c--) acc = (acc << BigInt(b)) | BigInt(res.q[r * COLS + c]! + 2 ** (b - 1));
          for (let k = 0; k < wpr; k++) assert.equal(res.packed[r * wpr + k], Number(BigInt.asIntN(32, acc >> BigInt(32 * k))), `${describeArgs(a)} ${engine} row ${r} word ${k}`);
        }
      }
    }
    assert.throws(() => quantizeRtn(w, ROWS, COLS, fp8(true, 'channel'), { pack: true }), QuantizeError);
  });

  it('reuses output buffers (q and packed words, stale contents overwritten)', () => {
    const w = heavyTailed(4, 64, 2);
    const out = new Int8Array(4 * 64 + 10);
    const res = quantizeRtn(w, 4, 64, int(8, true, 'channel'), { out });
    assert.equal(res.q.buffer, out.buffer);
    assert.deepEqual(Array.from(res.q), Array.from(quantizeRtn(w, 4, 64, int(8, true, 'channel')).q));
    for (const [a, engine] of [[int(4, true, 'group', { groupSize: 32 }), 'auto'], [int(3, false, 'channel'), 'auto'], [int(4, true, 'group', { groupSize: 32 }), 'js']] as const) {
      const packOut = new Int32Array(64).fill(-1);
      const r = quantizeRtn(w, 4, 64, a, { packOut, engine });
      assert.ok(r.kind === 'int' && r.packed && r.packed.buffer === packOut.buffer);
      const fresh = quantizeRtn(w, 4, 64, a, { pack: true });
      assert.ok(fresh.kind === 'int');
      assert.deepEqual(r.packed, fresh.packed);
    }
    assert.throws(() => quantizeRtn(w, 4, 64, int(4, true, 'channel'), { packOut: new Int32Array(3) }), /packOut/);
  });

  it('the SIMD and portable engines agree on larger random matrices', function () {
    if (!rtnSimdAvailable()) this.skip();
    const rows = 96;
    const cols = 1024;
    const w = heavyTailed(rows, cols, 1234);
    for (const a of [int(8, true, 'channel'), int(8, false, 'channel'), int(4, true, 'group', { groupSize: 128 }), int(4, false, 'group', { groupSize: 128 }), int(2, false, 'group', { groupSize: 16 }), int(4, true, 'tensor')])
      for (const dtype of ['BF16', 'F32'] as const)
        for (const device of ['cuda', 'cpu'] as const) {
          const o = { scaleDtype: dtype, torchDevice: device, pack: a.numBits % 4 === 0 } as const;
          const x = quantizeRtn(w, rows, cols, a, { ...o, engine: 'auto' });
          const y = quantizeRtn(w, rows, cols, a, { ...o, engine: 'js' });
          assert.deepEqual(x.q, y.q, describeArgs(a));
          assert.deepEqual(x.scale, y.scale);
          assert.deepEqual(x.zeroPoint, y.zeroPoint);
          if (x.kind === 'int' && y.kind === 'int') assert.deepEqual(x.packed, y.packed);
        }
  });

  it('float32 inputs under bf16 arithmetic (x/s can then fall on or next to a bf16 midpoint)', () => {
    // With bf16 weights and scales x/s is never within 2^-16 (relative) of a bf16 midpoint; with float32
    // weights it can be, which exercises the rounding of the quotient itself.
    const rows = 64;
    const cols = 512;
    const w = heavyTailed(rows, cols, 4321, 'F32');
    for (const a of [int(8, true, 'channel'), int(4, false, 'group', { groupSize: 128 }), int(8, false, 'tensor')]) {
      const ref = refRtn(w, rows, cols, a, { compute: 'BF16', scaleDtype: 'BF16', device: 'cuda' });
      for (const engine of ['auto', 'js'] as const) assertMatchesReference(quantizeRtn(w, rows, cols, a, { engine }), ref, `${describeArgs(a)} ${engine}`);
    }
  });

  it('scale shapes follow initialize_qparams', () => {
    const w = heavyTailed(10, 96, 3);
    assert.deepEqual(quantizeRtn(w, 10, 96, int(8, true, 'tensor')).scaleShape, [1]);
    assert.deepEqual(quantizeRtn(w, 10, 96, int(8, true, 'channel')).scaleShape, [10, 1]);
    assert.deepEqual(quantizeRtn(w, 10, 96, int(8, true, 'group', { groupSize: 32 })).scaleShape, [10, 3]);
    assert.deepEqual(quantizeRtn(w, 10, 96, fp8(true, 'block', { blockStructure: [4, 64] })).scaleShape, [3, 2]);
  });
});

describe('quantizeAutoFp8 (AutoFP8 per_tensor_quantize)', function () {
  this.timeout(30_000);
  /** Reference: amax.clamp(min=1e-12); 448 / t is t.reciprocal() * 448; x * mult; clamp; cast. */
  function refAutoFp8(w: Float32Array, c: ScaleDtype): { q: number[]; scale: number } {
    let amax = w.length === 0 ? 16 : 0;
    for (const v of w) amax = Math.max(amax, Math.abs(v));
    const tiny = Math.fround(1e-12);
    const clamped = rd(c, amax < tiny ? tiny : amax);
    const mult = rd(c, rd(c, 1 / clamped) * 448);
    return { q: Array.from(w, (x) => refE4M3(Math.min(Math.max(rd(c, x * mult), -448), 448))), scale: Math.fround(1 / mult) };
  }

  for (const dtype of ['BF16', 'F16', 'F32'] as const) {
    it(`${dtype}: codes and the F32 inverse scale`, () => {
      for (const seed of [1, 2, 3, 4, 5]) {
        const w = heavyTailed(16, 64, seed * 7, dtype);
        const res = quantizeAutoFp8(w, 16, 64, { computeDtype: dtype });
        const ref = refAutoFp8(w, dtype);
        assert.deepEqual(Array.from(res.q), ref.q);
        assert.deepEqual(Array.from(res.scale), [ref.scale]);
        assert.deepEqual(res.scaleShape, []);
        assert.equal(res.scaleDtype, 'F32');
        const deq = dequantizeRtn(res);
        for (let i = 0; i < w.length; i++) assert.equal(deq[i], Math.fround(e4m3Value(ref.q[i]!) * ref.scale));
      }
    });
  }

  it('multiplies by round(round(1/amax)·448), which is not always round(448/amax)', () => {
    let differs = 0;
    for (let b = 0x3c00; b < 0x3e00; b++) {
      const amax = fromBits(b << 16);
      const res = quantizeAutoFp8(new Float32Array([amax]), 1, 1);
      const oneDivision = refBf16(448 / amax);
      if (Math.fround(1 / oneDivision) !== res.scale[0]) differs++;
      assert.equal(res.scale[0], refAutoFp8(new Float32Array([amax]), 'BF16').scale);
    }
    assert.ok(differs > 0);
  });

  it('saturates instead of producing NaN when x · mult exceeds 448', () => {
    let found = 0;
    for (let b = 0x3c00; b < 0x3e00 && found < 3; b++) {
      const amax = fromBits(b << 16);
      const mult = refBf16(refBf16(1 / amax) * 448);
      if (refBf16(amax * mult) > 448) {
        const res = quantizeAutoFp8(new Float32Array([amax, -amax]), 1, 2);
        assert.deepEqual(Array.from(res.q), [0x7e, 0xfe]);
        found++;
      }
    }
    assert.ok(found > 0, 'some bf16 amax overshoots 448');
  });

  it('an empty tensor uses amax 16; an all-zero one the 1e-12 floor', () => {
    assert.equal(quantizeAutoFp8(new Float32Array(0), 0, 4).scale[0], refAutoFp8(new Float32Array(0), 'BF16').scale);
    const z = quantizeAutoFp8(new Float32Array(8), 2, 4);
    assert.equal(z.scale[0], refAutoFp8(new Float32Array(8), 'BF16').scale);
    assert.ok(z.q.every((v) => v === 0));
  });
});
