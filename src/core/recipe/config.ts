/**
 * Validation of a checkpoint's quantization config: `config.json` → `quantization_config`
 * (compressed-tensors, GPTQ, AutoFP8) and GPTQ's standalone `quantize_config.json` (docs/formats.md §3.1–§3.4,
 * §5.1, §6, §7). Same diagnostics and ranges as recipes; a JSON parse that keeps positions.
 */
import { QuantScheme, presetScheme } from '../quant/args';
import { formatOf } from './resolve';
import { Ctx, checkField, laxInt, strValue, unknownKey } from './checks';
import { PatternRef, checkPatternList, checkPatternsAgainstModel } from './patterns';
import { checkPreset, checkQuantArgs, checkScheme } from './schemeChecks';
import type { ResolvedGroup } from './recipe';
import { checkDivisibility } from './modelFit';
import { CT_CONFIG_FIELDS, FP8_CONFIG_FIELDS, FieldSpec, GPTQ_CONFIG_FIELDS, GPTQ_SYNONYMS } from './schema';
import { PEntry, PMap, entry, isNull, parseText, typeName } from './tree';
import type { Diagnostic, ValidateOptions } from './types';

export type QuantConfigKind = 'compressed-tensors' | 'gptq' | 'fp8' | 'other' | 'none';

export interface QuantConfigAnalysis {
  readonly diagnostics: Diagnostic[];
  readonly kind: QuantConfigKind;
  /** compressed-tensors groups, resolved (for previews). */
  readonly groups: readonly ResolvedGroup[];
  readonly ignore: readonly string[];
}

export function validateQuantizationConfig(jsonText: string, options: ValidateOptions = {}): Diagnostic[] {
  return analyzeQuantizationConfig(jsonText, options).diagnostics;
}

export function analyzeQuantizationConfig(jsonText: string, options: ValidateOptions = {}): QuantConfigAnalysis {
  const parsed = parseText(jsonText, { json: true });
  const ctx = new Ctx(parsed, options.model, false);
  const groups: ResolvedGroup[] = [];
  const ignore: string[] = [];
  let kind: QuantConfigKind = 'none';
  const done = (): QuantConfigAnalysis => ({ diagnostics: [...parsed.diagnostics, ...ctx.diagnostics], kind, groups, ignore });
  if (parsed.broken) return done();
  const root = parsed.root;
  if (!root) {
    ctx.error('json-syntax', { start: 0, end: 0 }, 'empty file: a JSON object is expected');
    return done();
  }
  if (root.kind !== 'map') {
    ctx.error('not-a-mapping', root.span, `a config must be a JSON object, not ${typeName(root)}`);
    return done();
  }

  let config: PMap | undefined;
  let embedded = false;
  const qc = entry(root, 'quantization_config');
  const legacy = entry(root, 'compression_config');
  if (qc) {
    embedded = true;
    if (qc.value.kind !== 'map') {
      if (!isNull(qc.value)) ctx.error('wrong-type', qc.value.span, `quantization_config must be an object, not ${typeName(qc.value)}`);
      return done();
    }
    config = qc.value;
  } else if (legacy && legacy.value.kind === 'map') {
    embedded = true;
    ctx.warning('legacy-key', legacy.keySpan, 'compression_config is the early-2024 name of quantization_config: current transformers and vLLM only read quantization_config');
    config = legacy.value;
  } else if (['quant_method', 'bits', 'w_bit', 'config_groups', 'activation_scheme'].some((k) => entry(root, k))) {
    config = root;
  }
  if (!config) return done();

  try {
    const method = entry(config, 'quant_method');
    const methodValue = method ? strValue(method.value) : undefined;
    if (method && methodValue === undefined) ctx.error('wrong-type', method.value.span, `quant_method must be a string, not ${typeName(method.value)}`);
    if (methodValue === 'compressed-tensors' || (!method && entry(config, 'config_groups'))) {
      kind = 'compressed-tensors';
      if (!method && embedded) ctx.error('missing-field', qc?.keySpan ?? config.span, 'quantization_config has no quant_method: transformers and vLLM pick the loader from it; add "quant_method": "compressed-tensors"');
      checkCompressedTensors(ctx, config, groups, ignore);
    } else if (methodValue === 'gptq' || (!method && (entry(config, 'bits') || entry(config, 'w_bit')))) {
      kind = 'gptq';
      if (!method && embedded) ctx.error('missing-field', qc?.keySpan ?? config.span, 'quantization_config has no quant_method: transformers and vLLM pick the loader from it; add "quant_method": "gptq"');
      checkGptq(ctx, config);
    } else if (methodValue === 'fp8') {
      kind = 'fp8';
      checkFp8(ctx, config);
    } else if (methodValue !== undefined) {
      kind = 'other';
      ctx.add('info', 'unchecked-method', method!.value.span, `quant_method "${methodValue}" is not validated by QuantLens (it checks compressed-tensors, gptq and fp8)`);
    } else if (embedded) {
      ctx.error('missing-field', qc?.keySpan ?? config.span, 'quantization_config has no quant_method: transformers and vLLM pick the loader from it');
    }
  } catch (error) {
    ctx.error('internal', config.span, `QuantLens could not finish validating this config: ${(error as Error).message}`);
  }
  return done();
}

