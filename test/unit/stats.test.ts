import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { computeStatisticsOfTensors, computeTensorStatistics, CancelledError } from '../../src/core/stats/computeStats';
import { CodeCounter, type Histogram, type TensorStatistics } from '../../src/core/stats/tensorStats';
import { rawSafetensors } from '../helpers/safetensorsBytes';
import { tempDir } from '../helpers/paths';
import { statSync, truncateSync, writeFileSync } from 'node:fs';

/** Deterministic heavy-tailed values with exact bf16 / f16 representations computed here, not by src/. */
function heavyTailed(n: number, seed: number): number[] {
  let s = seed;
  const u = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) + 0.5) / 4294967296;
  return Array.from({ length: n }, (_, i) => {
    const g = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
    const t = g / Math.sqrt((u() + u() + u() + u()) / 2);
    return i % 997 === 0 ? t * 40 : t * 0.02;
  });
}

/** bf16 by truncation (an exact, independent way to get representable values). */
function toBf16Bits(x: number): number {
  const f = new Float32Array([x]);
  return new Uint32Array(f.buffer)[0]! >>> 16;
}
function bf16Value(bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;
}

/** The float64 reference: statistics and histograms straight from the definition. */
function reference(values: number[], edgesLin: readonly number[], edgesLog: readonly number[]) {
  const finite = values.filter(Number.isFinite);
  const mean = finite.reduce((a, b) => a + b, 0) / finite.length;
  const std = Math.sqrt(finite.reduce((a, b) => a + (b - mean) ** 2, 0) / finite.length);
  const bin = (edges: readonly number[], v: number) => {
    const n = edges.length - 1;
    const b = Math.floor((v - edges[0]!) / ((edges[n]! - edges[0]!) / n));
    return Math.min(n - 1, Math.max(0, b));
  };
  const lin = new Array(edgesLin.length - 1).fill(0);
  const log = new Array(edgesLog.length - 1).fill(0);
  for (const v of finite) {
    lin[bin(edgesLin, v)]++;
    if (v !== 0) log[bin(edgesLog, Math.log10(Math.abs(v)))]++;
  }
  return {
    min: finite.reduce((a, b) => Math.min(a, b), Infinity),
    max: finite.reduce((a, b) => Math.max(a, b), -Infinity),
    mean,
    std,
    nan: values.filter(Number.isNaN).length,
    zeros: finite.filter((v) => v === 0).length,
    posInf: values.filter((v) => v === Infinity).length,
    lin,
    log,
  };
}

function checkAgainstReference(result: TensorStatistics, values: number[]): void {
  const ref = reference(values, result.linear.edges, result.log.edges);
  const s = result.stats;
  assert.equal(s.count, values.length);
  assert.equal(s.min, ref.min);
  assert.equal(s.max, ref.max);
  assert.equal(s.nan, ref.nan);
  assert.equal(s.zeros, ref.zeros);
  assert.equal(s.posInf, ref.posInf);
  assert.ok(Math.abs(s.mean - ref.mean) <= 1e-12 * Math.max(1, Math.abs(ref.mean)) + 1e-15, `mean ${s.mean} vs ${ref.mean}`);
  assert.ok(Math.abs(s.std - ref.std) <= 1e-9 * ref.std, `std ${s.std} vs ${ref.std}`);
  assert.deepEqual(result.linear.counts, ref.lin);
  assert.deepEqual(result.log.counts, ref.log);
  const total = (h: Histogram) => h.counts.reduce((a, b) => a + b, 0);
  assert.equal(total(result.linear), s.finite);
  assert.equal(total(result.log), s.finite - s.zeros);
  assert.equal(result.linear.edges[0], s.min);
  assert.ok(Math.abs(result.linear.edges.at(-1)! - s.max) <= 1e-12 * Math.abs(s.max));
}

