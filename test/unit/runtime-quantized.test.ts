/**
 * Quantized checkpoints run natively in the graph (FP8 DequantizeLinear, INT8 MatMulInteger, INT4
 * MatMulNBits) and equal the float64 reference run on the dequantized weights, with the checkpoint's
 * activation quantization simulated in float64 (W8A8: per-token INT8, round half to even; FP8 dynamic:
 * per-token E4M3). Checkpoints come from the quantize job (W8A8, FP8-dynamic, W4A16 RTN) and, for GPTQ v1
 * with act-order and zero points, are written here tensor by tensor.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { openDecoderModel, writeDecoderGraph } from '../../src/core/runtime/llama/graph';
import { runQuantizeJob, SchemeName } from '../../src/core/jobs/quantize';
import type { Int8Kernel } from '../../src/core/runtime/llama/linear';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { buildLayerMap } from '../../src/core/checkpoint/scheme';
import { dequantizeStoredWeight } from '../../src/core/quant/storedWeights';
import { toGptqLayer } from '../../src/core/quant/gptqFormat';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { encodeFromFloat32, decodeToFloat32 } from '../../src/core/dtypes/convert';
import { TinyConfig, Weights, randomWeights, referenceForward, relativeError, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { rng } from '../helpers/random';
import { tempDir } from '../helpers/paths';
import { runLogits } from '../helpers/ortLogits';

const roundHalfEven = (v: number) => {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** Nearest E4M3FN value (ties to even), saturating at ±448: written from the format's definition. */
function toE4M3(x: number): number {
  const a = Math.abs(x);
  if (a === 0) return 0;
  let step: number;
  if (a < 2 ** -6) step = 2 ** -9;
  else {
    let e = Math.floor(Math.log2(a));
    if (2 ** e > a) e--;
    if (2 ** (e + 1) <= a) e++;
    step = 2 ** (e - 3);
  }
  return Math.sign(x) * Math.min(448, roundHalfEven(a / step) * step);
}

function perToken(row: Float64Array, qmax: number, quantize: (v: number) => number): Float64Array {
  let max = 0;
  for (const v of row) max = Math.max(max, Math.abs(v));
  const s = Math.fround(max / qmax);
  return row.map((v) => quantize(Math.fround(v / s)) * s);
}

const QUANTIZE_INPUT: Partial<Record<SchemeName | 'gptq', (row: Float64Array) => Float64Array>> = {
  w8a8: (row) => perToken(row, 127, (v) => Math.max(-128, Math.min(127, roundHalfEven(v)))),
  'fp8-dynamic': (row) => perToken(row, 448, toE4M3),
};

/** Writes a GPTQ v1 checkpoint with act-order g_idx and asymmetric zero points; returns the dequantized weights. */
async function writeGptqCheckpoint(folder: string, config: TinyConfig, weights: Weights, seed: number): Promise<Map<string, Float64Array>> {
  const random = rng(seed);
  const tensors: { name: string; dtype: 'F32' | 'I32' | 'F16'; shape: number[]; data: Uint8Array }[] = [];
  const dequantized = new Map<string, Float64Array>();
  const bytes = (a: Int32Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (const [name, { shape, data }] of weights) {
    const module = name.replace(/\.weight$/, '');
    if (!/\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(name)) {
      tensors.push({ name, dtype: 'F32', shape, data: bytes(Float32Array.from(data)) });
      continue;
    }
    const [N, K] = shape as [number, number];
    const G = K / 128;
    const perm = Int32Array.from({ length: K }, (_, i) => i);
    for (let i = K - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    const gIdx = new Int32Array(K);
    for (let i = 0; i < K; i++) gIdx[perm[i]!] = Math.floor(i / 128);
    const q = Int8Array.from({ length: N * K }, () => Math.floor(random() * 16) - 8);
    const zp = Int8Array.from({ length: N * G }, () => Math.floor(random() * 7) - 3);
    // Scales exactly representable in F16, sized like the float weights they replace.
    const scale = decodeToFloat32('F16', encodeFromFloat32('F16', Float32Array.from({ length: N * G }, () => (0.5 + random()) * (Math.abs(data[0]!) + 0.02) / 8)));
    const layer = toGptqLayer(q, N, K, 4, scale, 'gptq', { zeroPoint: zp, gIdx });
    tensors.push({ name: `${module}.qweight`, dtype: 'I32', shape: [K / 8, N], data: bytes(layer.qweight) });
    tensors.push({ name: `${module}.qzeros`, dtype: 'I32', shape: [G, N / 8], data: bytes(layer.qzeros) });
    tensors.push({ name: `${module}.scales`, dtype: 'F16', shape: [G, N], data: encodeFromFloat32('F16', layer.scales) });
    tensors.push({ name: `${module}.g_idx`, dtype: 'I32', shape: [K], data: bytes(layer.gIdx) });
    const w = new Float64Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) w[n * K + k] = scale[n * G + gIdx[k]!]! * (q[n * K + k]! - zp[n * G + gIdx[k]!]!);
    dequantized.set(module, w);
  }
  await fs.mkdir(folder, { recursive: true });
  await fs.writeFile(join(folder, 'config.json'), JSON.stringify({ ...config, quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128, desc_act: true, sym: false, checkpoint_format: 'gptq' } }));
  await writeSafetensors(join(folder, 'model.safetensors'), tensors);
  return dequantized;
}

