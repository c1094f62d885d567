import type { Fix } from '../../src/core/recipe';

/** Applies a quick fix's edits to a text (last edit first, so earlier offsets stay valid). */
export function applyFix(text: string, fix: Fix): string {
  const lines = text.split('\n');
  const offset = (p: { line: number; character: number }) => lines.slice(0, p.line).reduce((n, l) => n + l.length + 1, 0) + p.character;
  let out = text;
  for (const e of [...fix.edits].sort((a, b) => offset(b.range.start) - offset(a.range.start))) out = out.slice(0, offset(e.range.start)) + e.newText + out.slice(offset(e.range.end));
  return out;
}
