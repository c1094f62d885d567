/**
 * Deterministic PRNG for tests (mulberry32): the same seed gives the same stream on every machine, so a
 * failing case can be replayed by its seed. Returns uniforms in [0, 1) (`openInterval`: in (0, 1)).
 */
export function rng(seed: number, options: { openInterval?: boolean } = {}): () => number {
  let s = seed >>> 0;
  const offset = options.openInterval ? 0.5 : 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + offset) / 4294967296;
  };
}
