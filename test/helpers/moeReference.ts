/**
 * The float64 reference of a mixture-of-experts MLP (Mixtral, Qwen2-MoE, Qwen3-MoE), written from transformers'
 * MixtralSparseMoeBlock / Qwen2MoeSparseMoeBlock / Qwen3MoeSparseMoeBlock, sharing nothing with src/core/runtime: router logits,
 * softmax over the experts, the top-k experts of each token by sorting (ties to the lower index), their weights
 * renormalised (Mixtral; Qwen2-MoE and Qwen3-MoE when norm_topk_prob), Σ_k w · expert(x) over the routed experts only, plus
 * Qwen2-MoE's sigmoid-gated shared expert. Every expert also runs on every token, through the same `linear`
 * (so hooks see each expert's input over all tokens, as llm-compressor's calibrate_all_experts calibrates);
 * only the routed ones reach the output.
 */
import type { TinyConfig, Weights } from './llamaReference';

export type ReferenceLinear = (module: string, rows: Float64Array[], outFeatures: number) => Float64Array[];

/** A tiny Mixtral (4 experts, 2 per token) in the shape of tinyConfig. */
export function tinyMixtralConfig(base: TinyConfig, overrides: Partial<TinyConfig> = {}): TinyConfig {
  return { ...base, architectures: ['MixtralForCausalLM'], model_type: 'mixtral', num_local_experts: 4, num_experts_per_tok: 2, ...overrides };
}

/** A tiny Qwen2-MoE: 4 experts, 2 per token, a shared expert, layer 1 dense (mlp_only_layers). */
export function tinyQwen2MoeConfig(base: TinyConfig, overrides: Partial<TinyConfig> = {}): TinyConfig {
  return {
    ...base,
    architectures: ['Qwen2MoeForCausalLM'],
    model_type: 'qwen2_moe',
    num_experts: 4,
    num_experts_per_tok: 2,
    moe_intermediate_size: base.intermediate_size / 2,
    shared_expert_intermediate_size: base.intermediate_size,
    norm_topk_prob: false,
    decoder_sparse_step: 1,
    mlp_only_layers: [1],
    ...overrides,
  };
}

interface MoeShape {
  experts: number;
  perToken: number;
  normalize: boolean;
  expertSize: number;
  sharedSize?: number;
  container: string;
  names: [string, string, string];
}

const isMoe = (c: TinyConfig) => c.model_type === 'mixtral' || c.model_type === 'qwen2_moe' || c.model_type === 'qwen3_moe';

/** A tiny Qwen3-MoE: 4 experts, 2 per token, renormalised, no shared expert, layer 0 dense (mlp_only_layers). */
export function tinyQwen3MoeConfig(base: TinyConfig, overrides: Partial<TinyConfig> = {}): TinyConfig {
  return {
    ...base,
    architectures: ['Qwen3MoeForCausalLM'],
    model_type: 'qwen3_moe',
    head_dim: 32,
    num_experts: 4,
    num_experts_per_tok: 2,
    moe_intermediate_size: base.intermediate_size / 2,
    norm_topk_prob: true,
    decoder_sparse_step: 1,
    mlp_only_layers: [0],
    ...overrides,
  };
}

/** The sparse MLP of layer `l` as config.json describes it, or undefined for a dense layer. */
export function moeShape(config: TinyConfig, l: number, weights?: Weights): MoeShape | undefined {
  if (!isMoe(config)) return undefined;
  const p = `model.layers.${l}`;
  if (config.model_type === 'mixtral') {
    // Mixtral as transformers ≤ 4 names it, or as newer savers do (mlp.gate, mlp.experts.E.gate_proj …).
    const newer = weights?.has(`${p}.mlp.gate.weight`) === true;
    return {
      experts: config.num_local_experts as number,
      perToken: config.num_experts_per_tok as number,
      normalize: true,
      expertSize: config.intermediate_size,
      container: `${p}.${newer ? 'mlp' : 'block_sparse_moe'}`,
      names: newer ? ['gate_proj', 'up_proj', 'down_proj'] : ['w1', 'w3', 'w2'],
    };
  }
  const step = (config.decoder_sparse_step as number | undefined) ?? 1;
  const dense = ((config.mlp_only_layers as number[] | undefined) ?? []).includes(l) || (l + 1) % step !== 0;
  if (dense) return undefined;
  return {
    experts: config.num_experts as number,
    perToken: config.num_experts_per_tok as number,
    normalize: config.norm_topk_prob === true,
    expertSize: config.moe_intermediate_size as number,
    ...(config.model_type === 'qwen2_moe' ? { sharedSize: config.shared_expert_intermediate_size as number } : {}),
    container: `${p}.mlp`,
    names: ['gate_proj', 'up_proj', 'down_proj'],
  };
}

