import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeToFloat32 } from '../../src/core/dtypes/convert';
import {
  compressedTensorsToGptq,
  dequantizeGptq,
  gptqDefaultGIdx,
  gptqShapes,
  GptqFormatError,
  gptqToCompressedTensors,
  packGptqQweight,
  packGptqQzeros,
  qzerosV1ToV2,
  qzerosV2ToV1,
  toGptqLayer,
  unpackGptqQweight,
  unpackGptqQzeros,
  type GptqCheckpointFormat,
  type GptqLayerTensors,
} from '../../src/core/quant/gptqFormat';
import { packToInt32 } from '../../src/core/quant/pack';
import { dequantizeRtn, quantizeRtn } from '../../src/core/quant/rtn';
import { SafetensorsFile } from '../../src/core/safetensors/reader';
import { vectorsDir } from '../helpers/paths';

interface GptqCase {
  file: string;
  quantize_config: { bits: number; checkpoint_format: GptqCheckpointFormat };
  in_features: number;
  out_features: number;
  expected_weight_out_by_in: number[][];
}

async function readLayer(file: string, bits: number, K: number, N: number): Promise<GptqLayerTensors> {
  const st = await SafetensorsFile.open(vectorsDir('gptq', file));
  try {
    const i32 = async (name: string) => new Int32Array((await st.readTensorBytes(name)).slice().buffer);
    const scalesInfo = st.tensor('linear.scales');
    return {
      bits,
      inFeatures: K,
      outFeatures: N,
      qweight: await i32('linear.qweight'),
      qzeros: await i32('linear.qzeros'),
      scales: decodeToFloat32(scalesInfo.dtype, await st.readTensorBytes('linear.scales')),
      gIdx: await i32('linear.g_idx'),
    };
  } finally {
    await st.close();
  }
}

