/**
 * Parses recipe YAML (and JSON configs) into a small position-keeping tree, with syntax problems as
 * diagnostics, never exceptions. YAML is read with the YAML 1.1 rules of PyYAML's `yaml.safe_load`, which
 * is what llm-compressor uses: `yes`/`on` are booleans, `2:4` is the sexagesimal integer 124, merge keys
 * work, and a duplicate key silently keeps the last value. Aliases and merge keys are expanded (within the
 * limits of aliases.ts); the nodes keep the source offsets of the text they came from.
 */
import { Document, LineCounter, Scalar, isAlias, isMap, isPair, isScalar, isSeq, parseDocument } from 'yaml';
import type { ScalarTag } from 'yaml';
import { AliasBudget, AliasInfo, scanDocument } from './aliases';
import type { Diagnostic, Position, Range, Severity } from './types';

export interface Span {
  readonly start: number;
  readonly end: number;
}

export type ScalarValue = string | number | boolean | null;

export interface PScalar {
  readonly kind: 'scalar';
  readonly span: Span;
  readonly value: ScalarValue;
  /** The text as written, for plain scalars (to tell `2:4` from `124`). */
  readonly source?: string;
  readonly quoted: boolean;
  /** True for an empty value (`key:` followed by nothing). */
  readonly empty?: boolean;
}

export interface PEntry {
  readonly key: string;
  readonly keyNode: PNode;
  readonly keySpan: Span;
  readonly value: PNode;
  /** True when the entry came through a merge key (`<<: *anchor`). */
  readonly merged?: boolean;
}

export interface PMap {
  readonly kind: 'map';
  readonly empty?: false;
  readonly span: Span;
  readonly flow: boolean;
  readonly entries: readonly PEntry[];
}

export interface PSeq {
  readonly kind: 'seq';
  readonly empty?: false;
  readonly span: Span;
  readonly flow: boolean;
  readonly items: readonly PNode[];
}

export type PNode = PMap | PSeq | PScalar;

export interface ParsedText {
  readonly text: string;
  /** The document's root node; undefined for an empty document. */
  readonly root?: PNode;
  /** Syntax problems (errors, and warnings such as duplicate keys). */
  readonly diagnostics: Diagnostic[];
  /** True when a syntax error makes the tree unreliable (semantic checks are then skipped). */
  readonly broken: boolean;
  readonly lines: LineCounter;
  /** JSON text (keys and strings must stay double-quoted in fixes). */
  readonly json: boolean;
}

/** Nesting beyond this is reported and not descended into (recipes are 6–8 levels deep). */
export const MAX_DEPTH = 64;
/** Larger inputs are not parsed (a recipe is a few KB; a config.json a few hundred KB at most). */
export const MAX_TEXT_LENGTH = 16 * 1024 * 1024;

export function lineCounterFor(text: string): LineCounter {
  const lc = new LineCounter();
  lc.addNewLine(0);
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lc.addNewLine(i + 1);
  return lc;
}

export function positionAt(lines: LineCounter, text: string, offset: number): Position {
  const clamped = Math.max(0, Math.min(offset, text.length));
  const { line, col } = lines.linePos(clamped);
  return { line: line - 1, character: col - 1 };
}

export function offsetAt(lines: LineCounter, text: string, position: Position): number {
  const starts = lines.lineStarts;
  if (position.line < 0) return 0;
  if (position.line >= starts.length) return text.length;
  const lineStart = starts[position.line]!;
  const nextStart = position.line + 1 < starts.length ? starts[position.line + 1]! - 1 : text.length;
  return Math.min(lineStart + Math.max(0, position.character), nextStart);
}

export function rangeOf(parsed: Pick<ParsedText, 'lines' | 'text'>, span: Span): Range {
  return { start: positionAt(parsed.lines, parsed.text, span.start), end: positionAt(parsed.lines, parsed.text, Math.max(span.start, span.end)) };
}

