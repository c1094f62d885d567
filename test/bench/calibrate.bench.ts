/**
 * Calibration throughput on the CPU: tokens per second through the calibrate job (block graphs with
 * absmax taps, then with GPTQ Hessian accumulation) for a few model sizes, against the same job's arithmetic
 * (2 · linear parameters FLOPs per token) at the fp32 MatMul rate onnxruntime reaches in the same run.
 * Models beyond the shipped example are random bf16 weights of Llama block shapes with the example's
 * tokenizer (Llama-3.1 vocabulary), written to bench-data/ once.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ensureSyntheticLlama } from './syntheticLlama';
import { runCalibrationJob } from '../../src/core/jobs/calibrate';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { GraphBuilder, DataType } from '../../src/core/runtime/onnx/builder';
import { BenchRow } from './harness';

const root = join(__dirname, '..', '..');
const dataDir = join(root, 'bench-data');
const example = join(root, 'examples', 'tiny-llama');

interface Shape {
  readonly name: string;
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
}

/** Llama-3.2-1B's block shape (hidden 2048, MLP 8192, 32/8 heads) with 2 and 4 blocks. */
const SHAPES: readonly Shape[] = [
  { name: 'llama-1b-shape-2-blocks', hidden: 2048, intermediate: 8192, layers: 2, heads: 32, kvHeads: 8 },
  { name: 'llama-1b-shape-4-blocks', hidden: 2048, intermediate: 8192, layers: 4, heads: 32, kvHeads: 8 },
];
const VOCAB = 128256;

async function ensureModel(shape: Shape): Promise<string> {
  const folder = join(dataDir, `calib-${shape.name}`);
  if (existsSync(join(folder, 'config.json'))) return folder;
  const exampleConfig = JSON.parse(await fs.readFile(join(example, 'config.json'), 'utf8')) as Record<string, unknown>;
  await ensureSyntheticLlama(folder, {
    ...exampleConfig,
    hidden_size: shape.hidden,
    intermediate_size: shape.intermediate,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    head_dim: shape.hidden / shape.heads,
    vocab_size: VOCAB,
  });
  for (const file of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) await fs.copyFile(join(example, file), join(folder, file));
  return folder;
}

function linearParameters(config: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number; head_dim?: number }): number {
  const head = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const q = config.num_attention_heads * head;
  const kv = config.num_key_value_heads * head;
  const perBlock = config.hidden_size * (q + 2 * kv) + q * config.hidden_size + 3 * config.hidden_size * config.intermediate_size;
  return perBlock * config.num_hidden_layers;
}

/** fp32 MatMul GFLOP/s of onnxruntime's CPU provider at M = 512, K = N = 2048 in this run. */
async function matmulRate(): Promise<number> {
  const folder = join(dataDir, 'calib-matmul');
  await fs.mkdir(folder, { recursive: true });
  const K = 2048;
  const N = 2048;
  const M = 512;
  const path = join(folder, 'matmul.onnx');
  if (!existsSync(path)) {
    const g = await GraphBuilder.create({ modelPath: path });
    const x = g.input('x', DataType.FLOAT, [M, K]);
    await g.initializer('w', DataType.FLOAT, [K, N], Float32Array.from({ length: K * N }, (_, i) => ((i % 97) - 48) / 4800));
    g.output(g.op('MatMul', [x, 'w']), DataType.FLOAT, [M, N], 'y');
    await g.finish();
  }
  const session = await ort.InferenceSession.create(path);
  const feed = { x: new ort.Tensor('float32', Float32Array.from({ length: M * K }, (_, i) => ((i % 89) - 44) / 440), [M, K]) };
  for (let i = 0; i < 3; i++) await session.run(feed);
  const runs = 10;
  const started = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) await session.run(feed);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await session.release();
  return (2 * M * K * N * runs) / seconds / 1e9;
}

export async function calibrateSection(rows: BenchRow[]): Promise<void> {
  const gflops = await matmulRate();
  rows.push({ section: 'calibrate', what: 'fp32 MatMul 512×2048×2048 (onnxruntime CPU)', result: `${gflops.toFixed(0)} GFLOP/s`, baseline: '-', ratio: '-', target: 'reference for the rows below' });
  const models = [example, ...(await Promise.all(SHAPES.map(ensureModel)))];
  const scratch = join(dataDir, 'calib-out');
  await fs.rm(scratch, { recursive: true, force: true });
  await fs.mkdir(scratch, { recursive: true });
  const samples = 8;
  const seqLen = 256;
  for (const model of models) {
    const config = JSON.parse(await fs.readFile(join(model, 'config.json'), 'utf8')) as Parameters<typeof linearParameters>[0];
    const params = linearParameters(config);
    const name = model === example ? 'shipped example (hidden 256, 4 blocks)' : model.split('/').at(-1)!.replace('calib-', '');
    for (const hessians of [false, true]) {
      const out = join(scratch, `${name.replace(/\W+/g, '-')}-${hessians}.safetensors`);
      const summary = await runCalibrationJob({ model, out, dataset: defaultCalibrationDataset(), samples, seqLen, hessians, graphCacheDir: scratch });
      const ideal = (2 * params * summary.tokens) / (gflops * 1e9);
      rows.push({
        section: 'calibrate',
        what: `${name}: ${samples}×${seqLen} tokens, ${hessians ? 'absmax + Hessians' : 'absmax'}`,
        result: `${summary.tokensPerSecond.toFixed(0)} tokens/s (${summary.seconds.toFixed(1)} s)`,
        baseline: `${ideal.toFixed(2)} s of linear-layer FLOPs at the MatMul rate`,
        ratio: `${(ideal / summary.seconds).toFixed(2)}× of MatMul peak`,
        target: '-',
      });
      await fs.rm(out, { force: true });
    }
  }
}
