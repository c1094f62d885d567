/**
 * The Error tab's mixed-precision plan (a section of errorReport.ts's list, and shown on its own before any
 * report): a heatmap of each linear layer's sensitivity — the KL its quantization alone costs on the
 * calibration tokens, for the scheme the plan chose or for one candidate — layers × projections, one cell
 * per linear, with its legend; a cell (click, Enter or Space) opens the layer's detail: every candidate's KL,
 * proxy and bytes. With a verified plan, a size-vs-KL plot: the plan and each uniform scheme as points, and
 * their table.
 */
import type { Measure, PlanView } from '../../src/webviewMessages/inspector';
import { h } from '../common/toolkit';
import { heatmap, scatterChart } from '../common/charts';
import { PROJECTIONS, dropdown } from './widgets';

/** What the section needs of the report's context (it is drawn without a report too). */
export interface PlanSectionContext {
  readonly plan?: PlanView | null;
  /** Shows the error report's detail of a layer, when a report is drawn. */
  select?(module: string): void;
}

const CHOSEN = 'chosen';
/** A measure as the tables show it; null is one that is not a finite number (PlanView's Measure). */
const measureText = (v: Measure | undefined, format: (v: number) => string) => (v === undefined ? '—' : v === null ? 'not finite' : format(v));
const exponential = (v: number) => v.toExponential(3);
const perplexityText = (v: Measure) => measureText(v, (x) => x.toFixed(3));
const kl = (v: Measure) => `KL ${measureText(v, exponential)} nats`;
const baseName = (path: string) => path.split(/[\\/]/).filter(Boolean).at(-1) ?? path;
const bytesText = (b: number) => b.toLocaleString('en-US');

type PlanLayer = PlanView['layers'][number];

function klOf(layer: PlanLayer, candidate: string): { scheme: string; kl?: Measure; unservable?: string } {
  const scheme = candidate === CHOSEN ? layer.chosen : candidate;
  const m = layer.measurements.find((x) => x.candidate === scheme);
  return { scheme, ...(m?.kl !== undefined ? { kl: m.kl } : {}), ...(m?.unservable ? { unservable: m.unservable } : {}) };
}

