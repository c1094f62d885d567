/**
 * Which models the chat starts with (the latest finished quantize job, whatever the history's order) and the
 * synthetic-weights marker: read from real config.json files, including the shipped example and a quantized
 * copy of it.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { hasSyntheticWeights, latestQuantizeJob, quantizePairOf } from '../../src/extension/chat/chatModels';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { repoRoot, tempDir } from '../helpers/paths';

const job = (id: string, status: string, started: number, ended: number | undefined, kind = 'quantize') => ({
  id,
  status,
  started,
  ...(ended !== undefined ? { ended } : {}),
  spec: { kind, model: `/models/${id}-source`, out: `/models/${id}-out` },
});

describe('chat: the model pair it starts with', () => {
  it('picks the latest succeeded quantize job from the Jobs view history, which is kept newest first', () => {
    // As JobManager stores it: unshift, so index 0 is the newest.
    const history = [job('running', 'running', 500, undefined), job('newest', 'succeeded', 400, 450), job('calib', 'succeeded', 300, 460, 'calibrate'), job('failed', 'failed', 200, 210), job('oldest', 'succeeded', 100, 150)];
    assert.deepEqual(latestQuantizeJob(history), { quantized: '/models/newest-out', original: '/models/newest-source' });
    // The same records in the opposite order give the same answer: the time decides, not the position.
    assert.deepEqual(latestQuantizeJob([...history].reverse()), { quantized: '/models/newest-out', original: '/models/newest-source' });
  });

  it('uses the end time: a long job that finished last wins over a short one started later', () => {
    const history = [job('short', 'succeeded', 300, 310), job('long', 'succeeded', 100, 900)];
    assert.equal(latestQuantizeJob(history)?.quantized, '/models/long-out');
  });

  it('gives nothing for an empty, malformed or unfinished history', () => {
    assert.equal(latestQuantizeJob(undefined), undefined);
    assert.equal(latestQuantizeJob({ not: 'an array' }), undefined);
    assert.equal(latestQuantizeJob([null, 7, 'x', job('r', 'running', 1, undefined), { status: 'succeeded', spec: { kind: 'quantize', out: 3 } }]), undefined);
    assert.equal(quantizePairOf(job('c', 'succeeded', 1, 2, 'calibrate')), undefined);
  });
});

describe('chat: synthetic weights marker', function () {
  this.timeout(120_000);
  const example = () => join(repoRoot(), 'examples', 'tiny-llama');

  it('finds quantlens_synthetic in the shipped example and in a quantized copy of it', async () => {
    if (!existsSync(join(example(), 'model.safetensors.index.json'))) throw new Error('the example checkpoint is missing (node out/scripts/make-example.js examples/tiny-llama)');
    assert.equal(await hasSyntheticWeights(example()), true);
    const dir = tempDir('quantlens-chat-models-');
    try {
      const out = join(dir.path, 'w8a8');
      await runQuantizeJob({ model: example(), out, scheme: 'w8a8' });
      assert.equal(await hasSyntheticWeights(out), true, 'quantizing keeps the marker');
    } finally {
      dir.cleanup();
    }
  });

  it('is false for a trained-looking config, a marker that is not true, a missing or broken config.json', async () => {
    const dir = tempDir('quantlens-chat-models-');
    try {
      const write = async (name: string, text: string | undefined) => {
        const folder = join(dir.path, name);
        await fs.mkdir(folder);
        if (text !== undefined) await fs.writeFile(join(folder, 'config.json'), text);
        return folder;
      };
      assert.equal(await hasSyntheticWeights(await write('plain', '{"model_type":"llama"}')), false);
      assert.equal(await hasSyntheticWeights(await write('string', '{"quantlens_synthetic":"true"}')), false);
      assert.equal(await hasSyntheticWeights(await write('missing', undefined)), false);
      assert.equal(await hasSyntheticWeights(await write('broken', '{"quantlens_synthetic": tru')), false);
      assert.equal(await hasSyntheticWeights(await write('marked', '{"quantlens_synthetic": true}')), true);
    } finally {
      dir.cleanup();
    }
  });
});
