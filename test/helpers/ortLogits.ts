import { OnnxCausalLM } from '../../src/core/runtime/causalLM';
import type { TinyConfig } from './llamaReference';

/**
 * The logits of a full-model graph for `tokens` in one run from an empty KV cache, through the decoder the
 * chat runs (runtime/causalLM.ts), on the CPU.
 */
export async function runLogits(modelPath: string, config: TinyConfig, tokens: number[]): Promise<Float32Array> {
  const model = await OnnxCausalLM.load(modelPath);
  try {
    if (model.vocabSize !== config.vocab_size) throw new Error(`${modelPath}: vocabulary ${model.vocabSize}, the config says ${config.vocab_size}`);
    return (await model.forward(tokens, null)).logits;
  } finally {
    await model.release();
  }
}
