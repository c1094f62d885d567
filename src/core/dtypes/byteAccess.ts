/**
 * What the bulk converters (convert.ts decodes, encode.ts encodes) share: element/byte counts and argument
 * checks, and access to tensor bytes through aligned typed-array views — data at an odd offset goes through a
 * 1 MiB aligned scratch buffer, chunk by chunk, never as a whole.
 */
import {
  DTYPE_INFO,
  isDType,
  type DType,
} from './dtype';
import {
  DTypeError,
  LITTLE_ENDIAN,
} from './float';

export { DTypeError } from './float';
export type { DTypeErrorCode, EncodeOptions } from './float';


// ---------------------------------------------------------------------------------------------------------
// Sizes and checks
// ---------------------------------------------------------------------------------------------------------

export function checkDType(dtype: DType): void {
  if (!isDType(dtype)) throw new DTypeError(String(dtype), 'UnknownDType', 'not a safetensors dtype');
  if (!LITTLE_ENDIAN) throw new DTypeError(dtype, 'Host', 'bulk conversion needs a little-endian host');
}

export function checkCount(dtype: DType, count: number, what: string): void {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new DTypeError(dtype, 'ElementCount', `${what} ${count} is not a non-negative integer`);
  }
}

/** Bytes that `count` elements of `dtype` occupy (rounded up to whole bytes for F4 and F6). */
export function bytesForElements(dtype: DType, count: number): number {
  checkDType(dtype);
  checkCount(dtype, count, 'element count');
  const bits = DTYPE_INFO[dtype].bits;
  return bits % 8 === 0 ? count * (bits / 8) : Math.ceil((count * bits) / 8);
}

/**
 * How many elements `byteLength` bytes hold: byteLength / size for byte-aligned dtypes (a DTypeError when
 * it does not divide), and as many whole elements as fit for F4 (2 per byte) and F6 (⌊8·bytes/6⌋).
 */
export function elementsInBytes(dtype: DType, byteLength: number): number {
  checkDType(dtype);
  checkCount(dtype, byteLength, 'byte length');
  const bits = DTYPE_INFO[dtype].bits;
  if (bits % 8 !== 0) return Math.floor((byteLength * 8) / bits);
  const size = bits / 8;
  if (byteLength % size !== 0) {
    throw new DTypeError(dtype, 'ByteLength', `byte length ${byteLength} is not a multiple of the element size (${size} bytes)`);
  }
  return byteLength / size;
}

/** Element count for a decode: `count` when given (it must need exactly `byteLength` bytes), else from the bytes. */
export function decodeCount(dtype: DType, byteLength: number, count: number | undefined): number {
  if (count === undefined) return elementsInBytes(dtype, byteLength);
  const needed = bytesForElements(dtype, count);
  if (needed !== byteLength) {
    throw new DTypeError(dtype, 'ElementCount', `${count} elements take ${needed} bytes, but ${byteLength} bytes were given`);
  }
  return count;
}

export function outputFor<T extends Float32Array | Float64Array | Uint8Array>(dtype: DType, out: T | undefined, length: number, make: (n: number) => T): T {
  if (out === undefined) return make(length);
  if (out.length < length) {
    throw new DTypeError(dtype, 'OutputTooSmall', `the output holds ${out.length} ${out instanceof Uint8Array ? 'bytes' : 'elements'}, ${length} are needed`);
  }
  return out.length === length ? out : (out.subarray(0, length) as T);
}

// ---------------------------------------------------------------------------------------------------------
// Aligned access
// ---------------------------------------------------------------------------------------------------------

export const CHUNK_BYTES = 1 << 20;
let byteScratch: Uint8Array | undefined;
/** The module's one 1 MiB byte scratch (aligned copies, sub-byte encodes); callers never hold it across calls. */
export function byteScratchBuffer(): Uint8Array {
  return (byteScratch ??= new Uint8Array(CHUNK_BYTES));
}

/**
 * Runs `kernel(src, first, count)` over element ranges of `bytes` (elements of `size` bytes) such that
 * `src` starts at an offset that is a multiple of `align` (typed-array views need that). Aligned input runs
 * in one call on the input itself; misaligned input is copied through an aligned scratch buffer in 1 MiB
 * chunks.
 */
export function forAlignedInput(bytes: Uint8Array, size: number, align: number, n: number, kernel: (src: Uint8Array, first: number, count: number) => void): void {
  if (bytes.byteOffset % align === 0) {
    kernel(bytes, 0, n);
    return;
  }
  const scratch = (byteScratch ??= new Uint8Array(CHUNK_BYTES));
  const per = CHUNK_BYTES / size;
  for (let first = 0; first < n; first += per) {
    const count = Math.min(per, n - first);
    scratch.set(bytes.subarray(first * size, (first + count) * size));
    kernel(scratch, first, count);
  }
}

/** The output counterpart: `kernel(dst, first, count)` writes elements first..first+count into aligned `dst`. */
export function forAlignedOutput(out: Uint8Array, size: number, n: number, kernel: (dst: Uint8Array, first: number, count: number) => void): void {
  if (out.byteOffset % size === 0) {
    kernel(out, 0, n);
    return;
  }
  const scratch = (byteScratch ??= new Uint8Array(CHUNK_BYTES));
  const per = CHUNK_BYTES / size;
  for (let first = 0; first < n; first += per) {
    const count = Math.min(per, n - first);
    kernel(scratch, first, count);
    out.set(scratch.subarray(0, count * size), first * size);
  }
}

export const u16 = (b: Uint8Array, n: number) => new Uint16Array(b.buffer, b.byteOffset, n);
export const i16 = (b: Uint8Array, n: number) => new Int16Array(b.buffer, b.byteOffset, n);
export const u32 = (b: Uint8Array, n: number) => new Uint32Array(b.buffer, b.byteOffset, n);
export const i32 = (b: Uint8Array, n: number) => new Int32Array(b.buffer, b.byteOffset, n);
export const f32 = (b: Uint8Array, n: number) => new Float32Array(b.buffer, b.byteOffset, n);
export const f64 = (b: Uint8Array, n: number) => new Float64Array(b.buffer, b.byteOffset, n);
/** A Uint32Array over elements o..o+n of a Float32Array (same bits). */
export const bitsOf = (a: Float32Array, o: number, n: number) => new Uint32Array(a.buffer, a.byteOffset + o * 4, n);

export const TWO32 = 4294967296;
