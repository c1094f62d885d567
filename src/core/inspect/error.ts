/**
 * Quantization error per layer — "which layers hurt accuracy?".
 * - simulate: round-to-nearest quantization of an unquantized checkpoint's linear layers with candidate
 *   schemes (FP8 per-tensor, INT8 per-channel, INT4 group-128 symmetric / asymmetric), exactly as
 *   compressed-tensors would, measured against the original weights;
 * - compare: a quantized checkpoint's dequantized weights against its original.
 * Per layer: relative Frobenius error, SQNR (dB), max abs error, cosine similarity, and an error histogram;
 * a ranking of the worst layers and a suggested ignore list.
 *
 * Streamed in blocks of rows: each file read covers `blockElements` values (bf16 weights go straight into
 * the workspace, the next block read while one is measured), and is decoded, quantized and measured in
 * smaller blocks (COMPUTE_ELEMENTS) that stay in the CPU caches. The memory bound is one block of the
 * weight, its codes and its reconstruction — never a whole layer (GPTQ weights, stored transposed, are
 * read in slabs of columns: see storedWeights.ts) — plus the float32 errors of a layer of at most
 * `cacheElements` values. The error histogram's range is the error's min/max, so each layer takes two passes: the sums and
 * the range, keeping the float32 errors; then the histogram, over the kept errors, or — for larger layers —
 * by re-reading and re-quantizing the rows. Per-tensor FP8 takes one more pass first, for the min and max
 * its scale needs. The inner loops are WebAssembly SIMD kernels (errorKernels.ts; a JS engine gives the
 * same results).
 *
 * The numbers do not depend on the blocks: the sums are float64 over runs of 4096 consecutive elements of
 * the row-major layer (ErrorAccumulator's runs), each run in four lanes by element index (see
 * LayerErrorMeter), and every row block is quantized exactly as the whole layer would be (channel / group
 * cells never span rows; a tensor scale depends only on the layer's min and max, which each block sees
 * through one extra row holding them, or, for FP8 in one step, directly).
 */
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LayerMap, LinearModule } from '../checkpoint/scheme';
import { QuantArgs, presetScheme } from '../quant/args';
import { ErrorAccumulator, ErrorMetrics } from '../quant/metrics';
import { QuantizeError, quantizeRtn, RtnResult, rtnScaleShape, ScaleDtype } from '../quant/rtn';
import { E4M3_TO_F32 } from '../dtypes/float';
import { openStoredWeight, StoredWeightRows } from '../quant/storedWeights';
import type { Histogram } from '../stats/tensorStats';
import type { GptqCheckpointFormat } from '../quant/gptqFormat';
import type { OutputErrorReport } from './outputError';
import { ErrorWorkspace } from './errorKernels';
import { LayerErrorMeter } from './layerErrorMeter';
import { RowSource, fusedModuleComparisons, fusedReferenceRows, originalFusedLayout } from './fusedError';

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
  /** A comparison's original checkpoint (path), as the caller opened it. */
  readonly original?: string;
  /** A comparison's output-space error on calibration inputs, when calibration statistics were given. */
  readonly outputError?: OutputErrorReport;
}

const ERROR_BINS = 64;
const DEFAULT_BLOCK_ELEMENTS = 1024 * 1024;
const DEFAULT_CACHE_ELEMENTS = 16 * 1024 * 1024;
/**
 * Values per block decoded, quantized and measured at a time, within a block read (blockElements): small
 * enough that its buffers stay in the CPU's caches between those steps.
 */
const COMPUTE_ELEMENTS = 64 * 1024;

