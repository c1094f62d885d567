// Float64 references for what the inspector shows, computed in the test from the checkpoints' bytes (read with
// the core's reader; decoded, quantized and measured here from the definitions), and readers for the texts
// the page prints (heatmap tooltips, fixed-point cells).
import * as assert from 'node:assert/strict';
import type { Checkpoint } from '../../../src/core/safetensors/checkpoint';

/** A tensor's bytes, refusing any dtype other than `dtype`. */
async function bytesOf(checkpoint: Checkpoint, name: string, dtype: string): Promise<Uint8Array> {
  const info = checkpoint.tensor(name);
  assert.equal(info.dtype, dtype, `${name} is ${info.dtype}, expected ${dtype}`);
  return checkpoint.readTensorBytes(name, { maxBytes: 256 * 1024 * 1024 });
}

/** A bf16 tensor's values: each 16-bit word is the top half of a float32. */
export async function readBf16(checkpoint: Checkpoint, name: string): Promise<Float64Array> {
  const bytes = await bytesOf(checkpoint, name, 'BF16');
  const words = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const bits = new Uint32Array(words.length);
  for (let i = 0; i < words.length; i++) bits[i] = words[i]! << 16;
  return Float64Array.from(new Float32Array(bits.buffer));
}

export async function readInt8(checkpoint: Checkpoint, name: string): Promise<Int8Array> {
  const bytes = await bytesOf(checkpoint, name, 'I8');
  return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** 10·log10(‖w‖² / ‖w − ŵ‖²), the sums in float64. */
export function sqnrDb(reference: Float64Array, approximation: (i: number) => number): number {
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    const w = reference[i]!;
    const e = w - approximation(i);
    signal += w * w;
    noise += e * e;
  }
  return 10 * Math.log10(signal / noise);
}

/** SQNR of an INT8-per-channel layer of `quantized` (codes × the row's bf16 scale) against `original`'s bf16 weight. */
export async function int8ChannelSqnr(quantized: Checkpoint, original: Checkpoint, module: string): Promise<number> {
  const [rows, cols] = original.tensor(`${module}.weight`).shape as [number, number];
  const w = await readBf16(original, `${module}.weight`);
  const q = await readInt8(quantized, `${module}.weight`);
  const scale = await readBf16(quantized, `${module}.weight_scale`);
  assert.deepEqual([q.length, scale.length], [rows * cols, rows], `${module}: codes and scales of [${rows}, ${cols}]`);
  return sqnrDb(w, (i) => q[i]! * scale[Math.floor(i / cols)]!);
}

const bf16Bits = new Uint32Array(1);
const bf16Float = new Float32Array(bf16Bits.buffer);
/** `x` rounded to float32, then to bf16 (round to nearest even): torch's opmath result stored as bf16. */
function toBf16(x: number): number {
  bf16Float[0] = x;
  const bits = bf16Bits[0]!;
  bf16Bits[0] = (bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000;
  return bf16Float[0]!;
}

/** Round half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * SQNR of compressed-tensors' INT4 group-128 symmetric round-to-nearest of a bf16 weight [rows, cols]:
 * per group, scale = bf16(max(|min(x, 0)|, max(x, 0)) / 7.5) (bf16's eps 2^-7 when 0); q = clamp(round-half-even(
 * bf16(x / scale)), −8, 7); ŵ = q · scale. The quotient is rounded to bf16 before the integer, as torch's bf16
 * division does.
 */
export function int4Group128SymmetricSqnr(w: Float64Array, cols: number): number {
  const group = 128;
  assert.equal(cols % group, 0, `${cols} input features are not a multiple of ${group}`);
  const approx = new Float64Array(w.length);
  for (let g0 = 0; g0 < w.length; g0 += group) {
    let absMax = 0;
    for (let i = g0; i < g0 + group; i++) absMax = Math.max(absMax, Math.abs(w[i]!));
    const scale = absMax === 0 ? 2 ** -7 : toBf16(absMax / 7.5);
    for (let i = g0; i < g0 + group; i++) approx[i] = Math.min(7, Math.max(-8, roundHalfEven(toBf16(w[i]! / scale)))) * scale;
  }
  return sqnrDb(w, (i) => approx[i]!);
}

/** The number after the last ': ' of a heatmap tooltip ("layer 0 q: 1.23e-3", "layer 2 down: SQNR 31.25 dB"). */
export function tooltipNumber(text: string): number {
  const value = Number(/: (?:SQNR )?(\S+)(?: dB)?$/.exec(text)?.[1]);
  assert.ok(Number.isFinite(value), `no number in the tooltip ${JSON.stringify(text)}`);
  return value;
}

/** The median of numbers (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
