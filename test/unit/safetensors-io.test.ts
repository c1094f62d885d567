import assert from 'node:assert/strict';
import { promises as fs, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/core/safetensors/reader';
import { SafetensorsWriter, writeSafetensors } from '../../src/core/safetensors/writer';
import { SafetensorsError } from '../../src/core/safetensors/errors';
import { Checkpoint, CheckpointError, findIndexListing } from '../../src/core/safetensors/checkpoint';
import { planShards, shardFileName, writeShardIndex } from '../../src/core/safetensors/shards';
import { f32Bytes, rawSafetensors } from '../helpers/safetensorsBytes';
import { tempDir } from '../helpers/paths';

function seq(n: number, start = 0): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}

describe('safetensors reader: lazy ranged access', () => {
  let tmp: ReturnType<typeof tempDir>;
  let path: string;
  beforeEach(() => {
    tmp = tempDir();
    path = join(tmp.path, 'm.safetensors');
    // Hand-built file (not through our writer): two F32 tensors.
    const header = JSON.stringify({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, b: { dtype: 'F32', shape: [1000], data_offsets: [24, 4024] } });
    writeFileSync(path, rawSafetensors(header, new Uint8Array([...f32Bytes(seq(6)), ...f32Bytes(seq(1000, 100))])));
  });
  afterEach(() => tmp.cleanup());

  it('reads any byte range of any tensor at its offset', async () => {
    const file = await SafetensorsFile.open(path);
    try {
      const range = await file.readTensorRange('b', 40, 48);
      assert.deepEqual(Array.from(new Float32Array(range.slice().buffer)), [110, 111]);
      assert.deepEqual(Array.from(new Float32Array((await file.readTensorBytes('a')).slice().buffer)), seq(6));
    } finally {
      await file.close();
    }
  });

  it('streams a tensor in bounded, element-aligned chunks that reassemble exactly', async () => {
    const file = await SafetensorsFile.open(path);
    try {
      const parts: number[] = [];
      const sizes: number[] = [];
      for await (const { offset, bytes } of file.chunks('b', { chunkBytes: 1001 })) {
        assert.equal(offset % 4, 0);
        sizes.push(bytes.length);
        parts.push(...new Float32Array(bytes.slice().buffer));
      }
      assert.ok(Math.max(...sizes) <= 1001);
      assert.ok(sizes.every((s) => s % 4 === 0));
      assert.deepEqual(parts, seq(1000, 100));
    } finally {
      await file.close();
    }
  });

  it('refuses ranges outside the tensor and whole reads above maxBytes, naming the tensor', async () => {
    const file = await SafetensorsFile.open(path);
    try {
      await assert.rejects(file.readTensorRange('a', 20, 28), (e: SafetensorsError) => e.code === 'RangeOutOfBounds' && e.tensor === 'a');
      await assert.rejects(file.readTensorBytes('b', { maxBytes: 100 }), /stream it instead/);
      await assert.rejects(file.readTensorBytes('nope'), (e: SafetensorsError) => e.code === 'TensorNotFound' && e.tensor === 'nope');
    } finally {
      await file.close();
    }
  });

  it('detects a file that changed size after its header was read', async () => {
    const file = await SafetensorsFile.open(path);
    try {
      await fs.truncate(path, 100);
      await assert.rejects(file.readTensorRange('b', 0, 4), (e: SafetensorsError) => e.code === 'FileChanged');
    } finally {
      await file.close();
    }
  });

  it('reports a missing file and a directory clearly', async () => {
    await assert.rejects(SafetensorsFile.open(join(tmp.path, 'missing.safetensors')), /missing\.safetensors: no such file/);
    await assert.rejects(SafetensorsFile.open(tmp.path), (e: SafetensorsError) => e.code === 'Io');
  });
});

