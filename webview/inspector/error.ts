/**
 * The Error tab: how far each layer is from full precision. On a float checkpoint it simulates a scheme
 * (round-to-nearest as compressed-tensors computes it); on a quantized one it compares with the original the
 * user picks. The report itself is drawn section by section in errorReport.ts, where new views of it go.
 */
import type { SimulationName } from '../../src/core/inspect/error';
import type { ErrorParams, SummaryView } from '../../src/webviewMessages/inspector';
import { h } from '../common/toolkit';
import { ERROR_REPORT_SECTIONS, errorReportView } from './errorReport';
import { planSection } from './planSection';
import type { InspectorPage } from './page';
import { button, dropdown, withProgress } from './widgets';

const SIMULATION_LABELS: Record<SimulationName, string> = {
  'fp8-tensor': 'FP8 per tensor',
  'int8-channel': 'INT8 per channel',
  'int4-g128': 'INT4 group 128 (symmetric)',
  'int4-g128-asym': 'INT4 group 128 (asymmetric)',
};

export function errorView(page: InspectorPage, summary: SummaryView): HTMLElement {
  const body = h('div', { class: 'error-body', id: 'error-body' });
  const quantized = summary.layerCounts.quantized > 0;
  const run = async (params: ErrorParams) => {
    const label = quantized ? 'Comparing with the original' : `Simulating ${SIMULATION_LABELS[page.saved.simulation]}`;
    // No timeout: the host may first wait for the user to pick the original and the statistics file.
    const report = await withProgress(body, label, (options) => page.messages.request('errors', params, { ...options, timeoutMs: Infinity }));
    if (!report) return;
    page.errorReport = report;
    body.replaceChildren(errorReportView(report, ERROR_REPORT_SECTIONS, page.plan));
    page.loaded.add('error');
    page.changed();
  };
  const start = (params?: ErrorParams) => void run(params ?? (quantized ? { original: 'pick' } : { simulation: page.saved.simulation }));
  page.starters.set('error', start);
  const controls = quantized
    ? [button('Compare with Original…', () => start(), { id: 'compare-original' }), h('span', { class: 'muted' }, 'Dequantizes each layer and measures it against the unquantized checkpoint you choose.')]
    : [
        dropdown('simulation', 'Scheme to simulate', Object.entries(SIMULATION_LABELS) as [string, string][], page.saved.simulation, (v) => {
          page.saved.simulation = v as SimulationName;
          page.save();
        }),
        button('Simulate', () => start(), { id: 'simulate' }),
        h('span', { class: 'muted' }, 'Round-to-nearest, exactly as compressed-tensors computes it, on every linear layer.'),
      ];
  const intro = h('p', { class: 'muted' }, quantized ? 'How far is each quantized layer from the original?' : 'Which layers would hurt accuracy? Simulate a scheme before running any job, or plan mixed precision.');
  // The model's plan shows at once (before any report; a report draws it as one of its sections).
  const showPlan = () => {
    if (page.errorReport) body.replaceChildren(errorReportView(page.errorReport, ERROR_REPORT_SECTIONS, page.plan));
    else body.replaceChildren(...[intro, planSection({ plan: page.plan })].filter((e): e is Element => e !== undefined));
    page.changed();
  };
  page.onPlan = (plan) => {
    page.plan = plan;
    showPlan();
  };
  body.replaceChildren(intro);
  page.messages.request('plan', {}).then(
    (plan) => {
      // A plan pushed by a finished job meanwhile is newer than this answer.
      if (page.plan === undefined) page.onPlan?.(plan);
    },
    (error: unknown) => {
      page.plan = null;
      body.append(h('p', { class: 'error-text', role: 'alert', id: 'plan-error' }, `The plan file could not be read: ${error instanceof Error ? error.message : String(error)}`));
      page.changed();
    },
  );
  return h('section', {}, h('div', { class: 'toolbar' }, ...controls), body);
}
