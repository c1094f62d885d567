/**
 * The inner loops of the quantization-error measurement (error.ts), over one layer's row block at a time:
 * - `reconstruct`: ŵ = (q − zp) · scale from the RTN codes (int8 or FP8 E4M3) and each cell's scale and
 *   zero point, cells being consecutive runs of `cellLen` elements (tensor, channel, group without g_idx);
 * - `sums`: the float64 sums of r², ŵ², e², r·ŵ (e = r − ŵ), the range of e over the finite pairs, and the
 *   float32 error fround(e) written over ŵ (what the histogram bins);
 * - `bin`: 64-bin (or fewer) histogram counts of float32 errors over [low, low + bins · width).
 *
 * Two engines give identical results: WebAssembly SIMD (assembled with quant/wasmAssembler.ts) and a
 * portable JS one. Every value is the same IEEE operation in both (float32 products for ŵ, float64
 * differences, products and sums, the float64 bin quotient), and the sums use the same order: four lanes,
 * element i of the layer going to lane i mod 4, so the result does not depend on where blocks start. The
 * caller (error.ts) folds the lanes into its run totals.
 *
 * ŵ in float32: q − zp is exact in float32 (int8 differences; E4M3 values have 4 significant bits and
 * exponents in [−9, 8], so a difference of two has ≤ 21), and so is the float64 product (≤ 21 + 24 bits):
 * one float32 multiply rounds it exactly as fround((q − zp) · scale) in float64 does.
 *
 * Each workspace has its own memory (its own WebAssembly instance), so concurrent measurements in one
 * thread (interleaved at their awaits) cannot touch each other's buffers.
 */
import { E4M3_TO_F32, encodeE4M3 } from '../dtypes/float';
import { roundToBF16 } from '../quant/rtn';
import { I, T, WasmFunc, assemble, splat32 } from '../quant/wasmAssembler';
import { instantiateWithMemory } from '../util/wasm';

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
/** Counters: the pair table (MAX_BINS², see binKernel), then one counter per bin for single elements. */
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

/**
 * ŵ for codes [start, end) into a (f32 at a + 4i). params: q, a, start, end, cellLen, scalePtr, zpPtr.
 * The codes become float32 values as described in the module comment: int8 → convert; E4M3 → bits
 * (normal: magnitude << 20 + 120 << 23; subnormal: m · 2^-9) with the sign bit. E4M3 NaN codes (0x7f,
 * 0xff) are never produced by RTN (it saturates) and would read as ±480.
 */
function reconKernel(name: string, fp8: boolean, zp: boolean): WasmFunc {
  const [q, a, i, end, cellLen, scalePtr, zpPtr] = [0, 1, 2, 3, 4, 5, 6];
  const [cell, cellEnd, sv, zv, c, m] = [7, 8, 9, 10, 11, 12];
  /** i32x4 codes on the stack → f32x4 ŵ on the stack. */
  const values = (): number[] => [
    ...(fp8
      ? [
          ...I.tee(c), ...splat32(0x7f), ...I.v128And, ...I.set(m),
          ...I.get(m), ...I.i32(20), ...I.i32x4Shl, ...splat32(120 << 23), ...I.i32x4Add,
          ...I.get(m), ...splat32(7), ...I.v128And, ...I.f32x4ConvertI32x4S, ...splat32(0x3b000000 /* 2^-9 */), ...I.f32x4Mul,
          ...I.get(m), ...splat32(7), ...I.i32x4GtS, ...I.v128Bitselect,
          ...I.get(c), ...splat32(0x80), ...I.v128And, ...I.i32(24), ...I.i32x4Shl, ...I.v128Or,
        ]
      : I.f32x4ConvertI32x4S),
    ...(zp ? [...I.get(zv), ...I.f32x4Sub] : []),
    ...I.get(sv), ...I.f32x4Mul,
  ];
  const extend = fp8 ? [...I.i16x8ExtendLowI8x16U, ...I.i32x4ExtendLowI16x8U] : [...I.i16x8ExtendLowI8x16S, ...I.i32x4ExtendLowI16x8S];
  const load8 = fp8 ? I.i32Load8U() : I.i32Load8S();
  const aAddr = [...I.get(a), ...I.get(i), ...I.i32(2), ...I.i32Shl, ...I.i32Add];
  const body = [
    ...I.block, ...I.loop,
    ...I.get(i), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...I.get(i), ...I.get(cellLen), ...I.i32DivU, ...I.tee(cell),
    // cellEnd = min(end, (cell + 1) · cellLen)
    ...I.i32(1), ...I.i32Add, ...I.get(cellLen), ...I.i32Mul, ...I.set(cellEnd),
    ...I.get(cellEnd), ...I.get(end), ...I.get(cellEnd), ...I.get(end), ...I.i32LtU, ...I.select, ...I.set(cellEnd),
    ...I.get(scalePtr), ...I.get(cell), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.f32Load(), ...I.f32x4Splat, ...I.set(sv),
    ...(zp ? [...I.get(zpPtr), ...I.get(cell), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.f32Load(), ...I.f32x4Splat, ...I.set(zv)] : []),
    // four at a time
    ...I.block, ...I.loop,
    ...I.get(i), ...I.i32(4), ...I.i32Add, ...I.get(cellEnd), ...I.i32GtU, ...I.brIf(1),
    ...aAddr, ...I.get(q), ...I.get(i), ...I.i32Add, ...I.v128Load32Zero(), ...extend, ...values(), ...I.v128Store(),
    ...I.get(i), ...I.i32(4), ...I.i32Add, ...I.set(i),
    ...I.br(0), ...I.end, ...I.end,
    // the rest of the cell one at a time, through the same vector code
    ...I.block, ...I.loop,
    ...I.get(i), ...I.get(cellEnd), ...I.i32GeU, ...I.brIf(1),
    ...aAddr, ...I.get(q), ...I.get(i), ...I.i32Add, ...load8, ...I.i32x4Splat, ...values(), ...I.f32x4ExtractLane(0), ...I.f32Store(),
    ...I.get(i), ...I.i32(1), ...I.i32Add, ...I.set(i),
    ...I.br(0), ...I.end, ...I.end,
    ...I.br(0), ...I.end, ...I.end,
  ];
  return { name, params: [T.I32, T.I32, T.I32, T.I32, T.I32, T.I32, T.I32], results: [], locals: [T.I32, T.I32, T.V128, T.V128, T.V128, T.V128], body };
}

