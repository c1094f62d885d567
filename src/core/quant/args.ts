/**
 * compressed-tensors QuantizationArgs and QuantizationScheme: the normalised model every part of QuantLens
 * uses (inspector, quantizer, recipe validator), with the validation rules of docs/formats.md §3.2–§3.3 in the
 * order compressed-tensors applies them. Errors name the field, so editors can place them.
 */

export type QuantType = 'int' | 'float';
export type QuantStrategy = 'tensor' | 'channel' | 'group' | 'block' | 'token' | 'tensor_group' | 'attn_head';
export type ActOrder = 'group' | 'weight';

export interface QuantArgs {
  readonly numBits: number;
  readonly type: QuantType;
  readonly symmetric: boolean;
  readonly strategy: QuantStrategy;
  /** Positive for group / tensor_group strategies; undefined otherwise. */
  readonly groupSize?: number;
  readonly blockStructure?: readonly [number, number];
  readonly dynamic: boolean | 'local';
  readonly actorder?: ActOrder;
  readonly observer?: string;
  readonly scaleDtype?: string;
  readonly zpDtype?: string;
}

export interface QuantScheme {
  readonly targets: readonly string[];
  readonly weights?: QuantArgs;
  readonly inputActivations?: QuantArgs;
  readonly outputActivations?: QuantArgs;
  readonly format?: string;
}

export interface FieldError {
  /** Path of the offending field inside the object given, e.g. ['group_size'] or ['weights', 'strategy']. */
  readonly path: readonly (string | number)[];
  readonly message: string;
}

export const QUANT_ARGS_FIELDS = [
  'num_bits',
  'type',
  'symmetric',
  'group_size',
  'strategy',
  'block_structure',
  'dynamic',
  'actorder',
  'scale_dtype',
  'zp_dtype',
  'observer',
  'observer_kwargs',
] as const;
export const STRATEGIES: readonly QuantStrategy[] = ['tensor', 'channel', 'group', 'block', 'token', 'tensor_group', 'attn_head'];
export const SCHEME_FIELDS = ['targets', 'weights', 'input_activations', 'output_activations', 'format'] as const;
export const COMPRESSION_FORMATS = [
  'dense',
  'sparse-bitmask',
  'sparse-24-bitmask',
  'int-quantized',
  'float-quantized',
  'naive-quantized',
  'pack-quantized',
  'marlin-24',
  'mixed-precision',
  'nvfp4-pack-quantized',
  'mxfp4-pack-quantized',
  'mxfp8-quantized',
] as const;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates and normalises a QuantizationArgs object. Returns the args when valid, and every error found
 * (not only the first), each with the field path relative to `raw`.
 */
