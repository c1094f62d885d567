/**
 * Checkpoint inspector webview: wiring only. The host owns the files; this page asks for summaries and pages
 * (src/webviewMessages/inspector.ts) through one typed endpoint, and each tab is its own view over the one
 * page state (page.ts): overview, layers, tensors, scales, error, health.
 */
import '../common/base.css';
import './inspector.css';
import type { InspectorMessages, InspectorTab, SummaryView } from '../../src/webviewMessages/inspector';
import { connectToHost } from '../common/vscodeApi';
import { h, registerToolkit } from '../common/toolkit';
import { createPage, InspectorPage, SavedState, showTab } from './page';
import { layoutText, overviewView } from './overview';
import { layersView } from './layers';
import { tensorsView } from './tensors';
import { scalesView } from './scales';
import { errorView } from './error';
import { healthView, showHealthReport } from './health';
import { installTestHooks } from './testHooks';

registerToolkit();
const app = document.getElementById('app')!;
const connection = connectToHost<InspectorMessages, SavedState>((message) => {
  switch (message.type) {
    case 'init':
      render(page, message.summary, message.wholeCheckpoint);
      return;
    case 'loadError':
      app.setAttribute('aria-busy', 'false');
      app.replaceChildren(h('div', { class: 'error-panel', role: 'alert' }, h('h2', {}, 'This checkpoint cannot be opened'), h('p', { class: 'error-text' }, message.message)));
      return;
    case 'show':
      showTab(page, message.tab, message.start ?? false, message.params);
      return;
    case 'healthReport':
      showHealthReport(page, message.report);
      return;
    case 'plan':
      page.plan = message.plan;
      page.onPlan?.(message.plan);
      return;
  }
});
const page = createPage(connection);
if (__QUANTLENS_TEST_HOOKS__) installTestHooks(page);

function render(page: InspectorPage, summary: SummaryView, wholeCheckpoint: string | undefined): void {
  app.setAttribute('aria-busy', 'false');
  const lc = summary.layerCounts;
  const tabs: [InspectorTab, string, () => HTMLElement][] = [
    ['overview', 'Overview', () => overviewView(page, summary, wholeCheckpoint)],
    ['layers', `Linear layers (${lc.quantized + lc.ignored + lc.unquantized + lc.missing + lc.elsewhere})`, () => layersView(page, summary)],
    ['tensors', `Tensors (${summary.tensorCount.toLocaleString('en-US')})`, () => tensorsView(page, summary)],
    ['scales', 'Scales', () => scalesView(page, summary)],
    ['error', 'Error', () => errorView(page, summary)],
    ['health', 'Health', () => healthView(page)],
  ];
  const panels = h(
    'vscode-panels',
    { activeid: `tab-${page.saved.tab}`, 'aria-label': 'Inspector sections', class: 'panels' },
    ...tabs.map(([id, label]) => h('vscode-panel-tab', { id: `tab-${id}` }, label)),
    ...tabs.map(([id, , view]) => h('vscode-panel-view', { id: `view-${id}` }, view())),
  );
  panels.addEventListener('change', () => {
    const active = (panels as HTMLElement & { activeid?: string }).activeid;
    if (active) {
      page.saved.tab = active.replace('tab-', '') as InspectorTab;
      page.save();
      window.dispatchEvent(new Event('resize'));
    }
  });
  app.replaceChildren(h('h1', {}, summary.title, h('span', { class: 'subtitle' }, layoutText(summary))), panels);
  page.summary = summary;
  page.changed();
}

connection.messages.notify({ type: 'ready' });
