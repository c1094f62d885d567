/**
 * Recipe preview webview: the recipe in words, its problems (click → the line in the text editor), the model
 * picker, the layer map on that model (virtualized, paged from the host), the estimated output size and Run.
 * The host recomputes on every edit (debounced); this page updates sections in place so scroll position,
 * table selection and focus survive, and keeps its view state with setState.
 */
import '../common/base.css';
import './recipe.css';
import type { ModelChoice, PreviewUpdate, PreviewView, RecipeMessages, RevealRange } from '../../src/webviewMessages/recipe';
import type { PageProbe, RecipeRenderedView } from '../../src/webviewMessages/testProbes';
import type { PreviewLayer, PreviewLayerQuery, StageSummary } from '../../src/core/recipe/preview';
import { connectToHost } from '../common/vscodeApi';
import { h, registerToolkit } from '../common/toolkit';
import { Column, TableState, VirtualTable } from '../common/virtualTable';
import { formatBytes } from '../../src/core/util/format';

interface ViewState {
  model?: string;
  layerFilter: string;
  layerState: PreviewLayerQuery['state'];
  layerTable: TableState;
  pageScroll: number;
}

registerToolkit();
const app = document.getElementById('app')!;
const host = connectToHost<RecipeMessages, ViewState>(onMessage);
const messages = host.messages;
const state: ViewState = { layerFilter: '', layerState: '', layerTable: { scrollTop: 0, selected: 0 }, pageScroll: 0, ...host.savedState };
const save = () => host.saveState(state);

let current: PreviewUpdate | undefined;
let modelKey = '';

// ------------------------------------------------------------------ skeleton (built once)

const title = h('h1', {}, 'Recipe preview');
const notice = h('div', { class: 'notice', role: 'alert', hidden: true });
/** While the recipe has errors: how many, the first one, and a button to its line. */
const errorBanner = h('section', { class: 'notice error error-banner', id: 'recipe-errors', role: 'alert', hidden: true });
const notRecipe = h('section', { class: 'error-panel', id: 'not-recipe', hidden: true });
const summary = h('section', { class: 'summary', id: 'summary', 'aria-label': 'Recipe summary' });
const problems = h('section', { class: 'problems', id: 'problems', 'aria-label': 'Problems' });
const modelSection = h('section', { class: 'model', id: 'model', 'aria-label': 'Model' });
const sizeSection = h('section', { class: 'size', id: 'size', 'aria-label': 'Estimated size' });
const runButton = h('vscode-button', { id: 'run', appearance: 'primary', disabled: true }, 'Run…');
const runReasons = h('ul', { class: 'run-reasons', id: 'run-reasons', 'aria-live': 'polite' });
const runSection = h('section', { class: 'run', 'aria-label': 'Run' }, h('div', { class: 'run-row' }, runButton, h('span', { class: 'muted' }, 'quantizes the model with this recipe (QuantLens: Quantize Model)')), runReasons);
runButton.addEventListener('click', () => {
  if (!runButton.hasAttribute('disabled')) messages.notify({ type: 'run' });
});

