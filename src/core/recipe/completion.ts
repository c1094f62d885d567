/**
 * Completion of keys and values in recipes and quantization configs. It reads the indentation around the
 * cursor rather than the parse tree, so it works on the half-typed, often invalid text it is asked about;
 * the schema context of a key path comes from language.ts.
 */
import { ACTORDER_DOCS, ALL_PRESETS, FORMAT_DOCS, FieldSpec, GROUP_DOC, MODIFIERS, OBSERVERS, STAGE_DOC, STRATEGY_DOCS } from './schema';
import { lineCounterFor, offsetAt } from './tree';
import type { CompletionItem, ModelLayers, Position, Range } from './types';
import { DocumentKind, contextOf, fieldIn, fieldMarkdown, modifierMarkdown, presetMarkdown, typeLabel, valueMarkdown } from './language';

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