// PyYAML's YAML 1.1 booleans (the `yaml` package's 1.1 schema also takes y/Y/n/N, which PyYAML reads as strings).
const pyTrue: ScalarTag = {
  identify: (value) => value === true,
  default: true,
  tag: 'tag:yaml.org,2002:bool',
  test: /^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/,
  resolve: () => new Scalar(true),
};
const pyFalse: ScalarTag = {
  identify: (value) => value === false,
  default: true,
  tag: 'tag:yaml.org,2002:bool',
  test: /^(?:no|No|NO|false|False|FALSE|off|Off|OFF)$/,
  resolve: () => new Scalar(false),
};

/** Characters YAML does not allow in a stream (PyYAML: "unacceptable character"). */
// eslint-disable-next-line no-control-regex -- matching control characters is this pattern's purpose
const NON_PRINTABLE = /[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x84\x86-\x9F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const YAML_MESSAGES: Partial<Record<string, (detail: string, key: string) => string>> = {
  TAB_AS_INDENT: () => 'tabs are not allowed as indentation in YAML: indent with spaces',
  MULTIPLE_DOCS: () => 'a recipe must be a single YAML document; llm-compressor (yaml.safe_load) rejects a stream with several `---` documents',
  DUPLICATE_KEY: (_d, key) => `duplicate key ${key}: PyYAML keeps only the last one, so the earlier value is silently dropped`,
};

/**
 * Parses YAML (`json: false`) or JSON text. For JSON, the text must also satisfy a strict JSON parser
 * (what Python's json.loads accepts), otherwise the JSON error is the only diagnostic.
 */
export function parseText(text: string, options: { json?: boolean } = {}): ParsedText {
  const diagnostics: Diagnostic[] = [];
  const lines = lineCounterFor(text);
  const span = (start: number, end: number): Span => ({ start, end: Math.max(start, end) });
  const push = (severity: Severity, code: string, message: string, s: Span) => diagnostics.push({ severity, code, message, range: rangeOf({ lines, text }, s) });

  if (text.length > MAX_TEXT_LENGTH) {
    push('error', 'too-large', `file is ${text.length} characters; QuantLens validates up to ${MAX_TEXT_LENGTH}`, span(0, 0));
    return { text, diagnostics, broken: true, lines, json: options.json === true };
  }
  const bad = NON_PRINTABLE.exec(text);
  if (bad) {
    const code = bad[0].codePointAt(0)!.toString(16).padStart(4, '0');
    push('error', options.json ? 'json-syntax' : 'yaml-syntax', `unacceptable character #x${code}: ${options.json ? 'JSON' : 'YAML'} text must be printable Unicode (is this a binary file?)`, span(bad.index, bad.index + bad[0].length));
    return { text, diagnostics, broken: true, lines, json: options.json === true };
  }
  if (options.json) {
    try {
      JSON.parse(text);
    } catch (error) {
      const message = (error as Error).message;
      const at = /position (\d+)/.exec(message);
      const offset = at ? Number(at[1]) : text.length;
      push('error', 'json-syntax', `JSON syntax error: ${message.replace(/ in JSON at position \d+.*$/, '').replace(/^JSON\.parse: /, '')}`, span(offset, offset + 1));
      return { text, diagnostics, broken: true, lines, json: options.json === true };
    }
  }

  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, {
      version: options.json ? '1.2' : '1.1',
      ...(options.json ? {} : { customTags: (tags) => [...tags.filter((t) => typeof t === 'string' || t.tag !== 'tag:yaml.org,2002:bool'), pyTrue, pyFalse] }),
      prettyErrors: false,
      // Duplicate keys are found by scanDocument: the package's own check is quadratic in a mapping's size.
      uniqueKeys: false,
      keepSourceTokens: false,
    });
  } catch (error) {
    push('error', 'yaml-syntax', `cannot parse: ${(error as Error).message}`, span(0, 0));
    return { text, diagnostics, broken: true, lines, json: options.json === true };
  }
  // Positions come from a LineCounter over the whole text (the parser's own counter stops where it gives up).
  let broken = false;
  let exhausted = false;
  const syntaxCode = options.json ? 'json-syntax' : 'yaml-syntax';
  for (const error of doc.errors) {
    let [start, end] = error.pos;
    const detail = error.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '');
    const custom = YAML_MESSAGES[error.code];
    broken = true;
    if (error.code === 'RESOURCE_EXHAUSTION') {
      exhausted = true;
      push('error', 'too-deep', `nesting is too deep to parse (${detail})`, span(start, end));
      continue;
    }
    // Point unclosed quotes and brackets at where they open, not where the parser gave up.
    if (/Missing closing ["']?quote/.test(detail)) {
      const open = unclosedQuote(text, start);
      if (open !== undefined) [start, end] = [open, lineEndOf(text, open)];
    } else if (/^Flow (sequence|map)/.test(detail) || /Missing closing [}\]]|end with a [}\]]/.test(detail)) {
      const open = unclosedBracket(text, Math.max(start, end));
      if (open !== undefined) [start, end] = [open, open + 1];
    }
    const message = custom ? custom(detail, text.slice(start, end)) : `${options.json ? 'JSON' : 'YAML'} syntax error: ${detail}`;
    push('error', syntaxCode, message, span(start, end));
  }
  for (const warning of doc.warnings) {
    const [start, end] = warning.pos;
    const detail = warning.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '');
    if (warning.code === 'TAG_RESOLVE_FAILED' && !options.json) {
      // PyYAML's safe_load constructs only the standard tags.
      push('error', syntaxCode, `${detail.replace('Unresolved tag', 'unknown tag')}: llm-compressor's yaml.safe_load cannot construct it`, span(start, end));
      continue;
    }
    push('warning', syntaxCode, `${options.json ? 'JSON' : 'YAML'}: ${detail}`, span(start, end));
  }

  let root: PNode | undefined;
  let builder: TreeBuilder | undefined;
  try {
    if (doc.contents !== null && !exhausted) {
      const scan = scanDocument(doc.contents);
      for (const key of scan.duplicateKeys) {
        const start = (key as { range?: [number, number, number] | null }).range?.[0] ?? 0;
        const name = /^("(?:[^"\\]|\\.)*"|'[^']*'|[^:\n,{}[\]]+)/.exec(text.slice(start, start + 1024))?.[1]?.trimEnd() ?? '';
        push(options.json ? 'warning' : 'error', 'duplicate-key', options.json ? `duplicate key ${name}: Python's json module keeps only the last one` : YAML_MESSAGES.DUPLICATE_KEY!('', name), span(start, start + Math.max(1, name.length)));
      }
      builder = new TreeBuilder(scan.aliases, text, lines, (s, code, message) => push('error', code, message, s));
      root = builder.node(doc.contents as unknown, 0, 0);
    }
  } catch (error) {
    push('error', 'yaml-syntax', `cannot read the document: ${(error as Error).message}`, span(0, 0));
    broken = true;
    root = undefined;
  }
  if (root && root.kind === 'scalar' && root.value === null && !root.quoted && (root.source === undefined || root.source === '' || root.source === '~')) root = undefined;
  // A tree cut short (too deep, aliases left unexpanded) would give misleading semantic errors.
  if (builder?.tooDeep || builder?.aliasBudget.exceeded) broken = true;
  return { text, root, diagnostics, broken, lines, json: options.json === true };
}

