/**
 * Round-to-nearest into the "microscale" layouts of compressed-tensors (docs/formats.md §3.13), bit-exact
 * with what llm-compressor's QuantizationModifier (and its model-free entry point) writes for the same
 * float weight:
 *   - NVFP4 (`nvfp4-pack-quantized`): E2M1 codes, an FP8 E4M3 scale per 16 values, an F32 global scale;
 *   - MXFP4 (`mxfp4-pack-quantized`): E2M1 codes, an E8M0 exponent per 32 values;
 *   - MXFP8 (`mxfp8-quantized`): FP8 E4M3 codes, an E8M0 exponent per 32 values.
 *
 * ## What upstream does (vllm-project/compressed-tensors @ac8e2ba, vllm-project/llm-compressor @ab1ba3e)
 * Every op below is a torch op on tensors of the weight's dtype `c` (computed in float32, rounded to c),
 * unless it says float32:
 * - Observer (llmcompressor/observers/min_max.py `MemorylessMinMaxObserver`): per group of a row,
 *   amax = max|x| (min/max widened to include 0 by `calculate_qparams`, quantization/utils/helpers.py).
 * - NVFP4 global scale (observers/base.py `get_global_scale` → helpers.py `generate_gparam`): the tensor's
 *   amax — shared by the layers vLLM fuses (q/k/v, gate/up, w1/w3: observers/helpers.py `FUSED_LAYER_NAMES`)
 *   — clamped to finfo(c).tiny; `448 · 6 / amax` is a Python float over a tensor, which torch evaluates as
 *   `amax.reciprocal() * 2688` (torch/_tensor.py `__rdiv__`): two ops in c; NaN/Inf → 1; then float32.
 * - NVFP4 group scale (`calculate_qparams`): s = amax / 6 (a tensor over a Python float: on CUDA, where
 *   llm-compressor runs, a multiplication by the float32 reciprocal; see rtn/params.ts), then `global · s` in
 *   float32, clamped to ±448 and cast to float8_e4m3fn (round to nearest even), 0 → 0.125 (the e4m3 eps).
 * - MX exponent (quantization/utils/mxfp_utils.py `generate_mx_scales`): `round_to_power_2(amax)` adds
 *   2^(mantissa − 2) to amax's bits in c and keeps sign and exponent (so a significand ≥ 1.75 rounds up);
 *   e = 127 + floor(log2(p2)) − offset, offset 2 for FP4 (floor(log2 6)) and 8 for FP8 (floor(log2 448)),
 *   clamped to [0, 255] (`round_to_quantized_type_dtype` to uint8); the scale used is 2^(e − 127) rounded to
 *   c (0 → 1, the "eps" of uint8), and the stored byte is 127 + log2(that scale) (compressors/mx_utils.py
 *   `compress_mx_scale`).
 * - Quantize (quantization/lifecycle/forward_helpers.py `_quantize`): NVFP4 divides by
 *   `weight_scale / global_scale` (float32: the bf16 parameter over the float32 global) in float32; MX
 *   divide by the scale in c. Then clamp to ±6 / ±448 and round: FP4 with `cast_to_fp4`
 *   (quantization/utils/fp4_utils.py: thresholds 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5 — round to nearest, ties
 *   to even — times torch.sign, so a negative value that rounds to 0 is −0), FP8 with `.to(float8_e4m3fn)`.
 *   The zero point QuantizationModifier passes (zeros) turns a −0 quotient into +0.
 * - Pack (compressors/nvfp4/helpers.py `pack_fp4_to_uint8`): code = index of |v| in
 *   [0, .5, 1, 1.5, 2, 3, 4, 6] | signbit << 3; element 2k in the low nibble of byte k.
 *
 * Rows are independent once the global scale is known, so a caller streams a weight in row blocks.
 */
import { E4M3_TO_F32, encodeE4M3 } from '../dtypes/float';
import { QuantizeError, ScaleDtype, roundToDtype } from './rtn';

export type MicroscaleVariant = 'nvfp4' | 'mxfp4' | 'mxfp8';

/** Values per scale, bits per value. */
export const MICROSCALE: Readonly<Record<MicroscaleVariant, { readonly groupSize: number; readonly bits: 4 | 8 }>> = {
  nvfp4: { groupSize: 16, bits: 4 },
  mxfp4: { groupSize: 32, bits: 4 },
  mxfp8: { groupSize: 32, bits: 8 },
};

