/**
 * The checks shared by recipes and quantization configs: typed fields with pydantic's lax coercions,
 * QuantizationArgs and QuantizationScheme (rules from src/core/quant/args.ts, errors placed on the exact
 * node), `re:` patterns (src/core/quant/match.ts), and matching targets / ignore entries against a model.
 */
import { QUANT_ARGS_FIELDS, QuantArgs, QuantScheme, SCHEME_FIELDS, STRATEGIES, parseQuantArgs, parseQuantScheme, presetScheme } from '../quant/args';
import { CompiledPattern, PatternError, compilePattern } from '../quant/match';
import { closest } from './suggest';
import { ALL_PRESETS, FieldSpec, OBSERVERS, TORCH_DTYPES, ValueType } from './schema';
import { PEntry, PMap, PNode, PScalar, ParsedText, Span, entry, isNull, rangeOf, typeName } from './tree';
import type { Diagnostic, Fix, ModelLayer, ModelLayers, Severity } from './types';

export class Ctx {
  readonly diagnostics: Diagnostic[] = [];

  constructor(
    readonly parsed: ParsedText,
    readonly model?: ModelLayers,
    /** Unknown observers are errors in recipes (calibration fails); loaders of a saved config ignore them. */
    readonly observersMatter = true,
  ) {}

  add(severity: Severity, code: string, span: Span, message: string, fix?: Fix): void {
    this.diagnostics.push({ severity, code, message, range: rangeOf(this.parsed, span), ...(fix ? { fix } : {}) });
  }

  error(code: string, span: Span, message: string, fix?: Fix): void {
    this.add('error', code, span, message, fix);
  }

  warning(code: string, span: Span, message: string, fix?: Fix): void {
    this.add('warning', code, span, message, fix);
  }

  replace(title: string, span: Span, newText: string): Fix {
    return { title, edits: [{ range: rangeOf(this.parsed, span), newText }] };
  }

  insert(title: string, at: number, newText: string): Fix {
    return { title, edits: [{ range: rangeOf(this.parsed, { start: at, end: at }), newText }] };
  }

  /** Replaces a scalar keeping its quoting (JSON strings, quoted YAML). */
  replaceScalar(title: string, node: PNode, newValue: string): Fix {
    return this.replace(title, node.span, this.quoted(node, newValue));
  }

  /** `value` written the way `like` is written (bare, 'single' or "double" quoted; always double in JSON). */
  quoted(like: PNode, value: string): string {
    if (like.kind !== 'scalar' || !like.quoted) return this.parsed.json ? JSON.stringify(value) : value;
    const first = this.parsed.text[like.span.start];
    if (first === "'") return `'${value.replace(/'/g, "''")}'`;
    return JSON.stringify(value);
  }

  /** Column (characters from the line start) of an offset. */
  column(offset: number): number {
    return rangeOf(this.parsed, { start: offset, end: offset }).start.character;
  }

  /** A fix that adds `key: value` as a sibling right after `after` in its mapping. */
  insertSibling(title: string, map: PMap, after: PEntry, key: string, value: string): Fix {
    if (this.parsed.json) return this.insert(title, after.value.span.end, `, "${key}": ${value}`);
    if (map.flow) return this.insert(title, after.value.span.end, `, ${key}: ${value}`);
    const indent = ' '.repeat(this.column(after.keySpan.start));
    return this.insert(title, lineEnd(this.parsed.text, after.value.span.end), `\n${indent}${key}: ${value}`);
  }
}

/** The end of the line holding `offset` (before its line break; a trailing comment stays on its line). */
export function lineEnd(text: string, offset: number): number {
  let end = offset;
  while (end < text.length && text[end] !== '\n' && text[end] !== '\r') end++;
  return end;
}

// ------------------------------------------------------------------ pydantic-style coercions

export function laxInt(node: PNode): number | undefined {
  if (node.kind !== 'scalar') return undefined;
  const v = node.value;
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)) return Number(v.trim());
  return undefined;
}

export function laxFloat(node: PNode): number | undefined {
  if (node.kind !== 'scalar') return undefined;
  const v = node.value;
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/.test(v)) return Number(v.trim());
  return undefined;
}

