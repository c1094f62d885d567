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
