/**
 * safetensors header parsing and validation: every rule of the format (docs/formats.md §1.1–§1.2), in the
 * reference reader's order, each violation a SafetensorsError naming the file, the tensor and the rule.
 */
import { DTYPE_INFO, DType, isDType } from '../dtypes/dtype';
import { SafetensorsError } from './errors';
import { JsonSyntaxError, JsonValue, isJsonObject, jsonTypeName, parseStrictJson } from './json';

/** The reference reader's bound on the header length (bytes). */
export const MAX_HEADER_LENGTH = 100_000_000;
/** The format's size limit for shapes and offsets ("48-bit CPU limitation", safetensors JSON schema). */
const MAX_FORMAT_INT = 2 ** 48 - 1;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Element count (1 for a 0-rank scalar, 0 when any dimension is 0). */
  readonly numel: number;
  /** [begin, end) relative to the start of the data section. */
  readonly dataOffsets: readonly [number, number];
  readonly byteLength: number;
  /** Absolute byte position of the tensor's first byte in its file. */
  readonly fileOffset: number;
}

export interface SafetensorsHeader {
  readonly file: string;
  /** N, the header's length in bytes (the JSON, including any padding). */
  readonly headerLength: number;
  /** 8 + N: where the data section starts. */
  readonly dataStart: number;
  readonly fileSize: number;
  /** `__metadata__`, when present. */
  readonly metadata: Readonly<Record<string, string>> | undefined;
  /** Tensors in data order (ascending offsets). */
  readonly tensors: readonly TensorInfo[];
  readonly byName: ReadonlyMap<string, TensorInfo>;
  /** Legal but unusual things a user may want to know (e.g. extra fields in a tensor entry). */
  readonly warnings: readonly string[];
}

/**
 * Checks the 8-byte prefix (rules 1–3) and returns N. `prefix` holds the first min(8, fileSize) bytes.
 */
