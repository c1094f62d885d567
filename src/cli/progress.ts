/** Progress on stderr for long CLI jobs (redrawn in place on a terminal, a line at a time otherwise) and Ctrl-C as cancel. */
import type { JobSpec } from '../core/jobs/jobSpec';
import { JobCancelled } from '../core/jobs/quantize';
import { JobProgress, JobResult, runJob } from '../core/jobs/runJob';
import { jsonWithNonFinite } from '../core/util/format';

function stderrProgress(): (progress: JobProgress) => void {
  let last = 0;
  return ({ fraction, stage, module }) => {
    const now = Date.now();
    if (now - last < 250 && fraction < 1) return;
    last = now;
    const tty = process.stderr.isTTY;
    process.stderr.write(`${tty ? '\r' : ''}${stage} ${(fraction * 100).toFixed(0)}%${module ? ` ${module}` : ''}${tty ? '\u001b[K' : '\n'}`);
  };
}

/** An AbortController that SIGINT / SIGTERM abort; `release` removes the handlers. */
function cancelOnSignals(): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const onSignal = () => {
    process.stderr.write('\nquantlens: cancelling…\n');
    controller.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/**
 * Runs a job the way every CLI command does: log and progress on stderr, Ctrl-C cancels (exit 130, nothing
 * written), the summary `render` makes of the result on stdout (as JSON unless it is a string).
 */
export async function runCliJob(spec: JobSpec, out: NodeJS.WritableStream, render: (result: JobResult) => unknown): Promise<number> {
  const cancel = cancelOnSignals();
  try {
    // Owner records (the output's lock, partial folders) name the job by the command line as typed.
    const command = ['quantlens', ...process.argv.slice(2)].map((w) => (/[\s'"]/.test(w) ? JSON.stringify(w) : w)).join(' ');
    const result = await runJob(spec, { signal: cancel.signal, command, log: (line) => process.stderr.write(`${line}\n`), onProgress: stderrProgress() });
    if (process.stderr.isTTY) process.stderr.write('\n');
    const rendered = render(result);
    // A string is the command's own text (a table); anything else is printed as JSON.
    out.write(typeof rendered === 'string' ? rendered : `${jsonWithNonFinite(rendered, 2)}\n`);
    return 0;
  } catch (error) {
    if (error instanceof JobCancelled || cancel.signal.aborted) {
      process.stderr.write('quantlens: cancelled; no output was written\n');
      return 130;
    }
    throw error;
  } finally {
    cancel.release();
  }
}
