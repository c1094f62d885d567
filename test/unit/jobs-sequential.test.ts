/**
 * The one-pass quantize job (jobs/sequential.ts) on a small random Llama with the example's tokenizer and the
 * shipped WikiText-2 sample:
 *   (a) with float propagation its output is byte for byte the output of the two-pass job (calibrate to a
 *       statistics file, then quantize from it): the same Hessians reach the same quantize code;
 *   (b) with quantized propagation, every block's Hessian equals a float64 reference (test/helpers/
 *       llamaReference.ts) run with the dequantized weights of the blocks already written, read back from the
 *       output — and differs from the float-propagation reference by more than the tolerance;
 *   (c) cancel and failure leave nothing beside the output; on the example model the largest disk use of the
 *       output's folder during the job stays within 1.25 × the output's size (no statistics file).
 */
import assert from 'node:assert/strict';
import { promises as fs, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runJob } from '../../src/core/jobs/runJob';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { SequentialCalibration } from '../../src/core/jobs/sequential';
import type { BlockStatistics } from '../../src/core/jobs/blockPipeline';
import { JobCancelled } from '../../src/core/jobs/jobErrors';
import { openDecoderModel } from '../../src/core/runtime/llama/graph';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { buildLayerMap } from '../../src/core/checkpoint/scheme';
import { dequantizeStoredWeight } from '../../src/core/quant/storedWeights';
import { TinyConfig, Weights, randomWeights, referenceForward, writeTinyCheckpoint, relativeFrobenius } from '../helpers/llamaReference';
import { repoRoot, tempDir } from '../helpers/paths';
import { copyExampleTokenizer, tinyConfigWithExampleVocabulary } from '../helpers/exampleVocabulary';

const SAMPLES = 3;
const SEQ = 24;
const LAYERS = 3;
const MODULES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
/** Hessian owners (one per distinct input) of a block. */
const OWNERS = ['self_attn.q_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.down_proj'];

/** Every file under `dir` (relative path → bytes). */
async function filesOf(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await fs.readdir(dir, { recursive: true })).sort()) {
    const path = join(dir, name);
    if ((await fs.stat(path)).isFile()) files.set(name, await fs.readFile(path));
  }
  return files;
}

/** Bytes of every file under `dir`, now (synchronous: called from progress callbacks). */
function diskUse(dir: string): number {
  let sum = 0;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    try {
      const s = statSync(join(dir, name));
      if (s.isFile()) sum += s.size;
    } catch {
      // A file renamed or removed between the listing and the stat.
    }
  }
  return sum;
}

