/**
 * The scheme step of "Quantize Model…": presets, then the workspace's recipes, each checked by the core's
 * validator (in the recipe worker, as the editor's diagnostics are) against the chosen model.
 *
 * Every finished quantize job writes a recipe.yaml into its output, so a workspace soon holds many files of
 * that name; those copies describe results, not plans, and picking one by typing its name was the common
 * mistake. Recipes inside checkpoint folders are therefore left out, the active editor's recipe comes first,
 * every item names its folder, and a recipe with errors is refused in the pick itself (with a button that
 * opens it at its first error) rather than after the output step.
 */
import * as vscode from 'vscode';
import { promises as fs } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { SCHEME_PRESETS, SchemeName } from '../../core/jobs/quantize';
import { Diagnostic as CoreDiagnostic, ModelLayers, documentKind, modelLayersFromCheckpoint } from '../../core/recipe';
import { ANALYSIS_BUDGET, RecipeWorker, failedAnalysisDiagnostic } from '../../core/recipe/recipeWorker';
import { isCheckpointFolder } from '../recipeModel';

/** At most this many recipe files are listed and checked (each check has the worker's time budget). */
const MAX_RECIPES = 50;
/** A recipe file larger than this is not read into the pick (the editor's validator reports it as too large). */
const MAX_RECIPE_BYTES = 2 * 1024 * 1024;

/** What the validator found in one recipe. */
export interface RecipeCheck {
  readonly errors: number;
  readonly warnings: number;
  /** The first error (0-based line), for the "open at first error" button. */
  readonly firstError?: { readonly line: number; readonly character: number; readonly message: string };
}

/** Validates recipe files in a recipe worker of its own (started on first use, stopped with the extension). */
export class RecipeChecker implements vscode.Disposable {
  private worker: RecipeWorker | undefined;

  constructor(private readonly workerPath: string) {}

  async check(path: string, model: ModelLayers | undefined): Promise<RecipeCheck> {
    let diagnostics: readonly CoreDiagnostic[];
    try {
      const size = (await fs.stat(path)).size;
      if (size > MAX_RECIPE_BYTES) throw new Error(`the file is ${(size / 1024 / 1024).toFixed(1)} MB; recipes over ${MAX_RECIPE_BYTES / 1024 / 1024} MB are not checked here`);
      const text = await fs.readFile(path, 'utf8');
      const kind = documentKind(path, text) ?? 'recipe';
      this.worker ??= new RecipeWorker(this.workerPath, ANALYSIS_BUDGET);
      // Keyed by path: checking the same file again (a second pick) supersedes the stale run.
      diagnostics = await this.worker.run(`pick:${path}`, 'validate', { text, kind, model });
    } catch (error) {
      diagnostics = [failedAnalysisDiagnostic(error)];
    }
    const errors = diagnostics.filter((d) => d.severity === 'error');
    const first = errors.reduce<CoreDiagnostic | undefined>((a, d) => (!a || d.range.start.line < a.range.start.line ? d : a), undefined);
    return {
      errors: errors.length,
      warnings: diagnostics.filter((d) => d.severity === 'warning').length,
      firstError: first ? { line: first.range.start.line, character: first.range.start.character, message: first.message } : undefined,
    };
  }

  dispose(): void {
    void this.worker?.dispose();
  }
}

/**
 * Recipe files to offer, best first: the active editor's recipe, recipes open in other editors, then the
 * workspace's (shallowest first). Recipes directly inside a checkpoint folder (config.json + safetensors:
 * a model, or a job's output) are left out.
 */
