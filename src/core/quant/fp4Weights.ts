/**
 * The two FP4 layouts of compressed-tensors (docs/formats.md §3.12): `nvfp4-pack-quantized` and
 * `mxfp4-pack-quantized`. Both store `weight_packed` U8 [out, in/2], two E2M1 codes a byte with the even
 * element in the low nibble, and `weight_scale` [out, in/group]:
 * - NVFP4: FP8 E4M3 group scales (groups of 16) and an F32 `weight_global_scale` [1]; a value is
 *   e2m1(code) · (weight_scale / weight_global_scale), the division compressed-tensors' dequantize makes;
 * - MXFP4: E8M0 exponents (U8, or F8_E8M0) per 32 values, scale 2^(e − 127); 0xFF is NaN (OCP MX spec).
 *
 * What this module gives its callers (stored weights, streamed statistics) is the layout checked against
 * the tensors, the effective scale of every (row, group) cell as float64 — one rounding, for NVFP4's
 * division — and the packed bytes of a block of rows. Each row is whole bytes (in is even), so a block of
 * rows is one contiguous read.
 */
import { decodeToFloat64 } from '../dtypes/convert';
import { F4_TO_F32 } from '../dtypes/float';
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LinearModule } from '../checkpoint/scheme';

export type Fp4Variant = 'nvfp4' | 'mxfp4';

export class Fp4LayoutError extends Error {
  override readonly name = 'Fp4LayoutError';
}

/** E2M1 code (bit 3 sign) → value, as float64 (every value is exact). */
export const E2M1_VALUES: Float64Array = Float64Array.from(F4_TO_F32);

export interface Fp4Layout {
  readonly variant: Fp4Variant;
  readonly packedName: string;
  readonly scaleName: string;
  readonly globalScaleName?: string;
  /** Logical [out, in]. */
  readonly rows: number;
  readonly cols: number;
  readonly groupSize: number;
  /** Scale cells per row: ceil(in / groupSize). */
  readonly groups: number;
  /** Effective scale of cell (r, g) at r · groups + g, float64: s / global (NVFP4) or 2^(e − 127) (MXFP4). */
  readonly cellScale: Float64Array;
  /** The global scale (NVFP4; 1 when absent or MXFP4). */
  readonly globalScale: number;
  /** What the codes mean, for the page and the CLI. */
  readonly codes: string;
  /** The packed bytes of rows [r0, r1) into `target` (at least (r1 − r0) · in/2 bytes); returns them. */
  readBytes(r0: number, r1: number, target: Uint8Array): Promise<Uint8Array>;
}

/** Largest scale tensor read whole (bytes); FP8 scales of a 28672 × 8192 NVFP4 weight are 14 MiB. */
const MAX_SCALE_BYTES = 256 * 1024 * 1024;

const isMxScaleDtype = (dtype: string) => dtype === 'U8' || dtype === 'F8_E8M0';

/** E8M0 exponent byte → 2^(e − 127), NaN for 0xFF (exact in float64). */
export function e8m0Value(e: number): number {
  return e === 0xff ? NaN : 2 ** (e - 127);
}

/**
 * The FP4 layout of `module` (observed kind 'nvfp4' or 'mxfp4'), checked against its tensors: throws
 * Fp4LayoutError naming the tensor and what is wrong.
 */
