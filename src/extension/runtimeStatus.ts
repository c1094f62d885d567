import * as vscode from 'vscode';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { DevicePreference, DeviceReport, installProviderLibraries, parseDevicePreference } from '../core/runtime/device';
import { ortNativeDir, ortPackageDir, ortVersion } from '../core/util/ort';
import { probeDeviceInChild } from '../core/jobs/jobProcess';

/**
 * The status-bar item that says where sessions run (CUDA, WebGPU or CPU, and why — device.ts's policy, the one calibration and chat follow), and "QuantLens: Set Up CUDA
 * Runtime…", which — only with the user's consent — fetches or copies the CUDA provider libraries that a
 * .vsix cannot carry (they are large and CUDA-version specific, and a .vsix runs no install scripts).
 */
/** The quantlens.runtime.device setting; a value outside the enum is reported and read as auto. */
export function configuredDevice(output?: vscode.LogOutputChannel): DevicePreference {
  const value = vscode.workspace.getConfiguration('quantlens.runtime').get<unknown>('device', 'auto');
  try {
    return parseDevicePreference(value, 'quantlens.runtime.device');
  } catch (error) {
    output?.warn((error as Error).message);
    return 'auto';
  }
}

export class RuntimeStatus implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('quantlens.device', vscode.StatusBarAlignment.Right, 90);
  private current: Promise<DeviceReport> | undefined;

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly probeScript: string,
  ) {
    this.item.name = 'QuantLens Runtime Device';
    this.item.command = 'quantlens.setUpCudaRuntime';
  }

  /** The device report (probed once; again after settings change or a setup). */
  device(): Promise<DeviceReport> {
    this.current ??= this.probe();
    return this.current;
  }

  refresh(): Promise<DeviceReport> {
    this.current = undefined;
    return this.device();
  }

  private async probe(): Promise<DeviceReport> {
    this.item.text = '$(loading~spin) QuantLens';
    this.item.tooltip = 'QuantLens: checking for CUDA and WebGPU…';
    this.item.show();
    const preference = configuredDevice();
    const report = await probeDeviceInChild(this.probeScript, preference);
    this.item.text = report.device === 'cuda' ? '$(zap) QuantLens: CUDA' : report.device === 'webgpu' ? '$(zap) QuantLens: WebGPU' : `$(${report.failed ? 'warning' : 'server'}) QuantLens: CPU`;
    this.item.tooltip = `${report.reason}${report.device === 'cpu' ? '\nClick to set up the CUDA runtime.' : ''}`;
    this.item.backgroundColor = report.failed ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    (report.failed ? this.output.warn : this.output.info).call(this.output, `Runtime device: ${report.reason}`);
    if (report.detail) this.output.debug(report.detail);
    return report;
  }

  dispose(): void {
    this.item.dispose();
  }
}

async function runInstaller(output: vscode.LogOutputChannel, token: vscode.CancellationToken): Promise<void> {
  const pkgDir = ortPackageDir();
  const script = join(pkgDir, 'script', 'install.js');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [script, '--onnxruntime-node-install=cuda12'], {
      cwd: pkgDir,
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1', ONNXRUNTIME_NODE_INSTALL: 'cuda12' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d: Buffer) => output.info(d.toString().trimEnd()));
    child.stderr.on('data', (d: Buffer) => output.warn(d.toString().trimEnd()));
    token.onCancellationRequested(() => child.kill());
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(token.isCancellationRequested ? 'cancelled' : `the installer exited with code ${code} (see the QuantLens output)`))));
  });
}

export function registerRuntimeStatus(context: vscode.ExtensionContext, output: vscode.LogOutputChannel): RuntimeStatus {
  const status = new RuntimeStatus(output, vscode.Uri.joinPath(context.extensionUri, 'dist', 'workers', 'job.worker.js').fsPath);
  context.subscriptions.push(
    status,
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('quantlens.runtime.device')) void status.refresh();
    }),
    vscode.commands.registerCommand('quantlens.setUpCudaRuntime', async (args?: { folder?: string }) => {
      const report = await status.device();
      if (report.device === 'cuda' && !args?.folder) {
        void vscode.window.showInformationMessage(`QuantLens: ${report.reason}.`);
        return report;
      }
      let folder = args?.folder;
      if (!folder) {
        const version = ortVersion();
        const choice = await vscode.window.showQuickPick(
          [
            { label: '$(cloud-download) Download the CUDA 12 provider libraries', description: `onnxruntime ${version} GPU build, a few hundred MB, via onnxruntime-node's installer`, id: 'download' },
            { label: '$(folder) Use libraries already on this machine…', description: 'a folder with libonnxruntime_providers_cuda.so and _shared.so of the same version', id: 'folder' },
          ],
          { title: 'Set Up CUDA Runtime', placeHolder: `${report.reason}. CUDA 12 and cuDNN 9 must also be installed.` },
        );
        if (!choice) return report;
        if (choice.id === 'download') {
          const consent = await vscode.window.showWarningMessage(
            `Download onnxruntime ${version}'s CUDA provider libraries into ${ortNativeDir()}?`,
            { modal: true, detail: 'This runs onnxruntime-node\'s own install script, which downloads the GPU package from onnxruntime\'s release location. Nothing else is changed.' },
            'Download',
          );
          if (consent !== 'Download') return report;
          try {
            await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'QuantLens: downloading the CUDA provider', cancellable: true }, (_p, token) => runInstaller(output, token));
          } catch (error) {
            void vscode.window.showErrorMessage(`QuantLens: the CUDA provider could not be installed: ${(error as Error).message}`);
            return status.refresh();
          }
        } else {
          folder = (await vscode.window.showOpenDialog({ title: 'Folder with the CUDA provider libraries', canSelectFolders: true, canSelectFiles: false, openLabel: 'Use This Folder' }))?.[0]?.fsPath;
          if (!folder) return report;
        }
      }
      if (folder) {
        try {
          const copied = await installProviderLibraries(folder);
          output.info(`Copied ${copied.join(', ')}`);
        } catch (error) {
          void vscode.window.showErrorMessage(`QuantLens: ${(error as Error).message}`);
          return report;
        }
      }
      const after = await status.refresh();
      if (after.device === 'cuda') void vscode.window.showInformationMessage(`QuantLens: ${after.reason}.`);
      else if (args?.folder === undefined) void vscode.window.showWarningMessage(`QuantLens: still on the CPU — ${after.reason}`);
      return after;
    }),
  );
  void status.device();
  return status;
}
