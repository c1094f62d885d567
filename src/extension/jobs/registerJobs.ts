import * as vscode from 'vscode';
import { dirname, join, resolve } from 'node:path';
import { promises as fs } from 'node:fs';
import { JobManager, JobRecord } from './jobManager';
import { JobsTreeProvider } from './jobsView';
import { MissingArgument, QuantizeCommandArgs, SpecContext, calibrateSpecFromUser, openJobResult, quantizeSpecFromUser } from './jobCommands';
import { RecipeChecker } from './recipePick';
import { PlanCommandArgs, planSpecFromUser } from './planCommand';
import { isCheckpointFolder } from '../recipeModel';
import { InspectorSession } from '../inspectorSession';
import type { JobSpec } from '../../core/jobs/jobSpec';

/** Set while the active editor is an inspector on a checkpoint that opened, in a folder with config.json. */
const MODEL_OPEN_KEY = 'quantlens.activeEditorIsModel';

/** An inspector view of `path` whose checkpoint could not be read. */
function failedInspector(path: string): boolean {
  return InspectorSession.all().some((s) => resolve(s.path) === resolve(path) && s.opened === false);
}

/**
 * Explorer and editor menus pass a Uri; programmatic callers pass an argument object. A Uri gives the model
 * only when its folder is a checkpoint (config.json with safetensors weights) that did not fail to open;
 * otherwise the model is asked for, and `modelNote` says why.
 */
async function argsFrom(target: unknown): Promise<{ args: QuantizeCommandArgs; modelNote?: string }> {
  if (target instanceof vscode.Uri) {
    const stat = await fs.stat(target.fsPath).catch(() => undefined);
    const dir = stat?.isDirectory() ? target.fsPath : dirname(target.fsPath);
    const name = vscode.workspace.asRelativePath(target);
    if (failedInspector(target.fsPath)) return { args: {}, modelNote: `${name} could not be read as a checkpoint` };
    if (!(await isCheckpointFolder(dir))) return { args: {}, modelNote: `${name} is not in a checkpoint folder (config.json with .safetensors weights)` };
    return { args: { model: dir } };
  }
  return { args: typeof target === 'object' && target !== null ? (target as QuantizeCommandArgs) : {} };
}

/** Keeps MODEL_OPEN_KEY true exactly while the active tab is an inspector whose checkpoint opened. */
function trackActiveModel(): vscode.Disposable {
  let generation = 0;
  const update = async () => {
    const mine = ++generation;
    const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
    let isModel = false;
    if (input instanceof vscode.TabInputCustom && (input.viewType === 'quantlens.checkpoint' || input.viewType === 'quantlens.checkpointIndex')) {
      const path = input.uri.fsPath;
      const session = InspectorSession.all().find((s) => resolve(s.path) === resolve(path));
      isModel = session?.opened === true && (await isCheckpointFolder(dirname(path)));
    }
    if (mine === generation) await vscode.commands.executeCommand('setContext', MODEL_OPEN_KEY, isModel);
  };
  void update();
  const changed = () => void update();
  return vscode.Disposable.from(vscode.window.tabGroups.onDidChangeTabs(changed), vscode.window.tabGroups.onDidChangeTabGroups(changed), InspectorSession.onDidChangeOpened(changed));
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
  const recipes = new RecipeChecker(join(root, 'dist', 'workers', 'recipe.worker.js'));
  const specContext = (modelNote?: string): SpecContext => ({ extensionRoot: root, running: (out) => manager.runningJobFor(out), recipes, modelNote });

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
    recipes,
    trackActiveModel(),
    vscode.commands.registerCommand('quantlens.quantizeModel', async (target?: unknown) => {
      if (!requireTrust()) return undefined;
      const { args, modelNote } = await argsFrom(target);
      return run(await specOrError(() => quantizeSpecFromUser(args, specContext(modelNote))), args);
    }),
    vscode.commands.registerCommand('quantlens.calibrate', async (target?: unknown) => {
      if (!requireTrust()) return undefined;
      const { args, modelNote } = await argsFrom(target);
      return run(await specOrError(() => calibrateSpecFromUser(args, specContext(modelNote))), args);
    }),
    vscode.commands.registerCommand('quantlens.planMixedPrecision', async (target?: unknown) => {
      if (!requireTrust()) return undefined;
      const { args, modelNote } = await argsFrom(target);
      const planArgs = args as PlanCommandArgs;
      return run(await specOrError(() => planSpecFromUser(planArgs, specContext(modelNote))), planArgs);
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
