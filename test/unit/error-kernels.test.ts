/**
 * The error measurement's kernels (src/core/inspect/errorKernels.ts): WebAssembly SIMD and portable JS.
 * Checked here:
 * - both engines give the same report, bit for bit, whatever the row blocks (blocks of one row that cut
 *   the sums' runs and lanes at odd element positions: input widths that are no multiple of 4) and whether
 *   a layer's float32 errors are kept between the two passes or the layer is read twice; and each report
 *   equals a float64 computation written here (sums within 1e-10, max |e| and the histogram exactly);
 * - pairs with a NaN or ±Inf error are counted, not summed, by both engines, as the float64 reference does;
 * - the one-step FP8 per-tensor quantize–dequantize equals quantizeRtn + dequantizeRtn for every finite
 *   bfloat16 input within the scale's range (bf16 arithmetic) and for random float32 ones (float32).
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { compareWithOriginal, ErrorOptions, ErrorReport, simulateErrors, SIMULATIONS, SimulationName } from '../../src/core/inspect/error';
import { ErrorWorkspace, errorSimdAvailable } from '../../src/core/inspect/errorKernels';
import { dequantizeRtn, quantizeRtn, ScaleDtype } from '../../src/core/quant/rtn';
import { presetScheme } from '../../src/core/quant/args';
import type { DType } from '../../src/core/dtypes/dtype';
import { tempDir } from '../helpers/paths';
import { rng } from '../helpers/random';
import { heavyTailedWeights as heavyTailed, toBf16 as bf16 } from '../helpers/weights';



/** Float64 metrics and the 64-bin histogram of the float32 error over the finite pairs, naively. */
function reference(w: Float32Array, approx: Float32Array) {
  let refSq = 0;
  let errSq = 0;
  let approxSq = 0;
  let dot = 0;
  let maxAbs = 0;
  let nonFinite = 0;
  let mismatch = 0;
  const diff: number[] = [];
  for (let i = 0; i < w.length; i++) {
    const r = w[i]!;
    const a = approx[i]!;
    const e = r - a;
    if (!Number.isFinite(e)) {
      nonFinite++;
      if (!((Number.isNaN(r) && Number.isNaN(a)) || r === a)) mismatch++;
      continue;
    }
    refSq += r * r;
    approxSq += a * a;
    errSq += e * e;
    dot += r * a;
    maxAbs = Math.max(maxAbs, Math.abs(e));
    diff.push(Math.fround(e));
  }
  const low = Math.min(...diff);
  const high = Math.max(...diff);
  const bins = high > low ? 64 : 1;
  const width = (high > low ? high - low : Math.max(Math.abs(low), 1e-30) * 1e-6) / bins;
  const counts = new Array<number>(bins).fill(0);
  for (const v of diff) counts[Math.min(bins - 1, Math.max(0, Math.floor((v - low) / width)))]!++;
  return { count: diff.length, nonFinite, mismatch, relativeFrobenius: Math.sqrt(errSq / refSq), cosine: dot / Math.sqrt(refSq * approxSq), maxAbs, counts };
}

const close = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) <= 1e-10 * Math.abs(expected), `${what}: ${actual} vs ${expected}`);

/** Every combination of engine, block size and kept errors; all must give `first`'s report. */
const VARIANTS: ErrorOptions[] = [
  { engine: 'js' },
  { blockElements: 100 },
  { blockElements: 100, engine: 'js' },
  { blockElements: 1000, cacheElements: 0 },
  { blockElements: 100, cacheElements: 0, engine: 'js' },
  { cacheElements: 0 },
];

