/**
 * The decoder graph against an independent float64 forward pass (test/helpers/llamaReference.ts) on tiny
 * random checkpoints: GQA, every rope variant, Qwen2 biases, tied embeddings; prefill + decode with the KV
 * cache equals one longer prefill; config errors name their field.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { openDecoderModel, writeDecoderGraph } from '../../src/core/runtime/llama/graph';
import { parseDecoderConfig, ModelConfigError } from '../../src/core/runtime/llama/config';
import { TinyConfig, randomWeights, referenceForward, relativeError, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { tempDir } from '../helpers/paths';

/** Runs the graph on one sequence with a given past; returns logits and presents. */
async function runGraph(session: ort.InferenceSession, config: TinyConfig, tokens: readonly number[], past?: Record<string, ort.Tensor>, pastLength = 0) {
  const layers = config.num_hidden_layers;
  const kv = config.num_key_value_heads ?? config.num_attention_heads;
  const D = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, tokens.length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(pastLength + tokens.length).fill(1n), [1, pastLength + tokens.length]),
  };
  for (let l = 0; l < layers; l++) {
    for (const kind of ['key', 'value']) {
      feeds[`past_key_values.${l}.${kind}`] = past?.[`present.${l}.${kind}`] ?? new ort.Tensor('float32', new Float32Array(0), [1, kv, 0, D]);
    }
  }
  return session.run(feeds);
}

const VARIANTS: [string, Partial<TinyConfig>][] = [
  ['Llama 3.1 (llama3 rope, GQA 4/2)', { rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }],
  ['Llama 2 (linear rope, MHA, no head_dim)', { num_key_value_heads: 4, rope_scaling: { type: 'linear', factor: 4 } }],
  ['Mistral (dynamic rope, GQA 4/1, head_dim 32 ≠ hidden/heads)', { architectures: ['MistralForCausalLM'], model_type: 'mistral', num_key_value_heads: 1, head_dim: 32, rope_scaling: { type: 'dynamic', factor: 2 } }],
  ['Qwen2 (q/k/v biases, tied embeddings)', { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: true, rope_theta: 1000000 }],
];

describe('runtime: decoder graph vs float64 reference', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  VARIANTS.forEach(([label, overrides], index) => {
    it(`${label}: logits equal the reference; prefill(n) + decode(1) equals prefill(n + 1)`, async () => {
      const config = tinyConfig(overrides);
      const weights = randomWeights(config, 100 + index);
      const folder = join(tmp.path, `model-${index}`);
      await writeTinyCheckpoint(folder, config, weights);
      const model = await openDecoderModel(folder);
      const modelPath = join(tmp.path, `graph-${index}`, 'model.onnx');
      try {
        await writeDecoderGraph(model, modelPath, { maxSequenceLength: 64 });
      } finally {
        await model.checkpoint.close();
      }
      const tokens = [1, 7, 42, 3, 3, 19, 0, 49, 11, 25, 8];
      const reference = referenceForward(config, weights, tokens);
      const session = await ort.InferenceSession.create(modelPath);
      try {
        const full = await runGraph(session, config, tokens);
        assert.deepEqual(full.logits!.dims, [1, tokens.length, config.vocab_size]);
        const logits = full.logits!.data as Float32Array;
        const error = relativeError(logits, concat(reference.logits));
        assert.ok(error < 1e-4, `relative error ${error}`);

        const prefill = await runGraph(session, config, tokens.slice(0, -1));
        const decode = await runGraph(session, config, tokens.slice(-1), prefill as Record<string, ort.Tensor>, tokens.length - 1);
        assert.deepEqual(decode.logits!.dims, [1, 1, config.vocab_size]);
        assert.deepEqual(decode['present.0.key']!.dims, [1, config.num_key_value_heads ?? config.num_attention_heads, tokens.length, config.head_dim ?? config.hidden_size / config.num_attention_heads]);
        const last = logits.subarray((tokens.length - 1) * config.vocab_size);
        const stepError = relativeError(decode.logits!.data as Float32Array, last);
        assert.ok(stepError < 1e-5, `decode vs prefill relative difference ${stepError}`);
      } finally {
        await session.release();
      }
    });
  });

  it('fp16 graph (the CUDA precision: fp16 activations and KV cache, float32 logits) runs on CPU within fp16 accuracy', async () => {
    const config = tinyConfig();
    const weights = randomWeights(config, 3);
    const folder = join(tmp.path, 'model-fp16');
    await writeTinyCheckpoint(folder, config, weights);
    const model = await openDecoderModel(folder);
    const modelPath = join(tmp.path, 'graph-fp16', 'model.onnx');
    try {
      const info = await writeDecoderGraph(model, modelPath, { precision: 'fp16', maxSequenceLength: 32 });
      assert.equal(info.precision, 'fp16');
    } finally {
      await model.checkpoint.close();
    }
    const session = await ort.InferenceSession.create(modelPath);
    try {
      const tokens = [1, 5, 9, 22, 7];
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, tokens.length]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(tokens.length).fill(1n), [1, tokens.length]),
      };
      for (let l = 0; l < config.num_hidden_layers; l++) for (const k of ['key', 'value']) feeds[`past_key_values.${l}.${k}`] = new ort.Tensor('float16', new Uint16Array(0), [1, 2, 0, 16]);
      const out = await session.run(feeds);
      assert.equal(out.logits!.type, 'float32');
      assert.equal(out['present.0.key']!.type, 'float16');
      const error = relativeError(out.logits!.data as Float32Array, concat(referenceForward(config, weights, tokens).logits));
      assert.ok(error < 3e-3, `relative error ${error}`);
    } finally {
      await session.release();
    }
  });

  it('refuses unsupported configs naming the field', () => {
    const base = tinyConfig() as unknown as Record<string, unknown>;
    assert.throws(() => parseDecoderConfig({ ...base, architectures: ['GPT2LMHeadModel'] }), (e: unknown) => e instanceof ModelConfigError && /architectures \["GPT2LMHeadModel"\] is not supported/.test(e.message));
    assert.throws(() => parseDecoderConfig({ ...base, architectures: undefined, model_type: 'phi3' }), /config.json model_type: model_type "phi3" \(no architectures field\) is not supported/);
    assert.throws(() => parseDecoderConfig({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } }), /rope_scaling.rope_type: "yarn" is not supported/);
    assert.throws(() => parseDecoderConfig({ ...base, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } }), /rope_scaling.original_max_position_embeddings: must be a positive integer/);
    assert.throws(() => parseDecoderConfig({ ...base, num_key_value_heads: 3 }), /num_key_value_heads: 3 does not divide num_attention_heads 4/);
    assert.throws(() => parseDecoderConfig({ ...base, hidden_act: 'gelu' }), /hidden_act: "gelu" is not supported/);
  });
});

function concat(rows: Float64Array[]): Float64Array {
  const out = new Float64Array(rows.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of rows) {
    out.set(r, at);
    at += r.length;
  }
  return out;
}
