import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, readSafetensorsHeader } from '../../src/core/safetensors/reader';
import { SafetensorsError } from '../../src/core/safetensors/errors';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { DType } from '../../src/core/dtypes/dtype';
import { tempDir, vectorsDir } from '../helpers/paths';

interface VectorCase {
  file: string;
  size: number;
  expect:
    | { ok: true; tensors: Record<string, { dtype: string; shape: number[]; values?: number[]; bytes_hex?: string }>; metadata?: Record<string, string> }
    | { ok: false; error: string };
  upstream_test: string;
}

const cases: VectorCase[] = JSON.parse(readFileSync(vectorsDir('safetensors', 'cases.json'), 'utf8'));

/** Values of a little-endian tensor, decoded here with DataView (not with the code under test). */
function decodeValues(dtype: string, bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  if (dtype === 'F32') for (let i = 0; i < bytes.length; i += 4) out.push(view.getFloat32(i, true));
  else if (dtype === 'I32') for (let i = 0; i < bytes.length; i += 4) out.push(view.getInt32(i, true));
  else throw new Error(`test decoder lacks ${dtype}`);
  return out;
}

describe('safetensors reference vectors (huggingface/safetensors tests)', () => {
  it('covers all 20 vector files', () => {
    assert.equal(cases.length, 20);
  });

  for (const vector of cases) {
    it(`${vector.file}: ${vector.expect.ok ? 'reads back exactly' : `fails with ${vector.expect.error}`} (${vector.upstream_test})`, async () => {
      const path = vectorsDir('safetensors', vector.file);
      const expect = vector.expect;
      if (!expect.ok) {
        await assert.rejects(readSafetensorsHeader(path), (error: unknown) => {
          assert.ok(error instanceof SafetensorsError, `expected a SafetensorsError, got ${String(error)}`);
          const kind = expect.error.split(' ')[0];
          assert.equal(error.referenceKind, kind, error.message);
          assert.ok(error.message.includes(vector.file), 'the message names the file');
          return true;
        });
        return;
      }
      const file = await SafetensorsFile.open(path);
      try {
        assert.deepEqual(new Set(file.tensors.map((t) => t.name)), new Set(Object.keys(expect.tensors)));
        assert.deepEqual({ ...(file.metadata ?? {}) }, expect.metadata ?? {});
        for (const [name, tensor] of Object.entries(expect.tensors)) {
          const info = file.tensor(name);
          assert.equal(info.dtype, tensor.dtype);
          assert.deepEqual(info.shape, tensor.shape);
          const bytes = await file.readTensorBytes(name);
          if (tensor.values) assert.deepEqual(decodeValues(tensor.dtype, bytes), tensor.values);
          if (tensor.bytes_hex !== undefined) assert.equal(Buffer.from(bytes).toString('hex'), tensor.bytes_hex);
        }
      } finally {
        await file.close();
      }
    });
  }

  it('writes the canonical serialisation byte for byte (test_serialization, test_empty, forced alignment)', async () => {
    const tmp = tempDir();
    try {
      const values = new Uint8Array(Float32Array.from([0, 1, 2, 3, 4, 5]).buffer);
      const check = async (vectorFile: string, tensors: { name: string; dtype: DType; shape: number[]; data: Uint8Array }[], metadata?: Record<string, string>) => {
        const out = join(tmp.path, vectorFile);
        await writeSafetensors(out, tensors, { metadata });
        assert.deepEqual(readFileSync(out), readFileSync(vectorsDir('safetensors', vectorFile)), vectorFile);
      };
      await check('ser_f32_attn0.safetensors', [{ name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], data: values }]);
      await check('ser_forced_alignment.safetensors', [{ name: 'attn0', dtype: 'F32', shape: [1, 1, 2, 3], data: values }]);
      await check('ser_empty.safetensors', []);
      await check('ser_empty_with_metadata.safetensors', [], { framework: 'pt' });
      await check('ser_f4_attn0.safetensors', [{ name: 'attn.0', dtype: 'F4', shape: [1, 2], data: new Uint8Array([0]) }]);
    } finally {
      tmp.cleanup();
    }
  });

  it('reports the reference error kinds in the reference order (offsets before total length)', async () => {
    // err_invalid_info has both a wrong byte span and a wrong total length: the span is reported.
    await assert.rejects(readSafetensorsHeader(vectorsDir('safetensors', 'err_invalid_info.safetensors')), /TensorInvalidInfo/);
  });
});
