/**
 * One logical checkpoint over one safetensors file, a sharded set described by
 * `*.safetensors.index.json`, or a folder of shards. Only headers are read on open. Inconsistencies between
 * the index and the shards (missing shards or tensors, tensors in two shards, tensors no index entry names)
 * are collected as `problems` instead of thrown, so a damaged checkpoint can still be inspected; only a
 * checkpoint with nothing readable at all is an error.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { SafetensorsError } from './errors';
import { GitLfsPointerError } from './lfs';
import { TensorInfo } from './header';
import { JsonValue, isJsonObject, jsonTypeName, parseStrictJson } from './json';
import { NO_SUCH_FILE, ReadOptions, SafetensorsFile } from './reader';

export const INDEX_FILE_PATTERN = /\.safetensors\.index\.json$/;
export const SHARD_FILE_PATTERN = /^(?<prefix>(?<base>.*?)[_-])(?<shard>\d{5,6})-of-(?<total>\d{5,6})\.safetensors$/;
/** Bound on distinct shards (as in the Hub's TypeScript reader): guards against hostile index files. */
export const MAX_SHARDS = 10_000;
/** Bound on simultaneously open shard descriptors; the rest are reopened on demand. */
const MAX_OPEN_HANDLES = 64;

export type CheckpointProblemKind =
  | 'invalid-index-entry'
  | 'unsafe-shard-name'
  | 'missing-shard'
  | 'unreadable-shard'
  | 'missing-tensor'
  | 'unmapped-tensor'
  | 'duplicate-tensor'
  | 'shard-set-incomplete'
  | 'total-size-mismatch'
  | 'header-warning'
  | 'lfs-pointer'
  | 'unreadable-index';

export interface CheckpointProblem {
  readonly kind: CheckpointProblemKind;
  readonly severity: 'error' | 'warning';
  readonly message: string;
  readonly shard?: string;
  readonly tensor?: string;
}

export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(readonly code: 'NotFound' | 'NoWeights' | 'InvalidIndex' | 'TooManyShards' | 'GitLfsPointers', readonly path: string, detail: string) {
    super(`${path}: ${detail}`);
  }
}

export interface ShardInfo {
  /** File name relative to the checkpoint folder. */
  readonly name: string;
  readonly path: string;
  /** Present when the shard's header was read and validated. */
  readonly file?: SafetensorsFile;
  /** Present when the shard could not be read (missing, corrupt). */
  readonly error?: Error;
  readonly fileSize: number;
}

export interface CheckpointTensor extends TensorInfo {
  /** The shard (file name relative to the checkpoint folder) holding the tensor. */
  readonly shard: string;
}

export type CheckpointLayout = 'single-file' | 'indexed' | 'folder-of-shards';

/** A single .safetensors file opened on its own that an index beside it lists as one shard of a checkpoint. */
export interface ShardOfIndex {
  /** The index that lists the file. */
  readonly index: string;
  /** Tensors the index maps to other shards: name → shard file name (from the index alone). */
  readonly elsewhere: ReadonlyMap<string, string>;
}

export class Checkpoint {
  private readonly byName: Map<string, { tensor: CheckpointTensor; file: SafetensorsFile }>;
  private readonly openOrder: SafetensorsFile[] = [];
  /** For a shard opened on its own beside its index: where the rest of the checkpoint is. */
  shardOf: ShardOfIndex | undefined;
  /**
   * For such a shard: tensors of other shards that belong to a module with tensors in this one (a weight
   * here, its scale in the next file). Readable like the shard's own, but not listed in `tensors`, which
   * stays what the file holds.
   */
  readonly companions: CheckpointTensor[] = [];
  private readonly neighbours: SafetensorsFile[] = [];

