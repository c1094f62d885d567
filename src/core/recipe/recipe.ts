/**
 * llm-compressor recipe validation (docs/formats.md §4): the stage / group / modifier structure that
 * `Recipe.from_dict` reads, each modifier's fields (extra fields are forbidden), the schemes they carry,
 * the recipe-level rules, and — with a model — targets, ignore entries, group-size divisibility and the
 * fused layers' NVFP4 global scales (modelFit.ts).
 */
import { QUANT_ARGS_FIELDS, QuantArgs, QuantScheme, presetScheme } from '../quant/args';
import { Ctx, checkField, laxBool, laxFloat, strValue, unknownKey } from './checks';
import { PatternRef, checkPatternList, checkPatternsAgainstModel } from './patterns';
import { checkPreset, checkQuantArgs, checkScheme } from './schemeChecks';
import { checkDivisibility, checkFusedGlobalScales } from './modelFit';
import { AWQ_MAPPING_FIELDS, MODIFIER_NAMES, ModifierSpec, OBSERVER_MAP_FIELDS, RETIRED_MODIFIERS, RETIRED_STAGE_KEYS, fieldSpec, modifierSpec, visibleFields } from './schema';
import { closest } from './suggest';
import { PEntry, PMap, PNode, ParsedText, Span, entry, isNull, parseText, typeName } from './tree';
import type { Diagnostic, ValidateOptions } from './types';

/** One quantization group a modifier applies, after resolving scheme / config_groups. */
export interface ResolvedGroup {
  readonly name: string;
  readonly scheme: QuantScheme;
  /** Where diagnostics about this group go (its key, or the scheme value). */
  readonly span: Span;
  /** The weights' group_size node, when written out. */
  readonly groupSizeSpan?: Span;
  readonly origin: 'config_groups' | 'scheme' | 'default';
}

export interface RecipeModifier {
  readonly type: string;
  readonly spec?: ModifierSpec;
  readonly stage: string;
  readonly group: string;
  readonly keySpan: Span;
  readonly node?: PMap;
  /** For quantization modifiers: the groups they attach (empty when they only reuse earlier schemes). */
  readonly groups: readonly ResolvedGroup[];
  readonly ignore: readonly string[];
  /** Whether the modifier sets a quantization config of its own (QuantizationMixin.has_config). */
  readonly hasConfig: boolean;
  readonly kvCache?: QuantArgs;
  readonly bypassDivisibility: boolean;
  /** Targets of non-quantization modifiers (pruning, transforms). */
  readonly targets: readonly string[];
}

export interface RecipeAnalysis {
  readonly parsed: ParsedText;
  readonly diagnostics: Diagnostic[];
  readonly modifiers: readonly RecipeModifier[];
}

const QUANT_ROLES = ['weights', 'input_activations', 'output_activations'];

export function validateRecipe(text: string, options: ValidateOptions = {}): Diagnostic[] {
  return analyzeRecipe(text, options).diagnostics;
}

export function analyzeRecipe(text: string, options: ValidateOptions = {}): RecipeAnalysis {
  const parsed = parseText(text);
  const ctx = new Ctx(parsed, options.model);
  const modifiers: RecipeModifier[] = [];
  const done = (): RecipeAnalysis => ({ parsed, diagnostics: [...parsed.diagnostics, ...ctx.diagnostics], modifiers });
  if (parsed.broken) return done();
  const root = parsed.root;
  if (!root) {
    ctx.error('empty-recipe', { start: 0, end: 0 }, 'empty recipe: llm-compressor cannot load it; a recipe is a mapping like `quant_stage: {quant_modifiers: {QuantizationModifier: {...}}}`');
    return done();
  }
  if (root.kind !== 'map') {
    ctx.error('not-a-mapping', root.span, `a recipe must be a mapping of \`<name>_stage:\` keys, not ${typeName(root)} (llm-compressor: "Could not parse recipe")`);
    return done();
  }
  try {
    walkRecipe(ctx, root, modifiers);
  } catch (error) {
    ctx.error('internal', root.span, `QuantLens could not finish validating this recipe: ${(error as Error).message}`);
  }
  return done();
}

