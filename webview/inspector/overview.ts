/** The Overview tab: the scheme in words, the model, counts and sizes, problems, shards. */
import type { SummaryView } from '../../src/webviewMessages/inspector';
import { formatBytes, formatCount } from '../../src/core/util/format';
import { h } from '../common/toolkit';
import type { InspectorPage } from './page';
import { button, field } from './widgets';

/** Why a model is the size it is: the share of its bytes in embeddings and the output head (kept unquantized). */
function sizeNote(summary: SummaryView): string {
  const e = summary.embeddings;
  if (!e || summary.totalBytes <= 0) return '';
  const which = ['embed', 'lm_head'].filter((k) => e.names.some((n) => n.includes(k)));
  const label = which.length === 2 ? 'embeddings and lm_head' : which[0] === 'lm_head' ? 'lm_head' : 'embeddings';
  return ` · ${label} in ${e.dtypes.join('/').toLowerCase()}: ${Math.round((100 * e.bytes) / summary.totalBytes)}% of this model`;
}

/** The subtitle under the checkpoint's name: how its files are laid out. */
export function layoutText(summary: SummaryView): string {
  return summary.layout === 'indexed'
    ? `sharded · ${summary.index} · ${summary.shards.length} shard${summary.shards.length === 1 ? '' : 's'}`
    : summary.layout === 'folder-of-shards'
      ? `folder of ${summary.shards.length} shards (no index)`
      : summary.shardOf
        ? `one shard of ${summary.shardOf}`
        : 'single file';
}

export function overviewView(page: InspectorPage, summary: SummaryView, wholeCheckpoint: string | undefined): HTMLElement {
  const config = summary.config;
  const modelLine = config
    ? [config.architectures?.join(', '), config.hiddenSize && `hidden ${config.hiddenSize}`, config.numHiddenLayers && `${config.numHiddenLayers} decoder layers`, config.torchDtype].filter(Boolean).join(' · ')
    : summary.configError ?? 'no config.json beside the weights';
  const lc = summary.layerCounts;
  const errors = summary.problems.filter((p) => p.severity === 'error');
  const warnings = summary.problems.filter((p) => p.severity === 'warning');
  const dtypeEntries = Object.entries(summary.byDtype).sort((a, b) => b[1].bytes - a[1].bytes);
  return h(
    'section',
    { class: 'overview' },
    wholeCheckpoint
      ? h('div', { class: 'banner', role: 'note' }, h('span', {}, `This file is one shard of a checkpoint indexed by ${wholeCheckpoint.split('/').pop()}.`), button('Open whole checkpoint', () => page.messages.notify({ type: 'openWholeCheckpoint' }), { id: 'open-whole' }))
      : undefined,
    h('p', { class: 'scheme', id: 'scheme-description' }, summary.scheme.description, summary.scheme.source === 'tensors' ? h('span', { class: 'muted' }, ' (inferred from the tensors)') : undefined),
    h(
      'div',
      { class: 'fields' },
      field('Model', modelLine),
      field('Linear layers', `${lc.quantized} quantized · ${lc.ignored} ignored · ${lc.unquantized} unquantized${lc.missing ? ` · ${lc.missing} missing` : ''}${lc.elsewhere ? ` · ${lc.elsewhere} in other shards` : ''}`),
      field('Tensors', summary.tensorCount.toLocaleString('en-US')),
      field('Parameters', `${formatCount(summary.totalElements)} stored elements (${summary.totalElements.toLocaleString('en-US')})`),
      field('Size', `${formatBytes(summary.totalBytes)} of tensor data${sizeNote(summary)}`),
      field('Metadata', Object.entries(summary.metadata).map(([k, v]) => `${k}=${v}`).join(', ') || 'none'),
    ),
    h('div', { class: 'chips', 'aria-label': 'parameters by dtype' }, ...dtypeEntries.map(([dtype, t]) => h('span', { class: 'chip', title: `${t.tensors} tensors` }, `${dtype} · ${formatCount(t.elements)} · ${formatBytes(t.bytes)}`))),
    summary.scheme.disagreements.length || summary.scheme.configErrors.length
      ? h('section', { class: 'problems', 'aria-label': 'config disagreements' }, h('h2', {}, 'config.json vs tensors'), h('ul', {}, ...summary.scheme.disagreements.map((d) => h('li', { class: 'warning' }, d)), ...summary.scheme.configErrors.map((d) => h('li', { class: 'error' }, d))))
      : undefined,
    summary.problems.length
      ? h('section', { class: 'problems', 'aria-label': 'problems' }, h('h2', {}, `File problems: ${errors.length} error${errors.length === 1 ? '' : 's'}, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}`), h('ul', {}, ...summary.problems.slice(0, 200).map((p) => h('li', { class: p.severity }, p.message))))
      : h('p', { class: 'ok' }, 'The headers are valid and consistent.'),
    summary.shards.length > 1
      ? h(
          'details',
          { class: 'shards' },
          h('summary', {}, `${summary.shards.length} shards`),
          h('table', {}, h('tbody', {}, ...summary.shards.map((s) => h('tr', {}, h('td', {}, s.name), h('td', { class: 'num' }, `${s.tensors} tensors`), h('td', { class: 'num' }, formatBytes(s.fileSize)), h('td', {}, s.error ? `error: ${s.error}` : 'ok'))))),
        )
      : undefined,
  );
}
