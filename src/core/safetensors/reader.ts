/**
 * Lazy random access to one safetensors file: the header is read once; tensor bytes are read on demand
 * through a file handle at their offsets, in bounded chunks. Nothing here reads a whole file, and a whole
 * tensor is only allocated when the caller asks for it with `readTensorBytes`.
 */
import { promises as fs } from 'node:fs';
import { DTYPE_INFO } from '../dtypes/dtype';
import { SafetensorsError } from './errors';
import { GitLfsPointerError, MAX_LFS_POINTER_BYTES, mayBeGitLfsPointer, parseGitLfsPointer } from './lfs';
import { MAX_HEADER_LENGTH, SafetensorsHeader, TensorInfo, parseHeader, readHeaderLength } from './header';

/** Default chunk for streamed reads: large enough for full disk throughput, small enough to stay cache- and memory-friendly. */
export const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;

export interface ReadOptions {
  /** Refuse to allocate more than this many bytes in one call (a guard for callers that forget to stream). */
  maxBytes?: number;
}

/** Reads exactly `length` bytes at `position` (looping over short reads) into `target` at `targetOffset`. */
async function readFully(
  handle: fs.FileHandle,
  file: string,
  target: Uint8Array,
  targetOffset: number,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(target, targetOffset + done, length - done, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError('FileChanged', file, `unexpected end of file at byte ${position + done} (was the file truncated while open?)`);
    }
    done += bytesRead;
  }
}

/** The detail of an Io error for a file that does not exist (checkpoints report such shards as missing). */
export const NO_SUCH_FILE = 'no such file';

function ioError(file: string, error: unknown): SafetensorsError {
  const err = error as NodeJS.ErrnoException;
  const what = err.code === 'ENOENT' ? NO_SUCH_FILE : err.code === 'EACCES' ? 'permission denied' : err.code === 'EISDIR' ? 'is a directory, not a file' : err.message;
  return new SafetensorsError('Io', file, what);
}

/** Reads and validates only the header of a safetensors file: 8 + N bytes, whatever the file's size. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (error) {
    throw ioError(file, error);
  }
  try {
    return await readHeaderFromHandle(handle, file);
  } finally {
    await handle.close();
  }
}

async function readHeaderFromHandle(handle: fs.FileHandle, file: string): Promise<SafetensorsHeader> {
  let fileSize: number;
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new SafetensorsError('Io', file, 'not a regular file');
    fileSize = stat.size;
  } catch (error) {
    if (error instanceof SafetensorsError) throw error;
    throw ioError(file, error);
  }
  const prefix = new Uint8Array(Math.min(8, fileSize));
  await readFully(handle, file, prefix, 0, prefix.length, 0);
  if (fileSize < MAX_LFS_POINTER_BYTES && mayBeGitLfsPointer(prefix)) {
    const whole = new Uint8Array(fileSize);
    await readFully(handle, file, whole, 0, fileSize, 0);
    const pointer = parseGitLfsPointer(whole);
    if (pointer) throw new GitLfsPointerError(file, pointer);
  }
  const headerLength = readHeaderLength(file, prefix, fileSize);
  // readHeaderLength bounds headerLength by MAX_HEADER_LENGTH and by the file size, so this allocation is bounded.
  const headerBytes = new Uint8Array(Math.min(headerLength, MAX_HEADER_LENGTH));
  await readFully(handle, file, headerBytes, 0, headerLength, 8);
  return parseHeader(file, headerBytes, fileSize);
}

/**
 * One open safetensors file. The file handle is opened lazily on the first data read and can be released
 * (`releaseHandle`) by a pool that limits how many shards keep a descriptor open; it reopens on demand.
 */
export class SafetensorsFile {
  private handle: fs.FileHandle | undefined;
  private opening: Promise<fs.FileHandle> | undefined;
  /** Called whenever the file is touched, so a handle pool can track recency. */
  onUse: ((file: SafetensorsFile) => void) | undefined;

  private constructor(readonly path: string, readonly header: SafetensorsHeader) {}

  static async open(path: string): Promise<SafetensorsFile> {
    return new SafetensorsFile(path, await readSafetensorsHeader(path));
  }

  get tensors(): readonly TensorInfo[] {
    return this.header.tensors;
  }

  get metadata(): Readonly<Record<string, string>> | undefined {
    return this.header.metadata;
  }

