/**
 * The parent side of a job child process (job.worker.ts): start, progress, log, cancel. Cancel is honoured
 * within a second: the child is asked to stop, and if it has not stopped after `cancelGraceMs` (a long
 * native call may not look at the abort signal in time) it is killed. Whenever the child ends without a
 * result, what it left beside the target (its lock, `.<name>.<random>.partial` folders) is removed here —
 * only what a dead owner left: another job's files for the same output (a job refused because that one holds
 * the output) are never touched (outputLock.ts removeStaleOutputs).
 */
import { fork, ChildProcess } from 'node:child_process';
import { describeJob, JobSpec } from './jobSpec';
import { removeStaleOutputs } from './outputLock';
import type { DevicePreference, DeviceReport } from '../runtime/device';
import type { JobProgress, JobResult } from './runJob';

export type JobToChild =
  | { readonly type: 'start'; readonly spec: JobSpec; readonly graphCacheDir?: string; readonly preflightDone?: boolean; readonly command?: string }
  | { readonly type: 'cancel' }
  | { readonly type: 'probeDevice'; readonly preference: DevicePreference };

export type JobFromChild =
  | { readonly type: 'progress'; readonly progress: JobProgress }
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'result'; readonly result: JobResult }
  | { readonly type: 'cancelled' }
  | { readonly type: 'device'; readonly report: DeviceReport }
  | { readonly type: 'error'; readonly message: string; readonly preflight?: string[] };

export type JobOutcome =
  | { readonly status: 'succeeded'; readonly result: JobResult }
  | { readonly status: 'cancelled' }
  | { readonly status: 'failed'; readonly message: string };

export interface JobProcessOptions {
  /** dist/workers/job.worker.js */
  readonly script: string;
  readonly graphCacheDir?: string;
  readonly preflightDone?: boolean;
  readonly onProgress?: (progress: JobProgress) => void;
  readonly onLog?: (line: string) => void;
  readonly cancelGraceMs?: number;
  /** Extra environment for the child (e.g. thread counts). */
  readonly env?: NodeJS.ProcessEnv;
  /** What the job's owner records call it. Default: the job's description and this process's pid. */
  readonly command?: string;
}

export class JobProcess {
  readonly done: Promise<JobOutcome>;
  private readonly child: ChildProcess;
  private cancelRequested = false;
  private exited = false;

  constructor(readonly spec: JobSpec, private readonly options: JobProcessOptions) {
    this.child = fork(options.script, [], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, ...options.env },
      serialization: 'advanced',
    });
    let stderr = '';
    this.child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    this.child.stdout?.on('data', (chunk: Buffer) => options.onLog?.(chunk.toString().trimEnd()));
    this.done = new Promise<JobOutcome>((resolveOutcome) => {
      let outcome: JobOutcome | undefined;
      this.child.on('message', (message: JobFromChild) => {
        switch (message.type) {
          case 'progress':
            options.onProgress?.(message.progress);
            break;
          case 'log':
            options.onLog?.(message.line);
            break;
          case 'result':
            outcome = { status: 'succeeded', result: message.result };
            break;
          case 'cancelled':
            outcome = { status: 'cancelled' };
            break;
          case 'error':
            outcome = { status: 'failed', message: message.message };
            break;
        }
      });
      this.child.on('error', (error) => {
        outcome ??= { status: 'failed', message: `the job process could not run: ${error.message}` };
      });
      this.child.on('exit', (code, signal) => {
        this.exited = true;
        void (async () => {
          if (!outcome) {
            if (this.cancelRequested) outcome = { status: 'cancelled' };
            else {
              const reason = signal === 'SIGKILL' ? 'it was killed (out of memory?)' : `it exited with ${signal ?? `code ${code}`}`;
              outcome = { status: 'failed', message: `the job process stopped before finishing: ${reason}${stderr.trim() ? `\n${stderr.trim()}` : ''}` };
            }
          }
          if (outcome.status !== 'succeeded') {
            const { removed } = await removeStaleOutputs(spec.out, (line) => options.onLog?.(line)).catch(() => ({ removed: [] }));
            if (removed.length && outcome.status === 'failed' && !/partial output was removed/.test(outcome.message)) {
              outcome = { ...outcome, message: `${outcome.message}\n(what it left was removed: ${removed.map((r) => r.path).join(', ')})` };
            }
          }
          resolveOutcome(outcome);
        })();
      });
    });
    const command = options.command ?? `QuantLens job process of pid ${process.pid}: ${describeJob(spec)} → ${spec.out}`;
    this.child.send({ type: 'start', spec, graphCacheDir: options.graphCacheDir, preflightDone: options.preflightDone, command } satisfies JobToChild);
  }

  /** Asks the job to stop; kills it if it has not stopped within the grace period. */
  cancel(): void {
    if (this.exited || this.cancelRequested) return;
    this.cancelRequested = true;
    if (this.child.connected) this.child.send({ type: 'cancel' } satisfies JobToChild);
    const timer = setTimeout(() => {
      if (!this.exited) this.child.kill('SIGKILL');
    }, this.options.cancelGraceMs ?? 800);
    timer.unref();
  }
}

/** Runs the device probe (detectDevice) in a short-lived child process. */
export function probeDeviceInChild(script: string, preference: DevicePreference, timeoutMs = 60_000): Promise<DeviceReport> {
  return new Promise((resolveReport) => {
    const child = fork(script, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'advanced' });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
    const fallback = (reason: string): DeviceReport => ({ device: 'cpu', reason, executionProviders: ['cpu'], failed: preference === 'cuda' || preference === 'webgpu', detail: stderr.trim() || undefined });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    let report: DeviceReport | undefined;
    child.on('message', (message: JobFromChild) => {
      if (message.type === 'device') report = message.report;
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      resolveReport(fallback(`CPU: the device probe could not start (${error.message})`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolveReport(report ?? fallback(`CPU: the device probe crashed (${signal ?? `exit code ${code}`}); see the QuantLens log`));
    });
    child.send({ type: 'probeDevice', preference } satisfies JobToChild);
  });
}
