/**
 * A minimal protobuf writer for the subset of onnx.proto (IR ≥ 10) that QuantLens emits: ModelProto,
 * OperatorSetIdProto, GraphProto, NodeProto, AttributeProto, TensorProto (raw_data or external data),
 * ValueInfoProto / TypeProto.Tensor / TensorShapeProto with symbolic dims, StringStringEntryProto.
 *
 * Field numbers follow onnx/onnx.proto (the `= N` of each field):
 *   ModelProto        ir_version 1, producer_name 2, producer_version 3, domain 4, model_version 5,
 *                     doc_string 6, graph 7, opset_import 8, metadata_props 14
 *   OperatorSetIdProto domain 1, version 2
 *   GraphProto        node 1, name 2, initializer 5, doc_string 10, input 11, output 12, value_info 13
 *   NodeProto         input 1, output 2, name 3, op_type 4, attribute 5, doc_string 6, domain 7
 *   AttributeProto    name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, strings 9, type 20
 *   TensorProto       dims 1, data_type 2, name 8, raw_data 9, external_data 13, data_location 14
 *   ValueInfoProto    name 1, type 2;  TypeProto tensor_type 1;  TypeProto.Tensor elem_type 1, shape 2
 *   TensorShapeProto  dim 1;  Dimension dim_value 1, dim_param 2
 *   StringStringEntryProto key 1, value 2
 *
 * The model file holds only structure and small tensors; large initializers live in an external data file
 * (see builder.ts), so encoding a whole model here is cheap and bounded by the graph's size, not its weights.
 * Repeated scalars are written unpacked (valid for proto2 `repeated` fields and accepted by every parser).
 */

/** TensorProto.DataType. */
export enum DataType {
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  UINT16 = 4,
  INT16 = 5,
  INT32 = 6,
  INT64 = 7,
  STRING = 8,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  UINT32 = 12,
  UINT64 = 13,
  BFLOAT16 = 16,
  FLOAT8E4M3FN = 17,
  FLOAT8E4M3FNUZ = 18,
  FLOAT8E5M2 = 19,
  FLOAT8E5M2FNUZ = 20,
  UINT4 = 21,
  INT4 = 22,
  FLOAT4E2M1 = 23,
}

/** Bits per element of each data type (4 for the packed 4-bit types). */
export function dataTypeBits(type: DataType): number {
  switch (type) {
    case DataType.UINT4:
    case DataType.INT4:
    case DataType.FLOAT4E2M1:
      return 4;
    case DataType.UINT8:
    case DataType.INT8:
    case DataType.BOOL:
    case DataType.FLOAT8E4M3FN:
    case DataType.FLOAT8E4M3FNUZ:
    case DataType.FLOAT8E5M2:
    case DataType.FLOAT8E5M2FNUZ:
      return 8;
    case DataType.UINT16:
    case DataType.INT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return 16;
    case DataType.FLOAT:
    case DataType.INT32:
    case DataType.UINT32:
      return 32;
    case DataType.DOUBLE:
    case DataType.INT64:
    case DataType.UINT64:
      return 64;
    case DataType.STRING:
      throw new OnnxProtoError('STRING tensors have no fixed element width');
  }
}

/** Bytes a dense tensor of `dims` takes in raw_data (4-bit types pack two per byte, rounded up). */
export function tensorByteSize(type: DataType, dims: readonly number[]): number {
  const count = dims.reduce((n, d) => n * d, 1);
  return Math.ceil((count * dataTypeBits(type)) / 8);
}

export class OnnxProtoError extends Error {
  override readonly name = 'OnnxProtoError';
}

/** AttributeProto.AttributeType. */
const enum AttributeType {
  FLOAT = 1,
  INT = 2,
  STRING = 3,
  TENSOR = 4,
  FLOATS = 6,
  INTS = 7,
  STRINGS = 8,
}

/** A dimension: a fixed size, or a symbolic name (dim_param) such as "batch_size". */
export type Dim = number | string;

export interface ValueInfo {
  readonly name: string;
  readonly type: DataType;
  /** Undefined: rank unknown (no shape written). */
  readonly dims?: readonly Dim[];
}

export interface ExternalLocation {
  /** Path of the data file relative to the model file's folder. */
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

export interface TensorValue {
  readonly name: string;
  readonly type: DataType;
  readonly dims: readonly number[];
  /** Inline bytes (raw_data, little-endian). Exactly one of raw / external. */
  readonly raw?: Uint8Array;
  readonly external?: ExternalLocation;
}

export type AttributeValue =
  | { readonly kind: 'int'; readonly value: number | bigint }
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'ints'; readonly value: readonly (number | bigint)[] }
  | { readonly kind: 'floats'; readonly value: readonly number[] }
  | { readonly kind: 'strings'; readonly value: readonly string[] }
  | { readonly kind: 'tensor'; readonly value: TensorValue };

/**
 * Attributes as callers write them: a plain integer is INT, a string STRING, an integer array INTS;
 * floats must be explicit (`attr.float(1)`), since 1.0 and 1 are the same JS number.
 */
