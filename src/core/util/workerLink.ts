/**
 * One lazily started worker thread and the calls waiting on it, by id: what the analysis and chat
 * clients share. The worker starts on the first call; it keeps the process alive only while calls are
 * pending (an idle worker never holds a CLI open, a busy one must, or a CLI awaiting it would exit). If it
 * crashes or exits, every pending call fails with the client's words for it and the next call starts a
 * fresh worker.
 */
import { Worker, WorkerOptions } from 'node:worker_threads';

export interface PendingCall {
  reject(error: Error): void;
}

export type WorkerEnd = { readonly error: Error } | { readonly exitCode: number };

export class WorkerLink<Out extends { readonly id?: number }, Call extends PendingCall> {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Call>();

  constructor(
    private readonly workerPath: string,
    /** Hands a message to its call; returns true when that settled the call (no more messages for it). */
    private readonly deliver: (message: Out, call: Call) => boolean,
    /** The error pending calls fail with when the worker crashes or exits on its own. */
    private readonly ended: (end: WorkerEnd) => Error,
    /** For every worker started (e.g. `resourceLimits`, which end a worker past its heap budget). */
    private readonly workerOptions: WorkerOptions = {},
  ) {}

  newId(): number {
    return this.nextId++;
  }

  /** Registers `call` under `id` and posts `message` to the worker (started if need be). */
  send(id: number, call: Call, message: unknown, transfer: readonly ArrayBuffer[] = []): void {
    const worker = this.ensureWorker();
    this.pending.set(id, call);
    worker.ref();
    try {
      worker.postMessage(message, transfer as ArrayBuffer[]);
    } catch (error) {
      this.settle(id);
      throw error;
    }
  }

  /** Posts a message that expects no answer (cancel, stop) to the running worker, if there is one. */
  post(message: unknown): void {
    this.worker?.postMessage(message);
  }

  /** Stops the worker; pending calls fail with `reason`. The next call starts a fresh worker. */
  async dispose(reason: Error): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.failAll(reason);
    await worker?.terminate();
  }

  private settle(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker?.unref();
  }

  private failAll(error: Error): void {
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) call.reject(error);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(this.workerPath, this.workerOptions);
    worker.on('message', (message: Out) => {
      const call = message.id === undefined ? undefined : this.pending.get(message.id);
      if (call && this.deliver(message, call)) this.settle(message.id!);
    });
    const fail = (end: WorkerEnd) => {
      if (this.worker !== worker) return; // disposed, or already replaced
      this.worker = undefined;
      this.failAll(this.ended(end));
    };
    worker.on('error', (error) => fail({ error }));
    worker.on('exit', (exitCode) => fail({ exitCode }));
    worker.unref();
    this.worker = worker;
    return worker;
  }
}
