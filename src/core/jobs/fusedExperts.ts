/**
 * Float fused experts quantized the way llm-compressor quantizes them (docs/formats.md §3.14): each layer's
 * `mlp.experts.gate_up_proj` / `down_proj` 3-D tensors are "linearized" into one Linear per expert and
 * projection, `mlp.experts.E.gate_proj|up_proj|down_proj` with [out, in] weights, and those are quantized and
 * saved as ordinary per-expert linears, which vLLM's fused-MoE loaders map into its w13/w2 parameters.
 *
 * Two layouts (transformers' `use_experts_implementation` flags):
 * - gpt-oss (`is_transposed`, gate and up interleaved): gate_up_proj [E, hidden, 2·inter] with gate in the
 *   even and up in the odd columns, down_proj [E, inter, hidden], biases `gate_up_proj_bias` [E, 2·inter]
 *   (interleaved the same way) and `down_proj_bias` [E, hidden];
 * - transformers 5 fused Qwen3-MoE / Mixtral / Qwen2-MoE (not transposed, concatenated): gate_up_proj
 *   [E, 2·inter, hidden] with gate the first and up the second half of the rows, down_proj [E, hidden, inter].
 *
 * Memory: a slice reader holds at most one expert's slice of one fused tensor (the transposed layout is read
 * an expert at a time and its projections picked out of it; the concatenated one row block by row block).
 */
import { decodeToFloat32, encodeFromFloat32 } from '../dtypes/convert';
import { bytesPerElement, type DType } from '../dtypes/dtype';
import type { CheckpointTensor } from '../safetensors/checkpoint';
import type { TensorSpec } from '../safetensors/writer';
import type { LinearModule } from '../checkpoint/scheme';
import { fusedExpertModules, textConfigOf } from '../checkpoint/moe';

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

/** What one fused tensor becomes in the output, in order: per-expert weights (quantized or not) and biases. */
export type FusedOutput = { readonly kind: 'weight'; readonly module: string; readonly slice: FusedExpertSlice } | { readonly kind: 'bias'; readonly spec: TensorSpec; readonly slice: FusedBiasSlice };

export interface FusedExpertsPlan {
  /** The per-expert linears, as the quantize job's layer loop takes modules. */
  readonly modules: readonly { readonly name: string; readonly state: 'unquantized'; readonly observed: { readonly shape: readonly [number, number] }; readonly slice: FusedExpertSlice }[];
  /** Fused tensor name → what it becomes, in output order. */
  readonly outputs: ReadonlyMap<string, readonly FusedOutput[]>;
  /** The container (`model.layers.0.mlp.experts`) of each fused tensor, to keep a container fused when none of its linears is quantized. */
  readonly containerOf: ReadonlyMap<string, string>;
}

/** The fused layout a config implies: gpt-oss's own, else transformers 5's concatenated one. */
export function fusedLayoutOf(config: Record<string, unknown> | undefined): FusedLayout {
  const text = textConfigOf(config);
  return text?.model_type === 'gpt_oss' || config?.model_type === 'gpt_oss' ? 'gpt-oss' : 'concatenated';
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined);

/**
 * Plans the linearization of every float fused-experts module of the layer map. `problems` gets, per fused
 * tensor, why it cannot be linearized (shape against the layout and config.json).
 */
