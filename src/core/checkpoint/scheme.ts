/**
 * Scheme detection and the layer map: what a checkpoint's config.json declares (compressed-tensors, GPTQ,
 * AutoFP8 or nothing), what its tensors show for each linear module, and the reconciliation of the two —
 * each module quantized (by which scheme), ignored, unquantized, or expected but missing, with every
 * disagreement spelled out. Header-only: shapes and dtypes suffice.
 */
import type { DType } from '../dtypes/dtype';
import type { CheckpointTensor } from '../safetensors/checkpoint';
import { QuantArgs, QuantScheme, describeArgs, parseQuantScheme, presetScheme } from '../quant/args';
import { CompiledPattern, GroupTargets, PatternError, compileAutoFp8Ignore, compilePattern, resolveModule } from '../quant/match';
import { expectedModules } from './architecture';
import { LayerGroup, groupMoeModules } from './layerGroups';
import { MoeRole, describeMoe, fusedExpertCount, fusedExpertModules, moeRoleOf, observeFusedExperts } from './moe';

export type SchemeFamily = 'compressed-tensors' | 'gptq' | 'fp8' | 'mxfp4' | 'unquantized' | 'other';

/** How a module's weight is stored, read from tensor names, dtypes and shapes. */
export interface ObservedStorage {
  readonly kind: 'float' | 'ct-packed' | 'ct-int' | 'ct-fp8' | 'fp8-block' | 'gptq' | 'nvfp4' | 'mxfp4' | 'unknown';
  readonly weightDtype?: DType;
  readonly bits?: number;
  /** [out, in] of the logical (dequantized) weight, when derivable. */
  readonly shape?: readonly [number, number];
  readonly strategy?: 'tensor' | 'channel' | 'group' | 'block' | 'tensor_group';
  readonly groupSize?: number;
  /** Shape of the weight's scale tensor (block scales: [⌈out / rows⌉, ⌈in / cols⌉] of the block). */
  readonly scaleShape?: readonly number[];
  /** pack-quantized: the int32 `weight_packed` shape [out, ⌈in · bits / 32⌉]. */
  readonly packedShape?: readonly number[];
  readonly hasZeroPoint: boolean;
  readonly hasGIdx: boolean;
  readonly staticInputScale: boolean;
  readonly scaleDtype?: DType;
}

export interface LinearModule {
  readonly name: string;
  /** Decoder block index, or undefined for lm_head and other top-level modules. */
  readonly block?: number;
  /** Last name component: q_proj, down_proj, lm_head … */
  readonly projection: string;
  /**
   * 'elsewhere': a shard opened on its own, and the index beside it maps this module's weight to another
   * shard (`shard` names it); nothing is known of it here but where it is, and that is not a problem.
   */
  readonly state: 'quantized' | 'ignored' | 'unquantized' | 'missing' | 'elsewhere';
  /** For state 'elsewhere': the shard file the index maps the module's weight to. */
  readonly shard?: string;
  /** What the config says applies (group name, or the family's single scheme). */
  readonly declared?: { readonly group?: string; readonly ignoredBy?: string; readonly scheme?: QuantScheme };
  readonly observed?: ObservedStorage;
  readonly tensors: readonly string[];
  /** Disagreements between config and tensors, or other problems, in words. */
  readonly issues: readonly string[];
  /** In a mixture-of-experts layer: routed expert, router, shared expert … (moe.ts). */
  readonly moe?: MoeRole;
}

export interface DetectedScheme {
  readonly family: SchemeFamily;
  /** quant_method as written, for families QuantLens does not model. */
  readonly quantMethod?: string;
  /** The model-card style one-line description. */
  readonly description: string;
  /** Details by config group (compressed-tensors) or the single scheme (GPTQ, FP8). */
  readonly groups: readonly { readonly name: string; readonly scheme: QuantScheme; readonly format?: string; readonly description: string }[];
  readonly format?: string;
  readonly ignore: readonly string[];
  /** GPTQ specifics. */
  readonly gptq?: { readonly bits: number; readonly groupSize: number; readonly descAct: boolean; readonly sym: boolean; readonly checkpointFormat: 'gptq' | 'gptq_v2'; readonly lmHead: boolean };
  /** AutoFP8 specifics. */
  readonly fp8?: { readonly activationScheme: 'static' | 'dynamic'; readonly ignoredLayers: readonly string[] };
  readonly kvCacheScheme?: unknown;
  /** Mixture of experts, from config.json: "mixture of experts: 8 experts, 2 per token". */
  readonly moe?: { readonly experts: number; readonly perToken?: number; readonly sharedExperts: number; readonly description: string };
  /** Where the scheme came from. */
  readonly source: 'config' | 'tensors' | 'none';
  /** Config problems (invalid args, bad patterns), with field paths. */
  readonly configErrors: readonly string[];
  /** Config vs tensors disagreements summarised at checkpoint level. */
  readonly disagreements: readonly string[];
}

export interface LayerMap {
  readonly scheme: DetectedScheme;
  readonly modules: readonly LinearModule[];
  readonly counts: Readonly<Record<LinearModule['state'], number>>;
  /** Mixture-of-experts modules grouped per layer and role (empty for a dense model). */
  readonly groups: readonly LayerGroup[];
}

