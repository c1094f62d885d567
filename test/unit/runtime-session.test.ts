/**
 * The runtime host: sessions in a worker thread, typed run with transferred buffers, load errors as data,
 * DecoderSession.forward's KV handling (prefill then decode equals the float64 reference), the graph cache
 * (reuse when nothing changed, rebuild when a checkpoint file changes), and the shipped example model
 * (vocab 128256) loading and running.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { buildDecoderGraph } from '../../src/core/runtime/graphCache';
import { DecoderSession, RuntimeHost } from '../../src/core/runtime/session';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { TinyConfig, Weights, randomWeights, referenceForward, relativeError, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { repoRoot, tempDir } from '../helpers/paths';
import { cudaSessionLoads } from '../helpers/cudaOracle';

describe('runtime: session host (worker thread) and graph cache', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let host: RuntimeHost;
  const config = tinyConfig({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 }, rope_theta: 500000 });
  const weights = randomWeights(config, 5);
  before(async () => {
    tmp = tempDir();
    await writeTinyCheckpoint(join(tmp.path, 'model'), config, weights);
    host = new RuntimeHost(join(repoRoot(), 'dist', 'workers', 'runtime.worker.js'));
  });
  after(async () => {
    await host.dispose();
    tmp.cleanup();
  });

  it('builds once, reuses while the checkpoint is unchanged, rebuilds when a file changes; never writes into the model folder', async () => {
    const cache = join(tmp.path, 'cache');
    const first = await buildDecoderGraph(join(tmp.path, 'model'), cache, { maxSequenceLength: 64 });
    assert.equal(first.reused, false);
    const again = await buildDecoderGraph(join(tmp.path, 'model'), cache, { maxSequenceLength: 64 });
    assert.equal(again.reused, true);
    assert.equal(again.modelPath, first.modelPath);
    const other = await buildDecoderGraph(join(tmp.path, 'model'), cache, { maxSequenceLength: 32 });
    assert.equal(other.reused, false, 'other options, other graph');
    assert.notEqual(other.dir, first.dir);
    const later = new Date(Date.now() + 5000);
    await fs.utimes(join(tmp.path, 'model', 'model.safetensors'), later, later);
    const rebuilt = await buildDecoderGraph(join(tmp.path, 'model'), cache, { maxSequenceLength: 64 });
    assert.equal(rebuilt.reused, false);
    assert.deepEqual((await fs.readdir(join(tmp.path, 'model'))).sort(), ['config.json', 'model.safetensors']);
    await assert.rejects(buildDecoderGraph(join(tmp.path, 'model'), join(tmp.path, 'model', 'graphs')), /inside the model folder/);
  });

  it('runs prefill then decode in the worker: logits equal the float64 reference at every step', async () => {
    const built = await buildDecoderGraph(join(tmp.path, 'model'), join(tmp.path, 'cache'), { maxSequenceLength: 64 });
    const created = await host.createSession(built.modelPath, { intraOpThreads: 1 });
    assert.ok(created.ok, created.ok ? '' : created.error);
    const session = new DecoderSession(created.session, built.info);
    assert.ok(session.session.inputNames.includes('past_key_values.1.value'));
    try {
      const tokens = [4, 8, 15, 16, 23, 42, 7, 1];
      const reference = referenceForward(config, weights, tokens);
      const prefill = await session.forward(tokens.slice(0, 5));
      assert.deepEqual(prefill.dims, [1, 5, config.vocab_size]);
      assert.ok(relativeError(prefill.logits, reference.logits.slice(0, 5).flatMap((r) => [...r])) < 1e-4);
      let past = prefill.past;
      for (let t = 5; t < tokens.length; t++) {
        const step = await session.forward([tokens[t]!], past);
        past = step.past;
        assert.equal(past.length, t + 1);
        const error = relativeError(step.logits, reference.logits[t]!);
        assert.ok(error < 1e-4, `decode step ${t}: relative error ${error}`);
      }
      await assert.rejects(session.forward(new Array(60).fill(1), past), /exceed the graph's maximum sequence length 64/);
    } finally {
      await created.session.release();
    }
  });

  it('reports load failures as data: the CUDA provider where it cannot load, and a missing file', async () => {
    const built = await buildDecoderGraph(join(tmp.path, 'model'), join(tmp.path, 'cache'), { maxSequenceLength: 64 });
    // Whether CUDA loads depends on the machine: the host must agree with onnxruntime asked directly.
    const answer = cudaSessionLoads(built.modelPath);
    const cuda = await host.createSession(built.modelPath, { executionProviders: ['cuda'] });
    if (answer.loads) {
      assert.ok(cuda.ok, `onnxruntime creates this session on CUDA, but the host reports: ${cuda.ok ? '' : cuda.error}`);
      if (cuda.ok) await cuda.session.release();
    } else {
      assert.equal(cuda.ok, false, `onnxruntime cannot create this session on CUDA (${answer.error}), but the host did`);
      if (!cuda.ok) {
        assert.equal(cuda.providerUnavailable, true, cuda.error);
        assert.match(cuda.error, /cuda/i);
      }
    }
    const missing = await host.createSession(join(tmp.path, 'nope.onnx'));
    assert.equal(missing.ok, false);
    if (!missing.ok) {
      assert.equal(missing.providerUnavailable, false);
      assert.match(missing.error, /nope\.onnx/);
    }
    // The worker is still serving.
    const fine = await host.createSession(built.modelPath);
    assert.ok(fine.ok);
    if (fine.ok) await fine.session.release();
  });

  it('the shipped example (Llama 3 shape, vocab 128256, bf16 shards) loads and runs; logits equal the reference', async function () {
    const example = join(repoRoot(), 'examples', 'tiny-llama');
    if (!existsSync(join(example, 'model.safetensors.index.json'))) throw new Error('the example checkpoint is missing: run `npm run example`');
    const built = await buildDecoderGraph(example, join(tmp.path, 'cache'), { maxSequenceLength: 128 });
    assert.deepEqual(await fs.readdir(example).then((n) => n.filter((f) => f.endsWith('.onnx') || f.endsWith('.data'))), []);
    const created = await host.createSession(built.modelPath);
    assert.ok(created.ok, created.ok ? '' : created.error);
    const session = new DecoderSession(created.session, built.info);
    const exampleConfig = JSON.parse(await fs.readFile(join(example, 'config.json'), 'utf8')) as TinyConfig;
    const tokens = [128000, 9906, 11, 1917, 0, 358];
    try {
      const prefill = await session.forward(tokens.slice(0, -1));
      const step = await session.forward(tokens.slice(-1), prefill.past);
      assert.deepEqual(step.dims, [1, 1, 128256]);
      const reference = referenceForward(exampleConfig, await readBf16Weights(example), tokens);
      const error = relativeError(step.logits, reference.logits.at(-1)!);
      assert.ok(error < 1e-4, `relative error ${error}`);
    } finally {
      await created.session.release();
    }
  });
});

/** All tensors of a bf16 checkpoint as float64, decoded here (bf16 = the top half of a float32). */
async function readBf16Weights(folder: string): Promise<Weights> {
  const checkpoint = await Checkpoint.open(folder);
  const weights: Weights = new Map();
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  try {
    for (const tensor of checkpoint.tensors) {
      assert.equal(tensor.dtype, 'BF16');
      const bytes = await checkpoint.readTensorBytes(tensor.name);
      const u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
      const data = new Float64Array(u16.length);
      for (let i = 0; i < u16.length; i++) {
        u32[0] = u16[i]! << 16;
        data[i] = f32[0]!;
      }
      weights.set(tensor.name, { shape: [...tensor.shape], data });
    }
  } finally {
    await checkpoint.close();
  }
  return weights;
}