export type AttributeInput = AttributeValue | number | bigint | string | readonly number[];

export const attr = {
  int: (value: number | bigint): AttributeValue => ({ kind: 'int', value }),
  float: (value: number): AttributeValue => ({ kind: 'float', value }),
  string: (value: string): AttributeValue => ({ kind: 'string', value }),
  ints: (value: readonly (number | bigint)[]): AttributeValue => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): AttributeValue => ({ kind: 'floats', value }),
  strings: (value: readonly string[]): AttributeValue => ({ kind: 'strings', value }),
  tensor: (value: TensorValue): AttributeValue => ({ kind: 'tensor', value }),
};

export function normalizeAttribute(name: string, input: AttributeInput): AttributeValue {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input)) throw new OnnxProtoError(`attribute ${name}: ${input} is not an integer; write attr.float(${input}) for a FLOAT attribute`);
    return { kind: 'int', value: input };
  }
  if (typeof input === 'bigint') return { kind: 'int', value: input };
  if (typeof input === 'string') return { kind: 'string', value: input };
  if (Array.isArray(input)) {
    for (const v of input as readonly number[]) {
      if (!Number.isSafeInteger(v)) throw new OnnxProtoError(`attribute ${name}: ${v} is not an integer; write attr.floats([...]) for a FLOATS attribute`);
    }
    return { kind: 'ints', value: input as readonly number[] };
  }
  return input as AttributeValue;
}

export interface NodeValue {
  readonly opType: string;
  readonly domain?: string;
  readonly name?: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes?: Readonly<Record<string, AttributeValue>>;
}

export interface GraphValue {
  readonly name: string;
  readonly nodes: readonly NodeValue[];
  readonly initializers: readonly TensorValue[];
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  readonly valueInfo?: readonly ValueInfo[];
  readonly docString?: string;
}

export interface OpsetImport {
  readonly domain: string;
  readonly version: number;
}

export interface ModelValue {
  readonly irVersion: number;
  readonly opsets: readonly OpsetImport[];
  readonly producerName?: string;
  readonly producerVersion?: string;
  readonly docString?: string;
  readonly graph: GraphValue;
  readonly metadata?: Readonly<Record<string, string>>;
}

// ---------------------------------------------------------------------------------------------------------
// Wire encoding
// ---------------------------------------------------------------------------------------------------------

const WIRE_VARINT = 0;
const WIRE_FIXED32 = 5;
const WIRE_LENGTH = 2;
const utf8 = new TextEncoder();

/**
 * Accumulates one message as a list of byte parts; nested messages are encoded first and spliced in with
 * their length prefix, so nothing is copied until `bytes()` joins the parts once.
 */
export class ProtoEncoder {
  private readonly parts: Uint8Array[] = [];
  private scratch = new Uint8Array(256);
  private used = 0;
  private total = 0;

  get length(): number {
    return this.total;
  }

  private room(n: number): void {
    if (this.used + n <= this.scratch.length) return;
    this.flushScratch();
    if (n > this.scratch.length) this.scratch = new Uint8Array(n);
  }

  private flushScratch(): void {
    if (this.used === 0) return;
    this.parts.push(this.scratch.slice(0, this.used));
    this.used = 0;
  }

