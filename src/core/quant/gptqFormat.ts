/**
 * The AutoGPTQ / GPTQModel tensor layout of a quantized Linear (docs/formats.md §5.2–§5.6), K = in_features,
 * N = out_features, b = bits, G = number of groups:
 *
 * | tensor    | dtype | shape        | content                                                              |
 * |-----------|-------|--------------|----------------------------------------------------------------------|
 * | `qweight` | I32   | [K·b/32, N]  | unsigned q[k, n] packed **along the input dim**: column n is a dense  |
 * |           |       |              | LSB-first bitstream over k (value k at stream bit k·b)               |
 * | `qzeros`  | I32   | [G, N·b/32]  | zero points packed **along the output dim** the same way; v1         |
 * |           |       |              | (`checkpoint_format: gptq`) stores zero − 1 (masked to b bits), v2    |
 * |           |       |              | (`gptq_v2`) stores the zero itself                                    |
 * | `scales`  | F16   | [G, N]       |                                                                      |
 * | `g_idx`   | I32   | [K]          | group of every input row (k // group_size without act-order)         |
 *
 * Dequantization: W[n, k] = scales[g_idx[k], n] · (q[k, n] − z[g_idx[k], n]) — the g_idx-aware formula
 * always (qlinear_cuda_old ignores g_idx; that is a kernel shortcut, not the format).
 * For b ∈ {2, 4, 8} the dense stream is the classic "32/b values per word, value j at shift j·b"; for b = 3
 * 32 values take 3 words and values 10 and 21 straddle words. Every b from 1 to 8 is handled by the same
 * dense rule. K·b and N·b must be multiples of 32 (GPTQ kernels require it; nothing is padded).
 *
 * Relation to compressed-tensors pack-quantized (§5.6): CT stores the signed q + 2^(b−1) along the input dim
 * of [N, K], so for a symmetric scheme (zero 2^(b−1)) without act-order `weight_packed = qweight.T`,
 * `weight_scale = scales.T`, and the zero points and g_idx are dropped. The converters below also carry
 * asymmetric zero points and act-order g_idx.
 */
import { packToInt32, packedShape, readBitstream, unpackFromInt32, writeBitstream, type WordArray } from './pack';

export type GptqCheckpointFormat = 'gptq' | 'gptq_v2';

export interface GptqLayerTensors {
  readonly bits: number;
  /** K. */
  readonly inFeatures: number;
  /** N. */
  readonly outFeatures: number;
  /** [K·b/32, N]. */
  readonly qweight: Int32Array;
  /** [G, N·b/32], in the convention of the checkpoint format. */
  readonly qzeros: Int32Array;
  /** [G, N] (values; F16 in checkpoints). */
  readonly scales: Float32Array;
  /** [K]. */
  readonly gIdx: Int32Array;
}

export class GptqFormatError extends Error {
  override readonly name = 'GptqFormatError';
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new GptqFormatError(`GPTQ packing supports 1–8 bits, got ${bits}`);
}

function checkMultiple(what: string, n: number, bits: number): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new GptqFormatError(`${what} must be a positive integer, got ${n}`);
  if ((n * bits) % 32 !== 0) throw new GptqFormatError(`${what} = ${n} at ${bits} bits is not a whole number of int32 words (${what} · ${bits} must be a multiple of 32)`);
}

/** The groups for a group_size (−1 = one group over all of K). */
export function gptqGroupCount(inFeatures: number, groupSize: number): number {
  if (groupSize === -1) return 1;
  if (!Number.isInteger(groupSize) || groupSize <= 0) throw new GptqFormatError(`group_size must be −1 or positive, got ${groupSize}`);
  return Math.ceil(inFeatures / groupSize);
}

/** Tensor shapes of one GPTQ Linear. */
export function gptqShapes(inFeatures: number, outFeatures: number, bits: number, groupSize: number): { qweight: [number, number]; qzeros: [number, number]; scales: [number, number]; gIdx: [number]; groups: number } {
  checkBits(bits);
  checkMultiple('in_features', inFeatures, bits);
  checkMultiple('out_features', outFeatures, bits);
  const groups = gptqGroupCount(inFeatures, groupSize);
  return { qweight: [(inFeatures * bits) / 32, outFeatures], qzeros: [groups, (outFeatures * bits) / 32], scales: [groups, outFeatures], gIdx: [inFeatures], groups };
}