/** Independent column-stream packer: value k of column n at stream bit k·b (BigInt). */
function refPackColumns(values: number[][], bits: number): number[] {
  // values: [K][N] → words [K·b/32][N]
  const K = values.length;
  const N = values[0]!.length;
  const W = (K * bits) / 32;
  const out = new Array<number>(W * N).fill(0);
  for (let n = 0; n < N; n++) {
    let acc = 0n;
    for (let k = K - 1; k >= 0; k--) acc = (acc << BigInt(bits)) | BigInt(values[k]![n]!);
    for (let w = 0; w < W; w++) out[w * N + n] = Number(BigInt.asIntN(32, acc >> BigInt(32 * w)));
  }
  return out;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

describe('GPTQ tensor layout (AutoGPTQ / GPTQModel)', () => {
  const cases = JSON.parse(readFileSync(vectorsDir('gptq', 'cases.json'), 'utf8')) as GptqCase[];

  for (const c of cases) {
    it(`${c.file}: dequantized weight equals GPTQModel's expected_weight_out_by_in (${c.quantize_config.checkpoint_format}, ${c.quantize_config.bits} bits)`, async () => {
      const { bits, checkpoint_format: format } = c.quantize_config;
      const layer = await readLayer(c.file, bits, c.in_features, c.out_features);
      const w = dequantizeGptq(layer, format);
      assert.deepEqual(Array.from(w), c.expected_weight_out_by_in.flat());
      // reading it in the other convention gives a different weight (the ±1 matters)
      const other = format === 'gptq' ? 'gptq_v2' : 'gptq';
      assert.notDeepEqual(Array.from(dequantizeGptq(layer, other)), c.expected_weight_out_by_in.flat());
    });
  }

  it('3-bit: packing arange(32·32) % 8 along the input dim reproduces the vector file word for word', async () => {
    const layer = await readLayer('ref_3bit_gptq_v2.safetensors', 3, 32, 32);
    const iw = Array.from({ length: 32 }, (_, k) => Array.from({ length: 32 }, (_, n) => (k * 32 + n) % 8));
    const packed = packGptqQweight(Uint8Array.from(iw.flat()), 32, 32, 3);
    assert.deepEqual(Array.from(packed), Array.from(layer.qweight));
    assert.deepEqual(Array.from(packed), refPackColumns(iw, 3));
    assert.deepEqual(Array.from(unpackGptqQweight(packed, 32, 32, 3)), iw.flat());
    // true zeros ((n·3)+1) % 8, stored as is in v2
    const zeros = Uint8Array.from({ length: 32 }, (_, n) => (n * 3 + 1) % 8);
    assert.deepEqual(packGptqQzeros(zeros, 1, 32, 3, 'gptq_v2'), layer.qzeros);
    assert.deepEqual(unpackGptqQzeros(layer.qzeros, 1, 32, 3, 'gptq_v2'), zeros);
    const v1 = await readLayer('ref_3bit_gptq.safetensors', 3, 32, 32);
    assert.deepEqual(packGptqQzeros(zeros, 1, 32, 3, 'gptq'), v1.qzeros);
    assert.deepEqual(unpackGptqQzeros(v1.qzeros, 1, 32, 3, 'gptq'), zeros);
  });

  it('values 10 and 21 of a 3-bit column straddle words (bits 30–31 | 0, and 31 | 0–1)', () => {
    const col = new Uint8Array(32);
    col[10] = 0b111;
    const a = packGptqQweight(col, 32, 1, 3);
    assert.deepEqual([a[0]! >>> 0, a[1], a[2]], [0xc0000000, 1, 0]);
    col[10] = 0;
    col[21] = 0b111;
    const b = packGptqQweight(col, 32, 1, 3);
    assert.deepEqual([b[0], b[1]! >>> 0, b[2]], [0, 0x80000000, 3]);
  });

  for (const bits of [2, 3, 4, 8]) {
    it(`${bits} bits: qweight/qzeros round trips against an independent packer`, () => {
      const u = rng(bits);
      const K = 64;
      const N = 32;
      const vals = Array.from({ length: K }, () => Array.from({ length: N }, () => Math.floor(u() * 2 ** bits)));
      const qw = packGptqQweight(Uint8Array.from(vals.flat()), K, N, bits);
      assert.deepEqual(gptqShapes(K, N, bits, 16).qweight, [(K * bits) / 32, N]);
      assert.deepEqual(Array.from(qw), refPackColumns(vals, bits));
      assert.deepEqual(Array.from(unpackGptqQweight(qw, K, N, bits)), vals.flat());
      const zeros = Uint8Array.from({ length: 4 * N }, () => Math.floor(u() * 2 ** bits));
      for (const format of ['gptq', 'gptq_v2'] as const) {
        const qz = packGptqQzeros(zeros, 4, N, bits, format);
        assert.equal(qz.length, (4 * N * bits) / 32);
        assert.deepEqual(unpackGptqQzeros(qz, 4, N, bits, format), zeros);
      }
    });
  }

  it('symmetric zeros: v1 stores 2^(b−1) − 1 in every field (0x77777777 for 4 bits), v2 stores 2^(b−1)', () => {
    const zeros = new Uint8Array(2 * 16).fill(8);
    assert.ok(Array.from(packGptqQzeros(zeros, 2, 16, 4, 'gptq')).every((w) => w >>> 0 === 0x77777777));
    assert.ok(Array.from(packGptqQzeros(zeros, 2, 16, 4, 'gptq_v2')).every((w) => w >>> 0 === 0x88888888));
  });

  it('GPTQModel qzero offsets: v1 → v2 adds 1 to every packed field (int8/int16/int32 words, 3-bit dense)', () => {
    const vec = JSON.parse(readFileSync(vectorsDir('gptq', 'qzero_v1_v2_offsets.json'), 'utf8')) as {
      cases: { bits: number; pack_dtype: string; v1_word_hex?: string; v2_word_hex?: string; v1_words?: number[]; v2_words_value?: string[] }[];
    };
    for (const c of vec.cases) {
      const make = (vals: number[]) => (c.pack_dtype === 'int8' ? Int8Array.from(vals) : c.pack_dtype === 'int16' ? Int16Array.from(vals) : Int32Array.from(vals));
      const mask = c.pack_dtype === 'int8' ? 0xff : c.pack_dtype === 'int16' ? 0xffff : 0xffffffff;
      const v1 = make(c.v1_words ?? [Number(c.v1_word_hex)]);
      const expected = (c.v2_words_value ?? [c.v2_word_hex!]).map((h) => Number(h));
      const v2 = qzerosV1ToV2(v1, c.bits);
      assert.deepEqual(Array.from(v2, (w) => (w & mask) >>> 0), expected, `${c.bits} bits ${c.pack_dtype}`);
      assert.deepEqual(Array.from(qzerosV2ToV1(v2, c.bits)), Array.from(v1), 'v2 → v1 round trip');
    }
  });

  it('dequantization uses g_idx (act-order), not k // group_size', () => {
    const K = 32;
    const N = 8;
    const bits = 4;
    const q = Uint8Array.from({ length: K * N }, (_, i) => i % 16);
    const gIdx = Int32Array.from({ length: K }, (_, k) => (k * 7) % 2);
    const scales = Float32Array.from({ length: 2 * N }, (_, i) => (i < N ? 0.5 : 0.25));
    const zeros = Uint8Array.from({ length: 2 * N }, (_, i) => (i < N ? 8 : 3));
    const layer: GptqLayerTensors = { bits, inFeatures: K, outFeatures: N, qweight: packGptqQweight(q, K, N, bits), qzeros: packGptqQzeros(zeros, 2, N, bits, 'gptq_v2'), scales, gIdx };
    const w = dequantizeGptq(layer, 'gptq_v2');
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) {
        const g = gIdx[k]!;
        assert.equal(w[n * K + k], scales[g * N + n]! * (q[k * N + n]! - zeros[g * N + n]!));
      }
    assert.throws(() => dequantizeGptq({ ...layer, gIdx: Int32Array.from({ length: K }, () => 2) }, 'gptq_v2'), GptqFormatError);
  });

  it('rejects shapes that are not whole int32 words', () => {
    assert.throws(() => packGptqQweight(new Uint8Array(30 * 4), 30, 4, 3), GptqFormatError);
    assert.throws(() => gptqShapes(64, 10, 4, 32), /out_features/);
  });
});