  tensor(name: string): TensorInfo {
    const info = this.header.byName.get(name);
    if (!info) throw new SafetensorsError('TensorNotFound', this.path, 'no such tensor in this file', name);
    return info;
  }

  get hasOpenHandle(): boolean {
    return this.handle !== undefined;
  }

  private async ensureHandle(): Promise<fs.FileHandle> {
    this.onUse?.(this);
    if (this.handle) return this.handle;
    if (!this.opening) {
      this.opening = (async () => {
        let handle: fs.FileHandle;
        try {
          handle = await fs.open(this.path, 'r');
        } catch (error) {
          throw ioError(this.path, error);
        }
        // The header was validated against the file size when we opened it; a different size now means the
        // file changed under us and the offsets can no longer be trusted.
        const { size } = await handle.stat();
        if (size !== this.header.fileSize) {
          await handle.close();
          throw new SafetensorsError('FileChanged', this.path, `file size changed from ${this.header.fileSize} to ${size} bytes since its header was read; reopen it`);
        }
        this.handle = handle;
        return handle;
      })().finally(() => {
        this.opening = undefined;
      });
    }
    return this.opening;
  }

  /** Closes the descriptor; the next read reopens it. */
  async releaseHandle(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }

  async close(): Promise<void> {
    await this.releaseHandle();
  }

  /**
   * Reads bytes [start, end) of a tensor's data (relative to the tensor's first byte). Use it for pages of
   * a large tensor; `into` lets callers reuse a buffer.
   */
  async readTensorRange(tensor: TensorInfo | string, start: number, end: number, into?: Uint8Array): Promise<Uint8Array> {
    const info = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > info.byteLength) {
      throw new SafetensorsError('RangeOutOfBounds', this.path, `byte range [${start}, ${end}) is outside the tensor's ${info.byteLength} bytes`, info.name);
    }
    const length = end - start;
    if (into && into.length < length) {
      throw new SafetensorsError('RangeOutOfBounds', this.path, `target buffer holds ${into.length} bytes, ${length} needed`, info.name);
    }
    const target = into ? into.subarray(0, length) : new Uint8Array(length);
    const handle = await this.ensureHandle();
    await readFully(handle, this.path, target, 0, length, info.fileOffset + start);
    return target;
  }

  /** Reads a whole tensor. Refuses when it is larger than `options.maxBytes` (default: no limit). */
  async readTensorBytes(tensor: TensorInfo | string, options: ReadOptions = {}): Promise<Uint8Array> {
    const info = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    if (options.maxBytes !== undefined && info.byteLength > options.maxBytes) {
      throw new SafetensorsError('RangeOutOfBounds', this.path, `tensor is ${info.byteLength} bytes, more than the ${options.maxBytes}-byte limit for a whole read; stream it instead`, info.name);
    }
    return this.readTensorRange(info, 0, info.byteLength);
  }

  /**
   * Streams a tensor (or the byte range [start, end) of it) in chunks of at most `chunkBytes`, each a whole
   * number of elements. The same buffer is reused between chunks: copy a chunk if you keep it past the
   * next iteration.
   */
  async *chunks(
    tensor: TensorInfo | string,
    options: { chunkBytes?: number; start?: number; end?: number; reuseBuffer?: boolean } = {},
  ): AsyncGenerator<{ offset: number; bytes: Uint8Array }> {
    const info = typeof tensor === 'string' ? this.tensor(tensor) : tensor;
    const start = options.start ?? 0;
    const end = options.end ?? info.byteLength;
    // Sub-byte dtypes (F4, F6) chunk on byte boundaries; callers decoding them align to whole elements.
    const elementBytes = Math.max(1, Math.floor(DTYPE_INFO[info.dtype].bits / 8));
    const chunk = Math.max(elementBytes, Math.floor((options.chunkBytes ?? DEFAULT_CHUNK_BYTES) / elementBytes) * elementBytes);
    const reuse = options.reuseBuffer ?? true;
    const buffer = reuse ? new Uint8Array(Math.min(chunk, Math.max(0, end - start))) : undefined;
    for (let offset = start; offset < end; offset += chunk) {
      const stop = Math.min(end, offset + chunk);
      yield { offset, bytes: await this.readTensorRange(info, offset, stop, buffer) };
    }
  }
}