/**
 * params: x, a, out, n (a multiple of 4), acc. Per pair of elements (f64x2): r, ŵ promoted, e = r − ŵ,
 * the four products added to their lanes, the range of e, and fround(e) of all four to out. Nothing is
 * masked: a non-finite e makes its lane of Σe² NaN or +Inf (a sum of squares of finite float32 values
 * cannot overflow), which tells the caller to redo the range in JS (`ErrorWorkspace.sums`).
 */
function sumsKernel(): WasmFunc {
  const [x, a, out, n, acc] = [0, 1, 2, 3, 4];
  const [end, r, w, e, mn, mx, d0] = [5, 6, 7, 8, 9, 10, 11];
  // accumulators: ref, approx, err, dot for lanes {0,1} and {2,3}
  const accs = [12, 13, 14, 15, 16, 17, 18, 19];
  const half = (h: number): number[] => {
    const [aR, aA, aE, aD] = [accs[h]!, accs[2 + h]!, accs[4 + h]!, accs[6 + h]!];
    return [
      ...I.get(x), ...I.v128Load64Zero(8 * h), ...I.f64x2PromoteLowF32x4, ...I.set(r),
      ...I.get(a), ...I.v128Load64Zero(8 * h), ...I.f64x2PromoteLowF32x4, ...I.set(w),
      ...I.get(r), ...I.get(w), ...I.f64x2Sub, ...I.set(e),
      ...I.get(mn), ...I.get(e), ...I.f64x2Pmin, ...I.set(mn),
      ...I.get(mx), ...I.get(e), ...I.f64x2Pmax, ...I.set(mx),
      ...I.get(aR), ...I.get(r), ...I.get(r), ...I.f64x2Mul, ...I.f64x2Add, ...I.set(aR),
      ...I.get(aA), ...I.get(w), ...I.get(w), ...I.f64x2Mul, ...I.f64x2Add, ...I.set(aA),
      ...I.get(aE), ...I.get(e), ...I.get(e), ...I.f64x2Mul, ...I.f64x2Add, ...I.set(aE),
      ...I.get(aD), ...I.get(r), ...I.get(w), ...I.f64x2Mul, ...I.f64x2Add, ...I.set(aD),
      // the float32 error of this pair (the first is kept for the combined store)
      ...I.get(e), ...I.f32x4DemoteF64x2Zero, ...(h === 0 ? I.set(d0) : []),
    ];
  };
  const accSlots = [ACC_REF, ACC_REF + 2, ACC_APPROX, ACC_APPROX + 2, ACC_ERR, ACC_ERR + 2, ACC_DOT, ACC_DOT + 2];
  const load = (local: number, slot: number) => [...I.get(acc), ...I.v128Load(slot * 8), ...I.set(local)];
  const store = (local: number, slot: number) => [...I.get(acc), ...I.get(local), ...I.v128Store(slot * 8)];
  const body = [
    ...accSlots.flatMap((slot, k) => load(accs[k]!, slot)),
    ...load(mn, ACC_MIN), ...load(mx, ACC_MAX),
    ...I.get(x), ...I.get(n), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.set(end),
    ...I.block, ...I.loop,
    ...I.get(x), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...I.get(out),
    ...half(0), ...I.get(d0), ...half(1), ...I.shuffle([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]),
    ...I.v128Store(),
    ...I.get(x), ...I.i32(16), ...I.i32Add, ...I.set(x),
    ...I.get(a), ...I.i32(16), ...I.i32Add, ...I.set(a),
    ...I.get(out), ...I.i32(16), ...I.i32Add, ...I.set(out),
    ...I.br(0), ...I.end, ...I.end,
    ...accSlots.flatMap((slot, k) => store(accs[k]!, slot)),
    ...store(mn, ACC_MIN), ...store(mx, ACC_MAX),
  ];
  return { name: 'sums', params: [T.I32, T.I32, T.I32, T.I32, T.I32], results: [], locals: [T.I32, ...Array<T>(14).fill(T.V128)], body };
}

