/**
 * The quantization-error simulation and comparison stream each layer in row blocks. Checked here:
 * - the report does not depend on the block size (row blocks that cut ErrorAccumulator's runs of 4096
 *   elements anywhere, one row per block, the default) — bit for bit;
 * - each layer's numbers equal a whole-layer computation done here: RTN of the whole weight (quantizeRtn,
 *   checked against upstream vectors elsewhere) and float64 sums / a histogram written in this test —
 *   including per-tensor FP8, whose scale needs the whole layer's absmax;
 * - the stored-weight reader gives the same values in row blocks as whole, and the comparison agrees with
 *   a float64 computation from the raw bytes of a pack-quantized checkpoint with zero points;
 * - a NaN in a weight is reported with the tensor, row and column.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { compareWithOriginal, ErrorReport, simulateErrors, SIMULATIONS, SimulationName } from '../../src/core/inspect/error';
import { dequantizeRtn, quantizeRtn } from '../../src/core/quant/rtn';
import { dequantizeStoredWeight, openStoredWeight } from '../../src/core/quant/storedWeights';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import type { DType } from '../../src/core/dtypes/dtype';
import { repoRoot, tempDir } from '../helpers/paths';
import { writeGptqFixture } from '../integration/suite/quantizedFixtures';
import { heavyTailedWeights as heavyTailed, toBf16 as bf16 } from '../helpers/weights';
import { RawTensor, writeCheckpoint } from '../helpers/safetensorsBytes';
import { expertGrid } from '../../webview/inspector/expertGrid';



/** Float64 error metrics and the 64-bin histogram of the float32 error, computed naively. */
function reference(w: Float32Array, approx: Float32Array) {
  let refSq = 0;
  let approxSq = 0;
  let errSq = 0;
  let dot = 0;
  let maxAbs = 0;
  const diff = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const e = w[i]! - approx[i]!;
    refSq += w[i]! ** 2;
    approxSq += approx[i]! ** 2;
    errSq += e * e;
    dot += w[i]! * approx[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(e));
    diff[i] = e;
  }
  let low = Infinity;
  let high = -Infinity;
  for (const v of diff) {
    low = Math.min(low, v);
    high = Math.max(high, v);
  }
  const bins = high > low ? 64 : 1;
  const width = (high > low ? high - low : Math.max(Math.abs(low), 1e-30) * 1e-6) / bins;
  const counts = new Array<number>(bins).fill(0);
  for (const v of diff) counts[Math.min(bins - 1, Math.max(0, Math.floor((v - low) / width)))]!++;
  const edges = Array.from({ length: bins + 1 }, (_, i) => low + i * width);
  return { relativeFrobenius: Math.sqrt(errSq / refSq), sqnrDb: 10 * Math.log10(refSq / errSq), cosine: dot / Math.sqrt(refSq * approxSq), maxAbs, counts, edges };
}

const close = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) <= 1e-10 * Math.abs(expected), `${what}: ${actual} vs ${expected}`);