const TRUE_STRINGS = new Set(['1', 'on', 't', 'true', 'y', 'yes']);
const FALSE_STRINGS = new Set(['0', 'off', 'f', 'false', 'n', 'no']);

export function laxBool(node: PNode): boolean | undefined {
  if (node.kind !== 'scalar') return undefined;
  const v = node.value;
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (TRUE_STRINGS.has(s)) return true;
    if (FALSE_STRINGS.has(s)) return false;
  }
  return undefined;
}

export const strValue = (node: PNode): string | undefined => (node.kind === 'scalar' && typeof node.value === 'string' ? node.value : undefined);

/** A plain scalar written like `2:4` that YAML 1.1 read as a sexagesimal number. */
export function sexagesimal(node: PNode): string | undefined {
  if (node.kind === 'scalar' && typeof node.value === 'number' && !node.quoted && node.source && /^[-+]?\d+(:[0-5]?\d)+(\.\d*)?$/.test(node.source)) return node.source;
  return undefined;
}

// ------------------------------------------------------------------ field checks

export interface CheckedField {
  readonly ok: boolean;
  readonly value?: unknown;
}

const describeType = (t: ValueType): string => {
  switch (t.t) {
    case 'int':
      return 'an integer';
    case 'float':
      return 'a number';
    case 'bool':
      return 'true or false';
    case 'str':
    case 'observer':
    case 'dtype':
      return 'a string';
    case 'enum':
      return `one of ${t.values.join(', ')}`;
    case 'patterns':
      return t.single ? 'a string or a list of strings' : 'a list of strings';
    case 'dict':
    case 'quantArgs':
    case 'configGroups':
    case 'observerMap':
      return 'a mapping';
    default:
      return 'a valid value';
  }
};

/**
 * Checks one field's value against its spec (type, range, allowed values). Returns the normalised
 * value when valid. Complex types (quantArgs, configGroups, scheme, mappings) are left to the caller.
 */
