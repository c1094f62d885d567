/**
 * Jobs in a child process (dist/workers/job.worker.js, as the extension runs them): a job runs to the end
 * and reports progress; a cancelled one — asked politely, or killed outright when it does not stop in time —
 * leaves neither the output nor any partial file, and the input is byte-identical afterwards.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { JobProcess } from '../../src/core/jobs/jobProcess';
import type { JobProgress } from '../../src/core/jobs/runJob';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');
const script = () => join(repoRoot(), 'dist', 'workers', 'job.worker.js');

async function digest(dir: string): Promise<string> {
  const hash = createHash('sha256');
  for (const name of (await fs.readdir(dir)).sort()) {
    hash.update(name);
    hash.update(await fs.readFile(join(dir, name)));
  }
  return hash.digest('hex');
}

describe('jobs: child process', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let before_: string;
  before(async () => {
    if (!existsSync(script())) throw new Error(`${script()} is missing (node esbuild.mjs builds it)`);
    tmp = tempDir();
    before_ = await digest(example());
  });
  after(async () => {
    assert.equal(await digest(example()), before_, 'the input checkpoint is unchanged');
    tmp.cleanup();
  });

  it('runs a quantize job to the end with progress and a summary', async () => {
    const out = join(tmp.path, 'w8a8');
    const progress: JobProgress[] = [];
    const logs: string[] = [];
    const job = new JobProcess({ kind: 'quantize', model: example(), out, preset: 'w8a8' }, { script: script(), onProgress: (p) => progress.push(p), onLog: (l) => logs.push(l) });
    const outcome = await job.done;
    assert.equal(outcome.status, 'succeeded', outcome.status === 'failed' ? outcome.message : '');
    assert.ok(outcome.status === 'succeeded' && outcome.result.kind === 'quantize' && outcome.result.quantize.quantizedLayers === 28);
    assert.ok(progress.length > 0 && progress.at(-1)!.fraction === 1);
    assert.ok(logs.some((l) => /quantizing 28 layers/.test(l)), logs.join('\n'));
    assert.ok(existsSync(join(out, 'config.json')));
  });

  for (const grace of [800, 0]) {
    it(`a job cancelled midway (${grace ? 'asked to stop' : 'killed at once'}) leaves no output and no partial files`, async () => {
      const out = join(tmp.path, `cancel-${grace}`);
      let cancelledAt = 0;
      const job: JobProcess = new JobProcess(
        { kind: 'quantize', model: example(), out, preset: 'w4a16-rtn', maxShardBytes: 2_000_000 },
        {
          script: script(),
          cancelGraceMs: grace,
          onProgress: (p) => {
            if (p.fraction > 0 && !cancelledAt) {
              cancelledAt = Date.now();
              job.cancel();
            }
          },
        },
      );
      const outcome = await job.done;
      assert.equal(outcome.status, 'cancelled');
      assert.ok(Date.now() - cancelledAt < 1500, `stopped ${Date.now() - cancelledAt} ms after cancel`);
      assert.ok(!existsSync(out));
      assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.startsWith(`.cancel-${grace}`)), []);
    });
  }

  it('reports a pre-flight failure as a failed job with the problems', async () => {
    const job = new JobProcess({ kind: 'quantize', model: example(), out: join(tmp.path, 'x'), preset: 'fp8' }, { script: script() });
    const outcome = await job.done;
    assert.equal(outcome.status, 'failed');
    assert.match(outcome.status === 'failed' ? outcome.message : '', /needs calibration/);
  });
});
