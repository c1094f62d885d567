/**
 * The chat: glue between its pages and the chat worker. One session (models, transcript, worker) is shown in
 * the side-bar view (quick use) and, on demand, in an editor tab (a webview panel, room for both answers side
 * by side); every page gets the same messages. The host keeps the transcript, so answers that stream while a
 * page is hidden are shown when it comes back; each page keeps its own inputs with setState.
 */
import * as vscode from 'vscode';
import { ChatClient, ChatWorkerError } from '../../core/chat/workerClient';
import type { ChatTurnResult, GenerationSettings } from '../../core/chat/generation';
import { webviewHtml } from '../webviewHtml';
import { configuredDevice } from '../runtimeStatus';
import { HostEndpoint, RequestHandlers } from '../../webviewMessages/endpoint';
import { ChatMessages, ChatSettings, ChatStateView, ChatSurface, DEFAULT_CHAT_SETTINGS, ModelPairView, Side, TurnView } from '../../webviewMessages/chat';
import { forgetChatPage, observeChatPage } from '../testHooks';
import { hasSyntheticWeights, latestQuantizeJob, quantizePairOf } from './chatModels';

export const CHAT_VIEW_ID = 'quantlens.chat';
/** The editor tab's webview type (also what the panel serializer restores after a reload). */
export const CHAT_PANEL_TYPE = 'quantlens.chatPanel';
const SETTINGS_KEY = 'quantlens.chat.settings';
const JOBS_KEY = 'quantlens.jobs';

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.WebviewPanelSerializer, vscode.Disposable {
  /** The pages showing the chat now, by their connections: at most one per surface. */
  private readonly pages = new Map<ChatSurface, { readonly webview: vscode.Webview; readonly messages: HostEndpoint<ChatMessages> }>();
  private panel: vscode.WebviewPanel | undefined;
  private readonly client: ChatClient;
  private models: ModelPairView = { state: 'none' };
  private settings: ChatSettings;
  private turns: TurnView[] = [];
  private perplexityState: ChatStateView['perplexity'];
  private nextTurnId = 1;
  private loading: Promise<void> | undefined;
  private loadedKey = '';
  private busy = false;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly output: vscode.LogOutputChannel,
  ) {
    this.client = new ChatClient(vscode.Uri.joinPath(context.extensionUri, 'dist', 'workers', 'chat.worker.js').fsPath);
    this.settings = { ...DEFAULT_CHAT_SETTINGS, ...context.globalState.get<Partial<ChatSettings>>(SETTINGS_KEY) };
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.attach('view', view.webview);
    view.onDidDispose(() => this.detach('view', view.webview));
  }

  /** Opens the chat in an editor tab (or reveals the one open), beside the side-bar view. */
  openInEditor(): vscode.WebviewPanel {
    if (this.panel) {
      this.panel.reveal(undefined, false);
      return this.panel;
    }
    const panel = vscode.window.createWebviewPanel(CHAT_PANEL_TYPE, 'QuantLens Chat', { viewColumn: vscode.ViewColumn.Active, preserveFocus: false }, this.webviewOptions());
    this.adoptPanel(panel);
    return panel;
  }

  /** The panel serializer: a chat tab open when the window reloaded comes back with the host's session. */
  async deserializeWebviewPanel(panel: vscode.WebviewPanel): Promise<void> {
    if (this.panel) {
      // Only one chat tab: a second restored one (two windows' state merged) closes.
      panel.dispose();
      return;
    }
    this.adoptPanel(panel);
  }

  private adoptPanel(panel: vscode.WebviewPanel): void {
    this.panel = panel;
    this.attach('panel', panel.webview);
    panel.onDidDispose(() => {
      if (this.panel === panel) this.panel = undefined;
      this.detach('panel', panel.webview);
    });
  }

  private webviewOptions(): vscode.WebviewOptions & vscode.WebviewPanelOptions {
    return { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(this.context.extensionUri, 'dist', 'webview')] };
  }

  private attach(surface: ChatSurface, webview: vscode.Webview): void {
    const messages: HostEndpoint<ChatMessages> = new HostEndpoint<ChatMessages>((envelope) => void webview.postMessage(envelope), this.requestHandlers(), (message) => void this.onMessage(message, surface, messages), {
      onFailure: (method, error) => this.output.error(`chat: ${method}: ${error instanceof Error ? error.message : String(error)}`),
    });
    this.pages.set(surface, { webview, messages });
    webview.options = this.webviewOptions();
    webview.html = webviewHtml(webview, this.context.extensionUri, 'chat', 'QuantLens Chat');
    webview.onDidReceiveMessage((data: unknown) => messages.receive(data));
    if (__QUANTLENS_TEST_HOOKS__) observeChatPage(this, surface, messages);
  }

  private detach(surface: ChatSurface, webview: vscode.Webview): void {
    if (this.pages.get(surface)?.webview === webview) this.pages.delete(surface);
    if (__QUANTLENS_TEST_HOOKS__) forgetChatPage(this, surface);
  }

  /** The connection to the page on `surface`, while one is shown there. */
  page(surface: ChatSurface): HostEndpoint<ChatMessages> | undefined {
    return this.pages.get(surface)?.messages;
  }

  /** Sends to every page (the side-bar view and the editor tab show the same session). */
  private post(message: ChatMessages['toPage']): void {
    for (const { messages } of this.pages.values()) messages.notify(message);
  }

  private requestHandlers(): RequestHandlers<ChatMessages['requests']> {
    return {
      pickModel: ({ side }) => this.pickModel(side),
      useLastJob: () => {
        const last = this.latestJob();
        // The model bar shows the loading and its outcome; the request ends with the choice.
        if (last) void this.setModels(last.quantized, last.original);
        else void vscode.window.showInformationMessage('QuantLens: no finished quantize job yet. Pick the models with the buttons instead.');
        return last !== undefined;
      },
      copy: async ({ text }) => vscode.env.clipboard.writeText(text),
    };
  }

  private state(): ChatStateView {
    return { models: this.models, settings: this.settings, turns: this.turns, ...(this.perplexityState ? { perplexity: this.perplexityState } : {}) };
  }

  /** The latest succeeded quantize job in the Jobs view's history, with its source model as the original. */
  private latestJob(): { quantized: string; original: string } | undefined {
    return latestQuantizeJob(this.context.globalState.get(JOBS_KEY));
  }

  private async onMessage(message: ChatMessages['toHost'], surface: ChatSurface, page: HostEndpoint<ChatMessages>): Promise<void> {
    switch (message.type) {
      case 'ready':
        page.notify({ type: 'surface', surface });
        if (this.models.state === 'none') {
          const last = this.latestJob();
          if (last) void this.setModels(last.quantized, last.original);
        }
        page.notify({ type: 'state', state: this.state() });
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
      case 'perplexity':
        await this.perplexity(message.text);
        return;
      case 'settings':
        await this.updateSettings(message.settings);
        return;
    }
  }

  /** Switches to the latest finished quantize job's output and source model; false when there is none. */
  async useLatestJob(): Promise<boolean> {
    const last = this.latestJob();
    if (last) await this.setModels(last.quantized, last.original);
    return last !== undefined;
  }

  private async updateSettings(settings: ChatSettings): Promise<void> {
    this.settings = settings;
    await this.context.globalState.update(SETTINGS_KEY, settings);
  }

  /** A folder dialog for one side; false when the user chose nothing. */
  private async pickModel(side: Side): Promise<boolean> {
    const picked = await vscode.window.showOpenDialog({
      canSelectFiles: false,
      canSelectFolders: true,
      canSelectMany: false,
      openLabel: side === 'quantized' ? 'Chat with this model' : 'Compare with this original',
      title: side === 'quantized' ? 'QuantLens: the (quantized) model folder to chat with' : 'QuantLens: the original model folder',
    });
    const folder = picked?.[0]?.fsPath;
    if (!folder) return false;
    // Loading reports its progress and errors in the model bar; the request ends when the choice is made.
    if (side === 'quantized') void this.setModels(folder, this.models.original);
    else if (this.models.quantized) void this.setModels(this.models.quantized, folder);
    else void this.setModels(folder, undefined);
    return true;
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
        async (info) => {
          const synthetic = await this.syntheticSides(quantized, original);
          if (this.loadedKey !== key) return;
          this.models = {
            quantized,
            ...(original ? { original } : {}),
            state: 'ready',
            quantizedInfo: info.quantized,
            ...(info.original ? { originalInfo: info.original } : {}),
            ...(synthetic.length ? { synthetic } : {}),
          };
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

  private async syntheticSides(quantized: string, original: string | undefined): Promise<Side[]> {
    const [q, o] = await Promise.all([hasSyntheticWeights(quantized), original ? hasSyntheticWeights(original) : false]);
    return [...(q ? (['quantized'] as const) : []), ...(o ? (['original'] as const) : [])];
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

  /** Changes the generation settings as a page's Settings section does, and shows them on every page. */
  async useSettings(settings: Partial<ChatSettings>): Promise<void> {
    await this.updateSettings({ ...this.settings, ...settings });
    this.post({ type: 'state', state: this.state() });
  }

  get currentModels(): ModelPairView {
    return this.models;
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

type OpenChatArgument = { quantized?: string; original?: string } | vscode.Uri;

export function registerChatView(context: vscode.ExtensionContext, output: vscode.LogOutputChannel): ChatViewProvider {
  const provider = new ChatViewProvider(context, output);
  const openInEditorWith = async (pair?: { quantized: string; original?: string }) => {
    provider.openInEditor();
    if (pair) await provider.setModels(pair.quantized, pair.original);
  };
  context.subscriptions.push(
    provider,
    vscode.window.registerWebviewViewProvider(CHAT_VIEW_ID, provider),
    vscode.window.registerWebviewPanelSerializer(CHAT_PANEL_TYPE, provider),
    // With a model (a folder in the Explorer, a job's result) the chat opens in an editor tab, where both
    // answers have room; without one it focuses the side-bar view for a quick question.
    vscode.commands.registerCommand('quantlens.openChat', async (arg?: OpenChatArgument) => {
      if (arg instanceof vscode.Uri) return openInEditorWith({ quantized: arg.fsPath });
      if (arg?.quantized) return openInEditorWith({ quantized: arg.quantized, ...(arg.original ? { original: arg.original } : {}) });
      await vscode.commands.executeCommand(`${CHAT_VIEW_ID}.focus`);
    }),
    vscode.commands.registerCommand('quantlens.openChatInEditor', () => openInEditorWith()),
    // The Jobs view's inline action on a succeeded quantize job: its output against its source model.
    vscode.commands.registerCommand('quantlens.chatWithJobResult', async (node?: { job?: unknown }) => {
      const pair = quantizePairOf(node?.job);
      if (!pair) {
        void vscode.window.showInformationMessage('QuantLens: only a succeeded quantize job has a result to chat with.');
        return;
      }
      await openInEditorWith(pair);
    }),
  );
  return provider;
}
