/**
 * Checkpoint inspector webview: overview, layer map, tensor table with on-demand statistics, scale heatmap
 * and histograms, health scan. The host owns the files; this page asks for summaries and pages only
 * (src/webviewMessages/inspector.ts) and keeps its view state with setState so it survives being hidden.
 */
import '../common/base.css';
import './inspector.css';
import type { HostToWebview, InspectorMethods, InspectorTab, InspectorTable, SummaryView, TableCommand, TableView, TensorValuesView, WebviewToHost } from '../../src/webviewMessages/inspector';
import type { WeightStatistics } from '../../src/core/stats/weightStats';
import type { SimulationName } from '../../src/core/inspect/error';
import type { TensorRow } from '../../src/core/checkpoint/summary';
import type { LinearModule } from '../../src/core/checkpoint/scheme';
import type { TensorStatistics } from '../../src/core/stats/tensorStats';
import type { ModuleScales } from '../../src/core/inspect/scales';
import { HostConnection } from '../common/vscodeApi';
import { h, registerToolkit } from '../common/toolkit';
import { Column, TableState, VirtualTable } from '../common/virtualTable';
import { heatmap, histogramChart } from '../common/charts';
import { formatBytes, formatCount, formatShape } from '../../src/core/util/format';
import { readErrorReport, readFields, readHeatmap, readTensorDetail, ShownTensorDetail } from './readBack';
import { errorReportView } from './errorReport';
import { moeGroupsPanel } from './layerGroups';

/** When this script started, in ms since the page's navigation began (see RenderedView.timing). */
const scriptStartMs = performance.now();
let initMs: number | undefined;
let firstRenderMs: number | undefined;

type Tab = InspectorTab;
interface ViewState {
  tab: Tab;
  tensorFilter: string;
  tensorDtype: string;
  tensorTable: TableState;
  selectedTensor?: string;
  statsScale: 'linear' | 'log';
  /** For a quantized layer's codes: dequantized values, the codes, or the tensor as stored (packed words). */
  statsView: TensorValuesView;
  /**
   * The statistics computed for the selected tensor, by view: the page is reloaded whenever its tab is hidden
   * and shown again, and recomputing would stream the whole tensor once more.
   */
  shownStats?: { tensor: string; results: Partial<Record<TensorValuesView, TensorStatistics | WeightStatistics>> };
  layerFilter: string;
  layerState: InspectorMethods['layerPage']['params']['state'];
  layerTable: TableState;
  selectedLayer?: string;
  scaleStat: 'max' | 'mean' | 'input';
  selectedScaleModule?: string;
  simulation: SimulationName;
}

registerToolkit();
const app = document.getElementById('app')!;
const host = new HostConnection<WebviewToHost, HostToWebview, ViewState>(onMessage);
/** A saved state means the page was reloaded (VS Code discards hidden webviews: no retainContextWhenHidden). */
const restored = host.state !== undefined;
const state: ViewState = {
  tab: 'overview',
  tensorFilter: '',
  tensorDtype: '',
  tensorTable: { scrollTop: 0, selected: 0 },
  statsScale: 'linear',
  statsView: 'dequantized',
  layerFilter: '',
  layerState: '',
  layerTable: { scrollTop: 0, selected: 0 },
  scaleStat: 'max',
  simulation: 'int4-g128',
  ...host.state,
};
const save = () => (host.state = state);

/** Progress listeners by request id (the host sends `progress` messages for long requests). */
const progressListeners = new Map<number, (fraction: number, what?: string) => void>();

function call<M extends keyof InspectorMethods>(method: M, params: InspectorMethods[M]['params'], onProgress?: (fraction: number, what?: string) => void): { result: Promise<InspectorMethods[M]['result']>; cancel: () => void } {
  const { id, result } = host.requestWithId<InspectorMethods[M]['result']>(method, params);
  if (onProgress) progressListeners.set(id, onProgress);
  void result.finally(() => progressListeners.delete(id)).catch(() => undefined);
  return { result, cancel: () => host.post({ type: 'cancel', requestId: id }) };
}

function onMessage(message: HostToWebview): void {
  if (message.type === 'init') {
    initMs ??= performance.now();
    render(message.summary, message.wholeCheckpoint);
  }
  else if (message.type === 'loadError') renderLoadError(message.message);
  else if (message.type === 'progress') progressListeners.get(message.requestId)?.(message.fraction, message.what);
  else if (message.type === 'show') showTab(message.tab, message.start ?? false, message.params);
  else if (message.type === 'healthReport') renderHealthReport(message.report);
  else if (message.type === 'table') void runTableCommand(message.command);
}

/** The virtualized tables with their filter setters, registered by the views that own them. */
const tables = new Map<InspectorTable, { table: VirtualTable<unknown>; status: HTMLElement; filter: () => string; setFilter: (text: string) => Promise<void> }>();

async function runTableCommand(command: TableCommand): Promise<void> {
  const entry = tables.get(command.table);
  if (!entry) return;
  showTab(command.table, false);
  if (command.filter !== undefined) await entry.setFilter(command.filter);
  if (command.scrollTo !== undefined) entry.table.scrollToRow(command.scrollTo);
  if (!command.open) return;
  // Done with the keys a keyboard user presses, so that the API (and the tests using it) go the user's way.
  const grid = entry.table.element.querySelector<HTMLElement>('[role="grid"]');
  if (!grid || !(await until(() => grid.querySelector('[aria-selected="true"]')))) return;
  grid.focus();
  grid.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
  if (command.table !== 'tensors') return;
  if (command.open.statsView) await chooseStatsView(command.open.statsView);
  if (command.open.compute) document.getElementById('compute-stats')?.click();
}

