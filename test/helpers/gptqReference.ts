/**
 * GPTQ in float64 straight from the paper's pseudo-code (Frantar et al. 2023, Algorithm 1 without the lazy
 * batching): H⁻¹ formed explicitly, its upper Cholesky factor U, then column by column q_j = quant(w_j),
 * e = (w_j − q_j) / U_jj, w_k −= e · U_jk for k > j. Independent of src/core/quant/gptq.ts's blocked,
 * reversed-Cholesky formulation; the unit tests compare every engine (JS, onnxruntime graphs on each
 * provider) with it.
 */
import type { QuantArgs } from '../../src/core/quant/args';
import { quantizeRtn } from '../../src/core/quant/rtn';
import { rng } from './random';
import { roundToBf16 as bf16 } from './weights';

function gaussian(random: () => number): () => number {
  return () => {
    const u = Math.max(random(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
}

/** Heavy-tailed weight: Student-t-like rows with a few outlier input columns, rounded to bf16. */
export function heavyTailedWeight(rows: number, cols: number, seed: number): Float32Array {
  const random = rng(seed);
  const normal = gaussian(random);
  const colScale = Array.from({ length: cols }, () => (random() < 0.03 ? 3 : 1));
  const w = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const t = normal() / Math.sqrt(0.3 + random()); // heavier tails than a Gaussian
      w[r * cols + c] = bf16(0.02 * t * colScale[c]!);
    }
  }
  return w;
}

/** Correlated activations X [tokens, cols] = Z · M with heavy-tailed channel scales, and H = 2/n XᵀX. */
export function correlatedInputs(tokens: number, cols: number, seed: number, deadColumns: readonly number[] = []): { x: Float64Array; h: Float64Array } {
  const random = rng(seed);
  const normal = gaussian(random);
  const channel = Array.from({ length: cols }, () => Math.exp(1.2 * normal()));
  const mixing = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) mixing[i * cols + j] = (i === j ? 1 : 0) + 0.25 * normal() / Math.sqrt(cols);
  const z = new Float64Array(cols);
  const x = new Float64Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < cols; i++) z[i] = normal() * channel[i]!;
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let i = 0; i < cols; i++) s += z[i]! * mixing[i * cols + j]!;
      x[t * cols + j] = s;
    }
    for (const d of deadColumns) x[t * cols + d] = 0;
  }
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) {
    const row = t * cols;
    for (let i = 0; i < cols; i++) {
      const xi = x[row + i]!;
      if (xi === 0) continue;
      for (let j = 0; j < cols; j++) h[i * cols + j]! += xi * x[row + j]!;
    }
  }
  for (let i = 0; i < h.length; i++) h[i] = (2 / tokens) * h[i]!;
  return { x, h };
}

/** Lower Cholesky factor in float64 (throws when not positive definite). */
export function choleskyLower(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let s = a[j * n + j]!;
    for (let p = 0; p < j; p++) s -= l[j * n + p]! ** 2;
    if (!(s > 0)) throw new Error(`reference: not positive definite at ${j}`);
    l[j * n + j] = Math.sqrt(s);
    for (let i = j + 1; i < n; i++) {
      let t = a[i * n + j]!;
      for (let p = 0; p < j; p++) t -= l[i * n + p]! * l[j * n + p]!;
      l[i * n + j] = t / l[j * n + j]!;
    }
  }
  return l;
}

export interface ReferenceOptions {
  args: QuantArgs;
  damp: number;
  lazy: boolean;
}

