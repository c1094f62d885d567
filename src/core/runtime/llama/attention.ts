/**
 * Self-attention of a decoder block, in one of two forms (docs/runtime.md §7):
 *
 * - 'gqa': one com.microsoft.GroupQueryAttention node (rotary inside, do_rotary=1). The CPU and CUDA graphs
 *   use it: one fused kernel, and CUDA's is the only fp16 attention there.
 * - 'matmul': the same arithmetic from plain ONNX ops, for onnxruntime's WebGPU provider, whose
 *   GroupQueryAttention kernel is wrong for 32 or more new tokens in one run (a whole prompt, a calibration
 *   sequence). Rotary embedding as x·cos + rotate_half(x)·sin with the graph's float64-computed cos/sin
 *   caches, the new keys and values appended to the cache (Concat), Q·Kᵀ/√d with the query heads of a KV
 *   head grouped in their own axis so that the KV heads are broadcast rather than copied, a causal mask that
 *   starts at the cache's length plus the attention mask's padding, Softmax, and the product with V.
 *
 * Both read the new q/k/v as [batch, sequence, heads·head_dim] and return the attention output in the same
 * layout plus the present key/value cache [batch, kv_heads, total, head_dim] (keys after rotary, as
 * GroupQueryAttention stores them), so the rest of the block and the graph's I/O do not depend on the form.
 */
import { DataType, GraphBuilder } from '../onnx/builder';
import { encodeFromFloat32 } from '../../dtypes/convert';
import type { GraphTarget } from './linear';

export type AttentionForm = 'gqa' | 'matmul';

/** The attention form a provider's graph gets: plain ops on WebGPU (its fused kernel is wrong for 32+ tokens). */
export function attentionFormFor(target: GraphTarget): AttentionForm {
  return target === 'webgpu' ? 'matmul' : 'gqa';
}

/** Per-graph inputs of attention, computed once and shared by every block. */
export interface AttentionInputs {
  readonly form: AttentionForm;
  readonly floatType: DataType.FLOAT | DataType.FLOAT16;
  readonly cos: string;
  readonly sin: string;
  /** 'gqa': the per-sequence total lengths minus one, int32 [batch]. */
  readonly seqlensK?: string;
  /** 'gqa': the total sequence length, int32 scalar. */
  readonly totalSequenceLength?: string;
  /** 'matmul': rows of the cos/sin caches for the new tokens, [sequence, 1, head_dim/2] each. */
  readonly cosRows?: string;
  readonly sinRows?: string;
  /** 'matmul': 0 where a query may attend to a key, a large negative value elsewhere, [batch, 1, 1, sequence, total]. */
  readonly bias?: string;
}