describe('safetensors writer: streaming, atomic', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('streams tensors in chunks; the result parses under the reference rules and reads back exactly', async () => {
    const path = join(tmp.path, 'out.safetensors');
    const specs = [
      { name: 'x', dtype: 'F32' as const, shape: [3, 5] },
      { name: 'y', dtype: 'I64' as const, shape: [2] },
      { name: 'z', dtype: 'U8' as const, shape: [0] },
    ];
    const writer = await SafetensorsWriter.create(path, specs, { metadata: { format: 'pt' } });
    // Reference order: dtype alignment order descending (I64 before F32 before U8), then name.
    assert.deepEqual(writer.order.map((s) => s.name), ['y', 'x', 'z']);
    await writer.write('y', new Uint8Array(new BigInt64Array([7n, -9n]).buffer));
    const x = f32Bytes(seq(15));
    await writer.write('x', x.subarray(0, 7));
    await writer.write('x', x.subarray(7));
    assert.deepEqual(readdirSync(tmp.path).filter((n) => n === 'out.safetensors'), [], 'nothing under the final name before finish');
    await writer.finish();
    const bytes = await fs.readFile(path);
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    assert.equal(n % 8, 0, 'header padded to 8 bytes');
    assert.equal((8 + n) % 8, 0, 'data section 8-aligned');
    const file = await SafetensorsFile.open(path);
    try {
      assert.deepEqual(Array.from(new Float32Array((await file.readTensorBytes('x')).slice().buffer)), seq(15));
      assert.deepEqual(Array.from(new BigInt64Array((await file.readTensorBytes('y')).slice().buffer)), [7n, -9n]);
      assert.equal(file.tensor('z').byteLength, 0);
      assert.deepEqual({ ...file.metadata }, { format: 'pt' });
    } finally {
      await file.close();
    }
  });

  it('rejects out-of-order and oversized writes, and leaves nothing behind when aborted or incomplete', async () => {
    const path = join(tmp.path, 'out.safetensors');
    const writer = await SafetensorsWriter.create(path, [{ name: 'a', dtype: 'U8', shape: [4] }, { name: 'b', dtype: 'U8', shape: [4] }], { order: 'given' });
    await assert.rejects(writer.write('b', new Uint8Array(4)), /expected bytes of "a" next/);
    await assert.rejects(writer.write('a', new Uint8Array(5)), /only 4 remain/);
    await writer.write('a', new Uint8Array(4));
    await assert.rejects(writer.finish(), (e: SafetensorsError) => e.code === 'MetadataIncompleteBuffer' && e.tensor === 'b');
    assert.deepEqual(readdirSync(tmp.path), [], 'no partial file and no final file');
  });

  it('writeSafetensors checks each tensor’s data length against its shape', async () => {
    await assert.rejects(writeSafetensors(join(tmp.path, 'o.safetensors'), [{ name: 'a', dtype: 'F32', shape: [2], data: new Uint8Array(7) }]), /needs? 8/);
    assert.deepEqual(readdirSync(tmp.path), []);
  });

  it('never overwrites an existing temporary file and keeps the previous final file until rename', async () => {
    const path = join(tmp.path, 'o.safetensors');
    writeFileSync(path, 'old');
    const writer = await SafetensorsWriter.create(path, [{ name: 'a', dtype: 'U8', shape: [1] }]);
    assert.equal((await fs.readFile(path, 'utf8')), 'old');
    await writer.write('a', new Uint8Array([1]));
    await writer.finish();
    assert.notEqual((await fs.readFile(path)).length, 3);
  });
});