describe('error kernels: WebAssembly SIMD and JS engines, row blocks, kept or re-read errors', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  const weights = new Map<string, { dtype: DType; shape: [number, number]; values: Float32Array }>();
  before(async () => {
    assert.ok(errorSimdAvailable(), 'WebAssembly SIMD is available in Node');
    tmp = tempDir();
    // Widths that are no multiple of 4 (77, 130, 129) make blocks of one row start at odd element positions.
    const layers: [string, DType, [number, number]][] = [
      ['model.layers.0.self_attn.q_proj', 'BF16', [13, 77]],
      ['model.layers.0.self_attn.k_proj', 'F32', [9, 256]],
      ['model.layers.0.mlp.up_proj', 'BF16', [33, 130]],
      ['model.layers.0.mlp.down_proj', 'BF16', [40, 384]],
      ['lm_head', 'BF16', [45, 129]],
    ];
    const tensors = layers.map(([module, dtype, shape], seed) => {
      const raw = heavyTailed(seed + 11, shape[0] * shape[1]);
      const { bytes, values } = dtype === 'BF16' ? bf16(raw) : { bytes: new Uint8Array(raw.buffer.slice(0)), values: raw };
      weights.set(module, { dtype, shape, values });
      return { name: `${module}.weight`, dtype, shape, data: bytes };
    });
    await writeSafetensors(join(tmp.path, 'model.safetensors'), tensors);
  });
  after(() => tmp.cleanup());

  const simulate = async (simulation: SimulationName, options: ErrorOptions): Promise<ErrorReport> => {
    const checkpoint = await Checkpoint.open(tmp.path);
    try {
      const { layerMap } = await analyzeCheckpoint(checkpoint, tmp.path);
      return await simulateErrors(checkpoint, layerMap, simulation, options);
    } finally {
      await checkpoint.close();
    }
  };

  for (const simulation of Object.keys(SIMULATIONS) as SimulationName[]) {
    it(`${simulation}: the same report from both engines, any blocks, kept or re-read; equal to float64`, async () => {
      const first = await simulate(simulation, {});
      for (const options of VARIANTS) assert.deepEqual(await simulate(simulation, options), first, JSON.stringify(options));
      const { args } = SIMULATIONS[simulation];
      let evaluated = 0;
      for (const layer of first.layers) {
        const { dtype, shape, values } = weights.get(layer.module)!;
        if (layer.skipped) {
          assert.ok(args.strategy === 'group' && shape[1] % args.groupSize! !== 0, layer.skipped);
          continue;
        }
        evaluated++;
        const scaleDtype: ScaleDtype = dtype === 'F32' ? 'F32' : 'BF16';
        const expected = reference(values, dequantizeRtn(quantizeRtn(values, shape[0], shape[1], args, { scaleDtype })));
        const m = layer.metrics;
        assert.equal(m.count, values.length);
        assert.equal(m.maxAbsError, expected.maxAbs, `${layer.module} max abs error`);
        close(m.relativeFrobenius, expected.relativeFrobenius, `${layer.module} relative Frobenius`);
        close(m.cosine, expected.cosine, `${layer.module} cosine`);
        assert.deepEqual(layer.errorHistogram.counts, expected.counts, `${layer.module} histogram`);
      }
      assert.ok(evaluated >= 2);
    });
  }

  it('counts NaN and ±Inf errors instead of summing them, in both engines, as float64 does', async () => {
    // An int8 per-channel "quantized" layer against an original holding NaN and ±Inf at odd positions.
    const folder = join(tmp.path, 'nonfinite');
    mkdirSync(join(folder, 'quantized'), { recursive: true });
    mkdirSync(join(folder, 'original'));
    const name = 'model.layers.0.mlp.gate_proj';
    const [rows, cols] = [11, 37];
    const next = rng(5);
    const q = Int8Array.from({ length: rows * cols }, () => Math.floor(next() * 255) - 127);
    const scale = Float32Array.from({ length: rows }, () => Math.fround(1e-4 * (1 + next())));
    const w = Float32Array.from(q, (v, i) => Math.fround(v * scale[Math.floor(i / cols)]! + (next() - 0.5) * 1e-4));
    for (const [i, v] of [[3, NaN], [41, Infinity], [42, -Infinity], [200, NaN], [401, Infinity]] as const) w[i] = v;
    await writeSafetensors(join(folder, 'quantized', 'model.safetensors'), [
      { name: `${name}.weight`, dtype: 'I8', shape: [rows, cols], data: new Uint8Array(q.buffer) },
      { name: `${name}.weight_scale`, dtype: 'F32', shape: [rows, 1], data: new Uint8Array(scale.buffer) },
    ]);
    await writeSafetensors(join(folder, 'original', 'model.safetensors'), [{ name: `${name}.weight`, dtype: 'F32', shape: [rows, cols], data: new Uint8Array(w.buffer) }]);
    const quantized = await Checkpoint.open(join(folder, 'quantized'));
    const original = await Checkpoint.open(join(folder, 'original'));
    try {
      const { layerMap } = await analyzeCheckpoint(quantized, join(folder, 'quantized'));
      const first = await compareWithOriginal(quantized, layerMap, original);
      for (const options of VARIANTS) assert.deepEqual(await compareWithOriginal(quantized, layerMap, original, options), first, JSON.stringify(options));
      const approx = Float32Array.from(q, (v, i) => v * scale[Math.floor(i / cols)]!);
      const expected = reference(w, approx);
      const [layer] = first.layers;
      assert.ok(layer && !layer.skipped);
      assert.equal(layer.metrics.count, expected.count);
      assert.equal(layer.metrics.nonFinite, 5);
      assert.equal(layer.metrics.maxAbsError, expected.maxAbs);
      close(layer.metrics.relativeFrobenius, expected.relativeFrobenius, 'relative Frobenius');
      assert.deepEqual(layer.errorHistogram.counts, expected.counts);
    } finally {
      await quantized.close();
      await original.close();
    }
  });

  /** ŵ of the workspace's one-step FP8 per tensor for x, with the scale quantizeRtn chose. */
  const fp8OneStep = (engine: 'auto' | 'js', x: Float32Array, scale: number, bf16Arithmetic: boolean): Float32Array => {
    const ws = new ErrorWorkspace(engine);
    ws.prepare(x.length, 1);
    ws.x.set(x);
    ws.fp8Tensor(0, x.length, scale, bf16Arithmetic);
    return ws.approx.slice();
  };

  it('FP8 per tensor in one step equals quantizeRtn + dequantizeRtn for every finite bf16 input within range', () => {
    const fp8 = presetScheme('FP8')!.weights!;
    const all = new Float32Array(new Uint32Array(Array.from({ length: 65536 }, (_, h) => h << 16)).buffer);
    for (const amax of [448, 1, 0.02, 3e-5, 6e4]) {
      // Every finite bf16 value with |v| ≤ amax, and amax itself (bf16-rounded) so that it sets the scale.
      const x = Float32Array.from([...all.filter((v) => Number.isFinite(v) && Math.abs(v) <= amax), bf16(new Float32Array([amax])).values[0]!]);
      const result = quantizeRtn(x, 1, x.length, fp8, { scaleDtype: 'BF16' });
      const expected = dequantizeRtn(result);
      for (const engine of ['auto', 'js'] as const) {
        const got = fp8OneStep(engine, x, result.scale[0]!, true);
        for (let i = 0; i < x.length; i++) if (!Object.is(got[i], expected[i]) && got[i] !== expected[i]) assert.fail(`${engine}, amax ${amax}: x = ${x[i]}: ${got[i]} vs ${expected[i]}`);
      }
    }
  });

  it('FP8 per tensor in one step equals quantizeRtn + dequantizeRtn in float32 arithmetic', () => {
    const fp8 = presetScheme('FP8')!.weights!;
    const next = rng(17);
    for (const spread of [1, 1e-3, 300]) {
      const x = Float32Array.from({ length: 20_001 }, () => Math.fround((next() - 0.5) * spread * Math.exp(8 * (next() - 0.5))));
      const result = quantizeRtn(x, 1, x.length, fp8, { scaleDtype: 'F32' });
      const expected = dequantizeRtn(result);
      for (const engine of ['auto', 'js'] as const) assert.deepEqual(fp8OneStep(engine, x, result.scale[0]!, false), expected, `${engine}, spread ${spread}`);
    }
  });
});
