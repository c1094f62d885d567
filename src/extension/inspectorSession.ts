import * as vscode from 'vscode';
import { existsSync, promises as fs, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { findIndexListing } from '../core/safetensors/checkpoint';
import type { CheckpointAnalysis } from '../core/checkpoint/summary';
import { queryLayers, queryTensorTable } from '../core/checkpoint/tensorQuery';
import { codesTensorOf } from '../core/stats/weightStats';
import { AnalysisClient, CancelledByCaller } from '../core/jobs/analysisClient';
import { HostEndpoint } from '../webviewMessages/endpoint';
import type { ErrorParams, HealthView, InspectorMessages, InspectorRequests, InspectorTab, PlanView, SummaryView } from '../webviewMessages/inspector';
import { modelFolderOf, planFor } from './planView';
import type { RequestContext } from '../webviewMessages/endpoint';
import { webviewHtml } from './webviewHtml';
import { observeInspector } from './testHooks';

/** Token embedding and output-head weights (Llama/Mistral/Qwen, GPT-2, GPT-NeoX names). */
const EMBEDDING_TENSOR = /(^|\.)(embed_tokens|lm_head|wte|embed_in|embed_out)\.weight$/;

/** How often an open view compares its checkpoint folder with what it read (when no watcher event came). */
const FOLDER_POLL_MS = 2_000;

/** Files of a folder that a checkpoint view reads (weights, index, config); more than this are not compared. */
const SIGNATURE_FILE_LIMIT = 512;

/**
 * Names, sizes and modification times of the .safetensors and .json files in a folder: what a finished
 * download, `git lfs pull` or re-save changes. An unreadable folder has its own signature.
 */
async function folderSignature(folder: string): Promise<string> {
  try {
    const names = (await fs.readdir(folder)).filter((n) => /\.(safetensors|json)$/i.test(n)).sort().slice(0, SIGNATURE_FILE_LIMIT);
    const parts = await Promise.all(
      names.map(async (name) => {
        const st = await fs.stat(join(folder, name)).catch(() => undefined);
        return st ? `${name}:${st.size}:${st.mtimeMs}` : `${name}:gone`;
      }),
    );
    return parts.join('\n');
  } catch (error) {
    return `unreadable: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
}

/** What every inspector session shares: the analysis worker, the Problems-panel collection, the log. */
export interface InspectorServices {
  readonly analysis: AnalysisClient;
  readonly diagnostics: vscode.DiagnosticCollection;
  readonly output: vscode.LogOutputChannel;
  readonly extensionUri: vscode.Uri;
}

/**
 * One inspector view over one checkpoint, hosted in a custom editor (a .safetensors file or an index) or
 * in a panel (a folder of shards). Header-level analysis runs here (it reads only headers); streamed work
 * (statistics, scales, health) runs in the analysis worker.
 */
export class InspectorSession implements vscode.Disposable {
  private static readonly active = new Set<InspectorSession>();
  private analysis: Promise<CheckpointAnalysis> | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  /** The typed connection to the page (src/webviewMessages/endpoint.ts). */
  readonly messages: HostEndpoint<InspectorMessages>;
  /** Whether the page has loaded and been sent the checkpoint (it listens: messages to it are not lost). */
  pageReady = false;
  /** Whether the checkpoint's headers could be read (true), could not (false), or are being read (undefined). */
  opened: boolean | undefined;
  private static readonly openedChanged = new vscode.EventEmitter<InspectorSession>();
  /** Fires when a view's `opened` changes (the Quantize Model… title-bar button follows it). */
  static readonly onDidChangeOpened = InspectorSession.openedChanged.event;

  static get focused(): InspectorSession | undefined {
    for (const session of InspectorSession.active) if (session.visible()) return session;
    return undefined;
  }

  /** Sessions currently open (tests and commands look them up by path). */
  static all(): readonly InspectorSession[] {
    return [...InspectorSession.active];
  }

  constructor(
    private readonly webview: vscode.Webview,
    /** What was opened: a file, an index or a folder. */
    readonly path: string,
    /** The URI diagnostics attach to (the opened file, or the index of a folder). */
    private readonly resource: vscode.Uri,
    private readonly visible: () => boolean,
    private readonly services: InspectorServices,
  ) {
    InspectorSession.active.add(this);
    webview.options = { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(services.extensionUri, 'dist', 'webview')] };
    webview.html = webviewHtml(webview, services.extensionUri, 'inspector', basename(path));
    this.messages = new HostEndpoint<InspectorMessages>((envelope) => void webview.postMessage(envelope), this.requestHandlers(), (message) => void this.onMessage(message), {
      isCancellation: (error) => error instanceof CancelledByCaller,
      onFailure: (method, error) => services.output.error(`${method} on ${path}: ${error instanceof Error ? error.message : String(error)}`),
    });
    this.disposables.push(webview.onDidReceiveMessage((data: unknown) => this.messages.receive(data)));
    if (__QUANTLENS_TEST_HOOKS__) observeInspector(this);
    this.watchCheckpointFolder();
    // Read the headers while the page loads rather than after it asks: the two overlap. Failures are
    // reported when the page is ready.
    this.getAnalysis().catch(() => undefined);
  }

  private codes: { analysis: CheckpointAnalysis; names: ReadonlySet<string> } | undefined;

  private reloadTimer: NodeJS.Timeout | undefined;
  /** The checkpoint folder's files as they were when the headers were last read (folderSignature). */
  private readSignature: Promise<string> | undefined;
  private checking = false;

  /**
   * A weight file, index or config.json changing in the checkpoint's folder (a download finishing, `git lfs
   * pull`, a re-save) invalidates everything read so far: the diagnostics go, the headers are read again
   * and the page reloads (its view state survives through setState). VS Code's watcher is the prompt path,
   * but its events for folders outside the workspace can lag by tens of seconds or not come at all, and
   * late events for files copied before the view opened would reload a page that is current (a reload
   * takes the focus, closing a quick pick the user is in). So an event only triggers a comparison of the
   * folder's sizes and times with those the headers were read from, and a slow poll makes the same
   * comparison when no event comes.
   */
  private watchCheckpointFolder(): void {
    const folder = modelFolderOf(this.path);
    const watcher = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(folder), '*.{safetensors,json}'));
    const changed = () => {
      clearTimeout(this.reloadTimer);
      // Writers touch a file many times; compare once they pause.
      this.reloadTimer = setTimeout(() => void this.reloadIfChanged(folder), 300);
    };
    const poll = setInterval(() => void this.reloadIfChanged(folder), FOLDER_POLL_MS);
    poll.unref?.();
    this.disposables.push(watcher, watcher.onDidChange(changed), watcher.onDidCreate(changed), watcher.onDidDelete(changed), { dispose: () => clearInterval(poll) });
  }

  private async reloadIfChanged(folder: string): Promise<void> {
    if (this.checking || !this.readSignature || !InspectorSession.active.has(this)) return;
    this.checking = true;
    try {
      const [before, now] = await Promise.all([this.readSignature, folderSignature(folder)]);
      if (before !== now && InspectorSession.active.has(this)) await this.reload();
    } finally {
      this.checking = false;
    }
  }

  private async reload(): Promise<void> {
    if (!InspectorSession.active.has(this)) return;
    this.services.output.info(`Files of ${this.path} changed: reading it again`);
    this.clearDiagnostics();
    this.messages.cancelAll();
    this.pageReady = false;
    this.analysis = undefined;
    this.readSignature = undefined;
    this.codes = undefined;
    await this.services.analysis.call('close', { path: this.path }).catch(() => undefined);
    if (!InspectorSession.active.has(this)) return;
    this.webview.html = webviewHtml(this.webview, this.services.extensionUri, 'inspector', basename(this.path));
  }

  /** Removes this view's findings from the Problems panel, unless another open view of the same file shows them too. */
  private clearDiagnostics(): void {
    const shared = [...InspectorSession.active].some((s) => s !== this && s.resource.toString() === this.resource.toString());
    if (!shared) this.services.diagnostics.delete(this.resource);
  }

  /** Tensors holding a quantized layer's codes (their statistics can be shown dequantized). */
  private codesTensors(analysis: CheckpointAnalysis): ReadonlySet<string> {
    if (this.codes?.analysis !== analysis) {
      const names = new Set<string>();
      for (const m of analysis.layerMap.modules) {
        const codes = codesTensorOf(m);
        if (codes) names.add(codes);
      }
      this.codes = { analysis, names };
    }
    return this.codes.names;
  }

  /**
   * Summary and layer map (headers only, computed once), from the analysis worker: it parses the headers
   * off the extension host's thread (a 100,000-tensor header takes over a second) and keeps the checkpoint
   * open for the statistics, scales and error requests that follow, so nothing is parsed twice.
   */
  getAnalysis(): Promise<CheckpointAnalysis> {
    if (!this.analysis) {
      // Taken before the headers are read: a file replaced while they are read counts as changed.
      this.readSignature = folderSignature(modelFolderOf(this.path));
      const analysis = this.services.analysis.call('analyze', { path: this.path });
      this.analysis = analysis;
      const settle = (opened: boolean) => {
        if (this.analysis !== analysis || this.opened === opened) return; // a reload replaced it
        this.opened = opened;
        InspectorSession.openedChanged.fire(this);
      };
      analysis.then(() => settle(true), () => settle(false));
    }
    return this.analysis;
  }

  /** The summary as JSON (for "Copy Checkpoint Summary"). */
  async summaryJson(): Promise<string | undefined> {
    const analysis = await this.getAnalysis().catch(() => undefined);
    return analysis ? JSON.stringify(analysis.summary, null, 2) : undefined;
  }

  /** Shows a tab of the page, optionally starting its on-demand work. */
  show(tab: InspectorTab, start = false, params?: ErrorParams): void {
    this.messages.notify({ type: 'show', tab, start, params });
  }

  /** A plan of this view's model (a plan job just finished): its Error tab shows it. */
  postPlan(plan: PlanView): void {
    if (this.pageReady) this.messages.notify({ type: 'plan', plan });
  }

  /** The model folder this view shows (for plans of that model). */
  get modelFolder(): string {
    return modelFolderOf(this.path);
  }

  postHealthReport(report: HealthView): void {
    this.messages.notify({ type: 'healthReport', report });
  }

  /** Runs the health scan (used by the webview and by the "Run Health Scan" command). */
  async runHealthScan(weights: boolean, progress?: (fraction: number, what?: string) => void, signal?: AbortSignal): Promise<HealthView> {
    const unreadable = await this.getAnalysis().then(
      () => undefined,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    if (unreadable !== undefined) {
      // Nothing can be scanned, and why (a Git LFS pointer, a truncated file) belongs in the Problems panel too.
      this.publishDiagnostics([{ severity: 'error', kind: 'unreadable', message: unreadable }]);
      throw new Error(unreadable);
    }
    const report = await this.services.analysis.call('health', { path: this.path, weights }, { onProgress: progress, signal });
    this.publishDiagnostics(report.findings);
    const view = { findings: report.findings, scannedTensors: report.scannedTensors, scannedBytes: report.scannedBytes };
    return view;
  }

  private publishDiagnostics(findings: readonly { severity: 'error' | 'warning' | 'info'; kind: string; message: string }[]): void {
    const severity = { error: vscode.DiagnosticSeverity.Error, warning: vscode.DiagnosticSeverity.Warning, info: vscode.DiagnosticSeverity.Information };
    this.services.diagnostics.set(
      this.resource,
      findings.map((f) => {
        const diagnostic = new vscode.Diagnostic(new vscode.Range(0, 0, 0, 0), f.message, severity[f.severity]);
        diagnostic.source = 'QuantLens health';
        diagnostic.code = f.kind;
        return diagnostic;
      }),
    );
  }

  /** The page's requests: pages of the tables (headers only, answered here) and streamed work (the analysis worker). */
  private requestHandlers(): { [M in keyof InspectorRequests]: (params: InspectorRequests[M]['params'], context: RequestContext) => Promise<InspectorRequests[M]['result']> } {
    const worker = (context: RequestContext) => ({ onProgress: (fraction: number, what?: string) => context.progress(fraction, what), signal: context.signal });
    return {
      tensorPage: async (query) => {
        const analysis = await this.getAnalysis();
        const page = queryTensorTable(analysis.summary.tensors, query);
        const codes = this.codesTensors(analysis);
        return { ...page, quantizedCodes: page.rows.filter((r) => codes.has(r.name)).map((r) => r.name) };
      },
      layerPage: async (query) => queryLayers((await this.getAnalysis()).layerMap.modules, query),
      tensorStats: ({ tensor, bins, view }, context) => {
        // The worker reads a missing or empty view as "the tensor as stored": refuse anything else unknown.
        if (view !== undefined && view !== 'dequantized' && view !== 'codes') throw new Error(`statistics of ${tensor}: unknown view ${JSON.stringify(view)} (expected "dequantized" or "codes", or none for the tensor as stored)`);
        return this.services.analysis.call('tensorStats', { path: this.path, tensor, bins, view }, worker(context));
      },
      scales: (_params, context) => this.services.analysis.call('scales', { path: this.path }, worker(context)),
      health: ({ weights }, context) => this.runHealthScan(weights, context.progress, context.signal),
      errors: async ({ simulation, original, calibStats }, context) => {
        const picked = original === 'pick' ? await pickOriginal(this.path) : undefined;
        if (original === 'pick' && !picked) throw new CancelledByCaller();
        const originalPath = picked ? picked.original : original;
        const statsPath = picked ? picked.calibStats : calibStats;
        return this.services.analysis.call('errors', { path: this.path, simulation, original: originalPath, calibStats: statsPath }, worker(context));
      },
      plan: () => planFor(this.path),
    };
  }

  private async onMessage(message: InspectorMessages['toHost']): Promise<void> {
    switch (message.type) {
      case 'ready': {
        // The webview (re)loaded: push everything it needs once (also after being hidden and restored).
        try {
          const { summary } = await this.getAnalysis();
          const { tensors: _tensors, ...rest } = summary;
          const embeddingTensors = summary.tensors.filter((t) => EMBEDDING_TENSOR.test(t.name));
          const embeddings = embeddingTensors.length
            ? { names: embeddingTensors.map((t) => t.name), bytes: embeddingTensors.reduce((sum, t) => sum + t.bytes, 0), dtypes: [...new Set(embeddingTensors.map((t) => t.dtype))] }
            : undefined;
          const view: SummaryView = { ...rest, title: basename(this.path), ...(embeddings ? { embeddings } : {}) };
          const wholeCheckpoint = summary.layout === 'single-file' ? await findIndexListing(this.path) : undefined;
          this.messages.notify({ type: 'init', summary: view, wholeCheckpoint });
        } catch (error) {
          const text = error instanceof Error ? error.message : String(error);
          this.services.output.error(`Cannot open ${this.path}: ${text}`);
          this.messages.notify({ type: 'loadError', message: text });
        }
        this.pageReady = true;
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
    // A closed view's findings would outlive anything that can explain or refresh them.
    this.clearDiagnostics();
    clearTimeout(this.reloadTimer);
    InspectorSession.active.delete(this);
    this.messages.cancelAll();
    for (const d of this.disposables) d.dispose();
    void this.services.analysis.call('close', { path: this.path }).catch(() => undefined);
  }
}

/**
 * The source a QuantLens quantize job recorded in its output (quantlens.json's source_model), when the
 * output is `path` or the folder holding it and that source still exists.
 */
function recordedSource(path: string): string | undefined {
  const folder = statSync(path, { throwIfNoEntry: false })?.isDirectory() ? path : dirname(path);
  try {
    const record = JSON.parse(readFileSync(join(folder, 'quantlens.json'), 'utf8')) as { source_model?: unknown };
    return typeof record.source_model === 'string' && existsSync(record.source_model) ? record.source_model : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Asks for the original (unquantized) checkpoint of a quantized one — first offering the source its quantize
 * job recorded — and, optionally, calibration statistics with Hessians for the output-space error.
 */
async function pickOriginal(path: string): Promise<{ original: string; calibStats?: string } | undefined> {
  const source = recordedSource(path);
  let original: string | undefined;
  if (source) {
    const choice = await vscode.window.showQuickPick(
      [
        { label: basename(source), description: 'the source this checkpoint was quantized from', detail: source, path: source },
        { label: 'Choose another checkpoint…', path: undefined },
      ],
      { title: 'Compare with Original', placeHolder: 'The unquantized checkpoint to compare with' },
    );
    if (!choice) return undefined;
    original = choice.path;
  }
  if (!original) {
    const folder = source ? vscode.Uri.file(dirname(source)) : vscode.Uri.file(dirname(statSync(path, { throwIfNoEntry: false })?.isDirectory() ? path : dirname(path)));
    const picked = await vscode.window.showOpenDialog({ title: 'Compare with Original: choose the unquantized checkpoint', openLabel: 'Compare', canSelectFiles: true, canSelectFolders: true, canSelectMany: false, defaultUri: folder });
    original = picked?.[0]?.fsPath;
  }
  if (!original) return undefined;
  const stats = await vscode.window.showQuickPick(
    [
      { label: 'Weight error only', calib: false },
      { label: 'Also the output error on calibration data…', description: 'needs a statistics file with Hessians (quantlens calibrate --hessians)', calib: true },
    ],
    { title: 'Compare with Original: output error', placeHolder: 'GPTQ minimises the output error on calibration inputs, not the weight error' },
  );
  if (!stats) return undefined;
  if (!stats.calib) return { original };
  const file = await vscode.window.showOpenDialog({ title: 'Calibration statistics (with Hessians)', openLabel: 'Use', canSelectFiles: true, canSelectFolders: false, canSelectMany: false, filters: { 'Calibration statistics': ['safetensors'] } });
  return file?.[0] ? { original, calibStats: file[0].fsPath } : { original };
}

/** Filtering and paging of the layer map (core; re-exported for the session's callers). */
export { queryLayers };