/** floor(log2(max of the element type)): FP4 E2M1 6 → 2, FP8 E4M3 448 → 8. */
const MX_OFFSET = { 4: 2, 8: 8 } as const;
/** torch.finfo(c).tiny. */
const TINY: Readonly<Record<ScaleDtype, number>> = { BF16: 2 ** -126, F16: 2 ** -14, F32: 2 ** -126 };
const FP4_MAX = 6;
const FP8_MAX = 448;
const NVFP4_SCALE_EPS_CODE = encodeE4M3(0.125);

export interface MicroscaleOptions {
  /** The weight's dtype: torch computes the elementwise ops in it (default BF16). */
  readonly computeDtype?: ScaleDtype;
  /** NVFP4: the F32 global scale (from `nvfp4GlobalScale`). */
  readonly globalScale?: number;
  /** Where `amax / 6` ran (NVFP4): 'cuda' (default, a reciprocal multiplication) or 'cpu' (a division). */
  readonly torchDevice?: 'cuda' | 'cpu';
}

export interface MicroscaleResult {
  readonly variant: MicroscaleVariant;
  readonly rows: number;
  readonly cols: number;
  /** FP4: packed bytes [rows, cols/2]; FP8: E4M3 codes [rows, cols]. */
  readonly codes: Uint8Array;
  /** Stored scale bytes [rows, cols/groupSize]: E4M3 codes (NVFP4) or E8M0 exponents (MX). */
  readonly scales: Uint8Array;
}

/** max |x| over the weight; throws on NaN / ±Inf, naming where. */
export function absMax(weight: Float32Array, where: string): number {
  let m = 0;
  for (let i = 0; i < weight.length; i++) {
    const v = weight[i]!;
    const a = v < 0 ? -v : v;
    if (!(a <= Infinity) || a === Infinity) throw new QuantizeError(`${where}: element ${i} is ${v}; cannot quantize a weight holding NaN or ±Inf`);
    if (a > m) m = a;
  }
  return m;
}

/** NVFP4's F32 global scale from the amax of the tensor (or of its fused group), in the weight's dtype. */
export function nvfp4GlobalScale(amax: number, dtype: ScaleDtype): number {
  const clamped = amax < TINY[dtype] ? TINY[dtype] : amax;
  const g = roundToDtype(dtype, roundToDtype(dtype, 1 / clamped) * 2688);
  return Number.isFinite(g) ? Math.fround(g) : 1;
}

