/**
 * GPTQ's algebra as onnxruntime graphs on an execution provider (src/core/runtime/gptq/), against the float64
 * reference of test/helpers/gptqReference.ts (the paper's unblocked algorithm with an explicit inverse):
 * - the blocked graph Cholesky equals a float64 Cholesky to float32 precision (relative 1e-5 of the largest
 *   entry), including a last panel narrower than 128 and the first non-positive pivot;
 * - whole GPTQ runs (act-order static and group, asymmetric zero points, lazy group parameters, channel,
 *   INT8 with dead inputs, widths that are not multiples of 128) give the reference's scales, zero points
 *   and g_idx exactly and its codes except where float32 rounding flips a near-tie (which then changes the
 *   rest of that row): ≥ 99 % identical codes and the loss within 0.5 %;
 * - on the CPU provider and, when chromium's SwiftShader Vulkan driver is installed, on WebGPU (small
 *   shapes: SwiftShader is slow), where every node must run on WebGPU;
 * - CUDA asked for without its provider is a DeviceUnavailableError, never a CPU run;
 * - the quantize job (w4a16 from a calibration dataset) says in its log where GPTQ ran, on the CPU and with
 *   --device webgpu, where its packed codes match the CPU job's.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { QuantArgs } from '../../src/core/quant/args';
import { quantizeGptq } from '../../src/core/quant/gptq';
import { GraphGptqAlgebra } from '../../src/core/runtime/gptq/engine';
import { DeviceUnavailableError, decideDevice, type DeviceReport } from '../../src/core/runtime/device';
import { choleskyLower, correlatedInputs, heavyTailedWeight, referenceGptq } from '../helpers/gptqReference';
import { tempDir } from '../helpers/paths';
import { join } from 'node:path';
import { runJob } from '../../src/core/jobs/runJob';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { randomWeights, writeTinyCheckpoint } from '../helpers/llamaReference';
import { copyExampleTokenizer, tinyConfigWithExampleVocabulary } from '../helpers/exampleVocabulary';

const int = (bits: number, symmetric: boolean, groupSize: number | undefined, actorder?: 'weight' | 'group'): QuantArgs => ({
  numBits: bits,
  type: 'int',
  symmetric,
  strategy: groupSize === undefined ? 'channel' : 'group',
  ...(groupSize !== undefined ? { groupSize } : {}),
  dynamic: false,
  ...(actorder ? { actorder } : {}),
});

const CPU: DeviceReport = decideDevice('cpu', {});

interface Case {
  name: string;
  rows: number;
  cols: number;
  args: QuantArgs;
  lazy?: boolean;
  dead?: number[];
}

const CASES: Case[] = [
  { name: 'INT4 sym g128', rows: 48, cols: 256, args: int(4, true, 128) },
  { name: 'INT4 asym g128 act-order static (3 blocks)', rows: 40, cols: 384, args: int(4, false, 128, 'weight') },
  { name: 'INT4 sym g64 act-order group', rows: 32, cols: 256, args: int(4, true, 64, 'group') },
  { name: 'INT4 asym g64 act-order group, lazy group parameters', rows: 32, cols: 256, args: int(4, false, 64, 'group'), lazy: true },
  { name: 'INT4 sym channel, 192 columns (a 64-wide last block and panel)', rows: 40, cols: 192, args: int(4, true, undefined) },
  { name: 'INT8 asym channel, act-order, dead inputs, 160 columns', rows: 32, cols: 160, args: int(8, false, undefined, 'weight'), dead: [3, 77, 150] },
];

function mismatches(a: Int8Array, b: Int8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/** GPTQ on `algebra` against the float64 reference; returns the share of identical codes. */
async function checkAgainstReference(algebra: GraphGptqAlgebra, c: Case, seed: number): Promise<number> {
  const weight = heavyTailedWeight(c.rows, c.cols, 100 + seed);
  const { h } = correlatedInputs(2 * c.cols, c.cols, 200 + seed, c.dead);
  const options = { dampeningFrac: 0.1, groupParams: c.lazy ? ('lazy' as const) : ('upfront' as const), scaleDtype: 'BF16' as const };
  const result = await quantizeGptq(weight, c.rows, c.cols, Float32Array.from(h), c.args, { ...options, algebra });
  assert.equal(result.engine, 'graph');
  assert.equal(result.precision, 'float32');
  assert.equal(result.where, algebra.where);
  const ref = referenceGptq(weight, c.rows, c.cols, h, { args: c.args, damp: 0.1, lazy: c.lazy === true });
  const exact = await quantizeGptq(weight, c.rows, c.cols, h, c.args, { ...options, engine: 'js' });
  const same = 1 - mismatches(result.q, ref.q) / ref.q.length;
  assert.ok(same >= 0.99, `${c.name}: only ${(same * 100).toFixed(2)} % of the codes equal the reference's`);
  if (!c.lazy) {
    assert.deepEqual(Array.from(result.scale), Array.from(ref.scale));
    if (ref.zeroPoint) assert.deepEqual(Array.from(result.zeroPoint!), Array.from(ref.zeroPoint));
  } else {
    // Lazy parameters follow the updated weights: a flipped code before a group may move its scale by a step.
    let scales = 0;
    for (let i = 0; i < ref.scale.length; i++) if (result.scale[i] === ref.scale[i]) scales++;
    assert.ok(scales / ref.scale.length >= 0.97, `${c.name}: ${scales} of ${ref.scale.length} lazy scales equal`);
  }
  if (ref.gIdx) assert.deepEqual(Array.from(result.gIdx!), Array.from(ref.gIdx));
  assert.equal(result.deadColumns, c.dead?.length ?? 0);
  assert.ok(Math.abs(result.loss - exact.loss) <= 0.005 * exact.loss, `${c.name}: loss ${result.loss} vs float64 ${exact.loss}`);
  if (process.env.QUANTLENS_GPTQ_DEVICE_VERBOSE) console.log(`${c.name}: ${(same * 100).toFixed(3)} % codes, loss ${result.loss} vs ${exact.loss}`);
  return same;
}

