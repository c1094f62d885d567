/**
 * Dense matrix products for GPTQ: C = beta·C + alpha·op(A)·op(B) on strided row-major views of Float32Array /
 * Float64Array buffers, computed either by plain loops (exact float64 accumulation, slow: ~0.4 GMAC/s on the
 * build machine) or by onnxruntime-node's CPU `Gemm` kernel (BLAS-class, multi-threaded, 15–50× faster), which
 * GPTQ needs for its two O(n³) parts (the Cholesky factorisation and the lazy block updates).
 *
 * onnxruntime-node is loaded on first use (util/ort.ts) and only if present; without it `createGemm('auto')` falls back to
 * the loops. The ONNX model for a Gemm is written here (a ModelProto with one node, dynamic dimensions), so no
 * protobuf package is needed. Products below `ORT_MIN_MACS` run in JS either way: a call into the runtime
 * costs ~0.2 ms.
 */
import { type Ort, tryLoadOrt } from '../util/ort';

export type FloatBuf = Float32Array | Float64Array;
export type Precision = 'float32' | 'float64';

/** One operand: `data[off + r·ld + c]` is element (r, c) of the matrix as stored (before any transpose). */
export interface Gemm {
  readonly engine: 'js' | 'ort';
  /**
   * C[m×n] = beta·C + alpha·op(A)·op(B), op(A) m×k, op(B) k×n. With transA, A is stored k×m; with transB, B
   * is stored n×k. C must not overlap A or B. beta is 0 or 1.
   */
  run(
    m: number, n: number, k: number, alpha: number,
    a: FloatBuf, aOff: number, lda: number, transA: boolean,
    b: FloatBuf, bOff: number, ldb: number, transB: boolean,
    beta: 0 | 1, c: FloatBuf, cOff: number, ldc: number,
  ): Promise<void> | void;
}

/** Plain loops; every product is accumulated in float64 before it is stored. */
export function gemmJs(
  m: number, n: number, k: number, alpha: number,
  a: FloatBuf, aOff: number, lda: number, transA: boolean,
  b: FloatBuf, bOff: number, ldb: number, transB: boolean,
  beta: 0 | 1, c: FloatBuf, cOff: number, ldc: number,
): void {
  if (beta === 0) for (let i = 0; i < m; i++) c.fill(0, cOff + i * ldc, cOff + i * ldc + n);
  if (m === 0 || n === 0 || k === 0) return;
  if (!transA && transB) {
    // Rows of A against rows of B: contiguous dot products.
    for (let i = 0; i < m; i++) {
      const ai = aOff + i * lda;
      const ci = cOff + i * ldc;
      for (let j = 0; j < n; j++) {
        const bj = bOff + j * ldb;
        let s0 = 0;
        let s1 = 0;
        let p = 0;
        for (; p + 1 < k; p += 2) {
          s0 += a[ai + p]! * b[bj + p]!;
          s1 += a[ai + p + 1]! * b[bj + p + 1]!;
        }
        if (p < k) s0 += a[ai + p]! * b[bj + p]!;
        c[ci + j]! += alpha * (s0 + s1);
      }
    }
    return;
  }
  if (!transB) {
    // C[i, :] += alpha · op(A)[i, p] · B[p, :]: contiguous row updates.
    for (let i = 0; i < m; i++) {
      const ci = cOff + i * ldc;
      for (let p = 0; p < k; p++) {
        const f = alpha * (transA ? a[aOff + p * lda + i]! : a[aOff + i * lda + p]!);
        if (f === 0) continue;
        const bp = bOff + p * ldb;
        for (let j = 0; j < n; j++) c[ci + j]! += f * b[bp + j]!;
      }
    }
    return;
  }
  // transA && transB (not used by GPTQ, kept for completeness).
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[aOff + p * lda + i]! * b[bOff + j * ldb + p]!;
      c[cOff + i * ldc + j]! += alpha * s;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// onnxruntime-node
// ---------------------------------------------------------------------------------------------------------

// Minimal protobuf writer for the ModelProto subset a one-node graph needs.
function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}
const key = (field: number, wire: number) => varint(field * 8 + wire);
const lengthDelimited = (field: number, bytes: readonly number[]) => [...key(field, 2), ...varint(bytes.length), ...bytes];
const text = (field: number, s: string) => lengthDelimited(field, [...Buffer.from(s, 'utf8')]);
const int = (field: number, v: number) => [...key(field, 0), ...varint(v)];
function float32Field(field: number, v: number): number[] {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return [...key(field, 5), ...b];
}

