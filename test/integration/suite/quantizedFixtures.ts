// Small quantized Llama checkpoints written from scratch for the inspector's integration tests, one per
// layout the dequantized view reads: GPTQ v1 packed INT4 (act-order g_idx, asymmetric zero points),
// compressed-tensors pack-quantized INT4 groups (packed zero points), AutoFP8 per tensor, compressed-tensors
// INT8 per channel. Everything here follows docs/formats.md §3.5–§3.7, §5 and §6 and uses
// nothing from src/: the headers, the bit packing, the fp16/bf16/FP8 encodings and the round-to-nearest
// quantization are written out below, so the editor's numbers are checked against an independent reading.
//
// Each fixture returns, for its layers, the integers and scales it stored and `dequantize`/`codes`: the
// float64 values the page should summarise, computed from those integers and scales.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { e4m3Value } from '../../helpers/fp8Reference';

/** Deterministic uniforms in [0, 1) (mulberry32) and standard normals from them (Box–Muller). */
function random(seed: number): { uniform: () => number; normal: () => number } {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

/** A Llama-like weight [out, in]: normal values with a few heavy-tailed input columns (as real layers have). */
function linearWeight(out: number, inp: number, seed: number): Float64Array {
  const { uniform, normal } = random(seed);
  const heavy = new Set(Array.from({ length: Math.max(1, inp >> 6) }, () => Math.floor(uniform() * inp)));
  const std = 1 / Math.sqrt(inp);
  return Float64Array.from({ length: out * inp }, (_, i) => normal() * std * (heavy.has(i % inp) ? 3 : 1));
}

// ---- number encodings (docs/formats.md §2) ---------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bits of `v`, rounded to nearest even from its float32, and the value they hold. */
function bf16(v: number): { bits: number; value: number } {
  f32[0] = v;
  const u = u32[0]!;
  const bits = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  u32[0] = bits << 16;
  return { bits, value: f32[0]! };
}

/** f16 bits of a positive normal `v` (2^-14 ≤ v < 65504), rounded to nearest, and the value they hold. */
function f16(v: number): { bits: number; value: number } {
  if (!(v >= 2 ** -14 && v < 65504)) throw new Error(`${v} is outside the fp16 normal range these fixtures use`);
  let e = Math.floor(Math.log2(v));
  let m = Math.round((v / 2 ** e - 1) * 1024);
  if (m === 1024) {
    e += 1;
    m = 0;
  }
  return { bits: ((e + 15) << 10) | m, value: 2 ** e * (1 + m / 1024) };
}

/** Codes 0x00..0x7E in increasing value: the non-negative finite E4M3 numbers. */
const E4M3_POSITIVE = Array.from({ length: 0x7f }, (_, c) => e4m3Value(c));

/** The E4M3 code nearest to `v` after clamping to ±448 (ties to the even code, as torch's cast). */
function e4m3Code(v: number): number {
  const a = Math.min(448, Math.abs(v));
  let lo = 0;
  let hi = E4M3_POSITIVE.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (E4M3_POSITIVE[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - E4M3_POSITIVE[lo]!;
  const dHi = E4M3_POSITIVE[hi]! - a;
  const code = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
  return code === 0 ? 0 : (v < 0 ? 0x80 : 0) | code;
}

/** Round half to even (torch.round). */
const roundEven = (x: number) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

// ---- safetensors, written by hand (docs/formats.md §1.1) --------------------------------------------------

interface RawTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly data: ArrayBufferView;
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function writeCheckpointFolder(dir: string, tensors: readonly RawTensor[], config: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true });
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    const length = t.data.byteLength;
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + length] };
    offset += length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // the reference writer pads the header to 8 bytes
  const headerBytes = Buffer.from(json, 'utf8');
  const file = Buffer.alloc(8 + headerBytes.length + offset);
  file.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(file, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors) {
    file.set(bytesOf(t.data), at);
    at += t.data.byteLength;
  }
  writeFileSync(join(dir, 'model.safetensors'), file);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return join(dir, 'model.safetensors');
}

// ---- a tiny Llama skeleton --------------------------------------------------------------------------------

interface LlamaShape {
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly vocab: number;
}

const PROJECTIONS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;

/** Every linear module of the decoder layers with its [out, in]. */
function linears(shape: LlamaShape): { name: string; out: number; inp: number }[] {
  const result: { name: string; out: number; inp: number }[] = [];
  for (let l = 0; l < shape.layers; l++) {
    for (const p of PROJECTIONS) {
      const [out, inp] = p === 'mlp.down_proj' ? [shape.hidden, shape.intermediate] : p.startsWith('mlp.') ? [shape.intermediate, shape.hidden] : [shape.hidden, shape.hidden];
      result.push({ name: `model.layers.${l}.${p}`, out, inp });
    }
  }
  return result;
}

