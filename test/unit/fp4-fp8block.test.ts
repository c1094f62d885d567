// The checkpoints of 2026: DeepSeek-style FP8 blocks (config `quant_method: fp8` with `weight_block_size`,
// `weight_scale_inv`), compressed-tensors FP8_BLOCK, NVFP4 and MXFP4. Fixtures are real safetensors files
// written here and read back; every number is checked against a float64 dequantization written in this test
// from the upstream rules (docs/formats.md §3.12, §6.1):
// - E2M1: kE2M1ToFloat = [0, .5, 1, 1.5, 2, 3, 4, 6], bit 3 the sign, even element in the low nibble
//   (compressed-tensors compressors/nvfp4/helpers.py `unpack_fp4_from_uint8`);
// - NVFP4: value = e2m1 · (weight_scale / weight_global_scale) (quantization/lifecycle/forward_helpers.py `_dequantize`);
// - MXFP4: scale = 2^(e − 127) (compressors/mx_utils.py `decompress_mx_scale`);
// - FP8 blocks: value = e4m3 · weight_scale_inv[⌊r/128⌋, ⌊c/128⌋] (DeepSeek-V3 inference/kernel.py `weight_dequant`).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { computeWeightStatisticsOfTensor, WeightView } from '../../src/core/stats/weightStats';
import { compareWithOriginal, LayerError } from '../../src/core/inspect/error';
import { scanHealth } from '../../src/core/inspect/health';
import { readScaleOverview } from '../../src/core/inspect/scales';
import { inspectCommand } from '../../src/cli/inspect';
import { RawTensor, bytesOf, writeCheckpoint } from '../helpers/safetensorsBytes';
import { tempDir, vectorsDir } from '../helpers/paths';
import { rng } from '../helpers/random';
import { checkStats } from '../helpers/weightStatsCheck';
import { e4m3Value } from '../helpers/fp8Reference';

const E2M1_MAGNITUDE = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
const e2m1 = (code: number) => (code & 8 ? -1 : 1) * E2M1_MAGNITUDE[code & 7]!;
/** Element c of a row of packed bytes: even c in the low nibble. */
const nibble = (row: Uint8Array, c: number) => (c & 1 ? row[c >> 1]! >> 4 : row[c >> 1]! & 15);

/** Float64 statistics from the definitions, binned on the result's own edges. */
/** The error metrics compareWithOriginal must give, from float64 sums over the float32 dequantized values. */
function checkError(layer: LayerError | undefined, original: Float32Array, dequantized: number[]): void {
  assert.ok(layer && !layer.skipped, JSON.stringify(layer?.skipped));
  const approx = dequantized.map(Math.fround);
  let errSq = 0;
  let refSq = 0;
  let maxAbs = 0;
  for (let i = 0; i < approx.length; i++) {
    const e = original[i]! - approx[i]!;
    errSq += e * e;
    refSq += original[i]! * original[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(e));
  }
  const m = layer.metrics;
  assert.equal(m.count, approx.length);
  assert.ok(Math.abs(m.relativeFrobenius - Math.sqrt(errSq / refSq)) <= 1e-12 * Math.sqrt(errSq / refSq), `relative error ${m.relativeFrobenius} vs ${Math.sqrt(errSq / refSq)}`);
  assert.ok(Math.abs(m.maxAbsError - maxAbs) <= 1e-7 * maxAbs, `max abs error ${m.maxAbsError} vs ${maxAbs}`);
  assert.ok(Math.abs(m.sqnrDb - 10 * Math.log10(refSq / errSq)) < 1e-9, `SQNR ${m.sqnrDb}`);
}

