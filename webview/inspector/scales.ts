/** The Scales tab: a heatmap of each layer's weight (or input) scales, and one module's scale histograms. */
import type { ModuleScales } from '../../src/core/inspect/scales';
import type { SummaryView } from '../../src/webviewMessages/inspector';
import { formatShape } from '../../src/core/util/format';
import { h } from '../common/toolkit';
import { heatmap, histogramChart } from '../common/charts';
import type { InspectorPage, SavedState } from './page';
import { button, dropdown, field, num, PROJECTIONS, withProgress, WORK_SILENCE_MS } from './widgets';

export function scalesView(page: InspectorPage, summary: SummaryView): HTMLElement {
  const body = h('div', { class: 'scales-body' });
  const load = async () => {
    const result = await withProgress(body, 'Reading scale tensors', (options) => page.messages.request('scales', {}, { ...options, timeoutMs: WORK_SILENCE_MS }));
    if (result) {
      page.scales = result;
      body.replaceChildren(scalesContent(page, result));
      page.loaded.add('scales');
      page.changed();
    }
  };
  if (summary.layerCounts.quantized === 0) {
    body.replaceChildren(h('p', { class: 'muted' }, 'No layer of this checkpoint is quantized, so there are no scales to show.'));
  } else if (page.scales) body.replaceChildren(scalesContent(page, page.scales));
  else body.replaceChildren(h('p', { class: 'muted' }, `${summary.layerCounts.quantized} quantized layers. Scale tensors are read only when you ask.`), button('Load scales', () => void load(), { id: 'load-scales' }));
  if (summary.layerCounts.quantized > 0) page.starters.set('scales', () => void (page.scales ? undefined : load()));
  return h('section', { class: 'scales' }, body);
}

function scalesContent(page: InspectorPage, modules: ModuleScales[]): HTMLElement {
  const detail = h('div', { class: 'detail', id: 'scale-detail' });
  const blocks = [...new Set(modules.filter((m) => m.block !== undefined).map((m) => m.block!))].sort((a, b) => a - b);
  const byKey = new Map(modules.map((m) => [`${m.block}|${m.projection}`, m]));
  const statOf = (m: ModuleScales | undefined): number | undefined => {
    if (!m) return undefined;
    if (page.saved.scaleStat === 'input') return m.scales.find((s) => s.role === 'input_scale')?.stats.max;
    const w = m.scales.find((s) => s.role === 'weight_scale' || s.role === 'scales' || s.role === 'weight_scale_inv');
    return w ? (page.saved.scaleStat === 'max' ? w.stats.max : w.stats.mean) : undefined;
  };
  const mapBox = h('div', { class: 'heatmap-box' });
  const select = (m: ModuleScales) => {
    page.saved.selectedScaleModule = m.module;
    page.save();
    detail.replaceChildren(moduleScalesDetail(m));
  };
  const draw = () => {
    mapBox.replaceChildren(
      heatmap(
        blocks.map((b) => `layer ${b}`),
        PROJECTIONS.map((p) => p.replace('_proj', '')),
        (r, c) => statOf(byKey.get(`${blocks[r]}|${PROJECTIONS[c]}`)),
        {
          title: `${page.saved.scaleStat === 'input' ? 'input scale' : `${page.saved.scaleStat} weight scale`} per layer and projection`,
          log: true,
          onSelect: (r, c) => {
            const m = byKey.get(`${blocks[r]}|${PROJECTIONS[c]}`);
            if (m) select(m);
          },
        },
      ),
    );
  };
  draw();
  const others = modules.filter((m) => m.block === undefined);
  const selected = modules.find((m) => m.module === page.saved.selectedScaleModule);
  if (selected) detail.replaceChildren(moduleScalesDetail(selected));
  return h(
    'div',
    {},
    h(
      'div',
      { class: 'toolbar' },
      dropdown('scale-stat', 'Heatmap statistic', [['max', 'max weight scale'], ['mean', 'mean weight scale'], ['input', 'input scale (static activations)']], page.saved.scaleStat, (v) => {
        page.saved.scaleStat = v as SavedState['scaleStat'];
        page.save();
        draw();
        page.changed();
      }),
      h('span', { class: 'muted' }, 'Colour: log scale between the smallest and largest value. Click or press Enter on a cell.'),
    ),
    mapBox,
    others.length ? h('div', { class: 'chips' }, ...others.map((m) => button(m.module, () => select(m)))) : undefined,
    detail,
  );
}

function moduleScalesDetail(m: ModuleScales): HTMLElement {
  return h(
    'div',
    {},
    h('h3', {}, m.module),
    ...m.scales.map((s) =>
      h(
        'div',
        { class: 'scale-entry' },
        h('h4', {}, `${s.role} · ${s.dtype} ${formatShape(s.shape)}`),
        s.values
          ? h('p', {}, `value${s.values.length === 1 ? '' : 's'}: ${s.values.map(num).join(', ')}`)
          : h('div', {}, h('div', { class: 'fields' }, field('min', num(s.stats.min)), field('median', num(s.median)), field('max', num(s.stats.max)), field('mean', num(s.stats.mean))), histogramChart(s.histogram, { title: `Distribution of ${s.role} (${s.stats.count} values)`, logCounts: true })),
        s.stats.nan || s.stats.zeros || s.negatives || s.subnormals
          ? h('p', { class: 'warning' }, `NaN ${s.stats.nan} · zero ${s.stats.zeros} · negative ${s.negatives} · subnormal ${s.subnormals}`)
          : undefined,
      ),
    ),
  );
}
