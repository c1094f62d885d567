/**
 * The ONNX graphs that run GPTQ's algebra on an execution provider (CPU, WebGPU, CUDA: the same graphs on
 * each). Standard ONNX has no Cholesky or triangular solve, and onnxruntime's WebGPU provider has few ops
 * beyond what LLM inference needs (docs/runtime.md §7: no Round, for one), so everything here is MatMul,
 * Transpose, Slice, Concat, Reshape, element-wise Add/Sub/Mul/Div/Sqrt, Clip and ReduceSum, with the
 * 128-wide steps unrolled into graph nodes (docs/runtime.md §8):
 *
 * - `panel` (width w): one step of a left-looking blocked Cholesky of the n × n matrix A = L Lᵀ. Inputs: the
 *   panel's columns A[j0:, j0:j0+w] and the factor computed so far to its left, L[j0:, 0:j0]. The panel is
 *   first brought up to date with one MatMul (P = A − L_left · L_left[0:w]ᵀ), its w × w diagonal block is
 *   factorised column by column (w unrolled steps: pivot, square root, scaled column, rank-1 update), the
 *   triangular inverse of that block is formed by w unrolled forward-substitution rows, and the rows below
 *   are L21 = P21 · L11⁻ᵀ, one MatMul. Outputs L11, L21 and the pivots (before their square roots: the
 *   caller finds the first that is not positive, which the graph turns into NaN from there on).
 * - `accumulate`: A_block = Rcolᵀ · D — what the columns quantized before a block contribute to it (GPTQ's
 *   lazy batch update, done left-looking so that only the finished D goes to the device, never the whole
 *   accumulator back).
 * - `observe`: a group's columns as the textbook algorithm has them when the group starts (lazy group
 *   parameters: W₀ + T⁻ᵀ-weighted accumulator, gptq.ts).
 * - `block` (width w, bits): the column loop of one block, exactly gptq.ts's: per column, its current value
 *   w = W₀ + A · (1/R_jj), the code clamp(rne(w / s + z)), the dequantized value and D = W₀ − deq, Σ (w − deq)²,
 *   and the update of the next columns — rank-1 within 16-column sub-blocks, one MatMul for the rest of the
 *   block. Round-half-to-even is (x + 1.5·2²³) − 1.5·2²³ in float32 (exact for |x| < 2²², and larger values
 *   are clamped anyway), since WebGPU has no Round.
 *
 * Shapes: N (the weight's rows), M and K (panel rows, columns to the left) are symbolic, so one graph serves
 * every layer with the same block width.
 */
import { DataType, GraphBuilder } from '../onnx/builder';

/** Columns per graph step: GPTQ's block_size default; only the rounding order depends on it. */
export const GRAPH_BLOCK = 128;
/** Columns per rank-1 sub-block inside a block (as gptq.ts's JS loop). */
const SUB_BLOCK = 16;
/** 1.5·2²³: adding and subtracting it rounds a float32 to the nearest integer, ties to even. */
const RNE32 = 12582912;

export type GptqGraphKind =
  | { readonly kind: 'panel'; readonly width: number; readonly left: boolean; readonly below: boolean }
  | { readonly kind: 'accumulate' }
  | { readonly kind: 'observe' }
  | { readonly kind: 'block'; readonly width: number; readonly bits: number };

export function graphKey(kind: GptqGraphKind): string {
  switch (kind.kind) {
    case 'panel':
      return `panel-${kind.width}${kind.left ? '-left' : ''}${kind.below ? '-below' : ''}`;
    case 'block':
      return `block-${kind.width}-int${kind.bits}`;
    default:
      return kind.kind;
  }
}

/** Slices and constants with the few node patterns these graphs repeat. */
class Ops {
  private readonly ints = new Map<string, string>();
  constructor(readonly g: GraphBuilder) {}

  int64(values: readonly number[]): string {
    const key = values.join(',');
    let name = this.ints.get(key);
    if (!name) this.ints.set(key, (name = this.g.int64s('i', values)));
    return name;
  }

  /** x[start:end] along `axis`. */
  slice(x: string, start: number, end: number, axis: number): string {
    return this.g.op('Slice', [x, this.int64([start]), this.int64([end]), this.int64([axis])]);
  }

