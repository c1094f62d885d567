// Float64 references of what compressed-tensors writes, for the quantize tests: the safetensors bytes parsed
// here (own header reader), and each scheme's dequantization written from the upstream definitions
// (vllm-project/compressed-tensors @ac8e2ba):
//   - E2M1 values and nibble order: compressors/nvfp4/helpers.py (kE2M1ToFloat, unpack_fp4_from_uint8);
//   - NVFP4 dequantization e2m1 · (weight_scale / weight_global_scale): lifecycle/forward_helpers.py _dequantize;
//   - MX scales 2^(e − 127), e from round_to_power_2(amax): quantization/utils/mxfp_utils.py, compressors/mx_utils.py;
//   - INT4 pack-quantized: eight 4-bit values per int32, lowest bits first, offset by 8
//     (compressors/pack_quantized/helpers.py pack_to_int32), ŵ = q · weight_scale.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { e4m3Value } from './fp8Reference';

const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
export const e2m1 = (code: number) => (code & 8 ? -1 : 1) * E2M1[code & 7]!;
export const bf16 = (bits: number) => new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;

/** The checkpoint as bytes, parsed here: name → { dtype, shape, bytes }. */
export function readSafetensors(file: string): Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    out.set(name, { dtype: t.dtype, shape: t.shape, bytes: new Uint8Array(buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1])) });
  }
  return out;
}

/** Half the distance to the neighbouring grid values around |q|: the rounding bound of one element. */
export function fp4HalfGap(q: number): number {
  const a = Math.min(Math.abs(q), 6);
  for (let k = 1; k < E2M1.length; k++) if (a <= E2M1[k]!) return (E2M1[k]! - E2M1[k - 1]!) / 2;
  return 1;
}
export function e4m3HalfGap(q: number): number {
  const a = Math.abs(q);
  return a < 2 ** -6 ? 2 ** -10 : 2 ** (Math.floor(Math.log2(a)) - 4);
}


/** float64 dequantization of one module as the upstream definitions give it, and the rounding bound per element. */
export function dequantize(t: ReturnType<typeof readSafetensors>, module: string, scheme: string, rows: number, cols: number): { values: Float64Array; bound: (i: number, x: number) => number } {
  const values = new Float64Array(rows * cols);
  const scaleOf = new Float64Array(rows * cols);
  if (scheme === 'w4a16-rtn') {
    const packed = t.get(`${module}.weight_packed`)!;
    const sc = t.get(`${module}.weight_scale`)!;
    assert.equal(packed.dtype, 'I32');
    assert.deepEqual(packed.shape, [rows, Math.ceil(cols / 8)]);
    assert.equal(sc.dtype, 'BF16');
    assert.deepEqual(sc.shape, [rows, cols / 128]);
    const words = new Int32Array(packed.bytes.slice().buffer);
    const s16 = new Uint16Array(sc.bytes.slice().buffer);
    const wordsPerRow = packed.shape[1]!;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const q = ((words[r * wordsPerRow + (c >> 3)]! >>> (4 * (c & 7))) & 15) - 8;
      scaleOf[i] = bf16(s16[r * (cols / 128) + Math.floor(c / 128)]!);
      values[i] = q * scaleOf[i]!;
    }
    // Half a step, or the clamp at 7 (the scale is amax / 7.5: the top of the range rounds to 8 and clamps);
    // x / scale is a bf16 op (forward_helpers.py _quantize), so the quotient is first rounded to bf16 (2^-9 relative).
    return { values, bound: (i, x) => (Math.max(0.5 + Math.abs(x / scaleOf[i]!) * 2 ** -8, Math.abs(x / scaleOf[i]!) - 7) + 1e-6) * scaleOf[i]! };
  }
  if (scheme === 'fp8-block') {
    const w = t.get(`${module}.weight`)!;
    const sc = t.get(`${module}.weight_scale`)!;
    assert.equal(w.dtype, 'F8_E4M3');
    assert.equal(sc.dtype, 'BF16');
    assert.deepEqual(sc.shape, [Math.ceil(rows / 128), Math.ceil(cols / 128)]);
    const s16 = new Uint16Array(sc.bytes.buffer, sc.bytes.byteOffset, sc.bytes.length / 2);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      scaleOf[i] = bf16(s16[Math.floor(r / 128) * sc.shape[1]! + Math.floor(c / 128)]!);
      values[i] = e4m3Value(w.bytes[i]!) * scaleOf[i]!;
    }
    // x / scale is a bf16 op (forward_helpers.py _quantize on bf16 tensors): the quotient is rounded to bf16
    // (2^-9 relative at most) before the FP8 cast rounds it.
    return { values, bound: (i, x) => (e4m3HalfGap(x / scaleOf[i]!) + Math.abs(x / scaleOf[i]!) * 2 ** -8) * scaleOf[i]! };
  }
  const fp4 = scheme !== 'mxfp8';
  const gs = scheme.startsWith('nvfp4') ? 16 : 32;
  const codes = t.get(fp4 ? `${module}.weight_packed` : `${module}.weight`)!;
  const sc = t.get(`${module}.weight_scale`)!;
  assert.deepEqual(codes.shape, fp4 ? [rows, cols / 2] : [rows, cols]);
  assert.deepEqual(sc.shape, [rows, cols / gs]);
  let global = 1;
  if (gs === 16) {
    assert.equal(sc.dtype, 'F8_E4M3');
    const g = t.get(`${module}.weight_global_scale`)!;
    assert.equal(g.dtype, 'F32');
    global = new Float32Array(g.bytes.buffer, g.bytes.byteOffset, 1)[0]!;
  } else assert.equal(sc.dtype, 'U8');
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const i = r * cols + c;
    const cell = sc.bytes[r * (cols / gs) + Math.floor(c / gs)]!;
    scaleOf[i] = gs === 16 ? e4m3Value(cell) / global : 2 ** (cell - 127);
    const code = fp4 ? (c % 2 ? codes.bytes[i >> 1]! >> 4 : codes.bytes[i >> 1]! & 15) : codes.bytes[i]!;
    values[i] = (fp4 ? e2m1(code) : e4m3Value(code)) * scaleOf[i]!;
  }
  const max = fp4 ? 6 : 448;
  return {
    values,
    bound: (i, x) => {
      const q = x / scaleOf[i]!;
      // Beyond the grid the value clamps; otherwise half a grid step (float32 quotient: a little slack).
      const clampErr = Math.abs(q) > max ? (Math.abs(q) - max) * scaleOf[i]! : 0;
      return clampErr + (fp4 ? fp4HalfGap(q) : e4m3HalfGap(q)) * scaleOf[i]! * (1 + 1e-6);
    },
  };
}

