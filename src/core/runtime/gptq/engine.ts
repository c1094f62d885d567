/**
 * GPTQ's algebra on the job's execution provider: gptq.ts prepares the problem (act-order, dead columns,
 * dampening, group parameters) and this module runs its Cholesky factorisation and its column loop with the
 * lazy block updates through the graphs of graphs.ts, one onnxruntime session per graph, on the provider the
 * one device policy chose (device.ts) — the same graphs on the CPU, WebGPU and CUDA, in float32.
 *
 * Host ↔ device traffic per layer (in × in Hessian, out × in weight, blocks of w = 128 columns):
 *   - factorisation: each panel's columns and the factor to its left go in, the panel's factor comes back:
 *     about n³ / (6w) + n² floats (n = in);
 *   - column loop: per block, the finished D = W₀ − Q of the blocks before it and R's columns go in (left-looking:
 *     the accumulator never goes back), the block's codes and D come back: about out · in² / (2w) floats.
 * Device memory is bounded by the largest single run (docs/performance.md §8): max(in² / 4 + in · w,
 * out · in + in · w) floats plus the graphs' intermediates of one block (a few × out · w floats).
 *
 * A provider that cannot run the graphs is an error (DeviceUnavailableError), never a CPU run in its place;
 * on a GPU provider each kind of graph is opened once more in a child process at verbose log level
 * (placement.ts) so the job log says where its nodes run, and a node placed on the CPU is refused.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GptqAlgebra, GptqColumnsTask } from '../../quant/gptq';
import { DeviceReport, DeviceUnavailableError, explainCudaFailure, providerName } from '../device';
import { checkPlacement, describePlacement, summarizeNodes } from '../placement';
import { GRAPH_BLOCK, GptqGraphKind, graphKey, writeGptqGraph } from './graphs';
import { type Ort, createSession, loadOrt } from '../../util/ort';

/** Below this much work (multiply-adds of the factorisation and the updates) a CPU layer runs in JavaScript. */
export const CPU_MIN_WORK = 2 ** 28;

function checkCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new Error('cancelled');
}

/** A reusable float32 scratch buffer that grows to the largest size asked for. */
class Scratch {
  private buf = new Float32Array(0);
  get(size: number): Float32Array {
    if (this.buf.length < size) this.buf = new Float32Array(size);
    return this.buf.subarray(0, size);
  }
}

export interface GraphGptqOptions {
  /** Job log: where each kind of graph runs (GPU providers). */
  readonly log?: (line: string) => void;
  /** Folder for the graph files while sessions are created (a fresh folder inside it). Default: the OS temp folder. */
  readonly workDir?: string;
  /** On the CPU, layers with less work than this run in JavaScript (wants). Default CPU_MIN_WORK. */
  readonly cpuMinWork?: number;
}

export class GraphGptqAlgebra implements GptqAlgebra {
  readonly where: string;
  private readonly sessions = new Map<string, Promise<Ort.InferenceSession>>();
  private readonly verified = new Set<string>();
  private readonly scratch = Array.from({ length: 6 }, () => new Scratch());
  private closed = false;

  private constructor(readonly device: DeviceReport, private readonly folder: string, private readonly options: GraphGptqOptions) {
    this.where = `onnxruntime graphs on ${providerName(device.device)}`;
  }

  /**
   * GPU providers take every layer. On the CPU the graphs beat GPTQ in JavaScript (with onnxruntime's Gemm)
   * 1.7× at 1024×1024 and 2.8× at 4096×4096 (docs/performance.md §6); layers below 2²⁸ multiply-adds stay
   * in JavaScript, where they run in exact float64 in well under a second.
   */
  wants(rows: number, cols: number): boolean {
    return this.device.device !== 'cpu' || cols * cols * (cols / 3 + rows / 2) >= (this.options.cpuMinWork ?? CPU_MIN_WORK);
  }

