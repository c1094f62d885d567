/**
 * What the quantize job writes for each output layout, as data: the tensors of one Linear (compressed-tensors,
 * AutoGPTQ, AutoFP8), the quantization_config / quantize_config.json, and the recipe saved beside a preset's
 * output (docs/formats.md §3, §5, §6). quantize.ts re-exports these.
 */
import type { DType } from '../dtypes/dtype';
import type { TensorSpec } from '../safetensors/writer';
import type { QuantArgs, QuantScheme } from '../quant/args';
import type { ScaleDtype } from '../quant/rtn';
import { packedShape } from '../quant/pack';
import { MICROSCALE, MicroscaleVariant } from '../quant/microscale';
import { needsInputStatistics } from '../quant/args';
import { DEFAULT_BLOCK_SIZE, DEFAULT_DAMPENING_FRAC } from '../quant/gptq';
import { gptqShapes } from '../quant/gptqFormat';
import { QuantizeError } from '../quant/rtn';
import type { GptqJobSettings } from './quantize';

/** The model dtype scales are stored in (compressed-tensors creates scales in the weight's dtype). */
export function scaleDtypeOf(dtype: DType): ScaleDtype {
  return dtype === 'F16' ? 'F16' : dtype === 'F32' ? 'F32' : 'BF16';
}

function scaleShapeOf(w: QuantArgs, rows: number, cols: number): number[] {
  return w.strategy === 'tensor' ? [1] : w.strategy === 'channel' ? [rows, 1] : w.strategy === 'group' ? [rows, cols / w.groupSize!] : [Math.ceil(rows / w.blockStructure![0]), Math.ceil(cols / w.blockStructure![1])];
}

/** The microscale layout a compressed-tensors format names, if any. */
export function microscaleVariantOf(format: string): MicroscaleVariant | undefined {
  return format === 'nvfp4-pack-quantized' ? 'nvfp4' : format === 'mxfp4-pack-quantized' ? 'mxfp4' : format === 'mxfp8-quantized' ? 'mxfp8' : undefined;
}

/** Tensors compressed-tensors writes for one Linear (docs/formats.md §3.5), in the order the job writes them. */
export function outputSpecs(module: string, rows: number, cols: number, weightDtype: DType, scheme: QuantScheme, format: string): TensorSpec[] {
  const w = scheme.weights!;
  const specs: TensorSpec[] = [];
  const microscale = microscaleVariantOf(format);
  if (microscale) {
    // compressors/nvfp4, mxfp4 (packed E2M1, U8 [out, in/2]) and mxfp8 (F8_E4M3 [out, in]) (docs/formats.md §3.13).
    const { groupSize, bits } = MICROSCALE[microscale];
    const groups = cols / groupSize;
    if (bits === 4) specs.push({ name: `${module}.weight_packed`, dtype: 'U8', shape: [rows, cols / 2] });
    else specs.push({ name: `${module}.weight`, dtype: 'F8_E4M3', shape: [rows, cols] });
    specs.push({ name: `${module}.weight_scale`, dtype: microscale === 'nvfp4' ? 'F8_E4M3' : 'U8', shape: [rows, groups] });
    if (microscale === 'nvfp4') specs.push({ name: `${module}.weight_global_scale`, dtype: 'F32', shape: [1] });
    if (needsInputStatistics(scheme.inputActivations) && scheme.inputActivations!.strategy === 'tensor_group') specs.push({ name: `${module}.input_global_scale`, dtype: 'F32', shape: [1] });
    return specs;
  }
  const scaleDtype = scaleDtypeOf(weightDtype);
  const scaleShape = scaleShapeOf(w, rows, cols);
  if (format === 'pack-quantized') {
    specs.push({ name: `${module}.weight_packed`, dtype: 'I32', shape: packedShape(rows, cols, w.numBits, 1) });
    specs.push({ name: `${module}.weight_scale`, dtype: scaleDtype, shape: scaleShape });
    if (!w.symmetric && w.strategy !== 'tensor') specs.push({ name: `${module}.weight_zero_point`, dtype: 'I32', shape: packedShape(scaleShape[0]!, scaleShape[1]!, w.numBits, 0) });
    if (w.actorder === 'group') specs.push({ name: `${module}.weight_g_idx`, dtype: 'I32', shape: [cols] });
    specs.push({ name: `${module}.weight_shape`, dtype: 'I64', shape: [2] });
  } else {
    specs.push({ name: `${module}.weight`, dtype: w.type === 'float' ? 'F8_E4M3' : 'I8', shape: [rows, cols] });
    specs.push({ name: `${module}.weight_scale`, dtype: scaleDtype, shape: scaleShape });
    if (!w.symmetric) specs.push({ name: `${module}.weight_zero_point`, dtype: w.type === 'float' ? 'F8_E4M3' : 'I8', shape: scaleShape });
    if (w.actorder === 'group') specs.push({ name: `${module}.weight_g_idx`, dtype: 'I32', shape: [cols] });
  }
  const a = scheme.inputActivations;
  if (a && !a.dynamic) {
    specs.push({ name: `${module}.input_scale`, dtype: scaleDtype, shape: [1] });
    if (!a.symmetric) specs.push({ name: `${module}.input_zero_point`, dtype: 'I8', shape: [1] });
  }
  return specs;
}

