/**
 * Client of the recipe worker (src/core/workers/recipe.worker.ts): recipe analysis on its own thread, within
 * a time and a memory budget, one run at a time. Runs are keyed (a document, a preview page, "hover"): a new
 * run for a key supersedes the one queued or running for it, so a document's analysis never waits behind
 * its own stale versions. The analysis is synchronous inside the worker, so a running one is stopped by
 * terminating the thread; the next run starts a fresh one. A run past its time budget is terminated the same
 * way; one past its heap budget is ended by V8 (`resourceLimits`). Either rejects with BudgetExceeded, which
 * `failedAnalysisDiagnostic` turns into the diagnostic the editor shows.
 */
import { WorkerLink } from '../util/workerLink';
import type { FromRecipeWorker, RecipeMethodName, RecipeMethods, ToRecipeWorker } from '../workers/recipeProtocol';
import type { Diagnostic } from './types';

export interface AnalysisBudget {
  /** Wall time of one run, worker start included. */
  readonly timeMs: number;
  /** The worker's old-generation heap (`resourceLimits.maxOldGenerationSizeMb`). */
  readonly memoryMb: number;
}

/** Validation and the preview: a real recipe takes milliseconds; a 1 MB one about a second. */
export const ANALYSIS_BUDGET: AnalysisBudget = { timeMs: 5_000, memoryMb: 512 };
/** Hovers and completion: the editor asks again as the cursor moves. */
export const EDITOR_SERVICE_BUDGET: AnalysisBudget = { timeMs: 2_000, memoryMb: 512 };

/** A newer run for the same key replaced this one (or the key was cancelled); its result would be stale. */
export class SupersededRun extends Error {
  constructor() {
    super('superseded by a newer analysis of the same document');
  }
}

/** The run went past its budget and was stopped. */
export class BudgetExceeded extends Error {
  constructor(
    readonly resource: 'time' | 'memory',
    readonly budget: AnalysisBudget,
  ) {
    super(resource === 'time' ? `the analysis ran past its ${budget.timeMs / 1000} s time budget and was stopped` : `the analysis ran past its ${budget.memoryMb} MB memory budget and was stopped`);
  }
}

interface Job {
  readonly key: string;
  readonly method: RecipeMethodName;
  readonly params: unknown;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface WorkerCall {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class RecipeWorker {
  private readonly link: WorkerLink<FromRecipeWorker, WorkerCall>;
  private readonly queue: Job[] = [];
  private running: { readonly job: Job; readonly timer: ReturnType<typeof setTimeout> } | undefined;
  private disposed = false;

  constructor(
    workerPath: string,
    readonly budget: AnalysisBudget = ANALYSIS_BUDGET,
  ) {
    this.link = new WorkerLink<FromRecipeWorker, WorkerCall>(
      workerPath,
      (message, call) => {
        if (message.type === 'result') call.resolve(message.result);
        else call.reject(new Error(message.message));
        return true;
      },
      (end) => {
        if ('error' in end && (end.error as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY') return new BudgetExceeded('memory', budget);
        return new Error('error' in end ? `recipe worker failed: ${end.error.message}` : `recipe worker exited with code ${end.exitCode}`);
      },
      { resourceLimits: { maxOldGenerationSizeMb: budget.memoryMb } },
    );
  }

  /** Runs `method` for `key`, superseding the run queued or running for the same key. */
  run<M extends RecipeMethodName>(key: string, method: M, params: RecipeMethods[M]['params']): Promise<RecipeMethods[M]['result']> {
    if (this.disposed) return Promise.reject(new Error('recipe analysis stopped'));
    return new Promise((resolve, reject) => {
      this.cancel(key);
      this.queue.push({ key, method, params, resolve: resolve as (value: unknown) => void, reject });
      this.pump();
    });
  }

  /** Drops the queued run for `key` and stops the running one (both reject with SupersededRun). */
  cancel(key: string): void {
    const queued = this.queue.findIndex((job) => job.key === key);
    if (queued >= 0) this.queue.splice(queued, 1)[0]!.reject(new SupersededRun());
    if (this.running?.job.key === key) this.stopRunning(new SupersededRun());
  }

  /** Whether a run for `key` is queued or running. */
  busy(key: string): boolean {
    return this.running?.job.key === key || this.queue.some((job) => job.key === key);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const stopped = new Error('recipe analysis stopped');
    for (const job of this.queue.splice(0)) job.reject(stopped);
    await this.link.dispose(stopped);
  }

  private pump(): void {
    if (this.running || this.disposed) return;
    const job = this.queue.shift();
    if (!job) return;
    const id = this.link.newId();
    const timer = setTimeout(() => this.stopRunning(new BudgetExceeded('time', this.budget)), this.budget.timeMs);
    const running = { job, timer };
    this.running = running;
    const finish = () => {
      clearTimeout(timer);
      if (this.running === running) this.running = undefined;
      this.pump();
    };
    const call: WorkerCall = {
      resolve: (value) => {
        finish();
        job.resolve(value);
      },
      reject: (error) => {
        finish();
        job.reject(error);
      },
    };
    try {
      this.link.send(id, call, { type: 'run', id, method: job.method, params: job.params } satisfies ToRecipeWorker);
    } catch (error) {
      call.reject(error instanceof Error ? error : new Error(String(error))); // e.g. params that cannot be cloned
    }
  }

  /** Terminates the worker: the running call fails with `reason`, and the next queued run starts a fresh worker. */
  private stopRunning(reason: Error): void {
    void this.link.dispose(reason);
  }
}

/** The diagnostic shown for a file whose analysis failed or went past its budget (at its first line). */
export function failedAnalysisDiagnostic(error: unknown): Diagnostic {
  const range = { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };
  if (error instanceof BudgetExceeded) {
    return { severity: 'error', code: 'too-complex', range, message: `QuantLens could not check this file: it is too large or complex to analyse (${error.message}); nothing in it was checked` };
  }
  return { severity: 'error', code: 'internal', range, message: `QuantLens could not check this file: ${error instanceof Error ? error.message : String(error)}` };
}