describe('tensor statistics (exact, streamed) against a float64 reference', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  async function withTensor(dtype: string, shape: number[], bytes: Uint8Array, fn: (c: Checkpoint) => Promise<void>) {
    const path = join(tmp.path, `${dtype}.safetensors`);
    writeFileSync(path, rawSafetensors(JSON.stringify({ t: { dtype, shape, data_offsets: [0, bytes.length] } }), bytes));
    const checkpoint = await Checkpoint.open(path);
    try {
      await fn(checkpoint);
    } finally {
      await checkpoint.close();
    }
  }

  it('BF16 with NaN, ±Inf and zeros: one pass over bit-pattern counts, exact, with odd chunk boundaries', async () => {
    const raw = heavyTailed(50_001, 7);
    const bits = raw.map(toBf16Bits);
    bits[10] = 0x7fc0; // NaN
    bits[20] = 0x7f80; // +Inf
    bits[30] = 0x0000;
    bits[31] = 0x8000; // -0
    const values = bits.map(bf16Value);
    const bytes = new Uint8Array(new Uint16Array(bits).buffer);
    await withTensor('BF16', [50_001], bytes, async (c) => {
      const result = await computeTensorStatistics(c, 't', { chunkBytes: 4099 });
      assert.equal(result.method, 'exact bit-pattern counts');
      checkAgainstReference(result, values);
    });
  });

  it('code counts are exact over any mix of chunk sizes, odd and even, small (counted directly) and large (in sub-tables)', () => {
    // 300,001 bytes: 150,000 16-bit codes and a dangling byte, or 300,001 8-bit codes.
    const bytes = new Uint8Array(300_001);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.imul(i, 2654435761) >>> 13) & (i % 7 === 0 ? 0x3f : 0xff);
    const sizes = [1, 3, 70_001, 2, 65_536, 5, 100_000, 65_537, 7];
    for (const [dtype, width] of [['BF16', 2], ['I8', 1]] as const) {
      const reference = new Float64Array(width === 2 ? 65536 : 256);
      for (let i = 0; i + width <= bytes.length; i += width) reference[width === 2 ? bytes[i]! | (bytes[i + 1]! << 8) : bytes[i]!]!++;
      // Twice in a row, with the counter tables handed back and taken again in between.
      for (let round = 0; round < 2; round++) {
        const counter = new CodeCounter(dtype);
        for (let at = 0, k = round; at < bytes.length; k++) {
          const end = Math.min(bytes.length, at + sizes[k % sizes.length]!);
          counter.add(bytes.subarray(at, end));
          at = end;
        }
        assert.deepEqual(counter.counts, reference, `${dtype}, round ${round}`);
      }
    }
  });

  it('F32: two-pass stream, exact', async () => {
    const values = Array.from(new Float32Array(heavyTailed(30_000, 3)));
    await withTensor('F32', [100, 300], new Uint8Array(new Float32Array(values).buffer), async (c) => {
      const result = await computeTensorStatistics(c, 't', { chunkBytes: 1000 });
      assert.equal(result.method, 'exact two-pass stream');
      checkAgainstReference(result, values);
    });
  });

  it('I32 values beyond float32 precision stay exact', async () => {
    const values = [2 ** 30 + 1, -(2 ** 30) - 3, 5, 0, 7];
    await withTensor('I32', [5], new Uint8Array(new Int32Array(values).buffer), async (c) => {
      const result = await computeTensorStatistics(c, 't');
      assert.equal(result.stats.max, 2 ** 30 + 1);
      assert.equal(result.stats.min, -(2 ** 30) - 3);
      checkAgainstReference(result, values);
    });
  });

  it('F8_E4M3 codes decode per the OCP table (0x7E = 448, 0x01 = 2^-9, 0x7F NaN)', async () => {
    const codes = [0x7e, 0x01, 0x7f, 0xfe, 0x00, 0x38];
    await withTensor('F8_E4M3', [6], new Uint8Array(codes), async (c) => {
      const { stats } = await computeTensorStatistics(c, 't');
      assert.equal(stats.max, 448);
      assert.equal(stats.min, -448);
      assert.equal(stats.nan, 1);
      assert.equal(stats.zeros, 1);
      assert.equal(stats.finite, 5);
    });
  });

  it('a constant tensor gets a single bin; an empty tensor gets NaN statistics and no bins', async () => {
    await withTensor('F16', [4], new Uint8Array(new Uint16Array([0x3c00, 0x3c00, 0x3c00, 0x3c00]).buffer), async (c) => {
      const result = await computeTensorStatistics(c, 't');
      assert.deepEqual(result.linear.counts, [4]);
      assert.equal(result.stats.std, 0);
    });
    await withTensor('F32', [0, 3], new Uint8Array(0), async (c) => {
      const result = await computeTensorStatistics(c, 't');
      assert.ok(Number.isNaN(result.stats.mean));
      assert.deepEqual(result.linear.counts, []);
    });
  });

  it('honours cancellation between chunks', async () => {
    const values = new Float32Array(100_000);
    await withTensor('F32', [100_000], new Uint8Array(values.buffer), async (c) => {
      const controller = new AbortController();
      const run = computeTensorStatistics(c, 't', { chunkBytes: 4096, signal: controller.signal, onProgress: (f) => f > 0.2 && controller.abort() });
      await assert.rejects(run, CancelledError);
    });
  });

  it('parallel counting (byte range split over counting workers) gives the same exact result, for 16- and 8-bit codes', async () => {
    const raw = heavyTailed(60_001, 11);
    const bits = raw.map(toBf16Bits);
    bits[77] = 0x7fc0;
    const values = bits.map(bf16Value);
    await withTensor('BF16', [60_001], new Uint8Array(new Uint16Array(bits).buffer), async (c) => {
      let last = 0;
      const parallel = await computeTensorStatistics(c, 't', { threads: 2, parallelMinBytes: 0, chunkBytes: 65_538, onProgress: (f) => (last = f) });
      assert.equal(last, 1);
      checkAgainstReference(parallel, values);
      assert.deepEqual(parallel, await computeTensorStatistics(c, 't', { threads: 0 }));
    });
    const codes = Array.from({ length: 60_003 }, (_, i) => (i * 2654435761) >>> 24);
    await withTensor('I8', [codes.length], new Uint8Array(codes), async (c) => {
      const parallel = await computeTensorStatistics(c, 't', { threads: 1, parallelMinBytes: 0, chunkBytes: 4097 });
      checkAgainstReference(parallel, codes.map((b) => (b << 24) >> 24));
    });
  });

  it('many tensors at once (inspect --stats): the same exact statistics as one by one, in the order asked, and a failure rejects', async () => {
    // Mid-sized tensors counted whole in one worker each, several at a time, and one split over all workers.
    const sizes = [70_001, 90_000, 50_003, 200_000, 30_000, 120_001];
    const header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> = {};
    const parts: Uint8Array[] = [];
    let offset = 0;
    sizes.forEach((n, i) => {
      const bits = heavyTailed(n, 100 + i).map(toBf16Bits);
      const bytes = new Uint8Array(new Uint16Array(bits).buffer);
      header[`t${i}`] = { dtype: 'BF16', shape: [n], data_offsets: [offset, offset + bytes.length] };
      parts.push(bytes);
      offset += bytes.length;
    });
    const data = new Uint8Array(offset);
    parts.reduce((at, p) => (data.set(p, at), at + p.length), 0);
    const path = join(tmp.path, 'many.safetensors');
    writeFileSync(path, rawSafetensors(JSON.stringify(header), data));
    const checkpoint = await Checkpoint.open(path);
    try {
      const names = sizes.map((_, i) => `t${i}`).reverse();
      const options = { threads: 2, workerMinBytes: 0, parallelMinBytes: 300_000 };
      let concurrent = 0;
      let most = 0;
      const done: string[] = [];
      const stats = await computeStatisticsOfTensors(
        names,
        async (name) => {
          most = Math.max(most, ++concurrent);
          try {
            return await computeTensorStatistics(checkpoint, name, options);
          } finally {
            concurrent--;
          }
        },
        (name) => checkpoint.tensor(name).byteLength,
        { threads: 2, parallelMinBytes: 300_000, onDone: (name) => done.push(name) },
      );
      assert.deepEqual([...stats.keys()], names);
      assert.deepEqual(done.slice().sort(), names.slice().sort());
      // Up to two counting jobs per thread: t5, t4 and t3 (split: a job per thread) are started together.
      assert.ok(most >= 3 && most <= 4, `tensors counted at once: ${most}`);
      for (const name of names) assert.deepEqual(stats.get(name), await computeTensorStatistics(checkpoint, name, { threads: 0 }), name);
      await assert.rejects(
        computeStatisticsOfTensors(['t0', 'missing', 't1'], (name) => computeTensorStatistics(checkpoint, name, options), () => 0, { threads: 2 }),
        /missing/,
      );
    } finally {
      await checkpoint.close();
    }
  });

  it('a file cut short under a parallel count rejects with the file and the byte where it ends, and the pool stays usable', async () => {
    const bytes = new Uint8Array(400_000).fill(0x3c);
    await withTensor('BF16', [200_000], bytes, async (c) => {
      // The header was valid when opened; the data is cut afterwards (a copy still being written, say).
      const path = c.fileOf('t').path;
      truncateSync(path, 8 + (statSync(path).size - 8 - 400_000) + 300_000);
      await assert.rejects(computeTensorStatistics(c, 't', { threads: 2, parallelMinBytes: 0 }), (error: Error) => {
        assert.match(error.message, /file ends at byte \d+, inside the tensor/);
        assert.ok(error.message.includes(path), error.message);
        return true;
      });
    });
    const codes = Array.from({ length: 70_001 }, (_, i) => (i * 40503) & 0xff);
    await withTensor('U8', [codes.length], new Uint8Array(codes), async (c) => {
      checkAgainstReference(await computeTensorStatistics(c, 't', { threads: 2, parallelMinBytes: 0 }), codes);
    });
  });

  it('cancelling a parallel count stops its workers', async () => {
    const bytes = new Uint8Array(4_000_000);
    await withTensor('BF16', [2_000_000], bytes, async (c) => {
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(computeTensorStatistics(c, 't', { threads: 1, parallelMinBytes: 0, chunkBytes: 4096, signal: controller.signal }), CancelledError);
    });
  });
});