/** Embeddings, norms and lm_head (not quantized) in `dtype` ('F16' or 'BF16'). */
function floatTensors(shape: LlamaShape, dtype: 'F16' | 'BF16'): RawTensor[] {
  const encode = (values: Float64Array) => Uint16Array.from(values, (v) => (dtype === 'BF16' ? bf16(v).bits : v === 0 ? 0 : Math.abs(v) < 2 ** -14 ? 0 : f16(Math.abs(v)).bits | (v < 0 ? 0x8000 : 0)));
  const ones = new Float64Array(shape.hidden).fill(1);
  const tensors: RawTensor[] = [{ name: 'model.embed_tokens.weight', dtype, shape: [shape.vocab, shape.hidden], data: encode(linearWeight(shape.vocab, shape.hidden, 901)) }];
  for (let l = 0; l < shape.layers; l++) {
    tensors.push({ name: `model.layers.${l}.input_layernorm.weight`, dtype, shape: [shape.hidden], data: encode(ones) });
    tensors.push({ name: `model.layers.${l}.post_attention_layernorm.weight`, dtype, shape: [shape.hidden], data: encode(ones) });
  }
  tensors.push({ name: 'model.norm.weight', dtype, shape: [shape.hidden], data: encode(ones) });
  tensors.push({ name: 'lm_head.weight', dtype, shape: [shape.vocab, shape.hidden], data: encode(linearWeight(shape.vocab, shape.hidden, 902)) });
  return tensors;
}

function llamaConfig(shape: LlamaShape, torchDtype: string, quantizationConfig: Record<string, unknown>): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: shape.hidden,
    intermediate_size: shape.intermediate,
    num_hidden_layers: shape.layers,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    vocab_size: shape.vocab,
    torch_dtype: torchDtype,
    quantization_config: quantizationConfig,
  };
}

/** One quantized layer as the fixture stored it, with its independent float64 readings. */
export interface StoredLayer {
  readonly module: string;
  /** The tensor holding the codes (what the Tensors table shows and the dequantized view reads). */
  readonly codesTensor: string;
  /** Logical weight [out, in]. */
  readonly shape: readonly [number, number];
  /** x̂ = (q − zero) · scale for every element, in [out, in] order. */
  dequantize(): Float64Array;
  /** The codes q as the codes view shows them (unpacked integers, or decoded FP8 values). */
  codes(): Float64Array;
  /** The codes tensor's elements as stored (the int32 words of packed layouts), as the "stored" view shows them. */
  stored(): Float64Array;
}

export interface QuantizedFixture {
  /** The safetensors file. */
  readonly file: string;
  readonly layers: readonly StoredLayer[];
}

// ---- GPTQ v1, 4-bit, act-order, asymmetric (docs/formats.md §5.2–5.5) --------------------------------------

/** AutoGPTQ layout: qweight [K/8, N] packed along the input dim, qzeros [G, N/8] storing zero − 1, f16 scales [G, N]. */
export function writeGptqFixture(dir: string): QuantizedFixture {
  const shape: LlamaShape = { hidden: 256, intermediate: 512, layers: 2, vocab: 64 };
  const groupSize = 64;
  const tensors: RawTensor[] = floatTensors(shape, 'F16');
  const layers: StoredLayer[] = [];
  linears(shape).forEach(({ name, out: N, inp: K }, index) => {
    const w = linearWeight(N, K, 100 + index);
    const G = K / groupSize;
    // Act-order: the columns are taken in a random order and grouped in that order.
    const { uniform } = random(500 + index);
    const perm = Array.from({ length: K }, (_, k) => k);
    for (let i = K - 1; i > 0; i--) {
      const j = Math.floor(uniform() * (i + 1));
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    const gIdx = new Int32Array(K);
    perm.forEach((k, i) => (gIdx[k] = Math.floor(i / groupSize)));
    const scales = new Float64Array(G * N);
    const scaleBits = new Uint16Array(G * N);
    const zeros = new Uint8Array(G * N);
    for (let g = 0; g < G; g++) {
      for (let n = 0; n < N; n++) {
        let lo = 0;
        let hi = 0;
        for (let k = 0; k < K; k++) {
          if (gIdx[k] !== g) continue;
          lo = Math.min(lo, w[n * K + k]!);
          hi = Math.max(hi, w[n * K + k]!);
        }
        const s = f16((hi - lo) / 15);
        scales[g * N + n] = s.value;
        scaleBits[g * N + n] = s.bits;
        // v1 stores zero − 1, so it cannot hold a zero point of 0.
        zeros[g * N + n] = clamp(roundEven(-lo / s.value), 1, 15);
      }
    }
    const q = new Uint8Array(K * N); // [K, N]
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) {
        const c = gIdx[k]! * N + n;
        q[k * N + n] = clamp(roundEven(w[n * K + k]! / scales[c]!) + zeros[c]!, 0, 15);
      }
    }
    const qweight = new Int32Array((K / 8) * N);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) qweight[(k >> 3) * N + n]! |= q[k * N + n]! << ((k & 7) * 4);
    const qzeros = new Int32Array(G * (N / 8));
    for (let g = 0; g < G; g++) for (let n = 0; n < N; n++) qzeros[g * (N / 8) + (n >> 3)]! |= ((zeros[g * N + n]! - 1) & 15) << ((n & 7) * 4);
    tensors.push(
      { name: `${name}.qweight`, dtype: 'I32', shape: [K / 8, N], data: qweight },
      { name: `${name}.qzeros`, dtype: 'I32', shape: [G, N / 8], data: qzeros },
      { name: `${name}.scales`, dtype: 'F16', shape: [G, N], data: scaleBits },
      { name: `${name}.g_idx`, dtype: 'I32', shape: [K], data: gIdx },
    );
    layers.push({
      module: name,
      codesTensor: `${name}.qweight`,
      shape: [N, K],
      // W[n, k] = scales[g_idx[k], n] · (q[k, n] − z[g_idx[k], n])
      dequantize: () => Float64Array.from({ length: N * K }, (_, i) => {
        const [n, k] = [Math.floor(i / K), i % K];
        const c = gIdx[k]! * N + n;
        return scales[c]! * (q[k * N + n]! - zeros[c]!);
      }),
      codes: () => Float64Array.from({ length: N * K }, (_, i) => q[(i % K) * N + Math.floor(i / K)]!),
      stored: () => Float64Array.from(qweight),
    });
  });
  const config = llamaConfig(shape, 'float16', { quant_method: 'gptq', bits: 4, group_size: groupSize, desc_act: true, sym: false, static_groups: false, true_sequential: true, damp_percent: 0.01, checkpoint_format: 'gptq' });
  return { file: writeCheckpointFolder(dir, tensors, config), layers };
}