/** The E2M1 code of a float32 quotient (already clamped to ±6), as `cast_to_fp4` then `pack_fp4_to_uint8`. */
export function e2m1Code(q: number): number {
  const a = q < 0 ? -q : q;
  const m = a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 : a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7;
  // torch.sign(−0) is 0, so only a strictly negative quotient keeps its sign (also when it rounds to −0).
  return q < 0 ? m | 8 : m;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** mxfp_utils.round_to_power_2 for a non-negative value of `dtype`: 0, a power of two, or Infinity. */
function roundToPowerOf2(dtype: ScaleDtype, v: number): number {
  F32[0] = v;
  const bits = U32[0]!;
  if (dtype !== 'F16') {
    // bf16: + 2^5 on its 16 bits; float32: + 2^21. A bf16 value's low 16 bits are 0, so both are + 2^21 here.
    U32[0] = ((bits + (1 << 21)) & 0xff800000) >>> 0;
    return F32[0]!;
  }
  // float16 (10 mantissa bits): + 2^8, keep sign and exponent. Every float16 is a normal float32.
  if (v === 0) return 0;
  const e = ((bits >>> 23) & 0xff) - 127;
  if (e < -14) return v >= 0.75 * 2 ** -14 ? 2 ** -14 : 0; // subnormal: only a carry reaches the exponent field
  const up = (bits & 0x7fffff) >= 0.75 * 0x800000;
  const k = up ? e + 1 : e;
  return k > 15 ? Infinity : 2 ** k;
}

/** The MX exponent of a group's amax and the scale it divides by (as upstream computes both). */
export function mxExponent(amax: number, bits: 4 | 8, dtype: ScaleDtype): { stored: number; scale: number } {
  const p2 = roundToPowerOf2(dtype, amax);
  if (p2 === Infinity) throw new QuantizeError(`a group's largest magnitude ${amax} rounds to 2^128, past the E8M0 range`);
  let e = p2 === 0 ? 0 : 127 + Math.round(Math.log2(p2)) - MX_OFFSET[bits];
  e = e < 0 ? 0 : e > 255 ? 255 : e;
  let scale = roundToDtype(dtype, 2 ** (e - 127));
  if (scale === 0) scale = 1;
  return { stored: 127 + Math.round(Math.log2(scale)), scale };
}

/**
 * Quantizes W [rows, cols] (row-major float32 holding values of `computeDtype`) to `variant`. Throws a
 * QuantizeError when cols is not a multiple of the group size, for NaN / ±Inf, or (NVFP4) without a
 * global scale.
 */
export function quantizeMicroscale(weight: Float32Array, rows: number, cols: number, variant: MicroscaleVariant, options: MicroscaleOptions = {}): MicroscaleResult {
  const { groupSize, bits } = MICROSCALE[variant];
  if (weight.length !== rows * cols) throw new QuantizeError(`the weight has ${weight.length} elements, but rows × cols = ${rows} × ${cols}`);
  if (cols % groupSize !== 0) throw new QuantizeError(`${variant.toUpperCase()} needs the input dimension to be a multiple of ${groupSize}; it is ${cols} (compressed-tensors: "tensor column shape must be divisible by the given group_size")`);
  const c = options.computeDtype ?? 'BF16';
  const groups = cols / groupSize;
  const codes = new Uint8Array(bits === 4 ? (rows * cols) / 2 : rows * cols);
  const scales = new Uint8Array(rows * groups);
  const global = options.globalScale;
  if (variant === 'nvfp4' && (global === undefined || !(global > 0) || !Number.isFinite(global))) throw new QuantizeError('NVFP4 needs a positive finite global scale');
  const sixth = (options.torchDevice ?? 'cuda') === 'cuda' ? Math.fround(1 / 6) : undefined;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const start = r * cols + g * groupSize;
      let amax = 0;
      for (let i = start; i < start + groupSize; i++) {
        const v = weight[i]!;
        const a = v < 0 ? -v : v;
        if (!(a < Infinity)) throw new QuantizeError(`row ${r}, group ${g}: the weight holds ${v}; cannot quantize`);
        if (a > amax) amax = a;
      }
      if (variant === 'nvfp4') {
        const local = roundToDtype(c, sixth !== undefined ? Math.fround(amax * sixth) : amax / 6);
        let scaled = Math.fround(global! * local);
        scaled = scaled > FP8_MAX ? FP8_MAX : scaled;
        let code = encodeE4M3(scaled, { saturate: true });
        if (E4M3_TO_F32[code] === 0) code = NVFP4_SCALE_EPS_CODE;
        scales[r * groups + g] = code;
        const effective = Math.fround(E4M3_TO_F32[code]! / global!);
        for (let i = start; i < start + groupSize; i += 2) {
          codes[i >> 1] = fp4Of(Math.fround(weight[i]! / effective)) | (fp4Of(Math.fround(weight[i + 1]! / effective)) << 4);
        }
      } else {
        const { stored, scale } = mxExponent(amax, bits, c);
        scales[r * groups + g] = stored;
        if (bits === 4) {
          for (let i = start; i < start + groupSize; i += 2) {
            codes[i >> 1] = fp4Of(roundToDtype(c, weight[i]! / scale)) | (fp4Of(roundToDtype(c, weight[i + 1]! / scale)) << 4);
          }
        } else {
          for (let i = start; i < start + groupSize; i++) {
            let q = roundToDtype(c, weight[i]! / scale);
            q = q > FP8_MAX ? FP8_MAX : q < -FP8_MAX ? -FP8_MAX : q === 0 ? 0 : q;
            codes[i] = encodeE4M3(q, { saturate: true });
          }
        }
      }
    }
  }
  return { variant, rows, cols, codes, scales };
}

function fp4Of(q: number): number {
  return e2m1Code(q > FP4_MAX ? FP4_MAX : q < -FP4_MAX ? -FP4_MAX : q);
}
