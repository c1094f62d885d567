/**
 * The quantize job's microscale layers (NVFP4, MXFP4, MXFP8; docs/formats.md §3.13): the NVFP4 global scales,
 * shared by the layers vLLM fuses as llm-compressor shares them, and one layer written in row blocks with
 * quant/microscale.ts.
 */
import { encodeFromFloat32 } from '../dtypes/convert';
import type { QuantScheme } from '../quant/args';
import { needsInputStatistics } from '../quant/args';
import { MICROSCALE, MicroscaleVariant, absMax, nvfp4GlobalScale, quantizeMicroscale } from '../quant/microscale';
import { QuantizeError, ScaleDtype, roundToDtype } from '../quant/rtn';

/**
 * llm-compressor's FUSED_LAYER_NAMES (llmcompressor/observers/helpers.py): sibling layers of one parent that
 * vLLM runs as one fused GEMM, so their NVFP4 weight global scales are computed from their joint amax.
 */
export const FUSED_LAYER_NAMES: readonly (readonly string[])[] = [
  ['gate_proj', 'up_proj'],
  ['q_proj', 'k_proj', 'v_proj'],
  ['q_a_proj', 'kv_a_proj_with_mqa'],
  ['w1', 'w3'],
];

export interface MicroscalePlan {
  readonly module: string;
  readonly rows: number;
  readonly cols: number;
  readonly scheme: QuantScheme;
}

/** Reads rows [r0, r1) of a module's float weight as float32 (values of the weight's dtype). */
export type RowReader = (module: string, r0: number, r1: number) => Promise<Float32Array>;

const isTensorGroup = (scheme: QuantScheme | undefined) => scheme?.weights?.strategy === 'tensor_group';

/**
 * For every layer with a tensor_group (NVFP4) weight, the modules whose amax its global scale is computed
 * from: its fused siblings when the parent holds the whole set, else itself. `problems` gets the sets
 * llm-compressor refuses (a sibling not quantized the same way: "need all fused layers to have same quantization").
 */
export function globalScaleGroups(layers: ReadonlyMap<string, QuantScheme | undefined>, allModules: ReadonlySet<string>, problems: string[]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const [module, scheme] of layers) {
    if (!isTensorGroup(scheme) || groups.has(module)) continue;
    const dot = module.lastIndexOf('.');
    const parent = module.slice(0, dot);
    const leaf = module.slice(dot + 1);
    const set = FUSED_LAYER_NAMES.find((names) => names.includes(leaf) && names.every((n) => allModules.has(`${parent}.${n}`)));
    const members = set ? set.map((n) => `${parent}.${n}`) : [module];
    const odd = members.filter((m) => !isTensorGroup(layers.get(m)));
    if (odd.length) {
      problems.push(`${members.join(', ')}: vLLM fuses these layers and they share one NVFP4 global scale, so they must all get the same tensor_group quantization (${odd.join(', ')} do not; llm-compressor refuses this too)`);
      continue;
    }
    for (const m of members) groups.set(m, members);
  }
  return groups;
}

/** The F32 weight global scale of every tensor_group layer, from the joint amax of its group. */
export async function weightGlobalScales(groups: ReadonlyMap<string, readonly string[]>, plans: ReadonlyMap<string, MicroscalePlan>, dtypeOf: (module: string) => ScaleDtype, read: RowReader, rowBlock: (cols: number) => number): Promise<Map<string, number>> {
  const amaxOf = new Map<string, number>();
  for (const module of groups.keys()) {
    const plan = plans.get(module)!;
    let amax = 0;
    for (let r0 = 0; r0 < plan.rows; r0 += rowBlock(plan.cols)) {
      const r1 = Math.min(plan.rows, r0 + rowBlock(plan.cols));
      amax = Math.max(amax, absMax(await read(module, r0, r1), `${module}.weight rows ${r0}–${r1}`));
    }
    amaxOf.set(module, amax);
  }
  const scales = new Map<string, number>();
  for (const [module, members] of groups) {
    const amax = Math.max(...members.map((m) => amaxOf.get(m)!));
    scales.set(module, nvfp4GlobalScale(amax, dtypeOf(module)));
  }
  return scales;
}

/** NVFP4's input_global_scale from the calibration amax of the layer's input (activations in the model dtype). */
export function inputGlobalScale(inputAbsMax: number, dtype: ScaleDtype): number {
  return nvfp4GlobalScale(roundToDtype(dtype, inputAbsMax), dtype);
}

export interface MicroscaleWrite {
  readonly plan: MicroscalePlan;
  readonly variant: MicroscaleVariant;
  readonly dtype: ScaleDtype;
  readonly globalScale?: number;
  readonly inputAbsMax?: number;
  readonly rowBlock: number;
}

/** Quantizes and writes one layer's tensors in the order outputSpecs lists them. */
export async function writeMicroscaleLayer(job: MicroscaleWrite, read: RowReader, write: (name: string, bytes: Uint8Array) => Promise<void>, checkCancelled: () => void): Promise<void> {
  const { plan, variant, dtype } = job;
  const { module, rows, cols, scheme } = plan;
  const codesName = MICROSCALE[variant].bits === 4 ? `${module}.weight_packed` : `${module}.weight`;
  const scaleChunks: Uint8Array[] = [];
  for (let r0 = 0; r0 < rows; r0 += job.rowBlock) {
    checkCancelled();
    const r1 = Math.min(rows, r0 + job.rowBlock);
    let result;
    try {
      result = quantizeMicroscale(await read(module, r0, r1), r1 - r0, cols, variant, { computeDtype: dtype, ...(job.globalScale !== undefined ? { globalScale: job.globalScale } : {}) });
    } catch (error) {
      if (error instanceof QuantizeError) throw new QuantizeError(`${module}.weight: ${error.message}`);
      throw error;
    }
    await write(codesName, result.codes);
    scaleChunks.push(result.scales);
  }
  for (const chunk of scaleChunks) await write(`${module}.weight_scale`, chunk);
  if (variant === 'nvfp4') await write(`${module}.weight_global_scale`, encodeFromFloat32('F32', Float32Array.of(job.globalScale!)));
  const a = scheme.inputActivations;
  if (needsInputStatistics(a) && a!.strategy === 'tensor_group') {
    if (job.inputAbsMax === undefined) throw new QuantizeError(`${module}: no calibration input statistics (input absmax) for its input_global_scale`);
    await write(`${module}.input_global_scale`, encodeFromFloat32('F32', Float32Array.of(inputGlobalScale(job.inputAbsMax, dtype))));
  }
}
