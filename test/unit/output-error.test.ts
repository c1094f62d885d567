/**
 * Output-space error (src/core/inspect/outputError.ts): tr(E H Eᵀ) with H = XᵀX against ‖(W − Q)X‖² computed
 * explicitly in float64 from random activations X; and end to end, a round-to-nearest quantization of the
 * shipped example measured against its original with a calibration statistics file (H = 2/n XᵀX as F32,
 * written and read back) gives, per layer, the ratio ‖(W − Q)X‖ / ‖WX‖ that the explicit product gives.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { decodeToFloat32 } from '../../src/core/dtypes/convert';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { CalibrationFile } from '../../src/core/jobs/calibrationFile';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { dequantizeStoredWeight } from '../../src/core/quant/storedWeights';
import { outputErrors, quadraticForms, quadraticFormsGemm } from '../../src/core/inspect/outputError';
import { rng } from '../helpers/random';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

function normals(seed: number): () => number {
  const random = rng(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(random(), 1e-12))) * Math.cos(2 * Math.PI * random());
}

/** X as [tokens, cols] float64, with channels of different scales (as activations have). */
function activations(tokens: number, cols: number, seed: number): Float64Array {
  const normal = normals(seed);
  const scale = Array.from({ length: cols }, () => Math.exp(normal()));
  return Float64Array.from({ length: tokens * cols }, (_, i) => normal() * scale[i % cols]!);
}

/** XᵀX, [cols, cols] float64. */
function gram(x: Float64Array, tokens: number, cols: number): Float64Array {
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) h[i * cols + j]! += x[t * cols + i]! * x[t * cols + j]!;
  return h;
}

/** ‖A Xᵀ‖_F² for A [rows, cols] and X [tokens, cols], explicitly, in float64. */
function outputNormSq(a: ArrayLike<number>, rows: number, cols: number, x: Float64Array, tokens: number): number {
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < tokens; t++) {
      let y = 0;
      for (let j = 0; j < cols; j++) y += a[r * cols + j]! * x[t * cols + j]!;
      sum += y * y;
    }
  }
  return sum;
}