function checkKnownFields(ctx: Ctx, config: PMap, specs: readonly FieldSpec[], owner: string, consequence: string, handled: ReadonlySet<string>): void {
  const visible = specs.filter((s) => !s.hidden).map((s) => s.name);
  for (const e of config.entries) {
    const spec = specs.find((s) => s.name === e.key);
    if (!spec) {
      unknownKey(ctx, e, visible, owner, { severity: 'warning', consequence });
      continue;
    }
    if (handled.has(e.key)) continue;
    checkField(ctx, spec, e, ` (${owner})`);
  }
  for (const spec of specs) if (spec.required && !entry(config, spec.name)) ctx.error('missing-field', config.span, `${owner} needs "${spec.name}"`);
}

// ------------------------------------------------------------------ compressed-tensors

function checkCompressedTensors(ctx: Ctx, config: PMap, groups: ResolvedGroup[], ignore: string[]): void {
  checkKnownFields(ctx, config, CT_CONFIG_FIELDS, 'the compressed-tensors quantization_config', 'compressed-tensors ignores unknown keys', new Set(['config_groups', 'ignore', 'kv_cache_scheme']));
  const globalFormat = strValue(entry(config, 'format')?.value ?? { kind: 'scalar', span: { start: 0, end: 0 }, value: null, quoted: false });

  const ignoreEntry = entry(config, 'ignore');
  let ignoreRefs: PatternRef[] = [];
  if (ignoreEntry && !isNull(ignoreEntry.value)) ignoreRefs = checkPatternList(ctx, ignoreEntry.value, 'ignore', '', false) ?? [];
  ignore.push(...ignoreRefs.map((r) => r.value));

  const kv = entry(config, 'kv_cache_scheme');
  if (kv && !isNull(kv.value)) checkQuantArgs(ctx, kv.value, 'kv_cache_scheme', kv.keySpan);

  const cg = entry(config, 'config_groups');
  if (cg && cg.value.kind !== 'map') ctx.error('wrong-type', cg.value.span, `config_groups must be an object of group names to schemes, not ${typeName(cg.value)}`);
  const targetRefs: PatternRef[] = [];
  if (cg && cg.value.kind === 'map') {
    for (const g of cg.value.entries) {
      if (g.value.kind === 'seq') {
        // A preset name mapped to a target list, expanded on load.
        const name = checkPreset(ctx, g.keyNode, g.key, ' (a config group given as a target list must be named after a preset scheme)');
        const refs = checkPatternList(ctx, g.value, `config_groups.${g.key}`, '', false);
        if (name && refs) {
          groups.push({ name: g.key, scheme: presetScheme(name, refs.map((r) => r.value))!, span: g.keySpan, origin: 'scheme' });
          targetRefs.push(...refs);
        }
        continue;
      }
      const checked = checkScheme(ctx, g.value, g.keySpan, g.key);
      targetRefs.push(...checked.targets);
      if (!checked.scheme) continue;
      const gs = checked.weightsNode ? entry(checked.weightsNode, 'group_size') : undefined;
      groups.push({ name: g.key, scheme: checked.scheme, span: g.keySpan, groupSizeSpan: gs?.value.span, origin: 'config_groups' });
      checkVllmFormat(ctx, g, checked.scheme, globalFormat);
    }
    if (cg.value.entries.length === 0) ctx.warning('empty-config-groups', cg.keySpan, 'config_groups is empty: nothing is quantized');
  }
  checkGlobalFormat(ctx, config, groups, globalFormat);

  if (ctx.model) {
    checkPatternsAgainstModel(ctx, targetRefs, 'targets', { linearOnly: true });
    checkPatternsAgainstModel(ctx, ignoreRefs, 'ignore');
    checkDivisibility(ctx, { groups, ignore }, 'error', 'compressed-tensors and vLLM cannot load group scales for them');
  }
}

