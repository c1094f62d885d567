/**
 * What a recipe does to a model, layer by layer: which modifier's scheme each linear layer ends up with
 * (later quantization modifiers override earlier ones on the layers they target), which layers are
 * ignored or left alone, the KV-cache modules, and an estimate of the compressed checkpoint's size from the
 * storage layout compressed-tensors writes (docs/formats.md §3.5). For the recipe preview editor and the CLI.
 */
import { QuantArgs, QuantScheme, inferFormat } from '../quant/args';
import { compilePattern } from '../quant/match';
import { describeScheme } from '../checkpoint/scheme';
import { RecipeAnalysis, RecipeModifier, analyzeRecipe } from './recipe';
import { assignGroup } from './modelFit';
import { testPattern } from './patterns';
import type { Diagnostic, ModelLayer, ModelLayers } from './types';

export interface LayerPlan {
  readonly name: string;
  readonly inFeatures?: number;
  readonly outFeatures?: number;
  readonly state: 'quantized' | 'ignored' | 'untouched';
  /** The modifier whose scheme applies (type and position in the recipe). */
  readonly modifier?: string;
  readonly modifierIndex?: number;
  /** Config group name (group_0 … for presets). */
  readonly group?: string;
  readonly scheme?: QuantScheme;
  /** Model-card phrasing of the scheme. */
  readonly description?: string;
  /** compressed-tensors format the layer is saved in. */
  readonly format?: string;
  /** The first ignore entry (of a quantization modifier) that names the layer, when nothing quantizes it. */
  readonly ignoredBy?: string;
  /** Calibration algorithms that touch the layer's weights (GPTQ, AutoRound, AWQ, SmoothQuant …). */
  readonly algorithms: readonly string[];
  /** Bytes of the layer's tensors before and after (estimates when the shape is known). */
  readonly originalBytes?: number;
  readonly estimatedBytes?: number;
}

export interface RecipePlan {
  readonly diagnostics: readonly Diagnostic[];
  readonly modifiers: readonly { readonly type: string; readonly stage: string; readonly group: string; readonly quantizes: boolean }[];
  readonly layers: readonly LayerPlan[];
  readonly counts: { readonly quantized: number; readonly ignored: number; readonly untouched: number };
  readonly kvCache?: { readonly args: QuantArgs; readonly modules: readonly string[] };
  readonly size: {
    /** Whole checkpoint before (dense weights) and after, in bytes; undefined when shapes are unknown. */
    readonly originalBytes?: number;
    readonly estimatedBytes?: number;
    readonly linearOriginalBytes: number;
    readonly linearEstimatedBytes: number;
  };
}

const KV_TARGET = compilePattern('re:.*(self_attn|attention)$');
const ALGORITHMS: Readonly<Record<string, string>> = {
  GPTQModifier: 'GPTQ',
  AutoRoundModifier: 'AutoRound',
  AWQModifier: 'AWQ',
  SmoothQuantModifier: 'SmoothQuant',
  LogarithmicEqualizationModifier: 'LogEqualization',
  SparseGPTModifier: 'SparseGPT',
  WandaPruningModifier: 'Wanda',
  SpinQuantModifier: 'SpinQuant',
  QuIPModifier: 'QuIP',
};