describe('compressed-tensors pack-quantized ↔ GPTQ', () => {
  const N = 64;
  const K = 256;
  const u = rng(77);
  const w = Float32Array.from({ length: N * K }, () => {
    const g = Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
    return new Float32Array(new Uint32Array([new Uint32Array(new Float32Array([g * 0.02]).buffer)[0]! & 0xffff0000]).buffer)[0]!;
  });

  it('symmetric 4-bit without act-order: weight_packed = qweight.T, weight_scale = scales.T, same dequantized weight', () => {
    const res = quantizeRtn(w, N, K, { numBits: 4, type: 'int', symmetric: true, strategy: 'group', groupSize: 64, dynamic: false }, { pack: true });
    assert.ok(res.kind === 'int' && res.packed);
    for (const format of ['gptq', 'gptq_v2'] as const) {
      const layer = toGptqLayer(res.q, N, K, 4, res.scale, format);
      assert.deepEqual(layer.gIdx, gptqDefaultGIdx(K, 64));
      const words = K / 8;
      for (let r = 0; r < words; r++) for (let n = 0; n < N; n++) assert.equal(layer.qweight[r * N + n], res.packed[n * words + r], `word ${r} of column ${n}`);
      for (let g = 0; g < 4; g++) for (let n = 0; n < N; n++) assert.equal(layer.scales[g * N + n], res.scale[n * 4 + g]);
      assert.ok(Array.from(layer.qzeros).every((x) => x >>> 0 === (format === 'gptq' ? 0x77777777 : 0x88888888)));
      assert.deepEqual(dequantizeGptq(layer, format), dequantizeRtn(res));
      const ct = gptqToCompressedTensors(layer, format);
      assert.deepEqual(ct.weightPacked, res.packed);
      assert.deepEqual(ct.weightScale, res.scale);
      assert.deepEqual(ct.weightShape, [N, K]);
      assert.equal(ct.weightZeroPoint, undefined);
      assert.equal(ct.weightGIdx, undefined);
      assert.deepEqual(compressedTensorsToGptq(ct, format), layer);
    }
  });

  it('asymmetric 8-bit channel and act-order g_idx survive CT → GPTQ v2 → CT; v1 dequantizes alike', () => {
    const res = quantizeRtn(w, N, K, { numBits: 8, type: 'int', symmetric: false, strategy: 'channel', dynamic: false });
    assert.ok(res.kind === 'int' && res.zeroPoint);
    const ct = { bits: 8, weightShape: [N, K] as const, weightPacked: packToInt32(res.q, N, K, 8), weightScale: res.scale, weightZeroPoint: packToInt32(res.zeroPoint, N, 1, 8, 0) };
    for (const format of ['gptq', 'gptq_v2'] as const) {
      const layer = compressedTensorsToGptq(ct, format);
      assert.deepEqual(dequantizeGptq(layer, format), dequantizeRtn(res));
      const back = gptqToCompressedTensors(layer, format);
      assert.deepEqual(back.weightPacked, ct.weightPacked);
      assert.deepEqual(back.weightZeroPoint, ct.weightZeroPoint);
    }
    const perm = Array.from({ length: K }, (_, i) => i).sort((a, b) => ((a * 37) % K) - ((b * 37) % K));
    const gIdx = new Int32Array(K);
    perm.forEach((c, i) => (gIdx[c] = Math.floor(i / 64)));
    const ao = quantizeRtn(w, N, K, { numBits: 4, type: 'int', symmetric: true, strategy: 'group', groupSize: 64, dynamic: false, actorder: 'group' }, { gIdx });
    assert.ok(ao.kind === 'int');
    const layer = toGptqLayer(ao.q, N, K, 4, ao.scale, 'gptq_v2', { gIdx });
    assert.deepEqual(dequantizeGptq(layer, 'gptq_v2'), dequantizeRtn(ao));
    assert.deepEqual(gptqToCompressedTensors(layer, 'gptq_v2').weightGIdx, gIdx);
  });
});
