// Scalar number-format codecs (src/core/dtypes/float.ts), checked against an independent float64
// implementation written here from the bit layouts of docs/formats.md §2, and against the reference vectors
// (vectors/float_tables_DERIVED.json, vectors/nvfp4_e2m1.json).
import assert from 'node:assert/strict';
import { rng } from '../helpers/random';
import { vectorsDir } from '../helpers/paths';
import { readFileSync } from 'node:fs';
import * as F from '../../src/core/dtypes/float';
import { DTypeError } from '../../src/core/dtypes/float';

// ---------------------------------------------------------------------------------------------------------
// Reference vectors
// ---------------------------------------------------------------------------------------------------------

const vectorsPath = vectorsDir;

type JsonFloat = number | 'nan' | 'inf' | '-inf';
interface FloatTables {
  fp8_tables_by_byte: Record<'e4m3fn' | 'e5m2' | 'e4m3fnuz' | 'e5m2fnuz', JsonFloat[]>;
  f16_anchors_numpy: Record<string, number>;
  bf16_anchors_numpy: Record<string, number>;
}
const TABLES: FloatTables = JSON.parse(readFileSync(vectorsPath('float_tables_DERIVED.json'), 'utf8'));
const NVFP4: { e2m1_code_to_magnitude: number[] } = JSON.parse(readFileSync(vectorsPath('nvfp4_e2m1.json'), 'utf8'));

const jsonValue = (v: JsonFloat): number => (v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : v);

// ---------------------------------------------------------------------------------------------------------
// Independent reference: float64 formulas from the bit layout, and a nearest-value search encoder
// ---------------------------------------------------------------------------------------------------------

type Kind = 'ieee' | 'fn' | 'fnuz' | 'none';
interface Ref {
  name: F.MiniFloatDType;
  E: number;
  M: number;
  bias: number;
  kind: Kind;
  /** Expected largest finite value and smallest subnormal, as stated in docs/formats.md §2. */
  max: number;
  minSub: number;
}

/** 2^n by repeated exact doubling / halving (deliberately not the implementation's method). */
function p2(n: number): number {
  let v = 1;
  for (let i = 0; i < n; i++) v *= 2;
  for (let i = 0; i > n; i--) v /= 2;
  return v;
}

const REFS: Ref[] = [
  { name: 'F16', E: 5, M: 10, bias: 15, kind: 'ieee', max: 65504, minSub: p2(-24) },
  { name: 'BF16', E: 8, M: 7, bias: 127, kind: 'ieee', max: 3.3895313892515355e38, minSub: p2(-133) },
  { name: 'F8_E4M3', E: 4, M: 3, bias: 7, kind: 'fn', max: 448, minSub: p2(-9) },
  { name: 'F8_E5M2', E: 5, M: 2, bias: 15, kind: 'ieee', max: 57344, minSub: p2(-16) },
  { name: 'F8_E4M3FNUZ', E: 4, M: 3, bias: 8, kind: 'fnuz', max: 240, minSub: p2(-10) },
  { name: 'F8_E5M2FNUZ', E: 5, M: 2, bias: 16, kind: 'fnuz', max: 57344, minSub: p2(-17) },
  { name: 'F4', E: 2, M: 1, bias: 1, kind: 'none', max: 6, minSub: 0.5 },
  { name: 'F6_E2M3', E: 2, M: 3, bias: 1, kind: 'none', max: 7.5, minSub: 0.125 },
  { name: 'F6_E3M2', E: 3, M: 2, bias: 3, kind: 'none', max: 28, minSub: 0.0625 },
];
const REF: Record<F.MiniFloatDType, Ref> = Object.fromEntries(REFS.map((r) => [r.name, r])) as Record<F.MiniFloatDType, Ref>;

const codeCount = (r: Ref) => 1 << (1 + r.E + r.M);
const signOf = (r: Ref) => 1 << (r.E + r.M);

/** value = (−1)^s · 2^(e−bias) · (1 + m/2^M); subnormal (e = 0): (−1)^s · 2^(1−bias) · m/2^M. */
function refDecode(r: Ref, code: number): number {
  const s = (code >> (r.E + r.M)) & 1;
  const e = (code >> r.M) & ((1 << r.E) - 1);
  const m = code & ((1 << r.M) - 1);
  const eMax = (1 << r.E) - 1;
  const mMax = (1 << r.M) - 1;
  if (r.kind === 'ieee' && e === eMax) return m === 0 ? (s ? -Infinity : Infinity) : NaN;
  if (r.kind === 'fn' && e === eMax && m === mMax) return NaN;
  if (r.kind === 'fnuz' && s === 1 && e === 0 && m === 0) return NaN;
  const mag = e === 0 ? p2(1 - r.bias) * (m / p2(r.M)) : p2(e - r.bias) * (1 + m / p2(r.M));
  return s ? -mag : mag;
}