// ---- compressed-tensors pack-quantized INT4, asymmetric groups (docs/formats.md §3.5–3.7) -----------------

/** weight_packed [out, in/8] (q + 8, LSB first), bf16 weight_scale [out, G], weight_zero_point packed along dim 0. */
export function writePackQuantizedFixture(dir: string): QuantizedFixture {
  const shape: LlamaShape = { hidden: 128, intermediate: 256, layers: 1, vocab: 64 };
  const groupSize = 32;
  const tensors: RawTensor[] = floatTensors(shape, 'BF16');
  const layers: StoredLayer[] = [];
  linears(shape).forEach(({ name, out: rows, inp: cols }, index) => {
    const w = linearWeight(rows, cols, 200 + index);
    const G = cols / groupSize;
    const scales = new Float64Array(rows * G);
    const scaleBits = new Uint16Array(rows * G);
    const zp = new Int8Array(rows * G);
    const q = new Int8Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < G; g++) {
        let lo = 0;
        let hi = 0;
        for (let c = g * groupSize; c < (g + 1) * groupSize; c++) {
          lo = Math.min(lo, w[r * cols + c]!);
          hi = Math.max(hi, w[r * cols + c]!);
        }
        const s = bf16((hi - lo) / 15);
        scales[r * G + g] = s.value;
        scaleBits[r * G + g] = s.bits;
        zp[r * G + g] = clamp(roundEven(-8 - lo / s.value), -8, 7);
        for (let c = g * groupSize; c < (g + 1) * groupSize; c++) q[r * cols + c] = clamp(roundEven(w[r * cols + c]! / s.value + zp[r * G + g]!), -8, 7);
      }
    }
    const packed = new Int32Array(rows * (cols / 8));
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) packed[r * (cols / 8) + (c >> 3)]! |= (q[r * cols + c]! + 8) << ((c & 7) * 4);
    const packedZp = new Int32Array(Math.ceil(rows / 8) * G);
    for (let r = 0; r < rows; r++) for (let g = 0; g < G; g++) packedZp[(r >> 3) * G + g]! |= (zp[r * G + g]! + 8) << ((r & 7) * 4);
    tensors.push(
      { name: `${name}.weight_packed`, dtype: 'I32', shape: [rows, cols / 8], data: packed },
      { name: `${name}.weight_scale`, dtype: 'BF16', shape: [rows, G], data: scaleBits },
      { name: `${name}.weight_zero_point`, dtype: 'I32', shape: [Math.ceil(rows / 8), G], data: packedZp },
      { name: `${name}.weight_shape`, dtype: 'I64', shape: [2], data: new BigInt64Array([BigInt(rows), BigInt(cols)]) },
    );
    layers.push({
      module: name,
      codesTensor: `${name}.weight_packed`,
      shape: [rows, cols],
      dequantize: () => Float64Array.from(q, (v, i) => {
        const k = Math.floor(i / cols) * G + Math.floor((i % cols) / groupSize);
        return (v - zp[k]!) * scales[k]!;
      }),
      codes: () => Float64Array.from(q),
      stored: () => Float64Array.from(packed),
    });
  });
  const config = llamaConfig(shape, 'bfloat16', {
    quant_method: 'compressed-tensors',
    format: 'pack-quantized',
    quantization_status: 'compressed',
    config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: groupSize, dynamic: false, observer: 'minmax' }, input_activations: null, output_activations: null } },
    ignore: ['lm_head'],
  });
  return { file: writeCheckpointFolder(dir, tensors, config), layers };
}

