/**
 * compressed-tensors `pack_to_int32` / `unpack_from_int32` (compressors/pack_quantized/helpers.py,
 * docs/formats.md §3.6) and the NVFP4 nibble packing (§3.9).
 *
 * pack_to_int32, for b ∈ [1, 8]:
 * - a signed value q ∈ [−2^(b−1), 2^(b−1) − 1] is stored as u = q + 2^(b−1);
 * - along the packed dimension, element j goes to bit j·b of a dense LSB-first bitstream of int32 words
 *   (word k holds stream bits 32k … 32k+31); fields cross word boundaries for b ∈ {3, 5, 6, 7} (CT ≥ 0.18;
 *   for b ∈ {1, 2, 4, 8} this equals the older "32/b per word" layout);
 * - each row of the stream is zero-padded to whole words (ceil(n·b/32) words), padded fields hold raw 0;
 * - packedDim 1 (weights): W [rows, cols] → [rows, ceil(cols·b/32)];
 *   packedDim 0 (zero points): Z [rows, cols] → [ceil(rows·b/32), cols], every column packed down the rows.
 * Values outside the b-bit range throw (upstream would silently corrupt the neighbouring fields).
 */

export class PackError extends Error {
  override readonly name = 'PackError';
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new PackError(`packing supports 1–8 bits, got ${bits}`);
}

function checkDims(rows: number, cols: number): void {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0) throw new PackError(`shape must be two non-negative integers, got [${rows}, ${cols}]`);
}

/** int32 words that hold `count` b-bit fields. */
export function packedWordCount(count: number, bits: number): number {
  return Math.ceil((count * bits) / 32);
}

/** The packed shape of an unpacked [rows, cols] tensor. */
export function packedShape(rows: number, cols: number, bits: number, packedDim: 0 | 1 = 1): [number, number] {
  return packedDim === 1 ? [rows, packedWordCount(cols, bits)] : [packedWordCount(rows, bits), cols];
}

function rangeError(value: number, bits: number, where: string): PackError {
  return new PackError(`value ${value} at ${where} does not fit ${bits} bits (allowed ${-(2 ** (bits - 1))} … ${2 ** (bits - 1) - 1})`);
}

/**
 * Packs a dense LSB-first stream of `n` fields read from `src[s + i·stride]` (signed; stored as v + offset)
 * into words `dst[d + k·dstride]`. Returns the first bad value's index, or −1.
 */
function packStream(src: Int8Array, s: number, stride: number, n: number, bits: number, dst: Int32Array, d: number, dstride: number): number {
  const off = 1 << (bits - 1);
  let w = 0;
  let p = 0;
  let o = d;
  for (let i = 0; i < n; i++) {
    const u = src[s + i * stride]! + off;
    if (u >>> bits !== 0) return i;
    w |= u << p;
    p += bits;
    if (p >= 32) {
      dst[o] = w;
      o += dstride;
      p -= 32;
      w = p > 0 ? u >>> (bits - p) : 0;
    }
  }
  if (p > 0) dst[o] = w;
  return -1;
}

/** Unpacks `n` fields of a stream at `src[s + k·sstride]` into `dst[d + i·stride]` (minus the offset). */
function unpackStream(src: Int32Array, s: number, sstride: number, n: number, bits: number, dst: Int8Array, d: number, stride: number): void {
  const off = 1 << (bits - 1);
  const mask = (1 << bits) - 1;
  let k = s;
  let w = src[k]! >>> 0;
  let p = 0;
  for (let i = 0; i < n; i++) {
    if (p === 32) {
      k += sstride;
      w = src[k]! >>> 0;
      p = 0;
    }
    let u: number;
    if (p + bits <= 32) {
      u = (w >>> p) & mask;
      p += bits;
    } else {
      const lo = 32 - p;
      u = w >>> p;
      k += sstride;
      w = src[k]! >>> 0;
      u = (u | (w << lo)) & mask;
      p = bits - lo;
    }
    dst[d + i * stride] = u - off;
  }
}