function layerDetail(layer: PlanLayer): Element[] {
  const rows = layer.measurements.map((m) =>
    h(
      'tr',
      { class: m.candidate === layer.chosen ? 'chosen' : undefined },
      h('td', {}, m.candidate === layer.chosen ? `${m.candidate} (planned)` : m.candidate),
      h('td', { class: 'num' }, measureText(m.kl, exponential)),
      h('td', { class: 'num' }, measureText(m.proxy, exponential)),
      h('td', { class: 'num' }, bytesText(m.bytes)),
      h('td', {}, m.unservable ?? ''),
    ),
  );
  return [
    h('h4', {}, layer.module),
    h('table', { class: 'ranking', id: 'plan-layer-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'candidate'), h('th', { class: 'num' }, 'KL (nats)'), h('th', { class: 'num' }, 'proxy tr(E H Eᵀ)'), h('th', { class: 'num' }, 'bytes'), h('th', {}, ''))), h('tbody', {}, ...rows)),
  ];
}

function sensitivityHeatmap(plan: PlanView, candidate: string, onSelect: (layer: PlanLayer) => void): Element {
  const blocks = [...new Set(plan.layers.map((l) => l.block))].sort((a, b) => a - b);
  const byCell = new Map(plan.layers.map((l) => [`${l.block}|${l.projection}`, l]));
  const at = (r: number, c: number) => byCell.get(`${blocks[r]}|${PROJECTIONS[c]}`);
  const what = candidate === CHOSEN ? 'the planned scheme' : candidate;
  return h(
    'div',
    { class: 'heatmap-box' },
    heatmap(
      blocks.map((b) => `layer ${b}`),
      PROJECTIONS.map((p) => p.replace('_proj', '')),
      (r, c) => {
        const layer = at(r, c);
        // A KL that is not finite has no colour on the log scale: the cell stays blank.
        return layer ? (klOf(layer, candidate).kl ?? undefined) : undefined;
      },
      {
        title: `KL of quantizing each layer alone with ${what} (darker is more sensitive)`,
        log: true,
        format: kl,
        cellText: (r, c, v) => {
          const layer = at(r, c)!;
          return `${layer.module}: ${klOf(layer, candidate).scheme} ${kl(v)}`;
        },
        onSelect: (r, c) => onSelect(at(r, c)!),
      },
    ),
  );
}

function verificationView(plan: PlanView): Element[] {
  const v = plan.verification;
  if (!v) return [h('p', { class: 'muted', id: 'plan-verification' }, 'Not verified: run the plan with "Plan and verify" to quantize it and each candidate and measure KL and perplexity against size.')];
  // A point whose KL is not a finite number has no place on the log axis (the table still lists it).
  const quantized = v.points.filter((p): p is typeof p & { kl: number } => p.kl !== null && p.kl > 0);
  const float = v.points.find((p) => p.kind === 'float');
  const pointText = (p: (typeof v.points)[number]) => `${p.label}: ${bytesText(p.fileBytes)} bytes on disk, ${p.bitsPerWeight.toFixed(3)} bits per weight, ${kl(p.kl)}, perplexity ${perplexityText(p.perplexity)}`;
  const chart = quantized.length
    ? scatterChart(
        quantized.map((p) => ({ x: p.fileBytes, y: p.kl, label: p.label, text: pointText(p), kind: p.kind })),
        { title: 'Size on disk against KL on held-out text: the plan and each scheme alone', xLabel: 'bytes on disk', yLabel: 'KL (nats)', logY: true, formatX: (b) => `${(b / 2 ** 20).toFixed(2)} MiB`, formatY: (y) => y.toExponential(1) },
      )
    : h('p', { class: 'muted' }, 'Every verified point has KL 0.');
  const rows = v.points.map((p) =>
    h(
      'tr',
      { class: p.kind === 'plan' ? 'chosen' : undefined },
      h('td', {}, p.label),
      h('td', { class: 'num' }, bytesText(p.fileBytes)),
      h('td', { class: 'num' }, p.bitsPerWeight.toFixed(3)),
      h('td', { class: 'num' }, measureText(p.kl, exponential)),
      h('td', { class: 'num' }, perplexityText(p.perplexity)),
    ),
  );
  return [
    h('h4', {}, 'Verified'),
    h('p', { class: 'muted' }, `Quantized for real and measured on ${v.evalSamples} × ${v.seqLen} tokens of ${baseName(v.evalDataset)}${v.heldOut ? ' held out from the calibration' : ''}${float ? `; the float model: ${bytesText(float.fileBytes)} bytes, perplexity ${perplexityText(float.perplexity)}` : ''}.`),
    h('div', { id: 'plan-scatter' }, chart),
    h('table', { class: 'ranking', id: 'plan-verification' }, h('thead', {}, h('tr', {}, h('th', {}, 'scheme'), h('th', { class: 'num' }, 'bytes on disk'), h('th', { class: 'num' }, 'bits/weight'), h('th', { class: 'num' }, 'KL (nats)'), h('th', { class: 'num' }, 'perplexity'))), h('tbody', {}, ...rows)),
  ];
}

/** The plan section, or nothing when the model has no plan. */
export function planSection(context: PlanSectionContext): Element | undefined {
  const plan = context.plan;
  if (!plan) return undefined;
  const detail = h('div', { class: 'detail', id: 'plan-layer-detail' });
  const mapBox = h('div', { id: 'plan-heatmap' });
  const select = (layer: PlanLayer) => {
    detail.replaceChildren(...layerDetail(layer));
    context.select?.(layer.module);
  };
  const draw = (candidate: string) => mapBox.replaceChildren(sensitivityHeatmap(plan, candidate, select));
  draw(CHOSEN);
  const counts = new Map<string, number>();
  for (const l of plan.layers) counts.set(l.chosen, (counts.get(l.chosen) ?? 0) + 1);
  return h(
    'section',
    { class: 'plan-section', id: 'plan-sensitivity', 'aria-label': 'Mixed-precision plan' },
    h('h3', {}, 'Mixed-precision plan: sensitivity per layer'),
    h('p', { id: 'plan-summary', title: plan.planFile }, `${baseName(plan.recipe)}: ${[...counts].map(([s, n]) => `${n} × ${s}`).join(', ')}; ${bytesText(plan.bytes)} bytes = ${plan.bitsPerWeight.toFixed(3)} bits per weight (budget ${bytesText(plan.budgetBytes)} bytes). KL measured on ${plan.tokens.toLocaleString('en-US')} tokens of ${baseName(plan.dataset)}.`),
    h('div', { class: 'toolbar' }, dropdown('plan-candidate', 'Colour by the KL of', [[CHOSEN, 'the planned scheme'], ...plan.candidates.map((c): [string, string] => [c, c])], CHOSEN, draw)),
    mapBox,
    detail,
    ...verificationView(plan),
  );
}
