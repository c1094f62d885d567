/**
 * Scalar codecs for every floating-point element format a safetensors file can hold, bit-exact, plus the
 * decode tables the bulk converters (./convert.ts) use.
 *
 * Source: docs/formats.md §2 (layouts, biases, special values, rounding).
 * A normal number is (−1)^s · 2^(e−bias) · (1 + m/2^M); a subnormal (e = 0) is (−1)^s · 2^(1−bias) · m/2^M.
 *
 * | format            | s/E/M | bias | max finite     | specials                                        |
 * |-------------------|-------|------|----------------|-------------------------------------------------|
 * | F16               | 1/5/10| 15   | 65504          | IEEE: e=31 → Inf (m=0) / NaN                     |
 * | BF16              | 1/8/7 | 127  | ≈3.3895e38     | IEEE (the top half of an f32)                    |
 * | F8_E4M3 (e4m3fn)  | 1/4/3 | 7    | 448            | no Inf; NaN only S.1111.111 (0x7F, 0xFF)         |
 * | F8_E5M2           | 1/5/2 | 15   | 57344          | IEEE: ±Inf 0x7C/0xFC, NaN otherwise at e=31      |
 * | F8_E4M3FNUZ       | 1/4/3 | 8    | 240            | 0x80 is the only NaN; no −0; no Inf              |
 * | F8_E5M2FNUZ       | 1/5/2 | 16   | 57344          | 0x80 is the only NaN; no −0; no Inf              |
 * | F8_E8M0           | 0/8/0 | 127  | 2^127          | value 2^(b−127); 0xFF NaN; no sign, no zero      |
 * | F4 (E2M1)         | 1/2/1 | 1    | 6              | none (magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6)      |
 * | F6_E2M3           | 1/2/3 | 1    | 7.5            | none (OCP MX FP6)                                |
 * | F6_E3M2           | 1/3/2 | 3    | 28             | none (OCP MX FP6)                                |
 *
 * Encoding (every `encode*` here):
 * - Round to nearest, ties to even (docs/formats.md §2), performed ONCE on the exact value of the JS number
 *   passed in. For any input that is a float32 (everything read from a Float32Array, every bf16/f16/fp8
 *   value) this is bit-identical to torch's casts, which take a float32. torch casts a float64 tensor by
 *   going through float32 first (two roundings); for a float64 input that is not a float32 and lies within
 *   half a float32 ulp of a midpoint of the target format, the single rounding done here can differ from
 *   torch's by one unit in the last place. The single rounding is the correctly rounded result.
 * - Overflow uses IEEE rounding with an unbounded exponent: a value above the largest finite `max` but below
 *   the midpoint between `max` and the next step the format would have (`max + 2^(emax−M)`) rounds to `max`;
 *   the midpoint itself goes to whichever neighbour has the even mantissa (for e4m3fn the max 448 = 0x7E
 *   has an even mantissa, so 464 → 448 and anything above 464 overflows; for E5M2 57344 = 0x7B is odd,
 *   so 61440 overflows). Only a value that rounds beyond `max` "overflows":
 *     `saturate: true`  (the default for the 8/6/4-bit formats; what quantizers do, since they clamp to
 *                       ±max before casting): overflow and ±Inf give ±max.
 *     `saturate: false` (torch's plain `.to(float8_…)`): overflow and ±Inf give ±Inf where the format has
 *                       Inf (E5M2, F16, BF16), otherwise the format's NaN (e4m3fn: 0x7F|sign; FNUZ: 0x80;
 *                       E8M0: 0xFF). F4/F6 have neither, so a non-saturating overflow throws a DTypeError.
 * - NaN gives the format's NaN (sign kept where the format has a signed NaN and the sign is observable);
 *   F4/F6 cannot represent NaN, so encoding NaN into them throws a DTypeError.
 * - −0 keeps its sign where the format has −0. In the FNUZ formats the code 0x80 is NaN, so −0 and negative
 *   values that round to zero encode as 0x00.
 * - Values below half the smallest subnormal round to (signed) zero; exactly half rounds to zero (even).
 */
import type { DType } from './dtype';

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