const LINEAR_SUFFIXES = ['weight', 'weight_packed', 'qweight'];
const AUX_SUFFIXES = [
  'weight_scale', 'weight_zero_point', 'weight_shape', 'weight_g_idx', 'weight_global_scale', 'weight_scale_inv',
  'input_scale', 'input_zero_point', 'input_global_scale', 'output_scale', 'qzeros', 'scales', 'g_idx', 'bias',
  // DeepSeek-V3's router keeps its bias for expert selection beside its weight.
  'e_score_correction_bias',
];

const isFloatDtype = (d: DType | undefined) => d === 'BF16' || d === 'F16' || d === 'F32' || d === 'F64';

/** Groups tensors by module prefix: `model.layers.0.mlp.up_proj.weight_scale` → module `model.layers.0.mlp.up_proj`. */
function modulesOf(tensors: readonly CheckpointTensor[]): Map<string, Map<string, CheckpointTensor>> {
  const modules = new Map<string, Map<string, CheckpointTensor>>();
  for (const tensor of tensors) {
    const dot = tensor.name.lastIndexOf('.');
    if (dot < 0) continue;
    const prefix = tensor.name.slice(0, dot);
    const suffix = tensor.name.slice(dot + 1);
    if (!LINEAR_SUFFIXES.includes(suffix) && !AUX_SUFFIXES.includes(suffix)) continue;
    let entry = modules.get(prefix);
    if (!entry) modules.set(prefix, (entry = new Map()));
    entry.set(suffix, tensor);
  }
  return modules;
}

/** A module is a linear layer when it has a 2-D weight (or packed equivalent) and is not an embedding. */
function isLinear(name: string, parts: Map<string, CheckpointTensor>): boolean {
  if (/(^|\.)(embed_tokens|wte|wpe|embed_positions|embeddings?)$/.test(name)) return false;
  if (parts.has('qweight') || parts.has('weight_packed')) return true;
  const weight = parts.get('weight');
  return weight !== undefined && weight.shape.length === 2;
}

