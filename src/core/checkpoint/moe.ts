/**
 * Mixture-of-experts checkpoints: what config.json says about the experts (how many, how many per token,
 * shared experts, which layers stay dense), what each module of an MoE layer is (routed expert, router,
 * shared expert, shared-expert gate, gpt-oss fused experts), the per-layer groups that keep a 128-expert
 * layer readable, and the findings an MoE checkpoint needs (a quantized router, experts left unquantized).
 *
 * Namings, as transformers' modeling files spell them:
 * - Mixtral: `block_sparse_moe.experts.E.{w1,w3,w2}` (gate, up, down) and the router `block_sparse_moe.gate`;
 *   newer savers write `mlp.experts.E.{gate,up,down}_proj` and `mlp.gate`.
 * - Qwen2-MoE / Qwen3-MoE: `mlp.experts.E.*_proj`, router `mlp.gate`; Qwen2-MoE adds `mlp.shared_expert.*` and
 *   the one-output `mlp.shared_expert_gate`. Dense layers: `mlp_only_layers`, and `decoder_sparse_step`.
 * - DeepSeek-V2/V3: `mlp.experts.E.*`, `mlp.shared_experts.*`, router `mlp.gate.weight` (not an nn.Linear) with
 *   `e_score_correction_bias`; the first `first_k_dense_replace` layers are dense, then every `moe_layer_freq`-th.
 * - gpt-oss: all experts of a layer fused in `mlp.experts.gate_up_proj` / `down_proj` ([experts, in, out] floats,
 *   or MXFP4 `_blocks` [experts, out, in/32, 16] U8 with E8M0 `_scales`), router `mlp.router`.
 */
import type { CheckpointTensor } from '../safetensors/checkpoint';
import type { ObservedStorage } from './scheme';

export interface MoeConfig {
  readonly experts: number;
  readonly perToken?: number;
  /** Shared experts: DeepSeek's n_shared_experts, or 1 for Qwen2-MoE's shared_expert. */
  readonly sharedExperts: number;
  readonly style: 'mixtral' | 'qwen' | 'deepseek' | 'gpt-oss' | 'generic';
  readonly moeIntermediateSize?: number;
  /** Dense-layer rules, as config.json states them. */
  readonly firstKDense: number;
  readonly layerFreq: number;
  readonly sparseStep: number;
  readonly mlpOnlyLayers: readonly number[];
}

