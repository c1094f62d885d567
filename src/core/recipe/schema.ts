/**
 * What llm-compressor accepts in a recipe (docs/formats.md §4), and what compressed-tensors / GPTQ / AutoFP8
 * accept in a quantization config (§3.1–§3.4, §5.1, §6): every modifier, every field with its type, default,
 * allowed values and hover documentation, and the fields that older releases accepted but current ones
 * reject. Read from vllm-project/llm-compressor @ab1ba3eff and vllm-project/compressed-tensors @ac8e2ba8;
 * the documentation text is written for QuantLens.
 */
import { COMPRESSION_FORMATS, PRESET_NAMES, QUANT_ARGS_FIELDS, SCHEME_FIELDS, STRATEGIES, presetScheme } from '../quant/args';

export type ValueType =
  | { readonly t: 'int'; readonly min?: number; readonly max?: number }
  | { readonly t: 'float'; readonly min?: number; readonly max?: number; readonly exclusiveMin?: boolean; readonly exclusiveMax?: boolean }
  | { readonly t: 'bool' }
  | { readonly t: 'str' }
  | { readonly t: 'enum'; readonly values: readonly string[]; readonly caseInsensitive?: boolean }
  /** Module names, class names or `re:` patterns: a list, or (single) also one string. */
  | { readonly t: 'patterns'; readonly single: boolean; readonly role: 'targets' | 'ignore' }
  | { readonly t: 'dict' }
  | { readonly t: 'any' }
  | { readonly t: 'quantArgs' }
  | { readonly t: 'configGroups' }
  | { readonly t: 'scheme' }
  | { readonly t: 'observerMap' }
  | { readonly t: 'observer' }
  | { readonly t: 'dtype' }
  | { readonly t: 'sqMappings' }
  | { readonly t: 'awqMappings' }
  | { readonly t: 'sparsity' }
  | { readonly t: 'nm' }
  | { readonly t: 'magnitudeMask' }
  | { readonly t: 'boolOrBoth' }
  | { readonly t: 'gptqActorder' }
  | { readonly t: 'rotations'; readonly values: readonly string[] }
  | { readonly t: 'scheduler' }
  | { readonly t: 'intPair' };

export interface FieldSpec {
  readonly name: string;
  readonly type: ValueType;
  readonly nullable?: boolean;
  readonly required?: boolean;
  /** Default as written in YAML. */
  readonly default?: string;
  /** Markdown documentation for hovers and completion. */
  readonly doc: string;
  /** Accepted but not offered (pydantic-public bookkeeping fields). */
  readonly hidden?: boolean;
  /** Still accepted, but deprecated: the warning to give. */
  readonly deprecated?: string;
  /** Values offered by completion beyond those implied by the type. */
  readonly examples?: readonly string[];
}

export interface RetiredField {
  readonly name: string;
  /** When and where it went. */
  readonly removed: string;
  /** What to do instead. */
  readonly replacement: string;
  /** The field that took its place, when it was a plain rename (offered as a quick fix). */
  readonly rename?: string;
}

/** Modifier types older recipes name that current llm-compressor no longer has. */
export const RETIRED_MODIFIERS: Readonly<Record<string, { readonly removed: string; readonly replacement: string }>> = {
  OutputDistillationModifier: { removed: 'distillation was removed with training support on 2025-11-20 (llm-compressor 9cb1c6d8d)', replacement: 'remove it; llm-compressor now only runs one-shot compression' },
  LegacyQuantizationModifier: { removed: 'it was the sparseml-era quantization modifier, retired in 2024 when llm-compressor moved to compressed-tensors schemes', replacement: 'use QuantizationModifier with `scheme` or `config_groups`' },
  ...Object.fromEntries(
    ['EpochRangeModifier', 'SetLearningRateModifier', 'LearningRateFunctionModifier', 'GMPruningModifier', 'SetWeightDecayModifier', 'TrainableParamsModifier'].map((name) => [
      name,
      { removed: 'it is a sparseml training modifier that llm-compressor never carried over (2024)', replacement: 'remove it' },
    ]),
  ),
};

/** `percdamp` is the AutoGPTQ / sparseml spelling; llm-compressor only ever had dampening_frac. */
const PERCDAMP: RetiredField = {
  name: 'percdamp',
  removed: 'it is the AutoGPTQ name of dampening_frac and was never a llm-compressor field; releases before 2025-07-02 silently ignored unknown fields (so it had no effect), current ones reject them (2c41df7e2)',
  replacement: 'rename it to dampening_frac',
  rename: 'dampening_frac',
};

const TARGET_IDS: RetiredField = {
  name: 'target_ids',
  removed: 'it was the sparseml OBCQ list of model outputs to cache, deprecated in 2023 and never a llm-compressor field; releases before 2025-07-02 silently ignored it, current ones reject unknown fields (2c41df7e2)',
  replacement: 'delete it',
};

/** Stage-level keys older staged recipes carried. */
export const RETIRED_STAGE_KEYS: Readonly<Record<string, string>> = {
  run_type: 'run_type (oneshot / train) was read by the staged-recipe runner that llm-compressor removed on 2025-06-27 (8680d9578); it is ignored now, and every stage runs one-shot',
};

export type ModifierCategory = 'quantization' | 'transform' | 'pruning';

export interface ModifierSpec {
  readonly name: string;
  readonly category: ModifierCategory;
  /** Inherits QuantizationMixin (config_groups / scheme / targets / ignore …). */
  readonly quantization: boolean;
  readonly doc: string;
  readonly fields: readonly FieldSpec[];
  readonly retired: readonly RetiredField[];
  readonly deprecated?: string;
}

// ------------------------------------------------------------------ value vocabularies

export const OBSERVERS: Readonly<Record<string, string>> = {
  memoryless_minmax: 'Min/max of the current batch only (no running state). The default for static weights and activations in current compressed-tensors.',
  static_minmax: 'Running absolute min/max over all calibration batches. The usual choice for static activation scales (FP8 static, NVFP4 global scale).',
  minmax: 'Min/max with a moving average over calibration batches (the default in compressed-tensors releases before 2026).',
  memoryless_mse: 'Searches the clipping range that minimises the quantization MSE of the current batch.',
  mse: 'MSE-optimal clipping range, averaged over calibration batches.',
  nvfp4_expanded_mse: 'MSE search adapted to NVFP4 (FP4 values with FP8 group scales).',
  imatrix_mse: 'MSE weighted by the importance matrix (mean squared input activations); needs calibration data.',
};

