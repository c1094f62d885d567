/**
 * What RTN takes and gives: the options, the result of each kind, the scale dtypes and the one error type.
 * The module comment of rtn/index.ts says what upstream computes.
 */
import type { QuantArgs } from '../args';

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

/** Thrown for arguments that RTN cannot apply (shape, strategy, dtype) and for non-finite weights. */
export class QuantizeError extends Error {
  override readonly name = 'QuantizeError';
}
