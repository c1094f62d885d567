/** "Did you mean …?": the closest candidate to a misspelt key or value. */

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions), three rolling rows. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (Math.abs(a.length - b.length) > 8) return Math.max(a.length, b.length);
  const cols = b.length + 1;
  let prev2 = new Uint16Array(cols);
  let prev = Uint16Array.from({ length: cols }, (_, j) => j);
  let row = new Uint16Array(cols);
  for (let i = 1; i <= a.length; i++) {
    row[0] = i;
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prev2[j - 2]! + 1);
      row[j] = v;
    }
    [prev2, prev, row] = [prev, row, prev2];
  }
  return prev[cols - 1]!;
}

const normalise = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');

/**
 * The candidate closest to `word`, if close enough to be a plausible typo: equal up to case and
 * separators (numBits → num_bits), or within an edit distance that grows with the length.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  if (word.length === 0) return undefined;
  const n = normalise(word);
  let best: { candidate: string; score: number } | undefined;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const c = normalise(candidate);
    let score: number;
    if (c === n) score = 0;
    else {
      const distance = editDistance(n, c);
      const allowed = n.length <= 3 ? 0 : n.length <= 5 ? 1 : n.length <= 10 ? 2 : 3;
      if (distance > allowed) {
        // A prefix typed so far (strat → strategy) is not a typo; a word inside a longer key is one.
        if (c.includes(n) && n.length >= 5) score = 4 + c.length - n.length;
        else if (n.startsWith(c) && c.length >= 3) score = 4 + n.length - c.length; // integer → int
        else continue;
      } else score = distance;
    }
    if (!best || score < best.score) best = { candidate, score };
  }
  return best?.candidate;
}
