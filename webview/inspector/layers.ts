/** The Linear layers tab: the layer map as a virtual table (with the MoE group summary above it) and a layer's detail. */
import type { LinearModule } from '../../src/core/checkpoint/scheme';
import type { SummaryView } from '../../src/webviewMessages/inspector';
import { formatShape } from '../../src/core/util/format';
import { h } from '../common/toolkit';
import { Column, VirtualTable } from '../common/virtualTable';
import { moeGroupsPanel } from './layerGroups';
import type { InspectorPage, SavedState } from './page';
import { dropdown, exactName, field, filterField, showTableError } from './widgets';

const STATE_LABEL: Record<LinearModule['state'], string> = { quantized: 'quantized', ignored: 'ignored', unquantized: 'unquantized', missing: 'missing', elsewhere: 'other shard' };

function storageText(m: LinearModule): string {
  if (m.state === 'elsewhere') return `in ${m.shard ?? 'another shard'}`;
  const o = m.observed;
  if (!o) return '—';
  const parts = [o.kind === 'float' ? (o.weightDtype ?? 'float') : o.kind];
  if (o.bits && o.kind !== 'float') parts.push(`${o.bits}-bit`);
  if (o.strategy && o.kind !== 'float') parts.push(o.strategy === 'group' && o.groupSize ? `group ${o.groupSize}` : o.strategy);
  if (o.staticInputScale) parts.push('input_scale');
  if (o.hasGIdx) parts.push('g_idx');
  return parts.join(' · ');
}

/** The tab's content: for MoE checkpoints the group summary above the table (choosing a group filters the table). */
export function layersView(page: InspectorPage, summary: SummaryView): HTMLElement {
  const panel = moeGroupsPanel(summary.layerGroups, summary.scheme.moe?.description, (filter) => void page.tables.get('layers')?.setFilter(filter));
  return panel ? h('div', { class: 'moe-layers' }, panel, layerTable(page)) : layerTable(page);
}

function layerTable(page: InspectorPage): HTMLElement {
  const status = h('span', { class: 'table-status', role: 'status', 'aria-live': 'polite' });
  const detail = h('div', { class: 'detail', id: 'layer-detail' });
  const columns: Column<LinearModule>[] = [
    { label: 'module', className: 'col-name', render: (m) => m.name, title: (m) => m.name },
    { label: 'state', className: 'col-state', render: (m) => h('span', { class: `state state-${m.state}`, title: STATE_LABEL[m.state] }, STATE_LABEL[m.state]) },
    { label: 'storage', className: 'col-storage', render: storageText },
    { label: 'config', className: 'col-group', render: (m) => m.declared?.group ?? (m.declared?.ignoredBy ? `ignore: ${m.declared.ignoredBy}` : '—') },
    { label: 'issues', className: 'col-issues', render: (m) => (m.issues.length ? h('span', { class: 'warning' }, m.issues.join('; ')) : ''), title: (m) => m.issues.join('\n') },
  ];
  const table = new VirtualTable<LinearModule>(
    'Linear layers',
    columns,
    (offset, limit) => page.messages.request('layerPage', { filter: page.saved.layerFilter, state: page.saved.layerState, offset, limit }),
    page.saved.layerTable,
    {
      onStateChange: page.save,
      onStatus: (rows) => {
        status.textContent = rows.filterError ?? `${rows.total} layer${rows.total === 1 ? '' : 's'}`;
        status.classList.toggle('error-text', rows.filterError !== undefined);
      },
      onError: (error) => showTableError(status, 'layers', error),
      onSelect: (m) => {
        page.saved.selectedLayer = m.name;
        page.save();
        detail.replaceChildren(layerDetail(m));
      },
      onRender: () => page.changed(),
    },
  );
  let layerFilterField: (HTMLElement & { value: string }) | undefined;
  page.tables.set('layers', {
    table: table as VirtualTable<unknown>,
    status,
    filter: () => page.saved.layerFilter,
    setFilter: (text) => {
      page.saved.layerFilter = text;
      if (layerFilterField) layerFilterField.value = text;
      return table.refresh();
    },
  });
  const element = h(
    'section',
    { class: 'table-section' },
    h(
      'div',
      { class: 'toolbar' },
      (layerFilterField = filterField('layer-filter', 'Filter layers by name (or re:regex)', page.saved.layerFilter, (v) => {
        page.saved.layerFilter = v;
        void table.refresh();
      })),
      dropdown('layer-state', 'Filter by state', [['', 'all states'], ['quantized', 'quantized'], ['ignored', 'ignored'], ['unquantized', 'unquantized'], ['missing', 'missing'], ['elsewhere', 'in other shards'], ['issues', 'with issues']], page.saved.layerState, (v) => {
        page.saved.layerState = v as SavedState['layerState'];
        void table.refresh();
      }),
      status,
    ),
    table.element,
    detail,
  );
  // After a reload (the tab was hidden and shown again): the selected layer's detail.
  const restoreDetail = async () => {
    const name = page.saved.selectedLayer;
    if (!name) return;
    const found = await page.messages.request('layerPage', { filter: exactName(name), state: '', offset: 0, limit: 1 });
    if (found.rows[0] && page.saved.selectedLayer === name) detail.replaceChildren(layerDetail(found.rows[0]));
  };
  queueMicrotask(() => void table.refresh(true).then(restoreDetail));
  return element;
}

function layerDetail(m: LinearModule): HTMLElement {
  return h(
    'div',
    {},
    h('h3', {}, m.name),
    h('div', { class: 'fields' }, field('State', STATE_LABEL[m.state]), field('Storage', storageText(m)), field('Logical shape', m.observed?.shape ? formatShape(m.observed.shape) : '—'), field('Config', m.declared?.group ? `group ${m.declared.group}` : m.declared?.ignoredBy ? `ignored by ${m.declared.ignoredBy}` : 'not targeted'), field('Tensors', m.tensors.join(', ') || '—')),
    m.issues.length ? h('ul', { class: 'problems' }, ...m.issues.map((i) => h('li', { class: 'warning' }, i))) : undefined,
  );
}