  private rawVarint(value: number | bigint): void {
    this.room(10);
    const start = this.used;
    if (typeof value === 'number' && value >= 0 && value <= 0x7fffffff) {
      let v = value;
      while (v >= 0x80) {
        this.scratch[this.used++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.scratch[this.used++] = v;
    } else {
      if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new OnnxProtoError(`${value} is not an integer`);
      // Negative int64 values are sent as their 64-bit two's complement (10 bytes), as protobuf does.
      let v = BigInt.asUintN(64, BigInt(value));
      while (v >= 0x80n) {
        this.scratch[this.used++] = Number(v & 0x7fn) | 0x80;
        v >>= 7n;
      }
      this.scratch[this.used++] = Number(v);
    }
    this.total += this.used - start;
  }

  private tag(field: number, wire: number): void {
    this.rawVarint((field << 3) | wire);
  }

  varint(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    this.room(4);
    new DataView(this.scratch.buffer, this.scratch.byteOffset).setFloat32(this.used, value, true);
    this.used += 4;
    this.total += 4;
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LENGTH);
    this.rawVarint(value.length);
    if (value.length <= 64) {
      this.room(value.length);
      this.scratch.set(value, this.used);
      this.used += value.length;
    } else {
      this.flushScratch();
      this.parts.push(value);
    }
    this.total += value.length;
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  message(field: number, inner: ProtoEncoder): this {
    this.tag(field, WIRE_LENGTH);
    this.rawVarint(inner.length);
    this.flushScratch();
    inner.flushScratch();
    this.parts.push(...inner.parts);
    this.total += inner.length;
    return this;
  }

  bytesOut(): Uint8Array {
    this.flushScratch();
    if (this.parts.length === 1) return this.parts[0]!;
    const out = new Uint8Array(this.total);
    let at = 0;
    for (const part of this.parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------------

function encodeStringEntry(key: string, value: string): ProtoEncoder {
  return new ProtoEncoder().string(1, key).string(2, value);
}

export function encodeTensor(tensor: TensorValue): ProtoEncoder {
  const e = new ProtoEncoder();
  for (const d of tensor.dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new OnnxProtoError(`tensor ${tensor.name}: dimension ${d} is not a non-negative integer`);
    e.varint(1, d);
  }
  e.varint(2, tensor.type);
  e.string(8, tensor.name);
  const expected = tensorByteSize(tensor.type, tensor.dims);
  if ((tensor.raw === undefined) === (tensor.external === undefined)) {
    throw new OnnxProtoError(`tensor ${tensor.name}: exactly one of raw bytes or an external location is needed`);
  }
  if (tensor.raw) {
    if (tensor.raw.length !== expected) throw new OnnxProtoError(`tensor ${tensor.name}: ${tensor.raw.length} bytes given, [${tensor.dims.join(', ')}] of type ${DataType[tensor.type]} needs ${expected}`);
    e.bytes(9, tensor.raw);
  } else {
    const ext = tensor.external!;
    if (ext.length !== expected) throw new OnnxProtoError(`tensor ${tensor.name}: external length ${ext.length}, [${tensor.dims.join(', ')}] of type ${DataType[tensor.type]} needs ${expected}`);
    e.message(13, encodeStringEntry('location', ext.location));
    e.message(13, encodeStringEntry('offset', String(ext.offset)));
    e.message(13, encodeStringEntry('length', String(ext.length)));
    e.varint(14, 1); // DataLocation.EXTERNAL
  }
  return e;
}

function encodeAttribute(name: string, value: AttributeValue): ProtoEncoder {
  const e = new ProtoEncoder().string(1, name);
  switch (value.kind) {
    case 'float':
      e.float(2, value.value).varint(20, AttributeType.FLOAT);
      break;
    case 'int':
      e.varint(3, value.value).varint(20, AttributeType.INT);
      break;
    case 'string':
      e.string(4, value.value).varint(20, AttributeType.STRING);
      break;
    case 'tensor':
      e.message(5, encodeTensor(value.value)).varint(20, AttributeType.TENSOR);
      break;
    case 'floats':
      for (const v of value.value) e.float(7, v);
      e.varint(20, AttributeType.FLOATS);
      break;
    case 'ints':
      for (const v of value.value) e.varint(8, v);
      e.varint(20, AttributeType.INTS);
      break;
    case 'strings':
      for (const v of value.value) e.string(9, v);
      e.varint(20, AttributeType.STRINGS);
      break;
  }
  return e;
}

function encodeNode(node: NodeValue): ProtoEncoder {
  const e = new ProtoEncoder();
  for (const input of node.inputs) e.string(1, input);
  for (const output of node.outputs) e.string(2, output);
  if (node.name) e.string(3, node.name);
  e.string(4, node.opType);
  for (const [name, value] of Object.entries(node.attributes ?? {})) e.message(5, encodeAttribute(name, value));
  if (node.domain) e.string(7, node.domain);
  return e;
}

function encodeValueInfo(info: ValueInfo): ProtoEncoder {
  const tensorType = new ProtoEncoder().varint(1, info.type);
  if (info.dims) {
    const shape = new ProtoEncoder();
    for (const dim of info.dims) {
      const d = new ProtoEncoder();
      if (typeof dim === 'number') {
        if (!Number.isSafeInteger(dim) || dim < 0) throw new OnnxProtoError(`${info.name}: dimension ${dim} is not a non-negative integer`);
        d.varint(1, dim);
      } else d.string(2, dim);
      shape.message(1, d);
    }
    tensorType.message(2, shape);
  }
  return new ProtoEncoder().string(1, info.name).message(2, new ProtoEncoder().message(1, tensorType));
}

function encodeGraph(graph: GraphValue): ProtoEncoder {
  const e = new ProtoEncoder();
  for (const node of graph.nodes) e.message(1, encodeNode(node));
  e.string(2, graph.name);
  for (const tensor of graph.initializers) e.message(5, encodeTensor(tensor));
  if (graph.docString) e.string(10, graph.docString);
  for (const input of graph.inputs) e.message(11, encodeValueInfo(input));
  for (const output of graph.outputs) e.message(12, encodeValueInfo(output));
  for (const info of graph.valueInfo ?? []) e.message(13, encodeValueInfo(info));
  return e;
}

/** Serialises a ModelProto. */
export function encodeModel(model: ModelValue): Uint8Array {
  const e = new ProtoEncoder().varint(1, model.irVersion);
  if (model.producerName) e.string(2, model.producerName);
  if (model.producerVersion) e.string(3, model.producerVersion);
  if (model.docString) e.string(6, model.docString);
  e.message(7, encodeGraph(model.graph));
  for (const opset of model.opsets) {
    const o = new ProtoEncoder();
    if (opset.domain) o.string(1, opset.domain);
    o.varint(2, opset.version);
    e.message(8, o);
  }
  for (const [key, value] of Object.entries(model.metadata ?? {})) e.message(14, encodeStringEntry(key, value));
  return e.bytesOut();
}