export function observeStorage(parts: Map<string, CheckpointTensor>): ObservedStorage {
  const weight = parts.get('weight');
  const scale = parts.get('weight_scale');
  const base = {
    hasZeroPoint: parts.has('weight_zero_point') || parts.has('qzeros'),
    hasGIdx: parts.has('weight_g_idx') || parts.has('g_idx'),
    staticInputScale: parts.has('input_scale'),
    scaleDtype: (scale ?? parts.get('scales') ?? parts.get('weight_scale_inv'))?.dtype,
  };
  const scaleStrategy = (scaleShape: readonly number[] | undefined, out: number | undefined, inFeatures: number | undefined) => {
    if (!scaleShape) return {};
    const numel = scaleShape.reduce((a, b) => a * b, 1);
    if (numel === 1) return { strategy: 'tensor' as const };
    if (scaleShape.length === 2 && scaleShape[1] === 1 && (out === undefined || scaleShape[0] === out)) return { strategy: 'channel' as const };
    // Fewer scale rows than weight rows: 2-D blocks (compressed-tensors FP8_BLOCK), [⌈out/128⌉, ⌈in/128⌉].
    if (scaleShape.length === 2 && out !== undefined && scaleShape[0] !== out) return { strategy: 'block' as const, scaleShape };
    if (scaleShape.length === 2 && inFeatures !== undefined && scaleShape[1]! > 1) {
      return { strategy: 'group' as const, groupSize: Math.ceil(inFeatures / scaleShape[1]!) };
    }
    return {};
  };

  const qweight = parts.get('qweight');
  if (qweight && qweight.shape.length === 2) {
    const gIdx = parts.get('g_idx');
    const scales = parts.get('scales');
    const out = qweight.shape[1]!;
    const inFeatures = gIdx?.shape[0];
    const bits = inFeatures ? (qweight.shape[0]! * 32) / inFeatures : undefined;
    const groups = scales?.shape[0];
    return {
      ...base,
      kind: 'gptq',
      weightDtype: qweight.dtype,
      bits: bits !== undefined && Number.isInteger(bits) ? bits : undefined,
      shape: inFeatures !== undefined ? [out, inFeatures] : undefined,
      strategy: groups === 1 ? 'channel' : 'group',
      groupSize: inFeatures !== undefined && groups ? Math.ceil(inFeatures / groups) : undefined,
    };
  }
  const packed = parts.get('weight_packed');
  if (packed) {
    if (packed.dtype === 'U8') {
      // FP4 (docs/formats.md §3.12): E8M0 exponents (U8) per 32 values are MXFP4; FP8 scales per 16, NVFP4.
      const out = packed.shape[0];
      const inFeatures = packed.shape[1] !== undefined ? packed.shape[1] * 2 : undefined;
      const mx = scale?.dtype === 'U8' || scale?.dtype === 'F8_E8M0';
      const groups = scale?.shape.length === 2 ? scale.shape[1] : undefined;
      const groupSize = inFeatures !== undefined && groups ? Math.ceil(inFeatures / groups) : mx ? 32 : 16;
      const strategy = !mx && parts.has('weight_global_scale') ? ('tensor_group' as const) : ('group' as const);
      return { ...base, kind: mx ? 'mxfp4' : 'nvfp4', weightDtype: 'U8', bits: 4, shape: out !== undefined && inFeatures !== undefined ? [out, inFeatures] : undefined, strategy, groupSize, scaleShape: scale?.shape };
    }
    const out = packed.shape[0]!;
    const groups = scale?.shape.length === 2 ? scale.shape[1] : undefined;
    return { ...base, kind: 'ct-packed', weightDtype: packed.dtype, shape: undefined, packedShape: packed.shape, ...scaleStrategy(scale?.shape, out, undefined), ...(groups && groups > 1 ? { strategy: 'group' as const } : {}) };
  }
  if (weight) {
    const shape = weight.shape.length === 2 ? ([weight.shape[0]!, weight.shape[1]!] as const) : undefined;
    if (parts.has('weight_scale_inv') && weight.dtype === 'F8_E4M3') {
      return { ...base, kind: 'fp8-block', weightDtype: weight.dtype, bits: 8, shape, strategy: 'block', scaleShape: parts.get('weight_scale_inv')!.shape };
    }
    if (weight.dtype === 'F8_E4M3') return { ...base, kind: 'ct-fp8', weightDtype: weight.dtype, bits: 8, shape, ...scaleStrategy(scale?.shape, shape?.[0], shape?.[1]) };
    if (weight.dtype === 'I8' && scale) return { ...base, kind: 'ct-int', weightDtype: weight.dtype, bits: 8, shape, ...scaleStrategy(scale.shape, shape?.[0], shape?.[1]) };
    if (isFloatDtype(weight.dtype) && !scale) {
      // Spelt out rather than spread from `base`: this is the path of every layer of a float checkpoint, and
      // V8's object spread made it most of the layer map's time on a 70,000-layer file.
      const { hasZeroPoint, hasGIdx, staticInputScale, scaleDtype } = base;
      return { hasZeroPoint, hasGIdx, staticInputScale, scaleDtype, kind: 'float', weightDtype: weight.dtype, shape };
    }
    return { ...base, kind: 'unknown', weightDtype: weight.dtype, shape };
  }
  return { ...base, kind: 'unknown' };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads `quantization_config` (compressed-tensors, GPTQ, AutoFP8) into a DetectedScheme without tensors. */
export function parseQuantizationConfig(raw: unknown): Omit<DetectedScheme, 'description' | 'disagreements' | 'source'> & { patterns?: { groups: GroupTargets[]; ignore: CompiledPattern[] } } {
  const configErrors: string[] = [];
  if (!isRecord(raw)) return { family: 'unquantized', groups: [], ignore: [], configErrors };
  const method = typeof raw.quant_method === 'string' ? raw.quant_method : undefined;

  if (method === 'compressed-tensors') {
    const groups: { name: string; scheme: QuantScheme; format?: string; description: string }[] = [];
    const targets: GroupTargets[] = [];
    const compile = (pattern: string, where: string): CompiledPattern | undefined => {
      try {
        return compilePattern(pattern);
      } catch (error) {
        if (error instanceof PatternError) configErrors.push(`${where}: ${error.message}`);
        return undefined;
      }
    };
    const rawGroups = isRecord(raw.config_groups) ? raw.config_groups : {};
    if (!isRecord(raw.config_groups)) configErrors.push('quantization_config.config_groups must be a mapping of group name to scheme');
    for (const [name, value] of Object.entries(rawGroups)) {
      let scheme: QuantScheme | undefined;
      // A preset name mapped to a target list is expanded when loaded ("W4A16": ["Linear"]).
      if (Array.isArray(value) && presetScheme(name)) scheme = presetScheme(name, value.filter((t): t is string => typeof t === 'string'));
      else {
        const parsed = parseQuantScheme(value, ['config_groups', name]);
        for (const e of parsed.errors) configErrors.push(`quantization_config.${e.path.join('.')}: ${e.message}`);
        scheme = parsed.scheme;
      }
      if (!scheme) continue;
      const format = scheme.format ?? (typeof raw.format === 'string' ? raw.format : undefined);
      groups.push({ name, scheme, format, description: describeScheme(scheme) });
      targets.push({ name, targets: scheme.targets.map((t) => compile(t, `config_groups.${name}.targets`)).filter((p): p is CompiledPattern => p !== undefined) });
    }
    const ignore = Array.isArray(raw.ignore) ? raw.ignore.filter((i): i is string => typeof i === 'string') : [];
    return {
      family: 'compressed-tensors',
      quantMethod: method,
      groups,
      format: typeof raw.format === 'string' ? raw.format : undefined,
      ignore,
      kvCacheScheme: raw.kv_cache_scheme ?? undefined,
      configErrors,
      patterns: { groups: targets, ignore: ignore.map((i) => compile(i, 'ignore')).filter((p): p is CompiledPattern => p !== undefined) },
    };
  }

  if (method === 'gptq') {
    const bits = typeof raw.bits === 'number' ? raw.bits : 4;
    const groupSize = typeof raw.group_size === 'number' ? raw.group_size : -1;
    const descAct = raw.desc_act === true;
    const sym = raw.sym !== false;
    const format = raw.checkpoint_format === 'gptq_v2' || raw.format === 'gptq_v2' ? 'gptq_v2' : 'gptq';
    if (![2, 3, 4, 8].includes(bits)) configErrors.push(`quantization_config.bits: GPTQ supports 2, 3, 4 or 8 bits, not ${bits}`);
    if (groupSize !== -1 && groupSize <= 0) configErrors.push(`quantization_config.group_size: must be -1 or positive, not ${groupSize}`);
    const weights: QuantArgs = {
      numBits: bits,
      type: 'int',
      symmetric: sym,
      strategy: groupSize === -1 ? 'channel' : 'group',
      groupSize: groupSize === -1 ? undefined : groupSize,
      dynamic: false,
      actorder: descAct ? 'group' : undefined,
    };
    const lmHead = raw.lm_head === true;
    const scheme: QuantScheme = { targets: ['Linear'], weights };
    return {
      family: 'gptq',
      quantMethod: method,
      groups: [{ name: 'gptq', scheme, format, description: describeScheme(scheme, 'gptq') }],
      ignore: lmHead ? [] : ['lm_head'],
      gptq: { bits, groupSize, descAct, sym, checkpointFormat: format, lmHead },
      configErrors,
      patterns: { groups: [{ name: 'gptq', targets: [compilePattern('Linear')] }], ignore: lmHead ? [] : [compilePattern('lm_head')] },
    };
  }

  if (method === 'fp8') {
    const activationScheme = raw.activation_scheme === 'dynamic' ? 'dynamic' : 'static';
    if (raw.activation_scheme !== 'static' && raw.activation_scheme !== 'dynamic') configErrors.push(`quantization_config.activation_scheme must be "static" or "dynamic", found ${JSON.stringify(raw.activation_scheme)}`);
    const ignoredLayers = Array.isArray(raw.ignored_layers) ? raw.ignored_layers.filter((i): i is string => typeof i === 'string') : ['re:.*lm_head'];
    // DeepSeek-V3 style (docs/formats.md §6.1): weight_block_size [128, 128] means FP8 weights with one
    // weight_scale_inv per block, and dynamic activations quantized per group of 128 along the input.
    const block = fp8BlockSize(raw, configErrors);
    if (raw.fmt !== undefined && raw.fmt !== 'e4m3') configErrors.push(`quantization_config.fmt: QuantLens reads FP8 "e4m3" weights, found ${JSON.stringify(raw.fmt)}`);
    const scheme: QuantScheme = {
      targets: ['Linear'],
      weights: block
        ? { numBits: 8, type: 'float', symmetric: true, strategy: 'block', blockStructure: block, dynamic: false }
        : { numBits: 8, type: 'float', symmetric: true, strategy: 'tensor', dynamic: false },
      inputActivations:
        block && activationScheme === 'dynamic'
          ? { numBits: 8, type: 'float', symmetric: true, strategy: 'group', groupSize: block[1], dynamic: true }
          : { numBits: 8, type: 'float', symmetric: true, strategy: activationScheme === 'static' ? 'tensor' : 'token', dynamic: activationScheme === 'dynamic' },
    };
    const ignore: CompiledPattern[] = [];
    for (const pattern of ignoredLayers) {
      try {
        ignore.push(compileAutoFp8Ignore(pattern));
      } catch (error) {
        configErrors.push(`quantization_config.ignored_layers: ${(error as Error).message}`);
      }
    }
    return {
      family: 'fp8',
      quantMethod: method,
      groups: [{ name: 'fp8', scheme, format: 'fp8', description: describeScheme(scheme) }],
      ignore: ignoredLayers,
      fp8: { activationScheme, ignoredLayers },
      kvCacheScheme: raw.kv_cache_scheme ?? undefined,
      configErrors,
      patterns: { groups: [{ name: 'fp8', targets: [compilePattern('Linear')] }], ignore },
    };
  }
  if (method === 'mxfp4') {
    // gpt-oss (transformers' Mxfp4 quantizer): only the fused experts are MXFP4; modules_to_not_convert names
    // what stays high precision, as dotted prefixes where `*` stands for one name component.
    const notConvert = Array.isArray(raw.modules_to_not_convert) ? raw.modules_to_not_convert.filter((i): i is string => typeof i === 'string') : [];
    const scheme: QuantScheme = { targets: ['GptOssExperts'], weights: { numBits: 4, type: 'float', symmetric: true, strategy: 'group', groupSize: 32, dynamic: false, scaleDtype: 'uint8' } };
    const ignore = notConvert.map((pattern): CompiledPattern => {
      const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^.]+')}(\\.|$)`);
      return { raw: pattern, kind: 'regex', test: (name) => re.test(name) };
    });
    return {
      family: 'mxfp4',
      quantMethod: method,
      groups: [{ name: 'mxfp4', scheme, format: 'mxfp4', description: describeScheme(scheme) }],
      ignore: notConvert,
      configErrors,
      patterns: { groups: [{ name: 'mxfp4', targets: [compilePattern('GptOssExperts')] }], ignore },
    };
  }
  return { family: method ? 'other' : 'unquantized', quantMethod: method, groups: [], ignore: [], configErrors };
}