const counts = h('div', { class: 'chips', id: 'layer-counts', 'aria-label': 'layer counts' });
const tableStatus = h('span', { class: 'table-status', role: 'status', 'aria-live': 'polite' });
const layerDetail = h('div', { class: 'detail', id: 'layer-detail' });
const STATE_TEXT: Record<PreviewLayer['state'], string> = { quantized: 'quantized', ignored: 'ignored', unmatched: 'unmatched' };
const columns: Column<PreviewLayer>[] = [
  { label: 'layer', className: 'col-name', render: (l) => l.name, title: (l) => l.name },
  { label: 'in', className: 'col-num num', render: (l) => (l.inFeatures ?? '—').toString() },
  { label: 'out', className: 'col-num num', render: (l) => (l.outFeatures ?? '—').toString() },
  { label: 'state', className: 'col-state', render: (l) => h('span', { class: `state state-${l.state}` }, STATE_TEXT[l.state]) },
  {
    label: 'scheme',
    className: 'col-scheme',
    render: (l) =>
      l.indivisibleGroupSize !== undefined
        ? h('span', { class: 'flag', title: `in_features ${l.inFeatures} is not divisible by group_size ${l.indivisibleGroupSize}` }, `⚠ ${l.scheme ?? ''} (in ${l.inFeatures} % ${l.indivisibleGroupSize} ≠ 0)`)
        : (l.scheme ?? (l.ignoredBy ? `ignore: ${l.ignoredBy}` : '—')),
    title: (l) => l.description ?? '',
  },
  { label: 'modifier', className: 'col-modifier', render: (l) => [l.modifier, ...l.algorithms.filter((a) => l.modifier !== `${a}Modifier`)].filter(Boolean).join(' + ') || '—' },
  { label: 'size', className: 'col-num num', render: (l) => (l.estimatedBytes !== undefined ? formatBytes(l.estimatedBytes) : '—'), title: (l) => (l.originalBytes !== undefined ? `${formatBytes(l.originalBytes)} before` : '') },
];
const table = new VirtualTable<PreviewLayer>(
  'Linear layers and what the recipe does to them',
  columns,
  (offset, limit) => messages.request('layerPage', { filter: state.layerFilter, state: state.layerState, offset, limit }),
  state.layerTable,
  {
    onStateChange: save,
    onStatus: (page) => {
      tableStatus.textContent = page.filterError ?? `${page.total} layer${page.total === 1 ? '' : 's'}`;
      tableStatus.classList.toggle('error-text', page.filterError !== undefined);
      requestAnimationFrame(reportRendered);
    },
    onError: (error) => {
      tableStatus.textContent = `The layers could not be read: ${error instanceof Error ? error.message : String(error)}`;
      tableStatus.classList.add('error-text');
    },
    onSelect: (layer) => layerDetail.replaceChildren(detailOf(layer)),
  },
);
const filter = h('vscode-text-field', { id: 'layer-filter', placeholder: 'Filter layers by name (or re:regex)   / to focus', value: state.layerFilter, 'aria-label': 'Filter layers by name' }) as HTMLElement & { value: string };
filter.addEventListener('input', () => {
  state.layerFilter = filter.value;
  table.refresh();
});
const stateFilter = h(
  'vscode-dropdown',
  { id: 'layer-state', 'aria-label': 'Filter by state' },
  ...([['', 'all layers'], ['quantized', 'quantized'], ['ignored', 'ignored'], ['unmatched', 'unmatched'], ['indivisible', 'group_size does not divide']] as const).map(([v, text]) => h('vscode-option', { value: v, selected: v === state.layerState }, text)),
) as HTMLElement & { value: string };
stateFilter.addEventListener('change', () => {
  state.layerState = stateFilter.value as ViewState['layerState'];
  table.refresh();
});
const layersWithheld = h('section', { class: 'layers', id: 'layers-withheld', 'aria-label': 'Resolved layer map', hidden: true });
const layersSection = h(
  'section',
  { class: 'layers', id: 'layers', 'aria-label': 'Resolved layer map', hidden: true },
  h('h2', {}, 'Layers on this model'),
  counts,
  h('div', { class: 'toolbar' }, filter, stateFilter, tableStatus),
  table.element,
  layerDetail,
);
const recipeBody = h('div', { class: 'recipe-body', hidden: true }, h('div', { class: 'columns' }, h('div', { class: 'left' }, summary, problems), h('div', { class: 'right' }, modelSection, sizeSection, runSection)), layersWithheld, layersSection);
app.replaceChildren(title, errorBanner, notice, notRecipe, recipeBody);
app.setAttribute('aria-busy', 'true');

document.addEventListener('keydown', (event) => {
  const tag = document.activeElement?.tagName ?? '';
  if (event.key === '/' && !tag.startsWith('VSCODE-TEXT') && tag !== 'INPUT') {
    event.preventDefault();
    filter.focus();
  }
});
app.addEventListener('scroll', () => {
  state.pageScroll = app.scrollTop;
  save();
});

messages.notify({ type: 'ready', model: state.model });

// ------------------------------------------------------------------ messages

