/**
 * The Error tab's report, as a list of sections drawn from one `ErrorReportContext`: headline naming what was
 * compared with what, caption, ignore-list suggestion, the weight error per layer (heatmap) and per expert of
 * mixture-of-experts layers (expertGrid.ts), the worst layers, the layers not evaluated, and below them the
 * detail of the layer chosen in any section. For a comparison
 * measured on calibration statistics the output-space error sits next to the weight error, captioned with
 * which method minimises which: round-to-nearest the weight error, GPTQ the output error on the calibration
 * tokens (so a GPTQ result can look worse on the first and be better on the second).
 *
 * To show something more about a report (a sensitivity heatmap, say), write an `ErrorReportSection` and add
 * it to ERROR_REPORT_SECTIONS at the place it should appear; call `context.select(module)` from its cells
 * to open a layer's detail.
 */
import type { ErrorReport, LayerError } from '../../src/core/inspect/error';
import { h } from '../common/toolkit';
import { heatmap, histogramChart } from '../common/charts';
import { field, PROJECTIONS } from './widgets';
import type { PlanView } from '../../src/webviewMessages/inspector';
import { planSection } from './planSection';
import { expertGrid, expertOf } from './expertGrid';

/** What every section gets: the report and the lookups most of them need. */
export interface ErrorReportContext {
  readonly report: ErrorReport;
  /** Layers with metrics (not skipped), in report order. */
  readonly evaluated: readonly LayerError[];
  readonly byModule: ReadonlyMap<string, LayerError>;
  /** Decoder blocks with evaluated layers, ascending: the heatmaps' rows. */
  readonly blocks: readonly number[];
  /** The evaluated layer of a block and projection (`${block}|${projection}`). */
  readonly byCell: ReadonlyMap<string, LayerError>;
  /** Output-space error per module, when the report has it. */
  readonly output: ReadonlyMap<string, NonNullable<ErrorReport['outputError']>['layers'][number]>;
  readonly hasOutput: boolean;
  /** The model's mixed-precision plan, when it has one (planSection.ts). */
  readonly plan?: PlanView | null;
  /** Shows a layer's detail under the report. */
  select(module: string): void;
}

export type ErrorReportSection = (context: ErrorReportContext) => Element | undefined;

/** The last path segment (a checkpoint folder's name), for headlines; the full path goes in the tooltip. */
const baseName = (path: string) => path.split(/[\\/]/).filter(Boolean).at(-1) ?? path;

/** Which number is which, in words the headline and the CLI share. */
export function errorCaption(report: ErrorReport): string {
  const weight = 'Weight error ‖W − Q‖ / ‖W‖ (SQNR): what round-to-nearest minimises.';
  const oe = report.outputError;
  if (!oe) return report.kind === 'comparison' ? `${weight} GPTQ minimises the output error on calibration inputs instead: give calibration statistics with Hessians to see it.` : weight;
  const tokens = oe.tokens !== undefined ? `${oe.tokens.toLocaleString('en-US')} calibration tokens` : 'the calibration inputs';
  const source = oe.dataset ? ` of ${baseName(oe.dataset)}` : '';
  // Measured by the quantize job as it wrote each layer (quantlens.json), not from a statistics file.
  const measured = oe.measuredBy === 'job' ? ', measured by the job' : '';
  return `${weight} Output error ‖(W − Q)X‖ / ‖WX‖ on ${tokens}${source}${measured}: what GPTQ minimises.`;
}

/** The output SQNR of a module as a table cell shows it ('—' when skipped, '' when not measured). */
function outputText(context: ErrorReportContext, module: string, digits: number): string {
  const o = context.output.get(module);
  return o?.sqnrDb !== undefined ? o.sqnrDb.toFixed(digits) : o?.skipped ? '—' : '';
}

const headline: ErrorReportSection = ({ report, evaluated }) => {
  const what = report.kind === 'simulation' ? `Simulated ${report.scheme}` : report.original ? `${report.scheme} vs the original ${baseName(report.original)}` : report.scheme;
  const outputMedian = report.outputError && Number.isFinite(report.outputError.medianSqnrDb) ? `; median output SQNR ${report.outputError.medianSqnrDb.toFixed(2)} dB` : '';
  return h('p', { role: 'status', class: 'scheme', id: 'error-summary', title: report.original ?? '' }, `${what}: median SQNR ${report.medianSqnrDb.toFixed(2)} dB${outputMedian} over ${evaluated.length} layers`);
};

const caption: ErrorReportSection = ({ report }) => h('p', { class: 'error-caption', id: 'error-caption' }, errorCaption(report));

const suggestion: ErrorReportSection = ({ report }) =>
  h('p', { id: 'error-suggestion' }, report.suggestedIgnore.length ? `Suggested ignore list (SQNR far below the median): ${JSON.stringify(report.suggestedIgnore)}` : 'No layer stands out: no ignore list suggested.');

const weightErrorHeatmap: ErrorReportSection = ({ blocks, byCell, select }) => {
  const at = (r: number, c: number) => byCell.get(`${blocks[r]}|${PROJECTIONS[c]}`);
  return heatmap(
    blocks.map((b) => `layer ${b}`),
    PROJECTIONS.map((p) => p.replace('_proj', '')),
    (r, c) => {
      const layer = at(r, c);
      // Darker = worse: plot the error power relative to the signal (10^(-SQNR/10)).
      return layer ? 10 ** (-layer.metrics.sqnrDb / 10) : undefined;
    },
    { title: 'Relative weight error power per layer and projection (darker is worse)', log: true, format: (v) => `SQNR ${(-10 * Math.log10(v)).toFixed(2)} dB`, onSelect: (r, c) => select(at(r, c)!.module) },
  );
};

