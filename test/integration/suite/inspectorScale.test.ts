// The inspector on a Llama-3-8B-shaped checkpoint (16 GB of bf16 in 5 shards with an index; the files are
// sparse, so the test costs no disk) in a real VS Code: it opens header-only, the layer map renders, and the
// extension host's memory does not grow with the checkpoint. The time to the rendered layer map is printed
// for the README's figures, not asserted (machines are shared and noisy; `npm run bench` has the ratios).
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import { LLAMA_3_8B, llamaTensors } from '../../bench/llamaShapes';
import { writeSparseCheckpoint } from '../../bench/sparseCheckpoint';
import { waitFor } from './wait';

async function api(): Promise<QuantLensTestApi> {
  return vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.activate();
}

const MiB = 1024 * 1024;

describe('Checkpoint inspector on a Llama-3-8B-shaped checkpoint', function () {
  this.timeout(180_000);
  let scratch: string;
  let checkpointBytes = 0;
  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'quantlens-8b-'));
    ({ bytes: checkpointBytes } = await writeSparseCheckpoint(join(scratch, 'llama-3-8b'), llamaTensors(LLAMA_3_8B), 5e9));
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    rmSync(scratch, { recursive: true, force: true });
  });

  it('opens header-only: the layer map of 225 layers renders, and the extension host grows by far less than one tensor', async () => {
    const folder = join(scratch, 'llama-3-8b');
    const index = join(folder, 'model.safetensors.index.json');
    const quantlens = await api();
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    await vscode.commands.executeCommand('quantlens.openCheckpoint', vscode.Uri.file(folder));
    const view = await waitFor('the 8B-shaped checkpoint in the inspector', () => quantlens.inspectors().find((i) => i.path === index)?.rendered, 120_000);
    const firstPaint = performance.now() - started;
    const { timing } = view;
    const phases = `page script started ${timing.scriptStart.toFixed(0)} ms after its navigation, init at ${timing.init.toFixed(0)}, rendered at ${timing.firstRender.toFixed(0)}`;
    assert.equal(view.scheme, 'Unquantized bf16 checkpoint');
    assert.deepEqual(view.tabs.slice(1, 3), ['Linear layers (225)', 'Tensors (291)']);

    assert.ok(quantlens.showInspectorTab(index, 'layers'));
    const layers = await waitFor('the layer table', () => {
      const t = quantlens.inspectors().find((i) => i.path === index)?.rendered?.tables?.layers;
      return t && t.total === 225 && t.domRows > 0 ? t : undefined;
    });
    assert.equal(layers.first?.text, 'model.layers.0.self_attn.q_proj');
    const rendered = performance.now() - started;

    const grown = process.memoryUsage().rss - rssBefore;
    // The largest tensor (embed_tokens, 128256 × 4096 bf16) alone is 1 GB; the host holds only headers.
    assert.ok(grown < 100 * MiB, `the extension host grew by ${(grown / MiB).toFixed(0)} MiB opening a ${(checkpointBytes / 1e9).toFixed(1)} GB checkpoint`);
    // Once more, with the webview machinery warm (the first webview of a session pays for loading it).
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await waitFor('the inspector to close', () => (quantlens.inspectors().some((i) => i.path === index) ? undefined : true));
    const again = performance.now();
    await vscode.commands.executeCommand('quantlens.openCheckpoint', vscode.Uri.file(folder));
    await waitFor('the 8B-shaped checkpoint in the inspector again', () => quantlens.inspectors().find((i) => i.path === index)?.rendered);
    const warmPaint = performance.now() - again;
    const warmTiming = quantlens.inspectors().find((i) => i.path === index)!.rendered!.timing;
    console.log(`      8B-shaped checkpoint, opened again: first paint ${warmPaint.toFixed(0)} ms (page script started ${warmTiming.scriptStart.toFixed(0)} ms after its navigation, init at ${warmTiming.init.toFixed(0)}, rendered at ${warmTiming.firstRender.toFixed(0)})`);

    // Exact statistics of the largest tensor (1 GB of bf16), streamed by the analysis worker in the same
    // process: the host's memory must stay flat while it runs.
    const embed = 'model.embed_tokens.weight';
    assert.ok(quantlens.revealInInspector(index, { table: 'tensors', filter: `re:^${embed.replace(/\./g, '\\.')}$`, scrollTo: 0, open: { compute: true } }));
    const detail = await waitFor(`the statistics of ${embed}`, () => {
      const d = quantlens.inspectors().find((i) => i.path === index)?.rendered?.tensorDetail;
      return d?.tensor === embed && d.stats ? d : undefined;
    }, 120_000);
    // The sparse file reads as zeros: 128256 × 4096 of them, every one counted.
    assert.equal(detail.stats!.values.count, 128256 * 4096);
    assert.deepEqual([detail.stats!.values.min, detail.stats!.values.max, detail.stats!.values.absMax], [0, 0, 0]);
    const grownWithStats = process.memoryUsage().rss - rssBefore;
    assert.ok(grownWithStats < 150 * MiB, `the extension host grew by ${(grownWithStats / MiB).toFixed(0)} MiB computing statistics of a 1 GB tensor`);
    console.log(`      statistics of ${embed} (1.05 GB): host RSS +${(grownWithStats / MiB).toFixed(1)} MiB over the start`);
    console.log(`      8B-shaped checkpoint (${(checkpointBytes / 1e9).toFixed(1)} GB, 5 shards): first paint ${firstPaint.toFixed(0)} ms (${phases}), layer table ${rendered.toFixed(0)} ms, host RSS +${(grown / MiB).toFixed(1)} MiB`);
  });
});