function walkRecipe(ctx: Ctx, root: PMap, modifiers: RecipeModifier[]): void {
  for (const stage of root.entries) {
    const key = stage.key;
    if (key === 'args') {
      if (stage.value.kind !== 'map' && !isNull(stage.value)) ctx.error('wrong-type', stage.value.span, `args must be a mapping, not ${typeName(stage.value)}`);
      continue;
    }
    if (!key.endsWith('_stage')) {
      ignoredTopLevel(ctx, stage);
      continue;
    }
    if (stage.value.kind !== 'map') {
      ctx.warning('ignored-stage', stage.value.kind === 'scalar' && stage.value.empty ? stage.keySpan : stage.value.span, `stage ${key} is ignored: a stage must be a mapping of \`<name>_modifiers:\` groups, not ${typeName(stage.value)}`);
      continue;
    }
    for (const group of stage.value.entries) {
      if (!group.key.endsWith('_modifiers')) {
        ignoredInStage(ctx, group, key);
        continue;
      }
      if (group.value.kind !== 'map') {
        const hint = group.value.kind === 'seq' ? ' (a list of modifiers is the old sparseml syntax; write `ModifierName: {fields}` entries)' : '';
        ctx.warning('ignored-group', group.value.kind === 'scalar' && group.value.empty ? group.keySpan : group.value.span, `modifier group ${group.key} is ignored: it must be a mapping of modifier names to their fields, not ${typeName(group.value)}${hint}`);
        continue;
      }
      for (const mod of group.value.entries) modifiers.push(checkModifier(ctx, mod, key, group.key, modifiers));
    }
  }
  if (modifiers.length === 0) {
    ctx.error('no-modifiers', root.entries[0]?.keySpan ?? root.span, 'the recipe defines no modifiers, so llm-compressor would apply nothing: modifiers go under `<name>_stage:` → `<name>_modifiers:` → `ModifierName:`');
  }
  checkModifierOrder(ctx, modifiers);
}

function ignoredTopLevel(ctx: Ctx, e: PEntry): void {
  const key = e.key;
  if (/_stage_\d+$/.test(key)) {
    ctx.warning('ignored-stage', e.keySpan, `"${key}" is ignored by llm-compressor: stage keys must end in "_stage" (merged recipes number them ${key}, which Recipe.from_dict skips)`, ctx.replace(`Rename to ${key.replace(/_\d+$/, '')}`, e.keySpan, key.replace(/_\d+$/, '')));
    return;
  }
  if (MODIFIER_NAMES.includes(key)) {
    ctx.warning('ignored-modifier', e.keySpan, `${key} at the top level is ignored: modifiers must be nested as \`<name>_stage:\` → \`<name>_modifiers:\` → \`${key}:\``);
    return;
  }
  if (key.endsWith('_modifiers')) {
    ctx.warning('ignored-group', e.keySpan, `${key} at the top level is ignored: modifier groups must be inside a \`<name>_stage:\` key`);
    return;
  }
  const looksLikeStage = /stag|stg|stae/i.test(key) || (e.value.kind === 'map' && e.value.entries.some((g) => g.key.endsWith('_modifiers')));
  const fixed = looksLikeStage ? key.replace(/_?(stag|stg|stae|stages|stage[a-z]*)$/i, '') + '_stage' : undefined;
  ctx.warning(
    'ignored-key',
    e.keySpan,
    `top-level key "${key}" is ignored by llm-compressor: only keys ending in "_stage" (and "args") are read${fixed && fixed !== key ? `; did you mean "${fixed}"?` : ''}`,
    fixed && fixed !== key ? ctx.replace(`Rename to ${fixed}`, e.keySpan, fixed) : undefined,
  );
}

function ignoredInStage(ctx: Ctx, e: PEntry, stage: string): void {
  const key = e.key;
  if (RETIRED_STAGE_KEYS[key]) {
    ctx.warning('ignored-key', e.keySpan, `"${key}" in ${stage} is ignored: ${RETIRED_STAGE_KEYS[key]}`);
    return;
  }
  if (MODIFIER_NAMES.includes(key)) {
    ctx.warning('ignored-modifier', e.keySpan, `${key} directly under ${stage} is ignored: modifiers must be inside a \`<name>_modifiers:\` group`);
    return;
  }
  const typo = /_?(modifier|modifers|modifieres|modfiers|modifires|mods?)$/i;
  const looksLikeGroup = typo.test(key) || (e.value.kind === 'map' && e.value.entries.some((m) => MODIFIER_NAMES.includes(m.key)));
  const fixed = looksLikeGroup ? `${key.replace(typo, '')}_modifiers` : undefined;
  ctx.warning(
    'ignored-key',
    e.keySpan,
    `"${key}" in ${stage} is ignored by llm-compressor: only keys ending in "_modifiers" are read${fixed && fixed !== key ? `; did you mean "${fixed}"?` : ''}`,
    fixed && fixed !== key ? ctx.replace(`Rename to ${fixed}`, e.keySpan, fixed) : undefined,
  );
}

