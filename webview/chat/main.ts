/**
 * The chat's page (in the side-bar view or an editor tab): model pair, settings, the transcript with both
 * answers (stacked when narrow, side by side when wide) and the per-step divergence, prompt box with
 * Send / Stop / Clear, and perplexity on a text. The conversation is the page's one scroll area; each turn's
 * agreement strip and summary line stay visible at its bottom edge while the turn is on screen. The host owns the transcript
 * (src/webviewMessages/chat.ts); the page keeps only its inputs (prompt draft, settings, open sections) in setState.
 * Keyboard: Enter sends, Shift+Enter is a new line, Escape stops; every control is a focusable element.
 */
import '../common/base.css';
import './chat.css';
import type { ChatMessages, ChatSettings, ChatStateView, ModelPairView, SideStats, TurnView } from '../../src/webviewMessages/chat';
import type { ChatHostProbe, ChatLayoutView, ChatRenderedView, PageProbe } from '../../src/webviewMessages/testProbes';
import { RequestFailed } from '../../src/webviewMessages/endpoint';
import { DEFAULT_CHAT_SETTINGS } from '../../src/webviewMessages/chat';
import { connectToHost } from '../common/vscodeApi';
import { h, registerToolkit } from '../common/toolkit';
import { formatBytes } from '../../src/core/util/format';

interface PageState {
  draft: string;
  settings: ChatSettings;
  settingsOpen: boolean;
  perplexityText: string;
}

registerToolkit();
const app = document.getElementById('app')!;
const host = connectToHost<ChatMessages, PageState>(onMessage);
const messages = host.messages;
const page: PageState = { draft: '', settings: DEFAULT_CHAT_SETTINGS, settingsOpen: false, perplexityText: '', ...host.savedState };
const save = () => host.saveState(page);

let state: ChatStateView | undefined;
const turnElements = new Map<number, { root: HTMLElement; quantized: HTMLElement; original?: HTMLElement; qStats: HTMLElement; oStats?: HTMLElement; strip: HTMLElement; summary: HTMLElement; error: HTMLElement }>();

// ---- layout ---------------------------------------------------------------------------------------------
const modelBar = h('section', { class: 'models', 'aria-label': 'Models' });
const syntheticNote = h('div', { class: 'synthetic-note', role: 'note' });
/** Why the last request to the host (pick a model, use the last job, copy) failed; empty otherwise. */
const requestError = h('div', { class: 'error-text request-error', role: 'alert' });
/** Measures the answer font's character width (hidden, out of the layout). */
const charProbe = h('span', { class: 'answer-text char-probe', 'aria-hidden': 'true' }, '0'.repeat(100));
const settingsBox = h('details', { class: 'settings' });
const transcript = h('section', { class: 'transcript', 'aria-live': 'polite', 'aria-label': 'Conversation' });
const promptBox = h('textarea', { class: 'prompt', rows: 3, placeholder: 'Ask both models… (Enter sends, Shift+Enter new line)', 'aria-label': 'Prompt' }) as HTMLTextAreaElement;
const sendButton = button('Send', () => send(), { appearance: 'primary' });
const stopButton = button('Stop', () => messages.notify({ type: 'stop' }), { disabled: 'true', title: 'Stop generating (Escape)' });
const clearButton = button('Clear', () => messages.notify({ type: 'clear' }), { title: 'Forget the conversation' });
const perplexityBox = h('details', { class: 'perplexity' });

function button(label: string, onClick: () => void, attributes: Record<string, string> = {}): HTMLElement {
  const element = h('vscode-button', { appearance: 'secondary', ...attributes }, label);
  element.addEventListener('click', () => {
    if (!element.hasAttribute('disabled')) onClick();
  });
  return element;
}

function setDisabled(element: HTMLElement, disabled: boolean): void {
  if (disabled) element.setAttribute('disabled', 'true');
  else element.removeAttribute('disabled');
}

function buildLayout(): void {
  app.setAttribute('aria-busy', 'false');
  promptBox.value = page.draft;
  promptBox.addEventListener('input', () => {
    page.draft = promptBox.value;
    save();
  });
  promptBox.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && running()) messages.notify({ type: 'stop' });
  });
  settingsBox.addEventListener('toggle', () => {
    page.settingsOpen = (settingsBox as HTMLDetailsElement).open;
    save();
  });
  buildSettings();
  buildPerplexity();
  new ResizeObserver(() => scheduleReport()).observe(transcript);
  app.replaceChildren(modelBar, requestError, syntheticNote, charProbe, settingsBox, transcript, h('section', { class: 'composer' }, promptBox, h('div', { class: 'actions' }, sendButton, stopButton, clearButton)), perplexityBox);
}