/** The median of ascending numbers: the middle one, or the mean of the two middle ones for an even count. */
function medianOfSorted(sorted: readonly number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function finish(kind: ErrorReport['kind'], scheme: string, layers: LayerError[]): ErrorReport {
  const evaluated = layers.filter((l) => !l.skipped);
  const ranking = [...evaluated].sort((a, b) => a.metrics.sqnrDb - b.metrics.sqnrDb).map((l) => l.module);
  const sqnrs = evaluated.map((l) => l.metrics.sqnrDb).filter(Number.isFinite).sort((a, b) => a - b);
  const median = sqnrs.length ? medianOfSorted(sqnrs) : NaN;
  const deviations = sqnrs.map((v) => Math.abs(v - median)).sort((a, b) => a - b);
  const mad = deviations.length ? medianOfSorted(deviations) : 0;
  const threshold = median - Math.max(3, 4 * mad);
  const suggestedIgnore = evaluated.filter((l) => Number.isFinite(median) && l.metrics.sqnrDb < threshold).map((l) => l.module);
  return { kind, scheme, layers, ranking, suggestedIgnore, medianSqnrDb: median };
}

/**
 * ŵ = (q − zp) · scale of an RTN result into `out`, the values `dequantizeRtn` gives (each product rounded
 * once to float32), for the strategies the workspace's cell runs do not describe (block).
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
      const z = zp ? (isFp8 ? E4M3_TO_F32[zp[cell]!]! : zp[cell]!) : 0;
      for (let i = r * cols + c0, b = r * cols + Math.min(cols, c0 + cellCols); i < b; i++) out[i] = ((isFp8 ? E4M3_TO_F32[result.q[i]!]! : result.q[i]!) - z) * sc;
    }
  }
}

/** Rows per block so that a block holds at most `budget` values (at least one row, a multiple of `multiple`). */
function rowsPerBlock(cols: number, budget: number, multiple = 1): number {
  const rows = Math.max(1, Math.floor(budget / Math.max(1, cols)));
  return Math.max(multiple, Math.floor(rows / multiple) * multiple);
}

/** Where a layer's row blocks come from. */
interface BlockSource {
  /** Rows per block read (one file read), and per block computed (decoded and measured: the workspace's size). */
  readonly ioRows: number;
  readonly computeRows: number;
  /** 2 when a block can be read into one slot while the other's rows are computed; else 1. */
  readonly slots: 1 | 2;
  /** Reads rows [r0, r1) (at most ioRows) from the file(s) into slot `slot`. */
  read(r0: number, r1: number, slot: number): Promise<void>;
  /**
   * Puts rows [s0, s1) (at most computeRows) of the block read into `slot` from row r0 into the workspace:
   * x, and approx — or the codes and scales `reconstruct` turns into approx.
   */
  fill(s0: number, s1: number, r0: number, slot: number): void;
  /** Fills approx[start, end) of the rows last filled from their codes; absent when `fill` fills approx. */
  readonly reconstruct?: (start: number, end: number) => void;
}

/**
 * Measures one layer (see the module comment): pass 1 over its row blocks gives the sums, the error's range
 * and the float32 errors, which the workspace keeps when it has room for the whole layer's (see `prepare`);
 * pass 2 bins those errors — kept, or by reading and reconstructing every block again. `progress` gets the fraction of the layer done.
 */
async function measureStreamed(
  module: LinearModule,
  rows: number,
  cols: number,
  ws: ErrorWorkspace,
  source: BlockSource,
  options: ErrorOptions,
  progress: (fraction: number) => void,
): Promise<LayerError> {
  const meter = new LayerErrorMeter(ws);
  const total = rows * cols;
  const kept = ws.errors.length >= total;
  const passes = kept ? 1 : 2;
  const { ioRows, computeRows, slots } = source;
  const pass = async (index: number, use: (n: number, r0: number) => void) => {
    // With two slots the next block is read while this one is computed.
    const readBlock = (r0: number, slot: number) => {
      const reading = source.read(r0, Math.min(rows, r0 + ioRows), slot);
      reading.catch(() => undefined); // awaited below; a read left behind by a cancellation must not be unhandled
      return reading;
    };
    let pending = rows > 0 ? readBlock(0, 0) : undefined;
    for (let r0 = 0, slot = 0; r0 < rows; r0 += ioRows, slot = slots === 2 ? slot ^ 1 : 0) {
      await pending;
      if (options.signal?.aborted) throw new Error('cancelled');
      const r1 = Math.min(rows, r0 + ioRows);
      if (slots === 2 && r1 < rows) pending = readBlock(r1, slot ^ 1);
      for (let s0 = r0; s0 < r1; s0 += computeRows) {
        const s1 = Math.min(r1, s0 + computeRows);
        source.fill(s0, s1, r0, slot);
        use((s1 - s0) * cols, s0);
      }
      if (slots === 1 && r1 < rows) pending = readBlock(r1, 0);
      progress((index + r1 / rows) / passes);
    }
  };
  await pass(0, (n, r0) => {
    ws.errorBase = kept ? r0 * cols : 0;
    meter.add(r0 * cols, n, source.reconstruct);
  });
  ws.errorBase = 0;
  const metrics = meter.metrics();
  /** The float32 errors of the block just read again (the sums are done: the accumulators are scratch now). */
  const errorsAgain = (n: number) => {
    ws.resetSums();
    source.reconstruct?.(0, n);
    const body = n & ~3;
    ws.sums(0, body);
    for (let i = body; i < n; i++) ws.sumOne(i, i);
  };
  if (meter.needsRangePass()) {
    if (kept) meter.range(ws.errors, total);
    else {
      await pass(0, (n) => {
        errorsAgain(n);
        meter.range(ws.errors, n);
      });
    }
  }
  if (meter.startHistogram(ERROR_BINS)) {
    if (kept) meter.bin(total);
    else {
      await pass(1, (n) => {
        errorsAgain(n);
        meter.bin(n);
      });
    }
  }
  progress(1);
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
  /**
   * Float32 errors of one layer kept between its two passes (default 16 Mi values, 64 MiB): larger layers
   * are read and quantized twice. The results do not depend on it.
   */
  readonly cacheElements?: number;
  /** 'js' forces the portable kernels instead of WebAssembly SIMD (tests compare the two); same results. */
  readonly engine?: 'auto' | 'js';
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
  const ws = new ErrorWorkspace(options.engine);
  const keepUpTo = options.cacheElements ?? DEFAULT_CACHE_ELEMENTS;
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
    const multiple = args.strategy === 'block' ? args.blockStructure![0] : 1;
    const ioRows = Math.min(Math.max(rows, 1), rowsPerBlock(cols, budget, multiple));
    const computeRows = Math.min(ioRows, rowsPerBlock(cols, COMPUTE_ELEMENTS, multiple));
    // Per tensor: the scale depends only on the layer's min and max, so every block is quantized together
    // with extra row(s) holding them (their codes are dropped).
    const rangeRows = args.strategy === 'tensor' && cols > 0 ? Math.ceil(2 / cols) : 0;
    const size = (computeRows + rangeRows) * cols;
    const strategy = args.strategy;
    const cells = strategy === 'tensor' ? 1 : strategy === 'channel' ? computeRows + rangeRows : strategy === 'group' ? (computeRows + rangeRows) * (cols / args.groupSize!) : rtnScaleShape(args, computeRows + rangeRows, cols).reduce((a, b) => a * b, 1);
    // bf16 weights are read straight into the workspace (two slots) and widened there; others through openStoredWeight.
    const rowBytes = dtype === 'BF16' ? 2 * cols : 0;
    ws.prepare(size, cells, rows * cols <= keepUpTo ? rows * cols : size, rowBytes * ioRows);
    const x = ws.x;
    const load = rowBytes > 0 ? async (r0: number, r1: number, slot: number) => void (await checkpoint.readTensorRange(weightName, r0 * rowBytes, r1 * rowBytes, ws.raw(slot))) : (r0: number, r1: number) => stored.load(r0, r1);
    const decode = (s0: number, s1: number, r0: number, slot: number) => (rowBytes > 0 ? ws.decodeBF16(slot, (s0 - r0) * rowBytes, (s1 - s0) * cols) : void stored.decode(s0, s1, x));
    const codes = args.type === 'float' ? ws.codesU8 : ws.codesI8;
    let layerMin = 0;
    let layerMax = 0;
    let layerNan = false;
    if (rangeRows > 0) {
      let mn = Infinity;
      let mx = -Infinity;
      for (let r0 = 0; r0 < rows; r0 += ioRows) {
        if (options.signal?.aborted) throw new Error('cancelled');
        const r1 = Math.min(rows, r0 + ioRows);
        await load(r0, r1, 0);
        for (let s0 = r0; s0 < r1; s0 += computeRows) {
          const s1 = Math.min(r1, s0 + computeRows);
          decode(s0, s1, r0, 0);
          const range = ws.minMax((s1 - s0) * cols);
          if (range.min < mn) mn = range.min;
          if (range.max > mx) mx = range.max;
          layerNan ||= range.nan;
        }
      }
      // No values (or only NaN, which quantizing refuses): 0 adds nothing to a range that always includes 0.
      layerMin = mn === Infinity ? 0 : mn;
      layerMax = mx === -Infinity ? 0 : mx;
    }
    // FP8 per tensor (symmetric, bf16 or float32 arithmetic, no NaN: quantizeRtn reports those) is quantized
    // and dequantized in one step with the layer's scale, which depends only on its min and max.
    let fp8Scale = 0;
    const fusedFp8 = args.type === 'float' && strategy === 'tensor' && args.symmetric && scaleDtype !== 'F16' && !layerNan;
    if (fusedFp8) {
      try {
        fp8Scale = quantizeRtn(new Float32Array([layerMin, layerMax]), 1, 2, args, { scaleDtype }).scale[0]!;
      } catch (error) {
        if (!(error instanceof QuantizeError)) throw error;
        throw new QuantizeError(`${weightName}: ${error.message}`);
      }
    }
    const isFp8 = args.type === 'float';
    // Tensor, channel and group cells are runs of consecutive elements: the workspace reconstructs those.
    const cellLen = strategy === 'tensor' ? Math.max(1, size) : strategy === 'channel' ? cols : strategy === 'group' ? args.groupSize! : 0;
    const hasZero = !args.symmetric;
    const source: BlockSource = {
      ioRows,
      computeRows,
      slots: rowBytes > 0 ? 2 : 1,
      read: load,
      fill(s0, s1, r0, slot) {
        const n = (s1 - s0) * cols;
        decode(s0, s1, r0, slot);
        if (fusedFp8) return;
        if (rangeRows > 0) {
          x.fill(0, n, n + rangeRows * cols);
          x[n] = layerMin;
          x[n + 1] = layerMax;
        }
        let result: RtnResult;
        try {
          result = quantizeRtn(x.subarray(0, n + rangeRows * cols), s1 - s0 + rangeRows, cols, args, { scaleDtype, out: codes });
        } catch (error) {
          if (!(error instanceof QuantizeError)) throw error;
          const nan = nanPosition(x, n, cols, s0);
          throw new QuantizeError(nan ? `${weightName}: the weight holds NaN (${nan}); cannot simulate ${label}` : `${weightName}: ${error.message}`);
        }
        if (cellLen === 0) {
          reconstruct(result, ws.approx);
          return;
        }
        ws.scale.set(result.scale);
        const zp = result.zeroPoint;
        if (zp) for (let c = 0; c < zp.length; c++) ws.zero[c] = isFp8 ? E4M3_TO_F32[zp[c]!]! : zp[c]!;
      },
      reconstruct: fusedFp8 ? (start, end) => ws.fp8Tensor(start, end, fp8Scale, scaleDtype === 'BF16') : cellLen === 0 ? undefined : (start, end) => ws.reconstruct(start, end, cellLen, isFp8, hasZero),
    };
    layers.push(await measureStreamed(module, rows, cols, ws, source, options, progress));
  }
  options.onProgress?.(1, 'done');
  return finish('simulation', label, layers);
}