/** The opening quote of a quoted scalar left open before `before` (the first line with an odd quote count). */
function unclosedQuote(text: string, before: number): number | undefined {
  let quote: string | undefined;
  let openAt = 0;
  let lineStart = true;
  for (let i = 0; i < Math.min(before, text.length); i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) {
        if (quote === "'" && text[i + 1] === "'") i++;
        else quote = undefined;
      }
      continue;
    }
    if (c === '#' && (lineStart || /\s/.test(text[i - 1] ?? ' '))) {
      while (i < text.length && text[i] !== '\n') i++;
      lineStart = true;
      continue;
    }
    // A quote opens a scalar only where a scalar may start (after indentation, ': ', '- ', '[', '{', ',').
    if ((c === '"' || c === "'") && /(^|[\s:[{,-])$/.test(text.slice(Math.max(0, i - 1), i))) {
      quote = c;
      openAt = i;
    }
    lineStart = c === '\n';
  }
  return quote ? openAt : undefined;
}

/** The innermost `[` / `{` still open before `before` (outside quotes and comments). */
function unclosedBracket(text: string, before: number): number | undefined {
  const stack: number[] = [];
  let quote: string | undefined;
  for (let i = 0; i < Math.min(before, text.length); i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '#' && /\s/.test(text[i - 1] ?? '\n')) while (i < text.length && text[i] !== '\n') i++;
    else if (c === '[' || c === '{') stack.push(i);
    else if ((c === ']' || c === '}') && stack.length > 0) stack.pop();
  }
  return stack.at(-1);
}