/** `weight_block_size` of an fp8 config: two positive integers, or undefined (absent or invalid, noted). */
function fp8BlockSize(raw: Record<string, unknown>, configErrors: string[]): readonly [number, number] | undefined {
  const size = raw.weight_block_size;
  if (size === undefined || size === null) return undefined;
  if (Array.isArray(size) && size.length === 2 && size.every((n) => Number.isSafeInteger(n) && (n as number) > 0)) return [size[0] as number, size[1] as number];
  configErrors.push(`quantization_config.weight_block_size must be two positive integers [rows, cols], found ${JSON.stringify(size)}`);
  return undefined;
}

/**
 * FP4 schemes in model-card words (docs/formats.md §3.12): NVFP4 is FP4 in groups of 16 with FP8 scales
 * (and a global scale for strategy tensor_group); MXFP4 is FP4 in groups of 32 with E8M0 scales.
 */
function describeFp4(w: QuantArgs, a: QuantArgs | undefined): string {
  const mx = w.groupSize === 32 || w.scaleDtype === 'uint8' || w.scaleDtype === 'torch.uint8';
  const name = mx ? 'MXFP4' : w.groupSize === 16 ? 'NVFP4' : 'FP4';
  const cells = mx ? `groups of ${w.groupSize ?? 32} with E8M0 scales` : `groups of ${w.groupSize} with FP8 scales${w.strategy === 'tensor_group' ? ' and a global scale' : ''}`;
  if (a && a.type === 'float' && a.numBits === 4) return `${name} weights and activations, ${cells}`;
  if (!a) return mx ? `${name} weights, ${cells}` : `${name} weights (W4A16), ${cells}`;
  return `${name} weights, ${cells}, ${describeArgs(a, 'activations')}`;
}

