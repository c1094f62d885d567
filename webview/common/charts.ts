/**
 * Small SVG charts drawn with DOM APIs (no inline styles or scripts, so the strict CSP holds); colours come
 * from --vscode-charts-* variables through CSS classes.
 */
const SVG = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

export interface HistogramData {
  readonly edges: readonly number[];
  readonly counts: readonly number[];
}

const fmt = (v: number) => (v === 0 ? '0' : Math.abs(v) < 1e-3 || Math.abs(v) >= 1e4 ? v.toExponential(2) : v.toPrecision(3));

/**
 * Bar chart of a histogram. `logCounts` draws heights on a log scale (tails of weight distributions are
 * invisible on a linear one). `xLabel` formats bin edges (e.g. 10^x for log-magnitude histograms).
 */
export function histogramChart(data: HistogramData, options: { title: string; logCounts?: boolean; xLabel?: (edge: number) => string; width?: number; height?: number }): SVGSVGElement {
  const width = options.width ?? 560;
  const height = options.height ?? 160;
  const pad = { left: 8, right: 8, top: 8, bottom: 22 };
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart histogram', role: 'img', 'aria-label': options.title });
  const title = svg('title', {});
  title.textContent = options.title;
  root.append(title);
  const n = data.counts.length;
  if (n === 0) return root;
  const height01 = (c: number) => {
    const max = Math.max(...data.counts);
    if (max === 0 || c === 0) return 0;
    return options.logCounts ? Math.log1p(c) / Math.log1p(max) : c / max;
  };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const barW = plotW / n;
  data.counts.forEach((count, i) => {
    const h = height01(count) * plotH;
    const bar = svg('rect', { x: pad.left + i * barW, y: pad.top + plotH - h, width: Math.max(0.5, barW - 0.5), height: h, class: 'bar' });
    const tip = svg('title', {});
    const label = options.xLabel ?? fmt;
    tip.textContent = `[${label(data.edges[i]!)}, ${label(data.edges[i + 1]!)}): ${count.toLocaleString('en-US')}`;
    bar.append(tip);
    root.append(bar);
  });
  const label = options.xLabel ?? fmt;
  const axis = (x: number, text: string, anchor: string) => {
    const t = svg('text', { x, y: height - 6, 'text-anchor': anchor, class: 'axis-label' });
    t.textContent = text;
    root.append(t);
  };
  axis(pad.left, label(data.edges[0]!), 'start');
  axis(width / 2, label(data.edges[Math.floor(n / 2)]!), 'middle');
  axis(width - pad.right, label(data.edges[n]!), 'end');
  return root;
}

/**
 * Heatmap of one number per (row, column) cell: rows are decoder layers, columns projections. Intensity is
 * the value's rank between the minimum and maximum (log scale when `log`); missing cells stay empty.
 * Cells are focusable and report clicks/Enter through `onSelect`.
 */
export function heatmap(
  rows: readonly string[],
  columns: readonly string[],
  value: (row: number, column: number) => number | undefined,
  options: {
    title: string;
    log?: boolean;
    format?: (v: number) => string;
    /** A cell's tooltip (default: row and column labels and the formatted value). */
    cellText?: (row: number, column: number, v: number) => string;
    onSelect?: (row: number, column: number) => void;
  },
): SVGSVGElement {
  const cell = 18;
  const labelW = 70;
  const headerH = 24;
  const width = labelW + columns.length * cell * 3;
  const legendH = 34;
  const height = headerH + rows.length * cell + legendH;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart heatmap', role: 'grid', 'aria-label': options.title, width, height });
  const values: number[] = [];
  rows.forEach((_, r) => columns.forEach((__, c) => {
    const v = value(r, c);
    if (v !== undefined && Number.isFinite(v) && (!options.log || v > 0)) values.push(options.log ? Math.log10(v) : v);
  }));
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  columns.forEach((name, c) => {
    const t = svg('text', { x: labelW + c * cell * 3 + cell * 1.5, y: headerH - 6, 'text-anchor': 'middle', class: 'axis-label' });
    t.textContent = name;
    root.append(t);
  });
  rows.forEach((name, r) => {
    const t = svg('text', { x: labelW - 6, y: headerH + r * cell + cell * 0.7, 'text-anchor': 'end', class: 'axis-label' });
    t.textContent = name;
    root.append(t);
    columns.forEach((column, c) => {
      const v = value(r, c);
      const rect = svg('rect', { x: labelW + c * cell * 3 + 1, y: headerH + r * cell + 1, width: cell * 3 - 2, height: cell - 2, class: v === undefined ? 'cell-empty' : 'cell', tabindex: v === undefined ? -1 : 0, role: 'gridcell' });
      if (v !== undefined) {
        const x = options.log ? Math.log10(v) : v;
        const t01 = !Number.isFinite(x) ? 0 : hi > lo ? (x - lo) / (hi - lo) : 1;
        rect.setAttribute('fill-opacity', (0.08 + 0.92 * t01).toFixed(3));
        if (!Number.isFinite(v)) rect.setAttribute('class', 'cell cell-bad');
        const tip = svg('title', {});
        tip.textContent = options.cellText ? options.cellText(r, c, v) : `${name} ${column}: ${options.format ? options.format(v) : fmt(v)}`;
        rect.append(tip);
        const select = () => options.onSelect?.(r, c);
        rect.addEventListener('click', select);
        rect.addEventListener('keydown', (event) => {
          if ((event as KeyboardEvent).key === 'Enter' || (event as KeyboardEvent).key === ' ') select();
        });
      }
      root.append(rect);
    });
  });
  if (values.length) root.append(heatmapLegend(lo, hi, options, labelW, headerH + rows.length * cell + 8, Math.max(120, columns.length * cell * 3)));
  return root;
}