function lineEndOf(text: string, offset: number): number {
  const nl = text.indexOf('\n', offset);
  return nl < 0 ? text.length : nl;
}

class TreeBuilder {
  tooDeep = false;
  readonly aliasBudget = new AliasBudget();
  private readonly reportedDepth = new Set<number>();
  /** Alias problems are reported once per alias, however many expansions meet it. */
  private readonly reportedAliases = new Set<number>();

  constructor(
    private readonly aliases: ReadonlyMap<object, AliasInfo>,
    private readonly text: string,
    private readonly lines: LineCounter,
    private readonly report: (span: Span, code: string, message: string) => void,
  ) {}

  private reportAlias(span: Span, code: string, message: string): void {
    if (this.reportedAliases.has(span.start)) return;
    this.reportedAliases.add(span.start);
    this.report(span, code, message);
  }

  private spanOf(node: unknown, fallback = 0): Span {
    const range = (node as { range?: [number, number, number] | null }).range;
    if (!range) return { start: fallback, end: fallback };
    return { start: range[0], end: Math.max(range[0], range[1]) };
  }

  node(node: unknown, depth: number, aliasDepth: number): PNode {
    const span = this.spanOf(node);
    if (depth > MAX_DEPTH) {
      this.tooDeep = true;
      if (!this.reportedDepth.has(span.start)) {
        this.reportedDepth.add(span.start);
        this.report(span, 'too-deep', `nesting deeper than ${MAX_DEPTH} levels is not supported (a recipe needs fewer than 10)`);
      }
      return { kind: 'scalar', span, value: null, quoted: false };
    }
    if (isAlias(node)) {
      const unexpanded: PScalar = { kind: 'scalar', span, value: null, quoted: false };
      const alias = this.aliases.get(node);
      if (!alias?.target) {
        this.reportAlias(span, 'yaml-syntax', `undefined alias *${node.source}: no anchor &${node.source} precedes it`);
        return unexpanded;
      }
      if (alias.recursive) {
        this.reportAlias(span, 'yaml-syntax', `alias *${alias.name} expands recursively: it sits inside the node anchored &${alias.name}`);
        return unexpanded;
      }
      // An outermost alias is charged for its whole expansion, nested aliases included, before any of it is built.
      if (aliasDepth === 0) {
        const anchorAt = this.spanOf(alias.target, span.start).start;
        const charge = this.aliasBudget.charge(alias, positionAt(this.lines, this.text, anchorAt).line + 1);
        if (!charge.expand) {
          if (charge.message) this.reportAlias(span, 'too-many-aliases', charge.message);
          return unexpanded;
        }
      }
      return this.node(alias.target, depth, aliasDepth + 1);
    }
    if (isScalar(node)) return this.scalar(node, span);
    if (isMap(node)) {
      const entries: PEntry[] = [];
      /** Index of each key in `entries` (a linear search per key is quadratic in a wide mapping). */
      const indexOf = new Map<string, number>();
      const merges: PEntry[][] = [];
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const keyNode: PNode = pair.key === null || pair.key === undefined ? { kind: 'scalar', span: { start: span.start, end: span.start }, value: null, quoted: false, empty: true } : this.node(pair.key, depth + 1, aliasDepth);
        const keySpan = pair.key && !isAlias(pair.key) ? this.spanOf(pair.key, span.start) : keyNode.span;
        const keyEnd = keySpan.end;
        const value: PNode =
          pair.value === null || pair.value === undefined || (isScalar(pair.value) && pair.value.value === null && !pair.value.source)
            ? emptyValue(pair.value, keyEnd, this.text)
            : this.node(pair.value, depth + 1, aliasDepth);
        // Merge key (YAML 1.1): `<<: *base` or `<<: [*a, *b]`.
        if (keyNode.kind === 'scalar' && keyNode.value === '<<' && !keyNode.quoted) {
          const sources = value.kind === 'seq' ? value.items : [value];
          for (const source of sources) if (source.kind === 'map') merges.push(source.entries.map((e) => ({ ...e, merged: true })));
          continue;
        }
        if (keyNode.kind !== 'scalar') this.report(keySpan, 'complex-key', 'a mapping or list cannot be a key (PyYAML: unhashable key)');
        const key = keyNode.kind === 'scalar' ? scalarKey(keyNode) : '';
        const existing = indexOf.get(key);
        const entry: PEntry = { key, keyNode, keySpan, value };
        if (existing !== undefined) entries[existing] = entry; // PyYAML keeps the last duplicate
        else {
          indexOf.set(key, entries.length);
          entries.push(entry);
        }
      }
      for (const merged of merges) {
        for (const entry of merged) {
          if (indexOf.has(entry.key)) continue;
          indexOf.set(entry.key, entries.length);
          entries.push(entry);
        }
      }
      return { kind: 'map', span, flow: node.flow === true, entries };
    }
    if (isSeq(node)) {
      const items: PNode[] = [];
      for (const item of node.items) {
        if (isPair(item)) {
          // A single-pair mapping inside a flow sequence: [a: 1]
          const inner = { kind: 'map' as const, span: this.spanOf(item.key, span.start), flow: true, entries: [] as PEntry[] };
          const keyNode = this.node(item.key, depth + 1, aliasDepth);
          const value = item.value === null || item.value === undefined ? emptyValue(null, keyNode.span.end, this.text) : this.node(item.value, depth + 1, aliasDepth);
          inner.entries.push({ key: keyNode.kind === 'scalar' ? scalarKey(keyNode) : '', keyNode, keySpan: keyNode.span, value });
          items.push(inner);
          continue;
        }
        if (item === null || item === undefined || (isScalar(item) && item.value === null && !item.source)) {
          const at = (item as { range?: [number, number, number] } | null)?.range?.[0] ?? span.start;
          items.push({ kind: 'scalar', span: { start: at, end: at }, value: null, quoted: false, empty: true });
        } else items.push(this.node(item, depth + 1, aliasDepth));
      }
      return { kind: 'seq', span, flow: node.flow === true, items };
    }
    return { kind: 'scalar', span, value: null, quoted: false };
  }

  private scalar(node: Scalar, span: Span): PScalar {
    const type = node.type;
    const quoted = type === 'QUOTE_DOUBLE' || type === 'QUOTE_SINGLE' || type === 'BLOCK_FOLDED' || type === 'BLOCK_LITERAL';
    const raw = node.value as unknown;
    let value: ScalarValue;
    if (raw === null || raw === undefined) value = null;
    else if (typeof raw === 'string' || typeof raw === 'number' || typeof raw === 'boolean') value = raw;
    else if (typeof raw === 'bigint') value = Number(raw);
    else if (raw instanceof Date) value = node.source ?? raw.toISOString();
    else value = node.source ?? String(raw);
    return { kind: 'scalar', span, value, source: node.source, quoted };
  }
}