interface Ladder {
  /** Non-negative finite values in increasing order with their codes, then the would-be next step. */
  values: number[];
  codes: number[];
  maxCode: number;
}
const ladders = new Map<string, Ladder>();
function ladderOf(r: Ref): Ladder {
  let ladder = ladders.get(r.name);
  if (ladder) return ladder;
  const values: number[] = [];
  const codes: number[] = [];
  for (let code = 0; code < signOf(r); code++) {
    const v = refDecode(r, code);
    if (Number.isFinite(v)) {
      values.push(v);
      codes.push(code);
    }
  }
  for (let i = 1; i < values.length; i++) assert.ok(values[i]! > values[i - 1]!, `${r.name}: codes are monotonic`);
  const maxCode = codes[codes.length - 1]!;
  // The next step above max (same spacing as just below max's binade top), code maxCode + 1.
  values.push(values[values.length - 1]! + p2(Math.floor(Math.log2(values[values.length - 1]!)) - r.M));
  codes.push(maxCode + 1);
  ladder = { values, codes, maxCode };
  ladders.set(r.name, ladder);
  return ladder;
}

type RefResult = number | 'throws';

/**
 * Reference encoder: nearest ladder value (exact float64 comparisons against the midpoint), ties to the even
 * code; landing on the would-be step above max is overflow. Then the format's rules for overflow, NaN, −0.
 */
function refEncode(r: Ref, x: number, saturate: boolean): RefResult {
  const sign = x < 0 || Object.is(x, -0) ? signOf(r) : 0;
  if (Number.isNaN(x)) {
    if (r.kind === 'none') return 'throws';
    return r.kind === 'fnuz' ? signOf(r) : r.name === 'F8_E5M2' ? 0x7f : r.kind === 'fn' ? signOf(r) - 1 : (((1 << r.E) - 1) << r.M) | (1 << (r.M - 1));
  }
  const a = Math.abs(x);
  const { values, codes, maxCode } = ladderOf(r);
  let mag: number;
  if (a >= values[values.length - 1]!) mag = maxCode + 1;
  else {
    let lo = 0;
    let hi = values.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (values[mid]! <= a) lo = mid;
      else hi = mid;
    }
    const midpoint = (values[lo]! + values[hi]!) / 2;
    if (a < midpoint) mag = codes[lo]!;
    else if (a > midpoint) mag = codes[hi]!;
    else mag = codes[lo]! % 2 === 0 ? codes[lo]! : codes[hi]!;
  }
  if (mag > maxCode) {
    if (saturate) mag = maxCode;
    else if (r.kind === 'ieee') mag = ((1 << r.E) - 1) << r.M;
    else if (r.kind === 'fn') mag = signOf(r) - 1;
    else if (r.kind === 'fnuz') return signOf(r);
    else return 'throws';
  }
  if (r.kind === 'fnuz' && mag === 0) return 0;
  return mag | sign;
}

/** The encoder under test for a format, with its saturation default. */
function encoderOf(name: F.MiniFloatDType): (x: number, saturate: boolean) => number {
  switch (name) {
    case 'F16':
      return (x) => F.encodeF16(x);
    case 'BF16':
      return (x) => F.encodeBF16(x);
    case 'F8_E4M3':
      return (x, saturate) => F.encodeE4M3(x, { saturate });
    case 'F8_E5M2':
      return (x, saturate) => F.encodeE5M2(x, { saturate });
    case 'F8_E4M3FNUZ':
      return (x, saturate) => F.encodeE4M3FNUZ(x, { saturate });
    case 'F8_E5M2FNUZ':
      return (x, saturate) => F.encodeE5M2FNUZ(x, { saturate });
    case 'F4':
      return (x, saturate) => F.encodeF4(x, { saturate });
    case 'F6_E2M3':
      return (x, saturate) => F.encodeF6E2M3(x, { saturate });
    case 'F6_E3M2':
      return (x, saturate) => F.encodeF6E3M2(x, { saturate });
  }
}

function decoderOf(name: F.MiniFloatDType): (code: number) => number {
  return {
    F16: F.decodeF16,
    BF16: F.decodeBF16,
    F8_E4M3: F.decodeE4M3,
    F8_E5M2: F.decodeE5M2,
    F8_E4M3FNUZ: F.decodeE4M3FNUZ,
    F8_E5M2FNUZ: F.decodeE5M2FNUZ,
    F4: F.decodeF4,
    F6_E2M3: F.decodeF6E2M3,
    F6_E3M2: F.decodeF6E3M2,
  }[name];
}

