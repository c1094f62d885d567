/**
 * Quantization error per layer — "which layers hurt accuracy?".
 * - simulate: round-to-nearest quantization of an unquantized checkpoint's linear layers with candidate
 *   schemes (FP8 per-tensor, INT8 per-channel, INT4 group-128 symmetric / asymmetric), exactly as
 *   compressed-tensors would, measured against the original weights;
 * - compare: a quantized checkpoint's dequantized weights against its original.
 * Per layer: relative Frobenius error, SQNR (dB), max abs error, cosine similarity, and an error histogram;
 * a ranking of the worst layers and a suggested ignore list.
 *
 * Streamed in blocks of rows (`blockElements` values at a time): the memory bound is one block of the
 * weight, its quantized codes and its reconstruction, never a whole layer (except GPTQ-layout weights when
 * comparing, which are stored transposed). The error histogram's range is the error's min/max, so each
 * layer takes two passes (sums and range, then the histogram), each re-reading and re-quantizing its rows;
 * per-tensor FP8 takes one more pass first, for the absmax its scale needs.
 *
 * The numbers are bit-identical to measuring the whole layer at once with `ErrorAccumulator` and the
 * tensor statistics' linear histogram: the sums keep ErrorAccumulator's order (float64 partials over runs
 * of 4096 consecutive elements of the row-major layer, whatever the block boundaries), and every row block
 * is quantized exactly as the whole layer would be (channel / group cells never span rows; a tensor scale
 * depends only on the layer's min and max, which the block sees through one extra row holding them).
 */
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LayerMap, LinearModule } from '../checkpoint/scheme';
import { QuantArgs, presetScheme } from '../quant/args';
import { ErrorAccumulator, ErrorMetrics, errorMetricsFromSums } from '../quant/metrics';
import { QuantizeError, quantizeRtn, RtnResult, ScaleDtype } from '../quant/rtn';
import { E4M3_TO_F32 } from '../dtypes/float';
import { openStoredWeight, StoredWeightRows } from '../quant/storedWeights';
import type { Histogram } from '../stats/tensorStats';
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
/** ErrorAccumulator's partial-sum run length: kept so the sums are those of one add() over the whole layer. */
const SUM_RUN = 4096;
const DEFAULT_BLOCK_ELEMENTS = 1024 * 1024;

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

/**
 * The error metrics and the error histogram of one layer, fed a block of (reference, reconstruction) pairs
 * at a time: pass 1 (`add`) accumulates what ErrorAccumulator does plus the range of the float32 error
 * w − ŵ, pass 2 (`bin`, after `startHistogram`) counts that error into equal-width bins over the range.
 */
class LayerErrorMeter {
  private count = 0;
  private nonFinite = 0;
  private nonFiniteMismatch = 0;
  private refNormSq = 0;
  private approxNormSq = 0;
  private errNormSq = 0;
  private dot = 0;
  /** Partial sums of the current run of SUM_RUN elements, and how many it holds. */
  private runRef = 0;
  private runApprox = 0;
  private runErr = 0;
  private runDot = 0;
  private runFill = 0;
  /** Range of the (float64) errors of the accumulated pairs. */
  private errMin = Infinity;
  private errMax = -Infinity;
  /** Range of the finite float32 errors, where some error overflows float32 (see `needsRangePass`). */
  private f32Min = Infinity;
  private f32Max = -Infinity;
  private low = 0;
  private width = 1;
  private bins = 0;
  /** Four interleaved sets of `bins` counters (see `bin`). */
  private laneCounts = new Float64Array(0);
  private binOf = new Uint8Array(0);
  private edges: number[] = [];

