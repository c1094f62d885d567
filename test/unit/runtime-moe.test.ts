/**
 * Mixture-of-experts decoders in the runtime (runtime/llama/moe.ts) against the float64 reference
 * (test/helpers/moeReference.ts, written from transformers' MixtralSparseMoeBlock / Qwen2MoeSparseMoeBlock):
 *
 * - the decoder the chat runs (graph cache + OnnxCausalLM; on the CPU each expert runs on its routed tokens,
 *   and the dense form is checked too): full-model logits of a prefill and of each decode step with the KV
 *   cache equal the reference, for Mixtral (both namings), Qwen2-MoE with its shared
 *   expert, a dense layer (mlp_only_layers), norm_topk_prob and decoder_sparse_step, and Qwen3-MoE and Qwen3
 *   (q_norm / k_norm);
 * - block statistics through the calibrate job (the block pipeline the one-pass GPTQ job shares): every
 *   linear's absmax and per-channel absmax, the MLP input's Hessian shared by the router and all experts'
 *   gate/up (computed once per layer), and each expert's down Hessian over all tokens, for every block — on the
 *   CPU and on WebGPU (SwiftShader; skipped where it is absent), where the routing must run on the GPU too;
 * - config.json and checkpoint errors that name what is wrong.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { buildDecoderGraph } from '../../src/core/runtime/graphCache';
import { KVCache, OnnxCausalLM } from '../../src/core/runtime/causalLM';
import { ModelConfigError, parseDecoderConfig } from '../../src/core/runtime/llama/config';
import { blockModules, openDecoderModel } from '../../src/core/runtime/llama/graph';
import type { ExpertForm } from '../../src/core/runtime/llama/moe';
import { runCalibrationJob, sharedInputOwner } from '../../src/core/jobs/calibrate';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { decodeToFloat64 } from '../../src/core/dtypes/convert';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { loadCalibrationDataset } from '../../src/core/runtime/dataset';
import { TinyConfig, Weights, randomWeights, referenceForward, relativeError, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { moeShape, routingMargin, tinyMixtralConfig, tinyQwen2MoeConfig, tinyQwen3MoeConfig } from '../helpers/moeReference';
import { writeTinyTokenizerFolder } from '../helpers/tinyTokenizer';
import { tempDir } from '../helpers/paths';
import { deviceScratch } from '../helpers/swiftShader';

const sparseModel = (config: TinyConfig) => Array.from({ length: config.num_hidden_layers }, (_, l) => moeShape(config, l)).some((shape) => shape !== undefined);

/** Mixtral's tensors renamed as newer savers write them: mlp.gate, mlp.experts.E.{gate,up,down}_proj. */
function renamedToMlp(weights: Weights): Weights {
  const names: Record<string, string> = { w1: 'gate_proj', w3: 'up_proj', w2: 'down_proj' };
  return new Map(
    [...weights].map(([name, tensor]) => [
      name.replace(/\.block_sparse_moe\.experts\.(\d+)\.(w[123])\./, (_, e: string, w: string) => `.mlp.experts.${e}.${names[w]!}.`).replace(/\.block_sparse_moe\.gate\./, '.mlp.gate.'),
      tensor,
    ]),
  );
}

const TOLERANCE = 1e-4;