  /** x[r0:r1, c0:c1]. */
  slice2(x: string, r0: number, r1: number, c0: number, c1: number): string {
    return this.g.op('Slice', [x, this.int64([r0, c0]), this.int64([r1, c1]), this.int64([0, 1])]);
  }

  concat(parts: readonly string[], axis: number): string {
    return parts.length === 1 ? parts[0]! : this.g.op('Concat', parts, { axis });
  }

  /**
   * x cut into `count` pieces of 1 along `axis`, as one Slice each: WebGPU's Split binds every output to one
   * shader, and more than the adapter's storage buffers per shader stage fail (SwiftShader: 12; docs/runtime.md §8).
   */
  pieces(x: string, count: number, axis: number): string[] {
    if (count === 1) return [x];
    return Array.from({ length: count }, (_, i) => this.slice(x, i, i + 1, axis));
  }
}

function buildPanel(g: GraphBuilder, w: number, left: boolean, below: boolean): void {
  const o = new Ops(g);
  let p = g.input('panel', DataType.FLOAT, [below ? 'M' : w, w]);
  if (left) {
    const l = g.input('left', DataType.FLOAT, [below ? 'M' : w, 'K']);
    const top = o.slice(l, 0, w, 0);
    p = g.op('Sub', [p, g.op('MatMul', [l, g.op('Transpose', [top], { perm: [1, 0] })])]);
  }
  let x = below ? o.slice(p, 0, w, 0) : p;
  const columns: string[] = [];
  const roots: string[] = [];
  const pivots: string[] = [];
  const rowShape = o.int64([1, w]);
  for (let c = 0; c < w; c++) {
    const column = o.slice(x, c, c + 1, 1); // [w, 1]
    const pivot = o.slice(column, c, c + 1, 0); // [1, 1]
    const root = g.op('Sqrt', [pivot]);
    const mask = g.constant('rows_from', DataType.FLOAT, [w, 1], Float32Array.from({ length: w }, (_, r) => (r >= c ? 1 : 0)));
    const l = g.op('Div', [g.op('Mul', [column, mask]), root]);
    columns.push(l);
    roots.push(root);
    pivots.push(pivot);
    if (c + 1 < w) x = g.op('Sub', [x, g.op('Mul', [l, g.op('Reshape', [l, rowShape])])]);
  }
  const l11 = o.concat(columns, 1);
  g.output(l11, DataType.FLOAT, [w, w], 'l11');
  g.output(g.op('Reshape', [o.concat(pivots, 0), o.int64([w])]), DataType.FLOAT, [w], 'pivots');
  if (!below) return;
  // Z = L11⁻¹ row by row: z_c = (e_c − L[c, 0:c] · Z[0:c]) / L[c, c].
  const rows: string[] = [];
  for (let c = 0; c < w; c++) {
    const unit = g.constant('unit_row', DataType.FLOAT, [1, w], Float32Array.from({ length: w }, (_, k) => (k === c ? 1 : 0)));
    const numerator = c === 0 ? unit : g.op('Sub', [unit, g.op('MatMul', [o.slice2(l11, c, c + 1, 0, c), o.concat(rows, 0)])]);
    rows.push(g.op('Div', [numerator, roots[c]!]));
  }
  const inverse = o.concat(rows, 0);
  const p21 = o.slice(p, w, 2 ** 62, 0);
  g.output(g.op('MatMul', [p21, g.op('Transpose', [inverse], { perm: [1, 0] })]), DataType.FLOAT, ['B', w], 'l21');
}

function buildAccumulate(g: GraphBuilder): void {
  const d = g.input('d', DataType.FLOAT, ['K', 'N']);
  const r = g.input('rcol', DataType.FLOAT, ['K', 'W']);
  g.output(g.op('MatMul', [g.op('Transpose', [r], { perm: [1, 0] }), d]), DataType.FLOAT, ['W', 'N'], 'acc');
}

