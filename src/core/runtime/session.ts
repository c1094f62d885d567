/**
 * The runtime host: typed calls into the runtime worker (workers/runtime.worker.ts), where onnxruntime
 * sessions live off the caller's thread. Used by calibration (block graphs, batch after batch) and by chat
 * (the decoder graph with its KV cache, through DecoderSession.forward).
 *
 * Load failures are data: `createSession` answers `{ ok: false, error }` with onnxruntime's own text (for
 * example a CUDA provider that is not installed), so a caller can tell the user and retry on CPU. Run
 * failures reject the call with the worker's message. Feeds are transferred to the worker (their buffers
 * become unusable here); outputs are transferred back.
 */
import { WorkerLink } from '../util/workerLink';
import type { DecoderGraphInfo } from './llama/graph';
import type { FromRuntime, RuntimeSessionOptions, SessionDescription, ToRuntime, WireTensor, WireTensorData } from './protocol';

export type { RuntimeSessionOptions, WireTensor, WireTensorType, WireTensorData, SessionDescription } from './protocol';

export type CreateSessionResult =
  | { readonly ok: true; readonly session: RuntimeSession }
  | { readonly ok: false; readonly error: string; /** The error names an execution provider library that could not be loaded. */ readonly providerUnavailable: boolean };

type Pending = { resolve: (m: FromRuntime) => void; reject: (e: Error) => void };

export class RuntimeHost {
  private readonly link: WorkerLink<FromRuntime, Pending>;

  /** `workerPath`: the bundled dist/workers/runtime.worker.js. */
  constructor(workerPath: string) {
    this.link = new WorkerLink<FromRuntime, Pending>(
      workerPath,
      (message, call) => {
        call.resolve(message);
        return true;
      },
      (end) => new Error('error' in end ? `runtime worker failed: ${end.error.message}` : `runtime worker exited with code ${end.exitCode}`),
    );
  }

  /** Sends a request; the promise settles with the worker's answer (errors included, as messages). */
  request(message: ToRuntime, transfer: ArrayBuffer[] = []): Promise<FromRuntime> {
    return new Promise((resolve, reject) => this.link.send(message.id, { resolve, reject }, message, transfer));
  }

  newId(): number {
    return this.link.newId();
  }

  async createSession(modelPath: string, options: RuntimeSessionOptions = {}): Promise<CreateSessionResult> {
    const answer = await this.request({ type: 'create', id: this.newId(), modelPath, options });
    if (answer.type === 'created') return { ok: true, session: new RuntimeSession(this, answer.description) };
    const error = answer.type === 'error' ? answer.message : `unexpected answer ${answer.type}`;
    return { ok: false, error, providerUnavailable: /providers?_\w+\.(so|dll|dylib)|Failed to load (shared )?library|not (enabled|available|supported) in this build|Unknown provider|backend not found/i.test(error) };
  }

  /** Stops the worker; every session dies with it. */
  dispose(): Promise<void> {
    return this.link.dispose(new Error('runtime worker stopped'));
  }
}

/** A typed array whose buffer can be transferred: its own buffer, whole (a view into a larger buffer is copied). */
function transferable<T extends WireTensorData>(data: T): T {
  if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer) return data;
  return data.slice() as T;
}

export class RuntimeSession {
  private released = false;

  constructor(
    private readonly host: RuntimeHost,
    readonly description: SessionDescription,
  ) {}

  get inputNames(): readonly string[] {
    return this.description.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.description.outputNames;
  }

  /** Runs the graph. Feed buffers are transferred to the worker. `outputs` limits what comes back. */
  async run(feeds: Readonly<Record<string, WireTensor>>, outputs?: readonly string[]): Promise<Record<string, WireTensor>> {
    if (this.released) throw new Error('session released');
    const sent: Record<string, WireTensor> = {};
    const transfer = new Set<ArrayBuffer>();
    for (const [name, tensor] of Object.entries(feeds)) {
      const count = tensor.dims.reduce((a, b) => a * b, 1);
      if (tensor.data.length !== count) {
        throw new Error(`feed ${name}: dims [${tensor.dims.join(', ')}] need ${count} elements, ${tensor.data.length} given${tensor.data.length === 0 ? ' (was its buffer transferred by an earlier run? feeds move to the worker)' : ''}`);
      }
      const data = transferable(tensor.data);
      sent[name] = { type: tensor.type, dims: tensor.dims, data };
      transfer.add(data.buffer as ArrayBuffer);
    }
    const answer = await this.host.request({ type: 'run', id: this.host.newId(), session: this.description.session, feeds: sent, outputs }, [...transfer]);
    if (answer.type === 'ran') return { ...answer.outputs };
    throw new Error(answer.type === 'error' ? answer.message : `unexpected answer ${answer.type}`);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const answer = await this.host.request({ type: 'release', id: this.host.newId(), session: this.description.session });
    if (answer.type === 'error') throw new Error(answer.message);
  }
}

