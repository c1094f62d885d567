/**
 * The quantize job's per-layer plan from an llm-compressor recipe: the recipe must have no error diagnostics
 * and only modifiers the job runs (QuantizationModifier, GPTQModifier); each quantized layer gets its scheme,
 * config group and, under GPTQModifier, the modifier's block_size / dampening_frac.
 */
import { QuantizeError } from '../quant/rtn';
import { DEFAULT_BLOCK_SIZE, LLM_COMPRESSOR_DAMPENING_FRAC } from '../quant/gptq';
import { analyzeRecipe } from '../recipe/recipe';
import { resolveRecipe } from '../recipe/resolve';
import type { ModelLayers } from '../recipe/types';
import { entry } from '../recipe/tree';
import { GptqJobSettings, LayerJob, QuantizeJobOptions, RUNNABLE_MODIFIERS } from './quantize';

/** A number field of a recipe modifier, or undefined when absent / null. */
function modifierNumber(node: Parameters<typeof entry>[0] | undefined, key: string): number | undefined {
  const e = node ? entry(node, key) : undefined;
  if (!e || e.value.kind !== 'scalar' || e.value.value === null) return undefined;
  const v = typeof e.value.value === 'number' ? e.value.value : Number(e.value.value);
  return Number.isFinite(v) ? v : undefined;
}

export interface ResolvedJob {
  readonly layers: ReadonlyMap<string, LayerJob>;
  readonly ignore: readonly string[];
  readonly recipeText: string;
}

/** Per-layer jobs from a recipe against the job's model: its diagnostics must be error-free and its modifiers runnable here. */
export function resolveRecipeJob(options: QuantizeJobOptions, modelLayers: ModelLayers, gptqDefaults: Partial<GptqJobSettings>): ResolvedJob {
  const recipe = options.recipe!;
  const where = recipe.path ?? 'recipe';
  const analysis = analyzeRecipe(recipe.text, { model: modelLayers });
  const errors = analysis.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length) {
    throw new QuantizeError(`${where} has errors:\n  ${errors.map((d) => `${where}:${d.range.start.line + 1}:${d.range.start.character + 1}: ${d.message}`).join('\n  ')}`);
  }
  const unsupported = analysis.modifiers.filter((m) => !(RUNNABLE_MODIFIERS as readonly string[]).includes(m.type));
  if (unsupported.length) {
    throw new QuantizeError(`${where}: QuantLens runs ${RUNNABLE_MODIFIERS.join(' and ')}; it cannot run ${[...new Set(unsupported.map((m) => m.type))].join(', ')} (use llm-compressor for this recipe, or remove the modifier)`);
  }
  const kv = analysis.modifiers.find((m) => m.kvCache);
  if (kv) throw new QuantizeError(`${where}: ${kv.type} sets kv_cache_scheme; KV-cache quantization needs calibration of attention outputs, which QuantLens does not run`);
  const gptqModifiers = analysis.modifiers.filter((m) => m.type === 'GPTQModifier');
  const settingsOf = (index: number | undefined): GptqJobSettings => {
    // The GPTQModifier that quantizes the layer (the last one in the recipe when several could).
    const modifier = (index !== undefined && analysis.modifiers[index]?.type === 'GPTQModifier' ? analysis.modifiers[index] : gptqModifiers.at(-1))!;
    return {
      blockSize: modifierNumber(modifier.node, 'block_size') ?? gptqDefaults.blockSize ?? DEFAULT_BLOCK_SIZE,
      dampeningFrac: modifierNumber(modifier.node, 'dampening_frac') ?? gptqDefaults.dampeningFrac ?? LLM_COMPRESSOR_DAMPENING_FRAC,
      groupParams: gptqDefaults.groupParams ?? 'upfront',
      ...(gptqDefaults.engine ? { engine: gptqDefaults.engine } : {}),
      ...(gptqDefaults.precision ? { precision: gptqDefaults.precision } : {}),
    };
  };
  const plan = resolveRecipe(analysis, modelLayers);
  const layers = new Map<string, LayerJob>();
  for (const layer of plan.layers) {
    if (layer.state !== 'quantized' || !layer.scheme) continue;
    if (!layer.scheme.weights) throw new QuantizeError(`${where}: ${layer.name} gets a scheme without weights (activations only), which QuantLens cannot write`);
    const gptq = layer.algorithms.includes('GPTQ');
    layers.set(layer.name, { scheme: layer.scheme, group: layer.group ?? 'group_0', algorithm: gptq ? 'gptq' : 'rtn', ...(gptq ? { gptq: settingsOf(layer.modifierIndex) } : {}) });
  }
  const ignore = [...new Set(analysis.modifiers.flatMap((m) => m.ignore))];
  return { layers, ignore, recipeText: recipe.text };
}
