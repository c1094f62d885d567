/**
 * Bit-pattern counting of one large 8/16-bit tensor split over several threads: each counting worker opens
 * the shard itself, reads its own byte range in bounded chunks and returns its exact counts, which the
 * caller merges (addition of integer counts, so the result is identical to a single-threaded count).
 *
 * The workers are a small lazily started pool, one per core at most, each counting the jobs posted to it in
 * order (unref'd while idle, so they never keep a process alive). Their code is
 * a few self-contained functions run with `eval`, so it works from every bundle (extension, CLI, analysis
 * worker, tests) without locating a separate worker file on disk.
 *
 * Why the workers count faster than the calling thread (CodeCounter): in the worker script the read buffer
 * and the counters are script-level constants of fixed length, so V8 can prove every counter index in range
 * and drops the bounds checks of the one-increment-per-code loop; and nothing in a counting worker ever
 * detaches an ArrayBuffer (no transfers, no WebAssembly memory growth), which would make V8 add detach
 * checks to its typed-array loops for good. Measured on the 2-core EPYC, bf16 weights of a 117 MB tensor,
 * read and counted: 1.35 GB/s in one worker against 0.83 GB/s on the calling thread, 2.3–2.4 GB/s in two.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** Below this size a tensor is counted on the calling thread: handing it to a worker costs about 1 ms. */
export const WORKER_MIN_BYTES = 512 * 1024;

/**
 * From this size a tensor is split over all the counting workers. Between WORKER_MIN_BYTES and this, it is
 * counted whole in one worker (faster than the calling thread, and free to run beside other tensors: a
 * mixture-of-experts layer is hundreds of 4 MiB experts, see computeStatisticsOfTensors).
 */
export const PARALLEL_MIN_BYTES = 8 * 1024 * 1024;

/**
 * Bytes each counting worker reads and counts at a time (its one read buffer): small enough to stay in the
 * core's L2 cache between the read's copy and the count (8 MiB buffers measured 10–15% slower alone, and
 * more with two workers sharing the L3 cache).
 */
const STAGE_BYTES = 512 * 1024;
/** Counter sub-tables for 16-bit codes (countStage16 and drainPresent16 are written out for eight). */
const LANES_16 = 8;
/**
 * 16-bit jobs below this size count into four sub-tables (countStage16Four): a mixture-of-experts layer's
 * experts, whose per-job drain of the tables is a larger share of their time than a split weight's.
 */
const FOUR_LANES_BELOW_BYTES = PARALLEL_MIN_BYTES;

export interface CountJob {
  readonly path: string;
  /** Absolute file offset of the first byte to count (a multiple of the code width from the tensor start). */
  readonly start: number;
  readonly length: number;
  readonly bytesPerCode: 1 | 2;
}

/**
 * The memory a worker shares with the calling thread, posted once when it starts: per job slot, a cancel
 * flag and the KiB counted so far (control), and the codes that occurred with their counts (results).
 */
interface SharedSlots {
  readonly control: SharedArrayBuffer;
  readonly codes: SharedArrayBuffer;
  readonly counts: SharedArrayBuffer;
}

/** A job as posted: its byte range and the slot its flags and result use. Plain values only (see WorkerReply). */
interface JobMessage extends CountJob {
  readonly slot: number;
}

/**
 * A job's outcome: `codes` codes occurred, in its slot of the shared results. Only plain values go through
 * postMessage: a typed array in a message cost 25–250 µs to clone and a SharedArrayBuffer 20–55 µs, against
 * ~1 µs for a few numbers, and a 4 MiB expert is counted in ~2 ms.
 */
type WorkerReply = { readonly slot: number } & ({ readonly codes: number } | { readonly error: string } | { readonly cancelled: true });

// Script-level constants of the worker script (defined in workerSource, not in this module).
declare const COUNT_STAGE: Uint8Array;
declare const COUNT_STAGE_WORDS: Uint32Array;
declare const COUNT_TABLE: Uint32Array;
declare const COUNT_SPILL: Float64Array;
declare const PRESENT_CODES: Uint32Array;
declare const PRESENT_COUNTS: Float64Array;
declare const COUNT_FOUR_LANES_BELOW: number;

