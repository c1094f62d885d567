/**
 * The recipe preview custom editor (`quantlens.recipePreview`, "Open With…" on YAML files, or "QuantLens:
 * Open Recipe Preview"): the recipe in words, its problems, the layer map it produces on a chosen model, the
 * estimated output size, and Run (which hands the recipe and model to `quantlens.quantizeModel`). Glue only:
 * the view model is src/core/recipe/preview.ts, built in the recipe worker (within a time and memory budget,
 * a newer version of the document superseding a stale build); the page is webview/recipe.
 */
import * as vscode from 'vscode';
import { basename, dirname, relative, resolve } from 'node:path';
import { ModelLayers, RecipePreview, modelLayersFromCheckpoint, queryPreviewLayers, runAvailability } from '../core/recipe';
import { ANALYSIS_BUDGET, RecipeWorker, SupersededRun, failedAnalysisDiagnostic } from '../core/recipe/recipeWorker';
import type { PreviewLayerQuery } from '../core/recipe/preview';
import { HostEndpoint } from '../webviewMessages/endpoint';
import type { ModelChoice, PreviewUpdate, PreviewView, RecipeMessages } from '../webviewMessages/recipe';
import { observeRecipePreview } from './testHooks';
import { webviewHtml } from './webviewHtml';
import { ancestorModel, isCheckpointFolder, settingModel } from './recipeModel';

export const RECIPE_PREVIEW_VIEW_TYPE = 'quantlens.recipePreview';
/** The quantize command (src/extension, built beside this one): takes `{ model?, preset?, recipe?, … }`. */
export const QUANTIZE_COMMAND = 'quantlens.quantizeModel';
const DEBOUNCE_MS = 250;
const MAX_WORKSPACE_CONFIGS = 200;

export interface RecipePreviewServices {
  readonly extensionUri: vscode.Uri;
  readonly output: vscode.LogOutputChannel;
}

interface SessionServices extends RecipePreviewServices {
  /** Builds the previews of every page, one at a time, off the extension host's thread. */
  readonly worker: RecipeWorker;
}

type ModelOrigin = ModelChoice['origin'];

/** One preview page over one recipe document. */
export class RecipePreviewSession implements vscode.Disposable {
  private static readonly active = new Set<RecipePreviewSession>();
  private static nextId = 1;
  /** This page's key in the recipe worker: its newer build supersedes its stale one, other pages' are left alone. */
  private readonly workerKey = `preview-${RecipePreviewSession.nextId++}`;
  /** Models asked for by the command before the editor opened (document URI → folder). */
  static readonly pendingModels = new Map<string, string>();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly modelCache = new Map<string, Promise<ModelLayers>>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private model: { path: string; origin: ModelOrigin } | undefined;
  private preview: RecipePreview | undefined;
  private modelError: string | undefined;
  private models: ModelChoice[] = [];
  /** The picker's list is rebuilt on load, on a model change and on a settings change, not on every edit. */
  private modelsStale = true;
  /** Set when the user picked "No model": the setting / the recipe's folder are then not applied again. */
  private modelCleared = false;
  private serial = 0;
  /** The typed connection to the page (src/webviewMessages/endpoint.ts). */
  readonly messages: HostEndpoint<RecipeMessages>;
  /** The last update posted (Run follows it; tests compare it with what the page renders). */
  lastUpdate: PreviewUpdate | undefined;

  static all(): readonly RecipePreviewSession[] {
    return [...RecipePreviewSession.active];
  }