/**
 * The colour scale under a heatmap: steps from the lightest to the darkest cell's opacity, labelled with
 * the smallest and largest values plotted (in the values' own units, formatted as the cells' tooltips are).
 */
function heatmapLegend(lo: number, hi: number, options: { log?: boolean; format?: (v: number) => string }, x: number, y: number, width: number): SVGGElement {
  const g = svg('g', { class: 'legend', role: 'img' });
  const steps = 10;
  const stepW = width / steps;
  for (let i = 0; i < steps; i++) {
    const t01 = hi > lo ? i / (steps - 1) : 1;
    g.append(svg('rect', { x: x + i * stepW, y, width: stepW, height: 8, class: 'cell legend-step', 'fill-opacity': (0.08 + 0.92 * t01).toFixed(3) }));
  }
  const value = (v: number) => (options.log ? 10 ** v : v);
  const label = (v: number) => (options.format ? options.format(value(v)) : fmt(value(v)));
  const min = svg('text', { x, y: y + 22, 'text-anchor': 'start', class: 'legend-min' });
  min.textContent = label(lo);
  const max = svg('text', { x: x + width, y: y + 22, 'text-anchor': 'end', class: 'legend-max' });
  max.textContent = label(hi);
  g.setAttribute('aria-label', `colour scale from ${min.textContent} (lightest) to ${max.textContent} (darkest)`);
  g.append(min, max);
  return g;
}

export interface ScatterPoint {
  readonly x: number;
  readonly y: number;
  /** Drawn beside the point. */
  readonly label: string;
  /** The point's tooltip and accessible name. */
  readonly text: string;
  /** A CSS class for the marker (e.g. to set the plan apart from the uniform schemes). */
  readonly kind?: string;
}

/**
 * A scatter plot of labelled points (sizes against errors), both axes linear or log (log axes take positive
 * values only; points with others are left out by the caller). Each point is focusable with its values as its
 * name and tooltip, so the plot can be read with the keyboard and a screen reader.
 */
export function scatterChart(points: readonly ScatterPoint[], options: { title: string; xLabel: string; yLabel: string; logX?: boolean; logY?: boolean; formatX?: (v: number) => string; formatY?: (v: number) => string }): SVGSVGElement {
  const width = 420;
  const height = 240;
  const left = 64;
  const right = 90;
  const top = 12;
  const bottom = 36;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart scatter', role: 'group', 'aria-label': options.title, width, height });
  const tx = (v: number) => (options.logX ? Math.log10(v) : v);
  const ty = (v: number) => (options.logY ? Math.log10(v) : v);
  const xs = points.map((p) => tx(p.x));
  const ys = points.map((p) => ty(p.y));
  const span = (values: number[]) => {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const pad = hi > lo ? (hi - lo) * 0.08 : 0.5;
    return [lo - pad, hi + pad] as const;
  };
  const [x0, x1] = span(xs);
  const [y0, y1] = span(ys);
  const px = (v: number) => left + ((v - x0) / (x1 - x0)) * (width - left - right);
  const py = (v: number) => height - bottom - ((v - y0) / (y1 - y0)) * (height - top - bottom);
  root.append(svg('line', { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: 'axis' }));
  root.append(svg('line', { x1: left, y1: top, x2: left, y2: height - bottom, class: 'axis' }));
  const axisText = (x: number, y: number, anchor: string, text: string, cls = 'axis-label') => {
    const t = svg('text', { x, y, 'text-anchor': anchor, class: cls });
    t.textContent = text;
    root.append(t);
  };
  const fx = options.formatX ?? fmt;
  const fy = options.formatY ?? fmt;
  const back = (v: number, log?: boolean) => (log ? 10 ** v : v);
  axisText(left, height - bottom + 14, 'start', fx(back(x0 + (x1 - x0) * 0.0, options.logX)), 'axis-label scatter-x-min');
  axisText(width - right, height - bottom + 14, 'end', fx(back(x1, options.logX)), 'axis-label scatter-x-max');
  axisText(left - 4, height - bottom, 'end', fy(back(y0, options.logY)), 'axis-label scatter-y-min');
  axisText(left - 4, top + 8, 'end', fy(back(y1, options.logY)), 'axis-label scatter-y-max');
  axisText((left + width - right) / 2, height - 4, 'middle', options.xLabel);
  const yTitle = svg('text', { x: 12, y: (top + height - bottom) / 2, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 12 ${(top + height - bottom) / 2})` });
  yTitle.textContent = options.yLabel;
  root.append(yTitle);
  points.forEach((p, i) => {
    const cx = px(xs[i]!);
    const cy = py(ys[i]!);
    const marker = svg('circle', { cx, cy, r: 5, class: `point ${p.kind ?? ''}`.trim(), tabindex: 0, role: 'img', 'aria-label': p.text });
    const tip = svg('title', {});
    tip.textContent = p.text;
    marker.append(tip);
    root.append(marker);
    const label = svg('text', { x: cx + 8, y: cy + 4, class: 'point-label' });
    label.textContent = p.label;
    root.append(label);
  });
  return root;
}
