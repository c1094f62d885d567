// The inspector in a real VS Code, on the shipped example (examples/tiny-llama, written by `npm test`
// before this suite runs) and on a checkpoint quantized from it: the editor opens, the page renders the
// detected scheme, the health scan reaches the Problems panel, and screenshots go to out/screenshots/.
import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import type { RenderedView } from '../../../src/webviewMessages/testProbes';
import { runQuantizeJob } from '../../../src/core/jobs/quantize';
import { Checkpoint } from '../../../src/core/safetensors/checkpoint';
import { takeScreenshot } from './screenshot';
import { sleep, waitFor } from './wait';
import { int4Group128SymmetricSqnr, int8ChannelSqnr, median, readBf16, tooltipNumber } from './references';
import { QuantizedFixture, StoredLayer, writeAutoFp8Fixture, writeGptqFixture, writeInt8ChannelFixture, writePackQuantizedFixture } from './quantizedFixtures';

function exampleDir(): string {
  const ext = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
  const dir = join(ext.extensionPath, 'examples', 'tiny-llama');
  assert.ok(existsSync(join(dir, 'model.safetensors.index.json')), `the example checkpoint is missing at ${dir} (npm test writes it first)`);
  return dir;
}

async function api(): Promise<QuantLensTestApi> {
  const ext = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
  return ext.activate();
}

/** Waits until the inspector page for `path` reports what it renders. */
async function rendered(path: string) {
  const quantlens = await api();
  return waitFor(`the inspector page for ${path}`, () => quantlens.inspectors().find((i) => i.path === path && i.rendered)?.rendered);
}

/**
 * Waits until the page for `path` reports a view that `accept` takes; on timeout, says what did not appear and
 * what the page showed instead.
 */
async function shown<T>(path: string, what: string, accept: (view: RenderedView) => T | undefined, timeoutMs = 60_000): Promise<T> {
  const quantlens = await api();
  const last = () => quantlens.inspectors().find((i) => i.path === path)?.rendered;
  try {
    return await waitFor(what, () => {
      const view = last();
      return view ? accept(view) : undefined;
    }, timeoutMs);
  } catch (error) {
    const { tab, loaded, tables, error: report } = last() ?? {};
    throw new Error(`${(error as Error).message}; the page reports ${JSON.stringify({ tab, loaded, tables, error: report })}`);
  }
}

/** The decoder's linear layers as the headers have them: `<module>.weight` of the seven projections, and lm_head. */
const LINEAR_WEIGHT = /^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)|lm_head)\.weight$/;
const PROJECTIONS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];
const headingOf = (module: string) => {
  const m = /^model\.layers\.(\d+)\.\w+\.(\w+)_proj$/.exec(module);
  return m ? `layer ${m[1]} ${m[2]}` : undefined;
};

/** SQNR text within the rounding of its two decimals (plus float noise) of the float64 reference. */
function assertSqnrText(text: string | undefined, reference: number, where: string): void {
  assert.ok(text !== undefined && Math.abs(Number(text) - reference) <= 0.0051, `${where}: the page shows SQNR ${text}, the float64 reference is ${reference.toFixed(4)} dB`);
}

/**
 * The Error tab against float64 SQNRs by module: the summary line, the "Worst layers" table (order, SQNR and
 * relative error of each row), and the heatmap's cells (one per decoder layer and projection).
 */