  private constructor(
    /** Folder holding the weights (and usually config.json). */
    readonly folder: string,
    readonly layout: CheckpointLayout,
    /** The index file, for an indexed checkpoint. */
    readonly indexPath: string | undefined,
    readonly shards: readonly ShardInfo[],
    /** All readable tensors, in shard order then data order. */
    readonly tensors: readonly CheckpointTensor[],
    resolved: Map<string, { tensor: CheckpointTensor; file: SafetensorsFile }>,
    /** The index's `metadata` (string/number values), or the single file's `__metadata__`. */
    readonly metadata: Readonly<Record<string, string | number>>,
    readonly problems: readonly CheckpointProblem[],
  ) {
    this.byName = resolved;
    for (const shard of shards) {
      if (shard.file) shard.file.onUse = (file) => this.touch(file);
    }
  }

  /** Opens a .safetensors file, a *.safetensors.index.json, or a folder. Reads headers only. */
  static async open(path: string): Promise<Checkpoint> {
    const absolute = resolve(path);
    let stat;
    try {
      stat = await fs.stat(absolute);
    } catch {
      throw new CheckpointError('NotFound', absolute, 'no such file or folder');
    }
    if (stat.isDirectory()) return Checkpoint.openFolder(absolute);
    if (INDEX_FILE_PATTERN.test(absolute)) return Checkpoint.openIndex(absolute);
    const file = await SafetensorsFile.open(absolute);
    const name = basename(absolute);
    const shard: ShardInfo = { name, path: absolute, file, fileSize: file.header.fileSize };
    const index = await findIndexListing(absolute);
    if (index) return Checkpoint.openShardOfIndex(index, shard, file);
    return Checkpoint.assemble(dirname(absolute), 'single-file', undefined, [shard], undefined, { ...(file.metadata ?? {}) }, []);
  }

  private static async openFolder(folder: string): Promise<Checkpoint> {
    const names = await fs.readdir(folder);
    const indexes = names.filter((n) => INDEX_FILE_PATTERN.test(n)).sort();
    if (indexes.length > 0) {
      // Prefer the conventional name when a folder holds several (e.g. model + consolidated).
      const preferred = indexes.includes('model.safetensors.index.json') ? 'model.safetensors.index.json' : indexes[0]!;
      return Checkpoint.openIndex(join(folder, preferred));
    }
    const files = names.filter((n) => n.endsWith('.safetensors')).sort();
    if (files.length === 0) throw new CheckpointError('NoWeights', folder, 'no .safetensors files in this folder');
    if (files.length > MAX_SHARDS) throw new CheckpointError('TooManyShards', folder, `${files.length} .safetensors files; at most ${MAX_SHARDS} are supported`);
    const problems: CheckpointProblem[] = [];
    const shards = await readShards(folder, files);
    checkShardSet(files, problems);
    const layout = files.length === 1 ? 'single-file' : 'folder-of-shards';
    const metadata = files.length === 1 ? { ...(shards[0]!.file?.metadata ?? {}) } : {};
    return Checkpoint.assemble(folder, layout, undefined, shards, undefined, metadata, problems);
  }

