/**
 * Checkpoint inspector webview: header summary and a virtualized, filterable tensor table. The host owns
 * the files; this page only asks for summaries and pages of rows (src/protocol/inspector.ts).
 */
import './inspector.css';
import type { HostToWebview, SummaryView, TensorPage, TensorQuery, WebviewToHost } from '../../src/protocol/inspector';
import type { TensorRow } from '../../src/core/checkpoint/summary';
import { HostConnection } from '../shared/vscodeApi';
import { h, registerToolkit } from '../shared/toolkit';
import { formatBytes, formatCount, formatShape } from '../../src/core/util/format';

type SortKey = NonNullable<TensorQuery['sort']>['key'];
interface ViewState {
  filter: string;
  dtype: string;
  sort?: TensorQuery['sort'];
  scrollTop: number;
  selected: number;
}

const ROW_HEIGHT = 22;
const OVERSCAN = 30;
/** Browsers cap element heights (~33M px in Chromium); beyond this the scroll position is scaled. */
const MAX_SCROLL_HEIGHT = 8_000_000;

registerToolkit();
const app = document.getElementById('app')!;
const host = new HostConnection<WebviewToHost, HostToWebview, ViewState>(onMessage);
const state: ViewState = { filter: '', dtype: '', scrollTop: 0, selected: 0, ...host.state };

function saveState(): void {
  host.state = state;
}

function onMessage(message: HostToWebview): void {
  if (message.type === 'init') renderCheckpoint(message.summary, message.wholeCheckpoint);
  else if (message.type === 'loadError') renderLoadError(message.message);
}

function renderLoadError(message: string): void {
  app.setAttribute('aria-busy', 'false');
  app.replaceChildren(
    h('div', { class: 'error-panel', role: 'alert' }, h('h2', {}, 'This checkpoint cannot be opened'), h('p', { class: 'error-text' }, message)),
  );
}

function field(label: string, value: string): HTMLElement {
  return h('div', { class: 'field' }, h('span', { class: 'field-label' }, label), h('span', { class: 'field-value' }, value));
}

function renderCheckpoint(summary: SummaryView, wholeCheckpoint: string | undefined): void {
  app.setAttribute('aria-busy', 'false');
  const layout =
    summary.layout === 'indexed'
      ? `sharded · ${summary.index} · ${summary.shards.length} shard${summary.shards.length === 1 ? '' : 's'}`
      : summary.layout === 'folder-of-shards'
        ? `folder of ${summary.shards.length} shards (no index)`
        : 'single file';
  const config = summary.config;
  const modelLine = config
    ? [config.architectures?.join(', '), config.hiddenSize && `hidden ${config.hiddenSize}`, config.numHiddenLayers && `${config.numHiddenLayers} layers`, config.torchDtype, config.quantMethod ? `quantization: ${config.quantMethod}` : 'not quantized (no quantization_config)']
        .filter(Boolean)
        .join(' · ')
    : summary.configError ?? 'no config.json beside the weights';

  const errors = summary.problems.filter((p) => p.severity === 'error');
  const warnings = summary.problems.filter((p) => p.severity === 'warning');
  const dtypeEntries = Object.entries(summary.byDtype).sort((a, b) => b[1].bytes - a[1].bytes);

  const header = h(
    'header',
    { class: 'summary' },
    h('h1', {}, summary.title, h('span', { class: 'subtitle' }, layout)),
    wholeCheckpoint
      ? h(
          'div',
          { class: 'banner', role: 'note' },
          h('span', {}, `This file is one shard of a checkpoint indexed by ${wholeCheckpoint.split('/').pop()}.`),
          button('Open whole checkpoint', () => host.post({ type: 'openWholeCheckpoint' }), 'open-whole'),
        )
      : undefined,
    h(
      'div',
      { class: 'fields' },
      field('Model', modelLine),
      field('Tensors', summary.tensorCount.toLocaleString('en-US')),
      field('Parameters', `${formatCount(summary.totalElements)} (${summary.totalElements.toLocaleString('en-US')})`),
      field('Size', `${formatBytes(summary.totalBytes)} of tensor data`),
      field('Metadata', Object.entries(summary.metadata).map(([k, v]) => `${k}=${v}`).join(', ') || 'none'),
    ),
    h(
      'div',
      { class: 'chips', 'aria-label': 'parameters by dtype' },
      ...dtypeEntries.map(([dtype, totals]) =>
        h('span', { class: 'chip', title: `${totals.tensors} tensors, ${totals.elements.toLocaleString('en-US')} elements, ${formatBytes(totals.bytes)}` }, `${dtype} · ${formatCount(totals.elements)} · ${formatBytes(totals.bytes)}`),
      ),
    ),
    summary.problems.length
      ? h(
          'section',
          { class: 'problems', 'aria-label': 'problems' },
          h('h2', {}, `Problems: ${errors.length} error${errors.length === 1 ? '' : 's'}, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}`),
          h('ul', {}, ...summary.problems.slice(0, 200).map((p) => h('li', { class: p.severity }, p.message))),
        )
      : h('p', { class: 'ok' }, 'No problems found in the headers.'),
    summary.shards.length > 1
      ? h(
          'details',
          { class: 'shards' },
          h('summary', {}, `${summary.shards.length} shards`),
          h(
            'table',
            {},
            h('thead', {}, h('tr', {}, h('th', {}, 'file'), h('th', { class: 'num' }, 'tensors'), h('th', { class: 'num' }, 'size'), h('th', {}, 'status'))),
            h('tbody', {}, ...summary.shards.map((s) => h('tr', {}, h('td', {}, s.name), h('td', { class: 'num' }, String(s.tensors)), h('td', { class: 'num' }, formatBytes(s.fileSize)), h('td', {}, s.error ? `error: ${s.error}` : 'ok')))),
          ),
        )
      : undefined,
  );

  const table = new TensorTable(dtypeEntries.map(([d]) => d), summary.shards.length > 1);
  app.replaceChildren(header, table.element);
  table.refresh();
}

