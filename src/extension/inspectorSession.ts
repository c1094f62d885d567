import * as vscode from 'vscode';
import { basename } from 'node:path';
import { Checkpoint, findIndexListing } from '../core/safetensors/checkpoint';
import { CheckpointSummary, summarizeCheckpoint } from '../core/checkpoint/summary';
import { queryTensorTable } from '../core/checkpoint/tensorQuery';
import type { HostToWebview, SummaryView, WebviewToHost } from '../protocol/inspector';
import { webviewHtml } from './webviewHtml';

/**
 * One inspector view over one checkpoint, hosted in a custom editor (a .safetensors file or an index) or
 * in a panel (a folder of shards). Owns the checkpoint's file handles until disposed.
 */
export class InspectorSession implements vscode.Disposable {
  private static readonly active = new Set<InspectorSession>();
  private summary: CheckpointSummary | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  static get focused(): InspectorSession | undefined {
    for (const session of InspectorSession.active) if (session.visible()) return session;
    return undefined;
  }

  constructor(
    private readonly webview: vscode.Webview,
    extensionUri: vscode.Uri,
    /** What was opened: a file, an index or a folder. */
    readonly path: string,
    private readonly checkpoint: Promise<Checkpoint>,
    private readonly visible: () => boolean,
    private readonly output: vscode.LogOutputChannel,
  ) {
    InspectorSession.active.add(this);
    webview.options = { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist', 'webview')] };
    webview.html = webviewHtml(webview, extensionUri, 'inspector', basename(path));
    this.disposables.push(webview.onDidReceiveMessage((message: WebviewToHost) => this.onMessage(message)));
  }

  /** The summary as JSON (for "Copy Checkpoint Summary"), once loaded. */
  async summaryJson(): Promise<string | undefined> {
    await this.ensureSummary().catch(() => undefined);
    return this.summary ? JSON.stringify(this.summary, null, 2) : undefined;
  }

  private async ensureSummary(): Promise<CheckpointSummary> {
    if (!this.summary) this.summary = await summarizeCheckpoint(await this.checkpoint, this.path);
    return this.summary;
  }

  private post(message: HostToWebview): void {
    void this.webview.postMessage(message);
  }

  private async onMessage(message: WebviewToHost): Promise<void> {
    switch (message.type) {
      case 'ready': {
        // The webview (re)loaded: push everything it needs once (also after being hidden and restored).
        try {
          const summary = await this.ensureSummary();
          const { tensors: _tensors, ...rest } = summary;
          const view: SummaryView = { ...rest, title: basename(this.path) };
          const checkpoint = await this.checkpoint;
          const wholeCheckpoint = checkpoint.layout === 'single-file' ? await findIndexListing(this.path) : undefined;
          this.post({ type: 'init', summary: view, wholeCheckpoint });
        } catch (error) {
          const text = error instanceof Error ? error.message : String(error);
          this.output.error(`Cannot open ${this.path}: ${text}`);
          this.post({ type: 'loadError', message: text });
        }
        return;
      }
      case 'request': {
        try {
          const summary = await this.ensureSummary();
          this.post({ type: 'response', requestId: message.requestId, result: queryTensorTable(summary.tensors, message.params) });
        } catch (error) {
          this.post({ type: 'error', requestId: message.requestId, message: error instanceof Error ? error.message : String(error) });
        }
        return;
      }
      case 'openWholeCheckpoint': {
        const index = await findIndexListing(this.path);
        if (index) await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(index), 'quantlens.checkpointIndex');
        return;
      }
    }
  }

  dispose(): void {
    InspectorSession.active.delete(this);
    for (const d of this.disposables) d.dispose();
    void this.checkpoint.then((c) => c.close(), () => undefined);
  }
}
