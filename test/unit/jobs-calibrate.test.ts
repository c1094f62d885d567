/**
 * The calibrate job on the shipped example with the shipped WikiText-2 sample: the statistics file's layout
 * (every linear of every block, Hessians stored once per shared input), block 0's statistics against a float64
 * computation written here (embedding rows → RMSNorm → the q/k/v input), and the whole loop: dataset →
 * calibration → FP8 static and GPTQ checkpoints through runJob, with the temporary statistics removed.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { runCalibrationJob, sharedInputOwner } from '../../src/core/jobs/calibrate';
import { CalibrationFile } from '../../src/core/jobs/calibrationFile';
import { runJob } from '../../src/core/jobs/runJob';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { decodeToFloat64 } from '../../src/core/dtypes/convert';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { defaultCalibrationDataset, loadCalibrationDataset } from '../../src/core/runtime/dataset';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');
const SAMPLES = 3;
const SEQ = 32;

async function tensor64(checkpoint: Checkpoint, name: string): Promise<Float64Array> {
  return decodeToFloat64(checkpoint.tensor(name).dtype, await checkpoint.readTensorBytes(name));
}

describe('jobs: calibration', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let stats: string;
  before(async () => {
    if (!existsSync(join(example(), 'config.json'))) throw new Error('the example checkpoint is missing (npm test writes it first)');
    tmp = tempDir();
    stats = join(tmp.path, 'stats.safetensors');
    await runCalibrationJob({ model: example(), out: stats, dataset: defaultCalibrationDataset(), samples: SAMPLES, seqLen: SEQ, hessians: true, graphCacheDir: tmp.path });
  });
  after(() => tmp.cleanup());

  it('writes absmax, channel absmax for every linear and one Hessian per distinct input', async () => {
    const file = await Checkpoint.open(stats);
    try {
      const names = new Set(file.tensors.map((t) => t.name));
      for (let l = 0; l < 4; l++) {
        for (const m of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
          const module = `model.layers.${l}.${m}`;
          assert.ok(names.has(`${module}.input_absmax`), module);
          assert.ok(names.has(`${module}.input_channel_absmax`), module);
          assert.equal(names.has(`${module}.hessian`), sharedInputOwner(module) === module, module);
        }
      }
      assert.deepEqual(file.tensor('model.layers.3.mlp.down_proj.hessian').shape, [768, 768]);
      assert.equal(file.metadata.samples, String(SAMPLES));
      assert.equal(file.metadata.tokens, String(SAMPLES * SEQ));
    } finally {
      await file.close();
    }
    const calibration = await CalibrationFile.open(stats);
    try {
      const k = await calibration.hessian('model.layers.1.self_attn.k_proj');
      const q = await calibration.hessian('model.layers.1.self_attn.q_proj');
      assert.ok(k && q && k.length === 256 * 256);
      assert.deepEqual(k, q, 'k_proj reads the Hessian it shares with q_proj');
      assert.ok((await calibration.hessian('model.layers.1.mlp.up_proj'))!.length === 256 * 256);
      for (let l = 0; l < 4; l++) assert.ok(calibration.inputAbsMax(`model.layers.${l}.mlp.down_proj`)! > 0);
    } finally {
      await calibration.close();
    }
  });

  it("block 0's q/k/v input statistics equal a float64 RMSNorm of the embedding rows", async () => {
    // The same samples, tokenized again here (the dataset code is tested on its own).
    const tokenizer = await ModelTokenizer.load(example());
    const dataset = await loadCalibrationDataset(defaultCalibrationDataset(), tokenizer, { samples: SAMPLES, seqLen: SEQ });
    const model = await Checkpoint.open(example());
    const config = JSON.parse(await fs.readFile(join(example(), 'config.json'), 'utf8')) as { hidden_size: number; rms_norm_eps: number };
    const H = config.hidden_size;
    const gamma = await tensor64(model, 'model.layers.0.input_layernorm.weight');
    const embedding = model.tensor('model.embed_tokens.weight');
    const rowBytes = embedding.byteLength / embedding.shape[0]!;
    let absmax = 0;
    const channel = new Float64Array(H);
    const xtx = new Float64Array(H * H);
    let n = 0;
    for (const sample of dataset.samples) {
      for (let t = 0; t < sample.inputIds.length; t++) {
        if (!sample.attentionMask[t]) continue;
        const id = sample.inputIds[t]!;
        const row = decodeToFloat64(embedding.dtype, await model.readTensorRange('model.embed_tokens.weight', id * rowBytes, (id + 1) * rowBytes));
        let ms = 0;
        for (let i = 0; i < H; i++) ms += row[i]! * row[i]!;
        const inv = 1 / Math.sqrt(ms / H + config.rms_norm_eps);
        const x = new Float64Array(H);
        for (let i = 0; i < H; i++) {
          x[i] = row[i]! * inv * gamma[i]!;
          absmax = Math.max(absmax, Math.abs(x[i]!));
          channel[i] = Math.max(channel[i]!, Math.abs(x[i]!));
        }
        for (let i = 0; i < H; i++) for (let j = 0; j < H; j++) xtx[i * H + j]! += x[i]! * x[j]!;
        n++;
      }
    }
    await model.close();
    assert.equal(n, SAMPLES * SEQ);
    const file = await Checkpoint.open(stats);
    try {
      const got = await tensor64(file, 'model.layers.0.self_attn.v_proj.input_absmax');
      assert.ok(Math.abs(got[0]! - absmax) <= 1e-5 * absmax, `absmax ${got[0]} vs ${absmax}`);
      const gotChannel = await tensor64(file, 'model.layers.0.self_attn.q_proj.input_channel_absmax');
      for (let i = 0; i < H; i++) assert.ok(Math.abs(gotChannel[i]! - channel[i]!) <= 1e-5 * absmax, `channel ${i}`);
      const hessian = await tensor64(file, 'model.layers.0.self_attn.q_proj.hessian');
      let diff = 0;
      let norm = 0;
      for (let k = 0; k < H * H; k++) {
        const want = (2 / n) * xtx[k]!;
        diff += (hessian[k]! - want) ** 2;
        norm += want ** 2;
      }
      assert.ok(Math.sqrt(diff / norm) < 1e-5, `Hessian relative error ${Math.sqrt(diff / norm)}`);
    } finally {
      await file.close();
    }
  });

  for (const preset of ['fp8', 'w4a16'] as const) {
    it(`runs ${preset} end to end from the dataset and removes its temporary statistics`, async () => {
      const out = join(tmp.path, preset);
      const result = await runJob({ kind: 'quantize', model: example(), out, preset, calibration: { kind: 'dataset', path: defaultCalibrationDataset(), samples: 2, seqLen: 16 } }, { graphCacheDir: tmp.path });
      assert.equal(result.kind, 'quantize');
      assert.equal(result.kind === 'quantize' && result.calibration?.tokens, 32);
      const config = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8')) as { quantization_config: { format: string } };
      assert.equal(config.quantization_config.format, preset === 'fp8' ? 'float-quantized' : 'pack-quantized');
      const leftovers = (await fs.readdir(tmp.path)).filter((name) => name.includes('.calibration.') || name.startsWith('calibrate-'));
      assert.deepEqual(leftovers, []);
    });
  }
});