export async function recipeCandidates(): Promise<string[]> {
  const active = vscode.window.activeTextEditor?.document;
  const isRecipe = (doc: vscode.TextDocument | undefined): doc is vscode.TextDocument =>
    doc !== undefined && doc.uri.scheme === 'file' && /\.ya?ml$/i.test(doc.fileName) && documentKind(doc.fileName, doc.getText()) === 'recipe';
  const open = vscode.workspace.textDocuments.filter((d) => d !== active && isRecipe(d)).map((d) => d.uri.fsPath);
  const found = await vscode.workspace.findFiles('**/*recipe*.{yaml,yml}', '**/{node_modules,.git,.vscode-test}/**', 200);
  const depth = (p: string) => vscode.workspace.asRelativePath(p).split('/').length;
  const workspace = found.map((u) => u.fsPath).sort((a, b) => depth(a) - depth(b) || a.localeCompare(b));
  const ordered = [...(isRecipe(active) ? [active.uri.fsPath] : []), ...open, ...workspace];
  const seen = new Set<string>();
  const result: string[] = [];
  const checkpointDirs = new Map<string, Promise<boolean>>();
  for (const path of ordered) {
    const key = resolve(path);
    if (seen.has(key)) continue;
    seen.add(key);
    const dir = dirname(key);
    if (!checkpointDirs.has(dir)) checkpointDirs.set(dir, isCheckpointFolder(dir));
    if (await checkpointDirs.get(dir)) continue;
    result.push(key);
    if (result.length >= MAX_RECIPES) break;
  }
  return result;
}

type SchemeItem = vscode.QuickPickItem & { preset?: SchemeName; recipe?: string; browse?: boolean; check?: RecipeCheck };

const OPEN_AT_ERROR_TOOLTIP = 'Open at its first error';

function checkDetail(check: RecipeCheck | undefined): string {
  if (!check) return '$(loading~spin) checking…';
  if (check.errors) {
    const first = check.firstError!;
    return `$(error) ${check.errors} error${check.errors === 1 ? '' : 's'} — line ${first.line + 1}: ${first.message}`;
  }
  return check.warnings ? `$(warning) no errors, ${check.warnings} warning${check.warnings === 1 ? '' : 's'}` : '$(pass) no problems';
}

/** Opens a recipe with the cursor on its first error. */
export async function openAtFirstError(path: string, check: RecipeCheck): Promise<void> {
  const at = new vscode.Position(check.firstError?.line ?? 0, check.firstError?.character ?? 0);
  await vscode.window.showTextDocument(vscode.Uri.file(path), { selection: new vscode.Range(at, at), preview: false });
}

function refusal(path: string, check: RecipeCheck): string {
  return `${basename(path)} has ${check.errors} error${check.errors === 1 ? '' : 's'} (line ${(check.firstError?.line ?? 0) + 1}: ${check.firstError?.message ?? ''}); fix ${check.errors === 1 ? 'it' : 'them'} first or pick another scheme`;
}

export type SchemeChoice = { preset?: SchemeName; recipe?: string };

/**
 * Asks for a preset or a recipe; undefined when the user backs out. A recipe with errors cannot be taken:
 * Enter on it keeps the pick open and says why in its title; the item's button opens it at the error.
 */