export type DTypeErrorCode =
  /** The dtype string is not one safetensors knows. */
  | 'UnknownDType'
  /** The operation has no meaning for this dtype (e.g. C64 as one float). */
  | 'Unsupported'
  /** A byte length that does not fit the element size. */
  | 'ByteLength'
  /** An element count that does not fit the bytes given. */
  | 'ElementCount'
  /** A caller-supplied output buffer is too small. */
  | 'OutputTooSmall'
  /** A value the format cannot hold (NaN or a non-saturating overflow in F4/F6), or a bad code. */
  | 'NotRepresentable'
  /** The host is big-endian (the bulk paths read little-endian data through typed arrays). */
  | 'Host';

/** Every error of the number-format layer: names the dtype and what is wrong. */
export class DTypeError extends Error {
  override readonly name = 'DTypeError';
  constructor(
    /** The dtype concerned (as given, which may be an unknown string). */
    readonly dtype: string,
    readonly code: DTypeErrorCode,
    /** What is wrong, in words. */
    readonly detail: string,
  ) {
    super(`${dtype}: ${detail} (${code})`);
  }
}

export interface EncodeOptions {
  /**
   * Clamp out-of-range values and ±Inf to ±max instead of overflowing (default true for the 8/6/4-bit
   * formats, matching quantizers that clamp before casting). See the module comment for the exact rule.
   */
  readonly saturate?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Bit helpers
// ---------------------------------------------------------------------------------------------------------

const F64 = new Float64Array(1);
const F64_WORDS = new Uint32Array(F64.buffer);
const F32 = new Float32Array(1);
const F32_BITS = new Uint32Array(F32.buffer);

/** True on little-endian hosts (every platform VS Code runs on). */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HI = LITTLE_ENDIAN ? 1 : 0;

/** 2^n exactly, for −1022 ≤ n ≤ 1023 (built from the bits, never through Math.pow). */
function pow2(n: number): number {
  F64_WORDS[HI] = (n + 1023) << 20;
  F64_WORDS[1 - HI] = 0;
  return F64[0]!;
}

/** Unbiased binary exponent of a positive normal float64. */
function exponentOf(a: number): number {
  F64[0] = a;
  return ((F64_WORDS[HI]! >>> 20) & 0x7ff) - 1023;
}

/** Sign bit of a number, −0 and (where the engine keeps it) the sign of NaN included. */
function signBitOf(x: number): number {
  F64[0] = x;
  return F64_WORDS[HI]! >>> 31;
}

const TWO52 = 4503599627370496;
const TWO51 = 2251799813685248;
/** 1.5·2^52: for |q| < 2^51, q + ROUNDER lies in [2^52, 2^53) where the spacing is 1. */
const ROUNDER = 6755399441055744;
/** Round half to even for 0 ≤ q < 2^52 (the addition rounds in the unit place, ties to even). */
function rneNonNegative(q: number): number {
  return q + TWO52 - TWO52;
}

/**
 * Round half to even (torch.round / rint) for any number; NaN and ±Inf pass through. Branch-free for
 * |q| < 2^51, where it returns +0 for values that round to zero.
 */
export function roundHalfEven(q: number): number {
  if (q < TWO51 && q > -TWO51) return q + ROUNDER - ROUNDER;
  if (q >= TWO52 || q <= -TWO52 || q !== q) return q; // already an integer (or not finite)
  return q > 0 ? q + TWO52 - TWO52 : -(-q + TWO52 - TWO52);
}

/** The IEEE float32 bit pattern (uint32) of Math.fround(x). */
export function encodeF32(x: number): number {
  F32[0] = x;
  return F32_BITS[0]!;
}

/** The float32 whose bit pattern is `bits` (uint32). */
export function decodeF32(bits: number): number {
  F32_BITS[0] = bits;
  return F32[0]!;
}

// ---------------------------------------------------------------------------------------------------------
// Sign / exponent / mantissa formats
// ---------------------------------------------------------------------------------------------------------

/** The dtypes laid out as sign, exponent, mantissa (everything float except F32, F64 and E8M0). */
export type MiniFloatDType =
  | 'F16'
  | 'BF16'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'F8_E4M3FNUZ'
  | 'F8_E5M2FNUZ'
  | 'F4'
  | 'F6_E2M3'
  | 'F6_E3M2';

/**
 * How the top codes are used:
 * - `ieee`: exponent all ones is Inf (m = 0) or NaN (F16, BF16, E5M2);
 * - `fn`:   only S.all-ones.all-ones is NaN, no Inf (e4m3fn);
 * - `fnuz`: the negative-zero code is the only NaN; no Inf, no −0;
 * - `none`: every code is finite (F4, F6).
 */
export type SpecialValues = 'ieee' | 'fn' | 'fnuz' | 'none';

/** A sign/exponent/mantissa format with its derived constants. Codes are unsigned integers. */
export class MiniFloatFormat {
  /** Width of a code in bits (1 + E + M). */
  readonly bits: number;
  readonly signMask: number;
  /** Magnitude code of the largest finite value. */
  readonly maxCode: number;
  /** The largest finite value. */
  readonly max: number;
  /** The smallest positive normal value, 2^(1−bias). */
  readonly minNormal: number;
  /** The smallest positive subnormal value, 2^(1−bias−M). */
  readonly minSubnormal: number;
  /** The positive NaN code (FNUZ: 0x80, which has no sign), or undefined when the format has no NaN. */
  readonly nanCode: number | undefined;
  /** The +Inf code, or undefined when the format has no Inf. */
  readonly infCode: number | undefined;
  readonly hasNegativeZero: boolean;
  // Rounding constants (used by the encoders here and by the bulk converters).
  /** 1 − bias: exponent of the smallest normal. */
  readonly emin: number;
  /** Exponent of `max`. */
  readonly emax: number;
  /** 2^(M − emin): multiplies a subnormal-range magnitude into units of the smallest subnormal. */
  readonly subScale: number;
  /** 2^(emax + 1): magnitudes at or above it overflow whatever the rounding. */
  readonly overflowLimit: number;
  /** scale[e − emin] = 2^(M − e), for emin ≤ e ≤ emax. */
  readonly scale: Float64Array;
  /** float32 bit pattern of `minNormal`. */
  readonly minNormalF32Bits: number;
  /** float32 bit pattern of `overflowLimit` (0x7F800000, Inf, when it exceeds the float32 range). */
  readonly overflowF32Bits: number;
  /** Added to float32 magnitude bits to move the exponent from bias 127 to this bias. */
  readonly rebiasF32: number;
  /** Number of float32 mantissa bits dropped (23 − M). */
  readonly shiftF32: number;