function checkErrorReport(report: NonNullable<RenderedView['error']>, reference: Map<string, number>, headline: string): void {
  const byQuality = [...reference].sort((a, b) => a[1] - b[1]);
  const summary = new RegExp(`^${headline.replace(/[()|.*+?]/g, '\\$&')}: median SQNR (-?[\\d.]+) dB over (\\d+) layers$`).exec(report.summary);
  assert.ok(summary, `error summary ${JSON.stringify(report.summary)}`);
  const middle = median([...reference.values()]);
  assertSqnrText(summary[1], middle, 'median');
  assert.equal(Number(summary[2]), reference.size);
  // Outliers: more than max(3 dB, 4 × the median absolute deviation) below the median.
  const threshold = middle - Math.max(3, 4 * median([...reference.values()].map((v) => Math.abs(v - middle))));
  const outliers = byQuality.filter(([, v]) => v < threshold).map(([m]) => m);
  const suggested = /^Suggested ignore list \(SQNR far below the median\): (\[.*\])$/.exec(report.suggestion);
  if (outliers.length === 0) assert.equal(report.suggestion, 'No layer stands out: no ignore list suggested.');
  else assert.deepEqual((JSON.parse(suggested?.[1] ?? '[]') as string[]).sort(), outliers.sort(), `suggestion ${JSON.stringify(report.suggestion)}`);
  assert.deepEqual(report.rankingHeader, ['layer', 'SQNR dB', 'rel. error', 'max |err|', 'cosine']);
  assert.deepEqual(report.ranking.map((row) => row[0]), byQuality.slice(0, 12).map(([module]) => module), 'the worst layers, worst first');
  for (const [module, sqnr, relative] of report.ranking) {
    const expected = reference.get(module!)!;
    assertSqnrText(sqnr, expected, module!);
    const relativeError = 10 ** (-expected / 20); // ‖e‖ / ‖w‖
    assert.ok(Math.abs(Number(relative) - relativeError) <= 0.006 * relativeError, `${module}: rel. error ${relative}, expected ${relativeError.toExponential(3)}`);
  }
  const heatmap = report.heatmap!;
  const blocks = new Set([...reference.keys()].map(headingOf).filter((h) => h !== undefined));
  assert.deepEqual(heatmap.columns, PROJECTIONS);
  assert.equal(heatmap.cells.length, blocks.size);
  for (const cell of heatmap.cells) {
    const module = [...reference.keys()].find((m) => headingOf(m) === `${cell.row} ${cell.column}`);
    assert.ok(module, `a heatmap cell for ${cell.row} ${cell.column}, which is no layer`);
    assertSqnrText(String(tooltipNumber(cell.text)), reference.get(module)!, `heatmap cell ${cell.row} ${cell.column}`);
  }
  // Darker is worse: the darkest cell is the worst decoder layer.
  const darkest = heatmap.cells.reduce((a, b) => (b.opacity > a.opacity ? b : a));
  assert.equal(`${darkest.row} ${darkest.column}`, headingOf(byQuality.find(([m]) => headingOf(m))![0]));
}

function activeCustomTab(): vscode.TabInputCustom | undefined {
  const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
  return input instanceof vscode.TabInputCustom ? input : undefined;
}