/**
 * Counts the 16-bit codes of COUNT_STAGE's first `words` 32-bit words (a multiple of 4) into COUNT_TABLE's
 * eight sub-tables of 65,536: code k of each group of eight into sub-table k, so runs of equal codes (common
 * in weights) do not wait on the previous increment's store. Nothing else is in this function: a tail loop
 * beside the main one made V8 compile the main loop measurably slower. Runs in the worker only.
 */
function countStage16(words: number): void {
  for (let i = 0; i < words; i += 4) {
    const a = COUNT_STAGE_WORDS[i]!;
    const b = COUNT_STAGE_WORDS[i + 1]!;
    const c = COUNT_STAGE_WORDS[i + 2]!;
    const d = COUNT_STAGE_WORDS[i + 3]!;
    COUNT_TABLE[a & 0xffff]!++;
    COUNT_TABLE[0x10000 + (a >>> 16)]!++;
    COUNT_TABLE[0x20000 + (b & 0xffff)]!++;
    COUNT_TABLE[0x30000 + (b >>> 16)]!++;
    COUNT_TABLE[0x40000 + (c & 0xffff)]!++;
    COUNT_TABLE[0x50000 + (c >>> 16)]!++;
    COUNT_TABLE[0x60000 + (d & 0xffff)]!++;
    COUNT_TABLE[0x70000 + (d >>> 16)]!++;
  }
}

/**
 * countStage16 with four sub-tables (two words per step), for jobs under FOUR_LANES_BELOW_BYTES: on trained
 * weights it counts as fast as eight (equal codes four apart are rare), and the drain after it reads 1 MiB
 * of counters instead of 2 — a tenth of a 4 MiB expert's time. Runs of equal codes (a constant tensor) count
 * slower with four, which a job this small hardly feels.
 */
function countStage16Four(words: number): void {
  for (let i = 0; i < words; i += 2) {
    const a = COUNT_STAGE_WORDS[i]!;
    const b = COUNT_STAGE_WORDS[i + 1]!;
    COUNT_TABLE[a & 0xffff]!++;
    COUNT_TABLE[0x10000 + (a >>> 16)]!++;
    COUNT_TABLE[0x20000 + (b & 0xffff)]!++;
    COUNT_TABLE[0x30000 + (b >>> 16)]!++;
  }
}

/** The 16-bit codes of COUNT_STAGE's bytes [from, bytes) that countStage16's whole groups of words left. */
function countStage16Tail(from: number, bytes: number): void {
  for (let i = from; i + 1 < bytes; i += 2) COUNT_TABLE[COUNT_STAGE[i]! | (COUNT_STAGE[i + 1]! << 8)]!++;
}

/** Counts the 8-bit codes of the first `bytes` bytes of COUNT_STAGE into four sub-tables of 256, one per byte lane. */
function countStage8(bytes: number): void {
  const words = bytes >> 2;
  for (let i = 0; i < words; i++) {
    const x = COUNT_STAGE_WORDS[i]!;
    COUNT_TABLE[x & 0xff]!++;
    COUNT_TABLE[256 + ((x >>> 8) & 0xff)]!++;
    COUNT_TABLE[512 + ((x >>> 16) & 0xff)]!++;
    COUNT_TABLE[768 + (x >>> 24)]!++;
  }
  for (let i = words << 2; i < bytes; i++) COUNT_TABLE[COUNT_STAGE[i]!]!++;
}

/**
 * Sums COUNT_TABLE's eight sub-tables of 16-bit codes, writes the codes that occurred and their counts in
 * code order to PRESENT_CODES / PRESENT_COUNTS, and clears what it read, in one pass: only the entries of
 * codes that occurred are written (a few thousand of 65,536 for bf16 weights), where a separate drain into
 * a float64 table, a fill of the 2 MiB table and a scan of the totals each went over everything. `spilled`
 * adds COUNT_SPILL (counts set aside before 32 bits could overflow, see spillCounts) and clears it.
 * Unrolled over the eight lanes and a top-level function of the worker script, so that it is optimized
 * once for all jobs (a closure made per job with a loop over the lanes took ~3 ms, more than counting 4 MB).
 * Returns how many codes occurred.
 */
