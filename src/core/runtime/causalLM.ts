/**
 * The one decoder forward with a KV cache in QuantLens: a decoder-only ONNX model with the Optimum /
 * transformers.js I/O names, as a `CausalLM`. The chat engine (core/chat), the decoder tests and the runtime
 * benchmark all run graphs through it, on the session settings the device policy chose (device.ts).
 *
 *   inputs   input_ids [batch_size, sequence_length] int64, attention_mask [batch_size, total] int64,
 *            position_ids (optional), past_key_values.N.key|value [batch_size, kv_heads, past, head_dim],
 *            num_logits_to_keep / logits_to_keep (optional: then a step asks for the last row only)
 *   outputs  logits [batch_size, sequence_length, vocab], present.N.key|value
 *
 * The KV cache stays as the tensors onnxruntime returned; nothing is copied between steps. Batch size is 1.
 */
import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import { type Ort, createSession, loadOrt } from '../util/ort';

/** A model's key/value cache after some tokens; opaque to its users except for its size. */
export interface KVCache {
  /** Tokens the cache holds. */
  readonly length: number;
  /** Bytes of all its key and value tensors. */
  readonly bytes: number;
}

export interface ForwardResult {
  /** Row-major [ids.length × vocabSize] next-token logits, one row per fed token (one row with lastOnly). */
  readonly logits: Float32Array;
  readonly cache: KVCache;
}

/** A causal LM with a KV cache. `forward` never changes `past`: a cache can be continued twice. */
export interface CausalLM {
  /** What the UI calls it (folder name). */
  readonly label: string;
  readonly vocabSize: number;
  /** The longest sequence (prompt + answer) the model accepts. */
  readonly maxPositions: number;
  /** Bytes of weights the session loaded (its model and data files). */
  readonly weightBytes: number;
  /** Feeds `ids` after the cached prefix `past` (null: from the start). */
  forward(ids: readonly number[], past: KVCache | null, options?: { lastOnly?: boolean }): Promise<ForwardResult>;
}

export class CausalLMError extends Error {
  override readonly name = 'CausalLMError';
  constructor(
    readonly code: 'NoGraph' | 'UnsupportedGraph' | 'LoadFailed' | 'OutOfMemory' | 'RunFailed',
    readonly path: string,
    detail: string,
  ) {
    super(`${path}: ${detail}`);
  }
}

interface OnnxCache extends KVCache {
  readonly tensors: readonly Ort.Tensor[];
}

const ELEMENT_BYTES: Partial<Record<string, number>> = { float32: 4, float16: 2, bfloat16: 2 };

/** Messages onnxruntime uses for allocation failures, turned into one plain sentence. */
function isOutOfMemory(message: string): boolean {
  return /bad_alloc|out of memory|Failed to allocate|OOM|CUDNN_STATUS_ALLOC_FAILED|CUBLAS_STATUS_ALLOC_FAILED/i.test(message);
}

export function describeRuntimeError(error: unknown, path: string, what: 'load' | 'run'): CausalLMError {
  const message = error instanceof Error ? error.message : String(error);
  if (isOutOfMemory(message)) {
    return new CausalLMError('OutOfMemory', path, `not enough memory to ${what === 'load' ? 'load the model' : 'run the model'} (${message.split('\n')[0]}). Close other models, shorten the conversation, or use a smaller checkpoint.`);
  }
  return new CausalLMError(what === 'load' ? 'LoadFailed' : 'RunFailed', path, `onnxruntime could not ${what === 'load' ? 'load' : 'run'} the model: ${message.split('\n')[0]}`);
}

export interface OnnxCausalLMOptions {
  /** Label for the UI; default the model folder's name. */
  readonly label?: string;
  /** Positions the model accepts (config.json max_position_embeddings); default unlimited. */
  readonly maxPositions?: number;
  readonly executionProviders?: readonly string[];
  readonly intraOpNumThreads?: number;
  /** Longest run of new tokens per session.run; longer prompts are fed in chunks over the KV cache (device.ts: WebGPU). */
  readonly maxTokensPerRun?: number;
}

