import assert from 'node:assert/strict';
import type { WeightStatistics } from '../../src/core/stats/weightStats';

/** Float64 statistics from the definitions, binned on the result's own edges. */
export function checkStats(result: WeightStatistics, values: number[]): void {
  const finite = values.filter(Number.isFinite);
  const mean = finite.reduce((a, b) => a + b, 0) / finite.length;
  const std = Math.sqrt(finite.reduce((a, b) => a + (b - mean) ** 2, 0) / finite.length);
  const s = result.stats;
  assert.equal(s.count, values.length, 'count');
  assert.equal(s.nan, values.filter(Number.isNaN).length, 'NaN');
  assert.equal(s.zeros, finite.filter((v) => v === 0).length, 'zeros');
  assert.equal(s.min, Math.min(...finite), 'min');
  assert.equal(s.max, Math.max(...finite), 'max');
  assert.equal(s.absMax, Math.max(...finite.map(Math.abs)), 'absmax');
  assert.ok(Math.abs(s.mean - mean) <= 1e-12 * Math.max(1e-3, Math.abs(mean)) + 1e-15, `mean ${s.mean} vs ${mean}`);
  assert.ok(Math.abs(s.std - std) <= 1e-9 * Math.max(std, 1e-12), `std ${s.std} vs ${std}`);
  const bin = (edges: readonly number[], v: number) => {
    const n = edges.length - 1;
    return Math.min(n - 1, Math.max(0, Math.floor((v - edges[0]!) / ((edges[n]! - edges[0]!) / n))));
  };
  if (result.linear.edges.length > 2) {
    const lin = new Array<number>(result.linear.counts.length).fill(0);
    for (const v of finite) lin[bin(result.linear.edges, v)]!++;
    assert.deepEqual(result.linear.counts, lin, 'linear histogram');
  }
  if (result.log.edges.length > 2) {
    const log = new Array<number>(result.log.counts.length).fill(0);
    for (const v of finite) if (v !== 0) log[bin(result.log.edges, Math.log10(Math.abs(v)))]!++;
    assert.deepEqual(result.log.counts, log, 'log histogram');
  }
}
