/**
 * The inner loops of the quantization-error measurement (error.ts), over one layer's row block at a time:
 * - `reconstruct`: ŵ = (q − zp) · scale from the RTN codes (int8 or FP8 E4M3) and each cell's scale and
 *   zero point, cells being consecutive runs of `cellLen` elements (tensor, channel, group without g_idx);
 * - `sums`: the float64 sums of r², ŵ², e², r·ŵ (e = r − ŵ), the range of e over the finite pairs, and the
 *   float32 error fround(e) written over ŵ (what the histogram bins);
 * - `bin`: 64-bin (or fewer) histogram counts of float32 errors over [low, low + bins · width).
 *
 * Two engines give identical results: WebAssembly SIMD (the kernels in errors.wat, beside this file, which
 * also says why each step is exact) and the JS loops in each method below — the fallback where WebAssembly
 * SIMD is missing, and the readable reference the tests compare the kernels against. Every value is the
 * same IEEE operation in both (float32 products for ŵ, float64 differences, products and sums, the float64
 * bin quotient), and the sums use the same order: four lanes, element i of the layer going to lane i mod 4,
 * so the result does not depend on where blocks start. The caller (error.ts) folds the lanes into its run
 * totals.
 *
 * Each workspace has its own memory (its own WebAssembly instance), so concurrent measurements in one
 * thread (interleaved at their awaits) cannot touch each other's buffers.
 */
import { E4M3_TO_F32, encodeE4M3 } from '../dtypes/float';
import { roundToBF16 } from '../quant/rtn';
import { compileKernels, instantiateWithMemory } from '../util/wasm';
import errorsWasm from './errors.wat';

/** Byte offsets of the accumulator block: four lanes each of Σr², Σŵ², Σe², Σr·ŵ, then min e (2 lanes), max e (2 lanes). */
export const ACC_REF = 0;
export const ACC_APPROX = 4;
export const ACC_ERR = 8;
export const ACC_DOT = 12;
export const ACC_MIN = 16;
export const ACC_MAX = 18;
const ACC_VALUES = 20;
/** Histogram bins at most (the pair table of `bin` is MAX_BINS × MAX_BINS). */
export const MAX_BINS = 64;

const ACC_PTR = 0;
/** min, max (f32) of `minMax`. */
const MINMAX_PTR = 192;
/** Counters: the pair table (MAX_BINS², see `bin` in errors.wat), then one counter per bin for single elements. */
const COUNTS_PTR = 256;
const SINGLES = MAX_BINS * MAX_BINS;
const SCALES_PTR = COUNTS_PTR + (SINGLES + MAX_BINS) * 4;

interface KernelExports {
  readonly mem: WebAssembly.Memory;
  reconI8(q: number, a: number, start: number, end: number, cellLen: number, scale: number, zp: number): void;
  reconI8Zp(q: number, a: number, start: number, end: number, cellLen: number, scale: number, zp: number): void;
  reconFp8(q: number, a: number, start: number, end: number, cellLen: number, scale: number, zp: number): void;
  reconFp8Zp(q: number, a: number, start: number, end: number, cellLen: number, scale: number, zp: number): void;
  sums(x: number, a: number, e: number, n: number, acc: number): number;
  bin(e: number, n: number, low: number, width: number, last: number, pairs: number, scratch: number): void;
  fp8TensorBF16(x: number, a: number, start: number, end: number, scale: number): void;
  fp8TensorF32(x: number, a: number, start: number, end: number, scale: number): void;
  minMax(x: number, n: number, out: number): number;
  bf16ToF32(src: number, dst: number, n: number): void;
}

let compiled: WebAssembly.Module | null | undefined;

function kernelModule(): WebAssembly.Module | null {
  if (compiled === undefined) compiled = compileKernels(errorsWasm);
  return compiled;
}

