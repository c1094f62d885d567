/**
 * GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
 * ICLR 2023) for one Linear weight W [rows = out, cols = in] given the Hessian H = 2/n Σ x xᵀ [in, in] of its
 * inputs, as llm-compressor's GPTQModifier runs it (modifiers/gptq/gptq_quantize.py `quantize_weight`, read at
 * vllm-project/llm-compressor ab1ba3e) and AutoGPTQ's `fasterquant` (docs/formats.md §5.7):
 *
 *   1. act-order (optional): perm = argsort(diag H, descending) (computed before the dead-column fix, as
 *      llm-compressor does; ties keep column order); W and H are permuted;
 *   2. dead inputs (H[i,i] = 0): H[i,i] = 1 and W[:, i] = 0;
 *   3. dampening: H += dampening_frac · mean(diag H) · I;
 *   4. columns are quantized one after the other; the rounding error of column j, divided by U[j,j] where
 *      U = cholesky(H⁻¹, upper), is propagated to the columns after it through row j of U — lazily, in blocks
 *      of `block_size` columns (only the rounding order depends on the block size).
 *
 * Scales and zero points (`groupParams`):
 *   - 'upfront' (default, llm-compressor at every version since 2024-07): the observer runs once, before the
 *     loop, on the original weight: contiguous groups without act-order and with actorder "static"/"weight"
 *     (where g_idx = perm[j] // group_size, so groups stay contiguous in the original order); groups of the
 *     *permuted* weight with actorder "group" (g_idx saved as weight_g_idx). They are computed exactly as RTN
 *     computes them (rtn/params.ts), in the model dtype, and the loop quantizes with those stored values, so the
 *     codes written are the loop's codes and dequantizing the checkpoint gives the returned weight bit for bit.
 *     (Upstream runs the actorder-"group" observer on the float32 weight and rounds the scale to the model dtype
 *     only when saving; the difference is in the last bit of a scale.)
 *   - 'lazy' (the paper and AutoGPTQ without static_groups): the observer runs when a group starts, on that
 *     group's columns as updated by every column before it.
 *   Channel and tensor strategies always use upfront parameters (so does AutoGPTQ with group_size −1).
 *
 * Implementation. Instead of forming H⁻¹ and factorising it again (cholesky → cholesky_inverse → cholesky
 * upper, 5/3·n³ flops), note that U = R⁻¹ where H = R Rᵀ with R upper triangular — R is the Cholesky factor of
 * H with rows and columns reversed (one factorisation, n³/3 flops). Writing D = W₀ − Q (original minus
 * quantized, columns in quantization order), the GPTQ updates satisfy W₀ − Q = E·U with E the scaled errors, so
 * E = D·R, and the value column j has when it is quantized is
 *     w_j = W₀_j + (Σ_{i<j} D_i R_ij) / R_jj,
 * which this module accumulates (A_j = Σ_{i<j} D_i R_ij) with the same blocked lazy updates as upstream:
 * within a block column by column, then A[:, rest] += D[:, block] · R[block, rest]. The loss is
 * Σ (w − q)² R_jj² / 2, llm-compressor's Σ (w − q)² / U_jj² / 2. The lazy observer needs the textbook's
 * intermediate values of a group's columns; they are W₀ + A⁽ʲ⁾ · R[j:, j:]⁻¹, of which only the group's
 * gs × gs triangular block has to be inverted. Mathematically this is exactly the published
 * algorithm (Babai's nearest-plane form of it); the test compares it with a textbook float64 implementation.
 *
 * Precision and engines: 'float64' accumulates everything in float64 (the default with the JS engine);
 * 'float32' (the default with onnxruntime, like upstream's GPTQ_PRECISION = float32) halves memory and doubles
 * speed of the matrix products. The two O(n³) parts (blocked Cholesky, lazy updates) run through gemm.ts —
 * onnxruntime's CPU Gemm when available, plain loops otherwise.
 *
 * With `algebra` (an execution provider's onnxruntime graphs, src/core/runtime/gptq/), the factorisation and
 * the column loop with its lazy updates run there instead, in float32, on the same prepared inputs (the
 * permutation, dead columns, dampening and group parameters stay here), so every path shares one definition.
 *
 * Memory: H as one in × in buffer of the working precision (factorised in place: 4·in² or 8·in² bytes, 822 MB
 * in float32 for in = 14336), the accumulator A [in, out] of the working precision, the codes [out, in] (int8),
 * one block of columns, and the caller's float32 weight. Nothing grows with the model, only with one layer.
 */