function onMessage(message: RecipeMessages['toPage']): void {
  if (message.type === 'update') render(message.update);
  else if (message.type === 'notice') showNotice(message.message, message.severity);
}

function showNotice(text: string, severity: 'error' | 'info'): void {
  notice.hidden = false;
  notice.className = `notice ${severity}`;
  notice.replaceChildren(h('span', {}, text), dismissButton());
}

function dismissButton(): HTMLElement {
  const b = h('button', { class: 'link', 'aria-label': 'Dismiss' }, '×');
  b.addEventListener('click', () => {
    notice.hidden = true;
  });
  return b;
}

/** Replaces a section's content, keeping keyboard focus on the element with the same data-key. */
function replaceKeepingFocus(section: HTMLElement, ...children: (Node | string)[]): void {
  const focused = document.activeElement instanceof HTMLElement && section.contains(document.activeElement) ? document.activeElement.dataset.key : undefined;
  section.replaceChildren(...children);
  if (focused) section.querySelector<HTMLElement>(`[data-key="${CSS.escape(focused)}"]`)?.focus();
}

function render(update: PreviewUpdate): void {
  const first = current === undefined;
  current = update;
  app.setAttribute('aria-busy', 'false');
  title.replaceChildren(update.fileName, h('span', { class: 'subtitle' }, 'llm-compressor recipe preview'));
  if (update.model !== state.model) {
    state.model = update.model;
    save();
  }
  const preview = update.preview;
  if (!preview.isRecipe) {
    notRecipe.hidden = false;
    recipeBody.hidden = true;
    errorBanner.hidden = true;
    notRecipe.replaceChildren(h('h2', {}, 'Not an llm-compressor recipe'), h('p', {}, preview.reason));
    renderRun(update);
    reportRendered();
    return;
  }
  notRecipe.hidden = true;
  recipeBody.hidden = false;
  replaceKeepingFocus(summary, h('h2', {}, 'Recipe'), ...(preview.stages.length ? preview.stages.map(stageView) : [h('p', { class: 'muted' }, 'No stages.')]));
  replaceKeepingFocus(problems, ...problemsView(preview));
  renderErrorBanner(preview);
  renderModel(update);
  replaceKeepingFocus(sizeSection, ...sizeView(preview));
  renderRun(update);
  const resolved = preview.resolved;
  layersSection.hidden = !resolved;
  layersWithheld.hidden = preview.layerMapWithheld === undefined;
  if (preview.layerMapWithheld !== undefined) layersWithheld.replaceChildren(h('h2', {}, 'Layers on this model'), h('p', { class: 'muted' }, preview.layerMapWithheld));
  if (resolved) {
    const c = resolved.counts;
    counts.replaceChildren(
      chip('count-total', `${c.total}`, 'linear layers'),
      chip('count-quantized', `${c.quantized}`, 'quantized', 'state-quantized'),
      chip('count-ignored', `${c.ignored}`, 'ignored'),
      chip('count-unmatched', `${c.unmatched}`, 'unmatched'),
      chip('count-indivisible', `${c.indivisible}`, 'group_size does not divide', c.indivisible ? 'flag' : ''),
      ...(resolved.kvCache ? [h('span', { class: 'chip', id: 'kv-cache' }, `${resolved.kvCache.description} on ${resolved.kvCache.modules} attention modules`)] : []),
    );
    // Keep the scroll position and selection: the rows are re-read in place.
    table.refresh(true);
  }
  if (first) requestAnimationFrame(() => (app.scrollTop = state.pageScroll));
  reportRendered();
}

function chip(id: string, value: string, label: string, extra = ''): HTMLElement {
  return h('span', { class: `chip ${extra}`, id }, h('span', { class: 'count' }, value), ` ${label}`);
}

/** A button that shows a line (or a range) of the recipe in the text editor. */
function lineButton(text: string | Node, line: number, key: string, attributes: Record<string, string> = {}, range?: RevealRange): HTMLElement {
  const b = h('button', { class: 'link', 'data-key': key, title: `Line ${line + 1}: show in the editor`, ...attributes }, text);
  b.addEventListener('click', () => messages.notify({ type: 'reveal', ...(range ?? { line }) }));
  return b;
}

