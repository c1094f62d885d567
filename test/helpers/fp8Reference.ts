/**
 * FP8 E4M3 (e4m3fn) decoded from its bit layout (bias 7, no infinities, S.1111.111 is NaN; docs/formats.md §2),
 * independently of src/core/dtypes, for tests that check the product's FP8 against the definition.
 */
export function e4m3Value(code: number): number {
  const sign = code & 0x80 ? -1 : 1;
  const e = (code >> 3) & 0xf;
  const m = code & 7;
  if (e === 15 && m === 7) return NaN;
  return e === 0 ? sign * 2 ** -6 * (m / 8) : sign * 2 ** (e - 7) * (1 + m / 8);
}