describe('runtime: mixture-of-experts decoders (Mixtral, Qwen2-MoE, Qwen3-MoE; Qwen3) against float64', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  const base = tinyConfig({ vocab_size: 60 });
  const cases: { name: string; config: TinyConfig; seed: number; rename?: boolean; experts?: ExpertForm }[] = [
    { name: 'Mixtral (block_sparse_moe.experts.E.w1/w3/w2)', config: tinyMixtralConfig(base), seed: 31 },
    { name: 'Mixtral, every expert on every token (the dense form WebGPU and CUDA graphs use)', config: tinyMixtralConfig(base), seed: 31, experts: 'dense' },
    { name: 'Qwen2-MoE, dense form', config: tinyQwen2MoeConfig(base), seed: 33, experts: 'dense' },
    { name: 'Mixtral as newer savers name it (mlp.experts.E.gate_proj …)', config: tinyMixtralConfig(base), seed: 32, rename: true },
    { name: 'Qwen2-MoE: shared expert, layer 1 dense (mlp_only_layers), no renormalisation', config: tinyQwen2MoeConfig(base), seed: 33 },
    { name: 'Qwen2-MoE: norm_topk_prob, decoder_sparse_step 2 (layers 0 and 2 dense)', config: tinyQwen2MoeConfig(base, { num_hidden_layers: 3, norm_topk_prob: true, mlp_only_layers: [], decoder_sparse_step: 2 }), seed: 34 },
    { name: 'Qwen3-MoE: q_norm/k_norm, head_dim 32 ≠ hidden/heads, norm_topk_prob, layer 0 dense', config: tinyQwen3MoeConfig(base), seed: 35 },
    { name: 'Qwen3 (dense): q_norm/k_norm before the rotary embedding, no q/k/v bias', config: { ...base, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', head_dim: 32 }, seed: 36 },
  ];
  for (const { name, config, seed, rename, experts: form } of cases) {
    it(`${name}: prefill and every decode step with the KV cache equal the float64 reference`, async () => {
      const weights = rename ? renamedToMlp(randomWeights(config, seed)) : randomWeights(config, seed);
      const folder = join(tmp.path, `model-${seed}-${form ?? 'default'}`);
      await writeTinyCheckpoint(folder, config, weights);
      const built = await buildDecoderGraph(folder, join(tmp.path, 'cache'), { maxSequenceLength: 64, ...(form ? { experts: form } : {}) });
      // The CPU's default is the routed form (NonZero per expert); the dense form has none.
      assert.equal((await fs.readFile(built.modelPath)).includes('NonZero'), sparseModel(config) && form !== 'dense');
      // Every expert of every sparse layer is a linear of the graph.
      const experts = Object.keys(built.info.linearKinds).filter((m) => /\.experts\.\d+\./.test(m));
      const sparse = Array.from({ length: config.num_hidden_layers }, (_, l) => moeShape(config, l)).filter((shape) => shape !== undefined).length;
      assert.equal(experts.length, sparse * 4 * 3);
      if (config.model_type.startsWith('qwen3')) assert.ok(weights.has('model.layers.0.self_attn.q_norm.weight') && !weights.has('model.layers.0.self_attn.q_proj.bias'));
      const model = await OnnxCausalLM.load(built.modelPath, { intraOpNumThreads: 1, maxPositions: built.info.maxSequenceLength });
      try {
        const tokens = [4, 8, 15, 16, 23, 42, 7, 1, 33, 59, 0, 12];
        routingMargin.smallest = Infinity;
        const reference = referenceForward(config, weights, tokens);
        // Float32 cannot change which experts a token is routed to: the k-th and (k+1)-th probabilities are apart.
        assert.ok(routingMargin.smallest > 1e-4, `routing margin ${routingMargin.smallest}: pick another seed`);
        const prefill = await model.forward(tokens.slice(0, 6), null);
        const error = relativeError(prefill.logits, reference.logits.slice(0, 6).flatMap((r) => [...r]));
        assert.ok(error < TOLERANCE, `prefill: relative error ${error}`);
        let past: KVCache = prefill.cache;
        for (let t = 6; t < tokens.length; t++) {
          const step = await model.forward([tokens[t]!], past);
          past = step.cache;
          const stepError = relativeError(step.logits, reference.logits[t]!);
          assert.ok(stepError < TOLERANCE, `decode step ${t}: relative error ${stepError}`);
        }
      } finally {
        await model.release();
      }
    });
  }

  it('the routing matters: the same Mixtral with its routers zeroed (every expert tied, the first k chosen) gives other logits, equal to the reference', async () => {
    const config = tinyMixtralConfig(base);
    const weights = randomWeights(config, 31);
    for (const [name, tensor] of weights) if (/\.gate\.weight$/.test(name)) weights.set(name, { shape: tensor.shape, data: new Float64Array(tensor.data.length) });
    const folder = join(tmp.path, 'zero-router');
    await writeTinyCheckpoint(folder, config, weights);
    const built = await buildDecoderGraph(folder, join(tmp.path, 'cache'), { maxSequenceLength: 64 });
    const model = await OnnxCausalLM.load(built.modelPath, { intraOpNumThreads: 1 });
    try {
      const tokens = [3, 9, 27, 21];
      const reference = referenceForward(config, weights, tokens);
      const routed = referenceForward(config, randomWeights(config, 31), tokens);
      const { logits } = await model.forward(tokens, null);
      const flat = (r: Float64Array[]) => r.flatMap((x) => [...x]);
      assert.ok(relativeError(logits, flat(reference.logits)) < TOLERANCE);
      assert.ok(relativeError(flat(routed.logits), flat(reference.logits)) > 1e-2, 'the router changes the logits');
    } finally {
      await model.release();
    }
  });

  it('config.json and checkpoint problems are errors naming the field or tensor', async () => {
    const mixtral = tinyMixtralConfig(base) as unknown as Record<string, unknown>;
    assert.throws(() => parseDecoderConfig({ ...mixtral, num_experts_per_tok: 5 }), (e: unknown) => e instanceof ModelConfigError && /num_experts_per_tok: 5 is more than the 4 experts \(num_local_experts\)/.test(e.message));
    const qwen = tinyQwen2MoeConfig(base) as unknown as Record<string, unknown>;
    assert.throws(() => parseDecoderConfig({ ...qwen, mlp_only_layers: [7] }), /config.json mlp_only_layers: must be a list of layer indices below num_hidden_layers 2, found \[7\]/);
    assert.throws(() => parseDecoderConfig({ ...qwen, norm_topk_prob: 'yes' }), /norm_topk_prob: must be true or false/);
    const parsed = parseDecoderConfig(qwen);
    assert.deepEqual(parsed.moe?.sparseLayers, [true, false]);
    assert.equal(parsed.moe?.sharedExpertIntermediateSize, base.intermediate_size);

    // Experts fused in one 3-D tensor (transformers 5's in-memory layout): refused, naming the tensor.
    const config = tinyMixtralConfig(base);
    const weights = renamedToMlp(randomWeights(config, 31));
    const fused = new Float64Array(4 * 2 * base.intermediate_size * base.hidden_size);
    for (const name of [...weights.keys()]) if (/^model\.layers\.1\.mlp\.experts\.\d+\.(gate|up)_proj/.test(name)) weights.delete(name);
    weights.set('model.layers.1.mlp.experts.gate_up_proj', { shape: [4, 2 * base.intermediate_size, base.hidden_size], data: fused });
    const folder = join(tmp.path, 'fused');
    await writeTinyCheckpoint(folder, config, weights);
    await assert.rejects(openDecoderModel(folder), /tensor model\.layers\.1\.mlp\.experts\.gate_up_proj \[4, 192, 64\] holds the experts of a layer fused in one tensor; the runtime runs one linear per expert/);

    // A missing expert is named.
    const missing = randomWeights(config, 31);
    missing.delete('model.layers.0.block_sparse_moe.experts.2.w2.weight');
    const gap = join(tmp.path, 'missing');
    await writeTinyCheckpoint(gap, config, missing);
    await assert.rejects(buildDecoderGraph(gap, join(tmp.path, 'cache')), /linear layer model\.layers\.0\.block_sparse_moe\.experts\.2\.w2 is missing from the checkpoint/);
  });
});

const RECORDS = [
  'The quick brown fox jumps over the lazy dog.',
  'Experts: every token goes through every one of them.',
  'Short one.',
  'Routers pick two experts per token, and the block output mixes their answers.',
];

for (const device of ['cpu', 'webgpu'] as const) {
  describe(`runtime: calibration statistics of mixture-of-experts blocks (calibrate job on ${device}) against float64`, function () {
    this.timeout(300_000);
    const scratch = deviceScratch(device);

    const base = tinyConfig({ vocab_size: 258, num_key_value_heads: 1, max_position_embeddings: 64 });
    for (const [name, config] of [
      ['Mixtral', tinyMixtralConfig(base)],
      ['Qwen2-MoE (shared expert, one dense layer)', tinyQwen2MoeConfig(base)],
      ['Qwen3-MoE (q_norm/k_norm, one dense layer)', tinyQwen3MoeConfig(base)],
    ] as const) {
      it(`${name}: absmax, channel absmax and Hessians of every linear of every block; one MLP-input Hessian per layer`, async () => {
        const weights = randomWeights(config, 41);
        const model = join(scratch(), config.model_type);
        await writeTinyCheckpoint(model, config, weights);
        writeTinyTokenizerFolder(model, { 'tokenizer_config.json': { bos_token: '<s>', eos_token: '</s>', pad_token: '</s>', add_bos_token: true } }, { bosPostProcessor: true });
        const dataset = join(scratch(), 'records.jsonl');
        await fs.writeFile(dataset, RECORDS.map((text) => JSON.stringify({ text })).join('\n') + '\n');
        const tokenizer = await ModelTokenizer.load(model);
        const samples = (await loadCalibrationDataset(dataset, tokenizer, { samples: RECORDS.length, seqLen: 40 })).samples;
        const longest = Math.max(...samples.map((s) => s.tokens));
        const stats = join(scratch(), `${config.model_type}.safetensors`);
        const log: string[] = [];
        const summary = await runCalibrationJob({ model, out: stats, dataset, samples: RECORDS.length, seqLen: 40, hessians: true, graphCacheDir: scratch(), tokensPerRun: 2 * longest, device, log: (line) => log.push(line) });
        assert.equal(summary.device, device);
        const n = samples.reduce((sum, s) => sum + s.tokens, 0);

        const decoder = await openDecoderModel(model);
        const modules = Array.from({ length: config.num_hidden_layers }, (_, l) => blockModules(decoder.config, l)).flat();
        await decoder.checkpoint.close();
        const owners = modules.filter((m) => sharedInputOwner(m.name) === m.name);
        // Per sparse layer: q, o, the MLP input (router, experts' gate/up, shared expert) and each down; per dense layer: q, o, gate, down.
        const sparse = Array.from({ length: config.num_hidden_layers }, (_, l) => l).filter((l) => moeShape(config, l) !== undefined);
        const sparseLayers = sparse.length;
        const perSparse = 2 + 1 + 4 + (config.model_type === 'qwen2_moe' ? 1 : 0);
        assert.equal(owners.length, sparseLayers * perSparse + (config.num_hidden_layers - sparseLayers) * 4);
        assert.equal(summary.hessians, owners.length);
        assert.equal(summary.layers, modules.length);

        // The reference: each sample alone, every linear's input rows in float64 (every expert sees every token).
        const channel = new Map<string, Float64Array>();
        const xtx = new Map<string, Float64Array>();
        for (const sample of samples) {
          referenceForward(config, weights, Array.from(sample.inputIds.subarray(0, sample.tokens)), {
            linearInput: (module, rows) => {
              const K = rows[0]!.length;
              const ch = channel.get(module) ?? new Float64Array(K);
              const wantsHessian = sharedInputOwner(module) === module;
              const h = xtx.get(module) ?? new Float64Array(wantsHessian ? K * K : 0);
              for (const row of rows) {
                for (let i = 0; i < K; i++) {
                  ch[i] = Math.max(ch[i]!, Math.abs(row[i]!));
                  if (wantsHessian) for (let j = 0; j < K; j++) h[i * K + j]! += row[i]! * row[j]!;
                }
              }
              channel.set(module, ch);
              xtx.set(module, h);
            },
          });
        }

        const file = await Checkpoint.open(stats);
        const read = async (tensor: string) => decodeToFloat64(file.tensor(tensor).dtype, await file.readTensorBytes(tensor));
        try {
          const shared = JSON.parse(String(file.metadata['quantlens.shared_inputs'] ?? '{}')) as Record<string, string>;
          for (const m of modules) {
            const wantChannel = channel.get(m.name)!;
            const wantMax = Math.max(...wantChannel);
            const gotMax = (await read(`${m.name}.input_absmax`))[0]!;
            assert.ok(Math.abs(gotMax - wantMax) <= 1e-5 * wantMax, `${m.name} absmax ${gotMax} vs ${wantMax}`);
            const gotChannel = await read(`${m.name}.input_channel_absmax`);
            for (let i = 0; i < wantChannel.length; i++) assert.ok(Math.abs(gotChannel[i]! - wantChannel[i]!) <= 1e-5 * wantMax, `${m.name} channel ${i}`);
            const owner = sharedInputOwner(m.name);
            if (owner !== m.name) {
              assert.equal(shared[m.name], owner);
              assert.ok(!file.has(`${m.name}.hessian`), `${m.name} has no Hessian of its own`);
              continue;
            }
            const hessian = await read(`${m.name}.hessian`);
            const want = xtx.get(m.name)!;
            let diff = 0;
            let norm = 0;
            for (let k = 0; k < want.length; k++) {
              const w = (2 / n) * want[k]!;
              diff += (hessian[k]! - w) ** 2;
              norm += w ** 2;
            }
            assert.ok(Math.sqrt(diff / norm) < 1e-5, `${m.name} Hessian relative error ${Math.sqrt(diff / norm)}`);
          }
          // Every expert's gate and up (w1, w3) share the router's input Hessian.
          const container = `model.layers.${sparse[0]}.${config.model_type === 'mixtral' ? 'block_sparse_moe' : 'mlp'}`;
          const leaves = config.model_type === 'mixtral' ? ['w1', 'w3'] : ['gate_proj', 'up_proj'];
          for (let e = 0; e < 4; e++) for (const leaf of leaves) assert.equal(shared[`${container}.experts.${e}.${leaf}`], `${container}.gate`);
        } finally {
          await file.close();
        }
        // On WebGPU the routing (Softmax, the rank comparisons, ReduceSum) runs on the GPU with the experts.
        if (device === 'webgpu') {
          // The routing (Softmax, the rank comparisons and sums, the per-expert Slice) runs on the GPU with the
          // experts; what onnxruntime keeps on the CPU is the attention mask's shape arithmetic, as in a dense block.
          const placement = log.find((line) => /^session runs on WebGpuExecutionProvider/.test(line));
          assert.ok(placement, log.join('\n'));
          const onCpu = (/on the CPU: \d+ nodes \((.*)\)$/.exec(placement)?.[1] ?? '').split(', ').map((op) => op.replace(/ ×\d+$/, ''));
          assert.deepEqual(onCpu.filter((op) => ['Softmax', 'Greater', 'Equal', 'Less', 'ReduceSum', 'Slice', 'Div', 'Mul', 'Sigmoid', 'Add'].includes(op)), [], placement);
        }
      });
    }
  });
}