function list(label: string, items: readonly string[]): HTMLElement | undefined {
  if (items.length === 0) return undefined;
  return h('div', { class: 'patterns' }, h('span', { class: 'field-label' }, `${label}: `), ...items.map((t) => h('code', {}, t)));
}

function stageView(stage: StageSummary): HTMLElement {
  return h(
    'div',
    { class: 'stage' },
    h('h3', {}, lineButton(stage.name, stage.line, `stage:${stage.name}`)),
    stage.modifiers.length === 0
      ? h('p', { class: 'muted' }, 'No modifiers in this stage.')
      : h(
          'ul',
          { class: 'modifiers' },
          ...stage.modifiers.map((m, i) =>
            h(
              'li',
              { class: `modifier kind-${m.kind}` },
              h('div', { class: 'modifier-head' }, lineButton(m.type, m.line, `modifier:${stage.name}:${i}`), h('span', { class: 'muted' }, ` ${m.group}`), h('span', { class: 'headline' }, m.headline)),
              m.schemes.length
                ? h(
                    'ul',
                    { class: 'schemes' },
                    ...m.schemes.map((s, j) => h('li', {}, lineButton(s.name, s.line, `scheme:${stage.name}:${i}:${j}`), ' ', h('span', { class: 'scheme-text' }, s.description), list('targets', s.targets))),
                  )
                : undefined,
              list('targets', m.targets),
              list('ignore', m.ignore),
              m.kvCache ? h('div', { class: 'patterns' }, h('span', { class: 'field-label' }, 'KV cache: '), m.kvCache) : undefined,
              m.settings.length ? h('div', { class: 'settings muted' }, m.settings.map((s) => `${s.name}: ${s.value}`).join(' · ')) : undefined,
            ),
          ),
        ),
  );
}

/** "This recipe has 2 errors; the first: line 5: …" with a button that opens the recipe at that line. */
function renderErrorBanner(preview: Extract<PreviewView, { isRecipe: true }>): void {
  const first = preview.diagnostics.find((d) => d.severity === 'error');
  errorBanner.hidden = preview.errors === 0 || first === undefined;
  if (errorBanner.hidden || !first) return;
  const line = first.range.start.line;
  const text = `This recipe has ${preview.errors} error${preview.errors === 1 ? '' : 's'}; the first: line ${line + 1}: ${first.message}`;
  const range = { line, character: first.range.start.character, endLine: first.range.end.line, endCharacter: first.range.end.character };
  replaceKeepingFocus(errorBanner, h('span', { class: 'error-banner-text' }, text), lineButton(`Show line ${line + 1}`, line, 'first-error', { id: 'show-first-error', class: 'link show-error' }, range));
}

function problemsView(preview: Extract<PreviewView, { isRecipe: true }>): (HTMLElement | string)[] {
  const heading = h('h2', {}, `Problems: ${preview.errors} error${preview.errors === 1 ? '' : 's'}, ${preview.warnings} warning${preview.warnings === 1 ? '' : 's'}`);
  if (preview.diagnostics.length === 0) return [heading, h('p', { class: 'ok' }, 'The recipe is valid.')];
  return [
    heading,
    h(
      'ul',
      { class: 'problem-list' },
      ...preview.diagnostics.map((d, i) =>
        h(
          'li',
          { class: d.severity },
          lineButton(h('span', {}, h('span', { class: 'line-number' }, `Line ${d.range.start.line + 1}`), ` ${d.message}`), d.range.start.line, `problem:${i}`, { class: `link problem ${d.severity}` }, {
            line: d.range.start.line,
            character: d.range.start.character,
            endLine: d.range.end.line,
            endCharacter: d.range.end.character,
          }),
        ),
      ),
    ),
  ];
}

