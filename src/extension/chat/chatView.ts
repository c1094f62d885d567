/**
 * The chat view (a webview view in QuantLens's activity-bar container): glue between the webview and the
 * chat worker. The host keeps the transcript, so answers that stream while the view is hidden are shown
 * when it comes back; the webview keeps its own inputs with setState.
 */
import * as vscode from 'vscode';
import { ChatClient, ChatWorkerError } from '../../core/runtime/chatClient';
import type { ChatTurnResult, GenerationSettings } from '../../core/runtime/chat';
import { webviewHtml } from '../webviewHtml';
import { configuredDevice } from '../runtimeStatus';
import {
  ChatRenderedView,
  ChatSettings,
  ChatStateView,
  ChatWebviewToHost,
  DEFAULT_CHAT_SETTINGS,
  HostToChatWebview,
  ModelPairView,
  TurnView,
} from '../../protocol/chat';

export const CHAT_VIEW_ID = 'quantlens.chat';
const SETTINGS_KEY = 'quantlens.chat.settings';
const JOBS_KEY = 'quantlens.jobs';

interface JobRecord {
  readonly status?: string;
  readonly spec?: { readonly kind?: string; readonly model?: string; readonly out?: string };
}

/** The newest succeeded quantize job's output and its original, from the history the Jobs view keeps. */
export function lastQuantizeJob(history: unknown): { quantized: string; original: string } | undefined {
  if (!Array.isArray(history)) return undefined;
  for (let i = history.length - 1; i >= 0; i--) {
    const job = history[i] as JobRecord;
    if (job?.status === 'succeeded' && job.spec?.kind === 'quantize' && typeof job.spec.out === 'string' && typeof job.spec.model === 'string') {
      return { quantized: job.spec.out, original: job.spec.model };
    }
  }
  return undefined;
}

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  private view: vscode.WebviewView | undefined;
  private readonly client: ChatClient;
  private models: ModelPairView = { state: 'none' };
  private settings: ChatSettings;
  private turns: TurnView[] = [];
  private perplexityState: ChatStateView['perplexity'];
  private nextTurnId = 1;
  private loading: Promise<void> | undefined;
  private loadedKey = '';
  private busy = false;
  /** What the page last reported it shows. */
  rendered: ChatRenderedView | undefined;
  private readonly renderedListeners = new Set<(view: ChatRenderedView) => void>();

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly output: vscode.LogOutputChannel,
  ) {
    this.client = new ChatClient(vscode.Uri.joinPath(context.extensionUri, 'dist', 'workers', 'chat.worker.js').fsPath);
    this.settings = { ...DEFAULT_CHAT_SETTINGS, ...context.globalState.get<Partial<ChatSettings>>(SETTINGS_KEY) };
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    view.webview.options = { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(this.context.extensionUri, 'dist', 'webview')] };
    view.webview.html = webviewHtml(view.webview, this.context.extensionUri, 'chat', 'QuantLens Chat');
    view.webview.onDidReceiveMessage((message: ChatWebviewToHost) => void this.onMessage(message));
    view.onDidDispose(() => {
      if (this.view === view) this.view = undefined;
    });
  }

  private post(message: HostToChatWebview): void {
    void this.view?.webview.postMessage(message);
  }

  private state(): ChatStateView {
    return { models: this.models, settings: this.settings, turns: this.turns, ...(this.perplexityState ? { perplexity: this.perplexityState } : {}) };
  }

  private async onMessage(message: ChatWebviewToHost): Promise<void> {
    switch (message.type) {
      case 'ready':
        if (this.models.state === 'none') {
          const last = lastQuantizeJob(this.context.globalState.get(JOBS_KEY));
          if (last) void this.setModels(last.quantized, last.original);
        }
        this.post({ type: 'state', state: this.state() });
        return;
      case 'send':
        await this.updateSettings(message.settings);
        await this.ask(message.prompt).catch(() => undefined);
        return;
      case 'stop':
        this.client.stop();
        return;
      case 'clear':
        await this.clear();
        return;
      case 'pickModel':
        await this.pickModel(message.side);
        return;
      case 'useLastJob': {
        const last = lastQuantizeJob(this.context.globalState.get(JOBS_KEY));
        if (last) await this.setModels(last.quantized, last.original);
        else void vscode.window.showInformationMessage('QuantLens: no finished quantize job yet. Pick the models with the buttons instead.');
        return;
      }
      case 'copy':
        await vscode.env.clipboard.writeText(message.text);
        return;
      case 'perplexity':
        await this.perplexity(message.text);
        return;
      case 'settings':
        await this.updateSettings(message.settings);
        return;
      case 'rendered':
        this.rendered = message.view;
        for (const listener of this.renderedListeners) listener(message.view);
        return;
    }
  }

  private async updateSettings(settings: ChatSettings): Promise<void> {
    this.settings = settings;
    await this.context.globalState.update(SETTINGS_KEY, settings);
  }

  private async pickModel(side: 'quantized' | 'original'): Promise<void> {
    const picked = await vscode.window.showOpenDialog({
      canSelectFiles: false,
      canSelectFolders: true,
      canSelectMany: false,
      openLabel: side === 'quantized' ? 'Chat with this model' : 'Compare with this original',
      title: side === 'quantized' ? 'QuantLens: the (quantized) model folder to chat with' : 'QuantLens: the original model folder',
    });
    const folder = picked?.[0]?.fsPath;
    if (!folder) return;
    if (side === 'quantized') await this.setModels(folder, this.models.original);
    else if (this.models.quantized) await this.setModels(this.models.quantized, folder);
    else await this.setModels(folder, undefined);
  }

  /** Chooses the model pair and loads it in the worker (graphs are built on first use and cached). */
  setModels(quantized: string, original: string | undefined): Promise<void> {
    const key = `${quantized}\0${original ?? ''}`;
    if (key === this.loadedKey && this.loading) return this.loading;
    this.loadedKey = key;
    this.turns = [];
    this.models = { quantized, ...(original ? { original } : {}), state: 'loading', message: 'loading…' };
    this.post({ type: 'state', state: this.state() });
    // The same policy as calibration and the status bar (device.ts): auto, or a device that must be usable.
    const device = configuredDevice(this.output);
    const loading = this.client
      .load(quantized, original, {
        device,
        cacheDir: vscode.Uri.joinPath(this.context.globalStorageUri, 'graphs').fsPath,
        onProgress: (what) => {
          if (this.loadedKey !== key) return;
          this.models = { ...this.models, message: what };
          this.post({ type: 'models', models: this.models });
        },
      })
      .then(
        (info) => {
          if (this.loadedKey !== key) return;
          this.models = { quantized, ...(original ? { original } : {}), state: 'ready', quantizedInfo: info.quantized, ...(info.original ? { originalInfo: info.original } : {}) };
          this.output.info(`chat: loaded ${quantized}${original ? ` and ${original}` : ''}`);
          this.post({ type: 'models', models: this.models });
        },
        (error: unknown) => {
          if (this.loadedKey !== key) return;
          const message = error instanceof Error ? error.message : String(error);
          this.models = { quantized, ...(original ? { original } : {}), state: 'error', message };
          this.output.error(`chat: ${message}`);
          this.post({ type: 'models', models: this.models });
        },
      );
    this.loading = loading;
    return loading;
  }

  /** Sends a prompt: the quantized model answers, with the original beside it when comparing. */
  async ask(prompt: string): Promise<TurnView> {
    if (this.busy) throw new Error('a turn is already running');
    if (this.loading) await this.loading;
    const turn: TurnView = { id: this.nextTurnId++, prompt, quantized: { text: '', tokens: 0 }, steps: [], running: true };
    const comparing = this.settings.compare && this.models.original !== undefined;
    if (comparing) turn.original = { text: '', tokens: 0 };
    this.turns.push(turn);
    this.post({ type: 'turnStarted', turn });
    if (this.models.state !== 'ready') {
      turn.error = { code: 'NoModel', message: this.models.state === 'error' ? (this.models.message ?? 'the model could not be loaded') : 'Pick a model to chat with first.' };
      turn.running = false;
      this.post({ type: 'turnDone', turn });
      return turn;
    }
    this.busy = true;
    const s = this.settings;
    const settings: GenerationSettings = { temperature: s.temperature, topP: s.topP, maxNewTokens: s.maxNewTokens, seed: s.seed };
    try {
      const result: ChatTurnResult = await this.client.turn(s.system, prompt, settings, {
        token: (side, _id, text) => {
          const target = side === 'quantized' ? turn.quantized : turn.original;
          if (!target) return;
          target.text += text;
          target.tokens++;
          this.post({ type: 'token', turnId: turn.id, side, text });
        },
        step: (step) => {
          if (!comparing) return;
          const view = { agree: step.agree, kl: step.kl };
          turn.steps.push(view);
          this.post({ type: 'step', turnId: turn.id, step: view });
        },
        done: (side, stats) => {
          const target = side === 'quantized' ? turn.quantized : turn.original;
          if (!target) return;
          target.stats = stats;
          this.post({ type: 'sideDone', turnId: turn.id, side, stats });
        },
      }, comparing);
      turn.quantized.text = result.quantized.text;
      turn.quantized.tokens = result.quantized.tokens.length;
      if (turn.original && result.original) {
        turn.original.text = result.original.text;
        turn.original.tokens = result.original.tokens.length;
      }
      if (comparing) {
        turn.meanKl = result.meanKl;
        turn.agreement = result.agreement;
      }
    } catch (error) {
      turn.error = error instanceof ChatWorkerError ? { code: error.code, message: error.message } : { code: 'Failed', message: error instanceof Error ? error.message : String(error) };
      this.output.error(`chat: ${turn.error.message}`);
    } finally {
      this.busy = false;
      turn.running = false;
      this.post({ type: 'turnDone', turn });
    }
    return turn;
  }

  async clear(): Promise<void> {
    this.client.stop();
    this.turns = [];
    this.perplexityState = undefined;
    if (this.models.state === 'ready') await this.client.clear().catch(() => undefined);
    this.post({ type: 'state', state: this.state() });
  }

  private async perplexity(text: string): Promise<void> {
    this.perplexityState = { text, running: true };
    this.post({ type: 'perplexity', perplexity: this.perplexityState });
    try {
      if (this.loading) await this.loading;
      if (this.models.state !== 'ready') throw new Error('Pick a model first.');
      this.perplexityState = { text, running: false, result: await this.client.perplexity(text) };
    } catch (error) {
      this.perplexityState = { text, running: false, error: error instanceof Error ? error.message : String(error) };
    }
    this.post({ type: 'perplexity', perplexity: this.perplexityState });
  }

  /** Resolves with the page's next report that satisfies `accept` (for tests). */
  waitForRendered(accept: (view: ChatRenderedView) => boolean, timeoutMs: number): Promise<ChatRenderedView> {
    if (this.rendered && accept(this.rendered)) return Promise.resolve(this.rendered);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.renderedListeners.delete(listener);
        reject(new Error(`the chat page did not show the expected state within ${timeoutMs} ms; last: ${JSON.stringify(this.rendered)}`));
      }, timeoutMs);
      const listener = (view: ChatRenderedView) => {
        if (!accept(view)) return;
        clearTimeout(timer);
        this.renderedListeners.delete(listener);
        resolve(view);
      };
      this.renderedListeners.add(listener);
    });
  }

  /** Types a prompt into the page and sends it from there (tests drive the real UI this way). */
  askThroughPage(prompt: string): void {
    this.post({ type: 'ask', prompt });
  }

  get currentSettings(): ChatSettings {
    return this.settings;
  }

  get transcript(): readonly TurnView[] {
    return this.turns;
  }

  dispose(): void {
    void this.client.dispose();
  }
}

export function registerChatView(context: vscode.ExtensionContext, output: vscode.LogOutputChannel): ChatViewProvider {
  const provider = new ChatViewProvider(context, output);
  context.subscriptions.push(
    provider,
    vscode.window.registerWebviewViewProvider(CHAT_VIEW_ID, provider),
    vscode.commands.registerCommand('quantlens.openChat', async (arg?: { quantized?: string; original?: string } | vscode.Uri) => {
      await vscode.commands.executeCommand(`${CHAT_VIEW_ID}.focus`);
      if (arg instanceof vscode.Uri) await provider.setModels(arg.fsPath, undefined);
      else if (arg?.quantized) await provider.setModels(arg.quantized, arg.original);
    }),
  );
  return provider;
}
