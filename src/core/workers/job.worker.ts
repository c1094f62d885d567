/**
 * Runs one job (src/core/jobs/runJob.ts) in a child process started by JobProcess. A child process rather
 * than a worker thread: a job holds gigabytes and native runtime sessions, and if it runs out of memory or is
 * killed, only it dies — the editor and its inspectors stay up. Messages travel over the IPC channel.
 */
import { JobCancelled } from '../jobs/quantize';
import { PreflightFailed, runJob } from '../jobs/runJob';
import type { JobFromChild, JobToChild } from '../jobs/jobProcess';
import { detectDevice } from '../runtime/device';

const controller = new AbortController();
let started = false;

function send(message: JobFromChild): void {
  process.send?.(message);
}

process.on('message', (message: JobToChild) => {
  if (message.type === 'cancel') {
    controller.abort();
    return;
  }
  if (message.type === 'probeDevice') {
    // Probing CUDA creates a CUDA context: done here so the editor's own process never holds one.
    void detectDevice({ preference: message.preference }).then((report) => {
      send({ type: 'device', report });
      process.disconnect?.();
    });
    return;
  }
  if (message.type !== 'start' || started) return;
  started = true;
  let lastProgress = 0;
  runJob(message.spec, {
    signal: controller.signal,
    graphCacheDir: message.graphCacheDir,
    preflightDone: message.preflightDone,
    ...(message.command ? { command: message.command } : {}),
    log: (line) => send({ type: 'log', line }),
    onProgress: (progress) => {
      // At most ten progress messages a second: the parent only redraws a notification.
      const now = Date.now();
      if (now - lastProgress < 100 && progress.fraction < 1) return;
      lastProgress = now;
      send({ type: 'progress', progress });
    },
  }).then(
    (result) => send({ type: 'result', result }),
    (error: unknown) => {
      if (error instanceof JobCancelled || controller.signal.aborted) send({ type: 'cancelled' });
      else send({ type: 'error', message: error instanceof Error ? error.message : String(error), preflight: error instanceof PreflightFailed ? [...error.problems] : undefined });
    },
  ).finally(() => {
    // Let the IPC channel flush the last message, then leave.
    process.disconnect?.();
  });
});

process.on('disconnect', () => {
  // The parent went away: stop the work; cleanup runs in the job's own finally blocks.
  controller.abort();
});
