/**
 * Output-space quantization error per layer: ‖(W − Q)X‖_F / ‖WX‖_F over the calibration inputs X — what
 * GPTQ minimises, where round-to-nearest minimises the weight error ‖W − Q‖ (error.ts). A GPTQ layer can
 * have a larger weight error than RTN of the same scheme and still a smaller output error, so the Error tab
 * shows both.
 *
 * Exact without the activations: with the calibration statistics' Hessian H = c · XᵀX (c = 2/n, see
 * jobs/calibrationFile.ts; X has one calibration token per row), ‖EX‖² (E = W − Q, tokens as columns) is
 * Σ_rows e H eᵀ / c, i.e. tr(E H Eᵀ) / c — and c cancels in the ratio with tr(W H Wᵀ). Streamed per layer:
 * the layer's Hessian [in, in] and one block of rows of both weights at a time; float64 accumulation.
 */
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LayerMap } from '../checkpoint/scheme';
import type { GptqCheckpointFormat } from '../quant/gptqFormat';
import { openStoredWeight } from '../quant/storedWeights';
import { ORT_MIN_MACS, createGemm } from '../quant/gemm';

/** Where the Hessians come from (the calibration statistics file, jobs/calibrationFile.ts, is one). */
export interface HessianSource {
  /** H = 2/n Σ x xᵀ of a Linear's input, [in, in] row-major; undefined when the file has none for it. */
  hessian(module: string): Promise<Float32Array | Float64Array | undefined>;
  /** The file's metadata: `tokens`, `samples`, `seq_len`, `dataset` as the calibrate job writes them. */
  readonly metadata?: Readonly<Record<string, string | number>>;
}

export interface LayerOutputError {
  readonly module: string;
  /** ‖(W − Q)X‖_F / ‖WX‖_F; undefined when skipped. */
  readonly relative?: number;
  /** The same in dB: −20·log10(relative) (an output SQNR). */
  readonly sqnrDb?: number;
  readonly skipped?: string;
}

export interface OutputErrorReport {
  readonly layers: readonly LayerOutputError[];
  /** Calibration tokens the Hessians summarise (from the statistics' metadata), when known. */
  readonly tokens?: number;
  readonly samples?: number;
  readonly seqLen?: number;
  readonly dataset?: string;
  readonly medianSqnrDb: number;
  /** 'job': measured by the quantize job as it wrote each layer (quantlens.json), not from a statistics file. */
  readonly measuredBy?: 'job';
}

export interface OutputErrorOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (fraction: number, what: string) => void;
  readonly modules?: readonly string[];
  readonly gptqFormat?: GptqCheckpointFormat;
  /** Values per row block read (default 1 Mi). The results do not depend on it. */
  readonly blockElements?: number;
}

/**
 * Σ_r e_r H e_rᵀ and Σ_r w_r H w_rᵀ over `count` rows of `cols` values (row-major `w` and `q`, e = w − q),
 * in float64, for a symmetric H (its upper triangle is read). Rows are taken four at a time against each row
 * of H, so one pass over H serves them all.
 */
export function quadraticForms(w: Float32Array | Float64Array, q: Float32Array | Float64Array, count: number, cols: number, h: Float32Array | Float64Array): { error: number; reference: number } {
  let error = 0;
  let reference = 0;
  const e = new Float64Array(cols * 4);
  const x = new Float64Array(cols * 4);
  for (let r0 = 0; r0 < count; r0 += 4) {
    const rn = Math.min(4, count - r0);
    // Rows past the end stay zero: they add nothing to either sum.
    e.fill(0);
    x.fill(0);
    for (let k = 0; k < rn; k++) {
      const base = (r0 + k) * cols;
      for (let j = 0; j < cols; j++) {
        const wv = w[base + j]!;
        x[k * cols + j] = wv;
        e[k * cols + j] = wv - q[base + j]!;
      }
    }
    // Each value of H is read once for the four rows (H of a wide layer does not fit in a cache), and only
    // above its diagonal: H is symmetric (XᵀX), so e H eᵀ = Σ_i h_ii e_i² + 2 Σ_i<j h_ij e_i e_j — half the work.
    const c1 = cols;
    const c2 = 2 * cols;
    const c3 = 3 * cols;
    for (let i = 0; i < cols; i++) {
      const hi = i * cols;
      let he0 = 0, he1 = 0, he2 = 0, he3 = 0;
      let hx0 = 0, hx1 = 0, hx2 = 0, hx3 = 0;
      for (let j = i + 1; j < cols; j++) {
        const hv = h[hi + j]!;
        he0 += hv * e[j]!;
        he1 += hv * e[c1 + j]!;
        he2 += hv * e[c2 + j]!;
        he3 += hv * e[c3 + j]!;
        hx0 += hv * x[j]!;
        hx1 += hv * x[c1 + j]!;
        hx2 += hv * x[c2 + j]!;
        hx3 += hv * x[c3 + j]!;
      }
      const d = h[hi + i]!;
      const e0 = e[i]!, e1 = e[c1 + i]!, e2 = e[c2 + i]!, e3 = e[c3 + i]!;
      const x0 = x[i]!, x1 = x[c1 + i]!, x2 = x[c2 + i]!, x3 = x[c3 + i]!;
      error += e0 * (d * e0 + 2 * he0) + e1 * (d * e1 + 2 * he1) + e2 * (d * e2 + 2 * he2) + e3 * (d * e3 + 2 * he3);
      reference += x0 * (d * x0 + 2 * hx0) + x1 * (d * x1 + 2 * hx1) + x2 * (d * x2 + 2 * hx2) + x3 * (d * x3 + 2 * hx3);
    }
  }
  return { error, reference };
}

