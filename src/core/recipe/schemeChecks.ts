/**
 * QuantizationArgs and QuantizationScheme in recipes and quantization configs: the rules of
 * src/core/quant/args.ts with errors placed on the exact node, quick fixes, preset names, and the rules
 * compressed-tensors applies later (observers, dtypes, roles, the microscale formats in microscaleChecks.ts).
 */
import { QUANT_ARGS_FIELDS, QuantArgs, QuantScheme, SCHEME_FIELDS, STRATEGIES, parseQuantArgs, parseQuantScheme, presetScheme } from '../quant/args';
import { closest } from './suggest';
import { ALL_PRESETS } from './schema';
import { PMap, PNode, Span, entry, typeName } from './tree';
import type { Fix } from './types';
import { Ctx, UnknownKeyHint, checkDtype, checkObserver, laxBool, laxInt, strValue, unknownKey } from './checks';
import { PatternRef, checkPatternList } from './patterns';
import { checkMicroscaleArgs } from './microscaleChecks';

// ------------------------------------------------------------------ QuantizationArgs and QuantizationScheme

type Role = 'weights' | 'input_activations' | 'output_activations' | 'kv_cache_scheme';

/** Converts an args mapping into the plain object args.ts validates, applying pydantic's lax coercions. */
function coerceArgs(map: PMap): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const e of map.entries) {
    if (!(QUANT_ARGS_FIELDS as readonly string[]).includes(e.key)) continue;
    const node = e.value;
    let value: unknown = plainOf(node);
    if (e.key === 'num_bits' || e.key === 'group_size') value = laxInt(node) ?? value;
    if (e.key === 'symmetric') value = laxBool(node) ?? value;
    if (e.key === 'dynamic') {
      const s = strValue(node);
      value = s !== undefined && s.toLowerCase() === 'local' ? 'local' : (laxBool(node) ?? value);
    }
    if (e.key === 'actorder' && node.kind === 'scalar' && typeof node.value === 'string' && ['true', 'false'].includes(node.value.toLowerCase())) value = node.value.toLowerCase() === 'true';
    if (e.key === 'block_structure' && node.kind === 'seq') value = node.items.map((i) => laxInt(i) ?? plainOf(i));
    out[e.key] = value;
  }
  return out;
}

function plainOf(node: PNode): unknown {
  if (node.kind === 'scalar') return node.value;
  if (node.kind === 'seq') return node.items.map(plainOf);
  const out: Record<string, unknown> = {};
  for (const e of node.entries) out[e.key] = plainOf(e.value);
  return out;
}

/** Finds the node at a field path below `node`; falls back to the deepest key found (or `fallback`). */
function spanAtPath(node: PNode, path: readonly (string | number)[], fallback: Span): Span {
  let current: PNode = node;
  let span = fallback;
  for (const step of path) {
    if (current.kind === 'map') {
      const e = entry(current, String(step));
      if (!e) return span;
      span = e.value.kind === 'scalar' && e.value.empty ? e.keySpan : e.value.span;
      current = e.value;
    } else if (current.kind === 'seq' && typeof step === 'number' && current.items[step]) {
      current = current.items[step]!;
      span = current.span;
    } else return span;
  }
  return span;
}

function argsUnknownKeys(ctx: Ctx, map: PMap, role: Role): void {
  for (const e of map.entries) {
    if ((QUANT_ARGS_FIELDS as readonly string[]).includes(e.key)) continue;
    let hint: UnknownKeyHint | undefined;
    if ((SCHEME_FIELDS as readonly string[]).includes(e.key)) hint = { message: `"${e.key}" belongs to the config group (one level up), not inside ${role}` };
    unknownKey(ctx, e, QUANT_ARGS_FIELDS, role, { hint });
  }
}

