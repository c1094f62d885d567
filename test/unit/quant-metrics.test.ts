import assert from 'node:assert/strict';
import { ErrorAccumulator, errorMetrics } from '../../src/core/quant/metrics';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
}

/** Independent reference: straight sums in float64 over plain arrays. */
function reference(ref: ArrayLike<number>, approx: ArrayLike<number>) {
  let e2 = 0;
  let w2 = 0;
  let a2 = 0;
  let dot = 0;
  let maxAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = ref[i]! - approx[i]!;
    e2 += e * e;
    w2 += ref[i]! ** 2;
    a2 += approx[i]! ** 2;
    dot += ref[i]! * approx[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(e));
  }
  return { mse: e2 / ref.length, rel: Math.sqrt(e2) / Math.sqrt(w2), sqnr: 10 * Math.log10(w2 / e2), maxAbs, cos: dot / Math.sqrt(w2 * a2) };
}

const close = (a: number, b: number, rel = 1e-12, what = '') => assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b)), `${what}: ${a} vs ${b}`);

describe('reconstruction error metrics', () => {
  it('a hand-computed example: ref [3, 4], approx [3, 0]', () => {
    const m = errorMetrics(new Float32Array([3, 4]), new Float32Array([3, 0]));
    assert.equal(m.count, 2);
    assert.equal(m.errNormSq, 16);
    assert.equal(m.refNormSq, 25);
    assert.equal(m.mse, 8);
    assert.equal(m.relativeFrobenius, 0.8);
    close(m.sqnrDb, 10 * Math.log10(25 / 16), 1e-15, 'sqnr');
    assert.equal(m.maxAbsError, 4);
    close(m.cosine, 9 / 15, 1e-15, 'cosine');
  });

  it('matches a float64 reference on heavy-tailed data, whatever the chunking', () => {
    const u = rng(9);
    const n = 50_000;
    const ref = new Float32Array(n);
    const approx = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const g = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
      ref[i] = (g / Math.sqrt((u() + u() + u()) / 3)) * (i % 1000 === 0 ? 50 : 1);
      approx[i] = ref[i]! + (u() - 0.5) * 0.01 * Math.abs(ref[i]!);
    }
    const r = reference(ref, approx);
    const whole = errorMetrics(ref, approx);
    for (const chunk of [1, 7, 4096, 4097, 12_345]) {
      const acc = new ErrorAccumulator();
      for (let i = 0; i < n; i += chunk) acc.add(ref.subarray(i, i + chunk), approx.subarray(i, i + chunk));
      const m = acc.result();
      assert.equal(m.count, n);
      close(m.mse, r.mse, 1e-11, `mse chunk ${chunk}`);
      close(m.relativeFrobenius, r.rel, 1e-11, 'rel');
      close(m.sqnrDb, r.sqnr, 1e-11, 'sqnr');
      close(m.cosine, r.cos, 1e-11, 'cos');
      assert.equal(m.maxAbsError, r.maxAbs);
      close(m.errNormSq, whole.errNormSq, 1e-11, 'chunking-independent');
    }
    // merging two halves is the same as one pass
    const a = new ErrorAccumulator().add(ref.subarray(0, 20_000), approx.subarray(0, 20_000));
    const b = new ErrorAccumulator().add(ref.subarray(20_000), approx.subarray(20_000));
    close(a.merge(b).result().errNormSq, whole.errNormSq, 1e-12, 'merge');
  });

  it('sums in float64: small terms after large ones are not lost (float32 sums would drop them)', () => {
    const ref = new Float32Array(8192 + 1000);
    ref.fill(4096, 0, 8192); // Σ ref² = 2^37 after these; float32 has a spacing of 2^14 there
    ref.fill(1, 8192);
    const approx = ref.slice();
    approx[8192 + 999] = 1 + 2 ** -23;
    const m = errorMetrics(ref, approx);
    assert.equal(m.refNormSq, 2 ** 37 + 1000);
    assert.equal(m.errNormSq, 2 ** -46);
    assert.equal(m.maxAbsError, 2 ** -23);
    close(m.sqnrDb, 10 * Math.log10((2 ** 37 + 1000) / 2 ** -46), 1e-15, 'sqnr');
  });

  it('exact reconstruction: relative error 0, SQNR +Infinity, cosine 1', () => {
    const v = new Float32Array([1, -2, 3.5]);
    const m = errorMetrics(v, v.slice());
    assert.equal(m.relativeFrobenius, 0);
    assert.equal(m.sqnrDb, Infinity);
    assert.equal(m.mse, 0);
    assert.equal(m.cosine, 1);
  });

  it('all-zero reference: exact → SQNR +Infinity; any error → relative error +Infinity, SQNR −Infinity, cosine 0', () => {
    const z = new Float32Array(4);
    const same = errorMetrics(z, z.slice());
    assert.equal(same.relativeFrobenius, 0);
    assert.equal(same.sqnrDb, Infinity);
    assert.equal(same.cosine, 1);
    const off = errorMetrics(z, new Float32Array([0, 0, 1e-3, 0]));
    assert.equal(off.relativeFrobenius, Infinity);
    assert.equal(off.sqnrDb, -Infinity);
    assert.equal(off.cosine, 0);
    assert.equal(errorMetrics(new Float32Array([1, 2]), new Float32Array(2)).cosine, 0);
  });

  it('no data: count 0, treated as an exact reconstruction', () => {
    const m = new ErrorAccumulator().result();
    assert.equal(m.count, 0);
    assert.equal(m.mse, 0);
    assert.equal(m.relativeFrobenius, 0);
    assert.equal(m.sqnrDb, Infinity);
    assert.equal(m.cosine, 1);
  });

  it('NaN/±Inf pairs are skipped and counted; mismatching ones separately', () => {
    const ref = new Float32Array([1, NaN, Infinity, 2, NaN, -Infinity, 3]);
    const approx = new Float32Array([1, NaN, Infinity, NaN, 5, Infinity, 2]);
    const m = errorMetrics(ref, approx);
    assert.equal(m.count, 2);
    assert.equal(m.nonFinite, 5);
    assert.equal(m.nonFiniteMismatch, 3); // 2 vs NaN, NaN vs 5, −Inf vs +Inf
    assert.equal(m.errNormSq, 1);
    assert.equal(m.maxAbsError, 1);
    assert.ok(Number.isFinite(m.sqnrDb));
  });

  it('opposite vectors have cosine −1; lengths must match', () => {
    const v = new Float64Array([1, 2, 3]);
    assert.equal(errorMetrics(v, v.map((x) => -x)).cosine, -1);
    assert.throws(() => new ErrorAccumulator().add(new Float32Array(2), new Float32Array(3)), RangeError);
  });
});