export function parseQuantArgs(raw: unknown, path: readonly (string | number)[] = []): { args?: QuantArgs; errors: FieldError[] } {
  const errors: FieldError[] = [];
  const err = (field: string | undefined, message: string) => errors.push({ path: field === undefined ? path : [...path, field], message });
  if (!isRecord(raw)) {
    err(undefined, 'quantization arguments must be a mapping');
    return { errors };
  }
  for (const key of Object.keys(raw)) {
    if (!(QUANT_ARGS_FIELDS as readonly string[]).includes(key)) err(key, `unknown field "${key}" (allowed: ${QUANT_ARGS_FIELDS.join(', ')})`);
  }

  let numBits = 8;
  if (raw.num_bits !== undefined) {
    if (typeof raw.num_bits !== 'number' || !Number.isInteger(raw.num_bits)) err('num_bits', 'num_bits must be an integer');
    else if (raw.num_bits < 1 || raw.num_bits > 32) err('num_bits', `num_bits ${raw.num_bits} is out of range (1–32; packing supports 1–8)`);
    else numBits = raw.num_bits;
  }

  let type: QuantType = 'int';
  if (raw.type !== undefined) {
    const t = typeof raw.type === 'string' ? raw.type.toLowerCase() : undefined;
    if (t !== 'int' && t !== 'float') err('type', `type must be "int" or "float", got ${JSON.stringify(raw.type)}`);
    else type = t;
  }

  let symmetric = true;
  if (raw.symmetric !== undefined) {
    if (typeof raw.symmetric !== 'boolean') err('symmetric', 'symmetric must be true or false');
    else symmetric = raw.symmetric;
  }

  let groupSize: number | undefined;
  let groupSizeRaw: number | undefined;
  if (raw.group_size !== undefined && raw.group_size !== null) {
    if (typeof raw.group_size !== 'number' || !Number.isInteger(raw.group_size)) err('group_size', 'group_size must be an integer');
    else if (raw.group_size < -1 || raw.group_size === 0) err('group_size', `group_size must be positive, or -1 for per-channel; got ${raw.group_size}`);
    else groupSizeRaw = raw.group_size;
  }

  let strategy: QuantStrategy | undefined;
  if (raw.strategy !== undefined && raw.strategy !== null) {
    const s = typeof raw.strategy === 'string' ? raw.strategy.toLowerCase() : undefined;
    if (!s || !(STRATEGIES as readonly string[]).includes(s)) err('strategy', `strategy must be one of ${STRATEGIES.join(', ')}; got ${JSON.stringify(raw.strategy)}`);
    else strategy = s as QuantStrategy;
  }

  let blockStructure: [number, number] | undefined;
  if (raw.block_structure !== undefined && raw.block_structure !== null) {
    let pair: unknown = raw.block_structure;
    if (typeof pair === 'string') {
      const m = /^(\d+)x(\d+)$/.exec(pair);
      pair = m ? [Number(m[1]), Number(m[2])] : undefined;
    }
    if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((n) => typeof n === 'number' && Number.isInteger(n) && n > 0)) {
      err('block_structure', 'block_structure must be [rows, cols] of two positive integers (or "RxC")');
    } else blockStructure = [pair[0], pair[1]];
  }

  let dynamic: boolean | 'local' = false;
  if (raw.dynamic !== undefined) {
    if (raw.dynamic === 'local' || typeof raw.dynamic === 'boolean') dynamic = raw.dynamic;
    else err('dynamic', 'dynamic must be true, false or "local"');
  }

  let actorder: ActOrder | undefined;
  if (raw.actorder !== undefined && raw.actorder !== null) {
    const a = raw.actorder;
    if (a === true) actorder = 'group';
    else if (a === false) actorder = undefined;
    else if (typeof a === 'string' && ['group', 'dynamic'].includes(a.toLowerCase())) actorder = 'group';
    else if (typeof a === 'string' && ['weight', 'static'].includes(a.toLowerCase())) actorder = 'weight';
    else err('actorder', `actorder must be "group", "weight" (aliases "dynamic", "static"), a boolean or null; got ${JSON.stringify(a)}`);
  }

  for (const field of ['observer', 'scale_dtype', 'zp_dtype'] as const) {
    if (raw[field] !== undefined && raw[field] !== null && typeof raw[field] !== 'string') err(field, `${field} must be a string`);
  }
  if (raw.observer_kwargs !== undefined && !isRecord(raw.observer_kwargs)) err('observer_kwargs', 'observer_kwargs must be a mapping');

  // Model-level rules, in compressed-tensors' order.
  if (strategy === undefined) {
    if (groupSizeRaw === undefined) strategy = 'tensor';
    else if (groupSizeRaw > 0) strategy = 'group';
    else strategy = 'channel';
  }
  if (groupSizeRaw !== undefined && groupSizeRaw > 0) groupSize = groupSizeRaw;
  if (strategy === 'token' && dynamic === false) err('strategy', 'static token quantization is not possible: set dynamic: true');
  if ((strategy === 'group' || strategy === 'tensor_group') && groupSize === undefined) {
    err(raw.group_size === undefined ? 'strategy' : 'group_size', `strategy ${strategy} requires group_size to be set to a positive value`);
  }
  if (groupSize !== undefined && strategy !== 'group' && strategy !== 'tensor_group') {
    err('group_size', `group_size requires strategy to be "group" (or "tensor_group"), not "${strategy}"`);
  }
  if (strategy === 'block' && !blockStructure && !errors.some((e) => e.path.at(-1) === 'block_structure')) err('strategy', 'strategy block requires block_structure');
  if (blockStructure && strategy !== 'block') err('block_structure', `block_structure requires strategy "block", not "${strategy}"`);
  if (actorder === 'group' && strategy !== 'group' && strategy !== 'tensor_group') err('actorder', `actorder "group" requires group quantization (strategy group), not "${strategy}"`);
  if (dynamic === true && !['token', 'tensor', 'tensor_group', 'group'].includes(strategy)) {
    err('dynamic', `dynamic quantization needs strategy token, tensor, tensor_group or group, not "${strategy}"`);
  }
  if (dynamic === 'local' && strategy !== 'tensor_group') err('dynamic', 'dynamic "local" is only valid with strategy tensor_group');
  if (type === 'float' && numBits !== 8 && numBits !== 4) err('num_bits', `float quantization supports 8 bits (FP8) or 4 bits (FP4), not ${numBits}`);
  if (type === 'float' && numBits === 4 && !symmetric) err('symmetric', 'FP4 cannot be asymmetric');

  if (errors.length > 0) return { errors };
  const observer = dynamic === true ? undefined : typeof raw.observer === 'string' ? raw.observer : raw.observer === null ? undefined : 'memoryless_minmax';
  return {
    args: {
      numBits,
      type,
      symmetric,
      strategy,
      groupSize,
      blockStructure,
      dynamic,
      actorder,
      observer,
      scaleDtype: typeof raw.scale_dtype === 'string' ? raw.scale_dtype : undefined,
      zpDtype: typeof raw.zp_dtype === 'string' ? raw.zp_dtype : undefined,
    },
    errors,
  };
}