export function checkField(ctx: Ctx, spec: FieldSpec, e: PEntry, where: string): CheckedField {
  const node = e.value;
  const name = spec.name;
  if (isNull(node)) {
    if (spec.nullable || spec.type.t === 'any') return { ok: true, value: null };
    ctx.error('wrong-type', node.empty ? e.keySpan : node.span, `${name} ${node.empty ? 'has no value' : 'cannot be null'}${where}: it must be ${describeType(spec.type)}${spec.default ? ` (default ${spec.default})` : ''}`);
    return { ok: false };
  }
  const wrong = (expected: string) => {
    ctx.error('wrong-type', node.span, `${name} must be ${expected}, not ${typeName(node)}${where}`);
    return { ok: false };
  };
  const t = spec.type;
  switch (t.t) {
    case 'int': {
      const v = laxInt(node);
      if (v === undefined) {
        const sx = sexagesimal(node);
        if (sx) return wrong(`an integer (unquoted ${sx} is a YAML 1.1 sexagesimal number)`);
        return wrong('an integer');
      }
      if (t.min !== undefined && v < t.min) {
        ctx.error('invalid-value', node.span, `${name} must be at least ${t.min}, got ${v}${where}`);
        return { ok: false };
      }
      if (t.max !== undefined && v > t.max) {
        ctx.error('invalid-value', node.span, `${name} must be at most ${t.max}, got ${v}${where}`);
        return { ok: false };
      }
      return { ok: true, value: v };
    }
    case 'float': {
      const v = laxFloat(node);
      if (v === undefined) return wrong('a number');
      const below = t.min !== undefined && (t.exclusiveMin ? v <= t.min : v < t.min);
      const above = t.max !== undefined && (t.exclusiveMax ? v >= t.max : v > t.max);
      if (below || above || Number.isNaN(v)) {
        const lo = t.min === undefined ? '' : `${t.exclusiveMin ? '>' : '≥'} ${t.min}`;
        const hi = t.max === undefined ? '' : `${t.exclusiveMax ? '<' : '≤'} ${t.max}`;
        ctx.error('invalid-value', node.span, `${name} must be ${[lo, hi].filter(Boolean).join(' and ')}, got ${v}${where}`);
        return { ok: false };
      }
      return { ok: true, value: v };
    }
    case 'bool': {
      const v = laxBool(node);
      if (v === undefined) return wrong('true or false');
      return { ok: true, value: v };
    }
    case 'str':
    case 'observer':
    case 'dtype': {
      const v = strValue(node);
      if (v === undefined) return wrong('a string');
      if (t.t === 'observer') return { ok: checkObserver(ctx, node as PScalar, v, name, where), value: v };
      if (t.t === 'dtype') return { ok: checkDtype(ctx, node as PScalar, v, name, where), value: v };
      return { ok: true, value: v };
    }
    case 'enum': {
      const v = strValue(node);
      if (v === undefined) return wrong(`one of ${t.values.join(', ')}`);
      const found = t.values.find((x) => (t.caseInsensitive ? x.toLowerCase() === v.toLowerCase() : x === v));
      if (found) return { ok: true, value: found };
      const suggestion = closest(v, t.values);
      ctx.error('invalid-value', node.span, `${name} must be one of ${t.values.join(', ')}; got ${JSON.stringify(v)}${where}${suggestion ? ` (did you mean ${suggestion}?)` : ''}`, suggestion ? ctx.replaceScalar(`Change to ${suggestion}`, node, suggestion) : undefined);
      return { ok: false };
    }
    case 'dict':
      if (node.kind !== 'map') return wrong('a mapping');
      return { ok: true, value: node };
    case 'patterns':
      return { ok: checkPatternList(ctx, node, name, where, t.single) !== undefined };
    case 'boolOrBoth': {
      if (strValue(node) === 'both') return { ok: true, value: 'both' };
      const v = laxBool(node);
      if (v === undefined) return wrong('true, false or "both"');
      return { ok: true, value: v };
    }
    case 'gptqActorder': {
      const v = strValue(node);
      const values = ['static', 'weight', 'group', 'dynamic'];
      if (v !== undefined && values.includes(v)) return { ok: true, value: v };
      const suggestion = v !== undefined ? closest(v, values) : undefined;
      ctx.error(
        'invalid-value',
        node.span,
        `actorder must be static, weight, group, dynamic or null (exact lower case); got ${node.kind === 'scalar' ? JSON.stringify(node.value) : typeName(node)}${where}${suggestion ? ` (did you mean ${suggestion}?)` : ''}`,
        suggestion ? ctx.replaceScalar(`Change to ${suggestion}`, node, suggestion) : undefined,
      );
      return { ok: false };
    }
    case 'sparsity': {
      const one = (n: PNode): boolean => {
        const v = laxFloat(n);
        if (v === undefined) {
          ctx.error('wrong-type', n.span, `${name} must be a number between 0 and 1 (or a list of them), not ${typeName(n)}${where}`);
          return false;
        }
        if (v < 0 || v > 1) {
          ctx.error('invalid-value', n.span, `${name} must be between 0 and 1 (a fraction of weights), got ${v}${where}`);
          return false;
        }
        return true;
      };
      if (node.kind === 'seq') return { ok: node.items.map(one).every(Boolean) };
      return { ok: one(node), value: laxFloat(node) };
    }
    case 'nm':
    case 'magnitudeMask': {
      const sx = sexagesimal(node);
      if (sx) {
        ctx.error('wrong-type', node.span, `${name}: unquoted ${sx} is read by YAML 1.1 (PyYAML) as the number ${(node as PScalar).value}, not the string "${sx}": quote it`, ctx.replace(`Quote "${sx}"`, node.span, `"${sx}"`));
        return { ok: false };
      }
      const v = strValue(node);
      if (v === undefined) return wrong(t.t === 'nm' ? 'a string "N:M"' : 'unstructured, channel, filter or "N:M"');
      if (t.t === 'magnitudeMask' && ['unstructured', 'channel', 'filter'].includes(v)) return { ok: true, value: v };
      const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(v);
      if (!m) {
        ctx.error('invalid-value', node.span, `${name} must be ${t.t === 'nm' ? '' : 'unstructured, channel, filter or '}"N:M" with integers N and M (e.g. "2:4", or "0:0" for unstructured); got ${JSON.stringify(v)}${where}`);
        return { ok: false };
      }
      if (Number(m[1]) > Number(m[2])) {
        ctx.error('invalid-value', node.span, `${name} "${v}": N (weights pruned) cannot exceed M (block size)${where}`);
        return { ok: false };
      }
      return { ok: true, value: v };
    }
    case 'rotations': {
      const upper = t.values.every((x) => x === x.toUpperCase());
      if (node.kind !== 'seq') return wrong(`a list of ${t.values.join(', ')}`);
      let ok = true;
      for (const item of node.items) {
        const v = strValue(item);
        const norm = v === undefined ? undefined : upper ? v.toUpperCase() : v;
        if (norm === undefined || !t.values.includes(norm)) {
          ctx.error('invalid-value', item.span, `${name} entries must be ${t.values.join(', ')}; got ${item.kind === 'scalar' ? JSON.stringify(item.value) : typeName(item)}${where}`);
          ok = false;
        }
      }
      return { ok };
    }
    case 'scheduler': {
      const v = strValue(node);
      const known = ['linear', 'cubic', 'polynomial_decay', 'polynomial', 'multi_step'];
      if (v !== undefined && (known.includes(v) || /^calc\(.*\)$/.test(v))) return { ok: true, value: v };
      const suggestion = v !== undefined ? closest(v, known) : undefined;
      ctx.error('invalid-value', node.span, `${name} must be one of ${known.join(', ')} or calc(...); got ${node.kind === 'scalar' ? JSON.stringify(node.value) : typeName(node)}${where}`, suggestion ? ctx.replaceScalar(`Change to ${suggestion}`, node, suggestion) : undefined);
      return { ok: false };
    }
    case 'intPair': {
      if (node.kind !== 'seq' || node.items.length !== 2 || node.items.some((i) => laxInt(i) === undefined || laxInt(i)! <= 0)) return wrong('[rows, cols]: two positive integers');
      return { ok: true, value: node.items.map((i) => laxInt(i)) };
    }
    default:
      return { ok: true, value: node };
  }
}

