/** Small benchmark harness: medians over repeated runs, ratios against a baseline measured in the same run. */

export interface BenchRow {
  readonly section: string;
  readonly what: string;
  readonly result: string;
  readonly baseline: string;
  readonly ratio: string;
  readonly target: string;
}

export async function median(runs: number, fn: () => Promise<unknown> | unknown, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** Alternates A and B runs so both see the same machine conditions; returns both medians (ms). */
export async function interleavedMedians(runs: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number, number]> {
  await a();
  await b();
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < runs; i++) {
    let started = process.hrtime.bigint();
    await a();
    ta.push(Number(process.hrtime.bigint() - started) / 1e6);
    started = process.hrtime.bigint();
    await b();
    tb.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  const mid = (t: number[]) => t.sort((x, y) => x - y)[Math.floor(t.length / 2)]!;
  return [mid(ta), mid(tb)];
}

export const ms = (t: number) => (t < 10 ? `${t.toFixed(2)} ms` : `${t.toFixed(0)} ms`);
export const gbps = (bytes: number, t: number) => `${(bytes / 1e9 / (t / 1000)).toFixed(2)} GB/s`;
export const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export function printTable(rows: readonly BenchRow[]): void {
  const header = ['section', 'benchmark', 'result', 'baseline (same run)', 'ratio', 'target'];
  const cells = [header, ...rows.map((r) => [r.section, r.what, r.result, r.baseline, r.ratio, r.target])];
  const widths = header.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  const line = (row: string[]) => `| ${row.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of cells.slice(1)) console.log(line(row));
}

export function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}