/** AutoGPTQ tensors of one Linear (docs/formats.md §5.2): scales in F16 as AutoGPTQ stores them. */
export function gptqOutputSpecs(module: string, rows: number, cols: number, w: QuantArgs): TensorSpec[] {
  const shapes = gptqShapes(cols, rows, w.numBits, w.strategy === 'group' ? w.groupSize! : -1);
  return [
    { name: `${module}.qweight`, dtype: 'I32', shape: shapes.qweight },
    { name: `${module}.qzeros`, dtype: 'I32', shape: shapes.qzeros },
    { name: `${module}.scales`, dtype: 'F16', shape: shapes.scales },
    { name: `${module}.g_idx`, dtype: 'I32', shape: shapes.gIdx },
  ];
}

/** AutoFP8 tensors of one Linear (docs/formats.md §6): per-tensor F32 scalars. */
export function autoFp8OutputSpecs(module: string, rows: number, cols: number, staticInput: boolean): TensorSpec[] {
  return [
    { name: `${module}.weight`, dtype: 'F8_E4M3', shape: [rows, cols] },
    { name: `${module}.weight_scale`, dtype: 'F32', shape: [] },
    ...(staticInput ? [{ name: `${module}.input_scale`, dtype: 'F32' as const, shape: [] }] : []),
  ];
}

/** compressed-tensors' JSON form of QuantizationArgs (keys sorted, as the writer serialises them). */
export function serializeArgs(args: QuantArgs | undefined): Record<string, unknown> | null {
  if (!args) return null;
  const out: Record<string, unknown> = {
    // GPTQModifier's default ("static") is what llm-compressor writes for act-order by weight.
    actorder: args.actorder === 'weight' ? 'static' : (args.actorder ?? null),
    block_structure: args.blockStructure ?? null,
    dynamic: args.dynamic,
    group_size: args.groupSize ?? null,
    num_bits: args.numBits,
    observer: args.dynamic === true ? null : (args.observer ?? 'memoryless_minmax'),
    observer_kwargs: {},
    // A torch dtype serialises as str(dtype): "torch.float8_e4m3fn" (compressed_tensors/utils/type.py).
    scale_dtype: args.scaleDtype === undefined ? null : args.scaleDtype.startsWith('torch.') ? args.scaleDtype : `torch.${args.scaleDtype}`,
    strategy: args.strategy,
    symmetric: args.symmetric,
    type: args.type,
    zp_dtype: args.symmetric ? null : (args.zpDtype ?? (args.type === 'float' ? 'float8_e4m3fn' : 'int8')),
  };
  return out;
}

export interface ConfigGroup {
  readonly name: string;
  readonly scheme: QuantScheme;
  readonly format: string;
}

/** compressed-tensors quantization_config for one or more config groups (mixed formats → "mixed-precision"). */
export function quantizationConfig(groups: ConfigGroup | readonly ConfigGroup[], ignore: readonly string[]): Record<string, unknown> {
  const list = Array.isArray(groups) ? (groups as readonly ConfigGroup[]) : [groups as ConfigGroup];
  const formats = new Set(list.map((g) => g.format));
  const configGroups: Record<string, unknown> = {};
  for (const g of list) {
    configGroups[g.name] = {
      format: g.format,
      input_activations: serializeArgs(g.scheme.inputActivations),
      output_activations: null,
      targets: [...g.scheme.targets],
      weights: serializeArgs(g.scheme.weights),
    };
  }
  return {
    config_groups: configGroups,
    format: formats.size === 1 ? list[0]!.format : 'mixed-precision',
    global_compression_ratio: null,
    ignore: [...ignore],
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    sparsity_config: {},
    transform_config: {},
    version: '0.12.2',
  };
}

/** AutoGPTQ's quantize_config.json (BaseQuantizeConfig.to_dict), also config.json's quantization_config. */
export function gptqQuantizeConfig(w: QuantArgs, dampeningFrac: number): Record<string, unknown> {
  return {
    bits: w.numBits,
    group_size: w.strategy === 'group' ? w.groupSize! : -1,
    damp_percent: dampeningFrac,
    desc_act: w.actorder !== undefined,
    static_groups: w.actorder === 'weight',
    sym: w.symmetric,
    true_sequential: true,
    model_name_or_path: null,
    model_file_base_name: null,
    quant_method: 'gptq',
    checkpoint_format: 'gptq',
  };
}

