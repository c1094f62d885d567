import * as vscode from 'vscode';
import { promises as fs } from 'node:fs';
import { basename, dirname, join, relative, isAbsolute } from 'node:path';
import type { SchemeName } from '../../core/jobs/quantize';
import { CalibrationSource, DEFAULT_CALIBRATION, JobSpec } from '../../core/jobs/jobSpec';
import { preflight } from '../../core/jobs/preflight';
import { outputHolder } from '../../core/jobs/outputLock';
import { describeOwner } from '../../core/jobs/outputOwner';
import { defaultCalibrationDataset } from '../../core/runtime/dataset';
import type { JobManager } from './jobManager';
import { InspectorSession } from '../inspectorSession';
import { RecipeChecker, SchemeChoice, pickSchemeInteractively } from './recipePick';

/**
 * Arguments of "QuantLens: Quantize Model…" and "QuantLens: Calibrate…" when run programmatically (the
 * recipe preview's Run button, tests, other extensions). Whatever is missing is asked for with quick picks.
 */
export interface QuantizeCommandArgs {
  readonly model?: string;
  readonly preset?: SchemeName;
  readonly recipe?: string;
  /** A dataset file (txt, jsonl, json), 'default' for the shipped WikiText-2 sample, or a statistics file. */
  readonly calibration?: string;
  readonly samples?: number;
  readonly seqLen?: number;
  readonly output?: string;
  /** false: no questions, no notifications, no result opened (automation). Default true. */
  readonly interactive?: boolean;
  readonly openResult?: boolean;
}

export const CANCELLED = Symbol('cancelled');
export type Maybe<T> = T | typeof CANCELLED;

async function exists(path: string): Promise<boolean> {
  return fs.access(path).then(
    () => true,
    () => false,
  );
}

/** Float checkpoint folders in the workspace (config.json beside safetensors, not quantized). */
async function workspaceModels(): Promise<string[]> {
  const configs = await vscode.workspace.findFiles('**/config.json', '**/{node_modules,.git,.vscode-test}/**', 200);
  const models: string[] = [];
  for (const uri of configs) {
    const dir = dirname(uri.fsPath);
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    if (!names.some((n) => n.endsWith('.safetensors'))) continue;
    const config = await fs.readFile(uri.fsPath, 'utf8').then((t) => JSON.parse(t) as Record<string, unknown>, () => undefined);
    if (!config || config.quantization_config) continue;
    models.push(dir);
  }
  return models.sort();
}

/** Automation (interactive: false) never opens a picker: a missing choice is an error the caller sees. */
class MissingArgument extends Error {}

/**
 * The model folder: the one given, else asked for (the focused inspector's checkpoint and the workspace's
 * float checkpoints, or a folder browser). `why` says why it is asked (e.g. the file the command came from is
 * not a checkpoint); nothing is guessed from a file that is not one.
 */
export async function pickModel(given: string | undefined, title: string, interactive: boolean, why?: string): Promise<Maybe<string>> {
  if (given) return given;
  if (!interactive) throw new MissingArgument(why ?? 'no model folder was given');
  const inspected = InspectorSession.focused?.path;
  const focusedModel = inspected ? (inspected.endsWith('.safetensors') || inspected.endsWith('.json') ? dirname(inspected) : inspected) : undefined;
  const models = await workspaceModels();
  const ordered = focusedModel && models.includes(focusedModel) ? [focusedModel, ...models.filter((m) => m !== focusedModel)] : models;
  const browse = '$(folder-opened) Browse…';
  const picked = await vscode.window.showQuickPick(
    [
      ...ordered.map((m) => ({ label: basename(m), description: `${m === focusedModel ? 'open in the inspector · ' : ''}${vscode.workspace.asRelativePath(m)}`, path: m })),
      { label: browse, description: 'a folder with config.json and .safetensors', path: '' },
    ],
    { title, placeHolder: why ? `${why}: choose the float checkpoint to start from` : 'The float checkpoint to start from (it is only read)' },
  );
  if (!picked) return CANCELLED;
  if (picked.path) return picked.path;
  const folder = await vscode.window.showOpenDialog({ title, canSelectFolders: true, canSelectFiles: false, openLabel: 'Use This Model' });
  return folder?.[0]?.fsPath ?? CANCELLED;
}