export const TORCH_DTYPES = [
  'float32', 'float', 'float64', 'double', 'float16', 'half', 'bfloat16', 'complex32', 'chalf', 'complex64', 'cfloat', 'complex128', 'cdouble',
  'uint8', 'uint16', 'uint32', 'uint64', 'int8', 'int16', 'short', 'int32', 'int', 'int64', 'long', 'bool',
  'float8_e4m3fn', 'float8_e5m2', 'float8_e4m3fnuz', 'float8_e5m2fnuz', 'float8_e8m0fnu', 'float4_e2m1fn_x2',
  'quint8', 'qint8', 'qint32', 'quint4x2', 'quint2x4', 'bits1x8', 'bits2x4', 'bits4x2', 'bits8', 'bits16',
  'int1', 'int2', 'int3', 'int4', 'int5', 'int6', 'int7', 'uint1', 'uint2', 'uint3', 'uint4', 'uint5', 'uint6', 'uint7',
] as const;

export const STRATEGY_DOCS: Readonly<Record<string, string>> = {
  tensor: 'One scale (and zero point) for the whole tensor.',
  channel: 'One scale per output channel (row of the weight): scale shape [out, 1].',
  group: 'One scale per `group_size` consecutive input columns of each row: scale shape [out, in / group_size]. Needs `group_size`.',
  block: 'One scale per 2-D block of `block_structure` [rows, cols] (FP8_BLOCK uses [128, 128]). Needs `block_structure`.',
  token: 'One scale per token, computed at run time: activations only, and only with `dynamic: true`.',
  tensor_group: 'Group scales plus one global per-tensor scale (NVFP4: FP8 group scales of 16 values under an FP32 global scale). Needs `group_size`.',
  attn_head: 'One scale per attention head (attention / KV-cache quantization).',
};

export const ACTORDER_DOCS: Readonly<Record<string, string>> = {
  static: 'Alias of `weight`: GPTQ processes columns in order of activation importance during calibration, then stores weights in the original order. No run-time cost. The GPTQModifier default.',
  weight: 'Activation ordering during calibration only; the saved format is unchanged (no g_idx). No run-time cost.',
  dynamic: 'Alias of `group` (deprecated): groups follow the activation order and a `weight_g_idx` tensor is saved; kernels must reorder at run time.',
  group: 'Deprecated: groups are formed in activation order and `weight_g_idx` is saved (slower kernels). Needs strategy group or tensor_group.',
};

export const FORMAT_DOCS: Readonly<Record<string, string>> = {
  dense: 'Not compressed.',
  'sparse-bitmask': 'Legacy sparse format (bitmask + values); no longer written.',
  'sparse-24-bitmask': 'Legacy 2:4 sparse format; no longer written.',
  'int-quantized': 'INT8 weights stored unpacked with activation quantization (W8A8-INT8).',
  'float-quantized': 'FP8 weights with activation quantization (FP8, FP8_DYNAMIC, FP8_BLOCK).',
  'naive-quantized': 'Quantized weights stored unpacked in their integer/FP8 dtype (fallback).',
  'pack-quantized': 'Integer weights of 1–8 bits packed into int32 (`weight_packed`); what vLLM wNa16 kernels load (W4A16, W8A16).',
  'marlin-24': 'Legacy 2:4 sparse Marlin format; no longer written.',
  'mixed-precision': 'Global format when groups use different formats; each group then carries its own `format`.',
  'nvfp4-pack-quantized': 'NVFP4: FP4 E2M1 values packed two per byte, FP8 group scales and an FP32 global scale.',
  'mxfp4-pack-quantized': 'MXFP4: FP4 values with E8M0 (uint8) scales per 32 values.',
  'mxfp8-quantized': 'MXFP8: FP8 values with E8M0 (uint8) scales per 32 values.',
};

/** Every preset name current compressed-tensors defines (the W{b}A{a} family generated, b ≤ a). */
export const ALL_PRESETS: readonly string[] = (() => {
  const names = new Set<string>(PRESET_NAMES);
  for (const w of [2, 3, 4, 5, 6, 7, 8]) for (const a of [4, 8, 16]) if (presetScheme(`W${w}A${a}`)) names.add(`W${w}A${a}`);
  return [...names];
})();

export const MODULE_CLASS_NAMES = ['Linear', 'Embedding'] as const;

// ------------------------------------------------------------------ QuantizationArgs and QuantizationScheme

