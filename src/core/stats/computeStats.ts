/** Streams a checkpoint tensor through the statistics engine, with progress and cancellation. */
import { decodeToFloat32, decodeToFloat64 } from '../dtypes/convert';
import { DTYPE_INFO } from '../dtypes/dtype';
import type { Checkpoint } from '../safetensors/checkpoint';
import { PARALLEL_MIN_BYTES, PresentCounts, WORKER_MIN_BYTES, WORKER_QUEUE_DEPTH, countInWorker, countingThreads } from './parallelCount';
import { CodeCounter, DEFAULT_BINS, StreamingHistograms, StreamingMoments, TensorStatistics, addPresentCounts, codeTable, statisticsFromCounts, statisticsOfPresentCodes } from './tensorStats';

export interface StatsOptions {
  readonly bins?: number;
  readonly signal?: AbortSignal;
  /** Called with the fraction of bytes processed (0…1). */
  readonly onProgress?: (fraction: number) => void;
  readonly chunkBytes?: number;
  /** Counting workers for large 8/16-bit tensors (default: one per core, at most 4; 0 = this thread only). */
  readonly threads?: number;
  /** Tensors at least this large are split over the counting threads (default PARALLEL_MIN_BYTES). */
  readonly parallelMinBytes?: number;
  /** Tensors at least this large are counted in a worker, smaller ones here (default WORKER_MIN_BYTES). */
  readonly workerMinBytes?: number;
}

export class CancelledError extends Error {
  constructor() {
    super('cancelled');
  }
}

