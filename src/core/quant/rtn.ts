/**
 * Round-to-nearest (RTN) quantization of one Linear weight W [rows = out, cols = in] (row-major
 * Float32Array), bit-exact with what compressed-tensors / llm-compressor write for the same weight
 * (docs/formats.md §3.5, §3.7), plus AutoFP8's per-tensor FP8 (§6).
 *
 * ## What upstream does (read from the source: vllm-project/compressed-tensors @ac8e2ba, llm-compressor
 * ## @ab1ba3e, neuralmagic/AutoFP8 @505a7ed; confirmed bit for bit against torch 2.11 on CPU and CUDA)
 * - The weight observer (`memoryless_minmax`, llmcompressor/observers/min_max.py) takes amin/amax of the
 *   weight **in the weight's dtype** and calls `calculate_qparams` (compressed_tensors/quantization/utils/
 *   helpers.py). Every operation there is a torch op on tensors of that dtype, i.e. computed in float32
 *   ("opmath") and rounded to the weight dtype after each op:
 *     min = min(min, 0); max = max(max, 0)
 *     symmetric:  scale = max(|min|, |max|) / ((q_max − q_min) / 2)           zp = 0
 *     asymmetric: scale = (max − min) / (q_max − q_min)
 *                 zp    = clamp(q_min − min / scale, q_min, q_max)             (computed with that scale)
 *     scale == 0 → eps of the scale dtype (bf16 2^-7, f16 2^-10, f32 2^-23; fp8 scale_dtype 0.125)
 *     zp → zp_dtype: int8 = round-half-even(clamp(zp, −128, 127)); float8_e4m3fn for FP8 weights.
 *   The two `tensor / python_float` divisions are true divisions on CPU, but on CUDA ATen multiplies by the
 *   float32 reciprocal of a CPU scalar (aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu); see
 *   `torchDevice`. For float32 models this changes the last bit of many scales.
 * - `update_qparams` (llmcompressor/modifiers/quantization/calibration.py) stores the scale with
 *   `update_offload_parameter`, i.e. `weight_scale.copy_(scale)` into the parameter that
 *   `initialize_qparams` (compressed_tensors/quantization/lifecycle/initialize.py) created **in the
 *   weight's dtype** (float16 when the weight is not a float type).
 * - The compressor (compressors/pack_quantized/base.py and naive_quantized/base.py `compress`) then calls
 *   `quantize(x=weight, scale=weight_scale, zero_point=weight_zero_point, …)` → `_quantize`
 *   (quantization/lifecycle/forward_helpers.py): `scaled = x / scale; scaled += zero_point.to(x.dtype);
 *   round_to_quantized_type_args(...)` = clamp to [q_min, q_max] then `torch.round` (half-even) for int or
 *   `.to(float8_e4m3fn)` (RNE) for FP8. **So quantization divides by the stored, already-rounded scale
 *   (the bf16 parameter), not by a float32 one**, and `x / scale` and `+ zero_point` are themselves bf16
 *   ops: the quotient is rounded to bf16 before it is rounded to an integer (for int8, |x/s| in [64, 128)
 *   has a bf16 spacing of 0.5, so some errors exceed half a step). The Triton backend of `_quantize` is
 *   registered with priority "disable", so this eager path is the one used. The zero point is always
 *   passed (symmetric schemes too, as zeros, dropped after compression by `_remove_symmetric_zp`), so a
 *   −0 quotient becomes +0 before the FP8 cast.
 * - Group quantization with a g_idx (actorder "group") gathers the columns by argsort(g_idx) and quantizes
 *   contiguous groups of that order, i.e. group g = the columns with g_idx == g (the observer sees the
 *   permuted weight under GPTQ). Plain RTN (`QuantizationModifier`) never sets a g_idx.
 * - Dequantize (`_dequantize`): (q − zp) · scale in the scale's dtype.
 *
 * Reproduced here with `computeDtype` (default: the scale dtype, which upstream is the model dtype):
 * every elementwise op is evaluated in float32 and rounded to `computeDtype`, exactly as torch does;
 * `computeDtype: 'F32'` gives the float32 arithmetic of a float32 model (the textbook formula
 * q = rne(clamp(x/scale + zp))). The scales are returned as the exact stored values, so dequantization
 * (q − zp)·scale needs no further rounding for BF16/F16 scales (an ≤8-bit integer times an ≤11-bit
 * significand fits a float32). The input should hold values of the model dtype, as read from the checkpoint.
 *
 * Deliberate deviations (both produce unusable checkpoints upstream):
 * - an all-zero cell under an asymmetric scheme: upstream's zero point is 0/0 = NaN, which makes FP8 codes
 *   NaN (and int zero points platform-defined); here zp = 0, q = 0, scale = eps;
 * - AutoFP8 on a float16 model whose 448/amax overflows float16 (amax < ~0.0068): upstream stores a zero
 *   scale; here it is a QuantizeError.
 *
 * Two engines compute identical results: a portable JS path (every scheme; x/s as fround(x · (1/s)), equal
 * to the float32 quotient because that quotient lies ≥ 2^-49 (relative) from any float32 midpoint while the
 * float64 product errs by ≤ 2^-52; 16-bit arithmetic via 65536-entry lookup tables), and a WebAssembly SIMD
 * path for int schemes with channel / group (group size a multiple of 16) / tensor strategy and BF16 or
 * F32 arithmetic (see the end of this file), several times faster.
 */
import type { QuantArgs } from './args';
import { packToInt32, packedShape } from './pack';
import { E4M3_FORMAT, E4M3_TO_F32, F16_FORMAT, decodeF16, encodeE4M3, encodeF16, encodeMiniF32Bits, f16ToF32Table } from '../dtypes/float';
import { I, T, WasmFunc, assemble, instantiateWithMemory, splat32 } from './wasmAssembler';

// ---------------------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------------------

/** Float dtypes a scale (and the elementwise arithmetic) can have. */
export type ScaleDtype = 'BF16' | 'F16' | 'F32';

export interface RtnOptions {
  /** Dtype the scales are stored in: the model dtype (default BF16). */
  readonly scaleDtype?: ScaleDtype;
  /**
   * Dtype torch evaluates the elementwise ops in (the dtype of the weight tensor during calibration and
   * compression). Default: `scaleDtype`, which is how upstream works (scales are created in the weight's
   * dtype). 'F32' gives plain float32 arithmetic.
   */
  readonly computeDtype?: ScaleDtype;
  /**
   * Where torch ran `calculate_qparams` (default 'cuda', where llm-compressor calibrates). The two
   * `tensor / python_float` divisions there (amax / ((q_max − q_min)/2) and (max − min) / (q_max − q_min))
   * are true divisions on CPU, but CUDA multiplies by the float32 reciprocal of the scalar
   * (ATen BinaryDivTrueKernel.cu: "if the second operand is a CPU scalar, compute a * reciprocal(b)"), which
   * can change the last bit of a float32 scale (and, rarely, a bf16 one).
   */
  readonly torchDevice?: 'cuda' | 'cpu';
  /** 'auto' (default) uses the WebAssembly SIMD kernels where they apply; 'js' forces the portable path. */
  readonly engine?: 'auto' | 'js';
  /**
   * Also pack q with compressed-tensors `pack_to_int32` (int only; result.packed, [rows, ceil(cols·b/32)]),
   * fused into the quantization pass where possible.
   */
  readonly pack?: boolean;
  /** Buffer for the packed words (implies pack), reused if given; at least rows·ceil(cols·b/32) words. */
  readonly packOut?: Int32Array;
  /**
   * Group index of every input column (actorder "group", `weight_g_idx`), length `cols`; each group
   * 0 … cols/groupSize − 1 must hold exactly groupSize columns. Only for strategy group.
   */
  readonly gIdx?: Int32Array;
  /** Output buffer for q (rows·cols elements; Int8Array for int, Uint8Array for FP8), reused if given. */
  readonly out?: Int8Array | Uint8Array;
}

interface RtnCommon {
  readonly rows: number;
  readonly cols: number;
  readonly args: QuantArgs;
  readonly scaleDtype: ScaleDtype;
  readonly computeDtype: ScaleDtype;
  /** The stored scales, exactly (each is a value of `scaleDtype`), row-major in `scaleShape`. */
  readonly scale: Float32Array;
  /** tensor [1]; channel [rows, 1]; group [rows, cols/groupSize]; block [⌈rows/br⌉, ⌈cols/bc⌉] (AutoFP8: []). */
  readonly scaleShape: readonly number[];
  /** The g_idx used (group strategy with act-order only). */
  readonly gIdx?: Int32Array;
}