describe('Checkpoint inspector on the shipped example', function () {
  this.timeout(120_000);
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'quantlens-it-'));
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    rmSync(scratch, { recursive: true, force: true });
  });

  it('"QuantLens: Open Checkpoint…" on the example folder opens its index in the inspector and shows the scheme', async () => {
    const dir = exampleDir();
    await vscode.commands.executeCommand('quantlens.openCheckpoint', vscode.Uri.file(dir));
    const tab = await waitFor('the inspector tab', () => (activeCustomTab()?.viewType === 'quantlens.checkpointIndex' ? activeCustomTab() : undefined));
    assert.equal(tab.uri.fsPath, join(dir, 'model.safetensors.index.json'));
    const view = await rendered(tab.uri.fsPath);
    // What the headers and config.json hold: 7 projections per decoder layer plus lm_head, all bf16.
    const checkpoint = await Checkpoint.open(tab.uri.fsPath);
    const linear = checkpoint.tensors.filter((t) => LINEAR_WEIGHT.test(t.name)).length;
    const tensors = checkpoint.tensors.length;
    await checkpoint.close();
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { num_hidden_layers: number };
    assert.equal(linear, config.num_hidden_layers * 7 + 1);
    assert.equal(view.scheme, 'Unquantized bf16 checkpoint');
    assert.deepEqual(view.tabs, ['Overview', `Linear layers (${linear})`, `Tensors (${tensors})`, 'Scales', 'Error', 'Health']);
    assert.equal(view.overview?.['Linear layers'], `0 quantized · 0 ignored · ${linear} unquantized`);
    assert.equal(view.overview?.Tensors, String(tensors));
    await takeScreenshot('inspector-tiny-llama');
  });

  it('"Simulate Quantization Error" ranks the layers of the float example and shows the worst one first', async () => {
    const file = join(exampleDir(), 'model.safetensors.index.json');
    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(file), 'quantlens.checkpointIndex');
    await rendered(file);
    // The page's default scheme, computed here in float64 from the bf16 weights, layer by layer (before the
    // simulation starts: this blocks the extension host for seconds).
    const checkpoint = await Checkpoint.open(file);
    const reference = new Map<string, number>();
    for (const t of checkpoint.tensors.filter((t) => LINEAR_WEIGHT.test(t.name))) reference.set(t.name.replace(/\.weight$/, ''), int4Group128SymmetricSqnr(await readBf16(checkpoint, t.name), t.shape[1]!));
    await checkpoint.close();
    await vscode.commands.executeCommand('quantlens.simulateQuantization');
    const view = await shown(file, 'the simulated error report in the Error tab', (r) => (r.tab === 'error' && r.error ? r : undefined), 60_000);
    checkErrorReport(view.error!, reference, 'Simulated INT4 group 128 (symmetric)');
    // Layer 0's down_proj was generated with the heaviest tails (examples/README.md).
    assert.equal(view.error!.ranking[0]![0], 'model.layers.0.mlp.down_proj');
    await takeScreenshot('inspector-simulated-error');
  });

  it('opening one shard offers the whole checkpoint', async () => {
    const shard = join(exampleDir(), 'model-00001-of-00002.safetensors');
    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(shard));
    await waitFor('the shard in the inspector', () => (activeCustomTab()?.uri.fsPath === shard ? true : undefined));
    const view = await rendered(shard);
    assert.equal(view.title, 'model-00001-of-00002.safetensors');
  });

  it('a W8A8 checkpoint quantized from the example is recognised, and its health scan reaches the Problems panel', async () => {
    const out = join(scratch, 'tiny-llama-w8a8');
    const summary = await runQuantizeJob({ model: exampleDir(), out, scheme: 'w8a8' });
    assert.equal(summary.quantizedLayers, 28);
    await vscode.commands.executeCommand('quantlens.openCheckpoint', vscode.Uri.file(out));
    const file = join(out, 'model.safetensors');
    await waitFor('the quantized checkpoint in the inspector', () => (activeCustomTab()?.uri.fsPath === file ? true : undefined));
    const view = await rendered(file);
    assert.equal(view.scheme, 'INT8 weights per channel, INT8 activations per token (dynamic), lm_head not quantized');
    // From the headers: a weight_scale per quantized layer, and lm_head left in bf16.
    const quantized = await Checkpoint.open(file);
    const original = await Checkpoint.open(join(exampleDir(), 'model.safetensors.index.json'));
    const modules = quantized.tensors.filter((t) => LINEAR_WEIGHT.test(t.name)).map((t) => t.name.replace(/\.weight$/, ''));
    const scaled = modules.filter((m) => quantized.tensors.some((t) => t.name === `${m}.weight_scale`));
    assert.deepEqual(modules.filter((m) => !scaled.includes(m)), ['lm_head']);
    assert.equal(quantized.tensor('lm_head.weight').dtype, 'BF16');
    assert.deepEqual([view.tabs[1], view.tabs[2]], [`Linear layers (${modules.length})`, `Tensors (${quantized.tensors.length})`]);
    assert.equal(view.overview?.['Linear layers'], `${scaled.length} quantized · 1 ignored · 0 unquantized`);
    await takeScreenshot('inspector-w8a8');

    const quantlens = await api();
    // The layer map: every linear layer, in the checkpoint's order; then filtered to one projection and to lm_head.
    assert.ok(quantlens.showInspectorTab(file, 'layers'));
    const layers = await shown(file, `the layer table with ${modules.length} layers`, (r) => (r.tab === 'layers' && r.tables?.layers?.total === modules.length && r.tables.layers.domRows > 0 ? r.tables.layers : undefined));
    assert.equal(layers.status, `${modules.length} layers`);
    // The rows on screen: the first ones, each a linear layer of the checkpoint, each once.
    assert.deepEqual(layers.rows.map((row) => row.index), layers.rows.map((_, i) => i));
    const onScreen = layers.rows.map((row) => row.cells[0]!);
    assert.deepEqual(onScreen.filter((name) => !modules.includes(name)), [], 'rows that are no linear layer of the checkpoint');
    assert.equal(new Set(onScreen).size, onScreen.length);
    await takeScreenshot('inspector-w8a8-layers');
    assert.ok(quantlens.revealInInspector(file, { table: 'layers', filter: 'down_proj' }));
    const downs = scaled.filter((m) => m.endsWith('.down_proj'));
    const down = await shown(file, 'the layer table filtered to down_proj', (r) => (r.tables?.layers?.filter === 'down_proj' && r.tables.layers.domRows === downs.length ? r.tables.layers : undefined));
    assert.equal(down.status, `${downs.length} layers`);
    assert.deepEqual(down.rows.map((row) => row.cells.slice(0, 2)), downs.map((m) => [m, 'quantized']));
    // I8 codes with one scale per output row ([out, 1]).
    for (const row of down.rows) assert.match(row.cells[2]!, /8-bit · channel/, `storage of ${row.cells[0]}`);
    assert.ok(quantlens.revealInInspector(file, { table: 'layers', filter: 'lm_head' }));
    const head = await shown(file, 'the layer table filtered to lm_head', (r) => (r.tables?.layers?.filter === 'lm_head' && r.tables.layers.domRows === 1 ? r.tables.layers : undefined));
    assert.deepEqual(head.rows[0]!.cells.slice(0, 3), ['lm_head', 'ignored', 'BF16']);
    assert.ok(quantlens.revealInInspector(file, { table: 'layers', filter: '' }));

    // The scales heatmap: per decoder layer and projection, the largest of the layer's per-channel scales.
    const maxScale = new Map<string, number>();
    for (const m of scaled) maxScale.set(m, (await readBf16(quantized, `${m}.weight_scale`)).reduce((a, b) => Math.max(a, b), -Infinity));
    assert.ok(quantlens.showInspectorTab(file, 'scales', true));
    const scales = await shown(file, 'the scales heatmap', (r) => r.scales);
    assert.equal(scales.title, 'max weight scale per layer and projection');
    assert.deepEqual(scales.columns, PROJECTIONS);
    assert.equal(scales.cells.length, scaled.length);
    const logs = [...maxScale.values()].map(Math.log10);
    const [lo, hi] = [Math.min(...logs), Math.max(...logs)];
    for (const cell of scales.cells) {
      const module = scaled.find((m) => headingOf(m) === `${cell.row} ${cell.column}`);
      assert.ok(module, `a scales cell for ${cell.row} ${cell.column}, which is no quantized layer`);
      const expected = maxScale.get(module)!;
      const value = tooltipNumber(cell.text);
      // Three significant digits on screen; the colour is the value's place between the smallest and largest (log).
      assert.ok(Math.abs(value - expected) <= 5e-3 * expected, `${module}: the heatmap shows ${cell.text}, the largest weight_scale is ${expected}`);
      const opacity = 0.08 + (0.92 * (Math.log10(expected) - lo)) / (hi - lo);
      assert.ok(Math.abs(cell.opacity - opacity) <= 0.0011, `${module}: fill opacity ${cell.opacity}, expected ${opacity.toFixed(3)}`);
    }
    await takeScreenshot('inspector-w8a8-scales');

    // The comparison with the original: every quantized layer's SQNR against a float64 dequantization here.
    const sqnr = new Map<string, number>();
    for (const m of scaled) sqnr.set(m, await int8ChannelSqnr(quantized, original, m));
    await quantized.close();
    await original.close();
    await vscode.commands.executeCommand('quantlens.compareWithOriginal', vscode.Uri.file(exampleDir()));
    const compared = await shown(file, 'the comparison with the original in the Error tab', (r) => r.error, 60_000);
    // The headline names the original compared against (the folder's name).
    checkErrorReport(compared, sqnr, `${view.scheme} vs the original ${basename(exampleDir())}`);
    await takeScreenshot('inspector-w8a8-error');

    await vscode.commands.executeCommand('quantlens.runHealthScan');
    await waitFor('the health report in the page', () => (quantlens.inspectors().find((i) => i.path === file)?.rendered?.loaded.includes('health') ? true : undefined));
    await takeScreenshot('inspector-w8a8-health');
    // A healthy checkpoint: the scan publishes an empty diagnostics set for the file.
    const diagnostics = vscode.languages.getDiagnostics(vscode.Uri.file(file));
    assert.deepEqual(diagnostics.map((d) => d.message), []);
  });

  it('the health scan puts problems of a damaged checkpoint in the Problems panel', async () => {
    // The W8A8 output with one weight_scale zeroed: a copy, so the quantized output stays untouched.
    const { promises: fs } = await import('node:fs');
    const { Checkpoint } = await import('../../../src/core/safetensors/checkpoint');
    const source = join(scratch, 'tiny-llama-w8a8');
    const damaged = join(scratch, 'damaged');
    await fs.cp(source, damaged, { recursive: true });
    const file = join(damaged, 'model.safetensors');
    const checkpoint = await Checkpoint.open(file);
    const scale = checkpoint.tensor('model.layers.1.mlp.down_proj.weight_scale');
    await checkpoint.close();
    const handle = await fs.open(file, 'r+');
    await handle.write(new Uint8Array(scale.byteLength), 0, scale.byteLength, scale.fileOffset);
    await handle.close();

    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(file), 'quantlens.checkpoint');
    await rendered(file);
    await vscode.commands.executeCommand('quantlens.runHealthScan');
    const diagnostics = await waitFor('diagnostics', () => {
      const list = vscode.languages.getDiagnostics(vscode.Uri.file(file));
      return list.length ? list : undefined;
    });
    assert.ok(diagnostics.some((d) => d.severity === vscode.DiagnosticSeverity.Error && /model\.layers\.1\.mlp\.down_proj\.weight_scale has zero scales/.test(d.message)), diagnostics.map((d) => d.message).join('\n'));
    await takeScreenshot('inspector-health-problems');
  });
});