  add(ref: Float32Array, approx: Float32Array, n: number): void {
    let errMin = this.errMin;
    let errMax = this.errMax;
    let i = 0;
    while (i < n) {
      const start = i;
      const end = Math.min(n, i + (SUM_RUN - this.runFill));
      let r2 = this.runRef;
      let a2 = this.runApprox;
      let e2 = this.runErr;
      let d = this.runDot;
      let skipped = 0;
      for (; i < end; i++) {
        const r = ref[i]!;
        const a = approx[i]!;
        const e = r - a;
        if (e - e !== 0) {
          // NaN or ±Inf on either side: not accumulated, counted (ErrorAccumulator's conventions).
          skipped++;
          if (!((r !== r && a !== a) || r === a)) this.nonFiniteMismatch++;
          continue;
        }
        r2 += r * r;
        a2 += a * a;
        e2 += e * e;
        d += r * a;
        // The range alone gives max |e| and, rounded to float32, the histogram's range (see histogramRange).
        if (e < errMin) errMin = e;
        if (e > errMax) errMax = e;
      }
      this.count += end - start - skipped;
      this.nonFinite += skipped;
      this.runFill += end - start;
      this.runRef = r2;
      this.runApprox = a2;
      this.runErr = e2;
      this.runDot = d;
      if (this.runFill === SUM_RUN) this.endRun();
    }
    this.errMin = errMin;
    this.errMax = errMax;
  }

  private endRun(): void {
    this.refNormSq += this.runRef;
    this.approxNormSq += this.runApprox;
    this.errNormSq += this.runErr;
    this.dot += this.runDot;
    this.runRef = this.runApprox = this.runErr = this.runDot = 0;
    this.runFill = 0;
  }

  metrics(): ErrorMetrics {
    if (this.runFill > 0) this.endRun();
    const { count, nonFinite, nonFiniteMismatch, refNormSq, approxNormSq, errNormSq, dot } = this;
    // max |e| = max(−min e, max e); 0 when nothing was accumulated (the ranges are then ±Infinity).
    const maxAbsError = Math.max(0, -this.errMin, this.errMax);
    return errorMetricsFromSums({ count, nonFinite, nonFiniteMismatch, refNormSq, approxNormSq, errNormSq, dot, maxAbsError });
  }

  /**
   * The range of the float32 errors fround(e) that are finite (what the histogram bins). fround is
   * monotone, so it is the rounded range of e — unless an error overflows float32 (|e| beyond 3.4e38, only
   * with weights that large), which leaves it out: then `needsRangePass` is true and `range` must see
   * every pair once more.
   */
  needsRangePass(): boolean {
    return Math.fround(this.errMin) === -Infinity || Math.fround(this.errMax) === Infinity;
  }