import type { ActOrder, QuantArgs } from './args';
import { ScaleDtype, quantizeRtn } from './rtn';
import { FloatBuf, Gemm, Precision, createGemm } from './gemm';

/** QuantLens' own default dampening (the seed recipes use 0.1); llm-compressor's GPTQModifier default is 0.01. */
export const DEFAULT_DAMPENING_FRAC = 0.1;
export const LLM_COMPRESSOR_DAMPENING_FRAC = 0.01;
export const DEFAULT_BLOCK_SIZE = 128;

export class GptqError extends Error {
  override readonly name = 'GptqError';
}

export interface GptqOptions {
  /** Columns per lazy-update block (GPTQModifier block_size). Default 128. */
  readonly blockSize?: number;
  /** Fraction of mean(diag H) added to the diagonal (GPTQModifier dampening_frac). Default 0.1. */
  readonly dampeningFrac?: number;
  /** Activation order; default: args.actorder. 'weight' = llm-compressor "static", 'group' = "dynamic" (saves g_idx). */
  readonly actorder?: ActOrder | null;
  /** Where scales and zero points come from (see the module comment). Default 'upfront'. */
  readonly groupParams?: 'upfront' | 'lazy';
  /** Dtype the scales are stored in: the model dtype. Default BF16. */
  readonly scaleDtype?: ScaleDtype;
  /** 'auto' (default): onnxruntime for layers where it pays, when it loads; 'js': plain loops. Ignored with `algebra`. */
  readonly engine?: 'auto' | 'js' | 'ort';
  /** Run the factorisation and the column loop as onnxruntime graphs on a device (float32). */
  readonly algebra?: GptqAlgebra;
  /** Default: float64 with the JS engine, float32 with onnxruntime. */
  readonly precision?: Precision;
  /** Module name, for error messages. */
  readonly module?: string;
  readonly signal?: AbortSignal;
}

export interface GptqResult {
  readonly rows: number;
  readonly cols: number;
  readonly args: QuantArgs;
  /** Signed codes in [−2^(b−1), 2^(b−1) − 1], row-major [rows, cols], original column order. */
  readonly q: Int8Array;
  /** Stored scales (values of scaleDtype): tensor [1], channel [rows, 1], group [rows, cols / group_size]. */
  readonly scale: Float32Array;
  readonly scaleShape: readonly number[];
  readonly scaleDtype: ScaleDtype;
  /** Signed zero points (asymmetric only), same shape as the scale. */
  readonly zeroPoint?: Int8Array;
  /** Group of every input column (group strategy): what weight_g_idx / AutoGPTQ g_idx hold. */
  readonly gIdx?: Int32Array;
  /** Whether gIdx must be saved (actorder group): otherwise it is column // group_size. */
  readonly saveGIdx: boolean;
  /** Column quantization order (act-order), or undefined for the natural order. */
  readonly perm?: Int32Array;
  /** Σ (w − q)² / U_jj² / 2, as llm-compressor logs it. */
  readonly loss: number;
  /** Input columns whose Hessian diagonal was 0 (their weights are quantized as 0). */
  readonly deadColumns: number;
  readonly engine: 'js' | 'ort' | 'graph';
  /** Where the algebra ran, for the job log. */
  readonly where: string;
  readonly precision: Precision;
  /** Seconds spent factorising the Hessian and in the column loop. */
  readonly seconds: { readonly factorize: number; readonly loop: number };
}

/**
 * GPTQ's algebra on an execution provider (src/core/runtime/gptq/engine.ts): the Cholesky factorisation and
 * the column loop with its lazy block updates. Everything else (validation, act-order, dead columns,
 * dampening, group parameters, the loss) stays in quantizeGptq, shared by every engine.
 */