/** F16/BF16 have no saturation option: they always behave as saturate = false (IEEE overflow to Inf). */
const SATURATION_MODES = (r: Ref): boolean[] => (r.name === 'F16' || r.name === 'BF16' ? [false] : [true, false]);

function runEncode(enc: (x: number, saturate: boolean) => number, x: number, saturate: boolean): RefResult {
  try {
    return enc(x, saturate);
  } catch (error) {
    assert.ok(error instanceof DTypeError, `expected a DTypeError, got ${String(error)}`);
    return 'throws';
  }
}

const hex = (c: RefResult) => (typeof c === 'number' ? `0x${c.toString(16)}` : c);

function sameValue(actual: number, expected: number, what: string): void {
  if (Number.isNaN(expected)) assert.ok(Number.isNaN(actual), `${what}: expected NaN, got ${actual}`);
  else assert.ok(Object.is(actual, expected), `${what}: expected ${Object.is(expected, -0) ? '-0' : expected}, got ${Object.is(actual, -0) ? '-0' : actual}`);
}

// float64 neighbours, from the bits (test-side implementation)
const dv = new DataView(new ArrayBuffer(8));
function nextUp64(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  dv.setFloat64(0, x);
  dv.setBigUint64(0, dv.getBigUint64(0) + (x > 0 ? 1n : -1n));
  return dv.getFloat64(0);
}
function nextDown64(x: number): number {
  return -nextUp64(-x);
}

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

describe('dtypes/float: the reference formula itself', () => {
  // Guards the guard: the test-side formula must reproduce documented anchors, or every comparison below is moot.
  it('reproduces the docs/formats.md §2 anchors', () => {
    assert.equal(refDecode(REF.F8_E4M3, 0x7e), 448);
    assert.ok(Number.isNaN(refDecode(REF.F8_E4M3, 0x7f)));
    assert.equal(refDecode(REF.F8_E4M3, 0x01), p2(-9));
    assert.equal(refDecode(REF.F8_E4M3, 0x08), p2(-6));
    assert.equal(refDecode(REF.F8_E5M2, 0x7b), 57344);
    assert.equal(refDecode(REF.F8_E5M2, 0x7c), Infinity);
    assert.equal(refDecode(REF.F16, 0x7bff), 65504);
    assert.equal(refDecode(REF.BF16, 0x3f80), 1);
    assert.ok(Number.isNaN(refDecode(REF.F8_E4M3FNUZ, 0x80)));
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map((c) => refDecode(REF.F4, c)), NVFP4.e2m1_code_to_magnitude);
  });
});