  range(ref: Float32Array, approx: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) {
      const v = Math.fround(ref[i]! - approx[i]!);
      if (v - v !== 0) continue;
      if (v < this.f32Min) this.f32Min = v;
      if (v > this.f32Max) this.f32Max = v;
    }
  }

  private histogramRange(): [number, number] {
    return this.needsRangePass() ? [this.f32Min, this.f32Max] : [Math.fround(this.errMin), Math.fround(this.errMax)];
  }

  /**
   * Sets up `bins` equal-width bins over [min, max] of the error (one bin around a constant error, none
   * when no error is finite), as the tensor statistics' linear histogram does. False when there are none.
   */
  startHistogram(bins: number): boolean {
    const [low, high] = this.histogramRange();
    if (!Number.isFinite(low) || !Number.isFinite(high)) return false;
    const span = high > low ? high - low : Math.max(Math.abs(low), 1e-30) * 1e-6;
    const n = high > low ? bins : 1;
    this.low = low;
    this.width = span / n;
    this.edges = Array.from({ length: n + 1 }, (_, i) => low + i * this.width);
    this.bins = n;
    this.laneCounts = new Float64Array(4 * n);
    return true;
  }

  bin(ref: Float32Array, approx: Float32Array, n: number): void {
    // Two loops: bin indices first, then the counts. Incrementing a counter whose index comes out of a
    // long float computation in the same loop runs several times slower (the CPU cannot tell early whether
    // consecutive increments hit the same counter).
    if (this.binOf.length < n) this.binOf = new Uint8Array(n);
    const binOf = this.binOf;
    const last = this.bins - 1;
    const low = this.low;
    const width = this.width;
    let m = 0;
    if (this.nonFinite === 0 && !this.needsRangePass()) {
      // Every float32 error is finite (pass 1 saw no NaN/Inf and no overflow): no test per element.
      for (; m < n; m++) {
        // ⌊t⌋ clamped to [0, last], with t < last < 2^31 truncated by | 0 (equal to ⌊t⌋ for t ≥ 0).
        const t = (Math.fround(ref[m]! - approx[m]!) - low) / width;
        binOf[m] = t >= last ? last : t > 0 ? t | 0 : 0;
      }
    } else {
      for (let i = 0; i < n; i++) {
        const v = Math.fround(ref[i]! - approx[i]!);
        if (v - v !== 0) continue;
        const t = (v - low) / width;
        binOf[m++] = t >= last ? last : t > 0 ? t | 0 : 0;
      }
    }
    // Four interleaved sets of counters, so that runs of equal bins do not wait on each other's stores.
    const lanes = this.laneCounts;
    const bins = last + 1;
    let i = 0;
    for (; i + 4 <= m; i += 4) {
      lanes[binOf[i]!]!++;
      lanes[bins + binOf[i + 1]!]!++;
      lanes[2 * bins + binOf[i + 2]!]!++;
      lanes[3 * bins + binOf[i + 3]!]!++;
    }
    for (; i < m; i++) lanes[binOf[i]!]!++;
  }

  histogram(): Histogram {
    const bins = this.bins;
    const lanes = this.laneCounts;
    return { kind: 'linear', edges: this.edges, counts: Array.from({ length: bins }, (_, b) => lanes[b]! + lanes[bins + b]! + lanes[2 * bins + b]! + lanes[3 * bins + b]!) };
  }
}

/**
 * ŵ = (q − zp) · scale of an RTN result into `out`, the values `dequantizeRtn` gives (each product rounded
 * once to float32), with one tight loop per scale cell instead of a call per element. Strategies tensor,
 * channel, group (without g_idx) and block.
 */
function reconstruct(result: RtnResult, out: Float32Array): void {
  const { rows, cols, scale, args } = result;
  const s1 = result.scaleShape.length === 2 ? result.scaleShape[1]! : 1;
  // Columns per cell and rows per cell row, from the strategy.
  const cellCols = args.strategy === 'group' ? cols / s1 : args.strategy === 'block' ? args.blockStructure![1] : cols;
  const cellRows = args.strategy === 'block' ? args.blockStructure![0] : 1;
  const perRow = args.strategy === 'tensor' ? 0 : s1;
  const isFp8 = result.kind === 'fp8';
  const zp = result.zeroPoint;
  for (let r = 0; r < rows; r++) {
    const rowCells = Math.floor(r / cellRows) * perRow;
    for (let c0 = 0, cell = rowCells; c0 < cols; c0 += cellCols, cell += perRow === 0 ? 0 : 1) {
      const sc = scale[cell]!;
      const a = r * cols + c0;
      const b = r * cols + Math.min(cols, c0 + cellCols);
      if (isFp8) {
        const q = result.q;
        const z = zp ? E4M3_TO_F32[zp[cell]!]! : 0;
        for (let i = a; i < b; i++) out[i] = (E4M3_TO_F32[q[i]!]! - z) * sc;
      } else {
        const q = result.q;
        const z = zp ? zp[cell]! : 0;
        if (z === 0) for (let i = a; i < b; i++) out[i] = q[i]! * sc;
        else for (let i = a; i < b; i++) out[i] = (q[i]! - z) * sc;
      }
    }
  }
}

/** Rows per block so that a block holds at most `budget` values (at least one row, a multiple of `multiple`). */
function rowsPerBlock(cols: number, budget: number, multiple = 1): number {
  const rows = Math.max(1, Math.floor(budget / Math.max(1, cols)));
  return Math.max(multiple, Math.floor(rows / multiple) * multiple);
}