/** Preset schemes (docs/formats.md §3.10), as current compressed-tensors defines them. */
export function presetScheme(name: string, targets: readonly string[] = ['Linear']): QuantScheme | undefined {
  const int = (bits: number, strategy: QuantStrategy, extra: Partial<QuantArgs> = {}): QuantArgs => ({
    numBits: bits,
    type: 'int',
    symmetric: true,
    strategy,
    dynamic: false,
    observer: 'memoryless_minmax',
    ...(strategy === 'group' ? { groupSize: 128 } : {}),
    ...extra,
  });
  const tokenDynamic = (bits: number, type: QuantType = 'int'): QuantArgs => ({ numBits: bits, type, symmetric: true, strategy: 'token', dynamic: true });
  const fp8 = (strategy: QuantStrategy, extra: Partial<QuantArgs> = {}): QuantArgs => ({ numBits: 8, type: 'float', symmetric: true, strategy, dynamic: false, observer: 'memoryless_minmax', ...extra });
  const upper = name.toUpperCase();
  switch (upper) {
    case 'UNQUANTIZED':
      return { targets };
    case 'W4A16':
      return { targets, weights: int(4, 'group') };
    case 'W4A16_ASYM':
      return { targets, weights: int(4, 'group', { symmetric: false }) };
    case 'W8A16':
      return { targets, weights: int(8, 'group') };
    case 'W8A8':
    case 'INT8':
      return { targets, weights: int(8, 'channel'), inputActivations: tokenDynamic(8) };
    case 'W4A8':
      return { targets, weights: int(4, 'group'), inputActivations: tokenDynamic(8) };
    case 'W4AFP8':
      return { targets, weights: int(4, 'group'), inputActivations: tokenDynamic(8, 'float') };
    case 'FP8':
      return { targets, weights: fp8('tensor'), inputActivations: fp8('tensor', { observer: 'static_minmax' }) };
    case 'FP8_DYNAMIC':
      return { targets, weights: fp8('channel'), inputActivations: tokenDynamic(8, 'float') };
    case 'FP8_BLOCK':
      return { targets, weights: fp8('block', { blockStructure: [128, 128] }), inputActivations: { numBits: 8, type: 'float', symmetric: true, strategy: 'group', groupSize: 128, dynamic: true } };
    case 'NVFP4A16':
      return { targets, weights: { numBits: 4, type: 'float', symmetric: true, strategy: 'tensor_group', groupSize: 16, dynamic: false, scaleDtype: 'float8_e4m3fn' } };
    case 'NVFP4':
      return {
        targets,
        weights: { numBits: 4, type: 'float', symmetric: true, strategy: 'tensor_group', groupSize: 16, dynamic: false, scaleDtype: 'float8_e4m3fn' },
        inputActivations: { numBits: 4, type: 'float', symmetric: true, strategy: 'tensor_group', groupSize: 16, dynamic: 'local', observer: 'static_minmax', scaleDtype: 'float8_e4m3fn' },
      };
    case 'MXFP4A16':
      return { targets, weights: { numBits: 4, type: 'float', symmetric: true, strategy: 'group', groupSize: 32, dynamic: false, scaleDtype: 'uint8' } };
    case 'MXFP4':
      return {
        targets,
        weights: { numBits: 4, type: 'float', symmetric: true, strategy: 'group', groupSize: 32, dynamic: false, scaleDtype: 'uint8' },
        inputActivations: { numBits: 4, type: 'float', symmetric: true, strategy: 'group', groupSize: 32, dynamic: true, scaleDtype: 'uint8' },
      };
    case 'MXFP8A16':
      return { targets, weights: { numBits: 8, type: 'float', symmetric: true, strategy: 'group', groupSize: 32, dynamic: false, scaleDtype: 'uint8' } };
    case 'MXFP8':
      return {
        targets,
        weights: { numBits: 8, type: 'float', symmetric: true, strategy: 'group', groupSize: 32, dynamic: false, scaleDtype: 'uint8' },
        inputActivations: { numBits: 8, type: 'float', symmetric: true, strategy: 'group', groupSize: 32, dynamic: true, scaleDtype: 'uint8' },
      };
  }
  // W{2..7}A{4,8,16}: int b-bit group 128, int token-dynamic activations below 16 bits (CT current).
  const wNaM = /^W([2-8])A(4|8|16)$/.exec(upper);
  if (wNaM) {
    const w = Number(wNaM[1]);
    const a = Number(wNaM[2]);
    if (w > a) return undefined;
    return { targets, weights: int(w, 'group'), ...(a < 16 ? { inputActivations: tokenDynamic(a) } : {}) };
  }
  return undefined;
}