// ------------------------------------------------------------------ one modifier

function checkModifier(ctx: Ctx, mod: PEntry, stage: string, group: string, earlier: readonly RecipeModifier[]): RecipeModifier {
  const type = mod.key;
  const base = { type, stage, group, keySpan: mod.keySpan, groups: [] as ResolvedGroup[], ignore: [] as string[], hasConfig: false, bypassDivisibility: false, targets: [] as string[] };
  const spec = modifierSpec(type);
  const retiredModifier = RETIRED_MODIFIERS[type];
  if (!spec && retiredModifier) {
    ctx.error('retired-modifier', mod.keySpan, `No modifier of type '${type}' in current llm-compressor: ${retiredModifier.removed}. To migrate, ${retiredModifier.replacement}.`);
    return base;
  }
  if (!spec) {
    const suggestion = closest(type, MODIFIER_NAMES);
    ctx.error('unknown-modifier', mod.keySpan, `No modifier of type '${type}' found${suggestion ? `: did you mean ${suggestion}?` : ` (llm-compressor has ${MODIFIER_NAMES.join(', ')})`}`, suggestion ? ctx.replaceScalar(`Change to ${suggestion}`, mod.keyNode, suggestion) : undefined);
    return base;
  }
  if (spec.deprecated) ctx.warning('deprecated-modifier', mod.keySpan, spec.deprecated);
  const node = mod.value;
  if (node.kind !== 'map') {
    if (node.kind === 'scalar' && node.value === null) {
      ctx.error('wrong-type', mod.keySpan, `${type} has no fields: llm-compressor needs a mapping here (an empty value fails with "'NoneType' object has no attribute 'get'"); write \`${type}: {}\` for the defaults`, ctx.insert('Use {} (defaults)', colonAfter(ctx.parsed.text, mod.keySpan.end), ' {}'));
    } else ctx.error('wrong-type', node.span, `${type} must be a mapping of fields, not ${typeName(node)}`);
    return { ...base, spec };
  }
  const where = ` (${type})`;
  const values = new Map<string, unknown>();
  const allowed = visibleFields(spec).map((f) => f.name);
  const retiredFound: string[] = [];
  for (const e of node.entries) {
    const field = fieldSpec(spec, e.key);
    if (!field) {
      const retired = spec.retired.find((r) => r.name === e.key);
      if (retired) {
        retiredFound.push(e.key);
        ctx.error(
          'retired-field',
          e.keySpan,
          `${e.key} is not a field of ${type} in current llm-compressor, which rejects it (extra fields are forbidden): ${retired.removed}. To migrate, ${retired.replacement}.`,
          retired.rename ? ctx.replaceScalar(`Rename to ${retired.rename}`, e.keyNode, retired.rename) : undefined,
        );
        continue;
      }
      unknownKey(ctx, e, allowed, type, { hint: misplacedHint(e, spec), consequence: 'extra fields are not permitted; releases before 2025-07-02 silently ignored them' });
      continue;
    }
    if (e.key === 'group') {
      ctx.error('group-field', e.keySpan, `${type}: "group" cannot be set in a recipe: llm-compressor already passes the group from "${group}" and fails with "got multiple values for keyword argument 'group'"; rename the \`_modifiers\` key instead`);
      continue;
    }
    if (field.deprecated) ctx.warning('deprecated-field', e.keySpan, field.deprecated);
    const t = field.type.t;
    if (t === 'quantArgs' || t === 'configGroups' || t === 'scheme' || t === 'observerMap' || t === 'sqMappings' || t === 'awqMappings' || (t === 'patterns' && !isNull(e.value))) {
      values.set(e.key, e);
      continue;
    }
    const checked = checkField(ctx, field, e, where);
    if (checked.ok) values.set(e.key, checked.value);
  }
  for (const f of spec.fields) {
    if (f.required && !entry(node, f.name)) ctx.error('missing-field', mod.keySpan, `${type} needs \`${f.name}\` (a required field)${f.examples?.[0] ? `, e.g. ${f.name}: ${f.examples[0]}` : ''}`);
  }

  const result = spec.quantization ? checkQuantizationModifier(ctx, spec, node, mod, earlier, retiredFound) : { ...base, spec, node, targets: checkOtherModifier(ctx, spec, node) };
  checkModifierRules(ctx, spec, node, values);
  return { ...result, type, stage, group, keySpan: mod.keySpan };
}

