import * as vscode from 'vscode';
import { registerCheckpointEditor } from './checkpointEditor';
import { registerCommands } from './commands';
import { registerRecipeSupport } from './recipeLanguage';
import { RecipePreviewSession, registerRecipePreview } from './recipePreview';
import { AnalysisClient } from '../core/jobs/analysisClient';
import { InspectorServices, InspectorSession } from './inspectorSession';
import type { InspectorTab, TableCommand } from '../webviewMessages/inspector';
import { registerJobs } from './jobs/registerJobs';
import type { JobRecord } from './jobs/jobManager';
import { registerRuntimeStatus } from './runtimeStatus';
import type { DeviceReport } from '../core/runtime/device';
import { ChatViewProvider, registerChatView } from './chat/chatView';

/** Entry point: glue only. Everything that knows about tensors lives in src/core. */
/** What activate() returns: a small API other extensions (and the integration tests) can use. */
export interface QuantLensApi {
  /** Open inspector views: what each one opened and what its page reports it shows. */
  inspectors(): { path: string; rendered: InspectorSession['rendered'] }[];
  /** Switches an open inspector to a tab (optionally starting its work), e.g. for screenshots. */
  showInspectorTab(path: string, tab: InspectorTab, start?: boolean, params?: Parameters<InspectorSession['show']>[2]): boolean;
  /** Open recipe previews: the recipe, the chosen model, what the page renders and what Run would execute. */
  recipePreviews(): { path: string; model?: string; rendered: RecipePreviewSession['rendered']; run: ReturnType<RecipePreviewSession['runRequest']> }[];
  /** Whether the active text editor holds a recipe (the context key that shows Open Recipe Preview in its title bar). */
  activeEditorIsRecipe(): boolean;
  /** Filters and/or scrolls the Tensors or Layers table of an open inspector (shows its tab). */
  revealInInspector(path: string, command: TableCommand): boolean;
  /** The Jobs view's records, newest first. */
  jobs(): readonly JobRecord[];
  /** Where runtime sessions run, and why. */
  device(): Promise<DeviceReport>;
  /** The chat view's host side (model pair, transcript, what its page shows). */
  readonly chat: ChatViewProvider;
}

export function activate(context: vscode.ExtensionContext): QuantLensApi {
  const output = vscode.window.createOutputChannel('QuantLens', { log: true });
  const diagnostics = vscode.languages.createDiagnosticCollection('quantlens');
  const analysis = new AnalysisClient(vscode.Uri.joinPath(context.extensionUri, 'dist', 'workers', 'analysis.worker.js').fsPath);
  context.subscriptions.push(output, diagnostics, { dispose: () => void analysis.dispose() });
  const services: InspectorServices = { analysis, diagnostics, output, extensionUri: context.extensionUri };
  registerCheckpointEditor(context, services);
  registerCommands(context, services);
  const recipes = registerRecipeSupport(context);
  registerRecipePreview(context, { extensionUri: context.extensionUri, output });
  const jobs = registerJobs(context, output);
  const runtime = registerRuntimeStatus(context, output);
  const chat = registerChatView(context, output);
  return {
    chat,
    recipePreviews: () => RecipePreviewSession.all().map((s) => ({ path: s.path, model: s.modelPath, rendered: s.rendered, run: s.runRequest() })),
    activeEditorIsRecipe: () => recipes.activeEditorIsRecipe(),
    jobs: () => jobs.jobs,
    device: () => runtime.device(),
    inspectors: () => InspectorSession.all().map((s) => ({ path: s.path, rendered: s.rendered })),
    showInspectorTab: (path, tab, start, params) => {
      const session = InspectorSession.all().find((s) => s.path === path);
      session?.show(tab, start, params);
      return session !== undefined;
    },
    revealInInspector: (path, command) => {
      const session = InspectorSession.all().find((s) => s.path === path);
      session?.revealInTable(command);
      return session !== undefined;
    },
  };
}

export function deactivate(): void {
  // Nothing to tear down beyond context.subscriptions, which VS Code disposes.
}