// ---- AutoFP8, per-tensor FP8 E4M3 with static input scales (docs/formats.md §6) ----------------------------

/** weight F8_E4M3 [out, in], weight_scale = amax / 448 (F32 scalar), input_scale (F32 scalar). */
export function writeAutoFp8Fixture(dir: string): QuantizedFixture {
  const shape: LlamaShape = { hidden: 128, intermediate: 256, layers: 1, vocab: 64 };
  const tensors: RawTensor[] = floatTensors(shape, 'BF16');
  const layers: StoredLayer[] = [];
  linears(shape).forEach(({ name, out, inp }, index) => {
    const w = linearWeight(out, inp, 300 + index);
    const amax = Math.max(1e-12, ...Array.from(w, Math.abs));
    const scale = Math.fround(amax / 448);
    const codes = Uint8Array.from(w, (v) => e4m3Code(v / scale));
    tensors.push(
      { name: `${name}.weight`, dtype: 'F8_E4M3', shape: [out, inp], data: codes },
      { name: `${name}.weight_scale`, dtype: 'F32', shape: [], data: new Float32Array([scale]) },
      { name: `${name}.input_scale`, dtype: 'F32', shape: [], data: new Float32Array([0.05]) },
    );
    layers.push({ module: name, codesTensor: `${name}.weight`, shape: [out, inp], dequantize: () => Float64Array.from(codes, (c) => e4m3Value(c) * scale), codes: () => Float64Array.from(codes, e4m3Value), stored: () => Float64Array.from(codes, e4m3Value) });
  });
  const config = llamaConfig(shape, 'bfloat16', { quant_method: 'fp8', activation_scheme: 'static', ignored_layers: ['lm_head'] });
  return { file: writeCheckpointFolder(dir, tensors, config), layers };
}

// ---- compressed-tensors int-quantized INT8 per channel, dynamic per-token activations (W8A8) ---------------

/** weight I8 [out, in], bf16 weight_scale [out, 1] = amax_row / 127.5. */
export function writeInt8ChannelFixture(dir: string): QuantizedFixture {
  const shape: LlamaShape = { hidden: 128, intermediate: 256, layers: 1, vocab: 64 };
  const tensors: RawTensor[] = floatTensors(shape, 'BF16');
  const layers: StoredLayer[] = [];
  linears(shape).forEach(({ name, out, inp }, index) => {
    const w = linearWeight(out, inp, 400 + index);
    const scales = new Float64Array(out);
    const scaleBits = new Uint16Array(out);
    const q = new Int8Array(out * inp);
    for (let r = 0; r < out; r++) {
      let amax = 0;
      for (let c = 0; c < inp; c++) amax = Math.max(amax, Math.abs(w[r * inp + c]!));
      const s = bf16(amax / 127.5);
      scales[r] = s.value;
      scaleBits[r] = s.bits;
      for (let c = 0; c < inp; c++) q[r * inp + c] = clamp(roundEven(w[r * inp + c]! / s.value), -128, 127);
    }
    tensors.push({ name: `${name}.weight`, dtype: 'I8', shape: [out, inp], data: q }, { name: `${name}.weight_scale`, dtype: 'BF16', shape: [out, 1], data: scaleBits });
    layers.push({ module: name, codesTensor: `${name}.weight`, shape: [out, inp], dequantize: () => Float64Array.from(q, (v, i) => v * scales[Math.floor(i / inp)]!), codes: () => Float64Array.from(q), stored: () => Float64Array.from(q) });
  });
  const config = llamaConfig(shape, 'bfloat16', {
    quant_method: 'compressed-tensors',
    format: 'int-quantized',
    quantization_status: 'compressed',
    config_groups: {
      group_0: {
        targets: ['Linear'],
        weights: { num_bits: 8, type: 'int', symmetric: true, strategy: 'channel', dynamic: false, observer: 'minmax' },
        input_activations: { num_bits: 8, type: 'int', symmetric: true, strategy: 'token', dynamic: true, observer: null },
        output_activations: null,
      },
    },
    ignore: ['lm_head'],
  });
  return { file: writeCheckpointFolder(dir, tensors, config), layers };
}
