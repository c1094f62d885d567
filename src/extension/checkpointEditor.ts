import * as vscode from 'vscode';
import { InspectorServices, InspectorSession } from './inspectorSession';

/** A checkpoint opened by the custom editor: only the URI here; the session opens headers when shown. */
class CheckpointDocument implements vscode.CustomDocument {
  constructor(readonly uri: vscode.Uri) {}
  dispose(): void {
    // Sessions own the file handles and close them when their editor closes.
  }
}

class CheckpointEditorProvider implements vscode.CustomReadonlyEditorProvider<CheckpointDocument> {
  constructor(private readonly services: InspectorServices) {}

  openCustomDocument(uri: vscode.Uri): CheckpointDocument {
    return new CheckpointDocument(uri);
  }

  resolveCustomEditor(document: CheckpointDocument, panel: vscode.WebviewPanel): void {
    const path = document.uri.fsPath;
    this.services.output.info(`Inspecting ${path}`);
    const session = new InspectorSession(panel.webview, path, document.uri, () => panel.active, this.services);
    panel.onDidDispose(() => session.dispose());
  }
}

export function registerCheckpointEditor(context: vscode.ExtensionContext, services: InspectorServices): void {
  const provider = new CheckpointEditorProvider(services);
  // No retainContextWhenHidden: the webview keeps its view state with setState and re-asks for data.
  for (const viewType of ['quantlens.checkpoint', 'quantlens.checkpointIndex']) {
    context.subscriptions.push(vscode.window.registerCustomEditorProvider(viewType, provider, { supportsMultipleEditorsPerDocument: true }));
  }
}

/** Shows a folder of shards without an index (custom editors need a file, so this is a plain panel). */
export function openFolderInspector(services: InspectorServices, folder: vscode.Uri): void {
  const panel = vscode.window.createWebviewPanel('quantlens.checkpointFolder', folder.path.split('/').pop() ?? 'Checkpoint', vscode.ViewColumn.Active, {
    enableScripts: true,
  });
  const session = new InspectorSession(panel.webview, folder.fsPath, folder, () => panel.active, services);
  panel.onDidDispose(() => session.dispose());
}