export const PRESET_NAMES = [
  'UNQUANTIZED', 'W4A16', 'W4A16_ASYM', 'W8A16', 'W8A8', 'INT8', 'W4A8', 'W4AFP8', 'FP8', 'FP8_DYNAMIC', 'FP8_BLOCK',
  'NVFP4A16', 'NVFP4', 'MXFP4A16', 'MXFP4', 'MXFP8A16', 'MXFP8',
] as const;

/** Validates a QuantizationScheme (one config group). */
export function parseQuantScheme(raw: unknown, path: readonly (string | number)[] = []): { scheme?: QuantScheme; errors: FieldError[] } {
  const errors: FieldError[] = [];
  if (!isRecord(raw)) return { errors: [{ path, message: 'a config group must be a mapping with targets and weights / input_activations' }] };
  for (const key of Object.keys(raw)) {
    if (!(SCHEME_FIELDS as readonly string[]).includes(key)) errors.push({ path: [...path, key], message: `unknown field "${key}" in a config group (allowed: ${SCHEME_FIELDS.join(', ')})` });
  }
  let targets: string[] = [];
  if (!Array.isArray(raw.targets) || !raw.targets.every((t) => typeof t === 'string')) {
    errors.push({ path: [...path, 'targets'], message: 'targets must be a list of module names, class names or re: patterns' });
  } else targets = raw.targets as string[];
  const part = (key: 'weights' | 'input_activations' | 'output_activations') => {
    if (raw[key] === undefined || raw[key] === null) return undefined;
    const result = parseQuantArgs(raw[key], [...path, key]);
    errors.push(...result.errors);
    return result.args;
  };
  const weights = part('weights');
  const inputActivations = part('input_activations');
  const outputActivations = part('output_activations');
  for (const [key, args] of [['input_activations', inputActivations], ['output_activations', outputActivations]] as const) {
    if (args?.actorder) errors.push({ path: [...path, key, 'actorder'], message: 'actorder cannot apply to input/output activations' });
  }
  if (inputActivations && !['token', 'tensor', 'group', 'tensor_group', 'attn_head'].includes(inputActivations.strategy)) {
    errors.push({ path: [...path, 'input_activations', 'strategy'], message: `strategy "${inputActivations.strategy}" is not supported for activation quantization` });
  }
  let format: string | undefined;
  if (raw.format !== undefined && raw.format !== null) {
    if (typeof raw.format !== 'string' || !(COMPRESSION_FORMATS as readonly string[]).includes(raw.format)) {
      errors.push({ path: [...path, 'format'], message: `format must be one of ${COMPRESSION_FORMATS.join(', ')}` });
    } else if (raw.format === 'mixed-precision') {
      errors.push({ path: [...path, 'format'], message: '"mixed-precision" is only valid as the global format, not on a config group' });
    } else format = raw.format;
  }
  if (errors.length > 0) return { errors };
  return { scheme: { targets, weights, inputActivations, outputActivations, format }, errors };
}