/**
 * Compares each quantized layer of `quantized` (dequantized) with the same layer of `original`; fused experts
 * per expert and projection, against the original's slice when it keeps them fused (fusedError.ts).
 */
export async function compareWithOriginal(
  quantized: Checkpoint,
  layerMap: LayerMap,
  original: Checkpoint,
  options: ErrorOptions & { gptqFormat?: GptqCheckpointFormat } = {},
): Promise<ErrorReport> {
  const modules = layerMap.modules.filter((m) => m.state === 'quantized' && (!options.modules || options.modules.includes(m.name)));
  const budget = Math.max(1, options.blockElements ?? DEFAULT_BLOCK_ELEMENTS);
  const ws = new ErrorWorkspace(options.engine);
  const keepUpTo = options.cacheElements ?? DEFAULT_CACHE_ELEMENTS;
  const layers: LayerError[] = [];
  const layout = modules.some((m) => m.moe) ? await originalFusedLayout(original) : 'concatenated';
  /** Measures `stored` against `reference` (or, `bf16Name`, the original's bf16 rows read straight into the workspace). */
  const measure = async (module: LinearModule, stored: RowSource & Pick<StoredWeightRows, 'codeRuns' | 'decodeCodes'>, reference: RowSource, progress: (f: number) => void, bf16Name?: string) => {
    const { rows, cols } = stored;
    const ioRows = Math.min(Math.max(rows, 1), rowsPerBlock(cols, budget));
    const computeRows = Math.min(ioRows, rowsPerBlock(cols, COMPUTE_ELEMENTS));
    const rowBytes = bf16Name ? 2 * cols : 0;
    // int8 codes whose cells are runs (per channel, groups, per tensor): reconstructed by the workspace.
    const runs = stored.decodeCodes ? stored.codeRuns : undefined;
    const cells = runs ? Math.max(1, computeRows * runs.cellsPerRow) : 0;
    ws.prepare(computeRows * cols, cells, rows * cols <= keepUpTo ? rows * cols : computeRows * cols, rowBytes * ioRows);
    const source: BlockSource = {
      ioRows,
      computeRows,
      slots: 1,
      async read(r0, r1) {
        if (bf16Name) await original.readTensorRange(bf16Name, r0 * rowBytes, r1 * rowBytes, ws.raw(0));
        else await reference.load(r0, r1);
        await stored.load(r0, r1);
      },
      fill(s0, s1, r0) {
        if (bf16Name) ws.decodeBF16(0, (s0 - r0) * rowBytes, (s1 - s0) * cols);
        else reference.decode(s0, s1, ws.x);
        if (runs) stored.decodeCodes!(s0, s1, ws.codesI8, ws.scale, ws.zero);
        else stored.decode(s0, s1, ws.approx);
      },
      reconstruct: runs ? (start, end) => ws.reconstruct(start, end, runs.cellsPerRow === 0 ? computeRows * cols : runs.cellLen, false, runs.hasZero) : undefined,
    };
    return measureStreamed(module, rows, cols, ws, source, options, progress);
  };
  for (const [i, module] of modules.entries()) {
    if (options.signal?.aborted) throw new Error('cancelled');
    const progress = layerProgress(options, i, modules.length, module.name);
    if (module.moe?.role === 'fused-experts') {
      const parts = fusedModuleComparisons(quantized, original, module, layout);
      if (typeof parts === 'string') layers.push(skipped(module, parts));
      else for (const [k, part] of parts.entries()) layers.push(await measure(part.module, part.stored, part.reference, (f) => progress((k + f) / parts.length)));
      continue;
    }
    const originalName = `${module.name}.weight`;
    const declared = module.declared?.scheme?.weights;
    const hasOriginal = original.has(originalName);
    // A per-expert Linear whose original keeps its layer's experts fused is compared with its slice.
    if (!hasOriginal && module.moe?.role !== 'expert') {
      layers.push(skipped(module, `the original checkpoint has no ${originalName}`));
      continue;
    }
    const stored: StoredWeightRows = await openStoredWeight(quantized, module, { declared, gptqFormat: options.gptqFormat ?? layerMap.scheme.gptq?.checkpointFormat });
    const { rows, cols } = stored;
    const slice = hasOriginal ? undefined : fusedReferenceRows(original, module.name, rows, cols, layout);
    const ref = hasOriginal ? original.tensor(originalName) : undefined;
    if (!hasOriginal && !slice) layers.push(skipped(module, `the original checkpoint has no ${originalName}, nor a fused experts tensor with its [${rows}, ${cols}] slice`));
    else if (ref && (ref.shape.length !== 2 || ref.shape[0] !== rows || ref.shape[1] !== cols)) layers.push(skipped(module, `shape mismatch: quantized [${rows}, ${cols}], original [${ref.shape.join(', ')}]`));
    else {
      const reference = slice ?? (await openStoredWeight(original, { ...module, observed: { kind: 'float', shape: [rows, cols], hasZeroPoint: false, hasGIdx: false, staticInputScale: false } }));
      // A bf16 original is read straight into the workspace and widened there.
      layers.push(await measure(module, stored, reference, progress, ref?.dtype === 'BF16' ? originalName : undefined));
    }
  }
  options.onProgress?.(1, 'done');
  return finish('comparison', layerMap.scheme.description, layers);
}