/** GPTQ as in the paper (no blocking), returning the codes [rows, cols] in the original column order. */
export function referenceGptq(weight: Float32Array, rows: number, cols: number, hessian: Float64Array, o: ReferenceOptions): { q: Int8Array; scale: Float32Array; zeroPoint?: Int8Array; gIdx?: Int32Array } {
  const { args } = o;
  const gs = args.strategy === 'group' ? args.groupSize! : cols;
  const G = cols / gs;
  const diag = Array.from({ length: cols }, (_, i) => hessian[i * cols + i]!);
  const order = Array.from({ length: cols }, (_, i) => i);
  if (args.actorder) order.sort((a, b) => diag[b]! - diag[a]! || a - b);
  const groupAt = (j: number) => (args.strategy !== 'group' ? 0 : args.actorder === 'weight' ? Math.floor(order[j]! / gs) : Math.floor(j / gs));
  const gIdx = new Int32Array(cols);
  for (let j = 0; j < cols; j++) gIdx[order[j]!] = groupAt(j);
  // Permuted working copies.
  const w = new Float64Array(rows * cols);
  const h = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) h[i * cols + j] = hessian[order[i]! * cols + order[j]!]!;
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) w[r * cols + j] = weight[r * cols + order[j]!]!;
  for (let i = 0; i < cols; i++) {
    if (h[i * cols + i] === 0) {
      h[i * cols + i] = 1;
      for (let r = 0; r < rows; r++) w[r * cols + i] = 0;
    }
  }
  let mean = 0;
  for (let i = 0; i < cols; i++) mean += h[i * cols + i]! / cols;
  for (let i = 0; i < cols; i++) h[i * cols + i]! += o.damp * mean;
  // H⁻¹ = L⁻ᵀ L⁻¹, then U = cholesky(H⁻¹)ᵀ (upper).
  const l = choleskyLower(h, cols);
  const linv = new Float64Array(cols * cols);
  for (let c = 0; c < cols; c++) {
    linv[c * cols + c] = 1 / l[c * cols + c]!;
    for (let r = c + 1; r < cols; r++) {
      let t = 0;
      for (let p = c; p < r; p++) t -= l[r * cols + p]! * linv[p * cols + c]!;
      linv[r * cols + c] = t / l[r * cols + r]!;
    }
  }
  const hinv = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let p = Math.max(i, j); p < cols; p++) s += linv[p * cols + i]! * linv[p * cols + j]!;
      hinv[i * cols + j] = s;
    }
  }
  const lower = choleskyLower(hinv, cols);
  const U = (i: number, j: number) => lower[j * cols + i]!;
  // Parameters: upfront from the original weight (RTN's observer), or per group when it starts.
  let scale: Float32Array;
  let zeroPoint: Int8Array | undefined;
  if (!o.lazy) {
    const rtn = quantizeRtn(weight, rows, cols, args, args.actorder === 'group' ? { gIdx } : {});
    scale = rtn.scale;
    zeroPoint = rtn.zeroPoint as Int8Array | undefined;
  } else {
    scale = new Float32Array(rows * G);
    zeroPoint = args.symmetric ? undefined : new Int8Array(rows * G);
  }
  const qmin = -(2 ** (args.numBits - 1));
  const qmax = -qmin - 1;
  const q = new Int8Array(rows * cols);
  for (let j = 0; j < cols; j++) {
    const g = groupAt(j);
    if (o.lazy && j % gs === 0) {
      const slice = new Float32Array(rows * gs);
      for (let r = 0; r < rows; r++) for (let k = 0; k < gs; k++) slice[r * gs + k] = w[r * cols + j + k]!;
      const p = quantizeRtn(slice, rows, gs, { ...args, strategy: 'channel', groupSize: undefined, actorder: undefined }, { computeDtype: 'F32' });
      for (let r = 0; r < rows; r++) {
        scale[r * G + g] = p.scale[r]!;
        if (zeroPoint) zeroPoint[r * G + g] = (p.zeroPoint as Int8Array)[r]!;
      }
    }
    for (let r = 0; r < rows; r++) {
      const cell = r * G + g;
      const s = scale[cell]!;
      const z = zeroPoint ? zeroPoint[cell]! : 0;
      const value = w[r * cols + j]!;
      // Round half to even.
      const v = value / s + z;
      let code = Math.round(v);
      if (Math.abs(v - Math.trunc(v)) === 0.5) code = 2 * Math.round(v / 2);
      code = Math.min(qmax, Math.max(qmin, code));
      q[r * cols + order[j]!] = code;
      const e = (value - (code - z) * s) / U(j, j);
      for (let k = j + 1; k < cols; k++) w[r * cols + k]! -= e * U(j, k);
    }
  }
  return { q, scale, zeroPoint, ...(args.strategy === 'group' ? { gIdx } : {}) };
}
