/**
 * Client of the chat worker: loads a pair, runs turns with streamed callbacks, perplexity, stop. The
 * extension uses it so that generation never runs on the extension host's thread.
 */
import { WorkerLink } from '../util/workerLink';
import type { ChatEvents, ChatTurnResult, GenerationSettings } from './generation';
import type { ChatDevice, PairPerplexity } from './modelPair';
import type { FromChatWorker, LoadedPairInfo, ToChatWorker } from './workerHandler';

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
  private readonly link: WorkerLink<FromChatWorker, Pending>;

  constructor(workerPath: string) {
    this.link = new WorkerLink<FromChatWorker, Pending>(
      workerPath,
      (message, call) => {
        switch (message.type) {
          case 'progress':
            call.onProgress?.(message.what);
            return false;
          case 'token':
            call.events?.token?.(message.side, message.token, message.text);
            return false;
          case 'step':
            call.events?.step?.(message.step);
            return false;
          case 'sideDone':
            call.events?.done?.(message.side, message.stats);
            return false;
          case 'result':
            call.resolve(message.result);
            return true;
          case 'error':
            call.reject(new ChatWorkerError(message.code, message.message));
            return true;
        }
      },
      // A crashed worker (for example killed for memory) fails its calls in words; the next call starts afresh.
      (end) =>
        new ChatWorkerError(
          'WorkerFailed',
          'error' in end ? `the chat runtime failed: ${end.error.message}` : `the chat runtime stopped unexpectedly (exit code ${end.exitCode}); the models are unloaded — pick them again`,
        ),
    );
  }

  private call<T>(message: ToChatWorker & { id: number }, extra: Omit<Pending, 'resolve' | 'reject'> = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => this.link.send(message.id, { resolve: resolve as (v: unknown) => void, reject, ...extra }, message));
  }

  load(quantized: string, original: string | undefined, options: { device: ChatDevice; cacheDir: string; threads?: number; onProgress?: (what: string) => void }): Promise<LoadedPairInfo> {
    return this.call<LoadedPairInfo>(
      { type: 'load', id: this.link.newId(), quantized, ...(original ? { original } : {}), device: options.device, cacheDir: options.cacheDir, ...(options.threads ? { threads: options.threads } : {}) },
      { ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
    );
  }

  /** One turn; `compare` runs the original beside the quantized model (when the pair has one). */
  turn(system: string, prompt: string, settings: GenerationSettings, events: ChatEvents, compare = true): Promise<ChatTurnResult> {
    return this.call<ChatTurnResult>({ type: 'turn', id: this.link.newId(), system, prompt, settings, compare }, { events });
  }

  perplexity(text: string): Promise<PairPerplexity> {
    return this.call<PairPerplexity>({ type: 'perplexity', id: this.link.newId(), text });
  }

  clear(): Promise<void> {
    return this.call<void>({ type: 'clear', id: this.link.newId() });
  }

  /** Stops the running turn after its current step (its partial answers are kept). */
  stop(): void {
    this.link.post({ type: 'stop' } satisfies ToChatWorker);
  }

  dispose(): Promise<void> {
    return this.link.dispose(new ChatWorkerError('Disposed', 'the chat runtime was closed'));
  }
}
