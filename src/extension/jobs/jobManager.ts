import * as vscode from 'vscode';
import { join, resolve } from 'node:path';
import { JobProcess } from '../../core/jobs/jobProcess';
import { describeJob, JobSpec } from '../../core/jobs/jobSpec';
import { configuredDevice } from '../runtimeStatus';
import { describeDuration, formatPreflight, preflight } from '../../core/jobs/preflight';
import type { JobProgress, JobResult } from '../../core/jobs/runJob';
import { InspectorSession } from '../inspectorSession';
import { planViewOf, recordPlanJob } from '../planView';

export type JobStatus = 'checking' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

/** One run as the Jobs view shows it; persisted (without live state) across reloads. */
export interface JobRecord {
  readonly id: string;
  readonly spec: JobSpec;
  readonly title: string;
  status: JobStatus;
  readonly started: number;
  ended?: number;
  progress?: JobProgress;
  result?: JobResult;
  error?: string;
}

export interface StartOptions {
  /** Ask before going on with warnings and show notifications (false in tests and automation). */
  readonly interactive?: boolean;
  /** Open the result in the inspector, compared with the original, when the job succeeds. */
  readonly openResult?: boolean;
}

const STATE_KEY = 'quantlens.jobs';
const KEEP = 50;

/**
 * Runs jobs in child processes (one each), shows their progress as a cancellable notification, logs them in
 * the QuantLens output channel and keeps their history for the Jobs view.
 */