/** g_idx without act-order: k // group_size (0 for group_size −1). */
export function gptqDefaultGIdx(inFeatures: number, groupSize: number): Int32Array {
  const gs = groupSize === -1 ? inFeatures : groupSize;
  gptqGroupCount(inFeatures, groupSize);
  const g = new Int32Array(inFeatures);
  for (let k = 0; k < inFeatures; k++) g[k] = Math.floor(k / gs);
  return g;
}

/**
 * Packs unsigned values laid out [L, M] (row-major) along dim 0 into int32 words [L·b/32, M]: column m is a
 * dense LSB-first stream over the L rows. (qweight: L = K, M = N.)
 */
function packAlongRows(values: Uint8Array, L: number, M: number, bits: number): Int32Array {
  const out = new Int32Array(((L * bits) / 32) * M);
  const limit = 1 << bits;
  for (let l = 0; l < L; l++) {
    const pos = l * bits;
    const word = pos >>> 5;
    const sh = pos & 31;
    const spill = sh + bits > 32;
    const base = word * M;
    const src = l * M;
    for (let m = 0; m < M; m++) {
      const u = values[src + m]!;
      if (u >= limit) throw new GptqFormatError(`value ${u} at [${l}, ${m}] does not fit ${bits} unsigned bits`);
      out[base + m]! |= u << sh;
      if (spill) out[base + M + m]! |= u >>> (32 - sh);
    }
  }
  return out;
}

/** Inverse of packAlongRows: words [L·b/32, M] → unsigned values [L, M]. */
function unpackAlongRows(words: Int32Array, L: number, M: number, bits: number): Uint8Array {
  const out = new Uint8Array(L * M);
  const mask = (1 << bits) - 1;
  for (let l = 0; l < L; l++) {
    const pos = l * bits;
    const word = pos >>> 5;
    const sh = pos & 31;
    const spill = sh + bits > 32;
    const base = word * M;
    const dst = l * M;
    for (let m = 0; m < M; m++) {
      let u = words[base + m]! >>> sh;
      if (spill) u |= words[base + M + m]! << (32 - sh);
      out[dst + m] = u & mask;
    }
  }
  return out;
}

/** Packs along dim 1: values [L, M] → words [L, M·b/32], each row a dense LSB-first stream. */
function packAlongCols(values: Uint8Array, L: number, M: number, bits: number): Int32Array {
  const wpr = (M * bits) / 32;
  const out = new Int32Array(L * wpr);
  const limit = 1 << bits;
  for (let l = 0; l < L; l++) {
    const src = l * M;
    const base = l * wpr;
    for (let m = 0; m < M; m++) {
      const u = values[src + m]!;
      if (u >= limit) throw new GptqFormatError(`value ${u} at [${l}, ${m}] does not fit ${bits} unsigned bits`);
      const pos = m * bits;
      const sh = pos & 31;
      out[base + (pos >>> 5)]! |= u << sh;
      if (sh + bits > 32) out[base + (pos >>> 5) + 1]! |= u >>> (32 - sh);
    }
  }
  return out;
}

function unpackAlongCols(words: Int32Array, L: number, M: number, bits: number): Uint8Array {
  const wpr = (M * bits) / 32;
  const out = new Uint8Array(L * M);
  const mask = (1 << bits) - 1;
  for (let l = 0; l < L; l++) {
    const base = l * wpr;
    for (let m = 0; m < M; m++) {
      const pos = m * bits;
      const sh = pos & 31;
      let u = words[base + (pos >>> 5)]! >>> sh;
      if (sh + bits > 32) u |= words[base + (pos >>> 5) + 1]! << (32 - sh);
      out[l * M + m] = u & mask;
    }
  }
  return out;
}

/** qweight from unsigned q laid out [K, N] (in × out, as AutoGPTQ's `intweight`). */
export function packGptqQweight(q: Uint8Array, inFeatures: number, outFeatures: number, bits: number): Int32Array {
  checkBits(bits);
  checkMultiple('in_features', inFeatures, bits);
  if (q.length !== inFeatures * outFeatures) throw new GptqFormatError(`q holds ${q.length} values, [${inFeatures}, ${outFeatures}] needs ${inFeatures * outFeatures}`);
  return packAlongRows(q, inFeatures, outFeatures, bits);
}

/** Unsigned q [K, N] from qweight [K·b/32, N]. */
export function unpackGptqQweight(qweight: Int32Array, inFeatures: number, outFeatures: number, bits: number): Uint8Array {
  checkBits(bits);
  checkMultiple('in_features', inFeatures, bits);
  const want = ((inFeatures * bits) / 32) * outFeatures;
  if (qweight.length !== want) throw new GptqFormatError(`qweight holds ${qweight.length} words, [${(inFeatures * bits) / 32}, ${outFeatures}] = ${want} expected`);
  return unpackAlongRows(qweight, inFeatures, outFeatures, bits);
}