/** Polls `probe` every 20 ms for up to 2 s (rendering happens in animation frames and slot changes). */
async function until<T>(probe: () => T | null | undefined): Promise<T | undefined> {
  for (let waited = 0; waited <= 2000; waited += 20) {
    const value = probe();
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return undefined;
}

/** Picks `view` on the tensor detail's values toggle with Home and ArrowDown, as from the keyboard. */
async function chooseStatsView(view: TensorValuesView): Promise<void> {
  const toggle = document.getElementById('stats-view') as (HTMLElement & { value: string; options?: readonly unknown[] }) | null;
  if (!toggle) return; // not a quantized layer's codes: the page offers no toggle
  // A dropdown just built takes in its options on a slot change: keys before that select nothing.
  const count = toggle.querySelectorAll('vscode-option').length;
  if (!(await until(() => toggle.options?.length === count))) return;
  toggle.focus();
  const press = (key: string) => toggle.dispatchEvent(new KeyboardEvent('keydown', { key, bubbles: true, cancelable: true }));
  press('Home');
  for (let i = 0; i < count && toggle.value !== view; i++) press('ArrowDown');
}

let reportScheduled = false;
/** Reports after the table renders (once per frame at most: scrolling renders often). */
function tableRendered(): void {
  if (reportScheduled) return;
  reportScheduled = true;
  setTimeout(() => {
    reportScheduled = false;
    reportRendered();
  }, 50);
}

/** Tab-specific "start" actions, registered by the views that own them. */
const starters = new Map<Tab, (params?: InspectorMethods['errors']['params']) => void>();

function showTab(tab: Tab, start: boolean, params?: InspectorMethods['errors']['params']): void {
  const panels = document.querySelector('vscode-panels') as (HTMLElement & { activeid?: string }) | null;
  if (!panels) return;
  state.tab = tab;
  save();
  panels.activeid = `tab-${tab}`;
  window.dispatchEvent(new Event('resize'));
  if (start) starters.get(tab)?.(params);
  reportRendered();
}

let lastSummary: SummaryView | undefined;
const loaded = new Set<string>();
let worstLayer: string | undefined;
/** Reports put off while the values toggle is still upgrading (see reportRendered). */
let reportRetries = 0;
function reportRendered(): void {
  if (!lastSummary) return;
  // The toolkit's dropdown reads '' until its options are slotted in (right after a render or a restore):
  // report the page once it has settled rather than a toggle that shows nothing (usually a few frames).
  const toggle = document.getElementById('stats-view') as (HTMLElement & { value: string }) | null;
  if (toggle && toggle.value === '' && reportRetries < 300) {
    reportRetries++;
    setTimeout(reportRendered, 16);
    return;
  }
  reportRetries = 0;
  host.post({
    type: 'rendered',
    view: {
      title: lastSummary.title,
      scheme: document.getElementById('scheme-description')?.textContent ?? '',
      tab: state.tab,
      tabs: Array.from(document.querySelectorAll('vscode-panel-tab'), (t) => t.textContent ?? ''),
      loaded: [...loaded],
      worstLayer,
      restored,
      tables: Object.fromEntries([...tables].map(([name, t]): [InspectorTable, TableView] => [name, { ...t.table.snapshot(), filter: t.filter(), status: t.status.textContent ?? '' }])),
      tensorDetail: readTensorDetail(document.getElementById('tensor-detail'), shownDetail, state.statsScale),
      overview: readFields(document.querySelector('#view-overview .overview > .fields')),
      scales: loaded.has('scales') ? readHeatmap(document.querySelector('#view-scales svg.heatmap')) : undefined,
      error: readErrorReport(document.getElementById('error-body')),
      timing: { scriptStart: scriptStartMs, init: initMs ?? NaN, firstRender: (firstRenderMs ??= performance.now()) },
    },
  });
}

function renderLoadError(message: string): void {
  app.setAttribute('aria-busy', 'false');
  app.replaceChildren(h('div', { class: 'error-panel', role: 'alert' }, h('h2', {}, 'This checkpoint cannot be opened'), h('p', { class: 'error-text' }, message)));
}

const num = (v: number) => (Number.isNaN(v) ? 'NaN' : !Number.isFinite(v) ? String(v) : v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5) ? v.toExponential(3) : v.toPrecision(5));

function field(label: string, value: string | Node): HTMLElement {
  return h('div', { class: 'field' }, h('span', { class: 'field-label' }, label), h('span', { class: 'field-value' }, value));
}

/** Why a model is the size it is: the share of its bytes in embeddings and the output head (kept unquantized). */
function sizeNote(summary: SummaryView): string {
  const e = summary.embeddings;
  if (!e || summary.totalBytes <= 0) return '';
  const which = ['embed', 'lm_head'].filter((k) => e.names.some((n) => n.includes(k)));
  const label = which.length === 2 ? 'embeddings and lm_head' : which[0] === 'lm_head' ? 'lm_head' : 'embeddings';
  return ` · ${label} in ${e.dtypes.join('/').toLowerCase()}: ${Math.round((100 * e.bytes) / summary.totalBytes)}% of this model`;
}

