/**
 * One layer's error metrics and error histogram accumulated over its row blocks (error.ts streams the blocks),
 * on the workspace's WebAssembly SIMD kernels (errorKernels.ts).
 */
import { ErrorMetrics, errorMetricsFromSums } from '../quant/metrics';
import type { Histogram } from '../stats/tensorStats';
import { ACC_APPROX, ACC_DOT, ACC_ERR, ACC_MAX, ACC_MIN, ACC_REF, ErrorWorkspace } from './errorKernels';

/** ErrorAccumulator's partial-sum run length: kept so the sums are those of one add() over the whole layer. */
const SUM_RUN = 4096;

/**
 * The error metrics and the error histogram of one layer, over its row blocks in the workspace: pass 1
 * (`add`) accumulates what ErrorAccumulator does plus the range of the error and writes the float32 errors
 * w − ŵ of the block; pass 2 (`bin`, after `startHistogram`) counts float32 errors into equal-width bins
 * over that range.
 *
 * The sums are float64 over runs of SUM_RUN consecutive elements of the row-major layer (whatever the block
 * boundaries), each run in four lanes (element i in lane i mod 4, see errorKernels.ts) folded as
 * (lane 0 + lane 1) + (lane 2 + lane 3) at the end of the run, then added to the totals in run order.
 */
export class LayerErrorMeter {
  /** Pairs seen, of which non-finite (NaN or ±Inf error: not accumulated), of which not equal on both sides. */
  private seen = 0;
  private nonFinite = 0;
  private nonFiniteMismatch = 0;
  private refNormSq = 0;
  private approxNormSq = 0;
  private errNormSq = 0;
  private dot = 0;
  /** How many elements the current run holds. */
  private runFill = 0;
  /** Range of the (float64) errors, set by `metrics`. */
  private errMin = Infinity;
  private errMax = -Infinity;
  /** Range of the finite float32 errors, where some error overflows float32 (see `needsRangePass`). */
  private f32Min = Infinity;
  private f32Max = -Infinity;
  private low = 0;
  private width = 1;
  private bins = 0;
  private edges: number[] = [];

  constructor(private readonly ws: ErrorWorkspace) {
    ws.resetSums();
  }

  /**
   * Pass 1 over the block in the workspace, whose first element is element `base` of the layer: x[0, n)
   * against approx[0, n), which `reconstruct` (when given) fills run by run first.
   */
  add(base: number, n: number, reconstruct?: (start: number, end: number) => void): void {
    for (let i = 0; i < n; ) {
      const end = Math.min(n, i + (SUM_RUN - this.runFill));
      reconstruct?.(i, end);
      this.addRange(base, i, end);
      this.runFill += end - i;
      if (this.runFill === SUM_RUN) this.endRun();
      i = end;
    }
    this.seen += n;
  }

  private addRange(base: number, start: number, end: number): void {
    const ws = this.ws;
    let i = start;
    // Lanes follow the layer's element index: one at a time up to a multiple of 4, then the kernel.
    for (; i < end && ((base + i) & 3) !== 0; i++) if (!ws.sumOne(i, base + i)) this.countNonFinite(i, i + 1);
    const body = (end - i) & ~3;
    if (body > 0 && ws.sums(i, body)) this.countNonFinite(i, i + body);
    for (i += body; i < end; i++) if (!ws.sumOne(i, base + i)) this.countNonFinite(i, i + 1);
  }

  /** Counts the non-finite errors of [start, end) (ErrorAccumulator's conventions). */
  private countNonFinite(start: number, end: number): void {
    const { x, approx } = this.ws;
    for (let i = start; i < end; i++) {
      const r = x[i]!;
      const a = approx[i]!;
      const e = r - a;
      if (e - e === 0) continue;
      this.nonFinite++;
      if (!((r !== r && a !== a) || r === a)) this.nonFiniteMismatch++;
    }
  }

  private endRun(): void {
    const acc = this.ws.acc;
    const fold = (at: number) => acc[at]! + acc[at + 1]! + (acc[at + 2]! + acc[at + 3]!);
    this.refNormSq += fold(ACC_REF);
    this.approxNormSq += fold(ACC_APPROX);
    this.errNormSq += fold(ACC_ERR);
    this.dot += fold(ACC_DOT);
    acc.fill(0, 0, ACC_MIN);
    this.runFill = 0;
  }

  metrics(): ErrorMetrics {
    if (this.runFill > 0) this.endRun();
    const acc = this.ws.acc;
    this.errMin = Math.min(acc[ACC_MIN]!, acc[ACC_MIN + 1]!);
    this.errMax = Math.max(acc[ACC_MAX]!, acc[ACC_MAX + 1]!);
    const { nonFinite, nonFiniteMismatch, refNormSq, approxNormSq, errNormSq, dot } = this;
    const count = this.seen - nonFinite;
    // max |e| = max(−min e, max e); 0 when nothing was accumulated (the ranges are then ±Infinity).
    const maxAbsError = Math.max(0, -this.errMin, this.errMax);
    return errorMetricsFromSums({ count, nonFinite, nonFiniteMismatch, refNormSq, approxNormSq, errNormSq, dot, maxAbsError });
  }

  /**
   * The range of the float32 errors fround(e) that are finite (what the histogram bins). fround is
   * monotone, so it is the rounded range of e — unless an error overflows float32 (|e| beyond 3.4e38, only
   * with weights that large), which leaves it out: then `needsRangePass` is true and `range` must see
   * every error once more.
   */
  needsRangePass(): boolean {
    return Math.fround(this.errMin) === -Infinity || Math.fround(this.errMax) === Infinity;
  }

  range(errors: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) {
      const v = errors[i]!;
      if (v - v !== 0) continue;
      if (v < this.f32Min) this.f32Min = v;
      if (v > this.f32Max) this.f32Max = v;
    }
  }

  private histogramRange(): [number, number] {
    return this.needsRangePass() ? [this.f32Min, this.f32Max] : [Math.fround(this.errMin), Math.fround(this.errMax)];
  }

  /**
   * Sets up `bins` equal-width bins over [min, max] of the error (one bin around a constant error, none
   * when no error is finite), as the tensor statistics' linear histogram does. False when there are none.
   */
  startHistogram(bins: number): boolean {
    const [low, high] = this.histogramRange();
    if (!Number.isFinite(low) || !Number.isFinite(high)) return false;
    const span = high > low ? high - low : Math.max(Math.abs(low), 1e-30) * 1e-6;
    const n = high > low ? bins : 1;
    this.low = low;
    this.width = span / n;
    this.edges = Array.from({ length: n + 1 }, (_, i) => low + i * this.width);
    this.bins = n;
    this.ws.counts.fill(0);
    return true;
  }

  /** Counts the workspace's float32 errors [0, n): bin ⌊(v − low) / width⌋ clamped to the first and last. */
  bin(n: number): void {
    if (this.nonFinite === 0 && !this.needsRangePass()) {
      // Every float32 error is finite (pass 1 saw no NaN/Inf and no overflow): the kernel, no test per element.
      this.ws.bin(n, this.low, this.width, this.bins);
      return;
    }
    const { errors } = this.ws;
    const last = this.bins - 1;
    for (let i = 0; i < n; i++) {
      const v = errors[i]!;
      if (v - v !== 0) continue;
      const t = (v - this.low) / this.width;
      this.ws.countOne(t >= last ? last : t > 0 ? Math.trunc(t) : 0);
    }
  }

  histogram(): Histogram {
    return { kind: 'linear', edges: this.edges, counts: this.ws.binCounts(this.bins) };
  }
}