function button(label: string, onClick: () => void, id?: string): HTMLElement {
  const element = h('vscode-button', { id, appearance: 'secondary' }, label);
  element.addEventListener('click', onClick);
  return element;
}

class TensorTable {
  readonly element: HTMLElement;
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly rowsLayer: HTMLElement;
  private readonly status: HTMLElement;
  private total = 0;
  private page: TensorPage | undefined;
  private requestSerial = 0;
  private scheduled = false;

  constructor(dtypes: string[], private readonly showShard: boolean) {
    const filter = h('vscode-text-field', { placeholder: 'Filter by name (or re:regex)   press / to focus', value: state.filter, 'aria-label': 'Filter tensors by name', id: 'tensor-filter' }) as HTMLElement & { value: string };
    filter.addEventListener('input', () => {
      state.filter = filter.value;
      state.selected = 0;
      this.viewport.scrollTop = 0;
      this.refresh();
    });
    const dtypeSelect = h(
      'vscode-dropdown',
      { 'aria-label': 'Filter by dtype', id: 'dtype-filter' },
      h('vscode-option', { value: '' }, 'all dtypes'),
      ...dtypes.map((d) => h('vscode-option', { value: d, selected: state.dtype === d }, d)),
    ) as HTMLElement & { value: string };
    dtypeSelect.addEventListener('change', () => {
      state.dtype = dtypeSelect.value;
      state.selected = 0;
      this.refresh();
    });
    document.addEventListener('keydown', (event) => {
      if (event.key === '/' && document.activeElement?.tagName !== 'VSCODE-TEXT-FIELD') {
        event.preventDefault();
        filter.focus();
      }
    });

    this.status = h('span', { class: 'table-status', role: 'status', 'aria-live': 'polite' });
    const headerRow = this.buildHeaderRow();
    this.spacer = h('div', { class: 'spacer' });
    this.rowsLayer = h('div', { class: 'rows' });
    this.viewport = h('div', { class: 'viewport', tabindex: 0, role: 'grid', 'aria-label': 'Tensors', 'aria-readonly': 'true' }, this.spacer, this.rowsLayer);
    this.viewport.addEventListener('scroll', () => this.schedule());
    this.viewport.addEventListener('keydown', (event) => this.onKey(event));
    new ResizeObserver(() => this.schedule()).observe(this.viewport);
    this.element = h('section', { class: 'tensor-table' }, h('div', { class: 'toolbar' }, filter, dtypeSelect, this.status), headerRow, this.viewport);
    this.headerRow = headerRow;
  }

  private headerRow: HTMLElement;

  private buildHeaderRow(): HTMLElement {
    const columns: [string, SortKey | undefined, string][] = [
      ['name', 'name', 'col-name'],
      ['dtype', 'dtype', 'col-dtype'],
      ['shape', undefined, 'col-shape'],
      ['elements', 'elements', 'col-num'],
      ['bytes', 'bytes', 'col-num'],
    ];
    if (this.showShard) columns.push(['shard', undefined, 'col-shard']);
    return h(
      'div',
      { class: 'row header-row', role: 'row' },
      ...columns.map(([label, key, cls]) => {
        if (!key) return h('div', { class: `cell ${cls}`, role: 'columnheader' }, label);
        const sorted = state.sort?.key === key;
        const cell = h(
          'button',
          { class: `cell ${cls} sortable`, role: 'columnheader', 'aria-sort': sorted ? (state.sort!.descending ? 'descending' : 'ascending') : 'none', title: `Sort by ${label}` },
          `${label}${sorted ? (state.sort!.descending ? ' ▾' : ' ▴') : ''}`,
        );
        cell.addEventListener('click', () => {
          // Numbers sort largest first on the first click: that is what people look for.
          state.sort = state.sort?.key === key ? { key, descending: !state.sort.descending } : { key, descending: key === 'bytes' || key === 'elements' };
          const fresh = this.buildHeaderRow();
          this.headerRow.replaceWith(fresh);
          this.headerRow = fresh;
          this.refresh();
        });
        return cell;
      }),
    );
  }

