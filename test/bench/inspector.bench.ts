/**
 * `npm run bench -- --only inspector`: the inspector's own costs, each against a baseline from the same run.
 * - first paint of the layer map for a Llama-3-8B-shaped (sparse) checkpoint: open + summary + layer map +
 *   the two messages the page needs before it can draw (init, first layer page), serialised as postMessage
 *   would; against a raw read + JSON.parse of the headers;
 * - statistics, and the error simulation of every scheme in SIMULATIONS over every linear layer, of a ~1.7 GB
 *   Llama-shaped checkpoint with real (heavy-tailed bf16) data, and the comparison of its W8A8 quantization
 *   with it; against a plain read of the same bytes; then the same for a Mixtral-shaped MoE of the same bytes,
 *   whose throughput is also given against the dense model's;
 * - peak RSS of `quantlens inspect --stats` / `--error` on that checkpoint, as whole processes.
 * `npm run bench -- --only moe-stats` runs only the MoE-vs-dense statistics pair (statsPairSection).
 */
import { promises as fs, existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { queryLayers, queryTensorTable } from '../../src/core/checkpoint/tensorQuery';
import { computeStatisticsOfTensors, computeTensorStatistics } from '../../src/core/stats/computeStats';
import { compareWithOriginal, simulateErrors, SIMULATIONS, SimulationName } from '../../src/core/inspect/error';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { SafetensorsWriter, tensorByteLength } from '../../src/core/safetensors/writer';
import { planShards, shardFileName, writeShardIndex } from '../../src/core/safetensors/shards';
import { BenchRow, gbps, interleavedMedians, mb, ms } from './harness';
import { LLAMA_3_8B, LlamaShape, llamaTensors } from './llamaShapes';
import { writeSparseCheckpoint } from './sparseCheckpoint';

/** ~1.7 GB of bf16: Llama-3.2-1B's widths with 12 blocks and a 32k vocabulary. */
const SMALL_LLAMA: LlamaShape = { name: 'Llama-shaped 0.8B', hidden: 2048, intermediate: 8192, layers: 12, heads: 32, kvHeads: 8, vocab: 32000 };
/** The same bytes as a Mixtral-style MoE: each MLP as 8 experts of intermediate 1024, plus the routers. */
const SMALL_MOE: LlamaShape = { ...SMALL_LLAMA, name: 'Mixtral-shaped 0.8B', intermediate: 1024, experts: 8 };

async function rawHeaders(folder: string): Promise<number> {
  let count = 0;
  const index = JSON.parse(await fs.readFile(join(folder, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
  for (const shard of new Set(Object.values(index.weight_map))) {
    const handle = await fs.open(join(folder, shard), 'r');
    const prefix = Buffer.alloc(8);
    await handle.read(prefix, 0, 8, 0);
    const header = Buffer.alloc(Number(prefix.readBigUInt64LE(0)));
    await handle.read(header, 0, header.length, 8);
    await handle.close();
    count += Object.keys(JSON.parse(header.toString('utf8'))).length;
  }
  return count;
}

/** Writes real heavy-tailed bf16 data (std ≈ 0.02, like trained weights) once; later runs reuse it. */
async function writeRealCheckpoint(folder: string, shape: LlamaShape): Promise<number> {
  const specs = llamaTensors(shape);
  const total = specs.reduce((s, t) => s + tensorByteLength(t), 0);
  if (existsSync(join(folder, '.complete'))) return total;
  await fs.rm(folder, { recursive: true, force: true });
  await fs.mkdir(folder, { recursive: true });
  const chunk = new Uint8Array(8 * 1024 * 1024);
  const words = new Uint16Array(chunk.buffer);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const fill = () => {
    randomFillSync(chunk);
    for (let i = 0; i < words.length; i++) {
      const u = (words[i]! + 0.5) / 65536;
      f32[0] = 0.02 * Math.sqrt(Math.abs(Math.tan(Math.PI * (u - 0.5)))) * (u < 0.5 ? -1 : 1);
      words[i] = u32[0]! >>> 16;
    }
  };
  const shards = planShards(specs, 1e9);
  const weightMap = new Map<string, string>();
  for (let s = 0; s < shards.length; s++) {
    const name = shardFileName(s, shards.length);
    const writer = await SafetensorsWriter.create(join(folder, name), shards[s]!);
    for (const spec of writer.order) {
      weightMap.set(spec.name, name);
      for (let done = 0, size = tensorByteLength(spec); done < size; done += chunk.length) {
        fill();
        await writer.write(spec.name, chunk.subarray(0, Math.min(chunk.length, size - done)));
      }
    }
    await writer.finish();
  }
  await writeShardIndex(folder, weightMap, total);
  const family = shape.experts ? { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', num_local_experts: shape.experts, num_experts_per_tok: 2 } : { architectures: ['LlamaForCausalLM'], model_type: 'llama' };
  const config = { ...family, torch_dtype: 'bfloat16', hidden_size: shape.hidden, intermediate_size: shape.intermediate, num_hidden_layers: shape.layers, num_attention_heads: shape.heads, num_key_value_heads: shape.kvHeads, vocab_size: shape.vocab, tie_word_embeddings: false };
  await fs.writeFile(join(folder, 'config.json'), JSON.stringify(config));
  await fs.writeFile(join(folder, '.complete'), '');
  return total;
}

async function plainRead(folder: string): Promise<number> {
  const buffer = new Uint8Array(8 * 1024 * 1024);
  let sink = 0;
  for (const name of (await fs.readdir(folder)).filter((n) => n.endsWith('.safetensors'))) {
    const handle = await fs.open(join(folder, name), 'r');
    for (let at = 0; ; at += buffer.length) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, at);
      if (bytesRead === 0) break;
      sink += buffer[bytesRead - 1]!;
    }
    await handle.close();
  }
  return sink;
}

/** The three measurements of a checkpoint, as operations the MoE-vs-dense rows pair up run by run. */
interface Measured {
  readonly bytes: number;
  readonly linearBytes: number;
  readonly comparedBytes: number;
  readonly stats: () => Promise<void>;
  readonly simulate: () => Promise<unknown>;
  readonly compare: () => Promise<unknown>;
  readonly close: () => Promise<void>;
}

/** Statistics of every tensor as `quantlens inspect --stats` runs them: several tensors at once on the counting workers. */
async function statisticsOfEveryTensor(checkpoint: Checkpoint, names: readonly string[], threads?: number): Promise<void> {
  if (threads === 0) for (const name of names) await computeTensorStatistics(checkpoint, name, { threads });
  else await computeStatisticsOfTensors(names, (name) => computeTensorStatistics(checkpoint, name, { threads }), (name) => checkpoint.tensor(name).byteLength, { threads });
}

async function throughputRows(rows: BenchRow[], folder: string, shape: LlamaShape): Promise<Measured> {
  const bytes = await writeRealCheckpoint(folder, shape);
  const checkpoint = await Checkpoint.open(folder);
  const { layerMap, summary } = await analyzeCheckpoint(checkpoint, folder);
  const names = queryTensorTable(summary.tensors, { filter: '', offset: 0, limit: summary.tensors.length }).rows.map((r) => r.name);
  const allStats = (threads?: number) => statisticsOfEveryTensor(checkpoint, names, threads);
  const [tStats, tRead] = await interleavedMedians(3, () => allStats(), () => plainRead(folder));
  rows.push({
    section: 'inspector',
    what: `statistics + histograms of every tensor, ${shape.name} real bf16 (${mb(bytes)})`,
    result: gbps(bytes, tStats),
    baseline: `${gbps(bytes, tRead)} plain read of the same bytes`,
    ratio: `${(tRead / tStats).toFixed(2)}× the plain read's speed`,
    target: '≥ 2 GB/s',
  });
  if (!shape.experts) {
    const [tStats1, tRead1] = await interleavedMedians(3, () => allStats(0), () => plainRead(folder));
    rows.push({
      section: 'inspector',
      what: 'the same on one thread (no counting workers)',
      result: gbps(bytes, tStats1),
      baseline: `${gbps(bytes, tRead1)} plain read`,
      ratio: `${(tRead1 / tStats1).toFixed(2)}× the plain read's speed`,
      target: '-',
    });
  }
  const linearBytes = layerMap.modules.filter((m) => m.observed?.kind === 'float').reduce((s, m) => s + checkpoint.tensor(`${m.name}.weight`).byteLength, 0);
  // The MoE model runs the one simulation its comparison row needs; the dense one runs them all.
  for (const simulation of (shape.experts ? ['int8-channel'] : Object.keys(SIMULATIONS)) as SimulationName[]) {
    const [tError, tRead2] = await interleavedMedians(1, () => simulateErrors(checkpoint, layerMap, simulation), () => plainRead(folder));
    rows.push({
      section: 'inspector',
      what: `error simulation ${SIMULATIONS[simulation].label} over every linear layer of ${shape.name} (${mb(linearBytes)} of weights)`,
      result: gbps(linearBytes, tError),
      baseline: `${gbps(bytes, tRead2)} plain read`,
      ratio: `${(linearBytes / tError / (bytes / tRead2)).toFixed(2)}× the plain read's speed`,
      target: '≥ 0.4 GB/s',
    });
  }
  // compareWithOriginal: the same checkpoint quantized to W8A8 (RTN) once, every layer against the original.
  const w8a8 = `${folder}-w8a8`;
  if (!existsSync(join(w8a8, '.complete'))) {
    await fs.rm(w8a8, { recursive: true, force: true });
    await runQuantizeJob({ model: folder, out: w8a8, scheme: 'w8a8' });
    await fs.writeFile(join(w8a8, '.complete'), '');
  }
  const quantized = await Checkpoint.open(w8a8);
  const { layerMap: quantizedMap } = await analyzeCheckpoint(quantized, w8a8);
  const comparedBytes = quantizedMap.modules.filter((m) => m.state === 'quantized').reduce((s, m) => s + checkpoint.tensor(`${m.name}.weight`).byteLength, 0);
  const [tCompare, tRead3] = await interleavedMedians(1, () => compareWithOriginal(quantized, quantizedMap, checkpoint), () => plainRead(folder));
  rows.push({
    section: 'inspector',
    what: `compare with original, W8A8 RTN ${shape.name} against its bf16 original (${mb(comparedBytes)} of original weights)`,
    result: gbps(comparedBytes, tCompare),
    baseline: `${gbps(bytes, tRead3)} plain read`,
    ratio: `${(comparedBytes / tCompare / (bytes / tRead3)).toFixed(2)}× the plain read's speed`,
    target: '≥ 0.4 GB/s',
  });
  return {
    bytes,
    linearBytes,
    comparedBytes,
    stats: () => allStats(),
    simulate: () => simulateErrors(checkpoint, layerMap, 'int8-channel'),
    compare: () => compareWithOriginal(quantized, quantizedMap, checkpoint),
    close: async () => {
      await quantized.close();
      await checkpoint.close();
    },
  };
}

export async function inspectorSection(rows: BenchRow[], dataDir: string, root: string): Promise<void> {
  // 1. First paint of the layer map.
  const big = join(dataDir, 'llama-3-8b-sparse');
  await writeSparseCheckpoint(big, llamaTensors(LLAMA_3_8B), 5e9);
  const firstPaint = async () => {
    const checkpoint = await Checkpoint.open(big);
    const { summary, layerMap } = await analyzeCheckpoint(checkpoint, big);
    const { tensors: _tensors, ...view } = summary;
    // What the host posts before the page can draw the Layers tab: init, then the first page of layers.
    const init = JSON.stringify({ type: 'init', summary: { ...view, title: 'model.safetensors.index.json' } });
    const page = JSON.stringify({ type: 'response', requestId: 1, result: queryLayers(layerMap.modules, { filter: '', state: '', offset: 0, limit: 100 }) });
    await checkpoint.close();
    return init.length + page.length;
  };
  const [tPaint, tRaw] = await interleavedMedians(15, firstPaint, () => rawHeaders(big));
  rows.push({
    section: 'inspector',
    what: `first paint of the layer map, ${LLAMA_3_8B.name} sparse (open + summary + layer map + init and first layer page serialised)`,
    result: ms(tPaint),
    baseline: `${ms(tRaw)} raw read + JSON.parse of the headers`,
    ratio: `${(tPaint / tRaw).toFixed(2)}× the raw read`,
    target: '< 300 ms',
  });

  // 2. Statistics and error throughput on real data, for a dense model and for a mixture of experts of the
  // same bytes (every MLP split into 8 experts plus a router): MoE layers must not be slower per byte.
  const folder = join(dataDir, 'llama-0.8b-real');
  const dense = await throughputRows(rows, folder, SMALL_LLAMA);
  const moe = await throughputRows(rows, join(dataDir, 'mixtral-0.8b-real'), SMALL_MOE);
  // Paired: the MoE and the dense run alternate, so a busy machine slows both alike.
  for (const [what, op, size] of [
    ['statistics + histograms of every tensor', 'stats', 'bytes'],
    ['error simulation INT8 per channel', 'simulate', 'linearBytes'],
    ['compare with original (W8A8)', 'compare', 'comparedBytes'],
  ] as const) {
    const [tMoe, tDense] = await interleavedMedians(3, moe[op], dense[op]);
    const moeRate = moe[size] / tMoe;
    const denseRate = dense[size] / tDense;
    rows.push({
      section: 'inspector',
      what: `${what}: ${SMALL_MOE.name} (${SMALL_MOE.experts} experts per layer) against the dense ${SMALL_LLAMA.name}, alternating`,
      result: gbps(moe[size], tMoe),
      baseline: `${gbps(dense[size], tDense)} dense`,
      ratio: `${(moeRate / denseRate).toFixed(2)}× the dense model's throughput`,
      target: '≈ 1×',
    });
  }
  await moe.close();
  await dense.close();
  const bytes = dense.bytes;

  // 3. Peak RSS of whole CLI processes on that checkpoint.
  const peakRss = (...args: string[]) => {
    // A forked child starts with its parent's peak RSS on Linux: reset the high-water mark (clear_refs 5)
    // first, then read VmHWM, so the figure is the child's own.
    const script = `const fs = require('fs'); try { fs.writeFileSync('/proc/self/clear_refs', '5'); } catch {}
      require(${JSON.stringify(join(root, 'dist', 'cli.js'))}).main(${JSON.stringify(['inspect', folder, ...args])}).then(() => {
        const hwm = /VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
        process.stderr.write('RSS=' + (hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024));
      })`;
    const result = spawnSync(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    return Number(/RSS=(\d+)/.exec(result.stderr)?.[1] ?? NaN);
  };
  const headerRss = peakRss('--json');
  for (const [label, args] of [['--stats', ['--stats']], ['--error --simulate int8-channel', ['--error', '--simulate', 'int8-channel']]] as const) {
    const rss = peakRss(...args);
    rows.push({
      section: 'inspector',
      what: `peak RSS of quantlens inspect ${label} on the ${mb(bytes)} checkpoint`,
      result: mb(rss),
      baseline: `${mb(headerRss)} inspect --json (headers only)`,
      ratio: `${(rss / bytes).toFixed(3)}× the checkpoint's bytes`,
      target: 'bounded by one layer, not the checkpoint',
    });
  }
}

/**
 * `--only moe-stats`: only the statistics of every tensor of the Mixtral-shaped checkpoint against the dense
 * one of the same bytes, alternating, `runs` pairs (the whole inspector section takes many minutes). Each
 * pair's times and the load average go to stderr, since the machine is shared.
 */
export async function statsPairSection(rows: BenchRow[], dataDir: string, runs = 7): Promise<void> {
  const open = async (folder: string, shape: LlamaShape) => {
    const bytes = await writeRealCheckpoint(folder, shape);
    const checkpoint = await Checkpoint.open(folder);
    // In the order the inspector section uses (the tensor table's).
    const { summary } = await analyzeCheckpoint(checkpoint, folder);
    const names = queryTensorTable(summary.tensors, { filter: '', offset: 0, limit: summary.tensors.length }).rows.map((r) => r.name);
    return { bytes, checkpoint, names, tensors: names.length };
  };
  const dense = await open(join(dataDir, 'llama-0.8b-real'), SMALL_LLAMA);
  const moe = await open(join(dataDir, 'mixtral-0.8b-real'), SMALL_MOE);
  try {
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    const tMoe: number[] = [];
    const tDense: number[] = [];
    // Wall time, and the CPU time of every thread of the process (the counting workers included): on a
    // loaded machine the wall-time ratio follows the share of the cores it got, the CPU time per byte does not.
    let cpu = 0;
    const timed = async (f: () => Promise<void>) => {
      const started = process.hrtime.bigint();
      const cpuBefore = process.cpuUsage();
      await f();
      const used = process.cpuUsage(cpuBefore);
      cpu = (used.user + used.system) / 1000;
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    // One warm-up pair (page cache, worker start-up, JIT), then alternating pairs.
    await statisticsOfEveryTensor(moe.checkpoint, moe.names);
    await statisticsOfEveryTensor(dense.checkpoint, dense.names);
    for (let i = 0; i < runs; i++) {
      const m = await timed(() => statisticsOfEveryTensor(moe.checkpoint, moe.names));
      const cpuMoe = cpu;
      const d = await timed(() => statisticsOfEveryTensor(dense.checkpoint, dense.names));
      tMoe.push(m);
      tDense.push(d);
      ratios.push(moe.bytes / m / (dense.bytes / d));
      cpuRatios.push(cpuMoe / moe.bytes / (cpu / dense.bytes));
      process.stderr.write(
        `moe-stats pair ${i + 1}: MoE ${gbps(moe.bytes, m)}, dense ${gbps(dense.bytes, d)}, ${ratios.at(-1)!.toFixed(2)}×; CPU time MoE ${cpuMoe.toFixed(0)} ms, dense ${cpu.toFixed(0)} ms; load average ${loadavg()[0]!.toFixed(2)}\n`,
      );
    }
    const mid = (t: number[]) => t.slice().sort((x, y) => x - y)[Math.floor(t.length / 2)]!;
    rows.push({
      section: 'inspector',
      what: `statistics + histograms of every tensor: ${SMALL_MOE.name} (${moe.tensors} tensors) against the dense ${SMALL_LLAMA.name} (${dense.tensors}), ${runs} alternating pairs, load average ${loadavg()[0]!.toFixed(2)}`,
      result: gbps(moe.bytes, mid(tMoe)),
      baseline: `${gbps(dense.bytes, mid(tDense))} dense`,
      ratio: `${mid(ratios).toFixed(2)}× the dense model's throughput (median of the pairs' ratios; ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}); CPU time per byte ${mid(cpuRatios).toFixed(2)}× the dense model's`,
      target: '≥ 0.9×',
    });
  } finally {
    await moe.checkpoint.close();
    await dense.checkpoint.close();
  }
}
