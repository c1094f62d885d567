/**
 * FP8 static (the Llama-3-8B-Instruct-FP8 scheme) through the documented calibration interface: activation
 * absmax per linear layer, computed here from synthetic activations, written to a calibration statistics
 * file, consumed by the quantize job; input_scale must be absmax / 448 rounded to bf16.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { CalibrationFile } from '../../src/core/jobs/calibrationFile';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { rng } from '../helpers/random';
import { repoRoot, tempDir } from '../helpers/paths';
import { roundToBf16 as bf16 } from '../helpers/weights';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

/** float → bf16 (round to nearest even) → float, computed here. */

describe('FP8 static quantization from calibration statistics', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    if (!existsSync(join(example(), 'config.json'))) throw new Error('the example checkpoint is missing (npm test writes it first)');
    tmp = tempDir();
  });
  after(() => tmp.cleanup());

  it('writes input_scale = absmax/448 per layer and is recognised as FP8 static', async () => {
    const original = await Checkpoint.open(example());
    const { layerMap } = await analyzeCheckpoint(original, example());
    await original.close();
    // Synthetic heavy-tailed activations per layer; the statistic is their absolute maximum.
    const random = rng(42);
    const absmax = new Map<string, number>();
    for (const module of layerMap.modules) {
      if (module.name === 'lm_head') continue;
      let max = 0;
      for (let i = 0; i < 4096; i++) max = Math.max(max, Math.abs((random() - 0.5) / (random() + 0.05)));
      absmax.set(module.name, Math.fround(max));
    }
    const statsPath = join(tmp.path, 'calibration.safetensors');
    await writeSafetensors(
      statsPath,
      [...absmax].map(([module, value]) => ({ name: `${module}.input_absmax`, dtype: 'F32' as const, shape: [], data: new Uint8Array(Float32Array.of(value).buffer) })),
      { metadata: { 'quantlens.calibration': '1' } },
    );
    const calibration = await CalibrationFile.open(statsPath);
    const out = join(tmp.path, 'fp8');
    try {
      await runQuantizeJob({ model: example(), out, scheme: 'fp8', calibration });
    } finally {
      await calibration.close();
    }
    const quantized = await Checkpoint.open(out);
    try {
      const { summary } = await analyzeCheckpoint(quantized, out);
      assert.equal(summary.scheme.description, 'FP8 weights and activations, per-tensor static scales, lm_head not quantized');
      for (const [module, value] of absmax) {
        const tensor = quantized.tensor(`${module}.input_scale`);
        assert.equal(tensor.dtype, 'BF16');
        const bytes = await quantized.readTensorBytes(tensor.name);
        const stored = new Float32Array(new Uint32Array([new Uint16Array(bytes.slice().buffer)[0]! << 16]).buffer)[0]!;
        assert.equal(stored, bf16(value / 448), module);
      }
    } finally {
      await quantized.close();
    }
  });

  it('stops in the pre-flight check when a layer has no statistics, naming it', async () => {
    const statsPath = join(tmp.path, 'partial.safetensors');
    await writeSafetensors(statsPath, [{ name: 'model.layers.0.self_attn.q_proj.input_absmax', dtype: 'F32', shape: [], data: new Uint8Array(Float32Array.of(1).buffer) }]);
    const calibration = await CalibrationFile.open(statsPath);
    try {
      await assert.rejects(runQuantizeJob({ model: example(), out: join(tmp.path, 'x'), scheme: 'fp8', calibration }), /model\.layers\.0\.self_attn\.k_proj: no calibration input statistics/);
      assert.equal(existsSync(join(tmp.path, 'x')), false);
    } finally {
      await calibration.close();
    }
  });
});
