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
 * Two engines compute identical results: a portable JS engine for every scheme (jsEngine.ts), and a
 * WebAssembly SIMD engine (simdEngine.ts, kernels in rtn.wat) for int schemes with channel / group (group
 * size a multiple of 16) / tensor strategy and BF16 or F32 arithmetic, several times faster. The parameter
 * maths both share is in params.ts, AutoFP8 in autoFp8.ts.
 */
import type { QuantArgs } from '../args';
import { packToInt32, packedShape } from '../pack';
import { E4M3_TO_F32 } from '../../dtypes/float';
import { CellParams, checkShape, configFor, roundToDtype, rtnScaleShape } from './params';
import { quantizeJs } from './jsEngine';
import { quantizeSimd, simdWrotePacked } from './simdEngine';
import { QuantizeError, RtnOptions, RtnResult, ScaleDtype } from './types';

export { QuantizeError, SCALE_EPS } from './types';
export type { Fp8RtnResult, IntRtnResult, RtnOptions, RtnResult, ScaleDtype } from './types';
export { roundToBF16, roundToDtype, roundToF16, rtnScaleShape } from './params';
export { rtnSimdAvailable } from './simdEngine';
export { quantizeAutoFp8 } from './autoFp8';

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
    if (done && packed && packed.length > 0 && !simdWrotePacked()) packToInt32(q as Int8Array, rows, cols, cfg.bits, 1, packed);
  }
  if (!done) quantizeJs(weight, rows, cols, args, cfg, options, q, scaleShape, p, store);
  if (!done && packed) packToInt32(q as Int8Array, rows, cols, cfg.bits, 1, packed);

  const common = { rows, cols, args, scaleDtype: cfg.scaleDtype, computeDtype: cfg.computeDtype, scale, scaleShape, ...(options.gIdx ? { gIdx: options.gIdx } : {}) };
  return cfg.isFloat
    ? { kind: 'fp8', ...common, q: q as Uint8Array, ...(zeroPoint ? { zeroPoint: zeroPoint as Uint8Array } : {}) }
    : { kind: 'int', ...common, q: q as Int8Array, ...(zeroPoint ? { zeroPoint: zeroPoint as Int8Array } : {}), ...(packed ? { packed } : {}) };
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