describe('output-space quantization error (tr(E H Eᵀ))', function () {
  this.timeout(120_000);

  it('tr(E H Eᵀ) and tr(W H Wᵀ) with H = XᵀX equal ‖(W − Q)X‖² and ‖WX‖² computed from X', () => {
    for (const [rows, cols, tokens] of [[5, 7, 11], [9, 16, 40], [1, 3, 2]] as const) {
      const normal = normals(rows * 100 + cols);
      const w = Float32Array.from({ length: rows * cols }, normal);
      const q = Float32Array.from(w, (v) => Math.round(v * 4) / 4);
      const x = activations(tokens, cols, cols);
      const { error, reference } = quadraticForms(w, q, rows, cols, gram(x, tokens, cols));
      const e = Float64Array.from(w, (v, i) => v - q[i]!);
      const explicitError = outputNormSq(e, rows, cols, x, tokens);
      const explicitReference = outputNormSq(w, rows, cols, x, tokens);
      assert.ok(explicitError > 0);
      assert.ok(Math.abs(error - explicitError) <= 1e-10 * explicitError, `${rows}x${cols}: ${error} vs ${explicitError}`);
      assert.ok(Math.abs(reference - explicitReference) <= 1e-10 * explicitReference, `${rows}x${cols}: ${reference} vs ${explicitReference}`);
    }
  });

  it('the Gemm form the quantize job uses (slabs of rows through onnxruntime, float64) equals ‖(W − Q)X‖² and ‖WX‖² from X', async () => {
    // 300 × 160² = 7.7 M multiply-adds: past ORT_MIN_MACS, so onnxruntime's Gemm runs, in more than one slab.
    for (const [rows, cols, tokens] of [[300, 160, 64], [3, 40, 9]] as const) {
      const normal = normals(rows + cols);
      const w = Float32Array.from({ length: rows * cols }, normal);
      const q = Float32Array.from(w, (v) => Math.round(v * 8) / 8);
      const x = activations(tokens, cols, rows);
      const h = Float32Array.from(gram(x, tokens, cols));
      const { error, reference } = await quadraticFormsGemm(w, q, rows, cols, h);
      const e = Float64Array.from(w, (v, i) => v - q[i]!);
      // H is rounded to float32 for both: compare with the explicit products over the same H (the loops'
      // sums over float32 H) and, loosely, with X itself.
      const loops = quadraticForms(w, q, rows, cols, h);
      assert.ok(Math.abs(error - loops.error) <= 1e-9 * loops.error, `${rows}x${cols}: ${error} vs ${loops.error}`);
      assert.ok(Math.abs(reference - loops.reference) <= 1e-9 * loops.reference, `${rows}x${cols}: ${reference} vs ${loops.reference}`);
      const explicitError = outputNormSq(e, rows, cols, x, tokens);
      assert.ok(Math.abs(error - explicitError) <= 1e-5 * explicitError, `${rows}x${cols}: ${error} vs ${explicitError} from X`);
    }
  });

  it('per layer of a quantized example: ‖(W − Q)X‖ / ‖WX‖ from the statistics file equals the explicit ratio', async () => {
    if (!existsSync(join(example(), 'model.safetensors.index.json'))) throw new Error('the example checkpoint is missing: run `npm run example` first');
    const tmp = tempDir();
    const original = await Checkpoint.open(example());
    try {
      const out = join(tmp.path, 'w4a16-rtn');
      await runQuantizeJob({ model: example(), out, scheme: 'w4a16-rtn' });
      // The output names its source, which the inspector's Compare with Original… offers first.
      assert.deepEqual(JSON.parse(readFileSync(join(out, 'quantlens.json'), 'utf8')), { source_model: example(), calibration: null });
      const quantized = await Checkpoint.open(out);
      const { layerMap } = await analyzeCheckpoint(quantized, out);
      const modules = layerMap.modules.filter((m) => m.state === 'quantized');
      assert.equal(modules.length, 28);
      // One X per input width (layers reading the same input share it, as in a real calibration).
      const tokens = 48;
      const inputs = new Map<number, Float64Array>();
      const tensors = [];
      const shape = (name: string) => original.tensor(`${name}.weight`).shape as [number, number];
      for (const m of modules) {
        const cols = shape(m.name)[1];
        if (!inputs.has(cols)) inputs.set(cols, activations(tokens, cols, cols));
        const h = gram(inputs.get(cols)!, tokens, cols);
        const stored = Float32Array.from(h, (v) => (2 / tokens) * v);
        tensors.push({ name: `${m.name}.hessian`, dtype: 'F32' as const, shape: [cols, cols], data: new Uint8Array(stored.buffer) });
      }
      // One layer without a Hessian: reported as skipped, not measured.
      const missing = modules[3]!.name;
      const statsPath = join(tmp.path, 'calibration.safetensors');
      await writeSafetensors(statsPath, tensors.filter((t) => t.name !== `${missing}.hessian`), { metadata: { 'quantlens.calibration': '1', dataset: 'random.jsonl', samples: '2', seq_len: '24', tokens: String(tokens) } });
      const calibration = await CalibrationFile.open(statsPath);
      try {
        const report = await outputErrors(quantized, layerMap, original, calibration, { blockElements: 1000 });
        assert.equal(report.tokens, tokens);
        assert.equal(report.samples, 2);
        assert.equal(report.seqLen, 24);
        assert.equal(report.dataset, 'random.jsonl');
        assert.equal(report.layers.length, 28);
        assert.match(report.layers.find((l) => l.module === missing)!.skipped!, /no Hessian/);
        for (const m of modules.filter((m) => m.name !== missing).slice(0, 6)) {
          const [rows, cols] = shape(m.name);
          const w = decodeToFloat32(original.tensor(`${m.name}.weight`).dtype, await original.readTensorBytes(`${m.name}.weight`));
          const { weight: q } = await dequantizeStoredWeight(quantized, m, { declared: m.declared?.scheme?.weights });
          const e = Float64Array.from(w, (v, i) => v - q[i]!);
          const x = inputs.get(cols)!;
          const expected = Math.sqrt(outputNormSq(e, rows, cols, x, tokens) / outputNormSq(w, rows, cols, x, tokens));
          const got = report.layers.find((l) => l.module === m.name)!;
          // The Hessian is stored as float32: agreement to float32 precision of its entries.
          assert.ok(Math.abs(got.relative! - expected) <= 1e-5 * expected, `${m.name}: ${got.relative} vs ${expected}`);
          assert.ok(Math.abs(got.sqnrDb! + 20 * Math.log10(expected)) < 1e-3);
        }
        assert.ok(Number.isFinite(report.medianSqnrDb));
      } finally {
        await calibration.close();
        await quantized.close();
      }
    } finally {
      await original.close();
      tmp.cleanup();
    }
  });
});