export interface IntRtnResult extends RtnCommon {
  readonly kind: 'int';
  /** Signed quantized values in [−2^(b−1), 2^(b−1) − 1], row-major [rows, cols]. */
  readonly q: Int8Array;
  /** Signed zero points (asymmetric only), same shape as the scale. */
  readonly zeroPoint?: Int8Array;
  /** compressed-tensors `weight_packed` [rows, ceil(cols·b/32)] (only with options.pack / packOut). */
  readonly packed?: Int32Array;
}

export interface Fp8RtnResult extends RtnCommon {
  readonly kind: 'fp8';
  /** float8_e4m3fn codes, row-major [rows, cols]. */
  readonly q: Uint8Array;
  /** float8_e4m3fn codes of the zero points (asymmetric only; zp_dtype is float8 for FP8 weights). */
  readonly zeroPoint?: Uint8Array;
}

export type RtnResult = IntRtnResult | Fp8RtnResult;

/** eps that replaces a zero scale, by scale dtype (torch.finfo(dtype).eps). */
export const SCALE_EPS: Readonly<Record<ScaleDtype, number>> = { BF16: 2 ** -7, F16: 2 ** -10, F32: 2 ** -23 };

/** torch dtype names (as in `scale_dtype`) → ScaleDtype. */
const TORCH_FLOAT_NAMES: Readonly<Record<string, ScaleDtype>> = {
  bfloat16: 'BF16',
  'torch.bfloat16': 'BF16',
  float16: 'F16',
  half: 'F16',
  'torch.float16': 'F16',
  float32: 'F32',
  float: 'F32',
  'torch.float32': 'F32',
};

/** Thrown for arguments that RTN cannot apply (shape, strategy, dtype) and for non-finite weights. */
export class QuantizeError extends Error {
  override readonly name = 'QuantizeError';
}

// ---------------------------------------------------------------------------------------------------------
// Scalar rounding (qparams): torch's "compute in float32, round to the tensor dtype"
// ---------------------------------------------------------------------------------------------------------

const S_F32 = new Float32Array(1);
const S_I32 = new Int32Array(S_F32.buffer);

/** bfloat16 value nearest (ties to even) to fround(v); NaN stays NaN, overflow gives ±Inf. */
export function roundToBF16(v: number): number {
  S_F32[0] = v;
  const u = S_I32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return NaN;
  S_I32[0] = (u + 0x7fff + ((u >>> 16) & 1)) & ~0xffff;
  return S_F32[0]!;
}

/** float16 value nearest to fround(v) (torch rounds the float32 result of an op to f16). */
export function roundToF16(v: number): number {
  return decodeF16(encodeF16(Math.fround(v)));
}

/** Rounds the (float64, exact or float32-exact) result of one op as torch does for a tensor of `dtype`. */
export function roundToDtype(dtype: ScaleDtype, v: number): number {
  return dtype === 'F32' ? Math.fround(v) : dtype === 'BF16' ? roundToBF16(v) : roundToF16(v);
}

// ---------------------------------------------------------------------------------------------------------
// Element kernels
// ---------------------------------------------------------------------------------------------------------

/** 1.5·2^52: (v + RNE) − RNE rounds |v| < 2^51 to an integer, ties to even. */
const RNE = 6755399441055744;
/** Four float32 slots and their bit patterns: x/s is stored here to read its float32 bits (one slot per unrolled lane). */
const SLOT_F = new Float32Array(4);
const SLOT_I = new Int32Array(SLOT_F.buffer);

/** Lookup tables from a 16-bit compute-dtype code. */
const intTables = new Map<string, Int8Array>();
const fp8Tables = new Map<string, Uint8Array>();

function valueOf16(dtype: 'BF16' | 'F16', code: number): number {
  if (dtype === 'F16') return f16ToF32Table()[code]!;
  S_I32[0] = code << 16;
  return S_F32[0]!;
}

/** code → round-half-even(clamp(value, qmin, qmax)) as int8 (NaN → 0, never reached: inputs are checked). */
function intTable(dtype: 'BF16' | 'F16', bits: number): Int8Array {
  const key = `${dtype}:${bits}`;
  let t = intTables.get(key);
  if (!t) {
    const qmax = 2 ** (bits - 1) - 1;
    const qmin = -(2 ** (bits - 1));
    t = new Int8Array(65536);
    for (let c = 0; c < 65536; c++) {
      let v = valueOf16(dtype, c);
      if (v !== v) v = 0;
      v = v < qmin ? qmin : v > qmax ? qmax : v;
      t[c] = v + RNE - RNE;
    }
    intTables.set(key, t);
  }
  return t;
}

/** code → e4m3fn code of clamp(value + 0, ±448) (the + 0 is the zero point upstream always adds). */
function fp8Table(dtype: 'BF16' | 'F16'): Uint8Array {
  let t = fp8Tables.get(dtype);
  if (!t) {
    t = new Uint8Array(65536);
    for (let c = 0; c < 65536; c++) {
      const v = valueOf16(dtype, c) + 0;
      t[c] = encodeE4M3(v < -448 ? -448 : v > 448 ? 448 : v, { saturate: true });
    }
    fp8Tables.set(dtype, t);
  }
  return t;
}

/*
 * Kernels. Each quantizes x[xs, xs+n) with one cell's 1/scale (`inv`) and zero point into q[qs, …).
 * They are small, monomorphic and allocation-free; the 16-bit paths round x/s to float32 by storing it
 * in SLOT_F, read its bits from SLOT_I and round them to bf16 with integer RNE:
 *   code = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16
 * (exact for every finite float32, including carries into the exponent and overflow to Inf).
 */

/** int, float32 arithmetic: q = rne(clamp(fround(fround(x/s) + zp))). */
function intSpanF32(x: Float32Array, xs: number, n: number, inv: number, zp: number, qmin: number, qmax: number, q: Int8Array, qs: number): void {
  if (zp === 0) {
    for (let j = 0; j < n; j++) {
      let r = (Math.fround(x[xs + j]! * inv) + RNE - RNE) | 0;
      if (r > qmax) r = qmax;
      else if (r < qmin) r = qmin;
      q[qs + j] = r;
    }
  } else {
    for (let j = 0; j < n; j++) {
      let r = (Math.fround(Math.fround(x[xs + j]! * inv) + zp) + RNE - RNE) | 0;
      if (r > qmax) r = qmax;
      else if (r < qmin) r = qmin;
      q[qs + j] = r;
    }
  }
}

/** int, bf16 arithmetic, symmetric: q = table[bf16(fround(x/s))], four lanes per iteration. */
function intSpanBF16Sym(x: Float32Array, xs: number, n: number, inv: number, t: Int8Array, q: Int8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  let j = 0;
  for (; j + 3 < n; j += 4) {
    F[0] = x[xs + j]! * inv;
    F[1] = x[xs + j + 1]! * inv;
    F[2] = x[xs + j + 2]! * inv;
    F[3] = x[xs + j + 3]! * inv;
    const u0 = I[0]!;
    const u1 = I[1]!;
    const u2 = I[2]!;
    const u3 = I[3]!;
    q[qs + j] = t[(u0 + 0x7fff + ((u0 >>> 16) & 1)) >>> 16]!;
    q[qs + j + 1] = t[(u1 + 0x7fff + ((u1 >>> 16) & 1)) >>> 16]!;
    q[qs + j + 2] = t[(u2 + 0x7fff + ((u2 >>> 16) & 1)) >>> 16]!;
    q[qs + j + 3] = t[(u3 + 0x7fff + ((u3 >>> 16) & 1)) >>> 16]!;
  }
  for (; j < n; j++) {
    F[0] = x[xs + j]! * inv;
    const u = I[0]!;
    q[qs + j] = t[(u + 0x7fff + ((u >>> 16) & 1)) >>> 16]!;
  }
}

