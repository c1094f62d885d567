/**
 * The one decoder forward with a KV cache (runtime/causalLM.ts OnnxCausalLM, what the chat runs): prefill
 * then decode equals the float64 reference; load failures are typed errors naming the file and the provider;
 * the graph cache (reuse when nothing changed, rebuild when a checkpoint file changes); and the shipped
 * example model (vocab 128256) loading and running.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { buildDecoderGraph } from '../../src/core/runtime/graphCache';
import { CausalLMError, KVCache, OnnxCausalLM } from '../../src/core/runtime/causalLM';
import { OnnxRuntimeUnavailableError, loadOrt, loadOrtFrom, ortPackageDir } from '../../src/core/util/ort';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { TinyConfig, Weights, randomWeights, referenceForward, relativeError, tinyConfig, writeTinyCheckpoint } from '../helpers/llamaReference';
import { repoRoot, tempDir } from '../helpers/paths';
import { cudaSessionLoads } from '../helpers/cudaOracle';

describe('runtime: the decoder with its KV cache (OnnxCausalLM) and the graph cache', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  const config = tinyConfig({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 }, rope_theta: 500000 });
  const weights = randomWeights(config, 5);
  before(async () => {
    tmp = tempDir();
    await writeTinyCheckpoint(join(tmp.path, 'model'), config, weights);
  });
  after(() => tmp.cleanup());

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

  it('prefill then decode: logits equal the float64 reference at every step; a cache is never changed by a step', async () => {
    const built = await buildDecoderGraph(join(tmp.path, 'model'), join(tmp.path, 'cache'), { maxSequenceLength: 64 });
    const model = await OnnxCausalLM.load(built.modelPath, { intraOpNumThreads: 1, maxPositions: built.info.maxSequenceLength });
    try {
      assert.equal(model.vocabSize, config.vocab_size);
      const tokens = [4, 8, 15, 16, 23, 42, 7, 1];
      const reference = referenceForward(config, weights, tokens);
      const prefill = await model.forward(tokens.slice(0, 5), null);
      assert.equal(prefill.logits.length, 5 * config.vocab_size);
      assert.ok(relativeError(prefill.logits, reference.logits.slice(0, 5).flatMap((r) => [...r])) < 1e-4);
      let past: KVCache = prefill.cache;
      for (let t = 5; t < tokens.length; t++) {
        const step = await model.forward([tokens[t]!], past);
        past = step.cache;
        assert.equal(past.length, t + 1);
        const error = relativeError(step.logits, reference.logits[t]!);
        assert.ok(error < 1e-4, `decode step ${t}: relative error ${error}`);
      }
      // The prefill's cache continued a second time gives the same step as the first time.
      const again = await model.forward([tokens[5]!], prefill.cache);
      assert.ok(relativeError(again.logits, reference.logits[5]!) < 1e-4);
      await assert.rejects(model.forward(new Array(60).fill(1), past), /68 tokens \(8 cached \+ 60 new\) exceed the 64 positions/);
    } finally {
      await model.release();
    }
  });

  it('load failures are typed errors: the CUDA provider where it cannot load, and a missing file', async () => {
    const built = await buildDecoderGraph(join(tmp.path, 'model'), join(tmp.path, 'cache'), { maxSequenceLength: 64 });
    // Whether CUDA loads depends on the machine: the loader must agree with onnxruntime asked directly.
    const answer = cudaSessionLoads(built.modelPath);
    const cuda = await OnnxCausalLM.load(built.modelPath, { executionProviders: ['cuda'] }).then(
      (model) => ({ ok: true as const, model }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    if (answer.loads) {
      assert.ok(cuda.ok, `onnxruntime creates this session on CUDA, but the loader failed: ${cuda.ok ? '' : String(cuda.error)}`);
      if (cuda.ok) await cuda.model.release();
    } else {
      assert.equal(cuda.ok, false, `onnxruntime cannot create this session on CUDA (${answer.error}), but the loader did`);
      if (!cuda.ok) {
        assert.ok(cuda.error instanceof CausalLMError, String(cuda.error));
        assert.equal(cuda.error.code, 'LoadFailed');
        assert.match(cuda.error.message, /cuda/i);
        assert.ok(cuda.error.message.startsWith(built.modelPath), cuda.error.message);
      }
    }
    await assert.rejects(OnnxCausalLM.load(join(tmp.path, 'nope.onnx')), (error: unknown) => error instanceof CausalLMError && error.code === 'NoGraph' && /nope\.onnx: the ONNX model file does not exist/.test(error.message));
    // onnxruntime still serves this process.
    const fine = await OnnxCausalLM.load(built.modelPath);
    await fine.release();
  });

  it('onnxruntime-node without its native binding (installed for another platform) is one clear error naming the platform', async () => {
    // A real copy of the package's JavaScript with no bin/ folder, beside its real dependency.
    const app = join(tmp.path, 'app');
    const pkg = join(app, 'node_modules', 'onnxruntime-node');
    await fs.mkdir(pkg, { recursive: true });
    await fs.cp(join(ortPackageDir(), 'dist'), join(pkg, 'dist'), { recursive: true });
    await fs.copyFile(join(ortPackageDir(), 'package.json'), join(pkg, 'package.json'));
    let common = require.resolve('onnxruntime-common', { paths: [ortPackageDir()] });
    while (basename(common) !== 'onnxruntime-common') common = dirname(common);
    await fs.symlink(common, join(app, 'node_modules', 'onnxruntime-common'));
    assert.throws(
      () => loadOrtFrom(app),
      (error: unknown) =>
        error instanceof OnnxRuntimeUnavailableError &&
        error.message.includes(`for ${process.platform}-${process.arch}`) &&
        /its native binding is missing \(Cannot find module .*onnxruntime_binding\.node/.test(error.message) &&
        error.message.includes(`bin/napi-v6/${process.platform}/${process.arch}/`),
    );
    // The installed package loads, once, for the whole process.
    assert.equal(loadOrt(), loadOrt());
  });

  it('the shipped example (Llama 3 shape, vocab 128256, bf16 shards) loads and runs; logits equal the reference', async function () {
    const example = join(repoRoot(), 'examples', 'tiny-llama');
    if (!existsSync(join(example, 'model.safetensors.index.json'))) throw new Error('the example checkpoint is missing: run `npm run example`');
    const built = await buildDecoderGraph(example, join(tmp.path, 'cache'), { maxSequenceLength: 128 });
    assert.deepEqual(await fs.readdir(example).then((n) => n.filter((f) => f.endsWith('.onnx') || f.endsWith('.data'))), []);
    const model = await OnnxCausalLM.load(built.modelPath);
    const exampleConfig = JSON.parse(await fs.readFile(join(example, 'config.json'), 'utf8')) as TinyConfig;
    const tokens = [128000, 9906, 11, 1917, 0, 358];
    try {
      const prefill = await model.forward(tokens.slice(0, -1), null, { lastOnly: true });
      assert.equal(prefill.logits.length, 128256);
      const step = await model.forward(tokens.slice(-1), prefill.cache);
      assert.equal(step.logits.length, 128256);
      const reference = referenceForward(exampleConfig, await readBf16Weights(example), tokens);
      const error = relativeError(step.logits, reference.logits.at(-1)!);
      assert.ok(error < 1e-4, `relative error ${error}`);
    } finally {
      await model.release();
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
