/**
 * GPTQ through the quantize job on the shipped example: Hessians computed here from random correlated
 * activations and written to a calibration statistics file → runQuantizeJob → the checkpoint's config,
 * tensor names, dtypes and shapes are what docs/formats.md §3.5 / §5 / §6 prescribe; the stored weights dequantize
 * (src/core/quant/storedWeights.ts) to exactly what quantizeGptq returned for the same layer; the inspector's
 * scheme detection recognises the result. Also the AutoGPTQ and AutoFP8 layouts (checked against the
 * reference vectors' dtypes and configs), recipes, the refusals, and a CLI job killed halfway.
 */
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fs, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { SafetensorsFile } from '../../src/core/safetensors/reader';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { decodeToFloat32 } from '../../src/core/dtypes/convert';
import { E4M3_TO_F32 } from '../../src/core/dtypes/float';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { CalibrationFile } from '../../src/core/jobs/calibrationFile';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { quantizeCommand } from '../../src/cli/quantize';
import { UsageError } from '../../src/cli/args';
import { dequantizeStoredWeight } from '../../src/core/quant/storedWeights';
import { dequantizeGptqResult, quantizeGptq } from '../../src/core/quant/gptq';
import { quantizeAutoFp8 } from '../../src/core/quant/rtn';
import type { QuantArgs } from '../../src/core/quant/args';
import { rng } from '../helpers/random';
import { repoRoot, tempDir, vectorsDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

/** 2/n XᵀX of X = Z·M (heavy-tailed channels Z, random mixing M), as F32 [cols, cols]. */
function hessianFor(cols: number, seed: number): Float32Array {
  const random = rng(seed);
  const normal = () => Math.sqrt(-2 * Math.log(Math.max(random(), 1e-12))) * Math.cos(2 * Math.PI * random());
  const tokens = 2 * cols;
  const channel = Array.from({ length: cols }, () => Math.exp(normal()));
  const mixing = Array.from({ length: 8 }, () => Array.from({ length: cols }, normal));
  const h = new Float64Array(cols * cols);
  const x = new Float64Array(cols);
  for (let t = 0; t < tokens; t++) {
    const shared = mixing.map(() => normal());
    for (let i = 0; i < cols; i++) {
      let v = normal() * channel[i]!;
      for (let m = 0; m < mixing.length; m++) v += 0.5 * shared[m]! * mixing[m]![i]!;
      x[i] = v;
    }
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) h[i * cols + j]! += x[i]! * x[j]!;
  }
  return Float32Array.from(h, (v) => (2 / tokens) * v);
}

interface Layer {
  name: string;
  rows: number;
  cols: number;
}

async function linearLayers(): Promise<Layer[]> {
  const checkpoint = await Checkpoint.open(example());
  try {
    const { layerMap } = await analyzeCheckpoint(checkpoint, example());
    return layerMap.modules.filter((m) => m.name !== 'lm_head').map((m) => ({ name: m.name, rows: m.observed!.shape![0], cols: m.observed!.shape![1] }));
  } finally {
    await checkpoint.close();
  }
}

async function readWeight(name: string): Promise<Float32Array> {
  const checkpoint = await Checkpoint.open(example());
  try {
    return decodeToFloat32(checkpoint.tensor(name).dtype, await checkpoint.readTensorBytes(name));
  } finally {
    await checkpoint.close();
  }
}

function sha256(path: string): string {
  const hash = createHash('sha256');
  for (const name of readdirSync(path).sort()) {
    const file = join(path, name);
    if (statSync(file).isFile()) hash.update(name).update(readFileSync(file));
  }
  return hash.digest('hex');
}