/**
 * 4-bit fast path for one row starting at int32 word `ws` of an aligned int32 view of the int8 values:
 * 8 fields per output word from two input words. Byte v ∈ [−8, 7] ⇔ its high nibble is the sign extension
 * of bit 3; the stored nibble is (v + 8) & 15 = (v XOR 8) & 15. Returns the first bad field or −1.
 */
function pack4Words(src: Int32Array, ws: number, outWords: number, dst: Int32Array, d: number): number {
  for (let k = 0; k < outWords; k++) {
    const a = src[ws + 2 * k]!;
    const b = src[ws + 2 * k + 1]!;
    const badA = (a & 0xf0f0f0f0) ^ (((a & 0x08080808) >>> 3) * 0xf0);
    const badB = (b & 0xf0f0f0f0) ^ (((b & 0x08080808) >>> 3) * 0xf0);
    if ((badA | badB) !== 0) {
      const t = badA !== 0 ? badA : badB;
      let byte = 0;
      while (((t >>> (8 * byte)) & 0xff) === 0) byte++;
      return 8 * k + (badA !== 0 ? 0 : 4) + byte;
    }
    let x = (a ^ 0x08080808) & 0x0f0f0f0f;
    x = (x | (x >>> 4)) & 0x00ff00ff;
    x = (x | (x >>> 8)) & 0xffff;
    let y = (b ^ 0x08080808) & 0x0f0f0f0f;
    y = (y | (y >>> 4)) & 0x00ff00ff;
    y = (y | (y >>> 8)) & 0xffff;
    dst[d + k] = x | (y << 16);
  }
  return -1;
}

/** 4-bit, any alignment: 8 fields per word. Returns the first bad field or −1. */
function pack4Row(src: Int8Array, s: number, n: number, dst: Int32Array, d: number): number {
  const full = n >>> 3;
  for (let k = 0; k < full; k++) {
    const b = s + 8 * k;
    let w = 0;
    for (let j = 7; j >= 0; j--) {
      const u = src[b + j]! + 8;
      if (u >>> 4 !== 0) return 8 * k + j;
      w = (w << 4) | u;
    }
    dst[d + k] = w;
  }
  if (full * 8 < n) {
    const bad = packStream(src, s + full * 8, 1, n - full * 8, 4, dst, d + full, 1);
    if (bad >= 0) return full * 8 + bad;
  }
  return -1;
}

/** 8-bit fast path: u = q + 128 = q XOR 0x80 per byte, four at a time from an aligned int32 view. */
function pack8Words(src: Int32Array, ws: number, outWords: number, dst: Int32Array, d: number): void {
  for (let k = 0; k < outWords; k++) dst[d + k] = src[ws + k]! ^ 0x80808080;
}

function pack8Row(src: Int8Array, s: number, n: number, dst: Int32Array, d: number): void {
  const full = n >>> 2;
  for (let k = 0; k < full; k++) {
    const b = s + 4 * k;
    dst[d + k] = (src[b]! + 128) | ((src[b + 1]! + 128) << 8) | ((src[b + 2]! + 128) << 16) | ((src[b + 3]! + 128) << 24);
  }
  if (full * 4 < n) packStream(src, s + full * 4, 1, n - full * 4, 8, dst, d + full, 1);
}

/**
 * compressed-tensors `pack_to_int32(values, bits, packed_dim)` for a 2-D int8 tensor [rows, cols]
 * (row-major). Returns the packed words row-major in `packedShape(rows, cols, bits, packedDim)`.
 */
