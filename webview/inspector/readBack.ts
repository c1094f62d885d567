/**
 * What the inspector page shows, read back from its DOM for the test build's `rendered` report
 * (src/webviewMessages/testProbes.ts; only testHooks.ts uses this file):
 * the texts, tooltips and cells a user sees, not the data they were drawn from, so that tests compare the
 * screen with their own computation.
 */
import type { ErrorReportView, HeatmapView, PlanSectionView, TensorDetailView } from '../../src/webviewMessages/testProbes';
import type { ShownTensorDetail } from './page';

const text = (element: Element | null | undefined) => element?.textContent ?? '';

/** A grid of `.field`s (label and value spans): label → the value's text. */
export function readFields(container: Element | null | undefined): Record<string, string> {
  if (!container) return {};
  return Object.fromEntries(Array.from(container.querySelectorAll(':scope > .field'), (f) => [text(f.querySelector('.field-label')), text(f.querySelector('.field-value'))]));
}

/** A heatmap drawn by webview/common/charts.ts: its labels, and each filled cell's tooltip and opacity. */
export function readHeatmap(svg: Element | null | undefined): HeatmapView | undefined {
  if (!svg) return undefined;
  // The axis labels: column labels sit above the first row (y < the first cell), row labels to its left.
  const labels = Array.from(svg.querySelectorAll(':scope > text.axis-label'));
  const columns = labels.filter((t) => t.getAttribute('text-anchor') === 'middle').map(text);
  const rows = labels.filter((t) => t.getAttribute('text-anchor') === 'end').map(text);
  const cellRects = Array.from(svg.querySelectorAll(':scope > rect[role="gridcell"]'));
  const cells: { row: string; column: string; text: string; opacity: number }[] = [];
  cellRects.forEach((rect, i) => {
    if (!rect.classList.contains('cell')) return;
    cells.push({ row: rows[Math.floor(i / columns.length)] ?? '', column: columns[i % columns.length] ?? '', text: text(rect.querySelector('title')), opacity: Number(rect.getAttribute('fill-opacity')) });
  });
  const legend = svg.querySelector(':scope > g.legend');
  return { title: svg.getAttribute('aria-label') ?? '', rows, columns, cells, ...(legend ? { legend: { min: text(legend.querySelector('.legend-min')), max: text(legend.querySelector('.legend-max')) } } : {}) };
}

/** The Error tab's report, once one is shown in `body` (#error-body). */
export function readErrorReport(body: Element | null): ErrorReportView | undefined {
  const table = body?.querySelector('table.ranking');
  if (!body || !table) return undefined;
  return {
    summary: text(body.querySelector('#error-summary')),
    suggestion: text(body.querySelector('#error-suggestion')),
    rankingHeader: Array.from(table.querySelectorAll('thead th'), text),
    ranking: Array.from(table.querySelectorAll('tbody tr'), (row) => Array.from(row.querySelectorAll('td'), text)),
    heatmap: readHeatmap(body.querySelector('svg.heatmap')),
    skipped: Array.from(body.querySelectorAll('#error-skipped > li'), text),
    caption: text(body.querySelector('#error-caption')),
  };
}

const tableRows = (table: Element | null | undefined) => (table ? Array.from(table.querySelectorAll('tbody tr'), (row) => Array.from(row.querySelectorAll('td'), text)) : []);

/** The Error tab's plan section (#plan-sensitivity), when one is shown. */
export function readPlanSection(section: Element | null): PlanSectionView | undefined {
  if (!section) return undefined;
  const detail = section.querySelector('#plan-layer-detail');
  const heading = detail?.querySelector('h4');
  return {
    summary: text(section.querySelector('#plan-summary')),
    colourBy: (section.querySelector('#plan-candidate') as (Element & { value?: string }) | null)?.value ?? '',
    heatmap: readHeatmap(section.querySelector('#plan-heatmap svg.heatmap')),
    ...(heading ? { detail: { module: text(heading), rows: tableRows(detail!.querySelector('table')) } } : {}),
    scatter: Array.from(section.querySelectorAll('#plan-scatter circle.point'), (c) => c.getAttribute('aria-label') ?? ''),
    verification: tableRows(section.querySelector('table#plan-verification')),
  };
}

/** The tensor detail as the DOM shows it: the toggle's state, each statistic's text, the histogram's bars. */
export function readTensorDetail(detail: HTMLElement | null, shownDetail: ShownTensorDetail | undefined, histogramAxis: 'linear' | 'log'): TensorDetailView | undefined {
  if (!shownDetail || !detail) return undefined;
  const toggle = detail.querySelector<HTMLElement & { value: string }>('#stats-view');
  const grid = detail.querySelector('#stats-grid');
  const shown = shownDetail.shown;
  const bars = Array.from(detail.querySelectorAll('.chart-box rect.bar > title'), (t) => Number((t.textContent ?? '').split('): ').pop()!.replace(/,/g, '')));
  return {
    tensor: shownDetail.row.name,
    quantized: shownDetail.quantized,
    view: shownDetail.view,
    toggle: toggle
      ? {
          tag: toggle.tagName.toLowerCase(),
          role: toggle.getAttribute('role') ?? '',
          label: toggle.getAttribute('aria-label') ?? '',
          tabIndex: toggle.tabIndex,
          focused: document.activeElement === toggle,
          value: toggle.value,
          options: Array.from(toggle.querySelectorAll('vscode-option'), (o) => o.getAttribute('value') ?? ''),
        }
      : undefined,
    stats:
      shown && grid
        ? {
            view: shown.view,
            fields: readFields(grid),
            values: (({ min, max, mean, std, absMax, count, nan }) => ({ min, max, mean, std, absMax, count, nan }))(shown.result.stats),
            histogramAxis,
            histogramTotal: bars.reduce((a, b) => a + b, 0),
            histogramBars: bars.length,
          }
        : undefined,
  };
}
