import * as ort from 'onnxruntime-node';
import type { TinyConfig } from './llamaReference';

/** The logits of a full-model graph for `tokens` in one run from an empty KV cache (Optimum input names). */
export async function runLogits(modelPath: string, config: TinyConfig, tokens: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(modelPath);
  try {
    const D = config.head_dim ?? config.hidden_size / config.num_attention_heads;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, tokens.length]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(tokens.length).fill(1n), [1, tokens.length]),
    };
    for (let l = 0; l < config.num_hidden_layers; l++) {
      for (const kind of ['key', 'value']) feeds[`past_key_values.${l}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, config.num_key_value_heads!, 0, D]);
    }
    return (await session.run(feeds)).logits!.data as Float32Array;
  } finally {
    await session.release();
  }
}