/** Resolves a recipe (text, or an analysis already made) against a model. */
export function resolveRecipe(recipe: string | RecipeAnalysis, model: ModelLayers): RecipePlan {
  const analysis = typeof recipe === 'string' ? analyzeRecipe(recipe, { model }) : recipe;
  const modifiers = analysis.modifiers;
  const state = new Map<string, { modifier: RecipeModifier; index: number; group: string; scheme: QuantScheme }>();
  const ignoredBy = new Map<string, string>();
  const algorithms = new Map<string, Set<string>>();
  const addAlgorithm = (name: string, algorithm: string) => {
    let set = algorithms.get(name);
    if (!set) algorithms.set(name, (set = new Set()));
    set.add(algorithm);
  };
  let kvCache: { args: QuantArgs; modules: string[] } | undefined;
  const linear = model.layers.filter((l) => l.className === 'Linear' || l.className === 'Embedding');

  modifiers.forEach((m, index) => {
    if (!m.spec) return;
    if (m.spec.quantization) {
      if (m.hasConfig) {
        for (const layer of linear) {
          const group = assignGroup(m, layer);
          if (group) {
            if (group.scheme.weights || group.scheme.inputActivations || group.scheme.outputActivations) state.set(layer.name, { modifier: m, index, group: group.name, scheme: group.scheme });
          } else if (!state.has(layer.name)) {
            const hit = m.ignore.find((i) => testPattern(i, layer));
            if (hit && !ignoredBy.has(layer.name)) ignoredBy.set(layer.name, hit);
          }
        }
        if (m.kvCache) kvCache = { args: m.kvCache, modules: model.modules.filter((name) => KV_TARGET.test(name)) };
      }
      const algorithm = ALGORITHMS[m.type];
      if (algorithm) {
        for (const layer of linear) {
          const s = state.get(layer.name);
          if (!s?.scheme.weights) continue;
          if (m.ignore.some((i) => testPattern(i, layer))) continue;
          const targets = m.hasConfig ? m.groups.flatMap((g) => g.scheme.targets) : m.targets;
          if (targets.some((t) => testPattern(t, layer))) addAlgorithm(layer.name, algorithm);
        }
      }
      return;
    }
    const algorithm = ALGORITHMS[m.type];
    if (!algorithm) return;
    if (m.type === 'AWQModifier' || m.type === 'SmoothQuantModifier' || m.type === 'LogarithmicEqualizationModifier' || m.type === 'SpinQuantModifier') {
      // Mappings inferred from the architecture usually cover every decoder projection.
      for (const layer of linear) if (layer.name !== 'lm_head' && layer.className === 'Linear' && /\.layers\.\d+\./.test(layer.name)) addAlgorithm(layer.name, algorithm);
    } else {
      const targets = m.targets.length > 0 ? m.targets : ['Linear'];
      for (const layer of linear) if (targets.some((t) => testPattern(t, layer))) addAlgorithm(layer.name, algorithm);
    }
  });

  const layers: LayerPlan[] = [];
  let linearOriginal = 0;
  let linearEstimated = 0;
  let shapesKnown = true;
  for (const layer of linear) {
    const s = state.get(layer.name);
    const original = layer.tied ? 0 : denseBytes(layer, model.dtypeBytes);
    const estimated = s?.scheme.weights ? layerQuantizedBytes(layer, s.scheme, model.dtypeBytes) : original;
    if (original === undefined || estimated === undefined) shapesKnown = false;
    else {
      linearOriginal += original;
      linearEstimated += estimated;
    }
    layers.push({
      name: layer.name,
      inFeatures: layer.inFeatures,
      outFeatures: layer.outFeatures,
      state: s ? 'quantized' : ignoredBy.has(layer.name) ? 'ignored' : 'untouched',
      ...(s ? { modifier: s.modifier.type, modifierIndex: s.index, group: s.group, scheme: s.scheme, description: describeScheme(s.scheme), format: formatOf(s.scheme) } : {}),
      ...(ignoredBy.has(layer.name) && !s ? { ignoredBy: ignoredBy.get(layer.name) } : {}),
      algorithms: [...(algorithms.get(layer.name) ?? [])],
      originalBytes: original,
      estimatedBytes: estimated,
    });
  }
  const counts = { quantized: 0, ignored: 0, untouched: 0 };
  for (const l of layers) counts[l.state]++;
  // Bytes outside the linear layers (embeddings excluded above only when not quantized: they stay).
  const other = model.totalBytes !== undefined && model.linearBytes !== undefined ? model.totalBytes - model.linearBytes : undefined;
  const embeddings = new Set(linear.filter((l) => l.className === 'Embedding').map((l) => l.name));
  const embeddingBytes = layers.filter((l) => embeddings.has(l.name)).reduce((sum, l) => sum + (l.originalBytes ?? 0), 0);
  const otherWithoutEmbedding = other === undefined ? undefined : Math.max(0, other - embeddingBytes);
  return {
    diagnostics: analysis.diagnostics,
    modifiers: modifiers.map((m) => ({ type: m.type, stage: m.stage, group: m.group, quantizes: m.groups.some((g) => g.scheme.weights !== undefined) || m.kvCache !== undefined })),
    layers,
    counts,
    ...(kvCache ? { kvCache } : {}),
    size: {
      linearOriginalBytes: linearOriginal,
      linearEstimatedBytes: linearEstimated,
      ...(otherWithoutEmbedding !== undefined && shapesKnown ? { originalBytes: otherWithoutEmbedding + linearOriginal, estimatedBytes: otherWithoutEmbedding + linearEstimated } : {}),
    },
  };
}

