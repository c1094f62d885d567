/**
 * GraphBuilder: assembles an ONNX model node by node and writes it as `<name>.onnx` plus, for initializers
 * above a small threshold, `<name>.onnx.data` (external data, `data_location = EXTERNAL`). Initializer bytes
 * are written to the data file as they are given (typed arrays or streamed chunks) and never kept, so a model
 * of any size (>2 GB included: protobuf's 2 GB limit applies to the small .onnx file only) is built with
 * memory bounded by the largest single chunk the caller hands in.
 *
 * Both files are written under temporary names in the target folder and renamed when `finish` succeeds;
 * `abort` (or a failure) removes them, so the folder never holds a half-written model under the final name.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  AttributeInput,
  AttributeValue,
  DataType,
  Dim,
  NodeValue,
  OnnxProtoError,
  OpsetImport,
  TensorValue,
  ValueInfo,
  encodeModel,
  normalizeAttribute,
  tensorByteSize,
} from './proto';

export { DataType, attr } from './proto';
export type { Dim, AttributeInput } from './proto';

/** Opset versions the builder imports by default: ONNX 21 (FP8/INT4 DequantizeLinear) and com.microsoft 1. */
export const DEFAULT_OPSETS: readonly OpsetImport[] = [
  { domain: '', version: 21 },
  { domain: 'com.microsoft', version: 1 },
];
/** IR version 10 goes with opset 21. */
export const DEFAULT_IR_VERSION = 10;

export interface GraphBuilderOptions {
  /** The .onnx file to write; the data file is `<modelPath>.data` beside it (ORT resolves it from there). */
  readonly modelPath: string;
  readonly graphName?: string;
  readonly opsets?: readonly OpsetImport[];
  readonly irVersion?: number;
  /** Initializers of at most this many bytes are stored inline (raw_data). Default 1 KiB. */
  readonly inlineLimit?: number;
  readonly producerName?: string;
  readonly producerVersion?: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

/** Data as handed to `initializer`: the bytes of a typed array (little-endian, as ONNX wants). */
export type TensorData = ArrayBufferView;

/** Big tensors start at 64 KiB boundaries (Windows' mmap granularity; ORT can then map them directly). */
const LARGE_ALIGNMENT = 65536;
const LARGE_THRESHOLD = 1 << 20;
const SMALL_ALIGNMENT = 64;

export class GraphBuilder {
  private readonly nodes: NodeValue[] = [];
  private readonly initializers: TensorValue[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly used = new Set<string>();
  /** Names handed out by uniqueName and not yet bound to a value: a node, input or initializer may take them. */
  private readonly reserved = new Set<string>();
  private readonly counters = new Map<string, number>();
  private dataOffset = 0;
  private writeChain: Promise<void> = Promise.resolve();
  private done = false;

  private constructor(
    readonly options: GraphBuilderOptions,
    private readonly dataHandle: fs.FileHandle,
    private readonly tempModelPath: string,
    private readonly tempDataPath: string,
  ) {}

  static async create(options: GraphBuilderOptions): Promise<GraphBuilder> {
    const folder = dirname(options.modelPath);
    await fs.mkdir(folder, { recursive: true });
    const tag = randomBytes(6).toString('hex');
    const tempModelPath = join(folder, `.${basename(options.modelPath)}.${tag}.partial`);
    const tempDataPath = join(folder, `.${basename(options.modelPath)}.data.${tag}.partial`);
    const handle = await fs.open(tempDataPath, 'wx');
    return new GraphBuilder(options, handle, tempModelPath, tempDataPath);
  }

  get modelPath(): string {
    return this.options.modelPath;
  }

  get dataPath(): string {
    return `${this.options.modelPath}.data`;
  }

  /** Bytes written to the external data file so far. */
  get externalBytes(): number {
    return this.dataOffset;
  }

  /**
   * A name not used yet, derived from `base` (`base`, `base_1`, `base_2`, …). It is reserved: the next node,
   * input or initializer given this name binds it.
   */
  uniqueName(base: string): string {
    let name = base;
    if (this.used.has(base)) {
      let n = this.counters.get(base) ?? 1;
      while (this.used.has(`${base}_${n}`)) n++;
      this.counters.set(base, n + 1);
      name = `${base}_${n}`;
    }
    this.used.add(name);
    this.reserved.add(name);
    return name;
  }

  private claim(name: string, what: string): string {
    if (this.reserved.delete(name)) return name;
    if (this.used.has(name)) throw new OnnxProtoError(`${what} ${JSON.stringify(name)}: the name is already used in this graph`);
    this.used.add(name);
    return name;
  }

  /** Declares a graph input. */
  input(name: string, type: DataType, dims: readonly Dim[]): string {
    this.inputs.push({ name: this.claim(name, 'input'), type, dims });
    return name;
  }

  /**
   * Declares `value` (produced by a node or an input) as a graph output named `name` (default: the value's
   * own name); a different name gets an Identity node.
   */
  output(value: string, type: DataType, dims?: readonly Dim[], name = value): string {
    if (name !== value) this.node('Identity', [value], [name]);
    this.outputs.push({ name, type, dims });
    return name;
  }

  /** Adds a node; `outputs` is a list of names or a count of fresh names derived from the op. Returns the outputs. */
  node(opType: string, inputs: readonly string[], outputs: readonly string[] | number = 1, attributes: Readonly<Record<string, AttributeInput>> = {}, domain = ''): string[] {
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.claim(this.uniqueName(opType.toLowerCase()), opType)) : outputs.map((o) => (o === '' ? '' : this.claim(o, `output of ${opType}`)));
    const normalized: Record<string, AttributeValue> = {};
    for (const [key, value] of Object.entries(attributes)) normalized[key] = normalizeAttribute(key, value);
    this.nodes.push({ opType, domain: domain || undefined, name: this.claim(this.uniqueName(`${opType}_node`), opType), inputs: [...inputs], outputs: outs, attributes: normalized });
    return outs;
  }