/** Extra rules on normalised args that compressed-tensors applies later (observers, dtypes, roles). */
function argsExtraChecks(ctx: Ctx, map: PMap, args: QuantArgs | undefined, role: Role): void {
  const observer = entry(map, 'observer');
  const dynamicTrue = args?.dynamic === true;
  if (observer && strValue(observer.value) !== undefined && !dynamicTrue && strValue(observer.value)!.toLowerCase() !== 'memoryless') checkObserver(ctx, observer.value, strValue(observer.value)!, 'observer', ` in ${role}`);
  for (const field of ['scale_dtype', 'zp_dtype']) {
    const e = entry(map, field);
    const v = e ? strValue(e.value) : undefined;
    if (e && v !== undefined) checkDtype(ctx, e.value, v, field, ` in ${role}`);
  }
  if (!args) return;
  const strategy = entry(map, 'strategy');
  if (role === 'weights' && args.strategy === 'token') {
    ctx.error('invalid-combination', strategy?.value.span ?? map.span, 'weights cannot use strategy token: per-token scales exist only for activations; use tensor, channel, group, tensor_group or block');
  } else if (role === 'weights' && args.dynamic === true) {
    const dyn = entry(map, 'dynamic');
    ctx.warning('dynamic-weights', dyn?.value.span ?? map.span, 'dynamic weights: no weight scales are calibrated or saved, so the checkpoint cannot be compressed; weights are normally static (dynamic: false)');
  }
  if (args.type === 'float' && args.numBits === 4 && args.groupSize !== undefined && args.groupSize !== 16 && args.groupSize !== 32) {
    const gs = entry(map, 'group_size');
    ctx.warning('fp4-group-size', gs?.value.span ?? map.span, `FP4 ${role} with group_size ${args.groupSize}: FP4 formats use groups of 16 (NVFP4) or 32 (MXFP4), and no kernel loads other sizes`);
  }
  checkMicroscaleArgs(ctx, map, args, role);
  if (role === 'kv_cache_scheme' && args.strategy !== 'tensor' && args.strategy !== 'attn_head' && args.strategy !== 'token') {
    ctx.warning('kv-strategy', strategy?.value.span ?? map.span, `kv_cache_scheme with strategy ${args.strategy}: KV caches are quantized per tensor (or per attention head)`);
  }
}

/** Validates one QuantizationArgs mapping (kv_cache_scheme, or a standalone args object). */
export function checkQuantArgs(ctx: Ctx, node: PNode, role: Role, owner: Span): QuantArgs | undefined {
  if (node.kind !== 'map') {
    ctx.error('wrong-type', node.empty ? owner : node.span, `${role} must be a mapping of QuantizationArgs (num_bits, type, strategy …), not ${typeName(node)}`);
    return undefined;
  }
  argsUnknownKeys(ctx, node, role);
  const raw = coerceArgs(node);
  const { args, errors } = parseQuantArgs(raw);
  for (const error of errors) {
    const fix = argsFix(ctx, node, raw, error.path);
    ctx.error('invalid-quant-args', spanAtPath(node, error.path, owner), `${error.message}${didYouMean(fix)}${error.path.length === 0 ? '' : ` (${role})`}`, fix);
  }
  argsExtraChecks(ctx, node, args, role);
  return args;
}

const didYouMean = (fix: Fix | undefined): string => (fix?.title.startsWith('Change to ') ? ` (did you mean ${fix.title.slice('Change to '.length)}?)` : '');

const ENUM_FIELDS: Readonly<Record<string, readonly string[]>> = {
  strategy: STRATEGIES,
  type: ['int', 'float'],
  actorder: ['static', 'weight', 'group', 'dynamic'],
};

/**
 * Quick fixes for args errors: "strategy group without group_size" → add `group_size: 128` (16 for
 * tensor_group); a non-positive group_size → 128; a misspelt strategy / type / actorder → the closest value.
 */
function argsFix(ctx: Ctx, map: PMap, raw: Record<string, unknown>, path: readonly (string | number)[]): Fix | undefined {
  const strategy = typeof raw.strategy === 'string' ? raw.strategy.toLowerCase() : undefined;
  const size = strategy === 'tensor_group' ? 16 : 128;
  const last = path.at(-1);
  const grouped = strategy === 'group' || strategy === 'tensor_group';
  if (grouped && last === 'strategy' && raw.group_size === undefined) {
    const s = entry(map, 'strategy')!;
    return ctx.insertSibling(`Add group_size: ${size}`, map, s, 'group_size', String(size));
  }
  if (grouped && last === 'group_size' && typeof raw.group_size === 'number' && raw.group_size <= 0) {
    return ctx.replace(`Set group_size to ${size}`, entry(map, 'group_size')!.value.span, String(size));
  }
  // An unknown enum value (strategy: grup): offer the closest one.
  const field = typeof last === 'string' ? last : undefined;
  if (field && ENUM_FIELDS[field] && typeof raw[field] === 'string' && !ENUM_FIELDS[field]!.includes(String(raw[field]).toLowerCase())) {
    const suggestion = closest(String(raw[field]).toLowerCase(), ENUM_FIELDS[field]!);
    const e = entry(map, field);
    if (suggestion && e) return ctx.replaceScalar(`Change to ${suggestion}`, e.value, suggestion);
  }
  return undefined;
}

