/**
 * Editor services over recipes and quantization configs: which documents are recipes, hover
 * documentation for every key (and for values such as strategies, presets and observers), and completion
 * of keys and values. Completion reads the indentation around the cursor rather than the parse tree, so it
 * works on the half-typed, often invalid text it is asked about.
 */
import { basename } from 'node:path';
import { presetScheme } from '../quant/args';
import { describeScheme } from '../checkpoint/scheme';
import {
  ACTORDER_DOCS,
  ALL_PRESETS,
  ARGS_DOC,
  AWQ_MAPPING_FIELDS,
  CT_CONFIG_FIELDS,
  FORMAT_DOCS,
  FP8_CONFIG_FIELDS,
  FieldSpec,
  GPTQ_CONFIG_FIELDS,
  GROUP_DOC,
  MODIFIERS,
  ModifierSpec,
  OBSERVERS,
  OBSERVER_MAP_FIELDS,
  QUANT_ARGS_FIELD_SPECS,
  SCHEME_FIELD_SPECS,
  STAGE_DOC,
  STRATEGY_DOCS,
  ValueType,
  fieldSpec,
  modifierSpec,
  visibleFields,
} from './schema';
import { lineCounterFor, offsetAt, parseText, pathAt, positionAt } from './tree';
import type { CompletionItem, Hover, ModelLayers, Position, Range } from './types';

export type DocumentKind = 'recipe' | 'config';

// ------------------------------------------------------------------ document detection

/** recipe.yaml, *recipe*.yaml|yml, or YAML whose top level holds `*_stage` keys with `*_modifiers` inside. */
export function isRecipeDocument(fileName: string, text: string): boolean {
  const name = basename(fileName).toLowerCase();
  if (!/\.ya?ml$/.test(name)) return false;
  if (name.includes('recipe')) return true;
  return /^[A-Za-z0-9_]+_stage\s*:/m.test(text) && /^[ \t]+[A-Za-z0-9_]+_modifiers\s*:/m.test(text);
}

/** config.json with a quantization_config, quantize_config.json, quant_config.json. */
export function isQuantConfigDocument(fileName: string, text: string): boolean {
  const name = basename(fileName).toLowerCase();
  if (name === 'quantize_config.json' || name === 'quant_config.json') return true;
  if (name === 'config.json') return /"(quantization_config|compression_config)"\s*:/.test(text);
  return false;
}

export function documentKind(fileName: string, text: string): DocumentKind | undefined {
  if (isRecipeDocument(fileName, text)) return 'recipe';
  if (isQuantConfigDocument(fileName, text)) return 'config';
  return undefined;
}

// ------------------------------------------------------------------ schema context of a key path

type KeyContext =
  | { readonly kind: 'root' }
  | { readonly kind: 'stage'; readonly stage: string }
  | { readonly kind: 'group' }
  | { readonly kind: 'fields'; readonly fields: readonly FieldSpec[]; readonly owner: string; readonly modifier?: ModifierSpec }
  | { readonly kind: 'configGroups' }
  | { readonly kind: 'presets' }
  | { readonly kind: 'configRoot' }
  | { readonly kind: 'none' };

function fieldsOfType(type: ValueType, owner: string): KeyContext {
  switch (type.t) {
    case 'quantArgs':
      return { kind: 'fields', fields: QUANT_ARGS_FIELD_SPECS, owner };
    case 'configGroups':
      return { kind: 'configGroups' };
    case 'observerMap':
      return { kind: 'fields', fields: OBSERVER_MAP_FIELDS, owner };
    case 'scheme':
      return { kind: 'presets' };
    default:
      return { kind: 'none' };
  }
}

function configFieldsFor(text: string, root: boolean): readonly FieldSpec[] {
  const method = /"quant_method"\s*:\s*"([^"]*)"/.exec(text)?.[1];
  if (method === 'gptq' || (method === undefined && root && /"(bits|w_bit)"\s*:/.test(text))) return GPTQ_CONFIG_FIELDS;
  if (method === 'fp8') return FP8_CONFIG_FIELDS;
  return CT_CONFIG_FIELDS;
}

