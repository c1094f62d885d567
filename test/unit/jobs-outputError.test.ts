/**
 * The output error a calibrated (one-pass) quantize job measures as it writes each layer and records in its
 * output's quantlens.json (jobs/sequential.ts, inspect/jobOutputError.ts), on a small random Llama with the
 * example's tokenizer and the shipped WikiText-2 sample:
 *   (a) with float propagation every recorded ‖(W − Q)X‖ / ‖WX‖ equals the inspector's computation from a
 *       statistics file of the same calibration (`calibrate --hessians`, outputError.ts) and an independent
 *       float64 recomputation in this test from that file's Hessians, the original weights and the output's
 *       dequantized weights;
 *   (b) `quantlens inspect --error --compare ORIGINAL --json` on the output carries the output error without
 *       --calib-stats (labelled as measured by the job); compared with another folder it does not.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { runJob } from '../../src/core/jobs/runJob';
import { CalibrationFile } from '../../src/core/jobs/calibrationFile';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { dequantizeStoredWeight } from '../../src/core/quant/storedWeights';
import { decodeToFloat32 } from '../../src/core/dtypes/convert';
import { outputErrors } from '../../src/core/inspect/outputError';
import type { DType } from '../../src/core/dtypes/dtype';
import { randomWeights, writeTinyCheckpoint } from '../helpers/llamaReference';
import { repoRoot, tempDir } from '../helpers/paths';
import { copyExampleTokenizer, tinyConfigWithExampleVocabulary } from '../helpers/exampleVocabulary';

const SAMPLES = 3;
const SEQ = 24;
const LAYERS = 2;
const MODULES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

interface Recorded {
  source_model: string;
  calibration: { tokens: string | number };
  output_error?: { measured_by: string; tokens: number; layers: Record<string, { relative: number; sqnr_db: number | null }> };
}

/** sqrt(Σ_r e_r H e_rᵀ / Σ_r w_r H w_rᵀ) in float64, written out directly (E·H, then the rows' dot products). */
function referenceRelative(w: Float32Array, q: Float32Array, rows: number, cols: number, h: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < cols; i++) {
      let eh = 0;
      let wh = 0;
      for (let j = 0; j < cols; j++) {
        eh += (w[r * cols + j]! - q[r * cols + j]!) * h[j * cols + i]!;
        wh += w[r * cols + j]! * h[j * cols + i]!;
      }
      num += eh * (w[r * cols + i]! - q[r * cols + i]!);
      den += wh * w[r * cols + i]!;
    }
  }
  return Math.sqrt(num / den);
}

describe('jobs: output error measured by the one-pass quantize job', function () {
  this.timeout(600_000);
  let tmp: ReturnType<typeof tempDir>;
  let model: string;
  const dataset = defaultCalibrationDataset();

  before(async () => {
    tmp = tempDir();
    model = join(tmp.path, 'model');
    const config = await tinyConfigWithExampleVocabulary(LAYERS);
    await writeTinyCheckpoint(model, config, randomWeights(config, 11));
    await copyExampleTokenizer(model);
  });
  after(() => tmp.cleanup());

  it('w4a16 --calib: the recorded output errors equal the computation from a statistics file of the same calibration; inspect --error shows them without --calib-stats', async () => {
    const graphs = join(tmp.path, 'graphs');
    await fs.mkdir(graphs, { recursive: true });
    const stats = join(tmp.path, 'stats.safetensors');
    await runJob({ kind: 'calibrate', model, out: stats, dataset, samples: SAMPLES, seqLen: SEQ, hessians: true }, { graphCacheDir: graphs });
    const out = join(tmp.path, 'w4a16');
    await runJob({ kind: 'quantize', model, out, preset: 'w4a16', propagation: 'float', calibration: { kind: 'dataset', path: dataset, samples: SAMPLES, seqLen: SEQ } }, { graphCacheDir: graphs });

    const record = JSON.parse(await fs.readFile(join(out, 'quantlens.json'), 'utf8')) as Recorded;
    const measured = record.output_error;
    assert.ok(measured, 'quantlens.json has no output_error');
    assert.equal(measured.measured_by, 'quantize job');
    assert.equal(measured.tokens, SAMPLES * SEQ);
    const expectedModules = Array.from({ length: LAYERS }, (_, l) => MODULES.map((m) => `model.layers.${l}.${m}`)).flat().sort();
    assert.deepEqual(Object.keys(measured.layers).sort(), expectedModules);

    const quantized = await Checkpoint.open(out);
    const original = await Checkpoint.open(model);
    const calibration = await CalibrationFile.open(stats);
    try {
      const layerMap = (await analyzeCheckpoint(quantized, out)).layerMap;
      const fromFile = await outputErrors(quantized, layerMap, original, calibration);
      assert.equal(fromFile.layers.length, expectedModules.length);
      for (const layer of fromFile.layers) {
        const recorded = measured.layers[layer.module]!;
        assert.ok(layer.relative !== undefined && layer.relative > 1e-4 && layer.relative < 0.5, `${layer.module}: output error ${layer.relative} from the statistics file`);
        assert.ok(Math.abs(recorded.relative - layer.relative) <= 1e-5 * layer.relative, `${layer.module}: recorded ${recorded.relative}, from the statistics file ${layer.relative}`);
        assert.ok(Math.abs(recorded.sqnr_db! - layer.sqnrDb!) < 1e-4, `${layer.module}: recorded SQNR ${recorded.sqnr_db} dB, from the statistics file ${layer.sqnrDb} dB`);
        // Independent float64 recomputation from the file's Hessian, the original and the written weights.
        const module = layerMap.modules.find((m) => m.name === layer.module)!;
        const q = (await dequantizeStoredWeight(quantized, module, {})).weight;
        const info = original.tensor(`${layer.module}.weight`);
        const w = decodeToFloat32(info.dtype as DType, await original.readTensorBytes(info.name));
        const [rows, cols] = info.shape as [number, number];
        const h = (await calibration.hessian(layer.module))!;
        const reference = referenceRelative(w, q, rows, cols, h);
        assert.ok(Math.abs(recorded.relative - reference) <= 1e-5 * reference, `${layer.module}: recorded ${recorded.relative}, float64 reference ${reference}`);
      }
    } finally {
      await calibration.close();
      await original.close();
      await quantized.close();
    }

    // The CLI, as a user runs it: no statistics file, the output error is there, labelled as the job's.
    const cli = join(repoRoot(), 'bin', 'quantlens.js');
    const inspect = (compare: string) => JSON.parse(execFileSync(process.execPath, [cli, 'inspect', out, '--error', '--compare', compare, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { errors: { outputError?: { measuredBy?: string; tokens?: number; layers: { module: string; relative?: number }[] } }[] };
    const report = inspect(model).errors[0]!.outputError;
    assert.ok(report, 'inspect --error --compare gave no output error without --calib-stats');
    assert.equal(report.measuredBy, 'job');
    assert.equal(report.tokens, SAMPLES * SEQ);
    for (const layer of report.layers) assert.equal(layer.relative, measured.layers[layer.module]!.relative, layer.module);
    const text = execFileSync(process.execPath, [cli, 'inspect', out, '--error', '--compare', model], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    assert.match(text, new RegExp(`output error ‖\\(W−Q\\)X‖/‖WX‖ on ${SAMPLES * SEQ} calibration tokens, measured by the job`));
    // Another original (a copy elsewhere): the recorded numbers are not its own, so none are shown.
    const copy = join(tmp.path, 'copy');
    await fs.cp(model, copy, { recursive: true });
    assert.equal(inspect(copy).errors[0]!.outputError, undefined);
  });
});