export interface GptqAlgebra {
  /** e.g. "onnxruntime graphs on WebGpuExecutionProvider". */
  readonly where: string;
  /** Whether this layer should run here (the CPU keeps small layers in exact float64 JS); default yes. */
  wants?(rows: number, cols: number): boolean;
  /** Lower Cholesky factor of the row-major n × n matrix (lower triangle read) in place; the first non-positive pivot, or −1. */
  cholesky(a: Float32Array, n: number, signal?: AbortSignal): Promise<number>;
  /** The column loop; returns Σ over rows of (w − deq)² for each column position. */
  columns(task: GptqColumnsTask): Promise<Float64Array>;
}

/** The column loop's inputs and outputs, by column position (quantization order). Column blocks are [positions, rows]. */
export interface GptqColumnsTask {
  readonly rows: number;
  readonly cols: number;
  readonly bits: number;
  /** R (upper triangle read), row-major [cols, cols]: H_damped(permuted) = R Rᵀ. */
  readonly R: Float32Array;
  /** The original weight of positions [j0, j1) (dead inputs 0) into out[(j − j0)·rows + row]. */
  weightColumns(j0: number, j1: number, out: Float32Array): void;
  /** Each cell's stored scale and zero point for positions [j0, j1), same layout. */
  params(j0: number, j1: number, scale: Float32Array, zero: Float32Array): void;
  /** Lazy group parameters: groups of this size must start a column block, and `observe` sets them. */
  readonly lazyGroupSize?: number;
  /** The group starting at position j, as the textbook algorithm has it then ([gs, rows]): compute its parameters. */
  observe?(j: number, values: Float32Array): void;
  /** The codes of positions [j0, j1), same layout. */
  codes(j0: number, j1: number, codes: Float32Array): void;
  readonly signal?: AbortSignal;
}

/** Dequantizes a GPTQ result: (q − zp) · scale per cell, exact in float32 for BF16/F16 scales. */
export function dequantizeGptqResult(result: GptqResult, out?: Float32Array): Float32Array {
  const { rows, cols, q, scale, zeroPoint, gIdx } = result;
  const w = out ?? new Float32Array(rows * cols);
  const G = result.scaleShape.length === 2 ? result.scaleShape[1]! : 1;
  const perTensor = result.scaleShape.length === 1;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const cell = perTensor ? 0 : r * G + (G === 1 ? 0 : gIdx![c]!);
      w[r * cols + c] = (q[r * cols + c]! - (zeroPoint ? zeroPoint[cell]! : 0)) * scale[cell]!;
    }
  }
  return w;
}

/** 1.5·2^52: (v + RNE) − RNE rounds |v| < 2^51 half to even. */
const RNE = 6755399441055744;

function checkCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new GptqError('cancelled');
}

/** argsort(values, descending), ties in index order. */
function descendingOrder(values: ArrayLike<number>, n: number): Int32Array {
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => values[b]! - values[a]! || a - b);
  return Int32Array.from(idx);
}

/**
 * Lower Cholesky factor of the symmetric positive-definite matrix in `a` (row-major n × n, lower triangle
 * read), in place: a right-looking blocked factorisation whose panel solves and trailing updates go through
 * `gemm`; the diagonal blocks are factorised in float64. Returns the first non-positive pivot, or −1.
 */