describe('quantization error, streamed in row blocks', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  const weights = new Map<string, { dtype: DType; shape: [number, number]; values: Float32Array }>();
  before(async () => {
    tmp = tempDir();
    // Odd shapes: row blocks and runs of 4096 elements do not line up; up_proj's 200 input features are no
    // multiple of 128; F16 and F32 layers take other arithmetic paths.
    const layers: [string, DType, [number, number]][] = [
      ['model.layers.0.self_attn.q_proj', 'BF16', [37, 256]],
      ['model.layers.0.self_attn.k_proj', 'F32', [17, 128]],
      ['model.layers.0.self_attn.o_proj', 'F16', [29, 128]],
      ['model.layers.0.mlp.down_proj', 'BF16', [23, 384]],
      ['model.layers.0.mlp.up_proj', 'BF16', [41, 200]],
      ['lm_head', 'BF16', [61, 128]],
    ];
    const tensors = layers.map(([module, dtype, shape], seed) => {
      const raw = heavyTailed(seed + 1, shape[0] * shape[1]);
      let bytes: Uint8Array;
      let values: Float32Array;
      if (dtype === 'BF16') ({ bytes, values } = bf16(raw));
      else if (dtype === 'F16') {
        const f16 = new Uint16Array(raw.length);
        values = new Float32Array(raw.length);
        // f16 holds every multiple of 2^-10 in [−2, 2] exactly: put the weights on that grid.
        for (let i = 0; i < raw.length; i++) {
          const v = Math.max(-2, Math.min(2, Math.round(raw[i]! * 1024) / 1024));
          values[i] = v;
          f16[i] = encodeF16Exact(v);
        }
        bytes = new Uint8Array(f16.buffer);
      } else {
        values = raw;
        bytes = new Uint8Array(raw.buffer.slice(0));
      }
      weights.set(module, { dtype, shape, values });
      return { name: `${module}.weight`, dtype, shape, data: bytes };
    });
    await writeSafetensors(join(tmp.path, 'model.safetensors'), tensors);
  });
  after(() => tmp.cleanup());

  const reports = async (simulation: SimulationName, blockElements?: number): Promise<ErrorReport> => {
    const checkpoint = await Checkpoint.open(tmp.path);
    try {
      const { layerMap } = await analyzeCheckpoint(checkpoint, tmp.path);
      return await simulateErrors(checkpoint, layerMap, simulation, { blockElements });
    } finally {
      await checkpoint.close();
    }
  };

  for (const simulation of Object.keys(SIMULATIONS) as SimulationName[]) {
    it(`${simulation}: the same report for every block size, equal to a whole-layer float64 computation`, async () => {
      const whole = await reports(simulation);
      assert.equal(whole.layers.length, weights.size);
      for (const blockElements of [1000, 100, 1]) assert.deepEqual(await reports(simulation, blockElements), whole, `blockElements ${blockElements}`);
      const { args } = SIMULATIONS[simulation];
      for (const layer of whole.layers) {
        const { dtype, shape, values } = weights.get(layer.module)!;
        if (args.strategy === 'group' && shape[1] % args.groupSize! !== 0) {
          assert.match(layer.skipped ?? '', /input features 200 are not divisible by group_size 128/);
          continue;
        }
        assert.equal(layer.skipped, undefined);
        const result = quantizeRtn(values, shape[0], shape[1], args, { scaleDtype: dtype === 'F16' ? 'F16' : dtype === 'F32' ? 'F32' : 'BF16' });
        const expected = reference(values, dequantizeRtn(result));
        const m = layer.metrics;
        assert.equal(m.count, values.length);
        assert.equal(m.maxAbsError, expected.maxAbs, `${layer.module} max abs error`);
        close(m.relativeFrobenius, expected.relativeFrobenius, `${layer.module} relative Frobenius`);
        close(m.sqnrDb, expected.sqnrDb, `${layer.module} SQNR`);
        close(m.cosine, expected.cosine, `${layer.module} cosine`);
        assert.deepEqual(layer.errorHistogram.counts, expected.counts, `${layer.module} histogram`);
        assert.deepEqual(layer.errorHistogram.edges, expected.edges, `${layer.module} histogram edges`);
      }
      // The median over the evaluated layers: the middle one, or the mean of the two middle ones (an even
      // count where no layer is skipped: 6).
      const sqnrs = whole.layers.filter((l) => !l.skipped).map((l) => l.metrics.sqnrDb).sort((a, b) => a - b);
      const mid = sqnrs.length >> 1;
      assert.equal(whole.medianSqnrDb, sqnrs.length % 2 ? sqnrs[mid] : (sqnrs[mid - 1]! + sqnrs[mid]!) / 2);
    });
  }

  it('names the tensor, row and column of a NaN weight', async () => {
    const values = bf16(heavyTailed(99, 12 * 64)).bytes;
    new Uint16Array(values.buffer)[5 * 64 + 7] = 0x7fc0;
    const folder = join(tmp.path, 'nan');
    mkdirSync(folder);
    await writeSafetensors(join(folder, 'model.safetensors'), [{ name: 'model.layers.0.mlp.gate_proj.weight', dtype: 'BF16', shape: [12, 64], data: values }]);
    const checkpoint = await Checkpoint.open(folder);
    try {
      const { layerMap } = await analyzeCheckpoint(checkpoint, folder);
      for (const simulation of ['int8-channel', 'fp8-tensor'] as const) {
        await assert.rejects(simulateErrors(checkpoint, layerMap, simulation, { blockElements: 200 }), /model\.layers\.0\.mlp\.gate_proj\.weight: the weight holds NaN \(row 5, column 7\)/);
      }
    } finally {
      await checkpoint.close();
    }
  });

  it('bins the float32 error over its finite range when some errors overflow float32', async () => {
    // Row 0 reconstructs to ±3.3e38 against an original of the opposite sign: w − ŵ ≈ ∓6.6e38 is finite in
    // float64 (and counted in the sums) but ±Inf in float32, which has no bin.
    const folder = join(tmp.path, 'overflow');
    mkdirSync(join(folder, 'quantized'), { recursive: true });
    mkdirSync(join(folder, 'original'));
    const name = 'model.layers.0.mlp.down_proj';
    const q = new Int8Array([127, -127, 3, 0, 1, 2, 3, 4]);
    const scale = new Float32Array([2.6e36, 0.5]);
    const w = new Float32Array([-3.3e38, 3.3e38, 1e36, 5, 0.5, 1.25, 1.5, 2]);
    await writeSafetensors(join(folder, 'quantized', 'model.safetensors'), [
      { name: `${name}.weight`, dtype: 'I8', shape: [2, 4], data: new Uint8Array(q.buffer) },
      { name: `${name}.weight_scale`, dtype: 'F32', shape: [2, 1], data: new Uint8Array(scale.buffer) },
    ]);
    await writeSafetensors(join(folder, 'original', 'model.safetensors'), [{ name: `${name}.weight`, dtype: 'F32', shape: [2, 4], data: new Uint8Array(w.buffer) }]);
    const quantized = await Checkpoint.open(join(folder, 'quantized'));
    const original = await Checkpoint.open(join(folder, 'original'));
    try {
      const { layerMap } = await analyzeCheckpoint(quantized, join(folder, 'quantized'));
      const [layer] = (await compareWithOriginal(quantized, layerMap, original)).layers;
      assert.ok(layer && !layer.skipped, JSON.stringify(layer));
      const approx = Array.from(q, (v, i) => Math.fround(v * scale[i >> 2]!));
      const errors = Array.from(w, (v, i) => v - approx[i]!);
      assert.equal(layer.metrics.count, 8);
      assert.equal(layer.metrics.maxAbsError, Math.max(...errors.map(Math.abs)));
      const finite32 = errors.map(Math.fround).filter(Number.isFinite);
      assert.equal(finite32.length, 6);
      const { edges, counts } = layer.errorHistogram;
      assert.equal(edges[0], Math.min(...finite32));
      assert.equal(counts.length, 64);
      assert.equal(counts.reduce((a, b) => a + b, 0), 6);
      // Bins 6.8e36 / 64 wide: the minimum in the first, the five errors in [0, 5] in the last.
      assert.equal(counts[0], 1);
      assert.equal(counts[63], 5);
    } finally {
      await quantized.close();
      await original.close();
    }
  });

  it('stored weights read in row blocks equal the whole read; the comparison of a pack-quantized checkpoint with zero points agrees with float64', async () => {
    const example = join(repoRoot(), 'examples', 'tiny-llama');
    if (!existsSync(join(example, 'model.safetensors.index.json'))) throw new Error('the example checkpoint is missing: run `npm run example`');
    const out = join(tmp.path, 'asym');
    const recipe = 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n      targets: [Linear]\n      scheme: W4A16_ASYM\n';
    await runQuantizeJob({ model: example, out, recipe: { text: recipe } });
    const quantized = await Checkpoint.open(out);
    const original = await Checkpoint.open(example);
    try {
      const { layerMap } = await analyzeCheckpoint(quantized, out);
      const modules = layerMap.modules.filter((m) => m.state === 'quantized');
      assert.equal(modules.length, 28);
      for (const module of modules.slice(0, 4)) {
        const declared = module.declared?.scheme?.weights;
        const whole = await dequantizeStoredWeight(quantized, module, { declared });
        const stored = await openStoredWeight(quantized, module, { declared });
        const blocks = new Float32Array(whole.weight.length);
        const buffer = new Float32Array(7 * stored.cols);
        for (let r0 = 0; r0 < stored.rows; r0 += 7) {
          const r1 = Math.min(stored.rows, r0 + 7);
          blocks.set(await stored.read(r0, r1, buffer), r0 * stored.cols);
        }
        assert.deepEqual(blocks, whole.weight, module.name);
      }
      const compared = await compareWithOriginal(quantized, layerMap, original);
      assert.deepEqual(await compareWithOriginal(quantized, layerMap, original, { blockElements: 1000 }), compared);
      // One layer from the raw bytes: int4 codes packed 8 per int32 (stored as q + 8), packed zero points.
      const name = 'model.layers.1.mlp.down_proj';
      const [rows, cols] = [256, 768];
      const words = new Int32Array((await quantized.readTensorBytes(`${name}.weight_packed`)).slice().buffer);
      const scales = new Uint16Array((await quantized.readTensorBytes(`${name}.weight_scale`)).slice().buffer);
      const zeroWords = new Int32Array((await quantized.readTensorBytes(`${name}.weight_zero_point`)).slice().buffer);
      const w = new Uint16Array((await original.readTensorBytes(`${name}.weight`)).slice().buffer);
      const bf = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
      const groups = cols / 128;
      let err = 0;
      let ref = 0;
      let maxAbs = 0;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const q = ((words[r * (cols / 8) + (c >> 3)]! >>> (4 * (c & 7))) & 15) - 8;
          const g = Math.floor(c / 128);
          // Zero points [rows, groups] packed along rows: element (r, g) is nibble r % 8 of word (r / 8, g).
          const z = ((zeroWords[Math.floor(r / 8) * groups + g]! >>> (4 * (r % 8))) & 15) - 8;
          const x = bf(w[r * cols + c]!);
          const e = x - (q - z) * bf(scales[r * groups + g]!);
          err += e * e;
          ref += x * x;
          maxAbs = Math.max(maxAbs, Math.abs(e));
        }
      }
      const m = compared.layers.find((l) => l.module === name)!.metrics;
      close(m.relativeFrobenius, Math.sqrt(err / ref), 'relative Frobenius');
      assert.equal(m.maxAbsError, maxAbs);
    } finally {
      await quantized.close();
      await original.close();
    }
  });

  it('GPTQ weights (stored transposed) are read in slabs of qweight columns: any slab width gives the whole dequantization, and the comparison agrees with float64', async () => {
    // The fixture writes GPTQ v1 INT4 (act-order g_idx, zero points) without src/, with a float64 dequantization.
    const folder = join(tmp.path, 'gptq-slabs');
    const fixture = writeGptqFixture(join(folder, 'quantized'));
    const perturbed = (values: Float64Array) => Float32Array.from(values, (v, i) => v + 0.004 * Math.sin(i * 0.37));
    mkdirSync(join(folder, 'original'));
    await writeSafetensors(
      join(folder, 'original', 'model.safetensors'),
      fixture.layers.map((l) => ({ name: `${l.module}.weight`, dtype: 'F32' as DType, shape: [...l.shape], data: new Uint8Array(perturbed(l.dequantize()).buffer) })),
    );
    const quantized = await Checkpoint.open(join(folder, 'quantized'));
    const original = await Checkpoint.open(join(folder, 'original'));
    try {
      const { layerMap } = await analyzeCheckpoint(quantized, join(folder, 'quantized'));
      const modules = layerMap.modules.filter((m) => m.state === 'quantized');
      assert.equal(modules.length, fixture.layers.length);
      for (const layer of fixture.layers.filter((_, i) => i % 3 === 0)) {
        const module = modules.find((m) => m.name === layer.module)!;
        const [rows, cols] = layer.shape;
        const expected = Float32Array.from(layer.dequantize());
        // Slabs of 1 column, 5, 37 (not dividing the rows) and the whole layer; row blocks of 7 within them.
        for (const slabElements of [1, 5 * cols, 37 * cols, rows * cols]) {
          const stored = await openStoredWeight(quantized, module, { gptqFormat: 'gptq', slabElements });
          const blocks = new Float32Array(rows * cols);
          const buffer = new Float32Array(7 * cols);
          for (let r0 = 0; r0 < rows; r0 += 7) {
            const r1 = Math.min(rows, r0 + 7);
            blocks.set(await stored.read(r0, r1, buffer), r0 * cols);
          }
          assert.deepEqual(blocks, expected, `${layer.module}, slabs of ${slabElements} codes`);
        }
      }
      const compared = await compareWithOriginal(quantized, layerMap, original);
      assert.deepEqual(await compareWithOriginal(quantized, layerMap, original, { blockElements: 1000 }), compared);
      for (const layer of fixture.layers) {
        const x = perturbed(layer.dequantize());
        const d = layer.dequantize();
        let err = 0;
        let ref = 0;
        let maxAbs = 0;
        for (let i = 0; i < x.length; i++) {
          const e = x[i]! - d[i]!;
          err += e * e;
          ref += x[i]! * x[i]!;
          maxAbs = Math.max(maxAbs, Math.abs(e));
        }
        const m = compared.layers.find((l) => l.module === layer.module)!.metrics;
        assert.equal(m.count, x.length);
        close(m.relativeFrobenius, Math.sqrt(err / ref), `${layer.module}: relative Frobenius`);
        close(m.sqnrDb, 10 * Math.log10(ref / err), `${layer.module}: SQNR`);
        // The error is computed in float32 from float32 values: within an ulp of the float64 one.
        assert.ok(Math.abs(m.maxAbsError - maxAbs) <= 2 ** -23 * maxAbs, `${layer.module}: max |e| ${m.maxAbsError} vs ${maxAbs}`);
      }
    } finally {
      await quantized.close();
      await original.close();
    }
  });

  it("gpt-oss's own MXFP4 fused experts: compared per expert × projection with the original's float fused slices, the same for every block size, each equal to a float64 computation from the raw bytes", async () => {
    // gpt-oss layout (docs/formats.md §3.14): float gate_up_proj [E, H, 2N] ([in, out], gate in the even and up
    // in the odd columns), down_proj [E, N, H]; MXFP4 blocks [E, out, in/32, 16] with E8M0 scales [E, out, in/32],
    // low nibble first, value e2m1 · 2^(scale − 127) (transformers convert_moe_packed_tensors).
    const [E, H, N] = [3, 64, 96];
    const e2m1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
    const bfv = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
    const common: RawTensor[] = [];
    const f = (name: string, shape: number[], seed: number) => ({ name, dtype: 'BF16', shape, bytes: bf16(heavyTailed(seed, shape.reduce((a, b) => a * b, 1))).bytes });
    common.push(f('model.embed_tokens.weight', [32, H], 1), f('lm_head.weight', [32, H], 2), f('model.norm.weight', [H], 3));
    const originalTensors = [...common];
    const quantizedTensors = [...common];
    let seed = 10;
    const u8 = (n: number, lo: number, span: number) => Uint8Array.from({ length: n }, (_, i) => lo + ((i * 2654435761 + seed * 97) >>> 7) % span);
    const fusedFloat = new Map<string, Uint16Array>();
    for (let l = 0; l < 2; l++) {
      const L = `model.layers.${l}`;
      for (const t of [f(`${L}.input_layernorm.weight`, [H], seed++), f(`${L}.post_attention_layernorm.weight`, [H], seed++), f(`${L}.mlp.router.weight`, [E, H], seed++)]) {
        originalTensors.push(t);
        quantizedTensors.push(t);
      }
      for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) {
        const t = f(`${L}.self_attn.${p}.weight`, [H, H], seed++);
        originalTensors.push(t);
        quantizedTensors.push(t);
      }
      for (const [proj, outRows, inCols] of [['gate_up_proj', 2 * N, H], ['down_proj', H, N]] as const) {
        const float = f(`${L}.mlp.experts.${proj}`, [E, inCols, outRows], seed++);
        originalTensors.push(float);
        fusedFloat.set(float.name, new Uint16Array(float.bytes.slice().buffer));
        seed++;
        quantizedTensors.push({ name: `${L}.mlp.experts.${proj}_blocks`, dtype: 'U8', shape: [E, outRows, inCols / 32, 16], bytes: u8(E * outRows * (inCols / 2), 0, 256) });
        quantizedTensors.push({ name: `${L}.mlp.experts.${proj}_scales`, dtype: 'U8', shape: [E, outRows, inCols / 32], bytes: u8(E * outRows * (inCols / 32), 122, 6) });
      }
    }
    const base = { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: H, intermediate_size: N, num_hidden_layers: 2, num_local_experts: E, experts_per_token: 2, num_experts_per_tok: 2, tie_word_embeddings: false };
    const originalDir = writeCheckpoint(join(tmp.path, 'gpt-oss-float'), originalTensors);
    writeFileSync(join(originalDir, 'config.json'), JSON.stringify(base));
    const quantizedDir = writeCheckpoint(join(tmp.path, 'gpt-oss-mxfp4'), quantizedTensors);
    writeFileSync(join(quantizedDir, 'config.json'), JSON.stringify({ ...base, quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'] } }));
    const quantized = await Checkpoint.open(quantizedDir);
    const original = await Checkpoint.open(originalDir);
    try {
      const { layerMap } = await analyzeCheckpoint(quantized, quantizedDir);
      const compared = await compareWithOriginal(quantized, layerMap, original);
      const names = [0, 1].flatMap((l) => [...Array.from({ length: E }, (_, e) => [`model.layers.${l}.mlp.experts.${e}.gate_proj`, `model.layers.${l}.mlp.experts.${e}.up_proj`]).flat(), ...Array.from({ length: E }, (_, e) => `model.layers.${l}.mlp.experts.${e}.down_proj`)]);
      assert.deepEqual(compared.layers.map((l) => [l.module, l.projection, l.block, l.skipped]), names.map((n) => [n, n.slice(n.lastIndexOf('.') + 1), Number(n.split('.')[2]), undefined]));
      for (const blockElements of [1000, 97]) assert.deepEqual(await compareWithOriginal(quantized, layerMap, original, { blockElements }), compared, `blocks of ${blockElements}`);
      // The Error tab's expert heatmap: a row per block and projection, a column per expert, each cell its layer.
      const grid = expertGrid(compared.layers)!;
      assert.deepEqual(grid.rows, ['layer 0 gate_proj', 'layer 0 up_proj', 'layer 0 down_proj', 'layer 1 gate_proj', 'layer 1 up_proj', 'layer 1 down_proj']);
      assert.deepEqual(grid.experts, [0, 1, 2]);
      assert.equal(grid.at(4, 2)!.module, 'model.layers.1.mlp.experts.2.up_proj');
      assert.equal(expertGrid(compared.layers.filter((l) => !l.module.includes('.experts.'))), undefined);
      for (const layer of compared.layers) {
        const [, , l, , , e, proj] = layer.module.split('.');
        const fused = `model.layers.${l}.mlp.experts.${proj === 'down_proj' ? 'down_proj' : 'gate_up_proj'}`;
        const blocks = await quantized.readTensorBytes(`${fused}_blocks`);
        const scales = await quantized.readTensorBytes(`${fused}_scales`);
        const float = fusedFloat.get(fused)!;
        const [outRows, inCols] = proj === 'down_proj' ? [H, N] : [2 * N, H];
        const rows = proj === 'down_proj' ? H : N;
        assert.deepEqual(layer.shape, [rows, inCols]);
        let err = 0;
        let ref = 0;
        let maxAbs = 0;
        for (let r = 0; r < rows; r++) {
          const fusedRow = proj === 'gate_proj' ? 2 * r : proj === 'up_proj' ? 2 * r + 1 : r;
          const q = Number(e) * outRows + fusedRow;
          for (let c = 0; c < inCols; c++) {
            const byte = blocks[q * (inCols / 2) + (c >> 1)]!;
            const approx = Math.fround(e2m1[c & 1 ? byte >> 4 : byte & 15]! * 2 ** (scales[q * (inCols / 32) + Math.floor(c / 32)]! - 127));
            // The float original is [in, out]: element (c, fusedRow) of the expert's slice.
            const x = bfv(float[Number(e) * inCols * outRows + c * outRows + fusedRow]!);
            err += (x - approx) ** 2;
            ref += x * x;
            maxAbs = Math.max(maxAbs, Math.abs(x - approx));
          }
        }
        close(layer.metrics.relativeFrobenius, Math.sqrt(err / ref), `${layer.module} relative Frobenius`);
        assert.equal(layer.metrics.maxAbsError, maxAbs, layer.module);
      }
    } finally {
      await quantized.close();
      await original.close();
    }
  });
});

/** f16 bits of a value that f16 holds exactly (the grid used above: multiples of 2^-10 in [−2, 2]). */
function encodeF16Exact(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const exp = Math.floor(Math.log2(a));
  if (exp < -14) return sign | Math.round(a / 2 ** -24);
  const mantissa = Math.round((a / 2 ** exp - 1) * 1024);
  return sign | ((exp + 15) << 10) | mantissa;
}