  private get scale(): number {
    const full = this.total * ROW_HEIGHT;
    return full > MAX_SCROLL_HEIGHT ? full / MAX_SCROLL_HEIGHT : 1;
  }

  private firstVisibleRow(): number {
    return Math.floor((this.viewport.scrollTop * this.scale) / ROW_HEIGHT);
  }

  private visibleRowCount(): number {
    return Math.ceil((this.viewport.clientHeight || 600) / ROW_HEIGHT) + 1;
  }

  refresh(): void {
    this.page = undefined;
    saveState();
    void this.fetch(true);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      state.scrollTop = this.viewport.scrollTop;
      saveState();
      const first = this.firstVisibleRow();
      const count = this.visibleRowCount();
      const page = this.page;
      if (page && first >= page.offset && first + count <= page.offset + page.rows.length) this.render();
      else void this.fetch(false);
    });
  }

  private async fetch(restoreScroll: boolean): Promise<void> {
    const serial = ++this.requestSerial;
    const first = restoreScroll ? Math.floor((state.scrollTop * this.scale) / ROW_HEIGHT) : this.firstVisibleRow();
    const query: TensorQuery = {
      filter: state.filter,
      dtype: state.dtype || undefined,
      offset: Math.max(0, first - OVERSCAN),
      limit: this.visibleRowCount() + 2 * OVERSCAN,
      sort: state.sort,
    };
    const page = await host.request<TensorPage>('tensorPage', query);
    if (serial !== this.requestSerial) return; // a newer request superseded this one
    this.page = page;
    this.total = page.total;
    this.spacer.style.height = `${(this.total * ROW_HEIGHT) / this.scale}px`;
    this.viewport.setAttribute('aria-rowcount', String(this.total));
    this.status.textContent = page.filterError ?? `${page.total.toLocaleString('en-US')} tensor${page.total === 1 ? '' : 's'}`;
    this.status.classList.toggle('error-text', page.filterError !== undefined);
    if (restoreScroll) this.viewport.scrollTop = state.scrollTop;
    this.render();
  }

  private render(): void {
    const page = this.page;
    if (!page) return;
    const first = this.firstVisibleRow();
    const count = this.visibleRowCount();
    const top = this.viewport.scrollTop;
    const rows: HTMLElement[] = [];
    for (let i = first; i < Math.min(first + count, page.offset + page.rows.length, this.total); i++) {
      const row = page.rows[i - page.offset];
      if (!row) continue;
      rows.push(this.renderRow(row, i, top + (i - first) * ROW_HEIGHT - ((top * this.scale) % ROW_HEIGHT)));
    }
    this.rowsLayer.replaceChildren(...rows);
  }

  private renderRow(row: TensorRow, index: number, y: number): HTMLElement {
    const element = h(
      'div',
      { class: `row${index === state.selected ? ' selected' : ''}`, role: 'row', 'aria-rowindex': index + 1, 'aria-selected': index === state.selected ? 'true' : 'false' },
      h('div', { class: 'cell col-name', role: 'gridcell', title: row.name }, row.name),
      h('div', { class: 'cell col-dtype', role: 'gridcell' }, row.dtype),
      h('div', { class: 'cell col-shape', role: 'gridcell' }, formatShape(row.shape)),
      h('div', { class: 'cell col-num', role: 'gridcell' }, row.elements.toLocaleString('en-US')),
      h('div', { class: 'cell col-num', role: 'gridcell' }, formatBytes(row.bytes)),
      this.showShard ? h('div', { class: 'cell col-shard', role: 'gridcell' }, row.shard) : undefined,
    );
    element.style.transform = `translateY(${y}px)`;
    element.addEventListener('click', () => {
      state.selected = index;
      saveState();
      this.render();
    });
    return element;
  }

  private onKey(event: KeyboardEvent): void {
    const page = Math.max(1, this.visibleRowCount() - 1);
    const moves: Record<string, number> = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, Home: -Infinity, End: Infinity };
    const move = moves[event.key];
    if (move === undefined || this.total === 0) return;
    event.preventDefault();
    state.selected = Math.max(0, Math.min(this.total - 1, state.selected + move));
    if (!Number.isFinite(state.selected)) state.selected = move < 0 ? 0 : this.total - 1;
    const first = this.firstVisibleRow();
    const count = this.visibleRowCount() - 1;
    if (state.selected < first || state.selected >= first + count) {
      const target = state.selected < first ? state.selected : state.selected - count + 1;
      this.viewport.scrollTop = (target * ROW_HEIGHT) / this.scale;
    }
    saveState();
    this.schedule();
    this.render();
  }
}

host.post({ type: 'ready' });