export function checkObserver(ctx: Ctx, node: PNode, name: string, field: string, where: string): boolean {
  const norm = (s: string) => s.toLowerCase().replace(/[-\s]/g, '_');
  if (norm(name) in OBSERVERS) return true;
  const suggestion = closest(name, Object.keys(OBSERVERS));
  ctx.add(
    ctx.observersMatter ? 'error' : 'warning',
    'invalid-value',
    node.span,
    `${field}: unknown observer ${JSON.stringify(name)}${where}; llm-compressor registers ${Object.keys(OBSERVERS).join(', ')}${suggestion ? ` (did you mean ${suggestion}?)` : ''}`,
    suggestion ? ctx.replaceScalar(`Change to ${suggestion}`, node, suggestion) : undefined,
  );
  return false;
}

export function checkDtype(ctx: Ctx, node: PNode, name: string, field: string, where: string): boolean {
  const bare = name.startsWith('torch.') ? name.slice(6) : name;
  if ((TORCH_DTYPES as readonly string[]).includes(bare)) return true;
  const suggestion = closest(bare, TORCH_DTYPES);
  ctx.error('invalid-value', node.span, `${field}: no such torch dtype \`torch.${bare}\`${where}${suggestion ? ` (did you mean ${suggestion}?)` : ''}`, suggestion ? ctx.replaceScalar(`Change to ${suggestion}`, node, suggestion) : undefined);
  return false;
}

// ------------------------------------------------------------------ unknown keys

export interface UnknownKeyHint {
  /** A message replacing the generic one (the key is misplaced rather than misspelt). */
  readonly message?: string;
  readonly code?: string;
}