  constructor(
    readonly dtype: MiniFloatDType,
    readonly expBits: number,
    readonly manBits: number,
    readonly bias: number,
    readonly special: SpecialValues,
    /** For `ieee` formats: the positive NaN code produced by encoders (default: the canonical quiet NaN). */
    ieeeNaNCode?: number,
  ) {
    const E = expBits;
    const M = manBits;
    this.bits = 1 + E + M;
    this.signMask = 1 << (E + M);
    const topExp = (1 << E) - 1;
    const allMan = (1 << M) - 1;
    if (special === 'ieee') this.maxCode = ((topExp - 1) << M) | allMan;
    else if (special === 'fn') this.maxCode = (topExp << M) | (allMan - 1);
    else this.maxCode = (topExp << M) | allMan;
    this.emin = 1 - bias;
    this.minNormal = pow2(this.emin);
    this.minSubnormal = pow2(this.emin - M);
    this.emax = (this.maxCode >> M) - bias;
    this.max = ((this.maxCode & allMan) + (1 << M)) * pow2(this.emax - M);
    this.subScale = pow2(M - this.emin);
    this.overflowLimit = pow2(this.emax + 1);
    this.scale = new Float64Array(this.emax - this.emin + 1);
    for (let e = this.emin; e <= this.emax; e++) this.scale[e - this.emin] = pow2(M - e);
    this.nanCode = special === 'ieee' ? (ieeeNaNCode ?? (topExp << M) | (1 << (M - 1))) : special === 'fn' ? (topExp << M) | allMan : special === 'fnuz' ? this.signMask : undefined;
    this.infCode = special === 'ieee' ? topExp << M : undefined;
    this.hasNegativeZero = special !== 'fnuz';
    this.minNormalF32Bits = (this.emin + 127) << 23;
    this.overflowF32Bits = this.emax + 1 >= 128 ? 0x7f800000 : (this.emax + 1 + 127) << 23;
    this.rebiasF32 = (bias - 127) * 0x800000;
    this.shiftF32 = 23 - M;
  }

  /** Number of codes (2^bits). */
  get codeCount(): number {
    return 1 << this.bits;
  }

  /** Decodes one code (an integer in [0, 2^bits)). Exact. */
  decode(code: number): number {
    checkCode(this.dtype, code, this.bits);
    return decodeMini(this, code);
  }

