/**
 * Fuzzing the format layer: thousands of mutated files, each of which must end in a typed error or a valid
 * parse whose tensors really tile the file — never another exception, a hang, or unbounded memory. Verdicts
 * are also compared with an independent checker written here from docs/formats.md §1.2 (on the cases where
 * JSON.parse can judge: no duplicate keys, no integers beyond 2^53).
 */
import assert from 'node:assert/strict';
import { rng } from '../helpers/random';
import { promises as fs, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/core/safetensors/reader';
import { SafetensorsError } from '../../src/core/safetensors/errors';
import { Checkpoint, CheckpointError } from '../../src/core/safetensors/checkpoint';
import { rawSafetensors } from '../helpers/safetensorsBytes';
import { tempDir } from '../helpers/paths';


const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, U16: 2, U32: 4, U64: 8, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1 };
const NAMES = ['model.layers.0.self_attn.q_proj.weight', 'model.layers.0.mlp.down_proj.weight_scale', 'lm_head.weight', 'ёжик.权重.🙂', 'a"quote', 'back\\slash', '__proto__', 'constructor', ''];

interface Base {
  header: Record<string, unknown>;
  data: Uint8Array;
}

function validBase(random: () => number): Base {
  const header: Record<string, unknown> = Object.create(null);
  if (random() < 0.5) header.__metadata__ = { format: 'pt', note: 'fuzz ✓' };
  const count = 1 + Math.floor(random() * 5);
  let offset = 0;
  const used = new Set<string>();
  for (let i = 0; i < count; i++) {
    let name = NAMES[Math.floor(random() * NAMES.length)]! + (random() < 0.5 ? `.${i}` : '');
    while (used.has(name)) name += '_';
    used.add(name);
    const dtypes = Object.keys(DTYPE_BYTES);
    const dtype = dtypes[Math.floor(random() * dtypes.length)]!;
    const shape = Array.from({ length: Math.floor(random() * 3) }, () => Math.floor(random() * 5));
    const bytes = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype]!;
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const data = new Uint8Array(offset);
  // NaN-filled or random data: the format does not check values, so either must parse.
  if (random() < 0.5) data.fill(0xff);
  else for (let i = 0; i < data.length; i++) data[i] = Math.floor(random() * 256);
  return { header, data };
}

type Mutation = (base: Base, random: () => number) => Uint8Array;

const pick = <T>(items: readonly T[], random: () => number): T => items[Math.floor(random() * items.length)]!;
const tensorEntries = (header: Record<string, unknown>) => Object.keys(header).filter((k) => k !== '__metadata__');

