/**
 * Client of the chat worker: loads a pair, runs turns with streamed callbacks, perplexity, stop. The
 * extension uses it so that generation never runs on the extension host's thread.
 */
import { Worker } from 'node:worker_threads';
import type { ChatEvents, ChatTurnResult, GenerationSettings } from './chat';
import type { ChatDevice, PairPerplexity } from './chatSession';
import type { FromChatWorker, LoadedPairInfo, ToChatWorker } from './chatWorker';

export class ChatWorkerError extends Error {
  override readonly name = 'ChatWorkerError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  events?: ChatEvents;
  onProgress?: (what: string) => void;
}

export class ChatClient {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly workerPath: string) {}

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(this.workerPath);
    worker.on('message', (message: FromChatWorker) => {
      const call = this.pending.get(message.id);
      if (!call) return;
      switch (message.type) {
        case 'progress':
          call.onProgress?.(message.what);
          return;
        case 'token':
          call.events?.token?.(message.side, message.token, message.text);
          return;
        case 'step':
          call.events?.step?.(message.step);
          return;
        case 'sideDone':
          call.events?.done?.(message.side, message.stats);
          return;
        case 'result':
          this.pending.delete(message.id);
          call.resolve(message.result);
          return;
        case 'error':
          this.pending.delete(message.id);
          call.reject(new ChatWorkerError(message.code, message.message));
          return;
      }
    });
    // A crashed worker (for example killed for memory) fails its calls in words; the next call starts afresh.
    const fail = (error: Error) => {
      for (const call of this.pending.values()) call.reject(error);
      this.pending.clear();
      this.worker = undefined;
    };
    worker.on('error', (error) => fail(new ChatWorkerError('WorkerFailed', `the chat runtime failed: ${error.message}`)));
    worker.on('exit', (code) => {
      if (this.worker === worker) fail(new ChatWorkerError('WorkerFailed', `the chat runtime stopped unexpectedly (exit code ${code}); the models are unloaded — pick them again`));
    });
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private call<T>(message: ToChatWorker & { id: number }, extra: Omit<Pending, 'resolve' | 'reject'> = {}): Promise<T> {
    const worker = this.ensureWorker();
    return new Promise<T>((resolve, reject) => {
      this.pending.set(message.id, { resolve: resolve as (v: unknown) => void, reject, ...extra });
      worker.postMessage(message);
    });
  }

  load(quantized: string, original: string | undefined, options: { device: ChatDevice; cacheDir: string; threads?: number; onProgress?: (what: string) => void }): Promise<LoadedPairInfo> {
    return this.call<LoadedPairInfo>(
      { type: 'load', id: this.nextId++, quantized, ...(original ? { original } : {}), device: options.device, cacheDir: options.cacheDir, ...(options.threads ? { threads: options.threads } : {}) },
      { ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
    );
  }

  /** One turn; `compare` runs the original beside the quantized model (when the pair has one). */
  turn(system: string, prompt: string, settings: GenerationSettings, events: ChatEvents, compare = true): Promise<ChatTurnResult> {
    return this.call<ChatTurnResult>({ type: 'turn', id: this.nextId++, system, prompt, settings, compare }, { events });
  }

  perplexity(text: string): Promise<PairPerplexity> {
    return this.call<PairPerplexity>({ type: 'perplexity', id: this.nextId++, text });
  }

  clear(): Promise<void> {
    return this.call<void>({ type: 'clear', id: this.nextId++ });
  }

  /** Stops the running turn after its current step (its partial answers are kept). */
  stop(): void {
    this.worker?.postMessage({ type: 'stop' } satisfies ToChatWorker);
  }

  async dispose(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    for (const call of this.pending.values()) call.reject(new ChatWorkerError('Disposed', 'the chat runtime was closed'));
    this.pending.clear();
    await worker?.terminate();
  }
}