/** The context of the keys of the mapping reached by `path` (keys from the root; `[]` for list items). */
function contextOf(kind: DocumentKind, path: readonly string[], text: string): KeyContext {
  if (kind === 'config') {
    let rest = path;
    const standalone = !/"(quantization_config|compression_config)"\s*:/.test(text);
    if (!standalone) {
      if (path.length === 0) return { kind: 'configRoot' };
      if (path[0] !== 'quantization_config' && path[0] !== 'compression_config') return { kind: 'none' };
      rest = path.slice(1);
    }
    const fields = configFieldsFor(text, standalone);
    let context: KeyContext = { kind: 'fields', fields, owner: 'quantization_config' };
    for (let i = 0; i < rest.length; i++) context = step(context, rest[i]!, rest.slice(0, i));
    return context;
  }
  if (path.length === 0) return { kind: 'root' };
  if (path.length === 1) return path[0]!.endsWith('_stage') ? { kind: 'stage', stage: path[0]! } : { kind: 'none' };
  if (path.length === 2) return path[1]!.endsWith('_modifiers') ? { kind: 'group' } : { kind: 'none' };
  const spec = modifierSpec(path[2]!);
  if (!spec) return { kind: 'none' };
  let context: KeyContext = { kind: 'fields', fields: visibleFields(spec), owner: spec.name, modifier: spec };
  for (let i = 3; i < path.length; i++) context = step(context, path[i]!, path.slice(3, i));
  return context;
}

function step(context: KeyContext, key: string, before: readonly string[]): KeyContext {
  if (context.kind === 'configGroups') return key === '[]' ? { kind: 'none' } : { kind: 'fields', fields: SCHEME_FIELD_SPECS, owner: `config group "${key}"` };
  if (context.kind !== 'fields') return { kind: 'none' };
  if (key === '[]') {
    const owner = before.at(-1);
    if (owner === 'mappings' && context.modifier?.name === 'AWQModifier') return { kind: 'fields', fields: AWQ_MAPPING_FIELDS, owner: 'AWQ mapping' };
    return { kind: 'none' };
  }
  const f = context.fields.find((x) => x.name === key) ?? (context.modifier ? fieldSpec(context.modifier, key) : undefined);
  if (!f) return { kind: 'none' };
  if (f.type.t === 'awqMappings') return { ...context, fields: [], owner: 'mappings' };
  const next = fieldsOfType(f.type, key);
  return next.kind === 'fields' && context.modifier ? { ...next, modifier: context.modifier } : next;
}

function fieldIn(context: KeyContext, key: string): FieldSpec | undefined {
  if (context.kind !== 'fields') return undefined;
  return context.fields.find((f) => f.name === key) ?? (context.modifier ? fieldSpec(context.modifier, key) : undefined);
}

// ------------------------------------------------------------------ documentation

function typeLabel(f: FieldSpec): string {
  const t = f.type;
  const base = (() => {
    switch (t.t) {
      case 'enum':
        return t.values.map((v) => `"${v}"`).join(' | ');
      case 'patterns':
        return t.single ? 'str | list[str]' : 'list[str]';
      case 'quantArgs':
        return 'QuantizationArgs';
      case 'configGroups':
        return 'dict[str, QuantizationScheme]';
      case 'scheme':
        return 'preset name | dict[preset, targets]';
      case 'observerMap':
        return 'dict[weights|input|output, observer]';
      case 'observer':
        return 'observer name';
      case 'dtype':
        return 'torch dtype';
      case 'sqMappings':
        return 'list[[balance layers, smooth layer]]';
      case 'awqMappings':
        return 'list[AWQMapping]';
      case 'sparsity':
        return 'float | list[float]';
      case 'nm':
        return '"N:M"';
      case 'magnitudeMask':
        return 'unstructured | channel | filter | "N:M"';
      case 'boolOrBoth':
        return 'bool | "both"';
      case 'gptqActorder':
        return 'static | weight | group | dynamic';
      case 'rotations':
        return `list[${t.values.join(' | ')}]`;
      case 'scheduler':
        return 'scheduler name';
      case 'intPair':
        return '[int, int]';
      case 'any':
        return 'any';
      default:
        return t.t;
    }
  })();
  return f.nullable ? `${base} | null` : base;
}