  /**
   * One shard opened on its own, read through the index that lists it: its tensors are the file's, and the
   * index says where every other tensor is, so nothing held by another shard reads as missing. Headers of
   * other shards are read only for modules split across files (their storage is judged from all parts).
   */
  private static async openShardOfIndex(indexPath: string, shard: ShardInfo, file: SafetensorsFile): Promise<Checkpoint> {
    const folder = dirname(shard.path);
    const metadata = { ...(file.metadata ?? {}) };
    let index: Awaited<ReturnType<typeof readIndex>>;
    try {
      index = await readIndex(indexPath);
    } catch (error) {
      const message = `${basename(indexPath)} lists this file as a shard but cannot be read (${error instanceof Error ? error.message : String(error)}); tensors of the other shards cannot be located`;
      return Checkpoint.assemble(folder, 'single-file', undefined, [shard], undefined, metadata, [{ kind: 'unreadable-index', severity: 'warning', message }]);
    }
    // Only this shard's agreement with the index is its own concern; the rest is reported with the whole checkpoint.
    const checkpoint = Checkpoint.assemble(folder, 'single-file', undefined, [shard], index.mapped, metadata, []);
    const elsewhere = new Map<string, string>();
    for (const [tensor, holder] of index.mapped) if (holder !== shard.name && !checkpoint.has(tensor)) elsewhere.set(tensor, holder);
    checkpoint.shardOf = { index: indexPath, elsewhere };

    const modules = new Set(checkpoint.tensors.map((t) => moduleOf(t.name)));
    const neighbourNames = [...new Set([...elsewhere].filter(([tensor]) => modules.has(moduleOf(tensor))).map(([, holder]) => holder))].sort();
    for (const neighbour of await readShards(folder, neighbourNames)) {
      // An unreadable neighbour leaves its tensors located by name only; it is reported with the whole checkpoint.
      if (!neighbour.file) continue;
      checkpoint.neighbours.push(neighbour.file);
      neighbour.file.onUse = (f) => checkpoint.touch(f);
      for (const info of neighbour.file.tensors) {
        if (elsewhere.get(info.name) !== neighbour.name || !modules.has(moduleOf(info.name))) continue;
        const { name, dtype, shape, numel, dataOffsets, byteLength, fileOffset } = info;
        const tensor: CheckpointTensor = { name, dtype, shape, numel, dataOffsets, byteLength, fileOffset, shard: neighbour.name };
        checkpoint.companions.push(tensor);
        checkpoint.byName.set(name, { tensor, file: neighbour.file });
      }
    }
    return checkpoint;
  }

  private static async openIndex(indexPath: string): Promise<Checkpoint> {
    const folder = dirname(indexPath);
    const { mapped, shardNames, metadata, problems } = await readIndex(indexPath);
    const shards = await readShards(folder, shardNames);
    checkShardSet(shardNames, problems);

    const checkpoint = Checkpoint.assemble(folder, 'indexed', indexPath, shards, mapped, metadata, problems);
    const totalSize = metadata.total_size;
    if (totalSize !== undefined) {
      const tensorBytes = checkpoint.tensors.reduce((sum, t) => sum + t.byteLength, 0);
      const fileBytes = shards.reduce((sum, s) => sum + s.fileSize, 0);
      const complete = shards.every((s) => s.file);
      // By convention total_size is the sum of tensor bytes; some tools write file sizes. Accept either.
      if (complete && typeof totalSize === 'number' && totalSize !== tensorBytes && totalSize !== fileBytes) {
        problems.push({ kind: 'total-size-mismatch', severity: 'warning', message: `index metadata.total_size is ${totalSize}, but the shards hold ${tensorBytes} bytes of tensors (${fileBytes} bytes of files)` });
      } else if (typeof totalSize !== 'number') {
        problems.push({ kind: 'total-size-mismatch', severity: 'warning', message: `index metadata.total_size should be an integer byte count, found ${JSON.stringify(totalSize)}` });
      }
    }
    return checkpoint;
  }

