/**
 * FP8 weights expanded to float32 at graph build (the CPU and WebGPU policy, linear.ts Fp8WeightMode) run the
 * same model as the graph that dequantizes the stored F8E4M3FN weights in every run: logits equal within
 * float32 tolerance for the three FP8 layouts the quantize job writes — compressed-tensors per channel with
 * dynamic per-token activations, AutoFP8 per tensor with a static input_scale (its activation fake
 * quantization stays in the graph), and weight-only — and the weight-only one equals the float64 reference
 * on the dequantized weights. The expanded graph holds 4 bytes per FP8 weight, the stored one 1.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { DecoderGraphInfo, DecoderGraphOptions, openDecoderModel, writeDecoderGraph } from '../../src/core/runtime/llama/graph';
import { graphOptionsFor } from '../../src/core/runtime/device';
import { fp8ExpansionNote } from '../../src/core/chat/modelPair';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { CalibrationFile } from '../../src/core/jobs/calibrationFile';
import { dequantizeStoredWeight } from '../../src/core/quant/storedWeights';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { randomWeights, referenceForward, relativeError, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { tempDir } from '../helpers/paths';
import { runLogits } from '../helpers/ortLogits';

describe('runtime: FP8 weights expanded to float32 at build', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  const config = tinyConfig({ hidden_size: 128, intermediate_size: 256, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 64, vocab_size: 40 });
  const weights = randomWeights(config, 17);
  const tokens = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7];
  /** Elements of the 14 quantized projections (2 blocks × 7). */
  const fp8Elements = 2 * (4 * 128 * 64 + 64 * 128 + 3 * 128 * 256);

  before(async () => {
    tmp = tempDir();
    await writeTinyCheckpoint(join(tmp.path, 'float'), config, weights);
  });
  after(() => tmp.cleanup());

  async function build(folder: string, name: string, options: DecoderGraphOptions): Promise<{ modelPath: string; dataBytes: number; info: DecoderGraphInfo }> {
    const model = await openDecoderModel(folder);
    const modelPath = join(tmp.path, name, 'model.onnx');
    let info: DecoderGraphInfo;
    try {
      info = await writeDecoderGraph(model, modelPath, { maxSequenceLength: 32, ...options });
      assert.equal(info.linearKinds['model.layers.1.mlp.down_proj'], 'fp8');
    } finally {
      await model.checkpoint.close();
    }
    return { modelPath, dataBytes: (await fs.stat(`${modelPath}.data`)).size, info };
  }

  /** Static FP8 needs activation absmax per layer: a calibration file written here, as the documented interface takes it. */
  async function staticCalibration(): Promise<CalibrationFile> {
    const path = join(tmp.path, 'calibration.safetensors');
    const tensors = [];
    for (let l = 0; l < 2; l++) {
      for (const m of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
        tensors.push({ name: `model.layers.${l}.${m}.input_absmax`, dtype: 'F32' as const, shape: [], data: new Uint8Array(Float32Array.of(0.75 + l + m.length / 16).buffer) });
      }
    }
    await writeSafetensors(path, tensors, { metadata: { 'quantlens.calibration': '1' } });
    return CalibrationFile.open(path);
  }

  const layouts: [string, (out: string) => Promise<void>][] = [
    ['compressed-tensors per channel, dynamic per-token activations', (out) => runQuantizeJob({ model: join(tmp.path, 'float'), out, scheme: 'fp8-dynamic' }).then(() => undefined)],
    [
      'AutoFP8 per tensor, static input_scale',
      async (out) => {
        const calibration = await staticCalibration();
        try {
          await runQuantizeJob({ model: join(tmp.path, 'float'), out, scheme: 'fp8', format: 'autofp8', calibration });
        } finally {
          await calibration.close();
        }
      },
    ],
  ];
  for (const [what, quantize] of layouts) {
    it(`${what}: logits equal the per-run DequantizeLinear graph's; 4 bytes per weight instead of 1`, async () => {
      const out = join(tmp.path, what.split(' ')[0]!);
      await quantize(out);
      const stored = await build(out, `${what.split(' ')[0]}-stored`, { fp8Weights: 'stored' });
      const expanded = await build(out, `${what.split(' ')[0]}-expanded`, graphOptionsFor('cpu'));
      assert.ok(expanded.dataBytes - stored.dataBytes >= 3 * fp8Elements, `expanded ${expanded.dataBytes} bytes, stored ${stored.dataBytes}`);
      const expected = await runLogits(stored.modelPath, config, tokens);
      const actual = await runLogits(expanded.modelPath, config, tokens);
      const error = relativeError(actual, expected);
      // Same weights bit for bit; only the matrix products' summation order may differ (prepacked weights).
      assert.ok(error < 1e-5, `relative error ${error}`);
      // And the FP8 model is what runs: the float model's logits are far away.
      const floatLogits = referenceForward(config, weights, tokens).logits.flatMap((r) => [...r]);
      assert.ok(relativeError(actual, floatLogits) > 100 * Math.max(error, 1e-7));
    });
  }

  it('weight-only FP8 (no activation quantization): the expanded graph equals the float64 reference on the dequantized weights', async () => {
    const out = join(tmp.path, 'fp8-weight-only');
    await runQuantizeJob({ model: join(tmp.path, 'float'), out, scheme: 'fp8-dynamic' });
    // The same tensors declared weight-only, as compressed-tensors writes FP8 W8A16.
    const configPath = join(out, 'config.json');
    const written = JSON.parse(await fs.readFile(configPath, 'utf8'));
    for (const group of Object.values(written.quantization_config.config_groups) as Record<string, unknown>[]) group.input_activations = null;
    await fs.writeFile(configPath, JSON.stringify(written));

    const model = await openDecoderModel(out);
    const dequantized = new Map<string, Float64Array>();
    try {
      for (const module of model.layerMap.modules) {
        if (module.state !== 'quantized') continue;
        assert.equal(module.declared?.scheme?.inputActivations, undefined);
        dequantized.set(module.name, Float64Array.from((await dequantizeStoredWeight(model.checkpoint, module, { declared: module.declared?.scheme?.weights })).weight));
      }
    } finally {
      await model.checkpoint.close();
    }
    assert.equal(dequantized.size, 14);
    const expanded = await build(out, 'weight-only-expanded', graphOptionsFor('cpu'));
    const reference = referenceForward(config, weights, tokens, { weight: (m) => dequantized.get(m) }).logits.flatMap((r) => [...r]);
    const error = relativeError(await runLogits(expanded.modelPath, config, tokens), reference);
    assert.ok(error < 1e-4, `relative error ${error}`);
    // The chat's load line states the memory cost where the policy expands, and nothing where it does not.
    assert.match(fp8ExpansionNote(expanded.info, 'cpu'), /^; its 14 FP8 layers run from float32 weights expanded once when the graph was built \(4 bytes per weight in memory instead of 1: the CPU provider has no FP8 matrix kernel\)$/);
    assert.equal(fp8ExpansionNote(expanded.info, 'cuda'), '');
  });
});