function drainPresent16(spilled: boolean): number {
  let n = 0;
  for (let i = 0; i < 0x10000; i++) {
    let sum =
      COUNT_TABLE[i]! + COUNT_TABLE[i + 0x10000]! + COUNT_TABLE[i + 0x20000]! + COUNT_TABLE[i + 0x30000]! + COUNT_TABLE[i + 0x40000]! + COUNT_TABLE[i + 0x50000]! + COUNT_TABLE[i + 0x60000]! + COUNT_TABLE[i + 0x70000]!;
    if (spilled) {
      sum += COUNT_SPILL[i]!;
      COUNT_SPILL[i] = 0;
    }
    if (sum !== 0) {
      PRESENT_CODES[n] = i;
      PRESENT_COUNTS[n++] = sum;
      COUNT_TABLE[i] = 0;
      COUNT_TABLE[i + 0x10000] = 0;
      COUNT_TABLE[i + 0x20000] = 0;
      COUNT_TABLE[i + 0x30000] = 0;
      COUNT_TABLE[i + 0x40000] = 0;
      COUNT_TABLE[i + 0x50000] = 0;
      COUNT_TABLE[i + 0x60000] = 0;
      COUNT_TABLE[i + 0x70000] = 0;
    }
  }
  return n;
}

/** drainPresent16 for countStage16Four's four sub-tables. */
function drainPresent16Four(spilled: boolean): number {
  let n = 0;
  for (let i = 0; i < 0x10000; i++) {
    let sum = COUNT_TABLE[i]! + COUNT_TABLE[i + 0x10000]! + COUNT_TABLE[i + 0x20000]! + COUNT_TABLE[i + 0x30000]!;
    if (spilled) {
      sum += COUNT_SPILL[i]!;
      COUNT_SPILL[i] = 0;
    }
    if (sum !== 0) {
      PRESENT_CODES[n] = i;
      PRESENT_COUNTS[n++] = sum;
      COUNT_TABLE[i] = 0;
      COUNT_TABLE[i + 0x10000] = 0;
      COUNT_TABLE[i + 0x20000] = 0;
      COUNT_TABLE[i + 0x30000] = 0;
    }
  }
  return n;
}

/** The same for the four sub-tables of 256 8-bit codes. */
function drainPresent8(spilled: boolean): number {
  let n = 0;
  for (let i = 0; i < 256; i++) {
    let sum = COUNT_TABLE[i]! + COUNT_TABLE[i + 256]! + COUNT_TABLE[i + 512]! + COUNT_TABLE[i + 768]!;
    if (spilled) {
      sum += COUNT_SPILL[i]!;
      COUNT_SPILL[i] = 0;
    }
    if (sum !== 0) {
      PRESENT_CODES[n] = i;
      PRESENT_COUNTS[n++] = sum;
      COUNT_TABLE[i] = 0;
      COUNT_TABLE[i + 256] = 0;
      COUNT_TABLE[i + 512] = 0;
      COUNT_TABLE[i + 768] = 0;
    }
  }
  return n;
}

/**
 * Adds COUNT_TABLE's sub-tables into the float64 COUNT_SPILL and clears them: a job of 2 GiB or more does
 * this before a 32-bit counter could overflow, then drains with `spilled`.
 */
function spillCounts(lanes: number, size: number): void {
  for (let lane = 0; lane < lanes; lane++) {
    for (let i = 0; i < size; i++) COUNT_SPILL[i]! += COUNT_TABLE[lane * size + i]!;
  }
  COUNT_TABLE.fill(0, 0, lanes * size);
}

