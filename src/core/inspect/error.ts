/**
 * Quantization error per layer — "which layers hurt accuracy?".
 * - simulate: round-to-nearest quantization of an unquantized checkpoint's linear layers with candidate
 *   schemes (FP8 per-tensor, INT8 per-channel, INT4 group-128 symmetric / asymmetric), exactly as
 *   compressed-tensors would, measured against the original weights;
 * - compare: a quantized checkpoint's dequantized weights against its original.
 * Per layer: relative Frobenius error, SQNR (dB), max abs error, cosine similarity, and an error histogram;
 * a ranking of the worst layers and a suggested ignore list.
 */
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LayerMap, LinearModule } from '../checkpoint/scheme';
import { QuantArgs, presetScheme } from '../quant/args';
import { ErrorAccumulator, ErrorMetrics } from '../quant/metrics';
import { dequantizeRtn, quantizeRtn, ScaleDtype } from '../quant/rtn';
import { dequantizeStoredWeight } from '../quant/storedWeights';
import { StreamingHistograms, StreamingMoments, type Histogram } from '../stats/tensorStats';
import type { GptqCheckpointFormat } from '../quant/gptqFormat';

export const SIMULATIONS = {
  'fp8-tensor': { label: 'FP8 per tensor', args: presetScheme('FP8')!.weights! },
  'int8-channel': { label: 'INT8 per channel', args: presetScheme('W8A8')!.weights! },
  'int4-g128': { label: 'INT4 group 128 (symmetric)', args: presetScheme('W4A16')!.weights! },
  'int4-g128-asym': { label: 'INT4 group 128 (asymmetric)', args: presetScheme('W4A16_ASYM')!.weights! },
} as const satisfies Record<string, { label: string; args: QuantArgs }>;
export type SimulationName = keyof typeof SIMULATIONS;

export interface LayerError {
  readonly module: string;
  readonly block?: number;
  readonly projection: string;
  readonly shape: readonly [number, number];
  readonly metrics: ErrorMetrics;
  /** Histogram of the elementwise error w − ŵ. */
  readonly errorHistogram: Histogram;
  /** Set when this layer could not be evaluated (e.g. group size does not divide it). */
  readonly skipped?: string;
}

export interface ErrorReport {
  readonly kind: 'simulation' | 'comparison';
  /** The simulated scheme, or the quantized checkpoint's description. */
  readonly scheme: string;
  readonly layers: readonly LayerError[];
  /** Layers by SQNR, worst first. */
  readonly ranking: readonly string[];
  /**
   * Layers whose error is an outlier, worth keeping in full precision: SQNR more than max(3 dB, 4 × the
   * median absolute deviation) below the median of all layers.
   */
  readonly suggestedIgnore: readonly string[];
  readonly medianSqnrDb: number;
}

const ERROR_BINS = 64;

function finish(kind: ErrorReport['kind'], scheme: string, layers: LayerError[]): ErrorReport {
  const evaluated = layers.filter((l) => !l.skipped);
  const ranking = [...evaluated].sort((a, b) => a.metrics.sqnrDb - b.metrics.sqnrDb).map((l) => l.module);
  const sqnrs = evaluated.map((l) => l.metrics.sqnrDb).filter(Number.isFinite).sort((a, b) => a - b);
  const median = sqnrs.length ? sqnrs[Math.floor(sqnrs.length / 2)]! : NaN;
  const deviations = sqnrs.map((v) => Math.abs(v - median)).sort((a, b) => a - b);
  const mad = deviations.length ? deviations[Math.floor(deviations.length / 2)]! : 0;
  const threshold = median - Math.max(3, 4 * mad);
  const suggestedIgnore = evaluated.filter((l) => Number.isFinite(median) && l.metrics.sqnrDb < threshold).map((l) => l.module);
  return { kind, scheme, layers, ranking, suggestedIgnore, medianSqnrDb: median };
}