/** The model-card phrasing of one scheme. */
export function describeScheme(scheme: QuantScheme, algorithm?: 'gptq'): string {
  const w = scheme.weights;
  const a = scheme.inputActivations;
  if (!w) return 'not quantized';
  if (algorithm === 'gptq') {
    const parts = [`INT${w.numBits} GPTQ`, w.groupSize ? `group ${w.groupSize}` : 'per channel'];
    if (w.actorder) parts.push('act-order');
    parts.push(w.symmetric ? 'symmetric' : 'asymmetric (zero points)');
    return parts.join(', ');
  }
  const kind = (args: QuantArgs) => (args.type === 'float' ? `FP${args.numBits}` : `INT${args.numBits}`);
  if (w.type === 'float' && w.numBits === 4 && (w.strategy === 'group' || w.strategy === 'tensor_group')) return describeFp4(w, a);
  if (w.type === 'float' && w.numBits === 8 && w.strategy === 'group' && w.groupSize === 32 && (w.scaleDtype === 'uint8' || w.scaleDtype === 'torch.uint8')) {
    // MXFP8 (OCP MX; compressed-tensors mxfp8-quantized): FP8 E4M3 in groups of 32 with E8M0 scales.
    const mxActivations = a && a.type === 'float' && a.numBits === 8 && a.groupSize === 32;
    return `MXFP8 weights${mxActivations ? ' and activations' : ''}, groups of 32 with E8M0 scales${a && !mxActivations ? `, ${describeArgs(a, 'activations')}` : ''}`;
  }
  if (w.strategy === 'block' && w.blockStructure) {
    const weights = `${kind(w)} weights in ${w.blockStructure.join('×')} blocks`;
    if (!a) return `${weights} (weight-only)`;
    if (a.strategy === 'group') return `${weights}, ${a.dynamic ? 'dynamic' : 'static'} per-group activations`;
    return `${weights}, ${describeArgs(a, 'activations')}`;
  }
  if (a && w.type === a.type && w.numBits === a.numBits && w.strategy === 'tensor' && a.strategy === 'tensor') {
    return `${kind(w)} weights and activations, per-tensor ${a.dynamic ? 'dynamic' : 'static'} scales`;
  }
  const granularity = describeArgs(w, 'weights').split(' weights ')[1]!.split(' asymmetric')[0]!.split(' act-order')[0]!;
  const parts = [`${kind(w)} weights${granularity.startsWith('per') ? ` ${granularity}` : `, ${granularity}`}`];
  if (w.type === 'int' && w.numBits < 8) parts.push(w.symmetric ? 'symmetric' : 'asymmetric (zero points)');
  else if (!w.symmetric) parts.push('asymmetric');
  if (w.actorder) parts.push('act-order');
  const weights = parts.join(', ');
  if (!a) return `${weights} (weight-only)`;
  return `${weights}, ${describeArgs(a, 'activations')}`;
}

/**
 * True when a declared group size equals the layer's in_features: one group per row, whose [out, 1] scales look
 * exactly like per-channel ones, so the config's word stands. Any other group size against [out, 1] scales stays
 * a disagreement (group 64 on 128 inputs needs two per row; llm-compressor refuses one above in_features).
 */