export function fieldMarkdown(f: FieldSpec, owner?: string): string {
  const meta = [`\`${typeLabel(f)}\``];
  if (f.required) meta.push('required');
  if (f.default !== undefined) meta.push(`default \`${f.default}\``);
  return `**${f.name}**${owner ? ` — ${owner}` : ''}\n\n${meta.join(' · ')}\n\n${f.doc}${f.deprecated ? `\n\n⚠️ ${f.deprecated}` : ''}`;
}

export function modifierMarkdown(m: ModifierSpec): string {
  const fields = visibleFields(m).filter((f) => !['index', 'group', 'start', 'end', 'update'].includes(f.name));
  const kind = m.quantization ? 'quantization modifier' : m.category === 'transform' ? 'transform modifier' : 'pruning modifier';
  return `**${m.name}** (${kind})\n\n${m.doc}${m.deprecated ? `\n\n⚠️ ${m.deprecated}` : ''}\n\nFields: ${fields.map((f) => `\`${f.name}\``).join(', ')}`;
}

function presetMarkdown(name: string): string | undefined {
  const scheme = presetScheme(name);
  if (!scheme) return undefined;
  const lines = [`**${name.toUpperCase()}** (preset scheme)`, '', scheme.weights ? describeScheme(scheme) : 'No quantization (UNQUANTIZED).'];
  const row = (label: string, a: NonNullable<typeof scheme.weights>) =>
    `- ${label}: ${a.type}${a.numBits}, ${a.strategy}${a.groupSize ? ` ${a.groupSize}` : ''}${a.blockStructure ? ` ${a.blockStructure.join('×')}` : ''}, ${a.symmetric ? 'symmetric' : 'asymmetric'}, ${a.dynamic === true ? 'dynamic' : a.dynamic === 'local' ? 'dynamic (local)' : 'static'}${a.scaleDtype ? `, scales ${a.scaleDtype}` : ''}`;
  if (scheme.weights) lines.push('', row('weights', scheme.weights));
  if (scheme.inputActivations) lines.push(row('input activations', scheme.inputActivations));
  if (name.toUpperCase() === 'W8A16') lines.push('', 'Note: compressed-tensors before 2026 defined W8A16 as INT8 per channel; current releases use group 128.');
  return lines.join('\n');
}

function valueMarkdown(f: FieldSpec | undefined, value: string): string | undefined {
  if (!f) return undefined;
  const lower = value.toLowerCase();
  if (f.name === 'strategy' && STRATEGY_DOCS[lower]) return `**${lower}** (strategy)\n\n${STRATEGY_DOCS[lower]}`;
  if (f.type.t === 'scheme') return presetMarkdown(value);
  if (f.type.t === 'observer') {
    const key = lower.replace(/[-\s]/g, '_');
    return OBSERVERS[key] ? `**${key}** (observer)\n\n${OBSERVERS[key]}` : undefined;
  }
  if (f.name === 'actorder' && ACTORDER_DOCS[lower]) return `**${lower}** (actorder)\n\n${ACTORDER_DOCS[lower]}`;
  if (f.name === 'format' && FORMAT_DOCS[value]) return `**${value}** (format)\n\n${FORMAT_DOCS[value]}`;
  if (f.name === 'dynamic' && lower === 'local') return '**local**\n\nOnly the local (group) scales are computed at run time; the global scale is calibrated. NVFP4 activations, strategy tensor_group only.';
  return undefined;
}

// ------------------------------------------------------------------ hover

export function hoverAt(text: string, position: Position, kind?: DocumentKind): Hover | undefined {
  try {
    return hover(text, position, kind);
  } catch {
    return undefined; // editor services fail soft: no hover rather than an error in the editor
  }
}

function hover(text: string, position: Position, kind?: DocumentKind): Hover | undefined {
  const docKind = kind ?? (text.trimStart().startsWith('{') ? 'config' : 'recipe');
  const parsed = parseText(text, { json: docKind === 'config' });
  const offset = offsetAt(parsed.lines, text, position);
  const { steps, onKey } = pathAt(parsed.root, offset);
  if (steps.length === 0) return undefined;
  const keys = steps.map((s) => s.key);
  const last = steps.at(-1)!;
  const toRange = (start: number, end: number): Range => ({ start: positionAt(parsed.lines, text, start), end: positionAt(parsed.lines, text, end) });

  if (onKey && last.entry) {
    const range = toRange(last.entry.keySpan.start, last.entry.keySpan.end);
    const context = contextOf(docKind, keys.slice(0, -1), text);
    const key = last.key;
    const contents = keyMarkdown(context, key);
    return contents ? { contents, range } : undefined;
  }
  // A value: a scalar under a field (or an item of a field's list).
  const node = last.node;
  if (node.kind !== 'scalar' || node.value === null) return undefined;
  const range = toRange(node.span.start, node.span.end);
  const fieldPath = last.key === '[]' ? keys.slice(0, -1) : keys;
  const context = contextOf(docKind, fieldPath.slice(0, -1), text);
  const f = fieldIn(context, fieldPath.at(-1)!);
  const value = String(node.value);
  if (context.kind === 'presets') return undefined;
  if (fieldPath.at(-2) === 'scheme' || (f?.type.t === 'scheme' && last.key === '[]')) return undefined;
  const contents = valueMarkdown(f, value);
  return contents ? { contents, range } : undefined;
}

function keyMarkdown(context: KeyContext, key: string): string | undefined {
  switch (context.kind) {
    case 'root':
      if (key === 'args') return `**args**\n\n${ARGS_DOC}`;
      return key.endsWith('_stage') ? `**${key}** (stage "${key.slice(0, -6)}")\n\n${STAGE_DOC}` : `**${key}**\n\nIgnored by llm-compressor: top-level keys must end in \`_stage\`.`;
    case 'stage':
      return key.endsWith('_modifiers') ? `**${key}** (modifier group "${key.slice(0, -10)}")\n\n${GROUP_DOC}` : `**${key}**\n\nIgnored by llm-compressor: keys inside a stage must end in \`_modifiers\`.`;
    case 'group': {
      const m = modifierSpec(key);
      return m ? modifierMarkdown(m) : `**${key}**\n\nNot an llm-compressor modifier.`;
    }
    case 'configGroups':
      return `**${key}** (config group)\n\nA QuantizationScheme: \`targets\` plus \`weights\`, \`input_activations\`, \`output_activations\` and \`format\`.`;
    case 'presets':
      return presetMarkdown(key);
    case 'configRoot':
      return key === 'quantization_config' ? `**quantization_config**\n\nHow the checkpoint is quantized; \`quant_method\` selects the loader (compressed-tensors, gptq, fp8 …).` : undefined;
    case 'fields': {
      const f = fieldIn(context, key);
      if (f) return fieldMarkdown(f, context.owner);
      const retired = context.modifier?.retired.find((r) => r.name === key);
      if (retired) return `**${key}** — retired from ${context.modifier!.name}\n\n${retired.removed}. ${retired.replacement}.`;
      return undefined;
    }
    default:
      return undefined;
  }
}

