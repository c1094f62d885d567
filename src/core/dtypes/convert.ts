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
import {
  DTYPE_INFO,
  type DType,
} from './dtype';
import {
  DTypeError,
  E4M3_TO_F32,
  E4M3FNUZ_TO_F32,
  E5M2_TO_F32,
  E5M2FNUZ_TO_F32,
  E8M0_TO_F32,
  F4_TO_F32,
  F6_E2M3_TO_F32,
  F6_E3M2_TO_F32,
  f16ToF32Table,
} from './float';

export { DTypeError } from './float';
export type { DTypeErrorCode, EncodeOptions } from './float';

import {
  checkDType,
  decodeCount,
  outputFor,
  CHUNK_BYTES,
  forAlignedInput,
  u16,
  i16,
  u32,
  i32,
  f32,
  f64,
  bitsOf,
  TWO32,
} from './byteAccess';

export { bytesForElements, elementsInBytes } from './byteAccess';
export { encodeFromFloat32 } from './encode';

let f32Scratch: Float32Array | undefined;

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
