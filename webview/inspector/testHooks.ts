/**
 * Test builds only (`__QUANTLENS_TEST_HOOKS__`, false in the .vsix build, which drops this file): the page
 * reports what it shows after each change (`probe:rendered`, read back from the DOM by readBack.ts), and
 * obeys `probe:revealInTable` by filtering, scrolling and opening a table's row with the keys a user presses.
 */
import type { InspectorTable, TensorValuesView } from '../../src/webviewMessages/inspector';
import type { InspectorHostProbe, PageProbe, RenderedView, TableCommand, TableView } from '../../src/webviewMessages/testProbes';
import { InspectorPage, showTab } from './page';
import { readErrorReport, readFields, readHeatmap, readPlanSection, readTensorDetail } from './readBack';

export function installTestHooks(page: InspectorPage): void {
  /** Installed first thing in the page's script: when the script started, in ms since the navigation began. */
  const scriptStart = performance.now();
  let init: number | undefined;
  let firstRender: number | undefined;
  // Capture: before the page's own listener renders the init.
  window.addEventListener('message', (event: MessageEvent<{ kind?: string; message?: { type?: string } }>) => {
    if (event.data?.kind === 'notify' && event.data.message?.type === 'init') init ??= performance.now();
  }, { capture: true });

  /** Reports put off while the values toggle is still upgrading. */
  let retries = 0;
  const report = () => {
    const summary = page.summary;
    if (!summary) return;
    // The toolkit's dropdown reads '' until its options are slotted in (right after a render or a restore):
    // report the page once it has settled rather than a toggle that shows nothing (usually a few frames).
    const toggle = document.getElementById('stats-view') as (HTMLElement & { value: string }) | null;
    if (toggle && toggle.value === '' && retries < 300) {
      retries++;
      setTimeout(report, 16);
      return;
    }
    retries = 0;
    const view: RenderedView = {
      title: summary.title,
      scheme: document.getElementById('scheme-description')?.textContent ?? '',
      tab: page.saved.tab,
      tabs: Array.from(document.querySelectorAll('vscode-panel-tab'), (t) => t.textContent ?? ''),
      loaded: [...page.loaded],
      worstLayer: page.errorReport?.ranking[0],
      restored: page.restored,
      tables: Object.fromEntries([...page.tables].map(([name, t]): [InspectorTable, TableView] => [name, { ...t.table.snapshot(), filter: t.filter(), status: t.status.textContent ?? '' }])),
      tensorDetail: readTensorDetail(document.getElementById('tensor-detail'), page.tensors.detail, page.saved.statsScale),
      overview: readFields(document.querySelector('#view-overview .overview > .fields')),
      scales: page.loaded.has('scales') ? readHeatmap(document.querySelector('#view-scales svg.heatmap')) : undefined,
      error: readErrorReport(document.getElementById('error-body')),
      plan: readPlanSection(document.getElementById('plan-sensitivity')),
      timing: { scriptStart, init: init ?? NaN, firstRender: (firstRender ??= performance.now()) },
    };
    page.messages.postProbe({ type: 'probe:rendered', view } satisfies PageProbe<RenderedView>);
  };
  // Once per frame at most: scrolling a table renders often.
  let scheduled = false;
  page.changed = () => {
    if (scheduled) return;
    scheduled = true;
    setTimeout(() => {
      scheduled = false;
      report();
    }, 16);
  };
  page.messages.onProbe((probe) => {
    const message = probe as InspectorHostProbe;
    if (message.type === 'probe:revealInTable') void revealInTable(page, message.command);
    if (message.type === 'probe:pressKey') {
      pressKey(message.selector, message.index, message.key);
      // Handlers that only redraw part of the page (a heatmap cell's detail) do not report: report for them.
      page.changed();
    }
  });
}

/** A key pressed on an element as the keyboard delivers it: focus first, then keydown and keyup there. */
function pressKey(selector: string, index: number, key: string): void {
  const target = document.querySelectorAll<HTMLElement | SVGElement>(selector)[index];
  if (!target) return;
  target.focus();
  for (const type of ['keydown', 'keyup']) target.dispatchEvent(new KeyboardEvent(type, { key, bubbles: true, cancelable: true }));
}

async function revealInTable(page: InspectorPage, command: TableCommand): Promise<void> {
  const entry = page.tables.get(command.table);
  if (!entry) return;
  showTab(page, command.table, false);
  if (command.filter !== undefined) await entry.setFilter(command.filter);
  if (command.scrollTo !== undefined) entry.table.scrollToRow(command.scrollTo);
  if (!command.open) return;
  // Done with the keys a keyboard user presses, so that the tests go the user's way.
  const grid = entry.table.element.querySelector<HTMLElement>('[role="grid"]');
  if (!grid || !(await until(() => grid.querySelector('[aria-selected="true"]')))) return;
  grid.focus();
  grid.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
  if (command.table !== 'tensors') return;
  if (command.open.statsView) await chooseStatsView(command.open.statsView);
  if (command.open.compute) document.getElementById('compute-stats')?.click();
}

/** Polls `probe` every 20 ms for up to 2 s (rendering happens in animation frames and slot changes). */
async function until<T>(probe: () => T | null | undefined): Promise<T | undefined> {
  for (let waited = 0; waited <= 2000; waited += 20) {
    const value = probe();
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return undefined;
}

/** Picks `view` on the tensor detail's values toggle with Home and ArrowDown, as from the keyboard. */
async function chooseStatsView(view: TensorValuesView): Promise<void> {
  const toggle = document.getElementById('stats-view') as (HTMLElement & { value: string; options?: readonly unknown[] }) | null;
  if (!toggle) return; // not a quantized layer's codes: the page offers no toggle
  // A dropdown just built takes in its options on a slot change: keys before that select nothing.
  const count = toggle.querySelectorAll('vscode-option').length;
  if (!(await until(() => toggle.options?.length === count))) return;
  toggle.focus();
  const press = (key: string) => toggle.dispatchEvent(new KeyboardEvent('keydown', { key, bubbles: true, cancelable: true }));
  press('Home');
  for (let i = 0; i < count && toggle.value !== view; i++) press('ArrowDown');
}
