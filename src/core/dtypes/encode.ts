/**
 * Bulk encoding of Float32Array / Float64Array values into raw little-endian tensor bytes (the inverse of
 * convert.ts's decoders; the sub-byte layouts are described there). Encoding rounds to nearest-even and
 * saturates to the format's largest finite value unless `options.saturate` is false.
 */
import {
  type DType,
} from './dtype';
import {
  BF16_FORMAT,
  DTypeError,
  E4M3_FORMAT,
  E4M3FNUZ_FORMAT,
  E5M2_FORMAT,
  E5M2FNUZ_FORMAT,
  F16_FORMAT,
  F4_FORMAT,
  F6_E2M3_FORMAT,
  F6_E3M2_FORMAT,
  MiniFloatFormat,
  encodeE8M0Value,
  encodeMini,
  encodeMiniF32Bits,
  roundHalfEven,
  type EncodeOptions,
} from './float';

export { DTypeError } from './float';
export type { DTypeErrorCode, EncodeOptions } from './float';

import {
  checkDType,
  bytesForElements,
  outputFor,
  CHUNK_BYTES,
  forAlignedOutput,
  u16,
  i16,
  u32,
  i32,
  f32,
  f64,
  bitsOf,
  TWO32,
  byteScratchBuffer,
} from './byteAccess';

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
      const codes = byteScratchBuffer();
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
      const codes = byteScratchBuffer();
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