/** Adds layer `l`'s router, experts (and shared expert) to the random weights; false for a dense layer. */
export function addMoeWeights(config: TinyConfig, l: number, add: (name: string, shape: number[], scale: number) => void): boolean {
  const shape = moeShape(config, l);
  if (!shape) return false;
  const H = config.hidden_size;
  const { container: c, names, expertSize: I } = shape;
  // Router logits of order 1, so that the routing differs from token to token.
  add(`${c}.gate.weight`, [shape.experts, H], (3 / Math.sqrt(H)) * 1.5);
  for (let e = 0; e < shape.experts; e++) {
    add(`${c}.experts.${e}.${names[0]}.weight`, [I, H], (1 / Math.sqrt(H)) * 1.5);
    add(`${c}.experts.${e}.${names[1]}.weight`, [I, H], (1 / Math.sqrt(H)) * 1.5);
    add(`${c}.experts.${e}.${names[2]}.weight`, [H, I], 1 / Math.sqrt(I));
  }
  if (shape.sharedSize !== undefined) {
    const S = shape.sharedSize;
    add(`${c}.shared_expert.gate_proj.weight`, [S, H], (1 / Math.sqrt(H)) * 1.5);
    add(`${c}.shared_expert.up_proj.weight`, [S, H], (1 / Math.sqrt(H)) * 1.5);
    add(`${c}.shared_expert.down_proj.weight`, [H, S], 1 / Math.sqrt(S));
    add(`${c}.shared_expert_gate.weight`, [1, H], 2 / Math.sqrt(H));
  }
  return true;
}

/** Smallest gap between the k-th and (k+1)-th routing probability seen by any reference forward (test validity). */
export const routingMargin = { smallest: Infinity };

function swiGlu(linear: ReferenceLinear, prefix: string, names: readonly string[], rows: Float64Array[], I: number, H: number): Float64Array[] {
  const gate = linear(`${prefix}.${names[0]}`, rows, I);
  const up = linear(`${prefix}.${names[1]}`, rows, I);
  const act = gate.map((g, t) => g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[t]![i]!));
  return linear(`${prefix}.${names[2]}`, act, H);
}

/** Layer `l`'s sparse MLP on its normalised input rows, or undefined for a dense layer. */
export function referenceMoeMlp(config: TinyConfig, weights: Weights, linear: ReferenceLinear, l: number, rows: Float64Array[]): Float64Array[] | undefined {
  const shape = moeShape(config, l, weights);
  if (!shape) return undefined;
  const H = config.hidden_size;
  const { experts: E, perToken: k, container } = shape;
  const logits = linear(`${container}.gate`, rows, E);
  const outputs = Array.from({ length: E }, (_, e) => swiGlu(linear, `${container}.experts.${e}`, shape.names, rows, shape.expertSize, H));
  const result = rows.map((_, t) => {
    const z = logits[t]!;
    const max = Math.max(...z);
    const exp = Array.from(z, (v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    const probs = exp.map((v) => v / sum);
    const order = probs.map((p, e) => ({ p, e })).sort((a, b) => b.p - a.p || a.e - b.e);
    if (k < E) routingMargin.smallest = Math.min(routingMargin.smallest, order[k - 1]!.p - order[k]!.p);
    const chosen = order.slice(0, k);
    const total = shape.normalize ? chosen.reduce((s, c) => s + c.p, 0) : 1;
    const out = new Float64Array(H);
    for (const { p, e } of chosen) for (let i = 0; i < H; i++) out[i] += (p / total) * outputs[e]![t]![i]!;
    return out;
  });
  if (shape.sharedSize !== undefined) {
    const shared = swiGlu(linear, `${container}.shared_expert`, ['gate_proj', 'up_proj', 'down_proj'], rows, shape.sharedSize, H);
    const gate = linear(`${container}.shared_expert_gate`, rows, 1);
    result.forEach((out, t) => {
      const s = 1 / (1 + Math.exp(-gate[t]![0]!));
      for (let i = 0; i < H; i++) out[i] += s * shared[t]![i]!;
    });
  }
  return result;
}