export function oneGroupPerRow(observed: ObservedStorage, w: QuantArgs | undefined): boolean {
  if (!w || (w.strategy !== 'group' && w.strategy !== 'tensor_group') || !w.groupSize || observed.strategy !== 'channel') return false;
  // pack-quantized int weights have no logical shape in the header: in = int32 words × 32 / bits.
  const words = observed.kind === 'ct-packed' && observed.packedShape?.length === 2 && 32 % w.numBits === 0 ? observed.packedShape[1]! : undefined;
  const inFeatures = observed.shape?.[1] ?? (words !== undefined ? (words * 32) / w.numBits : undefined);
  return inFeatures === w.groupSize;
}

function observedMatchesDeclared(observed: ObservedStorage, scheme: QuantScheme | undefined, family: SchemeFamily): string[] {
  const issues: string[] = [];
  const w = scheme?.weights;
  if (!w) return issues;
  if (observed.kind === 'float') return [`config quantizes this layer, but its weight is ${observed.weightDtype}`];
  if (observed.kind === 'unknown') return [`config quantizes this layer, but its tensors match no known storage (${observed.weightDtype ?? 'no weight'})`];
  if (family === 'gptq' && observed.kind !== 'gptq') issues.push(`config says GPTQ, but tensors are stored as ${observed.kind}`);
  if (family === 'compressed-tensors' && observed.kind === 'gptq') issues.push('config says compressed-tensors, but tensors are in GPTQ layout (qweight/qzeros)');
  if (w.type === 'float' && !['ct-fp8', 'fp8-block', 'nvfp4', 'mxfp4'].includes(observed.kind)) issues.push(`config declares float weights, tensors are ${observed.weightDtype}`);
  if (w.type === 'int' && ['ct-fp8', 'fp8-block'].includes(observed.kind)) issues.push(`config declares INT${w.numBits} weights, tensors are ${observed.weightDtype}`);
  if (observed.bits !== undefined && w.numBits !== observed.bits) issues.push(`config declares ${w.numBits}-bit weights, tensors hold ${observed.bits}-bit values`);
  // A weight within one block (≤ 128×128) has a single block scale, which reads as per-tensor.
  const oneBlock = w.strategy === 'block' && observed.strategy === 'tensor' && w.blockStructure !== undefined && observed.shape !== undefined && observed.shape[0] <= w.blockStructure[0] && observed.shape[1] <= w.blockStructure[1];
  // One group per row has per-channel-shaped scales, whichever side declares which.
  const oneGroup = oneGroupPerRow(observed, w) || (w.strategy === 'channel' && observed.strategy === 'group' && observed.groupSize === observed.shape?.[1]);
  if (observed.strategy && w.strategy !== observed.strategy && !oneBlock && !oneGroup) {
    issues.push(`config declares ${w.strategy} scales, the scale tensor's shape is ${observed.strategy}${observed.groupSize ? ` (group ${observed.groupSize})` : ''}`);
  } else if ((w.strategy === 'group' || w.strategy === 'tensor_group') && observed.groupSize !== undefined && w.groupSize !== observed.groupSize) {
    issues.push(`config declares group ${w.groupSize}, the scales imply group ${observed.groupSize}`);
  } else if (w.strategy === 'block' && w.blockStructure && observed.scaleShape && observed.shape) {
    const [br, bc] = w.blockStructure;
    const want = [Math.ceil(observed.shape[0] / br), Math.ceil(observed.shape[1] / bc)];
    if (observed.scaleShape.length !== 2 || observed.scaleShape[0] !== want[0] || observed.scaleShape[1] !== want[1]) {
      issues.push(`config declares ${br}×${bc} blocks, which need [${want.join(', ')}] scales for the weight [${observed.shape.join(', ')}]; the scale tensor is [${observed.scaleShape.join(', ')}]`);
    }
  }
  const a = scheme?.inputActivations;
  const staticInput = a !== undefined && a.dynamic === false;
  if (staticInput && !observed.staticInputScale) issues.push('config declares static input activations, but there is no input_scale');
  if (!staticInput && observed.staticInputScale) issues.push('an input_scale is stored, but config does not declare static input activations');
  if (family === 'compressed-tensors' && !w.symmetric && w.strategy !== 'tensor' && !observed.hasZeroPoint && observed.kind !== 'ct-fp8') {
    issues.push('config declares asymmetric weights, but there is no weight_zero_point');
  }
  if (w.actorder === 'group' && !observed.hasGIdx) issues.push('config declares act-order (group), but there is no g_idx');
  return issues;
}

/**
 * Builds the layer map. `expectedBlocks` (config.num_hidden_layers) lets missing decoder layers be found;
 * `tieWordEmbeddings` says whether an lm_head is expected.
 */
