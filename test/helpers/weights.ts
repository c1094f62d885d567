/**
 * Test weights: bf16 rounding written out in the tests (independent of src/), and heavy-tailed values like
 * trained checkpoints' (std ≈ 0.02 with outliers).
 */
import { rng } from './random';

/** x rounded to bf16 (ties to even), as a number. */
export function roundToBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = (u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) & 0xffff0000;
  return f[0]!;
}

/** float32 values rounded to bf16 (ties to even): the little-endian bytes, and the values they hold. */
export function toBf16(values: Float32Array): { bytes: Uint8Array; values: Float32Array } {
  const u32 = new Uint32Array(values.buffer.slice(0));
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = (u32[i]! + 0x7fff + ((u32[i]! >>> 16) & 1)) >>> 16;
  return { bytes: new Uint8Array(out.buffer), values: new Float32Array(new Uint32Array(Array.from(out, (h) => h << 16)).buffer) };
}

/** n heavy-tailed weights (0.02 · sign · √|tan(π(u − ½))|), reproducible from `seed`. */
export function heavyTailedWeights(seed: number, n: number): Float32Array {
  const next = rng(seed, { openInterval: true });
  return Float32Array.from({ length: n }, () => {
    const u = next();
    return 0.02 * Math.sqrt(Math.abs(Math.tan(Math.PI * (u - 0.5)))) * (u < 0.5 ? -1 : 1);
  });
}