describe('quantize job with GPTQ, AutoGPTQ and AutoFP8 outputs', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let layers: Layer[];
  let statsPath: string;
  let calibration: CalibrationFile;
  const hessians = new Map<string, Float32Array>();

  before(async () => {
    if (!existsSync(join(example(), 'model.safetensors.index.json'))) throw new Error('the example checkpoint is missing: run `npm run example` first');
    tmp = tempDir();
    layers = await linearLayers();
    assert.equal(layers.length, 28);
    statsPath = join(tmp.path, 'calibration.safetensors');
    const tensors = [];
    for (const [i, layer] of layers.entries()) {
      const h = hessianFor(layer.cols, 1000 + i);
      hessians.set(layer.name, h);
      tensors.push({ name: `${layer.name}.hessian`, dtype: 'F32' as const, shape: [layer.cols, layer.cols], data: new Uint8Array(h.buffer) });
      tensors.push({ name: `${layer.name}.input_absmax`, dtype: 'F32' as const, shape: [], data: new Uint8Array(Float32Array.of(3 + i / 7).buffer) });
    }
    await writeSafetensors(statsPath, tensors, { metadata: { 'quantlens.calibration': '1' } });
    calibration = await CalibrationFile.open(statsPath);
  });
  after(async () => {
    await calibration?.close();
    tmp?.cleanup();
  });

  const w4: QuantArgs = { numBits: 4, type: 'int', symmetric: true, strategy: 'group', groupSize: 128, dynamic: false, actorder: 'weight' };

  it('w4a16: compressed-tensors pack-quantized as llm-compressor writes GPTQ; dequantizes to the GPTQ result; recognised', async () => {
    const out = join(tmp.path, 'w4a16');
    const summary = await runQuantizeJob({ model: example(), out, scheme: 'w4a16', calibration });
    assert.equal(summary.quantizedLayers, 28);
    assert.equal(summary.gptqLayers, 28);
    assert.equal(summary.format, 'pack-quantized');
    assert.deepEqual(summary.ignoredLayers, ['lm_head']);

    const config = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8'));
    assert.deepEqual(config.quantization_config, {
      config_groups: {
        group_0: {
          format: 'pack-quantized',
          input_activations: null,
          output_activations: null,
          targets: ['Linear'],
          weights: { actorder: 'static', block_structure: null, dynamic: false, group_size: 128, num_bits: 4, observer: 'memoryless_minmax', observer_kwargs: {}, scale_dtype: null, strategy: 'group', symmetric: true, type: 'int', zp_dtype: null },
        },
      },
      format: 'pack-quantized',
      global_compression_ratio: null,
      ignore: ['lm_head'],
      kv_cache_scheme: null,
      quant_method: 'compressed-tensors',
      quantization_status: 'compressed',
      sparsity_config: {},
      transform_config: {},
      version: '0.12.2',
    });
    const recipe = await fs.readFile(join(out, 'recipe.yaml'), 'utf8');
    assert.match(recipe, /GPTQModifier:\n\s+actorder: static\n\s+block_size: 128\n\s+dampening_frac: 0\.1\n/);

    const quantized = await Checkpoint.open(out);
    try {
      const { summary: s, layerMap } = await analyzeCheckpoint(quantized, out);
      assert.equal(s.scheme.family, 'compressed-tensors');
      assert.match(s.scheme.description, /^INT4 weights, group 128, symmetric/);
      assert.deepEqual(layerMap.modules.flatMap((m) => m.issues), []);
      assert.equal(layerMap.modules.filter((m) => m.state === 'quantized').length, 28);
      assert.equal(layerMap.modules.find((m) => m.name === 'lm_head')!.state, 'ignored');
      for (const layer of layers) {
        const t = (suffix: string) => quantized.tensor(`${layer.name}.${suffix}`);
        assert.deepEqual([t('weight_packed').dtype, t('weight_packed').shape], ['I32', [layer.rows, layer.cols / 8]]);
        assert.deepEqual([t('weight_scale').dtype, t('weight_scale').shape], ['BF16', [layer.rows, layer.cols / 128]]);
        assert.deepEqual([t('weight_shape').dtype, t('weight_shape').shape], ['I64', [2]]);
        assert.equal(quantized.has(`${layer.name}.weight_zero_point`), false, 'symmetric: no zero point');
        assert.equal(quantized.has(`${layer.name}.weight_g_idx`), false, 'actorder static saves no g_idx');
        assert.equal(quantized.has(`${layer.name}.weight`), false);
      }
      assert.equal(quantized.tensor('lm_head.weight').dtype, 'BF16');
      // Dequantized = what quantizeGptq returns for that layer (every third layer, to keep the test quick).
      for (const layer of layers.filter((_, i) => i % 3 === 0)) {
        const module = layerMap.modules.find((m) => m.name === layer.name)!;
        const stored = await dequantizeStoredWeight(quantized, module, { declared: module.declared?.scheme?.weights });
        const direct = await quantizeGptq(await readWeight(`${layer.name}.weight`), layer.rows, layer.cols, hessians.get(layer.name)!, w4, { dampeningFrac: 0.1, scaleDtype: 'BF16' });
        assert.deepEqual(stored.weight, dequantizeGptqResult(direct), layer.name);
      }
    } finally {
      await quantized.close();
    }
  });

  it('a recipe with GPTQModifier, asymmetric INT4 and actorder group: weight_g_idx and packed zero points; dequantizes exactly', async () => {
    const recipePath = join(tmp.path, 'gptq-group.yaml');
    const text = [
      'quant_stage:',
      '  quant_modifiers:',
      '    GPTQModifier:',
      '      block_size: 64',
      '      dampening_frac: 0.05',
      '      actorder: group',
      '      ignore: ["lm_head", "re:.*down_proj$"]',
      '      config_groups:',
      '        group_0:',
      '          targets: ["Linear"]',
      '          weights: {num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 128}',
      '',
    ].join('\n');
    await fs.writeFile(recipePath, text);
    const out = join(tmp.path, 'recipe-group');
    const summary = await runQuantizeJob({ model: example(), out, recipe: { text, path: recipePath }, calibration });
    assert.equal(summary.quantizedLayers, 24);
    assert.equal(summary.gptqLayers, 24);
    assert.deepEqual([...summary.ignoredLayers].sort(), [...layers.filter((l) => l.name.endsWith('down_proj')).map((l) => l.name), 'lm_head'].sort());
    assert.equal(await fs.readFile(join(out, 'recipe.yaml'), 'utf8'), text, 'the recipe is saved as given');
    const config = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8'));
    assert.equal(config.quantization_config.config_groups.group_0.weights.actorder, 'group');
    assert.equal(config.quantization_config.config_groups.group_0.weights.zp_dtype, 'int8');
    assert.deepEqual(config.quantization_config.ignore, ['lm_head', 're:.*down_proj$']);
    const quantized = await Checkpoint.open(out);
    try {
      const { layerMap } = await analyzeCheckpoint(quantized, out);
      assert.deepEqual(layerMap.modules.flatMap((m) => m.issues), []);
      const args: QuantArgs = { numBits: 4, type: 'int', symmetric: false, strategy: 'group', groupSize: 128, dynamic: false, actorder: 'group' };
      for (const layer of layers.filter((l) => l.name.startsWith('model.layers.1.') && !l.name.endsWith('down_proj'))) {
        const t = (suffix: string) => quantized.tensor(`${layer.name}.${suffix}`);
        assert.deepEqual([t('weight_g_idx').dtype, t('weight_g_idx').shape], ['I32', [layer.cols]]);
        assert.deepEqual([t('weight_zero_point').dtype, t('weight_zero_point').shape], ['I32', [Math.ceil(layer.rows / 8), layer.cols / 128]]);
        const module = layerMap.modules.find((m) => m.name === layer.name)!;
        const stored = await dequantizeStoredWeight(quantized, module, { declared: module.declared?.scheme?.weights });
        const direct = await quantizeGptq(await readWeight(`${layer.name}.weight`), layer.rows, layer.cols, hessians.get(layer.name)!, args, { dampeningFrac: 0.05, blockSize: 64, scaleDtype: 'BF16' });
        const gIdx = new Int32Array((await quantized.readTensorBytes(`${layer.name}.weight_g_idx`)).slice().buffer);
        assert.deepEqual(gIdx, direct.gIdx);
        assert.ok(gIdx.some((g, k) => g !== Math.floor(k / 128)), 'act-order groups are not the contiguous ones');
        assert.deepEqual(stored.weight, dequantizeGptqResult(direct), layer.name);
      }
    } finally {
      await quantized.close();
    }
  });

  it('--format gptq: AutoGPTQ qweight/qzeros/scales/g_idx with the reference vectors\' dtypes, quantize_config.json; dequantizes exactly', async () => {
    const out = join(tmp.path, 'autogptq');
    const summary = await runQuantizeJob({ model: example(), out, scheme: 'w4a16', format: 'gptq', calibration });
    assert.equal(summary.format, 'gptq');
    const quantizeConfig = JSON.parse(await fs.readFile(join(out, 'quantize_config.json'), 'utf8'));
    const expected = { bits: 4, group_size: 128, damp_percent: 0.1, desc_act: true, static_groups: true, sym: true, true_sequential: true, model_name_or_path: null, model_file_base_name: null, quant_method: 'gptq', checkpoint_format: 'gptq' };
    assert.deepEqual(quantizeConfig, expected);
    assert.deepEqual(JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8')).quantization_config, expected);
    assert.equal(existsSync(join(out, 'recipe.yaml')), false);

    // The integer tensors' dtypes of the reference GPTQ file (GPTQModel's test definitions, docs/formats.md §9); its
    // scales are F32 test values, while AutoGPTQ checkpoints store F16 scales (docs/formats.md §5.2).
    const vector = await SafetensorsFile.open(vectorsDir('gptq', 'zeros_4bit_gptq.safetensors'));
    const vectorDtypes: Record<string, string> = Object.fromEntries(['qweight', 'qzeros', 'g_idx'].map((s) => [s, vector.tensor(`linear.${s}`).dtype]));
    vectorDtypes.scales = 'F16';
    await vector.close();

    const quantized = await Checkpoint.open(out);
    try {
      const { summary: s, layerMap } = await analyzeCheckpoint(quantized, out);
      assert.equal(s.scheme.family, 'gptq');
      assert.deepEqual(layerMap.modules.flatMap((m) => m.issues), []);
      assert.equal(layerMap.modules.filter((m) => m.state === 'quantized').length, 28);
      for (const layer of layers) {
        const K = layer.cols;
        const N = layer.rows;
        const t = (suffix: string) => quantized.tensor(`${layer.name}.${suffix}`);
        assert.deepEqual([t('qweight').dtype, t('qweight').shape], [vectorDtypes.qweight, [K / 8, N]]);
        assert.deepEqual([t('qzeros').dtype, t('qzeros').shape], [vectorDtypes.qzeros, [K / 128, N / 8]]);
        assert.deepEqual([t('scales').dtype, t('scales').shape], [vectorDtypes.scales, [K / 128, N]]);
        assert.deepEqual([t('g_idx').dtype, t('g_idx').shape], [vectorDtypes.g_idx, [K]]);
        // Symmetric 4-bit, v1: every zero is 8, stored as 7 in every nibble (docs/formats.md §5.4).
        const qzeros = new Uint32Array((await quantized.readTensorBytes(`${layer.name}.qzeros`)).slice().buffer);
        assert.ok(qzeros.every((w) => w === 0x77777777));
        const gIdx = new Int32Array((await quantized.readTensorBytes(`${layer.name}.g_idx`)).slice().buffer);
        assert.ok(gIdx.every((g, k) => g === Math.floor(k / 128)), 'static act-order keeps contiguous groups');
      }
      for (const layer of layers.filter((_, i) => i % 4 === 1)) {
        const module = layerMap.modules.find((m) => m.name === layer.name)!;
        const stored = await dequantizeStoredWeight(quantized, module, { gptqFormat: 'gptq' });
        const direct = await quantizeGptq(await readWeight(`${layer.name}.weight`), layer.rows, layer.cols, hessians.get(layer.name)!, w4, { dampeningFrac: 0.1, scaleDtype: 'F16' });
        assert.deepEqual(stored.weight, dequantizeGptqResult(direct), layer.name);
      }
    } finally {
      await quantized.close();
    }
  });

  for (const [scheme, activation] of [['fp8', 'static'], ['fp8-dynamic', 'dynamic']] as const) {
    it(`--format autofp8 with ${scheme}: the AutoFP8 layout and config of the reference vectors (${activation})`, async () => {
      const reference = JSON.parse(readFileSync(vectorsDir('configs', 'autofp8_config.json'), 'utf8'));
      const out = join(tmp.path, `autofp8-${scheme}`);
      const summary = await runQuantizeJob({ model: example(), out, scheme, format: 'autofp8', calibration });
      assert.equal(summary.format, 'fp8');
      const config = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8'));
      assert.deepEqual(config.quantization_config, reference[`quantization_config_${activation}`]);
      const expectedTensors = reference[`tensors_${activation}`] as Record<string, string>;
      const quantized = await Checkpoint.open(out);
      try {
        for (const [name, dtype] of Object.entries(expectedTensors)) assert.equal(quantized.tensor(name).dtype, dtype, name);
        assert.equal(quantized.has('model.layers.0.mlp.down_proj.input_scale'), activation === 'static');
        const { summary: s, layerMap } = await analyzeCheckpoint(quantized, out);
        assert.equal(s.scheme.family, 'fp8');
        assert.deepEqual(layerMap.modules.flatMap((m) => m.issues), []);
        for (const layer of layers.filter((_, i) => i % 5 === 0)) {
          assert.deepEqual(quantized.tensor(`${layer.name}.weight_scale`).shape, []);
          const codes = await quantized.readTensorBytes(`${layer.name}.weight`);
          const scale = decodeToFloat32('F32', await quantized.readTensorBytes(`${layer.name}.weight_scale`))[0]!;
          const direct = quantizeAutoFp8(await readWeight(`${layer.name}.weight`), layer.rows, layer.cols, { computeDtype: 'BF16' });
          assert.deepEqual(codes, direct.q);
          assert.equal(scale, direct.scale[0]);
          if (activation === 'static') {
            const inputScale = decodeToFloat32('F32', await quantized.readTensorBytes(`${layer.name}.input_scale`))[0]!;
            assert.equal(inputScale, Math.fround(calibration.inputAbsMax(layer.name)! / 448));
          }
          // W ≈ e4m3(q) · weight_scale.
          assert.ok(Number.isFinite(E4M3_TO_F32[codes[0]!]! * scale));
        }
      } finally {
        await quantized.close();
      }
    });
  }

  it('refuses combinations that make no sense, and GPTQ without Hessians, with clear messages', async () => {
    const out = join(tmp.path, 'refused');
    await assert.rejects(runQuantizeJob({ model: example(), out, scheme: 'w8a8', format: 'gptq' }), /--format gptq is weight-only; scheme w8a8 also quantizes activations/);
    await assert.rejects(runQuantizeJob({ model: example(), out, scheme: 'fp8-dynamic', format: 'gptq' }), /--format gptq writes AutoGPTQ INT4\/INT8 weights; scheme fp8-dynamic gives .* FLOAT8 weights \(use --format autofp8 or compressed-tensors\)/);
    await assert.rejects(runQuantizeJob({ model: example(), out, scheme: 'w4a16-rtn', format: 'autofp8' }), /--format autofp8 writes FP8 weights; scheme w4a16-rtn gives .* INT4 weights \(use --format gptq or compressed-tensors\)/);
    await assert.rejects(runQuantizeJob({ model: example(), out, scheme: 'w4a16' }), /w4a16 runs GPTQ, which needs calibration Hessians \(a calibration statistics file: --calib-stats FILE\); use w4a16-rtn/);
    const awq = 'quant_stage:\n  quant_modifiers:\n    AWQModifier: {}\n    GPTQModifier:\n      scheme: W4A16\n      targets: [Linear]\n      ignore: [lm_head]\n';
    await assert.rejects(runQuantizeJob({ model: example(), out, recipe: { text: awq, path: 'awq.yaml' }, calibration }), /awq\.yaml: QuantLens runs QuantizationModifier and GPTQModifier; it cannot run AWQModifier/);
    const typo = 'quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      schme: W4A16\n';
    await assert.rejects(runQuantizeJob({ model: example(), out, recipe: { text: typo, path: 'typo.yaml' }, calibration }), /typo\.yaml has errors:\n {2}typo\.yaml:4:7: /);
    assert.equal(existsSync(out), false);
  });

  it('CLI: --scheme or --recipe (not both), --format and --group-params are checked before anything runs', async () => {
    const sink = { write: () => true } as unknown as NodeJS.WritableStream;
    const run = (...args: string[]) => quantizeCommand([example(), '--out', join(tmp.path, 'cli-refused'), ...args], sink);
    await assert.rejects(run(), (e: Error) => e instanceof UsageError && /--scheme .* or --recipe FILE is required/.test(e.message));
    await assert.rejects(run('--scheme', 'w4a16', '--recipe', 'r.yaml'), (e: Error) => e instanceof UsageError && /not both/.test(e.message));
    await assert.rejects(run('--scheme', 'w4a16', '--format', 'awq'), (e: Error) => e instanceof UsageError && /--format must be one of compressed-tensors, gptq, autofp8/.test(e.message));
    await assert.rejects(run('--scheme', 'w4a16', '--group-params', 'later'), (e: Error) => e instanceof UsageError && /upfront or lazy/.test(e.message));
    await assert.rejects(run('--recipe', join(tmp.path, 'no-such-recipe.yaml')), (e: Error) => e instanceof UsageError && /cannot read the recipe/.test(e.message));
    assert.equal(existsSync(join(tmp.path, 'cli-refused')), false);
  });

  it('pre-flight: a Hessian of the wrong size names the layer and both shapes', async () => {
    const bad = join(tmp.path, 'bad-calibration.safetensors');
    const tensors = layers.map((l) => {
      const cols = l.name === 'model.layers.2.mlp.down_proj' ? 256 : l.cols;
      return { name: `${l.name}.hessian`, dtype: 'F32' as const, shape: [cols, cols], data: new Uint8Array(cols * cols * 4) };
    });
    await writeSafetensors(bad, tensors);
    const stats = await CalibrationFile.open(bad);
    try {
      await assert.rejects(runQuantizeJob({ model: example(), out: join(tmp.path, 'bad'), scheme: 'w4a16', calibration: stats }), /model\.layers\.2\.mlp\.down_proj: its Hessian is \[256, 256\], in_features is 768 \(expected \[768, 768\]\)/);
    } finally {
      await stats.close();
    }
  });

  it('a CLI job SIGKILLed halfway leaves the input byte-identical and nothing under the output name', async function () {
    const root = repoRoot();
    if (!existsSync(join(root, 'dist', 'cli.js'))) execFileSync(process.execPath, ['esbuild.mjs'], { cwd: root });
    const before = sha256(example());
    const out = join(tmp.path, 'killed');
    const child = spawn(process.execPath, [join(root, 'bin', 'quantlens.js'), 'quantize', example(), '--scheme', 'w4a16', '--calib-stats', statsPath, '--out', out, '--max-shard-size', '20000000'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => child.on('exit', (code, signal) => resolveExit({ code, signal })));
    let partial: string | undefined;
    let killed = false;
    const deadline = Date.now() + 60_000;
    while (!killed && Date.now() < deadline && child.exitCode === null) {
      partial = readdirSync(tmp.path).find((n) => n.startsWith('.killed.') && n.endsWith('.partial'));
      if (partial && readdirSync(join(tmp.path, partial)).some((n) => n.includes('.safetensors'))) {
        child.kill('SIGKILL');
        killed = true;
      } else await new Promise((r) => setTimeout(r, 2));
    }
    const { signal } = await exited;
    assert.ok(killed, `the job ended before a shard appeared: ${stderr}`);
    assert.equal(signal, 'SIGKILL', `the job finished before it could be killed: ${stderr}`);
    assert.equal(existsSync(out), false, 'nothing under the final name');
    assert.ok(partial && existsSync(join(tmp.path, partial)), 'the killed job left its work under a .partial name');
    assert.equal(sha256(example()), before, 'the input is byte-identical');
  });
});
