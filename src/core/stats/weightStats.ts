/**
 * Statistics of a quantized linear weight as the model sees it: the dequantized values
 * x̂ = (q − zero) · scale, or the stored codes q, streamed in row blocks. Layouts: compressed-tensors
 * int-/float-quantized (I8 or FP8 E4M3 with tensor / channel / group / block scales, zero points, g_idx),
 * pack-quantized (1–8-bit codes packed in int32 words, packed zero points, g_idx), NVFP4 / MXFP4 (E2M1
 * nibbles with FP8 group scales over a global scale, or E8M0 exponents: quant/fp4Weights.ts), AutoFP8 / FP8
 * block (`weight_scale_inv`), and GPTQ v1/v2 (qweight / qzeros / scales / g_idx, transposed).
 *
 * Values are computed in float64, where (q − zero) · scale is exact for every supported code width and
 * scale dtype, so the statistics are those of the exact dequantized weight. Two streamed passes (moments
 * and range, then histograms), as for wide dtypes.
 *
 * Memory bound: one block of at most `blockElements` values (default 1 Mi: 8 MiB of float64 plus that
 * block's stored bytes), plus the layer's scales, zero points and g_idx, which are read whole (out × groups
 * values: 3.7 MB of bf16 for a Llama-3-70B MLP projection at group 128). Never the whole weight.
 */
import { decodeToFloat64 } from '../dtypes/convert';
import { E4M3_TO_F32 } from '../dtypes/float';
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LayerMap, LinearModule, ObservedStorage } from '../checkpoint/scheme';
import type { QuantArgs } from '../quant/args';
import { unpackFromInt32 } from '../quant/pack';
import { GptqCheckpointFormat, unpackGptqQweight, unpackGptqQzeros } from '../quant/gptqFormat';
import { cellMapper } from '../quant/storedWeights';
import { Fp4LayoutError, decodeFp4Rows, openFp4Layout } from '../quant/fp4Weights';
import { CancelledError, StatsOptions } from './computeStats';
import { DEFAULT_BINS, StreamingHistograms, StreamingMoments, TensorStatistics } from './tensorStats';

/** 'dequantized': (q − zero) · scale; 'codes': the stored quantized values q (unpacked, FP8 codes decoded). */
export type WeightView = 'dequantized' | 'codes';

export interface WeightStatistics extends TensorStatistics {
  readonly view: WeightView;
  readonly module: string;
  /** The tensor holding the codes (weight, weight_packed or qweight). */
  readonly weightTensor: string;
  readonly layout: ObservedStorage['kind'];
  /** Logical [out, in]. */
  readonly shape: readonly [number, number];
  readonly bits: number;
  /** What the codes mean, e.g. "signed 4-bit, zero point per group" (for the page and the CLI). */
  readonly codes: string;
  /** Largest block of values held at once. */
  readonly blockElements: number;
}

export interface WeightStatsOptions extends StatsOptions {
  readonly view?: WeightView;
  /** The config's weight args: bits of a packed weight, a block structure. */
  readonly declared?: QuantArgs;
  readonly gptqFormat?: GptqCheckpointFormat;
  /** Values per streamed block (default 1 Mi). */
  readonly blockElements?: number;
}

export class WeightStatsError extends Error {
  override readonly name = 'WeightStatsError';
}

const SUPPORTED: readonly ObservedStorage['kind'][] = ['ct-int', 'ct-fp8', 'fp8-block', 'ct-packed', 'nvfp4', 'mxfp4', 'gptq'];

/** The tensor a quantized module keeps its codes in, or undefined for layouts this module cannot stream. */
export function codesTensorOf(module: LinearModule): string | undefined {
  const kind = module.observed?.kind;
  // gpt-oss fused experts keep [experts, out, in/32, 16] blocks, not one [out, in] weight to stream.
  if (!kind || !SUPPORTED.includes(kind) || module.moe?.role === 'fused-experts') return undefined;
  return `${module.name}.${kind === 'ct-packed' || kind === 'nvfp4' || kind === 'mxfp4' ? 'weight_packed' : kind === 'gptq' ? 'qweight' : 'weight'}`;
}