export function buildLayerMap(
  tensors: readonly CheckpointTensor[],
  quantizationConfig: unknown,
  model: {
    numHiddenLayers?: number;
    tieWordEmbeddings?: boolean;
    hasConfig: boolean;
    /** For a shard opened on its own: tensors its index maps to other shards (name → shard file). */
    elsewhere?: ReadonlyMap<string, string>;
    /** The whole config.json: its family and mixture-of-experts fields say which modules to expect. */
    config?: Record<string, unknown>;
  } = { hasConfig: false },
): LayerMap {
  const parsed = parseQuantizationConfig(quantizationConfig);
  const byModule = modulesOf(tensors);
  // gpt-oss keeps a layer's experts in fused 3-D tensors (moe.ts); they are modules of their own.
  const fused = fusedExpertModules(tensors);
  for (const name of fused.keys()) byModule.delete(name);
  const modules: LinearModule[] = [];
  const linearNames = [...byModule.entries()].filter(([name, parts]) => isLinear(name, parts)).map(([name]) => name);
  linearNames.push(...fused.keys());

  // Modules the config promises (architecture.ts): attention and MLP or experts per block, lm_head unless tied.
  const elsewhere = model.elsewhere;
  const attentionPrefix =
    linearNames.some((n) => n.includes('.self_attn.')) || !linearNames.length || (elsewhere !== undefined && [...elsewhere.keys()].some((n) => n.includes('.self_attn.'))) ? 'self_attn' : undefined;
  const expectation = expectedModules(model.config, model.numHiddenLayers, linearNames.length ? linearNames : [...(elsewhere?.keys() ?? [])], model.tieWordEmbeddings);
  const expected = attentionPrefix ? expectation.modules : [];
  const names = [...new Set([...linearNames, ...expected])];

  const observedKinds = new Set<string>();
  for (const name of names) {
    const parts = byModule.get(name);
    const blockMatch = /(?:^|\.)layers\.(\d+)\./.exec(`${name}.`);
    const projection = name.slice(name.lastIndexOf('.') + 1);
    const block = blockMatch ? Number(blockMatch[1]) : undefined;
    const fusedParts = fused.get(name);
    const moe = name.includes('.experts.') || name.includes('shared_expert') || (expectation.moe && /\.(gate|router)$/.test(name)) ? moeRoleOf(name, fusedParts ? fusedExpertCount(fusedParts) : expectation.moe?.experts) : undefined;
    const role = moe ? { moe } : {};
    if (!fusedParts && (!parts || !isLinear(name, parts))) {
      const heldBy = parts ? undefined : elsewhereShard(name, elsewhere);
      if (heldBy !== undefined) {
        modules.push({ name, block, projection, state: 'elsewhere', shard: heldBy, tensors: [], issues: [], ...role });
        continue;
      }
      modules.push({ name, block, projection, state: 'missing', tensors: [], issues: ['config.json implies this layer, but the checkpoint has no weight for it'], ...role });
      continue;
    }
    let observed = fusedParts ? observeFusedExperts(fusedParts) : observeStorage(parts!);
    observedKinds.add(observed.kind);
    const tensorNames = [...(fusedParts ?? parts!).values()].map((t) => t.name);
    const issues: string[] = [];
    let state: LinearModule['state'];
    let declared: LinearModule['declared'];
    if (parsed.patterns) {
      const resolution = resolveModule(name, expectation.classOf.get(name) ?? (fusedParts ? 'GptOssExperts' : 'Linear'), parsed.patterns.groups, parsed.patterns.ignore);
      const group = parsed.groups.find((g) => g.name === resolution.group);
      declared = { group: resolution.group, ignoredBy: resolution.ignoredBy, scheme: group?.scheme };
      if (group) {
        issues.push(...observedMatchesDeclared(observed, group.scheme, parsed.family));
        const w = group.scheme.weights;
        if (oneGroupPerRow(observed, w)) observed = { ...observed, strategy: w!.strategy === 'tensor_group' ? 'tensor_group' : 'group', groupSize: w!.groupSize }; // as declared
        state = observed.kind === 'float' ? 'unquantized' : 'quantized';
      } else {
        state = observed.kind === 'float' ? (resolution.ignoredBy ? 'ignored' : 'unquantized') : 'quantized';
        if (observed.kind !== 'float') issues.push(resolution.ignoredBy ? `config ignores this layer (${resolution.ignoredBy}), but its weight is quantized (${observed.kind})` : 'no config group targets this layer, but its weight is quantized');
      }
    } else {
      state = observed.kind === 'float' ? 'unquantized' : 'quantized';
      if (observed.kind !== 'float' && parsed.family === 'unquantized') issues.push('quantized tensors, but config.json has no quantization_config');
    }
    if (observed.kind === 'unknown') issues.push(`unrecognised weight storage (${observed.weightDtype ?? 'no weight tensor'})`);
    modules.push({ name, block, projection, state, declared, observed, tensors: tensorNames, issues, ...role });
  }
  // Sort keys computed once per module, not once per comparison (100,000-tensor files have 70,000 modules).
  const order = new Map(modules.map((m) => [m, moduleOrder(m.projection)]));
  modules.sort((a, b) => (a.block ?? Infinity) - (b.block ?? Infinity) || order.get(a)! - order.get(b)! || (a.name < b.name ? -1 : 1));

  const counts = { quantized: 0, ignored: 0, unquantized: 0, missing: 0, elsewhere: 0 };
  for (const m of modules) counts[m.state]++;

  // Without a config, infer a scheme from the tensors so the header still says something useful.
  let family = parsed.family;
  let source: DetectedScheme['source'] = parsed.family === 'unquantized' && !isRecord(quantizationConfig) ? 'none' : 'config';
  if (!isRecord(quantizationConfig) && counts.quantized > 0) {
    source = 'tensors';
    family = observedKinds.has('gptq') ? 'gptq' : 'compressed-tensors';
  }
  const disagreements: string[] = [];
  const withIssues = modules.filter((m) => m.issues.length > 0 && m.state !== 'missing');
  if (withIssues.length > 0) disagreements.push(`${withIssues.length} layer${withIssues.length === 1 ? '' : 's'} disagree with config.json (first: ${withIssues[0]!.name}: ${withIssues[0]!.issues[0]})`);
  if (counts.missing > 0) disagreements.push(`${counts.missing} layer${counts.missing === 1 ? ' implied by config.json is' : 's implied by config.json are'} missing`);
  if (source === 'tensors') disagreements.push('the tensors are quantized but config.json declares no quantization_config');

  const moeConfig = expectation.moe;
  const moeDescription = moeConfig ? describeMoe(moeConfig, model.numHiddenLayers) : undefined;
  const description = `${describeCheckpoint(parsed, modules, source)}${moeDescription ? `; ${moeDescription}` : ''}`;
  const { patterns: _patterns, ...schemeFields } = parsed;
  const moeSummary = moeConfig && moeDescription ? { moe: { experts: moeConfig.experts, perToken: moeConfig.perToken, sharedExperts: moeConfig.sharedExperts, description: moeDescription } } : {};
  return { scheme: { ...schemeFields, ...moeSummary, family, source, description, disagreements }, modules, counts, groups: groupMoeModules(modules) };
}