export class JobManager implements vscode.Disposable {
  private readonly records: JobRecord[];
  private readonly processes = new Map<string, JobProcess>();
  private readonly changed = new vscode.EventEmitter<JobRecord | undefined>();
  readonly onDidChange = this.changed.event;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly output: vscode.LogOutputChannel,
  ) {
    const saved = context.globalState.get<JobRecord[]>(STATE_KEY, []);
    // A job that was running when the window closed did not finish: say so instead of "running" forever.
    this.records = saved.map((r) => (r.status === 'running' || r.status === 'checking' ? { ...r, status: 'interrupted' as const, error: 'VS Code closed while the job ran' } : r));
  }

  get jobs(): readonly JobRecord[] {
    return this.records;
  }

  job(id: string): JobRecord | undefined {
    return this.records.find((r) => r.id === id);
  }

  /** "Quantize m → w8a8 (running since 10:02:03)" when a job of this window that has not ended writes `out`. */
  runningJobFor(out: string): string | undefined {
    const job = this.records.find((r) => (r.status === 'running' || r.status === 'checking') && resolve(r.spec.out) === resolve(out));
    return job ? `${job.title} (${job.status === 'checking' ? 'in its pre-flight check' : 'running'} since ${new Date(job.started).toLocaleTimeString()})` : undefined;
  }

  private save(record?: JobRecord): void {
    this.changed.fire(record);
    void this.context.globalState.update(
      STATE_KEY,
      this.records.slice(0, KEEP).map(({ progress: _progress, ...rest }) => rest),
    );
  }

  /**
   * Pre-flight, then run. Resolves with the finished record (also when the job failed, was cancelled or
   * was stopped by the pre-flight check).
   */
  async start(spec: JobSpec, options: StartOptions = {}): Promise<JobRecord> {
    if (!vscode.workspace.isTrusted) {
      throw new Error('QuantLens runs quantization and calibration jobs only in trusted workspaces (they execute native code over workspace files). Trust this workspace to run them.');
    }
    // Calibration runs where quantlens.runtime.device says (device.ts's policy), unless the spec already says.
    spec = { ...spec, device: spec.device ?? configuredDevice(this.output) };
    const record: JobRecord = { id: `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`, spec, title: describeJob(spec), status: 'checking', started: Date.now() };
    // One output, one job: a job of this window on the same output is named here; one of another window or
    // of the CLI holds the output's lock, which the pre-flight check reports (and the job itself would refuse).
    const busy = this.runningJobFor(spec.out);
    this.records.unshift(record);
    if (busy) {
      this.finish(record, 'failed', undefined, `${spec.out} is already being written by ${busy}; wait for it to finish or choose another output`);
      if (options.interactive) void vscode.window.showErrorMessage(`QuantLens: ${record.error}`);
      return record;
    }
    this.save(record);
    this.output.info(`${record.title}: pre-flight check`);
    const report = await preflight(spec);
    for (const line of formatPreflight(report).split('\n')) if (line) this.output.info(`  ${line}`);
    if (report.problems.length) {
      this.finish(record, 'failed', undefined, `pre-flight check failed: ${report.problems.join('; ')}`);
      if (options.interactive) {
        void vscode.window.showErrorMessage(`QuantLens: ${record.title} — the pre-flight check found ${report.problems.length === 1 ? 'a problem' : `${report.problems.length} problems`}.`, { modal: true, detail: report.problems.join('\n') });
      }
      return record;
    }
    if (options.interactive && report.warnings.length) {
      // A dialog that cannot be shown (a workbench refusing modals) is a "no", not a job stuck in its check.
      const go = await Promise.resolve(vscode.window.showWarningMessage(`QuantLens: ${record.title}`, { modal: true, detail: `${report.warnings.join('\n')}\n\nEstimated time: ${describeDuration(report.estimate?.seconds ?? 0)}.` }, 'Run Anyway')).catch(() => undefined);
      if (go !== 'Run Anyway') {
        this.finish(record, 'cancelled');
        return record;
      }
    }
    return this.run(record, options, report.estimate?.seconds);
  }

  private run(record: JobRecord, options: StartOptions, estimateSeconds?: number): Promise<JobRecord> {
    record.status = 'running';
    this.save(record);
    const script = vscode.Uri.joinPath(this.context.extensionUri, 'dist', 'workers', 'job.worker.js').fsPath;
    const graphCacheDir = join(this.context.globalStorageUri.fsPath, 'graphs');
    return Promise.resolve(
      vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `QuantLens: ${record.title}`, cancellable: true },
        async (progress, token) => {
          let reported = 0;
          let lastSaved = 0;
          const job = new JobProcess(record.spec, {
            script,
            graphCacheDir,
            preflightDone: true,
            onLog: (line) => this.output.info(`  ${line}`),
            onProgress: (p) => {
              record.progress = p;
              progress.report({ increment: Math.max(0, (p.fraction - reported) * 100), message: `${p.stage}${p.module ? ` ${p.module}` : ''}` });
              reported = Math.max(reported, p.fraction);
              const now = Date.now();
              if (now - lastSaved > 500) {
                lastSaved = now;
                this.changed.fire(record);
              }
            },
          });
          this.processes.set(record.id, job);
          token.onCancellationRequested(() => this.cancel(record.id));
          this.output.info(`${record.title}: started${estimateSeconds ? ` (estimated ${describeDuration(estimateSeconds)})` : ''}`);
          const outcome = await job.done;
          this.processes.delete(record.id);
          if (outcome.status === 'succeeded') this.finish(record, 'succeeded', outcome.result);
          else if (outcome.status === 'cancelled') this.finish(record, 'cancelled');
          else this.finish(record, 'failed', undefined, outcome.message);
          return record;
        },
      ),
    ).then(async (finished) => {
      if (finished.status === 'failed' && options.interactive) {
        const choice = await vscode.window.showErrorMessage(`QuantLens: ${finished.title} failed: ${finished.error}`, 'Show Log');
        if (choice === 'Show Log') this.output.show(true);
      }
      if (finished.status === 'succeeded' && finished.result?.kind === 'plan') {
        // The inspectors of the planned model show the new plan in their Error tab.
        const plan = finished.result.plan;
        recordPlanJob(finished.spec.model, plan.planFile);
        const view = planViewOf(plan);
        for (const session of InspectorSession.all()) if (session.modelFolder === resolve(finished.spec.model)) session.postPlan(view);
      }
      if (finished.status === 'succeeded' && options.openResult && (finished.spec.kind === 'quantize' || finished.spec.kind === 'plan')) {
        await vscode.commands.executeCommand('quantlens.openJobResult', finished.id);
      }
      if (finished.status === 'succeeded' && options.interactive && finished.spec.kind === 'calibrate') {
        void vscode.window.showInformationMessage(`QuantLens: calibration statistics written to ${finished.spec.out}.`);
      }
      return finished;
    });
  }

  private finish(record: JobRecord, status: JobStatus, result?: JobResult, error?: string): void {
    record.status = status;
    record.ended = Date.now();
    record.result = result;
    record.error = error;
    const seconds = ((record.ended - record.started) / 1000).toFixed(1);
    if (status === 'succeeded') this.output.info(`${record.title}: done in ${seconds} s → ${record.spec.out}`);
    else if (status === 'cancelled') this.output.warn(`${record.title}: cancelled after ${seconds} s; nothing was written`);
    else this.output.error(`${record.title}: failed after ${seconds} s: ${error}`);
    this.save(record);
  }

  /** Cancels a running job; its partial output is removed. */
  cancel(id: string): boolean {
    const job = this.processes.get(id);
    if (!job) return false;
    this.output.info(`${this.job(id)?.title ?? id}: cancelling…`);
    job.cancel();
    return true;
  }

  /** Removes finished jobs from the history. */
  clearFinished(): void {
    for (let i = this.records.length - 1; i >= 0; i--) if (!this.processes.has(this.records[i]!.id)) this.records.splice(i, 1);
    this.save();
  }

  dispose(): void {
    for (const job of this.processes.values()) job.cancel();
    this.changed.dispose();
  }
}
