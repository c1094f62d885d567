/**
 * The view model of the recipe preview editor: a recipe as a readable summary (stages → modifiers → each
 * quantization group's scheme in words, targets, ignore), its validation problems with lines, and — for a
 * chosen model — what happens to every linear layer and the estimated size of the output. Pure data (no
 * `vscode`): the extension posts it to the webview, the tests compare it with the resolver it is built on.
 */
import type { QuantArgs, QuantScheme } from '../quant/args';
import { nameMatcher } from '../checkpoint/tensorQuery';
import { RecipeAnalysis, RecipeModifier, analyzeRecipe } from './recipe';
import { LayerPlan, resolveRecipe } from './resolve';
import { isRecipeDocument } from './language';
import { PMap, PNode, entry, isNull, rangeOf, toPlain } from './tree';
import type { ModelLayers, Range, Severity } from './types';

export interface PreviewDiagnostic {
  readonly severity: Severity;
  readonly message: string;
  readonly code: string;
  /** 0-based, as VS Code takes it; pages show `range.start.line + 1`. */
  readonly range: Range;
}

export interface SchemeSummary {
  /** Config group name (`group_0` … for presets). */
  readonly name: string;
  /** The scheme in words, e.g. "INT4 weights, group 128, symmetric, GPTQ act-order static, dampening 0.1". */
  readonly description: string;
  readonly targets: readonly string[];
  /** 0-based line of the group (or of the scheme value for presets). */
  readonly line: number;
}

export interface ModifierSummary {
  readonly type: string;
  /** The `<name>_modifiers` key it sits in. */
  readonly group: string;
  readonly line: number;
  readonly kind: 'quantization' | 'other' | 'unknown';
  /** One line: the algorithm and its main settings ("SmoothQuant, strength 0.8, 2 mappings"). */
  readonly headline: string;
  readonly schemes: readonly SchemeSummary[];
  /** Targets of the modifier itself (schemes carry their own); empty when it has none. */
  readonly targets: readonly string[];
  readonly ignore: readonly string[];
  /** The KV-cache quantization in words. */
  readonly kvCache?: string;
  /** Other fields the recipe sets explicitly, as `name: value` text. */
  readonly settings: readonly { readonly name: string; readonly value: string }[];
}

export interface StageSummary {
  readonly name: string;
  readonly line: number;
  readonly modifiers: readonly ModifierSummary[];
}

export type PreviewLayerState = 'quantized' | 'ignored' | 'unmatched';

export interface PreviewLayer {
  readonly name: string;
  readonly className: string;
  readonly inFeatures?: number;
  readonly outFeatures?: number;
  readonly state: PreviewLayerState;
  /** Short scheme text for a table cell ("INT4 g128 sym", "FP8 tensor + FP8 act dynamic"). */
  readonly scheme?: string;
  /** The long description (same words as the summary's scheme). */
  readonly description?: string;
  readonly group?: string;
  readonly modifier?: string;
  readonly format?: string;
  readonly ignoredBy?: string;
  readonly algorithms: readonly string[];
  /** group_size of the layer's scheme when it does not divide the layer's input features. */
  readonly indivisibleGroupSize?: number;
  readonly originalBytes?: number;
  readonly estimatedBytes?: number;
}

export interface LayerCounts {
  readonly total: number;
  readonly quantized: number;
  readonly ignored: number;
  readonly unmatched: number;
  readonly indivisible: number;
}

export interface ResolvedMap {
  /** The model folder the layers were read from. */
  readonly source?: string;
  readonly layers: readonly PreviewLayer[];
  readonly counts: LayerCounts;
  readonly kvCache?: { readonly description: string; readonly modules: number };
  readonly size: {
    /** Bytes of every tensor of the model as it is on disk. */
    readonly inputBytes?: number;
    /** Whole-checkpoint estimate after quantization (undefined when some layer shape is unknown). */
    readonly estimatedBytes?: number;
    /** Bytes of the listed layers (the linear layers, and embeddings the recipe quantizes) before and after. */
    readonly linearOriginalBytes: number;
    readonly linearEstimatedBytes: number;
  };
}