/** The compressed-tensors format of a scheme: the one it names, or the inferred one (args.ts inferFormat). */
export function formatOf(scheme: QuantScheme): string {
  return scheme.format ?? inferFormat(scheme);
}

function denseBytes(layer: ModelLayer, dtypeBytes: number): number | undefined {
  if (layer.inFeatures === undefined || layer.outFeatures === undefined) return undefined;
  const fused = layer.fusedExperts;
  return layer.inFeatures * layer.outFeatures * dtypeBytes * (fused ? fused.experts * fused.projections : 1) + (layer.biasBytes ?? 0);
}

/**
 * Bytes a layer takes quantized, biases copied as they are: fused experts are written as one quantized Linear
 * per expert and projection (jobs/fusedExperts.ts: packed values, scales, zero points, global scales each).
 */
function layerQuantizedBytes(layer: ModelLayer, scheme: QuantScheme, dtypeBytes: number): number | undefined {
  const one = quantizedBytes(layer, scheme, dtypeBytes);
  const fused = layer.fusedExperts;
  return one === undefined ? undefined : one * (fused ? fused.experts * fused.projections : 1) + (layer.biasBytes ?? 0);
}

/** Bytes compressed-tensors stores for one layer under `scheme` (weights, scales, zero points, g_idx, input scales). */
export function quantizedBytes(layer: Pick<ModelLayer, 'inFeatures' | 'outFeatures'>, scheme: QuantScheme, dtypeBytes: number): number | undefined {
  const w = scheme.weights;
  const rows = layer.outFeatures;
  const cols = layer.inFeatures;
  if (rows === undefined || cols === undefined) return undefined;
  if (!w) return rows * cols * dtypeBytes;
  const format = formatOf(scheme);
  const bits = w.numBits;
  let bytes: number;
  // Values
  if (format === 'pack-quantized') bytes = rows * Math.ceil((cols * bits) / 32) * 4 + 16; // + weight_shape (I64[2])
  else if (w.type === 'float' && bits === 4) bytes = rows * Math.ceil(cols / 2); // FP4 packed two per byte
  else bytes = rows * cols * Math.ceil(bits / 8);
  // Scales
  const scaleBytes = w.scaleDtype === 'float8_e4m3fn' || w.scaleDtype === 'uint8' ? 1 : dtypeBytes;
  let scales: number;
  switch (w.strategy) {
    case 'channel':
      scales = rows;
      break;
    case 'group':
    case 'tensor_group':
      scales = rows * Math.ceil(cols / (w.groupSize ?? cols));
      break;
    case 'block': {
      const [br, bc] = w.blockStructure ?? [128, 128];
      scales = Math.ceil(rows / br) * Math.ceil(cols / bc);
      break;
    }
    default:
      scales = 1;
  }
  bytes += w.dynamic === true ? 0 : scales * scaleBytes;
  if (w.strategy === 'tensor_group') bytes += 4; // global scale (F32)
  // Zero points (asymmetric integer weights)
  if (!w.symmetric && w.type === 'int' && w.dynamic !== true) {
    const groups = scales / rows;
    bytes += format === 'pack-quantized' && w.strategy !== 'tensor' ? Math.ceil((rows * bits) / 32) * Math.max(1, groups) * 4 : scales;
  }
  if (w.actorder === 'group') bytes += cols * 4;
  const a = scheme.inputActivations;
  if (a && a.dynamic === false) {
    bytes += (a.strategy === 'tensor_group' ? 4 : dtypeBytes) + (!a.symmetric && a.type === 'int' ? 1 : 0);
  }
  return bytes;
}
