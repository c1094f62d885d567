import * as vscode from 'vscode';
import { registerCheckpointEditor } from './checkpointEditor';
import { registerCommands } from './commands';

/** Entry point: glue only. Everything that knows about tensors lives in src/core. */
export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('QuantLens', { log: true });
  context.subscriptions.push(output);
  registerCheckpointEditor(context, output);
  registerCommands(context, output);
}

export function deactivate(): void {
  // Nothing to tear down beyond context.subscriptions, which VS Code disposes.
}