async function choleskyInPlace(a: FloatBuf, n: number, gemm: Gemm, signal: AbortSignal | undefined): Promise<number> {
  const nb = Math.min(n, 256);
  const d = new Float64Array(nb * nb);
  const inv = new Float64Array(nb * nb);
  const Ctor = a instanceof Float32Array ? Float32Array : Float64Array;
  const invBuf = new Ctor(nb * nb);
  const panelIn = new Ctor(Math.max(0, n - nb) * nb);
  const panel = new Ctor(Math.max(0, n - nb) * nb);
  const chunk = 512;
  for (let j0 = 0; j0 < n; j0 += nb) {
    checkCancelled(signal);
    const j1 = Math.min(n, j0 + nb);
    const w = j1 - j0;
    for (let r = 0; r < w; r++) for (let c = 0; c <= r; c++) d[r * w + c] = a[(j0 + r) * n + j0 + c]!;
    for (let c = 0; c < w; c++) {
      let s = d[c * w + c]!;
      for (let p = 0; p < c; p++) s -= d[c * w + p]! * d[c * w + p]!;
      if (!(s > 0)) return j0 + c;
      const l = Math.sqrt(s);
      d[c * w + c] = l;
      for (let r = c + 1; r < w; r++) {
        let t = d[r * w + c]!;
        for (let p = 0; p < c; p++) t -= d[r * w + p]! * d[c * w + p]!;
        d[r * w + c] = t / l;
      }
    }
    for (let r = 0; r < w; r++) for (let c = 0; c <= r; c++) a[(j0 + r) * n + j0 + c] = d[r * w + c]!;
    if (j1 === n) break;
    // inv = L11⁻¹ (lower triangular), by forward substitution on the identity.
    inv.fill(0, 0, w * w);
    for (let c = 0; c < w; c++) {
      inv[c * w + c] = 1 / d[c * w + c]!;
      for (let r = c + 1; r < w; r++) {
        let t = 0;
        for (let p = c; p < r; p++) t -= d[r * w + p]! * inv[p * w + c]!;
        inv[r * w + c] = t / d[r * w + r]!;
      }
    }
    for (let i = 0; i < w * w; i++) invBuf[i] = inv[i]!;
    const m = n - j1;
    // Panel: L21 = A21 · L11⁻ᵀ (kept contiguous in `panel` for the trailing updates).
    for (let r = 0; r < m; r++) panelIn.set(a.subarray((j1 + r) * n + j0, (j1 + r) * n + j1), r * w);
    await gemm.run(m, w, w, 1, panelIn, 0, w, false, invBuf, 0, w, true, 0, panel, 0, w);
    for (let r = 0; r < m; r++) a.set(panel.subarray(r * w, (r + 1) * w), (j1 + r) * n + j0);
    // Trailing update of the lower triangle, in row chunks: A[r0:r1, j1:r1] −= L[r0:r1] · L[j1:r1]ᵀ.
    for (let r0 = j1; r0 < n; r0 += chunk) {
      checkCancelled(signal);
      const r1 = Math.min(n, r0 + chunk);
      await gemm.run(r1 - r0, r1 - j1, w, -1, panel, (r0 - j1) * w, w, false, panel, 0, w, true, 1, a, r0 * n + j1, n);
    }
  }
  return -1;
}

/** Reverses rows and columns of the n × n matrix in place: a[i, j] ↔ a[n−1−i, n−1−j]. */
function reverseInPlace(a: FloatBuf, n: number): void {
  const total = n * n;
  for (let i = 0; i < total >> 1; i++) {
    const j = total - 1 - i;
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

/** y[yOff …] += a · x[xOff …] over n elements. */
function axpy(y: FloatBuf, yOff: number, a: number, x: FloatBuf, xOff: number, n: number): void {
  for (let i = 0; i < n; i++) y[yOff + i]! += a * x[xOff + i]!;
}

/** The column's current value: w = W₀ + A / R_jj. */
function currentColumn(out: Float64Array, w0: FloatBuf, wOff: number, acc: FloatBuf, aOff: number, inv: number, n: number): void {
  for (let i = 0; i < n; i++) out[i] = w0[wOff + i]! + acc[aOff + i]! * inv;
}

/**
 * Quantizes one column (one value per output row) with the cell's stored scale and zero point:
 * code = clamp(rne(w / s + z)), writes the code to q[row, c] and D = W₀ − (code − z)·s; returns Σ (w − ŵ)².
 * G = −1 means one cell for the whole tensor.
 */
function quantizeColumn(
  n: number, wRow: Float64Array, w0: FloatBuf, dBlock: FloatBuf, dOff: number,
  scale: Float32Array, zeroPoint: Int8Array | undefined, G: number, g: number,
  qmin: number, qmax: number, q: Int8Array, cols: number, c: number,
): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const cell = G < 0 ? 0 : i * G + g;
    const s = scale[cell]!;
    const z = zeroPoint ? zeroPoint[cell]! : 0;
    const w = wRow[i]!;
    let code = w / s + z + RNE - RNE;
    if (code < qmin) code = qmin;
    else if (code > qmax) code = qmax;
    q[i * cols + c] = code;
    const deq = (code - z) * s;
    dBlock[dOff + i] = w0[dOff + i]! - deq;
    sum += (w - deq) * (w - deq);
  }
  return sum;
}

