/**
 * Calibration block graphs: block by block over a right-padded batch, with embeddings computed in JS for
 * block 0 and each block's output fed to the next. The in-graph statistics (absmax, per-channel absmax,
 * Hessian accumulation H_out = H_in + XᵀX over non-padding tokens) equal a float64 computation on the
 * reference forward pass's layer inputs, and block outputs equal the reference hidden states.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildBlockGraphs } from '../../src/core/runtime/graphCache';
import { embedTokens, openDecoderModel } from '../../src/core/runtime/llama/graph';
import { RuntimeHost, RuntimeSession, WireTensor } from '../../src/core/runtime/session';
import { randomWeights, referenceForward, relativeError, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { repoRoot, tempDir } from '../helpers/paths';

describe('runtime: calibration block graphs with in-graph statistics', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let host: RuntimeHost;
  before(() => {
    tmp = tempDir();
    host = new RuntimeHost(join(repoRoot(), 'dist', 'workers', 'runtime.worker.js'));
  });
  after(async () => {
    await host.dispose();
    tmp.cleanup();
  });

  it('absmax, per-channel absmax and Hessians over a padded batch equal float64 statistics of the reference inputs', async () => {
    const config = tinyConfig({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', num_key_value_heads: 1 });
    const weights = randomWeights(config, 9);
    const folder = join(tmp.path, 'model');
    await writeTinyCheckpoint(folder, config, weights);
    const sequences = [
      [5, 9, 2, 44, 17, 3, 30],
      [12, 1, 49, 6],
    ];
    const S = 7;
    const H = config.hidden_size;

    // Reference statistics: every linear's input rows over the real (non-padding) tokens of both sequences.
    const absmax = new Map<string, number>();
    const channel = new Map<string, Float64Array>();
    const hessian = new Map<string, Float64Array>();
    const blockOutputs = sequences.map((tokens) =>
      referenceForward(config, weights, tokens, {
        linearInput: (module, rows) => {
          const K = rows[0]!.length;
          const ch = channel.get(module) ?? new Float64Array(K);
          const h = hessian.get(module) ?? new Float64Array(K * K);
          for (const row of rows) {
            for (let i = 0; i < K; i++) {
              ch[i] = Math.max(ch[i]!, Math.abs(row[i]!));
              for (let j = 0; j < K; j++) h[i * K + j] += row[i]! * row[j]!;
            }
          }
          channel.set(module, ch);
          hessian.set(module, h);
          absmax.set(module, Math.max(...ch));
        },
      }).blockOutputs,
    );

    const built = await buildBlockGraphs(folder, join(tmp.path, 'cache'), { maxSequenceLength: 32 });
    assert.equal(built.blocks.length, config.num_hidden_layers);
    const model = await openDecoderModel(folder);
    let hidden: Float32Array;
    try {
      // Block 0's input: embeddings of the right-padded batch (padding token 0; masked out).
      hidden = await embedTokens(model, sequences.flatMap((s) => [...s, ...new Array(S - s.length).fill(0)]));
    } finally {
      await model.checkpoint.close();
    }
    const mask = BigInt64Array.from(sequences.flatMap((s) => Array.from({ length: S }, (_, i) => (i < s.length ? 1n : 0n))));

    for (const block of built.blocks) {
      const created = await host.createSession(block.modelPath);
      assert.ok(created.ok, created.ok ? '' : created.error);
      const session: RuntimeSession = created.session;
      try {
        const feeds: Record<string, WireTensor> = {
          hidden_states: { type: 'float32', dims: [2, S, H], data: hidden },
          attention_mask: { type: 'int64', dims: [2, S], data: mask.slice() },
        };
        // Accumulate over two runs (the same batch twice) to check that H_in is carried: expect 2·XᵀX.
        for (const m of block.hessianModules) feeds[`H_in.${m}`] = { type: 'float32', dims: [block.inFeatures[m]!, block.inFeatures[m]!], data: new Float32Array(block.inFeatures[m]! ** 2) };
        // Feeds move to the worker: the first run gets copies of the batch.
        const first = await session.run({ ...feeds, hidden_states: { ...feeds.hidden_states!, data: hidden.slice() }, attention_mask: { ...feeds.attention_mask!, data: mask.slice() } });
        for (const m of block.hessianModules) feeds[`H_in.${m}`] = first[`H_out.${m}`]!;
        const out = await session.run(feeds);
        for (const m of block.modules) {
          assert.ok(Math.abs((out[`absmax.${m}`]!.data as Float32Array)[0]! - absmax.get(m)!) <= 1e-5 * absmax.get(m)!, `${m} absmax`);
          assert.ok(relativeError(out[`channel_absmax.${m}`]!.data as Float32Array, channel.get(m)!) < 1e-5, `${m} channel absmax`);
          const twice = hessian.get(m)!.map((v) => 2 * v);
          const error = relativeError(out[`H_out.${m}`]!.data as Float32Array, twice);
          assert.ok(error < 1e-5, `${m} Hessian relative error ${error}`);
        }
        hidden = out.block_output!.data as Float32Array;
        // Real tokens' outputs equal the reference hidden states after this block.
        sequences.forEach((tokens, b) => {
          const expected = blockOutputs[b]![block.block]!.flatMap((r) => [...r]);
          const actual = hidden.subarray(b * S * H, (b * S + tokens.length) * H);
          assert.ok(relativeError(actual, expected) < 1e-4, `block ${block.block} output, sequence ${b}`);
        });
      } finally {
        await session.release();
      }
    }
    const reused = await buildBlockGraphs(folder, join(tmp.path, 'cache'), { maxSequenceLength: 32 });
    assert.equal(reused.reused, true);
  });
});