const QUANT_ARGS_SPECS: Readonly<Record<(typeof QUANT_ARGS_FIELDS)[number], FieldSpec>> = {
  num_bits: { name: 'num_bits', type: { t: 'int', min: 1 }, default: '8', examples: ['4', '8'], doc: 'Bits per quantized value. Integer packing supports 1–8; `type: float` needs 8 (FP8 E4M3) or 4 (FP4 E2M1).' },
  type: { name: 'type', type: { t: 'enum', values: ['int', 'float'], caseInsensitive: true }, default: 'int', doc: '`int` (signed integers) or `float` (FP8 E4M3 for 8 bits, FP4 E2M1 for 4 bits). Case-insensitive.' },
  symmetric: { name: 'symmetric', type: { t: 'bool' }, default: 'true', doc: 'Symmetric quantization has no zero point. `false` stores a `*_zero_point` per scale (integer types only; FP4 cannot be asymmetric).' },
  group_size: { name: 'group_size', type: { t: 'int' }, nullable: true, default: 'null', examples: ['128', '64', '32', '16', '-1'], doc: 'Input columns sharing one scale, for strategy `group` / `tensor_group` (must be positive). `-1` means per channel. When `strategy` is omitted, a positive group_size implies `group`. With a model, every targeted layer\'s input features must be divisible by it.' },
  strategy: { name: 'strategy', type: { t: 'enum', values: STRATEGIES, caseInsensitive: true }, nullable: true, default: 'inferred', doc: 'Scale granularity: `tensor`, `channel`, `group`, `block`, `token`, `tensor_group` or `attn_head`. Inferred when omitted: no group_size → tensor, group_size > 0 → group, −1 → channel.' },
  block_structure: { name: 'block_structure', type: { t: 'intPair' }, nullable: true, default: 'null', examples: ['[128, 128]'], doc: '[rows, cols] of the blocks for strategy `block` (two positive integers; the legacy string "RxC" is also read).' },
  dynamic: { name: 'dynamic', type: { t: 'any' }, default: 'false', examples: ['true', 'false', 'local'], doc: '`true`: scales are computed at run time for every input (no calibration, no stored scales). `false`: static scales calibrated once. `local`: only the local (group) scales are dynamic, the global scale is calibrated (NVFP4 activations; strategy tensor_group only).' },
  actorder: { name: 'actorder', type: { t: 'any' }, nullable: true, default: 'null', examples: ['static', 'weight', 'group', 'dynamic', 'null'], doc: 'GPTQ activation ordering for these weights: `weight` (alias `static`), `group` (alias `dynamic`, deprecated, saves g_idx; needs group strategy), `true` (= group), `false`/null (none). Not allowed on activations.' },
  scale_dtype: { name: 'scale_dtype', type: { t: 'dtype' }, nullable: true, default: 'null (model dtype)', examples: ['float8_e4m3fn', 'uint8', 'bfloat16'], doc: 'torch dtype of the stored scales, e.g. `float8_e4m3fn` (NVFP4) or `uint8` (MX formats, E8M0). A `torch.` prefix is allowed.' },
  zp_dtype: { name: 'zp_dtype', type: { t: 'dtype' }, nullable: true, default: 'inferred', examples: ['int8', 'float8_e4m3fn'], doc: 'torch dtype of zero points; inferred from num_bits and type (int8 for ≤ 8 bits). Written as null for symmetric schemes.' },
  observer: { name: 'observer', type: { t: 'observer' }, nullable: true, default: 'memoryless_minmax (static); none (dynamic)', doc: 'How scales are calibrated: `memoryless_minmax`, `static_minmax`, `minmax`, `memoryless_mse`, `mse`, `nvfp4_expanded_mse`, `imatrix_mse`. Ignored (set to null) with `dynamic: true`.' },
  observer_kwargs: { name: 'observer_kwargs', type: { t: 'dict' }, default: '{}', doc: 'Extra keyword arguments for the observer (e.g. MSE grid settings).' },
};

export const QUANT_ARGS_FIELD_SPECS: readonly FieldSpec[] = QUANT_ARGS_FIELDS.map((f) => QUANT_ARGS_SPECS[f]);

const SCHEME_SPECS: Readonly<Record<(typeof SCHEME_FIELDS)[number], FieldSpec>> = {
  targets: { name: 'targets', type: { t: 'patterns', single: false, role: 'targets' }, required: true, examples: ['[Linear]'], doc: 'Modules this group quantizes: class names (`Linear`), full module names, or `re:` regular expressions matched with Python `re.match` (anchored at the start: write `re:.*q_proj$`).' },
  weights: { name: 'weights', type: { t: 'quantArgs' }, nullable: true, doc: 'QuantizationArgs for the layer weights (num_bits, type, strategy, group_size, symmetric …), or null.' },
  input_activations: { name: 'input_activations', type: { t: 'quantArgs' }, nullable: true, doc: 'QuantizationArgs for the layer inputs, or null (weight-only). Strategy must be token, tensor, group, tensor_group or attn_head.' },
  output_activations: { name: 'output_activations', type: { t: 'quantArgs' }, nullable: true, doc: 'QuantizationArgs for the layer outputs, or null (rarely used).' },
  format: { name: 'format', type: { t: 'enum', values: COMPRESSION_FORMATS.filter((f) => f !== 'mixed-precision') }, nullable: true, doc: 'Compression format for this group; inferred when omitted (`mixed-precision` is only a global format).' },
};

export const SCHEME_FIELD_SPECS: readonly FieldSpec[] = SCHEME_FIELDS.map((f) => SCHEME_SPECS[f]);

// ------------------------------------------------------------------ modifiers

const COMMON: readonly FieldSpec[] = [
  { name: 'index', type: { t: 'int' }, nullable: true, doc: 'Position of the modifier in the recipe (set by llm-compressor).' },
  { name: 'group', type: { t: 'str' }, nullable: true, doc: 'Modifier group. In a recipe the group comes from the enclosing `<name>_modifiers` key.' },
  { name: 'start', type: { t: 'float' }, nullable: true, doc: 'Step/epoch at which the modifier starts (training flows). One-shot recipes leave it unset.' },
  { name: 'end', type: { t: 'float' }, nullable: true, doc: 'Step/epoch at which the modifier ends (training flows). One-shot recipes leave it unset.' },
  { name: 'update', type: { t: 'float' }, nullable: true, doc: 'Update interval (training flows).' },
  { name: 'requires_calibration_data', type: { t: 'bool' }, hidden: true, doc: 'Whether the modifier needs a calibration dataset (set by the modifier).' },
  ...['initialized_', 'finalized_', 'started_', 'ended_'].map((name) => ({ name, type: { t: 'bool' } as const, hidden: true, doc: 'Lifecycle state (internal).' })),
];

const PATTERN_DOC = 'Class names (`Linear`), full module names (`lm_head`, `model.layers.0.mlp.down_proj`) or `re:` regular expressions (Python `re.match`: anchored at the start, so write `re:.*q_proj$`).';