  private static assemble(
    folder: string,
    layout: CheckpointLayout,
    indexPath: string | undefined,
    shards: ShardInfo[],
    weightMap: Map<string, string> | undefined,
    metadata: Record<string, string | number>,
    problems: CheckpointProblem[],
  ): Checkpoint {
    const resolved = new Map<string, { tensor: CheckpointTensor; file: SafetensorsFile }>();
    const tensors: CheckpointTensor[] = [];
    const pointers: ShardInfo[] = [];
    for (const shard of shards) {
      if (shard.error instanceof GitLfsPointerError) {
        // Reported once for all such shards below: one cause, one thing to do.
        pointers.push(shard);
        continue;
      }
      if (!shard.file) {
        const missing = shard.error instanceof SafetensorsError && shard.error.code === 'Io' && shard.error.detail === NO_SUCH_FILE;
        problems.push({
          kind: missing ? 'missing-shard' : 'unreadable-shard',
          severity: 'error',
          shard: shard.name,
          message: missing ? `shard ${shard.name} is missing` : `shard ${shard.name} cannot be read: ${shard.error?.message}`,
        });
        continue;
      }
      for (const warning of shard.file.header.warnings) {
        problems.push({ kind: 'header-warning', severity: 'warning', shard: shard.name, message: `${shard.name}: ${warning}` });
      }
      for (const info of shard.file.tensors) {
        const existing = resolved.get(info.name);
        if (existing) {
          problems.push({
            kind: 'duplicate-tensor',
            severity: 'error',
            tensor: info.name,
            shard: shard.name,
            message: `tensor ${JSON.stringify(info.name)} is in both ${existing.tensor.shard} and ${shard.name}`,
          });
          // The index decides which copy is authoritative; without one, the first shard wins.
          if (weightMap?.get(info.name) !== shard.name) continue;
          tensors.splice(tensors.indexOf(existing.tensor), 1);
        }
        if (weightMap && !weightMap.has(info.name)) {
          problems.push({ kind: 'unmapped-tensor', severity: 'warning', tensor: info.name, shard: shard.name, message: `tensor ${JSON.stringify(info.name)} in ${shard.name} is not listed in the index's weight_map (loaders that follow the index will not see it)` });
        } else if (weightMap && weightMap.get(info.name) !== shard.name && !existing) {
          problems.push({ kind: 'unmapped-tensor', severity: 'warning', tensor: info.name, shard: shard.name, message: `tensor ${JSON.stringify(info.name)} is in ${shard.name}, but the index maps it to ${weightMap.get(info.name)}` });
        }
        // Spelt out rather than spread: V8's object spread dominated opening files of 100,000 tensors.
        const { name, dtype, shape, numel, dataOffsets, byteLength, fileOffset } = info;
        const tensor: CheckpointTensor = { name, dtype, shape, numel, dataOffsets, byteLength, fileOffset, shard: shard.name };
        tensors.push(tensor);
        resolved.set(info.name, { tensor, file: shard.file });
      }
    }
    if (weightMap) {
      const readable = new Set(shards.filter((s) => s.file).map((s) => s.name));
      for (const [name, shard] of weightMap) {
        if (!resolved.has(name) && readable.has(shard)) {
          problems.push({ kind: 'missing-tensor', severity: 'error', tensor: name, shard, message: `the index maps ${JSON.stringify(name)} to ${shard}, but that shard has no such tensor` });
        }
      }
    }
    if (pointers.length > 0) problems.push({ kind: 'lfs-pointer', severity: 'error', message: describeLfsPointers(folder, pointers) });
    if (tensors.length === 0 && shards.every((s) => !s.file)) {
      const first = shards[0]?.error;
      if (shards.length === 1 && first) throw first;
      if (pointers.length === shards.length) throw new CheckpointError('GitLfsPointers', indexPath ?? folder, describeLfsPointers(folder, pointers));
      throw new CheckpointError('NoWeights', indexPath ?? folder, `none of the ${shards.length} shard files could be read${first ? ` (first: ${first.message})` : ''}`);
    }
    return new Checkpoint(folder, layout, indexPath, shards, tensors, resolved, metadata, problems);
  }

