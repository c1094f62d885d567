/**
 * Attention from plain ops (src/core/runtime/llama/attention.ts, the form WebGPU graphs get) against the
 * independent float64 forward pass (test/helpers/llamaReference.ts), through the decoder object chat runs
 * (runtime/causalLM.ts): 1, 16, 31, 32, 64 and 200 new tokens in one run, without a cache and after a
 * 40-token cache, GQA (4 query heads over 2 KV heads) — on the CPU provider everywhere, and on WebGPU
 * (SwiftShader) where it is installed, every compute node placed on WebGPU. 32 or more new tokens in one
 * run is what onnxruntime's WebGPU GroupQueryAttention gets wrong (runtime-webgpu.test.ts reproduces it).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { OnnxCausalLM } from '../../src/core/runtime/causalLM';
import { requireDevice, graphOptionsFor } from '../../src/core/runtime/device';
import { verifyPlacement } from '../../src/core/runtime/placement';
import { DecoderGraphOptions, openDecoderModel, writeDecoderGraph } from '../../src/core/runtime/llama/graph';
import { randomWeights, referenceForward, relativeError, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { swiftShaderMissing, useSwiftShader } from '../helpers/swiftShader';
import { rng } from '../helpers/random';
import { tempDir } from '../helpers/paths';

const NEW_TOKENS = [1, 16, 31, 32, 64, 200];
const PREFIXES = [0, 40];
// float32 against float64: measured ≤ 5e-7 relative on both providers; 1e-5 leaves room for other summation orders.
const TOLERANCE = 1e-5;

for (const device of ['cpu', 'webgpu'] as const) {
  describe(`runtime: attention from plain ops on ${device === 'cpu' ? 'the CPU' : 'WebGPU (SwiftShader)'} against float64`, function () {
    this.timeout(600_000);
    let tmp: ReturnType<typeof tempDir>;
    let restore: (() => void) | undefined;
    let model: OnnxCausalLM;
    const config = tinyConfig({ hidden_size: 64, intermediate_size: 96, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 61, max_position_embeddings: 256, rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } });
    const weights = randomWeights(config, 41);
    const random = rng(9);
    const tokens = Array.from({ length: Math.max(...PREFIXES) + Math.max(...NEW_TOKENS) }, () => Math.floor(random() * config.vocab_size));
    // Causal: row t of one pass over all tokens is the reference for token t whatever was cached before it.
    let reference: Float64Array[];

    before(async function () {
      if (device === 'webgpu') {
        const missing = swiftShaderMissing();
        if (missing) {
          console.log(`      skipped: ${missing}`);
          this.skip();
        }
      }
      tmp = tempDir();
      if (device === 'webgpu') restore = useSwiftShader(tmp.path);
      reference = referenceForward(config, weights, tokens).logits;
      const folder = join(tmp.path, 'model');
      await writeTinyCheckpoint(folder, config, weights);
      const options: DecoderGraphOptions = { ...graphOptionsFor(device), attention: 'matmul', maxSequenceLength: 256 };
      const opened = await openDecoderModel(folder);
      const graph = join(tmp.path, 'graph', 'model.onnx');
      try {
        await writeDecoderGraph(opened, graph, options);
      } finally {
        await opened.checkpoint.close();
      }
      if (device === 'webgpu') {
        // No compute node on the CPU (the job's own check), and no fused attention node at all.
        const placement = await verifyPlacement(graph, await requireDevice('webgpu'), () => undefined);
        const onGpu = placement.nodes.get('WebGpuExecutionProvider') ?? [];
        assert.ok(onGpu.some((n) => n.op === 'Softmax') && onGpu.some((n) => n.op === 'MatMul'), 'Softmax and MatMul run on WebGPU');
        assert.ok(![...placement.nodes.values()].flat().some((n) => n.op === 'GroupQueryAttention'), 'no GroupQueryAttention node');
        // What stays on the CPU is the mask and position arithmetic onnxruntime keeps there on purpose (int64).
        const maskArithmetic = new Set(['Shape', 'Gather', 'Sub', 'Range', 'Unsqueeze', 'LessOrEqual', 'Cast']);
        assert.deepEqual(placement.onCpu.filter((n) => !maskArithmetic.has(n.op)), []);
      }
      model = await OnnxCausalLM.load(graph, { executionProviders: [device] });
    });
    after(async () => {
      await model?.release();
      restore?.();
      tmp?.cleanup();
    });

    for (const prefix of PREFIXES) {
      for (const count of NEW_TOKENS) {
        it(`${count} new token${count === 1 ? '' : 's'} in one run${prefix ? ` after a ${prefix}-token cache` : ''}: logits within ${TOLERANCE} of float64`, async () => {
          const cache = prefix ? (await model.forward(tokens.slice(0, prefix), null)).cache : null;
          const { logits } = await model.forward(tokens.slice(prefix, prefix + count), cache);
          assert.equal(logits.length, count * config.vocab_size);
          const expected = new Float64Array(count * config.vocab_size);
          for (let t = 0; t < count; t++) expected.set(reference[prefix + t]!, t * config.vocab_size);
          const error = relativeError(logits, expected);
          assert.ok(error < TOLERANCE, `relative error ${error}`);
        });
      }
    }
  });
}