/**
 * The worker's message loop: one job per message, in the order posted, so jobs queued behind the one being
 * counted start without waiting for the calling thread. Self-contained apart from the script-level
 * constants and the top-level functions it is given (WORKER_FUNCTIONS). control[0] = 1 asks a job to stop
 * (before it starts too); control[1] = KiB counted so far (progress).
 */
function countWorkerMain(
  count16: typeof countStage16,
  count16Four: typeof countStage16Four,
  count16Tail: typeof countStage16Tail,
  count8: typeof countStage8,
  present16: typeof drainPresent16,
  present16Four: typeof drainPresent16Four,
  present8: typeof drainPresent8,
  spill: typeof spillCounts,
): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const fs = require('node:fs') as typeof import('node:fs');
  /* eslint-enable @typescript-eslint/no-require-imports */
  let control: Int32Array<ArrayBufferLike> = new Int32Array(0);
  let sharedCodes: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
  let sharedCounts: Float64Array<ArrayBufferLike> = new Float64Array(0);
  parentPort!.on('message', (message: JobMessage | SharedSlots) => {
    if ('control' in message) {
      control = new Int32Array(message.control);
      sharedCodes = new Uint32Array(message.codes);
      sharedCounts = new Float64Array(message.counts);
      return;
    }
    const job = message;
    const slot = job.slot;
    const cancelFlag = slot * 2;
    const progress = slot * 2 + 1;
    const wide = job.bytesPerCode === 2;
    const four = job.length < COUNT_FOUR_LANES_BELOW;
    let spilled = false;
    // Clears the tables whatever happened; returns how many codes occurred (in PRESENT_CODES / PRESENT_COUNTS).
    const drain = () => (wide ? (four ? present16Four(spilled) : present16(spilled)) : present8(spilled));
    let fd = -1;
    try {
      if (Atomics.load(control, cancelFlag) === 1) {
        parentPort!.postMessage({ slot, cancelled: true });
        return;
      }
      fd = fs.openSync(job.path, 'r');
      let pending = 0;
      for (let done = 0; done < job.length; ) {
        if (Atomics.load(control, cancelFlag) === 1) {
          drain();
          parentPort!.postMessage({ slot, cancelled: true });
          return;
        }
        const want = Math.min(COUNT_STAGE.length, job.length - done);
        let got = 0;
        while (got < want) {
          const n = fs.readSync(fd, COUNT_STAGE, got, want - got, job.start + done + got);
          if (n === 0) throw new Error(`${job.path}: file ends at byte ${job.start + done + got}, inside the tensor`);
          got += n;
        }
        // A counter sees at most `pending` codes: spill long before 32 bits could overflow.
        if (pending + want >= 0x7fffffff) {
          spill(wide && !four ? 8 : 4, wide ? 65536 : 256);
          spilled = true;
          pending = 0;
        }
        pending += want;
        if (wide) {
          const groups = (want >> 4) << 2; // whole groups of four words
          if (four) count16Four(groups);
          else count16(groups);
          count16Tail(groups << 2, want);
        } else count8(want);
        done += want;
        Atomics.store(control, progress, Math.floor(done / 1024));
      }
      const n = drain();
      // Into the slot's shared memory, never transferred: transferring detaches the buffer, and the first
      // detach in an isolate makes V8 drop its "no typed array is ever detached" assumption and recompile
      // every typed-array loop with detach checks — the counting loop then runs ~1.3 GB/s instead of ~1.9.
      sharedCodes.set(PRESENT_CODES.subarray(0, n), slot * 65536);
      sharedCounts.set(PRESENT_COUNTS.subarray(0, n), slot * 65536);
      parentPort!.postMessage({ slot, codes: n });
    } catch (error) {
      drain();
      parentPort!.postMessage({ slot, error: error instanceof Error ? error.message : String(error) });
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  });
}

/** The top-level functions of the worker script, in countWorkerMain's parameter order. */
const WORKER_FUNCTIONS = [countStage16, countStage16Four, countStage16Tail, countStage8, drainPresent16, drainPresent16Four, drainPresent8, spillCounts] as const;