interface LoopParams {
  /** Stored scales and zero points, [rows, G] (G = 1 for channel; tensor: one cell). */
  scale: Float32Array;
  zeroPoint?: Int8Array;
  G: number;
  perTensor: boolean;
}

/**
 * Runs GPTQ on W [rows, cols] (row-major float32, values of the model dtype) with the Hessian of its inputs
 * (row-major [cols, cols], float32 or float64). Integer weights, strategies tensor / channel / group.
 */
export async function quantizeGptq(weight: Float32Array, rows: number, cols: number, hessian: Float32Array | Float64Array, args: QuantArgs, options: GptqOptions = {}): Promise<GptqResult> {
  const where = options.module ? `${options.module}: ` : '';
  const fail = (message: string) => new GptqError(`${where}${message}`);
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows <= 0 || cols <= 0) throw fail(`the weight shape must be positive, got [${rows}, ${cols}]`);
  if (weight.length !== rows * cols) throw fail(`the weight has ${weight.length} elements, [${rows}, ${cols}] needs ${rows * cols}`);
  if (hessian.length !== cols * cols) {
    const side = Math.sqrt(hessian.length);
    throw fail(`the Hessian has ${hessian.length} values${Number.isInteger(side) ? ` ([${side}, ${side}])` : ' (not a square matrix)'}, but in_features is ${cols}: it must be [${cols}, ${cols}]`);
  }
  if (args.type !== 'int') throw fail(`GPTQ here quantizes integer weights (INT2–INT8), not ${args.type} ${args.numBits}-bit`);
  if (args.numBits < 2 || args.numBits > 8) throw fail(`GPTQ supports 2–8 bit integer weights, not ${args.numBits}`);
  if (args.dynamic !== false) throw fail('dynamic weight quantization stores no scales; GPTQ needs static weights');
  if (args.strategy !== 'tensor' && args.strategy !== 'channel' && args.strategy !== 'group') throw fail(`strategy "${args.strategy}" is not supported by GPTQ here (tensor, channel, group)`);
  const gs = args.strategy === 'group' ? args.groupSize! : cols;
  if (args.strategy === 'group' && (!(gs > 0) || cols % gs !== 0)) throw fail(`group_size ${gs} does not divide in_features ${cols}`);
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!Number.isInteger(blockSize) || blockSize <= 0) throw fail(`block_size must be a positive integer, got ${blockSize}`);
  const damp = options.dampeningFrac ?? DEFAULT_DAMPENING_FRAC;
  if (!(damp >= 0 && damp < 1)) throw fail(`dampening_frac must be in [0, 1), got ${damp}`);
  let actorder: ActOrder | null = options.actorder !== undefined ? options.actorder : (args.actorder ?? null);
  // compressed-tensors only accepts actorder group on group strategies; llm-compressor falls back to none.
  if (actorder === 'group' && args.strategy !== 'group') actorder = null;
  const lazy = options.groupParams === 'lazy' && args.strategy === 'group' && actorder !== 'weight';
  const scaleDtype = options.scaleDtype ?? 'BF16';
  for (let i = 0; i < weight.length; i++) {
    const v = weight[i]!;
    if (v - v !== 0) throw fail(`the weight holds ${v} at [${Math.floor(i / cols)}, ${i % cols}]`);
  }
  const diag = new Float64Array(cols);
  for (let i = 0; i < cols; i++) diag[i] = hessian[i * cols + i]!;
  for (let i = 0; i < hessian.length; i++) {
    const v = hessian[i]!;
    if (v - v !== 0) throw fail(`the Hessian holds ${v} at [${Math.floor(i / cols)}, ${i % cols}] (calibration produced non-finite activations)`);
  }
  for (let i = 0; i < cols; i++) if (diag[i]! < 0) throw fail(`the Hessian diagonal is negative at ${i} (${diag[i]}): it is not 2/n Σ x xᵀ`);

  const work = (cols * cols * (cols / 3 + rows / 2));
  const engineWanted = options.engine ?? 'auto';
  const algebra = options.algebra && (options.algebra.wants?.(rows, cols) ?? true) ? options.algebra : undefined;
  const gemm = createGemm(algebra || (engineWanted === 'auto' && work < 2 ** 28) ? 'js' : engineWanted, options.precision ?? 'float32');
  const precision: Precision = algebra ? 'float32' : options.precision ?? (gemm.engine === 'ort' ? 'float32' : 'float64');
  const Ctor = precision === 'float32' ? Float32Array : Float64Array;

  // 1. act-order on the original diagonal (llm-compressor permutes before masking dead columns).
  const perm = actorder ? descendingOrder(diag, cols) : undefined;
  const col = (j: number) => (perm ? perm[j]! : j);
  // Group of the column at permuted position j.
  const groupOfPos = new Int32Array(cols);
  for (let j = 0; j < cols; j++) groupOfPos[j] = args.strategy !== 'group' ? 0 : actorder === 'weight' ? Math.floor(col(j) / gs) : Math.floor(j / gs);
  let gIdx: Int32Array | undefined;
  if (args.strategy === 'group') {
    gIdx = new Int32Array(cols);
    for (let j = 0; j < cols; j++) gIdx[col(j)] = groupOfPos[j]!;
  }

  // 2–3. Permuted, masked and dampened Hessian in the working buffer, then reversed for the R factor.
  const H = new Ctor(cols * cols);
  const dead = new Uint8Array(cols);
  let deadColumns = 0;
  for (let i = 0; i < cols; i++) {
    if (diag[i] === 0) {
      dead[i] = 1;
      deadColumns++;
    }
  }
  for (let i = 0; i < cols; i++) {
    const src = col(i) * cols;
    const dst = i * cols;
    if (perm) for (let j = 0; j < cols; j++) H[dst + j] = hessian[src + perm[j]!]!;
    else H.set(hessian.subarray(src, src + cols), dst);
  }
  let diagSum = 0;
  for (let i = 0; i < cols; i++) {
    if (dead[col(i)]) H[i * cols + i] = 1;
    diagSum += H[i * cols + i]!;
  }
  const dampValue = (damp * diagSum) / cols;
  for (let i = 0; i < cols; i++) H[i * cols + i]! += dampValue;
  const t0 = performance.now();
  reverseInPlace(H, cols);
  checkCancelled(options.signal);
  const pivot = algebra ? await algebra.cholesky(H as Float32Array, cols, options.signal) : await choleskyInPlace(H, cols, gemm, options.signal);
  if (pivot >= 0) {
    throw fail(
      `the Hessian is not positive definite after dampening (Cholesky fails at column ${cols - 1 - pivot} of ${cols}); ` +
        `increase dampening_frac (now ${damp}${damp < 0.1 ? ', try 0.1' : ', try a larger value'}) or calibrate with more samples`,
    );
  }
  reverseInPlace(H, cols);
  // H now holds R (upper triangle): H_damped(permuted) = R Rᵀ, R = U⁻¹ with U = cholesky(H⁻¹, upper).
  const R = H;
  const t1 = performance.now();

  // 4. Quantization parameters.
  const bits = args.numBits;
  const qmin = -(2 ** (bits - 1));
  const qmax = 2 ** (bits - 1) - 1;
  const scaleShape = args.strategy === 'tensor' ? [1] : args.strategy === 'channel' ? [rows, 1] : [rows, cols / gs];
  const G = args.strategy === 'group' ? cols / gs : 1;
  let params: LoopParams;
  if (!lazy) {
    let rtn;
    try {
      rtn = quantizeRtn(weight, rows, cols, args, { scaleDtype, ...(args.strategy === 'group' && actorder === 'group' ? { gIdx } : {}) });
    } catch (error) {
      throw fail((error as Error).message);
    }
    if (rtn.kind !== 'int') throw fail('internal: integer parameters expected');
    params = { scale: rtn.scale, zeroPoint: rtn.zeroPoint, G, perTensor: args.strategy === 'tensor' };
  } else {
    params = { scale: new Float32Array(rows * G), zeroPoint: args.symmetric ? undefined : new Int8Array(rows * G), G, perTensor: false };
  }
  const channelArgs: QuantArgs = { ...args, strategy: 'channel', groupSize: undefined, actorder: undefined };

  const N = rows;
  const q = new Int8Array(rows * cols);
  /** Lazy parameters of the group at position j from its current values, [gs, N] position-major. */
  const observeGroup = (j: number, values: ArrayLike<number>, slice: Float32Array) => {
    for (let k = 0; k < gs; k++) for (let n = 0; n < N; n++) slice[n * gs + k] = values[k * N + n]!;
    const group = quantizeRtn(slice, N, gs, channelArgs, { scaleDtype, computeDtype: 'F32' });
    if (group.kind !== 'int') throw fail('internal: integer parameters expected');
    const g = groupOfPos[j]!;
    for (let n = 0; n < N; n++) {
      params.scale[n * G + g] = group.scale[n]!;
      if (params.zeroPoint) params.zeroPoint[n * G + g] = group.zeroPoint![n]!;
    }
  };
  const result = (loss: number, t2: number): GptqResult => ({
    rows,
    cols,
    args,
    q,
    scale: params.scale,
    scaleShape,
    scaleDtype,
    ...(params.zeroPoint ? { zeroPoint: params.zeroPoint } : {}),
    ...(gIdx ? { gIdx } : {}),
    saveGIdx: actorder === 'group',
    ...(perm ? { perm } : {}),
    loss,
    deadColumns,
    engine: algebra ? 'graph' : gemm.engine,
    where: algebra ? algebra.where : gemm.engine === 'ort' ? 'JavaScript with onnxruntime CPU Gemm' : 'JavaScript',
    precision,
    seconds: { factorize: (t1 - t0) / 1000, loop: (t2 - t1) / 1000 },
  });
  if (algebra) {
    const slice = new Float32Array(lazy ? N * gs : 0);
    const errsq = await algebra.columns({
      rows,
      cols,
      bits,
      R: R as Float32Array,
      weightColumns: (j0, j1, out) => {
        for (let j = j0; j < j1; j++) {
          const c = col(j);
          const o = (j - j0) * N;
          if (dead[c]) out.fill(0, o, o + N);
          else for (let n = 0; n < N; n++) out[o + n] = weight[n * cols + c]!;
        }
      },
      params: (j0, j1, scale, zero) => {
        for (let j = j0; j < j1; j++) {
          const o = (j - j0) * N;
          const g = groupOfPos[j]!;
          for (let n = 0; n < N; n++) {
            const cell = params.perTensor ? 0 : n * G + g;
            scale[o + n] = params.scale[cell]!;
            zero[o + n] = params.zeroPoint ? params.zeroPoint[cell]! : 0;
          }
        }
      },
      ...(lazy ? { lazyGroupSize: gs, observe: (j: number, values: Float32Array) => observeGroup(j, values, slice) } : {}),
      codes: (j0, j1, codes) => {
        for (let j = j0; j < j1; j++) {
          const c = col(j);
          const o = (j - j0) * N;
          for (let n = 0; n < N; n++) q[n * cols + c] = codes[o + n]!;
        }
      },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    let loss = 0;
    for (let j = 0; j < cols; j++) loss += (errsq[j]! * R[j * cols + j]! * R[j * cols + j]!) / 2;
    return result(loss, performance.now());
  }

  // 5. The column loop with blocked lazy updates.
  const acc = new Ctor(cols * N); // A, transposed: row j = accumulated Σ_{i<j} D_i R_ij over the output rows
  const outer = lazy ? Math.max(gs, Math.floor(blockSize / gs) * gs) : blockSize;
  let sub = 16;
  while (lazy && gs % sub !== 0) sub >>= 1;
  if (sub > outer) sub = outer;
  const w0 = new Ctor(outer * N); // original columns of the block (permuted, dead = 0)
  const dBlock = new Ctor(outer * N); // D = W₀ − Q for the block
  const wRow = new Float64Array(N);
  const slice = lazy ? new Float32Array(N * gs) : undefined;
  const tInv = new Float64Array(lazy ? gs * gs : 0);
  const groupRows = new Float64Array(lazy ? gs * N : 0);
  let loss = 0;
  for (let b0 = 0; b0 < cols; b0 += outer) {
    checkCancelled(options.signal);
    const b1 = Math.min(cols, b0 + outer);
    for (let n = 0; n < N; n++) {
      const row = n * cols;
      for (let j = b0; j < b1; j++) {
        const c = col(j);
        w0[(j - b0) * N + n] = dead[c] ? 0 : weight[row + c]!;
      }
    }
    for (let s0 = b0; s0 < b1; s0 += sub) {
      const s1 = Math.min(b1, s0 + sub);
      for (let j = s0; j < s1; j++) {
        const rjj = R[j * cols + j]!;
        const wOff = (j - b0) * N;
        const aOff = j * N;
        currentColumn(wRow, w0, wOff, acc, aOff, 1 / rjj, N);
        const g = groupOfPos[j]!;
        if (lazy && j % gs === 0) {
          // Observer on this group's columns as the textbook algorithm has them once every column before j
          // is applied. With A⁽ʲ⁾ = Σ_{i<j} D_i R_i· (what `acc` holds now for columns ≥ j: group starts are
          // sub-block starts, so nothing is pending), those values are W₀ + A⁽ʲ⁾ · R[j:, j:]⁻¹ (block inverse
          // of the triangular R), and for the group's columns only the leading gs × gs block of that inverse
          // matters: T = R[j:j+gs, j:j+gs]⁻¹.
          for (let c2 = 0; c2 < gs; c2++) {
            tInv[c2 * gs + c2] = 1 / R[(j + c2) * cols + j + c2]!;
            for (let r2 = c2 - 1; r2 >= 0; r2--) {
              let t = 0;
              for (let p = r2 + 1; p <= c2; p++) t -= R[(j + r2) * cols + j + p]! * tInv[p * gs + c2]!;
              tInv[r2 * gs + c2] = t / R[(j + r2) * cols + j + r2]!;
            }
          }
          for (let k = 0; k < gs; k++) {
            const kw = (j + k - b0) * N;
            for (let n = 0; n < N; n++) groupRows[k * N + n] = w0[kw + n]!;
            for (let l = 0; l <= k; l++) {
              const t = tInv[l * gs + k]!;
              const la = (j + l) * N;
              for (let n = 0; n < N; n++) groupRows[k * N + n]! += acc[la + n]! * t;
            }
          }
          observeGroup(j, groupRows, slice!);
        }
        const dOff = (j - b0) * N;
        const c = col(j);
        const lossJ = quantizeColumn(N, wRow, w0, dBlock, dOff, params.scale, params.zeroPoint, params.perTensor ? -1 : G, g, qmin, qmax, q, cols, c);
        loss += (lossJ * rjj * rjj) / 2;
        // Within the sub-block, column by column.
        for (let k = j + 1; k < s1; k++) {
          const r = R[j * cols + k]!;
          if (r === 0) continue;
          const ka = k * N;
          axpy(acc, ka, r, dBlock, dOff, N);
        }
      }
      // Rest of the block: A[s1:b1] += R[s0:s1, s1:b1]ᵀ · D[s0:s1].
      if (s1 < b1) await gemm.run(b1 - s1, N, s1 - s0, 1, R, s0 * cols + s1, cols, true, dBlock, (s0 - b0) * N, N, false, 1, acc, s1 * N, N);
    }
    // Lazy batch update of every later column: A[b1:] += R[b0:b1, b1:]ᵀ · D[b0:b1].
    if (b1 < cols) await gemm.run(cols - b1, N, b1 - b0, 1, R, b0 * cols + b1, cols, true, dBlock, 0, N, false, 1, acc, b1 * N, N);
  }

  return result(loss, performance.now());
}


