/**
 * The checks shared by recipes and quantization configs: the diagnostics context, typed fields with
 * pydantic's lax coercions, observers and dtypes, and unknown keys. QuantizationArgs and schemes are checked
 * in schemeChecks.ts, `re:` patterns and model matching in patterns.ts, fit to a model in modelFit.ts.
 */
import { closest } from './suggest';
import { FieldSpec, OBSERVERS, TORCH_DTYPES, ValueType } from './schema';
import { PEntry, PMap, PNode, PScalar, ParsedText, Span, isNull, rangeOf, typeName } from './tree';
import type { Diagnostic, Fix, ModelLayers, Severity } from './types';
import { checkPatternList } from './patterns';

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