/** The quantized module whose codes live in `tensor` (its weight, weight_packed or qweight), if any. */
export function quantizedModuleOfTensor(modules: readonly LinearModule[], tensor: string): LinearModule | undefined {
  const dot = tensor.lastIndexOf('.');
  if (dot < 0) return undefined;
  const name = tensor.slice(0, dot);
  const module = modules.find((m) => m.name === name);
  return module && codesTensorOf(module) === tensor ? module : undefined;
}

/** One block of values (float64) and how many of them are valid. */
type BlockSource = () => AsyncGenerator<{ values: Float64Array; count: number; done: number }>;

async function floats64(checkpoint: Checkpoint, name: string): Promise<Float64Array> {
  const tensor = checkpoint.tensor(name);
  return decodeToFloat64(tensor.dtype, await checkpoint.readTensorBytes(name, { maxBytes: 256 * 1024 * 1024 }));
}

async function int32s(checkpoint: Checkpoint, name: string, maxBytes = 256 * 1024 * 1024): Promise<Int32Array> {
  const tensor = checkpoint.tensor(name);
  if (tensor.dtype !== 'I32') throw new WeightStatsError(`${name}: expected I32, found ${tensor.dtype}`);
  const bytes = await checkpoint.readTensorBytes(name, { maxBytes });
  return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Reads a byte range of a tensor into a fresh, 4-byte-aligned buffer viewed as int32. */
async function int32Range(checkpoint: Checkpoint, name: string, start: number, end: number): Promise<Int32Array> {
  const target = new Uint8Array(end - start);
  const bytes = await checkpoint.readTensorRange(name, start, end, target);
  return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

function expectShape(name: string, shape: readonly number[], want: readonly number[]): void {
  if (shape.length !== want.length || shape.some((d, i) => d !== want[i])) throw new WeightStatsError(`${name}: shape [${shape.join(', ')}], expected [${want.join(', ')}]`);
}

function checkGIdx(name: string, gIdx: Int32Array, length: number, groups: number): void {
  if (gIdx.length !== length) throw new WeightStatsError(`${name}: ${gIdx.length} entries, expected ${length} (one per input feature)`);
  for (let k = 0; k < gIdx.length; k++) {
    const g = gIdx[k]!;
    if (!(g >= 0 && g < groups)) throw new WeightStatsError(`${name}[${k}] = ${g} is outside the ${groups} groups of the scales`);
  }
}

/** Rows per block so that a block holds at most `budget` values (at least one row). */
const rowsPerBlock = (cols: number, budget: number) => Math.max(1, Math.floor(budget / Math.max(1, cols)));

/**
 * Statistics of the dequantized weight (or its codes) of one quantized linear module, streamed in row
 * blocks. Throws WeightStatsError naming the tensor when the stored tensors are inconsistent.
 */
export async function computeWeightStatistics(checkpoint: Checkpoint, module: LinearModule, options: WeightStatsOptions = {}): Promise<WeightStatistics> {
  const view = options.view ?? 'dequantized';
  const budget = Math.max(1, options.blockElements ?? 1024 * 1024);
  const observed = module.observed;
  const weightTensor = codesTensorOf(module);
  if (!observed || !weightTensor) {
    throw new WeightStatsError(`${module.name}: ${observed ? `weights stored as ${observed.kind} cannot be dequantized here (supported: compressed-tensors int/float/pack-quantized, NVFP4, MXFP4, FP8 block, GPTQ)` : 'no weight in this checkpoint'}`);
  }
  const has = (suffix: string) => checkpoint.has(`${module.name}.${suffix}`);
  const tensorName = (suffix: string) => `${module.name}.${suffix}`;
  let source: BlockSource;
  let rows: number;
  let cols: number;
  let bits: number;
  let codes: string;
  let blockElements: number;

  switch (observed.kind) {
    case 'ct-int':
    case 'ct-fp8':
    case 'fp8-block': {
      const weight = checkpoint.tensor(weightTensor);
      if (weight.shape.length !== 2) throw new WeightStatsError(`${weightTensor}: expected a 2-D weight, found shape [${weight.shape.join(', ')}]`);
      [rows, cols] = weight.shape as [number, number];
      const isFp8 = weight.dtype === 'F8_E4M3';
      if (!isFp8 && weight.dtype !== 'I8') throw new WeightStatsError(`${weightTensor}: expected I8 or F8_E4M3 codes, found ${weight.dtype}`);
      bits = 8;
      const scaleName = tensorName(has('weight_scale_inv') ? 'weight_scale_inv' : 'weight_scale');
      const scale = await floats64(checkpoint, scaleName);
      const scaleShape = checkpoint.tensor(scaleName).shape;
      const zp = has('weight_zero_point') ? await floats64(checkpoint, tensorName('weight_zero_point')) : undefined;
      if (zp && zp.length !== scale.length) throw new WeightStatsError(`${tensorName('weight_zero_point')}: ${zp.length} values, but ${scaleName} has ${scale.length}`);
      const block = options.declared?.strategy === 'block' ? options.declared.blockStructure : undefined;
      const groups = scaleShape.length === 2 ? scaleShape[1]! : 1;
      const gIdx = has('weight_g_idx') ? await int32s(checkpoint, tensorName('weight_g_idx')) : undefined;
      if (gIdx) checkGIdx(tensorName('weight_g_idx'), gIdx, cols, groups);
      const cell = cellMapper(scaleShape, rows, cols, block, gIdx);
      // Every element must map into the scale tensor: check the last row and column of each edge.
      for (const [r, c] of [[0, 0], [rows - 1, cols - 1], [rows - 1, 0], [0, cols - 1]] as const) {
        const k = cell(r, c);
        if (rows > 0 && cols > 0 && !(k >= 0 && k < scale.length)) throw new WeightStatsError(`${scaleName}: shape [${scaleShape.join(', ')}] does not cover weight [${rows}, ${cols}] (element ${r}, ${c})`);
      }
      codes = isFp8 ? 'FP8 E4M3 values' : `signed 8-bit integers${zp ? ', zero point per scale' : ''}`;
      const blockRows = rowsPerBlock(cols, budget);
      blockElements = blockRows * cols;
      source = async function* () {
        const values = new Float64Array(blockRows * cols);
        const raw = new Uint8Array(blockRows * cols);
        for (let r0 = 0; r0 < rows; r0 += blockRows) {
          const r1 = Math.min(rows, r0 + blockRows);
          const bytes = await checkpoint.readTensorRange(weightTensor, r0 * cols, r1 * cols, raw);
          const signed = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
          let i = 0;
          for (let r = r0; r < r1; r++) {
            for (let c = 0; c < cols; c++, i++) {
              const q = isFp8 ? E4M3_TO_F32[bytes[i]!]! : signed[i]!;
              if (view === 'codes') values[i] = q;
              else {
                const k = cell(r, c);
                values[i] = (q - (zp ? zp[k]! : 0)) * scale[k]!;
              }
            }
          }
          yield { values, count: i, done: r1 / rows };
        }
      };
      break;
    }
    case 'ct-packed': {
      const shapeName = tensorName('weight_shape');
      const shapeTensor = checkpoint.tensor(shapeName);
      if (shapeTensor.dtype !== 'I64' && shapeTensor.dtype !== 'I32') throw new WeightStatsError(`${shapeName}: expected I64 [2], found ${shapeTensor.dtype} [${shapeTensor.shape.join(', ')}]`);
      const logical = decodeToFloat64(shapeTensor.dtype, await checkpoint.readTensorBytes(shapeName, { maxBytes: 64 }));
      if (logical.length !== 2 || !logical.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new WeightStatsError(`${shapeName}: expected two non-negative sizes, found [${Array.from(logical).join(', ')}]`);
      [rows, cols] = [logical[0]!, logical[1]!];
      const packed = checkpoint.tensor(weightTensor);
      if (packed.dtype !== 'I32' || packed.shape.length !== 2) throw new WeightStatsError(`${weightTensor}: expected I32 [out, words], found ${packed.dtype} [${packed.shape.join(', ')}]`);
      const packedCols = packed.shape[1]!;
      const found = options.declared?.numBits ?? [4, 8, 2, 3, 5, 6, 7, 1].find((b) => Math.ceil((cols * b) / 32) === packedCols);
      if (!found) throw new WeightStatsError(`${weightTensor}: cannot tell the bit width of [${packed.shape.join(', ')}] for ${cols} input features`);
      bits = found;
      expectShape(weightTensor, packed.shape, [rows, Math.ceil((cols * bits) / 32)]);
      const scaleName = tensorName('weight_scale');
      const scale = await floats64(checkpoint, scaleName);
      const scaleShape = checkpoint.tensor(scaleName).shape;
      const groups = scaleShape.length === 2 ? scaleShape[1]! : 1;
      const zpName = tensorName('weight_zero_point');
      let zp: Int8Array | undefined;
      if (has('weight_zero_point')) {
        const zpShape = checkpoint.tensor(zpName).shape;
        expectShape(zpName, zpShape, [Math.ceil((rows * bits) / 32), groups]);
        zp = unpackFromInt32(await int32s(checkpoint, zpName), rows, groups, bits, 0);
      }
      const gIdx = has('weight_g_idx') ? await int32s(checkpoint, tensorName('weight_g_idx')) : undefined;
      if (gIdx) checkGIdx(tensorName('weight_g_idx'), gIdx, cols, groups);
      const cell = cellMapper(scaleShape, rows, cols, undefined, gIdx);
      if (rows > 0 && cols > 0 && !(cell(rows - 1, cols - 1) < scale.length)) throw new WeightStatsError(`${scaleName}: shape [${scaleShape.join(', ')}] does not cover weight [${rows}, ${cols}]`);
      codes = `signed ${bits}-bit integers (stored as q + ${2 ** (bits - 1)})${zp ? ', packed zero points' : ''}`;
      const blockRows = rowsPerBlock(cols, budget);
      blockElements = blockRows * cols;
      const rowBytes = packedCols * 4;
      source = async function* () {
        const values = new Float64Array(blockRows * cols);
        const q = new Int8Array(blockRows * cols);
        for (let r0 = 0; r0 < rows; r0 += blockRows) {
          const r1 = Math.min(rows, r0 + blockRows);
          const words = await int32Range(checkpoint, weightTensor, r0 * rowBytes, r1 * rowBytes);
          unpackFromInt32(words, r1 - r0, cols, bits, 1, q);
          let i = 0;
          for (let r = r0; r < r1; r++) {
            for (let c = 0; c < cols; c++, i++) {
              if (view === 'codes') values[i] = q[i]!;
              else {
                const k = cell(r, c);
                values[i] = (q[i]! - (zp ? zp[k]! : 0)) * scale[k]!;
              }
            }
          }
          yield { values, count: i, done: r1 / rows };
        }
      };
      break;
    }
    case 'nvfp4':
    case 'mxfp4': {
      const layout = await openFp4Layout(checkpoint, module).catch((error: unknown) => {
        throw error instanceof Fp4LayoutError ? new WeightStatsError(error.message) : error;
      });
      [rows, cols] = [layout.rows, layout.cols];
      bits = 4;
      codes = layout.codes;
      const blockRows = rowsPerBlock(cols, budget);
      blockElements = blockRows * cols;
      source = async function* () {
        const values = new Float64Array(blockRows * cols);
        const raw = new Uint8Array((blockRows * cols) / 2);
        for (let r0 = 0; r0 < rows; r0 += blockRows) {
          const r1 = Math.min(rows, r0 + blockRows);
          const bytes = await layout.readBytes(r0, r1, raw);
          const count = decodeFp4Rows(layout, bytes, r0, r1, values, view === 'codes');
          yield { values, count, done: r1 / rows };
        }
      };
      break;
    }
    case 'gptq': {
      if (!observed.bits || !observed.shape) throw new WeightStatsError(`${module.name}: cannot tell the GPTQ layout (bits/in_features) from qweight and g_idx`);
      bits = observed.bits;
      [rows, cols] = observed.shape;
      const K = cols;
      const N = rows;
      expectShape(weightTensor, checkpoint.tensor(weightTensor).shape, [(K * bits) / 32, N]);
      const scalesName = tensorName('scales');
      const scales = await floats64(checkpoint, scalesName);
      const G = scales.length / N;
      if (!Number.isInteger(G) || G === 0) throw new WeightStatsError(`${scalesName}: ${scales.length} values, not a whole number of rows of ${N} output features`);
      const qzerosName = tensorName('qzeros');
      expectShape(qzerosName, checkpoint.tensor(qzerosName).shape, [G, (N * bits) / 32]);
      const format = options.gptqFormat ?? 'gptq';
      const zeros = unpackGptqQzeros(await int32s(checkpoint, qzerosName), G, N, bits, format);
      const gIdxName = tensorName('g_idx');
      const gIdx = await int32s(checkpoint, gIdxName);
      checkGIdx(gIdxName, gIdx, K, G);
      codes = `unsigned ${bits}-bit integers, zero points ${format === 'gptq' ? 'stored minus one (v1)' : 'stored as is (v2)'}`;
      // Blocks of whole packed rows: 32 input features are `bits` words of qweight per output column.
      const blockK = Math.max(32, Math.floor(rowsPerBlock(N, budget) / 32) * 32);
      blockElements = blockK * N;
      source = async function* () {
        const values = new Float64Array(blockK * N);
        for (let k0 = 0; k0 < K; k0 += blockK) {
          const k1 = Math.min(K, k0 + blockK);
          const words = await int32Range(checkpoint, weightTensor, ((k0 * bits) / 32) * N * 4, ((k1 * bits) / 32) * N * 4);
          const q = unpackGptqQweight(words, k1 - k0, N, bits);
          let i = 0;
          for (let k = k0; k < k1; k++) {
            const g = gIdx[k]! * N;
            const row = (k - k0) * N;
            for (let n = 0; n < N; n++, i++) values[i] = view === 'codes' ? q[row + n]! : scales[g + n]! * (q[row + n]! - zeros[g + n]!);
          }
          yield { values, count: i, done: k1 / K };
        }
      };
      break;
    }
    default:
      throw new WeightStatsError(`${module.name}: weights stored as ${observed.kind} cannot be dequantized here`);
  }

  const moments = new StreamingMoments();
  const check = () => {
    if (options.signal?.aborted) throw new CancelledError();
  };
  for await (const { values, count, done } of source()) {
    check();
    moments.add(values.subarray(0, count));
    options.onProgress?.(done / 2);
  }
  const histograms = new StreamingHistograms(moments, options.bins ?? DEFAULT_BINS);
  for await (const { values, count, done } of source()) {
    check();
    histograms.add(values.subarray(0, count));
    options.onProgress?.(0.5 + done / 2);
  }
  return {
    stats: moments.result(),
    ...histograms.result(),
    method: 'exact two-pass stream',
    view,
    module: module.name,
    weightTensor,
    layout: observed.kind,
    shape: [rows, cols],
    bits,
    codes,
    blockElements,
  };
}

/**
 * Statistics of the quantized weight whose codes are in `tensor` (its weight, weight_packed or qweight),
 * with the config's declared args and GPTQ checkpoint format from the layer map.
 */
export function computeWeightStatisticsOfTensor(checkpoint: Checkpoint, layerMap: LayerMap, tensor: string, options: Omit<WeightStatsOptions, 'declared' | 'gptqFormat'> = {}): Promise<WeightStatistics> {
  const module = quantizedModuleOfTensor(layerMap.modules, tensor);
  if (!module) {
    const owner = layerMap.modules.find((m) => m.tensors.includes(tensor));
    throw new WeightStatsError(
      owner
        ? `${tensor}: not the quantized codes of ${owner.name} (${owner.observed?.kind ?? 'no weight'}); choose ${codesTensorOf(owner) ?? 'a quantized layer'}`
        : `${tensor}: not the weight of a quantized linear layer, so there is nothing to dequantize`,
    );
  }
  return computeWeightStatistics(checkpoint, module, { ...options, declared: module.declared?.scheme?.weights, gptqFormat: layerMap.scheme.gptq?.checkpointFormat });
}