/** Mixture-of-experts layers, one cell per expert: rows are a block's projections, columns its experts. */
const expertHeatmap: ErrorReportSection = ({ evaluated, select }) => {
  const grid = expertGrid(evaluated);
  if (!grid) return undefined;
  return heatmap(
    grid.rows,
    grid.experts.map((e) => `${e}`),
    (r, c) => {
      const layer = grid.at(r, c);
      return layer ? 10 ** (-layer.metrics.sqnrDb / 10) : undefined;
    },
    { title: 'Relative weight error power per expert (columns) and layer projection (rows; darker is worse)', log: true, format: (v) => `SQNR ${(-10 * Math.log10(v)).toFixed(2)} dB`, cellText: (r, c, v) => `${grid.at(r, c)!.module}: SQNR ${(-10 * Math.log10(v)).toFixed(2)} dB`, onSelect: (r, c) => select(grid.at(r, c)!.module) },
  );
};

const worstLayers: ErrorReportSection = (context) => {
  const { report, byModule, hasOutput, select } = context;
  const worst = report.ranking.slice(0, 12).map((m) => byModule.get(m)!);
  const header = h(
    'tr',
    {},
    h('th', {}, 'layer'),
    h('th', { class: 'num' }, 'SQNR dB'),
    h('th', { class: 'num' }, 'rel. error'),
    h('th', { class: 'num' }, 'max |err|'),
    h('th', { class: 'num' }, 'cosine'),
    ...(hasOutput ? [h('th', { class: 'num', title: '‖(W − Q)X‖ / ‖WX‖ on the calibration tokens, in dB' }, 'output SQNR dB')] : []),
  );
  const rows = worst.map((l) => {
    const row = h(
      'tr',
      { tabindex: 0, class: report.suggestedIgnore.includes(l.module) ? 'warning' : undefined },
      h('td', {}, l.module),
      h('td', { class: 'num' }, l.metrics.sqnrDb.toFixed(2)),
      h('td', { class: 'num' }, l.metrics.relativeFrobenius.toExponential(2)),
      h('td', { class: 'num' }, l.metrics.maxAbsError.toExponential(2)),
      h('td', { class: 'num' }, l.metrics.cosine.toFixed(5)),
      ...(hasOutput ? [h('td', { class: 'num', title: context.output.get(l.module)?.skipped ?? '' }, outputText(context, l.module, 2))] : []),
    );
    row.addEventListener('click', () => select(l.module));
    row.addEventListener('keydown', (event) => (event.key === 'Enter' ? select(l.module) : undefined));
    return row;
  });
  return h('div', {}, h('h3', {}, 'Worst layers'), h('table', { class: 'ranking' }, h('thead', {}, header), h('tbody', {}, ...rows)));
};

const skipped: ErrorReportSection = ({ report }) => {
  const layers = report.layers.filter((l) => l.skipped);
  return layers.length ? h('ul', { class: 'problems', id: 'error-skipped' }, ...layers.map((l) => h('li', { class: 'warning' }, `${l.module}: ${l.skipped}`))) : undefined;
};

/** The report's sections, top to bottom. */
export const ERROR_REPORT_SECTIONS: readonly ErrorReportSection[] = [headline, caption, suggestion, weightErrorHeatmap, expertHeatmap, worstLayers, skipped, planSection];

/** One layer's metrics and error histogram (shown under the report when a layer is chosen). */
function layerDetail(context: ErrorReportContext, layer: LayerError): Element[] {
  const o = context.output.get(layer.module);
  return [
    h('h3', {}, layer.module),
    h(
      'div',
      { class: 'fields stats-grid' },
      field('SQNR', `${layer.metrics.sqnrDb.toFixed(2)} dB`),
      field('rel. error', layer.metrics.relativeFrobenius.toExponential(3)),
      field('max |err|', layer.metrics.maxAbsError.toExponential(3)),
      field('cosine', layer.metrics.cosine.toFixed(6)),
      ...(context.hasOutput ? [field('output SQNR', o?.sqnrDb !== undefined ? `${o.sqnrDb.toFixed(2)} dB` : (o?.skipped ?? '—')), field('output rel. error', o?.relative !== undefined ? o.relative.toExponential(3) : '—')] : []),
    ),
    histogramChart(layer.errorHistogram, { title: `Error w − ŵ of ${layer.module}, log-scaled counts`, logCounts: true }),
  ];
}

export function errorReportView(report: ErrorReport, sections: readonly ErrorReportSection[] = ERROR_REPORT_SECTIONS, plan?: PlanView | null): HTMLElement {
  const evaluated = report.layers.filter((l) => !l.skipped);
  const detail = h('div', { class: 'detail', id: 'error-detail' });
  const context: ErrorReportContext = {
    report,
    evaluated,
    byModule: new Map(evaluated.map((l) => [l.module, l])),
    blocks: [...new Set(evaluated.filter((l) => l.block !== undefined).map((l) => l.block!))].sort((a, b) => a - b),
    // Experts have their own heatmap: in the dense one a block's gate_proj would be whichever expert came last.
    byCell: new Map(evaluated.filter((l) => expertOf(l) === undefined).map((l) => [`${l.block}|${l.projection}`, l])),
    output: new Map((report.outputError?.layers ?? []).map((l) => [l.module, l])),
    hasOutput: report.outputError !== undefined,
    plan,
    select: (module) => {
      const layer = context.byModule.get(module);
      if (layer) detail.replaceChildren(...layerDetail(context, layer));
    },
  };
  return h('div', {}, ...sections.map((section) => section(context)), detail);
}