/** The offset just after the `:` that follows a key. */
function colonAfter(text: string, keyEnd: number): number {
  const colon = text.indexOf(':', keyEnd);
  return colon < 0 ? keyEnd : colon + 1;
}

function misplacedHint(e: PEntry, spec: ModifierSpec): { message: string } | undefined {
  if (!spec.quantization) return undefined;
  if ((QUANT_ARGS_FIELDS as readonly string[]).includes(e.key)) {
    return { message: `"${e.key}" is a QuantizationArgs field, not a field of ${spec.name}: put it under config_groups.<group>.weights (or use a preset \`scheme:\`)` };
  }
  if (QUANT_ROLES.includes(e.key) || e.key === 'format') {
    return { message: `"${e.key}" belongs inside a config group, not directly in ${spec.name}: write \`config_groups: {group_0: {targets: [Linear], ${e.key}: ...}}\`` };
  }
  if (e.value.kind === 'map' && e.value.entries.some((x) => x.key === 'targets' || QUANT_ROLES.includes(x.key))) {
    return { message: `"${e.key}" looks like a config group, but config groups must be nested under \`config_groups:\` (${spec.name} rejects unknown fields)` };
  }
  if (presetScheme(e.key)) {
    return { message: `"${e.key}" is a preset scheme name, not a field of ${spec.name}: write \`scheme: ${e.key}\` (with \`targets:\`) or \`scheme: {${e.key}: [Linear]}\`` };
  }
  return undefined;
}