export type RecipePreview =
  | {
      readonly isRecipe: true;
      readonly stages: readonly StageSummary[];
      readonly diagnostics: readonly PreviewDiagnostic[];
      readonly errors: number;
      readonly warnings: number;
      /** Present when a model was given and no error leaves what the recipe quantizes unknown. */
      readonly resolved?: ResolvedMap;
      /**
       * Why the layer map and the size were not computed for the given model: the recipe has errors that
       * change what it quantizes (an unknown preset, a malformed scheme…), so every layer would show as
       * unmatched and the output as no smaller, which is not what the fixed recipe will do.
       */
      readonly layerMapWithheld?: string;
    }
  | { readonly isRecipe: false; readonly reason: string };

/**
 * Builds the preview of `text` (the content of `fileName`). With `model` the diagnostics include the
 * model-aware checks and the resolved layer map is filled in.
 */
export function buildRecipePreview(text: string, options: { readonly fileName: string; readonly model?: ModelLayers }): RecipePreview {
  const notRecipe = notARecipeReason(options.fileName, text);
  if (notRecipe) return { isRecipe: false, reason: notRecipe };
  const analysis = analyzeRecipe(text, { model: options.model });
  const diagnostics = analysis.diagnostics
    .map((d): PreviewDiagnostic => ({ severity: d.severity, message: d.message, code: d.code, range: d.range }))
    .sort((a, b) => a.range.start.line - b.range.start.line || a.range.start.character - b.range.start.character);
  const errors = diagnostics.filter((d) => d.severity === 'error');
  const withheld = errors.filter((d) => !MODEL_FIT_ERRORS.has(d.code)).length;
  return {
    isRecipe: true,
    stages: summarizeStages(analysis),
    diagnostics,
    errors: errors.length,
    warnings: diagnostics.filter((d) => d.severity === 'warning').length,
    ...(options.model
      ? withheld > 0
        ? { layerMapWithheld: `Not computed: with ${withheld} error${withheld === 1 ? '' : 's'} in the recipe, what it quantizes is not known. Fix ${withheld === 1 ? 'it' : 'them'} to see the layer map and the output size.` }
        : { resolved: resolveForPreview(analysis, options.model) }
      : {}),
  };
}

/**
 * Errors about how a valid recipe meets the model (a group_size that does not divide some layers): the
 * layer map is still right, and it is what shows the layers concerned. Any other error withholds the map.
 */
const MODEL_FIT_ERRORS: ReadonlySet<string> = new Set(['group-size-indivisible']);

/**
 * Why a YAML document is not treated as a recipe, or undefined when it is one. Recognised by content
 * (`*_stage:` keys holding `*_modifiers:`) or by a file name containing "recipe".
 */
export function notARecipeReason(fileName: string, text: string): string | undefined {
  if (!/\.ya?ml$/i.test(fileName)) return `${baseName(fileName)} is not a YAML file, so it is not an llm-compressor recipe.`;
  if (isRecipeDocument(fileName, text)) return undefined;
  return `${baseName(fileName)} is not an llm-compressor recipe: a recipe has top-level \`<name>_stage:\` keys holding \`<name>_modifiers:\` groups of modifiers (e.g. quant_stage → quant_modifiers → GPTQModifier).`;
}

function baseName(path: string): string {
  return path.split(/[\\/]/).pop() ?? path;
}

// ------------------------------------------------------------------ summary

function summarizeStages(analysis: RecipeAnalysis): StageSummary[] {
  const lineOf = (span: { start: number; end: number }) => rangeOf(analysis.parsed, span).start.line;
  const stages: StageSummary[] = [];
  const root = analysis.parsed.root;
  const byStage = new Map<string, ModifierSummary[]>();
  analysis.modifiers.forEach((m, index) => {
    const list = byStage.get(m.stage) ?? [];
    list.push(summarizeModifier(m, lineOf, calibratorFor(analysis.modifiers, index)));
    byStage.set(m.stage, list);
  });
  if (root?.kind === 'map') {
    for (const e of root.entries) {
      if (!e.key.endsWith('_stage')) continue;
      stages.push({ name: e.key, line: lineOf(e.keySpan), modifiers: byStage.get(e.key) ?? [] });
      byStage.delete(e.key);
    }
  }
  // Duplicate stage keys leave the later one in the tree only; keep whatever modifiers remain visible.
  for (const [name, modifiers] of byStage) stages.push({ name, line: modifiers[0]?.line ?? 0, modifiers });
  return stages;
}

