// The fuzz harness's own checks can fail: a run that leaks, a case past its time, a failing case named by its seed.
import assert from 'node:assert/strict';
import { runFuzz } from '../helpers/mutate';

describe('fuzz harness (test/helpers/mutate.ts runFuzz)', function () {
  this.timeout(60_000);

  it('reports a run that retains memory as a leak, and passes one that only makes garbage', async () => {
    const kept: Uint8Array[] = [];
    await assert.rejects(
      runFuzz({ cases: 40, seedBase: 1, caseMs: 10_000, maxRssGrowth: 4 * 1024 ** 3, run: async () => (kept.push(new Uint8Array(4 << 20).fill(1)), 'kept') }),
      /retains \d+ MiB more heap and buffers after 40 cases .*a leak/,
    );
    kept.length = 0;
    const outcomes = await runFuzz({ cases: 40, seedBase: 1, caseMs: 10_000, maxRssGrowth: 512 * 1024 ** 2, run: async () => (new Uint8Array(4 << 20).fill(1), 'garbage') });
    assert.deepEqual(outcomes, { garbage: 40 });
  });

  it('names the seed of a failing case and of a case past its time limit', async () => {
    await assert.rejects(
      runFuzz({ cases: 5, seedBase: 700, caseMs: 10_000, maxRssGrowth: 1024 ** 3, run: async (i) => { if (i === 3) throw new TypeError('boom'); return 'ok'; } }),
      /fuzz case 3 \(seed 703\) failed: TypeError: boom/,
    );
    await assert.rejects(
      runFuzz({ cases: 2, seedBase: 10, caseMs: 5, maxRssGrowth: 1024 ** 3, run: async () => (await new Promise((r) => setTimeout(r, 30)), 'slow') }),
      /fuzz case 0 \(seed 10, slow\) took \d+ ms \(limit 5 ms\)/,
    );
  });
});
