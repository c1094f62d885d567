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