const ACTIVATION_FORMATS = new Set(['int-quantized', 'float-quantized', 'naive-quantized']);

/** vLLM asserts float weights for weight-only groups in activation formats (docs/formats.md §7). */
function checkVllmFormat(ctx: Ctx, group: PEntry, scheme: QuantScheme, globalFormat: string | undefined): void {
  const format = scheme.format ?? globalFormat;
  if (!format || !scheme.weights || scheme.inputActivations) return;
  if (ACTIVATION_FORMATS.has(format) && scheme.weights.type === 'int') {
    const formatEntry = group.value.kind === 'map' ? entry(group.value, 'format') : undefined;
    ctx.warning(
      'vllm-format',
      formatEntry?.value.span ?? group.keySpan,
      `config group "${group.key}" has integer weights without input_activations, stored as ${format}: vLLM only takes float weights in that format (it fails with an AssertionError); weight-only integer schemes are saved as pack-quantized`,
    );
  }
}

function checkGlobalFormat(ctx: Ctx, config: PMap, groups: readonly ResolvedGroup[], globalFormat: string | undefined): void {
  const formatEntry = entry(config, 'format');
  if (!formatEntry || !globalFormat || groups.length === 0) return;
  const formats = new Set(groups.map((g) => formatOf(g.scheme)));
  if (globalFormat === 'mixed-precision') {
    const missing = groups.filter((g) => !g.scheme.format);
    if (missing.length > 0) ctx.warning('format', formatEntry.value.span, `format is mixed-precision, but config group${missing.length === 1 ? '' : 's'} ${missing.map((g) => `"${g.name}"`).join(', ')} carr${missing.length === 1 ? 'ies' : 'y'} no format of its own`);
  } else if (formats.size > 1 && groups.every((g) => !g.scheme.format)) {
    ctx.warning('format', formatEntry.value.span, `the config groups need different formats (${[...formats].join(', ')}), but the global format is ${globalFormat} and no group sets its own: compressed-tensors writes "mixed-precision" with a format per group`);
  }
}

// ------------------------------------------------------------------ GPTQ