/** The shard an index maps a module's weight (in any of its stored forms) to, when not this file. */
function elsewhereShard(module: string, elsewhere: ReadonlyMap<string, string> | undefined): string | undefined {
  if (!elsewhere) return undefined;
  for (const suffix of LINEAR_SUFFIXES) {
    const shard = elsewhere.get(`${module}.${suffix}`);
    if (shard !== undefined) return shard;
  }
  return undefined;
}

// Attention first (MLA and Phi-3's fused names in their place), then the router, then MLP projections
// (Mixtral's w1/w3/w2 are gate/up/down).
const PROJECTION_ORDER = ['q_proj', 'q_a_proj', 'q_b_proj', 'qkv_proj', 'k_proj', 'v_proj', 'kv_a_proj_with_mqa', 'kv_b_proj', 'o_proj', 'gate', 'router', 'gate_proj', 'w1', 'gate_up_proj', 'up_proj', 'w3', 'down_proj', 'w2'];

function moduleOrder(projection: string): number {
  const i = PROJECTION_ORDER.indexOf(projection);
  return i < 0 ? PROJECTION_ORDER.length : i;
}

function describeCheckpoint(parsed: ReturnType<typeof parseQuantizationConfig>, modules: readonly LinearModule[], source: DetectedScheme['source']): string {
  const quantized = modules.filter((m) => m.state === 'quantized');
  const notQuantized = modules.filter((m) => m.state === 'ignored' || m.state === 'unquantized');
  const skipped = (() => {
    if (notQuantized.length === 0 || quantized.length === 0) return '';
    // Routers are kept in high precision by design: one phrase for all of them, not one name per layer.
    const routers = notQuantized.filter((m) => m.moe?.role === 'router' || m.moe?.role === 'shared-expert-gate');
    const others = notQuantized.filter((m) => !routers.includes(m));
    const names = others.map((m) => (m.block === undefined ? m.name : `layer ${m.block} ${m.moe?.role === 'expert' ? `expert ${m.moe.expert} ` : ''}${m.projection}`));
    if (routers.length) names.push(`${routers.length} router${routers.length === 1 ? '' : 's'}`);
    return `, ${names.length > 3 ? `${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : names.join(', ')} not quantized`;
  })();
  if (source === 'none') return quantized.length === 0 ? `Unquantized ${dominantDtype(modules)} checkpoint` : 'Quantized tensors without a quantization_config';
  if (source === 'tensors') {
    const kinds = [...new Set(quantized.map((m) => m.observed?.kind))].join(', ');
    return `Quantized (${kinds}) according to its tensors; config.json declares no scheme${skipped}`;
  }
  if (parsed.family === 'other') return `quant_method "${parsed.quantMethod}" (not modelled by QuantLens)`;
  if (parsed.groups.length === 0) return `Unquantized ${dominantDtype(modules)} checkpoint`;
  const used = new Set(quantized.map((m) => m.declared?.group));
  const groups = parsed.groups.filter((g) => used.has(g.name) || used.size === 0);
  return `${groups.map((g) => g.description).join('; ')}${skipped}`;
}

function dominantDtype(modules: readonly LinearModule[]): string {
  const counts = new Map<string, number>();
  for (const m of modules) if (m.observed?.weightDtype) counts.set(m.observed.weightDtype, (counts.get(m.observed.weightDtype) ?? 0) + 1);
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  return top === 'BF16' ? 'bf16' : top === 'F16' ? 'fp16' : top === 'F32' ? 'fp32' : (top ?? 'float');
}