  static async create(device: DeviceReport, options: GraphGptqOptions = {}): Promise<GraphGptqAlgebra> {
    if (device.failed) throw new DeviceUnavailableError(device.device, device.reason, device.detail);
    const folder = await fs.mkdtemp(join(options.workDir ?? tmpdir(), 'quantlens-gptq-'));
    return new GraphGptqAlgebra(device, folder, options);
  }

  private session(kind: GptqGraphKind): Promise<Ort.InferenceSession> {
    if (this.closed) throw new Error('internal: the GPTQ graph engine was used after close');
    const key = graphKey(kind);
    let session = this.sessions.get(key);
    if (!session) {
      session = this.open(kind, key);
      this.sessions.set(key, session);
      // A failed start is not cached: the next layer gets the same clear error rather than a stale promise.
      session.catch(() => this.sessions.delete(key));
    }
    return session;
  }

  private async open(kind: GptqGraphKind, key: string): Promise<Ort.InferenceSession> {
    const provider = providerName(this.device.device);
    const path = await writeGptqGraph(join(this.folder, `${key}.onnx`), kind);
    try {
      if (this.device.device !== 'cpu' && !this.verified.has(kind.kind)) {
        const report = await checkPlacement(path, this.device).catch((error: Error) => {
          throw this.unavailable(error.message);
        });
        this.options.log?.(`GPTQ ${kind.kind} graph: ${describePlacement(report)}`);
        if (report.onCpu.length) {
          throw new DeviceUnavailableError(this.device.device, `${provider} cannot run GPTQ's ${kind.kind} graph: onnxruntime would run ${summarizeNodes(report.onCpu)} on the CPU. Choose the CPU (--device cpu) for this job`);
        }
        this.verified.add(kind.kind);
      }
      return await createSession(path, { executionProviders: this.device.executionProviders }).catch((error: Error) => {
        throw this.unavailable(error.message);
      });
    } finally {
      await fs.rm(path, { force: true });
      await fs.rm(`${path}.data`, { force: true });
    }
  }

  private unavailable(message: string): Error {
    const device = this.device.device;
    if (device === 'cpu') return new Error(`GPTQ's graphs failed to load on the CPU provider: ${message}`);
    const reason = device === 'cuda' ? explainCudaFailure(message) : `onnxruntime's WebGPU provider cannot run GPTQ's graphs: ${message.split('\n')[0]}`;
    return new DeviceUnavailableError(device, `GPTQ on ${device}: ${reason}`, message);
  }

