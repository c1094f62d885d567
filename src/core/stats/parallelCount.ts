/**
 * Bit-pattern counting of one large 8/16-bit tensor split over several threads: each counting worker opens
 * the shard itself, reads its own byte range in bounded chunks and returns its exact counts, which the
 * caller merges (addition of integer counts, so the result is identical to a single-threaded count).
 *
 * The workers are a small lazily started pool (unref'd, so they never keep a process alive). Their code is
 * one self-contained function run with `eval`, so it works from every bundle (extension, CLI, analysis
 * worker, tests) without locating a separate worker file on disk.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** Below this size a tensor is counted on the calling thread: starting work elsewhere costs more. */
export const PARALLEL_MIN_BYTES = 48 * 1024 * 1024;

export interface CountJob {
  readonly path: string;
  /** Absolute file offset of the first byte to count (a multiple of the code width from the tensor start). */
  readonly start: number;
  readonly length: number;
  readonly bytesPerCode: 1 | 2;
  readonly chunkBytes: number;
}

interface JobMessage extends CountJob {
  readonly control: SharedArrayBuffer;
}

type WorkerReply = { readonly counts: Float64Array } | { readonly error: string } | { readonly cancelled: true };

/**
 * The worker body. It must not reference anything outside itself (it is serialised with toString).
 * control[0] = 1 asks it to stop; control[1] = KiB counted so far (progress).
 */
function countWorkerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const fs = require('node:fs') as typeof import('node:fs');
  /* eslint-enable @typescript-eslint/no-require-imports */
  parentPort!.on('message', (job: JobMessage) => {
    const control = new Int32Array(job.control);
    const size = job.bytesPerCode === 1 ? 256 : 65536;
    const lanes = job.bytesPerCode === 1 ? 4 : 2;
    const fast = new Uint32Array(size * lanes);
    const total = new Float64Array(size);
    const flush = () => {
      for (let i = 0; i < fast.length; i++) {
        if (fast[i] !== 0) {
          total[i % size]! += fast[i]!;
          fast[i] = 0;
        }
      }
    };
    let fd = -1;
    try {
      fd = fs.openSync(job.path, 'r');
      const buffer = new Uint8Array(Math.max(4, job.chunkBytes - (job.chunkBytes % 4)));
      const words = new Uint32Array(buffer.buffer);
      let pending = 0;
      for (let done = 0; done < job.length; ) {
        if (Atomics.load(control, 0) === 1) {
          parentPort!.postMessage({ cancelled: true });
          return;
        }
        const want = Math.min(buffer.length, job.length - done);
        let got = 0;
        while (got < want) {
          const n = fs.readSync(fd, buffer, got, want - got, job.start + done + got);
          if (n === 0) throw new Error(`${job.path}: file ends at byte ${job.start + done + got}, inside the tensor`);
          got += n;
        }
        if (pending + want >= 0x7fffffff) {
          flush();
          pending = 0;
        }
        pending += want;
        const whole = want >> 2;
        if (job.bytesPerCode === 2) {
          for (let i = 0; i < whole; i++) {
            const x = words[i]!;
            fast[x & 0xffff]!++;
            fast[65536 + (x >>> 16)]!++;
          }
          for (let i = whole << 2; i + 1 < want; i += 2) fast[buffer[i]! | (buffer[i + 1]! << 8)]!++;
        } else {
          for (let i = 0; i < whole; i++) {
            const x = words[i]!;
            fast[x & 0xff]!++;
            fast[256 + ((x >>> 8) & 0xff)]!++;
            fast[512 + ((x >>> 16) & 0xff)]!++;
            fast[768 + (x >>> 24)]!++;
          }
          for (let i = whole << 2; i < want; i++) fast[buffer[i]!]!++;
        }
        done += want;
        Atomics.store(control, 1, Math.floor(done / 1024));
      }
      flush();
      parentPort!.postMessage({ counts: total }, [total.buffer]);
    } catch (error) {
      parentPort!.postMessage({ error: error instanceof Error ? error.message : String(error) });
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  });
}

const idle: Worker[] = [];

/** Extra threads to use besides the caller's: one less than the cores, at most 3. */
export function countingThreads(): number {
  return Math.max(0, Math.min(3, availableParallelism() - 1));
}

function takeWorker(): Worker {
  const worker = idle.pop();
  if (worker) return worker;
  const fresh = new Worker(`(${countWorkerMain.toString()})()`, { eval: true });
  fresh.unref();
  return fresh;
}

/**
 * Counts one byte range in a pooled worker. `signal` cancels it (the promise rejects with `cancelled`);
 * `progress()` reads how many bytes it has counted so far.
 */
export function countInWorker(job: CountJob, signal?: AbortSignal): { result: Promise<Float64Array>; progress: () => number } {
  const control = new SharedArrayBuffer(8);
  const flags = new Int32Array(control);
  const worker = takeWorker();
  const result = new Promise<Float64Array>((resolve, reject) => {
    const onAbort = () => Atomics.store(flags, 0, 1);
    signal?.addEventListener('abort', onAbort, { once: true });
    const finish = () => {
      signal?.removeEventListener('abort', onAbort);
      worker.off('message', onMessage);
      worker.off('error', onError);
    };
    const onMessage = (reply: WorkerReply) => {
      finish();
      idle.push(worker);
      if ('counts' in reply) resolve(reply.counts);
      else if ('error' in reply) reject(new Error(reply.error));
      else reject(new Error('cancelled'));
    };
    const onError = (error: Error) => {
      finish();
      reject(new Error(`counting worker failed: ${error.message}`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.postMessage({ ...job, control } satisfies JobMessage);
  });
  return { result, progress: () => Atomics.load(flags, 1) * 1024 };
}

/** Stops the idle pooled workers (tests and short-lived processes may call it; the pool restarts on demand). */
export async function stopCountingWorkers(): Promise<void> {
  const workers = idle.splice(0);
  await Promise.all(workers.map((w) => w.terminate()));
}