  get totalBytes(): number {
    return this.tensors.reduce((sum, t) => sum + t.byteLength, 0);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  tensor(name: string): CheckpointTensor {
    const entry = this.byName.get(name);
    if (!entry) throw new SafetensorsError('TensorNotFound', this.indexPath ?? this.folder, 'no such tensor in this checkpoint', name);
    return entry.tensor;
  }

  /** The open file that holds a tensor (for callers that stream from it directly). */
  fileOf(name: string): SafetensorsFile {
    this.tensor(name);
    return this.byName.get(name)!.file;
  }

  readTensorRange(name: string, start: number, end: number, into?: Uint8Array): Promise<Uint8Array> {
    const { tensor, file } = this.entry(name);
    return file.readTensorRange(tensor, start, end, into);
  }

  readTensorBytes(name: string, options?: ReadOptions): Promise<Uint8Array> {
    const { tensor, file } = this.entry(name);
    return file.readTensorBytes(tensor, options);
  }

  chunks(name: string, options?: Parameters<SafetensorsFile['chunks']>[1]): AsyncGenerator<{ offset: number; bytes: Uint8Array }> {
    const { tensor, file } = this.entry(name);
    return file.chunks(tensor, options);
  }

  private entry(name: string): { tensor: CheckpointTensor; file: SafetensorsFile } {
    const entry = this.byName.get(name);
    if (!entry) throw new SafetensorsError('TensorNotFound', this.indexPath ?? this.folder, 'no such tensor in this checkpoint', name);
    return entry;
  }

  /** Keeps at most MAX_OPEN_HANDLES shard descriptors open, closing the least recently used. */
  private touch(file: SafetensorsFile): void {
    const at = this.openOrder.indexOf(file);
    if (at >= 0) this.openOrder.splice(at, 1);
    this.openOrder.push(file);
    while (this.openOrder.length > MAX_OPEN_HANDLES) {
      const evicted = this.openOrder.shift()!;
      void evicted.releaseHandle();
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.shards.map((s) => s.file?.close()), ...this.neighbours.map((f) => f.close())]);
    this.openOrder.length = 0;
  }
}

/** The module a tensor belongs to: its name without the last component (`lm_head.weight` → `lm_head`). */
function moduleOf(tensor: string): string {
  const dot = tensor.lastIndexOf('.');
  return dot < 0 ? tensor : tensor.slice(0, dot);
}

/** One message for every shard that is a Git LFS pointer: which files, how large the real ones are, what to run. */
function describeLfsPointers(folder: string, pointers: readonly ShardInfo[]): string {
  const listed = pointers.slice(0, 10).map((s) => `${s.name} (${(s.error as GitLfsPointerError).pointer.size.toLocaleString('en-US')} bytes)`);
  const more = pointers.length > listed.length ? ` and ${pointers.length - listed.length} more` : '';
  const total = pointers.reduce((sum, s) => sum + (s.error as GitLfsPointerError).pointer.size, 0);
  const these = pointers.length === 1 ? 'shard file is a Git LFS pointer' : 'shard files are Git LFS pointers';
  return `${pointers.length} ${these}, not weights: ${listed.join(', ')}${more}; the ${total.toLocaleString('en-US')} bytes ${pointers.length === 1 ? 'it stands' : 'they stand'} for were not downloaded; run \`git lfs pull\` in ${folder}`;
}