function checkQuantizationModifier(ctx: Ctx, spec: ModifierSpec, node: PMap, mod: PEntry, earlier: readonly RecipeModifier[], retiredFound: readonly string[]): RecipeModifier {
  const type = spec.name;
  const errorCount = () => ctx.diagnostics.filter((d) => d.severity === 'error').length;
  const errorsBefore = errorCount();
  const groups: ResolvedGroup[] = [];
  const configGroups = entry(node, 'config_groups');
  const schemeEntry = entry(node, 'scheme');
  const targetsEntry = entry(node, 'targets');
  const ignoreEntry = entry(node, 'ignore');
  const kvEntry = entry(node, 'kv_cache_scheme');

  // targets / ignore
  let targets: PatternRef[] = [];
  if (targetsEntry && !isNull(targetsEntry.value)) targets = checkPatternList(ctx, targetsEntry.value, 'targets', ` (${type})`, true) ?? [];
  let ignore: PatternRef[] = [];
  if (ignoreEntry && !isNull(ignoreEntry.value)) ignore = checkPatternList(ctx, ignoreEntry.value, 'ignore', ` (${type})`, false) ?? [];
  const targetValues = targetsEntry ? targets.map((t) => t.value) : ['Linear'];

  const hasSchemeValue = schemeEntry && !isNull(schemeEntry.value);
  const hasGroupsValue = configGroups && !isNull(configGroups.value);
  if (hasSchemeValue && hasGroupsValue) {
    ctx.error('scheme-and-config-groups', schemeEntry.keySpan, `${type}: \`scheme\` and \`config_groups\` cannot both be set (llm-compressor: "Please specify either \`scheme\` or \`config_groups\`"); keep one`);
  }

  // config_groups
  if (hasGroupsValue) {
    const value = configGroups.value;
    if (value.kind !== 'map') ctx.error('wrong-type', value.span, `config_groups must be a mapping of group names to schemes, not ${typeName(value)}`);
    else {
      if (value.entries.length === 0) ctx.warning('empty-config-groups', configGroups.keySpan, `config_groups is empty: ${type} quantizes nothing`);
      for (const g of value.entries) {
        if (g.value.kind === 'seq' && presetScheme(g.key)) {
          ctx.error('wrong-type', g.value.span, `config group "${g.key}" is a target list: in a recipe each config group must be a scheme mapping; to apply the preset write \`scheme: {${g.key}: [...]}\` instead of config_groups`);
          continue;
        }
        const checked = checkScheme(ctx, g.value, g.keySpan, g.key);
        if (checked.scheme) {
          const gs = checked.weightsNode ? entry(checked.weightsNode, 'group_size') : undefined;
          groups.push({ name: g.key, scheme: checked.scheme, span: g.keySpan, groupSizeSpan: gs?.value.span, origin: 'config_groups' });
        }
      }
    }
    if (targetsEntry && !hasSchemeValue) ctx.warning('unused-targets', targetsEntry.keySpan, `targets is ignored when config_groups is given: each config group carries its own targets (${type})`);
  }

  // scheme
  if (hasSchemeValue && !hasGroupsValue) {
    const value = schemeEntry.value;
    if (value.kind === 'scalar' && typeof value.value === 'string') {
      const name = checkPreset(ctx, value, value.value, ` in ${type}.scheme`);
      if (name) groups.push({ name: 'group_0', scheme: presetScheme(name, targetValues)!, span: value.span, origin: 'scheme' });
    } else if (value.kind === 'map') {
      value.entries.forEach((e, index) => {
        if (!presetScheme(e.key)) {
          const hint = (QUANT_ROLES.includes(e.key) || e.key === 'targets' || (QUANT_ARGS_FIELDS as readonly string[]).includes(e.key)) ? `; "${e.key}" is a scheme field: spell a scheme out with config_groups: {group_0: {targets: [...], ${e.key}: ...}}` : '';
          if (hint) ctx.error('unknown-preset', e.keySpan, `\`scheme\` keys must be preset scheme names${hint}`);
          else checkPreset(ctx, e.keyNode, e.key, ` in ${type}.scheme`);
          return;
        }
        const presetTargets = checkPatternList(ctx, e.value, `scheme.${e.key}`, ` (${type})`, true);
        if (presetTargets) groups.push({ name: `group_${index}`, scheme: presetScheme(e.key, presetTargets.map((t) => t.value))!, span: e.keySpan, origin: 'scheme' });
      });
    } else {
      ctx.error('wrong-type', value.span, `scheme must be a preset name (W4A16, W8A8, FP8_DYNAMIC …) or a mapping of preset names to targets, not ${typeName(value)}`);
    }
  }

  // kv_cache_scheme
  let kvCache: QuantArgs | undefined;
  if (kvEntry && !isNull(kvEntry.value)) kvCache = checkQuantArgs(ctx, kvEntry.value, 'kv_cache_scheme', kvEntry.keySpan);

  // observers
  const observerEntry = entry(node, 'observer');
  if (observerEntry && !isNull(observerEntry.value)) {
    const value = observerEntry.value;
    if (value.kind !== 'map') ctx.error('wrong-type', value.span, `observer must be a mapping like {weights: mse, input: static_minmax}, not ${typeName(value)}`);
    else {
      for (const e of value.entries) {
        const f = OBSERVER_MAP_FIELDS.find((x) => x.name === e.key);
        if (!f) {
          const suggestion = closest(e.key, OBSERVER_MAP_FIELDS.map((x) => x.name));
          ctx.error('invalid-value', e.keySpan, `Invalid observer key '${e.key}': valid keys are weights, input, output${suggestion ? ` (did you mean ${suggestion}?)` : ''}`, suggestion ? ctx.replaceScalar(`Rename to ${suggestion}`, e.keyNode, suggestion) : undefined);
        } else checkField(ctx, f, e, ` in ${type}.observer`);
      }
      const individual = ['weight_observer', 'input_observer', 'output_observer'].filter((k) => entry(node, k) && !isNull(entry(node, k)!.value));
      if (individual.length > 0) ctx.error('observer-conflict', observerEntry.keySpan, `${type}: \`observer\` cannot be combined with ${individual.join(', ')}; use one form`);
    }
  }

  // has_config and the schemes GPTQ / AutoRound rely on
  const ignoreValues = ignore.map((i) => i.value);
  const targetsIsDefault = !targetsEntry || (targetValues.length === 1 && targetValues[0] === 'Linear');
  const hasConfig = Boolean(hasGroupsValue || hasSchemeValue || (kvEntry && !isNull(kvEntry.value)) || ignoreValues.length > 0 || !targetsIsDefault);
  const quantizes = groups.some((g) => g.scheme.weights || g.scheme.inputActivations || g.scheme.outputActivations) || kvCache !== undefined;
  if (!hasConfig && type === 'QuantizationModifier' && retiredFound.length === 0) {
    ctx.error('no-scheme', mod.keySpan, 'QuantizationModifier has no scheme, config_groups or kv_cache_scheme: llm-compressor fails with "QuantizationModifier requires that quantization fields be specified"');
  } else if (!hasConfig && type !== 'QuantizationModifier') {
    const before = earlier.some((m) => m.spec?.quantization && m.groups.some((g) => g.scheme.weights));
    if (!before) {
      ctx.error('no-scheme', mod.keySpan, `${type} has no scheme or config_groups, and no earlier quantization modifier attaches one: it fails with "unable to find any modules to quantize"; add \`scheme: W4A16\` (or config_groups)`);
    }
  } else if (hasConfig && !quantizes && retiredFound.length === 0 && type === 'QuantizationModifier' && errorCount() === errorsBefore) {
    ctx.warning('quantizes-nothing', mod.keySpan, `${type} quantizes nothing: it has no scheme, config_groups with weights or activations, or kv_cache_scheme`);
  }

  // GPTQ activation ordering against the schemes' own actorder
  const resolved = type === 'GPTQModifier' ? resolveGptqActorder(ctx, node, groups) : groups;

  const bypass = laxBool(entry(node, 'bypass_divisibility_checks')?.value ?? { kind: 'scalar', span: { start: 0, end: 0 }, value: false, quoted: false }) === true;
  const result: RecipeModifier = { type, spec, stage: '', group: '', keySpan: mod.keySpan, node, groups: resolved, ignore: ignoreValues, hasConfig, kvCache, bypassDivisibility: bypass, targets: targetValues };

  if (ctx.model) {
    if (targetsEntry && !hasGroupsValue) checkPatternsAgainstModel(ctx, targets, 'targets', { linearOnly: true });
    if (hasGroupsValue && configGroups.value.kind === 'map') {
      for (const g of configGroups.value.entries) {
        const t = g.value.kind === 'map' ? entry(g.value, 'targets') : undefined;
        if (t && t.value.kind === 'seq') checkPatternsAgainstModel(ctx, t.value.items.filter((i) => strValue(i) !== undefined).map((i) => ({ value: strValue(i)!, node: i })), 'targets', { linearOnly: true });
      }
    }
    if (hasSchemeValue && schemeEntry.value.kind === 'map') {
      for (const e of schemeEntry.value.entries) {
        const items = e.value.kind === 'seq' ? e.value.items : [e.value];
        checkPatternsAgainstModel(ctx, items.filter((i) => strValue(i) !== undefined).map((i) => ({ value: strValue(i)!, node: i })), 'targets', { linearOnly: true });
      }
    }
    checkPatternsAgainstModel(ctx, ignore, 'ignore');
    if (!bypass) checkDivisibility(ctx, result);
    checkFusedGlobalScales(ctx, result);
  }
  return result;
}