/** The KV cache between forward calls: the graph's `present.N.*` outputs, fed back as `past_key_values.N.*`. */
export interface KvCache {
  readonly batch: number;
  /** Tokens already in the cache. */
  readonly length: number;
  readonly tensors: Readonly<Record<string, WireTensor>>;
}

export interface ForwardResult {
  /** [batch, positions, vocab] row-major: positions is the new tokens' count, or 1 for last-token graphs. */
  readonly logits: Float32Array;
  readonly dims: readonly number[];
  readonly past: KvCache;
}

/**
 * A decoder graph session that handles the KV cache shapes: prefill passes an empty cache ([batch, kv_heads,
 * 0, head_dim]), decode passes the previous call's presents; the attention mask covers past + new tokens.
 */
export class DecoderSession {
  constructor(
    readonly session: RuntimeSession,
    readonly info: DecoderGraphInfo,
  ) {}

  /**
   * Runs `inputIds` ([batch][tokens], equal lengths; or one sequence) after `past`. The cache given is
   * consumed (its buffers move to the worker); use the returned one for the next step.
   */
  async forward(inputIds: readonly (readonly number[])[] | readonly number[], past?: KvCache): Promise<ForwardResult> {
    const rows = (typeof inputIds[0] === 'number' ? [inputIds as readonly number[]] : (inputIds as readonly (readonly number[])[])) as readonly (readonly number[])[];
    const batch = rows.length;
    const tokens = rows[0]?.length ?? 0;
    if (batch === 0 || tokens === 0) throw new Error('forward needs at least one token');
    if (rows.some((r) => r.length !== tokens)) throw new Error('forward: all sequences of a batch must have the same length');
    if (past && past.batch !== batch) throw new Error(`forward: the cache holds ${past.batch} sequences, ${batch} given`);
    const pastLength = past?.length ?? 0;
    const total = pastLength + tokens;
    if (total > this.info.maxSequenceLength) {
      throw new Error(`forward: ${total} tokens (${pastLength} cached + ${tokens} new) exceed the graph's maximum sequence length ${this.info.maxSequenceLength}; rebuild it with a larger maxSequenceLength`);
    }
    const ids = new BigInt64Array(batch * tokens);
    rows.forEach((r, b) => r.forEach((t, i) => (ids[b * tokens + i] = BigInt(t))));
    const feeds: Record<string, WireTensor> = {
      input_ids: { type: 'int64', dims: [batch, tokens], data: ids },
      attention_mask: { type: 'int64', dims: [batch, total], data: new BigInt64Array(batch * total).fill(1n) },
    };
    const floatType = this.info.precision === 'fp16' ? 'float16' : 'float32';
    for (let l = 0; l < this.info.numLayers; l++) {
      for (const kind of ['key', 'value'] as const) {
        const cached = past?.tensors[`present.${l}.${kind}`];
        feeds[`past_key_values.${l}.${kind}`] = cached ?? {
          type: floatType,
          dims: [batch, this.info.numKvHeads, 0, this.info.headDim],
          data: floatType === 'float16' ? new Uint16Array(0) : new Float32Array(0),
        };
      }
    }
    const outputs = await this.session.run(feeds);
    const logits = outputs.logits;
    if (!logits || logits.type !== 'float32') throw new Error('the graph returned no float32 logits');
    const presents: Record<string, WireTensor> = {};
    for (const [name, tensor] of Object.entries(outputs)) if (name.startsWith('present.')) presents[name] = tensor;
    return { logits: logits.data as Float32Array, dims: logits.dims, past: { batch, length: total, tensors: presents } };
  }
}