  constructor(
    readonly document: vscode.TextDocument,
    webview: vscode.Webview,
    private readonly services: SessionServices,
  ) {
    RecipePreviewSession.active.add(this);
    const pending = RecipePreviewSession.pendingModels.get(document.uri.toString());
    if (pending) {
      this.model = { path: pending, origin: 'chosen' };
      RecipePreviewSession.pendingModels.delete(document.uri.toString());
    }
    webview.options = { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(services.extensionUri, 'dist', 'webview')] };
    webview.html = webviewHtml(webview, services.extensionUri, 'recipe', `Preview ${basename(document.fileName)}`);
    this.messages = new HostEndpoint<RecipeMessages>((envelope) => void webview.postMessage(envelope), { layerPage: (query) => this.layerPage(query) }, (message) => void this.onMessage(message), {
      onFailure: (method, error) => services.output.error(`Recipe preview of ${this.path}: ${method}: ${error instanceof Error ? error.message : String(error)}`),
    });
    if (__QUANTLENS_TEST_HOOKS__) observeRecipePreview(this);
    this.disposables.push(
      webview.onDidReceiveMessage((data: unknown) => this.messages.receive(data)),
      vscode.workspace.onDidChangeTextDocument((event) => {
        if (event.document !== document || event.contentChanges.length === 0) return;
        services.worker.cancel(this.workerKey); // the build of the old text is stale
        this.schedule();
      }),
      vscode.workspace.onDidChangeConfiguration((event) => {
        if (!event.affectsConfiguration('quantlens.recipe', document.uri)) return;
        if (!this.model || this.model.origin === 'setting' || this.model.origin === 'ancestor') this.model = undefined;
        this.modelCleared = false;
        this.modelsStale = true;
        this.schedule(0);
      }),
      vscode.workspace.onDidGrantWorkspaceTrust(() => this.schedule(0)),
    );
  }

  get path(): string {
    return this.document.uri.fsPath;
  }

  get modelPath(): string | undefined {
    return this.model?.path;
  }

  /** The command and argument Run executes now, or undefined while Run is disabled. */
  runRequest(): { command: string; args: { model: string; recipe: string } } | undefined {
    if (!this.lastUpdate?.run.enabled || !this.model) return undefined;
    return { command: QUANTIZE_COMMAND, args: { model: this.model.path, recipe: this.document.uri.fsPath } };
  }

  /** Uses `folder` as the model (from the command argument, the page's picker or the folder dialog). */
  setModel(folder: string): void {
    this.model = { path: resolve(folder), origin: 'chosen' };
    this.modelCleared = false;
    this.modelCache.delete(this.model.path); // re-read: the user may have just written it
    this.modelsStale = true;
    this.schedule(0);
  }

  private schedule(delay = DEBOUNCE_MS): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh().catch((error) => this.services.output.error(`Recipe preview of ${this.path}: ${error instanceof Error ? error.stack ?? error.message : String(error)}`));
    }, delay);
  }

  private loadModel(path: string): Promise<ModelLayers> {
    let layers = this.modelCache.get(path);
    if (!layers) {
      layers = modelLayersFromCheckpoint(path);
      this.modelCache.set(path, layers);
      layers.catch(() => this.modelCache.delete(path));
    }
    return layers;
  }

  /** Recomputes the preview from the document as it is now and posts it. */
  async refresh(): Promise<void> {
    const serial = ++this.serial;
    const version = this.document.version;
    if (!this.model && !this.modelCleared) {
      const found = await defaultModel(this.document);
      if (found) this.model = found;
    }
    if (this.modelsStale || (this.model && !this.models.some((m) => m.path === this.model!.path))) {
      this.modelsStale = false;
      this.models = await modelChoices(this.document, this.model);
    }
    if (serial !== this.serial) return;
    let layers: ModelLayers | undefined;
    this.modelError = undefined;
    const model = this.model?.path;
    if (model) {
      const pending = this.loadModel(model);
      const settled = await Promise.race([pending.then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), 50))]);
      if (!settled) this.post({ type: 'update', update: this.update(version, { loading: true }) });
      try {
        layers = await pending;
      } catch (error) {
        this.modelError = `${model}: ${error instanceof Error ? error.message : String(error)}`;
      }
    }
    if (serial !== this.serial) return;
    let preview: RecipePreview;
    try {
      preview = await this.services.worker.run(this.workerKey, 'preview', { text: this.document.getText(), fileName: this.document.fileName, model: layers });
    } catch (error) {
      if (error instanceof SupersededRun) return; // a newer refresh is building the preview of the newer text
      const diagnostic = failedAnalysisDiagnostic(error);
      preview = { isRecipe: true, stages: [], diagnostics: [diagnostic], errors: 1, warnings: 0 };
    }
    if (serial !== this.serial) return;
    this.preview = preview;
    this.post({ type: 'update', update: this.update(version, this.modelError ? { error: this.modelError } : undefined) });
  }

  private update(version: number, modelStatus: PreviewUpdate['modelStatus']): PreviewUpdate {
    const loading = modelStatus?.loading === true;
    const preview = loading ? undefined : this.preview;
    const run = runAvailability(preview, { model: this.model?.path, modelError: this.modelError, trusted: vscode.workspace.isTrusted });
    const update: PreviewUpdate = {
      fileName: basename(this.document.fileName),
      version,
      preview: withoutLayers(preview ?? this.preview),
      ...(this.model ? { model: this.model.path } : {}),
      ...(modelStatus ? { modelStatus } : {}),
      models: this.models,
      run: loading ? { enabled: false, reasons: ['Reading the model…'] } : run,
    };
    if (!loading) this.lastUpdate = update;
    return update;
  }

  private post(message: RecipeMessages['toPage']): void {
    this.messages.notify(message);
  }

  private async onMessage(message: RecipeMessages['toHost']): Promise<void> {
    switch (message.type) {
      case 'ready':
        // A page restored after being hidden remembers the model it showed; the host's choice wins.
        if (!this.model && message.model) this.model = { path: message.model, origin: 'chosen' };
        this.modelsStale = true;
        clearTimeout(this.timer);
        await this.refresh();
        return;
      case 'reveal':
        await this.reveal(message.line, message.character ?? 0, message.endLine, message.endCharacter);
        return;
      case 'chooseModel': {
        if (message.path === 'choose') {
          const picked = await vscode.window.showOpenDialog({ title: 'Recipe preview: choose the model folder (config.json + *.safetensors)', openLabel: 'Use Model', canSelectFiles: false, canSelectFolders: true, canSelectMany: false });
          if (picked?.[0]) this.setModel(picked[0].fsPath);
          else this.schedule(0); // puts the picker back on the current model
        } else if (message.path === '') {
          this.model = undefined;
          this.modelCleared = true;
          this.modelsStale = true;
          this.schedule(0);
        } else this.setModel(message.path);
        return;
      }
      case 'run':
        await this.run();
        return;
    }
  }

  private layerPage(query: PreviewLayerQuery) {
    const layers = this.preview?.isRecipe ? (this.preview.resolved?.layers ?? []) : [];
    return queryPreviewLayers(layers, query);
  }

  private async reveal(line: number, character: number, endLine = line, endCharacter = character): Promise<void> {
    const range = this.document.validateRange(new vscode.Range(line, character, endLine, endCharacter));
    const visible = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === this.document.uri.toString());
    const editor = await vscode.window.showTextDocument(this.document, { viewColumn: visible?.viewColumn ?? vscode.ViewColumn.Beside, selection: range, preserveFocus: false });
    editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
  }

  /** Run: saves the recipe (the quantize command reads the file) and hands it over with the model. */
  async run(): Promise<void> {
    await this.refresh();
    const request = this.runRequest();
    if (!request) {
      this.post({ type: 'notice', severity: 'error', message: `Run is not available: ${(this.lastUpdate?.run.reasons ?? ['the preview is not ready']).join(' ')}` });
      return;
    }
    if (this.document.isDirty && !(await this.document.save())) {
      this.post({ type: 'notice', severity: 'error', message: 'Run needs the recipe saved to disk (the quantize command reads the file); saving it failed.' });
      return;
    }
    this.services.output.info(`Recipe preview: running ${request.command} with ${JSON.stringify(request.args)}`);
    try {
      await vscode.commands.executeCommand(request.command, request.args);
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      const missing = /not found/i.test(text) && text.includes(request.command);
      this.post({ type: 'notice', severity: 'error', message: missing ? `Run needs the command ${request.command}, which this build of QuantLens does not have.` : `Run failed: ${text}` });
    }
  }

  dispose(): void {
    RecipePreviewSession.active.delete(this);
    clearTimeout(this.timer);
    this.services.worker.cancel(this.workerKey);
    for (const d of this.disposables) d.dispose();
  }
}

