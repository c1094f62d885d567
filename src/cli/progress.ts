/** Progress on stderr for long CLI jobs (redrawn in place on a terminal, a line at a time otherwise) and Ctrl-C as cancel. */
import type { JobProgress } from '../core/jobs/runJob';

export function stderrProgress(): (progress: JobProgress) => void {
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
export function cancelOnSignals(): { signal: AbortSignal; release: () => void } {
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
