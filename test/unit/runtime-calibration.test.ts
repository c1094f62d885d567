/**
 * Calibration statistics through the production path — the calibrate job (jobs/calibrate.ts) over the block
 * pipeline (jobs/blockPipeline.ts), which the one-pass quantize job shares — on a 3-block random Llama with a
 * byte-level tokenizer and a JSONL dataset whose records have different lengths (so the batch is right-padded
 * and the padding must be masked out of every statistic), several onnxruntime runs per block (so the Hessian
 * fed back between runs is checked too).
 *
 * For EVERY block, the statistics file's per-layer input absmax, per-channel input absmax and Hessian
 * (2/n Σ x xᵀ over the real tokens) equal a float64 computation on the reference forward pass's layer inputs
 * (test/helpers/llamaReference.ts), each sample run alone without padding. A block's inputs are the previous
 * block's outputs, so this also checks every block's outputs as the pipeline propagates them.
 *
 * On the CPU, and on WebGPU (SwiftShader, skipped where it is absent): there the block graphs' attention is
 * built from plain ops (llama/attention.ts) and each run takes whole padded sequences of up to 40 tokens, more
 * than onnxruntime's WebGPU GroupQueryAttention gets right.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { runCalibrationJob, sharedInputOwner } from '../../src/core/jobs/calibrate';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { decodeToFloat64 } from '../../src/core/dtypes/convert';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { loadCalibrationDataset } from '../../src/core/runtime/dataset';
import { randomWeights, referenceForward, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { writeTinyTokenizerFolder } from '../helpers/tinyTokenizer';
import { deviceScratch } from '../helpers/swiftShader';

const LAYERS = 3;
const MODULES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
const RECORDS = [
  'The quick brown fox jumps over the lazy dog.',
  'Quantization maps floats to a few levels.',
  'Short one.',
  'Calibration data walks through each decoder block in turn, as llm-compressor does.',
  'Hessians: H = 2/n sum x x^T.',
];
const SEQ = 40;

for (const device of ['cpu', 'webgpu'] as const) {
  describe(`runtime: calibration statistics of every block (calibrate job on ${device}) against float64`, function () {
    this.timeout(300_000);
    const scratch = deviceScratch(device);

    it('absmax, per-channel absmax and Hessians of every linear of every block, over a padded batch in several runs, equal the float64 reference', async () => {
      // Vocabulary 258: the byte tokenizer's 256 bytes + <s> + </s>.
      const config = tinyConfig({ num_hidden_layers: LAYERS, vocab_size: 258, num_key_value_heads: 1, max_position_embeddings: 64 });
      const weights = randomWeights(config, 23);
      const model = join(scratch(), 'model');
      await writeTinyCheckpoint(model, config, weights);
      writeTinyTokenizerFolder(model, { 'tokenizer_config.json': { bos_token: '<s>', eos_token: '</s>', pad_token: '</s>', add_bos_token: true } }, { bosPostProcessor: true });
      const dataset = join(scratch(), 'records.jsonl');
      await fs.writeFile(dataset, RECORDS.map((text) => JSON.stringify({ text })).join('\n') + '\n');
      const stats = join(scratch(), 'stats.safetensors');
      // 2 samples per run at the longest sample's length: 3 runs per block, the last one a single sample.
      const tokenizer = await ModelTokenizer.load(model);
      const samples = (await loadCalibrationDataset(dataset, tokenizer, { samples: RECORDS.length, seqLen: SEQ })).samples;
      const longest = Math.max(...samples.map((s) => s.tokens));
      assert.ok(Math.min(...samples.map((s) => s.tokens)) < longest / 2, 'the samples must have different lengths (padding)');
      const summary = await runCalibrationJob({ model, out: stats, dataset, samples: RECORDS.length, seqLen: SEQ, hessians: true, graphCacheDir: scratch(), tokensPerRun: 2 * longest, device });
      assert.equal(summary.device, device);
      const n = samples.reduce((sum, s) => sum + s.tokens, 0);
      assert.equal(summary.tokens, n);
      assert.equal(summary.layers, LAYERS * MODULES.length);

      // The reference: each sample alone (no padding), every linear's input rows in float64.
      const absmax = new Map<string, number>();
      const channel = new Map<string, Float64Array>();
      const xtx = new Map<string, Float64Array>();
      for (const sample of samples) {
        referenceForward(config, weights, Array.from(sample.inputIds.subarray(0, sample.tokens)), {
          linearInput: (module, rows) => {
            const K = rows[0]!.length;
            const ch = channel.get(module) ?? new Float64Array(K);
            const h = xtx.get(module) ?? new Float64Array(K * K);
            for (const row of rows) {
              for (let i = 0; i < K; i++) {
                ch[i] = Math.max(ch[i]!, Math.abs(row[i]!));
                for (let j = 0; j < K; j++) h[i * K + j]! += row[i]! * row[j]!;
              }
            }
            channel.set(module, ch);
            xtx.set(module, h);
            absmax.set(module, Math.max(...ch));
          },
        });
      }

      const file = await Checkpoint.open(stats);
      const read = async (name: string) => decodeToFloat64(file.tensor(name).dtype, await file.readTensorBytes(name));
      try {
        for (let block = 0; block < LAYERS; block++) {
          for (const m of MODULES) {
            const module = `model.layers.${block}.${m}`;
            const wantMax = absmax.get(module)!;
            const gotMax = (await read(`${module}.input_absmax`))[0]!;
            assert.ok(Math.abs(gotMax - wantMax) <= 1e-5 * wantMax, `${module} absmax ${gotMax} vs ${wantMax}`);
            const gotChannel = await read(`${module}.input_channel_absmax`);
            const wantChannel = channel.get(module)!;
            for (let i = 0; i < wantChannel.length; i++) assert.ok(Math.abs(gotChannel[i]! - wantChannel[i]!) <= 1e-5 * wantMax, `${module} channel ${i}: ${gotChannel[i]} vs ${wantChannel[i]}`);
            if (sharedInputOwner(module) !== module) continue;
            const hessian = await read(`${module}.hessian`);
            const want = xtx.get(module)!;
            let diff = 0;
            let norm = 0;
            for (let k = 0; k < want.length; k++) {
              const w = (2 / n) * want[k]!;
              diff += (hessian[k]! - w) ** 2;
              norm += w ** 2;
            }
            const error = Math.sqrt(diff / norm);
            assert.ok(error < 1e-5, `${module} Hessian relative error ${error}`);
          }
        }
      } finally {
        await file.close();
      }
    });
  });
}
