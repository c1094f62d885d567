/**
 * Editor services over recipes and quantization configs: which documents are recipes, the schema context
 * of a key path, and hover documentation for every key (and for values such as strategies, presets and
 * observers). Completion of keys and values is in completion.ts.
 */
import { basename } from 'node:path';
import { presetScheme } from '../quant/args';
import { describeScheme } from '../checkpoint/scheme';
import {
  ACTORDER_DOCS,
  ARGS_DOC,
  AWQ_MAPPING_FIELDS,
  CT_CONFIG_FIELDS,
  FORMAT_DOCS,
  FP8_CONFIG_FIELDS,
  FieldSpec,
  GPTQ_CONFIG_FIELDS,
  GROUP_DOC,
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
import { offsetAt, parseText, pathAt, positionAt } from './tree';
import type { Hover, Position, Range } from './types';

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

export type KeyContext =
  | { readonly kind: 'root' }
  | { readonly kind: 'stage'; readonly stage: string }
  | { readonly kind: 'group' }
  | { readonly kind: 'fields'; readonly fields: readonly FieldSpec[]; readonly owner: string; readonly modifier?: ModifierSpec }
  | { readonly kind: 'configGroups' }
  | { readonly kind: 'presets' }
  | { readonly kind: 'configRoot' }
  | { readonly kind: 'none' };

export function fieldsOfType(type: ValueType, owner: string): KeyContext {
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

export function configFieldsFor(text: string, root: boolean): readonly FieldSpec[] {
  const method = /"quant_method"\s*:\s*"([^"]*)"/.exec(text)?.[1];
  if (method === 'gptq' || (method === undefined && root && /"(bits|w_bit)"\s*:/.test(text))) return GPTQ_CONFIG_FIELDS;
  if (method === 'fp8') return FP8_CONFIG_FIELDS;
  return CT_CONFIG_FIELDS;
}

/** The context of the keys of the mapping reached by `path` (keys from the root; `[]` for list items). */
export function contextOf(kind: DocumentKind, path: readonly string[], text: string): KeyContext {
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

export function step(context: KeyContext, key: string, before: readonly string[]): KeyContext {
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

export function fieldIn(context: KeyContext, key: string): FieldSpec | undefined {
  if (context.kind !== 'fields') return undefined;
  return context.fields.find((f) => f.name === key) ?? (context.modifier ? fieldSpec(context.modifier, key) : undefined);
}

// ------------------------------------------------------------------ documentation

export function typeLabel(f: FieldSpec): string {
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

export function presetMarkdown(name: string): string | undefined {
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

export function valueMarkdown(f: FieldSpec | undefined, value: string): string | undefined {
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

export function keyMarkdown(context: KeyContext, key: string): string | undefined {
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
