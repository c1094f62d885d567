import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { TinyConfig, tinyConfig } from './llamaReference';
import { repoRoot } from './paths';

/** The shipped example checkpoint (npm test writes it before the unit tests). */
export function exampleDir(): string {
  return join(repoRoot(), 'examples', 'tiny-llama');
}

/**
 * A tiny Llama with the example's vocabulary and special tokens (so the example's real tokenizer can be copied
 * beside it) and 128-wide layers, so that W4A16's group size 128 divides every input.
 */
export async function tinyConfigWithExampleVocabulary(layers: number): Promise<TinyConfig> {
  const example = exampleDir();
  if (!existsSync(join(example, 'tokenizer.json'))) throw new Error('the example checkpoint is missing (npm test writes it first)');
  const exampleConfig = JSON.parse(await fs.readFile(join(example, 'config.json'), 'utf8')) as Record<string, unknown>;
  return tinyConfig({
    hidden_size: 128,
    intermediate_size: 256,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_hidden_layers: layers,
    vocab_size: exampleConfig.vocab_size as number,
    tie_word_embeddings: true,
    bos_token_id: exampleConfig.bos_token_id,
    eos_token_id: exampleConfig.eos_token_id,
  });
}

/** Copies the example's tokenizer files into `model`, a checkpoint made with tinyConfigWithExampleVocabulary. */
export async function copyExampleTokenizer(model: string): Promise<void> {
  for (const file of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) await fs.copyFile(join(exampleDir(), file), join(model, file));
}