/** ‖(W − Q)X‖ / ‖WX‖ and its SQNR from the two quadratic forms' sums (quadraticForms). */
export function relativeOutputError(error: number, reference: number): { relative: number; sqnrDb: number } {
  // H is positive semi-definite; a tiny negative sum is rounding of an (almost) zero error.
  const relative = reference > 0 ? Math.sqrt(Math.max(0, error) / reference) : error > 0 ? Infinity : 0;
  return { relative, sqnrDb: -20 * Math.log10(relative) };
}

/**
 * The same two sums as quadraticForms, with the products E·H and W·H done by onnxruntime's float64 Gemm in
 * slabs of rows — what both the quantize job (every GPTQ layer, while it runs) and the comparison with a
 * statistics file use: the JS loops cost about as much as the quantization itself (a 1024×4096 down_proj: ~17 s in JS, well under a second as a Gemm). Float64
 * throughout, so the result matches quadraticForms to rounding; without onnxruntime (or for small layers) the
 * JS loops run instead.
 */
export async function quadraticFormsGemm(w: Float32Array | Float64Array, q: Float32Array | Float64Array, count: number, cols: number, h: Float32Array | Float64Array): Promise<{ error: number; reference: number }> {
  const gemm = count * cols * cols < ORT_MIN_MACS ? undefined : createGemm('auto', 'float64');
  if (!gemm || gemm.engine !== 'ort') return quadraticForms(w, q, count, cols, h);
  const h64 = h instanceof Float64Array ? h : Float64Array.from(h);
  // Slabs of about 4 Mi values: the products' memory stays bounded whatever the layer's height.
  const slab = Math.max(1, Math.min(count, Math.floor((1 << 22) / cols)));
  const e = new Float64Array(slab * cols);
  const x = new Float64Array(slab * cols);
  const eh = new Float64Array(slab * cols);
  const xh = new Float64Array(slab * cols);
  let error = 0;
  let reference = 0;
  for (let r0 = 0; r0 < count; r0 += slab) {
    const rows = Math.min(slab, count - r0);
    const n = rows * cols;
    for (let i = 0; i < n; i++) {
      const wv = w[r0 * cols + i]!;
      x[i] = wv;
      e[i] = wv - q[r0 * cols + i]!;
    }
    await gemm.run(rows, cols, cols, 1, e, 0, cols, false, h64, 0, cols, false, 0, eh, 0, cols);
    await gemm.run(rows, cols, cols, 1, x, 0, cols, false, h64, 0, cols, false, 0, xh, 0, cols);
    for (let i = 0; i < n; i++) {
      error += e[i]! * eh[i]!;
      reference += x[i]! * xh[i]!;
    }
  }
  return { error, reference };
}

/** The output error of one whole layer: original `w` and dequantized `q` [rows, cols], Hessian `h` [cols, cols]. */
export async function layerOutputError(w: Float32Array | Float64Array, q: Float32Array | Float64Array, rows: number, cols: number, h: Float32Array | Float64Array): Promise<{ relative: number; sqnrDb: number }> {
  if (w.length !== rows * cols || q.length !== rows * cols || h.length !== cols * cols) throw new Error(`internal: output error of [${rows}, ${cols}] weights given ${w.length} and ${q.length} values and a Hessian of ${h.length}`);
  const sums = await quadraticFormsGemm(w, q, rows, cols, h);
  return relativeOutputError(sums.error, sums.reference);
}

