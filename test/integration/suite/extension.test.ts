// Integration tests in a real VS Code (1.139 server + web workbench, see test/integration/README.md): the
// extension loads from this repository, activates, registers what it contributes, and opens checkpoints in
// its custom editor.
import * as assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import { takeScreenshot } from './screenshot';
import { waitFor } from './wait';

const EXTENSION_ID = 'quantlens.quantlens';

/**
 * A valid safetensors file: u64 little-endian header length N, N bytes of JSON header padded with spaces to
 * a multiple of 8, then the tensors' bytes (here F32, little-endian, laid out back to back).
 */
function safetensorsFile(tensors: { name: string; shape: number[] }[]): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', source: 'quantlens integration test' } };
  const data: number[] = [];
  for (const { name, shape } of tensors) {
    const count = shape.reduce((a, b) => a * b, 1);
    const start = data.length * 4;
    for (let i = 0; i < count; i++) data.push(Math.sin(i * 0.7 + name.length) * (1 + i / count));
    header[name] = { dtype: 'F32', shape, data_offsets: [start, data.length * 4] };
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const body = Buffer.from(Float32Array.from(data).buffer); // x86/arm hosts are little-endian
  const out = Buffer.alloc(8 + headerBytes.length + body.length);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  body.copy(out, 8 + headerBytes.length);
  return out;
}

function workspaceDir(): string {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the integration tests run with the fixture workspace open');
  return folder.uri.fsPath;
}

describe('QuantLens in VS Code', () => {
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('is installed and activates', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `extension ${EXTENSION_ID} is not loaded`);
    await ext.activate();
    assert.equal(ext.isActive, true);
  });

  it('registers every command it contributes', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext);
    await ext.activate();
    const contributed: { command: string }[] = ext.packageJSON?.contributes?.commands ?? [];
    assert.ok(contributed.length > 0, 'package.json contributes no commands');
    const registered = new Set(await vscode.commands.getCommands(true));
    const missing = contributed.map((c) => c.command).filter((id) => !registered.has(id));
    assert.deepEqual(missing, [], `contributed but not registered: ${missing.join(', ')}`);
  });

  it('opens a .safetensors file in the checkpoint inspector, which shows its tensors and linear layers', async () => {
    const dir = join(workspaceDir(), 'checkpoints');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'example.safetensors');
    const tensors = [
      { name: 'model.embed_tokens.weight', shape: [16, 8] },
      { name: 'model.layers.0.self_attn.q_proj.weight', shape: [8, 8] },
      { name: 'model.layers.0.mlp.up_proj.weight', shape: [12, 8] },
      { name: 'model.norm.weight', shape: [8] },
      { name: 'lm_head.weight', shape: [16, 8] },
    ];
    writeFileSync(file, safetensorsFile(tensors));
    const uri = vscode.Uri.file(file);

    await vscode.commands.executeCommand('vscode.open', uri);
    const input = await waitFor('the checkpoint inspector to be the active tab', () => {
      const tabInput = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
      return tabInput instanceof vscode.TabInputCustom ? tabInput : undefined;
    });
    assert.equal(input.viewType, 'quantlens.checkpoint');
    assert.equal(input.uri.fsPath, uri.fsPath);

    // What the file holds, from the list it was written from: the linear layers are the 2-D weights of the
    // projections and lm_head (not the embedding), all F32, 4 bytes per element.
    const elements = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
    const linear = tensors.filter((t) => /(_proj|^lm_head)\.weight$/.test(t.name)).map((t) => t.name.replace(/\.weight$/, ''));
    const total = tensors.reduce((sum, t) => sum + elements(t.shape), 0);
    const quantlens = await vscode.extensions.getExtension<QuantLensTestApi>(EXTENSION_ID)!.activate();
    const page = () => quantlens.inspectors().find((i) => i.path === file)?.rendered;
    const view = await waitFor(`the inspector page of ${file} to render its overview`, () => page());
    assert.equal(view.title, 'example.safetensors');
    assert.equal(view.scheme, 'Unquantized fp32 checkpoint');
    assert.deepEqual(view.tabs.slice(0, 3), ['Overview', `Linear layers (${linear.length})`, `Tensors (${tensors.length})`]);
    assert.equal(view.overview?.Tensors, String(tensors.length));
    assert.equal(view.overview?.Parameters, `${total} stored elements (${total})`);
    assert.equal(view.overview?.['Linear layers'], `0 quantized · 0 ignored · ${linear.length} unquantized`);
    const png = await takeScreenshot('inspector-example');
    if (png) console.log(`    screenshot: ${png}`);

    assert.ok(quantlens.showInspectorTab(file, 'tensors'));
    const table = await waitFor(`the Tensors table with all ${tensors.length} rows on screen`, () => {
      const t = page()?.tables?.tensors;
      return page()?.tab === 'tensors' && t?.domRows === tensors.length ? t : undefined;
    });
    assert.equal(table.status, `${tensors.length} tensors`);
    const byName = (a: readonly string[], b: readonly string[]) => a[0]!.localeCompare(b[0]!);
    assert.deepEqual(
      table.rows.map((r) => r.cells.slice(0, 5)).sort(byName),
      tensors.map((t) => [t.name, 'F32', `[${t.shape.join(', ')}]`, String(elements(t.shape)), `${elements(t.shape) * 4} B`]).sort(byName),
    );

    assert.ok(quantlens.showInspectorTab(file, 'layers'));
    const layers = await waitFor(`the Layers table with ${linear.length} rows on screen`, () => {
      const t = page()?.tables?.layers;
      return page()?.tab === 'layers' && t?.domRows === linear.length ? t : undefined;
    });
    assert.equal(layers.status, `${linear.length} layers`);
    assert.deepEqual(layers.rows.map((r) => r.cells.slice(0, 3)).sort(byName), linear.map((m) => [m, 'unquantized', 'F32']).sort(byName));
  });
});