/**
 * The compressed-tensors format a scheme is saved in (docs/formats.md §3.4), first match wins: FP4 group
 * 32 → mxfp4-pack-quantized; FP8 group 32 with uint8 scales → mxfp8-quantized; FP4 group 16 →
 * nvfp4-pack-quantized; int weights with input activations → int-quantized; int ≤ 8 bits otherwise → pack-quantized; float
 * weights with input activations → float-quantized; otherwise naive-quantized.
 */
export function inferFormat(scheme: QuantScheme): string {
  const w = scheme.weights;
  const a = scheme.inputActivations;
  if (!w) return 'dense';
  // compressed-tensors' COMPRESSION_FORMAT_PRIORITY (compressors/format.py): the microscale formats first.
  if (w.type === 'float' && w.numBits === 4 && w.groupSize === 32) return 'mxfp4-pack-quantized';
  if (w.type === 'float' && w.numBits === 8 && w.groupSize === 32 && (w.scaleDtype === 'uint8' || w.scaleDtype === 'torch.uint8')) return 'mxfp8-quantized';
  if (w.type === 'float' && w.numBits === 4 && w.groupSize === 16) return 'nvfp4-pack-quantized';
  if (w.type === 'int' && a) return 'int-quantized';
  if (w.type === 'int' && w.numBits >= 1 && w.numBits <= 8 && a?.type !== 'float') return 'pack-quantized';
  if (w.type === 'float' && a) return 'float-quantized';
  return 'naive-quantized';
}

/**
 * Whether input activations need calibration statistics: static scales (`dynamic: false`), and NVFP4's
 * `dynamic: "local"`, whose per-group scales are dynamic but whose `input_global_scale` is calibrated.
 */
export function needsInputStatistics(a: QuantArgs | undefined): boolean {
  return a !== undefined && (a.dynamic === false || a.dynamic === 'local');
}

/** Human description of a scheme the way model cards put it ("INT8 weights per channel, …"). */
export function describeArgs(args: QuantArgs, role: 'weights' | 'activations'): string {
  const kind = args.type === 'float' ? `FP${args.numBits}` : `INT${args.numBits}`;
  const granularity: Record<QuantStrategy, string> = {
    tensor: 'per tensor',
    channel: 'per channel',
    group: `group ${args.groupSize}`,
    block: `blocks ${args.blockStructure?.join('×')}`,
    token: 'per token',
    tensor_group: `group ${args.groupSize} with a global scale`,
    attn_head: 'per attention head',
  };
  const parts = [`${kind} ${role} ${granularity[args.strategy]}`];
  if (role === 'activations') parts.push(args.dynamic ? '(dynamic)' : '(static)');
  if (!args.symmetric && args.type === 'int') parts.push('asymmetric');
  if (args.actorder) parts.push(`act-order (${args.actorder})`);
  return parts.join(' ');
}
