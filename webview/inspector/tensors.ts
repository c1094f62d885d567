/**
 * The Tensors tab: every tensor as a virtual table (filter, dtype, sort), and a tensor's detail with its
 * statistics computed on demand: for a quantized layer's codes, of the dequantized weight, the codes or the
 * stored words.
 */
import type { TensorRow } from '../../src/core/checkpoint/summary';
import type { TensorStatistics } from '../../src/core/stats/tensorStats';
import type { WeightStatistics } from '../../src/core/stats/weightStats';
import type { SummaryView, TensorValuesView } from '../../src/webviewMessages/inspector';
import { formatBytes, formatShape } from '../../src/core/util/format';
import { h } from '../common/toolkit';
import { Column, VirtualTable } from '../common/virtualTable';
import { histogramChart } from '../common/charts';
import type { InspectorPage, SavedState, ShownTensorDetail } from './page';
import { button, dropdown, exactName, field, filterField, num, showTableError, withProgress, WORK_SILENCE_MS } from './widgets';

export function tensorsView(page: InspectorPage, summary: SummaryView): HTMLElement {
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
      const rows = await page.messages.request('tensorPage', { filter: page.saved.tensorFilter, dtype: page.saved.tensorDtype || undefined, offset, limit, sort: sort as never });
      for (const name of rows.quantizedCodes ?? []) page.tensors.quantizedCodes.add(name);
      return rows;
    },
    page.saved.tensorTable,
    {
      onStateChange: page.save,
      onStatus: (rows) => {
        status.textContent = rows.filterError ?? `${rows.total.toLocaleString('en-US')} tensor${rows.total === 1 ? '' : 's'}`;
        status.classList.toggle('error-text', rows.filterError !== undefined);
      },
      onError: (error) => showTableError(status, 'tensors', error),
      onSelect: (row) => {
        page.saved.selectedTensor = row.name;
        page.save();
        showTensorDetail(page, detail, row);
      },
      onRender: () => page.changed(),
    },
  );
  let tensorFilterField: (HTMLElement & { value: string }) | undefined;
  page.tables.set('tensors', {
    table: table as VirtualTable<unknown>,
    status,
    filter: () => page.saved.tensorFilter,
    setFilter: (text) => {
      page.saved.tensorFilter = text;
      if (tensorFilterField) tensorFilterField.value = text;
      return table.refresh();
    },
  });
  const dtypes = Object.keys(summary.byDtype).sort();
  /** After a reload (the tab was hidden and shown again): the selected tensor's detail, with its statistics. */
  const restoreName = page.saved.selectedTensor;
  const restoreDetail = async () => {
    const name = restoreName;
    // Only the tensor the saved state selected, and only if nothing put a detail on the page meanwhile: a
    // reveal command that arrives while the first page loads selects and computes on its own detail, which
    // a second one built here would replace (its result would then land on a detail no longer shown).
    if (!name || page.tensors.detail) return;
    const found = await page.messages.request('tensorPage', { filter: exactName(name), offset: 0, limit: 1 });
    const row = found.rows[0];
    if (!row || page.saved.selectedTensor !== name || page.tensors.detail) return;
    for (const codes of found.quantizedCodes ?? []) page.tensors.quantizedCodes.add(codes);
    if (page.saved.shownStats?.tensor === name) {
      for (const [view, result] of Object.entries(page.saved.shownStats.results)) page.tensors.statsCache.set(`${view}:${name}`, result);
    }
    showTensorDetail(page, detail, row);
  };
  document.addEventListener('keydown', (event) => {
    if (event.key === '/' && page.saved.tab === 'tensors' && !(document.activeElement?.tagName ?? '').startsWith('VSCODE-TEXT')) {
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
      (tensorFilterField = filterField('tensor-filter', 'Filter by name (or re:regex)   / to focus', page.saved.tensorFilter, (v) => {
        page.saved.tensorFilter = v;
        void table.refresh();
      })),
      dropdown('dtype-filter', 'Filter by dtype', [['', 'all dtypes'], ...dtypes.map((d): [string, string] => [d, d])], page.saved.tensorDtype, (v) => {
        page.saved.tensorDtype = v;
        void table.refresh();
      }),
      status,
    ),
    table.element,
    detail,
  );
}