const MIXIN: readonly FieldSpec[] = [
  { name: 'config_groups', type: { t: 'configGroups' }, nullable: true, doc: 'Quantization schemes by group name: `group_0: {targets: [Linear], weights: {...}, input_activations: {...}}`. Modules no group targets are not quantized. Use either this or `scheme`.' },
  { name: 'targets', type: { t: 'patterns', single: true, role: 'targets' }, default: '[Linear]', doc: `Modules the \`scheme\` applies to (ignored with \`config_groups\`, whose groups carry their own targets). ${PATTERN_DOC}` },
  { name: 'ignore', type: { t: 'patterns', single: false, role: 'ignore' }, default: '[]', examples: ['[lm_head]'], doc: `Modules never quantized by this modifier, even when a target matches; ignore takes precedence. ${PATTERN_DOC}` },
  { name: 'scheme', type: { t: 'scheme' }, nullable: true, doc: 'A preset scheme name applied to `targets` (`W4A16`, `W8A8`, `FP8_DYNAMIC`, `NVFP4` …), or a mapping of preset names to target lists (`{W4A16: [Linear]}`). Use either this or `config_groups`.' },
  { name: 'kv_cache_scheme', type: { t: 'quantArgs' }, nullable: true, doc: 'QuantizationArgs for the KV cache (e.g. `{num_bits: 8, type: float, strategy: tensor}`), applied to attention modules matching `re:.*(self_attn|attention)$`. Needs calibration data.' },
  { name: 'weight_observer', type: { t: 'observer' }, nullable: true, doc: 'Overrides the observer of every scheme\'s weights.' },
  { name: 'input_observer', type: { t: 'observer' }, nullable: true, doc: 'Overrides the observer of every scheme\'s input activations.' },
  { name: 'output_observer', type: { t: 'observer' }, nullable: true, doc: 'Overrides the observer of every scheme\'s output activations.' },
  { name: 'observer', type: { t: 'observerMap' }, nullable: true, doc: 'Observer overrides by role: `{weights: mse, input: static_minmax, output: ...}`. Not together with weight_observer / input_observer / output_observer.' },
  { name: 'bypass_divisibility_checks', type: { t: 'bool' }, default: 'false', doc: 'Skip the check that every group-quantized layer\'s input features are divisible by group_size (only for runtimes that support ragged groups).' },
];

const SEQ_TARGETS_RETIRED: RetiredField = {
  name: 'sequential_targets',
  removed: 'it was removed from all modifiers on 2026-04-08 (llm-compressor c18e9fdc6)',
  replacement: 'pass it to `oneshot(..., sequential_targets=[...])` instead: it is a data-pipeline argument now',
};
const MIXIN_RETIRED: readonly RetiredField[] = [
  { name: 'disable_quantization_observer_epoch', removed: 'it was removed on 2025-05-02 when QuantizationMixin replaced the old quantization modifier (llm-compressor dce5e81b8)', replacement: 'delete it: one-shot calibration freezes the observers when calibration ends' },
  { name: 'num_calibration_steps', removed: 'it was removed from the quantization modifiers on 2025-05-02 (llm-compressor dce5e81b8)', replacement: 'limit calibration with `oneshot(..., num_calibration_samples=N)` instead' },
];
const SPARSEML_RETIRED: readonly RetiredField[] = [
  {
    name: 'scheme_overrides',
    removed: 'it belonged to the sparseml-era QuantizationModifier, retired in 2024 when llm-compressor moved to compressed-tensors schemes',
    replacement: 'use `config_groups` instead, one group per set of modules, e.g. `group_0: {targets: [Linear], weights: {num_bits: 8, ...}, input_activations: {...}}`',
  },
  ...['freeze_bn_stats_epoch', 'model_fuse_fn_name', 'model_fuse_fn_kwargs', 'post_oneshot_calibration', 'strict'].map((name) => ({
    name,
    removed: 'it belonged to the sparseml-era QuantizationModifier, retired in 2024 when llm-compressor moved to compressed-tensors schemes',
    replacement: 'delete it',
  })),
];

const GPTQ_FIELDS: readonly FieldSpec[] = [
  { name: 'block_size', type: { t: 'int', min: 1 }, default: '128', examples: ['128'], doc: 'Columns GPTQ quantizes per pass before the lazy error update. Must be positive.' },
  { name: 'dampening_frac', type: { t: 'float', min: 0, max: 1, exclusiveMax: true }, nullable: true, default: '0.01', examples: ['0.01', '0.001'], doc: 'Dampening added to the Hessian diagonal, as a fraction of its mean (0 ≤ x < 1). Raise it (e.g. 0.05) if Cholesky fails.' },
  { name: 'actorder', type: { t: 'gptqActorder' }, nullable: true, default: 'static', doc: 'Activation ordering: `static`/`weight` (default, no run-time cost), `group`/`dynamic` (deprecated, saves g_idx), or null (none). Must not contradict a scheme\'s own `weights.actorder`.' },
  { name: 'offload_hessians', type: { t: 'bool' }, default: 'false', doc: 'Keep Hessians on the CPU between uses: less GPU memory, slower.' },
];

const SMOOTHQUANT_FIELDS: readonly FieldSpec[] = [
  { name: 'smoothing_strength', type: { t: 'float', min: 0, max: 1 }, default: '0.5', examples: ['0.5', '0.8'], doc: 'SmoothQuant alpha, 0–1: how much activation range moves into the weights (per-channel scale = act_max^α / weight_max^(1−α)).' },
  { name: 'mappings', type: { t: 'sqMappings' }, nullable: true, default: 'inferred from the architecture', doc: 'List of `[[balance layers...], smooth layer]`: the layers sharing one input, and the layer (usually a norm) whose output is scaled. Regexes allowed. Inferred for known architectures when omitted.' },
  { name: 'ignore', type: { t: 'patterns', single: false, role: 'ignore' }, nullable: true, doc: 'Smooth layers to skip (a mapping is skipped only if all its layers are ignored).' },
  { name: 'num_calibration_steps', type: { t: 'int', min: 1 }, nullable: true, doc: 'Calibration samples to use; all when null.' },
  { name: 'calibration_function', type: { t: 'any' }, nullable: true, hidden: true, doc: 'Custom forward function (Python only).' },
  { name: 'algorithm', type: { t: 'enum', values: ['smoothquant', 'log_equalization'] }, default: 'smoothquant', doc: '`smoothquant`, or `log_equalization` (logarithmic activation equalization).' },
  { name: 'resolved_mappings_', type: { t: 'any' }, nullable: true, hidden: true, doc: 'Internal.' },
  { name: 'scales_', type: { t: 'any' }, nullable: true, hidden: true, doc: 'Internal.' },
];