export function packToInt32(values: Int8Array, rows: number, cols: number, bits: number, packedDim: 0 | 1 = 1, out?: Int32Array): Int32Array {
  checkBits(bits);
  checkDims(rows, cols);
  if (values.length !== rows * cols) throw new PackError(`values hold ${values.length} elements, the shape [${rows}, ${cols}] needs ${rows * cols}`);
  const [pr, pc] = packedShape(rows, cols, bits, packedDim);
  const words = pr * pc;
  if (out && out.length < words) throw new PackError(`out holds ${out.length} words, ${words} are needed`);
  const dst = out ? (out.length === words ? out : out.subarray(0, words)) : new Int32Array(words);
  if (out) dst.fill(0);
  if (packedDim === 1) {
    // Word views need 4-byte aligned rows whose length is a whole number of output words.
    const aligned = values.byteOffset % 4 === 0 && ((bits === 4 && cols % 8 === 0) || (bits === 8 && cols % 4 === 0));
    const words = aligned ? new Int32Array(values.buffer, values.byteOffset, (rows * cols) >>> 2) : undefined;
    for (let r = 0; r < rows; r++) {
      const s = r * cols;
      const d = r * pc;
      let bad = -1;
      if (words && bits === 4) bad = pack4Words(words, s >>> 2, pc, dst, d);
      else if (words) pack8Words(words, s >>> 2, pc, dst, d);
      else if (bits === 4) bad = pack4Row(values, s, cols, dst, d);
      else if (bits === 8) pack8Row(values, s, cols, dst, d);
      else bad = packStream(values, s, 1, cols, bits, dst, d, 1);
      if (bad >= 0) throw rangeError(values[s + bad]!, bits, `[${r}, ${bad}]`);
    }
  } else {
    for (let c = 0; c < cols; c++) {
      const bad = packStream(values, c, cols, rows, bits, dst, c, pc);
      if (bad >= 0) throw rangeError(values[bad * cols + c]!, bits, `[${bad}, ${c}]`);
    }
  }
  return dst;
}

/**
 * compressed-tensors `unpack_from_int32(packed, bits, shape, packed_dim)`: `rows`, `cols` are the unpacked
 * shape (weight_shape, or [out, groups] for zero points). Returns int8 [rows, cols].
 */
export function unpackFromInt32(packed: Int32Array, rows: number, cols: number, bits: number, packedDim: 0 | 1 = 1, out?: Int8Array): Int8Array {
  checkBits(bits);
  checkDims(rows, cols);
  const [pr, pc] = packedShape(rows, cols, bits, packedDim);
  if (packed.length !== pr * pc) throw new PackError(`packed tensor holds ${packed.length} words, [${rows}, ${cols}] at ${bits} bits packed along dim ${packedDim} needs [${pr}, ${pc}] = ${pr * pc}`);
  const n = rows * cols;
  if (out && out.length < n) throw new PackError(`out holds ${out.length} elements, ${n} are needed`);
  const dst = out ? (out.length === n ? out : out.subarray(0, n)) : new Int8Array(n);
  if (n === 0) return dst;
  if (packedDim === 1) {
    if (bits === 4 || bits === 8 || bits === 2 || bits === 1) {
      const per = 32 / bits;
      const mask = (1 << bits) - 1;
      const off = 1 << (bits - 1);
      for (let r = 0; r < rows; r++) {
        const s = r * pc;
        const d = r * cols;
        for (let c = 0; c < cols; c++) {
          const w = packed[s + ((c / per) | 0)]!;
          dst[d + c] = ((w >>> ((c % per) * bits)) & mask) - off;
        }
      }
    } else {
      for (let r = 0; r < rows; r++) unpackStream(packed, r * pc, 1, cols, bits, dst, r * cols, 1);
    }
  } else {
    for (let c = 0; c < cols; c++) unpackStream(packed, c, pc, rows, bits, dst, c, cols);
  }
  return dst;
}

// ---------------------------------------------------------------------------------------------------------
// Unsigned dense bitstreams with any word width (GPTQ qweight/qzeros, GPTQModel pack_dtype int8/16/32)
// ---------------------------------------------------------------------------------------------------------

export type WordArray = Int8Array | Int16Array | Int32Array | Uint8Array | Uint16Array | Uint32Array;

/**
 * Writes `n` unsigned b-bit fields (`fields(i)`) as a dense LSB-first bitstream into words
 * `dst[d + k·dstride]` of the array's width (8, 16 or 32 bits). Field i occupies stream bits i·b … i·b+b−1.
 * The words touched are overwritten (trailing bits zero).
 */