/** ONNX TensorProto.DataType: FLOAT = 1, DOUBLE = 11. */
function gemmModel(precision: Precision, alpha: number, transA: boolean, transB: boolean, withC: boolean): Uint8Array {
  const elemType = precision === 'float32' ? 1 : 11;
  // ValueInfoProto{name, type: TypeProto{tensor_type{elem_type, shape{dim{dim_param}…}}}}
  const valueInfo = (name: string, dims: string[]) =>
    [...text(1, name), ...lengthDelimited(2, lengthDelimited(1, [...int(1, elemType), ...lengthDelimited(2, dims.flatMap((d) => lengthDelimited(1, text(2, d))))]))];
  // AttributeProto{name, f | i, type (FLOAT = 1, INT = 2)}
  const attrFloat = (name: string, v: number) => lengthDelimited(5, [...text(1, name), ...float32Field(2, v), ...int(20, 1)]);
  const attrInt = (name: string, v: number) => lengthDelimited(5, [...text(1, name), ...int(3, v), ...int(20, 2)]);
  const node = [
    ...text(1, 'A'), ...text(1, 'B'), ...(withC ? text(1, 'C') : []), ...text(2, 'Y'), ...text(4, 'Gemm'),
    ...attrFloat('alpha', alpha), ...attrFloat('beta', withC ? 1 : 0), ...attrInt('transA', transA ? 1 : 0), ...attrInt('transB', transB ? 1 : 0),
  ];
  const graph = [
    ...lengthDelimited(1, node),
    ...text(2, 'gemm'),
    ...lengthDelimited(11, valueInfo('A', transA ? ['k', 'm'] : ['m', 'k'])),
    ...lengthDelimited(11, valueInfo('B', transB ? ['n', 'k'] : ['k', 'n'])),
    ...(withC ? lengthDelimited(11, valueInfo('C', ['m', 'n'])) : []),
    ...lengthDelimited(12, valueInfo('Y', ['m', 'n'])),
  ];
  // ModelProto{ir_version 8, graph, opset_import{domain "", version 17}}
  return Uint8Array.from([...int(1, 8), ...lengthDelimited(7, graph), ...lengthDelimited(8, [...text(1, ''), ...int(2, 17)])]);
}

/** Below this many multiply-adds a product runs in JS (the runtime call overhead would dominate). */
export const ORT_MIN_MACS = 1 << 21;

const sessions = new Map<string, Promise<Ort.InferenceSession>>();

class OrtGemm implements Gemm {
  readonly engine = 'ort' as const;
  private scratch: FloatBuf[] = [];
  constructor(private readonly ort: typeof Ort, private readonly precision: Precision) {}

  private session(alpha: number, transA: boolean, transB: boolean, withC: boolean): Promise<Ort.InferenceSession> {
    const id = `${this.precision}:${alpha}:${transA}:${transB}:${withC}`;
    let s = sessions.get(id);
    if (!s) {
      s = this.ort.InferenceSession.create(gemmModel(this.precision, alpha, transA, transB, withC), { graphOptimizationLevel: 'all' });
      sessions.set(id, s);
    }
    return s;
  }

  /** A contiguous view of a stored rows × cols operand (copied into scratch slot `slot` when strided). */
  private pack(slot: number, data: FloatBuf, off: number, ld: number, rows: number, cols: number): FloatBuf {
    if (ld === cols || rows <= 1) return data.subarray(off, off + rows * cols);
    const Ctor = this.precision === 'float32' ? Float32Array : Float64Array;
    let buf = this.scratch[slot];
    if (!buf || buf.length < rows * cols) this.scratch[slot] = buf = new Ctor(Math.max(rows * cols, Math.ceil((buf?.length ?? 0) * 1.5)));
    for (let r = 0; r < rows; r++) buf.set(data.subarray(off + r * ld, off + r * ld + cols), r * cols);
    return buf.subarray(0, rows * cols);
  }

  async run(
    m: number, n: number, k: number, alpha: number,
    a: FloatBuf, aOff: number, lda: number, transA: boolean,
    b: FloatBuf, bOff: number, ldb: number, transB: boolean,
    beta: 0 | 1, c: FloatBuf, cOff: number, ldc: number,
  ): Promise<void> {
    if (m * n * k < ORT_MIN_MACS) {
      gemmJs(m, n, k, alpha, a, aOff, lda, transA, b, bOff, ldb, transB, beta, c, cOff, ldc);
      return;
    }
    const type = this.precision;
    const A = this.pack(0, a, aOff, lda, transA ? k : m, transA ? m : k);
    const B = this.pack(1, b, bOff, ldb, transB ? n : k, transB ? k : n);
    const feeds: Record<string, Ort.Tensor> = {
      A: new this.ort.Tensor(type, A, transA ? [k, m] : [m, k]),
      B: new this.ort.Tensor(type, B, transB ? [n, k] : [k, n]),
    };
    if (beta === 1) feeds.C = new this.ort.Tensor(type, this.pack(2, c, cOff, ldc, m, n), [m, n]);
    const session = await this.session(alpha, transA, transB, beta === 1);
    const y = (await session.run(feeds)).Y!.data as FloatBuf;
    if (ldc === n) c.set(y, cOff);
    else for (let r = 0; r < m; r++) c.set(y.subarray(r * n, (r + 1) * n), cOff + r * ldc);
  }
}

const jsGemm: Gemm = { engine: 'js', run: gemmJs };

/** The Gemm for an engine ('auto': onnxruntime when it loads, else JS). Throws for 'ort' when it cannot load. */
export function createGemm(engine: 'auto' | 'js' | 'ort', precision: Precision): Gemm {
  if (engine === 'js') return jsGemm;
  const ort = tryLoadOrt();
  if (!ort) {
    if (engine === 'ort') throw new Error('onnxruntime-node could not be loaded (is it installed for this platform?); use engine "js"');
    return jsGemm;
  }
  return new OrtGemm(ort, precision);
}
