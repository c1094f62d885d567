/**
 * The Error tab's report: headline naming what was compared with what, the weight error per layer (heatmap,
 * worst layers, a layer's error histogram) and — for a comparison measured on calibration statistics — the
 * output-space error next to it, captioned with which method minimises which: round-to-nearest the weight
 * error, GPTQ the output error on the calibration tokens (so a GPTQ result can look worse on the first and be
 * better on the second).
 */
import type { ErrorReport } from '../../src/core/inspect/error';
import { h } from '../common/toolkit';
import { heatmap, histogramChart } from '../common/charts';

type Field = (label: string, value: string | Node) => HTMLElement;

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

export function errorReportView(report: ErrorReport, field: Field, projections: readonly string[]): HTMLElement {
  const evaluated = report.layers.filter((l) => !l.skipped);
  const byModule = new Map(evaluated.map((l) => [l.module, l]));
  const output = new Map((report.outputError?.layers ?? []).map((l) => [l.module, l]));
  const hasOutput = report.outputError !== undefined;
  const blocks = [...new Set(evaluated.filter((l) => l.block !== undefined).map((l) => l.block!))].sort((a, b) => a - b);
  const byKey = new Map(evaluated.map((l) => [`${l.block}|${l.projection}`, l]));
  const detail = h('div', { class: 'detail', id: 'error-detail' });
  const outputText = (module: string, digits: number) => {
    const o = output.get(module);
    return o?.sqnrDb !== undefined ? o.sqnrDb.toFixed(digits) : o?.skipped ? '—' : '';
  };
  const select = (module: string) => {
    const layer = byModule.get(module);
    if (!layer) return;
    const o = output.get(module);
    detail.replaceChildren(
      h('h3', {}, layer.module),
      h(
        'div',
        { class: 'fields stats-grid' },
        field('SQNR', `${layer.metrics.sqnrDb.toFixed(2)} dB`),
        field('rel. error', layer.metrics.relativeFrobenius.toExponential(3)),
        field('max |err|', layer.metrics.maxAbsError.toExponential(3)),
        field('cosine', layer.metrics.cosine.toFixed(6)),
        ...(hasOutput ? [field('output SQNR', o?.sqnrDb !== undefined ? `${o.sqnrDb.toFixed(2)} dB` : (o?.skipped ?? '—')), field('output rel. error', o?.relative !== undefined ? o.relative.toExponential(3) : '—')] : []),
      ),
      histogramChart(layer.errorHistogram, { title: `Error w − ŵ of ${layer.module}, log-scaled counts`, logCounts: true }),
    );
  };
  const worst = report.ranking.slice(0, 12).map((m) => byModule.get(m)!);
  const skippedLayers = report.layers.filter((l) => l.skipped);
  const what = report.kind === 'simulation' ? `Simulated ${report.scheme}` : report.original ? `${report.scheme} vs the original ${baseName(report.original)}` : report.scheme;
  const outputMedian = report.outputError && Number.isFinite(report.outputError.medianSqnrDb) ? `; median output SQNR ${report.outputError.medianSqnrDb.toFixed(2)} dB` : '';
  return h(
    'div',
    {},
    h('p', { role: 'status', class: 'scheme', id: 'error-summary', title: report.original ?? '' }, `${what}: median SQNR ${report.medianSqnrDb.toFixed(2)} dB${outputMedian} over ${evaluated.length} layers`),
    h('p', { class: 'error-caption', id: 'error-caption' }, errorCaption(report)),
    h('p', { id: 'error-suggestion' }, report.suggestedIgnore.length ? `Suggested ignore list (SQNR far below the median): ${JSON.stringify(report.suggestedIgnore)}` : 'No layer stands out: no ignore list suggested.'),
    heatmap(
      blocks.map((b) => `layer ${b}`),
      projections.map((p) => p.replace('_proj', '')),
      (r, c) => {
        const layer = byKey.get(`${blocks[r]}|${projections[c]}`);
        // Darker = worse: plot the error power relative to the signal (10^(-SQNR/10)).
        return layer ? 10 ** (-layer.metrics.sqnrDb / 10) : undefined;
      },
      { title: 'Relative weight error power per layer and projection (darker is worse)', log: true, format: (v) => `SQNR ${(-10 * Math.log10(v)).toFixed(2)} dB`, onSelect: (r, c) => select(byKey.get(`${blocks[r]}|${projections[c]}`)!.module) },
    ),
    h('h3', {}, 'Worst layers'),
    h(
      'table',
      { class: 'ranking' },
      h(
        'thead',
        {},
        h('tr', {}, h('th', {}, 'layer'), h('th', { class: 'num' }, 'SQNR dB'), h('th', { class: 'num' }, 'rel. error'), h('th', { class: 'num' }, 'max |err|'), h('th', { class: 'num' }, 'cosine'), ...(hasOutput ? [h('th', { class: 'num', title: '‖(W − Q)X‖ / ‖WX‖ on the calibration tokens, in dB' }, 'output SQNR dB')] : [])),
      ),
      h(
        'tbody',
        {},
        ...worst.map((l) => {
          const row = h(
            'tr',
            { tabindex: 0, class: report.suggestedIgnore.includes(l.module) ? 'warning' : undefined },
            h('td', {}, l.module),
            h('td', { class: 'num' }, l.metrics.sqnrDb.toFixed(2)),
            h('td', { class: 'num' }, l.metrics.relativeFrobenius.toExponential(2)),
            h('td', { class: 'num' }, l.metrics.maxAbsError.toExponential(2)),
            h('td', { class: 'num' }, l.metrics.cosine.toFixed(5)),
            ...(hasOutput ? [h('td', { class: 'num', title: output.get(l.module)?.skipped ?? '' }, outputText(l.module, 2))] : []),
          );
          row.addEventListener('click', () => select(l.module));
          row.addEventListener('keydown', (event) => (event.key === 'Enter' ? select(l.module) : undefined));
          return row;
        }),
      ),
    ),
    skippedLayers.length ? h('ul', { class: 'problems', id: 'error-skipped' }, ...skippedLayers.map((l) => h('li', { class: 'warning' }, `${l.module}: ${l.skipped}`))) : undefined,
    detail,
  );
}