/** Fills `ref` and `approx` with rows [r0, r1) of the reference and its reconstruction. */
type PairReader = (r0: number, r1: number, ref: Float32Array, approx: Float32Array) => Promise<void>;

/**
 * Measures one layer in two streamed passes over its row blocks (see the module comment). `progress`
 * gets the fraction of the layer done.
 */
async function measureStreamed(
  module: LinearModule,
  rows: number,
  cols: number,
  blockRows: number,
  buffers: { ref: Float32Array; approx: Float32Array },
  read: PairReader,
  options: ErrorOptions,
  progress: (fraction: number) => void,
): Promise<LayerError> {
  const meter = new LayerErrorMeter();
  const { ref, approx } = buffers;
  const pass = async (index: number, use: (n: number) => void) => {
    for (let r0 = 0; r0 < rows; r0 += blockRows) {
      if (options.signal?.aborted) throw new Error('cancelled');
      const r1 = Math.min(rows, r0 + blockRows);
      await read(r0, r1, ref, approx);
      use((r1 - r0) * cols);
      progress((index + r1 / rows) / 2);
    }
  };
  await pass(0, (n) => meter.add(ref, approx, n));
  const metrics = meter.metrics();
  if (meter.needsRangePass()) await pass(0, (n) => meter.range(ref, approx, n));
  if (meter.startHistogram(ERROR_BINS)) await pass(1, (n) => meter.bin(ref, approx, n));
  return { module: module.name, block: module.block, projection: module.projection, shape: [rows, cols], metrics, errorHistogram: meter.histogram() };
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
  /** Values per streamed row block (default 1 Mi); the results do not depend on it. */
  readonly blockElements?: number;
}

/** Reports per-layer progress as a fraction of all layers. */
function layerProgress(options: ErrorOptions, index: number, total: number, module: string): (fraction: number) => void {
  options.onProgress?.(index / total, module);
  return (fraction) => options.onProgress?.((index + fraction) / total, module);
}

/** First NaN of x[0, n) as "row r, column c" of the layer whose rows start at r0. */
function nanPosition(x: Float32Array, n: number, cols: number, r0: number): string | undefined {
  for (let i = 0; i < n; i++) if (x[i] !== x[i]) return `row ${r0 + Math.floor(i / cols)}, column ${i % cols}`;
  return undefined;
}

