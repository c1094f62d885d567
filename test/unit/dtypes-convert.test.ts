// Bulk conversion (src/core/dtypes/convert.ts): raw little-endian bytes ↔ Float32Array / Float64Array.
// Integers and F32/F64 are checked against DataView reads written here; the float formats against the
// scalar codecs (verified independently in dtypes.test.ts) and a bit-level reference packer for F4/F6.
import assert from 'node:assert/strict';
import { rng } from '../helpers/random';
import { vectorsDir } from '../helpers/paths';
import { readFileSync } from 'node:fs';
import { DTYPES, type DType } from '../../src/core/dtypes/dtype';
import { bytesForElements, decodeToFloat32, decodeToFloat64, elementsInBytes, encodeFromFloat32, DTypeError } from '../../src/core/dtypes/convert';
import * as F from '../../src/core/dtypes/float';

const vectorsPath = vectorsDir;


function randomBytes(n: number, seed: number): Uint8Array {
  const rand = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

/** A copy of `bytes` that starts `shift` bytes into a fresh buffer (to exercise misaligned input). */
function shifted(bytes: Uint8Array, shift: number): Uint8Array {
  const buf = new Uint8Array(bytes.length + shift + 8);
  buf.set(bytes, shift);
  return buf.subarray(shift, shift + bytes.length);
}

function isDTypeError(code: string, dtype: string, pattern?: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof DTypeError, `expected a DTypeError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.dtype, dtype);
    assert.ok(error.message.includes(dtype), `the message names the dtype: ${error.message}`);
    if (pattern) assert.match(error.message, pattern);
    return true;
  };
}

/** Compares two float arrays element by element: NaN matches NaN, zeros by sign. */
function assertSameFloats(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e)) assert.ok(Number.isNaN(a), `${what}[${i}]: expected NaN, got ${a}`);
    else if (!Object.is(a, e)) assert.fail(`${what}[${i}]: expected ${Object.is(e, -0) ? '-0' : e}, got ${Object.is(a, -0) ? '-0' : a}`);
  }
}

/** Test-side values of little-endian bytes, read with DataView. */
function dataViewValues(dtype: DType, bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  const read: Partial<Record<DType, [number, (o: number) => number]>> = {
    BOOL: [1, (o) => (view.getUint8(o) ? 1 : 0)],
    U8: [1, (o) => view.getUint8(o)],
    I8: [1, (o) => view.getInt8(o)],
    U16: [2, (o) => view.getUint16(o, true)],
    I16: [2, (o) => view.getInt16(o, true)],
    U32: [4, (o) => view.getUint32(o, true)],
    I32: [4, (o) => view.getInt32(o, true)],
    F32: [4, (o) => view.getFloat32(o, true)],
    F64: [8, (o) => view.getFloat64(o, true)],
    I64: [8, (o) => Number(view.getBigInt64(o, true))],
    U64: [8, (o) => Number(view.getBigUint64(o, true))],
  };
  const [size, get] = read[dtype]!;
  for (let o = 0; o < bytes.length; o += size) out.push(get(o));
  return out;
}

/** Bit-level reference packer: element i occupies stream bits [bits·i, bits·i + bits), LSB first. */
function referencePack(codes: number[], bits: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((codes.length * bits) / 8));
  codes.forEach((code, i) => {
    for (let k = 0; k < bits; k++) {
      const bit = i * bits + k;
      if ((code >> k) & 1) out[bit >> 3]! |= 1 << (bit & 7);
    }
  });
  return out;
}
function referenceUnpack(bytes: Uint8Array, count: number, bits: number): number[] {
  const codes: number[] = [];
  for (let i = 0; i < count; i++) {
    let code = 0;
    for (let k = 0; k < bits; k++) {
      const bit = i * bits + k;
      code |= ((bytes[bit >> 3]! >> (bit & 7)) & 1) << k;
    }
    codes.push(code);
  }
  return codes;
}

const SCALAR_DECODE: Partial<Record<DType, (code: number) => number>> = {
  F16: F.decodeF16,
  BF16: F.decodeBF16,
  F8_E4M3: F.decodeE4M3,
  F8_E5M2: F.decodeE5M2,
  F8_E4M3FNUZ: F.decodeE4M3FNUZ,
  F8_E5M2FNUZ: F.decodeE5M2FNUZ,
  F8_E8M0: F.decodeE8M0,
  F4: F.decodeF4,
  F6_E2M3: F.decodeF6E2M3,
  F6_E3M2: F.decodeF6E3M2,
};

/** Every element code of a ≤16-bit float format as little-endian bytes (F4/F6 packed). */
function allCodes(dtype: DType): { codes: number[]; bytes: Uint8Array } {
  const bits = F.miniFloatFormat(dtype)?.bits ?? 8;
  const codes = Array.from({ length: 1 << bits }, (_, i) => i);
  if (bits === 16) return { codes, bytes: new Uint8Array(Uint16Array.from(codes).buffer) };
  return { codes, bytes: referencePack(codes, bits) };
}

const FLOAT_SMALL: DType[] = ['F16', 'BF16', 'F8_E4M3', 'F8_E5M2', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2'];

describe('dtypes/convert: sizes', () => {
  it('bytesForElements for every dtype (ceil for sub-byte)', () => {
    const expected: Record<DType, [number, number][]> = {
      BOOL: [[0, 0], [3, 3]],
      F4: [[0, 0], [1, 1], [2, 1], [3, 2], [7, 4]],
      F6_E2M3: [[1, 1], [2, 2], [3, 3], [4, 3], [5, 4], [8, 6]],
      F6_E3M2: [[1, 1], [4, 3], [7, 6]],
      U8: [[5, 5]], I8: [[5, 5]],
      F8_E5M2: [[5, 5]], F8_E4M3: [[5, 5]], F8_E8M0: [[5, 5]], F8_E4M3FNUZ: [[5, 5]], F8_E5M2FNUZ: [[5, 5]],
      I16: [[5, 10]], U16: [[5, 10]], F16: [[5, 10]], BF16: [[5, 10]],
      I32: [[5, 20]], U32: [[5, 20]], F32: [[5, 20]],
      C64: [[5, 40]], F64: [[5, 40]], I64: [[5, 40]], U64: [[5, 40]],
    };
    for (const dtype of DTYPES) for (const [count, bytes] of expected[dtype]) assert.equal(bytesForElements(dtype, count), bytes, `${dtype} × ${count}`);
    assert.throws(() => bytesForElements('F16', -1), isDTypeError('ElementCount', 'F16'));
    assert.throws(() => bytesForElements('F16', 1.5), isDTypeError('ElementCount', 'F16'));
    assert.throws(() => bytesForElements('F17' as DType, 1), isDTypeError('UnknownDType', 'F17'));
  });

  it('elementsInBytes: exact division for whole-byte dtypes, whole elements for F4/F6', () => {
    assert.equal(elementsInBytes('BF16', 10), 5);
    assert.equal(elementsInBytes('F4', 3), 6);
    assert.equal(elementsInBytes('F6_E2M3', 3), 4);
    assert.equal(elementsInBytes('F6_E2M3', 4), 5);
    assert.throws(() => elementsInBytes('F32', 6), isDTypeError('ByteLength', 'F32', /6 .*multiple.*4 bytes/));
  });
});

describe('dtypes/convert: round trips', () => {
  for (const dtype of FLOAT_SMALL) {
    it(`${dtype}: every code decodes like the scalar codec (f32 and f64) and re-encodes to itself (NaNs to a NaN)`, () => {
      const { codes, bytes } = allCodes(dtype);
      const decode = SCALAR_DECODE[dtype]!;
      const expected = codes.map(decode);
      const values = decodeToFloat32(dtype, bytes, undefined, codes.length);
      assertSameFloats(values, expected, `${dtype} → f32`);
      assertSameFloats(decodeToFloat64(dtype, bytes, undefined, codes.length), expected, `${dtype} → f64`);
      for (const input of [values, Float64Array.from(values)]) {
        const encoded = encodeFromFloat32(dtype, input, undefined, { saturate: false });
        assert.equal(encoded.length, bytes.length);
        const back = decodeToFloat32(dtype, encoded, undefined, codes.length);
        const roundTripCodes = F.miniFloatFormat(dtype) && F.miniFloatFormat(dtype)!.bits < 8 ? referenceUnpack(encoded, codes.length, F.miniFloatFormat(dtype)!.bits) : null;
        for (let i = 0; i < codes.length; i++) {
          if (Number.isNaN(expected[i]!)) {
            assert.ok(Number.isNaN(back[i]!), `${dtype} NaN code 0x${i.toString(16)} stays NaN`);
            continue;
          }
          if (roundTripCodes) assert.equal(roundTripCodes[i], codes[i], `${dtype} code ${i}`);
        }
        if (!expected.some(Number.isNaN)) assert.deepEqual(encoded, bytes, `${dtype}: byte-identical (${input.constructor.name})`);
        else {
          // Byte-identical except the NaN codes, which become the format's NaN.
          const bits = F.miniFloatFormat(dtype)?.bits ?? 8;
          const width = bits === 16 ? 2 : 1;
          for (let i = 0; i < codes.length; i++) {
            if (Number.isNaN(expected[i]!)) continue;
            const got = width === 2 ? encoded[2 * i]! | (encoded[2 * i + 1]! << 8) : encoded[i]!;
            assert.equal(got, codes[i], `${dtype} code 0x${i.toString(16)} (${input.constructor.name})`);
          }
        }
      }
    });
  }

  it('BF16: NaN payloads survive decode → encode bit-exactly (quiet NaNs), signalling NaNs come back quiet, never Inf', () => {
    const codes = [0x7fc0, 0xffc0, 0x7fc1, 0x7fff, 0xffd5, 0x7f81, 0xff81, 0x7fa0];
    const bytes = new Uint8Array(Uint16Array.from(codes).buffer);
    const back = new Uint16Array(encodeFromFloat32('BF16', decodeToFloat32('BF16', bytes)).buffer);
    assert.deepEqual(Array.from(back), [0x7fc0, 0xffc0, 0x7fc1, 0x7fff, 0xffd5, 0x7fc1, 0xffc1, 0x7fe0]);
    // f32 NaNs whose payload sits only in the low 16 bits must not round into Inf (0x7F80)
    const f32 = new Float32Array(new Uint32Array([0x7f800001, 0xff80ffff, 0x7fbfffff]).buffer);
    for (const code of new Uint16Array(encodeFromFloat32('BF16', f32).buffer)) {
      assert.ok((code & 0x7f80) === 0x7f80 && (code & 0x7f) !== 0, `0x${code.toString(16)} is a NaN code`);
    }
  });

  it('BF16 from float32 bits: RNE ties, overflow to Inf, and agreement with the scalar encoder on random bits', () => {
    const bits = Uint32Array.from([0x3f808000, 0x3f818000, 0x3f808001, 0xbf818000, 0x7f7fffff, 0x7f7f7fff, 0x00008000, 0x00018000, 0x80000000]);
    const got = new Uint16Array(encodeFromFloat32('BF16', new Float32Array(bits.buffer)).buffer);
    assert.deepEqual(Array.from(got), [0x3f80, 0x3f82, 0x3f81, 0xbf82, 0x7f80, 0x7f7f, 0x0000, 0x0002, 0x8000]);
    const rand = rng(7);
    const random = new Uint32Array(20000).map(() => Math.floor(rand() * 4294967296));
    const values = new Float32Array(random.buffer);
    const encoded = new Uint16Array(encodeFromFloat32('BF16', values).buffer);
    for (let i = 0; i < values.length; i++) {
      if (Number.isNaN(values[i]!)) assert.equal(encoded[i], (random[i]! >>> 16) | 0x40);
      else assert.equal(encoded[i], F.encodeBF16(values[i]!), `bits 0x${random[i]!.toString(16)}`);
    }
  });

  for (const dtype of ['F16', 'F8_E4M3', 'F8_E5M2', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2'] as const) {
    it(`${dtype}: bulk encode (float32 bit path and float64 path) equals the scalar encoder on random values, both saturation modes`, () => {
      const f = F.miniFloatFormat(dtype);
      const max = f ? f.max : 2 ** 127;
      const rand = rng(dtype.length * 977);
      const n = 6001; // odd: exercises the F4/F6 tails
      const values = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const u = rand();
        // mostly in range, some subnormal, some beyond max
        values[i] = (rand() < 0.5 ? -1 : 1) * (u < 0.1 ? (f ? f.minSubnormal : 2 ** -127) * rand() * 4 : u < 0.9 ? max * rand() : max * (1 + 3 * rand()));
      }
      values[0] = Infinity;
      values[1] = -Infinity;
      values[2] = -0;
      values[3] = 0;
      const saturateModes = dtype === 'F16' ? [true] : [true, false];
      for (const saturate of saturateModes) {
        const scalar = (x: number): number | 'throws' => {
          try {
            switch (dtype) {
              case 'F16': return F.encodeF16(x);
              case 'F8_E8M0': return F.encodeE8M0(x, { saturate });
              default: return f!.encode(x, saturate);
            }
          } catch (error) {
            assert.ok(error instanceof DTypeError);
            return 'throws';
          }
        };
        const expectedCodes = Array.from(values, scalar);
        if (expectedCodes.includes('throws')) {
          assert.ok(!saturate && (dtype === 'F4' || dtype.startsWith('F6')), 'only non-saturating F4/F6 overflow throws');
          assert.throws(() => encodeFromFloat32(dtype, values, undefined, { saturate }), isDTypeError('NotRepresentable', dtype));
          continue;
        }
        const bits = f ? f.bits : 8;
        const expectedBytes = bits === 16 ? new Uint8Array(Uint16Array.from(expectedCodes as number[]).buffer) : bits === 8 ? Uint8Array.from(expectedCodes as number[]) : referencePack(expectedCodes as number[], bits);
        assert.deepEqual(encodeFromFloat32(dtype, values, undefined, { saturate }), expectedBytes, `float32 input, saturate ${saturate}`);
        assert.deepEqual(encodeFromFloat32(dtype, Float64Array.from(values), undefined, { saturate }), expectedBytes, `float64 input, saturate ${saturate}`);
      }
    });
  }

  for (const dtype of ['F16', 'BF16', 'F8_E4M3', 'F8_E5M2', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'F4', 'F6_E2M3', 'F6_E3M2'] as const) {
    it(`${dtype}: float32 bit path rounds every midpoint to the even code and one float32 ulp off it to the nearer side`, () => {
      const f = F.miniFloatFormat(dtype)!;
      const values: number[] = [];
      const expected: number[] = [];
      for (let lo = 0; lo < f.maxCode; lo++) {
        const a = f.decode(lo);
        const b = f.decode(lo + 1);
        const mid = (a + b) / 2;
        assert.equal(Math.fround(mid), mid, 'the midpoint is a float32');
        const even = lo % 2 === 0 ? lo : lo + 1;
        const down = new Float32Array([mid]);
        const bits = new Uint32Array(down.buffer);
        bits[0]! -= 1; // one float32 ulp below (mid > 0)
        const below = down[0]!;
        bits[0]! += 2;
        const above = down[0]!;
        for (const sign of [1, -1]) {
          const withSign = (c: number) => (sign < 0 && !(f.special === 'fnuz' && c === 0) ? c | f.signMask : c);
          values.push(sign * mid, sign * below, sign * above);
          expected.push(withSign(even), withSign(lo), withSign(lo + 1));
        }
      }
      const bitsPerCode = f.bits;
      const got = encodeFromFloat32(dtype, Float32Array.from(values));
      const codes = bitsPerCode === 16 ? Array.from(new Uint16Array(got.buffer, got.byteOffset, values.length)) : bitsPerCode === 8 ? Array.from(got) : referenceUnpack(got, values.length, bitsPerCode);
      for (let i = 0; i < values.length; i++) assert.equal(codes[i], expected[i], `${dtype}(${values[i]}) → 0x${codes[i]!.toString(16)}, expected 0x${expected[i]!.toString(16)}`);
    });
  }

  it('FP8 from float32 keeps the sign of NaN (0x7F|sign); FNUZ has the single NaN 0x80', () => {
    const nan = new Float32Array(new Uint32Array([0x7fc00000, 0xffc00000, 0xff800001]).buffer);
    assert.deepEqual(Array.from(encodeFromFloat32('F8_E4M3', nan)), [0x7f, 0xff, 0xff]);
    assert.deepEqual(Array.from(encodeFromFloat32('F8_E5M2', nan)), [0x7f, 0xff, 0xff]);
    assert.deepEqual(Array.from(encodeFromFloat32('F8_E4M3FNUZ', nan)), [0x80, 0x80, 0x80]);
    assert.deepEqual(Array.from(encodeFromFloat32('F8_E8M0', nan)), [0xff, 0xff, 0xff]);
    const f16 = new Uint16Array(encodeFromFloat32('F16', nan).buffer);
    assert.deepEqual(Array.from(f16, (c) => c & 0xfe00), [0x7e00, 0xfe00, 0xfe00]);
    assert.throws(() => encodeFromFloat32('F4', nan), isDTypeError('NotRepresentable', 'F4', /NaN/));
  });

  it('FP8 bulk encode saturates by default, as quantizers do', () => {
    const values = Float32Array.from([1000, -1000, Infinity, -Infinity, 464, 465]);
    assert.deepEqual(Array.from(encodeFromFloat32('F8_E4M3', values)), [0x7e, 0xfe, 0x7e, 0xfe, 0x7e, 0x7e]);
    assert.deepEqual(Array.from(encodeFromFloat32('F8_E4M3', values, undefined, { saturate: false })), [0x7f, 0xff, 0x7f, 0xff, 0x7e, 0x7f]);
    // 1000 rounds to 1024 (0x64) in E5M2, well inside its range
    assert.deepEqual(Array.from(encodeFromFloat32('F8_E5M2', values, undefined, { saturate: false })).slice(0, 4), [0x64, 0xe4, 0x7c, 0xfc]);
  });

  for (const dtype of ['I8', 'U8', 'I16', 'U16'] as const) {
    it(`${dtype}: every value decodes like DataView and re-encodes byte-identically`, () => {
      const size = dtype.endsWith('8') ? 1 : 2;
      const bytes = size === 1 ? Uint8Array.from({ length: 256 }, (_, i) => i) : new Uint8Array(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer);
      const values = decodeToFloat32(dtype, bytes);
      assert.deepEqual(Array.from(values), dataViewValues(dtype, bytes));
      assert.deepEqual(Array.from(decodeToFloat64(dtype, bytes)), dataViewValues(dtype, bytes));
      assert.deepEqual(encodeFromFloat32(dtype, values), bytes);
      assert.deepEqual(encodeFromFloat32(dtype, Float64Array.from(values)), bytes);
    });
  }

  for (const dtype of ['I32', 'U32', 'I64', 'U64', 'F32', 'F64'] as const) {
    it(`${dtype}: random and boundary values decode like DataView; float64 round trip is byte-identical`, () => {
      const size = dtype.endsWith('64') ? 8 : 4;
      const rand = randomBytes(size * 4000, size * 31 + dtype.charCodeAt(0));
      const view = new DataView(rand.buffer);
      if (dtype === 'I64' || dtype === 'U64') {
        // keep 64-bit integers within ±2^53 so that they are exact as doubles
        for (let o = 0; o < rand.length; o += 8) view.setUint32(o + 4, dtype === 'I64' ? (view.getInt32(o + 4, true) >> 11) >>> 0 : view.getUint32(o + 4, true) >>> 11, true);
      }
      if (dtype === 'F32' || dtype === 'F64') {
        // replace NaNs (their payloads need not survive a Number round trip)
        for (let o = 0; o < rand.length; o += size) {
          const v = size === 4 ? view.getFloat32(o, true) : view.getFloat64(o, true);
          if (Number.isNaN(v)) view.setUint8(o + size - 1, 0);
        }
      }
      const boundaries: Record<string, number[]> = {
        I32: [-2147483648, 2147483647, 0, -1], U32: [0, 4294967295, 2147483648], I64: [-(2 ** 53), 2 ** 53, -1, 0], U64: [0, 2 ** 53, 4294967296],
        F32: [0, -0, Infinity, -Infinity, 2 ** -149, 3.4028234663852886e38], F64: [0, -0, Infinity, Number.MIN_VALUE, Number.MAX_VALUE],
      };
      const bytes = new Uint8Array(rand.length + size * boundaries[dtype]!.length);
      bytes.set(rand);
      const bview = new DataView(bytes.buffer);
      boundaries[dtype]!.forEach((v, k) => {
        const o = rand.length + k * size;
        if (dtype === 'I32') bview.setInt32(o, v, true);
        else if (dtype === 'U32') bview.setUint32(o, v, true);
        else if (dtype === 'I64') bview.setBigInt64(o, BigInt(v), true);
        else if (dtype === 'U64') bview.setBigUint64(o, BigInt(v), true);
        else if (dtype === 'F32') bview.setFloat32(o, v, true);
        else bview.setFloat64(o, v, true);
      });
      const expected = dataViewValues(dtype, bytes);
      const f64 = decodeToFloat64(dtype, bytes);
      assertSameFloats(f64, expected, `${dtype} → f64`);
      assertSameFloats(decodeToFloat32(dtype, bytes), expected.map(Math.fround), `${dtype} → f32`);
      assert.deepEqual(encodeFromFloat32(dtype, f64), bytes, `${dtype}: f64 → bytes`);
      if (dtype === 'F32') assert.deepEqual(encodeFromFloat32(dtype, decodeToFloat32(dtype, bytes)), bytes, 'F32 → f32 → bytes');
    });
  }

  it('64-bit integers beyond 2^53 go through Number (rounded to a double), and saturate at the type range', () => {
    const bytes = new Uint8Array(32);
    const view = new DataView(bytes.buffer);
    view.setBigInt64(0, 2n ** 53n + 1n, true);
    view.setBigInt64(8, -(2n ** 63n), true);
    view.setBigInt64(16, 2n ** 63n - 1n, true);
    view.setBigInt64(24, 2n ** 60n + 3n, true);
    assert.deepEqual(Array.from(decodeToFloat64('I64', bytes)), [2 ** 53, -(2 ** 63), 2 ** 63, 2 ** 60]);
    const encoded = new DataView(encodeFromFloat32('I64', Float64Array.from([2 ** 63, -(2 ** 63), 1e30, -1e30, 2 ** 62 + 2 ** 40, -2.5, NaN])).buffer);
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((i) => encoded.getBigInt64(8 * i, true)), [2n ** 63n - 1n, -(2n ** 63n), 2n ** 63n - 1n, -(2n ** 63n), 2n ** 62n + 2n ** 40n, -2n, 0n]);
    const unsigned = new DataView(encodeFromFloat32('U64', Float64Array.from([2 ** 64, -5, 2 ** 63 + 2 ** 12, 4294967296.5, 3.5])).buffer);
    assert.deepEqual([0, 1, 2, 3, 4].map((i) => unsigned.getBigUint64(8 * i, true)), [2n ** 64n - 1n, 0n, 2n ** 63n + 2n ** 12n, 4294967296n, 4n]);
    const u64 = new Uint8Array(8);
    new DataView(u64.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
    assert.deepEqual(Array.from(decodeToFloat64('U64', u64)), [2 ** 64]);
  });

  it('integers: round half to even, then clamp to the range; NaN → 0', () => {
    const values = Float32Array.from([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 1e9, -128.5, -1e9, Infinity, -Infinity, NaN, -0.4]);
    assert.deepEqual(Array.from(new Int8Array(encodeFromFloat32('I8', values).buffer)), [0, 2, 2, 0, -2, -2, 126, 127, 127, -128, -128, 127, -128, 0, 0]);
    assert.deepEqual(Array.from(encodeFromFloat32('U8', values)), [0, 2, 2, 0, 0, 0, 126, 128, 255, 0, 0, 255, 0, 0, 0]);
    assert.deepEqual(Array.from(new Int16Array(encodeFromFloat32('I16', Float32Array.from([32766.5, 32767.5, -32768.5, 1e6])).buffer)), [32766, 32767, -32768, 32767]);
    assert.deepEqual(Array.from(new Uint16Array(encodeFromFloat32('U16', Float32Array.from([65534.5, 65535.5, -3])).buffer)), [65534, 65535, 0]);
    assert.deepEqual(Array.from(new Int32Array(encodeFromFloat32('I32', Float64Array.from([2147483646.5, 2147483647.5, -2147483648.5, -3.5])).buffer)), [2147483646, 2147483647, -2147483648, -4]);
    assert.deepEqual(Array.from(new Uint32Array(encodeFromFloat32('U32', Float64Array.from([4294967294.5, 5e9, -1])).buffer)), [4294967294, 4294967295, 0]);
  });

  it('BOOL: nonzero (NaN included) → 1; any nonzero byte decodes as 1', () => {
    assert.deepEqual(Array.from(encodeFromFloat32('BOOL', Float32Array.from([0, -0, 1, -2, 0.1, NaN]))), [0, 0, 1, 1, 1, 1]);
    assert.deepEqual(Array.from(decodeToFloat32('BOOL', Uint8Array.from([0, 1, 2, 255]))), [0, 1, 1, 1]);
    assert.deepEqual(Array.from(decodeToFloat64('BOOL', Uint8Array.from([0, 1, 7]))), [0, 1, 1]);
  });
});

describe('dtypes/convert: sub-byte layouts', () => {
  const NVFP4: { test_input_bf16: number[][]; expected_packed_uint8_DERIVED: number[][] } = JSON.parse(readFileSync(vectorsPath('nvfp4_e2m1.json'), 'utf8'));

  it('F4: the nvfp4 vector packs to the expected bytes (even column in the low nibble) and unpacks with the sign of −0', () => {
    assert.equal(NVFP4.test_input_bf16.length, 4);
    NVFP4.test_input_bf16.forEach((row, r) => {
      const packed = encodeFromFloat32('F4', Float32Array.from(row));
      assert.deepEqual(Array.from(packed), NVFP4.expected_packed_uint8_DERIVED[r], `row ${r}`);
      const back = decodeToFloat32('F4', packed);
      assertSameFloats(back, row, `row ${r}`);
      assert.ok(row.some((v) => Object.is(v, -0)), 'the vector has −0 to check');
    });
  });

  it('F4: odd element counts use the low nibble of the last byte, high nibble zero; `count` disambiguates', () => {
    const packed = encodeFromFloat32('F4', Float32Array.from([1, -6, 0.5]));
    assert.deepEqual(Array.from(packed), [0x2 | (0xf << 4), 0x1]);
    assertSameFloats(decodeToFloat32('F4', packed, undefined, 3), [1, -6, 0.5], 'count 3');
    assertSameFloats(decodeToFloat32('F4', packed), [1, -6, 0.5, 0], 'no count: 2 per byte');
    assert.throws(() => decodeToFloat32('F4', packed, undefined, 5), isDTypeError('ElementCount', 'F4', /5 elements take 3 bytes, but 2/));
  });

  for (const dtype of ['F6_E2M3', 'F6_E3M2'] as const) {
    it(`${dtype}: dense LSB-first 6-bit stream, every count from 0 to 13 (tails), against a bit-level reference`, () => {
      const rand = rng(dtype.length + 66);
      for (let count = 0; count <= 13; count++) {
        const codes = Array.from({ length: count }, () => Math.floor(rand() * 64));
        const packed = referencePack(codes, 6);
        assert.equal(packed.length, bytesForElements(dtype, count));
        const values = decodeToFloat32(dtype, packed, undefined, count);
        assertSameFloats(values, codes.map(SCALAR_DECODE[dtype]!), `${dtype} × ${count}`);
        assert.deepEqual(encodeFromFloat32(dtype, values), packed, `${dtype} × ${count} re-encoded`);
      }
      // explicit layout: codes 1, 2, 3, 4 → bits 000001 000010 000011 000100, LSB first
      const four = referencePack([1, 2, 3, 4], 6);
      assert.deepEqual(Array.from(four), [0b10000001, 0b00110000, 0b00010000]);
    });
  }

  it('F4 and F6 past the 1 Mi-element chunk size: bulk encode and decode agree with the reference packer', () => {
    for (const [dtype, bits] of [['F4', 4], ['F6_E3M2', 6]] as const) {
      const count = (1 << 20) + 5;
      const rand = rng(bits);
      const codes = Array.from({ length: count }, () => Math.floor(rand() * (1 << bits)));
      const packed = referencePack(codes, bits);
      const values = decodeToFloat32(dtype, packed, undefined, count);
      const decode = SCALAR_DECODE[dtype]!;
      for (let i = 0; i < count; i += 997) assert.ok(Object.is(values[i], decode(codes[i]!)), `${dtype}[${i}]`);
      assert.ok(Object.is(values[count - 1], decode(codes[count - 1]!)));
      assert.deepEqual(encodeFromFloat32(dtype, values), packed, dtype);
      const wide = decodeToFloat64(dtype, packed, undefined, count);
      assertSameFloats(wide.subarray(count - 300000), values.subarray(count - 300000), `${dtype} f64 chunks`);
      assert.equal(wide.length, count);
    }
  });
});

describe('dtypes/convert: alignment, output buffers and errors', () => {
  const MULTI: DType[] = ['I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64', 'F8_E4M3', 'F8_E5M2FNUZ', 'F8_E8M0', 'I8'];

  for (const dtype of MULTI) {
    it(`${dtype}: input at every byte offset 1..7 decodes like aligned input; output at odd offsets encodes the same`, () => {
      const size = bytesForElements(dtype, 1);
      const bytes = randomBytes(size * 1001, 99 + size);
      if (dtype === 'F32' || dtype === 'F64' || dtype === 'F16' || dtype === 'BF16') {
        // no NaNs: their payloads may be canonicalised by a Number round trip
        const back = decodeToFloat64(dtype, bytes);
        for (let i = 0; i < back.length; i++) if (Number.isNaN(back[i]!)) bytes.fill(0, i * size, (i + 1) * size);
      }
      const aligned32 = decodeToFloat32(dtype, bytes);
      const aligned64 = decodeToFloat64(dtype, bytes);
      // the aligned result itself, against the test-side readers (1001 elements: odd, and not a multiple of 4)
      const scalar = SCALAR_DECODE[dtype];
      const independent = scalar ? Array.from(bytes, (_, i) => (size === 1 ? scalar(bytes[i]!) : scalar(bytes[2 * i]! | (bytes[2 * i + 1]! << 8)))).slice(0, bytes.length / size) : dataViewValues(dtype, bytes);
      assertSameFloats(aligned64, independent, `${dtype} f64`);
      assertSameFloats(aligned32, independent.map(Math.fround), `${dtype} f32`);
      for (let shift = 1; shift < 8; shift++) {
        const input = shifted(bytes, shift);
        assertSameFloats(decodeToFloat32(dtype, input), aligned32, `${dtype} f32 at +${shift}`);
        assertSameFloats(decodeToFloat64(dtype, input), aligned64, `${dtype} f64 at +${shift}`);
        const out = new Uint8Array(bytes.length + 8).subarray(shift, shift + bytes.length);
        const values = dtype === 'I64' || dtype === 'U64' || dtype === 'F64' ? aligned64 : aligned32;
        const encoded = encodeFromFloat32(dtype, values, out);
        assert.equal(encoded.byteOffset, shift);
        assert.deepEqual(encoded, encodeFromFloat32(dtype, values), `${dtype} encode into +${shift}`);
      }
    });
  }

  it('BF16 and F64 misaligned across several 1 MiB scratch chunks', () => {
    for (const [dtype, shift] of [['BF16', 1], ['BF16', 2], ['F64', 4], ['F16', 2]] as const) {
      const size = bytesForElements(dtype, 1);
      const bytes = randomBytes(3 * 1024 * 1024 + size * 3, shift * 7);
      const input = shifted(bytes, shift);
      const expected = decodeToFloat32(dtype, bytes);
      const got = decodeToFloat32(dtype, input);
      assert.equal(got.length, bytes.length / size);
      // compare bits (NaN payloads included: the f32 output of BF16/F16 keeps them)
      const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
      const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
      let mismatches = 0;
      for (let i = 0; i < e.length; i++) if (a[i] !== e[i] && !(dtype === 'F64' && Number.isNaN(got[i]!))) mismatches++;
      assert.equal(mismatches, 0, `${dtype} at +${shift}`);
    }
  });

  it('BF16 decode is the float32 whose top half is the code (DataView check over random bytes, odd length tail)', () => {
    const bytes = randomBytes(2 * 10007, 5);
    const got = decodeToFloat32('BF16', bytes);
    const bits = new Uint32Array(got.buffer);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < got.length; i++) assert.equal(bits[i], view.getUint16(2 * i, true) * 65536, `element ${i}`);
  });

  it('writes into a caller-supplied output and returns it (or its prefix)', () => {
    const bytes = new Uint8Array(Uint16Array.from([0x3f80, 0x4000, 0xc040]).buffer);
    const out = new Float32Array(5).fill(7);
    const got = decodeToFloat32('BF16', bytes, out);
    assert.equal(got.buffer, out.buffer);
    assert.deepEqual(Array.from(out), [1, 2, -3, 7, 7]);
    const exact = new Float32Array(3);
    assert.equal(decodeToFloat32('BF16', bytes, exact), exact);
    const out64 = new Float64Array(3);
    assert.equal(decodeToFloat64('BF16', bytes, out64), out64);
    const encoded = new Uint8Array(10);
    const e = encodeFromFloat32('BF16', Float32Array.from([1, 2, -3]), encoded);
    assert.equal(e.buffer, encoded.buffer);
    assert.deepEqual(Array.from(encoded), [0x80, 0x3f, 0x00, 0x40, 0x40, 0xc0, 0, 0, 0, 0]);
  });

  it('errors: misaligned byte lengths, short outputs, C64, unknown dtypes, wrong value arrays', () => {
    assert.throws(() => decodeToFloat32('F16', new Uint8Array(3)), isDTypeError('ByteLength', 'F16', /byte length 3 is not a multiple of the element size \(2 bytes\)/));
    assert.throws(() => decodeToFloat64('I64', new Uint8Array(12)), isDTypeError('ByteLength', 'I64', /8 bytes/));
    assert.throws(() => decodeToFloat32('F32', new Uint8Array(6)), isDTypeError('ByteLength', 'F32'));
    assert.throws(() => decodeToFloat32('BF16', new Uint8Array(8), new Float32Array(3)), isDTypeError('OutputTooSmall', 'BF16', /3 elements, 4 are needed/));
    assert.throws(() => decodeToFloat64('F8_E4M3', new Uint8Array(8), new Float64Array(2)), isDTypeError('OutputTooSmall', 'F8_E4M3'));
    assert.throws(() => encodeFromFloat32('F32', new Float32Array(4), new Uint8Array(15)), isDTypeError('OutputTooSmall', 'F32', /15 bytes, 16 are needed/));
    assert.throws(() => decodeToFloat32('F16', new Uint8Array(4), undefined, 3), isDTypeError('ElementCount', 'F16'));
    assert.throws(() => decodeToFloat32('C64', new Uint8Array(8)), isDTypeError('Unsupported', 'C64', /complex/));
    assert.throws(() => decodeToFloat64('C64', new Uint8Array(8)), isDTypeError('Unsupported', 'C64'));
    assert.throws(() => encodeFromFloat32('C64', new Float32Array(2)), isDTypeError('Unsupported', 'C64'));
    assert.throws(() => decodeToFloat32('FP8' as DType, new Uint8Array(8)), isDTypeError('UnknownDType', 'FP8'));
    assert.throws(() => encodeFromFloat32('F16', [1, 2] as unknown as Float32Array), isDTypeError('Unsupported', 'F16', /Float32Array/));
    assert.throws(() => encodeFromFloat32('F6_E2M3', Float32Array.from([1, NaN])), isDTypeError('NotRepresentable', 'F6_E2M3', /NaN/));
  });

  it('every dtype except C64 round-trips through encode → decode on representable values', () => {
    const values = Float64Array.from([0, 1, -1, 2, 0.5, 3, -4, 6]);
    for (const dtype of DTYPES) {
      if (dtype === 'C64') continue;
      const input =
        dtype === 'F8_E8M0'
          ? Float64Array.from([1, 2, 0.5, 4, 0.25, 2 ** 127, 2 ** -127, NaN])
          : values.map((v) => (dtype.startsWith('U') ? Math.abs(Math.trunc(v)) : dtype === 'BOOL' ? (v !== 0 ? 1 : 0) : dtype.startsWith('I') ? Math.trunc(v) : v));
      const bytes = encodeFromFloat32(dtype, input);
      assert.equal(bytes.length, bytesForElements(dtype, input.length), dtype);
      assertSameFloats(decodeToFloat64(dtype, bytes, undefined, input.length), input, `${dtype} (f64)`);
      assertSameFloats(decodeToFloat32(dtype, bytes, undefined, input.length), input, `${dtype} (f32)`);
      assert.deepEqual(encodeFromFloat32(dtype, Float32Array.from(input)), bytes, `${dtype}: float32 input`);
    }
  });
});