export class OnnxCausalLM implements CausalLM {
  private constructor(
    private readonly ort: typeof Ort,
    private readonly session: Ort.InferenceSession,
    readonly path: string,
    readonly label: string,
    readonly vocabSize: number,
    readonly maxPositions: number,
    readonly weightBytes: number,
    private readonly layers: number,
    private readonly kvType: 'float32' | 'float16',
    private readonly kvHeads: number,
    private readonly headDim: number,
    private readonly inputs: ReadonlySet<string>,
    private readonly keepInput: string | undefined,
    private readonly maxTokensPerRun: number,
  ) {}

  /** Loads `modelPath` (an .onnx file, its external data beside it). */
  static async load(modelPath: string, options: OnnxCausalLMOptions = {}): Promise<OnnxCausalLM> {
    const ort = loadOrt();
    let weightBytes = 0;
    try {
      weightBytes += (await fs.stat(modelPath)).size;
    } catch {
      throw new CausalLMError('NoGraph', modelPath, 'the ONNX model file does not exist');
    }
    try {
      weightBytes += (await fs.stat(`${modelPath}.data`)).size;
    } catch {
      // No external data: the weights are inside the .onnx file.
    }
    let session: Ort.InferenceSession;
    try {
      session = await createSession(modelPath, {
        executionProviders: options.executionProviders ?? ['cpu'],
        ...(options.intraOpNumThreads ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
      });
    } catch (error) {
      throw describeRuntimeError(error, modelPath, 'load');
    }
    try {
      const inputs = new Map(session.inputMetadata.map((m) => [m.name, m]));
      const outputs = new Map(session.outputMetadata.map((m) => [m.name, m]));
      const unsupported = (detail: string) => new CausalLMError('UnsupportedGraph', modelPath, detail);
      if (!inputs.has('input_ids')) throw unsupported('the graph has no input_ids input (QuantLens runs decoder graphs with the Optimum input names)');
      const logits = outputs.get('logits');
      if (!logits || !logits.isTensor) throw unsupported('the graph has no logits output');
      const vocab = logits.shape[2];
      if (typeof vocab !== 'number') throw unsupported(`logits has shape [${logits.shape.join(', ')}]; its last dimension (the vocabulary) must be fixed`);
      let layers = 0;
      while (inputs.has(`past_key_values.${layers}.key`)) layers++;
      if (layers === 0) throw unsupported('the graph has no past_key_values.0.key input: it has no key/value cache');
      const key = inputs.get('past_key_values.0.key')!;
      if (!key.isTensor || key.shape.length !== 4) throw unsupported('past_key_values.0.key must be a 4-D tensor [batch_size, kv_heads, past_sequence_length, head_dim]');
      const [, kvHeads, , headDim] = key.shape;
      if (typeof kvHeads !== 'number' || typeof headDim !== 'number') throw unsupported(`past_key_values.0.key has shape [${key.shape.join(', ')}]; kv_heads and head_dim must be fixed`);
      if (key.type !== 'float32' && key.type !== 'float16') throw unsupported(`the key/value cache is ${key.type}; float32 and float16 are supported`);
      for (let i = 0; i < layers; i++) {
        if (!outputs.has(`present.${i}.key`) || !outputs.has(`present.${i}.value`)) throw unsupported(`the graph has past_key_values.${i} but no present.${i}.key/value output`);
      }
      const keepInput = ['num_logits_to_keep', 'logits_to_keep'].find((n) => inputs.has(n));
      return new OnnxCausalLM(
        ort,
        session,
        modelPath,
        options.label ?? basename(modelPath),
        vocab,
        options.maxPositions ?? Number.MAX_SAFE_INTEGER,
        weightBytes,
        layers,
        key.type,
        kvHeads,
        headDim,
        new Set(inputs.keys()),
        keepInput,
        options.maxTokensPerRun ?? Number.MAX_SAFE_INTEGER,
      );
    } catch (error) {
      await session.release();
      throw error;
    }
  }

  async forward(ids: readonly number[], past: KVCache | null, options: { lastOnly?: boolean } = {}): Promise<ForwardResult> {
    if (ids.length <= this.maxTokensPerRun) return this.forwardOnce(ids, past, options);
    // In chunks over the cache: the same logits as one run (causal attention), for providers whose kernels
    // are only right for short runs.
    const rows: Float32Array[] = [];
    let cache = past;
    for (let start = 0; start < ids.length; start += this.maxTokensPerRun) {
      const chunk = ids.slice(start, start + this.maxTokensPerRun);
      const last = start + chunk.length >= ids.length;
      const result = await this.forwardOnce(chunk, cache, { lastOnly: options.lastOnly });
      cache = result.cache;
      if (!options.lastOnly || last) rows.push(result.logits);
    }
    const logits = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
    let offset = 0;
    for (const r of rows) {
      logits.set(r, offset);
      offset += r.length;
    }
    return { logits, cache: cache! };
  }

  private async forwardOnce(ids: readonly number[], past: KVCache | null, options: { lastOnly?: boolean }): Promise<ForwardResult> {
    const ort = this.ort;
    const cache = past as OnnxCache | null;
    const pastLength = cache?.length ?? 0;
    const total = pastLength + ids.length;
    if (ids.length === 0) throw new RangeError('forward needs at least one token');
    if (total > this.maxPositions) {
      throw new RangeError(`${this.path}: ${total} tokens (${pastLength} cached + ${ids.length} new) exceed the ${this.maxPositions} positions the model accepts`);
    }
    const feeds: Record<string, Ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    };
    if (this.inputs.has('attention_mask')) feeds['attention_mask'] = new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]);
    if (this.inputs.has('position_ids')) feeds['position_ids'] = new ort.Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(pastLength + i)), [1, ids.length]);
    const keep = options.lastOnly ? 1 : ids.length;
    if (this.keepInput) feeds[this.keepInput] = new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), []);
    for (let i = 0; i < this.layers; i++) {
      for (const [j, kind] of (['key', 'value'] as const).entries()) {
        feeds[`past_key_values.${i}.${kind}`] =
          cache?.tensors[2 * i + j] ?? new ort.Tensor(this.kvType, this.kvType === 'float32' ? new Float32Array(0) : new Uint16Array(0), [1, this.kvHeads, 0, this.headDim]);
      }
    }
    let out: Ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds);
    } catch (error) {
      throw describeRuntimeError(error, this.path, 'run');
    }
    const tensors: Ort.Tensor[] = [];
    let bytes = 0;
    for (let i = 0; i < this.layers; i++) {
      for (const kind of ['key', 'value']) {
        const t = out[`present.${i}.${kind}`]!;
        tensors.push(t);
        bytes += t.size * (ELEMENT_BYTES[t.type] ?? 4);
      }
    }
    const logitsTensor = out['logits']!;
    let logits = logitsTensor.data as Float32Array;
    if (logitsTensor.type !== 'float32') {
      throw new CausalLMError('UnsupportedGraph', this.path, `logits are ${logitsTensor.type}; QuantLens reads float32 logits`);
    }
    // Graphs without logits_to_keep return every row; keep a copy of the last so the big buffer can be freed.
    if (options.lastOnly && logits.length > this.vocabSize) logits = logits.slice(logits.length - this.vocabSize);
    const next: OnnxCache = { length: total, bytes, tensors };
    return { logits, cache: next };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The ONNX graph of a model folder, when one is there: `model.onnx` or `onnx/model.onnx`. */
export async function findOnnxGraph(folder: string): Promise<string | undefined> {
  for (const candidate of [join(folder, 'model.onnx'), join(folder, 'onnx', 'model.onnx')]) {
    try {
      if ((await fs.stat(candidate)).isFile()) return candidate;
    } catch {
      // Not there.
    }
  }
  return undefined;
}
