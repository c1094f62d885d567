/**
 * Streaming safetensors writer: the header first (so the tensor list must be known up front), then each
 * tensor's bytes streamed in order, into a temporary file beside the target that is renamed over the final
 * name only when every byte is written and flushed. A failed or abandoned write leaves no file under the
 * final name. File-system failures are SafetensorsError 'Io' naming the file, with the errno error as `cause`
 * (a job reports ENOSPC, EACCES, … from it: jobs/jobErrors.ts).
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DTYPE_INFO, DType } from '../dtypes/dtype';
import { SafetensorsError } from './errors';
import { MAX_HEADER_LENGTH } from './header';

export interface TensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export interface WriterOptions {
  metadata?: Record<string, string>;
  /**
   * 'reference' lays tensors out as the reference writer does (dtype alignment order descending, then
   * name), which keeps 8-byte types naturally aligned; 'given' keeps the caller's order (useful when
   * producing tensors layer by layer).
   */
  order?: 'reference' | 'given';
}

export function tensorByteLength(spec: TensorSpec, file = '<writer>'): number {
  let numel = 1n;
  for (const dim of spec.shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new SafetensorsError('InvalidTensorEntry', file, `shape [${spec.shape.join(', ')}] has a dimension that is not a non-negative integer`, spec.name);
    }
    numel *= BigInt(dim);
  }
  const bits = numel * BigInt(DTYPE_INFO[spec.dtype].bits);
  if (bits % 8n !== 0n) {
    throw new SafetensorsError('MisalignedSlice', file, `${numel} elements of ${spec.dtype} do not fill whole bytes`, spec.name);
  }
  const bytes = bits / 8n;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new SafetensorsError('ValidationOverflow', file, 'tensor too large', spec.name);
  return Number(bytes);
}

/** Orders specs the way the reference writer does (docs/formats.md §1.4). */
export function referenceOrder(specs: readonly TensorSpec[]): TensorSpec[] {
  return [...specs].sort((a, b) => DTYPE_INFO[b.dtype].order - DTYPE_INFO[a.dtype].order || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Builds the header bytes (length prefix + JSON padded with spaces to a multiple of 8) for a layout. */
export function buildHeader(
  layout: readonly { spec: TensorSpec; begin: number; end: number }[],
  metadata: Record<string, string> | undefined,
  file = '<writer>',
): Uint8Array {
  // No prototype: a tensor may legally be called "__proto__".
  const header: Record<string, unknown> = Object.create(null);
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  for (const { spec, begin, end } of layout) {
    if (spec.name === '__metadata__') throw new SafetensorsError('InvalidTensorEntry', file, 'a tensor cannot be named __metadata__', spec.name);
    header[spec.name] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [begin, end] };
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_LENGTH) throw new SafetensorsError('HeaderTooLarge', file, `header would be ${padded} bytes, over the ${MAX_HEADER_LENGTH}-byte limit`);
  const bytes = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(padded), true);
  bytes.set(json, 8);
  return bytes;
}

function ioError(path: string, detail: string, cause: unknown): SafetensorsError {
  return Object.assign(new SafetensorsError('Io', path, detail), { cause });
}

export class SafetensorsWriter {
  private current = 0;
  private writtenInCurrent = 0;
  private position: number;
  private finished = false;

  private constructor(
    readonly path: string,
    private readonly tempPath: string,
    private readonly handle: fs.FileHandle,
    readonly layout: readonly { spec: TensorSpec; begin: number; end: number }[],
    headerSize: number,
  ) {
    this.position = headerSize;
  }