export async function pickSchemeInteractively(model: string, checker: RecipeChecker): Promise<SchemeChoice | undefined> {
  const title = 'Quantize Model: scheme';
  const layers = modelLayersFromCheckpoint(model).catch(() => undefined);
  const pick = vscode.window.createQuickPick<SchemeItem>();
  pick.title = title;
  pick.placeholder = 'A preset, or an llm-compressor recipe (type its name or folder)';
  pick.matchOnDescription = true;
  const presets: SchemeItem[] = [
    { label: 'Presets', kind: vscode.QuickPickItemKind.Separator },
    { label: 'FP8 static', description: SCHEME_PRESETS.fp8.description, preset: 'fp8' },
    { label: 'FP8 dynamic', description: SCHEME_PRESETS['fp8-dynamic'].description, preset: 'fp8-dynamic' },
    { label: 'INT8 W8A8', description: SCHEME_PRESETS.w8a8.description, preset: 'w8a8' },
    { label: 'W4A16 GPTQ', description: SCHEME_PRESETS.w4a16.description, preset: 'w4a16' },
    { label: 'W4A16 RTN', description: SCHEME_PRESETS['w4a16-rtn'].description, preset: 'w4a16-rtn' },
  ];
  const browse: SchemeItem = { label: '$(file) Recipe file…', description: 'any llm-compressor recipe on disk', browse: true };
  let recipes: SchemeItem[] = [];
  const activePath = vscode.window.activeTextEditor?.document.uri.fsPath;
  const render = () => {
    const active = pick.activeItems[0];
    pick.items = [...presets, { label: 'Recipes', kind: vscode.QuickPickItemKind.Separator }, ...recipes, browse];
    // Replacing the items must not move the user's selection.
    const same = active && pick.items.find((i) => i === active || (i.recipe !== undefined && i.recipe === active.recipe) || (i.preset !== undefined && i.preset === active.preset));
    if (same) pick.activeItems = [same];
  };
  const checks = new Map<string, Promise<RecipeCheck>>();
  let checking = true;
  const itemFor = (path: string, check?: RecipeCheck): SchemeItem => {
    const folder = vscode.workspace.asRelativePath(dirname(path));
    return {
      label: basename(path),
      description: `${path === activePath ? 'active editor · ' : ''}${folder === dirname(path) ? folder : `${folder}/`}`,
      detail: checkDetail(check),
      recipe: path,
      check,
      buttons: check?.errors ? [{ iconPath: new vscode.ThemeIcon('go-to-file'), tooltip: `${OPEN_AT_ERROR_TOOLTIP} (line ${(check.firstError?.line ?? 0) + 1})` }] : [],
    };
  };
  pick.busy = true;
  render();
  pick.show();

  const listed = recipeCandidates().then(async (paths) => {
    recipes = paths.map((p) => itemFor(p));
    render();
    const model = await layers;
    // One worker, one run at a time, in rank order: the first items are checked first.
    for (const path of paths) {
      const check = checker.check(path, model);
      checks.set(path, check);
      void check.then((c) => {
        recipes = recipes.map((i) => (i.recipe === path ? itemFor(path, c) : i));
        render();
      });
    }
    await Promise.all(checks.values());
    checking = false;
    pick.busy = false;
  });
  const checkOf = async (path: string): Promise<RecipeCheck> => {
    await listed;
    return checks.get(path) ?? checker.check(path, await layers);
  };

  return new Promise<SchemeChoice | undefined>((resolvePick) => {
    let settled = false;
    const done = (choice: SchemeChoice | undefined) => {
      if (settled) return;
      settled = true;
      resolvePick(choice);
      pick.dispose();
    };
    pick.onDidTriggerItemButton(async (event) => {
      const path = event.item.recipe;
      if (!path) return;
      const check = await checkOf(path);
      done(undefined);
      await openAtFirstError(path, check);
    });
    pick.onDidAccept(async () => {
      const item = pick.selectedItems[0] ?? pick.activeItems[0];
      if (!item) return;
      if (item.preset) return done({ preset: item.preset });
      if (item.browse) {
        settled = true; // hiding the pick for the dialog is not a cancel
        pick.dispose();
        const file = await vscode.window.showOpenDialog({ title: 'Choose a recipe', filters: { Recipes: ['yaml', 'yml'] }, openLabel: 'Use Recipe' });
        if (!file?.[0]) return resolvePick(undefined);
        const path = file[0].fsPath;
        const check = await checker.check(path, await layers);
        if (!check.errors) return resolvePick({ recipe: path });
        const open = await vscode.window.showErrorMessage(`QuantLens: ${refusal(path, check)}.`, 'Open at First Error');
        if (open) await openAtFirstError(path, check);
        return resolvePick(undefined);
      }
      if (!item.recipe) return;
      pick.busy = true;
      const check = await checkOf(item.recipe);
      pick.busy = checking;
      if (check.errors) {
        pick.title = `${title} — ${refusal(item.recipe, check)}`;
        return;
      }
      done({ recipe: item.recipe });
    });
    pick.onDidHide(() => done(undefined));
  });
}
