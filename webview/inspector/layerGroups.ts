/**
 * The Layers tab's mixture-of-experts summary: one row per layer and role (routed experts × projections,
 * router, shared experts, fused experts) with its counts, so that a 128-expert layer reads as one line.
 * Choosing a row expands it: the layer table below is filtered to exactly that group's modules (the group's
 * `re:` filter), so the virtual table stays the one place where modules are listed.
 */
import type { LayerGroup } from '../../src/core/checkpoint/layerGroups';
import { describeGroupCounts } from '../../src/core/checkpoint/layerGroups';
import { h } from '../common/toolkit';

export function moeGroupsPanel(groups: readonly LayerGroup[], description: string | undefined, expand: (filter: string) => void): HTMLElement | undefined {
  if (groups.length === 0) return undefined;
  const rows = groups.map((g) => {
    const row = h(
      'tr',
      { class: 'moe-group', tabindex: 0, title: `Show these ${g.modules} module${g.modules === 1 ? '' : 's'} in the table below`, 'data-filter': g.filter },
      h('td', {}, g.block === undefined ? '—' : `layer ${g.block}`),
      h('td', {}, g.label),
      h('td', { class: g.counts.missing || g.issues || (g.role === 'router' && g.counts.quantized) ? 'warning' : '' }, `${describeGroupCounts(g)}${g.issues ? `, ${g.issues} with issues` : ''}${g.role === 'router' && g.counts.quantized ? ' — routers should stay in high precision' : ''}`),
    );
    row.addEventListener('click', () => expand(g.filter));
    row.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        expand(g.filter);
      }
    });
    return row;
  });
  return h(
    'details',
    { class: 'moe-groups', id: 'moe-groups', open: groups.length <= 64 },
    h('summary', {}, `Mixture of experts${description ? ` (${description.replace(/^mixture of experts: /, '')})` : ''}: ${groups.length} groups — choose one to list its modules`),
    h('table', { class: 'moe-group-table', 'aria-label': 'Mixture-of-experts groups' }, h('thead', {}, h('tr', {}, h('th', {}, 'layer'), h('th', {}, 'group'), h('th', {}, 'state'))), h('tbody', {}, ...rows)),
  );
}
