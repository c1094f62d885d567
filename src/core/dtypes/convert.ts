/**
 * Bulk conversion between raw little-endian tensor bytes (as stored in safetensors) and Float32Array /
 * Float64Array. These are hot paths over multi-GB tensors:
 * - byte-aligned data is read through typed-array views (the host is little-endian); data at an odd offset
 *   is copied through a 1 MiB aligned scratch buffer, chunk by chunk, never as a whole;
 * - no allocation per element: the only allocations are the output (when `out` is not given) and a few
 *   typed-array views per call or per chunk;
 * - 8- and 16-bit floats decode by table lookup or bit shifts on integer views, so bf16 → f32 is a copy
 *   with a shift and NaN payloads survive bit-exactly.
 *
 * Sub-byte layouts: F4 packs 2 elements per byte, the even index in the low nibble (docs/formats.md §3.9);
 * F6_E2M3 / F6_E3M2 are a dense LSB-first 6-bit bitstream (element i occupies stream bits 6i..6i+5, stream
 * bit j being bit j%8 of byte ⌊j/8⌋; 4 elements per 3 bytes). Their element count cannot always be told from
 * the byte length (1 byte of F4 holds 1 or 2 elements), so the decoders take an optional `count`.
 *
 * `out` buffers must not overlap the input.
 */
import { DTYPE_INFO, isDType, type DType } from './dtype';
import {
  BF16_FORMAT,
  DTypeError,
  E4M3_FORMAT,
  E4M3FNUZ_FORMAT,
  E5M2_FORMAT,
  E5M2FNUZ_FORMAT,
  E4M3_TO_F32,
  E4M3FNUZ_TO_F32,
  E5M2_TO_F32,
  E5M2FNUZ_TO_F32,
  E8M0_TO_F32,
  F16_FORMAT,
  F4_FORMAT,
  F4_TO_F32,
  F6_E2M3_FORMAT,
  F6_E2M3_TO_F32,
  F6_E3M2_FORMAT,
  F6_E3M2_TO_F32,
  LITTLE_ENDIAN,
  MiniFloatFormat,
  encodeE8M0Value,
  encodeMini,
  encodeMiniF32Bits,
  f16ToF32Table,
  roundHalfEven,
  type EncodeOptions,
} from './float';

export { DTypeError } from './float';
export type { DTypeErrorCode, EncodeOptions } from './float';

// ---------------------------------------------------------------------------------------------------------
// Sizes and checks
// ---------------------------------------------------------------------------------------------------------

function checkDType(dtype: DType): void {
  if (!isDType(dtype)) throw new DTypeError(String(dtype), 'UnknownDType', 'not a safetensors dtype');
  if (!LITTLE_ENDIAN) throw new DTypeError(dtype, 'Host', 'bulk conversion needs a little-endian host');
}