  /** Starts a file at `path` (written under a temporary name until `finish`). */
  static async create(path: string, specs: readonly TensorSpec[], options: WriterOptions = {}): Promise<SafetensorsWriter> {
    const names = new Set<string>();
    for (const spec of specs) {
      if (names.has(spec.name)) throw new SafetensorsError('DuplicateKey', path, 'tensor listed twice', spec.name);
      names.add(spec.name);
    }
    const ordered = options.order === 'given' ? [...specs] : referenceOrder(specs);
    let offset = 0;
    const layout = ordered.map((spec) => {
      const begin = offset;
      offset += tensorByteLength(spec, path);
      return { spec, begin, end: offset };
    });
    const header = buildHeader(layout, options.metadata, path);
    const tempPath = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.partial`);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(tempPath, 'wx');
    } catch (error) {
      throw ioError(path, `cannot create ${tempPath}: ${(error as Error).message}`, error);
    }
    const writer = new SafetensorsWriter(path, tempPath, handle, layout, header.length);
    try {
      await writer.writeAt(header, 0);
      writer.skipEmpty();
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return writer;
  }

  /** The tensor whose bytes are expected next, or undefined when all are written. */
  get nextTensor(): TensorSpec | undefined {
    return this.layout[this.current]?.spec;
  }

  /** The order in which `write` expects tensors. */
  get order(): readonly TensorSpec[] {
    return this.layout.map((l) => l.spec);
  }

  private async writeAt(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < bytes.length) {
        const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, position + done);
        done += bytesWritten;
      }
    } catch (error) {
      throw ioError(this.path, `could not write ${bytes.length - done} bytes at offset ${position + done}: ${(error as Error).message}`, error);
    }
  }

  private skipEmpty(): void {
    while (this.current < this.layout.length) {
      const { begin, end } = this.layout[this.current]!;
      if (end - begin > this.writtenInCurrent) return;
      this.current++;
      this.writtenInCurrent = 0;
    }
  }

  /**
   * Appends bytes of tensor `name`, which must be the next tensor in order. A tensor may be written in
   * several calls (streamed); the writer moves on once its byte count is complete.
   */
  async write(name: string, bytes: Uint8Array): Promise<void> {
    if (this.finished) throw new SafetensorsError('Io', this.path, 'write after finish/abort', name);
    const slot = this.layout[this.current];
    if (!slot) throw new SafetensorsError('RangeOutOfBounds', this.path, 'all tensors are already written', name);
    if (slot.spec.name !== name) {
      throw new SafetensorsError('RangeOutOfBounds', this.path, `expected bytes of ${JSON.stringify(slot.spec.name)} next (tensors are written in layout order)`, name);
    }
    const remaining = slot.end - slot.begin - this.writtenInCurrent;
    if (bytes.length > remaining) {
      throw new SafetensorsError('RangeOutOfBounds', this.path, `${bytes.length} bytes given but only ${remaining} remain of its ${slot.end - slot.begin}`, name);
    }
    await this.writeAt(bytes, this.position);
    this.position += bytes.length;
    this.writtenInCurrent += bytes.length;
    this.skipEmpty();
  }

  /** Flushes, closes and renames the file to its final name. Throws if any tensor is incomplete. */
  async finish(): Promise<void> {
    if (this.current < this.layout.length) {
      const slot = this.layout[this.current]!;
      await this.abort();
      throw new SafetensorsError('MetadataIncompleteBuffer', this.path, `finished with ${slot.end - slot.begin - this.writtenInCurrent} bytes of this tensor (and all later ones) unwritten`, slot.spec.name);
    }
    this.finished = true;
    try {
      await this.handle.sync();
      await this.handle.close();
      await fs.rename(this.tempPath, this.path);
    } catch (error) {
      await fs.rm(this.tempPath, { force: true });
      throw ioError(this.path, `could not complete the file: ${(error as Error).message}`, error);
    }
  }

  /** Discards everything written; nothing is left under either name. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.tempPath, { force: true });
  }
}

/** Writes a whole small file in one go (reference layout). For large tensors stream with SafetensorsWriter. */
export async function writeSafetensors(
  path: string,
  tensors: readonly (TensorSpec & { data: Uint8Array })[],
  options: WriterOptions = {},
): Promise<void> {
  const writer = await SafetensorsWriter.create(path, tensors, options);
  try {
    const byName = new Map(tensors.map((t) => [t.name, t]));
    for (const spec of writer.order) {
      const tensor = byName.get(spec.name)!;
      const expected = tensorByteLength(spec, path);
      if (tensor.data.length !== expected) {
        throw new SafetensorsError('TensorInvalidInfo', path, `data is ${tensor.data.length} bytes, shape and dtype need ${expected}`, spec.name);
      }
      if (expected > 0) await writer.write(spec.name, tensor.data);
    }
    await writer.finish();
  } catch (error) {
    await writer.abort();
    throw error;
  }
}