function buildObserve(g: GraphBuilder): void {
  const w0 = g.input('w0', DataType.FLOAT, ['W', 'N']);
  const acc = g.input('acc', DataType.FLOAT, ['W', 'N']);
  const t = g.input('tinv_t', DataType.FLOAT, ['W', 'W']);
  g.output(g.op('Add', [w0, g.op('MatMul', [t, acc])]), DataType.FLOAT, ['W', 'N'], 'values');
}

function buildBlock(g: GraphBuilder, w: number, bits: number): void {
  const o = new Ops(g);
  const w0 = o.pieces(g.input('w0', DataType.FLOAT, [w, 'N']), w, 0);
  let tail = g.input('acc', DataType.FLOAT, [w, 'N']);
  const rt = g.op('Transpose', [g.input('r', DataType.FLOAT, [w, w])], { perm: [1, 0] }); // rt[k, j] = R[j, k], j < k
  const inv = o.pieces(g.input('inv_diag', DataType.FLOAT, [w]), w, 0);
  const scale = o.pieces(g.input('scale', DataType.FLOAT, [w, 'N']), w, 0);
  const zero = o.pieces(g.input('zero', DataType.FLOAT, [w, 'N']), w, 0);
  const magic = g.float32s('rne', [RNE32]);
  const qmin = g.float32s('qmin', [-(2 ** (bits - 1))]);
  const qmax = g.float32s('qmax', [2 ** (bits - 1) - 1]);
  const axis1 = o.int64([1]);
  const codes: string[] = [];
  const diffs: string[] = [];
  const errors: string[] = [];
  for (let s0 = 0; s0 < w; s0 += SUB_BLOCK) {
    const s1 = Math.min(w, s0 + SUB_BLOCK);
    const m = s1 - s0;
    let sub = s1 === w ? tail : o.slice(tail, 0, m, 0);
    const rest = s1 === w ? undefined : o.slice(tail, m, w - s0, 0);
    const subDiffs: string[] = [];
    for (let j = s0; j < s1; j++) {
      const a = m === 1 ? sub : o.slice(sub, j - s0, j - s0 + 1, 0);
      const value = g.op('Add', [w0[j]!, g.op('Mul', [a, inv[j]!])]);
      const shifted = g.op('Add', [g.op('Div', [value, scale[j]!]), zero[j]!]);
      const code = g.op('Clip', [g.op('Sub', [g.op('Add', [shifted, magic]), magic]), qmin, qmax]);
      const deq = g.op('Mul', [g.op('Sub', [code, zero[j]!]), scale[j]!]);
      const d = g.op('Sub', [w0[j]!, deq]);
      const e = g.op('Sub', [value, deq]);
      errors.push(g.op('ReduceSum', [g.op('Mul', [e, e]), axis1], { keepdims: 0 }));
      codes.push(code);
      subDiffs.push(d);
      if (j + 1 < s1) sub = g.op('Add', [sub, g.op('Mul', [o.slice2(rt, s0, s1, j, j + 1), d])]);
    }
    diffs.push(...subDiffs);
    if (rest) tail = g.op('Add', [rest, g.op('MatMul', [o.slice2(rt, s1, w, s0, s1), o.concat(subDiffs, 0)])]);
  }
  g.output(o.concat(codes, 0), DataType.FLOAT, [w, 'N'], 'codes');
  g.output(o.concat(diffs, 0), DataType.FLOAT, [w, 'N'], 'd');
  g.output(o.concat(errors, 0), DataType.FLOAT, [w], 'errsq');
}

/** Writes one of the graphs to `modelPath` (everything inline: the graphs carry no weights). */
export async function writeGptqGraph(modelPath: string, kind: GptqGraphKind): Promise<string> {
  const g = await GraphBuilder.create({ modelPath, graphName: `gptq_${graphKey(kind).replace(/-/g, '_')}`, inlineLimit: 1 << 24 });
  try {
    if (kind.kind === 'panel') buildPanel(g, kind.width, kind.left, kind.below);
    else if (kind.kind === 'accumulate') buildAccumulate(g);
    else if (kind.kind === 'observe') buildObserve(g);
    else buildBlock(g, kind.width, kind.bits);
  } catch (error) {
    await g.abort();
    throw error;
  }
  return (await g.finish()).modelPath;
}