function button(label: string, onClick: () => void, attributes: Record<string, string> = {}): HTMLElement {
  const element = h('vscode-button', { appearance: 'secondary', ...attributes }, label);
  element.addEventListener('click', onClick);
  return element;
}

/** A long-running request with a progress line and a Cancel button; resolves to undefined when cancelled or failed (the error is shown). */
async function withProgress<T>(container: HTMLElement, label: string, start: (onProgress: (f: number, what?: string) => void) => { result: Promise<T>; cancel: () => void }): Promise<T | undefined> {
  const text = h('span', { class: 'progress-text', role: 'status', 'aria-live': 'polite' }, `${label}…`);
  let cancel = () => undefined as void;
  const cancelButton = button('Cancel', () => cancel());
  container.replaceChildren(h('div', { class: 'progress' }, h('vscode-progress-ring', {}), text, cancelButton));
  const run = start((fraction, what) => {
    text.textContent = `${label}… ${(fraction * 100).toFixed(0)}%${what ? ` · ${what}` : ''}`;
  });
  cancel = run.cancel;
  try {
    return await run.result;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    container.replaceChildren(h('p', { class: message === 'cancelled' ? 'muted' : 'error-text', role: 'alert' }, message === 'cancelled' ? `${label}: cancelled.` : `${label} failed: ${message}`));
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------

function render(summary: SummaryView, wholeCheckpoint: string | undefined): void {
  app.setAttribute('aria-busy', 'false');
  const tabs: [Tab, string][] = [
    ['overview', 'Overview'],
    ['layers', `Linear layers (${summary.layerCounts.quantized + summary.layerCounts.ignored + summary.layerCounts.unquantized + summary.layerCounts.missing + summary.layerCounts.elsewhere})`],
    ['tensors', `Tensors (${summary.tensorCount.toLocaleString('en-US')})`],
    ['scales', 'Scales'],
    ['error', 'Error'],
    ['health', 'Health'],
  ];
  const panels = h(
    'vscode-panels',
    { 'activeid': `tab-${state.tab}`, 'aria-label': 'Inspector sections', class: 'panels' },
    ...tabs.map(([id, label]) => h('vscode-panel-tab', { id: `tab-${id}` }, label)),
    h('vscode-panel-view', { id: 'view-overview' }, overview(summary, wholeCheckpoint)),
    h('vscode-panel-view', { id: 'view-layers' }, moeLayers(summary) ?? layersView()),
    h('vscode-panel-view', { id: 'view-tensors' }, tensorsView(summary)),
    h('vscode-panel-view', { id: 'view-scales' }, scalesView(summary)),
    h('vscode-panel-view', { id: 'view-error' }, errorView(summary)),
    h('vscode-panel-view', { id: 'view-health' }, healthView()),
  );
  panels.addEventListener('change', () => {
    const active = (panels as HTMLElement & { activeid?: string }).activeid;
    if (active) {
      state.tab = active.replace('tab-', '') as Tab;
      save();
      window.dispatchEvent(new Event('resize'));
    }
  });
  app.replaceChildren(h('h1', {}, summary.title, h('span', { class: 'subtitle' }, layoutText(summary))), panels);
  lastSummary = summary;
  reportRendered();
}

function layoutText(summary: SummaryView): string {
  return summary.layout === 'indexed'
    ? `sharded · ${summary.index} · ${summary.shards.length} shard${summary.shards.length === 1 ? '' : 's'}`
    : summary.layout === 'folder-of-shards'
      ? `folder of ${summary.shards.length} shards (no index)`
      : summary.shardOf
        ? `one shard of ${summary.shardOf}`
        : 'single file';
}

function overview(summary: SummaryView, wholeCheckpoint: string | undefined): HTMLElement {
  const config = summary.config;
  const modelLine = config
    ? [config.architectures?.join(', '), config.hiddenSize && `hidden ${config.hiddenSize}`, config.numHiddenLayers && `${config.numHiddenLayers} decoder layers`, config.torchDtype].filter(Boolean).join(' · ')
    : summary.configError ?? 'no config.json beside the weights';
  const lc = summary.layerCounts;
  const errors = summary.problems.filter((p) => p.severity === 'error');
  const warnings = summary.problems.filter((p) => p.severity === 'warning');
  const dtypeEntries = Object.entries(summary.byDtype).sort((a, b) => b[1].bytes - a[1].bytes);
  return h(
    'section',
    { class: 'overview' },
    wholeCheckpoint
      ? h('div', { class: 'banner', role: 'note' }, h('span', {}, `This file is one shard of a checkpoint indexed by ${wholeCheckpoint.split('/').pop()}.`), button('Open whole checkpoint', () => host.post({ type: 'openWholeCheckpoint' }), { id: 'open-whole' }))
      : undefined,
    h('p', { class: 'scheme', id: 'scheme-description' }, summary.scheme.description, summary.scheme.source === 'tensors' ? h('span', { class: 'muted' }, ' (inferred from the tensors)') : undefined),
    h(
      'div',
      { class: 'fields' },
      field('Model', modelLine),
      field('Linear layers', `${lc.quantized} quantized · ${lc.ignored} ignored · ${lc.unquantized} unquantized${lc.missing ? ` · ${lc.missing} missing` : ''}${lc.elsewhere ? ` · ${lc.elsewhere} in other shards` : ''}`),
      field('Tensors', summary.tensorCount.toLocaleString('en-US')),
      field('Parameters', `${formatCount(summary.totalElements)} stored elements (${summary.totalElements.toLocaleString('en-US')})`),
      field('Size', `${formatBytes(summary.totalBytes)} of tensor data${sizeNote(summary)}`),
      field('Metadata', Object.entries(summary.metadata).map(([k, v]) => `${k}=${v}`).join(', ') || 'none'),
    ),
    h('div', { class: 'chips', 'aria-label': 'parameters by dtype' }, ...dtypeEntries.map(([dtype, t]) => h('span', { class: 'chip', title: `${t.tensors} tensors` }, `${dtype} · ${formatCount(t.elements)} · ${formatBytes(t.bytes)}`))),
    summary.scheme.disagreements.length || summary.scheme.configErrors.length
      ? h('section', { class: 'problems', 'aria-label': 'config disagreements' }, h('h2', {}, 'config.json vs tensors'), h('ul', {}, ...summary.scheme.disagreements.map((d) => h('li', { class: 'warning' }, d)), ...summary.scheme.configErrors.map((d) => h('li', { class: 'error' }, d))))
      : undefined,
    summary.problems.length
      ? h('section', { class: 'problems', 'aria-label': 'problems' }, h('h2', {}, `File problems: ${errors.length} error${errors.length === 1 ? '' : 's'}, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}`), h('ul', {}, ...summary.problems.slice(0, 200).map((p) => h('li', { class: p.severity }, p.message))))
      : h('p', { class: 'ok' }, 'The headers are valid and consistent.'),
    summary.shards.length > 1
      ? h(
          'details',
          { class: 'shards' },
          h('summary', {}, `${summary.shards.length} shards`),
          h('table', {}, h('tbody', {}, ...summary.shards.map((s) => h('tr', {}, h('td', {}, s.name), h('td', { class: 'num' }, `${s.tensors} tensors`), h('td', { class: 'num' }, formatBytes(s.fileSize)), h('td', {}, s.error ? `error: ${s.error}` : 'ok'))))),
        )
      : undefined,
  );
}

// ---------------------------------------------------------------------------------------------------------

function filterField(id: string, placeholder: string, value: string, onInput: (v: string) => void): HTMLElement & { value: string } {
  const input = h('vscode-text-field', { id, placeholder, value, 'aria-label': placeholder }) as HTMLElement & { value: string };
  input.addEventListener('input', () => onInput(input.value));
  return input;
}

function dropdown(id: string, label: string, options: [string, string][], value: string, onChange: (v: string) => void): HTMLElement {
  const select = h('vscode-dropdown', { id, 'aria-label': label }, ...options.map(([v, text]) => h('vscode-option', { value: v, selected: v === value }, text))) as HTMLElement & { value: string };
  // The toolkit's dropdown reports a change to '' when a key reaches it before its options are slotted in:
  // only a value it offers is a choice.
  select.addEventListener('change', () => (options.some(([v]) => v === select.value) ? onChange(select.value) : undefined));
  return select;
}

const STATE_LABEL: Record<LinearModule['state'], string> = { quantized: 'quantized', ignored: 'ignored', unquantized: 'unquantized', missing: 'missing', elsewhere: 'other shard' };

function storageText(m: LinearModule): string {
  if (m.state === 'elsewhere') return `in ${m.shard ?? 'another shard'}`;
  const o = m.observed;
  if (!o) return '—';
  const parts = [o.kind === 'float' ? (o.weightDtype ?? 'float') : o.kind];
  if (o.bits && o.kind !== 'float') parts.push(`${o.bits}-bit`);
  if (o.strategy && o.kind !== 'float') parts.push(o.strategy === 'group' && o.groupSize ? `group ${o.groupSize}` : o.strategy);
  if (o.staticInputScale) parts.push('input_scale');
  if (o.hasGIdx) parts.push('g_idx');
  return parts.join(' · ');
}

/** MoE checkpoints: the group summary above the layer table; choosing a group filters the table to it. */
function moeLayers(summary: SummaryView): HTMLElement | undefined {
  const panel = moeGroupsPanel(summary.layerGroups, summary.scheme.moe?.description, (filter) => void tables.get('layers')?.setFilter(filter));
  return panel && h('div', { class: 'moe-layers' }, panel, layersView());
}

function layersView(): HTMLElement {
  const status = h('span', { class: 'table-status', role: 'status', 'aria-live': 'polite' });
  const detail = h('div', { class: 'detail', id: 'layer-detail' });
  const columns: Column<LinearModule>[] = [
    { label: 'module', className: 'col-name', render: (m) => m.name, title: (m) => m.name },
    { label: 'state', className: 'col-state', render: (m) => h('span', { class: `state state-${m.state}`, title: STATE_LABEL[m.state] }, STATE_LABEL[m.state]) },
    { label: 'storage', className: 'col-storage', render: storageText },
    { label: 'config', className: 'col-group', render: (m) => m.declared?.group ?? (m.declared?.ignoredBy ? `ignore: ${m.declared.ignoredBy}` : '—') },
    { label: 'issues', className: 'col-issues', render: (m) => (m.issues.length ? h('span', { class: 'warning' }, m.issues.join('; ')) : ''), title: (m) => m.issues.join('\n') },
  ];
  const table = new VirtualTable<LinearModule>(
    'Linear layers',
    columns,
    (offset, limit) => call('layerPage', { filter: state.layerFilter, state: state.layerState, offset, limit }).result,
    state.layerTable,
    {
      onStateChange: save,
      onStatus: (page) => {
        status.textContent = page.filterError ?? `${page.total} layer${page.total === 1 ? '' : 's'}`;
      },
      onSelect: (m) => {
        state.selectedLayer = m.name;
        save();
        detail.replaceChildren(layerDetail(m));
      },
      onRender: tableRendered,
    },
  );
  let layerFilterField: (HTMLElement & { value: string }) | undefined;
  tables.set('layers', {
    table: table as VirtualTable<unknown>,
    status,
    filter: () => state.layerFilter,
    setFilter: (text) => {
      state.layerFilter = text;
      if (layerFilterField) layerFilterField.value = text;
      return table.refresh();
    },
  });
  const element = h(
    'section',
    { class: 'table-section' },
    h(
      'div',
      { class: 'toolbar' },
      (layerFilterField = filterField('layer-filter', 'Filter layers by name (or re:regex)', state.layerFilter, (v) => {
        state.layerFilter = v;
        void table.refresh();
      })),
      dropdown('layer-state', 'Filter by state', [['', 'all states'], ['quantized', 'quantized'], ['ignored', 'ignored'], ['unquantized', 'unquantized'], ['missing', 'missing'], ['elsewhere', 'in other shards'], ['issues', 'with issues']], state.layerState, (v) => {
        state.layerState = v as ViewState['layerState'];
        void table.refresh();
      }),
      status,
    ),
    table.element,
    detail,
  );
  // After a reload (the tab was hidden and shown again): the selected layer's detail.
  const restoreDetail = async () => {
    const name = state.selectedLayer;
    if (!name) return;
    const page = await call('layerPage', { filter: exactName(name), state: '', offset: 0, limit: 1 }).result;
    if (page.rows[0] && state.selectedLayer === name) detail.replaceChildren(layerDetail(page.rows[0]));
  };
  queueMicrotask(() => void table.refresh(true).then(restoreDetail));
  return element;
}

function layerDetail(m: LinearModule): HTMLElement {
  return h(
    'div',
    {},
    h('h3', {}, m.name),
    h('div', { class: 'fields' }, field('State', STATE_LABEL[m.state]), field('Storage', storageText(m)), field('Logical shape', m.observed?.shape ? formatShape(m.observed.shape) : '—'), field('Config', m.declared?.group ? `group ${m.declared.group}` : m.declared?.ignoredBy ? `ignored by ${m.declared.ignoredBy}` : 'not targeted'), field('Tensors', m.tensors.join(', ') || '—')),
    m.issues.length ? h('ul', { class: 'problems' }, ...m.issues.map((i) => h('li', { class: 'warning' }, i))) : undefined,
  );
}

// ---------------------------------------------------------------------------------------------------------

/** Statistics by `${view}:${tensor}`. */
const statsCache = new Map<string, TensorStatistics | WeightStatistics>();

function tensorsView(summary: SummaryView): HTMLElement {
  const status = h('span', { class: 'table-status', role: 'status', 'aria-live': 'polite' });
  const detail = h('div', { class: 'detail', id: 'tensor-detail' });
  const multiShard = summary.shards.length > 1;
  const columns: Column<TensorRow>[] = [
    { label: 'name', className: 'col-name', sortKey: 'name', render: (r) => r.name, title: (r) => r.name },
    { label: 'dtype', className: 'col-dtype', sortKey: 'dtype', render: (r) => r.dtype },
    { label: 'shape', className: 'col-shape', render: (r) => formatShape(r.shape) },
    { label: 'elements', className: 'col-num num', sortKey: 'elements', render: (r) => r.elements.toLocaleString('en-US') },
    { label: 'bytes', className: 'col-num num', sortKey: 'bytes', render: (r) => formatBytes(r.bytes) },
    ...(multiShard ? [{ label: 'shard', className: 'col-shard', render: (r: TensorRow) => r.shard }] : []),
  ];
  const table = new VirtualTable<TensorRow>(
    'Tensors',
    columns,
    async (offset, limit, sort) => {
      const page = await call('tensorPage', { filter: state.tensorFilter, dtype: state.tensorDtype || undefined, offset, limit, sort: sort as never }).result;
      for (const name of page.quantizedCodes ?? []) quantizedCodes.add(name);
      return page;
    },
    state.tensorTable,
    {
      onStateChange: save,
      onStatus: (page) => {
        status.textContent = page.filterError ?? `${page.total.toLocaleString('en-US')} tensor${page.total === 1 ? '' : 's'}`;
        status.classList.toggle('error-text', page.filterError !== undefined);
      },
      onSelect: (row) => {
        state.selectedTensor = row.name;
        save();
        showTensorDetail(detail, row);
      },
      onRender: tableRendered,
    },
  );
  let tensorFilterField: (HTMLElement & { value: string }) | undefined;
  tables.set('tensors', {
    table: table as VirtualTable<unknown>,
    status,
    filter: () => state.tensorFilter,
    setFilter: (text) => {
      state.tensorFilter = text;
      if (tensorFilterField) tensorFilterField.value = text;
      return table.refresh();
    },
  });
  const dtypes = Object.keys(summary.byDtype).sort();
  /** After a reload (the tab was hidden and shown again): the selected tensor's detail, with its statistics. */
  const restoreName = state.selectedTensor;
  const restoreDetail = async () => {
    const name = restoreName;
    // Only the tensor the saved state selected, and only if nothing put a detail on the page meanwhile: a
    // reveal command that arrives while the first page loads selects and computes on its own detail, which
    // a second one built here would replace (its result would then land on a detail no longer shown).
    if (!name || shownDetail) return;
    const page = await call('tensorPage', { filter: exactName(name), offset: 0, limit: 1 }).result;
    const row = page.rows[0];
    if (!row || state.selectedTensor !== name || shownDetail) return;
    for (const codes of page.quantizedCodes ?? []) quantizedCodes.add(codes);
    if (state.shownStats?.tensor === name) {
      for (const [view, result] of Object.entries(state.shownStats.results)) statsCache.set(`${view}:${name}`, result);
    }
    showTensorDetail(detail, row);
  };
  document.addEventListener('keydown', (event) => {
    if (event.key === '/' && state.tab === 'tensors' && !(document.activeElement?.tagName ?? '').startsWith('VSCODE-TEXT')) {
      event.preventDefault();
      document.getElementById('tensor-filter')?.focus();
    }
  });
  queueMicrotask(() => void table.refresh(true).then(restoreDetail));
  return h(
    'section',
    { class: 'table-section' },
    h(
      'div',
      { class: 'toolbar' },
      (tensorFilterField = filterField('tensor-filter', 'Filter by name (or re:regex)   / to focus', state.tensorFilter, (v) => {
        state.tensorFilter = v;
        void table.refresh();
      })),
      dropdown('dtype-filter', 'Filter by dtype', [['', 'all dtypes'], ...dtypes.map((d): [string, string] => [d, d])], state.tensorDtype, (v) => {
        state.tensorDtype = v;
        void table.refresh();
      }),
      status,
    ),
    table.element,
    detail,
  );
}

/** A `re:` filter matching exactly one tensor or module name. */
const exactName = (name: string) => `re:^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;

const VIEW_LABELS: Record<TensorValuesView, string> = {
  dequantized: 'dequantized weight: (q − zero) · scale',
  codes: 'stored codes q (unpacked)',
  stored: 'tensor as stored (raw words)',
};

/** The tensor whose detail is on the page, and the statistics it shows (for the `rendered` report). */
let shownDetail: (ShownTensorDetail & { refresh: () => void }) | undefined;

function showTensorDetail(detail: HTMLElement, row: TensorRow): void {
  const body = h('div', { class: 'stats-body' });
  const quantized = quantizedCodes.has(row.name);
  const view = (): TensorValuesView => (quantized ? state.statsView : 'stored');
  const cacheKey = () => `${view()}:${row.name}`;
  const computeButton = button('Compute statistics', () => void compute(), { id: 'compute-stats' });
  const current: NonNullable<typeof shownDetail> = { row, quantized, view: view(), refresh: () => {
      if (!running) showCached();
    },
  };
  shownDetail = current;
  /** Whether a computation is running: its progress line and Cancel button own the body until it ends. */
  let running = false;
  const compute = async () => {
    if (running) return; // one computation per detail at a time (Cancel stops it)
    const v = view();
    const key = cacheKey();
    const label = v === 'stored' ? `Streaming ${formatBytes(row.bytes)}` : `Dequantizing ${row.name.replace(/\.(weight|weight_packed|qweight)$/, '')} in row blocks`;
    running = true;
    const result = await withProgress(body, label, (onProgress) => call('tensorStats', { tensor: row.name, ...(v === 'stored' ? {} : { view: v }) }, onProgress)).finally(() => (running = false));
    if (result) {
      statsCache.set(key, result);
      // Kept in the saved state too (only this tensor's), so a reload shows it without streaming again.
      state.shownStats = { tensor: row.name, results: { ...(state.shownStats?.tensor === row.name ? state.shownStats.results : {}), [v]: result } };
      save();
      loaded.add(`${v === 'stored' ? 'stats' : v}:${row.name}`);
      // The toggle may have moved while it ran: show what the toggle now asks for. A newer detail of the
      // same tensor (rebuilt meanwhile) shows the result too, unless it is computing on its own.
      if (shownDetail === current) showCached();
      else if (shownDetail?.row.name === row.name) shownDetail.refresh();
      else reportRendered();
    }
  };
  const showCached = () => {
    const cached = statsCache.get(cacheKey());
    current.view = view();
    current.shown = cached ? { view: view(), result: cached } : undefined;
    body.replaceChildren(cached ? statsView(cached) : h('p', { class: 'muted' }, quantized && view() !== 'stored' ? 'Dequantizes every element, streamed in row blocks; nothing is sampled.' : 'Statistics read every element of the tensor; nothing is sampled.'));
    computeButton.textContent = cached ? 'Recompute statistics' : 'Compute statistics';
    reportRendered();
  };
  detail.replaceChildren(
    h('h3', {}, row.name),
    h('div', { class: 'fields' }, field('dtype', row.dtype), field('shape', formatShape(row.shape)), field('size', `${formatBytes(row.bytes)} in ${row.shard} at byte ${row.offset.toLocaleString('en-US')}`)),
    h(
      'div',
      { class: 'toolbar' },
      quantized
        ? dropdown('stats-view', 'Show values as', Object.entries(VIEW_LABELS) as [string, string][], state.statsView, (v) => {
            state.statsView = v as TensorValuesView;
            save();
            // During a computation its progress and Cancel stay on screen; the new view shows when it ends.
            if (running) {
              current.view = view();
              computeButton.textContent = 'Compute statistics';
              reportRendered();
            } else showCached();
          })
        : undefined,
      computeButton,
    ),
    body,
  );
  showCached();
}

/** Tensors that hold a quantized layer's codes, as the host marked them on the pages it sent. */
const quantizedCodes = new Set<string>();

function statsView(result: TensorStatistics | WeightStatistics): HTMLElement {
  const s = result.stats;
  const weight = 'view' in result ? result : undefined;
  const chart = h('div', { class: 'chart-box' });
  const draw = () => {
    const log = state.statsScale === 'log';
    chart.replaceChildren(
      histogramChart(log ? result.log : result.linear, {
        title: log ? 'Histogram of log10 |value| (zeros excluded), log-scaled counts' : 'Histogram of values, log-scaled counts',
        logCounts: true,
        xLabel: log ? (e) => `1e${e.toFixed(1)}` : undefined,
      }),
    );
  };
  draw();
  return h(
    'div',
    { class: 'stats' },
    h(
      'div',
      { class: 'fields stats-grid', id: 'stats-grid' },
      field('min', num(s.min)),
      field('max', num(s.max)),
      field('mean', num(s.mean)),
      field('std', num(s.std)),
      field('absmax', num(s.absMax)),
      field('NaN', s.nan.toLocaleString('en-US')),
      field('±Inf', (s.posInf + s.negInf).toLocaleString('en-US')),
      field('zeros', s.zeros.toLocaleString('en-US')),
      field('elements', s.count.toLocaleString('en-US')),
      field('method', `${result.method} (every element; not sampled)`),
      ...(weight
        ? [
            field('values', weight.view === 'dequantized' ? `dequantized ${weight.module} [${weight.shape.join(' × ')}]` : `codes: ${weight.codes}`),
            field('layout', `${weight.layout}, ${weight.bits}-bit`),
            field('streamed', `row blocks of ≤ ${weight.blockElements.toLocaleString('en-US')} values`),
          ]
        : []),
    ),
    dropdown('stats-scale', 'Histogram axis', [['linear', 'values (linear bins)'], ['log', 'log10 |value|']], state.statsScale, (v) => {
      state.statsScale = v as ViewState['statsScale'];
      save();
      draw();
      reportRendered();
    }),
    chart,
  );
}

// ---------------------------------------------------------------------------------------------------------

let scalesCache: ModuleScales[] | undefined;
const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

function scalesView(summary: SummaryView): HTMLElement {
  const body = h('div', { class: 'scales-body' });
  const load = async () => {
    const result = await withProgress(body, 'Reading scale tensors', (onProgress) => call('scales', {}, onProgress));
    if (result) {
      scalesCache = result;
      body.replaceChildren(scalesContent(result));
      loaded.add('scales');
      reportRendered();
    }
  };
  if (summary.layerCounts.quantized === 0) {
    body.replaceChildren(h('p', { class: 'muted' }, 'No layer of this checkpoint is quantized, so there are no scales to show.'));
  } else if (scalesCache) body.replaceChildren(scalesContent(scalesCache));
  else body.replaceChildren(h('p', { class: 'muted' }, `${summary.layerCounts.quantized} quantized layers. Scale tensors are read only when you ask.`), button('Load scales', () => void load(), { id: 'load-scales' }));
  if (summary.layerCounts.quantized > 0) starters.set('scales', () => void (scalesCache ? undefined : load()));
  return h('section', { class: 'scales' }, body);
}

function scalesContent(modules: ModuleScales[]): HTMLElement {
  const detail = h('div', { class: 'detail', id: 'scale-detail' });
  const blocks = [...new Set(modules.filter((m) => m.block !== undefined).map((m) => m.block!))].sort((a, b) => a - b);
  const byKey = new Map(modules.map((m) => [`${m.block}|${m.projection}`, m]));
  const statOf = (m: ModuleScales | undefined): number | undefined => {
    if (!m) return undefined;
    if (state.scaleStat === 'input') return m.scales.find((s) => s.role === 'input_scale')?.stats.max;
    const w = m.scales.find((s) => s.role === 'weight_scale' || s.role === 'scales' || s.role === 'weight_scale_inv');
    return w ? (state.scaleStat === 'max' ? w.stats.max : w.stats.mean) : undefined;
  };
  const mapBox = h('div', { class: 'heatmap-box' });
  const select = (m: ModuleScales) => {
    state.selectedScaleModule = m.module;
    save();
    detail.replaceChildren(moduleScalesDetail(m));
  };
  const draw = () => {
    mapBox.replaceChildren(
      heatmap(
        blocks.map((b) => `layer ${b}`),
        PROJECTIONS.map((p) => p.replace('_proj', '')),
        (r, c) => statOf(byKey.get(`${blocks[r]}|${PROJECTIONS[c]}`)),
        {
          title: `${state.scaleStat === 'input' ? 'input scale' : `${state.scaleStat} weight scale`} per layer and projection`,
          log: true,
          onSelect: (r, c) => {
            const m = byKey.get(`${blocks[r]}|${PROJECTIONS[c]}`);
            if (m) select(m);
          },
        },
      ),
    );
  };
  draw();
  const others = modules.filter((m) => m.block === undefined);
  const selected = modules.find((m) => m.module === state.selectedScaleModule);
  if (selected) detail.replaceChildren(moduleScalesDetail(selected));
  return h(
    'div',
    {},
    h(
      'div',
      { class: 'toolbar' },
      dropdown('scale-stat', 'Heatmap statistic', [['max', 'max weight scale'], ['mean', 'mean weight scale'], ['input', 'input scale (static activations)']], state.scaleStat, (v) => {
        state.scaleStat = v as ViewState['scaleStat'];
        save();
        draw();
        reportRendered();
      }),
      h('span', { class: 'muted' }, 'Colour: log scale between the smallest and largest value. Click or press Enter on a cell.'),
    ),
    mapBox,
    others.length ? h('div', { class: 'chips' }, ...others.map((m) => button(m.module, () => select(m)))) : undefined,
    detail,
  );
}

function moduleScalesDetail(m: ModuleScales): HTMLElement {
  return h(
    'div',
    {},
    h('h3', {}, m.module),
    ...m.scales.map((s) =>
      h(
        'div',
        { class: 'scale-entry' },
        h('h4', {}, `${s.role} · ${s.dtype} ${formatShape(s.shape)}`),
        s.values
          ? h('p', {}, `value${s.values.length === 1 ? '' : 's'}: ${s.values.map(num).join(', ')}`)
          : h('div', {}, h('div', { class: 'fields' }, field('min', num(s.stats.min)), field('median', num(s.median)), field('max', num(s.stats.max)), field('mean', num(s.stats.mean))), histogramChart(s.histogram, { title: `Distribution of ${s.role} (${s.stats.count} values)`, logCounts: true })),
        s.stats.nan || s.stats.zeros || s.negatives || s.subnormals
          ? h('p', { class: 'warning' }, `NaN ${s.stats.nan} · zero ${s.stats.zeros} · negative ${s.negatives} · subnormal ${s.subnormals}`)
          : undefined,
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------------------

const SIMULATION_LABELS: Record<SimulationName, string> = {
  'fp8-tensor': 'FP8 per tensor',
  'int8-channel': 'INT8 per channel',
  'int4-g128': 'INT4 group 128 (symmetric)',
  'int4-g128-asym': 'INT4 group 128 (asymmetric)',
};

function errorView(summary: SummaryView): HTMLElement {
  const body = h('div', { class: 'error-body', id: 'error-body' });
  const quantized = summary.layerCounts.quantized > 0;
  const run = async (params: InspectorMethods['errors']['params']) => {
    const report = await withProgress(body, quantized ? 'Comparing with the original' : `Simulating ${SIMULATION_LABELS[state.simulation]}`, (onProgress) => call('errors', params, onProgress));
    if (!report) return;
    body.replaceChildren(errorReportView(report, field, PROJECTIONS));
    worstLayer = report.ranking[0];
    loaded.add('error');
    reportRendered();
  };
  const start = (params?: InspectorMethods['errors']['params']) => void run(params ?? (quantized ? { original: 'pick' } : { simulation: state.simulation }));
  starters.set('error', start);
  const controls = quantized
    ? [button('Compare with Original…', () => start(), { id: 'compare-original' }), h('span', { class: 'muted' }, 'Dequantizes each layer and measures it against the unquantized checkpoint you choose.')]
    : [
        dropdown('simulation', 'Scheme to simulate', Object.entries(SIMULATION_LABELS) as [string, string][], state.simulation, (v) => {
          state.simulation = v as SimulationName;
          save();
        }),
        button('Simulate', () => start(), { id: 'simulate' }),
        h('span', { class: 'muted' }, 'Round-to-nearest, exactly as compressed-tensors computes it, on every linear layer.'),
      ];
  body.replaceChildren(h('p', { class: 'muted' }, quantized ? 'How far is each quantized layer from the original?' : 'Which layers would hurt accuracy? Simulate a scheme before running any job.'));
  return h('section', {}, h('div', { class: 'toolbar' }, ...controls), body);
}

function healthView(): HTMLElement {
  const body = h('div', { class: 'health-body', id: 'health-body' });
  const weights = h('vscode-checkbox', { checked: true, id: 'health-weights' }, 'also stream every weight (all-zero, NaN, Inf)') as HTMLElement & { checked: boolean };
  const run = async () => {
    const report = await withProgress(body, 'Health scan', (onProgress) => call('health', { weights: weights.checked }, onProgress));
    if (report) renderHealthReport(report);
  };
  starters.set('health', () => void run());
  body.replaceChildren(h('p', { class: 'muted' }, 'Checks scales (NaN, Inf, zero, negative, subnormal, outliers) and weights (all zeros, NaN, Inf).'));
  return h('section', {}, h('div', { class: 'toolbar' }, button('Run health scan', () => void run(), { id: 'run-health' }), weights), body);
}

function renderHealthReport(report: InspectorMethods['health']['result']): void {
  const body = document.getElementById('health-body');
  if (!body) return;
  const errors = report.findings.filter((f) => f.severity === 'error').length;
  body.replaceChildren(
    h('p', { role: 'status' }, `${report.scannedTensors} tensors scanned (${formatBytes(report.scannedBytes)} of weights streamed): ${errors} error${errors === 1 ? '' : 's'}, ${report.findings.length - errors} warning${report.findings.length - errors === 1 ? '' : 's'}. Findings are also in the Problems panel.`),
    report.findings.length ? h('ul', { class: 'problems findings' }, ...report.findings.map((f) => h('li', { class: f.severity }, h('strong', {}, `${f.severity}: `), f.message))) : h('p', { class: 'ok' }, 'No problems found.'),
  );
  loaded.add('health');
  reportRendered();
}

host.post({ type: 'ready' });