const SPARSITY_FIELDS: readonly FieldSpec[] = [
  { name: 'sparsity', type: { t: 'sparsity' }, nullable: true, required: true, examples: ['0.5'], doc: 'Fraction of weights to prune (0–1), or one value per target layer. Required.' },
  { name: 'sparsity_profile', type: { t: 'enum', values: ['owl'], caseInsensitive: true }, nullable: true, doc: '`owl`: Outlier Weighed Layerwise sparsity (needs owl_m and owl_lmbda).' },
  { name: 'mask_structure', type: { t: 'nm' }, default: '"0:0"', examples: ['"2:4"', '"0:0"'], doc: '`"N:M"` structured sparsity (N zeros in every M weights, e.g. "2:4"), or `"0:0"` for unstructured. Quote it: unquoted 2:4 is a YAML 1.1 sexagesimal number.' },
  { name: 'owl_m', type: { t: 'int' }, nullable: true, doc: 'OWL: number of outliers.' },
  { name: 'owl_lmbda', type: { t: 'float' }, nullable: true, doc: 'OWL: lambda.' },
  { name: 'sequential_update', type: { t: 'bool' }, nullable: true, deprecated: '`sequential_update` is deprecated and has no effect (layers are always updated sequentially); delete it', doc: 'Deprecated, no effect.' },
  { name: 'targets', type: { t: 'patterns', single: true, role: 'targets' }, default: '[Linear]', doc: `Layers to prune. ${PATTERN_DOC}` },
  { name: 'ignore', type: { t: 'patterns', single: false, role: 'ignore' }, default: '[]', doc: `Layers not to prune. ${PATTERN_DOC}` },
];

const TRANSFORM_COMMON = (rotationValues: readonly string[], rotationDoc: string, rotationDefault: string): FieldSpec[] => [
  { name: 'rotations', type: { t: 'rotations', values: rotationValues }, default: rotationDefault, doc: rotationDoc },
  { name: 'transform_type', type: { t: 'enum', values: ['hadamard', 'random-hadamard', 'random-matrix'] }, default: 'hadamard', doc: '`hadamard` (cheapest; power-of-two sizes), `random-hadamard`, or `random-matrix` (any size, most expensive).' },
  { name: 'randomize', type: { t: 'bool' }, default: 'false', doc: 'Distinct transforms per application. Not supported yet: must stay false.' },
  { name: 'learnable', type: { t: 'bool' }, default: 'false', doc: 'Trainable transforms. Not supported yet: must stay false.' },
  { name: 'precision', type: { t: 'dtype' }, default: 'float64 (high precision)', doc: 'torch dtype used to apply and fuse the transforms.' },
  { name: 'transform_block_size', type: { t: 'int', min: 1 }, nullable: true, doc: 'Size of the block-diagonal rotation; hidden_size / head_dim must be divisible by it. Full size when null.' },
  { name: 'transform_config', type: { t: 'dict' }, nullable: true, doc: 'A full compressed-tensors TransformConfig overriding the arguments above.' },
];

const RETIRED_AWQ: readonly RetiredField[] = [
  ...['scheme', 'targets', 'ignore', 'config_groups', 'kv_cache_scheme', 'weight_observer', 'input_observer', 'output_observer', 'observer', 'bypass_divisibility_checks'].map((name) => ({
    name,
    removed: 'AWQModifier became transform-only on 2026-04-22 (llm-compressor aa5ee9526)',
    replacement: `move \`${name}\` to a QuantizationModifier (or GPTQModifier) placed after the AWQModifier`,
  })),
  SEQ_TARGETS_RETIRED,
];