  /** Encodes one number; see the module comment for rounding, saturation and NaN. */
  encode(x: number, saturate: boolean): number {
    return encodeMini(this, x, saturate, signBitOf(x));
  }

  /** True when `code` is a NaN of this format. */
  isNaNCode(code: number): boolean {
    if (this.special === 'ieee') return (code & ~this.signMask) > (this.infCode as number);
    if (this.special === 'fn') return (code & ~this.signMask) === this.nanCode;
    if (this.special === 'fnuz') return code === this.nanCode;
    return false;
  }
}

function checkCode(dtype: string, code: number, bits: number): void {
  if (!Number.isInteger(code) || code < 0 || code >= 2 ** bits) {
    throw new DTypeError(dtype, 'NotRepresentable', `code ${code} is not an integer in [0, ${2 ** bits})`);
  }
}

function decodeMini(f: MiniFloatFormat, code: number): number {
  const M = f.manBits;
  const negative = (code & f.signMask) !== 0;
  const mag = code & (f.signMask - 1);
  const e = mag >> M;
  const m = mag & ((1 << M) - 1);
  let v: number;
  switch (f.special) {
    case 'ieee':
      if (e === (1 << f.expBits) - 1) return m === 0 ? (negative ? -Infinity : Infinity) : NaN;
      break;
    case 'fn':
      if (mag === f.nanCode) return NaN;
      break;
    case 'fnuz':
      if (code === f.nanCode) return NaN;
      break;
    case 'none':
      break;
  }
  if (e === 0) v = m * pow2(f.emin - M);
  else v = (m + (1 << M)) * pow2(e - f.bias - M);
  return negative ? -v : v;
}

/**
 * Magnitude code of `a` (a non-negative number, +Inf allowed) rounded to nearest even, or −1 when it
 * rounds beyond `max`.
 */
function encodeMagnitude(f: MiniFloatFormat, a: number): number {
  if (a >= f.overflowLimit) return -1;
  if (a < f.minNormal) return rneNonNegative(a * f.subScale); // may round up to the min normal: code 2^M
  const e = exponentOf(a);
  // q in [2^M, 2^(M+1)]; q = 2^(M+1) carries into the exponent through the addition.
  const code = ((e + f.bias) << f.manBits) + rneNonNegative(a * f.scale[e - f.emin]!) - (1 << f.manBits);
  return code > f.maxCode ? -1 : code;
}

/** The code for an overflowing magnitude (before the sign is applied); throws for F4/F6 without saturation. */
function overflowCode(f: MiniFloatFormat, saturate: boolean, x: number): number {
  if (saturate) return f.maxCode;
  if (f.infCode !== undefined) return f.infCode;
  if (f.nanCode !== undefined) return f.nanCode;
  throw new DTypeError(f.dtype, 'NotRepresentable', `${x} is outside ±${f.max} and the format has no Inf or NaN (encode with saturate: true to clamp)`);
}

function nanCodeOf(f: MiniFloatFormat, sign: number): number {
  if (f.nanCode === undefined) throw new DTypeError(f.dtype, 'NotRepresentable', 'NaN cannot be encoded: the format has no NaN');
  if (f.special === 'fnuz') return f.nanCode;
  return sign ? f.nanCode | f.signMask : f.nanCode;
}

/** Applies the sign to a magnitude code, honouring the FNUZ rules (single NaN, no −0). */
function withSign(f: MiniFloatFormat, mag: number, sign: number): number {
  if (f.special === 'fnuz') {
    if (mag === f.nanCode || mag === 0) return mag;
  }
  return sign ? mag | f.signMask : mag;
}

/** Encodes a float64 value; `sign` is its sign bit (signBitOf(x)), passed so the bulk paths can supply it. */
export function encodeMini(f: MiniFloatFormat, x: number, saturate: boolean, sign: number): number {
  if (x !== x) return nanCodeOf(f, sign);
  let mag = encodeMagnitude(f, x < 0 ? -x : x);
  if (mag < 0) mag = overflowCode(f, saturate, x);
  return withSign(f, mag, sign);
}

/**
 * Encodes a float32 given as its bit pattern (and its value `x`, for the subnormal range) with integer
 * round-to-nearest-even on the bits. Identical results to encodeMini(f, x, …) for every float32; used by
 * the bulk converters on Float32Array input, where it is several times faster and keeps NaN signs exactly.
 */
export function encodeMiniF32Bits(f: MiniFloatFormat, bits: number, x: number, saturate: boolean): number {
  const sign = bits >>> 31;
  const a = bits & 0x7fffffff;
  let mag: number;
  if (a > 0x7f800000) return nanCodeOf(f, sign);
  if (a >= f.overflowF32Bits) mag = -1;
  else if (a < f.minNormalF32Bits) mag = rneNonNegative((x < 0 ? -x : x) * f.subScale);
  else {
    const r = a + f.rebiasF32;
    const shift = f.shiftF32;
    mag = (r + ((1 << (shift - 1)) - 1) + ((r >>> shift) & 1)) >>> shift;
    if (mag > f.maxCode) mag = -1;
  }
  if (mag < 0) mag = overflowCode(f, saturate, x);
  return withSign(f, mag, sign);
}

export const F16_FORMAT = new MiniFloatFormat('F16', 5, 10, 15, 'ieee');
export const BF16_FORMAT = new MiniFloatFormat('BF16', 8, 7, 127, 'ieee');
export const E4M3_FORMAT = new MiniFloatFormat('F8_E4M3', 4, 3, 7, 'fn');
/** E5M2 encoders produce NaN as 0x7F (all mantissa bits set), as torch's cast does. */
export const E5M2_FORMAT = new MiniFloatFormat('F8_E5M2', 5, 2, 15, 'ieee', 0x7f);
export const E4M3FNUZ_FORMAT = new MiniFloatFormat('F8_E4M3FNUZ', 4, 3, 8, 'fnuz');
export const E5M2FNUZ_FORMAT = new MiniFloatFormat('F8_E5M2FNUZ', 5, 2, 16, 'fnuz');
export const F4_FORMAT = new MiniFloatFormat('F4', 2, 1, 1, 'none');
export const F6_E2M3_FORMAT = new MiniFloatFormat('F6_E2M3', 2, 3, 1, 'none');
export const F6_E3M2_FORMAT = new MiniFloatFormat('F6_E3M2', 3, 2, 3, 'none');

export const MINIFLOAT_FORMATS: Readonly<Record<MiniFloatDType, MiniFloatFormat>> = {
  F16: F16_FORMAT,
  BF16: BF16_FORMAT,
  F8_E4M3: E4M3_FORMAT,
  F8_E5M2: E5M2_FORMAT,
  F8_E4M3FNUZ: E4M3FNUZ_FORMAT,
  F8_E5M2FNUZ: E5M2FNUZ_FORMAT,
  F4: F4_FORMAT,
  F6_E2M3: F6_E2M3_FORMAT,
  F6_E3M2: F6_E3M2_FORMAT,
};

/** The sign/exponent/mantissa description of `dtype`, or undefined for other dtypes (F32, F64, E8M0, ints…). */
export function miniFloatFormat(dtype: DType): MiniFloatFormat | undefined {
  return (MINIFLOAT_FORMATS as Partial<Record<DType, MiniFloatFormat>>)[dtype];
}

const saturating = (options: EncodeOptions | undefined): boolean => options?.saturate ?? true;

// ----- F16 / BF16 (IEEE: overflow → ±Inf, no saturation option) -----

/** IEEE binary16 code → value (exact). */
export function decodeF16(bits: number): number {
  return F16_FORMAT.decode(bits);
}
/** Value → IEEE binary16 code: nearest even, overflow (≥ 65520) → ±Inf, NaN → 0x7E00 (sign kept when visible). */
export function encodeF16(x: number): number {
  return encodeMini(F16_FORMAT, x, false, signBitOf(x));
}

/** bfloat16 code → value: the float32 with bits `code << 16` (NaN payloads kept by the bulk path). */
export function decodeBF16(bits: number): number {
  checkCode('BF16', bits, 16);
  return decodeF32(bits << 16);
}
/**
 * Value → bfloat16 code: round to nearest even (for a float32 this is the usual RNE on the f32 bits),
 * overflow → ±Inf, NaN → a quiet NaN (0x7FC0 | sign), never rounded into Inf.
 */
export function encodeBF16(x: number): number {
  return encodeMini(BF16_FORMAT, x, false, signBitOf(x));
}

// ----- FP8 -----

/** float8_e4m3fn code → value. 0x7F/0xFF are NaN; no Inf. */
export function decodeE4M3(code: number): number {
  return E4M3_FORMAT.decode(code);
}
/** Value → float8_e4m3fn (max 448). Non-saturating overflow → NaN 0x7F|sign (torch). */
export function encodeE4M3(x: number, options?: EncodeOptions): number {
  return encodeMini(E4M3_FORMAT, x, saturating(options), signBitOf(x));
}

/** float8_e5m2 code → value. 0x7C/0xFC are ±Inf, 0x7D–0x7F/0xFD–0xFF NaN. */
export function decodeE5M2(code: number): number {
  return E5M2_FORMAT.decode(code);
}
/** Value → float8_e5m2 (max 57344). Non-saturating overflow (≥ 61440) → ±Inf. NaN → 0x7F|sign (torch). */
export function encodeE5M2(x: number, options?: EncodeOptions): number {
  return encodeMini(E5M2_FORMAT, x, saturating(options), signBitOf(x));
}

/** float8_e4m3fnuz code → value (bias 8). 0x80 is NaN. */
export function decodeE4M3FNUZ(code: number): number {
  return E4M3FNUZ_FORMAT.decode(code);
}
/** Value → float8_e4m3fnuz (max 240). −0 → 0x00. Non-saturating overflow (≥ 248) → NaN 0x80. */
export function encodeE4M3FNUZ(x: number, options?: EncodeOptions): number {
  return encodeMini(E4M3FNUZ_FORMAT, x, saturating(options), signBitOf(x));
}

/** float8_e5m2fnuz code → value (bias 16). 0x80 is NaN. */
export function decodeE5M2FNUZ(code: number): number {
  return E5M2FNUZ_FORMAT.decode(code);
}
/** Value → float8_e5m2fnuz (max 57344). −0 → 0x00. Non-saturating overflow (≥ 61440) → NaN 0x80. */
export function encodeE5M2FNUZ(x: number, options?: EncodeOptions): number {
  return encodeMini(E5M2FNUZ_FORMAT, x, saturating(options), signBitOf(x));
}

// ----- E8M0 (MX scale: unsigned power of two) -----

export const E8M0_MAX = pow2(127);
export const E8M0_MIN = pow2(-127);
export const E8M0_NAN = 0xff;
const E8M0_OVERFLOW = pow2(128);

/** float8_e8m0fnu code → 2^(code − 127); 0xFF is NaN. */
export function decodeE8M0(code: number): number {
  checkCode('F8_E8M0', code, 8);
  if (code === E8M0_NAN) return NaN;
  return code === 0 ? E8M0_MIN : pow2(code - 127);
}

/**
 * Value → float8_e8m0fnu. The format is an unsigned power of two with no zero, so:
 * - the sign is ignored (the magnitude is encoded, as torch's cast does);
 * - rounding is to the nearest power of two on the linear scale: m·2^k with 1 ≤ m < 1.5 → 2^k,
 *   m ≥ 1.5 → 2^(k+1). The tie m = 1.5 goes up: with no mantissa bits the only "last bit" is the implicit
 *   1, so ties-to-even rounds it up (as torch's float8_e8m0fnu cast does);
 * - magnitudes below 2^-127, zero included, give 0x00 (2^-127): there is nothing smaller;
 * - overflow (≥ 1.5·2^127) and ±Inf: `saturate` (default) → 0xFE (2^127), otherwise NaN 0xFF;
 * - NaN → 0xFF.
 */
export function encodeE8M0(x: number, options?: EncodeOptions): number {
  return encodeE8M0Value(x, saturating(options));
}

export function encodeE8M0Value(x: number, saturate: boolean): number {
  if (x !== x) return E8M0_NAN;
  const a = x < 0 ? -x : x;
  if (a < E8M0_MIN) return 0;
  if (a >= E8M0_OVERFLOW) return saturate ? 0xfe : E8M0_NAN; // ±Inf and everything ≥ 2^128
  let e = exponentOf(a); // a ≥ 2^-127 ≥ the smallest float64 normal
  if (a * pow2(-e) >= 1.5) e++;
  if (e > 127) return saturate ? 0xfe : E8M0_NAN;
  return e + 127;
}

// ----- F4 (E2M1) and F6 (E2M3, E3M2): OCP MX element formats, no Inf/NaN -----

/** F4 (E2M1) nibble → value: bit 3 sign, magnitude [0, .5, 1, 1.5, 2, 3, 4, 6][code & 7]. */
export function decodeF4(code: number): number {
  return F4_FORMAT.decode(code);
}
/** Value → F4 nibble (max 6). NaN, and overflow without saturation, throw a DTypeError. */
export function encodeF4(x: number, options?: EncodeOptions): number {
  return encodeMini(F4_FORMAT, x, saturating(options), signBitOf(x));
}
/** Aliases with the element-format name. */
export const decodeF4E2M1 = decodeF4;
export const encodeF4E2M1 = encodeF4;

/** F6_E2M3 code (6 bits) → value (bias 1, max 7.5). */
export function decodeF6E2M3(code: number): number {
  return F6_E2M3_FORMAT.decode(code);
}
/** Value → F6_E2M3 code. NaN, and overflow without saturation, throw a DTypeError. */
export function encodeF6E2M3(x: number, options?: EncodeOptions): number {
  return encodeMini(F6_E2M3_FORMAT, x, saturating(options), signBitOf(x));
}

/** F6_E3M2 code (6 bits) → value (bias 3, max 28). */
export function decodeF6E3M2(code: number): number {
  return F6_E3M2_FORMAT.decode(code);
}
/** Value → F6_E3M2 code. NaN, and overflow without saturation, throw a DTypeError. */
export function encodeF6E3M2(x: number, options?: EncodeOptions): number {
  return encodeMini(F6_E3M2_FORMAT, x, saturating(options), signBitOf(x));
}

// ---------------------------------------------------------------------------------------------------------
// Lookup tables
// ---------------------------------------------------------------------------------------------------------

function tableOf(count: number, decode: (code: number) => number): Float32Array {
  const table = new Float32Array(count);
  for (let code = 0; code < count; code++) table[code] = decode(code);
  return table;
}

/** float8_e4m3fn code → value (256 entries). */
export const E4M3_TO_F32: Float32Array = tableOf(256, decodeE4M3);
/** float8_e5m2 code → value (256 entries). */
export const E5M2_TO_F32: Float32Array = tableOf(256, decodeE5M2);
/** float8_e4m3fnuz code → value (256 entries). */
export const E4M3FNUZ_TO_F32: Float32Array = tableOf(256, decodeE4M3FNUZ);
/** float8_e5m2fnuz code → value (256 entries). */
export const E5M2FNUZ_TO_F32: Float32Array = tableOf(256, decodeE5M2FNUZ);
/** float8_e8m0fnu code → value (256 entries). */
export const E8M0_TO_F32: Float32Array = tableOf(256, decodeE8M0);
/** F4 nibble → value (16 entries). */
export const F4_TO_F32: Float32Array = tableOf(16, decodeF4);
/** F6_E2M3 code → value (64 entries). */
export const F6_E2M3_TO_F32: Float32Array = tableOf(64, decodeF6E2M3);
/** F6_E3M2 code → value (64 entries). */
export const F6_E3M2_TO_F32: Float32Array = tableOf(64, decodeF6E3M2);

let f16Table: Float32Array | undefined;

/**
 * F16 code → float32 (65536 entries, 256 KiB), built on first use. Built on the bits, so NaN payloads carry
 * over exactly (the f16 payload shifted into the top of the f32 payload).
 */
export function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0x1f) bits[h] = sign | 0x7f800000 | (m << 13);
    else if (e !== 0) bits[h] = sign | ((e + 112) << 23) | (m << 13);
    else bits[h] = sign | encodeF32(m * pow2(-24)); // subnormal or zero: m·2^-24 is exact in float32
  }
  f16Table = new Float32Array(bits.buffer);
  return f16Table;
}

/** The Float32Array(256) decode table of an 8-bit float dtype, or undefined for other dtypes. */
export function fp8DecodeTable(dtype: DType): Float32Array | undefined {
  switch (dtype) {
    case 'F8_E4M3':
      return E4M3_TO_F32;
    case 'F8_E5M2':
      return E5M2_TO_F32;
    case 'F8_E4M3FNUZ':
      return E4M3FNUZ_TO_F32;
    case 'F8_E5M2FNUZ':
      return E5M2FNUZ_TO_F32;
    case 'F8_E8M0':
      return E8M0_TO_F32;
    default:
      return undefined;
  }
}