export interface CheckedScheme {
  readonly scheme?: QuantScheme;
  readonly targets: PatternRef[];
  /** Nodes of the weights args, for group-size diagnostics. */
  readonly weightsNode?: PMap;
}

/**
 * Validates one QuantizationScheme mapping (a config group): unknown keys, the args of each role and the
 * scheme-level rules (args.ts parseQuantScheme), and the targets' patterns.
 */
export function checkScheme(ctx: Ctx, node: PNode, owner: Span, groupName: string): CheckedScheme {
  if (node.kind !== 'map') {
    ctx.error('wrong-type', node.empty ? owner : node.span, `config group "${groupName}" must be a mapping with targets and weights / input_activations, not ${typeName(node)}`);
    return { targets: [] };
  }
  const plain: Record<string, unknown> = {};
  for (const e of node.entries) {
    if (!(SCHEME_FIELDS as readonly string[]).includes(e.key)) {
      let hint: UnknownKeyHint | undefined;
      if ((QUANT_ARGS_FIELDS as readonly string[]).includes(e.key)) hint = { message: `"${e.key}" is a QuantizationArgs field: it belongs under weights: (or input_activations:) of config group "${groupName}", not directly in the group` };
      unknownKey(ctx, e, SCHEME_FIELDS, `config group "${groupName}"`, { hint });
      continue;
    }
    if ((e.key === 'weights' || e.key === 'input_activations' || e.key === 'output_activations') && e.value.kind === 'map') {
      argsUnknownKeys(ctx, e.value, e.key);
      plain[e.key] = coerceArgs(e.value);
    } else plain[e.key] = plainOf(e.value);
  }
  const targetsEntry = entry(node, 'targets');
  const { scheme, errors } = parseQuantScheme(plain);
  for (const error of errors) {
    const role = error.path[0];
    const argsMap = typeof role === 'string' ? entry(node, role)?.value : undefined;
    const fix = argsMap?.kind === 'map' && (role === 'weights' || role === 'input_activations' || role === 'output_activations') ? argsFix(ctx, argsMap, plain[role] as Record<string, unknown>, error.path.slice(1)) : undefined;
    const span = error.path[0] === 'targets' && !targetsEntry ? owner : spanAtPath(node, error.path, owner);
    const message = error.path[0] === 'targets' && !targetsEntry ? `config group "${groupName}" has no targets: ${error.message}` : error.message;
    ctx.error('invalid-scheme', span, `${message}${didYouMean(fix)}`, fix);
  }
  const targets = targetsEntry && targetsEntry.value.kind === 'seq' ? (checkPatternList(ctx, targetsEntry.value, 'targets', '', false) ?? []) : [];
  for (const role of ['weights', 'input_activations', 'output_activations'] as const) {
    const e = entry(node, role);
    if (!e || e.value.kind !== 'map') continue;
    const args = parseQuantArgs(plain[role]).args;
    argsExtraChecks(ctx, e.value, args, role);
  }
  const weights = entry(node, 'weights');
  return { scheme, targets, weightsNode: weights?.value.kind === 'map' ? weights.value : undefined };
}

/** A preset name check with a "did you mean" fix; returns the canonical upper-case name. */
export function checkPreset(ctx: Ctx, node: PNode, name: string, where: string): string | undefined {
  if (presetScheme(name)) return name.toUpperCase();
  const suggestion = closest(name.toUpperCase(), ALL_PRESETS);
  ctx.error(
    'unknown-preset',
    node.span,
    `unknown preset scheme "${name}"${where}; compressed-tensors defines ${ALL_PRESETS.join(', ')}${suggestion ? ` (did you mean ${suggestion}?)` : ''}`,
    suggestion ? ctx.replaceScalar(`Change to ${suggestion}`, node, suggestion) : undefined,
  );
  return undefined;
}
