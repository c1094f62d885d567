/**
 * The safetensors dtype vocabulary: exact spellings, element widths, and the writer's "alignment order".
 * Source: docs/formats.md §1.3 (the Rust reference's `enum Dtype` and `bitsize()`).
 */

/** Every dtype string the reference reader accepts, in its enum (alignment) order. */
export const DTYPES = [
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'F8_E4M3FNUZ',
  'F8_E5M2FNUZ',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
] as const;

export type DType = (typeof DTYPES)[number];

export interface DTypeInfo {
  /** Width of one element in bits (4 and 6 for the sub-byte float formats). */
  readonly bits: number;
  readonly kind: 'bool' | 'int' | 'uint' | 'float' | 'complex';
  /** Position in the reference enum; the reference writer lays out higher positions first. */
  readonly order: number;
}

const BITS: Record<DType, number> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

function kindOf(dtype: DType): DTypeInfo['kind'] {
  if (dtype === 'BOOL') return 'bool';
  if (dtype === 'C64') return 'complex';
  if (dtype.startsWith('I')) return 'int';
  if (dtype.startsWith('U')) return 'uint';
  return 'float';
}

export const DTYPE_INFO: Readonly<Record<DType, DTypeInfo>> = Object.fromEntries(
  DTYPES.map((dtype, order) => [dtype, { bits: BITS[dtype], kind: kindOf(dtype), order }]),
) as Record<DType, DTypeInfo>;

const DTYPE_SET: ReadonlySet<string> = new Set(DTYPES);

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && DTYPE_SET.has(value);
}

/** Bytes per element for byte-aligned dtypes; undefined for the sub-byte formats (F4, F6_*). */
export function bytesPerElement(dtype: DType): number | undefined {
  const bits = DTYPE_INFO[dtype].bits;
  return bits % 8 === 0 ? bits / 8 : undefined;
}