/** A symmetric positive-definite n × n matrix (float64) with a spread of eigenvalues. */
function spdMatrix(n: number, seed: number): Float64Array {
  const { h } = correlatedInputs(2 * n, n, seed);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i]! / n;
  for (let i = 0; i < n; i++) h[i * n + i]! += 0.1 * mean;
  return h;
}

async function checkCholesky(algebra: GraphGptqAlgebra, n: number): Promise<void> {
  const a = spdMatrix(n, n);
  const expected = choleskyLower(a, n);
  const work = Float32Array.from(a);
  assert.equal(await algebra.cholesky(work, n), -1);
  let largest = 0;
  let worst = 0;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c <= r; c++) {
      largest = Math.max(largest, Math.abs(expected[r * n + c]!));
      worst = Math.max(worst, Math.abs(work[r * n + c]! - expected[r * n + c]!));
    }
  }
  assert.ok(worst <= 1e-5 * largest, `Cholesky ${n}×${n}: largest difference ${worst} against entries up to ${largest}`);
}

describe('GPTQ on the device: onnxruntime graphs (CPU provider)', function () {
  this.timeout(600_000);
  let algebra: GraphGptqAlgebra;
  before(async () => {
    algebra = await GraphGptqAlgebra.create(CPU, { cpuMinWork: 0 });
  });
  after(() => algebra?.close());

  it('the blocked graph Cholesky equals float64 (one panel, 2½ panels)', async () => {
    await checkCholesky(algebra, 96);
    await checkCholesky(algebra, 320);
  });

  it('reports the first non-positive pivot, as the JS factorisation does', async () => {
    const n = 200;
    const a = spdMatrix(n, 5);
    // Make the leading 150 × 150 block singular-then-indefinite at 150: row/column 150 copies row 149, scaled.
    for (let i = 0; i < n; i++) {
      a[150 * n + i] = 2 * a[149 * n + i]!;
      a[i * n + 150] = 2 * a[i * n + 149]!;
    }
    a[150 * n + 150] = 4 * a[149 * n + 149]! - 1;
    assert.equal(await algebra.cholesky(Float32Array.from(a), n), 150);
  });

  for (const [index, c] of CASES.entries()) {
    it(`equals the float64 reference to float32 precision: ${c.name}`, async () => {
      await checkAgainstReference(algebra, c, index);
    });
  }

  it('says where it ran', () => {
    assert.equal(algebra.where, 'onnxruntime graphs on CPUExecutionProvider');
  });
});