export const MODIFIERS: readonly ModifierSpec[] = [
  {
    name: 'QuantizationModifier',
    category: 'quantization',
    quantization: true,
    doc: 'Post-training quantization with round-to-nearest: attaches the schemes, calibrates scales with the observers (activations need calibration data), and leaves the model ready to save in compressed-tensors format.',
    fields: [...COMMON, ...MIXIN],
    retired: [
      ...MIXIN_RETIRED,
      ...SPARSEML_RETIRED,
      SEQ_TARGETS_RETIRED,
      { name: 'sequential_update', removed: 'it was a GPTQModifier field (removed 2025-09-23), never a QuantizationModifier one; releases before 2025-07-02 silently ignored it, current ones reject unknown fields', replacement: 'delete it' },
    ],
  },
  {
    name: 'GPTQModifier',
    category: 'quantization',
    quantization: true,
    doc: 'GPTQ (arXiv 2210.17323): quantizes weights column by column, using a Hessian from calibration activations to compensate each rounding error. Takes the same scheme fields as QuantizationModifier; without them it uses the schemes an earlier QuantizationModifier attached.',
    fields: [...COMMON, ...MIXIN, ...GPTQ_FIELDS],
    retired: [
      ...MIXIN_RETIRED,
      { name: 'quantize', removed: 'it was removed on 2025-05-07 (llm-compressor a54b3d178)', replacement: 'delete it and give the scheme (`scheme` or `config_groups`) to the GPTQModifier itself' },
      { name: 'sequential_update', removed: 'it was removed from GPTQModifier on 2025-09-23 (llm-compressor 4f5d396de); layers are always quantized sequentially now', replacement: 'delete it' },
      SEQ_TARGETS_RETIRED,
      PERCDAMP,
      ...SPARSEML_RETIRED,
    ],
  },
  {
    name: 'AutoRoundModifier',
    category: 'quantization',
    quantization: true,
    doc: 'AutoRound (Intel): tunes rounding and clipping with signed gradient descent on a block-wise loss. Takes the same scheme fields as QuantizationModifier.',
    fields: [
      ...COMMON,
      ...MIXIN,
      { name: 'iters', type: { t: 'int', min: 1 }, default: '200', doc: 'Tuning iterations per decoder block.' },
      { name: 'enable_torch_compile', type: { t: 'bool' }, default: 'true', doc: 'Compile the tuning loop with torch.compile.' },
      { name: 'batch_size', type: { t: 'int', min: 1 }, default: '8', doc: 'Tuning batch size.' },
      { name: 'lr', type: { t: 'float' }, nullable: true, doc: 'Learning rate (AutoRound picks one when null).' },
      { name: 'device_ids', type: { t: 'str' }, nullable: true, examples: ['"0,1"', 'auto'], doc: 'Devices for layer dispatch during tuning, e.g. "0,1" or "auto".' },
      { name: 'disable_opt_rtn', type: { t: 'bool' }, default: 'false', doc: 'Disable the optimized round-to-nearest initialisation.' },
    ],
    retired: [SEQ_TARGETS_RETIRED],
  },
  {
    name: 'AWQModifier',
    category: 'transform',
    quantization: false,
    doc: 'AWQ (arXiv 2306.00978): scales salient input channels, searched against the quantization scheme of the modifier that follows. Transform-only: a QuantizationModifier or GPTQModifier must come after it in the recipe.',
    fields: [
      ...COMMON,
      { name: 'mappings', type: { t: 'awqMappings' }, nullable: true, default: 'inferred from the architecture', doc: 'List of `{smooth_layer: ..., balance_layers: [...], activation_hook_target: ...}`: the layer whose output is scaled and the layers consuming it. Inferred for known architectures when omitted.' },
      { name: 'offload_device', type: { t: 'str' }, nullable: true, examples: ['cpu'], doc: 'Device for cached activations (e.g. `cpu`) to save GPU memory.' },
      { name: 'duo_scaling', type: { t: 'boolOrBoth' }, default: 'true', doc: '`true`: scales from activations and weights; `false`: activations only; `"both"`: search both halves of the grid.' },
      { name: 'n_grid', type: { t: 'int', min: 1 }, default: '20', doc: 'Grid points in the scale search.' },
    ],
    retired: RETIRED_AWQ,
  },
  {
    name: 'SmoothQuantModifier',
    category: 'transform',
    quantization: false,
    doc: 'SmoothQuant (arXiv 2211.10438): moves activation outliers into the weights with per-channel scales, making W8A8 activations easier to quantize. One-shot only; needs calibration data.',
    fields: [...COMMON, ...SMOOTHQUANT_FIELDS],
    retired: [],
  },
  {
    name: 'LogarithmicEqualizationModifier',
    category: 'transform',
    quantization: false,
    deprecated: 'LogarithmicEqualizationModifier is deprecated: use SmoothQuantModifier with `algorithm: log_equalization`',
    doc: 'Deprecated alias of `SmoothQuantModifier` with `algorithm: log_equalization`.',
    fields: [...COMMON, ...SMOOTHQUANT_FIELDS],
    retired: [],
  },
  {
    name: 'SparseGPTModifier',
    category: 'pruning',
    quantization: false,
    doc: 'SparseGPT one-shot pruning: removes weights (unstructured or N:M) using second-order information from calibration data.',
    fields: [
      ...COMMON,
      ...SPARSITY_FIELDS,
      { name: 'block_size', type: { t: 'int', min: 1 }, default: '128', doc: 'Columns processed per pass.' },
      { name: 'dampening_frac', type: { t: 'float', min: 0, max: 1, exclusiveMax: true }, nullable: true, default: '0.01', doc: 'Hessian dampening as a fraction of its mean diagonal.' },
      { name: 'preserve_sparsity_mask', type: { t: 'bool' }, default: 'false', doc: 'Keep the existing zeros of an already-pruned model.' },
      { name: 'offload_hessians', type: { t: 'bool' }, default: 'false', doc: 'Keep Hessians on the CPU between uses.' },
    ],
    retired: [SEQ_TARGETS_RETIRED, PERCDAMP, TARGET_IDS],
  },
  {
    name: 'WandaPruningModifier',
    category: 'pruning',
    quantization: false,
    doc: 'Wanda one-shot pruning (arXiv 2306.11695): prunes by |weight| × input activation norm.',
    fields: [...COMMON, ...SPARSITY_FIELDS],
    retired: [SEQ_TARGETS_RETIRED, TARGET_IDS],
  },
  {
    name: 'ConstantPruningModifier',
    category: 'pruning',
    quantization: false,
    doc: 'Keeps the existing sparsity mask of the targeted parameters fixed (e.g. during fine-tuning).',
    fields: [...COMMON, { name: 'targets', type: { t: 'patterns', single: true, role: 'targets' }, required: true, examples: ['__ALL_PRUNABLE__'], doc: `Parameters whose zeros are kept (\`__ALL_PRUNABLE__\` for all). ${PATTERN_DOC}` }],
    retired: [],
  },
  {
    name: 'MagnitudePruningModifier',
    category: 'pruning',
    quantization: false,
    doc: 'Gradual magnitude pruning from `init_sparsity` to `final_sparsity` between `start` and `end` (training flows).',
    fields: [
      ...COMMON,
      { name: 'targets', type: { t: 'patterns', single: true, role: 'targets' }, required: true, doc: `Parameters to prune. ${PATTERN_DOC}` },
      { name: 'init_sparsity', type: { t: 'float', min: 0, max: 1 }, required: true, doc: 'Sparsity at `start` (0–1).' },
      { name: 'final_sparsity', type: { t: 'float', min: 0, max: 1 }, required: true, doc: 'Sparsity at `end` (0–1).' },
      { name: 'update_scheduler', type: { t: 'scheduler' }, default: 'cubic', doc: '`linear`, `cubic`, `polynomial_decay`, `polynomial`, `multi_step`, or a `calc(...)` expression.' },
      { name: 'scheduler_args', type: { t: 'dict' }, default: '{}', doc: 'Arguments for the scheduler.' },
      { name: 'mask_structure', type: { t: 'magnitudeMask' }, default: 'unstructured', doc: '`unstructured`, `channel`, `filter`, or an N:M pattern such as "2:4".' },
      { name: 'leave_enabled', type: { t: 'bool' }, default: 'false', deprecated: '`leave_enabled` is deprecated and always reset to false; delete it', doc: 'Deprecated.' },
      { name: 'apply_globally', type: { t: 'bool' }, default: 'false', doc: 'Global pruning: not implemented for PyTorch (must stay false).' },
      ...['parameterized_layers_', 'scheduler_function_', 'mask_creator_function_', 'current_sparsity_'].map((name) => ({ name, type: { t: 'any' } as const, hidden: true, doc: 'Internal.' })),
    ],
    retired: [],
  },
  {
    name: 'REAPPruningModifier',
    category: 'pruning',
    quantization: false,
    doc: 'REAP expert pruning for MoE models: drops the experts with the lowest router-weighted activation norms.',
    fields: [
      ...COMMON,
      { name: 'sparsity', type: { t: 'float', min: 0, max: 1, exclusiveMin: true, exclusiveMax: true }, required: true, examples: ['0.25'], doc: 'Fraction of experts removed per MoE layer, strictly between 0 and 1. Required.' },
      { name: 'ignore', type: { t: 'patterns', single: false, role: 'ignore' }, default: '[]', doc: 'MoE layers to skip.' },
      { name: 'report_path', type: { t: 'str' }, nullable: true, doc: 'Where to write the retained experts per layer; must end in `.json`.' },
    ],
    retired: [],
  },
  {
    name: 'SpinQuantModifier',
    category: 'transform',
    quantization: false,
    doc: 'SpinQuant (arXiv 2405.16406): rotates weights and activations (R1–R4) to shrink their dynamic range before quantization. R1/R2 fuse into weights; R3/R4 run online.',
    fields: [
      ...COMMON,
      ...TRANSFORM_COMMON(['R1', 'R2', 'R3', 'R4'], 'Rotations to apply: any of `R1`, `R2` (fused, free) and `R3`, `R4` (online).', '[R1, R2]'),
      { name: 'mappings', type: { t: 'any' }, nullable: true, doc: 'SpinQuant layer mappings; inferred when null.' },
      { name: 'norm_mappings', type: { t: 'any' }, nullable: true, doc: 'Norm-fusing mappings; inferred when null.' },
    ],
    retired: [],
  },
  {
    name: 'QuIPModifier',
    category: 'transform',
    quantization: false,
    doc: 'QuIP-style incoherence processing: Hadamard rotations on the input (`v`) and/or output (`u`) side of the targeted linear layers.',
    fields: [
      ...COMMON,
      ...TRANSFORM_COMMON(['v', 'u'], 'Which sides to rotate: `v` (input), `u` (output).', '[v]'),
      { name: 'targets', type: { t: 'patterns', single: true, role: 'targets' }, default: 'Linear', doc: `Layers to transform. ${PATTERN_DOC}` },
      { name: 'ignore', type: { t: 'patterns', single: true, role: 'ignore' }, default: 'lm_head', doc: `Layers not to transform. ${PATTERN_DOC}` },
    ],
    retired: [],
  },
];