function withoutLayers(preview: RecipePreview | undefined): PreviewView {
  if (!preview) return { isRecipe: false, reason: 'Reading the recipe…' };
  if (!preview.isRecipe || !preview.resolved) return preview;
  const { layers: _layers, ...resolved } = preview.resolved;
  return { ...preview, resolved };
}

class RecipePreviewProvider implements vscode.CustomTextEditorProvider {
  constructor(private readonly services: SessionServices) {}

  resolveCustomTextEditor(document: vscode.TextDocument, panel: vscode.WebviewPanel): void {
    const session = new RecipePreviewSession(document, panel.webview, this.services);
    panel.onDidDispose(() => session.dispose());
  }
}

/** Registers the custom editor and "QuantLens: Open Recipe Preview". */
export function registerRecipePreview(context: vscode.ExtensionContext, services: RecipePreviewServices): void {
  const worker = new RecipeWorker(vscode.Uri.joinPath(services.extensionUri, 'dist', 'workers', 'recipe.worker.js').fsPath, ANALYSIS_BUDGET);
  context.subscriptions.push(
    { dispose: () => void worker.dispose() },
    vscode.window.registerCustomEditorProvider(RECIPE_PREVIEW_VIEW_TYPE, new RecipePreviewProvider({ ...services, worker }), { supportsMultipleEditorsPerDocument: true }),
    vscode.commands.registerCommand('quantlens.openRecipePreview', async (target?: vscode.Uri | { recipe?: string | vscode.Uri; model?: string }) => {
      const argument = target instanceof vscode.Uri ? { recipe: target } : (target ?? {});
      const recipe = typeof argument.recipe === 'string' ? vscode.Uri.file(argument.recipe) : (argument.recipe ?? vscode.window.activeTextEditor?.document.uri);
      if (!recipe) {
        void vscode.window.showWarningMessage('QuantLens: open an llm-compressor recipe (YAML) first.');
        return;
      }
      if (argument.model) {
        const open = RecipePreviewSession.all().filter((s) => s.document.uri.toString() === recipe.toString());
        if (open.length > 0) for (const session of open) session.setModel(argument.model);
        else RecipePreviewSession.pendingModels.set(recipe.toString(), resolve(argument.model));
      }
      const besideText = vscode.window.activeTextEditor?.document.uri.toString() === recipe.toString();
      await vscode.commands.executeCommand('vscode.openWith', recipe, RECIPE_PREVIEW_VIEW_TYPE, besideText ? vscode.ViewColumn.Beside : vscode.ViewColumn.Active);
    }),
  );
}