const VIEW_LABELS: Record<TensorValuesView, string> = {
  dequantized: 'dequantized weight: (q − zero) · scale',
  codes: 'stored codes q (unpacked)',
  stored: 'tensor as stored (raw words)',
};

function showTensorDetail(page: InspectorPage, detail: HTMLElement, row: TensorRow): void {
  const body = h('div', { class: 'stats-body' });
  const quantized = page.tensors.quantizedCodes.has(row.name);
  const view = (): TensorValuesView => (quantized ? page.saved.statsView : 'stored');
  const cacheKey = () => `${view()}:${row.name}`;
  const computeButton = button('Compute statistics', () => void compute(), { id: 'compute-stats' });
  /** Whether a computation is running: its progress line and Cancel button own the body until it ends. */
  let running = false;
  const current: ShownTensorDetail = {
    row,
    quantized,
    view: view(),
    refresh: () => {
      if (!running) showCached();
    },
  };
  page.tensors.detail = current;
  const compute = async () => {
    if (running) return; // one computation per detail at a time (Cancel stops it)
    const v = view();
    const key = cacheKey();
    const label = v === 'stored' ? `Streaming ${formatBytes(row.bytes)}` : `Dequantizing ${row.name.replace(/\.(weight|weight_packed|qweight)$/, '')} in row blocks`;
    running = true;
    const result = await withProgress(body, label, (options) => page.messages.request('tensorStats', { tensor: row.name, ...(v === 'stored' ? {} : { view: v }) }, { ...options, timeoutMs: WORK_SILENCE_MS })).finally(() => (running = false));
    if (result) {
      page.tensors.statsCache.set(key, result);
      // Kept in the saved state too (only this tensor's), so a reload shows it without streaming again.
      page.saved.shownStats = { tensor: row.name, results: { ...(page.saved.shownStats?.tensor === row.name ? page.saved.shownStats.results : {}), [v]: result } };
      page.save();
      page.loaded.add(`${v === 'stored' ? 'stats' : v}:${row.name}`);
      // The toggle may have moved while it ran: show what the toggle now asks for. A newer detail of the
      // same tensor (rebuilt meanwhile) shows the result too, unless it is computing on its own.
      if (page.tensors.detail === current) showCached();
      else if (page.tensors.detail?.row.name === row.name) page.tensors.detail.refresh();
      else page.changed();
    }
  };
  const showCached = () => {
    const cached = page.tensors.statsCache.get(cacheKey());
    current.view = view();
    current.shown = cached ? { view: view(), result: cached } : undefined;
    body.replaceChildren(cached ? statsView(page, cached) : h('p', { class: 'muted' }, quantized && view() !== 'stored' ? 'Dequantizes every element, streamed in row blocks; nothing is sampled.' : 'Statistics read every element of the tensor; nothing is sampled.'));
    computeButton.textContent = cached ? 'Recompute statistics' : 'Compute statistics';
    page.changed();
  };
  detail.replaceChildren(
    h('h3', {}, row.name),
    h('div', { class: 'fields' }, field('dtype', row.dtype), field('shape', formatShape(row.shape)), field('size', `${formatBytes(row.bytes)} in ${row.shard} at byte ${row.offset.toLocaleString('en-US')}`)),
    h(
      'div',
      { class: 'toolbar' },
      quantized
        ? dropdown('stats-view', 'Show values as', Object.entries(VIEW_LABELS) as [string, string][], page.saved.statsView, (v) => {
            page.saved.statsView = v as TensorValuesView;
            page.save();
            // During a computation its progress and Cancel stay on screen; the new view shows when it ends.
            if (running) {
              current.view = view();
              computeButton.textContent = 'Compute statistics';
              page.changed();
            } else showCached();
          })
        : undefined,
      computeButton,
    ),
    body,
  );
  showCached();
}

function statsView(page: InspectorPage, result: TensorStatistics | WeightStatistics): HTMLElement {
  const s = result.stats;
  const weight = 'view' in result ? result : undefined;
  const chart = h('div', { class: 'chart-box' });
  const draw = () => {
    const log = page.saved.statsScale === 'log';
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
    dropdown('stats-scale', 'Histogram axis', [['linear', 'values (linear bins)'], ['log', 'log10 |value|']], page.saved.statsScale, (v) => {
      page.saved.statsScale = v as SavedState['statsScale'];
      page.save();
      draw();
      page.changed();
    }),
    chart,
  );
}
