import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { scanHealth } from '../../src/core/inspect/health';
import type { DType } from '../../src/core/dtypes/dtype';
import { tempDir } from '../helpers/paths';

const f32 = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);
/** bf16 by truncating float32 bits: exact for the values used here. */
const bf16 = (values: number[]) => new Uint8Array(new Uint16Array(Array.from(new Uint32Array(new Float32Array(values).buffer), (u) => u >>> 16)).buffer);

describe('health scan', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('finds zero, NaN, negative and outlier scales, all-zero and NaN weights — and nothing on a healthy layer', async () => {
    const tensors: { name: string; dtype: DType; shape: number[]; data: Uint8Array }[] = [];
    const fp8Weight = (seed: number) => new Uint8Array(Array.from({ length: 16 }, (_, i) => (i * 7 + seed) % 0x7e));
    for (let l = 0; l < 4; l++) {
      const p = `model.layers.${l}.self_attn.q_proj`;
      tensors.push({ name: `${p}.weight`, dtype: 'F8_E4M3', shape: [4, 4], data: fp8Weight(l + 1) });
      tensors.push({ name: `${p}.weight_scale`, dtype: 'F32', shape: [], data: f32([l === 1 ? 0 : l === 2 ? -0.01 : 0.01]) });
      tensors.push({ name: `${p}.input_scale`, dtype: 'F32', shape: [], data: f32([l === 3 ? 5 : l === 2 ? NaN : 0.02]) });
    }
    tensors.push({ name: 'model.layers.0.mlp.down_proj.weight', dtype: 'BF16', shape: [2, 2], data: bf16([0, 0, 0, 0]) });
    tensors.push({ name: 'model.layers.0.mlp.up_proj.weight', dtype: 'BF16', shape: [2, 2], data: bf16([1, NaN, 2, 3]) });
    await writeSafetensors(join(tmp.path, 'model.safetensors'), tensors);
    writeFileSync(join(tmp.path, 'config.json'), JSON.stringify({ quantization_config: { quant_method: 'fp8', activation_scheme: 'static', ignored_layers: ['lm_head', 'mlp'] } }));

    const checkpoint = await Checkpoint.open(tmp.path);
    try {
      const { layerMap } = await analyzeCheckpoint(checkpoint, tmp.path);
      const report = await scanHealth(checkpoint, layerMap);
      const found = report.findings.map((f) => `${f.kind} ${f.tensor ?? f.module}`);
      const expected = [
        'zero-scale model.layers.1.self_attn.q_proj.weight_scale',
        'negative-scale model.layers.2.self_attn.q_proj.weight_scale',
        'nan-scale model.layers.2.self_attn.q_proj.input_scale',
        'scale-outlier model.layers.3.self_attn.q_proj.input_scale',
        'zero-weight model.layers.0.mlp.down_proj.weight',
        'nonfinite-weight model.layers.0.mlp.up_proj.weight',
      ];
      for (const e of expected) assert.ok(found.includes(e), `missing finding ${e}\nfound:\n${found.join('\n')}`);
      assert.ok(!found.some((f) => f.includes('layers.0.self_attn')), `layer 0 attention is healthy: ${found.join('\n')}`);
      assert.equal(report.findings.filter((f) => f.severity === 'error').length, 5);
      const outlier = report.findings.find((f) => f.kind === 'scale-outlier')!;
      assert.match(outlier.message, /250× the median/);
    } finally {
      await checkpoint.close();
    }
  });

  it('counts the experts of a mixture-of-experts layer on the counting workers: the same findings, progress to the end, and cancellation', async () => {
    // 8 experts × 3 projections of 512 × 640 bf16 (640 KiB each: counted whole in a worker, several at once).
    const tensors: { name: string; dtype: DType; shape: number[]; data: Uint8Array }[] = [];
    const rows = 512;
    const cols = 640;
    for (let e = 0; e < 8; e++) {
      for (const w of ['w1', 'w2', 'w3']) {
        const values = Array.from({ length: rows * cols }, (_, i) => ((i * 2654435761 + e) % 1000) / 1000 - 0.5);
        if (e === 3 && w === 'w2') values.fill(0);
        if (e === 5 && w === 'w1') values[rows * cols - 1] = Number.POSITIVE_INFINITY;
        const [r, c] = w === 'w2' ? [cols, rows] : [rows, cols];
        tensors.push({ name: `model.layers.0.block_sparse_moe.experts.${e}.${w}.weight`, dtype: 'BF16', shape: [r, c], data: bf16(values) });
      }
    }
    tensors.push({ name: 'model.layers.0.block_sparse_moe.gate.weight', dtype: 'BF16', shape: [8, cols], data: bf16(Array.from({ length: 8 * cols }, (_, i) => (i % 7) / 7)) });
    await writeSafetensors(join(tmp.path, 'model.safetensors'), tensors);
    writeFileSync(join(tmp.path, 'config.json'), JSON.stringify({ architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: cols, intermediate_size: rows, num_hidden_layers: 1, num_local_experts: 8, num_experts_per_tok: 2 }));

    const checkpoint = await Checkpoint.open(tmp.path);
    try {
      const { layerMap } = await analyzeCheckpoint(checkpoint, tmp.path);
      const progress: number[] = [];
      const report = await scanHealth(checkpoint, layerMap, { onProgress: (f) => progress.push(f) });
      const weightFindings = report.findings.filter((f) => f.kind === 'zero-weight' || f.kind === 'nonfinite-weight').map((f) => `${f.kind} ${f.tensor}`);
      assert.deepEqual(weightFindings.sort(), ['nonfinite-weight model.layers.0.block_sparse_moe.experts.5.w1.weight', 'zero-weight model.layers.0.block_sparse_moe.experts.3.w2.weight']);
      assert.ok(report.scannedTensors >= 24, `every expert scanned: ${report.scannedTensors}`);
      assert.ok(Math.abs(progress.at(-1)! - 1) < 1e-9, `progress ends at 1: ${progress.at(-1)}`);

      const abort = new AbortController();
      const cancelled = scanHealth(checkpoint, layerMap, { signal: abort.signal, onProgress: (f) => (f > 0.3 ? abort.abort() : undefined) });
      await assert.rejects(cancelled, /^Error: cancelled$/);
    } finally {
      await checkpoint.close();
    }
  });
});