export function medianSqnr(layers: readonly LayerOutputError[]): number {
  const sqnrs = layers.map((l) => l.sqnrDb).filter((v): v is number => v !== undefined && Number.isFinite(v)).sort((a, b) => a - b);
  const mid = sqnrs.length >> 1;
  return sqnrs.length === 0 ? NaN : sqnrs.length % 2 ? sqnrs[mid]! : (sqnrs[mid - 1]! + sqnrs[mid]!) / 2;
}

function metadataNumber(metadata: HessianSource['metadata'], key: string): number | undefined {
  const value = metadata?.[key];
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/**
 * The output error of every quantized linear layer of `quantized` against `original`, on the inputs the
 * Hessians of `calibration` summarise. A layer without a Hessian, or whose Hessian does not match its input
 * features, is skipped with the reason.
 */
export async function outputErrors(quantized: Checkpoint, layerMap: LayerMap, original: Checkpoint, calibration: HessianSource, options: OutputErrorOptions = {}): Promise<OutputErrorReport> {
  const modules = layerMap.modules.filter((m) => m.state === 'quantized' && (!options.modules || options.modules.includes(m.name)));
  const budget = Math.max(1, options.blockElements ?? 1024 * 1024);
  const layers: LayerOutputError[] = [];
  for (const [index, module] of modules.entries()) {
    if (options.signal?.aborted) throw new Error('cancelled');
    options.onProgress?.(index / Math.max(1, modules.length), `output error: ${module.name}`);
    const originalName = `${module.name}.weight`;
    if (!original.has(originalName)) {
      layers.push({ module: module.name, skipped: `the original checkpoint has no ${originalName}` });
      continue;
    }
    const stored = await openStoredWeight(quantized, module, { declared: module.declared?.scheme?.weights, gptqFormat: options.gptqFormat ?? layerMap.scheme.gptq?.checkpointFormat });
    const { rows, cols } = stored;
    const ref = original.tensor(originalName);
    if (ref.shape.length !== 2 || ref.shape[0] !== rows || ref.shape[1] !== cols) {
      layers.push({ module: module.name, skipped: `shape mismatch: quantized [${rows}, ${cols}], original [${ref.shape.join(', ')}]` });
      continue;
    }
    const h = await calibration.hessian(module.name);
    if (!h) {
      layers.push({ module: module.name, skipped: 'the calibration statistics have no Hessian for this layer' });
      continue;
    }
    if (h.length !== cols * cols) {
      layers.push({ module: module.name, skipped: `the calibration Hessian has ${h.length} values; this layer's ${cols} input features need ${cols} × ${cols}` });
      continue;
    }
    const reference = await openStoredWeight(original, { ...module, observed: { kind: 'float', shape: [rows, cols], hasZeroPoint: false, hasGIdx: false, staticInputScale: false } });
    // One float64 copy of H per layer: quadraticFormsGemm would otherwise convert it for every row block.
    const h64 = h instanceof Float64Array ? h : Float64Array.from(h);
    const blockRows = Math.max(1, Math.min(rows, Math.floor(budget / Math.max(1, cols))));
    const w = new Float32Array(blockRows * cols);
    const q = new Float32Array(blockRows * cols);
    let error = 0;
    let total = 0;
    for (let r0 = 0; r0 < rows; r0 += blockRows) {
      if (options.signal?.aborted) throw new Error('cancelled');
      const r1 = Math.min(rows, r0 + blockRows);
      await reference.read(r0, r1, w);
      await stored.read(r0, r1, q);
      const sums = await quadraticFormsGemm(w, q, r1 - r0, cols, h64);
      error += sums.error;
      total += sums.reference;
      options.onProgress?.((index + r1 / rows) / Math.max(1, modules.length), `output error: ${module.name}`);
    }
    layers.push({ module: module.name, ...relativeOutputError(error, total) });
  }
  options.onProgress?.(1, 'done');
  const medianSqnrDb = medianSqnr(layers);
  const dataset = calibration.metadata?.dataset;
  return {
    layers,
    tokens: metadataNumber(calibration.metadata, 'tokens'),
    samples: metadataNumber(calibration.metadata, 'samples'),
    seqLen: metadataNumber(calibration.metadata, 'seq_len'),
    ...(dataset !== undefined ? { dataset: String(dataset) } : {}),
    medianSqnrDb,
  };
}