/** What a module of an MoE layer is. */
export interface MoeRole {
  readonly role: 'expert' | 'router' | 'shared-expert' | 'shared-expert-gate' | 'fused-experts';
  /** Routed expert index (role 'expert'). */
  readonly expert?: number;
  /** How many experts one fused module holds (role 'fused-experts'). */
  readonly experts?: number;
  /** Module-name prefix shared by the group (`model.layers.3.mlp.experts`), for grouping and filtering. */
  readonly container: string;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

/** The text part of a multimodal config (Gemma 3, Llama 4, Qwen-VL keep the decoder under text_config). */
export function textConfigOf(config: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const text = config?.text_config;
  if (config && config.num_hidden_layers === undefined && typeof text === 'object' && text !== null && !Array.isArray(text)) return text as Record<string, unknown>;
  return config;
}

/** Reads the MoE fields of config.json; undefined for a dense model. */
export function readMoeConfig(raw: Record<string, unknown> | undefined): MoeConfig | undefined {
  const config = textConfigOf(raw);
  if (!config) return undefined;
  const experts = num(config.num_local_experts) ?? num(config.num_experts) ?? num(config.n_routed_experts);
  if (!experts) return undefined;
  const modelType = typeof config.model_type === 'string' ? config.model_type : '';
  const style: MoeConfig['style'] = modelType.startsWith('mixtral')
    ? 'mixtral'
    : modelType.startsWith('qwen')
      ? 'qwen'
      : modelType.startsWith('deepseek') || config.n_routed_experts !== undefined
        ? 'deepseek'
        : modelType === 'gpt_oss'
          ? 'gpt-oss'
          : 'generic';
  const sharedIntermediate = num(config.shared_expert_intermediate_size);
  return {
    experts,
    perToken: num(config.num_experts_per_tok) ?? num(config.experts_per_token),
    sharedExperts: num(config.n_shared_experts) ?? (sharedIntermediate ? 1 : 0),
    style,
    moeIntermediateSize: num(config.moe_intermediate_size),
    firstKDense: num(config.first_k_dense_replace) ?? 0,
    layerFreq: Math.max(1, num(config.moe_layer_freq) ?? 1),
    sparseStep: Math.max(1, num(config.decoder_sparse_step) ?? 1),
    mlpOnlyLayers: Array.isArray(config.mlp_only_layers) ? config.mlp_only_layers.filter((l): l is number => typeof l === 'number') : [],
  };
}

/** Whether decoder layer `layer` has experts (DeepSeek: first_k_dense_replace, moe_layer_freq; Qwen: mlp_only_layers, decoder_sparse_step). */
export function isMoeLayer(moe: MoeConfig, layer: number): boolean {
  if (layer < moe.firstKDense || layer % moe.layerFreq !== 0) return false;
  if (moe.mlpOnlyLayers.includes(layer)) return false;
  return (layer + 1) % moe.sparseStep === 0;
}

/** The model-card phrase: "mixture of experts: 8 experts, 2 per token" (with shared experts and dense layers). */
export function describeMoe(moe: MoeConfig, layers?: number): string {
  const parts = [`${moe.experts} experts`];
  if (moe.perToken !== undefined) parts.push(`${moe.perToken} per token`);
  if (moe.sharedExperts > 0) parts.push(`${moe.sharedExperts} shared`);
  if (layers !== undefined) {
    let dense = 0;
    for (let l = 0; l < layers; l++) if (!isMoeLayer(moe, l)) dense++;
    if (dense > 0) parts.push(`${dense} dense layer${dense === 1 ? '' : 's'}`);
  }
  return `mixture of experts: ${parts.join(', ')}`;
}

const EXPERT = /^(.*\.(?:block_sparse_moe|mlp|feed_forward)\.experts)\.(\d+)\.[^.]+$/;
const FUSED = /^(.*\.(?:mlp|feed_forward)\.experts)\.(gate_up_proj|down_proj)$/;
const ROUTER = /^(.*\.(?:block_sparse_moe|mlp|feed_forward))\.(gate|router)$/;
const SHARED = /^(.*\.(?:mlp|feed_forward)\.shared_experts?)\.[^.]+$/;
const SHARED_GATE = /^(.*\.mlp)\.shared_expert_gate$/;

/** What an MoE module is, from its name; undefined for attention, dense MLP and other modules. */
export function moeRoleOf(name: string, fusedExperts?: number): MoeRole | undefined {
  let m = EXPERT.exec(name);
  if (m) return { role: 'expert', expert: Number(m[2]), container: m[1]! };
  if ((m = FUSED.exec(name))) return { role: 'fused-experts', container: m[1]!, ...(fusedExperts !== undefined ? { experts: fusedExperts } : {}) };
  if ((m = SHARED_GATE.exec(name))) return { role: 'shared-expert-gate', container: `${m[1]!}.shared_expert_gate` };
  if ((m = SHARED.exec(name))) return { role: 'shared-expert', container: m[1]! };
  if ((m = ROUTER.exec(name))) return { role: 'router', container: name };
  return undefined;
}

/**
 * The ignore patterns llm-compressor's MoE examples use for the routers present among `modules` (a router,
 * Qwen2-MoE's shared-expert gate), so that presets keep them in full precision: vLLM runs them unquantized.
 */
export function routerIgnorePatterns(modules: readonly { readonly name: string; readonly moe?: MoeRole }[]): string[] {
  const patterns = new Set<string>();
  for (const m of modules) {
    if (m.moe?.role !== 'router' && m.moe?.role !== 'shared-expert-gate') continue;
    const tail = /(block_sparse_moe|mlp|feed_forward)\.(gate|router|shared_expert_gate)$/.exec(m.name);
    if (tail) patterns.add(`re:.*${tail[1]}.${tail[2]}$`);
  }
  return [...patterns];
}

/** Suffixes of gpt-oss fused expert tensors: `gate_up_proj`, `gate_up_proj_blocks`, `_scales`, `_bias`. */
const FUSED_TENSOR = /^(.*\.experts\.(?:gate_up_proj|down_proj))(_blocks|_scales|_bias)?$/;

/**
 * gpt-oss fused experts, grouped by module (`model.layers.0.mlp.experts.gate_up_proj`) with parts named as
 * the layer map names them: 'weight' (the float [experts, in, out] tensor), 'blocks', 'scales', 'bias'.
 */
export function fusedExpertModules(tensors: readonly CheckpointTensor[]): Map<string, Map<string, CheckpointTensor>> {
  const modules = new Map<string, Map<string, CheckpointTensor>>();
  for (const tensor of tensors) {
    const m = FUSED_TENSOR.exec(tensor.name);
    if (!m) continue;
    // A float fused weight is 3-D; a 2-D `experts.down_proj` would be an ordinary module's name, not this.
    const part = m[2] ? m[2].slice(1) : 'weight';
    if (part === 'weight' && tensor.shape.length !== 3) continue;
    let parts = modules.get(m[1]!);
    if (!parts) modules.set(m[1]!, (parts = new Map()));
    parts.set(part, tensor);
  }
  for (const [name, parts] of modules) if (!parts.has('weight') && !parts.has('blocks')) modules.delete(name);
  return modules;
}

/** Experts held by one fused module: the first dimension of its weight or blocks. */
export function fusedExpertCount(parts: ReadonlyMap<string, CheckpointTensor>): number | undefined {
  return (parts.get('blocks') ?? parts.get('weight'))?.shape[0];
}

/**
 * Storage of a gpt-oss fused experts module, per expert: MXFP4 `_blocks` [experts, out, in/32, 16] U8 with
 * E8M0 `_scales` [experts, out, in/32] (docs/formats.md §3.12), or a float [experts, in, out] weight. No
 * `shape`: the fused tensors are not [out, in] matrices the statistics and error readers can stream.
 */
export function observeFusedExperts(parts: ReadonlyMap<string, CheckpointTensor>): ObservedStorage {
  const blocks = parts.get('blocks');
  const scales = parts.get('scales');
  const base = { hasZeroPoint: false, hasGIdx: false, staticInputScale: false, scaleDtype: scales?.dtype };
  if (blocks) {
    const groupSize = blocks.shape.length === 4 ? blocks.shape[3]! * 2 : 32;
    return { ...base, kind: 'mxfp4', weightDtype: blocks.dtype, bits: 4, strategy: 'group', groupSize, scaleShape: scales?.shape };
  }
  const weight = parts.get('weight')!;
  const float = weight.dtype === 'BF16' || weight.dtype === 'F16' || weight.dtype === 'F32';
  return { ...base, kind: float ? 'float' : 'unknown', weightDtype: weight.dtype };
}
