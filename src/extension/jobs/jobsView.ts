import * as vscode from 'vscode';
import { basename } from 'node:path';
import { formatBytes } from '../../core/util/format';
import type { JobManager, JobRecord } from './jobManager';

type Node = { kind: 'job'; job: JobRecord } | { kind: 'detail'; job: JobRecord; label: string; description?: string; tooltip?: string; command?: vscode.Command };

const ICONS: Record<JobRecord['status'], vscode.ThemeIcon> = {
  checking: new vscode.ThemeIcon('loading~spin'),
  running: new vscode.ThemeIcon('sync~spin'),
  succeeded: new vscode.ThemeIcon('pass', new vscode.ThemeColor('testing.iconPassed')),
  failed: new vscode.ThemeIcon('error', new vscode.ThemeColor('testing.iconFailed')),
  cancelled: new vscode.ThemeIcon('circle-slash'),
  interrupted: new vscode.ThemeIcon('debug-disconnect'),
};

function elapsed(job: JobRecord): string {
  const seconds = ((job.ended ?? Date.now()) - job.started) / 1000;
  return seconds < 60 ? `${seconds.toFixed(seconds < 10 ? 1 : 0)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

/** The job's state in a few words (the item's description): the label is only the output's name. */
export function statusText(job: JobRecord): string {
  switch (job.status) {
    case 'checking':
      return 'pre-flight check';
    case 'running':
      return `${Math.round((job.progress?.fraction ?? 0) * 100)}% · ${job.progress?.stage ? `${job.progress.stage} · ` : ''}${elapsed(job)}`;
    default:
      return `${job.status} · ${elapsed(job)}`;
  }
}

/** The Jobs view's label of a job: the name of the folder or file it writes. */
export function jobLabel(job: JobRecord): string {
  return basename(job.spec.out) || job.spec.out;
}

/** Everything the label and description leave out: what the job does, its paths, state, stage and error. */
export function jobTooltip(job: JobRecord): string {
  const lines = [job.title, `Model: ${job.spec.model}`, `Output: ${job.spec.out}`, `${job.status} (${statusText(job)}), started ${new Date(job.started).toLocaleString()}`];
  if (job.progress && job.status === 'running') lines.push(`${job.progress.stage}${job.progress.module ? ` ${job.progress.module}` : ''}`);
  if (job.error) lines.push('', job.error);
  return lines.join('\n');
}

/** The "Jobs" view: each run's status, time and result; running ones can be cancelled from here. */
export class JobsTreeProvider implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly manager: JobManager) {
    this.subscription = manager.onDidChange(() => this.changed.fire(undefined));
  }

  getTreeItem(node: Node): vscode.TreeItem {
    if (node.kind === 'detail') {
      const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
      item.description = node.description;
      item.tooltip = node.tooltip;
      item.command = node.command;
      return item;
    }
    const job = node.job;
    // The view is narrow: a short label (the output's name) and the state beside it; the rest in the tooltip.
    const item = new vscode.TreeItem(jobLabel(job), vscode.TreeItemCollapsibleState.Collapsed);
    item.id = job.id;
    item.iconPath = ICONS[job.status];
    item.description = statusText(job);
    item.contextValue = `quantlens.job.${job.status}`;
    item.tooltip = new vscode.MarkdownString().appendText(jobTooltip(job));
    return item;
  }

  getChildren(node?: Node): Node[] {
    if (!node) return this.manager.jobs.map((job) => ({ kind: 'job', job }));
    if (node.kind === 'detail') return [];
    const job = node.job;
    const details: Node[] = [{ kind: 'detail', job, label: 'Model', description: job.spec.model, tooltip: job.spec.model }];
    details.push({ kind: 'detail', job, label: 'Output', description: job.spec.out, tooltip: job.spec.out, command: job.status === 'succeeded' ? { title: 'Open Result', command: 'quantlens.openJobResult', arguments: [job.id] } : undefined });
    const result = job.result;
    if (result?.kind === 'quantize') {
      const q = result.quantize;
      details.push({ kind: 'detail', job, label: 'Result', description: `${q.quantizedLayers} layers ${q.scheme}, ${formatBytes(q.inputBytes)} → ${formatBytes(q.outputBytes)}` });
    }
    if (result?.kind === 'plan') {
      const p = result.plan;
      details.push({ kind: 'detail', job, label: 'Result', description: `${p.layers.length} layers, ${formatBytes(p.bytes)} (${p.bitsPerWeight.toFixed(2)} bits per weight), summed KL ${p.totalKl.toPrecision(3)}` });
    }
    if (result && result.kind !== 'plan' && result.calibration) {
      const c = result.calibration;
      details.push({ kind: 'detail', job, label: 'Calibration', description: `${c.tokens} tokens, ${c.layers} layers, ${c.tokensPerSecond.toFixed(0)} tokens/s on ${c.device}` });
    }
    if (job.error) details.push({ kind: 'detail', job, label: 'Error', description: job.error.split('\n')[0], tooltip: job.error });
    return details;
  }

  dispose(): void {
    this.subscription.dispose();
    this.changed.dispose();
  }
}
