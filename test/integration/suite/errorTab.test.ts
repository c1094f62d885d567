/**
 * The Error tab of a quantized checkpoint compared with its original and calibration statistics: the
 * headline names the original, the output-space error is shown next to the weight error with its caption,
 * and the heatmap's legend shows the min and max of what it plots, equal to the core's numbers; the output of
 * a calibrated (one-pass) GPTQ job shows the output error the job measured, with no statistics file given.
 */
import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import { runQuantizeJob } from '../../../src/core/jobs/quantize';
import { Checkpoint } from '../../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../../src/core/checkpoint/summary';
import { compareWithOriginal } from '../../../src/core/inspect/error';
import { outputErrors } from '../../../src/core/inspect/outputError';
import { CalibrationFile } from '../../../src/core/jobs/calibrationFile';
import { writeSafetensors } from '../../../src/core/safetensors/writer';
import { runJob } from '../../../src/core/jobs/runJob';
import { defaultCalibrationDataset } from '../../../src/core/runtime/dataset';
import { waitFor } from './wait';

async function api(): Promise<QuantLensTestApi> {
  return vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.activate();
}

describe('Error tab: original named, output error on calibration tokens, heatmap legend', function () {
  this.timeout(300_000);
  let scratch: string;
  before(() => (scratch = mkdtempSync(join(tmpdir(), 'quantlens-error-tab-'))));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('compares a W4A16 RTN output with its recorded source and calibration statistics', async () => {
    const ext = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
    const source = join(ext.extensionPath, 'examples', 'tiny-llama');
    assert.ok(existsSync(join(source, 'model.safetensors.index.json')));
    const out = join(scratch, 'tiny-w4');
    await runQuantizeJob({ model: source, out, scheme: 'w4a16-rtn' });
    assert.equal(JSON.parse(readFileSync(join(out, 'quantlens.json'), 'utf8')).source_model, source);
    // Calibration statistics: a Hessian per input width, from deterministic pseudo-activations.
    const quantized = await Checkpoint.open(out);
    const original = await Checkpoint.open(source);
    const { layerMap } = await analyzeCheckpoint(quantized, out);
    const tokens = 32;
    const tensors = [];
    for (const m of layerMap.modules.filter((m) => m.state === 'quantized')) {
      const cols = original.tensor(`${m.name}.weight`).shape[1]!;
      const x = Float64Array.from({ length: tokens * cols }, (_, i) => Math.sin(i * 0.7 + cols) * (1 + (i % cols) / cols));
      const h = new Float32Array(cols * cols);
      for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) {
        let s = 0;
        for (let t = 0; t < tokens; t++) s += x[t * cols + i]! * x[t * cols + j]!;
        h[i * cols + j] = (2 / tokens) * s;
      }
      tensors.push({ name: `${m.name}.hessian`, dtype: 'F32' as const, shape: [cols, cols], data: new Uint8Array(h.buffer) });
    }
    const stats = join(scratch, 'calibration.safetensors');
    await writeSafetensors(stats, tensors, { metadata: { 'quantlens.calibration': '1', dataset: 'pseudo.jsonl', samples: '1', seq_len: String(tokens), tokens: String(tokens) } });
    const calibration = await CalibrationFile.open(stats);
    const weights = await compareWithOriginal(quantized, layerMap, original);
    const output = await outputErrors(quantized, layerMap, original, calibration);
    await calibration.close();
    await quantized.close();
    await original.close();

    await vscode.commands.executeCommand('quantlens.openCheckpoint', vscode.Uri.file(out));
    const file = join(out, 'model.safetensors');
    const quantlens = await api();
    await waitFor('the inspector page', () => quantlens.inspectors().find((i) => i.path === file && i.rendered)?.rendered);
    assert.ok(quantlens.showInspectorTab(file, 'error', true, { original: source, calibStats: stats }));
    const report = await waitFor('the error report', () => quantlens.inspectors().find((i) => i.path === file)?.rendered?.error, 240_000);
    assert.equal(report.summary, `${weights.scheme} vs the original tiny-llama: median SQNR ${weights.medianSqnrDb.toFixed(2)} dB; median output SQNR ${output.medianSqnrDb.toFixed(2)} dB over 28 layers`);
    assert.match(report.caption, /what round-to-nearest minimises/);
    assert.match(report.caption, new RegExp(`on ${tokens} calibration tokens of pseudo\\.jsonl: what GPTQ minimises`));
    assert.equal(report.rankingHeader.at(-1), 'output SQNR dB');
    const worst = report.ranking[0]!;
    assert.equal(worst[5], output.layers.find((l) => l.module === worst[0])!.sqnrDb!.toFixed(2));
    // The legend: the smallest and largest error power plotted, as SQNR, from the core's numbers.
    const sqnrs = weights.layers.filter((l) => !l.skipped && l.block !== undefined).map((l) => l.metrics.sqnrDb);
    const power = sqnrs.map((s) => 10 ** (-s / 10));
    const fmt = (v: number) => `SQNR ${(-10 * Math.log10(v)).toFixed(2)} dB`;
    assert.deepEqual(report.heatmap?.legend, { min: fmt(Math.min(...power)), max: fmt(Math.max(...power)) });
  });

  it("shows the output error a calibrated GPTQ job measured, from its quantlens.json, without a statistics file", async () => {
    const ext = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
    const source = join(ext.extensionPath, 'examples', 'tiny-llama');
    const dataset = defaultCalibrationDataset(ext.extensionPath);
    const out = join(scratch, 'tiny-w4-gptq');
    const graphs = join(scratch, 'graphs');
    await runJob({ kind: 'quantize', model: source, out, preset: 'w4a16', calibration: { kind: 'dataset', path: dataset, samples: 2, seqLen: 16 } }, { graphCacheDir: graphs });
    const recorded = JSON.parse(readFileSync(join(out, 'quantlens.json'), 'utf8')) as { output_error: { tokens: number; layers: Record<string, { sqnr_db: number }> } };
    assert.equal(recorded.output_error.tokens, 32);
    assert.equal(Object.keys(recorded.output_error.layers).length, 28);

    await vscode.commands.executeCommand('quantlens.openCheckpoint', vscode.Uri.file(out));
    const file = join(out, 'model.safetensors');
    const quantlens = await api();
    await waitFor('the inspector page', () => quantlens.inspectors().find((i) => i.path === file && i.rendered)?.rendered);
    assert.ok(quantlens.showInspectorTab(file, 'error', true, { original: source }));
    const report = await waitFor('the error report', () => quantlens.inspectors().find((i) => i.path === file)?.rendered?.error, 240_000);
    const sqnrs = Object.values(recorded.output_error.layers).map((l) => l.sqnr_db).sort((a, b) => a - b);
    const median = (sqnrs[13]! + sqnrs[14]!) / 2;
    assert.match(report.summary, new RegExp(`median output SQNR ${median.toFixed(2).replace('.', '\\.')} dB over 28 layers`));
    assert.match(report.caption, /on 32 calibration tokens of [^:]+, measured by the job: what GPTQ minimises/);
    assert.equal(report.rankingHeader.at(-1), 'output SQNR dB');
    assert.ok(report.ranking.length > 0);
    for (const row of report.ranking) assert.equal(row[5], recorded.output_error.layers[row[0]!]!.sqnr_db.toFixed(2), row[0]);
  });
});
