// The inspector in a real VS Code, on the shipped example (examples/tiny-llama, written by `npm test`
// before this suite runs) and on a checkpoint quantized from it: the editor opens, the page renders the
// detected scheme, the health scan reaches the Problems panel, and screenshots go to out/screenshots/.
import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensApi } from '../../../src/extension/extension';
import { runQuantizeJob } from '../../../src/core/jobs/quantize';
import { takeScreenshot } from './screenshot';
import { waitFor } from './wait';

function exampleDir(): string {
  const ext = vscode.extensions.getExtension<QuantLensApi>('quantlens.quantlens')!;
  const dir = join(ext.extensionPath, 'examples', 'tiny-llama');
  assert.ok(existsSync(join(dir, 'model.safetensors.index.json')), `the example checkpoint is missing at ${dir} (npm test writes it first)`);
  return dir;
}

async function api(): Promise<QuantLensApi> {
  const ext = vscode.extensions.getExtension<QuantLensApi>('quantlens.quantlens')!;
  return ext.activate();
}

/** Waits until the inspector page for `path` reports what it renders. */
async function rendered(path: string) {
  const quantlens = await api();
  return waitFor(`the inspector page for ${path}`, () => quantlens.inspectors().find((i) => i.path === path && i.rendered)?.rendered);
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
    assert.equal(view.scheme, 'Unquantized bf16 checkpoint');
    assert.deepEqual(view.tabs, ['Overview', 'Layers (29)', 'Tensors (39)', 'Scales', 'Error', 'Health']);
    await takeScreenshot('inspector-tiny-llama');
  });

  it('"Simulate Quantization Error" ranks the layers of the float example and shows the worst one first', async () => {
    const file = join(exampleDir(), 'model.safetensors.index.json');
    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(file), 'quantlens.checkpointIndex');
    await rendered(file);
    await vscode.commands.executeCommand('quantlens.simulateQuantization');
    const quantlens = await api();
    const view = await waitFor('the simulated error report', () => {
      const r = quantlens.inspectors().find((i) => i.path === file)?.rendered;
      return r?.loaded.includes('error') ? r : undefined;
    }, 60_000);
    // Layer 0's down_proj was generated with the heaviest tails (examples/README.md).
    assert.equal(view.worstLayer, 'model.layers.0.mlp.down_proj');
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
    await takeScreenshot('inspector-w8a8');

    const quantlens = await api();
    assert.ok(quantlens.showInspectorTab(file, 'layers'));
    await waitFor('the layers tab', () => (quantlens.inspectors().find((i) => i.path === file)?.rendered?.tab === 'layers' ? true : undefined));
    await takeScreenshot('inspector-w8a8-layers');

    assert.ok(quantlens.showInspectorTab(file, 'scales', true));
    await waitFor('the scales heatmap', () => (quantlens.inspectors().find((i) => i.path === file)?.rendered?.loaded.includes('scales') ? true : undefined));
    await takeScreenshot('inspector-w8a8-scales');

    await vscode.commands.executeCommand('quantlens.compareWithOriginal', vscode.Uri.file(exampleDir()));
    await waitFor('the comparison with the original', () => (quantlens.inspectors().find((i) => i.path === file)?.rendered?.loaded.includes('error') ? true : undefined), 60_000);
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