describe('Checkpoint inspector with 100,000 tensors', function () {
  this.timeout(240_000);
  let scratch: string;
  const file = () => join(scratch, 'many.safetensors');
  const PROJ = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
  const nameOf = (i: number) => `model.layers.${Math.floor(i / 10)}.${i % 10 < 7 ? `${PROJ[i % 10]}.weight` : ['input_layernorm.weight', 'post_attention_layernorm.weight', 'self_attn.rotary_emb.inv_freq'][i % 10 - 7]}`;
  before(async () => {
    // A real file: 100,000 tiny bf16 tensors (2 elements each), 70,000 of them 2-D linear weights.
    const { promises: fs } = await import('node:fs');
    scratch = mkdtempSync(join(tmpdir(), 'quantlens-many-'));
    const header: Record<string, unknown> = {};
    for (let i = 0; i < 100_000; i++) header[nameOf(i)] = { dtype: 'BF16', shape: i % 10 < 7 ? [2, 1] : [2], data_offsets: [i * 4, i * 4 + 4] };
    const json = Buffer.from(JSON.stringify(header));
    const bytes = Buffer.alloc(8 + json.length + 400_000);
    bytes.writeBigUInt64LE(BigInt(json.length), 0);
    json.copy(bytes, 8);
    await fs.writeFile(file(), bytes);
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    rmSync(scratch, { recursive: true, force: true });
  });

  const table = async (which: 'tensors' | 'layers', what: string, accept: (t: NonNullable<NonNullable<Awaited<ReturnType<typeof rendered>>['tables']>['tensors']>) => boolean, timeoutMs = 60_000) => {
    const quantlens = await api();
    return waitFor(what, () => {
      const t = quantlens.inspectors().find((i) => i.path === file())?.rendered?.tables?.[which];
      return t && accept(t) ? t : undefined;
    }, timeoutMs);
  };

  it('keeps the Tensors and Layers tables virtualized, filters them and scrolls to the last row', async () => {
    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(file()), 'quantlens.checkpoint');
    const view = await waitFor('the 100,000-tensor checkpoint in the inspector', async () => (await api()).inspectors().find((i) => i.path === file())?.rendered, 120_000);
    assert.equal(view.tabs[2], 'Tensors (100,000)');
    const quantlens = await api();

    assert.ok(quantlens.showInspectorTab(file(), 'tensors'));
    const first = await table('tensors', 'the tensor table', (t) => t.total === 100_000 && t.domRows > 0);
    // Only the rows in view exist in the DOM (a viewport of 22 px rows), never the 100,000.
    assert.ok(first.domRows <= 80, `${first.domRows} rows in the DOM`);
    assert.equal(first.first?.text, nameOf(0));
    await takeScreenshot('inspector-100k-tensors');

    assert.ok(quantlens.revealInInspector(file(), { table: 'tensors', scrollTo: 'end' }));
    const end = await table('tensors', 'the last tensor on screen', (t) => t.last?.index === 99_999);
    assert.equal(end.last?.text, nameOf(99_999));
    assert.ok(end.domRows <= 80, `${end.domRows} rows in the DOM after scrolling to the end`);
    // Its detail and statistics below the table shrink the table's viewport: the selected last row stays on screen.
    assert.ok(quantlens.revealInInspector(file(), { table: 'tensors', open: { compute: true } }));
    await waitFor('the statistics of the last tensor', () => {
      const detail = quantlens.inspectors().find((i) => i.path === file())?.rendered?.tensorDetail;
      return detail?.tensor === nameOf(99_999) && detail.stats ? detail : undefined;
    }, 60_000);
    await sleep(500); // the resize and the animation frame that re-renders the rows
    const kept = await table('tensors', 'the tensor table after the statistics', () => true);
    assert.equal(kept.last?.index, 99_999, `the selected last tensor scrolled out of view: the rows end at ${kept.last?.index}`);

    assert.ok(quantlens.revealInInspector(file(), { table: 'tensors', filter: 're:^model\\.layers\\.9999\\.mlp\\.' }));
    const filtered = await table('tensors', 'the filtered tensor table', (t) => t.filter.startsWith('re:') && t.total === 3 && t.domRows === 3);
    assert.deepEqual([filtered.first?.text, filtered.last?.text], ['model.layers.9999.mlp.gate_proj.weight', 'model.layers.9999.mlp.down_proj.weight']);

    assert.ok(quantlens.revealInInspector(file(), { table: 'layers', filter: '' }));
    const layers = await table('layers', 'the layer table', (t) => t.total === 70_000 && t.domRows > 0);
    assert.ok(layers.domRows <= 80, `${layers.domRows} layer rows in the DOM`);
    assert.ok(quantlens.revealInInspector(file(), { table: 'layers', scrollTo: 'end' }));
    const lastLayer = await table('layers', 'the last layer on screen', (t) => t.last?.index === 69_999);
    assert.equal(lastLayer.last?.text, 'model.layers.9999.mlp.down_proj');
    assert.ok(quantlens.revealInInspector(file(), { table: 'layers', filter: 'layers.42.self_attn' }));
    const attn = await table('layers', 'the filtered layer table', (t) => t.filter === 'layers.42.self_attn' && t.total === 4 && t.domRows === 4);
    assert.equal(attn.first?.text, 'model.layers.42.self_attn.q_proj');
    await takeScreenshot('inspector-100k-layers');
  });
});

