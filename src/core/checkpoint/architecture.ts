/**
 * The linear modules a decoder's config.json promises, by family, so that the layer map can say which are
 * missing without calling a module of another family's naming missing:
 * - Llama, Mistral, Qwen2/3, Gemma 2/3: q/k/v/o_proj and gate/up/down_proj (Gemma's extra norms and Qwen3's
 *   q_norm/k_norm are 1-D and never linear);
 * - Phi-3/4: fused `self_attn.qkv_proj` and `mlp.gate_up_proj`;
 * - DeepSeek-V2/V3 attention (MLA): q_proj, or q_a_proj + q_b_proj with q_lora_rank, and kv_a_proj_with_mqa,
 *   kv_b_proj, o_proj;
 * - mixture-of-experts layers (moe.ts): routed experts, router, shared experts, or gpt-oss fused experts;
 * - lm_head unless the embeddings are tied.
 * Multimodal checkpoints keep the decoder under another prefix (`language_model.model.layers.`), which the
 * tensors tell.
 */
import { MoeConfig, isMoeLayer, readMoeConfig, textConfigOf } from './moe';

export interface Expectation {
  /** Module names config.json promises. */
  readonly modules: readonly string[];
  readonly moe?: MoeConfig;
  /** Modules that are not nn.Linear in the model (DeepSeek's router is a bare parameter): the class to match. */
  readonly classOf: ReadonlyMap<string, string>;
}

/** The prefix before `layers.N.` that most linear names share (`model.`, `language_model.model.`). */
function layersPrefix(linearNames: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const name of linearNames) {
    const m = /^(.*?)layers\.\d+\./.exec(name);
    if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'model.';
}

export function expectedModules(config: Record<string, unknown> | undefined, numHiddenLayers: number | undefined, linearNames: readonly string[], tieWordEmbeddings: boolean | undefined): Expectation {
  const text = textConfigOf(config);
  const layers = numHiddenLayers ?? (typeof text?.num_hidden_layers === 'number' ? text.num_hidden_layers : undefined);
  const moe = readMoeConfig(config);
  const classOf = new Map<string, string>();
  const modules: string[] = [];
  if (!layers) return { modules, moe, classOf };
  const modelType = typeof text?.model_type === 'string' ? text.model_type : '';
  const has = (part: string) => linearNames.some((n) => n.includes(part));
  const prefix = `${layersPrefix(linearNames)}layers.`;

  const fusedPhi = modelType.startsWith('phi3') || modelType === 'phi4' || has('.self_attn.qkv_proj');
  const mla = modelType.startsWith('deepseek') || has('.kv_a_proj_with_mqa');
  const attention = mla
    ? [...(typeof text?.q_lora_rank === 'number' || has('.q_a_proj') ? ['q_a_proj', 'q_b_proj'] : ['q_proj']), 'kv_a_proj_with_mqa', 'kv_b_proj', 'o_proj']
    : fusedPhi
      ? ['qkv_proj', 'o_proj']
      : ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
  const dense = fusedPhi && !has('.mlp.gate_proj') ? ['gate_up_proj', 'down_proj'] : ['gate_proj', 'up_proj', 'down_proj'];
  const projections = ['gate_proj', 'up_proj', 'down_proj'];

  for (let l = 0; l < layers; l++) {
    const layer = `${prefix}${l}`;
    for (const p of attention) modules.push(`${layer}.self_attn.${p}`);
    if (!moe || !isMoeLayer(moe, l)) {
      for (const p of dense) modules.push(`${layer}.mlp.${p}`);
      continue;
    }
    // The naming the tensors use wins over the one model_type suggests (a Mixtral re-saved by transformers 5;
    // a gpt-oss whose experts llm-compressor linearized into `mlp.experts.E.*_proj`, docs/formats.md §3.14).
    const linearized = linearNames.some((n) => /\.mlp\.experts\.\d+\./.test(n));
    if ((moe.style === 'gpt-oss' && !linearized) || has('.experts.gate_up_proj')) {
      // gpt-oss's router is `mlp.router`; transformers 5 keeps the others' `mlp.gate` beside fused experts.
      modules.push(moe.style === 'gpt-oss' ? `${layer}.mlp.router` : `${layer}.mlp.gate`, `${layer}.mlp.experts.gate_up_proj`, `${layer}.mlp.experts.down_proj`);
      classOf.set(`${layer}.mlp.experts.gate_up_proj`, 'GptOssExperts');
      classOf.set(`${layer}.mlp.experts.down_proj`, 'GptOssExperts');
      continue;
    }
    const mixtralNames = has('.block_sparse_moe.') || (moe.style === 'mixtral' && !has('.mlp.experts.'));
    const container = mixtralNames ? `${layer}.block_sparse_moe` : `${layer}.mlp`;
    modules.push(moe.style === 'gpt-oss' ? `${container}.router` : `${container}.gate`);
    if (moe.style === 'deepseek') classOf.set(`${container}.gate`, 'MoEGate');
    for (let e = 0; e < moe.experts; e++) {
      for (const p of mixtralNames ? ['w1', 'w3', 'w2'] : projections) modules.push(`${container}.experts.${e}.${p}`);
    }
    if (moe.sharedExperts > 0) {
      const shared = moe.style === 'deepseek' || has('.shared_experts.') ? 'shared_experts' : 'shared_expert';
      for (const p of projections) modules.push(`${container}.${shared}.${p}`);
      if (shared === 'shared_expert') modules.push(`${container}.shared_expert_gate`);
    }
  }
  if (tieWordEmbeddings === false) modules.push('lm_head');
  return { modules, moe, classOf };
}