/** Reports a key that is not a field, with a "did you mean" fix when one is close. */
export function unknownKey(ctx: Ctx, e: PEntry, allowed: readonly string[], owner: string, options: { severity?: Severity; consequence?: string; hint?: UnknownKeyHint } = {}): void {
  const severity = options.severity ?? 'error';
  if (options.hint?.message) {
    ctx.add(severity, options.hint.code ?? 'misplaced-field', e.keySpan, options.hint.message);
    return;
  }
  const suggestion = closest(e.key, allowed);
  const consequence = options.consequence ?? 'extra fields are not permitted';
  ctx.add(
    severity,
    'unknown-field',
    e.keySpan,
    `unknown field "${e.key}" in ${owner}${suggestion ? `: did you mean "${suggestion}"?` : ''} (${consequence})`,
    suggestion ? ctx.replaceScalar(`Rename to ${suggestion}`, e.keyNode, suggestion) : undefined,
  );
}

// ------------------------------------------------------------------ patterns

export interface PatternRef {
  readonly value: string;
  readonly node: PNode;
}

/** Checks a list of targets / ignore strings (or one string when allowed); returns the strings. */
export function checkPatternList(ctx: Ctx, node: PNode, name: string, where: string, single: boolean): PatternRef[] | undefined {
  if (node.kind === 'scalar' && typeof node.value === 'string') {
    if (!single) {
      ctx.error('wrong-type', node.span, `${name} must be a list of strings, not a single string${where}: write [${node.value}]`, ctx.replace(`Wrap in a list`, node.span, `[${ctx.quoted(node, node.value)}]`));
      return undefined;
    }
    checkPattern(ctx, node, node.value, name);
    return [{ value: node.value, node }];
  }
  if (node.kind !== 'seq') {
    ctx.error('wrong-type', node.span, `${name} must be ${single ? 'a string or ' : ''}a list of strings (module names, class names or re: patterns), not ${typeName(node)}${where}`);
    return undefined;
  }
  const out: PatternRef[] = [];
  let ok = true;
  for (const item of node.items) {
    if (item.kind !== 'scalar' || typeof item.value !== 'string') {
      ctx.error('wrong-type', item.span, `${name} entries must be strings, not ${typeName(item)}${where}`);
      ok = false;
      continue;
    }
    if (checkPattern(ctx, item, item.value, name)) out.push({ value: item.value, node: item });
  }
  return ok ? out : undefined;
}

const REGEX_CHARS = /[*\\$^|()[\]+?{}]/;

/** One target / ignore string: a `re:` pattern must compile; a plain string that looks like one warns. */
export function checkPattern(ctx: Ctx, node: PNode, value: string, name: string): boolean {
  if (value.startsWith('re:')) {
    try {
      compilePattern(value);
      return true;
    } catch (error) {
      if (error instanceof PatternError) {
        ctx.error('bad-regex', node.span, `${name}: ${error.message}`);
        return false;
      }
      throw error;
    }
  }
  if (value.trim() === '') {
    ctx.error('invalid-value', node.span, `${name}: an empty string matches no module`);
    return false;
  }
  if (REGEX_CHARS.test(value) && !/^__ALL(_PRUNABLE)?__$/.test(value)) {
    const fixed = `re:${value}`;
    ctx.warning('regex-without-prefix', node.span, `${name}: "${value}" looks like a regular expression but has no "re:" prefix, so it is compared literally with module names`, ctx.replaceScalar('Add the re: prefix', node, fixed));
  }
  return true;
}

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

// ------------------------------------------------------------------ model matching

export interface MatchResult {
  /** Linear / embedding layers the pattern selects. */
  readonly layers: ModelLayer[];
  /** Any module the pattern selects (including norms and parents). */
  readonly modules: number;
  /** The pattern names a class QuantLens cannot see in a checkpoint (e.g. LlamaRMSNorm): not checked. */
  readonly unknownClass?: boolean;
}

const compiledCache = { match: new Map<string, CompiledPattern | null>(), search: new Map<string, CompiledPattern | null>() };

/** compilePattern with a small cache (the same patterns are tested against thousands of layers). */
export function compiledPattern(pattern: string, mode: 'match' | 'search' = 'match'): CompiledPattern | undefined {
  const cache = compiledCache[mode];
  let compiled = cache.get(pattern);
  if (compiled === undefined) {
    try {
      compiled = compilePattern(pattern, mode);
    } catch {
      compiled = null;
    }
    if (cache.size > 2000) cache.clear();
    cache.set(pattern, compiled);
  }
  return compiled ?? undefined;
}