export async function openFp4Layout(checkpoint: Pick<Checkpoint, 'has' | 'tensor' | 'readTensorBytes' | 'readTensorRange'>, module: LinearModule): Promise<Fp4Layout> {
  const name = module.name;
  const packedName = `${name}.weight_packed`;
  const scaleName = `${name}.weight_scale`;
  if (!checkpoint.has(packedName)) throw new Fp4LayoutError(`${packedName}: missing (FP4 weights are stored packed)`);
  if (!checkpoint.has(scaleName)) throw new Fp4LayoutError(`${scaleName}: missing (FP4 weights need group scales)`);
  const packed = checkpoint.tensor(packedName);
  if (packed.dtype !== 'U8' || packed.shape.length !== 2) throw new Fp4LayoutError(`${packedName}: expected U8 [out, in/2] (two E2M1 codes a byte), found ${packed.dtype} [${packed.shape.join(', ')}]`);
  const rows = packed.shape[0]!;
  const rowBytes = packed.shape[1]!;
  const cols = rowBytes * 2;
  const scaleTensor = checkpoint.tensor(scaleName);
  if (scaleTensor.shape.length !== 2 || scaleTensor.shape[0] !== rows || !(scaleTensor.shape[1]! > 0 || cols === 0)) {
    throw new Fp4LayoutError(`${scaleName}: expected [${rows}, groups] (one scale per group of a row), found [${scaleTensor.shape.join(', ')}]`);
  }
  if (scaleTensor.byteLength > MAX_SCALE_BYTES) throw new Fp4LayoutError(`${scaleName}: ${scaleTensor.byteLength} bytes is too large for a scale tensor`);
  const groups = scaleTensor.shape[1]!;
  const groupSize = groups > 0 ? Math.ceil(cols / groups) : 0;
  if (groups > 0 && Math.ceil(cols / groupSize) !== groups) throw new Fp4LayoutError(`${scaleName}: ${groups} groups per row do not split ${cols} input features into equal groups`);
  const variant: Fp4Variant = isMxScaleDtype(scaleTensor.dtype) ? 'mxfp4' : 'nvfp4';
  const scaleBytes = await checkpoint.readTensorBytes(scaleName, { maxBytes: MAX_SCALE_BYTES });
  const cellScale = new Float64Array(rows * groups);
  let globalScale = 1;
  let globalScaleName: string | undefined;
  if (variant === 'mxfp4') {
    for (let k = 0; k < cellScale.length; k++) cellScale[k] = e8m0Value(scaleBytes[k]!);
  } else {
    const stored = decodeToFloat64(scaleTensor.dtype, scaleBytes);
    if (checkpoint.has(`${name}.weight_global_scale`)) {
      globalScaleName = `${name}.weight_global_scale`;
      const globalTensor = checkpoint.tensor(globalScaleName);
      if (globalTensor.shape.reduce((a, b) => a * b, 1) !== 1) throw new Fp4LayoutError(`${globalScaleName}: expected one value, found shape [${globalTensor.shape.join(', ')}]`);
      globalScale = decodeToFloat64(globalTensor.dtype, await checkpoint.readTensorBytes(globalScaleName, { maxBytes: 64 }))[0]!;
    }
    // compressed-tensors divides the group scale by the global scale before multiplying the code.
    for (let k = 0; k < cellScale.length; k++) cellScale[k] = stored[k]! / globalScale;
  }
  return {
    variant,
    packedName,
    scaleName,
    globalScaleName,
    rows,
    cols,
    groupSize,
    groups,
    cellScale,
    globalScale,
    codes: `FP4 E2M1 values (two per byte, even element in the low nibble), ${variant === 'mxfp4' ? `E8M0 exponent per ${groupSize}` : `FP8 scale per ${groupSize}${globalScaleName ? ' over a global scale' : ''}`}`,
    readBytes(r0, r1, target) {
      if (!(Number.isSafeInteger(r0) && Number.isSafeInteger(r1) && 0 <= r0 && r0 <= r1 && r1 <= rows)) throw new Fp4LayoutError(`${packedName}: rows [${r0}, ${r1}) are outside the weight's ${rows} rows`);
      return checkpoint.readTensorRange(packedName, r0 * rowBytes, r1 * rowBytes, target.subarray(0, (r1 - r0) * rowBytes));
    },
  };
}

/**
 * Dequantizes `count` codes of packed rows starting at row `r0` (bytes from `readBytes`) into `out`, float64:
 * e2m1(code) · cellScale; `codesOnly` gives e2m1(code). Rows are whole bytes, so the block starts at a low nibble.
 */
export function decodeFp4Rows(layout: Fp4Layout, bytes: Uint8Array, r0: number, r1: number, out: Float64Array | Float32Array, codesOnly = false): number {
  const { cols, groups, groupSize, cellScale } = layout;
  const half = cols / 2;
  let i = 0;
  for (let r = r0; r < r1; r++) {
    const rowBase = (r - r0) * half;
    const cellBase = r * groups;
    for (let c = 0; c < cols; c++, i++) {
      const b = bytes[rowBase + (c >> 1)]!;
      const value = E2M1_VALUES[c & 1 ? b >> 4 : b & 15]!;
      out[i] = codesOnly ? value : value * cellScale[cellBase + Math.floor(c / groupSize)]!;
    }
  }
  return i;
}