function renderModel(update: PreviewUpdate): void {
  const key = JSON.stringify([update.model, update.models, update.modelStatus]);
  if (key === modelKey) return;
  modelKey = key;
  const describe = (c: ModelChoice) => `${c.label}${c.origin === 'setting' ? ' (quantlens.recipe.model)' : c.origin === 'ancestor' ? " (the recipe's folder)" : ''}`;
  const picker = h(
    'vscode-dropdown',
    { id: 'model-picker', 'aria-label': 'Model folder' },
    h('vscode-option', { value: '', selected: !update.model }, 'No model'),
    ...update.models.map((c) => h('vscode-option', { value: c.path, selected: c.path === update.model, title: c.path }, describe(c))),
    h('vscode-option', { value: 'choose' }, 'Choose…'),
  ) as HTMLElement & { value: string };
  picker.addEventListener('change', () => {
    if (picker.value !== (update.model ?? '')) messages.notify({ type: 'chooseModel', path: picker.value });
  });
  const status = update.modelStatus?.loading
    ? h('div', { class: 'progress' }, h('vscode-progress-ring', {}), h('span', {}, 'Reading the model headers…'))
    : update.modelStatus?.error
      ? h('p', { class: 'error-text', role: 'alert' }, `The model cannot be read: ${update.modelStatus.error}`)
      : update.model
        ? h('p', { class: 'muted model-path', id: 'model-path' }, update.model)
        : h('p', { class: 'muted' }, 'Choose the checkpoint folder (config.json + *.safetensors) to see which layers the recipe quantizes and the output size.');
  replaceKeepingFocus(modelSection, h('h2', {}, 'Model'), picker, status);
  // The toolkit dropdown takes its value once its options are connected, not from their attributes.
  requestAnimationFrame(() => {
    picker.value = update.model ?? '';
  });
}

function sizeView(preview: Extract<PreviewView, { isRecipe: true }>): HTMLElement[] {
  const heading = h('h2', {}, 'Estimated output size');
  // An output size for a recipe llm-compressor refuses would mislead: its errors stop it before any output.
  if (preview.errors > 0) return [heading, h('p', { class: 'muted', id: 'size-not-computed' }, `Not computed while the recipe has ${preview.errors === 1 ? 'an error' : 'errors'}: llm-compressor stops on ${preview.errors === 1 ? 'it' : 'them'}, so there is no output to size.`)];
  const resolved = preview.resolved;
  if (!resolved) return [heading, h('p', { class: 'muted' }, 'Needs a model.')];
  const s = resolved.size;
  const rows: HTMLElement[] = [];
  if (s.estimatedBytes !== undefined && s.inputBytes !== undefined) {
    const ratio = s.inputBytes > 0 ? s.estimatedBytes / s.inputBytes : 1;
    rows.push(
      h(
        'p',
        { class: 'size-line' },
        h('strong', { id: 'size-estimated', 'data-bytes': s.estimatedBytes }, formatBytes(s.estimatedBytes)),
        ' vs ',
        h('span', { id: 'size-input', 'data-bytes': s.inputBytes }, formatBytes(s.inputBytes)),
        ` input (${(ratio * 100).toFixed(1)}%, ${ratio > 0 ? (1 / ratio).toFixed(2) : '—'}× smaller)`,
      ),
    );
  } else rows.push(h('p', { class: 'muted' }, 'Some layer shapes are unknown, so only the linear layers are estimated.'));
  rows.push(h('p', { class: 'muted' }, `Linear layers: ${formatBytes(s.linearOriginalBytes)} → ${formatBytes(s.linearEstimatedBytes)} (weights, scales, zero points, g_idx as compressed-tensors stores them).`));
  return [heading, ...rows];
}

function renderRun(update: PreviewUpdate): void {
  if (update.run.enabled) runButton.removeAttribute('disabled');
  else runButton.setAttribute('disabled', '');
  runButton.setAttribute('aria-describedby', 'run-reasons');
  runReasons.replaceChildren(...update.run.reasons.map((r) => h('li', {}, r)));
}

