import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Builds safetensors bytes by hand, independently of src/core's writer, so reader tests do not check the
 * code against itself.
 */
export function rawSafetensors(headerJson: string, data: Uint8Array = new Uint8Array(0), options: { declaredLength?: bigint } = {}): Uint8Array {
  const header = Buffer.from(headerJson, 'utf8');
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, options.declaredLength ?? BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** A tensor as the test lays it out: its bytes as stored. */
export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** The bytes of a typed array, without copying. */
export const bytesOf = (a: { buffer: ArrayBufferLike; byteOffset: number; byteLength: number }) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A checkpoint folder: one model.safetensors written by hand, plus a Llama config.json carrying `quantizationConfig` when given. */
export function writeCheckpoint(dir: string, tensors: RawTensor[], quantizationConfig?: unknown): string {
  mkdirSync(dir, { recursive: true });
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  const data = new Uint8Array(offset);
  offset = 0;
  for (const t of tensors) {
    data.set(t.bytes, offset);
    offset += t.bytes.length;
  }
  writeFileSync(join(dir, 'model.safetensors'), rawSafetensors(JSON.stringify(header), data));
  if (quantizationConfig) writeFileSync(join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', quantization_config: quantizationConfig }));
  return dir;
}