/** qzeros from the true zero points [G, N] (unsigned, 0 … 2^b − 1), in the convention of `format`. */
export function packGptqQzeros(zeros: Uint8Array, groups: number, outFeatures: number, bits: number, format: GptqCheckpointFormat): Int32Array {
  checkBits(bits);
  checkMultiple('out_features', outFeatures, bits);
  if (zeros.length !== groups * outFeatures) throw new GptqFormatError(`zeros hold ${zeros.length} values, [${groups}, ${outFeatures}] needs ${groups * outFeatures}`);
  const mask = (1 << bits) - 1;
  let stored = zeros;
  if (format === 'gptq') {
    stored = new Uint8Array(zeros.length);
    for (let i = 0; i < zeros.length; i++) {
      if (zeros[i]! > mask) throw new GptqFormatError(`zero point ${zeros[i]} does not fit ${bits} bits`);
      // v1 stores zero − 1; a zero of 0 wraps to 2^b − 1 (GPTQModel's v2→v1 conversion does the same; AutoGPTQ's
      // unmasked `zeros -= 1` would corrupt the neighbouring fields instead, which is why v2 exists).
      stored[i] = (zeros[i]! - 1) & mask;
    }
  }
  return packAlongCols(stored, groups, outFeatures, bits);
}

/** True zero points [G, N] from qzeros [G, N·b/32] (v1: stored + 1, masked to b bits, as AutoGPTQ's kernels do). */
export function unpackGptqQzeros(qzeros: Int32Array, groups: number, outFeatures: number, bits: number, format: GptqCheckpointFormat): Uint8Array {
  checkBits(bits);
  checkMultiple('out_features', outFeatures, bits);
  const want = groups * ((outFeatures * bits) / 32);
  if (qzeros.length !== want) throw new GptqFormatError(`qzeros hold ${qzeros.length} words, [${groups}, ${(outFeatures * bits) / 32}] = ${want} expected`);
  const z = unpackAlongCols(qzeros, groups, outFeatures, bits);
  if (format === 'gptq') {
    const mask = (1 << bits) - 1;
    for (let i = 0; i < z.length; i++) z[i] = (z[i]! + 1) & mask;
  }
  return z;
}

/**
 * GPTQModel's v1 ↔ v2 qzeros conversion on raw words of any pack dtype (int8/16/32): adds `delta` (+1 for
 * v1 → v2, −1 for v2 → v1) to every b-bit field of the dense LSB-first stream, modulo 2^b, without carries
 * between fields. `fieldCount` defaults to every whole field the words hold. Returns a new array of the same type.
 */
export function shiftPackedZeroFields<T extends WordArray>(words: T, bits: number, delta: number, fieldCount?: number): T {
  checkBits(bits);
  const W = words.BYTES_PER_ELEMENT * 8;
  const n = fieldCount ?? Math.floor((words.length * W) / bits);
  if (n * bits > words.length * W) throw new GptqFormatError(`${n} fields of ${bits} bits do not fit ${words.length} words of ${W} bits`);
  const mask = (1 << bits) - 1;
  const fields = readBitstream(words, n, bits);
  const out = words.slice() as T;
  out.fill(0);
  writeBitstream((i) => (fields[i]! + delta + (mask + 1) * 4) & mask, n, bits, out);
  // Keep any bits beyond the last whole field as they were.
  const usedBits = n * bits;
  if (usedBits < words.length * W) {
    const k = Math.floor(usedBits / W);
    const sh = usedBits % W;
    const keep = sh === 0 ? -1 : ~((1 << sh) - 1);
    out[k] = (out[k]! | (words[k]! & keep)) as never;
    for (let j = k + 1; j < words.length; j++) out[j] = words[j]!;
  }
  return out;
}

/** v1 (`gptq`) qzeros → v2 (`gptq_v2`). */
export function qzerosV1ToV2<T extends WordArray>(words: T, bits: number, fieldCount?: number): T {
  return shiftPackedZeroFields(words, bits, 1, fieldCount);
}

/** v2 (`gptq_v2`) qzeros → v1 (`gptq`). */
export function qzerosV2ToV1<T extends WordArray>(words: T, bits: number, fieldCount?: number): T {
  return shiftPackedZeroFields(words, bits, -1, fieldCount);
}

/**
 * Checks what a GPTQ layer's scales and g_idx must satisfy (everything but qweight and qzeros, which are
 * checked where they are unpacked) and returns its number of groups G.
 */