function numberField(label: string, key: 'temperature' | 'topP' | 'maxNewTokens' | 'seed', step: string, min: string, max?: string): HTMLElement {
  const input = h('input', { type: 'number', step, min, ...(max ? { max } : {}), value: String(page.settings[key]), 'aria-label': label }) as HTMLInputElement;
  input.addEventListener('change', () => {
    const value = Number(input.value);
    if (!Number.isFinite(value)) return;
    page.settings = { ...page.settings, [key]: value };
    save();
    messages.notify({ type: 'settings', settings: page.settings });
  });
  return h('label', { class: 'setting' }, h('span', {}, label), input);
}

function buildSettings(): void {
  settingsBox.toggleAttribute('open', page.settingsOpen);
  const system = h('textarea', { rows: 2, 'aria-label': 'System prompt' }, page.settings.system) as HTMLTextAreaElement;
  system.addEventListener('change', () => {
    page.settings = { ...page.settings, system: system.value };
    save();
    messages.notify({ type: 'settings', settings: page.settings });
  });
  const compare = h('input', { type: 'checkbox', ...(page.settings.compare ? { checked: true } : {}), 'aria-label': 'Run the original side by side' }) as HTMLInputElement;
  compare.addEventListener('change', () => {
    page.settings = { ...page.settings, compare: compare.checked };
    save();
    messages.notify({ type: 'settings', settings: page.settings });
  });
  settingsBox.replaceChildren(
    h('summary', {}, 'Settings'),
    h('label', { class: 'setting wide' }, h('span', {}, 'System prompt'), system),
    h('div', { class: 'setting-grid' },
      numberField('Temperature (0 = greedy)', 'temperature', '0.05', '0'),
      numberField('Top-p', 'topP', '0.05', '0.05', '1'),
      numberField('Max new tokens', 'maxNewTokens', '1', '1'),
      numberField('Seed', 'seed', '1', '0'),
    ),
    h('label', { class: 'setting check' }, compare, h('span', {}, 'Answer with the original too (side by side, with divergence)')),
  );
}

function buildPerplexity(): void {
  const text = h('textarea', { rows: 3, placeholder: 'A text to score both models on', 'aria-label': 'Perplexity text' }, page.perplexityText) as HTMLTextAreaElement;
  text.addEventListener('input', () => {
    page.perplexityText = text.value;
    save();
  });
  const result = h('div', { class: 'ppl-result', id: 'ppl-result' });
  perplexityBox.replaceChildren(h('summary', {}, 'Perplexity on a text'), text, h('div', { class: 'actions' }, button('Measure', () => messages.notify({ type: 'perplexity', text: text.value }))), result);
}

// ---- rendering ------------------------------------------------------------------------------------------
const folderName = (path?: string) => (path ? path.split(/[\\/]/).filter(Boolean).at(-1) ?? path : '');
const kindsText = (kinds?: Readonly<Record<string, number>>) =>
  kinds && Object.keys(kinds).length > 0 ? Object.entries(kinds).map(([k, n]) => `${n}× ${k === 'float' ? 'float' : k.toUpperCase()}`).join(', ') : '';

function renderModels(models: ModelPairView): void {
  const line = (role: string, path: string | undefined, kinds: string, side: 'quantized' | 'original') =>
    h('div', { class: 'model' }, h('span', { class: 'role' }, role), h('span', { class: 'name', title: path ?? '' }, path ? folderName(path) : '—'), kinds ? h('span', { class: 'kinds' }, kinds) : undefined, button('Pick…', () => void ask('pickModel', { side }, Infinity), { title: `Choose the ${side} model folder` }));
  const status =
    models.state === 'loading'
      ? h('div', { class: 'status' }, h('vscode-progress-ring', {}), h('span', {}, models.message ?? 'loading…'))
      : models.state === 'error'
        ? h('div', { class: 'error-text', role: 'alert' }, models.message ?? 'failed')
        : models.state === 'none'
          ? h('div', { class: 'status' }, 'No model yet: quantize one, or pick folders. ', button('Use last job', () => void ask('useLastJob', {})))
          : undefined;
  modelBar.replaceChildren(
    line('Quantized', models.quantized, kindsText(models.quantizedInfo?.linearKinds), 'quantized'),
    line('Original', models.original, kindsText(models.originalInfo?.linearKinds), 'original'),
    status ?? h('span'),
  );
  syntheticNote.textContent = syntheticText(models);
  updateButtons();
}

