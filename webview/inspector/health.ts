/** The Health tab: the scan of scales and weights for NaN, Inf, zeros, negatives, subnormals and outliers. */
import type { HealthView } from '../../src/webviewMessages/inspector';
import { formatBytes } from '../../src/core/util/format';
import { h } from '../common/toolkit';
import type { InspectorPage } from './page';
import { button, withProgress, WORK_SILENCE_MS } from './widgets';

export function healthView(page: InspectorPage): HTMLElement {
  const body = h('div', { class: 'health-body', id: 'health-body' });
  const weights = h('vscode-checkbox', { checked: true, id: 'health-weights' }, 'also stream every weight (all-zero, NaN, Inf)') as HTMLElement & { checked: boolean };
  const run = async () => {
    const report = await withProgress(body, 'Health scan', (options) => page.messages.request('health', { weights: weights.checked }, { ...options, timeoutMs: WORK_SILENCE_MS }));
    if (report) showHealthReport(page, report);
  };
  page.starters.set('health', () => void run());
  body.replaceChildren(h('p', { class: 'muted' }, 'Checks scales (NaN, Inf, zero, negative, subnormal, outliers) and weights (all zeros, NaN, Inf).'));
  return h('section', {}, h('div', { class: 'toolbar' }, button('Run health scan', () => void run(), { id: 'run-health' }), weights), body);
}

/** Shows a report, from the tab's own scan or from the "Run Health Scan" command. */
export function showHealthReport(page: InspectorPage, report: HealthView): void {
  const body = document.getElementById('health-body');
  if (!body) return;
  const errors = report.findings.filter((f) => f.severity === 'error').length;
  const warnings = report.findings.length - errors;
  body.replaceChildren(
    h('p', { role: 'status' }, `${report.scannedTensors} tensors scanned (${formatBytes(report.scannedBytes)} of weights streamed): ${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}. Findings are also in the Problems panel.`),
    report.findings.length ? h('ul', { class: 'problems findings' }, ...report.findings.map((f) => h('li', { class: f.severity }, h('strong', {}, `${f.severity}: `), f.message))) : h('p', { class: 'ok' }, 'No problems found.'),
  );
  page.loaded.add('health');
  page.changed();
}
