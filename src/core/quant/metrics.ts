/**
 * Reconstruction-error metrics between a reference W and its reconstruction Ŵ (e.g. the dequantized
 * weight), accumulated in float64 over any number of chunks, so a tensor can be streamed.
 *
 * Definitions (sums over the finite pairs, e = w − ŵ):
 *   mse                 Σe² / n
 *   relativeFrobenius   ‖e‖ / ‖w‖
 *   sqnrDb              10·log10(‖w‖² / ‖e‖²)
 *   maxAbsError         max |e|
 *   cosine              ⟨w, ŵ⟩ / (‖w‖·‖ŵ‖), clamped to [−1, 1]
 *
 * Edge cases (explicit conventions):
 * - ‖e‖ = 0 (exact reconstruction, including an all-zero reference reproduced exactly and no data at all):
 *   relativeFrobenius 0, sqnrDb +Infinity, mse 0, maxAbsError 0.
 * - ‖w‖ = 0 but ‖e‖ > 0: relativeFrobenius +Infinity, sqnrDb −Infinity.
 * - cosine: 1 when both vectors are all zero, 0 when exactly one is, otherwise the formula.
 * - n = 0: as an exact reconstruction (mse 0, …, cosine 1), with `count` 0 so callers can tell.
 * - Pairs where either value is NaN or ±Inf are not accumulated; they are counted in `nonFinite` (a
 *   reconstruction that produces NaN where the reference has a number is reported there, not hidden:
 *   check `nonFinite`). `nonFiniteMismatch` counts the pairs that are not the same non-finite value on both
 *   sides (NaN vs NaN counts as the same).
 * Accumulation: each `add` sums its chunk in blocks of 4096 into float64 partials and then adds the
 * partials to the running totals, which keeps the rounding error of the sums small for long tensors.
 * Float32 inputs cannot overflow the float64 squares; Float64Array inputs beyond ~1e154 would.
 */

export interface ErrorMetrics {
  /** Finite pairs accumulated. */
  readonly count: number;
  /** Pairs skipped because a value was NaN or ±Inf. */
  readonly nonFinite: number;
  /** Skipped pairs whose two values differ (a finite value against NaN/Inf, +Inf against −Inf, …). */
  readonly nonFiniteMismatch: number;
  readonly mse: number;
  readonly relativeFrobenius: number;
  readonly sqnrDb: number;
  readonly maxAbsError: number;
  readonly cosine: number;
  /** ‖w‖², ‖ŵ‖², ‖e‖², ⟨w, ŵ⟩ (float64 sums). */
  readonly refNormSq: number;
  readonly approxNormSq: number;
  readonly errNormSq: number;
  readonly dot: number;
}

const BLOCK = 4096;

export class ErrorAccumulator {
  private n = 0;
  private bad = 0;
  private badMismatch = 0;
  private sRef = 0;
  private sApprox = 0;
  private sErr = 0;
  private sDot = 0;
  private maxAbs = 0;

  /** Adds the pairs (ref[i], approx[i]); both arrays must have the same length. */
  add(ref: Float32Array | Float64Array, approx: Float32Array | Float64Array): this {
    if (ref.length !== approx.length) throw new RangeError(`ref has ${ref.length} elements, approx ${approx.length}`);
    const len = ref.length;
    let maxAbs = this.maxAbs;
    for (let start = 0; start < len; start += BLOCK) {
      const end = start + BLOCK < len ? start + BLOCK : len;
      let r2 = 0;
      let a2 = 0;
      let e2 = 0;
      let d = 0;
      for (let i = start; i < end; i++) {
        const r = ref[i]!;
        const a = approx[i]!;
        const e = r - a;
        if (e - e !== 0) {
          // e is NaN or ±Inf exactly when r or a is (a finite difference of float32/float64 finite values
          // can overflow only for float64 inputs near the limit; those are reported as non-finite too).
          this.skip(r, a);
          continue;
        }
        r2 += r * r;
        a2 += a * a;
        e2 += e * e;
        d += r * a;
        const ae = e < 0 ? -e : e;
        if (ae > maxAbs) maxAbs = ae;
      }
      this.sRef += r2;
      this.sApprox += a2;
      this.sErr += e2;
      this.sDot += d;
    }
    this.n += len;
    this.maxAbs = maxAbs;
    return this;
  }

  private skip(r: number, a: number): void {
    this.bad++;
    this.n--; // compensated by n += len in add()
    const same = (r !== r && a !== a) || r === a;
    if (!same) this.badMismatch++;
  }

  /** Merges another accumulator (e.g. from a worker) into this one. */
  merge(other: ErrorAccumulator): this {
    this.n += other.n;
    this.bad += other.bad;
    this.badMismatch += other.badMismatch;
    this.sRef += other.sRef;
    this.sApprox += other.sApprox;
    this.sErr += other.sErr;
    this.sDot += other.sDot;
    if (other.maxAbs > this.maxAbs) this.maxAbs = other.maxAbs;
    return this;
  }

  result(): ErrorMetrics {
    return errorMetricsFromSums({
      count: this.n,
      nonFinite: this.bad,
      nonFiniteMismatch: this.badMismatch,
      refNormSq: this.sRef,
      approxNormSq: this.sApprox,
      errNormSq: this.sErr,
      dot: this.sDot,
      maxAbsError: this.maxAbs,
    });
  }
}

/** The metrics from the raw sums (the conventions of the module comment). */
export function errorMetricsFromSums(s: {
  count: number;
  nonFinite: number;
  nonFiniteMismatch: number;
  refNormSq: number;
  approxNormSq: number;
  errNormSq: number;
  dot: number;
  maxAbsError: number;
}): ErrorMetrics {
  const { count, refNormSq: w2, approxNormSq: a2, errNormSq: e2, dot } = s;
  let relativeFrobenius: number;
  let sqnrDb: number;
  if (e2 === 0) {
    relativeFrobenius = 0;
    sqnrDb = Infinity;
  } else if (w2 === 0) {
    relativeFrobenius = Infinity;
    sqnrDb = -Infinity;
  } else {
    relativeFrobenius = Math.sqrt(e2 / w2);
    sqnrDb = 10 * Math.log10(w2 / e2);
  }
  let cosine: number;
  if (w2 === 0 && a2 === 0) cosine = 1;
  else if (w2 === 0 || a2 === 0) cosine = 0;
  else {
    cosine = dot / (Math.sqrt(w2) * Math.sqrt(a2));
    if (cosine > 1) cosine = 1;
    else if (cosine < -1) cosine = -1;
  }
  return {
    count,
    nonFinite: s.nonFinite,
    nonFiniteMismatch: s.nonFiniteMismatch,
    mse: count === 0 ? 0 : e2 / count,
    relativeFrobenius,
    sqnrDb,
    maxAbsError: s.maxAbsError,
    cosine,
    refNormSq: w2,
    approxNormSq: a2,
    errNormSq: e2,
    dot,
  };
}

/** One-shot convenience: the metrics of a whole pair of arrays. */
export function errorMetrics(ref: Float32Array | Float64Array, approx: Float32Array | Float64Array): ErrorMetrics {
  return new ErrorAccumulator().add(ref, approx).result();
}
