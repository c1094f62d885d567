import assert from 'node:assert/strict';
import { parseHeader, readHeaderLength } from '../../src/core/safetensors/header';
import { SafetensorsError, SafetensorsErrorCode } from '../../src/core/safetensors/errors';
import { rawSafetensors } from '../helpers/safetensorsBytes';

/** Parses a whole in-memory file the way the reader does (prefix, then header). */
function parseFile(bytes: Uint8Array, name = 'model.safetensors') {
  const n = readHeaderLength(name, bytes.subarray(0, 8), bytes.length);
  return parseHeader(name, bytes.subarray(8, 8 + n), bytes.length);
}

function expectError(bytes: Uint8Array, code: SafetensorsErrorCode, pattern?: RegExp, tensor?: string): SafetensorsError {
  try {
    parseFile(bytes);
  } catch (error) {
    assert.ok(error instanceof SafetensorsError, `expected SafetensorsError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    if (tensor !== undefined) assert.equal(error.tensor, tensor);
    assert.match(error.message, /^model\.safetensors: /, 'names the file');
    return error;
  }
  assert.fail(`expected ${code}`);
}

const entry = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });
const file = (header: object, dataBytes: number) => rawSafetensors(JSON.stringify(header), new Uint8Array(dataBytes));

describe('safetensors header rules (docs/formats.md §1.2)', () => {
  it('accepts a well-formed multi-tensor header with metadata and computes file offsets', () => {
    const bytes = file({ __metadata__: { format: 'pt' }, b: entry('BF16', [2, 3], 8, 20), a: entry('F64', [1], 0, 8) }, 20);
    const header = parseFile(bytes);
    assert.deepEqual(header.tensors.map((t) => t.name), ['a', 'b'], 'tensors come in data order');
    assert.equal(header.tensors[1]!.fileOffset, header.dataStart + 8);
    assert.equal(header.tensors[1]!.numel, 6);
    assert.deepEqual({ ...header.metadata }, { format: 'pt' });
  });

  it('rule 1: fewer than 8 bytes', () => {
    assert.throws(() => readHeaderLength('x', new Uint8Array(5), 5), (e: SafetensorsError) => e.code === 'HeaderTooSmall');
  });

  it('rule 2: header length above 100 MB', () => {
    const bytes = rawSafetensors('{}', undefined, { declaredLength: 100_000_001n });
    expectError(bytes, 'HeaderTooLarge');
  });

  it('rule 3: header length past the end of the file', () => {
    expectError(rawSafetensors('{}', undefined, { declaredLength: 3n }).subarray(0, 9), 'InvalidHeaderLength');
  });

  it('rule 4: not UTF-8, not JSON, not an object', () => {
    const bad = rawSafetensors('{}');
    bad[8] = 0xff;
    expectError(bad, 'InvalidHeader', /UTF-8/);
    expectError(rawSafetensors('{"a":'), 'InvalidHeaderDeserialization', /not valid JSON/);
    expectError(rawSafetensors('[1,2]'), 'InvalidHeaderDeserialization', /must be a JSON object/);
    expectError(rawSafetensors('{} {}'), 'InvalidHeaderDeserialization', /trailing/);
  });

  it('accepts JSON whitespace before and after the object (the reference reader does)', () => {
    assert.equal(parseFile(rawSafetensors(' \t\r\n{}  \n')).tensors.length, 0);
  });

  it('rejects duplicate keys, which JSON.parse would silently merge', () => {
    const json = '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
    expectError(rawSafetensors(json, new Uint8Array(1)), 'DuplicateKey', /duplicate key "w"/);
  });

  it('__metadata__ must map strings to strings', () => {
    expectError(file({ __metadata__: { a: 1 } }, 0), 'InvalidMetadata', /__metadata__\["a"\] must be a string/);
    expectError(file({ __metadata__: { a: { nested: 'x' } } }, 0), 'InvalidMetadata');
    expectError(file({ __metadata__: ['x'] }, 0), 'InvalidMetadata');
  });

  it('dtypes must be known, with exact spelling', () => {
    expectError(file({ w: entry('F128', [1], 0, 16) }, 16), 'UnknownDtype', /unknown dtype "F128"/, 'w');
    expectError(file({ w: entry('f32', [1], 0, 4) }, 4), 'UnknownDtype', undefined, 'w');
  });

  it('shapes are arrays of non-negative integers (1.0 and -1 are not)', () => {
    expectError(rawSafetensors('{"w":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}', new Uint8Array(1)), 'InvalidTensorEntry', /non-integer number 1\.0/, 'w');
    expectError(file({ w: entry('U8', [-1], 0, 1) }, 1), 'InvalidTensorEntry', /negative/, 'w');
    expectError(file({ w: { dtype: 'U8', shape: '1', data_offsets: [0, 1] } }, 1), 'InvalidTensorEntry', /"shape" must be an array/, 'w');
    expectError(file({ w: { dtype: 'U8', data_offsets: [0, 1] } }, 1), 'InvalidTensorEntry', /"shape" must be an array/, 'w');
  });

  it('data_offsets are exactly two integers', () => {
    expectError(file({ w: { dtype: 'U8', shape: [1], data_offsets: [0, 1, 2] } }, 1), 'InvalidTensorEntry', /\[begin, end\]/, 'w');
    expectError(file({ w: 5 }, 1), 'InvalidTensorEntry', /must be an object/, 'w');
  });

  it('rule 5: tensors tile the data section with no gap or overlap, and end >= begin', () => {
    expectError(file({ a: entry('U8', [4], 0, 4), b: entry('U8', [4], 2, 6) }, 6), 'InvalidOffset', /overlaps "a"/, 'b');
    expectError(file({ a: entry('U8', [4], 0, 4), b: entry('U8', [4], 6, 10) }, 10), 'InvalidOffset', /gap/, 'b');
    expectError(file({ a: entry('U8', [2], 2, 4) }, 4), 'InvalidOffset', /gap/, 'a');
  });

  it('rule 5: byte size = elements × dtype size, sub-byte dtypes fill whole bytes, products cannot overflow', () => {
    expectError(file({ a: entry('F32', [2, 2], 0, 12) }, 12), 'TensorInvalidInfo', /needs 16 bytes/, 'a');
    expectError(file({ a: entry('F4', [3], 0, 2) }, 2), 'MisalignedSlice', undefined, 'a');
    expectError(file({ a: entry('F32', [2 ** 40, 2 ** 40], 0, 4) }, 4), 'ValidationOverflow', undefined, 'a');
    expectError(rawSafetensors('{"a":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,1]}}', new Uint8Array(1)), 'ValidationOverflow', undefined, 'a');
  });

  it('rule 6: no missing and no trailing bytes', () => {
    expectError(file({ a: entry('U8', [4], 0, 4) }, 3), 'MetadataIncompleteBuffer', /truncated/);
    expectError(file({ a: entry('U8', [4], 0, 4) }, 5), 'MetadataIncompleteBuffer', /1 unexpected bytes/);
  });

  it('allows empty and scalar tensors', () => {
    const header = parseFile(file({ empty: entry('F32', [3, 0], 0, 0), scalar: entry('F32', [], 0, 4) }, 4));
    assert.deepEqual(header.tensors.map((t) => [t.name, t.numel, t.byteLength]), [['empty', 0, 0], ['scalar', 1, 4]]);
  });

  it('keeps unicode names and the name "__proto__" as ordinary tensors', () => {
    const json = '{"модель.слой.0":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}';
    const header = parseFile(rawSafetensors(json, new Uint8Array(2)));
    assert.deepEqual(header.tensors.map((t) => t.name), ['модель.слой.0', '__proto__']);
  });

  it('tolerates but reports unexpected fields in a tensor entry', () => {
    const header = parseFile(file({ a: { ...entry('U8', [1], 0, 1), extra: 1 } }, 1));
    assert.match(header.warnings[0]!, /unexpected field "extra"/);
  });

  it('bounds nesting depth instead of recursing without limit', () => {
    const deep = `{"__metadata__":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    expectError(rawSafetensors(deep), 'InvalidHeaderDeserialization', /nesting deeper/);
  });
});