/** The index's weight map (tensor → shard), its shard names in order, its metadata and its problems. */
async function readIndex(indexPath: string): Promise<{ mapped: Map<string, string>; shardNames: string[]; metadata: Record<string, string | number>; problems: CheckpointProblem[] }> {
  let text: string;
  try {
    text = await fs.readFile(indexPath, 'utf8');
  } catch (error) {
    throw new CheckpointError('NotFound', indexPath, `cannot read the index: ${(error as Error).message}`);
  }
  let root: JsonValue;
  try {
    root = parseStrictJson(text);
  } catch (error) {
    throw new CheckpointError('InvalidIndex', indexPath, `index is not valid JSON: ${(error as Error).message}`);
  }
  if (!isJsonObject(root)) throw new CheckpointError('InvalidIndex', indexPath, `index must be a JSON object, found ${jsonTypeName(root)}`);
  const weightMap = root.get('weight_map');
  if (!isJsonObject(weightMap)) {
    throw new CheckpointError('InvalidIndex', indexPath, `"weight_map" must be an object mapping tensor names to shard files, found ${jsonTypeName(weightMap)}`);
  }

  const problems: CheckpointProblem[] = [];
  const metadata: Record<string, string | number> = {};
  const rawMetadata = root.get('metadata');
  if (isJsonObject(rawMetadata)) {
    for (const [key, value] of rawMetadata) {
      if (typeof value === 'string' || typeof value === 'number') metadata[key] = value;
    }
  }

  const mapped = new Map<string, string>();
  const shardNames: string[] = [];
  const seenShards = new Set<string>();
  for (const [tensor, shard] of weightMap) {
    if (typeof shard !== 'string') {
      problems.push({ kind: 'invalid-index-entry', severity: 'error', tensor, message: `weight_map entry for ${JSON.stringify(tensor)} must be a file name, found ${jsonTypeName(shard)}` });
      continue;
    }
    if (shard.includes('..') || shard.startsWith('/') || shard.includes('\\') || shard.includes('://') || shard.includes('/')) {
      problems.push({ kind: 'unsafe-shard-name', severity: 'error', tensor, shard, message: `weight_map names ${JSON.stringify(shard)} for ${JSON.stringify(tensor)}: shard files must be plain names in the checkpoint folder` });
      continue;
    }
    mapped.set(tensor, shard);
    if (!seenShards.has(shard)) {
      seenShards.add(shard);
      shardNames.push(shard);
      if (shardNames.length > MAX_SHARDS) throw new CheckpointError('TooManyShards', indexPath, `weight_map names more than ${MAX_SHARDS} shard files`);
    }
  }
  shardNames.sort();
  return { mapped, shardNames, metadata, problems };
}

async function readShards(folder: string, names: readonly string[]): Promise<ShardInfo[]> {
  const shards: ShardInfo[] = new Array(names.length);
  let next = 0;
  // Headers are small; a handful of concurrent reads hides disk latency without flooding descriptors.
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const i = next++;
      const name = names[i]!;
      const path = join(folder, name);
      try {
        const file = await SafetensorsFile.open(path);
        shards[i] = { name, path, file, fileSize: file.header.fileSize };
      } catch (error) {
        shards[i] = { name, path, error: error as Error, fileSize: 0 };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, names.length) }, worker));
  return shards;
}

/** Flags gaps in a numbered shard set (model-00002-of-00004 without model-00003-of-00004, …). */
function checkShardSet(names: readonly string[], problems: CheckpointProblem[]): void {
  const sets = new Map<string, { total: number; present: Set<number> }>();
  for (const name of names) {
    const match = SHARD_FILE_PATTERN.exec(name);
    if (!match?.groups) continue;
    const key = `${match.groups.prefix}|${match.groups.total}`;
    const set = sets.get(key) ?? { total: Number(match.groups.total), present: new Set<number>() };
    set.present.add(Number(match.groups.shard));
    sets.set(key, set);
  }
  for (const [key, { total, present }] of sets) {
    const missing: number[] = [];
    for (let i = 1; i <= total && missing.length < 10; i++) if (!present.has(i)) missing.push(i);
    if (missing.length > 0) {
      const prefix = key.split('|')[0];
      problems.push({
        kind: 'shard-set-incomplete',
        severity: 'error',
        message: `shard set ${prefix}NNNNN-of-${String(total).padStart(5, '0')} is missing shard${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`,
      });
    }
  }
}

/** If `file` is one shard of an indexed checkpoint, the index that lists it (to offer the whole checkpoint). */
export async function findIndexListing(file: string): Promise<string | undefined> {
  const folder = dirname(resolve(file));
  const name = basename(file);
  let entries: string[];
  try {
    entries = await fs.readdir(folder);
  } catch {
    return undefined;
  }
  for (const index of entries.filter((n) => INDEX_FILE_PATTERN.test(n)).sort()) {
    try {
      const text = await fs.readFile(join(folder, index), 'utf8');
      const parsed = JSON.parse(text) as { weight_map?: Record<string, unknown> };
      if (parsed.weight_map && Object.values(parsed.weight_map).includes(name)) return join(folder, index);
    } catch {
      // An unreadable index is reported when it is opened, not here.
    }
  }
  return undefined;
}