function syntheticText(models: ModelPairView): string {
  const sides = models.synthetic ?? [];
  if (sides.length === 0) return '';
  const which = sides.length === 2 ? 'both models' : `the ${sides[0]} model`;
  return `Synthetic weights: answers are noise by design (${which}' config.json says quantlens_synthetic: generated, not trained, like the shipped example).`;
}

function statsText(stats: SideStats | undefined): string {
  if (!stats) return '';
  const speed = Number.isNaN(stats.tokensPerSecond) ? '–' : stats.tokensPerSecond.toFixed(1);
  const stop = stats.stopReason === 'stop-token' ? '' : ` · ${stats.stopReason === 'max-tokens' ? 'max tokens' : stats.stopReason === 'stopped' ? 'stopped' : 'context full'}`;
  return `${stats.generatedTokens} tok · ${speed} tok/s · prompt ${stats.prefillMs.toFixed(0)} ms · ${formatBytes(stats.weightBytes + stats.kvCacheBytes)} (weights + KV)${stop}`;
}

/** Three decimals; past 10,000 nats (a numerical blow-up) in exponent form, so the line stays short. */
function formatKl(kl: number): string {
  // A good quantization's KL is a few 1e-4 nats: three decimals would show it as 0.000.
  if (kl === 0) return '0';
  return Math.abs(kl) >= 0.01 && Math.abs(kl) < 1e4 ? kl.toFixed(3) : kl.toExponential(2);
}

function klColor(kl: number): string {
  // Opacity grows with KL; 1 nat and above is full strength.
  return String(Math.min(1, 0.15 + kl));
}

function renderTurn(turn: TurnView): void {
  const quantized = h('div', { class: 'answer-text' }, turn.quantized.text);
  const qStats = h('div', { class: 'stats' }, statsText(turn.quantized.stats));
  const copy = (get: () => string) => button('Copy', () => void ask('copy', { text: get() }), { appearance: 'icon', 'aria-label': 'Copy answer', title: 'Copy answer' });
  const column = (title: string, text: HTMLElement, stats: HTMLElement, get: () => string, cls: string) =>
    h('div', { class: `answer ${cls}` }, h('div', { class: 'answer-head' }, h('span', {}, title), copy(get)), text, stats);
  const els: NonNullable<ReturnType<typeof turnElements.get>> = {
    root: h('article', { class: 'turn' }),
    quantized,
    qStats,
    strip: h('div', { class: 'strip', role: 'img', 'aria-label': 'Per-step agreement' }),
    summary: h('div', { class: 'divergence' }),
    error: h('div', { class: 'error-text', role: 'alert' }),
  };
  const columns = [column(`Quantized · ${folderName(state?.models.quantized)}`, quantized, qStats, () => els.quantized.textContent ?? '', 'side-quantized')];
  if (turn.original) {
    els.original = h('div', { class: 'answer-text' }, turn.original.text);
    els.oStats = h('div', { class: 'stats' }, statsText(turn.original.stats));
    columns.push(column(`Original · ${folderName(state?.models.original)}`, els.original, els.oStats, () => els.original?.textContent ?? '', 'side-original'));
  }
  els.root.append(h('div', { class: 'user' }, h('span', { class: 'role' }, 'You'), h('div', {}, turn.prompt)), h('div', { class: 'answers' }, ...columns));
  if (turn.original) els.root.append(h('div', { class: 'turn-footer' }, els.strip, els.summary));
  els.root.append(els.error);
  for (const step of turn.steps) addStep(els, step.agree, step.kl);
  turnElements.set(turn.id, els);
  transcript.append(els.root);
  finishTurn(turn);
}

function addStep(els: NonNullable<ReturnType<typeof turnElements.get>>, agree: boolean, kl: number): void {
  const cell = h('span', { class: `cell ${agree ? 'agree' : 'differ'}`, title: `step ${els.strip.childElementCount + 1}: ${agree ? 'same' : 'different'} greedy token, KL ${kl.toFixed(4)} nats` });
  cell.style.opacity = klColor(kl);
  els.strip.append(cell);
  const steps = els.strip.childElementCount;
  const differ = els.strip.querySelectorAll('.differ').length;
  els.summary.textContent = `Original teacher-forced on the quantized answer: greedy choices agree on ${steps - differ} of ${steps} steps`;
}

