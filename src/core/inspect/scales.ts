/**
 * Quantization scales per layer: the distribution of each quantized module's weight scales (per channel or
 * per group), its zero points and input scales, with the anomalies a health scan looks for. Scale tensors
 * are small (out × groups); they are read whole, with a bound, and decoded exactly.
 */
import { decodeToFloat64 } from '../dtypes/convert';
import type { DType } from '../dtypes/dtype';
import type { Checkpoint, CheckpointTensor } from '../safetensors/checkpoint';
import type { LayerMap, LinearModule } from '../checkpoint/scheme';
import { e8m0Value } from '../quant/fp4Weights';
import { DEFAULT_BINS, Histogram, StreamingHistograms, StreamingMoments, ValueStats } from '../stats/tensorStats';

/** Largest scale tensor read whole (bytes); bigger ones are reported, not read. */
const MAX_SCALE_BYTES = 256 * 1024 * 1024;

/** Smallest normal magnitude per float dtype: scales below it have lost precision (subnormal). */
const MIN_NORMAL: Partial<Record<DType, number>> = { BF16: 2 ** -126, F32: 2 ** -126, F16: 2 ** -14, F64: 2 ** -1022, F8_E4M3: 2 ** -6 };

export type ScaleRole = 'weight_scale' | 'input_scale' | 'weight_zero_point' | 'input_zero_point' | 'scales' | 'weight_scale_inv' | 'weight_global_scale' | 'input_global_scale';

/**
 * Largest finite magnitude of a scale dtype whose scales saturate there (a group whose scale is clipped
 * to it dequantizes too small): FP8 E4M3 (NVFP4 group scales) and E8M0 (MXFP4 exponents, 2^127).
 */
const SATURATION: Partial<Record<DType, number>> = { F8_E4M3: 448, F8_E8M0: 2 ** 127 };

export interface ScaleSummary {
  readonly tensor: string;
  readonly role: ScaleRole;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly stats: ValueStats;
  readonly median: number;
  readonly negatives: number;
  readonly subnormals: number;
  /** Scales at the largest finite value of their dtype (E4M3 448, E8M0 2^127): clipped. */
  readonly saturated: number;
  /** E8M0 scales (MXFP4, stored as U8 exponents): the unbiased exponents' range; values are 2^e. */
  readonly exponents?: { readonly min: number; readonly max: number };
  /** The values themselves when there are at most 16 (per-tensor scales). */
  readonly values?: readonly number[];
  readonly histogram: Histogram;
  readonly logHistogram: Histogram;
}

export interface ModuleScales {
  readonly module: string;
  readonly block?: number;
  readonly projection: string;
  readonly scales: readonly ScaleSummary[];
}

const ROLES: readonly ScaleRole[] = ['weight_scale', 'input_scale', 'weight_zero_point', 'input_zero_point', 'scales', 'weight_scale_inv', 'weight_global_scale', 'input_global_scale'];

/**
 * Summary of one scale tensor's values. `e8m0`: its bytes are E8M0 exponents (MXFP4 stores them as U8),
 * summarised as the scales they are, 2^(e − 127), 0xFF NaN (docs/formats.md §3.12).
 */
export async function summarizeScaleTensor(checkpoint: Checkpoint, tensor: CheckpointTensor, role: ScaleRole, bins = DEFAULT_BINS, e8m0 = tensor.dtype === 'F8_E8M0'): Promise<ScaleSummary> {
  if (tensor.byteLength > MAX_SCALE_BYTES) throw new Error(`${tensor.name}: ${tensor.byteLength} bytes is too large for a scale tensor`);
  if (e8m0 && tensor.dtype !== 'U8' && tensor.dtype !== 'F8_E8M0') throw new Error(`${tensor.name}: E8M0 scales are stored as U8 or F8_E8M0, found ${tensor.dtype}`);
  const bytes = await checkpoint.readTensorBytes(tensor.name, { maxBytes: MAX_SCALE_BYTES });
  const values = e8m0 ? Float64Array.from(bytes, e8m0Value) : decodeToFloat64(tensor.dtype, bytes);
  let exponents: { min: number; max: number } | undefined;
  if (e8m0) {
    let min = Infinity;
    let max = -Infinity;
    for (const b of bytes) {
      if (b === 0xff) continue; // NaN in E8M0
      min = Math.min(min, b - 127);
      max = Math.max(max, b - 127);
    }
    exponents = { min, max };
  }
  const saturation = SATURATION[e8m0 ? 'F8_E8M0' : tensor.dtype];
  const moments = new StreamingMoments();
  moments.add(values);
  const histograms = new StreamingHistograms(moments, bins);
  histograms.add(values);
  const { linear, log } = histograms.result();
  let negatives = 0;
  let subnormals = 0;
  let saturated = 0;
  // E8M0 has no subnormals: every value is a power of two, 2^-127 included.
  const minNormal = e8m0 ? 0 : (MIN_NORMAL[tensor.dtype] ?? 0);
  const finite: number[] = [];
  for (const v of values) {
    if (v < 0) negatives++;
    if (saturation !== undefined && Math.abs(v) === saturation) saturated++;
    if (v !== 0 && Math.abs(v) < minNormal) subnormals++;
    if (Number.isFinite(v)) finite.push(v);
  }
  finite.sort((a, b) => a - b);
  const median = finite.length === 0 ? NaN : finite.length % 2 ? finite[(finite.length - 1) / 2]! : (finite[finite.length / 2 - 1]! + finite[finite.length / 2]!) / 2;
  return {
    tensor: tensor.name,
    role,
    dtype: tensor.dtype,
    shape: tensor.shape,
    stats: moments.result(),
    median,
    negatives,
    subnormals,
    saturated,
    ...(exponents ? { exponents } : {}),
    values: values.length <= 16 ? Array.from(values) : undefined,
    histogram: linear,
    logHistogram: log,
  };
}

/** Scale summaries of every quantized module (in layer-map order). */
export async function readScaleOverview(
  checkpoint: Checkpoint,
  layerMap: LayerMap,
  options: { signal?: AbortSignal; onProgress?: (fraction: number) => void; modules?: readonly LinearModule[] } = {},
): Promise<ModuleScales[]> {
  const modules = (options.modules ?? layerMap.modules).filter((m) => m.state === 'quantized');
  const result: ModuleScales[] = [];
  for (const [i, module] of modules.entries()) {
    if (options.signal?.aborted) throw new Error('cancelled');
    const scales: ScaleSummary[] = [];
    for (const role of ROLES) {
      const name = `${module.name}.${role}`;
      // Packed zero points (pack-quantized) and GPTQ qzeros need unpacking; they are summarised elsewhere.
      if (!checkpoint.has(name)) continue;
      const tensor = checkpoint.tensor(name);
      if ((role === 'weight_zero_point' || role === 'input_zero_point') && tensor.dtype === 'I32') continue;
      // E8M0 exponents stored as U8: MXFP4 beside packed codes, MXFP8 beside F8_E4M3 codes.
      const e8m0 = role === 'weight_scale' && (module.observed?.kind === 'mxfp4' || module.observed?.weightDtype === 'F8_E4M3') && tensor.dtype === 'U8';
      scales.push(await summarizeScaleTensor(checkpoint, tensor, role, DEFAULT_BINS, e8m0 || tensor.dtype === 'F8_E8M0'));
    }
    result.push({ module: module.name, block: module.block, projection: module.projection, scales });
    options.onProgress?.((i + 1) / modules.length);
  }
  return result;
}