/** AutoFP8's quantization_config. */
export function autoFp8Config(activationScheme: 'static' | 'dynamic', ignoredLayers: readonly string[]): Record<string, unknown> {
  return { quant_method: 'fp8', activation_scheme: activationScheme, ignored_layers: [...ignoredLayers] };
}

/** The recipe llm-compressor would save beside the checkpoint for a preset job. */
export function recipeYaml(preset: string, ignore: readonly string[], algorithm: 'rtn' | 'gptq', gptq?: Pick<GptqJobSettings, 'blockSize' | 'dampeningFrac'>): string {
  const modifier = algorithm === 'gptq' ? 'GPTQModifier' : 'QuantizationModifier';
  const extra = algorithm === 'gptq' ? `      actorder: static\n      block_size: ${gptq?.blockSize ?? DEFAULT_BLOCK_SIZE}\n      dampening_frac: ${gptq?.dampeningFrac ?? DEFAULT_DAMPENING_FRAC}\n` : '';
  return `default_stage:\n  default_modifiers:\n    ${modifier}:\n${extra}      targets: [Linear]\n      ignore: [${ignore.map((i) => JSON.stringify(i)).join(', ')}]\n      scheme: ${preset}\n`;
}

/** Refuses output layouts that cannot describe what the layers get, with the reason. */
export function checkFormatCombination(format: string, layers: readonly { readonly module: string; readonly scheme: QuantScheme }[], scheme: string | undefined): void {
  const what = scheme ? `scheme ${scheme}` : 'this recipe';
  if (format === 'gptq') {
    const first = layers[0]!.scheme.weights!;
    for (const l of layers) {
      const w = l.scheme.weights!;
      if (w.type !== 'int' || (w.numBits !== 4 && w.numBits !== 8)) throw new QuantizeError(`--format gptq writes AutoGPTQ INT4/INT8 weights; ${what} gives ${l.module} ${w.type.toUpperCase()}${w.numBits} weights (use --format ${w.type === 'float' ? 'autofp8 or compressed-tensors' : 'compressed-tensors'})`);
      if (l.scheme.inputActivations) throw new QuantizeError(`--format gptq is weight-only; ${what} also quantizes activations (${l.module}); use --format compressed-tensors`);
      if (w.strategy !== 'group' && w.strategy !== 'channel') throw new QuantizeError(`--format gptq needs group or channel weight scales; ${what} uses ${w.strategy} for ${l.module}`);
      if (w.numBits !== first.numBits || w.symmetric !== first.symmetric || w.groupSize !== first.groupSize || w.strategy !== first.strategy || w.actorder !== first.actorder) {
        throw new QuantizeError(`--format gptq has one quantize_config for the whole model; ${what} quantizes layers differently (${layers[0]!.module} vs ${l.module}); use --format compressed-tensors`);
      }
    }
  } else if (format === 'autofp8') {
    for (const l of layers) {
      const w = l.scheme.weights!;
      const a = l.scheme.inputActivations;
      if (w.type === 'float' && w.numBits === 8 && (w.strategy === 'group' || w.strategy === 'block' || w.strategy === 'tensor_group')) throw new QuantizeError(`--format autofp8 writes one FP8 scale per tensor; ${what} gives ${l.module} ${w.strategy} scales (use --format compressed-tensors)`);
      if (w.type !== 'float' || w.numBits !== 8) throw new QuantizeError(`--format autofp8 writes FP8 weights; ${what} gives ${l.module} ${w.type.toUpperCase()}${w.numBits} weights (use --format ${w.type === 'int' && w.numBits === 4 ? 'gptq or compressed-tensors' : 'compressed-tensors'})`);
      if (!a || a.type !== 'float' || a.numBits !== 8) throw new QuantizeError(`--format autofp8 needs FP8 activations (static or dynamic); ${what} leaves ${l.module}'s activations ${a ? `${a.type.toUpperCase()}${a.numBits}` : 'unquantized'}`);
      if (a.dynamic === false && a.strategy !== 'tensor') throw new QuantizeError(`--format autofp8 stores one static input scale per layer; ${what} asks for ${a.strategy} input scales`);
      if (l.scheme.inputActivations?.dynamic !== layers[0]!.scheme.inputActivations?.dynamic) throw new QuantizeError('--format autofp8 has one activation_scheme for the whole model; the layers mix static and dynamic activations');
    }
  }
}