/** The worker script: its fixed buffers as script-level constants, then the message loop. */
function workerSource(): string {
  return [
    `const COUNT_STAGE = new Uint8Array(${STAGE_BYTES});`,
    'const COUNT_STAGE_WORDS = new Uint32Array(COUNT_STAGE.buffer);',
    `const COUNT_TABLE = new Uint32Array(${65536 * LANES_16});`,
    `const COUNT_FOUR_LANES_BELOW = ${FOUR_LANES_BELOW_BYTES};`,
    'const COUNT_SPILL = new Float64Array(65536);',
    'const PRESENT_CODES = new Uint32Array(65536);',
    'const PRESENT_COUNTS = new Float64Array(65536);',
    // Declared at the top level of the script (by the names the bundler gave them), as V8 compiles them best.
    ...WORKER_FUNCTIONS.map((f) => f.toString()),
    `(${countWorkerMain.toString()})(${WORKER_FUNCTIONS.map((f) => f.name).join(', ')});`,
  ].join('\n');
}

/** A job given to a pooled worker and not answered yet. */
interface QueuedJob {
  readonly message: CountJob;
  /** Its slot while posted; undefined while it waits for one. */
  slot: number | undefined;
  /** Bytes counted once it has ended. */
  ended: number | undefined;
  readonly resolve: (present: PresentCounts) => void;
  readonly reject: (error: Error) => void;
}

/** A pooled counting worker, its shared slots and its jobs. */
interface PooledWorker {
  readonly worker: Worker;
  readonly control: Int32Array;
  readonly codes: Uint32Array;
  readonly counts: Float64Array;
  /** The job in each slot (posted to the worker, which counts them in the order posted). */
  readonly slots: (QueuedJob | undefined)[];
  /** Jobs beyond the slots, posted as slots free up. */
  readonly waiting: QueuedJob[];
}

const pool: PooledWorker[] = [];

/**
 * Jobs each worker may hold, the one it counts included: with a second queued behind it, a worker starts
 * its next job as soon as it has written a result, instead of idling while the calling thread takes the
 * result and hands out the next one (computeStatisticsOfTensors keeps this many jobs per worker in flight).
 * Each is a slot of the worker's shared memory.
 */
export const WORKER_QUEUE_DEPTH = 2;

/** Counting workers to split a large tensor over: one per core, at most 4. */
export function countingThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

const jobsOf = (pooled: PooledWorker) => pooled.waiting.length + pooled.slots.filter((j) => j !== undefined).length;

function post(pooled: PooledWorker, job: QueuedJob, slot: number): void {
  job.slot = slot;
  pooled.slots[slot] = job;
  Atomics.store(pooled.control, slot * 2, 0);
  Atomics.store(pooled.control, slot * 2 + 1, 0);
  if (jobsOf(pooled) === 1) pooled.worker.ref();
  pooled.worker.postMessage({ ...job.message, slot } satisfies JobMessage);
}