function checkCancel(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

/** No codes counted: what the parts' lists are merged into. */
const NO_CODES: PresentCounts = { codes: new Uint32Array(0), counts: new Float64Array(0) };

const codeTables = new Map<string, Float64Array | undefined>();
function cachedCodeTable(dtype: Parameters<typeof codeTable>[0]): Float64Array | undefined {
  if (!codeTables.has(dtype)) codeTables.set(dtype, codeTable(dtype));
  return codeTables.get(dtype);
}

export async function computeTensorStatistics(checkpoint: Checkpoint, name: string, options: StatsOptions = {}): Promise<TensorStatistics> {
  const tensor = checkpoint.tensor(name);
  const bins = options.bins ?? DEFAULT_BINS;
  const table = cachedCodeTable(tensor.dtype);
  if (table) {
    const bytesPerCode = DTYPE_INFO[tensor.dtype].bits === 8 ? 1 : 2;
    const threads = options.threads ?? countingThreads();
    const chunkBytes = options.chunkBytes ?? 8 * 1024 * 1024;
    const parallelMinBytes = options.parallelMinBytes ?? PARALLEL_MIN_BYTES;
    if (threads === 0 || tensor.byteLength < Math.min(options.workerMinBytes ?? WORKER_MIN_BYTES, parallelMinBytes)) {
      const counter = new CodeCounter(tensor.dtype);
      for await (const { offset, bytes } of checkpoint.chunks(name, { chunkBytes })) {
        checkCancel(options.signal);
        counter.add(bytes);
        options.onProgress?.((offset + bytes.length) / Math.max(1, tensor.byteLength));
      }
      return statisticsFromCounts(table, counter.counts, bins);
    }
    // Counted by the workers (faster than this thread even for one part, see parallelCount.ts): a large
    // tensor split over all of them, a mid-sized one whole in one; this thread only waits, merges and
    // reports progress.
    checkCancel(options.signal); // an already-aborted signal never fires 'abort'
    const partCount = tensor.byteLength < parallelMinBytes ? 1 : threads;
    const partBytes = Math.ceil(tensor.byteLength / partCount / 4096) * 4096;
    const local = new AbortController();
    const abort = () => local.abort();
    options.signal?.addEventListener('abort', abort, { once: true });
    const path = checkpoint.fileOf(name).path;
    const parts: ReturnType<typeof countInWorker>[] = [];
    for (let start = 0; start < tensor.byteLength; start += partBytes) {
      const length = Math.min(tensor.byteLength, start + partBytes) - start;
      const part = countInWorker({ path, start: tensor.fileOffset + start, length, bytesPerCode }, local.signal);
      part.result.catch(() => local.abort()); // one part failing stops the others
      parts.push(part);
    }
    const timer = options.onProgress
      ? setInterval(() => options.onProgress?.(parts.reduce((sum, p) => sum + p.progress(), 0) / Math.max(1, tensor.byteLength)), 100)
      : undefined;
    try {
      const results = await Promise.allSettled(parts.map((p) => p.result));
      if (options.signal?.aborted) throw new CancelledError();
      // A part that failed stopped the others, which then report 'cancelled': throw the real failure.
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
      if (failures.length > 0) throw failures.find((e) => e.message !== 'cancelled') ?? failures[0];
      // Straight from the codes that occurred (a few thousand for bf16 weights), the parts' lists merged.
      const counted = results.map((r) => (r as PromiseFulfilledResult<PresentCounts>).value).reduce<PresentCounts>(addPresentCounts, NO_CODES);
      options.onProgress?.(1);
      return statisticsOfPresentCodes(table, counted.codes, counted.counts, bins);
    } finally {
      if (timer) clearInterval(timer);
      options.signal?.removeEventListener('abort', abort);
    }
  }
  if (DTYPE_INFO[tensor.dtype].kind === 'complex') throw new Error(`${name}: statistics of complex (${tensor.dtype}) tensors are not supported`);
  // Two passes over the bytes: moments and range, then histograms on that range.
  const moments = new StreamingMoments();
  // F32 decodes exactly to float32; everything wider (F64, I32, I64 …) needs float64 to stay exact.
  const wide = tensor.dtype !== 'F32' && DTYPE_INFO[tensor.dtype].bits >= 32;
  let values: Float32Array | Float64Array = wide ? new Float64Array(0) : new Float32Array(0);
  // `start` is the chunk's byte offset; the element count is bounded by the tensor's so that sub-byte
  // formats never decode bits past the last element.
  const decode = (bytes: Uint8Array, start: number) => {
    const firstElement = Math.floor((start * 8) / DTYPE_INFO[tensor.dtype].bits);
    const elements = Math.min(Math.floor((bytes.length * 8) / DTYPE_INFO[tensor.dtype].bits), tensor.numel - firstElement);
    if (values.length < elements) values = wide ? new Float64Array(elements) : new Float32Array(elements);
    return wide
      ? decodeToFloat64(tensor.dtype, bytes, (values as Float64Array).subarray(0, elements), elements)
      : decodeToFloat32(tensor.dtype, bytes, (values as Float32Array).subarray(0, elements), elements);
  };
  // Sub-byte formats: chunks must hold whole elements (F6 packs 4 elements in 3 bytes).
  const chunkBytes = Math.max(3, Math.floor((options.chunkBytes ?? 8 * 1024 * 1024) / 3) * 3);
  for await (const { offset, bytes } of checkpoint.chunks(name, { chunkBytes })) {
    checkCancel(options.signal);
    moments.add(decode(bytes, offset));
    options.onProgress?.((offset + bytes.length) / Math.max(1, tensor.byteLength) / 2);
  }
  const histograms = new StreamingHistograms(moments, bins);
  for await (const { offset, bytes } of checkpoint.chunks(name, { chunkBytes })) {
    checkCancel(options.signal);
    histograms.add(decode(bytes, offset));
    options.onProgress?.(0.5 + (offset + bytes.length) / Math.max(1, tensor.byteLength) / 2);
  }
  return { stats: moments.result(), ...histograms.result(), method: 'exact two-pass stream' };
}

/**
 * Statistics of many tensors (`inspect --stats`, the health scan, the benchmark), with up to
 * WORKER_QUEUE_DEPTH counting jobs per counting thread in flight: a tensor split over the threads is one job
 * per thread, a smaller one is one job (or none, counted here). Each worker then has its next job queued
 * while this thread takes a result and hands out the next, and no tensor waits for the pipeline to empty: a
 * layer of many small experts keeps every worker busy as one large weight does. Results come back by name;
 * `onDone` follows completions.
 */
export async function computeStatisticsOfTensors(
  names: readonly string[],
  compute: (name: string) => Promise<TensorStatistics>,
  sizeOf: (name: string) => number,
  options: { readonly threads?: number; readonly parallelMinBytes?: number; readonly onDone?: (name: string) => void } = {},
): Promise<Map<string, TensorStatistics>> {
  const results = new Map<string, TensorStatistics>();
  const threads = Math.max(1, options.threads ?? countingThreads());
  const limit = threads * WORKER_QUEUE_DEPTH;
  let jobsInFlight = 0;
  const running = new Set<Promise<void>>();
  const start = (name: string, jobs: number) => {
    jobsInFlight += jobs;
    const task: Promise<void> = compute(name).then(
      (stats) => {
        jobsInFlight -= jobs;
        results.set(name, stats);
        running.delete(task);
        options.onDone?.(name);
      },
      (error: unknown) => {
        // Left in `running`, so that the Promise.race / Promise.all below takes the failure up.
        jobsInFlight -= jobs;
        throw error;
      },
    );
    running.add(task);
    // Its failure is taken up by the Promise.race / Promise.all below; never left unhandled meanwhile.
    task.catch(() => undefined);
  };
  try {
    for (const name of names) {
      const jobs = sizeOf(name) >= (options.parallelMinBytes ?? PARALLEL_MIN_BYTES) ? threads : 1;
      while (running.size > 0 && jobsInFlight + jobs > limit) await Promise.race(running);
      start(name, jobs);
    }
    await Promise.all(running);
  } catch (error) {
    // Let the tasks still running settle before the error goes up (they share the checkpoint's handles).
    await Promise.allSettled(running);
    throw error;
  }
  // In the order asked for, whatever order they finished in.
  return new Map(names.map((n) => [n, results.get(n)!]));
}