  /** `node` for the common single-output case. */
  op(opType: string, inputs: readonly string[], attributes: Readonly<Record<string, AttributeInput>> = {}, domain = ''): string {
    return this.node(opType, inputs, 1, attributes, domain)[0]!;
  }

  /** A small constant stored inline (shape tensors, scalars). The name is made unique from `base`. */
  constant(base: string, type: DataType, dims: readonly number[], data: TensorData): string {
    const name = this.claim(this.uniqueName(base), 'constant');
    this.initializers.push({ name, type, dims, raw: bytesOf(data) });
    return name;
  }

  /** An int64 1-D constant (shapes, axes). */
  int64s(base: string, values: readonly number[]): string {
    return this.constant(base, DataType.INT64, [values.length], BigInt64Array.from(values, (v) => BigInt(v)));
  }

  /** A float32 scalar or 1-D constant. */
  float32s(base: string, values: readonly number[], dims: readonly number[] = values.length === 1 ? [] : [values.length]): string {
    return this.constant(base, DataType.FLOAT, dims, Float32Array.from(values));
  }

  /**
   * An initializer named exactly `name`, from a typed array holding all of it. Large ones are written to the
   * external data file now (the array can be reused once the promise resolves).
   */
  async initializer(name: string, type: DataType, dims: readonly number[], data: TensorData): Promise<string> {
    const bytes = bytesOf(data);
    const expected = tensorByteSize(type, dims);
    if (bytes.length !== expected) throw new OnnxProtoError(`initializer ${name}: ${bytes.length} bytes given, [${dims.join(', ')}] of ${DataType[type]} needs ${expected}`);
    if (bytes.length <= (this.options.inlineLimit ?? 1024)) {
      this.initializers.push({ name: this.claim(name, 'initializer'), type, dims, raw: bytes.slice() });
      return name;
    }
    return this.streamedInitializer(name, type, dims, [bytes]);
  }

  /**
   * An initializer whose bytes arrive in chunks (e.g. read from a checkpoint and converted piece by piece).
   * The chunks must add up to exactly the tensor's size; each is written before the next is pulled, so a
   * generator may reuse its buffer between chunks.
   */
  async streamedInitializer(name: string, type: DataType, dims: readonly number[], chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<string> {
    this.claim(name, 'initializer');
    const expected = tensorByteSize(type, dims);
    const previous = this.writeChain;
    let release!: () => void;
    this.writeChain = new Promise((r) => (release = r));
    try {
      await previous;
      const alignment = expected >= LARGE_THRESHOLD ? LARGE_ALIGNMENT : SMALL_ALIGNMENT;
      const start = Math.ceil(this.dataOffset / alignment) * alignment;
      let position = start;
      for await (const chunk of chunks) {
        if (position - start + chunk.length > expected) throw new OnnxProtoError(`initializer ${name}: more than the ${expected} bytes that [${dims.join(', ')}] of ${DataType[type]} needs`);
        let done = 0;
        while (done < chunk.length) {
          const { bytesWritten } = await this.dataHandle.write(chunk, done, chunk.length - done, position + done);
          done += bytesWritten;
        }
        position += chunk.length;
      }
      if (position - start !== expected) throw new OnnxProtoError(`initializer ${name}: ${position - start} bytes written, [${dims.join(', ')}] of ${DataType[type]} needs ${expected}`);
      this.dataOffset = position;
      this.initializers.push({ name, type, dims, external: { location: basename(this.dataPath), offset: start, length: expected } });
      return name;
    } finally {
      release();
    }
  }

  /** Writes the model and moves both files to their final names. */
  async finish(): Promise<{ modelPath: string; dataPath: string; modelBytes: number; dataBytes: number }> {
    if (this.done) throw new OnnxProtoError('finish called twice');
    try {
      await this.writeChain;
      const model = encodeModel({
        irVersion: this.options.irVersion ?? DEFAULT_IR_VERSION,
        opsets: this.options.opsets ?? DEFAULT_OPSETS,
        producerName: this.options.producerName ?? 'quantlens',
        producerVersion: this.options.producerVersion,
        graph: { name: this.options.graphName ?? 'graph', nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs },
        metadata: this.options.metadata,
      });
      await this.dataHandle.sync();
      await this.dataHandle.close();
      await fs.writeFile(this.tempModelPath, model);
      await fs.rename(this.tempDataPath, this.dataPath);
      await fs.rename(this.tempModelPath, this.modelPath);
      this.done = true;
      return { modelPath: this.modelPath, dataPath: this.dataPath, modelBytes: model.length, dataBytes: this.dataOffset };
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  /** Removes everything written. Safe to call more than once. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.dataHandle.close().catch(() => undefined);
    await fs.rm(this.tempDataPath, { force: true });
    await fs.rm(this.tempModelPath, { force: true });
  }
}

function bytesOf(data: TensorData): Uint8Array {
  return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