function actorderValue(node: PNode): 'group' | 'weight' | null | undefined {
  if (isNull(node)) return null;
  const v = strValue(node);
  if (v === 'group' || v === 'dynamic') return 'group';
  if (v === 'weight' || v === 'static') return 'weight';
  return undefined;
}

/** GPTQModifier.actorder vs the schemes' weights.actorder (LLMC gptq/base.py resolve_actorder). */
function resolveGptqActorder(ctx: Ctx, node: PMap, groups: readonly ResolvedGroup[]): ResolvedGroup[] {
  const e = entry(node, 'actorder');
  const explicit = e ? actorderValue(e.value) : 'sentinel';
  if (explicit === undefined) return [...groups];
  return groups.map((g) => {
    const w = g.scheme.weights;
    if (!w) return g;
    const existing = w.actorder ?? null;
    let actorder: 'group' | 'weight' | null;
    if (explicit === 'sentinel') actorder = existing ?? 'weight';
    else if (existing === null || existing === explicit) actorder = explicit;
    else {
      ctx.error(
        'actorder-conflict',
        e!.value.kind === 'scalar' && e!.value.empty ? e!.keySpan : e!.value.span,
        `GPTQModifier.actorder (${explicit ?? 'null'}) and config group "${g.name}" weights.actorder (${existing}) differ: llm-compressor raises "Cannot resolve activation ordering"; remove one of them`,
      );
      return g;
    }
    if (actorder === 'group' && w.strategy !== 'group' && w.strategy !== 'tensor_group') {
      if (explicit === 'group') ctx.warning('actorder-fallback', e!.value.span, `actorder group does not apply to ${w.strategy} quantization in config group "${g.name}": llm-compressor falls back to no activation ordering`);
      actorder = null;
    }
    return { ...g, scheme: { ...g.scheme, weights: { ...w, actorder: actorder ?? undefined } } };
  });
}