/**
 * params: e, n (a multiple of 4, at most the scratch's size in bytes), low, width, last (f64), pairs, scratch.
 * Two loops, as a histogram must be written: first the bin index of every element, ⌊min(max((e − low) /
 * width, 0), last)⌋ — ⌊t⌋ clamped to [0, last] — paired (elements 0 and 2, 1 and 3 of every four) into
 * 64 · first + second, written as u16 to scratch (the f64 integer plus 2^52 has it in its low bytes); then
 * one increment per pair in a 64 × 64 table of u32 counters (`pairs`; a bin's count is its row's sum plus
 * its column's). Incrementing a counter whose address comes out of a long float computation in the same
 * loop runs several times slower (the CPU cannot tell early whether consecutive increments hit the same
 * counter); counting pairs halves the increments. Every e must be finite.
 */
function binKernel(): WasmFunc {
  const [e, n, low, width, last, pairs, scratch] = [0, 1, 2, 3, 4, 5, 6];
  const [end, lowv, widthv, lastv, zero, t0, p, addr] = [7, 8, 9, 10, 11, 12, 13, 14];
  const index = (h: number): number[] => [
    ...I.get(e), ...I.v128Load64Zero(8 * h), ...I.f64x2PromoteLowF32x4, ...I.get(lowv), ...I.f64x2Sub, ...I.get(widthv), ...I.f64x2Div,
    ...I.get(zero), ...I.f64x2Pmax, ...I.get(lastv), ...I.f64x2Pmin, ...I.f64x2Floor,
  ];
  const bump = (off: number): number[] => [
    ...I.get(pairs), ...I.get(p), ...I.i32Load16U(off), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.tee(addr),
    ...I.get(addr), ...I.i32Load(), ...I.i32(1), ...I.i32Add, ...I.i32Store(),
  ];
  const body = [
    ...I.get(low), ...I.f64x2Splat, ...I.set(lowv),
    ...I.get(width), ...I.f64x2Splat, ...I.set(widthv),
    ...I.get(last), ...I.f64x2Splat, ...I.set(lastv),
    ...I.f64(0), ...I.f64x2Splat, ...I.set(zero),
    ...I.get(e), ...I.get(n), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.set(end),
    ...I.get(scratch), ...I.set(p),
    ...I.block, ...I.loop,
    ...I.get(e), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...I.get(p),
    ...index(0), ...I.f64(64), ...I.f64x2Splat, ...I.f64x2Mul, ...I.set(t0),
    ...index(1), ...I.f64(2 ** 52), ...I.f64x2Splat, ...I.f64x2Add, ...I.get(t0), ...I.f64x2Add,
    ...I.tee(t0), ...I.get(t0), ...I.shuffle([0, 1, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), ...I.v128Store32Lane(0, 0),
    ...I.get(e), ...I.i32(16), ...I.i32Add, ...I.set(e),
    ...I.get(p), ...I.i32(4), ...I.i32Add, ...I.set(p),
    ...I.br(0), ...I.end, ...I.end,
    // n / 2 pairs of 2 bytes
    ...I.get(scratch), ...I.get(n), ...I.i32Add, ...I.set(end),
    ...I.get(scratch), ...I.set(p),
    ...I.block, ...I.loop,
    ...I.get(p), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...bump(0), ...bump(2),
    ...I.get(p), ...I.i32(4), ...I.i32Add, ...I.set(p),
    ...I.br(0), ...I.end, ...I.end,
  ];
  return {
    name: 'bin',
    params: [T.I32, T.I32, T.F64, T.F64, T.F64, T.I32, T.I32],
    results: [],
    locals: [T.I32, T.V128, T.V128, T.V128, T.V128, T.V128, T.I32, T.I32],
    body,
  };
}

/**
 * FP8 E4M3 per tensor, symmetric, quantized and dequantized in one step from x (what quantizeRtn and
 * dequantizeRtn give, without the codes): ŵ = e4m3(clamp(v, ±448)) · s with v = x / s (f32x4.div: the
 * correctly rounded float32 quotient, which is what the JS path's fround(x · (1/s)) is, see rtn.ts),
 * rounded to bf16 first when the arithmetic is bf16. The E4M3 rounding (to nearest, ties to even): normal
 * values (|v| ≥ 2^-6) keep 3 significand bits — integer round-to-nearest-even on the float32 bits;
 * subnormal ones are multiples of 2^-9 — nearest(v · 2^9) · 2^-9, both scalings exact. Clamping first is
 * the saturating cast (nothing within ±448 rounds beyond it). params: x, a, start, end, s (f32). x must
 * hold no NaN.
 */
function fp8TensorKernel(name: string, bf16: boolean): WasmFunc {
  const [x, a, i, end, s] = [0, 1, 2, 3, 4];
  const [sv, v, u] = [5, 6, 7];
  const roundBits = (keep: number): number[] => {
    const drop = 23 - keep;
    const half = (1 << (drop - 1)) - 1;
    return [
      ...I.tee(u), ...splat32(half), ...I.i32x4Add, ...I.get(u), ...I.i32(drop), ...I.i32x4ShrU, ...splat32(1), ...I.v128And, ...I.i32x4Add,
      ...splat32((0xffffffff << drop) >>> 0), ...I.v128And,
    ];
  };
  /** f32x4 x on the stack → f32x4 ŵ on the stack. */
  const values = (): number[] => [
    ...I.get(sv), ...I.f32x4Div,
    ...(bf16 ? roundBits(7) : []),
    ...I.f32(-448), ...I.f32x4Splat, ...I.f32x4Pmax, ...I.f32(448), ...I.f32x4Splat, ...I.f32x4Pmin, ...I.set(v),
    // subnormal: multiples of 2^-9
    ...I.get(v), ...I.f32(512), ...I.f32x4Splat, ...I.f32x4Mul, ...I.f32x4Nearest, ...I.f32(1 / 512), ...I.f32x4Splat, ...I.f32x4Mul,
    // normal: 3 significand bits
    ...I.get(v), ...roundBits(3),
    // the subnormal lanes where |v| < 2^-6
    ...I.get(v), ...I.f32x4Abs, ...I.f32(2 ** -6), ...I.f32x4Splat, ...I.f32x4Lt,
    ...I.v128Bitselect,
    ...I.get(sv), ...I.f32x4Mul,
  ];
  const aAddr = [...I.get(a), ...I.get(i), ...I.i32(2), ...I.i32Shl, ...I.i32Add];
  const xAddr = [...I.get(x), ...I.get(i), ...I.i32(2), ...I.i32Shl, ...I.i32Add];
  const body = [
    ...I.get(s), ...I.f32x4Splat, ...I.set(sv),
    ...I.block, ...I.loop,
    ...I.get(i), ...I.i32(4), ...I.i32Add, ...I.get(end), ...I.i32GtU, ...I.brIf(1),
    ...aAddr, ...xAddr, ...I.v128Load(), ...values(), ...I.v128Store(),
    ...I.get(i), ...I.i32(4), ...I.i32Add, ...I.set(i),
    ...I.br(0), ...I.end, ...I.end,
    ...I.block, ...I.loop,
    ...I.get(i), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...aAddr, ...xAddr, ...I.f32Load(), ...I.f32x4Splat, ...values(), ...I.f32x4ExtractLane(0), ...I.f32Store(),
    ...I.get(i), ...I.i32(1), ...I.i32Add, ...I.set(i),
    ...I.br(0), ...I.end, ...I.end,
  ];
  return { name, params: [T.I32, T.I32, T.I32, T.I32, T.F32], results: [], locals: [T.V128, T.V128, T.V128], body };
}

/**
 * Min and max of x[0, n) (n a multiple of 4) folded into the f32 pair at `out` (NaN skipped); returns 1
 * if some value is NaN. params: x, n, out.
 */
function minMaxKernel(): WasmFunc {
  const [x, n, out] = [0, 1, 2];
  const [end, v, mn, mx, nan] = [3, 4, 5, 6, 7];
  const lanes = (acc: number, op: number[]): number[] => [
    ...I.get(acc), ...I.f32x4ExtractLane(0), ...I.get(acc), ...I.f32x4ExtractLane(1), ...op,
    ...I.get(acc), ...I.f32x4ExtractLane(2), ...op, ...I.get(acc), ...I.f32x4ExtractLane(3), ...op,
  ];
  const body = [
    ...I.get(out), ...I.f32Load(), ...I.f32x4Splat, ...I.set(mn),
    ...I.get(out), ...I.f32Load(4), ...I.f32x4Splat, ...I.set(mx),
    ...I.get(x), ...I.get(n), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.set(end),
    ...I.block, ...I.loop,
    ...I.get(x), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...I.get(x), ...I.v128Load(), ...I.set(v),
    ...I.get(nan), ...I.get(v), ...I.get(v), ...I.f32x4Ne, ...I.v128Or, ...I.set(nan),
    // pmin(mn, v) = v < mn ? v : mn: a NaN v never replaces
    ...I.get(mn), ...I.get(v), ...I.f32x4Pmin, ...I.set(mn),
    ...I.get(mx), ...I.get(v), ...I.f32x4Pmax, ...I.set(mx),
    ...I.get(x), ...I.i32(16), ...I.i32Add, ...I.set(x),
    ...I.br(0), ...I.end, ...I.end,
    ...I.get(out), ...lanes(mn, I.f32Min), ...I.f32Store(),
    ...I.get(out), ...lanes(mx, I.f32Max), ...I.f32Store(4),
    ...I.get(nan), ...I.v128AnyTrue,
  ];
  return { name: 'minMax', params: [T.I32, T.I32, T.I32], results: [T.I32], locals: [T.I32, T.V128, T.V128, T.V128, T.V128], body };
}

/** bfloat16 → float32 (the bits, shifted): params src (2n bytes), dst, n (a multiple of 8). */
function bf16Kernel(): WasmFunc {
  const [src, dst, n] = [0, 1, 2];
  const [end, v] = [3, 4];
  const body = [
    ...I.get(src), ...I.get(n), ...I.i32(1), ...I.i32Shl, ...I.i32Add, ...I.set(end),
    ...I.block, ...I.loop,
    ...I.get(src), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...I.get(src), ...I.v128Load(), ...I.set(v),
    ...I.get(dst), ...I.get(v), ...I.i32x4ExtendLowI16x8U, ...I.i32(16), ...I.i32x4Shl, ...I.v128Store(),
    ...I.get(dst), ...I.get(v), ...I.i32x4ExtendHighI16x8U, ...I.i32(16), ...I.i32x4Shl, ...I.v128Store(16),
    ...I.get(src), ...I.i32(16), ...I.i32Add, ...I.set(src),
    ...I.get(dst), ...I.i32(32), ...I.i32Add, ...I.set(dst),
    ...I.br(0), ...I.end, ...I.end,
  ];
  return { name: 'bf16ToF32', params: [T.I32, T.I32, T.I32], results: [], locals: [T.I32, T.V128], body };
}

let compiled: WebAssembly.Module | null | undefined;

function kernelModule(): WebAssembly.Module | null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  try {
    const bytes = assemble(
      [
        reconKernel('reconI8', false, false),
        reconKernel('reconI8Zp', false, true),
        reconKernel('reconFp8', true, false),
        reconKernel('reconFp8Zp', true, true),
        sumsKernel(),
        binKernel(),
        fp8TensorKernel('fp8TensorBF16', true),
        fp8TensorKernel('fp8TensorF32', false),
        minMaxKernel(),
        bf16Kernel(),
      ],
    );
    if (typeof WebAssembly === 'object' && WebAssembly.validate(bytes)) compiled = new WebAssembly.Module(bytes);
  } catch {
    compiled = null;
  }
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
   * dequantized (see fp8TensorKernel); bf16 or float32 arithmetic. x must hold no NaN.
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
