/**
 * Target / ignore entries of recipes and quantization configs: `re:` patterns must compile
 * (src/core/quant/match.ts, Python-regex semantics), and, with a model, each entry must select something.
 */
import { CompiledPattern, PatternError, compilePattern } from '../quant/match';
import { closest } from './suggest';
import { PNode, typeName } from './tree';
import type { Fix, ModelLayer, ModelLayers } from './types';
import type { Ctx } from './checks';

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