/** Whether one target / ignore entry selects a layer (compressed-tensors: re.match, full name, or class name). */
export function testPattern(pattern: string, layer: Pick<ModelLayer, 'name' | 'className'>): boolean {
  if (pattern.startsWith('re:')) return compiledPattern(pattern)?.test(layer.name) ?? false;
  return layer.name === pattern || layer.className === pattern;
}

export function matchPattern(pattern: string, model: ModelLayers): MatchResult {
  if (pattern.startsWith('re:')) {
    const compiled = compiledPattern(pattern);
    if (!compiled) return { layers: [], modules: 0 };
    const layers = model.layers.filter((l) => compiled.test(l.name, l.className));
    const modules = model.modules.filter((m) => compiled.test(m)).length;
    return { layers, modules: Math.max(modules, layers.length) };
  }
  const byName = model.layers.filter((l) => l.name === pattern);
  if (byName.length > 0) return { layers: byName, modules: 1 };
  if (model.modules.includes(pattern)) return { layers: [], modules: 1 };
  const byClass = model.layers.filter((l) => l.className === pattern);
  if (byClass.length > 0) return { layers: byClass, modules: byClass.length };
  if (/^[A-Z][A-Za-z0-9_]*$/.test(pattern) || /^__ALL(_PRUNABLE)?__$/.test(pattern)) return { layers: [], modules: 0, unknownClass: true };
  return { layers: [], modules: 0 };
}

/** Warns for each pattern that selects nothing in the model (with hints for the usual mistakes). */
export function checkPatternsAgainstModel(ctx: Ctx, patterns: readonly PatternRef[], role: 'targets' | 'ignore' | 'mapping', options: { linearOnly?: boolean } = {}): void {
  const model = ctx.model;
  if (!model) return;
  const source = model.source ? ` (${model.source})` : '';
  for (const p of patterns) {
    const result = matchPattern(p.value, model);
    if (result.unknownClass) continue;
    if (result.layers.length > 0 || (!options.linearOnly && result.modules > 0)) continue;
    if (options.linearOnly && result.modules > 0) {
      ctx.warning('no-linear-match', p.node.span, `${role} entry "${p.value}" matches ${result.modules} module${result.modules === 1 ? '' : 's'} of the model but no Linear layer`);
      continue;
    }
    let hint = '';
    let fix: Fix | undefined;
    if (p.value.startsWith('re:')) {
      const body = p.value.slice(3);
      // Would it match if re: searched instead of matching at the start? (Only a hint when it lacks a leading .*.)
      const search = body.startsWith('.*') ? undefined : compiledPattern(p.value, 'search');
      const searchHits = search !== undefined && (model.layers.some((l) => search.test(l.name)) || model.modules.some((m) => search.test(m)));
      if (searchHits) {
        hint = `; re: patterns are anchored at the start of the module name (Python re.match), so it needs a leading .* (re:.*${body})`;
        const replacement = `re:.*${body}`;
        fix = ctx.replaceScalar('Add a leading .*', p.node, replacement);
      }
    } else {
      // Candidates shaped like the entry (same depth, similar length): big MoE models have 10^5 modules.
      const depth = p.value.split('.').length;
      const names = [...new Set([...model.layers.map((l) => l.name), ...model.modules])].filter((n) => Math.abs(n.length - p.value.length) <= 3 && n.split('.').length === depth).slice(0, 3000);
      const suggestion = closest(p.value, names);
      if (suggestion) {
        hint = ` (did you mean ${suggestion}?)`;
        fix = ctx.replaceScalar(`Change to ${suggestion}`, p.node, suggestion);
      } else if (role === 'ignore') hint = ': this layer does not exist in the model';
    }
    ctx.warning('no-match', p.node.span, `${role} entry "${p.value}" matches no module of the model${source}${hint}`, fix);
  }
}

export function describeLayers(layers: readonly { name: string; inFeatures?: number }[], limit = 4): string {
  const shown = layers.slice(0, limit).map((l) => `${l.name} (in_features ${l.inFeatures})`);
  return layers.length > limit ? `${shown.join(', ')} and ${layers.length - limit} more` : shown.join(', ');
}