/** True when the WebAssembly SIMD error kernels are available on this host. */
export function errorSimdAvailable(): boolean {
  return kernelModule() !== null;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/** Elements binned per kernel call (their bin indices go to a scratch buffer of this many bytes). */
const BIN_CHUNK = 16384;

/**
 * The buffers of one layer's measurement and the kernels over them. `prepare` sizes it (and replaces every
 * view); the views are valid until the next `prepare`.
 */
export class ErrorWorkspace {
  private kernels: KernelExports | null;
  private readonly module: WebAssembly.Module | null;
  private buffer: ArrayBuffer;
  /** The reference values of the block (x). */
  x = new Float32Array(0);
  /** The reconstruction ŵ of the block. */
  approx = new Float32Array(0);
  /**
   * The float32 errors fround(x − ŵ) written by `sums` / `sumOne`: element i of the block goes to
   * errors[errorBase + i] (a block's own errors at 0, or the whole layer's when they are kept).
   */
  errors = new Float32Array(0);
  errorBase = 0;
  /** Quantized codes of the block: int8 view and byte view of the same memory. */
  codesI8 = new Int8Array(0);
  codesU8 = new Uint8Array(0);
  /** Per-cell scales and zero points (as float32 values) of the block. */
  scale = new Float32Array(0);
  zero = new Float32Array(0);
  /** The accumulator block (see ACC_*), and the histogram counters (see `binCounts`). */
  acc = new Float64Array(0);
  counts = new Uint32Array(0);
  private readonly saved = new Float64Array(ACC_VALUES);
  private xPtr = 0;
  private aPtr = 0;
  private ePtr = 0;
  private qPtr = 0;
  private zPtr = 0;
  private rawPtr = 0;
  private rawSlot = 0;

  /** engine 'js' forces the portable kernels (tests compare the two). */
  constructor(engine: 'auto' | 'js' = 'auto') {
    this.module = engine === 'js' ? null : kernelModule();
    this.kernels = this.module ? instantiateWithMemory<KernelExports>(this.module, 0) : null;
    this.buffer = this.kernels ? this.kernels.mem.buffer : new ArrayBuffer(0);
  }

  /**
   * Room for blocks of `size` values with `cells` scale cells, `errorCapacity` (≥ size) float32 errors and
   * two slots of `rawBytes` stored bytes (see `raw`); clears the accumulators and the counters.
   */
  prepare(size: number, cells: number, errorCapacity = size, rawBytes = 0): void {
    this.zPtr = SCALES_PTR + align16(cells * 4);
    this.xPtr = this.zPtr + align16(cells * 4);
    this.aPtr = this.xPtr + align16(size * 4);
    this.ePtr = this.aPtr + align16(size * 4);
    this.qPtr = this.ePtr + align16(Math.max(size, errorCapacity) * 4);
    this.rawPtr = this.qPtr + Math.max(align16(size), BIN_CHUNK);
    this.rawSlot = align16(rawBytes);
    const total = this.rawPtr + 2 * this.rawSlot + 16;
    if (this.kernels && this.module) {
      // A bigger memory is a new instance (see instantiateWithMemory: never grown); nothing in the old
      // one outlives a prepare.
      if (this.kernels.mem.buffer.byteLength < total) this.kernels = instantiateWithMemory<KernelExports>(this.module, total);
      this.buffer = this.kernels.mem.buffer;
    } else if (this.buffer.byteLength < total) this.buffer = new ArrayBuffer(total);
    const b = this.buffer;
    this.acc = new Float64Array(b, ACC_PTR, ACC_VALUES);
    this.counts = new Uint32Array(b, COUNTS_PTR, SINGLES + MAX_BINS);
    this.scale = new Float32Array(b, SCALES_PTR, cells);
    this.zero = new Float32Array(b, this.zPtr, cells);
    this.x = new Float32Array(b, this.xPtr, size);
    this.approx = new Float32Array(b, this.aPtr, size);
    this.errors = new Float32Array(b, this.ePtr, Math.max(size, errorCapacity));
    this.errorBase = 0;
    this.codesI8 = new Int8Array(b, this.qPtr, size);
    this.codesU8 = new Uint8Array(b, this.qPtr, size);
    this.resetSums();
    this.counts.fill(0);
  }

  /** Slot `slot` (0 or 1) of the stored bytes, for a file read while the other slot's rows are decoded. */
  raw(slot: number): Uint8Array {
    return new Uint8Array(this.buffer, this.rawPtr + slot * this.rawSlot, this.rawSlot);
  }

  /** x[0, n) = the bfloat16 values at byte `offset` of raw slot `slot`. */
  decodeBF16(slot: number, offset: number, n: number): void {
    const k = this.kernels;
    const at = this.rawPtr + slot * this.rawSlot + offset;
    const body = k ? n & ~7 : 0;
    if (body > 0) k!.bf16ToF32(at, this.xPtr, body);
    const bytes = new Uint8Array(this.buffer, at, 2 * n);
    const bits = new Uint32Array(this.buffer, this.xPtr, n);
    for (let i = body; i < n; i++) bits[i] = (bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16;
  }

  resetSums(): void {
    this.acc.fill(0);
    this.acc[ACC_MIN] = this.acc[ACC_MIN + 1] = Infinity;
    this.acc[ACC_MAX] = this.acc[ACC_MAX + 1] = -Infinity;
  }

  /** approx[start, end) = (code − zero[cell]) · scale[cell], cell = ⌊i / cellLen⌋ (zero used only when `hasZero`). */
  reconstruct(start: number, end: number, cellLen: number, fp8: boolean, hasZero: boolean): void {
    const k = this.kernels;
    if (k) {
      const f = fp8 ? (hasZero ? k.reconFp8Zp : k.reconFp8) : hasZero ? k.reconI8Zp : k.reconI8;
      f(this.qPtr, this.aPtr, start, end, cellLen, SCALES_PTR, this.zPtr);
      return;
    }
    const { approx, scale, zero } = this;
    for (let i = start; i < end; ) {
      const cell = Math.floor(i / cellLen);
      const cellEnd = Math.min(end, (cell + 1) * cellLen);
      const s = scale[cell]!;
      const z = hasZero ? zero[cell]! : 0;
      if (fp8) {
        const q = this.codesU8;
        for (; i < cellEnd; i++) approx[i] = (E4M3_TO_F32[q[i]!]! - z) * s;
      } else {
        const q = this.codesI8;
        for (; i < cellEnd; i++) approx[i] = (q[i]! - z) * s;
      }
    }
  }

  /**
   * Adds the pairs (x[i], approx[i]) for i in [start, start + n) to the accumulators, element i to lane
   * (i − start) mod 4 — the caller starts at an element of the layer whose index is a multiple of 4; n is a
   * multiple of 4 — and writes their float32 errors. True if some pair had a non-finite error (left out of
   * the sums and the range; the caller counts those).
   */
  sums(start: number, n: number): boolean {
    const k = this.kernels;
    if (k) {
      const acc = this.acc;
      this.saved.set(acc);
      k.sums(this.xPtr + 4 * start, this.aPtr + 4 * start, this.ePtr + 4 * (this.errorBase + start), n, ACC_PTR);
      if (Number.isFinite(acc[ACC_ERR]! + acc[ACC_ERR + 1]! + acc[ACC_ERR + 2]! + acc[ACC_ERR + 3]!)) return false;
      // Some error is NaN or ±Inf: these pairs again, one at a time, leaving those out.
      acc.set(this.saved);
    }
    let bad = false;
    for (let i = start; i < start + n; i++) if (!this.sumOne(i, i - start)) bad = true;
    return bad;
  }

  /** One pair into lane `lane` mod 4 (the JS engine, and the heads and tails of unaligned ranges). False if its error is not finite. */
  sumOne(i: number, lane: number): boolean {
    const acc = this.acc;
    const r = this.x[i]!;
    const a = this.approx[i]!;
    const e = r - a;
    this.errors[this.errorBase + i] = e;
    if (e - e !== 0) return false;
    const l = lane & 3;
    acc[ACC_REF + l] += r * r;
    acc[ACC_APPROX + l] += a * a;
    acc[ACC_ERR + l] += e * e;
    acc[ACC_DOT + l] += r * a;
    if (e < acc[ACC_MIN]!) acc[ACC_MIN] = e;
    if (e > acc[ACC_MAX]!) acc[ACC_MAX] = e;
    return true;
  }

  /**
   * approx[start, end) = FP8 E4M3 per-tensor symmetric RTN of x[start, end) with the stored scale `scale`,
   * dequantized (see `fp8TensorBF16` in errors.wat); bf16 or float32 arithmetic. x must hold no NaN.
   */
  fp8Tensor(start: number, end: number, scale: number, bf16: boolean): void {
    const k = this.kernels;
    if (k) {
      (bf16 ? k.fp8TensorBF16 : k.fp8TensorF32)(this.xPtr, this.aPtr, start, end, scale);
      return;
    }
    // What quantizeRtn's JS path does: fround(x · (1/s)), bf16, + 0, saturating E4M3 cast; then × s.
    const inv = 1 / scale;
    const { x, approx } = this;
    for (let i = start; i < end; i++) {
      let v = Math.fround(x[i]! * inv);
      if (bf16) v = roundToBF16(v);
      approx[i] = E4M3_TO_F32[encodeE4M3(v + 0, { saturate: true })]! * scale;
    }
  }

  /** Min and max of x[0, n) (NaN skipped; ±Infinity when n is 0 or all NaN) and whether some value is NaN. */
  minMax(n: number): { min: number; max: number; nan: boolean } {
    const k = this.kernels;
    let min = Infinity;
    let max = -Infinity;
    let nan = false;
    let i = 0;
    if (k) {
      const body = n & ~3;
      const out = new Float32Array(this.buffer, MINMAX_PTR, 2);
      out[0] = Infinity;
      out[1] = -Infinity;
      nan = k.minMax(this.xPtr, body, MINMAX_PTR) !== 0;
      min = out[0]!;
      max = out[1]!;
      i = body;
    }
    const x = this.x;
    for (; i < n; i++) {
      const v = x[i]!;
      if (v < min) min = v;
      if (v > max) max = v;
      if (v !== v) nan = true;
    }
    return { min, max, nan };
  }

  /** Counts one float32 error (finite) into bin `bin` (< MAX_BINS). */
  countOne(bin: number): void {
    this.counts[SINGLES + bin]!++;
  }

  /**
   * Counts errors[0, n) of the workspace (all finite) into `bins` (≤ MAX_BINS) bins of `width` from `low`:
   * bin ⌊(v − low) / width⌋ clamped to the first and last.
   */
  bin(n: number, low: number, width: number, bins: number): void {
    const last = bins - 1;
    const k = this.kernels;
    const body = k ? n & ~3 : 0;
    for (let s = 0; s < body; s += BIN_CHUNK) k!.bin(this.ePtr + 4 * s, Math.min(BIN_CHUNK, body - s), low, width, last, COUNTS_PTR, this.qPtr);
    const { counts, errors } = this;
    for (let i = body; i < n; i++) {
      const t = (errors[i]! - low) / width;
      counts[SINGLES + (t >= last ? last : t > 0 ? Math.trunc(t) : 0)]!++;
    }
  }

  /** The count of every bin: single elements, plus the pair table's row and column sums. */
  binCounts(bins: number): number[] {
    const c = this.counts;
    const out = Array.from({ length: bins }, (_, b) => c[SINGLES + b]!);
    for (let a = 0; a < MAX_BINS; a++) {
      for (let b = 0; b < MAX_BINS; b++) {
        const v = c[a * MAX_BINS + b]!;
        if (v === 0) continue;
        out[a]! += v;
        out[b]! += v;
      }
    }
    return out;
  }
}