export const MODIFIER_NAMES: readonly string[] = MODIFIERS.map((m) => m.name);

export function modifierSpec(name: string): ModifierSpec | undefined {
  return MODIFIERS.find((m) => m.name === name);
}

export function fieldSpec(modifier: ModifierSpec, name: string): FieldSpec | undefined {
  // Later definitions win (SparseGPT's block_size after the shared ones).
  for (let i = modifier.fields.length - 1; i >= 0; i--) if (modifier.fields[i]!.name === name) return modifier.fields[i];
  return undefined;
}

export function visibleFields(modifier: ModifierSpec): FieldSpec[] {
  const seen = new Set<string>();
  const out: FieldSpec[] = [];
  for (let i = modifier.fields.length - 1; i >= 0; i--) {
    const f = modifier.fields[i]!;
    if (seen.has(f.name)) continue;
    seen.add(f.name);
    if (!f.hidden) out.unshift(f);
  }
  return out;
}

export const STAGE_DOC = 'A recipe stage. Top-level keys must end in `_stage` (other keys are silently ignored by llm-compressor, except `args`); stages run in order. Inside, modifier groups are keyed `<name>_modifiers`.';
export const GROUP_DOC = 'A modifier group. Keys inside a stage must end in `_modifiers` (others are silently ignored); inside, each modifier type appears once, keyed by its class name (`QuantizationModifier: {...}`).';
export const ARGS_DOC = 'Recipe-level arguments (a mapping), kept with the recipe.';

export const OBSERVER_MAP_FIELDS: readonly FieldSpec[] = [
  { name: 'weights', type: { t: 'observer' }, doc: 'Observer for weights.' },
  { name: 'input', type: { t: 'observer' }, doc: 'Observer for input activations.' },
  { name: 'output', type: { t: 'observer' }, doc: 'Observer for output activations.' },
];

export const AWQ_MAPPING_FIELDS: readonly FieldSpec[] = [
  { name: 'smooth_layer', type: { t: 'str' }, required: true, examples: ['re:.*input_layernorm$'], doc: 'The layer whose output is scaled (usually a norm or the previous projection); name or `re:` pattern.' },
  { name: 'balance_layers', type: { t: 'patterns', single: false, role: 'targets' }, required: true, examples: ['["re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$"]'], doc: 'The layers that consume the smoothed output and absorb the inverse scale.' },
  { name: 'activation_hook_target', type: { t: 'str' }, nullable: true, doc: 'Dotted path (relative to the common parent) of the submodule whose inputs are cached; for parallel-block architectures. Usually omitted.' },
];

// ------------------------------------------------------------------ quantization configs (config.json, quantize_config.json)

export const CT_CONFIG_FIELDS: readonly FieldSpec[] = [
  { name: 'quant_method', type: { t: 'str' }, required: true, examples: ['compressed-tensors'], doc: 'Which loader reads the checkpoint: `compressed-tensors` (llm-compressor), `gptq`, `fp8` (AutoFP8), `awq` …' },
  { name: 'format', type: { t: 'enum', values: COMPRESSION_FORMATS }, examples: ['pack-quantized', 'float-quantized', 'int-quantized', 'mixed-precision'], doc: 'Global compression format (a group may override it with its own `format`); `mixed-precision` when groups differ.' },
  { name: 'config_groups', type: { t: 'configGroups' }, required: true, doc: 'Schemes by group name (`group_0: {targets, weights, input_activations, format}`); a preset name mapped to a target list (`"W4A16": ["Linear"]`) is expanded on load.' },
  { name: 'ignore', type: { t: 'patterns', single: false, role: 'ignore' }, nullable: true, default: '[]', doc: `Modules left unquantized. ${PATTERN_DOC}` },
  { name: 'kv_cache_scheme', type: { t: 'quantArgs' }, nullable: true, doc: 'QuantizationArgs of the KV cache (scales stored as `k_scale` / `v_scale` on attention modules), or null.' },
  { name: 'quantization_status', type: { t: 'enum', values: ['initialized', 'calibration', 'frozen', 'compressed', 'decompressed'] }, default: 'initialized', doc: 'Lifecycle state; saved checkpoints say `compressed`.' },
  { name: 'global_compression_ratio', type: { t: 'float' }, nullable: true, doc: 'Informational.' },
  { name: 'version', type: { t: 'str' }, doc: 'compressed-tensors version that wrote the file.' },
  { name: 'sparsity_config', type: { t: 'dict' }, nullable: true, doc: 'Sparsity compression (legacy; `{}` in current files).' },
  { name: 'transform_config', type: { t: 'dict' }, nullable: true, doc: 'Hadamard / rotation transforms (SpinQuant, QuIP), or `{}`.' },
  { name: 'run_compressed', type: { t: 'any' }, hidden: true, doc: 'Ignored; kept for backward compatibility.' },
];

