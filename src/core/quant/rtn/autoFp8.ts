/** AutoFP8's per-tensor FP8 quantization (docs/formats.md §6), bit-exact with its torch code. */
import { E4M3_FORMAT, F16_FORMAT, encodeE4M3, encodeMiniF32Bits } from '../../dtypes/float';
import { SLOT_F, SLOT_I, tensorRange, valueOf16 } from './jsEngine';
import { checkShape, roundToDtype } from './params';
import { Fp8RtnResult, QuantizeError, ScaleDtype } from './types';

/**
 * AutoFP8's `per_tensor_quantize` (neuralmagic/AutoFP8 auto_fp8/quantize.py @505a7ed), bit-exact for a weight
 * held in `computeDtype` (the model dtype, default BF16):
 *   amax = max(|min|, |max|) (16 for an empty tensor)
 *   mult = 448 / amax.clamp(min=1e-12) — a Python float divided by a tensor, which torch evaluates as
 *          `amax.reciprocal() * 448` (torch/_tensor.py `__rdiv__`), i.e. two ops rounded to the model dtype
 *   q = e4m3(clamp(x · mult, ±448))   (x · mult in the model dtype; a multiplication, not a division)
 *   weight_scale = float32(1 / float32(mult))   (F32 scalar, shape [])
 * Dequantization q · weight_scale; the scale is close to, but usually not exactly, amax/448 (use
 * quantizeRtn with a float tensor scheme and scaleDtype F32 for round(amax/448)).
 */
export function quantizeAutoFp8(weight: Float32Array, rows: number, cols: number, options: { computeDtype?: ScaleDtype; out?: Uint8Array } = {}): Fp8RtnResult {
  checkShape(weight, rows, cols);
  const c = options.computeDtype ?? 'BF16';
  const n = rows * cols;
  let amax = 16;
  if (n > 0) {
    const [mn, mx] = tensorRange(false, weight, rows, cols);
    if (!(mn > -Infinity && mx < Infinity)) throw new QuantizeError('the weight holds ±Inf; cannot quantize');
    amax = -mn > mx ? -mn : mx;
  }
  // clamp(min=1e-12) compares in float32 and rounds the result to the tensor dtype.
  const tiny = Math.fround(1e-12);
  const clamped = roundToDtype(c, amax < tiny ? tiny : amax);
  const mult = roundToDtype(c, roundToDtype(c, 1 / clamped) * 448);
  if (!Number.isFinite(mult) || mult === 0) throw new QuantizeError(`448 / amax is not a finite non-zero ${c} value (amax ${amax})`);
  const q = options.out ? options.out.subarray(0, n) : new Uint8Array(n);
  if (q.length < n) throw new QuantizeError(`out holds ${q.length} elements, ${n} are needed`);
  const F = SLOT_F;
  const I = SLOT_I;
  const table = c === 'F32' ? undefined : autoFp8Table(c);
  for (let i = 0; i < n; i++) {
    F[0] = weight[i]! * mult;
    if (!table) q[i] = encodeMiniF32Bits(E4M3_FORMAT, I[0]!, F[0]!, true);
    else if (c === 'BF16') {
      const u = I[0]!;
      q[i] = table[(u + 0x7fff + ((u >>> 16) & 1)) >>> 16]!;
    } else q[i] = table[encodeMiniF32Bits(F16_FORMAT, I[0]!, F[0]!, false)]!;
  }
  const scale = new Float32Array([Math.fround(1 / mult)]);
  return {
    kind: 'fp8',
    rows,
    cols,
    args: { numBits: 8, type: 'float', symmetric: true, strategy: 'tensor', dynamic: false },
    scaleDtype: 'F32',
    computeDtype: c,
    scale,
    scaleShape: [],
    q,
  };
}

/** AutoFP8 adds no zero point, so −0 stays −0: code → e4m3(clamp(value, ±448)). */
const autoTables = new Map<string, Uint8Array>();
function autoFp8Table(dtype: 'BF16' | 'F16'): Uint8Array {
  let t = autoTables.get(dtype);
  if (!t) {
    t = new Uint8Array(65536);
    for (let c = 0; c < 65536; c++) {
      const v = valueOf16(dtype, c);
      t[c] = encodeE4M3(v < -448 ? -448 : v > 448 ? 448 : v, { saturate: true });
    }
    autoTables.set(dtype, t);
  }
  return t;
}
