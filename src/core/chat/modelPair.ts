/**
 * A chat session over a model pair: loads each model folder (tokenizer + chat template, and an ONNX graph —
 * the folder's own `model.onnx`, or one built from its safetensors into a cache folder, quantized layers kept
 * in their stored form: INT4 MatMulNBits, INT8, FP8), then runs chat turns (generation.ts) and perplexity. Used
 * inside the chat worker (the extension) and directly by the CLI.
 */
import { promises as fs } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ChatEvents, ChatParticipant, ChatTurnResult, GenerationSettings, PerplexityResult, chatTurn, perplexity } from './generation';
import { CausalLMError, OnnxCausalLM, findOnnxGraph } from '../runtime/causalLM';
import { ModelTokenizer, type ChatMessage } from '../runtime/tokenizer';
import type { DecoderGraphInfo, DecoderModel } from '../runtime/llama/graph';
import { buildDecoderGraph } from '../runtime/graphCache';
import { DeviceKind, DevicePreference, DeviceReport, WEBGPU_GQA_MAX_TOKENS_PER_RUN, graphOptionsFor, requireDevice } from '../runtime/device';
import { verifyPlacement } from '../runtime/placement';

/** Asked for: device.ts's policy decides (auto: CUDA, else a hardware WebGPU adapter, else the CPU). */
export type ChatDevice = DevicePreference;

export interface LoadOptions {
  /** Where graphs built from safetensors are kept (one folder per model version). */
  readonly cacheDir: string;
  readonly device?: ChatDevice;
  readonly intraOpNumThreads?: number;
  /**
   * Graph options over the device's (device.ts graphOptionsFor): a plan's verification asks for INT4/INT8
   * MatMulNBits in float arithmetic (accuracy level 0) on the CPU too, so it measures the weights' error alone.
   */
  readonly graph?: { readonly int4AccuracyLevel?: number };
  readonly onProgress?: (what: string) => void;
  /** The model when a job has it open (a plan's verification: jobs/openedModel.ts): nothing of it is read again. */
  readonly open?: { readonly decoder: DecoderModel; readonly tokenizer: ModelTokenizer };
}

/** What the UI shows about a loaded model. */
export interface ChatModelInfo {
  readonly folder: string;
  readonly label: string;
  readonly vocabSize: number;
  readonly weightBytes: number;
  readonly maxPositions: number;
  /** How the linear layers are stored in the graph, e.g. { int4: 28, float: 1 }. */
  readonly linearKinds: Readonly<Record<string, number>>;
  readonly chatTemplateFile: string | null;
  /** Where it runs, and why (device.ts). */
  readonly device: DeviceKind;
  readonly deviceReason: string;
  /** Which provider runs the session and which nodes landed on the CPU (placement.ts). */
  readonly placement: string;
  /** Growth of the process's resident memory while this model loaded. */
  readonly loadRssBytes: number;
}

export interface LoadedChatModel {
  readonly info: ChatModelInfo;
  readonly model: OnnxCausalLM;
  readonly tokenizer: ModelTokenizer;
}

/** The ONNX graph for a model folder: its own `model.onnx`, or the cached graph built from its safetensors. */
async function graphFor(folder: string, options: LoadOptions, device: DeviceReport): Promise<{ path: string; info?: DecoderGraphInfo }> {
  const own = await findOnnxGraph(folder);
  if (own) return { path: own };
  options.onProgress?.(`preparing the ONNX graph of ${basename(folder)} (built once, then cached)`);
  const built = await buildDecoderGraph(folder, options.cacheDir, { ...graphOptionsFor(device.device), ...options.graph }, options.open?.decoder);
  return { path: built.modelPath, info: built.info };
}

/** The memory the FP8 expansion costs (device.ts graphOptionsFor, docs/performance.md §8), for the load line. */
export function fp8ExpansionNote(info: DecoderGraphInfo | undefined, device: DeviceKind): string {
  const fp8Layers = Object.values(info?.linearKinds ?? {}).filter((kind) => kind === 'fp8').length;
  if (fp8Layers === 0 || graphOptionsFor(device).fp8Weights !== 'expand') return '';
  return `; its ${fp8Layers} FP8 layers run from float32 weights expanded once when the graph was built (4 bytes per weight in memory instead of 1: the ${device === 'webgpu' ? 'WebGPU' : 'CPU'} provider has no FP8 matrix kernel)`;
}