export const GPTQ_CONFIG_FIELDS: readonly FieldSpec[] = [
  { name: 'bits', type: { t: 'int' }, examples: ['4', '8', '3', '2'], doc: 'Bits per weight: 2, 3, 4 or 8 (AutoGPTQ). vLLM Marlin kernels take 4 and 8 symmetric.' },
  { name: 'group_size', type: { t: 'int' }, examples: ['128', '64', '32', '-1'], doc: 'Input rows per scale group, or −1 for one group per column (per output channel).' },
  { name: 'damp_percent', type: { t: 'float', min: 0, max: 1, exclusiveMin: true, exclusiveMax: true }, default: '0.01', doc: 'Hessian dampening fraction, strictly between 0 and 1.' },
  { name: 'desc_act', type: { t: 'bool' }, default: 'true (AutoGPTQ)', doc: 'Act-order: quantize columns by decreasing activation magnitude; g_idx maps rows to groups.' },
  { name: 'static_groups', type: { t: 'bool' }, default: 'false', doc: 'Fix groups in the original column order before act-order permutation (g_idx stays monotone).' },
  { name: 'sym', type: { t: 'bool' }, default: 'true', doc: 'Symmetric quantization. Missing: AutoGPTQ warns and assumes true.' },
  { name: 'true_sequential', type: { t: 'bool' }, default: 'true', doc: 'Quantize sub-layers of a block one after another.' },
  { name: 'quant_method', type: { t: 'enum', values: ['gptq', 'awq', 'marlin'] }, default: 'gptq', doc: 'Loader selector: `gptq` (also `awq`; `marlin` is a legacy spelling of checkpoint_format marlin).' },
  { name: 'checkpoint_format', type: { t: 'enum', values: ['gptq', 'gptq_v2', 'marlin', 'bitblas', 'gemm', 'gemv', 'gemv_fast', 'gptq_p', 'ipex', 'qqq'] }, default: 'gptq', doc: '`gptq` (v1: zero points stored minus one), `gptq_v2` (zero points stored as-is), `marlin`, `bitblas` …' },
  { name: 'format', type: { t: 'str' }, doc: 'GPTQModel mirror of `checkpoint_format`.' },
  { name: 'method', type: { t: 'str' }, doc: 'GPTQModel mirror of `quant_method`.' },
  { name: 'model_name_or_path', type: { t: 'str' }, nullable: true, doc: 'Informational.' },
  { name: 'model_file_base_name', type: { t: 'str' }, nullable: true, doc: 'Base name of the weights file (AutoGPTQ).' },
  { name: 'lm_head', type: { t: 'bool' }, default: 'false', doc: 'GPTQModel: lm_head is quantized too.' },
  { name: 'pack_dtype', type: { t: 'str' }, default: 'int32', doc: 'GPTQModel: integer type the values are packed into.' },
  { name: 'dynamic', type: { t: 'dict' }, nullable: true, doc: 'GPTQModel: per-module overrides keyed by regex (`+:` include, `-:` skip).' },
  { name: 'meta', type: { t: 'dict' }, nullable: true, doc: 'GPTQModel: quantizer name, version and the tuning parameters used.' },
  { name: 'v2', type: { t: 'bool' }, hidden: true, doc: 'GPTQModel.' },
  { name: 'mse', type: { t: 'any' }, hidden: true, doc: 'GPTQModel.' },
  { name: 'act_group_aware', type: { t: 'bool' }, hidden: true, doc: 'GPTQModel.' },
  { name: 'damp_auto_increment', type: { t: 'float' }, hidden: true, doc: 'GPTQModel.' },
  { name: 'modules_in_block_to_quantize', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'tokenizer', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'dataset', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'use_exllama', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'exllama_config', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'use_cuda_fp16', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'model_seqlen', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'block_name_to_quantize', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'module_name_preceding_first_block', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'batch_size', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'pad_token_id', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'max_input_length', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'cache_block_outputs', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'use_marlin', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
  { name: 'backend', type: { t: 'any' }, hidden: true, doc: 'transformers GPTQConfig.' },
];

/** Keys older tools wrote for GPTQ / AWQ settings (read as synonyms by AutoGPTQ). */
export const GPTQ_SYNONYMS: Readonly<Record<string, string>> = { w_bit: 'bits', q_group_size: 'group_size' };

export const FP8_CONFIG_FIELDS: readonly FieldSpec[] = [
  { name: 'quant_method', type: { t: 'str' }, required: true, examples: ['fp8'], doc: '`fp8`: AutoFP8 / vLLM FP8 checkpoint.' },
  { name: 'activation_scheme', type: { t: 'enum', values: ['static', 'dynamic'] }, required: true, doc: '`static`: calibrated per-tensor `input_scale`; `dynamic`: per-token scales at run time.' },
  { name: 'ignored_layers', type: { t: 'patterns', single: false, role: 'ignore' }, nullable: true, doc: 'Layers left unquantized (AutoFP8 matches with re.search, so plain names match as substrings).' },
  { name: 'kv_cache_scheme', type: { t: 'any' }, nullable: true, doc: '`static` when k_scale / v_scale were calibrated.' },
  { name: 'weight_block_size', type: { t: 'intPair' }, nullable: true, doc: '[n, k] block scales (`weight_scale_inv`); needs `activation_scheme: dynamic` in vLLM.' },
  { name: 'modules_to_not_convert', type: { t: 'patterns', single: false, role: 'ignore' }, nullable: true, doc: 'transformers FP8 config: modules left unquantized.' },
  { name: 'fmt', type: { t: 'str' }, hidden: true, doc: 'Legacy FP8 config.' },
];
