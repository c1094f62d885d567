/**
 * Round trip on the shipped example: quantize (the CLI's job) → the inspector recognises the scheme →
 * the dequantized weights equal the inspector's simulation of the same scheme, layer for layer, and the
 * error numbers agree with a float64 computation done here from the raw bytes.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { runQuantizeJob, JobCancelled, SchemeName } from '../../src/core/jobs/quantize';
import { compareWithOriginal, simulateErrors, SimulationName } from '../../src/core/inspect/error';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

/** bf16 bytes → float64 values, decoded here (not with src/). */
function bf16Values(bytes: Uint8Array): Float64Array {
  const u16 = new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  return Float64Array.from(u16, (b) => {
    u32[0] = b << 16;
    return f32[0]!;
  });
}

describe('quantize → inspect round trip on the shipped example', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  before(function () {
    if (!existsSync(join(example(), 'model.safetensors.index.json'))) {
      throw new Error(`the example checkpoint is missing: run \`node out/scripts/make-example.js examples/tiny-llama\` (npm test does)`);
    }
    tmp = tempDir();
  });
  after(() => tmp.cleanup());

  const cases: [SchemeName, SimulationName | undefined, string][] = [
    ['w8a8', 'int8-channel', 'INT8 weights per channel, INT8 activations per token (dynamic), lm_head not quantized'],
    ['w4a16-rtn', 'int4-g128', 'INT4 weights, group 128, symmetric (weight-only), lm_head not quantized'],
    ['fp8-dynamic', undefined, 'FP8 weights per channel, FP8 activations per token (dynamic), lm_head not quantized'],
  ];

  for (const [scheme, simulation, description] of cases) {
    it(`${scheme}: recognised as "${description}"; dequantized weights match the simulation`, async () => {
      const out = join(tmp.path, scheme);
      const summary = await runQuantizeJob({ model: example(), out, scheme });
      assert.equal(summary.quantizedLayers, 28);
      assert.deepEqual(summary.ignoredLayers, ['lm_head']);
      const quantized = await Checkpoint.open(out);
      const original = await Checkpoint.open(example());
      try {
        const { summary: s, layerMap } = await analyzeCheckpoint(quantized, out);
        assert.equal(s.scheme.description, description);
        assert.deepEqual(layerMap.modules.flatMap((m) => m.issues), []);
        const compared = await compareWithOriginal(quantized, layerMap, original);
        assert.equal(compared.layers.length, 28);
        for (const layer of compared.layers) {
          assert.equal(layer.skipped, undefined);
          const floor = scheme === 'w4a16-rtn' ? 0.95 : 0.999;
          assert.ok(layer.metrics.cosine > floor, `${layer.module}: cosine ${layer.metrics.cosine}`);
        }
        if (simulation) {
          const { layerMap: originalMap } = await analyzeCheckpoint(original, example());
          const simulated = await simulateErrors(original, originalMap, simulation);
          const byModule = new Map(simulated.layers.map((l) => [l.module, l]));
          for (const layer of compared.layers) {
            const sim = byModule.get(layer.module)!;
            // The same RTN on the same weights: identical reconstructions, hence identical error sums.
            assert.equal(layer.metrics.errNormSq, sim.metrics.errNormSq, layer.module);
            assert.equal(layer.metrics.maxAbsError, sim.metrics.maxAbsError, layer.module);
          }
        }
      } finally {
        await quantized.close();
        await original.close();
      }
    });
  }

  it('w8a8 error numbers agree with a float64 computation from the raw bytes', async () => {
    const out = join(tmp.path, 'w8a8');
    const quantized = await Checkpoint.open(out);
    const original = await Checkpoint.open(example());
    try {
      const { layerMap } = await analyzeCheckpoint(quantized, out);
      const name = 'model.layers.0.mlp.down_proj';
      const report = await compareWithOriginal(quantized, layerMap, original, { modules: [name] });
      const q = await quantized.readTensorBytes(`${name}.weight`);
      const scale = bf16Values(await quantized.readTensorBytes(`${name}.weight_scale`));
      const w = bf16Values(await original.readTensorBytes(`${name}.weight`));
      const [rows, cols] = quantized.tensor(`${name}.weight`).shape as [number, number];
      let err = 0;
      let ref = 0;
      let maxAbs = 0;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const value = ((q[r * cols + c]! << 24) >> 24) * scale[r]!;
          const e = w[r * cols + c]! - value;
          err += e * e;
          ref += w[r * cols + c]! ** 2;
          maxAbs = Math.max(maxAbs, Math.abs(e));
        }
      }
      const m = report.layers[0]!.metrics;
      assert.ok(Math.abs(m.relativeFrobenius - Math.sqrt(err / ref)) < 1e-9, `${m.relativeFrobenius} vs ${Math.sqrt(err / ref)}`);
      assert.ok(Math.abs(m.sqnrDb - 10 * Math.log10(ref / err)) < 1e-6);
      assert.ok(Math.abs(m.maxAbsError - maxAbs) < 1e-9);
    } finally {
      await quantized.close();
      await original.close();
    }
  });

  it('the heavy-tailed down_proj of layer 0 is the worst layer for INT4 and INT8, and INT8 suggests ignoring it', async () => {
    const original = await Checkpoint.open(example());
    try {
      const { layerMap } = await analyzeCheckpoint(original, example());
      const int4 = await simulateErrors(original, layerMap, 'int4-g128');
      assert.equal(int4.ranking[0], 'model.layers.0.mlp.down_proj');
      const int8 = await simulateErrors(original, layerMap, 'int8-channel');
      assert.equal(int8.ranking[0], 'model.layers.0.mlp.down_proj');
      assert.ok(int8.suggestedIgnore.includes('model.layers.0.mlp.down_proj'), JSON.stringify(int8.suggestedIgnore));
      assert.ok(int8.suggestedIgnore.length <= 3, 'only outliers are suggested');
    } finally {
      await original.close();
    }
  });

  it('a cancelled job leaves no output and no temporary folder, and the input is untouched', async () => {
    const out = join(tmp.path, 'cancelled');
    const before = await fs.stat(join(example(), 'model-00001-of-00002.safetensors'));
    const controller = new AbortController();
    await assert.rejects(
      runQuantizeJob({ model: example(), out, scheme: 'w8a8', signal: controller.signal, onProgress: ({ fraction }) => fraction > 0.3 && controller.abort() }),
      JobCancelled,
    );
    assert.equal(existsSync(out), false);
    assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.includes('cancelled')), []);
    const after = await fs.stat(join(example(), 'model-00001-of-00002.safetensors'));
    assert.equal(after.mtimeMs, before.mtimeMs);
  });

  it('refuses an existing output folder, an already-quantized input, and static schemes without calibration', async () => {
    await assert.rejects(runQuantizeJob({ model: example(), out: join(tmp.path, 'w8a8'), scheme: 'w8a8' }), /already exists/);
    await assert.rejects(runQuantizeJob({ model: join(tmp.path, 'w8a8'), out: join(tmp.path, 'again'), scheme: 'w8a8' }), /already quantized/);
    await assert.rejects(runQuantizeJob({ model: example(), out: join(tmp.path, 'fp8'), scheme: 'fp8' }), /calibration/);
    await assert.rejects(runQuantizeJob({ model: example(), out: join(tmp.path, 'gptq'), scheme: 'w4a16' }), /Hessians/);
  });
});