export function planFusedExperts(tensors: readonly CheckpointTensor[], config: Record<string, unknown> | undefined, modules: readonly LinearModule[], problems: string[]): FusedExpertsPlan {
  const layout = fusedLayoutOf(config);
  const hidden = num(textConfigOf(config)?.hidden_size);
  const fused = fusedExpertModules(tensors);
  const planned: FusedExpertsPlan['modules'][number][] = [];
  const outputs = new Map<string, FusedOutput[]>();
  const containerOf = new Map<string, string>();
  const floatModules = modules.filter((m) => m.moe?.role === 'fused-experts' && m.state === 'unquantized' && m.observed?.kind === 'float');
  for (const module of floatModules) {
    const parts = fused.get(module.name);
    const weight = parts?.get('weight');
    if (!parts || !weight || weight.shape.length !== 3) continue;
    const [experts, d1, d2] = weight.shape as [number, number, number];
    const isGateUp = module.name.endsWith('.gate_up_proj');
    const container = module.name.slice(0, module.name.lastIndexOf('.'));
    // [out, in] of each per-expert Linear, and the hidden size the layout puts where.
    const inDim = layout === 'gpt-oss' ? d1 : d2;
    const outDim = layout === 'gpt-oss' ? d2 : d1;
    const layoutText = layout === 'gpt-oss' ? (isGateUp ? '[experts, hidden, 2 × intermediate] (gpt-oss)' : '[experts, intermediate, hidden] (gpt-oss)') : isGateUp ? '[experts, 2 × intermediate, hidden] (transformers fused experts)' : '[experts, hidden, intermediate] (transformers fused experts)';
    const hiddenAt = isGateUp ? inDim : outDim;
    if (hidden !== undefined && hiddenAt !== hidden) {
      problems.push(`${weight.name}: shape [${weight.shape.join(', ')}] does not fit the fused-experts layout ${layoutText} with config.json's hidden_size ${hidden}, so its experts cannot be split into per-expert linears`);
      continue;
    }
    if (isGateUp && outDim % 2 !== 0) {
      problems.push(`${weight.name}: shape [${weight.shape.join(', ')}] has an odd gate_up width ${outDim}; a fused gate_up_proj holds gate and up of equal size (${layoutText})`);
      continue;
    }
    const projections: ExpertProjection[] = isGateUp ? ['gate_proj', 'up_proj'] : ['down_proj'];
    const rows = isGateUp ? outDim / 2 : outDim;
    const bias = parts.get('bias');
    if (bias && (bias.shape.length !== 2 || bias.shape[0] !== experts || bias.shape[1] !== outDim)) {
      problems.push(`${bias.name}: shape [${bias.shape.join(', ')}], expected [${experts}, ${outDim}] beside ${weight.name} [${weight.shape.join(', ')}]`);
      continue;
    }
    const weightOutputs: FusedOutput[] = [];
    const biasOutputs: FusedOutput[] = [];
    for (let e = 0; e < experts; e++) {
      for (const projection of projections) {
        const name = `${container}.${e}.${projection}`;
        const slice: FusedExpertSlice = { tensor: weight.name, layout, expert: e, projection, shape: [experts, d1, d2], dtype: weight.dtype, rows, cols: inDim };
        planned.push({ name, state: 'unquantized', observed: { shape: [rows, inDim] }, slice });
        weightOutputs.push({ kind: 'weight', module: name, slice });
        if (bias) biasOutputs.push({ kind: 'bias', spec: { name: `${name}.bias`, dtype: bias.dtype, shape: [rows] }, slice: { tensor: bias.name, expert: e, projection, layout, width: outDim, dtype: bias.dtype } });
      }
    }
    outputs.set(weight.name, weightOutputs);
    containerOf.set(weight.name, container);
    if (bias) {
      outputs.set(bias.name, biasOutputs);
      containerOf.set(bias.name, container);
    }
  }
  return { modules: planned, outputs, containerOf };
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
 * The fused tensors to linearize: those of every container (`…mlp.experts`) with at least one quantized
 * per-expert Linear (gate_up and down of a layer go together, so vLLM finds one layout per layer). A container
 * none of whose linears is quantized (all ignored) stays fused as it was; the log says so.
 */
export function linearizedFusedTensors(plan: FusedExpertsPlan, quantized: { has(weightName: string): boolean }, log: (line: string) => void): Map<string, readonly FusedOutput[]> {
  const active = new Set<string>();
  for (const [tensor, outputs] of plan.outputs) if (outputs.some((o) => o.kind === 'weight' && quantized.has(`${o.module}.weight`))) active.add(plan.containerOf.get(tensor)!);
  const kept = new Set([...plan.containerOf.values()].filter((c) => !active.has(c)));
  if (kept.size) log(`fused experts kept in high precision, as they were (no per-expert linear of theirs is quantized): ${[...kept].join(', ')}`);
  return new Map([...plan.outputs].filter(([tensor]) => active.has(plan.containerOf.get(tensor)!)));
}

/** Writes a per-expert Linear kept in high precision (its values in the fused tensor's dtype) or a per-expert bias. */
export async function writeFusedCopy(copy: { readonly name: string; readonly floatSlice?: FusedExpertSlice; readonly biasSlice?: FusedBiasSlice }, reader: FusedSliceReader, write: (name: string, bytes: Uint8Array) => Promise<void>, rowBlock: number, checkCancelled: () => void): Promise<void> {
  if (copy.biasSlice) return write(copy.name, await reader.bias(copy.biasSlice));
  const { rows, dtype } = copy.floatSlice!;
  for (let r0 = 0; r0 < rows; r0 += rowBlock) {
    checkCancelled();
    // Decoding BF16/F16/F32 to float32 and encoding it back is exact.
    await write(copy.name, encodeFromFloat32(dtype, await reader.rows(copy.floatSlice!, r0, Math.min(rows, r0 + rowBlock))));
  }
}

/** An output tensor of the quantize job: a layer's encoded tensor, a copy of an input tensor, or a fused slice. */
export type JobOutputSpec<L> = TensorSpec & { readonly source: string; readonly layer?: L; readonly floatSlice?: FusedExpertSlice; readonly biasSlice?: FusedBiasSlice };

/** The output tensors a linearized fused tensor becomes: each quantized expert's encoded set, the others' float weights, biases. */
export function linearizedSpecs<L extends { readonly outputs: readonly TensorSpec[] }>(outputs: readonly FusedOutput[], source: string, layerOf: (weightName: string) => L | undefined): JobOutputSpec<L>[] {
  return outputs.flatMap((o): JobOutputSpec<L>[] => {
    if (o.kind === 'bias') return [{ ...o.spec, source, biasSlice: o.slice }];
    const layer = layerOf(`${o.module}.weight`);
    if (layer) return layer.outputs.map((spec) => ({ ...spec, source, layer }));
    return [{ name: `${o.module}.weight`, dtype: o.slice.dtype, shape: [o.slice.rows, o.slice.cols], source, floatSlice: o.slice }];
  });
}