/** RTN-simulates `simulation` on every unquantized linear layer and measures the error. */
export async function simulateErrors(checkpoint: Checkpoint, layerMap: LayerMap, simulation: SimulationName, options: ErrorOptions = {}): Promise<ErrorReport> {
  const { label, args } = SIMULATIONS[simulation];
  const modules = layerMap.modules.filter((m) => m.observed?.kind === 'float' && m.observed.shape && (!options.modules || options.modules.includes(m.name)));
  const budget = Math.max(1, options.blockElements ?? DEFAULT_BLOCK_ELEMENTS);
  const layers: LayerError[] = [];
  for (const [i, module] of modules.entries()) {
    if (options.signal?.aborted) throw new Error('cancelled');
    const progress = layerProgress(options, i, modules.length, module.name);
    const weightName = `${module.name}.weight`;
    const dtype = checkpoint.tensor(weightName).dtype;
    const scaleDtype: ScaleDtype = dtype === 'F16' ? 'F16' : dtype === 'F32' ? 'F32' : 'BF16';
    const stored = await openStoredWeight(checkpoint, module);
    const { rows, cols } = stored;
    if (args.strategy === 'group' && cols % args.groupSize! !== 0) {
      layers.push(skipped(module, `input features ${cols} are not divisible by group_size ${args.groupSize}`));
      continue;
    }
    // A block holds whole scale cells: whole rows (channel, group), whole row blocks (block strategy).
    const blockRows = Math.min(Math.max(rows, 1), rowsPerBlock(cols, budget, args.strategy === 'block' ? args.blockStructure![0] : 1));
    // Per tensor: the scale depends only on the layer's min and max, so every block is quantized together
    // with extra row(s) holding them (their codes are dropped).
    const rangeRows = args.strategy === 'tensor' && cols > 0 ? Math.ceil(2 / cols) : 0;
    const size = (blockRows + rangeRows) * cols;
    const x = new Float32Array(size);
    const codes = args.type === 'float' ? new Uint8Array(size) : new Int8Array(size);
    const approx = new Float32Array(size);
    let layerMin = 0;
    let layerMax = 0;
    if (rangeRows > 0) {
      let mn = Infinity;
      let mx = -Infinity;
      for (let r0 = 0; r0 < rows; r0 += blockRows) {
        if (options.signal?.aborted) throw new Error('cancelled');
        const values = await stored.read(r0, Math.min(rows, r0 + blockRows), x);
        for (let k = 0; k < values.length; k++) {
          const v = values[k]!;
          if (v < mn) mn = v;
          if (v > mx) mx = v;
        }
      }
      // No values (or only NaN, which quantizing refuses): 0 adds nothing to a range that always includes 0.
      layerMin = mn === Infinity ? 0 : mn;
      layerMax = mx === -Infinity ? 0 : mx;
    }
    const read: PairReader = async (r0, r1, ref, out) => {
      const n = (r1 - r0) * cols;
      await stored.read(r0, r1, ref);
      if (rangeRows > 0) {
        ref.fill(0, n, n + rangeRows * cols);
        ref[n] = layerMin;
        ref[n + 1] = layerMax;
      }
      let result;
      try {
        result = quantizeRtn(ref.subarray(0, n + rangeRows * cols), r1 - r0 + rangeRows, cols, args, { scaleDtype, out: codes });
      } catch (error) {
        if (!(error instanceof QuantizeError)) throw error;
        const nan = nanPosition(ref, n, cols, r0);
        throw new QuantizeError(nan ? `${weightName}: the weight holds NaN (${nan}); cannot simulate ${label}` : `${weightName}: ${error.message}`);
      }
      reconstruct(result, out);
    };
    layers.push(await measureStreamed(module, rows, cols, blockRows, { ref: x, approx }, read, options, progress));
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
  const budget = Math.max(1, options.blockElements ?? DEFAULT_BLOCK_ELEMENTS);
  const layers: LayerError[] = [];
  for (const [i, module] of modules.entries()) {
    if (options.signal?.aborted) throw new Error('cancelled');
    const progress = layerProgress(options, i, modules.length, module.name);
    const originalName = `${module.name}.weight`;
    if (!original.has(originalName)) {
      layers.push(skipped(module, `the original checkpoint has no ${originalName}`));
      continue;
    }
    const declared = module.declared?.scheme?.weights;
    const stored: StoredWeightRows = await openStoredWeight(quantized, module, { declared, gptqFormat: options.gptqFormat ?? layerMap.scheme.gptq?.checkpointFormat });
    const { rows, cols } = stored;
    const ref = original.tensor(originalName);
    if (ref.shape.length !== 2 || ref.shape[0] !== rows || ref.shape[1] !== cols) {
      layers.push(skipped(module, `shape mismatch: quantized [${rows}, ${cols}], original [${ref.shape.join(', ')}]`));
      continue;
    }
    const reference = await openStoredWeight(original, { ...module, observed: { kind: 'float', shape: [rows, cols], hasZeroPoint: false, hasGIdx: false, staticInputScale: false } });
    const blockRows = Math.min(Math.max(rows, 1), rowsPerBlock(cols, budget));
    const buffers = { ref: new Float32Array(blockRows * cols), approx: new Float32Array(blockRows * cols) };
    const read: PairReader = async (r0, r1, refOut, approxOut) => {
      await reference.read(r0, r1, refOut);
      await stored.read(r0, r1, approxOut);
    };
    layers.push(await measureStreamed(module, rows, cols, blockRows, buffers, read, options, progress));
  }
  options.onProgress?.(1, 'done');
  return finish('comparison', layerMap.scheme.description, layers);
}