const MUTATIONS: Record<string, Mutation> = {
  none: (b) => rawSafetensors(JSON.stringify(b.header), b.data),
  truncate: (b, r) => {
    const bytes = rawSafetensors(JSON.stringify(b.header), b.data);
    return bytes.subarray(0, Math.floor(r() * bytes.length));
  },
  trailingBytes: (b, r) => rawSafetensors(JSON.stringify(b.header), new Uint8Array([...b.data, ...new Uint8Array(1 + Math.floor(r() * 9))])),
  absurdHeaderLength: (b, r) => {
    const lengths = [0n, 1n, 7n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n, BigInt(Math.floor(r() * 1e9))];
    return rawSafetensors(JSON.stringify(b.header), b.data, { declaredLength: pick(lengths, r) });
  },
  headerLengthOffByFew: (b, r) => {
    const json = JSON.stringify(b.header);
    const delta = BigInt(Math.floor(r() * 7) - 3);
    const length = BigInt(Buffer.byteLength(json)) + delta;
    return rawSafetensors(json, b.data, { declaredLength: length < 0n ? 0n : length });
  },
  notJson: (b, r) => {
    const junk = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 64) }, () => Math.floor(r() * 256)));
    return rawSafetensors(junk.toString('latin1'), b.data);
  },
  deepNesting: (b, r) => {
    const depth = 10 + Math.floor(r() * 50_000);
    return rawSafetensors(`{"__metadata__":${'['.repeat(depth)}${r() < 0.5 ? ']'.repeat(depth) : ''}}`, b.data);
  },
  flipHeaderByte: (b, r) => {
    const bytes = rawSafetensors(JSON.stringify(b.header), b.data);
    const json = Buffer.byteLength(JSON.stringify(b.header));
    const at = 8 + Math.floor(r() * json);
    bytes[at] = Math.floor(r() * 256);
    return bytes;
  },
  overlapOrGapOffsets: (b, r) => {
    const names = tensorEntries(b.header);
    const entry = b.header[pick(names, r)] as { data_offsets: number[] };
    const shift = pick([-3, -1, 1, 2, 8], r);
    entry.data_offsets = [entry.data_offsets[0]! + shift, entry.data_offsets[1]! + shift];
    return rawSafetensors(JSON.stringify(b.header), b.data);
  },
  unsortedOffsets: (b) => {
    // Key order reversed: legal (sorting by offsets is the reader's job).
    const reversed: Record<string, unknown> = Object.create(null);
    for (const key of Object.keys(b.header).reverse()) reversed[key] = b.header[key];
    return rawSafetensors(JSON.stringify(reversed), b.data);
  },
  outOfRangeOffsets: (b, r) => {
    const entry = b.header[pick(tensorEntries(b.header), r)] as { data_offsets: unknown[] };
    entry.data_offsets = pick([[0, 2 ** 60], [-1, 4], [5, 2], [0], [0, 1, 2], ['0', '4'], [0.5, 4], [0, 1e300]], r);
    return rawSafetensors(JSON.stringify(b.header), b.data);
  },
  wrongShape: (b, r) => {
    const entry = b.header[pick(tensorEntries(b.header), r)] as { shape: unknown };
    entry.shape = pick([[1, 2, 3, 4, 5], [-2], [2.5], ['4'], null, 7, [2 ** 31, 2 ** 31, 2 ** 31], [0]], r);
    return rawSafetensors(JSON.stringify(b.header), b.data);
  },
  unknownDtype: (b, r) => {
    const entry = b.header[pick(tensorEntries(b.header), r)] as { dtype: unknown };
    entry.dtype = pick(['F128', 'float32', 'f32', '', 7, null, 'BF16 ', 'Q4_K'], r);
    return rawSafetensors(JSON.stringify(b.header), b.data);
  },
  badMetadata: (b, r) => {
    b.header.__metadata__ = pick([{ a: 1 }, { a: null }, ['x'], 'str', { a: { b: 'c' } }, {}], r);
    return rawSafetensors(JSON.stringify(b.header), b.data);
  },
  duplicateKey: (b) => {
    const json = JSON.stringify(b.header);
    const names = tensorEntries(b.header);
    const first = JSON.stringify(names[0]);
    return rawSafetensors(`${json.slice(0, -1)},${first}:${JSON.stringify(b.header[names[0]!])}}`, b.data);
  },
  hugeIntegers: (b) => {
    const json = JSON.stringify(b.header).replace(/"shape":\[/, '"shape":[18446744073709551616,');
    return rawSafetensors(json, b.data);
  },
  whitespacePadding: (b, r) => rawSafetensors(`${' \n\t\r'.repeat(Math.floor(r() * 4))}${JSON.stringify(b.header)}${' '.repeat(Math.floor(r() * 9))}`, b.data),
};

/** Independent verdict from the §1.2 rules, using JSON.parse; undefined when JSON.parse cannot judge. */
function oracle(bytes: Uint8Array): 'ok' | 'error' | undefined {
  if (bytes.length < 8) return 'error';
  const n = new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true);
  if (n > 100_000_000n || 8n + n > BigInt(bytes.length)) return 'error';
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + Number(n)));
  } catch {
    return 'error';
  }
  if (/\d{16,}/.test(text)) return undefined; // beyond JSON.parse's exact integers
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    return 'error';
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return 'error';
  const entries: [number, number, number][] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'error';
      if (Object.values(value).some((v) => typeof v !== 'string')) return 'error';
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'error';
    if (typeof v.dtype !== 'string' || !(v.dtype in DTYPE_BYTES)) return 'error';
    const isInt = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;
    if (!Array.isArray(v.shape) || !v.shape.every(isInt)) return 'error';
    if (!Array.isArray(v.data_offsets) || v.data_offsets.length !== 2 || !v.data_offsets.every(isInt)) return 'error';
    const numel = (v.shape as number[]).reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(numel * DTYPE_BYTES[v.dtype]!)) return undefined;
    const [begin, end] = v.data_offsets as [number, number];
    entries.push([begin, end, numel * DTYPE_BYTES[v.dtype]!]);
  }
  // Duplicate keys collapse under JSON.parse; if the raw text has more keys than the object, let it be.
  if ((text.match(/"data_offsets"/g)?.length ?? 0) !== entries.length) return undefined;
  entries.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let previous = 0;
  for (const [begin, end, size] of entries) {
    if (begin !== previous || end < begin || end - begin !== size) return 'error';
    previous = end;
  }
  return 8 + Number(n) + previous === bytes.length ? 'ok' : 'error';
}