describe('sharded checkpoints', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  async function writeSharded(folder: string, count: number) {
    const specs = seq(6).map((i) => ({ name: `layers.${i}.weight`, dtype: 'F32' as const, shape: [4] }));
    const shards = planShards(specs, 32);
    assert.equal(shards.length, count);
    const weightMap = new Map<string, string>();
    for (let s = 0; s < shards.length; s++) {
      const name = shardFileName(s, shards.length);
      await writeSafetensors(join(folder, name), shards[s]!.map((spec) => ({ ...spec, data: f32Bytes([s, 1, 2, 3]) })));
      for (const spec of shards[s]!) weightMap.set(spec.name, name);
    }
    await writeShardIndex(folder, weightMap, 6 * 16);
    return weightMap;
  }

  it('opens an index as one logical checkpoint and reads tensors across shards', async () => {
    await writeSharded(tmp.path, 3);
    for (const target of [tmp.path, join(tmp.path, 'model.safetensors.index.json')]) {
      const checkpoint = await Checkpoint.open(target);
      try {
        assert.equal(checkpoint.layout, 'indexed');
        assert.equal(checkpoint.tensors.length, 6);
        assert.deepEqual(checkpoint.problems, []);
        assert.equal(checkpoint.tensor('layers.5.weight').shard, 'model-00003-of-00003.safetensors');
        assert.deepEqual(Array.from(new Float32Array((await checkpoint.readTensorBytes('layers.5.weight')).slice().buffer)), [2, 1, 2, 3]);
        assert.equal(checkpoint.metadata.total_size, 96);
      } finally {
        await checkpoint.close();
      }
    }
    assert.equal(await findIndexListing(join(tmp.path, 'model-00002-of-00003.safetensors')), join(tmp.path, 'model.safetensors.index.json'));
  });

  it('reports a missing shard, missing, unmapped and duplicated tensors without throwing', async () => {
    const weightMap = await writeSharded(tmp.path, 3);
    await fs.rm(join(tmp.path, 'model-00002-of-00003.safetensors'));
    weightMap.set('ghost.weight', 'model-00001-of-00003.safetensors');
    weightMap.delete('layers.0.weight');
    await writeShardIndex(tmp.path, weightMap, 999);
    // A stray copy of a tensor in another file.
    const checkpoint = await Checkpoint.open(tmp.path);
    try {
      const kinds = checkpoint.problems.map((p) => p.kind).sort();
      assert.deepEqual(kinds, ['missing-shard', 'missing-tensor', 'unmapped-tensor']);
      assert.ok(checkpoint.problems.find((p) => p.kind === 'missing-tensor')!.message.includes('ghost.weight'));
      assert.equal(checkpoint.tensors.length, 4, 'tensors of the readable shards are still available');
    } finally {
      await checkpoint.close();
    }
  });

  it('reports a tensor present in two shards of a folder without index', async () => {
    await writeSafetensors(join(tmp.path, 'a.safetensors'), [{ name: 't', dtype: 'U8', shape: [1], data: new Uint8Array([1]) }]);
    await writeSafetensors(join(tmp.path, 'b.safetensors'), [{ name: 't', dtype: 'U8', shape: [1], data: new Uint8Array([2]) }]);
    const checkpoint = await Checkpoint.open(tmp.path);
    try {
      assert.equal(checkpoint.layout, 'folder-of-shards');
      assert.deepEqual(checkpoint.problems.map((p) => p.kind), ['duplicate-tensor']);
      assert.deepEqual(Array.from(await checkpoint.readTensorBytes('t')), [1], 'first shard wins without an index');
    } finally {
      await checkpoint.close();
    }
  });

  it('rejects unsafe shard names and reports a corrupt shard as unreadable', async () => {
    await writeSharded(tmp.path, 3);
    await fs.writeFile(join(tmp.path, 'model-00003-of-00003.safetensors'), 'garbage!garbage!');
    const index = JSON.parse(await fs.readFile(join(tmp.path, 'model.safetensors.index.json'), 'utf8'));
    index.weight_map['evil'] = '../../etc/passwd';
    await fs.writeFile(join(tmp.path, 'model.safetensors.index.json'), JSON.stringify(index));
    const checkpoint = await Checkpoint.open(tmp.path);
    try {
      const kinds = new Set(checkpoint.problems.map((p) => p.kind));
      assert.ok(kinds.has('unsafe-shard-name'));
      assert.ok(kinds.has('unreadable-shard'));
      assert.match(checkpoint.problems.find((p) => p.kind === 'unreadable-shard')!.message, /model-00003-of-00003\.safetensors.*HeaderTooLarge/);
    } finally {
      await checkpoint.close();
    }
  });

  it('throws a typed error for a broken index, an empty folder, and a missing path', async () => {
    await fs.writeFile(join(tmp.path, 'model.safetensors.index.json'), '{"weight_map": [');
    await assert.rejects(Checkpoint.open(tmp.path), (e: CheckpointError) => e.code === 'InvalidIndex' && /not valid JSON/.test(e.message));
    await fs.writeFile(join(tmp.path, 'model.safetensors.index.json'), '{"metadata": {}}');
    await assert.rejects(Checkpoint.open(tmp.path), /"weight_map" must be an object/);
    await fs.rm(join(tmp.path, 'model.safetensors.index.json'));
    await assert.rejects(Checkpoint.open(tmp.path), (e: CheckpointError) => e.code === 'NoWeights');
    await assert.rejects(Checkpoint.open(join(tmp.path, 'nope')), (e: CheckpointError) => e.code === 'NotFound');
  });
});
