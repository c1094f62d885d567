/** Planning and indexing sharded outputs (model-00001-of-0000N.safetensors + model.safetensors.index.json). */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TensorSpec, tensorByteLength } from './writer';

/** Hugging Face's shard naming: 1-based, five digits. */
export function shardFileName(index: number, count: number, prefix = 'model'): string {
  if (count === 1) return `${prefix}.safetensors`;
  return `${prefix}-${String(index + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
}

/**
 * Splits tensors, in the given order, into consecutive shards of at most `maxShardBytes` of tensor data
 * (a single tensor larger than the limit gets a shard of its own, as transformers does).
 */
export function planShards<T extends TensorSpec>(specs: readonly T[], maxShardBytes: number): T[][] {
  const shards: T[][] = [];
  let current: T[] = [];
  let size = 0;
  for (const spec of specs) {
    const bytes = tensorByteLength(spec);
    if (current.length > 0 && size + bytes > maxShardBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(spec);
    size += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

/** Writes `model.safetensors.index.json` atomically (temporary name, then rename). */
export async function writeShardIndex(
  folder: string,
  weightMap: ReadonlyMap<string, string>,
  totalSize: number,
  indexName = 'model.safetensors.index.json',
): Promise<string> {
  const sorted = [...weightMap.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const index = { metadata: { total_size: totalSize }, weight_map: Object.fromEntries(sorted) };
  const path = join(folder, indexName);
  const temp = join(folder, `.${indexName}.${randomBytes(6).toString('hex')}.partial`);
  await fs.writeFile(temp, `${JSON.stringify(index, null, 2)}\n`, { flag: 'wx' });
  await fs.rename(temp, path);
  return path;
}