export const DESCRIPTION: Record<string, string> = {
  'fp8-block': 'FP8 weights in 128×128 blocks, dynamic per-group activations',
  nvfp4a16: 'NVFP4 weights (W4A16), groups of 16 with FP8 scales and a global scale',
  mxfp4a16: 'MXFP4 weights, groups of 32 with E8M0 scales',
  mxfp8: 'MXFP8 weights and activations, groups of 32 with E8M0 scales',
  nvfp4: 'NVFP4 weights and activations, groups of 16 with FP8 scales and a global scale',
  'w4a16-rtn': 'INT4 weights, group 128, symmetric (weight-only)',
};

/**
 * Checks a written layer against the float weights it was quantized from: every dequantized element within
 * the scheme's rounding bound of the original. Returns the summed squared error and the layer's global
 * scale (NVFP4), for the callers' own checks.
 */
export function checkWrittenLayer(
  written: ReturnType<typeof readSafetensors>,
  module: string,
  scheme: string,
  weight: { readonly rows: number; readonly cols: number; readonly values: ArrayLike<number> },
): { errSq: number; globalScale?: number } {
  const { values, bound } = dequantize(written, module, scheme, weight.rows, weight.cols);
  let errSq = 0;
  for (let i = 0; i < values.length; i++) {
    const x = weight.values[i]!;
    const err = Math.abs(values[i]! - x);
    assert.ok(err <= bound(i, x) + 1e-30, `${module}[${i}]: ${x} → ${values[i]} (error ${err} > ${bound(i, x)})`);
    errSq += err * err;
  }
  const gs = written.get(`${module}.weight_global_scale`);
  return { errSq, ...(gs ? { globalScale: new Float32Array(gs.bytes.slice().buffer)[0]! } : {}) };
}

/** Upstream's MX exponent of a group amax (bf16): round_to_power_2, then 127 + log2 − offset, clamped. */
export function mxExponentReference(amax: number, offset: number): number {
  if (amax === 0) return 0;
  let k = Math.floor(Math.log2(amax));
  if (amax / 2 ** k >= 1.75) k++;
  return Math.min(255, Math.max(0, 127 + k - offset));
}

/** bf16 round-to-nearest-even of a float64 value (through float32, as torch rounds op results). */
export function bf16Round(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return bf16(((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff);
}