/** Non-quantization modifiers: patterns, mappings; returns their targets. */
function checkOtherModifier(ctx: Ctx, spec: ModifierSpec, node: PMap): string[] {
  const type = spec.name;
  const targets: string[] = [];
  for (const name of ['targets', 'ignore']) {
    const e = entry(node, name);
    const f = fieldSpec(spec, name);
    if (!e || !f || f.type.t !== 'patterns') continue;
    if (isNull(e.value)) continue;
    const refs = checkPatternList(ctx, e.value, name, ` (${type})`, f.type.single);
    if (!refs) continue;
    if (name === 'targets') targets.push(...refs.map((r) => r.value));
    checkPatternsAgainstModel(ctx, refs, name === 'targets' ? 'targets' : 'ignore');
  }
  const mappings = entry(node, 'mappings');
  if (mappings && !isNull(mappings.value)) {
    if (type === 'AWQModifier') checkAwqMappings(ctx, mappings.value);
    else if (type === 'SmoothQuantModifier' || type === 'LogarithmicEqualizationModifier') checkSmoothQuantMappings(ctx, mappings.value);
  }
  return targets;
}

function checkSmoothQuantMappings(ctx: Ctx, node: PNode): void {
  if (node.kind !== 'seq') {
    ctx.error('wrong-type', node.span, `mappings must be a list of [[balance layers...], smooth layer] entries, not ${typeName(node)}`);
    return;
  }
  for (const item of node.items) {
    if (item.kind !== 'seq') {
      ctx.error('wrong-type', item.span, `each SmoothQuant mapping must be a list [[balance layers...], smooth layer], not ${typeName(item)}${item.kind === 'map' ? ' (the {smooth_layer, balance_layers} form is AWQModifier\'s)' : ''}`);
      continue;
    }
    const leaves: PNode[] = [];
    const collect = (n: PNode) => (n.kind === 'seq' ? n.items.forEach(collect) : leaves.push(n));
    collect(item);
    const bad = leaves.find((l) => strValue(l) === undefined);
    if (bad) {
      ctx.error('wrong-type', bad.span, `SmoothQuant mapping entries must be layer names or re: patterns, not ${typeName(bad)}`);
      continue;
    }
    if (leaves.length < 2) {
      ctx.error('invalid-value', item.span, 'a SmoothQuant mapping needs at least one balance layer and a smooth layer: [[balance layers...], smooth layer]');
      continue;
    }
    const refs = leaves.map((l) => ({ value: strValue(l)!, node: l }));
    const valid = refs.filter((r) => checkPatternList(ctx, { kind: 'seq', span: r.node.span, flow: true, items: [r.node] }, 'mappings', '', false));
    checkPatternsAgainstModel(ctx, valid, 'mapping');
  }
}

function checkAwqMappings(ctx: Ctx, node: PNode): void {
  if (node.kind !== 'seq') {
    ctx.error('wrong-type', node.span, `mappings must be a list of {smooth_layer, balance_layers} entries, not ${typeName(node)}`);
    return;
  }
  for (const item of node.items) {
    if (item.kind !== 'map') {
      ctx.error('wrong-type', item.span, `each AWQ mapping must be a mapping {smooth_layer: ..., balance_layers: [...]}, not ${typeName(item)}${item.kind === 'seq' ? ' (the [[balance], smooth] list form is SmoothQuantModifier\'s)' : ''}`);
      continue;
    }
    for (const e of item.entries) {
      const f = AWQ_MAPPING_FIELDS.find((x) => x.name === e.key);
      if (!f) {
        unknownKey(ctx, e, AWQ_MAPPING_FIELDS.map((x) => x.name), 'an AWQ mapping', { consequence: 'AWQMapping takes only smooth_layer, balance_layers and activation_hook_target' });
        continue;
      }
      if (e.key === 'balance_layers') {
        const refs = checkPatternList(ctx, e.value, 'balance_layers', '', false);
        if (refs) checkPatternsAgainstModel(ctx, refs, 'mapping');
      } else if (checkField(ctx, f, e, ' (AWQ mapping)').ok && e.key === 'smooth_layer') {
        const v = strValue(e.value)!;
        if (checkPatternList(ctx, { kind: 'seq', span: e.value.span, flow: true, items: [e.value] }, 'smooth_layer', '', false)) checkPatternsAgainstModel(ctx, [{ value: v, node: e.value }], 'mapping');
      }
    }
    for (const f of AWQ_MAPPING_FIELDS) if (f.required && !entry(item, f.name)) ctx.error('missing-field', item.span, `AWQ mapping needs \`${f.name}\``);
  }
}

