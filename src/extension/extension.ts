import * as vscode from 'vscode';
import { registerCheckpointEditor } from './checkpointEditor';
import { registerCommands } from './commands';
import { registerRecipeSupport } from './recipeLanguage';
import { registerRecipePreview } from './recipePreview';
import { AnalysisClient } from '../core/jobs/analysisClient';
import type { InspectorServices } from './inspectorSession';
import { registerJobs } from './jobs/registerJobs';
import { registerRuntimeStatus } from './runtimeStatus';
import { registerChatView } from './chat/chatView';
import { createTestApi, QuantLensTestApi } from './testApi';

/**
 * Entry point: glue only. Everything that knows about tensors lives in src/core. Test builds return the
 * integration tests' API (testApi.ts); the product exports nothing.
 */
export function activate(context: vscode.ExtensionContext): QuantLensTestApi | undefined {
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
  return __QUANTLENS_TEST_HOOKS__ ? createTestApi({ recipes, jobs, runtime, chat }) : undefined;
}

export function deactivate(): void {
  // Nothing to tear down beyond context.subscriptions, which VS Code disposes.
}
