/**
 * Calibrated quantize jobs on a mixture-of-experts model, end to end through runJob (the CLI's path), on a
 * tiny random Mixtral (4 experts, 2 per token) with the example's tokenizer and the shipped WikiText-2 sample:
 *
 * - a GPTQ W4A16 recipe: every expert's w1/w2/w3 written pack-quantized, the routers (ignored by the recipe)
 *   and the embeddings byte for byte as they were; one MLP-input Hessian per layer (router and all experts'
 *   w1/w3) plus one per expert's w2; the inspector core names the scheme and the experts; `quantlens chat
 *   --greedy` answers from the output;
 * - NVFP4 (W4A4): each expert's input_global_scale from the calibration absmax of its own input over all tokens
 *   (w1/w3: the MLP input; w2: that expert's activation), equal to the rule applied to a float64 reference;
 * - the FP8 preset (static activation scales): runs, and the output's logits stay near the float model's;
 * - the pre-flight memory estimate of a GPTQ job counts the MoE block's Hessians and experts as the job holds them.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { runJob } from '../../src/core/jobs/runJob';
import { preflight } from '../../src/core/jobs/preflight';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { dequantizeStoredWeight } from '../../src/core/quant/storedWeights';
import { defaultCalibrationDataset, loadCalibrationDataset } from '../../src/core/runtime/dataset';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { buildDecoderGraph } from '../../src/core/runtime/graphCache';
import { OnnxCausalLM } from '../../src/core/runtime/causalLM';
import { TinyConfig, Weights, randomWeights, referenceForward, relativeError, writeTinyCheckpoint, relativeFrobenius } from '../helpers/llamaReference';
import { tinyMixtralConfig } from '../helpers/moeReference';
import { copyExampleTokenizer, tinyConfigWithExampleVocabulary } from '../helpers/exampleVocabulary';
import { tempDir } from '../helpers/paths';
import { runCliCapturingStdout } from '../helpers/runCli';

const SAMPLES = 4;
const SEQ = 24;
const EXPERTS = 4;
const LAYERS = 2;
const PROJECTIONS = ['w1', 'w3', 'w2'];

describe('jobs: GPTQ, NVFP4 and FP8 on a mixture-of-experts model (tiny Mixtral) through runJob', function () {
  this.timeout(600_000);
  let tmp: ReturnType<typeof tempDir>;
  let model: string;
  let config: TinyConfig;
  let weights: Weights | undefined;
  const dataset = defaultCalibrationDataset();
  const calibration = { kind: 'dataset' as const, path: dataset, samples: SAMPLES, seqLen: SEQ };

  before(async () => {
    tmp = tempDir();
    model = join(tmp.path, 'mixtral');
    config = tinyMixtralConfig(await tinyConfigWithExampleVocabulary(LAYERS), { num_local_experts: EXPERTS });
    weights = randomWeights(config, 17);
    await writeTinyCheckpoint(model, config, weights);
    await copyExampleTokenizer(model);
  });
  after(() => {
    weights = undefined;
    tmp.cleanup();
  });

  it("the pre-flight memory estimate counts one MLP-input Hessian per layer, each expert's down Hessian and all experts' weights", async () => {
    const report = await preflight({ kind: 'quantize', model, out: join(tmp.path, 'preflight'), preset: 'w4a16', calibration });
    assert.deepEqual(report.problems, []);
    const H = 128;
    const I = 256;
    const kv = 64;
    const states = 2 * SAMPLES * SEQ * H * 4;
    // q/k/v, o, the router with every expert's w1/w3 (one H² Hessian), and each expert's w2 (I²).
    const hessians = (3 * H * H + EXPERTS * I * I) * 4;
    const blockWeights = (2 * H * H + 2 * kv * H + EXPERTS * H + EXPERTS * 3 * I * H) * 4;
    // The widest GPTQ layer, an expert's w2: its Hessian and inverse in float64 + its weight.
    const gptqWorkingSet = 2 * I * I * 8 + H * I * 8;
    assert.equal(report.estimate!.peakMemoryBytes, states + hessians + 2 * blockWeights + gptqWorkingSet);
  });

  it('GPTQ W4A16 recipe: every expert quantized with its Hessians, routers kept float, the inspector names it, chat answers', async () => {
    const recipe = join(tmp.path, 'gptq-moe.yaml');
    await fs.writeFile(recipe, ['quant_stage:', '  quant_modifiers:', '    GPTQModifier:', '      targets: [Linear]', '      scheme: W4A16', '      ignore: [lm_head, "re:.*block_sparse_moe.gate$"]', ''].join('\n'));
    const out = join(tmp.path, 'gptq');
    const graphs = join(tmp.path, 'graphs');
    await fs.mkdir(graphs, { recursive: true });
    const result = await runJob({ kind: 'quantize', model, out, recipe, calibration }, { graphCacheDir: graphs });
    assert.equal(result.kind, 'quantize');
    if (result.kind !== 'quantize') return;
    // Per block: q/k/v, o, the router with every expert's w1/w3, and each expert's w2: 3 + E Hessians, not 3E + 3.
    assert.equal(result.calibration?.hessians, LAYERS * (3 + EXPERTS));
    assert.equal(result.calibration?.layers, LAYERS * (4 + 1 + 3 * EXPERTS));
    assert.equal(result.quantize.quantizedLayers, LAYERS * (4 + 3 * EXPERTS));

    const written = await Checkpoint.open(out);
    const original = await Checkpoint.open(model);
    try {
      for (let l = 0; l < LAYERS; l++) {
        const router = `model.layers.${l}.block_sparse_moe.gate.weight`;
        assert.ok(Buffer.from(await written.readTensorBytes(router)).equals(Buffer.from(await original.readTensorBytes(router))), `${router} stays as it was`);
        for (let e = 0; e < EXPERTS; e++) {
          for (const p of PROJECTIONS) {
            const m = `model.layers.${l}.block_sparse_moe.experts.${e}.${p}`;
            assert.equal(written.tensor(`${m}.weight_packed`).dtype, 'I32', m);
            assert.ok(written.has(`${m}.weight_scale`) && !written.has(`${m}.weight`), m);
          }
        }
      }
      const configJson = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8')) as { quantization_config: { format: string; ignore: string[] } };
      assert.equal(configJson.quantization_config.format, 'pack-quantized');
      // The inspector core: the scheme, the experts, every expert quantized, the dequantized experts near the float ones.
      const { summary, layerMap } = await analyzeCheckpoint(written, out);
      assert.match(summary.scheme.description, /INT4|W4A16/);
      assert.equal(layerMap.scheme.moe?.experts, EXPERTS);
      const experts = layerMap.modules.filter((m) => m.moe?.role === 'expert');
      assert.equal(experts.length, LAYERS * EXPERTS * 3);
      assert.deepEqual(experts.filter((m) => m.state !== 'quantized').map((m) => m.name), []);
      assert.deepEqual(layerMap.modules.filter((m) => m.moe?.role === 'router').map((m) => m.state), new Array<string>(LAYERS).fill('ignored'));
      for (const module of experts) {
        const { weight } = await dequantizeStoredWeight(written, module, { declared: module.declared?.scheme?.weights });
        const error = relativeFrobenius(weight, weights!.get(`${module.name}.weight`)!.data);
        assert.ok(error > 0 && error < 0.15, `${module.name}: relative error ${error}`);
      }
    } finally {
      await written.close();
      await original.close();
    }
    // The output error the job measured with each layer's Hessian, for every expert.
    const record = JSON.parse(await fs.readFile(join(out, 'quantlens.json'), 'utf8')) as { output_error: { layers: Record<string, unknown> } | Record<string, unknown> };
    const measured = JSON.stringify(record.output_error);
    for (let e = 0; e < EXPERTS; e++) for (const p of PROJECTIONS) assert.ok(measured.includes(`model.layers.1.block_sparse_moe.experts.${e}.${p}`), `output error of expert ${e} ${p}`);

    // Chat (greedy) on the output, beside the float model.
    const { code, stdout } = await runCliCapturingStdout(['chat', out, '--compare', model, '--prompt', 'Which expert answers?', '--greedy', '--max-new-tokens', '6', '--json', '--cache', join(tmp.path, 'chat-cache')]);
    assert.equal(code, 0);
    const json = JSON.parse(stdout) as { quantized: { tokens: number[] }; original: { tokens: number[] }; comparison: { steps: unknown[] } };
    assert.ok(json.quantized.tokens.length > 0 && json.quantized.tokens.length <= 6);
    assert.equal(json.comparison.steps.length, json.quantized.tokens.length);
  });

  it('NVFP4 (W4A4): every expert gets its input_global_scale from its own input over all tokens, as the float64 reference gives it', async () => {
    const out = join(tmp.path, 'nvfp4');
    await runJob({ kind: 'quantize', model, out, preset: 'nvfp4', propagation: 'float', calibration }, { graphCacheDir: tmp.path });
    // The reference absmax of every linear's input on the calibration tokens (float propagation).
    const tokenizer = await ModelTokenizer.load(model);
    const samples = (await loadCalibrationDataset(dataset, tokenizer, { samples: SAMPLES, seqLen: SEQ })).samples;
    const absmax = new Map<string, number>();
    for (const sample of samples) {
      referenceForward(config, weights!, Array.from(sample.inputIds.subarray(0, sample.tokens)), {
        linearInput: (module, rows) => {
          let max = absmax.get(module) ?? 0;
          for (const row of rows) for (const v of row) max = Math.max(max, Math.abs(v));
          absmax.set(module, max);
        },
      });
    }
    // compressed-tensors' rule for F32 weights: 448 · 6 / amax, each step rounded to float32.
    const rule = (amax: number) => Math.fround(Math.fround(Math.fround(1 / Math.fround(amax)) * 2688));
    const written = await Checkpoint.open(out);
    try {
      const scaleOf = async (m: string) => new Float32Array((await written.readTensorBytes(`${m}.input_global_scale`)).slice().buffer)[0]!;
      for (let l = 0; l < LAYERS; l++) {
        const container = `model.layers.${l}.block_sparse_moe`;
        assert.ok(!written.has(`${container}.gate.input_global_scale`), 'the preset keeps the router');
        const downs = new Set<number>();
        for (let e = 0; e < EXPERTS; e++) {
          for (const p of PROJECTIONS) {
            const m = `${container}.experts.${e}.${p}`;
            const got = await scaleOf(m);
            const want = rule(absmax.get(m)!);
            assert.ok(Math.abs(got - want) <= 2e-6 * want, `${m}: input_global_scale ${got}, reference ${want}`);
          }
          // w1 and w3 read the MLP input; each w2 reads its own expert's activation.
          assert.equal(await scaleOf(`${container}.experts.${e}.w1`), await scaleOf(`${container}.experts.${e}.w3`));
          assert.equal(await scaleOf(`${container}.experts.${e}.w1`), await scaleOf(`${container}.experts.0.w1`));
          downs.add(await scaleOf(`${container}.experts.${e}.w2`));
        }
        assert.equal(downs.size, EXPERTS, 'every expert down projection has its own input scale');
      }
    } finally {
      await written.close();
    }
  });

  it('chat graphs: each expert on its routed tokens gives the logits of every expert on every token, for float, INT4, W8A8 and FP8 experts', async () => {
    const tokens = [128000, 791, 4062, 14198, 39935, 927, 279];
    const folders: [string, string][] = [['float', model]];
    for (const preset of ['w4a16-rtn', 'w8a8', 'fp8-dynamic'] as const) {
      const out = join(tmp.path, `forms-${preset}`);
      await runJob({ kind: 'quantize', model, out, preset }, { graphCacheDir: tmp.path });
      folders.push([preset, out]);
    }
    for (const [label, folder] of folders) {
      const logits: Record<string, number[]> = {};
      for (const experts of ['routed', 'dense'] as const) {
        const built = await buildDecoderGraph(folder, join(tmp.path, 'forms-cache'), { maxSequenceLength: 32, experts });
        const session = await OnnxCausalLM.load(built.modelPath);
        try {
          const prefill = await session.forward(tokens.slice(0, 5), null);
          const first = await session.forward(tokens.slice(5, 6), prefill.cache);
          const second = await session.forward(tokens.slice(6), first.cache);
          logits[experts] = [...prefill.logits, ...first.logits, ...second.logits];
        } finally {
          await session.release();
        }
      }
      const error = relativeError(logits.routed!, logits.dense!);
      assert.ok(error < 1e-5, `${label}: routed and dense forms differ by ${error}`);
    }
  });

  it('FP8 preset (static activation scales): runs with quantized propagation; the output chats with logits near the float model', async () => {
    const out = join(tmp.path, 'fp8');
    const result = await runJob({ kind: 'quantize', model, out, preset: 'fp8', calibration }, { graphCacheDir: tmp.path });
    assert.equal(result.kind === 'quantize' && result.quantize.quantizedLayers, LAYERS * (4 + 3 * EXPERTS));
    const written = await Checkpoint.open(out);
    try {
      assert.equal(written.tensor('model.layers.1.block_sparse_moe.experts.3.w2.weight').dtype, 'F8_E4M3');
      assert.ok(written.has('model.layers.1.block_sparse_moe.experts.3.w2.input_scale'));
    } finally {
      await written.close();
    }
    const tokens = [128000, 791, 4062, 14198, 39935];
    const built = await buildDecoderGraph(out, join(tmp.path, 'fp8-cache'), { maxSequenceLength: 32 });
    const session = await OnnxCausalLM.load(built.modelPath);
    try {
      const { logits } = await session.forward(tokens, null);
      const reference = referenceForward(config, weights!, tokens).logits.flatMap((r) => [...r]);
      const error = relativeError(logits, reference);
      assert.ok(error > 1e-4 && error < 0.25, `FP8 output against the float64 float model: relative error ${error}`);
    } finally {
      await session.release();
    }
  });
});