/** Fields shown structurally (schemes, targets, ignore, mappings), not in the settings list. */
const STRUCTURAL = new Set(['config_groups', 'scheme', 'targets', 'ignore', 'kv_cache_scheme', 'mappings', 'observer']);

const FRIENDLY: Readonly<Record<string, string>> = {
  QuantizationModifier: 'Round-to-nearest quantization',
  GPTQModifier: 'GPTQ',
  AutoRoundModifier: 'AutoRound',
  AWQModifier: 'AWQ',
  SmoothQuantModifier: 'SmoothQuant',
  LogarithmicEqualizationModifier: 'Logarithmic activation equalization',
  SparseGPTModifier: 'SparseGPT pruning',
  WandaPruningModifier: 'Wanda pruning',
  MagnitudePruningModifier: 'Magnitude pruning',
  ConstantPruningModifier: 'Constant-mask pruning',
  SpinQuantModifier: 'SpinQuant rotations',
  QuIPModifier: 'QuIP rotations',
};

/** Settings worth a place in the headline, with the label to use and llm-compressor's default. */
const HEADLINE_FIELDS: Readonly<Record<string, readonly { field: string; label: string; fallback?: string }[]>> = {
  GPTQModifier: [{ field: 'dampening_frac', label: 'dampening', fallback: '0.01' }],
  AutoRoundModifier: [{ field: 'iters', label: 'iterations', fallback: '200' }],
  SmoothQuantModifier: [{ field: 'smoothing_strength', label: 'strength', fallback: '0.5' }],
  AWQModifier: [{ field: 'duo_scaling', label: 'duo scaling', fallback: 'true' }],
  SparseGPTModifier: [
    { field: 'sparsity', label: 'sparsity' },
    { field: 'mask_structure', label: 'mask' },
  ],
  WandaPruningModifier: [
    { field: 'sparsity', label: 'sparsity' },
    { field: 'mask_structure', label: 'mask' },
  ],
  MagnitudePruningModifier: [
    { field: 'init_sparsity', label: 'from' },
    { field: 'final_sparsity', label: 'to' },
  ],
};

