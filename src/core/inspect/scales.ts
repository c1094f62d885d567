/**
 * Quantization scales per layer: the distribution of each quantized module's weight scales (per channel or
 * per group), its zero points and input scales, with the anomalies a health scan looks for. Scale tensors
 * are small (out × groups); they are read whole, with a bound, and decoded exactly.
 */
import { decodeToFloat64 } from '../dtypes/convert';
import type { DType } from '../dtypes/dtype';
import type { Checkpoint, CheckpointTensor } from '../safetensors/checkpoint';
import type { LayerMap, LinearModule } from '../checkpoint/scheme';
import { DEFAULT_BINS, Histogram, StreamingHistograms, StreamingMoments, ValueStats } from '../stats/tensorStats';

/** Largest scale tensor read whole (bytes); bigger ones are reported, not read. */
const MAX_SCALE_BYTES = 256 * 1024 * 1024;

/** Smallest normal magnitude per float dtype: scales below it have lost precision (subnormal). */
const MIN_NORMAL: Partial<Record<DType, number>> = { BF16: 2 ** -126, F32: 2 ** -126, F16: 2 ** -14, F64: 2 ** -1022, F8_E4M3: 2 ** -6 };

export type ScaleRole = 'weight_scale' | 'input_scale' | 'weight_zero_point' | 'input_zero_point' | 'scales' | 'weight_scale_inv' | 'weight_global_scale';

export interface ScaleSummary {
  readonly tensor: string;
  readonly role: ScaleRole;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly stats: ValueStats;
  readonly median: number;
  readonly negatives: number;
  readonly subnormals: number;
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

const ROLES: readonly ScaleRole[] = ['weight_scale', 'input_scale', 'weight_zero_point', 'input_zero_point', 'scales', 'weight_scale_inv', 'weight_global_scale'];

export async function summarizeScaleTensor(checkpoint: Checkpoint, tensor: CheckpointTensor, role: ScaleRole, bins = DEFAULT_BINS): Promise<ScaleSummary> {
  if (tensor.byteLength > MAX_SCALE_BYTES) throw new Error(`${tensor.name}: ${tensor.byteLength} bytes is too large for a scale tensor`);
  const values = decodeToFloat64(tensor.dtype, await checkpoint.readTensorBytes(tensor.name, { maxBytes: MAX_SCALE_BYTES }));
  const moments = new StreamingMoments();
  moments.add(values);
  const histograms = new StreamingHistograms(moments, bins);
  histograms.add(values);
  const { linear, log } = histograms.result();
  let negatives = 0;
  let subnormals = 0;
  const minNormal = MIN_NORMAL[tensor.dtype] ?? 0;
  const finite: number[] = [];
  for (const v of values) {
    if (v < 0) negatives++;
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
      scales.push(await summarizeScaleTensor(checkpoint, tensor, role));
    }
    result.push({ module: module.name, block: module.block, projection: module.projection, scales });
    options.onProgress?.((i + 1) / modules.length);
  }
  return result;
}