// ------------------------------------------------------------------ model folders

/** The model a fresh preview starts with: the setting, else the nearest checkpoint folder above the recipe. */
async function defaultModel(doc: vscode.TextDocument): Promise<{ path: string; origin: ModelOrigin } | undefined> {
  const setting = settingModel(doc);
  if (setting) return { path: setting, origin: 'setting' };
  const ancestor = await ancestorModel(doc);
  return ancestor ? { path: ancestor, origin: 'ancestor' } : undefined;
}

/** Everything the picker offers: the setting, the recipe's checkpoint folder, the workspace's model folders, the current choice. */
async function modelChoices(doc: vscode.TextDocument, current: { path: string; origin: ModelOrigin } | undefined): Promise<ModelChoice[]> {
  const choices = new Map<string, ModelChoice>();
  const label = (path: string) => {
    const folder = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(path));
    const rel = folder ? relative(folder.uri.fsPath, path) : '';
    return folder && rel && !rel.startsWith('..') ? rel : path;
  };
  const add = (path: string | undefined, origin: ModelOrigin) => {
    if (path && !choices.has(path)) choices.set(path, { path, label: label(path), origin });
  };
  if (current) add(current.path, current.origin);
  add(settingModel(doc), 'setting');
  add(await ancestorModel(doc), 'ancestor');
  const configs = await vscode.workspace.findFiles('**/config.json', '**/{node_modules,.git}/**', MAX_WORKSPACE_CONFIGS);
  const folders = [...new Set(configs.filter((u) => u.scheme === 'file').map((u) => dirname(u.fsPath)))].sort();
  for (const dir of folders) if (await isCheckpointFolder(dir)) add(dir, 'workspace');
  return [...choices.values()];
}