export function checkGptqGroups(layer: Pick<GptqLayerTensors, 'bits' | 'inFeatures' | 'outFeatures' | 'scales' | 'gIdx'>): number {
  const { bits, inFeatures: K, outFeatures: N } = layer;
  checkBits(bits);
  checkMultiple('in_features', K, bits);
  checkMultiple('out_features', N, bits);
  if (layer.scales.length % N !== 0 || layer.scales.length === 0) throw new GptqFormatError(`scales hold ${layer.scales.length} values, not a whole number of rows of ${N}`);
  const G = layer.scales.length / N;
  if (layer.gIdx.length !== K) throw new GptqFormatError(`g_idx has ${layer.gIdx.length} entries, in_features is ${K}`);
  for (let k = 0; k < K; k++) {
    const g = layer.gIdx[k]!;
    if (!(g >= 0 && g < G)) throw new GptqFormatError(`g_idx[${k}] = ${g} is outside 0…${G - 1}`);
  }
  return G;
}

/** Unpacked view of a GPTQ layer: unsigned q [K, N], true zeros [G, N]. */
export function unpackGptqLayer(layer: GptqLayerTensors, format: GptqCheckpointFormat): { q: Uint8Array; zeros: Uint8Array; groups: number } {
  const G = checkGptqGroups(layer);
  return {
    q: unpackGptqQweight(layer.qweight, layer.inFeatures, layer.outFeatures, layer.bits),
    zeros: unpackGptqQzeros(layer.qzeros, G, layer.outFeatures, layer.bits, format),
    groups: G,
  };
}

/**
 * Dequantizes a GPTQ layer to W [N, K] (out × in, the nn.Linear orientation):
 * W[n, k] = scales[g_idx[k], n] · (q[k, n] − z[g_idx[k], n]), computed exactly and rounded once to float32
 * (exact for F16 scales; torch in fp16 would round the product to fp16 as well).
 */
export function dequantizeGptq(layer: GptqLayerTensors, format: GptqCheckpointFormat, out?: Float32Array): Float32Array {
  const { q, zeros } = unpackGptqLayer(layer, format);
  const K = layer.inFeatures;
  const N = layer.outFeatures;
  const w = out ?? new Float32Array(N * K);
  if (w.length < N * K) throw new GptqFormatError(`out holds ${w.length} elements, ${N * K} are needed`);
  const { scales, gIdx } = layer;
  for (let k = 0; k < K; k++) {
    const g = gIdx[k]! * N;
    const row = k * N;
    for (let n = 0; n < N; n++) w[n * K + k] = scales[g + n]! * (q[row + n]! - zeros[g + n]!);
  }
  return w;
}

/**
 * Builds the GPTQ tensors from signed quantized values q [N, K] (out × in, as an RTN/GPTQ result holds them),
 * scales [N, G], optional signed zero points [N, G] (asymmetric; symmetric means zero 2^(b−1)) and g_idx.
 * Unsigned GPTQ values are q + 2^(b−1) and z + 2^(b−1), so (q_gptq − z_gptq) = (q − zp) and the
 * dequantized weights are identical.
 */
export function toGptqLayer(
  q: Int8Array,
  outFeatures: number,
  inFeatures: number,
  bits: number,
  scale: Float32Array,
  format: GptqCheckpointFormat,
  options: { zeroPoint?: Int8Array; gIdx?: Int32Array; groupSize?: number } = {},
): GptqLayerTensors {
  checkBits(bits);
  checkMultiple('in_features', inFeatures, bits);
  checkMultiple('out_features', outFeatures, bits);
  const N = outFeatures;
  const K = inFeatures;
  if (q.length !== N * K) throw new GptqFormatError(`q holds ${q.length} values, [${N}, ${K}] needs ${N * K}`);
  if (scale.length % N !== 0 || scale.length === 0) throw new GptqFormatError(`scale holds ${scale.length} values, not [${N}, G]`);
  const G = scale.length / N;
  const gIdx = options.gIdx ?? gptqDefaultGIdx(K, options.groupSize ?? (G === 1 ? -1 : K / G));
  const off = 1 << (bits - 1);
  const iw = new Uint8Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const u = q[n * K + k]! + off;
      if (u < 0 || u >= 2 * off) throw new GptqFormatError(`q[${n}, ${k}] = ${q[n * K + k]} does not fit ${bits} bits`);
      iw[k * N + n] = u;
    }
  }
  const zeros = new Uint8Array(G * N);
  const scales = new Float32Array(G * N);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      scales[g * N + n] = scale[n * G + g]!;
      const z = (options.zeroPoint ? options.zeroPoint[n * G + g]! : 0) + off;
      if (z < 0 || z >= 2 * off) throw new GptqFormatError(`zero point [${n}, ${g}] does not fit ${bits} bits`);
      zeros[g * N + n] = z;
    }
  }
  const layer: GptqLayerTensors = {
    bits,
    inFeatures: K,
    outFeatures: N,
    qweight: packAlongRows(iw, K, N, bits),
    qzeros: packGptqQzeros(zeros, G, N, bits, format),
    scales,
    gIdx,
  };
  checkGptqGroups(layer);
  return layer;
}