function finishTurn(turn: TurnView): void {
  const els = turnElements.get(turn.id);
  if (!els) return;
  els.quantized.textContent = turn.quantized.text;
  els.qStats.textContent = statsText(turn.quantized.stats);
  if (els.original && turn.original) {
    els.original.textContent = turn.original.text;
    els.oStats!.textContent = statsText(turn.original.stats);
  }
  if (turn.agreement !== undefined && turn.meanKl !== undefined && turn.steps.length > 0) {
    els.summary.textContent = `Original teacher-forced on the quantized answer: greedy choices agree on ${(turn.agreement * 100).toFixed(0)}% of ${turn.steps.length} steps · mean KL(original‖quantized) ${formatKl(turn.meanKl)} nats`;
  }
  els.error.textContent = turn.error?.message ?? '';
  els.root.classList.toggle('running', turn.running);
}

function renderState(next: ChatStateView): void {
  state = next;
  // The host's settings are the session's (the side-bar view and the editor tab share them).
  if (JSON.stringify(next.settings) !== JSON.stringify(page.settings)) {
    page.settings = next.settings;
    save();
    buildSettings();
  }
  renderModels(next.models);
  transcript.replaceChildren();
  turnElements.clear();
  if (next.turns.length === 0) transcript.append(h('p', { class: 'empty' }, 'Ask a question: the quantized model answers, the original beside it, and every step shows whether their top choices agree and how far their next-token distributions are apart (KL).'));
  for (const turn of next.turns) renderTurn(turn);
  renderPerplexity(next.perplexity);
  updateButtons();
  report();
}

function renderPerplexity(p: ChatStateView['perplexity']): void {
  const result = document.getElementById('ppl-result');
  if (!result) return;
  if (!p) return void result.replaceChildren();
  if (p.running) return void result.replaceChildren(h('vscode-progress-ring', {}));
  if (p.error) return void result.replaceChildren(h('span', { class: 'error-text', role: 'alert' }, p.error));
  if (!p.result) return void result.replaceChildren();
  const r = p.result;
  result.replaceChildren(
    h('div', {}, `Quantized: ${r.quantized.perplexity.toFixed(3)} over ${r.quantized.tokens} tokens`),
    r.original ? h('div', {}, `Original: ${r.original.perplexity.toFixed(3)} (quantized / original ${(r.quantized.perplexity / r.original.perplexity).toFixed(3)}×)`) : '',
  );
}

function running(): boolean {
  return state?.turns.some((t) => t.running) ?? false;
}

function updateButtons(): void {
  setDisabled(sendButton, running() || state?.models.state === 'loading');
  setDisabled(stopButton, !running());
}

function send(): void {
  const prompt = promptBox.value.trim();
  if (!prompt || running()) return;
  messages.notify({ type: 'send', prompt, settings: page.settings });
  promptBox.value = '';
  page.draft = '';
  save();
}

let reportPending = false;
/** Reports again after the layout settles (resizes, streamed text). */
function scheduleReport(): void {
  if (reportPending) return;
  reportPending = true;
  requestAnimationFrame(() => {
    reportPending = false;
    report();
  });
}

/** Test builds only (the .vsix build drops the body): what the page shows, for the integration tests. */
function report(): void {
  if (!__QUANTLENS_TEST_HOOKS__) return;
  const last = state?.turns.at(-1);
  const els = last ? turnElements.get(last.id) : undefined;
  const view: ChatRenderedView = {
    turns: state?.turns.length ?? 0,
    quantizedText: els?.quantized.textContent ?? '',
    originalText: els?.original?.textContent ?? '',
    divergence: els?.summary.textContent ?? '',
    error: els?.error.textContent || (state?.models.state === 'error' ? (state.models.message ?? '') : ''),
    running: running(),
    quantizedModel: state?.models.quantized ?? '',
    originalModel: state?.models.original ?? '',
    syntheticNote: syntheticNote.offsetParent !== null ? (syntheticNote.textContent ?? '') : '',
    layout: measure(els),
  };
  messages.postProbe({ type: 'probe:rendered', view } satisfies PageProbe<ChatRenderedView>);
}

