/**
 * Writes a sharded checkpoint whose headers are real and whose data is a sparse hole (ftruncate): a 16 GB
 * Llama-3-8B layout costs a few KB of disk, which is all a header-only benchmark needs.
 */
import { promises as fs, existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildHeader, tensorByteLength, TensorSpec } from '../../src/core/safetensors/writer';
import { planShards, shardFileName, writeShardIndex } from '../../src/core/safetensors/shards';

export async function writeSparseCheckpoint(folder: string, specs: readonly TensorSpec[], maxShardBytes: number): Promise<{ bytes: number }> {
  const total = specs.reduce((sum, s) => sum + tensorByteLength(s), 0);
  const marker = join(folder, '.complete');
  if (existsSync(marker)) return { bytes: total };
  await fs.rm(folder, { recursive: true, force: true });
  await fs.mkdir(folder, { recursive: true });
  const shards = planShards(specs, maxShardBytes);
  const weightMap = new Map<string, string>();
  for (let s = 0; s < shards.length; s++) {
    const name = shardFileName(s, shards.length);
    let offset = 0;
    const layout = shards[s]!.map((spec) => {
      const begin = offset;
      offset += tensorByteLength(spec);
      weightMap.set(spec.name, name);
      return { spec, begin, end: offset };
    });
    const header = buildHeader(layout, { format: 'pt' });
    const path = join(folder, name);
    await fs.writeFile(path, header);
    await fs.truncate(path, header.length + offset);
  }
  await writeShardIndex(folder, weightMap, total);
  await fs.writeFile(join(folder, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16' }));
  await fs.writeFile(marker, '');
  return { bytes: total };
}