  private async run(kind: GptqGraphKind, feeds: Record<string, [Float32Array, number[]]>): Promise<Record<string, Float32Array>> {
    const ort = loadOrt();
    const session = await this.session(kind);
    const tensors: Record<string, Ort.Tensor> = {};
    for (const [name, [data, dims]] of Object.entries(feeds)) tensors[name] = new ort.Tensor('float32', data, dims);
    const out = await session.run(tensors);
    return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, t.data as Float32Array]));
  }

  async cholesky(a: Float32Array, n: number, signal?: AbortSignal): Promise<number> {
    for (let j0 = 0; j0 < n; j0 += GRAPH_BLOCK) {
      checkCancelled(signal);
      const j1 = Math.min(n, j0 + GRAPH_BLOCK);
      const w = j1 - j0;
      const M = n - j0;
      const panel = this.scratch[0]!.get(M * w);
      for (let r = 0; r < M; r++) panel.set(a.subarray((j0 + r) * n + j0, (j0 + r) * n + j1), r * w);
      const feeds: Record<string, [Float32Array, number[]]> = { panel: [panel, [M, w]] };
      if (j0 > 0) {
        const left = this.scratch[1]!.get(M * j0);
        for (let r = 0; r < M; r++) left.set(a.subarray((j0 + r) * n, (j0 + r) * n + j0), r * j0);
        feeds.left = [left, [M, j0]];
      }
      const out = await this.run({ kind: 'panel', width: w, left: j0 > 0, below: j1 < n }, feeds);
      const pivots = out.pivots!;
      for (let c = 0; c < w; c++) if (!(pivots[c]! > 0)) return j0 + c;
      const l11 = out.l11!;
      for (let r = 0; r < w; r++) a.set(l11.subarray(r * w, r * w + r + 1), (j0 + r) * n + j0);
      if (j1 < n) {
        const l21 = out.l21!;
        for (let r = 0; r < n - j1; r++) a.set(l21.subarray(r * w, (r + 1) * w), (j1 + r) * n + j0);
      }
    }
    return -1;
  }

  async columns(task: GptqColumnsTask): Promise<Float64Array> {
    const { rows: N, cols, R } = task;
    // Lazy group parameters are computed when a group starts: each group is one graph block then.
    const width = task.lazyGroupSize ?? GRAPH_BLOCK;
    const D = new Float32Array(cols * N);
    const errsq = new Float64Array(cols);
    for (let b0 = 0; b0 < cols; b0 += width) {
      checkCancelled(task.signal);
      const b1 = Math.min(cols, b0 + width);
      const w = b1 - b0;
      const w0 = this.scratch[0]!.get(w * N);
      task.weightColumns(b0, b1, w0);
      let acc: Float32Array;
      if (b0 === 0) {
        acc = this.scratch[1]!.get(w * N).fill(0);
      } else {
        const rcol = this.scratch[2]!.get(b0 * w);
        for (let i = 0; i < b0; i++) rcol.set(R.subarray(i * cols + b0, i * cols + b1), i * w);
        acc = (await this.run({ kind: 'accumulate' }, { d: [D.subarray(0, b0 * N), [b0, N]], rcol: [rcol, [b0, w]] })).acc!;
      }
      if (task.observe) task.observe(b0, (await this.run({ kind: 'observe' }, { w0: [w0, [w, N]], acc: [acc, [w, N]], tinv_t: [upperInverseTransposed(R, cols, b0, w), [w, w]] })).values!);
      const scale = this.scratch[3]!.get(w * N);
      const zero = this.scratch[4]!.get(w * N);
      task.params(b0, b1, scale, zero);
      const r = this.scratch[5]!.get(w * w + w);
      const strict = r.subarray(0, w * w).fill(0);
      const inv = r.subarray(w * w);
      for (let i = 0; i < w; i++) {
        const row = (b0 + i) * cols + b0;
        strict.set(R.subarray(row + i + 1, row + w), i * w + i + 1);
        inv[i] = 1 / R[row + i]!;
      }
      const out = await this.run({ kind: 'block', width: w, bits: task.bits }, {
        w0: [w0, [w, N]],
        acc: [acc, [w, N]],
        r: [strict, [w, w]],
        inv_diag: [inv, [w]],
        scale: [scale, [w, N]],
        zero: [zero, [w, N]],
      });
      task.codes(b0, b1, out.codes!);
      D.set(out.d!, b0 * N);
      const e = out.errsq!;
      for (let i = 0; i < w; i++) errsq[b0 + i] = e[i]!;
    }
    return errsq;
  }

  /** Releases the sessions and removes the graph folder. */
  async close(): Promise<void> {
    this.closed = true;
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of sessions) await s.then((session) => session.release(), () => undefined);
    await fs.rm(this.folder, { recursive: true, force: true });
  }
}

/**
 * T⁻ᵀ for T = R[b0:b0+w, b0:b0+w] (upper triangular), computed in float64 as gptq.ts's JS loop does: the
 * lazy observer's weights (values = W₀ + T⁻ᵀ · A).
 */
function upperInverseTransposed(R: Float32Array, cols: number, b0: number, w: number): Float32Array {
  const t = new Float64Array(w * w);
  const at = (i: number, j: number) => R[(b0 + i) * cols + b0 + j]!;
  for (let c = 0; c < w; c++) {
    t[c * w + c] = 1 / at(c, c);
    for (let r = c - 1; r >= 0; r--) {
      let s = 0;
      for (let p = r + 1; p <= c; p++) s -= at(r, p) * t[p * w + c]!;
      t[r * w + c] = s / at(r, r);
    }
  }
  const out = new Float32Array(w * w);
  for (let r = 0; r < w; r++) for (let c = 0; c < w; c++) out[c * w + r] = t[r * w + c]!;
  return out;
}