/** f16 bits to their value, from the IEEE 754 definition (independent of src/). */
function f16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return exponent === 0 ? sign * mantissa * 2 ** -24 : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

describe('counting workers with queued jobs (a mixture-of-experts layer is hundreds of tensors)', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  /** Tensors of several dtypes and odd lengths, some over several 512 KiB worker stages, and their values. */
  function mixedTensors(): { name: string; dtype: string; bytes: Uint8Array; values: number[] }[] {
    const out: { name: string; dtype: string; bytes: Uint8Array; values: number[] }[] = [];
    [70_001, 300_001, 9, 65_537].forEach((n, i) => {
      const bits = heavyTailed(n, 300 + i).map(toBf16Bits);
      bits[i * 3] = 0x7fc0; // NaN
      out.push({ name: `bf16_${i}`, dtype: 'BF16', bytes: new Uint8Array(new Uint16Array(bits).buffer), values: bits.map(bf16Value) });
    });
    const half = Array.from({ length: 90_001 }, (_, i) => (Math.imul(i, 2654435761) >>> 16) & 0xffff);
    half[5] = 0x7c00; // +Inf
    out.push({ name: 'f16', dtype: 'F16', bytes: new Uint8Array(new Uint16Array(half).buffer), values: half.map(f16Value) });
    const bytes8 = Array.from({ length: 130_003 }, (_, i) => (Math.imul(i, 40503) >>> 7) & 0xff);
    out.push({ name: 'i8', dtype: 'I8', bytes: new Uint8Array(bytes8), values: bytes8.map((b) => (b << 24) >> 24) });
    out.push({ name: 'u8', dtype: 'U8', bytes: new Uint8Array(bytes8.slice(0, 77_777)), values: bytes8.slice(0, 77_777) });
    return out;
  }

  let files = 0;
  async function withFile(tensors: { name: string; dtype: string; bytes: Uint8Array }[], fn: (c: Checkpoint, path: string) => Promise<void>) {
    const header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> = {};
    let offset = 0;
    for (const t of tensors) {
      const width = t.dtype === 'I8' || t.dtype === 'U8' ? 1 : 2;
      header[t.name] = { dtype: t.dtype, shape: [t.bytes.length / width], data_offsets: [offset, offset + t.bytes.length] };
      offset += t.bytes.length;
    }
    const data = new Uint8Array(offset);
    tensors.reduce((at, t) => (data.set(t.bytes, at), at + t.bytes.length), 0);
    const path = join(tmp.path, `queued-${++files}.safetensors`);
    writeFileSync(path, rawSafetensors(JSON.stringify(header), data));
    const checkpoint = await Checkpoint.open(path);
    try {
      await fn(checkpoint, path);
    } finally {
      await checkpoint.close();
    }
  }

  // Every tensor is started at once: the pool has at most four workers of two job slots each, so these jobs
  // queue behind others in a worker, and the rest wait for a slot.
  const inWorker = { threads: 1, workerMinBytes: 0 };

  it('jobs of several dtypes and odd lengths queued behind each other give the one-thread counts exactly', async () => {
    const tensors = [...mixedTensors(), ...mixedTensors().map((t) => ({ ...t, name: `${t.name}_again` }))];
    await withFile(tensors, async (c) => {
      const queued = await Promise.all(tensors.map((t) => computeTensorStatistics(c, t.name, inWorker)));
      for (const [k, t] of tensors.entries()) {
        assert.deepEqual(queued[k], await computeTensorStatistics(c, t.name, { threads: 0 }), t.name);
        checkAgainstReference(queued[k]!, t.values);
      }
      // And through computeStatisticsOfTensors, two tensors per worker in flight.
      const names = tensors.map((t) => t.name);
      const many = await computeStatisticsOfTensors(names, (name) => computeTensorStatistics(c, name, inWorker), (name) => c.tensor(name).byteLength, { threads: 2 });
      for (const [k, name] of names.entries()) assert.deepEqual(many.get(name), queued[k], name);
    });
  });

  it('a job of 8 MiB or more (eight counter sub-tables) and one below (four) beside it give the one-thread counts exactly', async () => {
    // 4.5 Mi bf16 codes: heavy-tailed values, runs of one code, and an odd tail; then a 4 MiB tensor.
    const big = new Uint16Array(4.5 * 2 ** 20 + 3);
    const values = heavyTailed(65_536, 500).map(toBf16Bits);
    for (let i = 0; i < big.length; i++) big[i] = i % 100_000 < 5_000 ? 0x3f80 : values[(i * 7919) % values.length]!;
    const small = new Uint16Array(2 ** 21).map((_, i) => values[(i * 31) % values.length]!);
    const tensors = [
      { name: 'big', dtype: 'BF16', bytes: new Uint8Array(big.buffer) },
      { name: 'small', dtype: 'BF16', bytes: new Uint8Array(small.buffer) },
    ];
    await withFile(tensors, async (c) => {
      const [bigStats, smallStats] = await Promise.all(tensors.map((t) => computeTensorStatistics(c, t.name, { threads: 1 })));
      assert.deepEqual(bigStats, await computeTensorStatistics(c, 'big', { threads: 0 }));
      assert.deepEqual(smallStats, await computeTensorStatistics(c, 'small', { threads: 0 }));
      assert.equal(bigStats!.stats.count, big.length);
    });
  });

  it('cancelling stops the jobs of that signal, running or still queued, and leaves the others and the pool exact', async () => {
    // More jobs than the workers' slots (at most four workers of two): some wait for a slot when cancelled.
    const tensors = [...mixedTensors(), ...mixedTensors().map((t) => ({ ...t, name: `${t.name}_again` }))];
    await withFile(tensors, async (c) => {
      const cancelled = new AbortController();
      // Every other tensor belongs to the cancelled run. All jobs are posted by the time the calls return;
      // the abort comes while the workers count the first ones and the rest wait in their queues.
      const runs = tensors.map((t, k) => computeTensorStatistics(c, t.name, { ...inWorker, signal: k % 2 === 1 ? cancelled.signal : undefined }));
      cancelled.abort();
      const settled = await Promise.allSettled(runs);
      for (const [k, t] of tensors.entries()) {
        const outcome = settled[k]!;
        if (k % 2 === 1) {
          assert.equal(outcome.status, 'rejected', t.name);
          assert.ok((outcome as PromiseRejectedResult).reason instanceof CancelledError, t.name);
        } else {
          assert.equal(outcome.status, 'fulfilled', t.name);
          checkAgainstReference((outcome as PromiseFulfilledResult<TensorStatistics>).value, t.values);
        }
      }
      // Nothing left over in the workers' tables: counting again gives the exact result.
      const again = await Promise.all(tensors.map((t) => computeTensorStatistics(c, t.name, inWorker)));
      for (const [k, t] of tensors.entries()) checkAgainstReference(again[k]!, t.values);
    });
  });

  it('a file cut short fails the queued jobs past its end with the file and byte, and the jobs before it are exact', async () => {
    const tensors = mixedTensors();
    await withFile(tensors, async (c, path) => {
      // Cut inside the last tensor but one: it and the last fail, the others were readable.
      const cutTensor = tensors.at(-2)!;
      const cutAt = c.tensor(cutTensor.name).fileOffset + 1001;
      truncateSync(path, cutAt);
      const settled = await Promise.allSettled(tensors.map((t) => computeTensorStatistics(c, t.name, inWorker)));
      for (const [k, t] of tensors.entries()) {
        const outcome = settled[k]!;
        if (k >= tensors.length - 2) {
          assert.equal(outcome.status, 'rejected', t.name);
          const message = ((outcome as PromiseRejectedResult).reason as Error).message;
          assert.ok(message.includes(path), message);
          assert.match(message, new RegExp(`file ends at byte ${k === tensors.length - 2 ? cutAt : '\\d+'}, inside the tensor`));
        } else {
          assert.equal(outcome.status, 'fulfilled', t.name);
          checkAgainstReference((outcome as PromiseFulfilledResult<TensorStatistics>).value, t.values);
        }
      }
    });
  });
});