function checkCount(dtype: DType, count: number, what: string): void {
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
function decodeCount(dtype: DType, byteLength: number, count: number | undefined): number {
  if (count === undefined) return elementsInBytes(dtype, byteLength);
  const needed = bytesForElements(dtype, count);
  if (needed !== byteLength) {
    throw new DTypeError(dtype, 'ElementCount', `${count} elements take ${needed} bytes, but ${byteLength} bytes were given`);
  }
  return count;
}

function outputFor<T extends Float32Array | Float64Array | Uint8Array>(dtype: DType, out: T | undefined, length: number, make: (n: number) => T): T {
  if (out === undefined) return make(length);
  if (out.length < length) {
    throw new DTypeError(dtype, 'OutputTooSmall', `the output holds ${out.length} ${out instanceof Uint8Array ? 'bytes' : 'elements'}, ${length} are needed`);
  }
  return out.length === length ? out : (out.subarray(0, length) as T);
}

// ---------------------------------------------------------------------------------------------------------
// Aligned access
// ---------------------------------------------------------------------------------------------------------

const CHUNK_BYTES = 1 << 20;
let byteScratch: Uint8Array | undefined;
let f32Scratch: Float32Array | undefined;

/**
 * Runs `kernel(src, first, count)` over element ranges of `bytes` (elements of `size` bytes) such that
 * `src` starts at an offset that is a multiple of `align` (typed-array views need that). Aligned input runs
 * in one call on the input itself; misaligned input is copied through an aligned scratch buffer in 1 MiB
 * chunks.
 */
function forAlignedInput(bytes: Uint8Array, size: number, align: number, n: number, kernel: (src: Uint8Array, first: number, count: number) => void): void {
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
function forAlignedOutput(out: Uint8Array, size: number, n: number, kernel: (dst: Uint8Array, first: number, count: number) => void): void {
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

const u16 = (b: Uint8Array, n: number) => new Uint16Array(b.buffer, b.byteOffset, n);
const i16 = (b: Uint8Array, n: number) => new Int16Array(b.buffer, b.byteOffset, n);
const u32 = (b: Uint8Array, n: number) => new Uint32Array(b.buffer, b.byteOffset, n);
const i32 = (b: Uint8Array, n: number) => new Int32Array(b.buffer, b.byteOffset, n);
const f32 = (b: Uint8Array, n: number) => new Float32Array(b.buffer, b.byteOffset, n);
const f64 = (b: Uint8Array, n: number) => new Float64Array(b.buffer, b.byteOffset, n);
/** A Uint32Array over elements o..o+n of a Float32Array (same bits). */
const bitsOf = (a: Float32Array, o: number, n: number) => new Uint32Array(a.buffer, a.byteOffset + o * 4, n);

const TWO32 = 4294967296;

// ---------------------------------------------------------------------------------------------------------
// Decode
// ---------------------------------------------------------------------------------------------------------

function fp8Table(dtype: DType): Uint32Array | undefined {
  let table: Float32Array | undefined;
  switch (dtype) {
    case 'F8_E4M3':
      table = E4M3_TO_F32;
      break;
    case 'F8_E5M2':
      table = E5M2_TO_F32;
      break;
    case 'F8_E4M3FNUZ':
      table = E4M3FNUZ_TO_F32;
      break;
    case 'F8_E5M2FNUZ':
      table = E5M2FNUZ_TO_F32;
      break;
    case 'F8_E8M0':
      table = E8M0_TO_F32;
      break;
    default:
      return undefined;
  }
  return new Uint32Array(table.buffer, table.byteOffset, table.length);
}

/**
 * bf16 → f32 bits: each input word holds two bf16 (little-endian: element 2j in the low half). Unrolled to
 * 8 elements per iteration, which is what lets V8 reach ~1.7 GB/s of input here. `src` is 4-byte aligned.
 */
function bf16Kernel(src: Uint8Array, dst: Uint32Array, n: number): void {
  const words = new Int32Array(src.buffer, src.byteOffset, n >> 1);
  const d = new Int32Array(dst.buffer, dst.byteOffset, n);
  const unrolled = words.length & ~3;
  let i = 0;
  for (let j = 0; j < unrolled; j += 4, i += 8) {
    const a = words[j]!;
    const b = words[j + 1]!;
    const c = words[j + 2]!;
    const e = words[j + 3]!;
    d[i] = a << 16;
    d[i + 1] = a & -65536;
    d[i + 2] = b << 16;
    d[i + 3] = b & -65536;
    d[i + 4] = c << 16;
    d[i + 5] = c & -65536;
    d[i + 6] = e << 16;
    d[i + 7] = e & -65536;
  }
  for (let j = unrolled; j < words.length; j++, i += 2) {
    const a = words[j]!;
    d[i] = a << 16;
    d[i + 1] = a & -65536;
  }
  if (n & 1) d[n - 1] = (src[2 * n - 2]! | (src[2 * n - 1]! << 8)) << 16;
}

/** f16 → f32 bits through the 65536-entry table, two elements per 32-bit read. `src` is 4-byte aligned. */
function f16Kernel(src: Uint8Array, table: Uint32Array, dst: Uint32Array, n: number): void {
  const words = new Int32Array(src.buffer, src.byteOffset, n >> 1);
  const d = new Int32Array(dst.buffer, dst.byteOffset, n);
  const pairs = words.length & ~1;
  let i = 0;
  for (let j = 0; j < pairs; j += 2, i += 4) {
    const a = words[j]!;
    const b = words[j + 1]!;
    d[i] = table[a & 0xffff]!;
    d[i + 1] = table[a >>> 16]!;
    d[i + 2] = table[b & 0xffff]!;
    d[i + 3] = table[b >>> 16]!;
  }
  for (let j = pairs; j < words.length; j++, i += 2) {
    const a = words[j]!;
    d[i] = table[a & 0xffff]!;
    d[i + 1] = table[a >>> 16]!;
  }
  if (n & 1) d[n - 1] = table[src[2 * n - 2]! | (src[2 * n - 1]! << 8)]!;
}

/** 8-bit code → f32 bits through a 256-entry table, four elements per 32-bit read. `src` is 4-byte aligned. */
function byteTableKernel(src: Uint8Array, table: Uint32Array, dst: Uint32Array, n: number): void {
  const words = new Int32Array(src.buffer, src.byteOffset, n >> 2);
  const d = new Int32Array(dst.buffer, dst.byteOffset, n);
  let i = 0;
  for (let j = 0; j < words.length; j++, i += 4) {
    const w = words[j]!;
    d[i] = table[w & 255]!;
    d[i + 1] = table[(w >>> 8) & 255]!;
    d[i + 2] = table[(w >>> 16) & 255]!;
    d[i + 3] = table[w >>> 24]!;
  }
  for (; i < n; i++) d[i] = table[src[i]!]!;
}

function decodeF6(bytes: Uint8Array, table: Float32Array, out: Float32Array, n: number): void {
  const groups = n >> 2;
  let b = 0;
  let o = 0;
  for (let g = 0; g < groups; g++, b += 3, o += 4) {
    const b0 = bytes[b]!;
    const b1 = bytes[b + 1]!;
    const b2 = bytes[b + 2]!;
    out[o] = table[b0 & 63]!;
    out[o + 1] = table[(b0 >> 6) | ((b1 & 15) << 2)]!;
    out[o + 2] = table[(b1 >> 4) | ((b2 & 3) << 4)]!;
    out[o + 3] = table[b2 >> 2]!;
  }
  for (let i = groups * 4; i < n; i++) {
    const bit = i * 6;
    const at = bit >> 3;
    const word = bytes[at]! | (at + 1 < bytes.length ? bytes[at + 1]! << 8 : 0);
    out[i] = table[(word >> (bit & 7)) & 63]!;
  }
}

/**
 * Decodes little-endian `bytes` of `dtype` to float32 (into `out` when given; it must hold at least the
 * element count, and the returned array is `out` or its prefix).
 *
 * Every float format up to 32 bits, BOOL (0/1) and the 8/16-bit integers are exact. I32/U32 and F64 round
 * once to nearest even. I64/U64 go through Number (exact below 2^53, then rounded to a double) and then to
 * float32, so above 2^24 they are rounded twice and may differ by one float32 ulp from a single rounding.
 * C64 throws (a complex number is not one float). `count` is needed only for F4/F6 tensors whose element
 * count the bytes leave open (an odd number of F4 elements, F6 counts that leave ≥ 6 padding bits).
 */
export function decodeToFloat32(dtype: DType, bytes: Uint8Array, out?: Float32Array, count?: number): Float32Array {
  checkDType(dtype);
  const n = decodeCount(dtype, bytes.length, count);
  const result = outputFor(dtype, out, n, (len) => new Float32Array(len));
  switch (dtype) {
    case 'BOOL':
      for (let i = 0; i < n; i++) result[i] = bytes[i] !== 0 ? 1 : 0;
      break;
    case 'U8':
      result.set(bytes.subarray(0, n));
      break;
    case 'I8':
      result.set(new Int8Array(bytes.buffer, bytes.byteOffset, n));
      break;
    case 'F8_E4M3':
    case 'F8_E5M2':
    case 'F8_E4M3FNUZ':
    case 'F8_E5M2FNUZ':
    case 'F8_E8M0': {
      const table = fp8Table(dtype)!;
      forAlignedInput(bytes, 1, 4, n, (src, first, c) => byteTableKernel(src, table, bitsOf(result, first, c), c));
      break;
    }
    case 'F4': {
      const half = n >> 1;
      for (let i = 0; i < half; i++) {
        const b = bytes[i]!;
        result[2 * i] = F4_TO_F32[b & 15]!;
        result[2 * i + 1] = F4_TO_F32[b >> 4]!;
      }
      if (n & 1) result[n - 1] = F4_TO_F32[bytes[half]! & 15]!;
      break;
    }
    case 'F6_E2M3':
      decodeF6(bytes, F6_E2M3_TO_F32, result, n);
      break;
    case 'F6_E3M2':
      decodeF6(bytes, F6_E3M2_TO_F32, result, n);
      break;
    case 'BF16':
      forAlignedInput(bytes, 2, 4, n, (src, first, c) => bf16Kernel(src, bitsOf(result, first, c), c));
      break;
    case 'F16': {
      const table = f16ToF32Table();
      const tableBits = new Uint32Array(table.buffer, table.byteOffset, table.length);
      forAlignedInput(bytes, 2, 4, n, (src, first, c) => f16Kernel(src, tableBits, bitsOf(result, first, c), c));
      break;
    }
    case 'I16':
      forAlignedInput(bytes, 2, 2, n, (src, first, c) => result.set(i16(src, c), first));
      break;
    case 'U16':
      forAlignedInput(bytes, 2, 2, n, (src, first, c) => result.set(u16(src, c), first));
      break;
    case 'I32':
      forAlignedInput(bytes, 4, 4, n, (src, first, c) => result.set(i32(src, c), first));
      break;
    case 'U32':
      forAlignedInput(bytes, 4, 4, n, (src, first, c) => result.set(u32(src, c), first));
      break;
    case 'F32':
      forAlignedInput(bytes, 4, 4, n, (src, first, c) => result.set(f32(src, c), first));
      break;
    case 'F64':
      forAlignedInput(bytes, 8, 8, n, (src, first, c) => result.set(f64(src, c), first));
      break;
    case 'I64':
    case 'U64': {
      const signed = dtype === 'I64';
      forAlignedInput(bytes, 8, 4, n, (src, first, c) => {
        const lo = u32(src, 2 * c);
        const hi = signed ? i32(src, 2 * c) : lo;
        for (let i = 0; i < c; i++) result[first + i] = hi[2 * i + 1]! * TWO32 + lo[2 * i]!;
      });
      break;
    }
    case 'C64':
      throw new DTypeError(dtype, 'Unsupported', 'a complex64 element is two float32 values and cannot be decoded to one float; read the bytes as F32 pairs (real, imaginary) instead');
  }
  return result;
}

/**
 * Decodes little-endian `bytes` of `dtype` to float64, with the coverage of decodeToFloat32. Exact for every
 * dtype except I64/U64 beyond ±2^53, which round once to the nearest double (Number semantics).
 */
export function decodeToFloat64(dtype: DType, bytes: Uint8Array, out?: Float64Array, count?: number): Float64Array {
  checkDType(dtype);
  const n = decodeCount(dtype, bytes.length, count);
  const result = outputFor(dtype, out, n, (len) => new Float64Array(len));
  switch (dtype) {
    case 'I32':
      forAlignedInput(bytes, 4, 4, n, (src, first, c) => result.set(i32(src, c), first));
      return result;
    case 'U32':
      forAlignedInput(bytes, 4, 4, n, (src, first, c) => result.set(u32(src, c), first));
      return result;
    case 'F64':
      forAlignedInput(bytes, 8, 8, n, (src, first, c) => result.set(f64(src, c), first));
      return result;
    case 'I64':
    case 'U64': {
      const signed = dtype === 'I64';
      forAlignedInput(bytes, 8, 4, n, (src, first, c) => {
        const lo = u32(src, 2 * c);
        const hi = signed ? i32(src, 2 * c) : lo;
        for (let i = 0; i < c; i++) result[first + i] = hi[2 * i + 1]! * TWO32 + lo[2 * i]!;
      });
      return result;
    }
    case 'C64':
      throw new DTypeError(dtype, 'Unsupported', 'a complex64 element is two float32 values and cannot be decoded to one float; read the bytes as F32 pairs (real, imaginary) instead');
    default:
      break;
  }
  // Every other dtype is exact in float32: decode chunks to float32, widen with a native set().
  const scratch = (f32Scratch ??= new Float32Array(CHUNK_BYTES / 4));
  const bits = DTYPE_INFO[dtype].bits;
  // Elements per chunk: a multiple of 8 so that F4 (2/byte) and F6 (4 per 3 bytes) chunks start on a byte.
  const per = scratch.length;
  for (let first = 0; first < n; first += per) {
    const c = Math.min(per, n - first);
    const from = (first * bits) / 8;
    const to = first + c === n ? bytes.length : ((first + c) * bits) / 8;
    const part = decodeToFloat32(dtype, bytes.subarray(from, to), scratch, c);
    result.set(part, first);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Encode
// ---------------------------------------------------------------------------------------------------------

/** Sign bit of values[i] for a Float64Array (read from the bits, so the sign of −0 and of NaN is exact). */
function f64SignBits(values: Float64Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length * 2);
}

/**
 * Writes the codes of values[first..first+count) in format `f` into dst[0..count). Float32 input is
 * rounded on its bits (exact NaN signs); float64 input through the float64 encoder (single rounding).
 */
function encodeCodes(f: MiniFloatFormat, values: Float32Array | Float64Array, first: number, count: number, saturate: boolean, dst: Uint8Array | Uint16Array): void {
  if (values instanceof Float32Array) {
    // Fast path, inlined: a normal-range magnitude that does not overflow is RNE on the bits; everything
    // else (zero, subnormals, overflow, Inf, NaN) goes to the full encoder.
    const bits = bitsOf(values, first, count);
    const rebias = f.rebiasF32;
    const shift = f.shiftF32;
    const half = (1 << (shift - 1)) - 1;
    const low = f.minNormalF32Bits;
    const high = f.overflowF32Bits;
    const maxCode = f.maxCode;
    const signMask = f.signMask;
    const signShift = 31 - (f.bits - 1);
    for (let i = 0; i < count; i++) {
      const b = bits[i]!;
      const a = b & 0x7fffffff;
      if (a >= low && a < high) {
        const r = a + rebias;
        const m = (r + half + ((r >>> shift) & 1)) >>> shift;
        if (m <= maxCode) {
          dst[i] = m | ((b >>> signShift) & signMask);
          continue;
        }
      }
      dst[i] = encodeMiniF32Bits(f, b, values[first + i]!, saturate);
    }
  } else {
    const words = f64SignBits(values);
    for (let i = 0; i < count; i++) dst[i] = encodeMini(f, values[first + i]!, saturate, words[2 * (first + i) + 1]! >>> 31);
  }
}

/** bf16 from float32 bits: RNE on the bits; NaN stays a quiet NaN with its sign and top payload bits. */
function encodeBF16FromF32(values: Float32Array, first: number, count: number, dst: Uint16Array): void {
  const bits = bitsOf(values, first, count);
  for (let i = 0; i < count; i++) {
    const b = bits[i]!;
    dst[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
}

/** 1.5·2^52; see roundHalfEven in ./float.ts. */
const ROUNDER = 6755399441055744;

/** Round half to even, then clamp to [lo, hi] (integer bounds within ±2^32); NaN → 0. Branch-light. */
function toIntRange(x: number, lo: number, hi: number): number {
  if (x >= hi) return hi;
  if (x <= lo) return lo;
  if (x !== x) return 0;
  return x + ROUNDER - ROUNDER;
}

const F4_PAIR_CHUNK = CHUNK_BYTES;

/**
 * Encodes `values` as little-endian `dtype` bytes (into `out` when given; it must hold at least
 * bytesForElements(dtype, values.length) bytes, and the returned array is `out` or its prefix).
 *
 * - F64, F32: exact / Math.fround (round to nearest even, overflow to ±Inf).
 * - F16, BF16: round to nearest even, overflow to ±Inf, NaN stays NaN (bf16 from float32 keeps the payload's
 *   top bits, quietened).
 * - F8_*, F4, F6_*: round to nearest even; saturating by default (`options.saturate`, see ./float.ts):
 *   out-of-range values and ±Inf clamp to ±max. NaN becomes the format's NaN; F4/F6 have none, so NaN (and
 *   a non-saturating overflow) throws a DTypeError. F4 packs the even index in the low nibble, F6 is a dense
 *   LSB-first bitstream; unused trailing bits are zero.
 * - I8…U64: round half to even, then clamp to the type's range; NaN → 0. I64/U64 values beyond ±2^53 are
 *   written from the double as is (2^63 and above saturate to INT64_MAX, 2^64 and above to UINT64_MAX).
 * - BOOL: 1 where x != 0 (NaN included), else 0.
 * - C64 throws.
 */
export function encodeFromFloat32(dtype: DType, values: Float32Array | Float64Array, out?: Uint8Array, options?: EncodeOptions): Uint8Array {
  checkDType(dtype);
  if (!(values instanceof Float32Array) && !(values instanceof Float64Array)) {
    throw new DTypeError(dtype, 'Unsupported', 'values must be a Float32Array or a Float64Array');
  }
  const n = values.length;
  const result = outputFor(dtype, out, bytesForElements(dtype, n), (len) => new Uint8Array(len));
  const saturate = options?.saturate ?? true;
  switch (dtype) {
    case 'F64':
      forAlignedOutput(result, 8, n, (dst, first, c) => f64(dst, c).set(values.subarray(first, first + c)));
      break;
    case 'F32':
      forAlignedOutput(result, 4, n, (dst, first, c) => f32(dst, c).set(values.subarray(first, first + c)));
      break;
    case 'BF16':
      forAlignedOutput(result, 2, n, (dst, first, c) => {
        if (values instanceof Float32Array) encodeBF16FromF32(values, first, c, u16(dst, c));
        else encodeCodes(BF16_FORMAT, values, first, c, false, u16(dst, c));
      });
      break;
    case 'F16':
      forAlignedOutput(result, 2, n, (dst, first, c) => encodeCodes(F16_FORMAT, values, first, c, false, u16(dst, c)));
      break;
    case 'F8_E4M3':
      encodeCodes(E4M3_FORMAT, values, 0, n, saturate, result);
      break;
    case 'F8_E5M2':
      encodeCodes(E5M2_FORMAT, values, 0, n, saturate, result);
      break;
    case 'F8_E4M3FNUZ':
      encodeCodes(E4M3FNUZ_FORMAT, values, 0, n, saturate, result);
      break;
    case 'F8_E5M2FNUZ':
      encodeCodes(E5M2FNUZ_FORMAT, values, 0, n, saturate, result);
      break;
    case 'F8_E8M0':
      for (let i = 0; i < n; i++) result[i] = encodeE8M0Value(values[i]!, saturate);
      break;
    case 'F4': {
      const codes = (byteScratch ??= new Uint8Array(CHUNK_BYTES));
      for (let first = 0; first < n; first += F4_PAIR_CHUNK) {
        const c = Math.min(F4_PAIR_CHUNK, n - first);
        encodeCodes(F4_FORMAT, values, first, c, saturate, codes);
        const base = first >> 1;
        for (let i = 0; i + 1 < c; i += 2) result[base + (i >> 1)] = codes[i]! | (codes[i + 1]! << 4);
        if (c & 1) result[base + (c >> 1)] = codes[c - 1]!;
      }
      break;
    }
    case 'F6_E2M3':
    case 'F6_E3M2': {
      const f = dtype === 'F6_E2M3' ? F6_E2M3_FORMAT : F6_E3M2_FORMAT;
      const codes = (byteScratch ??= new Uint8Array(CHUNK_BYTES));
      for (let first = 0; first < n; first += CHUNK_BYTES) {
        const c = Math.min(CHUNK_BYTES, n - first);
        encodeCodes(f, values, first, c, saturate, codes);
        let b = (first / 4) * 3; // CHUNK_BYTES is a multiple of 4
        const groups = c >> 2;
        for (let g = 0, i = 0; g < groups; g++, i += 4, b += 3) {
          const c0 = codes[i]!;
          const c1 = codes[i + 1]!;
          const c2 = codes[i + 2]!;
          const c3 = codes[i + 3]!;
          result[b] = c0 | ((c1 & 3) << 6);
          result[b + 1] = (c1 >> 2) | ((c2 & 15) << 4);
          result[b + 2] = (c2 >> 4) | (c3 << 2);
        }
        const rest = c - groups * 4;
        if (rest > 0) {
          // 1..3 trailing codes: at most 18 bits, written LSB-first, padding zero.
          let acc = 0;
          for (let k = 0; k < rest; k++) acc |= codes[groups * 4 + k]! << (6 * k);
          const tailBytes = Math.ceil((rest * 6) / 8);
          for (let k = 0; k < tailBytes; k++) result[b + k] = (acc >> (8 * k)) & 0xff;
        }
      }
      break;
    }
    case 'BOOL':
      for (let i = 0; i < n; i++) result[i] = values[i] !== 0 ? 1 : 0;
      break;
    case 'U8':
      for (let i = 0; i < n; i++) result[i] = toIntRange(values[i]!, 0, 255);
      break;
    case 'I8': {
      const dst = new Int8Array(result.buffer, result.byteOffset, n);
      for (let i = 0; i < n; i++) dst[i] = toIntRange(values[i]!, -128, 127);
      break;
    }
    case 'I16':
      forAlignedOutput(result, 2, n, (dst, first, c) => {
        const d = i16(dst, c);
        for (let i = 0; i < c; i++) d[i] = toIntRange(values[first + i]!, -32768, 32767);
      });
      break;
    case 'U16':
      forAlignedOutput(result, 2, n, (dst, first, c) => {
        const d = u16(dst, c);
        for (let i = 0; i < c; i++) d[i] = toIntRange(values[first + i]!, 0, 65535);
      });
      break;
    case 'I32':
      forAlignedOutput(result, 4, n, (dst, first, c) => {
        const d = i32(dst, c);
        for (let i = 0; i < c; i++) d[i] = toIntRange(values[first + i]!, -2147483648, 2147483647);
      });
      break;
    case 'U32':
      forAlignedOutput(result, 4, n, (dst, first, c) => {
        const d = u32(dst, c);
        for (let i = 0; i < c; i++) d[i] = toIntRange(values[first + i]!, 0, 4294967295);
      });
      break;
    case 'I64':
    case 'U64': {
      const signed = dtype === 'I64';
      forAlignedOutput(result, 8, n, (dst, first, c) => {
        const d = u32(dst, 2 * c);
        for (let i = 0; i < c; i++) {
          const x = values[first + i]!;
          let lo: number;
          let hi: number;
          if (x !== x) {
            lo = 0;
            hi = 0;
          } else if (signed ? x >= 9223372036854775808 : x >= 18446744073709551616) {
            lo = 0xffffffff;
            hi = signed ? 0x7fffffff : 0xffffffff;
          } else if (signed ? x <= -9223372036854775808 : x <= 0) {
            lo = 0;
            hi = signed ? 0x80000000 : 0;
          } else {
            const r = roundHalfEven(x);
            const h = Math.floor(r / TWO32);
            lo = r - h * TWO32;
            hi = h >>> 0;
          }
          d[2 * i] = lo;
          d[2 * i + 1] = hi;
        }
      });
      break;
    }
    case 'C64':
      throw new DTypeError(dtype, 'Unsupported', 'cannot encode real values as complex64; write interleaved (real, imaginary) F32 pairs instead');
  }
  return result;
}