export function writeBitstream(fields: (i: number) => number, n: number, bits: number, dst: WordArray, d = 0, dstride = 1): void {
  const W = dst.BYTES_PER_ELEMENT * 8;
  const mask = bits >= 32 ? 0xffffffff : (1 << bits) - 1;
  let w = 0;
  let p = 0;
  let o = d;
  for (let i = 0; i < n; i++) {
    const u = fields(i);
    if (u < 0 || u > mask || !Number.isInteger(u)) throw new PackError(`field ${i} = ${u} does not fit ${bits} unsigned bits`);
    let rest = u;
    let left = bits;
    while (left > 0) {
      const take = Math.min(left, W - p);
      w = (w | ((rest & ((1 << take) - 1)) << p)) >>> 0;
      rest = rest >>> take;
      left -= take;
      p += take;
      if (p === W) {
        dst[o] = w;
        o += dstride;
        w = 0;
        p = 0;
      }
    }
  }
  if (p > 0) dst[o] = w;
}

/** Reads `n` unsigned b-bit fields of a dense LSB-first bitstream over words `src[s + k·sstride]`. */
export function readBitstream(src: WordArray, n: number, bits: number, s = 0, sstride = 1, into?: (i: number, v: number) => void): Uint32Array {
  const W = src.BYTES_PER_ELEMENT * 8;
  const wordMask = W === 32 ? 0xffffffff : (1 << W) - 1;
  const outArr = into ? new Uint32Array(0) : new Uint32Array(n);
  let k = s;
  let p = 0;
  for (let i = 0; i < n; i++) {
    let v = 0;
    let got = 0;
    while (got < bits) {
      const take = Math.min(bits - got, W - p);
      const word = (src[k]! & wordMask) >>> 0;
      v = (v | (((word >>> p) & ((1 << take) - 1)) << got)) >>> 0;
      got += take;
      p += take;
      if (p === W) {
        p = 0;
        k += sstride;
      }
    }
    if (into) into(i, v);
    else outArr[i] = v;
  }
  return outArr;
}

// ---------------------------------------------------------------------------------------------------------
// NVFP4 (E2M1 nibbles, even column in the low nibble)
// ---------------------------------------------------------------------------------------------------------

/** Packs F4 E2M1 codes (0…15, bit 3 = sign) [rows, cols] into bytes [rows, cols/2]; cols must be even. */
export function packNvfp4(codes: Uint8Array, rows: number, cols: number): Uint8Array {
  checkDims(rows, cols);
  if (cols % 2 !== 0) throw new PackError(`NVFP4 packing needs an even number of columns, got ${cols}`);
  if (codes.length !== rows * cols) throw new PackError(`codes hold ${codes.length} elements, [${rows}, ${cols}] needs ${rows * cols}`);
  const out = new Uint8Array((rows * cols) / 2);
  for (let i = 0; i < out.length; i++) {
    const lo = codes[2 * i]!;
    const hi = codes[2 * i + 1]!;
    if ((lo | hi) > 15) throw new PackError(`F4 code ${Math.max(lo, hi)} at element ${lo > 15 ? 2 * i : 2 * i + 1} is not a nibble`);
    out[i] = lo | (hi << 4);
  }
  return out;
}

/** Inverse of packNvfp4: bytes [rows, cols/2] → F4 codes [rows, cols]. */
export function unpackNvfp4(packed: Uint8Array, rows: number, cols: number): Uint8Array {
  checkDims(rows, cols);
  if (cols % 2 !== 0) throw new PackError(`NVFP4 packing needs an even number of columns, got ${cols}`);
  if (packed.length * 2 !== rows * cols) throw new PackError(`packed holds ${packed.length} bytes, [${rows}, ${cols}] needs ${(rows * cols) / 2}`);
  const out = new Uint8Array(rows * cols);
  for (let i = 0; i < packed.length; i++) {
    out[2 * i] = packed[i]! & 15;
    out[2 * i + 1] = packed[i]! >>> 4;
  }
  return out;
}