export function readHeaderLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || prefix.length < 8) {
    throw new SafetensorsError('HeaderTooSmall', file, `file is ${fileSize} bytes; a safetensors file starts with an 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_LENGTH)) {
    throw new SafetensorsError('HeaderTooLarge', file, `header length ${n} exceeds the ${MAX_HEADER_LENGTH}-byte limit (is this a safetensors file?)`);
  }
  const length = Number(n);
  if (8 + length > fileSize) {
    throw new SafetensorsError('InvalidHeaderLength', file, `header length ${length} runs past the end of the ${fileSize}-byte file`);
  }
  return length;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses and validates header bytes (the N bytes after the length prefix) against the file's size. */
export function parseHeader(file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const headerLength = headerBytes.length;
  const dataStart = 8 + headerLength;

  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new SafetensorsError('InvalidHeader', file, 'header is not valid UTF-8');
  }

  let root: JsonValue;
  try {
    root = parseStrictJson(text);
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      const duplicate = /^duplicate key/.test(error.message);
      throw new SafetensorsError(duplicate ? 'DuplicateKey' : 'InvalidHeaderDeserialization', file, `header is not valid JSON: ${error.message}`);
    }
    throw error;
  }
  if (!isJsonObject(root)) {
    throw new SafetensorsError('InvalidHeaderDeserialization', file, `header must be a JSON object, found ${jsonTypeName(root)}`);
  }

  const warnings: string[] = [];
  let metadata: Record<string, string> | undefined;
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];

  for (const [name, value] of root) {
    if (name === '__metadata__') {
      metadata = parseMetadata(file, value);
      continue;
    }
    entries.push(parseTensorEntry(file, name, value, warnings));
  }

  // Rule 5: sorted by offsets, the tensors must tile the data section exactly.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const tensors: TensorInfo[] = [];
  let previousEnd = 0;
  let previousName: string | undefined;
  for (const entry of entries) {
    const { name, dtype, shape, begin, end } = entry;
    if (begin !== previousEnd) {
      const why =
        begin < previousEnd
          ? `overlaps ${previousName === undefined ? 'the previous tensor' : JSON.stringify(previousName)} (data_offsets start at ${begin}, previous tensor ends at ${previousEnd})`
          : `leaves a gap in the data section (data_offsets start at ${begin}, previous tensor ends at ${previousEnd})`;
      throw new SafetensorsError('InvalidOffset', file, `invalid data_offsets: ${why}`, name);
    }
    if (end < begin) {
      throw new SafetensorsError('InvalidOffset', file, `invalid data_offsets [${begin}, ${end}]: end is before begin`, name);
    }
    // Exact element and bit counts: plain numbers when the bit count is a safe integer (every product on
    // the way is then no larger, or the result is 0, so each is exact), bigints otherwise.
    let numelNumber = 1;
    for (const dim of shape) numelNumber *= dim;
    const bitsNumber = numelNumber * DTYPE_INFO[dtype].bits;
    let numel: number | bigint = numelNumber;
    let bits: number | bigint = bitsNumber;
    if (!Number.isSafeInteger(bitsNumber)) {
      numel = 1n;
      for (const dim of shape) numel *= BigInt(dim);
      bits = numel * BigInt(DTYPE_INFO[dtype].bits);
      if (bits > 2n ** 64n - 1n) {
        throw new SafetensorsError('ValidationOverflow', file, `shape [${shape.join(', ')}] of ${dtype} overflows a 64-bit byte count`, name);
      }
    }
    if (typeof bits === 'number' ? bits % 8 !== 0 : bits % 8n !== 0n) {
      throw new SafetensorsError('MisalignedSlice', file, `${numel} elements of ${dtype} (${DTYPE_INFO[dtype].bits} bits each) do not fill whole bytes`, name);
    }
    const expected = typeof bits === 'number' ? bits / 8 : bits / 8n;
    if (typeof expected === 'number' ? end - begin !== expected : BigInt(end - begin) !== expected) {
      throw new SafetensorsError(
        'TensorInvalidInfo',
        file,
        `data_offsets [${begin}, ${end}] span ${end - begin} bytes, but shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes`,
        name,
      );
    }
    tensors.push({
      name,
      dtype,
      shape,
      numel: Number(numel),
      dataOffsets: [begin, end],
      byteLength: end - begin,
      fileOffset: dataStart + begin,
    });
    previousEnd = end;
    previousName = name;
  }

  // Rule 6: no missing and no trailing bytes.
  if (dataStart + previousEnd !== fileSize) {
    const actual = fileSize - dataStart;
    throw new SafetensorsError(
      'MetadataIncompleteBuffer',
      file,
      actual < previousEnd
        ? `file is truncated: the tensors need ${previousEnd} bytes of data but only ${actual} follow the header`
        : `${actual - previousEnd} unexpected bytes after the last tensor (the data section must end exactly where the tensors end)`,
    );
  }

  return {
    file,
    headerLength,
    dataStart,
    fileSize,
    metadata,
    tensors,
    byName: new Map(tensors.map((t) => [t.name, t])),
    warnings,
  };
}

function parseMetadata(file: string, value: JsonValue): Record<string, string> {
  if (!isJsonObject(value)) {
    throw new SafetensorsError('InvalidMetadata', file, `__metadata__ must be an object of strings, found ${jsonTypeName(value)}`);
  }
  const metadata: Record<string, string> = Object.create(null);
  for (const [key, entry] of value) {
    if (typeof entry !== 'string') {
      throw new SafetensorsError('InvalidMetadata', file, `__metadata__[${JSON.stringify(key)}] must be a string, found ${jsonTypeName(entry)}`);
    }
    metadata[key] = entry;
  }
  return metadata;
}

function parseTensorEntry(
  file: string,
  name: string,
  value: JsonValue,
  warnings: string[],
): { name: string; dtype: DType; shape: number[]; begin: number; end: number } {
  if (!isJsonObject(value)) {
    throw new SafetensorsError('InvalidTensorEntry', file, `entry must be an object with dtype, shape and data_offsets, found ${jsonTypeName(value)}`, name);
  }
  for (const key of value.keys()) {
    if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') {
      warnings.push(`tensor ${JSON.stringify(name)}: unexpected field ${JSON.stringify(key)} ignored`);
    }
  }
  const dtype = value.get('dtype');
  if (typeof dtype !== 'string') {
    throw new SafetensorsError('InvalidTensorEntry', file, `"dtype" must be a string, found ${jsonTypeName(dtype)}`, name);
  }
  if (!isDType(dtype)) {
    throw new SafetensorsError('UnknownDtype', file, `unknown dtype ${JSON.stringify(dtype)}`, name);
  }
  const shape = parseIntegerArray(file, name, 'shape', value.get('shape'));
  const offsets = parseIntegerArray(file, name, 'data_offsets', value.get('data_offsets'));
  if (offsets.length !== 2) {
    throw new SafetensorsError('InvalidTensorEntry', file, `"data_offsets" must be [begin, end], found ${offsets.length} numbers`, name);
  }
  return { name, dtype, shape, begin: offsets[0]!, end: offsets[1]! };
}

function parseIntegerArray(file: string, name: string, field: string, value: JsonValue | undefined): number[] {
  if (!Array.isArray(value)) {
    throw new SafetensorsError('InvalidTensorEntry', file, `"${field}" must be an array of non-negative integers, found ${jsonTypeName(value)}`, name);
  }
  return value.map((item, index) => {
    if (typeof item === 'bigint') {
      if (item < 0n) {
        throw new SafetensorsError('InvalidTensorEntry', file, `"${field}"[${index}] is negative (${item})`, name);
      }
      throw new SafetensorsError('ValidationOverflow', file, `"${field}"[${index}] = ${item} is beyond any addressable size`, name);
    }
    if (typeof item !== 'number') {
      throw new SafetensorsError('InvalidTensorEntry', file, `"${field}"[${index}] must be a non-negative integer, found ${jsonTypeName(item)}`, name);
    }
    if (item < 0) {
      throw new SafetensorsError('InvalidTensorEntry', file, `"${field}"[${index}] is negative (${item})`, name);
    }
    if (item > MAX_FORMAT_INT) {
      throw new SafetensorsError('ValidationOverflow', file, `"${field}"[${index}] = ${item} exceeds the format's 2^48-1 limit`, name);
    }
    return item;
  });
}