describe('GPTQ on the device: a device asked for and missing', function () {
  this.timeout(120_000);
  it('CUDA without its provider is a DeviceUnavailableError naming CUDA, not a CPU run', async () => {
    const cuda: DeviceReport = { device: 'cuda', reason: 'CUDA: asked for', executionProviders: ['cuda'], failed: false };
    const algebra = await GraphGptqAlgebra.create(cuda);
    try {
      const weight = heavyTailedWeight(8, 64, 1);
      const { h } = correlatedInputs(128, 64, 2);
      await assert.rejects(quantizeGptq(weight, 8, 64, h, int(4, true, 32), { algebra }), (e: Error) => {
        assert.ok(e instanceof DeviceUnavailableError, `${e.name}: ${e.message}`);
        assert.match(e.message, /^GPTQ on cuda: /);
        return true;
      });
    } finally {
      await algebra.close();
    }
  });

  it('a device report that failed is refused before any work', async () => {
    const failed = decideDevice('cuda', { cuda: { usable: false, reason: 'no NVIDIA GPU driver found on this machine' } });
    await assert.rejects(GraphGptqAlgebra.create(failed), (e: Error) => e instanceof DeviceUnavailableError && /no NVIDIA GPU driver/.test(e.message));
  });
});

const SWIFTSHADER_ICD = process.env.QUANTLENS_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';

describe('GPTQ on the device: WebGPU on SwiftShader', function () {
  this.timeout(1_200_000);
  const saved = { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR };
  let tmp: { path: string; cleanup: () => void } | undefined;
  let algebra: GraphGptqAlgebra | undefined;
  const log: string[] = [];

  before(async function () {
    if (!existsSync(SWIFTSHADER_ICD)) {
      console.log(`      skipped: SwiftShader's Vulkan driver (${SWIFTSHADER_ICD}) is not installed (Debian package chromium)`);
      this.skip();
    }
    tmp = tempDir('quantlens-gptq-webgpu-');
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    process.env.XDG_RUNTIME_DIR = tmp.path;
    algebra = await GraphGptqAlgebra.create({ device: 'webgpu', reason: 'WebGPU: as asked (SwiftShader)', executionProviders: ['webgpu'], failed: false }, { log: (line) => log.push(line) });
  });
  after(async () => {
    await algebra?.close();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    tmp?.cleanup();
  });

  it('the graph Cholesky equals float64, every node on WebGPU', async () => {
    await checkCholesky(algebra!, 160);
    assert.ok(log.some((l) => /^GPTQ panel graph: session runs on WebGpuExecutionProvider \(all \d+ nodes\)$/.test(l)), log.join('\n'));
  });

  it('GPTQ INT4 asym g64 act-order static equals the float64 reference, every node on WebGPU', async () => {
    await checkAgainstReference(algebra!, { name: 'webgpu INT4 asym g64 static', rows: 16, cols: 192, args: int(4, false, 64, 'weight') }, 11);
    for (const kind of ['block', 'accumulate']) assert.ok(log.some((l) => new RegExp(`^GPTQ ${kind} graph: session runs on WebGpuExecutionProvider \\(all \\d+ nodes\\)$`).test(l)), log.join('\n'));
  });
});

