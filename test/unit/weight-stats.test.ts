// Statistics of dequantized weights, streamed in row blocks, for every quantized layout: fixtures are real
// safetensors files written here (codes packed with src's writers, the GPTQ reference vectors), and every
// number is checked against a float64 dequantization written in this test from the formulas of
// docs/formats.md §3.7 and §5.5.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { computeWeightStatisticsOfTensor, WeightStatistics, WeightView } from '../../src/core/stats/weightStats';
import { packToInt32 } from '../../src/core/quant/pack';
import { packGptqQweight, packGptqQzeros } from '../../src/core/quant/gptqFormat';
import { Writable } from 'node:stream';
import { inspectCommand } from '../../src/cli/inspect';
import { bytesOf, writeCheckpoint } from '../helpers/safetensorsBytes';
import { tempDir, vectorsDir } from '../helpers/paths';
import { rng } from '../helpers/random';
import { checkStats } from '../helpers/weightStatsCheck';
import { e4m3Value } from '../helpers/fp8Reference';

/** bf16: the top half of a float32 (values chosen here are made bf16-exact by truncation). */
function bf16(values: number[]): { bits: Uint16Array; values: number[] } {
  const f = new Float32Array(values);
  const bits = new Uint16Array(new Uint32Array(f.buffer).map((u) => u >>> 16));
  return { bits, values: Array.from(bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!) };
}

/** f16 bits of values that are exactly representable normal numbers (asserted). */
function f16Exact(v: number): number {
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  const m = (a / 2 ** e - 1) * 1024;
  assert.ok(Number.isInteger(m) && e >= -14 && e <= 15, `${v} is not an exact normal f16`);
  return sign | ((e + 15) << 10) | m;
}