describe('FP8 block (DeepSeek style and compressed-tensors FP8_BLOCK), NVFP4 and MXFP4 checkpoints', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  const M = 'model.layers.0.mlp.down_proj';

  async function open<T>(dir: string, use: (checkpoint: Checkpoint, layerMap: Awaited<ReturnType<typeof analyzeCheckpoint>>['layerMap']) => Promise<T>): Promise<T> {
    const checkpoint = await Checkpoint.open(dir);
    try {
      const { layerMap } = await analyzeCheckpoint(checkpoint, dir);
      return await use(checkpoint, layerMap);
    } finally {
      await checkpoint.close();
    }
  }
  const stats = (dir: string, tensor: string, view: WeightView, blockElements: number) => open(dir, (c, map) => computeWeightStatisticsOfTensor(c, map, tensor, { view, blockElements }));
  const compare = (dir: string, originalDir: string) =>
    open(dir, async (c, map) => {
      const original = await Checkpoint.open(originalDir);
      try {
        return await compareWithOriginal(c, map, original, { blockElements: 700 });
      } finally {
        await original.close();
      }
    });
  function writeOriginal(dir: string, values: Float32Array, rows: number, cols: number): string {
    return writeCheckpoint(dir, [{ name: `${M}.weight`, dtype: 'F32', shape: [rows, cols], bytes: bytesOf(values) }]);
  }

  // Not multiples of 128, so a block inferred as ⌈out / scale rows⌉ (100 × 100) would give other numbers.
  const [fr, fc] = [200, 300];
  const fp8Codes = (() => {
    const r = rng(11);
    // Finite E4M3 codes (no 0x7F / 0xFF NaN), zeros included.
    return Uint8Array.from({ length: fr * fc }, () => {
      const b = Math.floor(r() * 256);
      return (b & 0x7f) === 0x7f ? 0 : b;
    });
  })();
  const blockScale = Float32Array.from({ length: 2 * 3 }, (_, i) => 0.001 * (1 + i) + 2 ** -20);
  const fp8Expected = Array.from(fp8Codes, (b, i) => e4m3Value(b) * blockScale[Math.floor(Math.floor(i / fc) / 128) * 3 + Math.floor((i % fc) / 128)]!);
  const fp8Original = Float32Array.from(fp8Expected, (v, i) => v + ((i % 7) - 3) * 1e-4);

  it('DeepSeek-style FP8 blocks: described in model-card words, no false disagreements, exact statistics, codes and error', async () => {
    const config = { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128] };
    const tensors = (scaleShape: number[]) => [
      { name: `${M}.weight`, dtype: 'F8_E4M3', shape: [fr, fc], bytes: fp8Codes },
      { name: `${M}.weight_scale_inv`, dtype: 'F32', shape: scaleShape, bytes: bytesOf(blockScale) },
    ];
    const dir = writeCheckpoint(join(tmp.path, 'deepseek'), tensors([2, 3]), config);
    await open(dir, async (_c, map) => {
      assert.equal(map.scheme.description, 'FP8 weights in 128×128 blocks, dynamic per-group activations');
      assert.deepEqual(map.scheme.disagreements, []);
      assert.deepEqual(map.scheme.configErrors, []);
      assert.deepEqual(map.modules.map((m) => m.issues), [[]]);
    });
    checkStats(await stats(dir, `${M}.weight`, 'dequantized', 1000), fp8Expected);
    checkStats(await stats(dir, `${M}.weight`, 'codes', 1000), Array.from(fp8Codes, e4m3Value));
    const original = writeOriginal(join(tmp.path, 'deepseek-original'), fp8Original, fr, fc);
    checkError((await compare(dir, original)).layers[0], fp8Original, fp8Expected);

    // Without config.json the 128 × 128 block is inferred from the scale's shape: the same numbers.
    const bare = writeCheckpoint(join(tmp.path, 'deepseek-bare'), tensors([2, 3]));
    checkStats(await stats(bare, `${M}.weight`, 'dequantized', 3000), fp8Expected);

    // A scale of the wrong shape for the declared block is a real disagreement, said in words.
    const wrong = writeCheckpoint(join(tmp.path, 'deepseek-wrong'), tensors([3, 2]), config);
    await open(wrong, async (_c, map) => {
      assert.deepEqual(map.modules[0]!.issues, ['config declares 128×128 blocks, which need [2, 3] scales for the weight [200, 300]; the scale tensor is [3, 2]']);
    });
    const badConfig = writeCheckpoint(join(tmp.path, 'deepseek-badcfg'), tensors([2, 3]), { ...config, weight_block_size: [128] });
    await open(badConfig, async (_c, map) => assert.deepEqual(map.scheme.configErrors, ['quantization_config.weight_block_size must be two positive integers [rows, cols], found [128]']));
  });

  it('compressed-tensors FP8_BLOCK: the same words, block scales recognised as blocks, exact statistics and error', async () => {
    const config = {
      quant_method: 'compressed-tensors',
      format: 'float-quantized',
      config_groups: {
        group_0: {
          targets: ['Linear'],
          weights: { num_bits: 8, type: 'float', symmetric: true, strategy: 'block', block_structure: [128, 128], dynamic: false },
          input_activations: { num_bits: 8, type: 'float', symmetric: true, strategy: 'group', group_size: 128, dynamic: true },
        },
      },
      ignore: [],
    };
    const dir = writeCheckpoint(
      join(tmp.path, 'ct-fp8-block'),
      [
        { name: `${M}.weight`, dtype: 'F8_E4M3', shape: [fr, fc], bytes: fp8Codes },
        { name: `${M}.weight_scale`, dtype: 'F32', shape: [2, 3], bytes: bytesOf(blockScale) },
      ],
      config,
    );
    await open(dir, async (_c, map) => {
      assert.equal(map.scheme.description, 'FP8 weights in 128×128 blocks, dynamic per-group activations');
      assert.deepEqual(map.scheme.disagreements, []);
      assert.equal(map.modules[0]!.observed?.strategy, 'block');
    });
    checkStats(await stats(dir, `${M}.weight`, 'dequantized', 512), fp8Expected);
    const original = writeOriginal(join(tmp.path, 'ct-fp8-block-original'), fp8Original, fr, fc);
    checkError((await compare(dir, original)).layers[0], fp8Original, fp8Expected);
  });

  // NVFP4: 6 rows × 48 columns (3 groups of 16). Rows 0–3 are the upstream pack/unpack test matrix, tiled to 48.
  const vectors = JSON.parse(readFileSync(vectorsDir('nvfp4_e2m1.json'), 'utf8')) as { test_input_bf16: number[][]; expected_packed_uint8_DERIVED: number[][] };
  const [nr, nc] = [6, 48];
  const nvPacked = (() => {
    const r = rng(12);
    const bytes = Uint8Array.from({ length: (nr * nc) / 2 }, () => Math.floor(r() * 256));
    vectors.expected_packed_uint8_DERIVED.forEach((row, i) => {
      for (let t = 0; t < nc / 2; t += row.length) bytes.set(row, i * (nc / 2) + t);
    });
    return bytes;
  })();
  const nvCodesValues = Array.from({ length: nr * nc }, (_, i) => e2m1(nibble(nvPacked.subarray(Math.floor(i / nc) * (nc / 2)), i % nc)));
  // FP8 group scales: 0x7E is 448 (saturated), 0x00 a zero scale; the rest ordinary normals.
  const nvScaleCodes = Uint8Array.from({ length: nr * 3 }, (_, k) => (k === 4 ? 0x7e : k === 9 ? 0x00 : 0x28 + ((k * 5) % 24)));
  const nvGlobal = new Float32Array([2688.5]);
  const nvExpected = nvCodesValues.map((v, i) => v * (e4m3Value(nvScaleCodes[Math.floor(i / nc) * 3 + Math.floor((i % nc) / 16)]!) / nvGlobal[0]!));
  const nvOriginal = Float32Array.from(nvExpected, (v, i) => v + ((i % 5) - 2) * 3e-5);

  function nvfp4Tensors(): RawTensor[] {
    return [
      { name: `${M}.weight_packed`, dtype: 'U8', shape: [nr, nc / 2], bytes: nvPacked },
      { name: `${M}.weight_scale`, dtype: 'F8_E4M3', shape: [nr, 3], bytes: nvScaleCodes },
      { name: `${M}.weight_global_scale`, dtype: 'F32', shape: [1], bytes: bytesOf(nvGlobal) },
    ];
  }
  const fp4Args = (strategy: string, groupSize: number, extra: Record<string, unknown> = {}) => ({ num_bits: 4, type: 'float', symmetric: true, strategy, group_size: groupSize, ...extra });

  it('NVFP4 (W4A4 and W4A16): model-card words, no disagreements, the upstream E2M1 vectors as codes, exact statistics', async () => {
    // The test matrix unpacks to its values (row i of the vector file, tiled), as the upstream round trip asserts.
    vectors.test_input_bf16.forEach((row, i) => {
      for (let c = 0; c < nc; c++) assert.ok(Object.is(e2m1(nibble(nvPacked.subarray(i * (nc / 2)), c)), row[c % row.length]!), `vector row ${i} column ${c}`);
    });
    const w4a4 = {
      quant_method: 'compressed-tensors',
      format: 'nvfp4-pack-quantized',
      config_groups: { group_0: { targets: ['Linear'], weights: fp4Args('tensor_group', 16, { dynamic: false }), input_activations: fp4Args('tensor_group', 16, { dynamic: 'local' }) } },
      ignore: [],
    };
    const dir = writeCheckpoint(join(tmp.path, 'nvfp4'), [...nvfp4Tensors(), { name: `${M}.input_global_scale`, dtype: 'F32', shape: [1], bytes: bytesOf(new Float32Array([812.25])) }], w4a4);
    await open(dir, async (_c, map) => {
      assert.equal(map.scheme.description, 'NVFP4 weights and activations, groups of 16 with FP8 scales and a global scale');
      assert.deepEqual(map.scheme.disagreements, []);
      assert.equal(map.modules[0]!.observed?.kind, 'nvfp4');
    });
    const w4a16 = { ...w4a4, config_groups: { group_0: { targets: ['Linear'], weights: fp4Args('tensor_group', 16, { dynamic: false }) } } };
    const weightOnly = writeCheckpoint(join(tmp.path, 'nvfp4a16'), nvfp4Tensors(), w4a16);
    await open(weightOnly, async (_c, map) => {
      assert.equal(map.scheme.description, 'NVFP4 weights (W4A16), groups of 16 with FP8 scales and a global scale');
      assert.deepEqual(map.scheme.disagreements, []);
    });

    const dequantized = await stats(dir, `${M}.weight_packed`, 'dequantized', 100);
    assert.equal(dequantized.bits, 4);
    assert.deepEqual(dequantized.shape, [nr, nc]);
    assert.equal(dequantized.layout, 'nvfp4');
    checkStats(dequantized, nvExpected);
    checkStats(await stats(dir, `${M}.weight_packed`, 'codes', 100), nvCodesValues);
  });

  it('NVFP4: scale summaries and health (saturated and zero FP8 scales), error against the original through the CLI', async () => {
    const dir = writeCheckpoint(join(tmp.path, 'nvfp4-health'), nvfp4Tensors(), {
      quant_method: 'compressed-tensors',
      format: 'nvfp4-pack-quantized',
      config_groups: { group_0: { targets: ['Linear'], weights: fp4Args('tensor_group', 16, { dynamic: false }) } },
      ignore: [],
    });
    await open(dir, async (c, map) => {
      const [module] = await readScaleOverview(c, map);
      const scale = module!.scales.find((s) => s.role === 'weight_scale')!;
      assert.equal(scale.saturated, 1);
      assert.equal(scale.stats.zeros, 1);
      assert.equal(scale.stats.max, 448);
      assert.deepEqual(module!.scales.find((s) => s.role === 'weight_global_scale')!.values, [2688.5]);
      const health = await scanHealth(c, map);
      const kinds = health.findings.map((f) => `${f.kind} ${f.tensor}`);
      assert.ok(kinds.includes(`saturated-scale ${M}.weight_scale`), kinds.join('; '));
      assert.ok(kinds.includes(`zero-scale ${M}.weight_scale`), kinds.join('; '));
      assert.ok(!kinds.some((k) => k.startsWith('layer-mismatch')), kinds.join('; '));
    });

    const original = writeOriginal(join(tmp.path, 'nvfp4-original'), nvOriginal, nr, nc);
    checkError((await compare(dir, original)).layers[0], nvOriginal, nvExpected);
    const chunks: string[] = [];
    const out = new Writable({ write: (chunk, _enc, done) => (chunks.push(String(chunk)), done()) });
    assert.equal(await inspectCommand([dir, '--error', '--compare', original, '--json'], out), 0);
    const printed = JSON.parse(chunks.join('')) as { errors: { layers: LayerError[] }[]; scheme: { description: string } };
    checkError(printed.errors[0]!.layers[0], nvOriginal, nvExpected);
    assert.equal(printed.scheme.description, 'NVFP4 weights (W4A16), groups of 16 with FP8 scales and a global scale');
  });

  it('MXFP4: model-card words, E8M0 exponents summarised as scales, NaN and saturated exponents found, exact statistics and error', async () => {
    const [mr, mc] = [5, 96];
    const r = rng(13);
    const packed = Uint8Array.from({ length: (mr * mc) / 2 }, () => Math.floor(r() * 256));
    // Exponents around 2^-7; 0xFF (NaN) and 0xFE (2^127, the largest) once each.
    const exps = Uint8Array.from({ length: mr * 3 }, (_, k) => (k === 7 ? 0xff : k === 11 ? 0xfe : 118 + ((k * 3) % 7)));
    const codes = Array.from({ length: mr * mc }, (_, i) => e2m1(nibble(packed.subarray(Math.floor(i / mc) * (mc / 2)), i % mc)));
    const expected = codes.map((v, i) => {
      const e = exps[Math.floor(i / mc) * 3 + Math.floor((i % mc) / 32)]!;
      return v * (e === 0xff ? NaN : 2 ** (e - 127));
    });
    const config = (activations: boolean) => ({
      quant_method: 'compressed-tensors',
      format: 'mxfp4-pack-quantized',
      config_groups: {
        group_0: { targets: ['Linear'], weights: fp4Args('group', 32, { dynamic: false }), ...(activations ? { input_activations: fp4Args('group', 32, { dynamic: true }) } : {}) },
      },
      ignore: [],
    });
    const tensors = [
      { name: `${M}.weight_packed`, dtype: 'U8', shape: [mr, mc / 2], bytes: packed },
      { name: `${M}.weight_scale`, dtype: 'U8', shape: [mr, 3], bytes: exps },
    ];
    const dir = writeCheckpoint(join(tmp.path, 'mxfp4'), tensors, config(false));
    const w4a4 = writeCheckpoint(join(tmp.path, 'mxfp4-w4a4'), tensors, config(true));
    await open(w4a4, async (_c, map) => assert.equal(map.scheme.description, 'MXFP4 weights and activations, groups of 32 with E8M0 scales'));
    await open(dir, async (c, map) => {
      assert.equal(map.scheme.description, 'MXFP4 weights, groups of 32 with E8M0 scales');
      assert.deepEqual(map.scheme.disagreements, []);
      assert.equal(map.modules[0]!.observed?.kind, 'mxfp4');
      const [module] = await readScaleOverview(c, map);
      const scale = module!.scales.find((s) => s.role === 'weight_scale')!;
      assert.deepEqual(scale.exponents, { min: -9, max: 127 });
      assert.equal(scale.stats.nan, 1);
      assert.equal(scale.stats.min, 2 ** -9);
      assert.equal(scale.stats.max, 2 ** 127);
      assert.equal(scale.saturated, 1);
      assert.equal(scale.subnormals, 0);
      const kinds = (await scanHealth(c, map)).findings.map((f) => `${f.kind} ${f.tensor}`);
      assert.ok(kinds.includes(`nan-scale ${M}.weight_scale`) && kinds.includes(`saturated-scale ${M}.weight_scale`), kinds.join('; '));
    });
    const result = await stats(dir, `${M}.weight_packed`, 'dequantized', 50);
    assert.match(result.codes, /E8M0 exponent per 32/);
    checkStats(result, expected);
    checkStats(await stats(dir, `${M}.weight_packed`, 'codes', 50), codes);

    // Error: the NaN group and the 2^127 group are left out of the comparison (finite rows only).
    const finiteExps = Uint8Array.from(exps, (e) => (e >= 0xfe ? 120 : e));
    const finiteDir = writeCheckpoint(join(tmp.path, 'mxfp4-finite'), [tensors[0]!, { ...tensors[1]!, bytes: finiteExps }], config(false));
    const finiteExpected = codes.map((v, i) => v * 2 ** (finiteExps[Math.floor(i / mc) * 3 + Math.floor((i % mc) / 32)]! - 127));
    const originalValues = Float32Array.from(finiteExpected, (v, i) => v * 1.01 + (i % 3) * 1e-5);
    const original = writeOriginal(join(tmp.path, 'mxfp4-original'), originalValues, mr, mc);
    checkError((await compare(finiteDir, original)).layers[0], originalValues, finiteExpected);
  });

  it('says which tensor is wrong when an FP4 layer does not fit together', async () => {
    const dir = writeCheckpoint(join(tmp.path, 'nvfp4-bad'), [
      { name: `${M}.weight_packed`, dtype: 'U8', shape: [nr, nc / 2], bytes: nvPacked },
      { name: `${M}.weight_scale`, dtype: 'F8_E4M3', shape: [nr - 1, 3], bytes: nvScaleCodes.subarray(0, (nr - 1) * 3) },
      { name: `${M}.weight_global_scale`, dtype: 'F32', shape: [1], bytes: bytesOf(nvGlobal) },
    ]);
    await assert.rejects(stats(dir, `${M}.weight_packed`, 'dequantized', 100), new RegExp(`${M.replace(/\./g, '\\.')}\\.weight_scale: expected \\[6, groups\\] \\(one scale per group of a row\\), found \\[5, 3\\]`));
  });
});
