/**
 * The parameter maths of RTN: torch's "compute in float32, round to the tensor dtype" for scalars, the
 * scheme's configuration, `calculate_qparams` for one cell (scale, zero point, eps rule), the scale shape of
 * each strategy and the act-order column permutation. Shared by both engines (jsEngine.ts, simdEngine.ts).
 */
import type { QuantArgs } from '../args';
import { E4M3_FORMAT, E4M3_TO_F32, decodeF16, encodeE4M3, encodeF16 } from '../../dtypes/float';
import { QuantizeError, RtnOptions, SCALE_EPS, ScaleDtype } from './types';

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

/** 1.5·2^52: (v + RNE) − RNE rounds |v| < 2^51 to an integer, ties to even. */
export const RNE = 6755399441055744;

// ---------------------------------------------------------------------------------------------------------
// Configuration and per-cell parameters
// ---------------------------------------------------------------------------------------------------------

export interface Config {
  readonly isFloat: boolean;
  /** CUDA semantics for `tensor / python_float` (multiply by the float32 reciprocal). */
  readonly cuda: boolean;
  readonly bits: number;
  readonly symmetric: boolean;
  readonly qmin: number;
  readonly qmax: number;
  readonly scaleDtype: ScaleDtype;
  readonly computeDtype: ScaleDtype;
}

/** Per-cell parameters written by `cellParams` (reused object, no allocation per cell). */
export interface CellParams {
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

export function configFor(args: QuantArgs, options: RtnOptions): Config {
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
  };
}

/**
 * `calculate_qparams` for one cell from its raw min and max (already widened to include 0), then storage
 * rounding and the eps rule. Writes `p`.
 */
export function cellParams(cfg: Config, mn: number, mx: number, p: CellParams, where: () => string): void {
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

export function nanError(where: string): QuantizeError {
  return new QuantizeError(`the weight holds NaN (${where}); cannot quantize`);
}

export function checkShape(weight: Float32Array, rows: number, cols: number): void {
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
export function groupPermutation(gIdx: Int32Array, cols: number, groups: number, gs: number): Int32Array {
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