describe('dequantized weight statistics (streamed in row blocks) against a float64 dequantization', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  async function stats(dir: string, tensor: string, view: WeightView, blockElements: number): Promise<WeightStatistics> {
    const checkpoint = await Checkpoint.open(dir);
    try {
      const { layerMap } = await analyzeCheckpoint(checkpoint, dir);
      return await computeWeightStatisticsOfTensor(checkpoint, layerMap, tensor, { view, blockElements });
    } finally {
      await checkpoint.close();
    }
  }

  const M = 'model.layers.0.mlp.down_proj';

  it('INT8 per channel (compressed-tensors int-quantized, bf16 scales), blocks smaller than a row', async () => {
    const [rows, cols] = [24, 40];
    const r = rng(1);
    const q = Int8Array.from({ length: rows * cols }, () => Math.round(r() * 254) - 127);
    q[5] = 0;
    const scale = bf16(Array.from({ length: rows }, () => 0.001 + r() * 0.01));
    const dir = writeCheckpoint(join(tmp.path, 'int8-channel'), [
      { name: `${M}.weight`, dtype: 'I8', shape: [rows, cols], bytes: bytesOf(q) },
      { name: `${M}.weight_scale`, dtype: 'BF16', shape: [rows, 1], bytes: bytesOf(scale.bits) },
    ]);
    const expected = Array.from(q, (v, i) => v * scale.values[Math.floor(i / cols)]!);
    for (const block of [7, 100, 1 << 20]) {
      const result = await stats(dir, `${M}.weight`, 'dequantized', block);
      assert.equal(result.layout, 'ct-int');
      assert.ok(result.blockElements <= Math.max(block, cols));
      checkStats(result, expected);
    }
    checkStats(await stats(dir, `${M}.weight`, 'codes', 100), Array.from(q));
  });

  it('INT8 asymmetric groups with zero points and g_idx (act-order), f16 scales', async () => {
    const [rows, cols, gs] = [16, 64, 16];
    const groups = cols / gs;
    const r = rng(2);
    const q = Int8Array.from({ length: rows * cols }, () => Math.round(r() * 255) - 128);
    const zp = Int8Array.from({ length: rows * groups }, () => Math.round(r() * 40) - 20);
    const scaleValues = Array.from({ length: rows * groups }, () => (1 + Math.floor(r() * 1023)) * 2 ** -16);
    const scaleBits = new Uint16Array(scaleValues.map(f16Exact));
    // g_idx: a permutation of the columns grouped in that order (act-order).
    const perm = Array.from({ length: cols }, (_, i) => i).sort(() => r() - 0.5);
    const gIdx = new Int32Array(cols);
    perm.forEach((c, i) => (gIdx[c] = Math.floor(i / gs)));
    const dir = writeCheckpoint(join(tmp.path, 'int8-group-zp'), [
      { name: `${M}.weight`, dtype: 'I8', shape: [rows, cols], bytes: bytesOf(q) },
      { name: `${M}.weight_scale`, dtype: 'F16', shape: [rows, groups], bytes: bytesOf(scaleBits) },
      { name: `${M}.weight_zero_point`, dtype: 'I8', shape: [rows, groups], bytes: bytesOf(zp) },
      { name: `${M}.weight_g_idx`, dtype: 'I32', shape: [cols], bytes: bytesOf(gIdx) },
    ]);
    const expected = Array.from(q, (v, i) => {
      const [row, col] = [Math.floor(i / cols), i % cols];
      const k = row * groups + gIdx[col]!;
      return (v - zp[k]!) * scaleValues[k]!;
    });
    checkStats(await stats(dir, `${M}.weight`, 'dequantized', 50), expected);
  });

  it('FP8 E4M3 per tensor (with a NaN code and zeros) and FP8 blocks (weight_scale_inv)', async () => {
    const [rows, cols] = [12, 24];
    const r = rng(3);
    const codes = Uint8Array.from({ length: rows * cols }, () => Math.floor(r() * 256));
    codes[3] = 0x7f; // NaN
    codes[4] = 0x00;
    codes[5] = 0x80; // −0
    const tensorScale = 0.0123;
    const dir = writeCheckpoint(join(tmp.path, 'fp8-tensor'), [
      { name: `${M}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], bytes: codes },
      { name: `${M}.weight_scale`, dtype: 'F32', shape: [], bytes: bytesOf(new Float32Array([tensorScale])) },
    ]);
    const f32Scale = new Float32Array([tensorScale])[0]!;
    checkStats(await stats(dir, `${M}.weight`, 'dequantized', 30), Array.from(codes, (c) => e4m3Value(c) * f32Scale));
    checkStats(await stats(dir, `${M}.weight`, 'codes', 30), Array.from(codes, e4m3Value));

    // Blocks of 4 × 8: scale_inv [3, 3].
    const inv = new Float32Array(Array.from({ length: 9 }, (_, i) => 0.5 + i * 0.25));
    const blockDir = writeCheckpoint(join(tmp.path, 'fp8-block'), [
      { name: `${M}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], bytes: codes },
      { name: `${M}.weight_scale_inv`, dtype: 'F32', shape: [3, 3], bytes: bytesOf(inv) },
    ]);
    const expected = Array.from(codes, (c, i) => e4m3Value(c) * inv[Math.floor(Math.floor(i / cols) / 4) * 3 + Math.floor((i % cols) / 8)]!);
    checkStats(await stats(blockDir, `${M}.weight`, 'dequantized', 1000), expected);
  });

  it('INT4 pack-quantized, asymmetric groups with packed zero points and g_idx (W4A16 asym, actorder group)', async () => {
    const [rows, cols, gs] = [20, 96, 32];
    const groups = cols / gs;
    const r = rng(4);
    const q = Int8Array.from({ length: rows * cols }, () => Math.floor(r() * 16) - 8);
    const zp = Int8Array.from({ length: rows * groups }, () => Math.floor(r() * 16) - 8);
    const scale = bf16(Array.from({ length: rows * groups }, () => 0.002 + r() * 0.02));
    const gIdx = Int32Array.from({ length: cols }, (_, c) => (c * 7) % groups);
    const config = {
      quant_method: 'compressed-tensors',
      format: 'pack-quantized',
      config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: gs, actorder: 'group' } } },
      ignore: [],
    };
    const dir = writeCheckpoint(
      join(tmp.path, 'w4a16-asym'),
      [
        { name: `${M}.weight_packed`, dtype: 'I32', shape: [rows, (cols * 4) / 32], bytes: bytesOf(packToInt32(q, rows, cols, 4, 1)) },
        { name: `${M}.weight_scale`, dtype: 'BF16', shape: [rows, groups], bytes: bytesOf(scale.bits) },
        { name: `${M}.weight_zero_point`, dtype: 'I32', shape: [Math.ceil((rows * 4) / 32), groups], bytes: bytesOf(packToInt32(zp, rows, groups, 4, 0)) },
        { name: `${M}.weight_g_idx`, dtype: 'I32', shape: [cols], bytes: bytesOf(gIdx) },
        { name: `${M}.weight_shape`, dtype: 'I64', shape: [2], bytes: bytesOf(new BigInt64Array([BigInt(rows), BigInt(cols)])) },
      ],
      config,
    );
    const expected = Array.from(q, (v, i) => {
      const k = Math.floor(i / cols) * groups + gIdx[i % cols]!;
      return (v - zp[k]!) * scale.values[k]!;
    });
    const result = await stats(dir, `${M}.weight_packed`, 'dequantized', 200);
    assert.equal(result.bits, 4);
    assert.deepEqual(result.shape, [rows, cols]);
    checkStats(result, expected);
    checkStats(await stats(dir, `${M}.weight_packed`, 'codes', 200), Array.from(q));

    // CLI parity: `quantlens inspect --stats --tensor NAME --dequantize --json` prints the same numbers.
    const chunks: string[] = [];
    const out = new Writable({ write: (chunk, _enc, done) => (chunks.push(String(chunk)), done()) });
    assert.equal(await inspectCommand([dir, '--stats', '--tensor', 'down_proj', '--dequantize', '--json'], out), 0);
    const printed = JSON.parse(chunks.join('')) as { statistics: Record<string, WeightStatistics> };
    assert.deepEqual(Object.keys(printed.statistics), [`${M}.weight_packed`]);
    checkStats(printed.statistics[`${M}.weight_packed`]!, expected);
    assert.equal(printed.statistics[`${M}.weight_packed`]!.view, 'dequantized');
    await assert.rejects(inspectCommand([dir, '--stats', '--tensor', 'weight_scale', '--dequantize'], out), /--dequantize: none of the 1 tensor matching "weight_scale" holds a quantized layer's codes/);
  });

  it('3-bit pack-quantized (dense bitstream across words), symmetric per channel', async () => {
    const [rows, cols] = [9, 50];
    const r = rng(5);
    const q = Int8Array.from({ length: rows * cols }, () => Math.floor(r() * 8) - 4);
    const scale = bf16(Array.from({ length: rows }, () => 0.01 + r() * 0.1));
    const dir = writeCheckpoint(
      join(tmp.path, 'w3-channel'),
      [
        { name: `${M}.weight_packed`, dtype: 'I32', shape: [rows, Math.ceil((cols * 3) / 32)], bytes: bytesOf(packToInt32(q, rows, cols, 3, 1)) },
        { name: `${M}.weight_scale`, dtype: 'BF16', shape: [rows, 1], bytes: bytesOf(scale.bits) },
        { name: `${M}.weight_shape`, dtype: 'I64', shape: [2], bytes: bytesOf(new BigInt64Array([BigInt(rows), BigInt(cols)])) },
      ],
      { quant_method: 'compressed-tensors', format: 'pack-quantized', config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 3, type: 'int', symmetric: true, strategy: 'channel' } } } },
    );
    checkStats(await stats(dir, `${M}.weight_packed`, 'dequantized', 64), Array.from(q, (v, i) => v * scale.values[Math.floor(i / cols)]!));
  });

  for (const format of ['gptq', 'gptq_v2'] as const) {
    it(`GPTQ 4-bit ${format}, act-order g_idx, f16 scales, blocks of 32 input rows`, async () => {
      const [K, N, gs] = [128, 24, 32];
      const G = K / gs;
      const r = rng(format === 'gptq' ? 6 : 7);
      const q = Uint8Array.from({ length: K * N }, () => Math.floor(r() * 16)); // [K, N], unsigned
      const zeros = Uint8Array.from({ length: G * N }, () => 1 + Math.floor(r() * 15)); // true zero points
      const scaleValues = Array.from({ length: G * N }, () => (1 + Math.floor(r() * 1023)) * 2 ** -14);
      const gIdx = Int32Array.from({ length: K }, (_, k) => (k * 5 + 3) % G);
      const dir = writeCheckpoint(
        join(tmp.path, `gptq4-${format}`),
        [
          { name: `${M}.qweight`, dtype: 'I32', shape: [(K * 4) / 32, N], bytes: bytesOf(packGptqQweight(q, K, N, 4)) },
          { name: `${M}.qzeros`, dtype: 'I32', shape: [G, (N * 4) / 32], bytes: bytesOf(packGptqQzeros(zeros, G, N, 4, format)) },
          { name: `${M}.scales`, dtype: 'F16', shape: [G, N], bytes: bytesOf(new Uint16Array(scaleValues.map(f16Exact))) },
          { name: `${M}.g_idx`, dtype: 'I32', shape: [K], bytes: bytesOf(gIdx) },
        ],
        { quant_method: 'gptq', bits: 4, group_size: gs, desc_act: true, sym: false, checkpoint_format: format },
      );
      // W[n, k] = scales[g_idx[k], n] · (q[k, n] − z[g_idx[k], n]) (docs/formats.md §5.5).
      const expected: number[] = [];
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) expected.push(scaleValues[gIdx[k]! * N + n]! * (q[k * N + n]! - zeros[gIdx[k]! * N + n]!));
      const result = await stats(dir, `${M}.qweight`, 'dequantized', 40);
      assert.equal(result.layout, 'gptq');
      assert.equal(result.blockElements, 32 * N);
      checkStats(result, expected);
      checkStats(await stats(dir, `${M}.qweight`, 'codes', 40), Array.from(q));
    });
  }

  it('the GPTQ reference vectors (v1 zero − 1 correction, v2, 3-bit) give the statistics of their expected weights', async () => {
    const cases = JSON.parse(readFileSync(vectorsDir('gptq', 'cases.json'), 'utf8')) as { file: string; quantize_config: { bits: number; checkpoint_format: string }; expected_weight_out_by_in: number[][] }[];
    assert.equal(cases.length, 4);
    for (const c of cases) {
      const dir = join(tmp.path, `vector-${c.file}`);
      mkdirSync(dir, { recursive: true });
      copyFileSync(vectorsDir('gptq', c.file), join(dir, 'model.safetensors'));
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ quantization_config: { quant_method: 'gptq', group_size: -1, desc_act: false, sym: true, ...c.quantize_config } }));
      const result = await stats(dir, 'linear.qweight', 'dequantized', 1 << 20);
      checkStats(result, c.expected_weight_out_by_in.flat());
    }
  });

  it('names the tensor when the stored tensors do not fit together, and refuses tensors that are not quantized codes', async () => {
    const [rows, cols] = [8, 32];
    const dir = writeCheckpoint(join(tmp.path, 'bad-gidx'), [
      { name: `${M}.weight`, dtype: 'I8', shape: [rows, cols], bytes: new Uint8Array(rows * cols) },
      { name: `${M}.weight_scale`, dtype: 'F32', shape: [rows, 2], bytes: bytesOf(new Float32Array(rows * 2).fill(1)) },
      { name: `${M}.weight_g_idx`, dtype: 'I32', shape: [cols], bytes: bytesOf(Int32Array.from({ length: cols }, (_, c) => (c === 31 ? 2 : 0))) },
      { name: 'model.layers.0.input_layernorm.weight', dtype: 'F32', shape: [cols], bytes: new Uint8Array(cols * 4) },
    ]);
    await assert.rejects(stats(dir, `${M}.weight`, 'dequantized', 100), /down_proj\.weight_g_idx\[31\] = 2 is outside the 2 groups/);
    await assert.rejects(stats(dir, `${M}.weight_scale`, 'dequantized', 100), /not the quantized codes of model\.layers\.0\.mlp\.down_proj .*choose model\.layers\.0\.mlp\.down_proj\.weight/);
    await assert.rejects(stats(dir, 'model.layers.0.input_layernorm.weight', 'dequantized', 100), /not the weight of a quantized linear layer/);
  });
});