export interface AttentionShape {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

/**
 * Masked scores get this added: far below any real score, yet finite, so that a row with every key masked
 * (a padding row of a calibration batch, which the statistics ignore) gives a uniform Softmax, never NaN.
 */
const MASKED = -1e30;

/**
 * The attention inputs of a graph whose attention mask is `mask` [batch, total] int64 (1 = a real token) and
 * whose new tokens are `hidden` [batch, sequence, …]: total = cache length + sequence (the full decoder) or
 * total = sequence (a calibration block graph without a cache).
 */
export function attentionInputs(g: GraphBuilder, form: AttentionForm, mask: string, hidden: string, cache: { cos: string; sin: string }, floatType: DataType.FLOAT | DataType.FLOAT16): AttentionInputs {
  const scalarIndex = (i: number) => g.constant(`index_${i}`, DataType.INT64, [], BigInt64Array.of(BigInt(i)));
  const total = g.op('Gather', [g.op('Shape', [mask]), scalarIndex(1)], { axis: 0 });
  if (form === 'gqa') {
    const lengths = g.op('ReduceSum', [mask, g.int64s('axes', [1])], { keepdims: 0 });
    const seqlensK = g.op('Cast', [g.op('Sub', [lengths, g.int64s('one', [1])])], { to: DataType.INT32 });
    return { form, floatType, ...cache, seqlensK, totalSequenceLength: g.op('Cast', [total], { to: DataType.INT32 }) };
  }
  const sequence = g.op('Gather', [g.op('Shape', [hidden]), scalarIndex(1)], { axis: 0 });
  const past = g.op('Sub', [total, sequence]);
  const one = g.constant('one_scalar', DataType.INT64, [], BigInt64Array.of(1n));
  const zero = g.constant('zero_scalar', DataType.INT64, [], BigInt64Array.of(0n));
  // Positions of the new tokens continue the cache's: past, past + 1, … (as GroupQueryAttention numbers them).
  const queryPositions = g.op('Range', [past, total, one]);
  const keyPositions = g.op('Range', [zero, total, one]);
  const rows = (table: string) => g.op('Unsqueeze', [g.op('Gather', [table, queryPositions], { axis: 0 }), g.int64s('axes', [1])]);
  // Key j is visible to query i when j ≤ past + i (causal) and token j is not padding.
  const causal = g.op('LessOrEqual', [g.op('Unsqueeze', [keyPositions, g.int64s('axes', [0])]), g.op('Unsqueeze', [queryPositions, g.int64s('axes', [1])])]);
  const notPadding = g.op('Unsqueeze', [g.op('Cast', [mask], { to: DataType.BOOL }), g.int64s('axes', [1, 2, 3])]);
  const zeroBias = g.constant('bias_visible', floatType, [], floatScalar(floatType, 0));
  const maskedBias = g.constant('bias_masked', floatType, [], floatScalar(floatType, floatType === DataType.FLOAT ? MASKED : -65504));
  const bias = g.op('Where', [causal, g.op('Where', [notPadding, zeroBias, maskedBias]), maskedBias]);
  return { form, floatType, ...cache, cosRows: rows(cache.cos), sinRows: rows(cache.sin), bias };
}

function floatScalar(type: DataType.FLOAT | DataType.FLOAT16, value: number): Float32Array | Uint8Array {
  return type === DataType.FLOAT ? Float32Array.of(value) : encodeFromFloat32('F16', Float32Array.of(value));
}

export interface AttentionResult {
  readonly output: string;
  readonly presentKey: string;
  readonly presentValue: string;
}

/**
 * Attention of block `layer` over q [batch, S, heads·d], k and v [batch, S, kv_heads·d] and the optional
 * cache, naming the present outputs `presentNames` (the graph's `present.N.key|value`) or fresh names.
 */
export function emitAttention(g: GraphBuilder, layer: number, shape: AttentionShape, inputs: AttentionInputs, q: string, k: string, v: string, past: { key: string; value: string } | undefined): AttentionResult {
  const presentNames = past ? [`present.${layer}.key`, `present.${layer}.value`] : [g.uniqueName(`present_key_${layer}`), g.uniqueName(`present_value_${layer}`)];
  if (inputs.form === 'gqa') {
    const [output, presentKey, presentValue] = g.node(
      'GroupQueryAttention',
      [q, k, v, past?.key ?? '', past?.value ?? '', inputs.seqlensK!, inputs.totalSequenceLength!, inputs.cos, inputs.sin],
      [g.uniqueName(`attn_${layer}`), presentNames[0]!, presentNames[1]!],
      { num_heads: shape.numHeads, kv_num_heads: shape.numKvHeads, do_rotary: 1, rotary_interleaved: 0 },
      'com.microsoft',
    );
    return { output: output!, presentKey: presentKey!, presentValue: presentValue! };
  }
  const { numHeads, numKvHeads, headDim: d } = shape;
  const group = numHeads / numKvHeads;
  // [batch, S, heads·d] → [batch, S, heads, d] (0 keeps the batch and sequence sizes).
  const split = (x: string, heads: number) => g.op('Reshape', [x, g.int64s('shape', [0, 0, heads, d])]);
  const qRot = rotary(g, split(q, numHeads), inputs, d);
  const kRot = rotary(g, split(k, numKvHeads), inputs, d);
  const headsFirst = (x: string) => g.op('Transpose', [x], { perm: [0, 2, 1, 3] });
  const kNew = headsFirst(kRot);
  const vNew = headsFirst(split(v, numKvHeads));
  const presentKey = past ? g.node('Concat', [past.key, kNew], [presentNames[0]!], { axis: 2 })[0]! : g.node('Identity', [kNew], [presentNames[0]!])[0]!;
  const presentValue = past ? g.node('Concat', [past.value, vNew], [presentNames[1]!], { axis: 2 })[0]! : g.node('Identity', [vNew], [presentNames[1]!])[0]!;
  // Query heads h = kv·group + j share KV head kv: q as [batch, kv, group, S, d] against k as [batch, kv, 1, T, d],
  // so MatMul broadcasts each KV head over its group instead of the graph repeating K and V `group` times.
  const scale = g.constant('attention_scale', inputs.floatType, [], floatScalar(inputs.floatType, 1 / Math.sqrt(d)));
  const qGrouped = g.op('Reshape', [headsFirst(g.op('Mul', [qRot, scale])), g.int64s('shape', [0, numKvHeads, group, -1, d])]);
  const kGrouped = g.op('Unsqueeze', [presentKey, g.int64s('axes', [2])]);
  const vGrouped = g.op('Unsqueeze', [presentValue, g.int64s('axes', [2])]);
  const scores = g.op('MatMul', [qGrouped, g.op('Transpose', [kGrouped], { perm: [0, 1, 2, 4, 3] })]);
  const weights = g.op('Softmax', [g.op('Add', [scores, inputs.bias!])], { axis: -1 });
  const context = g.op('MatMul', [weights, vGrouped]); // [batch, kv, group, S, d]
  const perToken = g.op('Transpose', [g.op('Reshape', [context, g.int64s('shape', [0, numHeads, -1, d])])], { perm: [0, 2, 1, 3] });
  const output = g.op('Reshape', [perToken, g.int64s('shape', [0, 0, numHeads * d])]);
  return { output, presentKey, presentValue };
}

/** Rotary embedding of x [batch, S, heads, d] (rotate_half, not interleaved: GroupQueryAttention's rotary_interleaved=0). */
function rotary(g: GraphBuilder, x: string, inputs: AttentionInputs, d: number): string {
  const half = d / 2;
  const axes = g.int64s('axes', [-1]);
  const x1 = g.op('Slice', [x, g.int64s('starts', [0]), g.int64s('ends', [half]), axes]);
  const x2 = g.op('Slice', [x, g.int64s('starts', [half]), g.int64s('ends', [d]), axes]);
  const cos = inputs.cosRows!;
  const sin = inputs.sinRows!;
  const first = g.op('Sub', [g.op('Mul', [x1, cos]), g.op('Mul', [x2, sin])]);
  const second = g.op('Add', [g.op('Mul', [x2, cos]), g.op('Mul', [x1, sin])]);
  return g.op('Concat', [first, second], { axis: -1 });
}