function emptyValue(node: unknown, keyEnd: number, text: string): PScalar {
  // Place an empty value just after the colon that follows the key.
  const range = (node as { range?: [number, number, number] } | null)?.range;
  let at = range ? range[0] : keyEnd;
  if (!range) {
    const colon = text.indexOf(':', keyEnd);
    at = colon >= 0 && colon - keyEnd < 4 ? colon + 1 : keyEnd;
  }
  return { kind: 'scalar', span: { start: at, end: at }, value: null, quoted: false, empty: true };
}

function scalarKey(node: PScalar): string {
  if (node.value === null) return node.source ?? '';
  if (typeof node.value === 'boolean') return node.source ?? String(node.value);
  return String(node.value);
}

// ---------------------------------------------------------------- tree helpers

export function entry(map: PMap, key: string): PEntry | undefined {
  return map.entries.find((e) => e.key === key);
}

export function isNull(node: PNode | undefined): boolean {
  return node === undefined || (node.kind === 'scalar' && node.value === null && !node.quoted);
}

export function typeName(node: PNode): string {
  if (node.kind === 'map') return 'a mapping';
  if (node.kind === 'seq') return 'a list';
  const v = node.value;
  if (v === null) return node.empty ? 'nothing' : 'null';
  if (typeof v === 'boolean') return `the boolean ${v}`;
  if (typeof v === 'number') return Number.isInteger(v) ? `the integer ${v}` : `the number ${v}`;
  return `the string ${JSON.stringify(v)}`;
}

