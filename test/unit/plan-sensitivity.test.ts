/**
 * The sensitivity numbers of `quantlens plan` against an independent float64 computation on the shipped
 * example model: for a few layers and both kinds of candidate (GPTQ w4a16:g64, round-to-nearest fp8-dynamic),
 * the mean KL of the next-token distribution (float model vs the model with that layer alone replaced by the
 * measured dequantized weight) over the real calibration tokens, from test/helpers/llamaReference.ts's float64
 * forward pass; and the proxy tr(E H Eᵀ) with H = XᵀX / n from that pass's layer inputs.
 */
import assert from 'node:assert/strict';
import { decodeToFloat32 } from '../../src/core/dtypes/convert';
import { DecoderModel, openDecoderModel } from '../../src/core/runtime/llama/graph';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { defaultCalibrationDataset, loadCalibrationDataset } from '../../src/core/runtime/dataset';
import { parseCandidates } from '../../src/core/plan/candidates';
import { SensitivityReport, measureSensitivity } from '../../src/core/plan/sensitivity';
import { TinyConfig, Weights, referenceForward } from '../helpers/llamaReference';
import { exampleDir } from '../helpers/exampleVocabulary';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

const CHECKED = ['model.layers.0.self_attn.k_proj', 'model.layers.2.mlp.down_proj', 'model.layers.3.self_attn.o_proj'];
const SAMPLES = 2;
const SEQ_LEN = 12;

/** log-softmax in float64. */
function logSoftmax(logits: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return logits.map((v) => v - lse);
}

function kl(p: Float64Array, q: Float64Array): number {
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  let total = 0;
  for (let i = 0; i < lp.length; i++) total += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
  return total;
}

describe('plan: sensitivity against a float64 reference (example model)', function () {
  this.timeout(600_000);
  let model: DecoderModel;
  let report: SensitivityReport;
  const measuredWeights = new Map<string, Float32Array>();
  let weights: Weights;
  let config: TinyConfig;
  let sequences: number[][];

  before(async () => {
    model = await openDecoderModel(exampleDir());
    report = await measureSensitivity({
      model,
      dataset: defaultCalibrationDataset(),
      samples: SAMPLES,
      seqLen: SEQ_LEN,
      candidates: parseCandidates('w4a16:g64,fp8-dynamic,bf16'),
      device: 'cpu',
      onWeight: (module, candidate, w) => {
        if (CHECKED.includes(module)) measuredWeights.set(`${module}|${candidate}`, w);
      },
    });
    config = JSON.parse(await fs.readFile(join(exampleDir(), 'config.json'), 'utf8')) as TinyConfig;
    weights = new Map();
    for (const t of model.checkpoint.tensors) weights.set(t.name, { shape: [...t.shape], data: Float64Array.from(decodeToFloat32(t.dtype, await model.checkpoint.readTensorBytes(t.name, { maxBytes: 2 ** 30 }))) });
    const dataset = await loadCalibrationDataset(defaultCalibrationDataset(), await ModelTokenizer.load(exampleDir()), { samples: SAMPLES, seqLen: SEQ_LEN });
    sequences = dataset.samples.map((s) => Array.from(s.inputIds.subarray(0, s.tokens)));
  });
  after(async () => model?.checkpoint.close());

  it('covers every linear layer and candidate, with exact bytes and bf16 at zero', () => {
    assert.equal(report.layers.length, 28);
    assert.equal(report.tokens, sequences.reduce((s, x) => s + x.length, 0));
    for (const layer of report.layers) {
      assert.deepEqual(layer.measurements.map((m) => m.candidate), ['w4a16:g64', 'fp8-dynamic', 'bf16']);
      const bf16 = layer.measurements[2]!;
      assert.deepEqual([bf16.kl, bf16.proxy, bf16.bytes], [0, 0, layer.rows * layer.cols * 2]);
      for (const m of layer.measurements.slice(0, 2)) assert.ok(m.kl! > 0 && m.proxy! > 0, `${layer.module} ${m.candidate}: ${m.kl}, ${m.proxy}`);
    }
  });

  it('reports no KL for a layer left as it is (the variant graph computes what the float model does)', () => {
    assert.ok(report.floatNoiseKl >= 0 && report.floatNoiseKl < 1e-9, `float noise ${report.floatNoiseKl}`);
  });

  it('KL and the proxy match float64 for a few layers, within float32 tolerance', () => {
    // Float model: logits and every linear layer's inputs.
    const inputs = new Map<string, Float64Array[]>();
    const floatLogits = sequences.map((tokens) =>
      referenceForward(config, weights, tokens, {
        linearInput: (module, rows) => inputs.set(module, [...(inputs.get(module) ?? []), ...rows]),
      }).logits,
    );
    for (const module of CHECKED) {
      const layer = report.layers.find((l) => l.module === module)!;
      const W = weights.get(`${module}.weight`)!.data;
      const X = inputs.get(module)!;
      for (const candidate of ['w4a16:g64', 'fp8-dynamic']) {
        const Q = measuredWeights.get(`${module}|${candidate}`)!;
        // Proxy: Σ_rows e H eᵀ with H = XᵀX / n, as Σ over tokens of ‖E x‖² / n.
        let proxy = 0;
        for (const x of X) {
          for (let r = 0; r < layer.rows; r++) {
            let dot = 0;
            for (let k = 0; k < layer.cols; k++) dot += (W[r * layer.cols + k]! - Q[r * layer.cols + k]!) * x[k]!;
            proxy += dot * dot;
          }
        }
        proxy /= X.length;
        // KL: the same forward pass with this one weight replaced.
        const Q64 = Float64Array.from(Q);
        let total = 0;
        let count = 0;
        sequences.forEach((tokens, s) => {
          const logits = referenceForward(config, weights, tokens, { weight: (m) => (m === module ? Q64 : undefined) }).logits;
          logits.forEach((row, t) => {
            total += kl(floatLogits[s]![t]!, row);
            count++;
          });
        });
        const expectedKl = total / count;
        const m = layer.measurements.find((x) => x.candidate === candidate)!;
        assert.ok(Math.abs(m.proxy! - proxy) <= 1e-4 * proxy, `${module} ${candidate}: proxy ${m.proxy}, float64 ${proxy}`);
        assert.ok(Math.abs(m.kl! - expectedKl) <= 5e-3 * expectedKl, `${module} ${candidate}: KL ${m.kl}, float64 ${expectedKl}`);
      }
    }
  });
});
