import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { AnalysisClient, CancelledByCaller } from '../../src/core/jobs/analysisClient';
import { repoRoot, tempDir } from '../helpers/paths';

describe('analysis worker (worker_threads)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let client: AnalysisClient;
  before(async () => {
    tmp = tempDir();
    // Large enough (64 MB: eight 8 MiB chunks per pass) that a cancel sent at the first progress report
    // always reaches the worker before it is done; at 8 MB the whole request could finish first.
    const values = new Float32Array(16_000_000).map((_, i) => Math.sin(i));
    await writeSafetensors(join(tmp.path, 'model.safetensors'), [
      { name: 'big.weight', dtype: 'F32', shape: [4000, 4000], data: new Uint8Array(values.buffer) },
      { name: 'small.weight', dtype: 'F32', shape: [2, 2], data: new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) },
    ]);
    client = new AnalysisClient(join(repoRoot(), 'dist', 'workers', 'analysis.worker.js'));
  });
  after(async () => {
    await client.dispose();
    tmp.cleanup();
  });

  it('answers analysis and statistics requests with progress, off the calling thread', async () => {
    const path = join(tmp.path, 'model.safetensors');
    const analysis = await client.call('analyze', { path });
    assert.equal(analysis.summary.tensorCount, 2);
    const progress: number[] = [];
    const stats = await client.call('tensorStats', { path, tensor: 'small.weight' }, { onProgress: (f) => progress.push(f) });
    assert.equal(stats.stats.mean, 2.5);
    assert.ok(progress.length > 0 && progress.at(-1)! <= 1);
  });

  it('cancels a running request and stays usable', async () => {
    const path = join(tmp.path, 'model.safetensors');
    const controller = new AbortController();
    const run = client.call('tensorStats', { path, tensor: 'big.weight' }, { signal: controller.signal, onProgress: () => controller.abort() });
    await assert.rejects(run, CancelledByCaller);
    const again = await client.call('tensorStats', { path, tensor: 'small.weight' });
    assert.equal(again.stats.max, 4);
  });

  it('reports errors from the worker as rejected calls naming the problem', async () => {
    await assert.rejects(client.call('tensorStats', { path: join(tmp.path, 'model.safetensors'), tensor: 'nope' }), /nope/);
    await assert.rejects(client.call('analyze', { path: join(tmp.path, 'missing') }), /no such file or folder/);
  });
});