describe('Quantized layer values in the inspector: dequantized, codes and stored views', function () {
  this.timeout(180_000);
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'quantlens-dequant-'));
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    rmSync(scratch, { recursive: true, force: true });
  });

  /** Float64 statistics from their definitions. */
  function reference(values: Float64Array) {
    let [min, max, sum, absMax] = [Infinity, -Infinity, 0, 0];
    for (const v of values) {
      min = Math.min(min, v);
      max = Math.max(max, v);
      absMax = Math.max(absMax, Math.abs(v));
      sum += v;
    }
    const mean = sum / values.length;
    let squares = 0;
    for (const v of values) squares += (v - mean) ** 2;
    return { min, max, mean, absMax, std: Math.sqrt(squares / values.length), count: values.length };
  }

  type Detail = NonNullable<NonNullable<Awaited<ReturnType<typeof rendered>>>['tensorDetail']>;

  async function detailOf(file: string, what: string, accept: (d: Detail) => boolean): Promise<Detail> {
    const quantlens = await api();
    const last = () => quantlens.inspectors().find((i) => i.path === file)?.rendered;
    try {
      return await waitFor(what, () => {
        const d = last()?.tensorDetail;
        return d && accept(d) ? d : undefined;
      }, 60_000);
    } catch (error) {
      // Say what the page showed instead.
      const { tables, tensorDetail, loaded, tab } = last() ?? {};
      throw new Error(`${(error as Error).message}; the page reports ${JSON.stringify({ tab, loaded, tables, tensorDetail })}`);
    }
  }

  /** What the page shows against the reference: the numbers it holds, the text it prints, the histogram it draws. */
  function checkShown(d: Detail, layer: StoredLayer, view: 'dequantized' | 'codes' | 'stored', values: Float64Array): ReturnType<typeof reference> {
    const ref = reference(values);
    const stats = d.stats!;
    const where = `${layer.codesTensor} (${view})`;
    assert.equal(stats.view, view);
    assert.equal(stats.values.count, values.length, `${where}: count`);
    if (view !== 'stored') assert.equal(values.length, layer.shape[0] * layer.shape[1], `${where}: reference count`);
    assert.equal(stats.values.nan, 0, `${where}: NaN`);
    // (q − zero) · scale is exact in float64 on both sides: the extremes must agree to the bit.
    assert.equal(stats.values.min, ref.min, `${where}: min`);
    assert.equal(stats.values.max, ref.max, `${where}: max`);
    assert.equal(stats.values.absMax, ref.absMax, `${where}: absmax`);
    // Sums in another order: agree to rounding.
    assert.ok(Math.abs(stats.values.mean - ref.mean) <= 1e-9 * ref.absMax, `${where}: mean ${stats.values.mean} vs ${ref.mean}`);
    assert.ok(Math.abs(stats.values.std - ref.std) <= 1e-9 * ref.std, `${where}: std ${stats.values.std} vs ${ref.std}`);
    // The text on screen (5 significant digits, or 4 in exponent notation).
    for (const [label, expected] of [['min', ref.min], ['max', ref.max], ['mean', ref.mean], ['std', ref.std], ['absmax', ref.absMax]] as const) {
      const text = stats.fields[label];
      assert.ok(text !== undefined, `${where}: no "${label}" field among ${Object.keys(stats.fields).join(', ')}`);
      const shown = Number(text);
      assert.ok(Math.abs(shown - expected) <= 5e-4 * Math.abs(expected) + 1e-9 * ref.absMax, `${where}: ${label} shows "${text}", expected ${expected}`);
    }
    assert.equal(stats.fields.elements, ref.count.toLocaleString('en-US'), `${where}: elements`);
    assert.equal(stats.fields.NaN, '0');
    if (view === 'stored') assert.equal(stats.fields.values, undefined, `${where}: the tensor as stored is not described as a layer's values`);
    else assert.match(stats.fields.values ?? '', view === 'dequantized' ? new RegExp(`^dequantized ${layer.module.replace(/\./g, '\\.')} \\[${layer.shape[0]} × ${layer.shape[1]}\\]$`) : /^codes: /);
    // Every element is in the histogram of values (none is NaN or infinite here).
    assert.equal(stats.histogramAxis, 'linear');
    assert.ok(stats.histogramBars > 1, `${where}: ${stats.histogramBars} histogram bars`);
    assert.equal(stats.histogramTotal, ref.count, `${where}: histogram total`);
    return ref;
  }

  /** The values toggle: a named, focusable combobox (Tab reaches it; the arrow keys changed it). */
  function checkToggle(d: Detail, value: string, operated = true): void {
    assert.ok(d.quantized, `${d.tensor} is not marked as a quantized layer's codes`);
    const toggle = d.toggle;
    assert.ok(toggle, `${d.tensor}: no values toggle in the detail`);
    assert.equal(toggle.tag, 'vscode-dropdown');
    assert.equal(toggle.role, 'combobox');
    assert.equal(toggle.label, 'Show values as');
    assert.equal(toggle.tabIndex, 0);
    if (operated) assert.ok(toggle.focused, 'the toggle has the keyboard focus after being operated with the keys');
    assert.deepEqual(toggle.options, ['dequantized', 'codes', 'stored']);
    assert.equal(toggle.value, value);
    assert.equal(d.view, value);
  }

  const exact = (name: string) => `re:^${name.replace(/\./g, '\\.')}$`;

  /**
   * Opens the checkpoint, selects `layer`'s codes tensor in the Tensors table, computes the dequantized view,
   * checks it, then switches the toggle to the codes view and to the tensor as stored, and checks those.
   */
  async function inspectLayer(file: string, layer: StoredLayer, scheme: RegExp, codeRange: [number, number], screenshot?: string): Promise<void> {
    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(file), 'quantlens.checkpoint');
    const view = await rendered(file);
    assert.match(view.scheme, scheme);
    assert.equal(view.restored, false);
    const quantlens = await api();

    assert.ok(quantlens.revealInInspector(file, { table: 'tensors', filter: exact(layer.codesTensor), scrollTo: 0, open: { statsView: 'dequantized', compute: true } }));
    const dequantized = await detailOf(file, `the dequantized statistics of ${layer.codesTensor}`, (d) => d.tensor === layer.codesTensor && d.stats?.view === 'dequantized');
    checkToggle(dequantized, 'dequantized');
    checkShown(dequantized, layer, 'dequantized', layer.dequantize());
    if (screenshot) await takeScreenshot(`${screenshot}-dequantized`);

    assert.ok(quantlens.revealInInspector(file, { table: 'tensors', open: { statsView: 'codes', compute: true } }));
    const codes = await detailOf(file, `the code statistics of ${layer.codesTensor}`, (d) => d.tensor === layer.codesTensor && d.stats?.view === 'codes');
    checkToggle(codes, 'codes');
    const ref = checkShown(codes, layer, 'codes', layer.codes());
    assert.ok(ref.min >= codeRange[0] && ref.max <= codeRange[1], `codes of ${layer.codesTensor} in [${ref.min}, ${ref.max}]`);
    if (screenshot) await takeScreenshot(`${screenshot}-codes`);

    // The tensor as stored: its elements as the file holds them (for packed layouts, the int32 words).
    assert.ok(quantlens.revealInInspector(file, { table: 'tensors', open: { statsView: 'stored', compute: true } }));
    const stored = await detailOf(file, `the stored statistics of ${layer.codesTensor}`, (d) => d.tensor === layer.codesTensor && d.stats?.view === 'stored');
    checkToggle(stored, 'stored');
    checkShown(stored, layer, 'stored', layer.stored());
  }

  const layerOf = (fixture: QuantizedFixture, module: string) => fixture.layers.find((l) => l.module === module)!;

  it('GPTQ v1 packed INT4 (act-order g_idx, zero points): dequantized, codes and stored views match a float64 reading, and survive hiding the tab', async () => {
    const fixture = writeGptqFixture(join(scratch, 'gptq-int4'));
    const layer = layerOf(fixture, 'model.layers.1.mlp.down_proj');
    await inspectLayer(fixture.file, layer, /^INT4 GPTQ, group 64, act-order, asymmetric \(zero points\)/, [0, 15], 'inspector-gptq');

    // Back to the dequantized view (computed already), then hide the editor behind another one and show it
    // again: VS Code discards the hidden page, which must come back with the same tensor, view and numbers.
    const quantlens = await api();
    assert.ok(quantlens.revealInInspector(fixture.file, { table: 'tensors', open: { statsView: 'dequantized' } }));
    const before = await detailOf(fixture.file, 'the cached dequantized statistics', (d) => d.view === 'dequantized' && d.stats?.view === 'dequantized');
    const other = await vscode.workspace.openTextDocument(join(scratch, 'gptq-int4', 'config.json'));
    await vscode.window.showTextDocument(other, { preview: false });
    await waitFor('the text editor in front', () => (vscode.window.activeTextEditor?.document.uri.fsPath === other.uri.fsPath ? true : undefined));
    await sleep(500);
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
    const after = await waitFor('the inspector page reloaded with its state', () => {
      const r = quantlens.inspectors().find((i) => i.path === fixture.file)?.rendered;
      return r?.restored && r.tensorDetail?.stats ? r.tensorDetail : undefined;
    }, 60_000);
    assert.equal(after.tensor, layer.codesTensor);
    checkToggle(after, 'dequantized', false);
    assert.deepEqual(after.stats, before.stats);
    checkShown(after, layer, 'dequantized', layer.dequantize());
  });

  it('compressed-tensors pack-quantized INT4 groups with packed zero points: dequantized, codes and stored views', async () => {
    const fixture = writePackQuantizedFixture(join(scratch, 'ct-w4a16-asym'));
    await inspectLayer(fixture.file, layerOf(fixture, 'model.layers.0.mlp.down_proj'), /^INT4 weights, group 32, asymmetric/, [-8, 7]);
  });

  it('AutoFP8 per-tensor FP8 with weight_scale: dequantized, codes and stored views', async () => {
    const fixture = writeAutoFp8Fixture(join(scratch, 'autofp8'));
    await inspectLayer(fixture.file, layerOf(fixture, 'model.layers.0.self_attn.o_proj'), /^FP8 weights and activations, per-tensor static scales/, [-448, 448]);
  });

  it('compressed-tensors INT8 per channel: dequantized, codes and stored views', async () => {
    const fixture = writeInt8ChannelFixture(join(scratch, 'int8-channel'));
    await inspectLayer(fixture.file, layerOf(fixture, 'model.layers.0.mlp.gate_proj'), /^INT8 weights per channel/, [-128, 127]);
  });
});
