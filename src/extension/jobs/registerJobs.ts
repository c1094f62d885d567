import * as vscode from 'vscode';
import { dirname } from 'node:path';
import { promises as fs } from 'node:fs';
import { JobManager, JobRecord } from './jobManager';
import { JobsTreeProvider } from './jobsView';
import { MissingArgument, QuantizeCommandArgs, calibrateSpecFromUser, openJobResult, quantizeSpecFromUser } from './jobCommands';
import type { JobSpec } from '../../core/jobs/jobSpec';

/** Explorer and editor menus pass a Uri; programmatic callers pass an argument object. */
async function argsFrom(target: unknown): Promise<QuantizeCommandArgs> {
  if (target instanceof vscode.Uri) {
    const stat = await fs.stat(target.fsPath).catch(() => undefined);
    return { model: stat?.isDirectory() ? target.fsPath : dirname(target.fsPath) };
  }
  return typeof target === 'object' && target !== null ? (target as QuantizeCommandArgs) : {};
}

function requireTrust(): boolean {
  if (vscode.workspace.isTrusted) return true;
  void vscode.window.showErrorMessage('QuantLens runs quantization and calibration jobs only in trusted workspaces: they execute native code over the workspace\'s files. Use "Manage Workspace Trust" to trust this folder.', 'Manage Workspace Trust').then((choice) => {
    if (choice) void vscode.commands.executeCommand('workbench.trust.manage');
  });
  return false;
}

async function specOrError(make: () => Promise<JobSpec | undefined>): Promise<JobSpec | undefined> {
  try {
    return await make();
  } catch (error) {
    if (!(error instanceof MissingArgument)) throw error;
    void vscode.window.showErrorMessage(`QuantLens: ${error.message}.`);
    return undefined;
  }
}

export function registerJobs(context: vscode.ExtensionContext, output: vscode.LogOutputChannel): JobManager {
  const manager = new JobManager(context, output);
  const tree = new JobsTreeProvider(manager);
  const view = vscode.window.createTreeView('quantlens.jobs', { treeDataProvider: tree, showCollapseAll: false });
  const root = context.extensionUri.fsPath;

  const run = async (spec: JobSpec | undefined, args: QuantizeCommandArgs): Promise<JobRecord | undefined> => {
    if (!spec) return undefined;
    const interactive = args.interactive !== false;
    try {
      return await manager.start(spec, { interactive, openResult: args.openResult ?? interactive });
    } catch (error) {
      void vscode.window.showErrorMessage(`QuantLens: ${(error as Error).message}`);
      return undefined;
    }
  };

  context.subscriptions.push(
    manager,
    tree,
    view,
    vscode.commands.registerCommand('quantlens.quantizeModel', async (target?: unknown) => {
      if (!requireTrust()) return undefined;
      const args = await argsFrom(target);
      return run(await specOrError(() => quantizeSpecFromUser(args, root, (out) => manager.runningJobFor(out))), args);
    }),
    vscode.commands.registerCommand('quantlens.calibrate', async (target?: unknown) => {
      if (!requireTrust()) return undefined;
      const args = await argsFrom(target);
      return run(await specOrError(() => calibrateSpecFromUser(args, root, (out) => manager.runningJobFor(out))), args);
    }),
    vscode.commands.registerCommand('quantlens.cancelJob', (target?: { job?: JobRecord } | string) => {
      const id = typeof target === 'string' ? target : target?.job?.id ?? manager.jobs.find((j) => j.status === 'running')?.id;
      return id ? manager.cancel(id) : false;
    }),
    vscode.commands.registerCommand('quantlens.openJobResult', (target?: { job?: JobRecord } | string) => {
      const id = typeof target === 'string' ? target : target?.job?.id ?? manager.jobs.find((j) => j.status === 'succeeded')?.id;
      return id ? openJobResult(manager, id) : undefined;
    }),
    vscode.commands.registerCommand('quantlens.showJobLog', () => output.show(true)),
    vscode.commands.registerCommand('quantlens.clearJobs', () => manager.clearFinished()),
  );
  return manager;
}