// ------------------------------------------------------------------ completion

interface LineInfo {
  readonly indent: number;
  readonly dash: boolean;
  /** Column where the content starts (after `- `). */
  readonly contentIndent: number;
  /** The key of a `key:` line, when the line has one. */
  readonly key?: string;
  /** True when the key has no inline value (it opens a block). */
  readonly opens: boolean;
  readonly blank: boolean;
}

function lineInfo(line: string): LineInfo {
  const noComment = line.replace(/(^|\s)#.*$/, '');
  const m = /^(\s*)(-\s+)?(.*)$/.exec(noComment)!;
  const indent = m[1]!.length;
  const dash = m[2] !== undefined;
  const rest = m[3]!.trimEnd();
  const contentIndent = indent + (m[2]?.length ?? 0);
  const keyMatch = /^("[^"]*"|'[^']*'|[^\s:#'"[\]{},][^:#]*?)\s*:(\s+(.*))?$/.exec(rest);
  const key = keyMatch ? keyMatch[1]!.replace(/^["']|["']$/g, '') : undefined;
  const inline = keyMatch?.[3]?.trim() ?? '';
  return { indent, dash, contentIndent, key, opens: key !== undefined && inline === '', blank: rest.length === 0 && !dash };
}

/** Keys from the root to the mapping that holds a line starting at column `indent` (before line `lineNo`). */
function parentPath(lines: readonly string[], lineNo: number, indent: number, inItem: boolean): string[] {
  const path: string[] = [];
  let current = indent;
  let allowEqual = false;
  if (inItem) {
    path.unshift('[]');
    allowEqual = true;
  }
  for (let i = lineNo - 1; i >= 0 && (current > 0 || allowEqual); i--) {
    const info = lineInfo(lines[i]!);
    if (info.blank) continue;
    if (info.dash) {
      // An item of a list: we are inside it if its content starts at or left of our column.
      if (info.indent < current && info.contentIndent <= current) {
        if (info.contentIndent < current && info.key && info.opens) path.unshift(info.key);
        path.unshift('[]');
        current = info.indent;
        allowEqual = true;
      }
      continue;
    }
    if (info.indent < current || (allowEqual && info.indent === current)) {
      if (!info.key || !info.opens) break;
      path.unshift(info.key);
      current = info.indent;
      allowEqual = false;
    }
  }
  return path;
}

function siblingKeys(lines: readonly string[], lineNo: number, indent: number): Set<string> {
  const keys = new Set<string>();
  for (const dir of [-1, 1]) {
    for (let i = lineNo + dir; i >= 0 && i < lines.length; i += dir) {
      const info = lineInfo(lines[i]!);
      if (info.blank) continue;
      if (info.dash && info.contentIndent === indent) {
        // Above: `- key: …` opens the list item whose keys we are completing. Below: the next item.
        if (dir < 0 && info.key) keys.add(info.key);
        break;
      }
      if (info.indent < indent || (info.dash && info.indent <= indent)) break;
      if (info.indent === indent && info.key) keys.add(info.key);
    }
  }
  return keys;
}

export interface CompletionOptions {
  readonly model?: ModelLayers;
  readonly kind?: DocumentKind;
}

export function completionsAt(text: string, position: Position, options: CompletionOptions = {}): CompletionItem[] {
  try {
    return completions(text, position, options);
  } catch {
    return [];
  }
}

function completions(text: string, position: Position, options: CompletionOptions): CompletionItem[] {
  const docKind = options.kind ?? (text.trimStart().startsWith('{') ? 'config' : 'recipe');
  const lc = lineCounterFor(text);
  const offset = offsetAt(lc, text, position);
  const lineStart = lc.lineStarts[position.line] ?? 0;
  const prefix = text.slice(lineStart, offset);
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  const rangeFrom = (start: number): Range => ({ start: { line: position.line, character: start }, end: position });

  if (docKind === 'config') return configCompletions(text, prefix, position, rangeFrom);

  // Flow collections on this line: `weights: {num_bits: 4, ty|` or `ignore: [lm_head, re:|`
  const flow = innermostOpen(prefix);
  if (flow) {
    const before = prefix.slice(0, flow.at);
    const ownerMatch = /([A-Za-z0-9_.-]+)\s*:\s*$/.exec(before);
    const info = lineInfo(prefix);
    const base = parentPath(lines, position.line, info.contentIndent, false);
    const ownerKeyOnLine = ownerMatch?.[1];
    const segment = prefix.slice(flow.at + 1).split(',').at(-1)!;
    const owner = ownerKeyOnLine ? [...base, ...flow.path, ownerKeyOnLine] : [...base, ...flow.path];
    if (flow.char === '[') {
      const partial = /["']?([^"',\s[]*)$/.exec(segment)!;
      return valueCompletions(docKind, owner, partial[1]!, rangeFrom(position.character - partial[1]!.length), options.model, text);
    }
    const colon = segment.indexOf(':');
    if (colon >= 0) {
      const key = segment.slice(0, colon).trim().replace(/^["']|["']$/g, '');
      const partial = /["']?([^"',\s]*)$/.exec(segment.slice(colon + 1))!;
      return valueCompletions(docKind, [...owner, key], partial[1]!, rangeFrom(position.character - partial[1]!.length), options.model, text);
    }
    const partial = /([A-Za-z0-9_.-]*)$/.exec(segment)![1]!;
    const present = new Set(prefix.slice(flow.at + 1).split(',').map((s) => s.split(':')[0]!.trim()));
    return keyCompletions(docKind, owner, partial, rangeFrom(position.character - partial.length), present, text, true, 0);
  }

  // `key: partial` → values
  const valueMatch = /^(\s*)(-\s+)?([A-Za-z0-9_."'-]+)\s*:\s+(["']?)([^"'#]*)$/.exec(prefix);
  if (valueMatch) {
    const indent = valueMatch[1]!.length + (valueMatch[2]?.length ?? 0);
    const key = valueMatch[3]!.replace(/^["']|["']$/g, '');
    const partial = valueMatch[5]!;
    const path = [...parentPath(lines, position.line, indent, valueMatch[2] !== undefined), key];
    return valueCompletions(docKind, path, partial, rangeFrom(position.character - partial.length), options.model, text);
  }
  // `- partial` → a list item: a value of the owning field, or the first key of a mapping item.
  const itemMatch = /^(\s*)-\s+(["']?)([^"'#:]*)$/.exec(prefix);
  if (itemMatch) {
    const indent = itemMatch[1]!.length;
    const partial = itemMatch[3]!;
    const owner = parentPath(lines, position.line, indent, false);
    // a list may sit at the same indent as its key
    const ownerPath = owner.length > 0 && lineOwnsListAtSameIndent(lines, position.line, indent) ? [...parentPath(lines, position.line, indent + 1, false)] : owner;
    const itemKeys = keyCompletions(docKind, [...ownerPath, '[]'], partial, rangeFrom(position.character - partial.length), new Set(), text, false, indent + 2);
    if (itemKeys.length > 0) return itemKeys;
    return valueCompletions(docKind, ownerPath, partial, rangeFrom(position.character - partial.length), options.model, text);
  }
  // a key being typed
  const keyMatch = /^(\s*)([A-Za-z0-9_.-]*)$/.exec(prefix);
  if (keyMatch) {
    const indent = keyMatch[1]!.length;
    const partial = keyMatch[2]!;
    const path = parentPath(lines, position.line, indent, false);
    const present = siblingKeys(lines, position.line, indent);
    return keyCompletions(docKind, path, partial, rangeFrom(position.character - partial.length), present, text, false, indent);
  }
  return [];
}

function lineOwnsListAtSameIndent(lines: readonly string[], lineNo: number, indent: number): boolean {
  for (let i = lineNo - 1; i >= 0; i--) {
    const info = lineInfo(lines[i]!);
    if (info.blank) continue;
    if (info.dash && info.indent === indent) continue;
    return info.indent === indent && info.key !== undefined && info.opens;
  }
  return false;
}

/** The innermost `[` / `{` left open in `prefix` (outside quotes), and the keys of enclosing flow maps. */
function innermostOpen(prefix: string): { at: number; char: '[' | '{'; path: string[] } | undefined {
  const stack: { at: number; char: '[' | '{' }[] = [];
  let quote: string | undefined;
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(prefix[i - 1]!))) return undefined;
    else if (c === '[' || c === '{') stack.push({ at: i, char: c });
    else if ((c === ']' || c === '}') && stack.length > 0) stack.pop();
  }
  const top = stack.at(-1);
  if (!top) return undefined;
  // Keys of enclosing flow maps: `a: {b: {c|` → path [b] inside the map owned by a.
  const path: string[] = [];
  for (let k = 1; k < stack.length; k++) {
    const between = prefix.slice(stack[k - 1]!.at + 1, stack[k]!.at);
    const key = /([A-Za-z0-9_.-]+)\s*:\s*$/.exec(between)?.[1];
    if (stack[k - 1]!.char === '[') path.push('[]');
    if (key) path.push(key);
  }
  return { ...top, path };
}

function keyCompletions(docKind: DocumentKind, path: readonly string[], partial: string, range: Range, present: ReadonlySet<string>, text: string, flow: boolean, indent: number): CompletionItem[] {
  const context = contextOf(docKind, path, text);
  const child = (name: string, opensBlock: boolean) => (flow || !opensBlock ? `${name}: ` : `${name}:\n${' '.repeat(indent + 2)}`);
  const items: CompletionItem[] = [];
  const push = (item: Omit<CompletionItem, 'range'>) => {
    if (present.has(item.label) && item.label !== partial) return;
    items.push({ ...item, range, sortText: String(items.length).padStart(3, '0') });
  };
  switch (context.kind) {
    case 'root':
      for (const name of ['quant_stage', 'sparsity_stage', 'smoothing_stage']) push({ label: name, kind: 'stage', detail: 'recipe stage', documentation: STAGE_DOC, insertText: child(name, true) });
      break;
    case 'stage':
      for (const name of ['quant_modifiers', 'obcq_modifiers', 'pruning_modifiers']) push({ label: name, kind: 'group', detail: 'modifier group', documentation: GROUP_DOC, insertText: child(name, true) });
      break;
    case 'group':
      for (const m of MODIFIERS) {
        if (m.deprecated) continue;
        push({ label: m.name, kind: 'modifier', detail: m.quantization ? 'quantization modifier' : `${m.category} modifier`, documentation: modifierMarkdown(m), insertText: child(m.name, true) });
      }
      break;
    case 'configGroups':
      for (let i = 0; i < 8; i++) {
        const name = `group_${i}`;
        if (present.has(name)) continue;
        push({ label: name, kind: 'group', detail: 'config group', documentation: 'A QuantizationScheme: targets, weights, input_activations …', insertText: child(name, true) });
        break;
      }
      break;
    case 'presets':
      for (const p of ALL_PRESETS) push({ label: p, kind: 'preset', detail: 'preset scheme', documentation: presetMarkdown(p), insertText: `${p}: ` });
      break;
    case 'configRoot':
      push({ label: 'quantization_config', kind: 'field', insertText: '"quantization_config": ' });
      break;
    case 'fields':
      // The modifier's own fields first, then the shared scheme fields, then the lifecycle ones.
      for (const f of [...context.fields].sort((a, b) => fieldRank(a) - fieldRank(b))) {
        if (f.hidden || f.name === 'group' || f.name === 'index') continue;
        const opens = ['quantArgs', 'configGroups', 'observerMap', 'dict', 'sqMappings', 'awqMappings'].includes(f.type.t);
        push({
          label: f.name,
          kind: 'field',
          detail: `${typeLabel(f)}${f.default !== undefined ? ` = ${f.default}` : ''}`,
          documentation: fieldMarkdown(f, context.owner),
          insertText: docKind === 'config' ? `"${f.name}": ` : child(f.name, opens),
        });
      }
      break;
    default:
      break;
  }
  return items;
}

const LIFECYCLE = new Set(['start', 'end', 'update']);
const MIXIN = new Set(['config_groups', 'targets', 'ignore', 'scheme', 'kv_cache_scheme', 'weight_observer', 'input_observer', 'output_observer', 'observer', 'bypass_divisibility_checks']);
const fieldRank = (f: FieldSpec): number => (LIFECYCLE.has(f.name) ? 2 : MIXIN.has(f.name) ? 1 : 0);

function valueCompletions(docKind: DocumentKind, path: readonly string[], partial: string, range: Range, model: ModelLayers | undefined, text: string): CompletionItem[] {
  const context = contextOf(docKind, path.slice(0, -1), text);
  const key = path.at(-1);
  if (key === undefined) return [];
  if (context.kind === 'presets') return patternValues({ name: key, type: { t: 'patterns', single: true, role: 'targets' }, doc: '' }, range, model);
  const f = fieldIn(context, key);
  if (!f) return [];
  const items: CompletionItem[] = [];
  const push = (label: string, documentation?: string, detail?: string, kind: CompletionItem['kind'] = 'value') => items.push({ label, kind, range, ...(detail ? { detail } : {}), ...(documentation ? { documentation } : {}), sortText: String(items.length).padStart(3, '0') });
  const t = f.type;
  switch (t.t) {
    case 'enum':
      for (const v of t.values) push(v, valueMarkdown(f, v) ?? (f.name === 'format' ? FORMAT_DOCS[v] : undefined));
      break;
    case 'bool':
      push('true');
      push('false');
      break;
    case 'boolOrBoth':
      push('true');
      push('false');
      push('both');
      break;
    case 'scheme':
      for (const p of ALL_PRESETS) push(p, presetMarkdown(p), 'preset scheme', 'preset');
      break;
    case 'observer':
      for (const [name, doc] of Object.entries(OBSERVERS)) push(name, doc, 'observer');
      break;
    case 'dtype':
      for (const d of ['float8_e4m3fn', 'uint8', 'bfloat16', 'float16', 'float32', 'int8']) push(d, undefined, 'torch dtype');
      break;
    case 'gptqActorder':
      for (const v of ['static', 'weight', 'group', 'dynamic']) push(v, ACTORDER_DOCS[v]);
      push('null', 'No activation ordering.');
      break;
    case 'patterns':
      return patternValues(f, range, model);
    default:
      for (const e of f.examples ?? []) push(e, valueMarkdown(f, e));
      if (f.name === 'strategy') for (const s of Object.keys(STRATEGY_DOCS)) push(s, STRATEGY_DOCS[s]);
  }
  return items.filter((i) => i.label.toLowerCase().startsWith(partial.toLowerCase()) || partial === '');
}

function patternValues(f: FieldSpec, range: Range, model: ModelLayers | undefined): CompletionItem[] {
  const items: CompletionItem[] = [];
  const seen = new Set<string>();
  const push = (label: string, detail: string, kind: CompletionItem['kind'] = 'module') => {
    if (seen.has(label)) return;
    seen.add(label);
    items.push({ label, kind, detail, range, sortText: String(items.length).padStart(3, '0') });
  };
  const role = f.type.t === 'patterns' ? f.type.role : 'targets';
  if (role === 'ignore') push('lm_head', 'the output projection');
  push('Linear', 'every linear layer', 'value');
  if (model) {
    const suffixes = new Set<string>();
    for (const l of model.layers) if (l.className === 'Linear' && l.name !== 'lm_head') suffixes.add(l.name.split('.').at(-1)!);
    for (const s of suffixes) push(`re:.*${s}$`, `every ${s} (${model.layers.filter((l) => l.name.endsWith(`.${s}`)).length} layers)`);
    if (role === 'ignore') for (const l of model.layers) push(l.name, l.inFeatures !== undefined ? `in_features ${l.inFeatures}` : 'layer');
    else push('lm_head', 'the output projection');
  } else {
    for (const s of ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']) push(`re:.*${s}$`, `every ${s}`);
    if (role === 'targets') push('lm_head', 'the output projection');
  }
  return items;
}

function configCompletions(text: string, prefix: string, position: Position, rangeFrom: (start: number) => Range): CompletionItem[] {
  // JSON: find the enclosing object keys by scanning braces before the cursor.
  const before = text.slice(0, offsetAt(lineCounterFor(text), text, position));
  const stack: { key?: string; char: string }[] = [];
  let lastKey: string | undefined;
  const re = /"((?:[^"\\]|\\.)*)"\s*:|[{}[\]]|"(?:[^"\\]|\\.)*"/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(before))) {
    if (m[1] !== undefined) lastKey = m[1];
    else if (m[0] === '{' || m[0] === '[') {
      stack.push({ key: lastKey, char: m[0] });
      lastKey = undefined;
    } else if (m[0] === '}' || m[0] === ']') stack.pop();
  }
  const path = stack.slice(1).map((s) => (s.char === '[' ? '[]' : (s.key ?? '')));
  const valueMatch = /"([^"]+)"\s*:\s*("?)([^",{}[\]]*)$/.exec(prefix);
  if (valueMatch) {
    const partial = valueMatch[3]!;
    const quoted = valueMatch[2] === '"';
    const items = valueCompletions('config', [...path, valueMatch[1]!], partial, rangeFrom(position.character - partial.length - (quoted ? 1 : 0)), undefined, text);
    return items.map((i) => ({ ...i, insertText: /^(true|false|null|-?\d+(\.\d+)?)$/.test(i.label) && !quoted ? i.label : JSON.stringify(i.label) }));
  }
  const keyMatch = /"?([A-Za-z0-9_]*)$/.exec(prefix)!;
  const partial = keyMatch[1]!;
  const quoted = keyMatch[0].startsWith('"');
  return keyCompletions('config', path, partial, rangeFrom(position.character - partial.length - (quoted ? 1 : 0)), new Set(), text, true, 0);
}
