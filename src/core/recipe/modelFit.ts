/**
 * How a recipe's quantization fits the model it is checked against: which config group each layer gets
 * (compressed-tensors' precedence), group sizes that do not divide a layer (llm-compressor
 * group_size_validation.py), and NVFP4 global scales of the layers vLLM fuses (observers/helpers.py).
 */
import type { Ctx } from './checks';
import { describeLayers, testPattern } from './patterns';
import type { RecipeModifier, ResolvedGroup } from './recipe';
import type { ModelLayer } from './types';

/** The group of `modifier` that applies to `layer`, or undefined (not targeted or ignored). */
export function assignGroup(modifier: Pick<RecipeModifier, 'groups' | 'ignore'>, layer: ModelLayer): ResolvedGroup | undefined {
  if (modifier.ignore.some((i) => testPattern(i, layer))) return undefined;
  let best: { group: ResolvedGroup; rank: number } | undefined;
  for (const group of modifier.groups) {
    for (const target of group.scheme.targets) {
      if (!testPattern(target, layer)) continue;
      // Precedence among matching targets: exact name, then regex, then class name.
      const rank = target === layer.name ? 0 : target.startsWith('re:') ? 1 : 2;
      if (!best || rank < best.rank) best = { group, rank };
    }
  }
  return best?.group;
}

/** Group-quantized layers whose input features are not divisible by group_size (LLMC group_size_validation.py). */
export function checkDivisibility(ctx: Ctx, modifier: Pick<RecipeModifier, 'groups' | 'ignore'>, severity: 'error' | 'warning' = 'error', consequence = 'llm-compressor stops before calibration'): void {
  const model = ctx.model;
  if (!model) return;
  const byGroup = new Map<ResolvedGroup, ModelLayer[]>();
  for (const layer of model.layers) {
    const group = assignGroup(modifier, layer);
    const w = group?.scheme.weights;
    if (!group || !w || (w.strategy !== 'group' && w.strategy !== 'tensor_group') || !w.groupSize || layer.inFeatures === undefined) continue;
    if (layer.inFeatures >= w.groupSize && layer.inFeatures % w.groupSize !== 0) {
      const list = byGroup.get(group) ?? [];
      list.push(layer);
      byGroup.set(group, list);
    }
  }
  for (const [group, layers] of byGroup) {
    const gs = group.scheme.weights!.groupSize!;
    const what = group.origin === 'scheme' ? `scheme ${group.name === 'group_0' ? '' : `${group.name} `}quantizes weights in groups of ${gs}, which` : `group_size ${gs} of config group "${group.name}"`;
    ctx.add(
      severity,
      'group-size-indivisible',
      group.groupSizeSpan ?? group.span,
      `${what} does not divide the input features of ${layers.length} targeted layer${layers.length === 1 ? '' : 's'}: ${describeLayers(layers)}. ${consequence}; add ${layers.length === 1 ? 'it' : 'them'} to \`ignore\` or pick a group_size that divides ${layers.length === 1 ? 'it' : 'them'}`,
    );
  }
}

/** llm-compressor's FUSED_LAYER_NAMES (llmcompressor/observers/helpers.py): siblings vLLM runs as one GEMM. */
const FUSED_LAYER_NAMES: readonly (readonly string[])[] = [
  ['gate_proj', 'up_proj'],
  ['q_proj', 'k_proj', 'v_proj'],
  ['q_a_proj', 'kv_a_proj_with_mqa'],
  ['w1', 'w3'],
];

/**
 * Fused siblings (q/k/v, gate/up, MLA q_a/kv_a, Mixtral w1/w3) where some get tensor_group (NVFP4) weights and
 * others do not: `fuse_weight_observers` links their observers so that they share one global scale, and
 * asserts "need all fused layers to have same quantization" when a sibling has no weight observer or a
 * different strategy — llm-compressor stops before calibration.
 */
export function checkFusedGlobalScales(ctx: Ctx, modifier: Pick<RecipeModifier, 'groups' | 'ignore'>): void {
  const model = ctx.model;
  if (!model) return;
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const seen = new Set<string>();
  const bad = new Map<ResolvedGroup, { members: string[]; odd: string[] }[]>();
  for (const layer of model.layers) {
    const dot = layer.name.lastIndexOf('.');
    const parent = layer.name.slice(0, dot);
    const set = FUSED_LAYER_NAMES.find((names) => names.includes(layer.name.slice(dot + 1)));
    if (!set) continue;
    const members = set.map((n) => `${parent}.${n}`);
    if (seen.has(members[0]!) || !members.every((m) => byName.has(m))) continue;
    seen.add(members[0]!);
    const groups = members.map((m) => assignGroup(modifier, byName.get(m)!));
    const tensorGroup = groups.map((g) => g?.scheme.weights?.strategy === 'tensor_group');
    if (!tensorGroup.includes(true) || !tensorGroup.includes(false)) continue;
    const owner = groups[tensorGroup.indexOf(true)]!;
    const list = bad.get(owner) ?? [];
    list.push({ members, odd: members.filter((_, i) => !tensorGroup[i]) });
    bad.set(owner, list);
  }
  for (const [group, sets] of bad) {
    const first = sets[0]!;
    ctx.error(
      'fused-global-scale',
      group.span,
      `${group.origin === 'config_groups' ? `config group "${group.name}"` : 'this scheme'} gives tensor_group (NVFP4) weights to only part of ${sets.length} set${sets.length === 1 ? '' : 's'} of layers vLLM fuses (first: ${first.members.join(', ')}; ${describeLayers(first.odd.map((name) => byName.get(name)!))} ${first.odd.length === 1 ? 'is' : 'are'} not quantized the same way). They share one global scale, and llm-compressor stops with "need all fused layers to have same quantization"; target or ignore the whole set`,
    );
  }
}
