/**
 * Every failure of a chat turn as one sentence a user can act on, with a stable code for the UI and tests.
 * The typed errors already name the file and the problem; this adds what to do where it is not obvious.
 */
import { ChatError } from './generation';
import { CausalLMError } from '../runtime/causalLM';
import { TokenizerError } from '../runtime/tokenizer';
import { GraphBuildError } from '../runtime/llama/graph';
import { ModelConfigError } from '../runtime/llama/config';
import { SafetensorsError } from '../safetensors/errors';
import { CheckpointError } from '../safetensors/checkpoint';

export interface ChatErrorView {
  readonly code: string;
  readonly message: string;
}

export function describeChatError(error: unknown): ChatErrorView {
  if (error instanceof TokenizerError) {
    switch (error.code) {
      case 'NoTokenizer':
        return { code: 'NoTokenizer', message: `No tokenizer: ${error.message}` };
      case 'NoChatTemplate':
        return { code: 'NoChatTemplate', message: `This model has no chat template, so a conversation cannot be turned into a prompt: ${error.message}. Add a chat_template to tokenizer_config.json (or a chat_template.jinja) — base models have none.` };
      default:
        return { code: error.code, message: `The tokenizer or chat template cannot be used: ${error.message}` };
    }
  }
  if (error instanceof CausalLMError) {
    if (error.code === 'OutOfMemory') return { code: 'OutOfMemory', message: `Out of memory: ${error.message}` };
    return { code: error.code, message: error.message };
  }
  if (error instanceof ChatError) return { code: error.code, message: error.message };
  if (error instanceof ModelConfigError) return { code: 'UnsupportedModel', message: `This model cannot run in QuantLens: ${error.message}` };
  if (error instanceof GraphBuildError) return { code: 'GraphBuildFailed', message: `The model's graph cannot be built: ${error.message}` };
  if (error instanceof SafetensorsError || error instanceof CheckpointError) return { code: 'BadCheckpoint', message: `The checkpoint cannot be read: ${error.message}` };
  const message = error instanceof Error ? error.message : String(error);
  if (/bad_alloc|out of memory|Array buffer allocation failed|Invalid typed array length/i.test(message)) {
    return { code: 'OutOfMemory', message: `Out of memory: ${message}. Close other models or use a smaller checkpoint.` };
  }
  return { code: 'Failed', message };
}
