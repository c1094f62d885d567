/**
 * A virtualized, keyboard-navigable table for very long lists (100,000+ rows): only visible rows exist in
 * the DOM, pages are fetched from the host on demand, and scroll positions past the browser's maximum
 * element height are scaled.
 */
import { h } from './toolkit';
import { offsetKeepingRowInView } from './rowInView';
import './virtualTable.css';

export interface Column<Row> {
  readonly label: string;
  readonly className: string;
  /** Sorting key sent to the host, if the column sorts. */
  readonly sortKey?: string;
  render(row: Row): string | Node;
  title?(row: Row): string;
}

export interface Page<Row> {
  readonly total: number;
  readonly offset: number;
  readonly rows: readonly Row[];
  readonly filterError?: string;
}

export interface TableState {
  scrollTop: number;
  selected: number;
  sort?: { key: string; descending: boolean };
}

const ROW_HEIGHT = 22;
const OVERSCAN = 30;
/** Browsers cap element heights (~33M px in Chromium); beyond this the scroll position is scaled. */
const MAX_SCROLL_HEIGHT = 8_000_000;

export class VirtualTable<Row> {
  readonly element: HTMLElement;
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly rowsLayer: HTMLElement;
  private headerRow: HTMLElement;
  private total = 0;
  private page: Page<Row> | undefined;
  private serial = 0;
  private scheduled = false;
  /** The viewport's height at the last resize that left it visible (0 before the first). */
  private viewportHeight = 0;

  constructor(
    label: string,
    private readonly columns: readonly Column<Row>[],
    private readonly fetchPage: (offset: number, limit: number, sort: TableState['sort']) => Promise<Page<Row>>,
    private readonly state: TableState,
    private readonly callbacks: {
      onStateChange(): void;
      onSelect?(row: Row, index: number): void;
      onStatus?(page: Page<Row>): void;
      /** A page could not be fetched (the host failed or did not answer): the table keeps its rows. */
      onError?(error: unknown): void;
      onRender?(): void;
    },
  ) {
    this.headerRow = this.buildHeader();
    this.spacer = h('div', { class: 'spacer' });
    this.rowsLayer = h('div', { class: 'rows' });
    this.viewport = h('div', { class: 'viewport', tabindex: 0, role: 'grid', 'aria-label': label, 'aria-readonly': 'true' }, this.spacer, this.rowsLayer);
    this.viewport.addEventListener('scroll', () => this.schedule());
    this.viewport.addEventListener('keydown', (event) => this.onKey(event));
    new ResizeObserver(() => this.onResize()).observe(this.viewport);
    this.element = h('div', { class: 'virtual-table' }, this.headerRow, this.viewport);
  }