function startWorker(): PooledWorker {
  const shared: SharedSlots = {
    control: new SharedArrayBuffer(WORKER_QUEUE_DEPTH * 2 * 4),
    codes: new SharedArrayBuffer(WORKER_QUEUE_DEPTH * 65536 * 4),
    counts: new SharedArrayBuffer(WORKER_QUEUE_DEPTH * 65536 * 8),
  };
  const pooled: PooledWorker = {
    worker: new Worker(workerSource(), { eval: true }),
    control: new Int32Array(shared.control),
    codes: new Uint32Array(shared.codes),
    counts: new Float64Array(shared.counts),
    slots: new Array<QueuedJob | undefined>(WORKER_QUEUE_DEPTH).fill(undefined),
    waiting: [],
  };
  pooled.worker.postMessage(shared);
  const failAll = (error: Error) => {
    const at = pool.indexOf(pooled);
    if (at >= 0) pool.splice(at, 1);
    const jobs = [...pooled.slots.filter((j): j is QueuedJob => j !== undefined), ...pooled.waiting.splice(0)];
    pooled.slots.fill(undefined);
    for (const job of jobs) job.reject(error);
  };
  pooled.worker.on('message', (reply: WorkerReply) => {
    const job = pooled.slots[reply.slot];
    if (!job) return;
    // Read out of the slot before it is given to the next job.
    const from = reply.slot * 65536;
    const present = 'codes' in reply ? { codes: pooled.codes.slice(from, from + reply.codes), counts: pooled.counts.slice(from, from + reply.codes) } : undefined;
    job.ended = job.message.length;
    pooled.slots[reply.slot] = undefined;
    const next = pooled.waiting.shift();
    if (next) post(pooled, next, reply.slot);
    // An idle worker must not keep the process alive; one with jobs must, until they are answered.
    else if (jobsOf(pooled) === 0) pooled.worker.unref();
    if (present) job.resolve(present);
    else if ('error' in reply) job.reject(new Error(reply.error));
    else job.reject(new Error('cancelled'));
  });
  pooled.worker.on('error', (error: Error) => failAll(new Error(`counting worker failed: ${error.message}`)));
  pooled.worker.on('exit', (code) => {
    if (pool.includes(pooled)) failAll(new Error(`counting worker stopped (exit code ${code})`));
  });
  pool.push(pooled);
  return pooled;
}

/**
 * The worker for the next job: an idle one, else a new one while there are fewer than countingThreads(),
 * else the one with the fewest jobs (its job waits there, counted as soon as the ones before it end).
 */
function takeWorker(): PooledWorker {
  let best: PooledWorker | undefined;
  let fewest = Infinity;
  for (const pooled of pool) {
    const jobs = jobsOf(pooled);
    if (jobs < fewest) {
      best = pooled;
      fewest = jobs;
    }
  }
  if (best && (fewest === 0 || pool.length >= countingThreads())) return best;
  return startWorker();
}

/** The codes that occurred in a byte range (ascending) and how often each occurred (never 0). */
export interface PresentCounts {
  readonly codes: Uint32Array;
  readonly counts: Float64Array;
}

/**
 * Counts one byte range in a pooled worker (queued behind that worker's jobs when every worker is busy).
 * `signal` cancels it, queued or running (the promise rejects with `cancelled`); `progress()` reads how many
 * bytes it has counted so far.
 */
export function countInWorker(message: CountJob, signal?: AbortSignal): { result: Promise<PresentCounts>; progress: () => number } {
  const pooled = takeWorker();
  let job: QueuedJob | undefined;
  const result = new Promise<PresentCounts>((resolve, reject) => {
    const onAbort = () => {
      if (!job || job.ended !== undefined) return;
      if (job.slot !== undefined) {
        Atomics.store(pooled.control, job.slot * 2, 1);
        return;
      }
      // Still waiting for a slot: never posted, so it ends here.
      pooled.waiting.splice(pooled.waiting.indexOf(job), 1);
      job.ended = 0;
      job.reject(new Error('cancelled'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const settled = () => signal?.removeEventListener('abort', onAbort);
    job = {
      message,
      slot: undefined,
      ended: undefined,
      resolve: (present) => {
        settled();
        resolve(present);
      },
      reject: (error) => {
        settled();
        reject(error);
      },
    };
    const free = pooled.slots.indexOf(undefined);
    if (free >= 0) post(pooled, job, free);
    else pooled.waiting.push(job);
  });
  const progress = () => {
    if (!job || job.ended !== undefined) return job?.ended ?? 0;
    return job.slot === undefined ? 0 : Atomics.load(pooled.control, job.slot * 2 + 1) * 1024;
  };
  return { result, progress };
}

/** Stops the idle pooled workers (tests and short-lived processes may call it; the pool restarts on demand). */
export async function stopCountingWorkers(): Promise<void> {
  const idle = pool.filter((p) => jobsOf(p) === 0);
  for (const p of idle) pool.splice(pool.indexOf(p), 1);
  await Promise.all(idle.map((p) => p.worker.terminate()));
}