/** bf16 arithmetic with a zero point: v = bf16(fround(x/s)); w = bf16(fround(v + zp)); out = table[w]. */
function spanBF16Zp(x: Float32Array, xs: number, n: number, inv: number, zpv: number, t: Int8Array | Uint8Array, q: Int8Array | Uint8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  for (let j = 0; j < n; j++) {
    F[0] = x[xs + j]! * inv;
    const u = I[0]!;
    I[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
    F[0] = F[0]! + zpv;
    const w = I[0]!;
    q[qs + j] = t[(w + 0x7fff + ((w >>> 16) & 1)) >>> 16]!;
  }
}

/** f16 arithmetic (with zero point when `addZp`): codes via the float32-bits encoder. */
function spanF16(x: Float32Array, xs: number, n: number, inv: number, addZp: boolean, zpv: number, t: Int8Array | Uint8Array, q: Int8Array | Uint8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  const dec = f16ToF32Table();
  for (let j = 0; j < n; j++) {
    F[0] = x[xs + j]! * inv;
    let c = encodeMiniF32Bits(F16_FORMAT, I[0]!, F[0]!, false);
    if (addZp) {
      F[0] = dec[c]! + zpv;
      c = encodeMiniF32Bits(F16_FORMAT, I[0]!, F[0]!, false);
    }
    q[qs + j] = t[c]!;
  }
}

/** FP8, float32 arithmetic: code = e4m3(clamp(fround(fround(x/s) + zp), ±448)); zp = 0 turns −0 into +0. */
function fp8SpanF32(x: Float32Array, xs: number, n: number, inv: number, zpv: number, q: Uint8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  for (let j = 0; j < n; j++) {
    F[0] = Math.fround(x[xs + j]! * inv) + zpv;
    // saturate: true is clamp-then-cast: everything above 448 (and below 464, where RNE would stay at 448 anyway) gives 448.
    q[qs + j] = encodeMiniF32Bits(E4M3_FORMAT, I[0]!, F[0]!, true);
  }
}

/** FP8, bf16 arithmetic, symmetric: code = table[bf16(fround(x/s))] (the table adds the +0). */
function fp8SpanBF16Sym(x: Float32Array, xs: number, n: number, inv: number, t: Uint8Array, q: Uint8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  for (let j = 0; j < n; j++) {
    F[0] = x[xs + j]! * inv;
    const u = I[0]!;
    q[qs + j] = t[(u + 0x7fff + ((u >>> 16) & 1)) >>> 16]!;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------

interface Config {
  readonly isFloat: boolean;
  /** CUDA semantics for `tensor / python_float` (multiply by the float32 reciprocal). */
  readonly cuda: boolean;
  readonly bits: number;
  readonly symmetric: boolean;
  readonly qmin: number;
  readonly qmax: number;
  readonly scaleDtype: ScaleDtype;
  readonly computeDtype: ScaleDtype;
  readonly table?: Int8Array | Uint8Array;
}

/** Per-cell parameters written by `cellParams` (reused object, no allocation per cell). */
interface CellParams {
  /** Stored scale. */
  scale: number;
  /** 1 / stored scale (float64). */
  inv: number;
  /** Zero point as stored: int value, or e4m3 code for FP8. */
  zp: number;
  /** Zero point value added to x/s (int value, or the FP8 value). */
  zpv: number;
}

function resolveScaleDtype(args: QuantArgs, options: RtnOptions): ScaleDtype {
  if (options.scaleDtype) return options.scaleDtype;
  if (args.scaleDtype !== undefined) {
    const mapped = TORCH_FLOAT_NAMES[args.scaleDtype.toLowerCase()];
    if (!mapped) throw new QuantizeError(`scale_dtype "${args.scaleDtype}" (NVFP4/MX style scales) is not supported by RTN here; use a float scale dtype (bfloat16, float16, float32)`);
    return mapped;
  }
  return 'BF16';
}

function configFor(args: QuantArgs, options: RtnOptions): Config {
  if (args.dynamic !== false) throw new QuantizeError(`dynamic quantization (dynamic: ${String(args.dynamic)}) stores no weight scales; RTN needs static weight quantization`);
  if (!['tensor', 'channel', 'group', 'block'].includes(args.strategy)) {
    throw new QuantizeError(`strategy "${args.strategy}" cannot be applied to a Linear weight by RTN (supported: tensor, channel, group, block)`);
  }
  const scaleDtype = resolveScaleDtype(args, options);
  const computeDtype = options.computeDtype ?? scaleDtype;
  for (const [name, d] of [['scaleDtype', scaleDtype], ['computeDtype', computeDtype]] as const) {
    if (d !== 'BF16' && d !== 'F16' && d !== 'F32') throw new QuantizeError(`${name} must be BF16, F16 or F32, got ${String(d)}`);
  }
  if (args.type === 'float') {
    if (args.numBits !== 8) throw new QuantizeError(`float quantization with ${args.numBits} bits is not supported by RTN here (FP8 E4M3 only; FP4 needs tensor_group scales)`);
    return {
      isFloat: true,
      cuda: (options.torchDevice ?? 'cuda') === 'cuda',
      bits: 8,
      symmetric: args.symmetric,
      qmin: -E4M3_FORMAT.max,
      qmax: E4M3_FORMAT.max,
      scaleDtype,
      computeDtype,
      table: computeDtype === 'F32' ? undefined : fp8Table(computeDtype),
    };
  }
  if (!Number.isInteger(args.numBits) || args.numBits < 1 || args.numBits > 8) {
    throw new QuantizeError(`int quantization needs 1–8 bits (the quantized values are held as int8), got ${args.numBits}`);
  }
  return {
    isFloat: false,
    cuda: (options.torchDevice ?? 'cuda') === 'cuda',
    bits: args.numBits,
    symmetric: args.symmetric,
    // Small integers (not doubles from **), so the kernels compare and store int32 values.
    qmin: -(1 << (args.numBits - 1)),
    qmax: (1 << (args.numBits - 1)) - 1,
    scaleDtype,
    computeDtype,
    table: computeDtype === 'F32' ? undefined : intTable(computeDtype, args.numBits),
  };
}

/**
 * `calculate_qparams` for one cell from its raw min and max (already widened to include 0), then storage
 * rounding and the eps rule. Writes `p`.
 */
function cellParams(cfg: Config, mn: number, mx: number, p: CellParams, where: () => string): void {
  const c = cfg.computeDtype;
  let s: number;
  let zpv = 0;
  let zp = 0;
  if (!(mn > -Infinity && mx < Infinity)) throw new QuantizeError(`the weight holds ±Inf (${where()}); cannot quantize`);
  if (cfg.symmetric) {
    const amax = -mn > mx ? -mn : mx;
    const half = (cfg.qmax - cfg.qmin) / 2;
    s = roundToDtype(c, cfg.cuda ? Math.fround(amax * Math.fround(1 / half)) : amax / half);
  } else {
    const d = roundToDtype(c, mx - mn);
    const range = cfg.qmax - cfg.qmin;
    s = roundToDtype(c, cfg.cuda ? Math.fround(d * Math.fround(1 / range)) : d / range);
    const t = roundToDtype(c, mn / s);
    let z = roundToDtype(c, cfg.qmin - t);
    z = z < cfg.qmin ? cfg.qmin : z > cfg.qmax ? cfg.qmax : z;
    // s = 0 (an all-zero cell) makes upstream's zp 0/0 = NaN, whose integer cast is platform-defined; 0 here.
    if (z !== z) z = 0;
    if (cfg.isFloat) {
      zp = encodeE4M3(z, { saturate: true });
      zpv = E4M3_TO_F32[zp]!;
    } else {
      zp = z + RNE - RNE; // z is already within [qmin, qmax] ⊂ [−128, 127]
      zpv = zp;
    }
  }
  let stored = cfg.scaleDtype === c ? s : roundToDtype(cfg.scaleDtype, s);
  if (stored === 0) stored = SCALE_EPS[cfg.scaleDtype];
  if (!Number.isFinite(stored)) throw new QuantizeError(`scale overflows ${cfg.scaleDtype} (${where()}): the weight's range is too large for this dtype`);
  p.scale = stored;
  p.inv = 1 / stored;
  p.zp = zp;
  p.zpv = zpv;
}

/** Quantizes x[xs, xs+n) with one cell's parameters into q[qs, …). */
function quantizeSpan(cfg: Config, x: Float32Array, xs: number, n: number, p: CellParams, q: Int8Array | Uint8Array, qs: number): void {
  const c = cfg.computeDtype;
  if (c === 'F32') {
    if (cfg.isFloat) fp8SpanF32(x, xs, n, p.inv, p.zpv, q as Uint8Array, qs);
    else intSpanF32(x, xs, n, p.inv, p.zpv, cfg.qmin, cfg.qmax, q as Int8Array, qs);
  } else if (c === 'BF16') {
    // A zero zero-point changes nothing but the sign of a −0 quotient, which only FP8 can see (its table adds + 0).
    if (p.zpv !== 0) spanBF16Zp(x, xs, n, p.inv, p.zpv, cfg.table!, q, qs);
    else if (cfg.isFloat) fp8SpanBF16Sym(x, xs, n, p.inv, cfg.table as Uint8Array, q as Uint8Array, qs);
    else intSpanBF16Sym(x, xs, n, p.inv, cfg.table as Int8Array, q as Int8Array, qs);
  } else {
    spanF16(x, xs, n, p.inv, p.zpv !== 0, p.zpv, cfg.table!, q, qs);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Min/max (widened to include 0), with a NaN check on the rare path
// ---------------------------------------------------------------------------------------------------------

let MN = 0;
let MX = 0;

/**
 * Min/max of x[s, e) folded into MN/MX (which start at 0: the range always includes 0). Returns false when
 * a NaN was seen; the NaN test sits on the rarely taken branch (a NaN fails both comparisons).
 */
function minMaxSpan(x: Float32Array, s: number, e: number): boolean {
  let mn = MN;
  let mx = MX;
  let ok = true;
  for (let i = s; i < e; i++) {
    const v = x[i]!;
    if (v < mn) mn = v;
    if (!(v <= mx)) {
      if (v !== v) ok = false;
      else mx = v;
    }
  }
  MN = mn;
  MX = mx;
  return ok;
}

/** max |x| over x[s, e) folded into MX (symmetric schemes need only this); false when a NaN was seen. */
function absMaxSpan(x: Float32Array, s: number, e: number): boolean {
  let mx = MX;
  let ok = true;
  for (let i = s; i < e; i++) {
    const a = Math.abs(x[i]!);
    if (!(a <= mx)) {
      if (a !== a) ok = false;
      else mx = a;
    }
  }
  MX = mx;
  return ok;
}

/** Range of x[s, e) for the scheme into MN/MX: symmetric → MN = −amax, MX = amax (same scale). */
function rangeSpan(sym: boolean, x: Float32Array, s: number, e: number): boolean {
  if (sym) {
    const ok = absMaxSpan(x, s, e);
    MN = -MX;
    return ok;
  }
  return minMaxSpan(x, s, e);
}

function nanError(where: string): QuantizeError {
  return new QuantizeError(`the weight holds NaN (${where}); cannot quantize`);
}

// ---------------------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------------------

function checkShape(weight: Float32Array, rows: number, cols: number): void {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0) {
    throw new QuantizeError(`rows and cols must be non-negative integers, got ${rows} × ${cols}`);
  }
  if (weight.length !== rows * cols) throw new QuantizeError(`the weight has ${weight.length} elements, but rows × cols = ${rows} × ${cols} = ${rows * cols}`);
}

/** The scale (and zero-point) shape for `args` on a [rows, cols] weight, with the checks RTN applies. */
export function rtnScaleShape(args: QuantArgs, rows: number, cols: number): number[] {
  switch (args.strategy) {
    case 'tensor':
      return [1];
    case 'channel':
      return [rows, 1];
    case 'group': {
      const gs = args.groupSize;
      if (gs === undefined || !Number.isInteger(gs) || gs <= 0) throw new QuantizeError(`strategy group needs a positive group_size, got ${String(gs)}`);
      if (cols % gs !== 0) {
        throw new QuantizeError(`group_size ${gs} does not divide the input dimension: weight [rows ${rows}, cols ${cols}], ${cols} % ${gs} = ${cols % gs} (compressed-tensors: "tensor column shape must be divisible by the given group_size")`);
      }
      return [rows, cols / gs];
    }
    case 'block': {
      const b = args.blockStructure;
      if (!b || !(b[0] > 0) || !(b[1] > 0) || !Number.isInteger(b[0]) || !Number.isInteger(b[1])) throw new QuantizeError('strategy block needs block_structure [rows, cols] of positive integers');
      return [Math.ceil(rows / b[0]), Math.ceil(cols / b[1])];
    }
    default:
      throw new QuantizeError(`strategy "${args.strategy}" cannot be applied to a Linear weight by RTN`);
  }
}

/** Stable permutation that sorts columns by group, after checking every group holds exactly `gs` columns. */
function groupPermutation(gIdx: Int32Array, cols: number, groups: number, gs: number): Int32Array {
  if (gIdx.length !== cols) throw new QuantizeError(`g_idx has ${gIdx.length} entries, the weight has ${cols} columns`);
  const counts = new Int32Array(groups);
  for (let c = 0; c < cols; c++) {
    const g = gIdx[c]!;
    if (!(g >= 0 && g < groups)) throw new QuantizeError(`g_idx[${c}] = ${g} is outside 0…${groups - 1} (${cols} columns / group_size ${gs})`);
    counts[g]!++;
  }
  for (let g = 0; g < groups; g++) {
    if (counts[g] !== gs) throw new QuantizeError(`g_idx assigns ${counts[g]} columns to group ${g}; every group must hold exactly group_size ${gs} columns`);
  }
  const next = new Int32Array(groups);
  for (let g = 0; g < groups; g++) next[g] = g * gs;
  const perm = new Int32Array(cols);
  for (let c = 0; c < cols; c++) perm[next[gIdx[c]!]!++] = c;
  return perm;
}

/**
 * RTN-quantizes W [rows, cols] (row-major) with `args` exactly as compressed-tensors would (see the module
 * comment). Throws a QuantizeError for unsupported arguments, a group size that does not divide cols, a bad
 * g_idx, or non-finite weights.
 */
export function quantizeRtn(weight: Float32Array, rows: number, cols: number, args: QuantArgs, options: RtnOptions = {}): RtnResult {
  checkShape(weight, rows, cols);
  const cfg = configFor(args, options);
  const scaleShape = rtnScaleShape(args, rows, cols);
  const cells = scaleShape[0]! * (scaleShape[1] ?? 1);
  const n = rows * cols;
  let q: Int8Array | Uint8Array;
  if (options.out) {
    const want = cfg.isFloat ? Uint8Array : Int8Array;
    if (!(options.out instanceof want)) throw new QuantizeError(`out must be a${cfg.isFloat ? ' Uint8Array (FP8 codes)' : 'n Int8Array'}`);
    if (options.out.length < n) throw new QuantizeError(`out holds ${options.out.length} elements, ${n} are needed`);
    q = options.out.length === n ? options.out : options.out.subarray(0, n);
  } else q = cfg.isFloat ? new Uint8Array(n) : new Int8Array(n);
  const scale = new Float32Array(cells);
  const zeroPoint = cfg.symmetric ? undefined : cfg.isFloat ? new Uint8Array(cells) : new Int8Array(cells);
  const p: CellParams = { scale: 0, inv: 0, zp: 0, zpv: 0 };
  const store = (cell: number) => {
    scale[cell] = p.scale;
    if (zeroPoint) zeroPoint[cell] = p.zp;
  };
  if (options.gIdx && args.strategy !== 'group') throw new QuantizeError(`g_idx applies to strategy group only, not "${args.strategy}"`);
  const pack = options.pack === true || options.packOut !== undefined;
  if (pack && cfg.isFloat) throw new QuantizeError('pack applies to int schemes (FP8 weights are stored unpacked)');
  let packed: Int32Array | undefined;
  if (pack) {
    const [pr, pc] = packedShape(rows, cols, cfg.bits, 1);
    const words = pr * pc;
    if (options.packOut) {
      if (options.packOut.length < words) throw new QuantizeError(`packOut holds ${options.packOut.length} words, ${words} are needed`);
      packed = options.packOut.length === words ? options.packOut : options.packOut.subarray(0, words);
    } else packed = new Int32Array(words);
  }
  let done = false;
  if (options.engine !== 'js' && !options.gIdx && !cfg.isFloat) {
    done = quantizeSimd(weight, rows, cols, args, cfg, q as Int8Array, scale, zeroPoint as Int8Array | undefined, packed);
    if (done && packed && packed.length > 0 && !simdPacked) packToInt32(q as Int8Array, rows, cols, cfg.bits, 1, packed);
  }
  if (!done) quantizeJs(weight, rows, cols, args, cfg, options, q, scaleShape, p, store);
  if (!done && packed) packToInt32(q as Int8Array, rows, cols, cfg.bits, 1, packed);

  const common = { rows, cols, args, scaleDtype: cfg.scaleDtype, computeDtype: cfg.computeDtype, scale, scaleShape, ...(options.gIdx ? { gIdx: options.gIdx } : {}) };
  return cfg.isFloat
    ? { kind: 'fp8', ...common, q: q as Uint8Array, ...(zeroPoint ? { zeroPoint: zeroPoint as Uint8Array } : {}) }
    : { kind: 'int', ...common, q: q as Int8Array, ...(zeroPoint ? { zeroPoint: zeroPoint as Int8Array } : {}), ...(packed ? { packed } : {}) };
}

/** The portable path: every scheme, strategy and dtype. */
function quantizeJs(
  weight: Float32Array,
  rows: number,
  cols: number,
  args: QuantArgs,
  cfg: Config,
  options: RtnOptions,
  q: Int8Array | Uint8Array,
  scaleShape: readonly number[],
  p: CellParams,
  store: (cell: number) => void,
): void {
  const n = rows * cols;
  switch (args.strategy) {
    case 'tensor': {
      MN = 0;
      MX = 0;
      for (let r = 0; r < rows; r++) if (!rangeSpan(cfg.symmetric, weight, r * cols, (r + 1) * cols)) throw nanError(`row ${r}`);
      cellParams(cfg, MN, MX, p, () => 'whole tensor');
      store(0);
      if (n > 0) quantizeSpan(cfg, weight, 0, n, p, q, 0);
      break;
    }
    case 'channel': {
      for (let r = 0; r < rows; r++) {
        const s = r * cols;
        MN = 0;
        MX = 0;
        if (!rangeSpan(cfg.symmetric, weight, s, s + cols)) throw nanError(`row ${r}`);
        cellParams(cfg, MN, MX, p, () => `row ${r}`);
        store(r);
        quantizeSpan(cfg, weight, s, cols, p, q, s);
      }
      break;
    }
    case 'group': {
      const gs = args.groupSize!;
      const groups = cols / gs;
      if (options.gIdx) {
        const perm = groupPermutation(options.gIdx, cols, groups, gs);
        const xg = new Float32Array(cols);
        const qg = cfg.isFloat ? new Uint8Array(cols) : new Int8Array(cols);
        for (let r = 0; r < rows; r++) {
          const s = r * cols;
          for (let c = 0; c < cols; c++) xg[c] = weight[s + perm[c]!]!;
          for (let g = 0; g < groups; g++) {
            MN = 0;
            MX = 0;
            if (!rangeSpan(cfg.symmetric, xg, g * gs, (g + 1) * gs)) throw nanError(`row ${r}, group ${g}`);
            cellParams(cfg, MN, MX, p, () => `row ${r}, group ${g}`);
            store(r * groups + g);
            quantizeSpan(cfg, xg, g * gs, gs, p, qg, g * gs);
          }
          for (let c = 0; c < cols; c++) q[s + perm[c]!] = qg[c]!;
        }
      } else {
        for (let r = 0; r < rows; r++) {
          for (let g = 0; g < groups; g++) {
            const s = r * cols + g * gs;
            MN = 0;
            MX = 0;
            if (!rangeSpan(cfg.symmetric, weight, s, s + gs)) throw nanError(`row ${r}, group ${g}`);
            cellParams(cfg, MN, MX, p, () => `row ${r}, group ${g}`);
            store(r * groups + g);
            quantizeSpan(cfg, weight, s, gs, p, q, s);
          }
        }
      }
      break;
    }
    case 'block': {
      const [br, bc] = args.blockStructure!;
      const [bRows, bCols] = scaleShape as [number, number];
      for (let bi = 0; bi < bRows; bi++) {
        const r0 = bi * br;
        const r1 = Math.min(rows, r0 + br);
        for (let bj = 0; bj < bCols; bj++) {
          const c0 = bj * bc;
          const w = Math.min(cols, c0 + bc) - c0;
          // Zero padding of partial blocks cannot change min/max, which already include 0.
          MN = 0;
          MX = 0;
          for (let r = r0; r < r1; r++) if (!rangeSpan(cfg.symmetric, weight, r * cols + c0, r * cols + c0 + w)) throw nanError(`row ${r}, block (${bi}, ${bj})`);
          cellParams(cfg, MN, MX, p, () => `block (${bi}, ${bj})`);
          store(bi * bCols + bj);
          for (let r = r0; r < r1; r++) quantizeSpan(cfg, weight, r * cols + c0, w, p, q, r * cols + c0);
        }
      }
      break;
    }
  }
}

export interface DequantizeOptions {
  /** Round each dequantized value to this dtype, as torch's `dequantize` does in the scale dtype. Default: none (exact). */
  readonly roundTo?: ScaleDtype;
  readonly out?: Float32Array;
}

/**
 * x̂ = (q − zp) · scale for every element, as a Float32Array [rows, cols]. With BF16/F16 scales every value
 * is exact (an int8 difference, or an FP8 value, times an ≤11-bit significand); with F32 scales, or FP8
 * asymmetric differences, the product is rounded once to float32.
 */
export function dequantizeRtn(result: RtnResult, options: DequantizeOptions = {}): Float32Array {
  const { rows, cols, scale } = result;
  const n = rows * cols;
  if (options.out && options.out.length < n) throw new QuantizeError(`out holds ${options.out.length} elements, ${n} are needed`);
  const out = options.out ? (options.out.length === n ? options.out : options.out.subarray(0, n)) : new Float32Array(n);
  const strategy = result.args.strategy;
  const s1 = result.scaleShape.length === 2 ? result.scaleShape[1]! : 1;
  const isFp8 = result.kind === 'fp8';
  const zp = result.zeroPoint;
  const qv = isFp8 ? (i: number) => E4M3_TO_F32[result.q[i]!]! : (i: number) => result.q[i]!;
  const zv = (cell: number) => (zp ? (isFp8 ? E4M3_TO_F32[zp[cell]!]! : zp[cell]!) : 0);
  /** out[i] = (q[i] − z) · s for i in [a, b). */
  const span = (a: number, b: number, cell: number) => {
    const sc = scale[cell]!;
    const z = zv(cell);
    if (!isFp8 && z === 0) {
      const q = result.q as Int8Array;
      for (let i = a; i < b; i++) out[i] = q[i]! * sc;
    } else for (let i = a; i < b; i++) out[i] = (qv(i) - z) * sc;
  };
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    if (strategy === 'tensor') span(base, base + cols, 0);
    else if (strategy === 'channel') span(base, base + cols, r);
    else if (strategy === 'group') {
      const gIdx = result.gIdx;
      if (gIdx) for (let c = 0; c < cols; c++) span(base + c, base + c + 1, r * s1 + gIdx[c]!);
      else {
        const gs = cols / s1;
        for (let g = 0; g < s1; g++) span(base + g * gs, base + (g + 1) * gs, r * s1 + g);
      }
    } else {
      const [br, bc] = result.args.blockStructure!;
      const bi = Math.floor(r / br);
      for (let c0 = 0, bj = 0; c0 < cols; c0 += bc, bj++) span(base + c0, base + Math.min(cols, c0 + bc), bi * s1 + bj);
    }
  }
  if (options.roundTo) for (let i = 0; i < n; i++) out[i] = roundToDtype(options.roundTo, out[i]!);
  return out;
}

/**
 * AutoFP8's `per_tensor_quantize` (neuralmagic/AutoFP8 auto_fp8/quantize.py @505a7ed), bit-exact for a weight
 * held in `computeDtype` (the model dtype, default BF16):
 *   amax = max(|min|, |max|) (16 for an empty tensor)
 *   mult = 448 / amax.clamp(min=1e-12) — a Python float divided by a tensor, which torch evaluates as
 *          `amax.reciprocal() * 448` (torch/_tensor.py `__rdiv__`), i.e. two ops rounded to the model dtype
 *   q = e4m3(clamp(x · mult, ±448))   (x · mult in the model dtype; a multiplication, not a division)
 *   weight_scale = float32(1 / float32(mult))   (F32 scalar, shape [])
 * Dequantization q · weight_scale; the scale is close to, but usually not exactly, amax/448 (use
 * quantizeRtn with a float tensor scheme and scaleDtype F32 for round(amax/448)).
 */
export function quantizeAutoFp8(weight: Float32Array, rows: number, cols: number, options: { computeDtype?: ScaleDtype; out?: Uint8Array } = {}): Fp8RtnResult {
  checkShape(weight, rows, cols);
  const c = options.computeDtype ?? 'BF16';
  const n = rows * cols;
  let amax = 16;
  if (n > 0) {
    MN = 0;
    MX = 0;
    for (let r = 0; r < rows; r++) if (!minMaxSpan(weight, r * cols, (r + 1) * cols)) throw nanError(`row ${r}`);
    if (!(MN > -Infinity && MX < Infinity)) throw new QuantizeError('the weight holds ±Inf; cannot quantize');
    amax = -MN > MX ? -MN : MX;
  }
  // clamp(min=1e-12) compares in float32 and rounds the result to the tensor dtype.
  const tiny = Math.fround(1e-12);
  const clamped = roundToDtype(c, amax < tiny ? tiny : amax);
  const mult = roundToDtype(c, roundToDtype(c, 1 / clamped) * 448);
  if (!Number.isFinite(mult) || mult === 0) throw new QuantizeError(`448 / amax is not a finite non-zero ${c} value (amax ${amax})`);
  const q = options.out ? options.out.subarray(0, n) : new Uint8Array(n);
  if (q.length < n) throw new QuantizeError(`out holds ${q.length} elements, ${n} are needed`);
  const F = SLOT_F;
  const I = SLOT_I;
  const table = c === 'F32' ? undefined : autoFp8Table(c);
  for (let i = 0; i < n; i++) {
    F[0] = weight[i]! * mult;
    if (!table) q[i] = encodeMiniF32Bits(E4M3_FORMAT, I[0]!, F[0]!, true);
    else if (c === 'BF16') {
      const u = I[0]!;
      q[i] = table[(u + 0x7fff + ((u >>> 16) & 1)) >>> 16]!;
    } else q[i] = table[encodeMiniF32Bits(F16_FORMAT, I[0]!, F[0]!, false)]!;
  }
  const scale = new Float32Array([Math.fround(1 / mult)]);
  return {
    kind: 'fp8',
    rows,
    cols,
    args: { numBits: 8, type: 'float', symmetric: true, strategy: 'tensor', dynamic: false },
    scaleDtype: 'F32',
    computeDtype: c,
    scale,
    scaleShape: [],
    q,
  };
}

/** AutoFP8 adds no zero point, so −0 stays −0: code → e4m3(clamp(value, ±448)). */
const autoTables = new Map<string, Uint8Array>();
function autoFp8Table(dtype: 'BF16' | 'F16'): Uint8Array {
  let t = autoTables.get(dtype);
  if (!t) {
    t = new Uint8Array(65536);
    for (let c = 0; c < 65536; c++) {
      const v = valueOf16(dtype, c);
      t[c] = encodeE4M3(v < -448 ? -448 : v > 448 ? 448 : v, { saturate: true });
    }
    autoTables.set(dtype, t);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// WebAssembly SIMD engine (integer schemes, channel / group / tensor, BF16 or F32 arithmetic)
// ---------------------------------------------------------------------------------------------------------
//
// The module is assembled here (wasmAssembler.ts: the instruction encodings of the WebAssembly core and SIMD
// specs; no build step, no dependency). It computes exactly what the JS kernels compute — every step is an IEEE
// operation with the same rounding:
//   amax/min/max per group (pmin/pmax, with a separate NaN flag) → calculate_qparams in float32 with bf16
//   rounding after each op (i32 RNE on the bits) → x·(1/s) in f64x2, demoted to f32 (= fround) → bf16 RNE
//   → (+ zp, bf16 RNE) → f32x4.nearest (ties to even) → clamp → i32 → saturating narrows to int8,
// and for 4/8 bits the compressed-tensors packing (nibble pairs via i16 lanes; q XOR 0x80).
// Tests run every scheme through both engines and an independent reference.

/**
 * The quantize kernel, one per (bf16, zp) variant. params: src, groups, gs, scalePtr, zpPtr, qmin(i32),
 * qmax(i32), dst. Per lane: v = x / s (f32x4.div is the correctly rounded float32 quotient, i.e. torch's
 * float32 op); [bf16 RNE]; [+ zp, bf16 RNE]; round half to even by adding 1.5·2^23 (exact for |v| < 2^22;
 * |v| is at most a few hundred here) and subtracting its bit pattern as an integer; int32 → int8 through
 * saturating narrows; clamp to [qmin, qmax] in int8. (A multiply by fround(1/s) with a check for
 * quotients near rounding boundaries was tried: exact, but slower under V8.)
 */
function quantKernel(name: string, bf16: boolean, zp: boolean): WasmFunc {
  const [src, groups, gs, scalePtr, zpPtr, qmin, qmax, dst] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [g, end, sv, zpv, qminv, qmaxv, t, magic] = [8, 9, 10, 11, 12, 13, 14, 15];
  const bf16Round = (): number[] =>
    bf16 ? [...I.tee(t), ...splat32(0x7fff), ...I.i32x4Add, ...I.get(t), ...I.i32(16), ...I.i32x4ShrU, ...splat32(1), ...I.v128And, ...I.i32x4Add, ...splat32(0xffff0000), ...I.v128And] : [];
  /** Leaves the i32x4 of q for the 4 floats at src + off on the stack. */
  const conv = (off: number): number[] => [
    ...I.get(src), ...I.v128Load(off), ...I.get(sv), ...I.f32x4Div,
    ...bf16Round(),
    ...(zp ? [...I.get(zpv), ...I.f32x4Add, ...bf16Round()] : []),
    ...I.get(magic), ...I.f32x4Add, ...I.get(magic), ...I.i32x4Sub,
  ];
  const body = [
    ...splat32(0x4b400000), ...I.set(magic),
    ...I.get(qmin), ...I.i8x16Splat, ...I.set(qminv),
    ...I.get(qmax), ...I.i8x16Splat, ...I.set(qmaxv),
    ...I.i32(0), ...I.set(g),
    ...I.block, ...I.loop,
    ...I.get(g), ...I.get(groups), ...I.i32GeU, ...I.brIf(1),
    ...I.get(scalePtr), ...I.get(g), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.f32Load(), ...I.f32x4Splat, ...I.set(sv),
    ...(zp ? [...I.get(zpPtr), ...I.get(g), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.f32Load(), ...I.f32x4Splat, ...I.set(zpv)] : []),
    ...I.get(src), ...I.get(gs), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.set(end),
    ...I.block, ...I.loop,
    ...I.get(src), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...I.get(dst),
    ...conv(0), ...conv(16), ...I.i16x8NarrowI32x4S,
    ...conv(32), ...conv(48), ...I.i16x8NarrowI32x4S,
    ...I.i8x16NarrowI16x8S, ...I.get(qminv), ...I.i8x16MaxS, ...I.get(qmaxv), ...I.i8x16MinS,
    ...I.v128Store(),
    ...I.get(src), ...I.i32(64), ...I.i32Add, ...I.set(src),
    ...I.get(dst), ...I.i32(16), ...I.i32Add, ...I.set(dst),
    ...I.br(0), ...I.end, ...I.end,
    ...I.get(g), ...I.i32(1), ...I.i32Add, ...I.set(g),
    ...I.br(0), ...I.end, ...I.end,
  ];
  return { name, params: [T.I32, T.I32, T.I32, T.I32, T.I32, T.I32, T.I32, T.I32], results: [], locals: [T.I32, T.I32, T.V128, T.V128, T.V128, T.V128, T.V128, T.V128], body };
}

/**
 * amax (symmetric) or min & max (asymmetric) of every group (gs a multiple of 16), starting from 0; returns
 * 1 if a NaN was seen (pmin/pmax skip NaN, so it is tracked separately).
 */
function rangeKernel(name: string, minmax: boolean): WasmFunc {
  // params: src, groups, gs, dstA (amax or min), dstB (max)
  const [src, groups, gs, dstA, dstB] = [0, 1, 2, 3, 4];
  const [g, end, accA, accB, x, nan] = [5, 6, 7, 8, 9, 10];
  const hReduce = (acc: number, op: number[]): number[] => [
    ...I.get(acc), ...I.f32x4ExtractLane(0), ...I.get(acc), ...I.f32x4ExtractLane(1), ...op,
    ...I.get(acc), ...I.f32x4ExtractLane(2), ...op, ...I.get(acc), ...I.f32x4ExtractLane(3), ...op,
  ];
  const zero = I.v128Const(new Uint8Array(16));
  const body = [
    ...zero, ...I.set(nan),
    ...I.i32(0), ...I.set(g),
    ...I.block, ...I.loop,
    ...I.get(g), ...I.get(groups), ...I.i32GeU, ...I.brIf(1),
    ...zero, ...I.set(accA), ...zero, ...I.set(accB),
    ...I.get(src), ...I.get(gs), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...I.set(end),
    ...I.block, ...I.loop,
    ...I.get(src), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...[0, 16, 32, 48].flatMap((off) => [
      ...I.get(src), ...I.v128Load(off), ...I.set(x),
      ...I.get(nan), ...I.get(x), ...I.get(x), ...I.f32x4Ne, ...I.v128Or, ...I.set(nan),
      ...(minmax
        ? [...I.get(accA), ...I.get(x), ...I.f32x4Pmin, ...I.set(accA), ...I.get(accB), ...I.get(x), ...I.f32x4Pmax, ...I.set(accB)]
        : [...I.get(accA), ...I.get(x), ...I.f32x4Abs, ...I.f32x4Pmax, ...I.set(accA)]),
    ]),
    ...I.get(src), ...I.i32(64), ...I.i32Add, ...I.set(src),
    ...I.br(0), ...I.end, ...I.end,
    ...I.get(dstA), ...I.get(g), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...hReduce(accA, minmax ? I.f32Min : I.f32Max), ...I.f32Store(),
    ...(minmax ? [...I.get(dstB), ...I.get(g), ...I.i32(2), ...I.i32Shl, ...I.i32Add, ...hReduce(accB, I.f32Max), ...I.f32Store()] : []),
    ...I.get(g), ...I.i32(1), ...I.i32Add, ...I.set(g),
    ...I.br(0), ...I.end, ...I.end,
    ...I.get(nan), ...I.v128AnyTrue,
  ];
  return { name, params: [T.I32, T.I32, T.I32, T.I32, T.I32], results: [T.I32], locals: [T.I32, T.I32, T.V128, T.V128, T.V128, T.V128], body };
}

/**
 * calculate_qparams for `groups` cells: the stored scale (f32) and the zero point (f32, asymmetric) per cell.
 * params: aPtr (amax or min), bPtr (max), groups, divisor(f32: (qmax−qmin)/2 or qmax−qmin), qmin(f32),
 * qmax(f32), cuda(i32), bf16(i32), eps(f32), outScale, outZp.
 */
function qparamsKernel(name: string, asym: boolean): WasmFunc {
  const [aPtr, bPtr, groups, div, qmin, qmax, cuda, bf16, eps, outScale, outZp] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const [g, recip, s, t, z, u] = [11, 12, 13, 14, 15, 16];
  /** Rounds the f32 on the stack to bf16 when the bf16 flag is set. */
  const R = (): number[] => [
    ...I.tee(t),
    ...I.i32ReinterpretF32, ...I.set(u),
    ...I.get(u), ...I.i32(0x7fff), ...I.i32Add, ...I.get(u), ...I.i32(16), ...I.i32ShrU, ...I.i32(1), ...I.i32And, ...I.i32Add,
    ...I.i32(0xffff0000), ...I.i32And, ...I.f32ReinterpretI32,
    ...I.get(t), ...I.get(bf16), ...I.select,
  ];
  /** s = R(cuda ? v * recip : v / div), with v on the stack. */
  const scalarDiv = (): number[] => [
    ...I.tee(t), ...I.get(recip), ...I.f32Mul, ...I.get(t), ...I.get(div), ...I.f32Div, ...I.get(cuda), ...I.select, ...R(),
  ];
  const cellAddr = (ptr: number, shift: number) => [...I.get(ptr), ...I.get(g), ...I.i32(shift), ...I.i32Shl, ...I.i32Add];
  const body = [
    ...I.f32(1), ...I.get(div), ...I.f32Div, ...I.set(recip),
    ...I.i32(0), ...I.set(g),
    ...I.block, ...I.loop,
    ...I.get(g), ...I.get(groups), ...I.i32GeU, ...I.brIf(1),
    ...(asym
      ? [
          // d = R(max − min); s = R(d / range); t = R(min / s); z = R(qmin − t); clamp; NaN → 0; round
          ...cellAddr(bPtr, 2), ...I.f32Load(), ...cellAddr(aPtr, 2), ...I.f32Load(), ...I.f32Sub, ...R(),
          ...scalarDiv(), ...I.set(s),
          ...I.get(qmin), ...cellAddr(aPtr, 2), ...I.f32Load(), ...I.get(s), ...I.f32Div, ...R(), ...I.f32Sub, ...R(),
          ...I.get(qmax), ...I.f32Min, ...I.get(qmin), ...I.f32Max, ...I.set(z),
          // NaN (an all-zero cell: 0/0) → 0, then round half to even
          ...I.f32(0), ...I.get(z), ...I.get(z), ...I.get(z), ...I.f32Ne, ...I.select, ...I.f32Nearest, ...I.set(z),
          ...cellAddr(outZp, 2), ...I.get(z), ...I.f32Store(),
        ]
      : [...cellAddr(aPtr, 2), ...I.f32Load(), ...scalarDiv(), ...I.set(s)]),
    // a zero scale becomes eps (after the zero point was computed, as upstream)
    ...I.get(eps), ...I.get(s), ...I.get(s), ...I.f32(0), ...I.f32Eq, ...I.select, ...I.set(s),
    ...cellAddr(outScale, 2), ...I.get(s), ...I.f32Store(),
    ...I.get(g), ...I.i32(1), ...I.i32Add, ...I.set(g),
    ...I.br(0), ...I.end, ...I.end,
  ];
  return {
    name,
    params: [T.I32, T.I32, T.I32, T.F32, T.F32, T.F32, T.I32, T.I32, T.F32, T.I32, T.I32],
    results: [],
    locals: [T.I32, T.F32, T.F32, T.F32, T.F32, T.I32],
    body,
  };
}

/** compressed-tensors packing of int8 q: 4 bits (32 values → 16 bytes) or 8 bits (q XOR 0x80). params: src, n, dst. */
function packKernel(name: string, bits: 4 | 8): WasmFunc {
  const [src, n, dst] = [0, 1, 2];
  const [end, a] = [3, 4];
  const nibblePair = (off: number): number[] => [
    ...I.get(src), ...I.v128Load(off), ...I.i32(8), ...I.i8x16Splat, ...I.i8x16Add, ...I.tee(a),
    ...I.get(a), ...I.i32(4), ...I.i16x8ShrU, ...I.v128Or, ...I.i32(0xff), ...I.i16x8Splat, ...I.v128And,
  ];
  const step = bits === 4 ? 32 : 16;
  const body = [
    ...I.get(src), ...I.get(n), ...I.i32Add, ...I.set(end),
    ...I.block, ...I.loop,
    ...I.get(src), ...I.get(end), ...I.i32GeU, ...I.brIf(1),
    ...I.get(dst),
    ...(bits === 4 ? [...nibblePair(0), ...nibblePair(16), ...I.i8x16NarrowI16x8U] : [...I.get(src), ...I.v128Load(), ...I.i32(0x80), ...I.i8x16Splat, ...I.v128Xor]),
    ...I.v128Store(),
    ...I.get(src), ...I.i32(step), ...I.i32Add, ...I.set(src),
    ...I.get(dst), ...I.i32(16), ...I.i32Add, ...I.set(dst),
    ...I.br(0), ...I.end, ...I.end,
  ];
  return { name, params: [T.I32, T.I32, T.I32], results: [], locals: [T.I32, T.V128], body };
}


interface SimdExports {
  readonly mem: WebAssembly.Memory;
  amax(src: number, groups: number, gs: number, dstA: number, dstB: number): number;
  minmax(src: number, groups: number, gs: number, dstA: number, dstB: number): number;
  qpSym(...a: number[]): void;
  qpAsym(...a: number[]): void;
  quantF32(src: number, groups: number, gs: number, scalePtr: number, zpPtr: number, qmin: number, qmax: number, dst: number): void;
  quantF32Zp(src: number, groups: number, gs: number, scalePtr: number, zpPtr: number, qmin: number, qmax: number, dst: number): void;
  quantBF16(src: number, groups: number, gs: number, scalePtr: number, zpPtr: number, qmin: number, qmax: number, dst: number): void;
  quantBF16Zp(src: number, groups: number, gs: number, scalePtr: number, zpPtr: number, qmin: number, qmax: number, dst: number): void;
  pack4(src: number, n: number, dst: number): void;
  pack8(src: number, n: number, dst: number): void;
}

let simd: SimdExports | null | undefined;
let simdModule: WebAssembly.Module | undefined;
/** Set by quantizeSimd: whether it also wrote the packed words. */
let simdPacked = false;

/** The SIMD kernels, or null where WebAssembly SIMD is unavailable. */
function simdKernels(): SimdExports | null {
  if (simd !== undefined) return simd;
  simd = null;
  try {
    const bytes = assemble(
      [
        rangeKernel('amax', false),
        rangeKernel('minmax', true),
        qparamsKernel('qpSym', false),
        qparamsKernel('qpAsym', true),
        quantKernel('quantF32', false, false),
        quantKernel('quantF32Zp', false, true),
        quantKernel('quantBF16', true, false),
        quantKernel('quantBF16Zp', true, true),
        packKernel('pack4', 4),
        packKernel('pack8', 8),
      ],
    );
    if (typeof WebAssembly === 'object' && WebAssembly.validate(bytes)) {
      simdModule = new WebAssembly.Module(bytes);
      simd = instantiateWithMemory<SimdExports>(simdModule, 4 * 1024 * 1024); // room for a chunk of SIMD_CHUNK rows
    }
  } catch {
    simd = null;
  }
  return simd;
}

/** True when the WebAssembly SIMD engine is available on this host. */
export function rtnSimdAvailable(): boolean {
  return simdKernels() !== null;
}

/** Elements per chunk of rows handed to the kernels (the working set stays in cache). */
const SIMD_CHUNK = 1 << 17;

/**
 * Runs an int channel / group / tensor quantization through the SIMD kernels. Returns false (having done
 * nothing) when the scheme or shape is not one they handle.
 */
function quantizeSimd(
  weight: Float32Array,
  rows: number,
  cols: number,
  args: QuantArgs,
  cfg: Config,
  q: Int8Array,
  scale: Float32Array,
  zeroPoint: Int8Array | undefined,
  packed: Int32Array | undefined,
): boolean {
  const kernels = simdKernels();
  if (!kernels || cfg.isFloat || cfg.computeDtype === 'F16' || cfg.scaleDtype !== cfg.computeDtype || rows * cols === 0) return false;
  const strategy = args.strategy;
  let gs: number;
  let stride: number;
  if (strategy === 'group') {
    gs = args.groupSize!;
    if (gs % 16 !== 0) return false;
    stride = cols;
  } else if (strategy === 'channel' || strategy === 'tensor') {
    stride = Math.ceil(cols / 16) * 16;
    gs = stride;
  } else return false;
  const G = strategy === 'group' ? cols / gs : 1;
  const packBits = packed && (cfg.bits === 4 || cfg.bits === 8) && cols % (32 / cfg.bits) === 0 ? cfg.bits : 0;
  simdPacked = packBits !== 0;
  const chunkRows = Math.max(1, Math.min(rows, Math.floor(SIMD_CHUNK / stride)));
  const cells = chunkRows * G;
  // Memory layout (bytes): src f32 | q i8 | packed | A f32 | B f32 | scale f32 | zp f32
  const SRC = 0;
  const Q = SRC + chunkRows * stride * 4;
  const PK = Q + chunkRows * stride;
  const A = PK + Math.ceil((chunkRows * stride * Math.max(packBits, 1)) / 8 / 16) * 16;
  const B = A + cells * 4;
  const S = B + cells * 4;
  const ZP = S + cells * 4;
  const total = ZP + cells * 4 + 64;
  // A bigger memory is a new instance (see instantiateWithMemory: never grown).
  if (kernels.mem.buffer.byteLength < total) simd = instantiateWithMemory<SimdExports>(simdModule!, total);
  const k = simd!;
  const mem = k.mem;
  const f32 = new Float32Array(mem.buffer);
  const i8 = new Int8Array(mem.buffer);
  const i32 = new Int32Array(mem.buffer);
  const bf16 = cfg.computeDtype === 'BF16' ? 1 : 0;
  const cuda = cfg.cuda ? 1 : 0;
  const eps = SCALE_EPS[cfg.scaleDtype];
  const sym = cfg.symmetric;
  const zpOn = !sym;
  const quant = bf16 ? (zpOn ? k.quantBF16Zp : k.quantBF16) : zpOn ? k.quantF32Zp : k.quantF32;
  const pc = packBits ? (cols * packBits) / 32 : 0;

  const load = (r0: number, r1: number) => {
    if (stride === cols) f32.set(weight.subarray(r0 * cols, r1 * cols), SRC / 4);
    else {
      for (let r = r0; r < r1; r++) {
        const d = SRC / 4 + (r - r0) * stride;
        f32.set(weight.subarray(r * cols, (r + 1) * cols), d);
        f32.fill(0, d + cols, d + stride);
      }
    }
  };
  const where = (r0: number, cell: number) => (strategy === 'group' ? `row ${r0 + Math.floor(cell / G)}, group ${cell % G}` : `row ${r0 + cell}`);
  const checkRange = (r0: number, n: number) => {
    for (let i = 0; i < n; i++) {
      const a = f32[A / 4 + i]!;
      const b = sym ? 0 : f32[B / 4 + i]!;
      if (a === Infinity || a === -Infinity || b === Infinity) throw new QuantizeError(`the weight holds ±Inf (${strategy === 'tensor' ? 'whole tensor' : where(r0, i)}); cannot quantize`);
    }
  };

  if (strategy === 'tensor') {
    // Pass 1: the tensor's range over all chunks; the one cell's parameters in JS; pass 2 quantizes.
    let mn = 0;
    let mx = 0;
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const r1 = Math.min(rows, r0 + chunkRows);
      load(r0, r1);
      const nan = (sym ? k.amax : k.minmax)(SRC, 1, (r1 - r0) * stride, A, B);
      if (nan) throw nanError(`rows ${r0}…${r1 - 1}`);
      if (sym) mx = Math.max(mx, f32[A / 4]!);
      else {
        mn = Math.min(mn, f32[A / 4]!);
        mx = Math.max(mx, f32[B / 4]!);
      }
    }
    const p: CellParams = { scale: 0, inv: 0, zp: 0, zpv: 0 };
    cellParams(cfg, sym ? -mx : mn, mx, p, () => 'whole tensor');
    scale[0] = p.scale;
    if (zeroPoint) zeroPoint[0] = p.zp;
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const r1 = Math.min(rows, r0 + chunkRows);
      load(r0, r1);
      f32[S / 4] = p.scale;
      f32[ZP / 4] = p.zpv;
      quant(SRC, 1, (r1 - r0) * stride, S, ZP, cfg.qmin, cfg.qmax, Q);
      storeQ(r0, r1);
    }
    return true;
  }

  function storeQ(r0: number, r1: number): void {
    if (stride === cols) q.set(i8.subarray(Q, Q + (r1 - r0) * cols), r0 * cols);
    else for (let r = r0; r < r1; r++) q.set(i8.subarray(Q + (r - r0) * stride, Q + (r - r0) * stride + cols), r * cols);
    if (packBits && packed) {
      (packBits === 4 ? k.pack4 : k.pack8)(Q, (r1 - r0) * stride, PK);
      const wordsPerRow = (stride * packBits) / 32;
      if (wordsPerRow === pc) packed.set(i32.subarray(PK / 4, PK / 4 + (r1 - r0) * pc), r0 * pc);
      else for (let r = r0; r < r1; r++) packed.set(i32.subarray(PK / 4 + (r - r0) * wordsPerRow, PK / 4 + (r - r0) * wordsPerRow + pc), r * pc);
    }
  }

  for (let r0 = 0; r0 < rows; r0 += chunkRows) {
    const r1 = Math.min(rows, r0 + chunkRows);
    const n = (r1 - r0) * G;
    load(r0, r1);
    const nan = (sym ? k.amax : k.minmax)(SRC, n, gs, A, B);
    if (nan) {
      // Locate it for the message.
      for (let i = r0 * cols; i < r1 * cols; i++) if (weight[i] !== weight[i]) throw nanError(where(r0, strategy === 'group' ? (Math.floor(i / cols) - r0) * G + Math.floor((i % cols) / gs) : Math.floor(i / cols) - r0));
    }
    checkRange(r0, n);
    if (sym) k.qpSym(A, B, n, (cfg.qmax - cfg.qmin) / 2, cfg.qmin, cfg.qmax, cuda, bf16, eps, S, ZP);
    else k.qpAsym(A, B, n, cfg.qmax - cfg.qmin, cfg.qmin, cfg.qmax, cuda, bf16, eps, S, ZP);
    for (let i = 0; i < n; i++) {
      const s = f32[S / 4 + i]!;
      if (!Number.isFinite(s)) throw new QuantizeError(`scale overflows ${cfg.scaleDtype} (${where(r0, i)}): the weight's range is too large for this dtype`);
    }
    quant(SRC, n, gs, S, ZP, cfg.qmin, cfg.qmax, Q);
    storeQ(r0, r1);
    scale.set(f32.subarray(S / 4, S / 4 + n), r0 * G);
    if (zeroPoint) for (let i = 0; i < n; i++) zeroPoint[r0 * G + i] = f32[ZP / 4 + i]!;
  }
  return true;
}