function scalarText(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

function fieldText(node: PMap | undefined, field: string): string | undefined {
  const e = node ? entry(node, field) : undefined;
  if (!e) return undefined;
  return scalarText(toPlain(e.value));
}

/**
 * The modifier that decides how the weights of `modifiers[index]`'s schemes are rounded: a later GPTQ or
 * AutoRound modifier without a scheme of its own calibrates the schemes earlier modifiers attached
 * (QuantizationModifier then GPTQModifier, the older recipe style); otherwise the modifier itself.
 */
function calibratorFor(modifiers: readonly RecipeModifier[], index: number): RecipeModifier | undefined {
  const own = modifiers[index];
  if (!own) return undefined;
  for (let i = modifiers.length - 1; i > index; i--) {
    const later = modifiers[i]!;
    if ((later.type === 'GPTQModifier' || later.type === 'AutoRoundModifier') && !later.hasConfig) return later;
  }
  return own;
}

function summarizeModifier(m: RecipeModifier, lineOf: (span: { start: number; end: number }) => number, calibrator: RecipeModifier | undefined): ModifierSummary {
  const node = m.node;
  const kind = !m.spec ? 'unknown' : m.spec.quantization ? 'quantization' : 'other';
  const headline: string[] = [FRIENDLY[m.type] ?? m.type.replace(/Modifier$/, '')];
  if (!m.spec) headline[0] = `${m.type} (not a modifier current llm-compressor knows)`;
  for (const f of HEADLINE_FIELDS[m.type] ?? []) {
    const value = fieldText(node, f.field) ?? f.fallback;
    if (value !== undefined) headline.push(`${f.label} ${value}`);
  }
  const mappings = node ? entry(node, 'mappings') : undefined;
  if (kind === 'quantization' && m.groups.length === 0 && !m.kvCache && !m.hasConfig) headline.push('on the schemes earlier modifiers attach');
  if (m.type === 'SmoothQuantModifier' || m.type === 'AWQModifier' || m.type === 'LogarithmicEqualizationModifier') {
    headline.push(mappings && mappings.value.kind === 'seq' ? `${mappings.value.items.length} mapping${mappings.value.items.length === 1 ? '' : 's'}` : 'mappings inferred from the architecture');
  }
  const settings: { name: string; value: string }[] = [];
  if (node) {
    for (const e of node.entries) {
      if (STRUCTURAL.has(e.key) || (HEADLINE_FIELDS[m.type] ?? []).some((f) => f.field === e.key)) continue;
      settings.push({ name: e.key, value: compactValue(e.value) });
    }
  }
  const schemes = m.groups.map((g): SchemeSummary => ({ name: g.name, description: describeRecipeScheme(g.scheme, calibrator ?? m), targets: g.scheme.targets, line: lineOf(g.span) }));
  const explicitTargets = node ? entry(node, 'targets') : undefined;
  const targets = kind === 'quantization' ? (m.groups.some((g) => g.origin === 'config_groups') || !explicitTargets ? [] : m.targets) : m.targets;
  return {
    type: m.type,
    group: m.group,
    line: lineOf(m.keySpan),
    kind,
    headline: headline.join(', '),
    schemes,
    targets,
    ignore: kind === 'quantization' ? m.ignore : ignoreOf(node),
    ...(m.kvCache ? { kvCache: describeKvCache(m.kvCache) } : {}),
    settings,
  };
}

function ignoreOf(node: PMap | undefined): string[] {
  const e = node ? entry(node, 'ignore') : undefined;
  if (!e || isNull(e.value)) return [];
  const plain = toPlain(e.value);
  return (Array.isArray(plain) ? plain : [plain]).map(scalarText);
}

function compactValue(node: PNode): string {
  const text = scalarText(toPlain(node));
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

// ------------------------------------------------------------------ schemes in words

const kindOf = (args: QuantArgs) => `${args.type === 'float' ? 'FP' : 'INT'}${args.numBits}`;

function granularity(args: QuantArgs): string {
  switch (args.strategy) {
    case 'tensor':
      return 'per tensor';
    case 'channel':
      return 'per channel';
    case 'token':
      return 'per token';
    case 'group':
      return `group ${args.groupSize ?? '?'}`;
    case 'tensor_group':
      return `tensor-group ${args.groupSize ?? '?'}`;
    case 'block':
      return `block ${(args.blockStructure ?? [128, 128]).join('×')}`;
    case 'attn_head':
      return 'per attention head';
  }
}

function dynamicText(args: QuantArgs): string {
  return args.dynamic === 'local' ? 'local dynamic' : args.dynamic ? 'dynamic' : 'static';
}

/** "INT8 activations per token, dynamic" (also for outputs and the KV cache). */
function describeActivations(args: QuantArgs, what: string): string {
  const parts = [`${kindOf(args)} ${what} ${granularity(args)}`, dynamicText(args)];
  if (!args.symmetric) parts.push('asymmetric');
  return parts.join(', ');
}

/**
 * A scheme in words, with the algorithm of the modifier that applies it: "INT4 weights, group 128,
 * symmetric, GPTQ act-order static, dampening 0.1"; "FP8 weights, per channel, symmetric, FP8 activations per
 * token, dynamic, round-to-nearest".
 */
export function describeRecipeScheme(scheme: QuantScheme, modifier?: Pick<RecipeModifier, 'type' | 'node'>): string {
  const parts: string[] = [];
  const w = scheme.weights;
  if (w) {
    parts.push(`${kindOf(w)} weights`, granularity(w), w.symmetric ? 'symmetric' : 'asymmetric');
    if (w.dynamic) parts.push(`${dynamicText(w)} weight scales`);
    if (w.scaleDtype) parts.push(`${w.scaleDtype} scales`);
  }
  if (scheme.inputActivations) parts.push(describeActivations(scheme.inputActivations, 'activations'));
  if (scheme.outputActivations) parts.push(describeActivations(scheme.outputActivations, 'outputs'));
  if (!w && !scheme.inputActivations && !scheme.outputActivations) parts.push('nothing quantized');
  if (modifier && w) {
    if (modifier.type === 'GPTQModifier') {
      const order = w.actorder === 'weight' ? ' act-order static' : w.actorder === 'group' ? ' act-order dynamic' : '';
      parts.push(`GPTQ${order}`, `dampening ${fieldText(modifier.node, 'dampening_frac') ?? '0.01'}`);
    } else if (modifier.type === 'AutoRoundModifier') parts.push(`AutoRound, ${fieldText(modifier.node, 'iters') ?? '200'} iterations`);
    else if (modifier.type === 'QuantizationModifier') parts.push('round-to-nearest');
  } else if (w?.actorder) parts.push(`act-order ${w.actorder === 'weight' ? 'static' : 'dynamic'}`);
  return parts.join(', ');
}

/** A table cell's worth: "INT4 g128 sym", "INT8 channel + INT8 act token dyn". */
export function shortScheme(scheme: QuantScheme): string {
  const short = (args: QuantArgs) => {
    const g = args.strategy === 'group' ? `g${args.groupSize}` : args.strategy === 'tensor_group' ? `tg${args.groupSize}` : args.strategy === 'block' ? `block ${(args.blockStructure ?? [128, 128]).join('×')}` : args.strategy;
    return `${kindOf(args)} ${g}`;
  };
  const parts: string[] = [];
  const w = scheme.weights;
  if (w) parts.push(`${short(w)} ${w.symmetric ? 'sym' : 'asym'}`);
  const a = scheme.inputActivations;
  if (a) parts.push(`${short(a)} act ${a.dynamic === false ? 'static' : 'dyn'}`);
  if (scheme.outputActivations) parts.push(`${short(scheme.outputActivations)} out`);
  return parts.join(' + ') || 'none';
}

function describeKvCache(args: QuantArgs): string {
  return describeActivations(args, 'KV cache');
}

// ------------------------------------------------------------------ the resolved map

function resolveForPreview(analysis: RecipeAnalysis, model: ModelLayers): ResolvedMap {
  const plan = resolveRecipe(analysis, model);
  const modifierByIndex = analysis.modifiers;
  const layers: PreviewLayer[] = [];
  const classOf = new Map(model.layers.map((l) => [l.name, l.className]));
  for (const l of plan.layers) {
    const className = classOf.get(l.name) ?? 'Linear';
    // Embeddings are listed only when the recipe quantizes them: otherwise they are not a recipe's business.
    if (className !== 'Linear' && l.state !== 'quantized') continue;
    layers.push(previewLayer(l, className, l.modifierIndex !== undefined ? calibratorFor(modifierByIndex, l.modifierIndex) : undefined));
  }
  const counts = { total: layers.length, quantized: 0, ignored: 0, unmatched: 0, indivisible: 0 };
  for (const l of layers) {
    counts[l.state]++;
    if (l.indivisibleGroupSize !== undefined) counts.indivisible++;
  }
  return {
    source: model.source,
    layers,
    counts,
    ...(plan.kvCache ? { kvCache: { description: describeKvCache(plan.kvCache.args), modules: plan.kvCache.modules.length } } : {}),
    size: {
      inputBytes: model.totalBytes,
      estimatedBytes: plan.size.estimatedBytes,
      linearOriginalBytes: layers.reduce((sum, l) => sum + (l.originalBytes ?? 0), 0),
      linearEstimatedBytes: layers.reduce((sum, l) => sum + (l.estimatedBytes ?? 0), 0),
    },
  };
}

function previewLayer(l: LayerPlan, className: string, modifier: RecipeModifier | undefined): PreviewLayer {
  const w = l.scheme?.weights;
  // The validator's rule (LLMC group_size_validation): layers narrower than one group are not flagged.
  const indivisible =
    w && (w.strategy === 'group' || w.strategy === 'tensor_group') && w.groupSize && l.inFeatures !== undefined && l.inFeatures >= w.groupSize && l.inFeatures % w.groupSize !== 0 ? w.groupSize : undefined;
  return {
    name: l.name,
    className,
    ...(l.inFeatures !== undefined ? { inFeatures: l.inFeatures } : {}),
    ...(l.outFeatures !== undefined ? { outFeatures: l.outFeatures } : {}),
    state: l.state === 'untouched' ? 'unmatched' : l.state,
    ...(l.scheme ? { scheme: shortScheme(l.scheme), description: describeRecipeScheme(l.scheme, modifier) } : {}),
    ...(l.group !== undefined ? { group: l.group } : {}),
    ...(l.modifier !== undefined ? { modifier: l.modifier } : {}),
    ...(l.format !== undefined ? { format: l.format } : {}),
    ...(l.ignoredBy !== undefined ? { ignoredBy: l.ignoredBy } : {}),
    algorithms: l.algorithms,
    ...(indivisible !== undefined ? { indivisibleGroupSize: indivisible } : {}),
    ...(l.originalBytes !== undefined ? { originalBytes: l.originalBytes } : {}),
    ...(l.estimatedBytes !== undefined ? { estimatedBytes: l.estimatedBytes } : {}),
  };
}

// ------------------------------------------------------------------ table paging and the Run button

export interface PreviewLayerQuery {
  /** Text, or `re:regex`, matched against the layer name. */
  readonly filter: string;
  /** Only layers in this state ('' all; 'indivisible' those with a group_size that does not divide them). */
  readonly state: '' | PreviewLayerState | 'indivisible';
  readonly offset: number;
  readonly limit: number;
}

export interface PreviewLayerPage {
  readonly total: number;
  readonly offset: number;
  readonly rows: readonly PreviewLayer[];
  readonly filterError?: string;
}

export function queryPreviewLayers(layers: readonly PreviewLayer[], query: PreviewLayerQuery): PreviewLayerPage {
  const { matcher, filterError } = nameMatcher(query.filter);
  const rows = layers.filter((l) => matcher(l.name) && (query.state === '' || (query.state === 'indivisible' ? l.indivisibleGroupSize !== undefined : l.state === query.state)));
  const offset = Math.max(0, Math.min(query.offset, rows.length));
  return { total: rows.length, offset, rows: rows.slice(offset, offset + Math.max(0, Math.min(query.limit, 2000))), ...(filterError ? { filterError } : {}) };
}

export interface RunAvailability {
  readonly enabled: boolean;
  /** Why Run is disabled, one sentence each (empty when enabled). */
  readonly reasons: readonly string[];
}

/** Whether the recipe can be run on the chosen model, and if not, every reason why. */
export function runAvailability(preview: RecipePreview | undefined, context: { readonly model?: string; readonly modelError?: string; readonly trusted: boolean }): RunAvailability {
  const reasons: string[] = [];
  if (!context.trusted) reasons.push('This workspace is not trusted: quantization runs native code over workspace files, so trust the workspace to run it.');
  if (!preview) reasons.push('The recipe has not been read yet.');
  else if (!preview.isRecipe) reasons.push('This file is not an llm-compressor recipe.');
  else if (preview.errors > 0) reasons.push(`The recipe has ${preview.errors} error${preview.errors === 1 ? '' : 's'}: fix ${preview.errors === 1 ? 'it' : 'them'} first.`);
  if (!context.model) reasons.push('Choose a model to quantize.');
  else if (context.modelError) reasons.push(`The model cannot be read: ${context.modelError}`);
  return { enabled: reasons.length === 0, reasons };
}