describe('runtime: quantized checkpoints run natively', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  // Dimensions divisible by 128 so that W4A16 (group 128) applies to every projection.
  const config = tinyConfig({ hidden_size: 128, intermediate_size: 256, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 64, vocab_size: 40 });
  const weights = randomWeights(config, 31);
  const tokens = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7];
  before(async () => {
    tmp = tempDir();
    await writeTinyCheckpoint(join(tmp.path, 'float'), config, weights);
  });
  after(() => tmp.cleanup());

  // INT8 runs in each MatMulInteger form: the CPU's own (u8u8 or u8s8 by the host's VNNI) and CUDA's int8 × int8
  // (s8s8, linear.ts int8KernelFor), which the CPU provider also runs. W8A16 (8-bit pack-quantized, weight only)
  // has no preset of the job: a recipe asks for it.
  const w8a16Recipe = 'default_stage:\n  default_modifiers:\n    QuantizationModifier:\n      targets: [Linear]\n      ignore: [lm_head]\n      scheme: W8A16\n';
  const cases: [SchemeName | 'w8a16-rtn', string, number, Int8Kernel?][] = [
    ['w8a8', 'int8', 1e-4],
    ['w8a8', 'int8', 1e-4, 's8s8'],
    ['fp8-dynamic', 'fp8', 1e-4],
    ['w4a16-rtn', 'int4', 1e-4],
    ['w8a16-rtn', 'int8-weight', 1e-4],
  ];
  for (const [scheme, kind, tolerance, int8Kernel] of cases) {
    it(`${scheme}${int8Kernel ? ` (${int8Kernel} MatMulInteger, the CUDA form)` : ''}: ${kind} linears; logits equal the reference on the dequantized weights`, async () => {
      const out = join(tmp.path, `${scheme}${int8Kernel ?? ''}`);
      if (scheme === 'w8a16-rtn') await runQuantizeJob({ model: join(tmp.path, 'float'), out, recipe: { text: w8a16Recipe, path: 'w8a16.yaml' } });
      else await runQuantizeJob({ model: join(tmp.path, 'float'), out, scheme });
      const model = await openDecoderModel(out);
      const modelPath = join(tmp.path, `${scheme}${int8Kernel ?? ''}-graph`, 'model.onnx');
      const dequantized = new Map<string, Float64Array>();
      try {
        // FP8 as stored (DequantizeLinear per run, as on CUDA); the CPU's float32 expansion is runtime-fp8-expand.test.ts's.
        const info = await writeDecoderGraph(model, modelPath, { int4AccuracyLevel: 0, maxSequenceLength: 32, fp8Weights: 'stored', ...(int8Kernel ? { int8Kernel } : {}) });
        assert.equal(info.linearKinds['model.layers.0.self_attn.q_proj'], kind);
        assert.equal(info.linearKinds['model.layers.1.mlp.down_proj'], kind);
        assert.equal(info.linearKinds.lm_head, 'float');
        for (const module of model.layerMap.modules) {
          if (module.state !== 'quantized') continue;
          const { weight } = await dequantizeStoredWeight(model.checkpoint, module, { declared: module.declared?.scheme?.weights });
          dequantized.set(module.name, Float64Array.from(weight));
        }
      } finally {
        await model.checkpoint.close();
      }
      // The graph's external data holds the quantized weights, not float copies.
      const dataBytes = (await fs.stat(`${modelPath}.data`)).size;
      const floatBytes = (await fs.stat(join(tmp.path, 'float', 'model.safetensors'))).size;
      assert.ok(dataBytes < floatBytes * (kind === 'int4' ? 0.5 : 0.6), `graph data ${dataBytes} bytes vs float checkpoint ${floatBytes}`);

      const quantizeInput = scheme === 'w8a16-rtn' ? undefined : QUANTIZE_INPUT[scheme];
      const reference = referenceForward(config, weights, tokens, {
        weight: (m) => dequantized.get(m),
        quantizeInput: quantizeInput ? (m, row) => (dequantized.has(m) ? quantizeInput(row) : row) : undefined,
      });
      const logits = await runLogits(modelPath, config, tokens);
      const error = relativeError(logits, reference.logits.flatMap((r) => [...r]));
      assert.ok(error < tolerance, `relative error ${error}`);
      // And it is the quantized model that runs: the float model's logits differ by far more.
      const floatReference = referenceForward(config, weights, tokens);
      assert.ok(relativeError(logits, floatReference.logits.flatMap((r) => [...r])) > 10 * error);
    });
  }

  it('GPTQ v1 with act-order g_idx and zero points: MatMulNBits on sorted columns equals the reference', async () => {
    const folder = join(tmp.path, 'gptq');
    const dequantized = await writeGptqCheckpoint(folder, config, weights, 77);
    const checkpoint = await Checkpoint.open(folder);
    const layerMap = buildLayerMap(checkpoint.tensors, JSON.parse(await fs.readFile(join(folder, 'config.json'), 'utf8')).quantization_config, { numHiddenLayers: 2, hasConfig: true, tieWordEmbeddings: false });
    assert.equal(layerMap.counts.quantized, 14);
    await checkpoint.close();
    const model = await openDecoderModel(folder);
    const modelPath = join(tmp.path, 'gptq-graph', 'model.onnx');
    try {
      await writeDecoderGraph(model, modelPath, { int4AccuracyLevel: 0, maxSequenceLength: 32 });
    } finally {
      await model.checkpoint.close();
    }
    const reference = referenceForward(config, weights, tokens, { weight: (m) => dequantized.get(m) });
    const error = relativeError(await runLogits(modelPath, config, tokens), reference.logits.flatMap((r) => [...r]));
    assert.ok(error < 1e-4, `relative error ${error}`);
  });
});