/** Rules that involve several fields of one modifier. */
function checkModifierRules(ctx: Ctx, spec: ModifierSpec, node: PMap, values: Map<string, unknown>): void {
  const type = spec.name;
  if (type === 'SmoothQuantModifier' || type === 'LogarithmicEqualizationModifier') {
    for (const field of ['start', 'end']) {
      const v = values.get(field);
      if (typeof v === 'number' && v !== -1 && v !== 0) {
        ctx.error('one-shot-only', entry(node, field)!.value.span, `${type} can only be applied during one-shot: ${field} must be null or -1, got ${v}`);
      }
    }
  }
  if (type === 'SparseGPTModifier' || type === 'WandaPruningModifier') {
    const owl = ['sparsity_profile', 'owl_m', 'owl_lmbda'].map((k) => ({ k, present: entry(node, k) !== undefined && !isNull(entry(node, k)!.value) }));
    if (owl.some((o) => o.present) && !owl.every((o) => o.present)) {
      const missing = owl.filter((o) => !o.present).map((o) => o.k);
      const first = owl.find((o) => o.present)!;
      ctx.error('owl-incomplete', entry(node, first.k)!.keySpan, `OWL needs sparsity_profile: owl, owl_m and owl_lmbda together, or none of them; missing ${missing.join(', ')}`);
    }
  }
  if (type === 'MagnitudePruningModifier') {
    if (values.get('apply_globally') === true) ctx.error('not-implemented', entry(node, 'apply_globally')!.value.span, 'apply_globally: global magnitude pruning is not implemented in llm-compressor (NotImplementedError at initialize)');
  }
  if (type === 'REAPPruningModifier') {
    const path = values.get('report_path');
    if (typeof path === 'string' && !path.endsWith('.json')) ctx.error('invalid-value', entry(node, 'report_path')!.value.span, `report_path must end with .json, got ${JSON.stringify(path)}`);
  }
  if (type === 'SpinQuantModifier' || type === 'QuIPModifier') {
    for (const field of ['randomize', 'learnable']) {
      if (values.get(field) === true) ctx.error('not-implemented', entry(node, field)!.value.span, `${field}: true is not supported yet (${type} raises NotImplementedError); leave it false`);
    }
  }
  if (type === 'GPTQModifier') {
    const damp = values.get('dampening_frac');
    if (damp === 0) ctx.warning('invalid-value', entry(node, 'dampening_frac')!.value.span, 'dampening_frac 0 adds no dampening: a Hessian of dead or correlated inputs then fails Cholesky and GPTQ falls back to round-to-nearest');
  }
  if (type === 'SparseGPTModifier') {
    const sparsity = entry(node, 'sparsity');
    const mask = values.get('mask_structure');
    const s = sparsity ? laxFloat(sparsity.value) : undefined;
    if (typeof mask === 'string' && /^\s*(\d+)\s*:\s*(\d+)\s*$/.test(mask) && s !== undefined) {
      const [n, m] = mask.split(':').map((x) => Number(x.trim()));
      if (m! > 0 && Math.abs(n! / m! - s) > 1e-9) ctx.warning('sparsity-mismatch', sparsity!.value.span, `sparsity ${s} differs from the ${mask} mask structure (${n! / m!}); with an N:M mask the pattern decides how many weights are pruned`);
    }
  }
}

/** Every AWQModifier needs a quantization modifier after it (LLMC recipe.py validate_model_after). */
function checkModifierOrder(ctx: Ctx, modifiers: readonly RecipeModifier[]): void {
  modifiers.forEach((m, index) => {
    if (m.type !== 'AWQModifier') return;
    if (modifiers.slice(index + 1).some((n) => n.spec?.quantization)) return;
    const before = modifiers.slice(0, index).some((n) => n.spec?.quantization);
    ctx.error(
      'awq-order',
      m.keySpan,
      `AWQModifier must be followed by a quantization modifier (QuantizationModifier, GPTQModifier or AutoRoundModifier): llm-compressor raises "Recipe includes AWQModifier with no subsequent quantization modifier"${before ? '; move the quantization modifier after it' : ''}`,
    );
  });
}
