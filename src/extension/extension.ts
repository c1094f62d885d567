import * as vscode from 'vscode';
import { registerCheckpointEditor } from './checkpointEditor';
import { registerCommands } from './commands';
import { registerRecipeSupport } from './recipeLanguage';
import { AnalysisClient } from '../core/jobs/analysisClient';
import { InspectorServices, InspectorSession } from './inspectorSession';
import type { InspectorTab } from '../protocol/inspector';
import { ChatViewProvider, registerChatView } from './chat/chatView';

/** Entry point: glue only. Everything that knows about tensors lives in src/core. */
/** What activate() returns: a small API other extensions (and the integration tests) can use. */
export interface QuantLensApi {
  /** Open inspector views: what each one opened and what its page reports it shows. */
  inspectors(): { path: string; rendered: InspectorSession['rendered'] }[];
  /** Switches an open inspector to a tab (optionally starting its work), e.g. for screenshots. */
  showInspectorTab(path: string, tab: InspectorTab, start?: boolean): boolean;
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
  registerRecipeSupport(context);
  const chat = registerChatView(context, output);
  return {
    chat,
    inspectors: () => InspectorSession.all().map((s) => ({ path: s.path, rendered: s.rendered })),
    showInspectorTab: (path, tab, start) => {
      const session = InspectorSession.all().find((s) => s.path === path);
      session?.show(tab, start);
      return session !== undefined;
    },
  };
}

export function deactivate(): void {
  // Nothing to tear down beyond context.subscriptions, which VS Code disposes.
}