describe('jobs: one-pass sequential calibration and quantization', function () {
  this.timeout(600_000);
  let tmp: ReturnType<typeof tempDir>;
  let model: string;
  let config: TinyConfig;
  let weights: Weights | undefined;
  const dataset = defaultCalibrationDataset();

  before(async () => {
    tmp = tempDir();
    model = join(tmp.path, 'model');
    config = await tinyConfigWithExampleVocabulary(LAYERS);
    weights = randomWeights(config, 7);
    await writeTinyCheckpoint(model, config, weights);
    await copyExampleTokenizer(model);
  });
  after(() => {
    // 130 MB of float64 weights: released for the suites that run after this one in the same process.
    weights = undefined;
    tmp.cleanup();
  });

  for (const preset of ['w4a16', 'fp8'] as const) {
    it(`${preset}: with float propagation the one-pass output equals the two-pass output byte for byte`, async () => {
      const graphs = join(tmp.path, 'graphs');
      await fs.mkdir(graphs, { recursive: true });
      const stats = join(tmp.path, `${preset}-stats.safetensors`);
      await runJob({ kind: 'calibrate', model, out: stats, dataset, samples: SAMPLES, seqLen: SEQ, hessians: preset === 'w4a16' }, { graphCacheDir: graphs });
      const twoPass = join(tmp.path, `${preset}-two-pass`);
      await runJob({ kind: 'quantize', model, out: twoPass, preset, calibration: { kind: 'stats', path: stats } }, { graphCacheDir: graphs });
      const onePass = join(tmp.path, `${preset}-one-pass`);
      const result = await runJob({ kind: 'quantize', model, out: onePass, preset, propagation: 'float', calibration: { kind: 'dataset', path: dataset, samples: SAMPLES, seqLen: SEQ } }, { graphCacheDir: graphs });
      assert.equal(result.kind === 'quantize' && result.calibration?.tokens, SAMPLES * SEQ);
      // Every linear of the 3 blocks calibrated; one Hessian per distinct input (q/k/v, o, gate/up, down) for GPTQ.
      assert.equal(result.kind === 'quantize' && result.calibration?.layers, LAYERS * MODULES.length);
      assert.equal(result.kind === 'quantize' && result.calibration?.hessians, preset === 'w4a16' ? LAYERS * OWNERS.length : 0);
      const a = await filesOf(twoPass);
      const b = await filesOf(onePass);
      assert.deepEqual([...b.keys()], [...a.keys()]);
      for (const [name, bytes] of a) {
        if (name === 'quantlens.json') continue;
        assert.ok(bytes.equals(b.get(name)!), `${name} differs between the two-pass and the one-pass job`);
      }
      // quantlens.json: the same record, plus (GPTQ) the output error the one-pass job measured (jobs-outputError.test.ts).
      const { output_error: measured, ...record } = JSON.parse(b.get('quantlens.json')!.toString('utf8')) as Record<string, unknown>;
      assert.deepEqual(record, JSON.parse(a.get('quantlens.json')!.toString('utf8')));
      assert.equal(measured !== undefined, preset === 'w4a16');
      assert.ok(a.get('model.safetensors')!.length > 0);
    });
  }

  it('w4a16: with quantized propagation every block is calibrated on the outputs of the written (dequantized) blocks before it', async () => {
    const out = join(tmp.path, 'w4a16-quantized');
    const captured = new Map<number, BlockStatistics>();
    const decoder = await openDecoderModel(model);
    const sequential = await SequentialCalibration.open(decoder, {
      dataset,
      samples: SAMPLES,
      seqLen: SEQ,
      propagation: 'quantized',
      hessians: true,
      graphCacheDir: tmp.path,
      onBlockStatistics: (block, statistics) => captured.set(block, statistics),
    });
    const sequences = sequential.dataset.samples.map((s) => Array.from(s.inputIds.subarray(0, s.tokens)));
    const tokens = sequential.tokens;
    try {
      await runQuantizeJob({ model, out, scheme: 'w4a16', calibration: sequential });
    } finally {
      await sequential.close();
      await decoder.checkpoint.close();
    }
    assert.deepEqual([...captured.keys()], [0, 1, 2]);

    // The written weights, dequantized from the output by the reader of stored checkpoints.
    const written = await Checkpoint.open(out);
    const dequantized = new Map<string, Float64Array>();
    try {
      const configJson = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8')) as { quantization_config: unknown };
      const layerMap = buildLayerMap(written.tensors, configJson.quantization_config, { numHiddenLayers: LAYERS, tieWordEmbeddings: true, hasConfig: true });
      for (const module of layerMap.modules) {
        if (!/^model\.layers\./.test(module.name)) continue;
        const { weight } = await dequantizeStoredWeight(written, module, { declared: module.declared?.scheme?.weights });
        dequantized.set(module.name, Float64Array.from(weight));
      }
    } finally {
      await written.close();
    }
    assert.equal(dequantized.size, LAYERS * MODULES.length);

    const blockOf = (module: string) => Number(/^model\.layers\.(\d+)\./.exec(module)![1]);
    const referenceHessians = (block: number, propagation: 'quantized' | 'float') => {
      const sums = new Map<string, Float64Array>();
      for (const ids of sequences) {
        referenceForward(config, weights!, ids, {
          weight: (module) => (propagation === 'quantized' && blockOf(module) < block ? dequantized.get(module) : undefined),
          linearInput: (module, rows) => {
            if (blockOf(module) !== block || !OWNERS.some((o) => module.endsWith(o))) return;
            const K = rows[0]!.length;
            const acc = sums.get(module) ?? new Float64Array(K * K);
            for (const x of rows) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) acc[i * K + j]! += x[i]! * x[j]!;
            sums.set(module, acc);
          },
        });
      }
      for (const acc of sums.values()) for (let k = 0; k < acc.length; k++) acc[k] = (acc[k]! * 2) / tokens;
      return sums;
    };
    for (let block = 0; block < LAYERS; block++) {
      const quantized = referenceHessians(block, 'quantized');
      const float = block > 0 ? referenceHessians(block, 'float') : undefined;
      for (const owner of OWNERS) {
        const module = `model.layers.${block}.${owner}`;
        const got = captured.get(block)!.hessians.get(module)!;
        const error = relativeFrobenius(got, quantized.get(module)!);
        assert.ok(error < 2e-5, `${module}: Hessian relative error ${error} against the float64 reference with the written weights`);
        if (float) {
          // The test can fail: float propagation gives a measurably different Hessian from block 1 on.
          const apart = relativeFrobenius(float.get(module)!, quantized.get(module)!);
          assert.ok(apart > 20 * error && apart > 1e-4, `${module}: float and quantized propagation differ by ${apart} only (measured error ${error})`);
        }
      }
    }
  });

  it('a model of 11 blocks: layers are written block after block (model.layers.2 before model.layers.10), with the same tensors as the two-pass job', async () => {
    const deep = join(tmp.path, 'deep');
    const example = join(repoRoot(), 'examples', 'tiny-llama');
    const deepConfig = { ...config, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 11 };
    await writeTinyCheckpoint(deep, deepConfig, randomWeights(deepConfig, 11));
    for (const file of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) await fs.copyFile(join(example, file), join(deep, file));
    const graphs = join(tmp.path, 'graphs-deep');
    await fs.mkdir(graphs, { recursive: true });
    const calibration = { kind: 'dataset' as const, path: dataset, samples: 2, seqLen: 16 };
    const stats = join(tmp.path, 'deep-stats.safetensors');
    await runJob({ kind: 'calibrate', model: deep, out: stats, dataset, samples: 2, seqLen: 16, hessians: false }, { graphCacheDir: graphs });
    await runJob({ kind: 'quantize', model: deep, out: join(tmp.path, 'deep-two-pass'), preset: 'fp8', calibration: { kind: 'stats', path: stats } }, { graphCacheDir: graphs });
    await runJob({ kind: 'quantize', model: deep, out: join(tmp.path, 'deep-float'), preset: 'fp8', propagation: 'float', calibration }, { graphCacheDir: graphs });
    await runJob({ kind: 'quantize', model: deep, out: join(tmp.path, 'deep-quantized'), preset: 'fp8', calibration }, { graphCacheDir: graphs });
    const twoPass = await Checkpoint.open(join(tmp.path, 'deep-two-pass'));
    const float = await Checkpoint.open(join(tmp.path, 'deep-float'));
    const quantized = await Checkpoint.open(join(tmp.path, 'deep-quantized'));
    try {
      const order = float.tensors.map((t) => t.name);
      assert.ok(order.indexOf('model.layers.2.self_attn.q_proj.weight') < order.indexOf('model.layers.10.self_attn.q_proj.weight'), 'block 2 is written before block 10');
      assert.deepEqual([...order].sort(), twoPass.tensors.map((t) => t.name).sort());
      for (const name of order) assert.ok(Buffer.from(await float.readTensorBytes(name)).equals(Buffer.from(await twoPass.readTensorBytes(name))), `${name} differs from the two-pass job's`);
      // Quantized propagation: block 0 sees the same inputs; later blocks' input scales move with the written weights.
      const scale = async (c: Checkpoint, l: number) => Buffer.from(await c.readTensorBytes(`model.layers.${l}.mlp.down_proj.input_scale`));
      assert.ok((await scale(quantized, 0)).equals(await scale(float, 0)));
      let moved = 0;
      for (let l = 1; l < 11; l++) if (!(await scale(quantized, l)).equals(await scale(float, l))) moved++;
      assert.ok(moved > 0, 'quantized propagation changes some later block input scale');
    } finally {
      await twoPass.close();
      await float.close();
      await quantized.close();
    }
  });

  it("on the example model the output's folder never holds more than the output (no statistics file)", async () => {
    const example = join(repoRoot(), 'examples', 'tiny-llama');
    const parent = join(tmp.path, 'disk');
    const graphs = join(tmp.path, 'graphs-d');
    await fs.mkdir(parent, { recursive: true });
    await fs.mkdir(graphs, { recursive: true });
    // The largest disk use of the output's folder, sampled at every progress report (each layer, each block).
    let largest = 0;
    const out = join(parent, 'w4a16');
    await runJob({ kind: 'quantize', model: example, out, preset: 'w4a16', calibration: { kind: 'dataset', path: dataset, samples: SAMPLES, seqLen: SEQ } }, { graphCacheDir: graphs, onProgress: () => (largest = Math.max(largest, diskUse(parent))) });
    const outputBytes = diskUse(out);
    assert.ok(largest > 0 && largest <= 1.25 * outputBytes, `largest disk use ${largest} bytes for an output of ${outputBytes} bytes`);
    // What the two-pass job also kept there: the Hessians of 4 blocks (q/k/v, o, gate/up 256², down 768², F32).
    const statisticsBytes = 4 * (3 * 256 * 256 + 768 * 768) * 4;
    assert.ok(largest - outputBytes < statisticsBytes / 10, `the folder held ${largest - outputBytes} bytes beyond the output`);
    assert.deepEqual(readdirSync(parent), ['w4a16']);
    assert.deepEqual(readdirSync(graphs), [], 'no block graphs are left behind');
  });

  it('cancel and failure leave nothing beside the output', async () => {
    const parent = join(tmp.path, 'jobs');
    const graphs = join(tmp.path, 'graphs-c');
    await fs.mkdir(parent, { recursive: true });
    await fs.mkdir(graphs, { recursive: true });
    const data = join(tmp.path, 'calibration.txt');
    await fs.copyFile(dataset, data);
    const spec = (out: string) => ({ kind: 'quantize' as const, model, out, preset: 'w4a16' as const, calibration: { kind: 'dataset' as const, path: data, samples: SAMPLES, seqLen: SEQ } });

    const controller = new AbortController();
    const cancelled = join(parent, 'cancelled');
    await assert.rejects(
      runJob(spec(cancelled), { graphCacheDir: graphs, signal: controller.signal, onProgress: (p) => /block 2\//.test(p.stage) && controller.abort() }),
      JobCancelled,
    );
    assert.deepEqual(readdirSync(parent), [], 'a cancelled job leaves nothing beside the output');

    // A dataset changed under the job: the job fails at the end, naming it, and removes what it wrote.
    const failed = join(parent, 'failed');
    let changed = false;
    await assert.rejects(
      runJob(spec(failed), {
        graphCacheDir: graphs,
        onProgress: (p) => {
          if (!changed && /block 2\//.test(p.stage)) {
            changed = true;
            void fs.appendFile(data, '\nMore text written while the job runs.\n');
          }
        },
      }),
      /calibration\.txt/,
    );
    assert.ok(changed);
    assert.deepEqual(readdirSync(parent), [], 'a failed job leaves nothing beside the output');
    assert.deepEqual(readdirSync(graphs), [], 'no block graphs are left behind');
  });
});
