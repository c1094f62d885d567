import * as vscode from 'vscode';
import { Checkpoint } from '../core/safetensors/checkpoint';
import { InspectorSession } from './inspectorSession';

/** A checkpoint opened by the custom editor: only the URI here; the session opens headers when shown. */
class CheckpointDocument implements vscode.CustomDocument {
  constructor(readonly uri: vscode.Uri) {}
  dispose(): void {
    // Sessions own the file handles and close them when their editor closes.
  }
}

class CheckpointEditorProvider implements vscode.CustomReadonlyEditorProvider<CheckpointDocument> {
  constructor(private readonly context: vscode.ExtensionContext, private readonly output: vscode.LogOutputChannel) {}

  openCustomDocument(uri: vscode.Uri): CheckpointDocument {
    return new CheckpointDocument(uri);
  }

  resolveCustomEditor(document: CheckpointDocument, panel: vscode.WebviewPanel): void {
    const path = document.uri.fsPath;
    this.output.info(`Inspecting ${path}`);
    const session = new InspectorSession(panel.webview, this.context.extensionUri, path, Checkpoint.open(path), () => panel.active, this.output);
    panel.onDidDispose(() => session.dispose());
  }
}

export function registerCheckpointEditor(context: vscode.ExtensionContext, output: vscode.LogOutputChannel): void {
  const provider = new CheckpointEditorProvider(context, output);
  // No retainContextWhenHidden: the webview keeps its view state with setState and re-asks for data.
  for (const viewType of ['quantlens.checkpoint', 'quantlens.checkpointIndex']) {
    context.subscriptions.push(vscode.window.registerCustomEditorProvider(viewType, provider, { supportsMultipleEditorsPerDocument: true }));
  }
}

/** Shows a folder of shards without an index (custom editors need a file, so this is a plain panel). */
export function openFolderInspector(context: vscode.ExtensionContext, output: vscode.LogOutputChannel, folder: vscode.Uri): void {
  const panel = vscode.window.createWebviewPanel('quantlens.checkpointFolder', folder.path.split('/').pop() ?? 'Checkpoint', vscode.ViewColumn.Active, {
    enableScripts: true,
  });
  const session = new InspectorSession(panel.webview, context.extensionUri, folder.fsPath, Checkpoint.open(folder.fsPath), () => panel.active, output);
  panel.onDidDispose(() => session.dispose());
}
