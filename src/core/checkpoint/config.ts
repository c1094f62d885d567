/**
 * config.json beside the weights: the few fields every shell shows, read defensively (a checkpoint
 * without config.json, or with a broken one, is still inspectable; the problem is reported).
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

export interface ModelConfigSummary {
  readonly architectures?: readonly string[];
  readonly modelType?: string;
  readonly hiddenSize?: number;
  readonly intermediateSize?: number;
  readonly numHiddenLayers?: number;
  readonly numAttentionHeads?: number;
  readonly numKeyValueHeads?: number;
  readonly vocabSize?: number;
  readonly torchDtype?: string;
  /** `quantization_config.quant_method`, when the checkpoint declares one. */
  readonly quantMethod?: string;
}

export interface ModelConfigResult {
  /** The parsed config.json, when present and valid. */
  readonly raw?: Record<string, unknown>;
  readonly summary?: ModelConfigSummary;
  /** Why config.json could not be used (absent is not an error: `raw` is simply undefined). */
  readonly error?: string;
}

const asNumber = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const asString = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export async function readModelConfig(folder: string): Promise<ModelConfigResult> {
  const path = join(folder, 'config.json');
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    return { error: `${path}: ${(error as Error).message}` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return { error: `${path}: not valid JSON (${(error as Error).message})` };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { error: `${path}: must be a JSON object` };
  const config = raw as Record<string, unknown>;
  const quantization = config.quantization_config;
  const summary: ModelConfigSummary = {
    architectures: Array.isArray(config.architectures) ? config.architectures.filter((a): a is string => typeof a === 'string') : undefined,
    modelType: asString(config.model_type),
    hiddenSize: asNumber(config.hidden_size),
    intermediateSize: asNumber(config.intermediate_size),
    numHiddenLayers: asNumber(config.num_hidden_layers),
    numAttentionHeads: asNumber(config.num_attention_heads),
    numKeyValueHeads: asNumber(config.num_key_value_heads),
    vocabSize: asNumber(config.vocab_size),
    torchDtype: asString(config.torch_dtype) ?? asString(config.dtype),
    quantMethod: typeof quantization === 'object' && quantization !== null ? asString((quantization as Record<string, unknown>).quant_method) : undefined,
  };
  return { raw: config, summary };
}
