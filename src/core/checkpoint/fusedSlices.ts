/**
 * Per-expert linears inside fused mixture-of-experts tensors (docs/formats.md §3.14): which layout a config
 * implies, where one expert's projection lies in a fused tensor, and reading its rows as an [out, in] matrix.
 * The quantize job linearizes float fused experts with it (jobs/fusedExperts.ts), the error comparison reads
 * the original's slice of each expert with it (inspect/fusedError.ts).
 *
 * Memory: the reader holds at most one expert's slice of one fused tensor (the transposed gpt-oss layout is
 * read an expert at a time and its projections picked out of it; the concatenated one row block by row block).
 */
import { decodeToFloat32 } from '../dtypes/convert';
import { bytesPerElement, type DType } from '../dtypes/dtype';
import { textConfigOf } from './moe';

export type FusedLayout = 'gpt-oss' | 'concatenated';
export type ExpertProjection = 'gate_proj' | 'up_proj' | 'down_proj';

/** One expert's projection inside a fused tensor, as an [out, in] matrix. */
export interface FusedExpertSlice {
  /** The fused tensor (`model.layers.0.mlp.experts.gate_up_proj`). */
  readonly tensor: string;
  readonly layout: FusedLayout;
  readonly expert: number;
  readonly projection: ExpertProjection;
  /** The fused tensor's shape [experts, d1, d2] and dtype. */
  readonly shape: readonly [number, number, number];
  readonly dtype: DType;
  /** The per-expert Linear's [out, in]. */
  readonly rows: number;
  readonly cols: number;
}

/** A bias of one per-expert Linear, sliced out of a fused bias tensor. */
export interface FusedBiasSlice {
  readonly tensor: string;
  readonly expert: number;
  readonly projection: ExpertProjection;
  readonly layout: FusedLayout;
  /** Elements per expert in the fused bias ([E, n]). */
  readonly width: number;
  readonly dtype: DType;
}

/** The fused layout a config implies: gpt-oss's own, else transformers 5's concatenated one. */
export function fusedLayoutOf(config: Record<string, unknown> | undefined): FusedLayout {
  const text = textConfigOf(config);
  return text?.model_type === 'gpt_oss' || config?.model_type === 'gpt_oss' ? 'gpt-oss' : 'concatenated';
}

/** Where a projection's [out, in] element (r, c) lies in the expert's slice [d1, d2] of the fused tensor. */
function sliceIndex(slice: FusedExpertSlice, r: number, c: number): number {
  const d2 = slice.shape[2];
  if (slice.layout === 'gpt-oss') {
    // [in, out]: transposed; gate_up's gate is column 2r, up column 2r + 1.
    const col = slice.projection === 'gate_proj' ? 2 * r : slice.projection === 'up_proj' ? 2 * r + 1 : r;
    return c * d2 + col;
  }
  // [out, in]: gate is rows [0, inter), up rows [inter, 2·inter).
  return (slice.projection === 'up_proj' ? slice.rows + r : r) * d2 + c;
}

export type TensorRangeReader = (name: string, start: number, end: number) => Promise<Uint8Array>;

/**
 * Rows of per-expert linears read out of fused tensors. The transposed (gpt-oss) layout has no contiguous rows,
 * so the expert's whole slice is read once and kept until another expert's is needed: one expert slice of
 * one fused tensor at a time.
 */
export class FusedSliceReader {
  private held?: { readonly key: string; readonly values: Float32Array };

  constructor(private readonly read: TensorRangeReader) {}

  /** Rows [r0, r1) of the slice's [out, in] matrix as float32 (the fused tensor's values, exactly). */
  async rows(slice: FusedExpertSlice, r0: number, r1: number): Promise<Float32Array> {
    const [, d1, d2] = slice.shape;
    const bpe = bytesPerElement(slice.dtype)!;
    const expertBytes = d1 * d2 * bpe;
    if (slice.layout === 'concatenated') {
      const first = slice.projection === 'up_proj' ? slice.rows + r0 : r0;
      const start = slice.expert * expertBytes + first * d2 * bpe;
      return decodeToFloat32(slice.dtype, await this.read(slice.tensor, start, start + (r1 - r0) * d2 * bpe));
    }
    const key = `${slice.tensor}\u0000${slice.expert}`;
    if (this.held?.key !== key) {
      this.held = undefined;
      const bytes = await this.read(slice.tensor, slice.expert * expertBytes, (slice.expert + 1) * expertBytes);
      this.held = { key, values: decodeToFloat32(slice.dtype, bytes) };
    }
    const values = this.held.values;
    const out = new Float32Array((r1 - r0) * slice.cols);
    for (let r = r0; r < r1; r++) {
      const o = (r - r0) * slice.cols;
      for (let c = 0; c < slice.cols; c++) out[o + c] = values[sliceIndex(slice, r, c)]!;
    }
    return out;
  }

  /** The bytes of one per-expert bias, copied element by element (no decoding: the values stay bit-exact). */
  async bias(slice: FusedBiasSlice): Promise<Uint8Array> {
    const bpe = bytesPerElement(slice.dtype)!;
    const row = await this.read(slice.tensor, slice.expert * slice.width * bpe, (slice.expert + 1) * slice.width * bpe);
    const n = slice.projection === 'down_proj' ? slice.width : slice.width / 2;
    const out = new Uint8Array(n * bpe);
    for (let i = 0; i < n; i++) {
      const from = slice.projection === 'down_proj' ? i : slice.layout === 'gpt-oss' ? 2 * i + (slice.projection === 'up_proj' ? 1 : 0) : i + (slice.projection === 'up_proj' ? n : 0);
      out.set(row.subarray(from * bpe, (from + 1) * bpe), i * bpe);
    }
    return out;
  }
}

/**
 * The slice of expert `expert`'s `projection` in a fused float tensor [E, d1, d2] (`gate_up_proj` holds
 * gate_proj and up_proj, `down_proj` down_proj); undefined when the shape cannot hold it.
 */
export function expertSliceOf(tensor: { readonly name: string; readonly dtype: DType; readonly shape: readonly number[] }, layout: FusedLayout, expert: number, projection: ExpertProjection): FusedExpertSlice | undefined {
  if (tensor.shape.length !== 3) return undefined;
  const [experts, d1, d2] = tensor.shape as [number, number, number];
  const gateUp = projection !== 'down_proj';
  if (expert >= experts || gateUp !== tensor.name.endsWith('.gate_up_proj')) return undefined;
  const inDim = layout === 'gpt-oss' ? d1 : d2;
  const outDim = layout === 'gpt-oss' ? d2 : d1;
  if (gateUp && outDim % 2 !== 0) return undefined;
  return { tensor: tensor.name, layout, expert, projection, shape: [experts, d1, d2], dtype: tensor.dtype, rows: gateUp ? outDim / 2 : outDim, cols: inDim };
}
