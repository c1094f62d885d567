/** Tensor lists shaped like real Llama checkpoints, for benchmarks (headers real, data sparse). */
import type { TensorSpec } from '../../src/core/safetensors/writer';

export interface LlamaShape {
  name: string;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  /**
   * Mixtral-style mixture of experts: the MLP becomes `block_sparse_moe.experts.E.w1/w3` [intermediate, hidden]
   * and `w2` [hidden, intermediate] per expert, with a router `block_sparse_moe.gate` [experts, hidden].
   */
  experts?: number;
}

export const LLAMA_3_8B: LlamaShape = { name: 'Llama-3-8B', hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8, vocab: 128256 };
export const LLAMA_3_1_70B: LlamaShape = { name: 'Llama-3.1-70B', hidden: 8192, intermediate: 28672, layers: 80, heads: 64, kvHeads: 8, vocab: 128256 };
export const LLAMA_3_2_1B: LlamaShape = { name: 'Llama-3.2-1B', hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8, vocab: 128256 };

export function llamaTensors(shape: LlamaShape, dtype: TensorSpec['dtype'] = 'BF16'): TensorSpec[] {
  const { hidden: h, intermediate: i, heads, kvHeads, vocab } = shape;
  const kv = (h / heads) * kvHeads;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype, shape: [vocab, h] }];
  for (let l = 0; l < shape.layers; l++) {
    const p = `model.layers.${l}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, dtype, shape: [h] },
      { name: `${p}.self_attn.q_proj.weight`, dtype, shape: [h, h] },
      { name: `${p}.self_attn.k_proj.weight`, dtype, shape: [kv, h] },
      { name: `${p}.self_attn.v_proj.weight`, dtype, shape: [kv, h] },
      { name: `${p}.self_attn.o_proj.weight`, dtype, shape: [h, h] },
      { name: `${p}.post_attention_layernorm.weight`, dtype, shape: [h] },
    );
    if (shape.experts) {
      specs.push({ name: `${p}.block_sparse_moe.gate.weight`, dtype, shape: [shape.experts, h] });
      for (let e = 0; e < shape.experts; e++) {
        const x = `${p}.block_sparse_moe.experts.${e}`;
        specs.push({ name: `${x}.w1.weight`, dtype, shape: [i, h] }, { name: `${x}.w2.weight`, dtype, shape: [h, i] }, { name: `${x}.w3.weight`, dtype, shape: [i, h] });
      }
    } else {
      specs.push(
        { name: `${p}.mlp.gate_proj.weight`, dtype, shape: [i, h] },
        { name: `${p}.mlp.up_proj.weight`, dtype, shape: [i, h] },
        { name: `${p}.mlp.down_proj.weight`, dtype, shape: [h, i] },
      );
    }
  }
  specs.push({ name: 'model.norm.weight', dtype, shape: [h] }, { name: 'lm_head.weight', dtype, shape: [vocab, h] });
  return specs;
}

/** TinyLlama-1.1B (hidden 2048, MLP 5632, 32 query / 4 KV heads, 22 blocks, Llama-2 vocabulary). */
export const TINYLLAMA_1_1B: LlamaShape = { name: 'TinyLlama-1.1B', hidden: 2048, intermediate: 5632, layers: 22, heads: 32, kvHeads: 4, vocab: 32000 };