describe('dtypes/float: decode', () => {
  const vectorKey = { F8_E4M3: 'e4m3fn', F8_E5M2: 'e5m2', F8_E4M3FNUZ: 'e4m3fnuz', F8_E5M2FNUZ: 'e5m2fnuz' } as const;
  const exported = { F8_E4M3: F.E4M3_TO_F32, F8_E5M2: F.E5M2_TO_F32, F8_E4M3FNUZ: F.E4M3FNUZ_TO_F32, F8_E5M2FNUZ: F.E5M2FNUZ_TO_F32 } as const;

  for (const name of ['F8_E4M3', 'F8_E5M2', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ'] as const) {
    it(`${name}: all 256 codes match vectors/float_tables_DERIVED.json (${vectorKey[name]}), scalar and table`, () => {
      const table = TABLES.fp8_tables_by_byte[vectorKey[name]];
      assert.equal(table.length, 256);
      assert.equal(exported[name].length, 256);
      assert.equal(F.fp8DecodeTable(name), exported[name]);
      for (let code = 0; code < 256; code++) {
        const expected = jsonValue(table[code]!);
        sameValue(decoderOf(name)(code), expected, `${name} decode(0x${code.toString(16)})`);
        sameValue(exported[name][code]!, expected, `${name} table[0x${code.toString(16)}]`);
      }
    });
  }

  for (const r of REFS) {
    const n = codeCount(r);
    it(`${r.name}: all ${n} codes match the bit-layout formula (float64)`, () => {
      const decode = decoderOf(r.name);
      let nans = 0;
      for (let code = 0; code < n; code++) {
        const expected = refDecode(r, code);
        if (Number.isNaN(expected)) nans++;
        sameValue(decode(code), expected, `${r.name} decode(0x${code.toString(16)})`);
      }
      const expectedNaNs = { ieee: 2 * ((1 << r.M) - 1), fn: 2, fnuz: 1, none: 0 }[r.kind];
      assert.equal(nans, expectedNaNs, `${r.name} NaN code count`);
    });

    it(`${r.name}: documented max ${r.max}, min subnormal ${r.minSub}, min normal 2^${1 - r.bias}`, () => {
      const f = F.MINIFLOAT_FORMATS[r.name];
      assert.equal(f.max, r.max);
      assert.equal(f.minSubnormal, r.minSub);
      assert.equal(f.minNormal, p2(1 - r.bias));
      assert.equal(f.decode(f.maxCode), r.max);
      assert.equal(f.decode(1), r.minSub);
      assert.equal(f.decode(f.maxCode | f.signMask), -r.max);
      assert.equal(f.hasNegativeZero, r.kind !== 'fnuz');
      for (let code = 0; code < n; code++) assert.equal(f.isNaNCode(code), Number.isNaN(refDecode(r, code)), `${r.name} isNaNCode(0x${code.toString(16)})`);
    });
  }

  it('F16: the lazily built F16 → F32 table equals the formula for all 65536 codes, NaN payloads kept', () => {
    const table = F.f16ToF32Table();
    assert.equal(table.length, 65536);
    assert.equal(F.f16ToF32Table(), table, 'built once');
    const bits = new Uint32Array(table.buffer, table.byteOffset, table.length);
    for (let code = 0; code < 65536; code++) {
      const expected = refDecode(REF.F16, code);
      sameValue(table[code]!, expected, `F16_TO_F32[0x${code.toString(16)}]`);
      if (Number.isNaN(expected)) {
        // sign and the 10 payload bits land in the float32 sign and the top of its payload
        assert.equal(bits[code]! >>> 31, code >>> 15);
        assert.equal((bits[code]! >>> 13) & 0x3ff, code & 0x3ff);
      }
    }
  });

  it('F16 and BF16 anchors decoded with numpy (float_tables_DERIVED.json)', () => {
    for (const [code, value] of Object.entries(TABLES.f16_anchors_numpy)) assert.equal(F.decodeF16(Number(code)), value, `F16 ${code}`);
    for (const [code, value] of Object.entries(TABLES.bf16_anchors_numpy)) assert.equal(F.decodeBF16(Number(code)), value, `BF16 ${code}`);
    assert.equal(Object.keys(TABLES.f16_anchors_numpy).length, 7);
    assert.equal(Object.keys(TABLES.bf16_anchors_numpy).length, 5);
  });

  it('F8_E8M0: code b is 2^(b−127) for b < 255, 0xFF is NaN; the table agrees', () => {
    assert.equal(F.E8M0_TO_F32.length, 256);
    assert.equal(F.fp8DecodeTable('F8_E8M0'), F.E8M0_TO_F32);
    for (let b = 0; b < 255; b++) {
      assert.equal(F.decodeE8M0(b), p2(b - 127), `0x${b.toString(16)}`);
      assert.equal(F.E8M0_TO_F32[b], p2(b - 127), `table 0x${b.toString(16)}`);
    }
    assert.ok(Number.isNaN(F.decodeE8M0(0xff)));
    assert.ok(Number.isNaN(F.E8M0_TO_F32[0xff]!));
    assert.equal(F.decodeE8M0(127), 1);
    assert.equal(F.E8M0_MAX, p2(127));
    assert.equal(F.E8M0_MIN, p2(-127));
  });

  it('F4 (E2M1): the 16-entry table is the nvfp4 e2m1 magnitudes with bit 3 as sign', () => {
    assert.equal(F.F4_TO_F32.length, 16);
    for (let code = 0; code < 16; code++) {
      const magnitude = NVFP4.e2m1_code_to_magnitude[code & 7]!;
      const expected = code & 8 ? -magnitude : magnitude;
      sameValue(F.decodeF4(code), expected, `decodeF4(${code})`);
      sameValue(F.F4_TO_F32[code]!, expected, `F4_TO_F32[${code}]`);
    }
    assert.ok(Object.is(F.decodeF4(8), -0));
  });

  it('F6 tables have 64 entries and match the scalar decoders', () => {
    for (const [table, decode] of [
      [F.F6_E2M3_TO_F32, F.decodeF6E2M3],
      [F.F6_E3M2_TO_F32, F.decodeF6E3M2],
    ] as const) {
      assert.equal(table.length, 64);
      for (let code = 0; code < 64; code++) sameValue(table[code]!, decode(code), `code ${code}`);
    }
  });

  it('rejects codes outside the format with a DTypeError naming the dtype', () => {
    const bad: [() => number, string][] = [
      [() => F.decodeE4M3(256), 'F8_E4M3'],
      [() => F.decodeE5M2(-1), 'F8_E5M2'],
      [() => F.decodeF4(16), 'F4'],
      [() => F.decodeF6E2M3(64), 'F6_E2M3'],
      [() => F.decodeF16(65536), 'F16'],
      [() => F.decodeBF16(1.5), 'BF16'],
      [() => F.decodeE8M0(300), 'F8_E8M0'],
    ];
    for (const [call, dtype] of bad) {
      assert.throws(call, (e: unknown) => e instanceof DTypeError && e.dtype === dtype && e.message.includes(dtype) && e.code === 'NotRepresentable');
    }
  });

  it('F32 bit helpers follow Math.fround', () => {
    assert.equal(F.encodeF32(1), 0x3f800000);
    assert.equal(F.encodeF32(-2), 0xc0000000);
    assert.equal(F.encodeF32(1 + p2(-24)), 0x3f800000, 'tie rounds to even');
    assert.equal(F.encodeF32(1 + p2(-24) + p2(-40)), 0x3f800001);
    assert.equal(F.encodeF32(3.5e38), 0x7f800000, 'overflow to Inf');
    assert.equal(F.decodeF32(0x00000001), p2(-149));
    assert.equal(F.decodeF32(F.encodeF32(0.1)), Math.fround(0.1));
  });
});

describe('dtypes/float: encode', () => {
  for (const r of REFS) {
    const enc = encoderOf(r.name);
    const dec = decoderOf(r.name);
    const n = codeCount(r);

    it(`${r.name}: every non-NaN code re-encodes to itself${r.kind === 'fnuz' ? '' : ' (−0 included)'}`, () => {
      for (let code = 0; code < n; code++) {
        const v = dec(code);
        if (Number.isNaN(v)) continue;
        assert.equal(enc(v, false), code, `${r.name} non-saturating 0x${code.toString(16)} (${v})`);
        if (Number.isFinite(v)) assert.equal(enc(v, true), code, `${r.name} saturating 0x${code.toString(16)} (${v})`);
      }
    });

    it(`${r.name}: midpoints between neighbours round to the even code (both signs), and one ulp off them to the nearer side`, () => {
      const { values, codes, maxCode } = ladderOf(r);
      let ties = 0;
      for (let i = 0; i + 1 < values.length; i++) {
        const lo = codes[i]!;
        const hi = codes[i + 1]!;
        if (hi > maxCode) continue; // the overflow boundary has its own test
        assert.equal(hi, lo + 1, 'adjacent magnitudes have adjacent codes');
        const mid = (values[i]! + values[i + 1]!) / 2;
        const even = lo % 2 === 0 ? lo : hi;
        for (const sign of [0, signOf(r)]) {
          const s = sign ? -1 : 1;
          const signed = (c: number) => (r.kind === 'fnuz' && c === 0 ? 0 : c | sign);
          assert.equal(enc(s * mid, true), signed(even), `${r.name} tie ${s * mid}`);
          assert.equal(enc(s * nextUp64(mid), true), signed(hi), `${r.name} just above ${s * mid}`);
          assert.equal(enc(s * nextDown64(mid), true), signed(lo), `${r.name} just below ${s * mid}`);
          ties++;
        }
      }
      assert.equal(ties, 2 * (maxCode - 0), `${r.name}: tested every gap`);
    });

    it(`${r.name}: matches the reference encoder on random float64 and float32 values`, () => {
      const rand = rng(0x5eed + n);
      const { values } = ladderOf(r);
      const top = values[values.length - 1]! * 1.5;
      const bottom = r.minSub / 4;
      for (let k = 0; k < 4000; k++) {
        // log-uniform magnitudes from below the smallest subnormal to above the overflow point
        let x = bottom * Math.pow(top / bottom, rand());
        if (k % 2) x = Math.fround(x);
        if (rand() < 0.5) x = -x;
        for (const saturate of SATURATION_MODES(r)) {
          const expected = refEncode(r, x, saturate);
          assert.equal(hex(runEncode(enc, x, saturate)), hex(expected), `${r.name}(${x}, saturate ${saturate})`);
        }
      }
    });

    it(`${r.name}: saturation and overflow at and just above max (${r.max})`, () => {
      const { values, maxCode } = ladderOf(r);
      const beyond = values[values.length - 1]!; // the would-be next step above max
      const boundary = (r.max + beyond) / 2;
      const S = signOf(r);
      const overflow = (negative: boolean): RefResult =>
        r.kind === 'ieee' ? ((((1 << r.E) - 1) << r.M) | (negative ? S : 0)) : r.kind === 'fn' ? (S - 1) | (negative ? S : 0) : r.kind === 'fnuz' ? S : 'throws';
      // the midpoint between max and the next step goes to the even code: max when maxCode is even
      const atBoundary = (negative: boolean): RefResult => (maxCode % 2 === 0 ? maxCode | (negative ? S : 0) : overflow(negative));
      for (const negative of [false, true]) {
        const s = negative ? -1 : 1;
        const withSign = (c: number) => c | (negative ? S : 0);
        // always max
        for (const x of [r.max, nextUp64(r.max), (r.max + boundary) / 2, nextDown64(boundary)]) {
          for (const saturate of SATURATION_MODES(r)) assert.equal(runEncode(enc, s * x, saturate), withSign(maxCode), `${r.name}(${s * x}) saturate ${saturate}`);
        }
        // the boundary itself, above it, and infinity
        if (SATURATION_MODES(r).includes(true)) {
          for (const x of [boundary, nextUp64(boundary), beyond, 1e300, Infinity]) assert.equal(runEncode(enc, s * x, true), withSign(maxCode), `${r.name}(${s * x}) saturating`);
        }
        assert.equal(hex(runEncode(enc, s * boundary, false)), hex(atBoundary(negative)), `${r.name}(${s * boundary}) non-saturating`);
        for (const x of [nextUp64(boundary), beyond, 1e300, Infinity]) {
          assert.equal(hex(runEncode(enc, s * x, false)), hex(overflow(negative)), `${r.name}(${s * x}) non-saturating`);
        }
      }
    });

    it(`${r.name}: subnormal boundaries (smallest subnormal ${r.minSub}, largest subnormal, smallest normal)`, () => {
      const S = signOf(r);
      const M = r.M;
      const zeroNeg = r.kind === 'fnuz' ? 0 : S;
      for (const saturate of SATURATION_MODES(r)) {
        const e = (x: number) => enc(x, saturate);
        assert.equal(e(r.minSub), 1);
        assert.equal(e(r.minSub / 2), 0, 'half the smallest subnormal is a tie: to even (zero)');
        assert.equal(e(nextUp64(r.minSub / 2)), 1);
        assert.equal(e(r.minSub / 2 + r.minSub), 2, '1.5 ulp is a tie between codes 1 and 2: to 2');
        assert.equal(e(r.minSub * 0.25), 0);
        assert.equal(e(-r.minSub / 2), zeroNeg, 'negative underflow keeps the sign where −0 exists');
        assert.equal(e(-nextUp64(r.minSub / 2)), 1 | S);
        assert.equal(e(-Number.MIN_VALUE), zeroNeg);
        const maxSub = r.minSub * ((1 << M) - 1);
        const minNormal = p2(1 - r.bias);
        assert.equal(e(maxSub), (1 << M) - 1, 'largest subnormal');
        assert.equal(e(minNormal), 1 << M, 'smallest normal');
        // between the largest subnormal and the smallest normal: the midpoint goes to the even code (the normal)
        assert.equal(e((maxSub + minNormal) / 2), 1 << M);
        assert.equal(e(nextDown64((maxSub + minNormal) / 2)), (1 << M) - 1);
        assert.equal(e(nextDown64(minNormal)), 1 << M);
      }
    });

    it(`${r.name}: −0, +0 and NaN`, () => {
      const S = signOf(r);
      for (const saturate of SATURATION_MODES(r)) {
        assert.equal(enc(0, saturate), 0);
        assert.equal(enc(-0, saturate), r.kind === 'fnuz' ? 0 : S, '−0');
        if (r.kind === 'none') {
          assert.throws(() => enc(NaN, saturate), (err: unknown) => err instanceof DTypeError && err.dtype === r.name && /NaN/.test(err.message));
        } else {
          const code = enc(NaN, saturate);
          assert.ok(Number.isNaN(dec(code)), `NaN → 0x${code.toString(16)} decodes to NaN`);
          assert.ok(F.MINIFLOAT_FORMATS[r.name].isNaNCode(code));
          assert.equal(hex(code & ~S), hex((refEncode(r, NaN, saturate) as number) & ~S));
        }
      }
      if (r.kind !== 'fnuz') assert.ok(Object.is(dec(S), -0), 'the sign-only code is −0');
    });
  }

  it('F8_E4M3: the documented boundary cases (448, 464, 480; NaN is 0x7F with the sign)', () => {
    const nonSat = { saturate: false };
    assert.equal(F.encodeE4M3(448), 0x7e);
    assert.equal(F.encodeE4M3(460, nonSat), 0x7e, 'below the midpoint 464: rounds to max');
    assert.equal(F.encodeE4M3(464, nonSat), 0x7e, 'midpoint: 448 has the even mantissa');
    assert.equal(F.encodeE4M3(465, nonSat), 0x7f, 'above the midpoint: NaN (no Inf)');
    assert.equal(F.encodeE4M3(-465, nonSat), 0xff);
    assert.equal(F.encodeE4M3(1e6), 0x7e);
    assert.equal(F.encodeE4M3(-1e6), 0xfe);
    assert.equal(F.encodeE4M3(-Infinity, nonSat), 0xff);
    assert.equal(F.encodeE4M3(NaN) & 0x7f, 0x7f);
    assert.equal(F.encodeE4M3(0.1), 0x1d, '0.1 → 0.1015625');
    assert.equal(F.decodeE4M3(0x1d), 0.1015625);
  });

  it('F8_E5M2 / FNUZ: documented overflow points (61440 → Inf; 248 → 0x80 for e4m3fnuz)', () => {
    const nonSat = { saturate: false };
    assert.equal(F.encodeE5M2(61439, nonSat), 0x7b);
    assert.equal(F.encodeE5M2(61440, nonSat), 0x7c, 'midpoint: 57344 has an odd mantissa, so it goes up to Inf');
    assert.equal(F.encodeE5M2(-61440, nonSat), 0xfc);
    assert.equal(F.encodeE5M2(61440), 0x7b);
    assert.equal(F.encodeE5M2(Infinity), 0x7b, 'saturating: Inf → max');
    assert.equal(F.encodeE5M2(Infinity, nonSat), 0x7c);
    assert.equal(F.encodeE4M3FNUZ(247.9, nonSat), 0x7f);
    assert.equal(F.encodeE4M3FNUZ(248, nonSat), 0x80);
    assert.equal(F.encodeE4M3FNUZ(-248, nonSat), 0x80, 'the single NaN has no sign');
    assert.equal(F.encodeE4M3FNUZ(-1000), 0xff, 'saturating: −max');
    assert.equal(F.encodeE5M2FNUZ(-Infinity), 0xff);
    assert.equal(F.encodeE5M2FNUZ(-Infinity, nonSat), 0x80);
    assert.equal(F.encodeE4M3FNUZ(-1e-9), 0x00, 'negative underflow: +0, never the NaN code');
  });

  it('F16: overflow to Inf at 65520, NaN stays NaN, subnormals exact', () => {
    assert.equal(F.encodeF16(65504), 0x7bff);
    assert.equal(F.encodeF16(65519.99), 0x7bff);
    assert.equal(F.encodeF16(65520), 0x7c00);
    assert.equal(F.encodeF16(-65520), 0xfc00);
    assert.equal(F.encodeF16(1e10), 0x7c00);
    assert.equal(F.encodeF16(-Infinity), 0xfc00);
    assert.equal(F.encodeF16(NaN) & 0x7fff, 0x7e00);
    assert.equal(F.encodeF16(p2(-24)), 0x0001);
    assert.equal(F.encodeF16(p2(-14) - p2(-24)), 0x03ff);
    assert.equal(F.encodeF16(1 / 3), 0x3555);
  });

  it('BF16: RNE on the float32 bits, overflow to Inf, NaN stays a quiet NaN', () => {
    assert.equal(F.encodeBF16(F.decodeF32(0x3f808000)), 0x3f80, 'tie, even stays');
    assert.equal(F.encodeBF16(F.decodeF32(0x3f818000)), 0x3f82, 'tie, odd rounds up');
    assert.equal(F.encodeBF16(F.decodeF32(0x3f808001)), 0x3f81);
    assert.equal(F.encodeBF16(F.decodeF32(0x7f7fffff)), 0x7f80, 'FLT_MAX rounds to Inf');
    assert.equal(F.encodeBF16(F.decodeF32(0x7f7f7fff)), 0x7f7f);
    assert.equal(F.encodeBF16(Math.PI), 0x4049);
    const nan = F.encodeBF16(NaN);
    assert.equal(nan & 0x7fff, 0x7fc0, 'quiet NaN, not Inf (0x7F80)');
    assert.equal(F.encodeBF16(1e39), 0x7f80, 'a float64 beyond the float32 range');
    assert.equal(F.encodeBF16(p2(-133)), 0x0001);
    assert.equal(F.encodeBF16(p2(-134)), 0x0000, 'half the smallest subnormal: tie to zero');
  });

  it('rounds a float64 once (not through float32): documented difference from torch', () => {
    // 1 + 2^-8 is the bf16 midpoint between 1 and 1 + 2^-7; 2^-40 above it is not a float32. Rounding the
    // float64 once gives 1 + 2^-7; torch (via float32: 1 + 2^-8, a tie to even) would give 1.
    assert.equal(F.encodeBF16(1 + p2(-8) + p2(-40)), 0x3f81);
    assert.equal(F.encodeBF16(Math.fround(1 + p2(-8) + p2(-40))), 0x3f80);
    assert.equal(F.encodeE4M3(1 + p2(-4) + p2(-40)), 0x39);
  });

  it('F4: the compressed-tensors cast_to_fp4 intervals (ties to the even mantissa)', () => {
    const cases: [number, number][] = [
      [0, 0], [0.25, 0], [nextUp64(0.25), 0.5], [0.5, 0.5], [nextDown64(0.75), 0.5], [0.75, 1], [1.25, 1], [nextUp64(1.25), 1.5],
      [nextDown64(1.75), 1.5], [1.75, 2], [2.5, 2], [nextUp64(2.5), 3], [nextDown64(3.5), 3], [3.5, 4], [5, 4], [nextUp64(5), 6], [6, 6], [100, 6],
    ];
    for (const [x, expected] of cases) {
      assert.equal(F.decodeF4(F.encodeF4(x)), expected, `|x| = ${x}`);
      assert.equal(F.decodeF4(F.encodeF4(-x)), -expected, `x = −${x}`);
    }
    assert.equal(F.encodeF4(-0), 8);
    assert.throws(() => F.encodeF4(7, { saturate: false }), (e: unknown) => e instanceof DTypeError && e.dtype === 'F4' && e.code === 'NotRepresentable');
    assert.equal(F.encodeF4(6.9, { saturate: false }), 7, 'below the midpoint 7: rounds to max');
    assert.equal(F.encodeF4E2M1, F.encodeF4);
    assert.equal(F.decodeF4E2M1, F.decodeF4);
  });

  it('F6: maxima 7.5 (E2M3) and 28 (E3M2), saturation, and no NaN', () => {
    assert.equal(F.decodeF6E2M3(F.encodeF6E2M3(100)), 7.5);
    assert.equal(F.decodeF6E2M3(F.encodeF6E2M3(-Infinity)), -7.5);
    assert.equal(F.decodeF6E3M2(F.encodeF6E3M2(29)), 28);
    assert.equal(F.decodeF6E3M2(F.encodeF6E3M2(29.9, { saturate: false })), 28, 'below the midpoint 30');
    assert.throws(() => F.encodeF6E3M2(30, { saturate: false }), DTypeError, 'midpoint: 28 has the odd mantissa, overflow');
    assert.throws(() => F.encodeF6E2M3(NaN), DTypeError);
  });

  it('F8_E8M0: nearest power of two, ties (1.5·2^k) up, no sign, no zero, 0xFF NaN', () => {
    const nonSat = { saturate: false };
    for (let k = -127; k <= 127; k++) {
      assert.equal(F.encodeE8M0(p2(k)), k + 127, `2^${k}`);
      assert.equal(F.encodeE8M0(-p2(k)), k + 127, `−2^${k}: the sign is ignored`);
      if (k < 127) {
        assert.equal(F.encodeE8M0(1.5 * p2(k)), k + 128, `1.5·2^${k} (tie) goes up`);
        assert.equal(F.encodeE8M0(nextDown64(1.5 * p2(k))), k + 127, `just below 1.5·2^${k}`);
      }
    }
    assert.equal(F.encodeE8M0(0), 0, 'zero → the smallest scale');
    assert.equal(F.encodeE8M0(p2(-140)), 0);
    assert.equal(F.encodeE8M0(1.5 * p2(127)), 0xfe);
    assert.equal(F.encodeE8M0(1.5 * p2(127), nonSat), 0xff);
    assert.equal(F.encodeE8M0(nextDown64(1.5 * p2(127)), nonSat), 0xfe);
    assert.equal(F.encodeE8M0(Infinity), 0xfe);
    assert.equal(F.encodeE8M0(Infinity, nonSat), 0xff);
    assert.equal(F.encodeE8M0(1e308), 0xfe);
    assert.equal(F.encodeE8M0(NaN), 0xff);
    for (let b = 0; b < 255; b++) assert.equal(F.encodeE8M0(F.decodeE8M0(b)), b);
  });

  it('roundHalfEven: ties to even at every magnitude, both signs', () => {
    const cases: [number, number][] = [
      [0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, 0], [-1.5, -2], [-2.5, -2], [0.49999999999999994, 0], [2.4999999999999996, 2],
      [127.5, 128], [-128.5, -128], [p2(51) + 0.5, p2(51)], [p2(51) + 1.5, p2(51) + 2], [-(p2(51) + 0.5), -p2(51)], [p2(52) + 1, p2(52) + 1], [p2(60), p2(60)],
    ];
    for (const [x, expected] of cases) assert.equal(F.roundHalfEven(x) + 0, expected, `rint(${x})`);
    assert.ok(Number.isNaN(F.roundHalfEven(NaN)));
    assert.equal(F.roundHalfEven(-Infinity), -Infinity);
  });
});
