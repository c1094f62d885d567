import * as vscode from 'vscode';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { INDEX_FILE_PATTERN } from '../core/safetensors/checkpoint';
import { CancelledByCaller } from '../core/jobs/analysisClient';
import { openFolderInspector } from './checkpointEditor';
import { InspectorServices, InspectorSession } from './inspectorSession';

/** Opens a file, index or folder in the inspector: files in the custom editor, folders by their index. */
async function openInInspector(services: InspectorServices, uri: vscode.Uri): Promise<void> {
  const stat = await vscode.workspace.fs.stat(uri);
  if (stat.type & vscode.FileType.Directory) {
    const names = await fs.readdir(uri.fsPath);
    const indexes = names.filter((n) => INDEX_FILE_PATTERN.test(n)).sort();
    const index = indexes.includes('model.safetensors.index.json') ? 'model.safetensors.index.json' : indexes[0];
    if (index) {
      await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(join(uri.fsPath, index)), 'quantlens.checkpointIndex');
      return;
    }
    const shards = names.filter((n) => n.endsWith('.safetensors')).sort();
    if (shards.length === 0) {
      void vscode.window.showErrorMessage(`QuantLens: ${uri.fsPath} holds no .safetensors files.`);
      return;
    }
    if (shards.length === 1) {
      await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(join(uri.fsPath, shards[0]!)), 'quantlens.checkpoint');
      return;
    }
    openFolderInspector(services, uri);
    return;
  }
  const viewType = INDEX_FILE_PATTERN.test(uri.fsPath) ? 'quantlens.checkpointIndex' : 'quantlens.checkpoint';
  await vscode.commands.executeCommand('vscode.openWith', uri, viewType);
}

export function registerCommands(context: vscode.ExtensionContext, services: InspectorServices): void {
  context.subscriptions.push(
    vscode.commands.registerCommand('quantlens.openCheckpoint', async (target?: vscode.Uri) => {
      const uri =
        target ??
        (
          await vscode.window.showOpenDialog({
            title: 'Open Checkpoint',
            openLabel: 'Inspect',
            canSelectFiles: true,
            canSelectFolders: true,
            canSelectMany: false,
            filters: { Checkpoints: ['safetensors', 'json'] },
          })
        )?.[0];
      if (uri) await openInInspector(services, uri);
    }),
    vscode.commands.registerCommand('quantlens.openInInspector', async (target?: vscode.Uri) => {
      const uri = target ?? vscode.window.activeTextEditor?.document.uri;
      if (!uri) {
        await vscode.commands.executeCommand('quantlens.openCheckpoint');
        return;
      }
      await openInInspector(services, uri);
    }),
    vscode.commands.registerCommand('quantlens.runHealthScan', async () => {
      const session = InspectorSession.focused;
      if (!session) {
        void vscode.window.showWarningMessage('QuantLens: open a checkpoint in the inspector first.');
        return;
      }
      let report: Awaited<ReturnType<InspectorSession['runHealthScan']>>;
      try {
        report = await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: 'QuantLens: health scan', cancellable: true },
          async (progress, token) => {
            const controller = new AbortController();
            token.onCancellationRequested(() => controller.abort());
            let reported = 0;
            return session.runHealthScan(true, (fraction, what) => {
              progress.report({ increment: (fraction - reported) * 100, message: what });
              reported = fraction;
            }, controller.signal);
          },
        );
      } catch (error) {
        if (error instanceof CancelledByCaller) return;
        // A file that cannot be read (a Git LFS pointer, a truncated download) says why, here and in the Problems panel.
        void vscode.window.showErrorMessage(`QuantLens: health scan failed: ${error instanceof Error ? error.message : String(error)}`);
        return;
      }
      session.show('health');
      session.postHealthReport(report);
      const errors = report.findings.filter((f) => f.severity === 'error').length;
      void vscode.window.showInformationMessage(`QuantLens: ${errors} error${errors === 1 ? '' : 's'}, ${report.findings.length - errors} warning${report.findings.length - errors === 1 ? '' : 's'} (see the Problems panel).`);
    }),
    vscode.commands.registerCommand('quantlens.compareWithOriginal', async (original?: vscode.Uri) => {
      const session = InspectorSession.focused;
      if (!session) {
        void vscode.window.showWarningMessage('QuantLens: open a quantized checkpoint in the inspector first.');
        return;
      }
      // Without an argument the page asks for the original itself (and shows progress and results).
      session.show('error', true, { original: original?.fsPath ?? 'pick' });
    }),
    vscode.commands.registerCommand('quantlens.simulateQuantization', async () => {
      const session = InspectorSession.focused;
      if (!session) {
        void vscode.window.showWarningMessage('QuantLens: open a checkpoint in the inspector first.');
        return;
      }
      session.show('error', true);
    }),
    vscode.commands.registerCommand('quantlens.copyTensorSummary', async () => {
      const json = await InspectorSession.focused?.summaryJson();
      if (!json) {
        void vscode.window.showWarningMessage('QuantLens: open a checkpoint in the inspector first.');
        return;
      }
      await vscode.env.clipboard.writeText(json);
      void vscode.window.showInformationMessage('QuantLens: checkpoint summary copied as JSON.');
    }),
  );
}