async function maxPositionsOf(folder: string): Promise<number | undefined> {
  try {
    const config = JSON.parse(await fs.readFile(join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
    return typeof config.max_position_embeddings === 'number' ? config.max_position_embeddings : undefined;
  } catch {
    return undefined;
  }
}

export async function loadChatModel(folder: string, options: LoadOptions): Promise<LoadedChatModel> {
  // The tokenizer first: a folder without one fails in a second, before any graph is built.
  const tokenizer = options.open?.tokenizer ?? (await ModelTokenizer.load(folder));
  // The device asked for, or DeviceUnavailableError (never the CPU in its place).
  const report = await requireDevice(options.device ?? 'auto');
  const device = report.device;
  const graph = await graphFor(folder, options, report);
  options.onProgress?.(`loading ${basename(folder)}: ${report.reason}${fp8ExpansionNote(graph.info, device)}`);
  let placement = '';
  const placed = await verifyPlacement(graph.path, report, (line) => {
    placement = line;
    options.onProgress?.(line);
  });
  const rssBefore = process.memoryUsage().rss;
  const maxPositions = graph.info?.maxSequenceLength ?? (await maxPositionsOf(folder));
  // QuantLens's own WebGPU graphs have no GroupQueryAttention (llama/attention.ts); a folder's own graph may,
  // and that kernel is wrong for 32+ new tokens per run on WebGPU: such graphs get their prompts in short runs.
  const webGpuGqa = (placed.nodes.get('WebGpuExecutionProvider') ?? []).some((n) => n.op === 'GroupQueryAttention');
  let model: OnnxCausalLM;
  try {
    model = await OnnxCausalLM.load(graph.path, {
      label: basename(resolve(folder)),
      ...(maxPositions ? { maxPositions } : {}),
      executionProviders: report.executionProviders,
      ...(webGpuGqa ? { maxTokensPerRun: WEBGPU_GQA_MAX_TOKENS_PER_RUN } : {}),
      ...(options.intraOpNumThreads ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
    });
  } catch (error) {
    if (device !== 'cpu' && error instanceof CausalLMError && error.code === 'LoadFailed') {
      throw new CausalLMError('LoadFailed', folder, `the ${device === 'cuda' ? 'CUDA' : 'WebGPU'} runtime could not be used (${error.message}); choose the CPU in the quantlens.runtime.device setting (or --device cpu)`);
    }
    throw error;
  }
  const kinds: Record<string, number> = {};
  for (const kind of Object.values(graph.info?.linearKinds ?? {})) kinds[kind] = (kinds[kind] ?? 0) + 1;
  return {
    model,
    tokenizer,
    info: {
      folder,
      label: model.label,
      vocabSize: model.vocabSize,
      weightBytes: model.weightBytes,
      maxPositions: model.maxPositions,
      linearKinds: kinds,
      chatTemplateFile: tokenizer.chatTemplateFile,
      device,
      deviceReason: report.reason,
      placement,
      loadRssBytes: Math.max(0, process.memoryUsage().rss - rssBefore),
    },
  };
}

/** The conversation of one side: each model keeps its own earlier answers. */
export class Conversation {
  readonly quantized: ChatMessage[] = [];
  readonly original: ChatMessage[] = [];
}

export interface ChatPair {
  readonly quantized: LoadedChatModel;
  readonly original?: LoadedChatModel;
}

export async function loadChatPair(quantized: string, original: string | undefined, options: LoadOptions): Promise<ChatPair> {
  const q = await loadChatModel(quantized, options);
  if (!original) return { quantized: q };
  try {
    return { quantized: q, original: await loadChatModel(original, options) };
  } catch (error) {
    await q.model.release();
    throw error;
  }
}

export async function releasePair(pair: ChatPair): Promise<void> {
  await pair.quantized.model.release();
  await pair.original?.model.release();
}

/** Messages of a new turn: the system prompt (if any), the side's history, the new user message. */
export function turnMessages(system: string, history: readonly ChatMessage[], prompt: string): ChatMessage[] {
  return [...(system.trim() ? [{ role: 'system', content: system }] : []), ...history, { role: 'user', content: prompt }];
}

/** Runs one turn on a pair and records the answers in `conversation`. */
export async function runPairTurn(
  pair: ChatPair,
  conversation: Conversation,
  system: string,
  prompt: string,
  settings: GenerationSettings,
  events: ChatEvents,
  signal?: AbortSignal,
  compare = true,
): Promise<ChatTurnResult> {
  const q: ChatParticipant = { model: pair.quantized.model, tokenizer: pair.quantized.tokenizer, messages: turnMessages(system, conversation.quantized, prompt) };
  const o: ChatParticipant | undefined = pair.original && compare
    ? { model: pair.original.model, tokenizer: pair.original.tokenizer, messages: turnMessages(system, conversation.original, prompt) }
    : undefined;
  const result = await chatTurn(q, o, settings, events, signal);
  conversation.quantized.push({ role: 'user', content: prompt }, { role: 'assistant', content: result.quantized.text });
  if (result.original) conversation.original.push({ role: 'user', content: prompt }, { role: 'assistant', content: result.original.text });
  return result;
}

export interface PairPerplexity {
  readonly quantized: PerplexityResult;
  readonly original?: PerplexityResult;
}

/** Perplexity of both models on a text (tokenized with the quantized model's tokenizer, BOS included). */
export async function pairPerplexity(pair: ChatPair, text: string, signal?: AbortSignal): Promise<PairPerplexity> {
  const ids = pair.quantized.tokenizer.encode(text);
  const quantized = await perplexity(pair.quantized.model, ids, 256, signal);
  const original = pair.original ? await perplexity(pair.original.model, ids, 256, signal) : undefined;
  return { quantized, ...(original ? { original } : {}) };
}