/** compressed-tensors pack-quantized tensors of one Linear (values; the writer picks the dtypes). */
export interface CompressedTensorsPacked {
  readonly bits: number;
  /** weight_shape = [out, in]. */
  readonly weightShape: readonly [number, number];
  /** weight_packed [out, ceil(in·b/32)]. */
  readonly weightPacked: Int32Array;
  /** weight_scale [out, G] (channel: G = 1). */
  readonly weightScale: Float32Array;
  /** weight_zero_point packed along dim 0, [ceil(out·b/32), G] (asymmetric only). */
  readonly weightZeroPoint?: Int32Array;
  /** weight_g_idx [in] (act-order group only). */
  readonly weightGIdx?: Int32Array;
}

function isDefaultGIdx(gIdx: Int32Array, K: number, G: number): boolean {
  if (G === 1) return gIdx.every((g) => g === 0);
  if (K % G !== 0) return false;
  const gs = K / G;
  for (let k = 0; k < K; k++) if (gIdx[k] !== Math.floor(k / gs)) return false;
  return true;
}

/**
 * GPTQ → compressed-tensors pack-quantized. Zero points equal to 2^(b−1) everywhere give a symmetric
 * layer (no weight_zero_point); a g_idx other than k // group_size is kept as weight_g_idx.
 * For symmetric 4-bit without act-order, weightPacked is exactly qweight transposed (§5.6).
 */
export function gptqToCompressedTensors(layer: GptqLayerTensors, format: GptqCheckpointFormat): CompressedTensorsPacked {
  const { q, zeros, groups: G } = unpackGptqLayer(layer, format);
  const K = layer.inFeatures;
  const N = layer.outFeatures;
  const bits = layer.bits;
  const off = 1 << (bits - 1);
  const signed = new Int8Array(N * K);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) signed[n * K + k] = q[k * N + n]! - off;
  const weightScale = new Float32Array(N * G);
  const zp = new Int8Array(N * G);
  let symmetric = true;
  for (let g = 0; g < G; g++) {
    for (let n = 0; n < N; n++) {
      weightScale[n * G + g] = layer.scales[g * N + n]!;
      zp[n * G + g] = zeros[g * N + n]! - off;
      if (zeros[g * N + n] !== off) symmetric = false;
    }
  }
  return {
    bits,
    weightShape: [N, K],
    weightPacked: packToInt32(signed, N, K, bits, 1),
    weightScale,
    ...(symmetric ? {} : { weightZeroPoint: packToInt32(zp, N, G, bits, 0) }),
    ...(isDefaultGIdx(layer.gIdx, K, G) ? {} : { weightGIdx: layer.gIdx.slice() }),
  };
}

/** compressed-tensors pack-quantized → GPTQ (any 1–8 bits with K·b and N·b multiples of 32). */
export function compressedTensorsToGptq(ct: CompressedTensorsPacked, format: GptqCheckpointFormat): GptqLayerTensors {
  const [N, K] = ct.weightShape;
  const bits = ct.bits;
  const [pr, pc] = packedShape(N, K, bits, 1);
  if (ct.weightPacked.length !== pr * pc) throw new GptqFormatError(`weight_packed holds ${ct.weightPacked.length} words, [${pr}, ${pc}] expected for weight_shape [${N}, ${K}]`);
  if (ct.weightScale.length % N !== 0 || ct.weightScale.length === 0) throw new GptqFormatError(`weight_scale holds ${ct.weightScale.length} values, not [${N}, G]`);
  const G = ct.weightScale.length / N;
  const q = unpackFromInt32(ct.weightPacked, N, K, bits, 1);
  const zeroPoint = ct.weightZeroPoint ? unpackFromInt32(ct.weightZeroPoint, N, G, bits, 0) : undefined;
  return toGptqLayer(q, N, K, bits, ct.weightScale, format, { ...(zeroPoint ? { zeroPoint } : {}), ...(ct.weightGIdx ? { gIdx: ct.weightGIdx } : {}), groupSize: G === 1 ? -1 : K / G });
}