function measure(els: ReturnType<typeof turnElements.get>): ChatLayoutView {
  const charWidth = charProbe.getBoundingClientRect().width / 100;
  const texts = els ? [els.quantized, ...(els.original ? [els.original] : [])] : [];
  const columns = texts.map((t) => t.parentElement!.getBoundingClientRect());
  const summary = els?.summary;
  const area = transcript.getBoundingClientRect();
  const box = summary?.getBoundingClientRect();
  let nested = 0;
  for (const element of Array.from(transcript.querySelectorAll<HTMLElement>('*'))) {
    const style = getComputedStyle(element);
    const scrolls = (v: string) => v === 'auto' || v === 'scroll';
    if ((scrolls(style.overflowY) && element.scrollHeight > element.clientHeight + 1) || (scrolls(style.overflowX) && element.scrollWidth > element.clientWidth + 1)) nested++;
  }
  return {
    pageWidth: document.documentElement.clientWidth,
    stacked: columns.length === 2 && columns[1]!.top >= columns[0]!.bottom - 1,
    answerColumnChars: texts.map((t) => (charWidth > 0 ? Math.floor(t.clientWidth / charWidth) : 0)),
    answerCharWidth: charWidth,
    summaryShown: !!summary && !!summary.textContent && summary.offsetParent !== null,
    summaryClipped: !!summary && summary.scrollWidth > summary.clientWidth,
    summaryInView: !!box && box.height > 0 && box.top >= area.top - 1 && box.bottom <= area.bottom + 1 && box.bottom <= window.innerHeight + 1,
    nestedScrollAreas: nested,
  };
}

function onMessage(message: ChatMessages['toPage']): void {
  switch (message.type) {
    case 'state':
      renderState(message.state);
      return;
    case 'models':
      if (state) state = { ...state, models: message.models };
      renderModels(message.models);
      report();
      return;
    case 'turnStarted':
      if (state) {
        if (state.turns.length === 0) transcript.replaceChildren();
        state = { ...state, turns: [...state.turns, message.turn] };
      }
      renderTurn(message.turn);
      updateButtons();
      return;
    case 'token': {
      const els = turnElements.get(message.turnId);
      const target = message.side === 'quantized' ? els?.quantized : els?.original;
      target?.append(message.text);
      transcript.scrollTop = transcript.scrollHeight;
      scheduleReport();
      return;
    }
    case 'step': {
      const els = turnElements.get(message.turnId);
      if (els) addStep(els, message.step.agree, message.step.kl);
      return;
    }
    case 'sideDone': {
      const els = turnElements.get(message.turnId);
      const target = message.side === 'quantized' ? els?.qStats : els?.oStats;
      if (target) target.textContent = statsText(message.stats);
      return;
    }
    case 'turnDone':
      if (state) state = { ...state, turns: state.turns.map((t) => (t.id === message.turn.id ? message.turn : t)) };
      finishTurn(message.turn);
      updateButtons();
      report();
      return;
    case 'perplexity':
      if (state) state = { ...state, perplexity: message.perplexity };
      renderPerplexity(message.perplexity);
      return;
    case 'surface':
      document.body.dataset.surface = message.surface;
      scheduleReport();
      return;
  }
}

/**
 * A request to the host; a failure (the host's error, or no answer in time) is shown in the model bar's
 * status line, where the user looks after pressing its buttons.
 */
async function ask<M extends keyof ChatMessages['requests'] & string>(method: M, params: ChatMessages['requests'][M]['params'], timeoutMs?: number): Promise<void> {
  requestError.textContent = '';
  try {
    await messages.request(method, params, { timeoutMs });
  } catch (error) {
    if (error instanceof RequestFailed && error.cancelled) return;
    requestError.textContent = `${REQUEST_LABELS[method]} failed: ${error instanceof Error ? error.message : String(error)}`;
  }
}

const REQUEST_LABELS: Record<keyof ChatMessages['requests'], string> = { pickModel: 'Choosing the model', useLastJob: 'Using the last job', copy: 'Copying the answer' };

if (__QUANTLENS_TEST_HOOKS__) {
  // The integration tests type a prompt into the box and send it, as a user does.
  messages.onProbe((probe) => {
    const message = probe as ChatHostProbe;
    if (message.type !== 'probe:ask') return;
    promptBox.value = message.prompt;
    send();
  });
}

buildLayout();
messages.notify({ type: 'ready' });
