/**
 * Client side of the analysis worker: typed calls with progress and cancellation. Used by the extension
 * (so the extension host's event loop never does the heavy work) and available to any other shell.
 */
import { WorkerLink } from '../util/workerLink';
import type { AnalysisMethods, FromWorker, MethodName, ToWorker } from '../workers/analysisProtocol';

export class CancelledByCaller extends Error {
  constructor() {
    super('cancelled');
  }
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (fraction: number, what?: string) => void;
}

interface AnalysisCall {
  resolve(value: unknown): void;
  reject(error: Error): void;
  onProgress?: CallOptions['onProgress'];
}

export class AnalysisClient {
  private readonly link: WorkerLink<FromWorker, AnalysisCall>;

  constructor(workerPath: string) {
    this.link = new WorkerLink<FromWorker, AnalysisCall>(
      workerPath,
      (message, call) => {
        if (message.type === 'progress') {
          call.onProgress?.(message.fraction, message.what);
          return false;
        }
        if (message.type === 'result') call.resolve(message.result);
        else call.reject(message.cancelled ? new CancelledByCaller() : new Error(message.message));
        return true;
      },
      (end) => new Error('error' in end ? `analysis worker failed: ${end.error.message}` : `analysis worker exited with code ${end.exitCode}`),
    );
  }

  call<M extends MethodName>(method: M, params: AnalysisMethods[M]['params'], options: CallOptions = {}): Promise<AnalysisMethods[M]['result']> {
    if (options.signal?.aborted) return Promise.reject(new CancelledByCaller());
    const id = this.link.newId();
    return new Promise((resolve, reject) => {
      this.link.send(id, { resolve: resolve as (v: unknown) => void, reject, onProgress: options.onProgress }, { type: 'run', id, method, params } satisfies ToWorker);
      options.signal?.addEventListener('abort', () => this.link.post({ type: 'cancel', id } satisfies ToWorker), { once: true });
    });
  }

  dispose(): Promise<void> {
    return this.link.dispose(new Error('analysis worker stopped'));
  }
}