/** Plain JavaScript value of a node (mappings become objects; null for empty values). */
export function toPlain(node: PNode, depth = 0): unknown {
  if (depth > MAX_DEPTH) return null;
  if (node.kind === 'scalar') return node.value;
  if (node.kind === 'seq') return node.items.map((i) => toPlain(i, depth + 1));
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const e of node.entries) out[e.key] = toPlain(e.value, depth + 1);
  return out;
}

/** The innermost chain of entries whose key or value span contains `offset`. */
export interface PathStep {
  readonly key: string;
  readonly entry?: PEntry;
  /** For list items, the index; key is then `[]`. */
  readonly index?: number;
  readonly node: PNode;
}

export function pathAt(root: PNode | undefined, offset: number): { steps: PathStep[]; onKey: boolean } {
  const steps: PathStep[] = [];
  let onKey = false;
  let node = root;
  let guard = 0;
  while (node && guard++ < MAX_DEPTH + 2) {
    if (node.kind === 'map') {
      const inside = (n: PNode) => offset >= n.span.start && (n.kind === 'scalar' ? offset <= n.span.end && !n.empty : offset < n.span.end);
      const hit = node.entries.find((e) => !e.merged && offset >= e.keySpan.start && offset <= e.keySpan.end) ?? node.entries.find((e) => !e.merged && inside(e.value));
      if (!hit) break;
      if (offset >= hit.keySpan.start && offset <= hit.keySpan.end) {
        steps.push({ key: hit.key, entry: hit, node: hit.value });
        onKey = true;
        break;
      }
      steps.push({ key: hit.key, entry: hit, node: hit.value });
      node = hit.value;
      continue;
    }
    if (node.kind === 'seq') {
      const index = node.items.findIndex((i) => offset >= i.span.start && (i.kind === 'scalar' ? offset <= i.span.end : offset < i.span.end));
      if (index < 0) break;
      steps.push({ key: '[]', index, node: node.items[index]! });
      node = node.items[index];
      continue;
    }
    break;
  }
  return { steps, onKey };
}
