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
 * The slices are read by checkpoint/fusedSlices.ts, one expert slice of one fused tensor at a time.
 */
import { encodeFromFloat32 } from '../dtypes/convert';
import type { CheckpointTensor } from '../safetensors/checkpoint';
import type { TensorSpec } from '../safetensors/writer';
import type { LinearModule } from '../checkpoint/scheme';
import { fusedExpertModules, textConfigOf } from '../checkpoint/moe';
import { ExpertProjection, FusedBiasSlice, FusedExpertSlice, FusedSliceReader, fusedLayoutOf } from '../checkpoint/fusedSlices';

export { FusedSliceReader, type FusedExpertSlice } from '../checkpoint/fusedSlices';

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
