/**
 * Bench section `moe-decode`: chat decode and prefill of a Mixtral-shaped synthetic model (hidden 512, 8 experts of
 * 1024, 2 routed per token, 4 layers, vocab 1000, random bf16 weights written to bench-data/ once) through the
 * decoder the chat runs (OnnxCausalLM, 2 intra-op threads), with the CPU's routed form (each expert on the
 * tokens routed to it: runtime/llama/moe.ts) against the dense form (every expert on every token, what
 * calibration and the WebGPU / CUDA graphs compute) measured in the same run, interleaved.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { TensorSpec } from '../../src/core/safetensors/writer';
import { writeRandomBf16 } from './syntheticLlama';
import { buildDecoderGraph } from '../../src/core/runtime/graphCache';
import { KVCache, OnnxCausalLM } from '../../src/core/runtime/causalLM';
import { BenchRow, interleavedMedians, ms } from './harness';

const root = join(__dirname, '..', '..');
const dataDir = join(root, 'bench-data');

const MIXTRAL_SHAPED = {
  architectures: ['MixtralForCausalLM'],
  model_type: 'mixtral',
  hidden_size: 512,
  intermediate_size: 1024,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  vocab_size: 1000,
  rms_norm_eps: 1e-5,
  rope_theta: 1e6,
  max_position_embeddings: 512,
  tie_word_embeddings: false,
  hidden_act: 'silu',
  torch_dtype: 'bfloat16',
};

/** Writes the Mixtral-shaped checkpoint unless config.json is already there (weights as syntheticLlama.ts writes them). */
async function ensureSyntheticMixtral(folder: string): Promise<void> {
  if (existsSync(join(folder, 'config.json'))) return;
  await fs.mkdir(folder, { recursive: true });
  const c = MIXTRAL_SHAPED;
  const H = c.hidden_size;
  const D = H / c.num_attention_heads;
  const I = c.intermediate_size;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [c.vocab_size, H] }];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, dtype: 'BF16', shape: [H] },
      { name: `${p}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [H, H] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: 'BF16', shape: [c.num_key_value_heads * D, H] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: 'BF16', shape: [c.num_key_value_heads * D, H] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: 'BF16', shape: [H, H] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: 'BF16', shape: [H] },
      { name: `${p}.block_sparse_moe.gate.weight`, dtype: 'BF16', shape: [c.num_local_experts, H] },
    );
    for (let e = 0; e < c.num_local_experts; e++) {
      const x = `${p}.block_sparse_moe.experts.${e}`;
      specs.push({ name: `${x}.w1.weight`, dtype: 'BF16', shape: [I, H] }, { name: `${x}.w3.weight`, dtype: 'BF16', shape: [I, H] }, { name: `${x}.w2.weight`, dtype: 'BF16', shape: [H, I] });
    }
  }
  specs.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [H] }, { name: 'lm_head.weight', dtype: 'BF16', shape: [c.vocab_size, H] });
  // ±(1 + m/128)·2^-6 with a random sign; norms 1.0 (syntheticLlama.ts).
  await writeRandomBf16(join(folder, 'model.safetensors'), specs);
  await fs.writeFile(join(folder, 'config.json'), JSON.stringify(MIXTRAL_SHAPED, null, 2));
}

export async function moeSection(rows: BenchRow[]): Promise<void> {
  const model = join(dataDir, 'mixtral-shaped');
  await ensureSyntheticMixtral(model);
  const cache = join(dataDir, 'graphs');
  const load = async (experts: 'routed' | 'dense') => {
    const built = await buildDecoderGraph(model, cache, { maxSequenceLength: 256, experts });
    return OnnxCausalLM.load(built.modelPath, { intraOpNumThreads: 2 });
  };
  const routed = await load('routed');
  const dense = await load('dense');
  try {
    const prompt = Array.from({ length: 64 }, (_, i) => (i * 37 + 11) % MIXTRAL_SHAPED.vocab_size);
    const [routedPrefill, densePrefill] = await interleavedMedians(5, () => routed.forward(prompt, null, { lastOnly: true }), () => dense.forward(prompt, null, { lastOnly: true }));
    // Decode: 16 steps after a 16-token prefill, per step.
    const decode = (m: OnnxCausalLM) => async () => {
      let past: KVCache = (await m.forward(prompt.slice(0, 16), null, { lastOnly: true })).cache;
      for (let s = 0; s < 16; s++) past = (await m.forward([(s * 31 + 7) % MIXTRAL_SHAPED.vocab_size], past, { lastOnly: true })).cache;
    };
    const prefill16 = (m: OnnxCausalLM) => () => m.forward(prompt.slice(0, 16), null, { lastOnly: true });
    const [routedTurn, denseTurn] = await interleavedMedians(5, decode(routed), decode(dense));
    const [routed16, dense16] = await interleavedMedians(5, prefill16(routed), prefill16(dense));
    const routedStep = (routedTurn - routed16) / 16;
    const denseStep = (denseTurn - dense16) / 16;
    const what = 'Mixtral-shaped (hidden 512, 8 experts of 1024, 2 routed, 4 layers)';
    rows.push({ section: 'moe-decode', what: `${what}: decode step, experts on their routed tokens`, result: ms(routedStep), baseline: `${ms(denseStep)} every expert on every token`, ratio: `${(denseStep / routedStep).toFixed(2)}× faster`, target: '> 1 (E/k = 4 bounds the MLP part)' });
    rows.push({ section: 'moe-decode', what: `${what}: prefill 64 tokens, experts on their routed tokens`, result: ms(routedPrefill), baseline: `${ms(densePrefill)} every expert on every token`, ratio: `${(densePrefill / routedPrefill).toFixed(2)}× faster`, target: '—' });
  } finally {
    await routed.release();
    await dense.release();
  }
}
