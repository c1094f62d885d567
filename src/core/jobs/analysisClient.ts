/**
 * Client side of the analysis worker: typed calls with progress and cancellation. Used by the extension
 * (so the extension host's event loop never does the heavy work) and available to any other shell.
 */
import { Worker } from 'node:worker_threads';
import type { AnalysisMethods, FromWorker, MethodName, ToWorker } from '../workers/protocol';

export class CancelledByCaller extends Error {
  constructor() {
    super('cancelled');
  }
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (fraction: number, what?: string) => void;
}

export class AnalysisClient {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; onProgress?: CallOptions['onProgress'] }>();

  constructor(private readonly workerPath: string) {}

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(this.workerPath);
    worker.on('message', (message: FromWorker) => {
      const call = this.pending.get(message.id);
      if (!call) return;
      if (message.type === 'progress') {
        call.onProgress?.(message.fraction, message.what);
        return;
      }
      this.pending.delete(message.id);
      if (message.type === 'result') call.resolve(message.result);
      else call.reject(message.cancelled ? new CancelledByCaller() : new Error(message.message));
    });
    // A crashed worker fails its calls with the reason; the next call starts a fresh one.
    const fail = (error: Error) => {
      for (const call of this.pending.values()) call.reject(error);
      this.pending.clear();
      this.worker = undefined;
    };
    worker.on('error', (error) => fail(new Error(`analysis worker failed: ${error.message}`)));
    worker.on('exit', (code) => {
      if (this.worker === worker) fail(new Error(`analysis worker exited with code ${code}`));
    });
    worker.unref();
    this.worker = worker;
    return worker;
  }

  call<M extends MethodName>(method: M, params: AnalysisMethods[M]['params'], options: CallOptions = {}): Promise<AnalysisMethods[M]['result']> {
    if (options.signal?.aborted) return Promise.reject(new CancelledByCaller());
    const worker = this.ensureWorker();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onProgress: options.onProgress });
      options.signal?.addEventListener('abort', () => worker.postMessage({ type: 'cancel', id } satisfies ToWorker), { once: true });
      worker.postMessage({ type: 'run', id, method, params } satisfies ToWorker);
    });
  }

  async dispose(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    for (const call of this.pending.values()) call.reject(new Error('analysis worker stopped'));
    this.pending.clear();
    await worker?.terminate();
  }
}