function inside(folder: string, path: string): boolean {
  const rel = relative(folder, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/**
 * Where a job's output goes by default: beside the model when that stays inside a workspace folder, else
 * under the first workspace folder (never somewhere outside the workspace the user did not choose); beside
 * the model when no folder is open.
 */
export function defaultOutputFolder(model: string): string {
  const folders = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  if (!folders.length || folders.some((f) => inside(f, model))) return dirname(model);
  return folders[0]!;
}

/** What the quick picks need besides the arguments. */
export interface SpecContext {
  readonly extensionRoot: string;
  /** Names the running job of this window that writes `out`, if any. */
  readonly running: (out: string) => string | undefined;
  readonly recipes: RecipeChecker;
  /** Why the model is asked for, when the command came from a file that is not a checkpoint. */
  readonly modelNote?: string;
}

async function pickScheme(args: QuantizeCommandArgs, model: string, recipes: RecipeChecker): Promise<Maybe<SchemeChoice>> {
  if (args.preset || args.recipe) return { preset: args.preset, recipe: args.recipe };
  if (args.interactive === false) throw new MissingArgument('no preset or recipe was given');
  return (await pickSchemeInteractively(model, recipes)) ?? CANCELLED;
}

function isStatisticsFile(path: string): boolean {
  return path.endsWith('.safetensors');
}

async function pickCalibration(args: QuantizeCommandArgs, extensionRoot: string, required: boolean, title: string): Promise<Maybe<CalibrationSource | undefined>> {
  const settings = vscode.workspace.getConfiguration('quantlens.calibration');
  const samples = args.samples ?? settings.get<number>('samples', DEFAULT_CALIBRATION.samples);
  const seqLen = args.seqLen ?? settings.get<number>('sequenceLength', DEFAULT_CALIBRATION.seqLen);
  let path = args.calibration === 'default' ? defaultCalibrationDataset(extensionRoot) : args.calibration;
  if (!path) {
    // Without a choice, automation goes on without calibration; the pre-flight check names what is missing.
    if (!required || args.interactive === false) return undefined;
    const files = await vscode.workspace.findFiles('**/*.{txt,jsonl}', '**/{node_modules,.git,.vscode-test}/**', 50);
    const items: (vscode.QuickPickItem & { path?: string; browse?: boolean })[] = [
      { label: 'WikiText-2 (shipped sample)', description: 'CC BY-SA 4.0 text, the set most llm-compressor examples use', path: defaultCalibrationDataset(extensionRoot) },
      ...files.map((uri) => ({ label: basename(uri.fsPath), description: vscode.workspace.asRelativePath(uri), path: uri.fsPath })),
      { label: '$(file) Dataset or statistics file…', description: 'txt, jsonl (text or messages), json, or a QuantLens statistics .safetensors', browse: true },
    ];
    const picked = await vscode.window.showQuickPick(items, { title: `${title}: calibration data`, placeHolder: 'This scheme needs calibration' });
    if (!picked) return CANCELLED;
    path = picked.path;
    if (picked.browse) {
      const file = await vscode.window.showOpenDialog({ title: 'Calibration data', filters: { 'Datasets and statistics': ['txt', 'jsonl', 'json', 'safetensors'] } });
      if (!file?.[0]) return CANCELLED;
      path = file[0].fsPath;
    }
    if (!path) return CANCELLED;
    if (!isStatisticsFile(path) && args.samples === undefined) {
      const answer = await vscode.window.showInputBox({
        // A typed answer survives a click elsewhere (as in every multi-step input here); Escape backs out.
        ignoreFocusOut: true,
        title: `${title}: calibration samples`,
        prompt: `How many samples of ${seqLen} tokens (setting quantlens.calibration.sequenceLength)`,
        value: String(samples),
        validateInput: (v) => (/^[1-9]\d*$/.test(v.trim()) ? undefined : 'a positive whole number'),
      });
      if (answer === undefined) return CANCELLED;
      return { kind: 'dataset', path, samples: Number(answer.trim()), seqLen };
    }
  }
  if (isStatisticsFile(path)) return { kind: 'stats', path };
  return { kind: 'dataset', path, samples, seqLen };
}

/** Why `path` cannot be a new job's output (it exists, or a running job owns it), or undefined when it can. */
export async function outputUnavailable(path: string, running: (out: string) => string | undefined): Promise<string | undefined> {
  if (await exists(path)) return 'this already exists; QuantLens never overwrites';
  const job = running(path);
  if (job) return `${job} is writing this; choose another output`;
  const holder = await outputHolder(path);
  return holder ? `another QuantLens job is writing this: ${describeOwner(holder)}; choose another output` : undefined;
}

async function pickOutput(given: string | undefined, suggestion: string, title: string, interactive: boolean, running: (out: string) => string | undefined): Promise<Maybe<string>> {
  if (given) return given;
  let candidate = suggestion;
  // Never suggest an output a running job owns (its lock), nor one that exists.
  for (let i = 2; await outputUnavailable(candidate, running); i++) candidate = `${suggestion}-${i}`;
  if (!interactive) return candidate;
  const answer = await vscode.window.showInputBox({
    ignoreFocusOut: true,
    title: `${title}: output`,
    prompt: 'Where to write the result (a new path; written atomically, never over an existing one)',
    value: candidate,
    valueSelection: [dirname(candidate).length + 1, candidate.length],
    validateInput: async (v) => (!v.trim() ? 'a path is needed' : outputUnavailable(v.trim(), running)),
  });
  return answer?.trim() || CANCELLED;
}

/** Builds a quantize job spec from arguments and quick picks; undefined when the user backs out. */
export async function quantizeSpecFromUser(args: QuantizeCommandArgs, context: SpecContext): Promise<JobSpec | undefined> {
  const { extensionRoot, running } = context;
  const title = 'Quantize Model';
  const model = await pickModel(args.model, `${title}: model`, args.interactive !== false, context.modelNote);
  if (model === CANCELLED) return undefined;
  const scheme = await pickScheme(args, model, context.recipes);
  if (scheme === CANCELLED) return undefined;
  // Which calibration the scheme needs: ask the pre-flight check about a spec without it.
  const probe = await preflight({ kind: 'quantize', model, out: join(dirname(model), '.quantlens-probe'), ...scheme });
  const required = probe.needs.inputAbsMax || probe.needs.hessians;
  const calibration = await pickCalibration(args, extensionRoot, required, title);
  if (calibration === CANCELLED) return undefined;
  const suffix = scheme.preset ?? basename(scheme.recipe!).replace(/\.(ya?ml)$/, '').replace(/[^\w.-]+/g, '-');
  const out = await pickOutput(args.output, join(defaultOutputFolder(model), `${basename(model)}-${suffix}`), title, args.interactive !== false, running);
  if (out === CANCELLED) return undefined;
  return { kind: 'quantize', model, out, ...scheme, ...(calibration ? { calibration } : {}) };
}

export async function calibrateSpecFromUser(args: QuantizeCommandArgs & { hessians?: boolean }, context: SpecContext): Promise<JobSpec | undefined> {
  const { extensionRoot, running } = context;
  const title = 'Calibrate';
  const model = await pickModel(args.model, `${title}: model`, args.interactive !== false, context.modelNote);
  if (model === CANCELLED) return undefined;
  const calibration = await pickCalibration(args, extensionRoot, true, title);
  if (calibration === CANCELLED || !calibration) return undefined;
  if (calibration.kind === 'stats') {
    void vscode.window.showErrorMessage('QuantLens: calibration needs a dataset (text, JSONL or JSON), not a statistics file.');
    return undefined;
  }
  let hessians = args.hessians;
  if (hessians === undefined) {
    if (args.interactive === false) hessians = false;
    else {
      const picked = await vscode.window.showQuickPick(
        [
          { label: 'Activation ranges only', description: 'input absmax per layer (FP8/INT8 static scales); small', hessians: false },
          { label: 'Activation ranges and GPTQ Hessians', description: 'adds in × in matrices per layer; large', hessians: true },
        ],
        { title: `${title}: statistics` },
      );
      if (!picked) return undefined;
      hessians = picked.hessians;
    }
  }
  const out = await pickOutput(args.output, join(defaultOutputFolder(model), `${basename(model)}-calibration.safetensors`), title, args.interactive !== false, running);
  if (out === CANCELLED) return undefined;
  return { kind: 'calibrate', model, out, dataset: calibration.path, samples: calibration.samples, seqLen: calibration.seqLen, hessians };
}

/** After a quantize job: the result in the inspector, with the error tab comparing it to the original. */
export async function openJobResult(manager: JobManager, id: string): Promise<void> {
  const job = manager.job(id);
  if (!job || job.status !== 'succeeded') {
    void vscode.window.showWarningMessage('QuantLens: that job has no result to open.');
    return;
  }
  if (job.spec.kind === 'calibrate') {
    await vscode.commands.executeCommand('quantlens.openInInspector', vscode.Uri.file(job.spec.out));
    return;
  }
  if (job.spec.kind === 'plan') {
    // A plan's result is its recipe, in the recipe preview against the planned model.
    await vscode.commands.executeCommand('quantlens.openRecipePreview', { recipe: job.spec.out, model: job.spec.model });
    return;
  }
  const out = job.spec.out;
  await vscode.commands.executeCommand('quantlens.openInInspector', vscode.Uri.file(out));
  // The inspector opens asynchronously; compare once its session for the output exists.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    // Wait until its page has rendered: a message sent before the page listens would be lost.
    const session = InspectorSession.all().find((s) => s.path.startsWith(out) && s.pageReady);
    if (session) {
      session.show('error', true, { original: job.spec.model });
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export { MissingArgument };