  private buildHeader(): HTMLElement {
    return h(
      'div',
      { class: 'row header-row', role: 'row' },
      ...this.columns.map((column) => {
        if (!column.sortKey) return h('div', { class: `cell ${column.className}`, role: 'columnheader' }, column.label);
        const key = column.sortKey;
        const sorted = this.state.sort?.key === key;
        const cell = h(
          'button',
          { class: `cell ${column.className} sortable`, role: 'columnheader', 'aria-sort': sorted ? (this.state.sort!.descending ? 'descending' : 'ascending') : 'none', title: `Sort by ${column.label}` },
          `${column.label}${sorted ? (this.state.sort!.descending ? ' ▾' : ' ▴') : ''}`,
        );
        cell.addEventListener('click', () => {
          this.state.sort = this.state.sort?.key === key ? { key, descending: !this.state.sort.descending } : { key, descending: column.className.includes('num') };
          const fresh = this.buildHeader();
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

  /** Re-queries from the host (after a filter or sort change, or on first show); resolves once rendered. */
  refresh(restoreScroll = false): Promise<void> {
    this.page = undefined;
    if (!restoreScroll) {
      this.state.scrollTop = 0;
      this.viewport.scrollTop = 0;
    }
    this.callbacks.onStateChange();
    return this.fetch(restoreScroll);
  }

  /** Selects row `target` (or the last) and scrolls it into view. */
  scrollToRow(target: number | 'end'): void {
    if (this.total === 0) return;
    const index = target === 'end' ? this.total - 1 : Math.max(0, Math.min(this.total - 1, Math.floor(target)));
    this.state.selected = index;
    const count = Math.max(1, this.visibleRowCount() - 1);
    const first = Math.max(0, index - count + 1);
    this.viewport.scrollTop = target === 'end' ? this.viewport.scrollHeight : (first * ROW_HEIGHT) / this.scale;
    this.callbacks.onStateChange();
    this.schedule();
  }

  /** What the table holds and what is in the DOM (bounded by the viewport, whatever the row count). */
  snapshot(): { total: number; domRows: number; first?: { index: number; text: string }; last?: { index: number; text: string }; rows: { index: number; cells: string[] }[] } {
    const rows = Array.from(this.rowsLayer.children, (element) => ({ index: Number(element.getAttribute('aria-rowindex')) - 1, cells: Array.from(element.children, (cell) => cell.textContent ?? '') }));
    const describe = (row: (typeof rows)[number] | undefined) => (row ? { index: row.index, text: row.cells[0] ?? '' } : undefined);
    return { total: this.total, domRows: rows.length, first: describe(rows[0]), last: describe(rows[rows.length - 1]), rows };
  }

  focus(): void {
    this.viewport.focus();
  }

  /**
   * The viewport changed height (the detail below grew with statistics, the window was resized): the browser
   * keeps scrollTop, so a selected row near the bottom would drop out of view; scroll just enough to keep it.
   */
  private onResize(): void {
    const height = this.viewport.clientHeight;
    if (height > 0) {
      const before = this.viewportHeight;
      this.viewportHeight = height;
      const offset = before > 0 && this.total > 0 && this.state.selected < this.total ? offsetKeepingRowInView({ row: this.state.selected, rowHeight: ROW_HEIGHT, offset: this.viewport.scrollTop * this.scale, before, after: height }) : undefined;
      if (offset !== undefined) this.viewport.scrollTop = offset / this.scale;
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.state.scrollTop = this.viewport.scrollTop;
      this.callbacks.onStateChange();
      const first = this.firstVisibleRow();
      const page = this.page;
      if (page && first >= page.offset && first + this.visibleRowCount() <= page.offset + page.rows.length) this.render();
      else void this.fetch(false);
    });
  }

  /** The latest page request: a superseded one settles when this one has rendered. */
  private latest: Promise<void> = Promise.resolve();

  private fetch(restoreScroll: boolean): Promise<void> {
    const request = this.load(restoreScroll);
    this.latest = request;
    return request;
  }

  private async load(restoreScroll: boolean): Promise<void> {
    const serial = ++this.serial;
    const first = restoreScroll ? Math.floor((this.state.scrollTop * this.scale) / ROW_HEIGHT) : this.firstVisibleRow();
    let page: Page<Row>;
    try {
      page = await this.fetchPage(Math.max(0, first - OVERSCAN), this.visibleRowCount() + 2 * OVERSCAN, this.state.sort);
    } catch (error) {
      if (serial === this.serial) this.callbacks.onError?.(error);
      return;
    }
    // Superseded by a newer request (refresh() resets the scroll, whose event asks again): settle with that
    // one, so that `await refresh()` means the new rows are there.
    if (serial !== this.serial) return this.latest;
    this.page = page;
    this.total = page.total;
    this.spacer.style.height = `${(this.total * ROW_HEIGHT) / this.scale}px`;
    this.viewport.setAttribute('aria-rowcount', String(this.total));
    this.callbacks.onStatus?.(page);
    if (restoreScroll) this.viewport.scrollTop = this.state.scrollTop;
    this.render();
  }

  private render(): void {
    const page = this.page;
    if (!page) return;
    const first = this.firstVisibleRow();
    const top = this.viewport.scrollTop;
    const rows: HTMLElement[] = [];
    const end = Math.min(first + this.visibleRowCount(), page.offset + page.rows.length, this.total);
    for (let i = first; i < end; i++) {
      const row = page.rows[i - page.offset];
      if (row === undefined) continue;
      rows.push(this.renderRow(row, i, top + (i - first) * ROW_HEIGHT - ((top * this.scale) % ROW_HEIGHT)));
    }
    this.rowsLayer.replaceChildren(...rows);
    this.callbacks.onRender?.();
  }

  private renderRow(row: Row, index: number, y: number): HTMLElement {
    const selected = index === this.state.selected;
    const element = h(
      'div',
      { class: `row${selected ? ' selected' : ''}`, role: 'row', 'aria-rowindex': index + 1, 'aria-selected': selected ? 'true' : 'false' },
      ...this.columns.map((c) => h('div', { class: `cell ${c.className}`, role: 'gridcell', title: c.title?.(row) }, c.render(row))),
    );
    element.style.transform = `translateY(${y}px)`;
    element.addEventListener('click', () => this.select(index, row));
    return element;
  }

  private select(index: number, row?: Row): void {
    this.state.selected = index;
    this.callbacks.onStateChange();
    const target = row ?? this.page?.rows[index - (this.page?.offset ?? 0)];
    if (target !== undefined) this.callbacks.onSelect?.(target, index);
    this.render();
  }

  private onKey(event: KeyboardEvent): void {
    const pageSize = Math.max(1, this.visibleRowCount() - 1);
    if (event.key === 'Enter') {
      this.select(this.state.selected);
      return;
    }
    const moves: Record<string, number> = { ArrowDown: 1, ArrowUp: -1, PageDown: pageSize, PageUp: -pageSize, Home: -Infinity, End: Infinity };
    const move = moves[event.key];
    if (move === undefined || this.total === 0) return;
    event.preventDefault();
    let next = this.state.selected + move;
    if (!Number.isFinite(next)) next = move < 0 ? 0 : this.total - 1;
    this.state.selected = Math.max(0, Math.min(this.total - 1, next));
    const first = this.firstVisibleRow();
    const count = this.visibleRowCount() - 1;
    if (this.state.selected < first || this.state.selected >= first + count) {
      const target = this.state.selected < first ? this.state.selected : this.state.selected - count + 1;
      this.viewport.scrollTop = (target * ROW_HEIGHT) / this.scale;
    }
    this.callbacks.onStateChange();
    this.schedule();
    this.render();
  }
}
