/**
 * Dequantizes the weight of one linear module as a checkpoint stores it — float, compressed-tensors
 * int-/float-/pack-quantized (with zero points and g_idx), FP8 block scales, or GPTQ (v1/v2) — into a float32
 * matrix [out, in]. One layer at a time: the memory bound is that layer's size.
 */
import { decodeToFloat32 } from '../dtypes/convert';
import { E4M3_TO_F32 } from '../dtypes/float';
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LinearModule } from '../checkpoint/scheme';
import type { QuantArgs } from './args';
import { unpackFromInt32 } from './pack';
import { GptqCheckpointFormat, dequantizeGptq } from './gptqFormat';

export class DequantizeError extends Error {}

async function floats(checkpoint: Checkpoint, name: string): Promise<Float32Array> {
  const tensor = checkpoint.tensor(name);
  return decodeToFloat32(tensor.dtype, await checkpoint.readTensorBytes(name));
}

async function ints(checkpoint: Checkpoint, name: string): Promise<Int32Array> {
  const tensor = checkpoint.tensor(name);
  if (tensor.dtype !== 'I32') throw new DequantizeError(`${name}: expected I32, found ${tensor.dtype}`);
  const bytes = await checkpoint.readTensorBytes(name);
  return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Which scale cell covers element (r, c), from the scale's shape (and the declared block structure). Shared with the streamed statistics (stats/weightStats.ts). */
export function cellMapper(scaleShape: readonly number[], rows: number, cols: number, block?: readonly [number, number], gIdx?: Int32Array): (r: number, c: number) => number {
  const numel = scaleShape.reduce((a, b) => a * b, 1);
  if (numel === 1) return () => 0;
  const [s0, s1 = 1] = scaleShape;
  if (block || (s0 !== rows && s0! > 0)) {
    const br = block?.[0] ?? Math.ceil(rows / s0!);
    const bc = block?.[1] ?? Math.ceil(cols / s1);
    return (r, c) => Math.floor(r / br) * s1 + Math.floor(c / bc);
  }
  if (s1 === 1) return (r) => r;
  if (gIdx) return (r, c) => r * s1 + gIdx[c]!;
  const gs = Math.ceil(cols / s1);
  return (r, c) => r * s1 + Math.floor(c / gs);
}

/**
 * The dequantized weight [out, in] of `module`. `declared` (the config's weight args) resolves what shapes
 * alone cannot (bits of a packed weight, a block structure); `gptqFormat` is the checkpoint_format.
 */
export async function dequantizeStoredWeight(
  checkpoint: Checkpoint,
  module: LinearModule,
  options: { declared?: QuantArgs; gptqFormat?: GptqCheckpointFormat } = {},
): Promise<{ weight: Float32Array; rows: number; cols: number }> {
  const observed = module.observed;
  const name = module.name;
  if (!observed) throw new DequantizeError(`${name}: no weight in this checkpoint`);
  const has = (suffix: string) => checkpoint.has(`${name}.${suffix}`);
  switch (observed.kind) {
    case 'float': {
      const [rows, cols] = observed.shape!;
      return { weight: await floats(checkpoint, `${name}.weight`), rows, cols };
    }
    case 'ct-int':
    case 'ct-fp8':
    case 'fp8-block': {
      const [rows, cols] = observed.shape!;
      const weightTensor = checkpoint.tensor(`${name}.weight`);
      const raw = await checkpoint.readTensorBytes(weightTensor.name);
      const scaleName = has('weight_scale_inv') ? 'weight_scale_inv' : 'weight_scale';
      const scale = await floats(checkpoint, `${name}.${scaleName}`);
      const scaleShape = checkpoint.tensor(`${name}.${scaleName}`).shape;
      const zp = has('weight_zero_point') ? await floats(checkpoint, `${name}.weight_zero_point`) : undefined;
      const gIdx = has('weight_g_idx') ? await ints(checkpoint, `${name}.weight_g_idx`) : undefined;
      const block = options.declared?.strategy === 'block' ? options.declared.blockStructure : undefined;
      const cell = cellMapper(scaleShape, rows, cols, block, gIdx);
      const isFp8 = weightTensor.dtype === 'F8_E4M3';
      const q = isFp8 ? raw : new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength);
      const out = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const i = r * cols + c;
          const k = cell(r, c);
          const value = isFp8 ? E4M3_TO_F32[q[i]!]! : q[i]!;
          out[i] = (value - (zp ? zp[k]! : 0)) * scale[k]!;
        }
      }
      return { weight: out, rows, cols };
    }
    case 'ct-packed': {
      const shapeBytes = await checkpoint.readTensorBytes(`${name}.weight_shape`);
      const shape = new BigInt64Array(shapeBytes.buffer.slice(shapeBytes.byteOffset, shapeBytes.byteOffset + 16));
      const rows = Number(shape[0]);
      const cols = Number(shape[1]);
      const packedTensor = checkpoint.tensor(`${name}.weight_packed`);
      const packedCols = packedTensor.shape[1]!;
      const bits = options.declared?.numBits ?? [4, 8, 2, 3, 5, 6, 7, 1].find((b) => Math.ceil((cols * b) / 32) === packedCols);
      if (!bits) throw new DequantizeError(`${name}: cannot tell the bit width of weight_packed [${packedTensor.shape.join(', ')}] for ${cols} input features`);
      const q = unpackFromInt32(await ints(checkpoint, packedTensor.name), rows, cols, bits, 1);
      const scale = await floats(checkpoint, `${name}.weight_scale`);
      const scaleShape = checkpoint.tensor(`${name}.weight_scale`).shape;
      const groups = scaleShape.length === 2 ? scaleShape[1]! : 1;
      const zp = has('weight_zero_point') ? unpackFromInt32(await ints(checkpoint, `${name}.weight_zero_point`), rows, groups, bits, 0) : undefined;
      const gIdx = has('weight_g_idx') ? await ints(checkpoint, `${name}.weight_g_idx`) : undefined;
      const cell = cellMapper(scaleShape, rows, cols, undefined, gIdx);
      const out = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const k = cell(r, c);
          out[r * cols + c] = (q[r * cols + c]! - (zp ? zp[k]! : 0)) * scale[k]!;
        }
      }
      return { weight: out, rows, cols };
    }
    case 'gptq': {
      const [rows, cols] = observed.shape ?? [0, 0];
      if (!observed.bits || rows === 0) throw new DequantizeError(`${name}: cannot tell the GPTQ layout (bits/in_features) from qweight and g_idx`);
      const weight = dequantizeGptq(
        {
          bits: observed.bits,
          inFeatures: cols,
          outFeatures: rows,
          qweight: await ints(checkpoint, `${name}.qweight`),
          qzeros: await ints(checkpoint, `${name}.qzeros`),
          scales: await floats(checkpoint, `${name}.scales`),
          gIdx: await ints(checkpoint, `${name}.g_idx`),
        },
        options.gptqFormat ?? 'gptq',
      );
      return { weight, rows, cols };
    }
    default:
      throw new DequantizeError(`${name}: dequantizing ${observed.kind} weights is not supported`);
  }
}
