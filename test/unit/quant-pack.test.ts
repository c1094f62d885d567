import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { packNvfp4, packToInt32, packedShape, PackError, readBitstream, unpackFromInt32, unpackNvfp4, writeBitstream } from '../../src/core/quant/pack';
import { vectorsDir } from '../helpers/paths';

interface PackCase {
  num_bits: number;
  values_int8: number[][];
  packed_int32: number[][];
}

/** Independent packer: a BigInt bitstream per packed row (LSB first), padded to whole words. */
function refPack(values: number[][], bits: number): number[][] {
  return values.map((row) => {
    let acc = 0n;
    for (let i = row.length - 1; i >= 0; i--) acc = (acc << BigInt(bits)) | BigInt(row[i]! + 2 ** (bits - 1));
    return Array.from({ length: Math.ceil((row.length * bits) / 32) }, (_, k) => Number(BigInt.asIntN(32, acc >> BigInt(32 * k))));
  });
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function randomQ(rows: number, cols: number, bits: number, seed: number): number[][] {
  const u = rng(seed);
  return Array.from({ length: rows }, () => Array.from({ length: cols }, () => Math.floor(u() * 2 ** bits) - 2 ** (bits - 1)));
}

describe('compressed-tensors pack_to_int32 / unpack_from_int32', () => {
  const { cases } = JSON.parse(readFileSync(vectorsDir('compressed_tensors_pack_int32.json'), 'utf8')) as { cases: PackCase[] };

  cases.forEach((c, i) => {
    it(`upstream vector ${i}: ${c.num_bits} bits, ${c.values_int8.length}×${c.values_int8[0]!.length}`, () => {
      const rows = c.values_int8.length;
      const cols = c.values_int8[0]!.length;
      const packed = packToInt32(Int8Array.from(c.values_int8.flat()), rows, cols, c.num_bits);
      assert.deepEqual(packedShape(rows, cols, c.num_bits), [rows, c.packed_int32[0]!.length]);
      assert.deepEqual(Array.from(packed), c.packed_int32.flat());
      assert.deepEqual(Array.from(unpackFromInt32(Int32Array.from(c.packed_int32.flat()), rows, cols, c.num_bits)), c.values_int8.flat());
    });
  });

  it('docs/formats.md §3.6 anchors: [-8..-1] → 0x76543210, 8-bit [1,2,3,4] → 0x84838281', () => {
    assert.equal(packToInt32(Int8Array.from([-8, -7, -6, -5, -4, -3, -2, -1]), 1, 8, 4)[0]! >>> 0, 0x76543210);
    assert.equal(packToInt32(Int8Array.from([1, 2, 3, 4]), 1, 4, 8)[0]! >>> 0, 0x84838281);
  });

  for (let bits = 1; bits <= 8; bits++) {
    it(`${bits} bits: dense LSB-first rows (fields cross words for 3/5/6/7), padding, round trip, packed_dim 0`, () => {
      for (const [rows, cols] of [[3, 1], [2, 31], [4, 32], [5, 33], [3, 100], [7, 257]] as const) {
        const q = randomQ(rows, cols, bits, bits * 1000 + cols);
        const flat = Int8Array.from(q.flat());
        const packed = packToInt32(flat, rows, cols, bits);
        assert.deepEqual(Array.from(packed), refPack(q, bits).flat(), `${rows}x${cols}`);
        assert.deepEqual(Array.from(unpackFromInt32(packed, rows, cols, bits)), q.flat());
        // packed_dim 0 packs every column down the rows: the transpose of packing the transpose
        const cols0 = Array.from({ length: cols }, (_, c) => q.map((row) => row[c]!));
        const ref0 = refPack(cols0, bits); // [cols][words]
        const p0 = packToInt32(flat, rows, cols, bits, 0);
        const words = Math.ceil((rows * bits) / 32);
        assert.deepEqual(packedShape(rows, cols, bits, 0), [words, cols]);
        for (let k = 0; k < words; k++) for (let c = 0; c < cols; c++) assert.equal(p0[k * cols + c], ref0[c]![k]);
        assert.deepEqual(Array.from(unpackFromInt32(p0, rows, cols, bits, 0)), q.flat());
      }
    });
  }

  it('padding fields are raw 0, so they unpack to −2^(b−1) if read past the shape', () => {
    const packed = packToInt32(Int8Array.from([7]), 1, 1, 4);
    assert.equal(packed[0], 15);
    assert.deepEqual(Array.from(unpackFromInt32(packed, 1, 8, 4)), [7, -8, -8, -8, -8, -8, -8, -8]);
  });

  it('the word-level fast paths (aligned 4/8 bits) equal the general path on unaligned input', () => {
    const q = randomQ(6, 64, 4, 5).flat();
    const aligned = Int8Array.from(q);
    const buf = new Int8Array(q.length + 1);
    buf.set(q, 1);
    const unaligned = buf.subarray(1);
    assert.deepEqual(packToInt32(aligned, 6, 64, 4), packToInt32(unaligned, 6, 64, 4));
    const q8 = randomQ(6, 64, 8, 6).flat();
    const buf8 = new Int8Array(q8.length + 3);
    buf8.set(q8, 3);
    assert.deepEqual(packToInt32(Int8Array.from(q8), 6, 64, 8), packToInt32(buf8.subarray(3), 6, 64, 8));
  });

  it('values outside the b-bit range are errors naming the element (they would corrupt neighbours upstream)', () => {
    for (const [bits, bad] of [[4, 8], [4, -9], [2, 2], [3, -5], [7, 64]] as const) {
      const v = new Int8Array(64);
      v[37] = bad;
      assert.throws(() => packToInt32(v, 2, 32, bits), (e: unknown) => e instanceof PackError && e.message.includes('[1, 5]') && e.message.includes(String(bad)), `${bits}/${bad}`);
      assert.throws(() => packToInt32(v, 2, 32, bits, 0), PackError);
    }
    assert.throws(() => packToInt32(new Int8Array(4), 2, 2, 9), PackError);
    assert.throws(() => packToInt32(new Int8Array(4), 2, 3, 4), PackError);
    assert.throws(() => unpackFromInt32(new Int32Array(3), 2, 8, 4), PackError);
  });

  it('reuses an output buffer (and clears what it held)', () => {
    const out = new Int32Array(4).fill(-1);
    const packed = packToInt32(Int8Array.from([1, 2, 3, 4]), 1, 4, 4, 1, out);
    assert.equal(packed.buffer, out.buffer);
    assert.deepEqual(Array.from(packed), [52137]);
  });
});

describe('dense bitstreams with any word width', () => {
  it('8/16/32-bit words hold the same LSB-first stream', () => {
    const fields = [5, 0, 7, 3, 1, 6, 2, 4, 7, 7, 0, 1];
    const w8 = new Uint8Array(Math.ceil((fields.length * 3) / 8));
    const w16 = new Uint16Array(Math.ceil((fields.length * 3) / 16));
    const w32 = new Int32Array(Math.ceil((fields.length * 3) / 32) + 1);
    for (const w of [w8, w16, w32]) {
      writeBitstream((i) => fields[i]!, fields.length, 3, w);
      assert.deepEqual(Array.from(readBitstream(w, fields.length, 3)), fields);
    }
    let acc = 0n;
    for (let i = fields.length - 1; i >= 0; i--) acc = (acc << 3n) | BigInt(fields[i]!);
    assert.deepEqual(Array.from(w8), Array.from({ length: w8.length }, (_, k) => Number((acc >> BigInt(8 * k)) & 0xffn)));
    assert.equal(w32[0]! >>> 0, Number(acc & 0xffffffffn));
    assert.throws(() => writeBitstream(() => 8, 1, 3, new Uint8Array(1)), PackError);
  });
});

describe('NVFP4 (E2M1) nibble packing', () => {
  const vec = JSON.parse(readFileSync(vectorsDir('nvfp4_e2m1.json'), 'utf8')) as { e2m1_code_to_magnitude: number[]; test_input_bf16: number[][]; expected_packed_uint8_DERIVED: number[][] };
  /** code = sign << 3 | index of |v| in the magnitude table (exact matches only, as in the upstream test). */
  const codeOf = (v: number) => (v < 0 || Object.is(v, -0) ? 8 : 0) | vec.e2m1_code_to_magnitude.indexOf(Math.abs(v));

  it('packs the upstream test matrix: even column in the low nibble', () => {
    const rows = vec.test_input_bf16.length;
    const cols = vec.test_input_bf16[0]!.length;
    const codes = Uint8Array.from(vec.test_input_bf16.flat().map(codeOf));
    const packed = packNvfp4(codes, rows, cols);
    assert.deepEqual(Array.from(packed), vec.expected_packed_uint8_DERIVED.flat());
    const back = unpackNvfp4(packed, rows, cols);
    assert.deepEqual(back, codes);
    // the sign of −0 survives (code 8)
    const values = Array.from(back, (c) => (c & 8 ? -1 : 1) * vec.e2m1_code_to_magnitude[c & 7]!);
    vec.test_input_bf16.flat().forEach((v, i) => assert.ok(Object.is(values[i], v), `element ${i}`));
  });

  it('needs an even column count and nibble codes', () => {
    assert.throws(() => packNvfp4(new Uint8Array(3), 1, 3), PackError);
    assert.throws(() => packNvfp4(Uint8Array.from([16, 0]), 1, 2), PackError);
  });
});