function measure(module: LinearModule, rows: number, cols: number, reference: Float32Array, approx: Float32Array): LayerError {
  const accumulator = new ErrorAccumulator();
  accumulator.add(reference, approx);
  const diff = new Float32Array(reference.length);
  for (let i = 0; i < diff.length; i++) diff[i] = reference[i]! - approx[i]!;
  const moments = new StreamingMoments();
  moments.add(diff);
  const histograms = new StreamingHistograms(moments, ERROR_BINS);
  histograms.add(diff);
  return { module: module.name, block: module.block, projection: module.projection, shape: [rows, cols], metrics: accumulator.result(), errorHistogram: histograms.result().linear };
}

function skipped(module: LinearModule, reason: string): LayerError {
  const [rows, cols] = module.observed?.shape ?? [0, 0];
  return { module: module.name, block: module.block, projection: module.projection, shape: [rows, cols], metrics: new ErrorAccumulator().result(), errorHistogram: { kind: 'linear', edges: [], counts: [] }, skipped: reason };
}

export interface ErrorOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (fraction: number, what: string) => void;
  /** Restrict to these modules (default: every float linear layer, or every quantized one). */
  readonly modules?: readonly string[];
}

/** RTN-simulates `simulation` on every unquantized linear layer and measures the error. */
export async function simulateErrors(checkpoint: Checkpoint, layerMap: LayerMap, simulation: SimulationName, options: ErrorOptions = {}): Promise<ErrorReport> {
  const { label, args } = SIMULATIONS[simulation];
  const modules = layerMap.modules.filter((m) => m.observed?.kind === 'float' && m.observed.shape && (!options.modules || options.modules.includes(m.name)));
  const layers: LayerError[] = [];
  for (const [i, module] of modules.entries()) {
    if (options.signal?.aborted) throw new Error('cancelled');
    options.onProgress?.(i / modules.length, module.name);
    const { weight, rows, cols } = await dequantizeStoredWeight(checkpoint, module);
    const dtype = checkpoint.tensor(`${module.name}.weight`).dtype;
    const scaleDtype: ScaleDtype = dtype === 'F16' ? 'F16' : dtype === 'F32' ? 'F32' : 'BF16';
    if (args.strategy === 'group' && cols % args.groupSize! !== 0) {
      layers.push(skipped(module, `input features ${cols} are not divisible by group_size ${args.groupSize}`));
      continue;
    }
    const result = quantizeRtn(weight, rows, cols, args, { scaleDtype });
    layers.push(measure(module, rows, cols, weight, dequantizeRtn(result)));
  }
  options.onProgress?.(1, 'done');
  return finish('simulation', label, layers);
}

/** Compares each quantized layer of `quantized` (dequantized) with the same layer of `original`. */
export async function compareWithOriginal(
  quantized: Checkpoint,
  layerMap: LayerMap,
  original: Checkpoint,
  options: ErrorOptions & { gptqFormat?: GptqCheckpointFormat } = {},
): Promise<ErrorReport> {
  const modules = layerMap.modules.filter((m) => m.state === 'quantized' && (!options.modules || options.modules.includes(m.name)));
  const layers: LayerError[] = [];
  for (const [i, module] of modules.entries()) {
    if (options.signal?.aborted) throw new Error('cancelled');
    options.onProgress?.(i / modules.length, module.name);
    const originalName = `${module.name}.weight`;
    if (!original.has(originalName)) {
      layers.push(skipped(module, `the original checkpoint has no ${originalName}`));
      continue;
    }
    const declared = module.declared?.scheme?.weights;
    const { weight: approx, rows, cols } = await dequantizeStoredWeight(quantized, module, { declared, gptqFormat: options.gptqFormat ?? layerMap.scheme.gptq?.checkpointFormat });
    const ref = original.tensor(originalName);
    if (ref.shape.length !== 2 || ref.shape[0] !== rows || ref.shape[1] !== cols) {
      layers.push(skipped(module, `shape mismatch: quantized [${rows}, ${cols}], original [${ref.shape.join(', ')}]`));
      continue;
    }
    const { weight: reference } = await dequantizeStoredWeight(original, { ...module, observed: { kind: 'float', shape: [rows, cols], hasZeroPoint: false, hasGIdx: false, staticInputScale: false } });
    layers.push(measure(module, rows, cols, reference, approx));
  }
  options.onProgress?.(1, 'done');
  return finish('comparison', layerMap.scheme.description, layers);
}
