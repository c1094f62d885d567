/**
 * Target / ignore matching as compressed-tensors does it (docs/formats.md §3.11): `re:` patterns are Python
 * regexes applied with re.match (anchored at the start only); other strings match the full module name or
 * the module's class name. AutoFP8's ignore list uses re.search instead (unanchored).
 */

export class PatternError extends Error {}

/** Translates the Python regex syntax that appears in recipes into JavaScript syntax. */
export function pythonRegexToJs(source: string): { source: string; flags: string } {
  let flags = 'u';
  let body = source;
  // A leading inline flag group such as (?i) or (?s).
  const inline = /^\(\?([aiLmsux]+)\)/.exec(body);
  if (inline) {
    body = body.slice(inline[0].length);
    for (const f of inline[1]!) {
      if (f === 'i' || f === 'm' || f === 's') flags += f;
      else if (f !== 'u' && f !== 'a') throw new PatternError(`inline flag (?${f}) has no JavaScript equivalent`);
    }
  }
  body = body.replace(/\(\?P<([A-Za-z_]\w*)>/g, '(?<$1>').replace(/\(\?P=([A-Za-z_]\w*)\)/g, '\\k<$1>');
  body = body.replace(/\\A/g, '^').replace(/\\Z/g, '$');
  return { source: body, flags };
}

export interface CompiledPattern {
  readonly raw: string;
  readonly kind: 'regex' | 'name';
  test(moduleName: string, className?: string): boolean;
}

/** Compiles one target or ignore entry. Throws PatternError for an invalid `re:` expression. */
export function compilePattern(raw: string, mode: 'match' | 'search' = 'match'): CompiledPattern {
  if (raw.startsWith('re:')) {
    let re: RegExp;
    try {
      const { source, flags } = pythonRegexToJs(raw.slice(3));
      re = new RegExp(mode === 'match' ? `^(?:${source})` : source, flags);
    } catch (error) {
      throw new PatternError(`invalid regular expression ${JSON.stringify(raw.slice(3))}: ${(error as Error).message.replace(/^Invalid regular expression: /, '')}`);
    }
    return { raw, kind: 'regex', test: (name) => re.test(name) };
  }
  return { raw, kind: 'name', test: (name, className) => name === raw || (className !== undefined && className === raw) };
}

/** AutoFP8's ignored_layers entries: plain names match as substrings of the module name via re.search. */
export function compileAutoFp8Ignore(raw: string): CompiledPattern {
  if (raw.startsWith('re:')) return compilePattern(raw, 'search');
  return { raw, kind: 'name', test: (name) => name === raw || name.endsWith(`.${raw}`) || name.includes(raw) };
}

export interface GroupTargets {
  readonly name: string;
  readonly targets: readonly CompiledPattern[];
}

export interface Resolution {
  /** The config group that applies, when the module is targeted and not ignored. */
  readonly group?: string;
  /** The ignore entry that excludes the module (ignore takes precedence over targets). */
  readonly ignoredBy?: string;
  /** The target entry that selected the group. */
  readonly matchedTarget?: string;
}

/**
 * Which group a module belongs to. Precedence among matching targets: exact name, then regex, then
 * class name (compressed-tensors `match_targets`).
 */
export function resolveModule(moduleName: string, className: string, groups: readonly GroupTargets[], ignore: readonly CompiledPattern[]): Resolution {
  const ignored = ignore.find((p) => p.test(moduleName, className));
  if (ignored) return { ignoredBy: ignored.raw };
  let best: { group: string; target: string; rank: number } | undefined;
  for (const group of groups) {
    for (const target of group.targets) {
      if (!target.test(moduleName, className)) continue;
      const rank = target.kind === 'regex' ? 1 : target.raw === moduleName ? 0 : 2;
      if (!best || rank < best.rank) best = { group: group.name, target: target.raw, rank };
    }
  }
  return best ? { group: best.group, matchedTarget: best.target } : {};
}