describe('fuzz: mutated safetensors files', function () {
  this.timeout(300_000);
  const CASES = 4000;
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('quantlens-fuzz-')));
  after(() => tmp.cleanup());

  it(`${CASES} mutated files each end in a typed error or a valid parse that matches an independent checker`, async () => {
    const names = Object.keys(MUTATIONS);
    const outcomes: Record<string, { ok: number; errors: number }> = {};
    const rssBefore = process.memoryUsage().rss;
    let compared = 0;
    for (let i = 0; i < CASES; i++) {
      const random = rng(i + 1);
      const mutation = names[i % names.length]!;
      const bytes = MUTATIONS[mutation]!(validBase(random), random);
      const path = join(tmp.path, `case-${i % 16}.safetensors`);
      writeFileSync(path, bytes);
      const started = Date.now();
      let verdict: 'ok' | 'error';
      try {
        const file = await SafetensorsFile.open(path);
        try {
          // A valid parse must be internally consistent and every tensor readable in chunks.
          let expected = 0;
          for (const tensor of file.tensors) {
            assert.equal(tensor.dataOffsets[0], expected, `case ${i} (${mutation}): tensors must tile`);
            expected = tensor.dataOffsets[1];
            assert.ok(tensor.fileOffset + tensor.byteLength <= bytes.length);
            let read = 0;
            for await (const chunk of file.chunks(tensor, { chunkBytes: 7 })) read += chunk.bytes.length;
            assert.equal(read, tensor.byteLength);
          }
          assert.equal(file.header.dataStart + expected, bytes.length);
        } finally {
          await file.close();
        }
        verdict = 'ok';
      } catch (error) {
        if (!(error instanceof SafetensorsError)) {
          assert.fail(`case ${i} (${mutation}) threw a non-typed error: ${String(error)}`);
        }
        assert.ok(error.message.includes(path), `case ${i}: the message names the file`);
        verdict = 'error';
      }
      assert.ok(Date.now() - started < 2000, `case ${i} (${mutation}) took ${Date.now() - started} ms`);
      const independent = oracle(bytes);
      if (independent !== undefined) {
        compared++;
        assert.equal(verdict, independent, `case ${i} (${mutation}): reader says ${verdict}, the independent checker says ${independent}`);
      }
      const o = (outcomes[mutation] ??= { ok: 0, errors: 0 });
      if (verdict === 'ok') o.ok++;
      else o.errors++;
    }
    const growth = process.memoryUsage().rss - rssBefore;
    assert.ok(growth < 256 * 1024 * 1024, `memory grew by ${(growth / 1e6).toFixed(0)} MB`);
    assert.ok(compared > CASES * 0.8, `only ${compared} cases could be compared with the independent checker`);
    // Every mutation family must have been exercised, and the destructive ones must produce errors.
    for (const name of ['truncate', 'notJson', 'deepNesting', 'absurdHeaderLength', 'unknownDtype', 'duplicateKey', 'trailingBytes']) {
      assert.ok(outcomes[name]!.errors > 0, `${name} never produced an error`);
    }
    for (const name of ['none', 'unsortedOffsets', 'whitespacePadding']) {
      assert.equal(outcomes[name]!.errors, 0, `${name} must always parse`);
    }
  });

  it('broken index.json files end in a typed error or a checkpoint with reported problems', async () => {
    const folder = join(tmp.path, 'ckpt');
    await fs.mkdir(folder, { recursive: true });
    const shard = rawSafetensors(JSON.stringify({ w: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }), new Uint8Array([1, 2]));
    writeFileSync(join(folder, 'model-00001-of-00001.safetensors'), shard);
    const indexes = [
      '',
      '{',
      '[]',
      'null',
      '{"weight_map": null}',
      '{"weight_map": []}',
      '{"weight_map": {"w": 5}}',
      '{"weight_map": {"w": "../../../etc/passwd"}}',
      '{"weight_map": {"w": "/abs/path.safetensors"}}',
      '{"weight_map": {"w": "model-00001-of-00001.safetensors", "w": "x"}}',
      '{"weight_map": {"w": "missing.safetensors"}}',
      '{"weight_map": {"w": "model-00001-of-00001.safetensors", "ghost": "model-00001-of-00001.safetensors"}, "metadata": {"total_size": "many"}}',
      '{"weight_map": {}, "metadata": {"total_size": 2}}',
      `{"weight_map": {${Array.from({ length: 12_000 }, (_, i) => `"t${i}": "s${i}.safetensors"`).join(',')}}}`,
      `{"weight_map": ${'['.repeat(10_000)}}`,
    ];
    for (const [i, text] of indexes.entries()) {
      writeFileSync(join(folder, 'model.safetensors.index.json'), text);
      try {
        const checkpoint = await Checkpoint.open(folder);
        await checkpoint.close();
      } catch (error) {
        assert.ok(error instanceof CheckpointError || error instanceof SafetensorsError, `index case ${i} threw ${String(error)}`);
      }
    }
  });
});