/** A one-block tiny Llama (the example's vocabulary) for whole jobs. */
async function tinyModel(dir: string): Promise<string> {
  const model = join(dir, 'model');
  const config = await tinyConfigWithExampleVocabulary(1);
  await writeTinyCheckpoint(model, config, randomWeights(config, 3));
  await copyExampleTokenizer(model);
  return model;
}

async function gptqJob(model: string, out: string, device: 'cpu' | 'webgpu', graphs: string): Promise<string[]> {
  const log: string[] = [];
  await runJob({ kind: 'quantize', model, out, preset: 'w4a16', device, calibration: { kind: 'dataset', path: defaultCalibrationDataset(), samples: 2, seqLen: 16 } }, { graphCacheDir: graphs, log: (line) => log.push(line) });
  return log;
}

async function packedWeights(folder: string): Promise<Map<string, Uint8Array>> {
  const checkpoint = await Checkpoint.open(folder);
  try {
    const out = new Map<string, Uint8Array>();
    for (const t of checkpoint.tensors) if (t.name.endsWith('.weight_packed')) out.set(t.name, await checkpoint.readTensorBytes(t.name));
    return out;
  } finally {
    await checkpoint.close();
  }
}

describe('GPTQ on the device: the quantize job', function () {
  this.timeout(900_000);
  let tmp: { path: string; cleanup: () => void };
  before(() => {
    tmp = tempDir('quantlens-gptq-job-');
  });
  after(() => tmp.cleanup());

  it('says where GPTQ ran (CPU: small layers in float64 JavaScript)', async () => {
    const model = await tinyModel(tmp.path);
    const log = await gptqJob(model, join(tmp.path, 'cpu-out'), 'cpu', tmp.path);
    assert.ok(log.some((l) => /^GPTQ runs on onnxruntime graphs on CPUExecutionProvider \(layers under 2\^28 multiply-adds in exact float64 JavaScript\): CPU: chosen/.test(l)), log.join('\n'));
    const layers = log.filter((l) => /: GPTQ loss /.test(l));
    assert.equal(layers.length, 7);
    for (const l of layers) assert.match(l, /\(JavaScript, float64, /);
  });

  it('--device webgpu (SwiftShader): GPTQ runs there, every layer, and writes the CPU job\'s codes', async function () {
    if (!existsSync(SWIFTSHADER_ICD)) {
      console.log(`      skipped: SwiftShader's Vulkan driver (${SWIFTSHADER_ICD}) is not installed (Debian package chromium)`);
      this.skip();
    }
    const saved = { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR };
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    process.env.XDG_RUNTIME_DIR = tmp.path;
    try {
      const model = join(tmp.path, 'model');
      const log = await gptqJob(model, join(tmp.path, 'webgpu-out'), 'webgpu', tmp.path);
      assert.ok(log.some((l) => /^GPTQ runs on onnxruntime graphs on WebGpuExecutionProvider: WebGPU: as asked/.test(l)), log.join('\n'));
      assert.ok(log.some((l) => /^GPTQ block graph: session runs on WebGpuExecutionProvider \(all \d+ nodes\)$/.test(l)), log.join('\n'));
      const layers = log.filter((l) => /: GPTQ loss /.test(l));
      assert.equal(layers.length, 7);
      for (const l of layers) assert.match(l, /\(onnxruntime graphs on WebGpuExecutionProvider, float32, /);
      const cpu = await packedWeights(join(tmp.path, 'cpu-out'));
      const gpu = await packedWeights(join(tmp.path, 'webgpu-out'));
      assert.deepEqual([...gpu.keys()], [...cpu.keys()]);
      let same = 0;
      let total = 0;
      for (const [name, bytes] of cpu) {
        const other = gpu.get(name)!;
        for (let i = 0; i < bytes.length; i++) if (bytes[i] === other[i]) same++;
        total += bytes.length;
      }
      // Calibration on WebGPU and float32 GPTQ move a few near-tie codes; each byte holds two codes.
      assert.ok(same / total >= 0.97, `${same} of ${total} packed bytes equal the CPU job's`);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