function detailOf(layer: PreviewLayer): HTMLElement {
  const field = (label: string, value: string) => h('div', { class: 'field' }, h('span', { class: 'field-label' }, label), h('span', { class: 'field-value' }, value));
  return h(
    'div',
    {},
    h('h3', {}, layer.name),
    h(
      'div',
      { class: 'fields' },
      field('State', STATE_TEXT[layer.state]),
      field('Shape', `${layer.outFeatures ?? '?'} × ${layer.inFeatures ?? '?'} (out × in)`),
      field('Scheme', layer.description ?? (layer.ignoredBy ? `ignored by "${layer.ignoredBy}"` : 'no target matches')),
      ...(layer.group ? [field('Config group', `${layer.group} of ${layer.modifier}`)] : []),
      ...(layer.format ? [field('Format', layer.format)] : []),
      ...(layer.algorithms.length ? [field('Algorithms', layer.algorithms.join(', '))] : []),
      ...(layer.originalBytes !== undefined && layer.estimatedBytes !== undefined ? [field('Size', `${formatBytes(layer.originalBytes)} → ${formatBytes(layer.estimatedBytes)}`)] : []),
      ...(layer.indivisibleGroupSize !== undefined ? [field('Problem', `in_features ${layer.inFeatures} is not divisible by group_size ${layer.indivisibleGroupSize}`)] : []),
    ),
  );
}

// ------------------------------------------------------------------ what the page shows (tests, log)

function countOf(id: string): number {
  return Number(document.getElementById(id)?.querySelector('.count')?.textContent ?? NaN);
}

/** Test builds only (the .vsix build drops the body): what the page shows, for the integration tests. */
function reportRendered(): void {
  if (!__QUANTLENS_TEST_HOOKS__ || !current) return;
  const preview = current.preview;
  const resolvedShown = preview.isRecipe && preview.resolved !== undefined;
  const bytes = (id: string) => {
    const v = document.getElementById(id)?.getAttribute('data-bytes');
    return v ? Number(v) : undefined;
  };
  const view: RecipeRenderedView = {
    version: current.version,
    isRecipe: preview.isRecipe,
    notRecipe: preview.isRecipe ? undefined : (notRecipe.querySelector('p')?.textContent ?? ''),
    stages: summary.querySelectorAll('.stage').length,
    modifiers: Array.from(summary.querySelectorAll('.modifier-head'), (e) => e.textContent ?? ''),
    schemes: Array.from(summary.querySelectorAll('.scheme-text'), (e) => e.textContent ?? ''),
    diagnostics: Array.from(problems.querySelectorAll('li'), (li) => ({
      line: Number(li.querySelector('.line-number')?.textContent?.replace('Line ', '') ?? NaN),
      severity: li.className,
      message: (li.textContent ?? '').replace(/^Line \d+ /, ''),
    })),
    ...(errorBanner.hidden ? {} : { errorBanner: { text: errorBanner.querySelector('.error-banner-text')?.textContent ?? '', line: Number(errorBanner.querySelector('.show-error')?.textContent?.replace('Show line ', '') ?? NaN) } }),
    sizeText: sizeSection.textContent ?? '',
    ...(layersWithheld.hidden ? {} : { layerMapWithheld: layersWithheld.querySelector('p')?.textContent ?? '' }),
    model: current.model,
    counts: resolvedShown
      ? { total: countOf('count-total'), quantized: countOf('count-quantized'), ignored: countOf('count-ignored'), unmatched: countOf('count-unmatched'), indivisible: countOf('count-indivisible') }
      : undefined,
    inputBytes: bytes('size-input'),
    estimatedBytes: bytes('size-estimated'),
    visibleRows: Array.from(layersSection.querySelectorAll('.rows .row'), (row) => ({
      name: row.querySelector('.col-name')?.textContent ?? '',
      state: row.querySelector('.col-state')?.textContent ?? '',
      flagged: row.querySelector('.flag') !== null,
    })),
    runEnabled: !runButton.hasAttribute('disabled'),
    runReasons: Array.from(runReasons.querySelectorAll('li'), (li) => li.textContent ?? ''),
    scrollTop: state.layerTable.scrollTop,
  };
  messages.postProbe({ type: 'probe:rendered', view } satisfies PageProbe<RecipeRenderedView>);
}
