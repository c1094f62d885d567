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
    min: Math.min(...finite),
    max: Math.max(...finite),
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
      assert.equal(most, 2, 'two tensors counted at once');
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