function checkGptq(ctx: Ctx, config: PMap): void {
  const specs = GPTQ_CONFIG_FIELDS;
  for (const e of config.entries) {
    if (GPTQ_SYNONYMS[e.key]) {
      const target = GPTQ_SYNONYMS[e.key]!;
      if (entry(config, target)) ctx.warning('synonym', e.keySpan, `"${e.key}" is an old spelling of "${target}", which is also set: "${target}" wins`);
      else ctx.add('info', 'synonym', e.keySpan, `"${e.key}" is read as "${target}" (AutoGPTQ synonym)`, ctx.replaceScalar(`Rename to ${target}`, e.keyNode, target));
    }
  }
  const configLike: PMap = { ...config, entries: config.entries.filter((e) => !GPTQ_SYNONYMS[e.key]) };
  checkKnownFields(ctx, configLike, specs, 'the GPTQ config', 'AutoGPTQ and vLLM ignore unknown keys', new Set(['bits', 'group_size', 'checkpoint_format']));

  const bits = entry(config, 'bits') ?? entry(config, 'w_bit');
  if (bits) {
    const v = laxInt(bits.value);
    if (v === undefined) ctx.error('wrong-type', bits.value.span, `bits must be an integer, not ${typeName(bits.value)}`);
    else if (![2, 3, 4, 8].includes(v)) ctx.error('invalid-value', bits.value.span, `bits must be 2, 3, 4 or 8 (AutoGPTQ: "only support quantize to [2, 3, 4, 8] bits"), got ${v}`);
  } else ctx.add('info', 'default', config.span, 'bits is not set: AutoGPTQ assumes 4');
  const groupSize = entry(config, 'group_size') ?? entry(config, 'q_group_size');
  if (groupSize) {
    const v = laxInt(groupSize.value);
    if (v === undefined) ctx.error('wrong-type', groupSize.value.span, `group_size must be an integer, not ${typeName(groupSize.value)}`);
    else if (v !== -1 && v <= 0) ctx.error('invalid-value', groupSize.value.span, `group_size must be -1 (per channel) or positive, got ${v}`, ctx.replace('Set group_size to 128', groupSize.value.span, '128'));
  }
  const format = entry(config, 'checkpoint_format');
  if (format) {
    const spec = specs.find((s) => s.name === 'checkpoint_format')!;
    const v = strValue(format.value);
    if (v === undefined) ctx.error('wrong-type', format.value.span, `checkpoint_format must be a string, not ${typeName(format.value)}`);
    else if (spec.type.t === 'enum' && !spec.type.values.includes(v)) ctx.warning('invalid-value', format.value.span, `checkpoint_format "${v}" is not one QuantLens knows (${spec.type.values.join(', ')})`);
  }
  if (!entry(config, 'sym')) ctx.add('info', 'default', config.span, 'sym is not set: AutoGPTQ warns and assumes symmetric quantization');

  if (ctx.model) {
    const gs = groupSize ? laxInt(groupSize.value) : -1;
    const lmHead = entry(config, 'lm_head');
    const includeHead = lmHead !== undefined && lmHead.value.kind === 'scalar' && lmHead.value.value === true;
    if (gs !== undefined && gs > 0) {
      const bad = ctx.model.layers.filter((l) => l.className === 'Linear' && (includeHead || l.name !== 'lm_head') && l.inFeatures !== undefined && l.inFeatures % gs !== 0);
      if (bad.length > 0) {
        ctx.error('group-size-indivisible', groupSize!.value.span, `group_size ${gs} does not divide the input features of ${bad.length} layer${bad.length === 1 ? '' : 's'}: ${bad.slice(0, 4).map((l) => `${l.name} (in_features ${l.inFeatures})`).join(', ')}${bad.length > 4 ? ` and ${bad.length - 4} more` : ''}; vLLM rejects such layers`);
      }
    }
  }
}

// ------------------------------------------------------------------ AutoFP8

function checkFp8(ctx: Ctx, config: PMap): void {
  checkKnownFields(ctx, config, FP8_CONFIG_FIELDS, 'the FP8 quantization_config', 'AutoFP8 and vLLM ignore unknown keys', new Set(['ignored_layers', 'modules_to_not_convert']));
  for (const key of ['ignored_layers', 'modules_to_not_convert']) {
    const e = entry(config, key);
    if (e && !isNull(e.value)) {
      const refs = checkPatternList(ctx, e.value, key, '', false);
      if (refs && ctx.model) checkPatternsAgainstModel(ctx, refs, 'ignore');
    }
  }
  const block = entry(config, 'weight_block_size');
  const scheme = strValue(entry(config, 'activation_scheme')?.value ?? { kind: 'scalar', span: { start: 0, end: 0 }, value: null, quoted: false });
  if (block && !isNull(block.value) && scheme === 'static') {
    ctx.error('invalid-combination', block.keySpan, 'weight_block_size needs activation_scheme "dynamic": vLLM does not support static activation scales with block-wise weights');
  }
}
