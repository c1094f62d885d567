/**
 * Next-token selection and distribution metrics for generation and the side-by-side comparison of an
 * original and a quantized model.
 *
 * Everything computes in float64 whatever the logits' type (onnxruntime returns Float32Array). Order of
 * operations follows transformers' sampling: temperature, then top-k, then top-p on the distribution that
 * top-k left (renormalized), then a draw from what remains. There is no repetition penalty: the comparison
 * samples both models under identical, stateless rules, so a difference in text is a difference in logits.
 * Ties are always broken towards the lower token id, so results do not depend on sort stability.
 */

/** Numerically stable log-softmax of logits / temperature: z_i − max z − log Σ_j exp(z_j − max z). */
export function logSoftmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  checkTemperature(temperature, false);
  const n = logits.length;
  if (n === 0) throw new RangeError('logSoftmax of an empty logits vector');
  const inverse = 1 / temperature;
  const max = checkedMax(logits);
  const out = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const shifted = (logits[i]! - max) * inverse;
    out[i] = shifted;
    sum += Math.exp(shifted);
  }
  const logSum = Math.log(sum);
  for (let i = 0; i < n; i++) out[i] = out[i]! - logSum;
  return out;
}

/** Softmax of logits / temperature (temperature > 0), in float64: one exp per token. */
export function softmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  checkTemperature(temperature, false);
  const n = logits.length;
  if (n === 0) throw new RangeError('softmax of an empty logits vector');
  const inverse = 1 / temperature;
  const max = checkedMax(logits);
  const out = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp((logits[i]! - max) * inverse);
    out[i] = e;
    sum += e;
  }
  const scale = 1 / sum;
  for (let i = 0; i < n; i++) out[i] = out[i]! * scale;
  return out;
}

/** Index of the largest logit; ties go to the lowest id. NaN logits are an error. */
export function argmax(logits: ArrayLike<number>): number {
  if (logits.length === 0) throw new RangeError('argmax of an empty logits vector');
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (Number.isNaN(v)) throw new RangeError(`logit ${i} is NaN`);
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/** Candidate ids in selection order: probability descending, ties by id ascending. */
function byProbabilityDescending(probs: ArrayLike<number>): (a: number, b: number) => number {
  return (a, b) => probs[b]! - probs[a]! || a - b;
}

/**
 * The k most probable token ids, most probable first (ties: lower id first), from probabilities or from
 * logits (softmax keeps their order). k ≥ the vocabulary gives every id. O(V log k) with a bounded heap,
 * so k = 50 over a 128k vocabulary costs one pass.
 */
export function topKFilter(probs: ArrayLike<number>, k: number): Int32Array {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`top-k must be a positive integer, got ${k}`);
  const n = probs.length;
  const before = byProbabilityDescending(probs);
  if (k >= n) return Int32Array.from({ length: n }, (_, i) => i).sort(before);
  // Min-heap (by selection order) of the best k seen: its root is the worst kept candidate.
  const heap = new Int32Array(k);
  let size = 0;
  const worse = (a: number, b: number) => before(a, b) > 0;
  const siftDown = (start: number) => {
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && worse(heap[l]!, heap[m]!)) m = l;
      if (r < size && worse(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      const t = heap[i]!;
      heap[i] = heap[m]!;
      heap[m] = t;
      i = m;
    }
  };
  for (let id = 0; id < n; id++) {
    if (size < k) {
      heap[size] = id;
      let i = size++;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (!worse(heap[i]!, heap[parent]!)) break;
        const t = heap[i]!;
        heap[i] = heap[parent]!;
        heap[parent] = t;
        i = parent;
      }
    } else if (before(id, heap[0]!) < 0) {
      heap[0] = id;
      siftDown(0);
    }
  }
  return heap.sort(before);
}

// The IEEE-754 exponent field of a double, read through a shared buffer: floor(log2 x) for normal x,
// −1023 for every subnormal, 1024 for Infinity — monotone in x, which is all the buckets need, and far
// cheaper than Math.log2 over a 128k vocabulary.
const MIN_EXPONENT = -1023;
const MAX_EXPONENT = 1024;
const exponentScratch = new Float64Array(1);
const exponentWords = new Uint32Array(exponentScratch.buffer);
const HIGH_WORD = new Uint8Array(Float64Array.of(2).buffer)[7] === 0x40 ? 1 : 0; // little-endian: the high word is second
function binaryExponent(x: number): number {
  exponentScratch[0] = x;
  return ((exponentWords[HIGH_WORD]! >>> 20) & 0x7ff) - 1023;
}

/**
 * Nucleus filtering: the smallest set of most probable tokens whose probabilities add up to at least
 * `topP` of the total (of `among`'s total when given: top-p after top-k works on the renormalized top-k
 * distribution, as transformers does). Returned most probable first; always at least one token.
 *
 * Sorting a 128k vocabulary for every token is avoidable: tokens are bucketed by binary exponent of their
 * probability, buckets are taken from the top until they hold ≥ topP of the mass, and only the tokens of
 * those buckets are sorted. Every token left out is less probable than every token sorted, so the sorted
 * prefix is exactly the prefix of the full descending order.
 */
export function topPFilter(probs: ArrayLike<number>, topP: number, among?: ArrayLike<number>): Int32Array {
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`top-p must be in (0, 1], got ${topP}`);
  const before = byProbabilityDescending(probs);
  const ids = among ?? Int32Array.from({ length: probs.length }, (_, i) => i);
  let total = 0;
  for (let j = 0; j < ids.length; j++) total += probs[ids[j]!]!;
  if (!(total > 0)) throw new RangeError('the distribution has no probability mass');
  const target = topP * total;

  // Buckets by binary exponent (index = exponent − MIN_EXPONENT); zero probabilities are never kept.
  const bucketMass = new Float64Array(MAX_EXPONENT - MIN_EXPONENT + 1);
  const bucketOf = (p: number) => (p > 0 ? binaryExponent(p) : MIN_EXPONENT - 1);
  let top = MIN_EXPONENT;
  for (let j = 0; j < ids.length; j++) {
    const p = probs[ids[j]!]!;
    const b = bucketOf(p);
    if (b < MIN_EXPONENT) continue;
    bucketMass[b - MIN_EXPONENT] = bucketMass[b - MIN_EXPONENT]! + p;
    if (b > top) top = b;
  }
  let threshold = top;
  let mass = bucketMass[top - MIN_EXPONENT]!;
  while (mass < target && threshold > MIN_EXPONENT) {
    threshold--;
    mass += bucketMass[threshold - MIN_EXPONENT]!;
  }
  const kept: number[] = [];
  for (let j = 0; j < ids.length; j++) if (bucketOf(probs[ids[j]!]!) >= threshold) kept.push(ids[j]!);
  kept.sort(before);
  let cumulative = 0;
  for (let count = 1; count <= kept.length; count++) {
    cumulative += probs[kept[count - 1]!]!;
    if (cumulative >= target) return Int32Array.from(kept.slice(0, count));
  }
  // The buckets' sum reached the target but the sorted sum, rounded differently, fell a few ulps short
  // (or topP = 1): continue into the lower buckets, sorted, until it does; at the end every token with
  // probability is kept.
  const rest: number[] = [];
  for (let j = 0; j < ids.length; j++) {
    const b = bucketOf(probs[ids[j]!]!);
    if (b >= MIN_EXPONENT && b < threshold) rest.push(ids[j]!);
  }
  rest.sort(before);
  for (const id of rest) {
    kept.push(id);
    cumulative += probs[id]!;
    if (cumulative >= target) break;
  }
  return Int32Array.from(kept.length > 0 ? kept : [ids[0]!]);
}

export interface SamplingSettings {
  /** Softmax temperature; 0 means greedy (argmax). */
  temperature: number;
  /** Keep only the k most probable tokens (0 or undefined: no limit). */
  topK?: number;
  /** Nucleus: keep the most probable tokens holding this much probability (1 or undefined: no limit). */
  topP?: number;
}

export const GREEDY: SamplingSettings = { temperature: 0 };

/**
 * Sampling settings from a generation_config.json object, as transformers reads it: do_sample false (the
 * default) means greedy; with do_sample, temperature / top_k / top_p default to 1.0 / 50 / 1.0.
 */
export function samplingFromGenerationConfig(config: Readonly<Record<string, unknown>>): SamplingSettings {
  if (config['do_sample'] !== true) return GREEDY;
  const number = (key: string, fallback: number) => (typeof config[key] === 'number' ? (config[key] as number) : fallback);
  return { temperature: number('temperature', 1), topK: number('top_k', 50), topP: number('top_p', 1) };
}

/** The tokens a draw can pick and their renormalized probabilities, most probable first. */
export interface NextTokenDistribution {
  ids: Int32Array;
  probs: Float64Array;
}

/** The distribution sampleNext draws from after temperature, top-k and top-p. Greedy: one token, p = 1. */
export function nextTokenDistribution(logits: ArrayLike<number>, settings: SamplingSettings): NextTokenDistribution {
  checkTemperature(settings.temperature, true);
  const topK = settings.topK ?? 0;
  const topP = settings.topP ?? 1;
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`top-k must be a non-negative integer, got ${topK}`);
  if (settings.temperature === 0 || topK === 1) return { ids: Int32Array.of(argmax(logits)), probs: Float64Array.of(1) };
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`top-p must be in (0, 1], got ${topP}`);
  if (topK > 0 && topK < logits.length) {
    // Top-k on the logits themselves (same order as the probabilities), then the softmax over the k
    // survivors only: that is the renormalized top-k distribution, without an exp per vocabulary entry.
    const top = checkedMax(logits);
    const candidates = topKFilter(logits, topK);
    const inverse = 1 / settings.temperature;
    const weights = new Float64Array(candidates.length);
    let total = 0;
    for (let j = 0; j < candidates.length; j++) {
      weights[j] = Math.exp((logits[candidates[j]!]! - top) * inverse);
      total += weights[j]!;
    }
    // Candidates are already most probable first: the nucleus is a prefix.
    let count = candidates.length;
    if (topP < 1) {
      let cumulative = 0;
      for (let j = 0; j < candidates.length; j++) {
        cumulative += weights[j]!;
        if (cumulative >= topP * total) {
          count = j + 1;
          break;
        }
      }
    }
    let kept = 0;
    for (let j = 0; j < count; j++) kept += weights[j]!;
    const probs = new Float64Array(count);
    for (let j = 0; j < count; j++) probs[j] = weights[j]! / kept;
    return { ids: candidates.slice(0, count), probs };
  }
  const probs = softmax(logits, settings.temperature);
  if (topP === 1) return { ids: Int32Array.from({ length: probs.length }, (_, i) => i), probs };
  const ids = topPFilter(probs, topP);
  const kept = new Float64Array(ids.length);
  let total = 0;
  for (let j = 0; j < ids.length; j++) total += probs[ids[j]!]!;
  for (let j = 0; j < ids.length; j++) kept[j] = probs[ids[j]!]! / total;
  return { ids, probs: kept };
}

/**
 * The next token under `settings`, drawing one uniform number from `rng` unless the choice is greedy. The
 * same logits, settings and rng state always give the same token.
 */
export function sampleNext(logits: ArrayLike<number>, settings: SamplingSettings, rng: SeededRandom): number {
  const { ids, probs } = nextTokenDistribution(logits, settings);
  if (ids.length === 1) return ids[0]!;
  const u = rng.nextFloat();
  let cumulative = 0;
  for (let j = 0; j < ids.length; j++) {
    cumulative += probs[j]!;
    if (u < cumulative) return ids[j]!;
  }
  // u is just below 1 and the renormalized sum rounded below it: the last candidate.
  return ids[ids.length - 1]!;
}

/** The n most probable tokens with their probabilities and log-probabilities (for display). */
export function topTokens(logits: ArrayLike<number>, n: number, temperature = 1): { id: number; prob: number; logprob: number }[] {
  const logprobs = logSoftmax(logits, temperature);
  const probs = logprobs.map(Math.exp);
  return Array.from(topKFilter(probs, Math.min(n, probs.length)), (id) => ({ id, prob: probs[id]!, logprob: logprobs[id]! }));
}

/**
 * KL(P‖Q) in nats between the next-token distributions softmax(logitsP) and softmax(logitsQ):
 * Σ_i p_i (log p_i − log q_i). For the comparison, P is the original model and Q the quantized one.
 * Tokens with p_i = 0 contribute nothing; p_i > 0 where q_i = 0 gives Infinity.
 */
export function klDivergence(logitsP: ArrayLike<number>, logitsQ: ArrayLike<number>, temperature = 1): number {
  if (logitsP.length !== logitsQ.length) throw new RangeError(`KL divergence of distributions over ${logitsP.length} and ${logitsQ.length} tokens`);
  const lp = logSoftmax(logitsP, temperature);
  const lq = logSoftmax(logitsQ, temperature);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const p = Math.exp(lp[i]!);
    if (p === 0) continue;
    kl += p * (lp[i]! - lq[i]!);
  }
  // Rounding can leave a tiny negative value for identical distributions; KL is never negative.
  return Math.max(0, kl);
}

/**
 * Perplexity over a stream of tokens: exp(mean negative log-likelihood). Sums are compensated (Neumaier),
 * so a million tokens add up as exactly as a float64 allows.
 */
export class PerplexityAccumulator {
  private sum = 0;
  private compensation = 0;
  private count = 0;

  /** Adds one token's negative log-likelihood (nats). */
  addNll(nll: number): void {
    if (!(nll >= 0)) throw new RangeError(`a negative log-likelihood must be ≥ 0, got ${nll}`);
    const t = this.sum + nll;
    if (Math.abs(this.sum) >= Math.abs(nll)) this.compensation += this.sum - t + nll;
    else this.compensation += nll - t + this.sum;
    this.sum = t;
    this.count++;
  }

  /** Adds the token `target` under next-token logits; returns its negative log-likelihood. */
  addLogits(logits: ArrayLike<number>, target: number): number {
    if (!Number.isInteger(target) || target < 0 || target >= logits.length) throw new RangeError(`target token ${target} is outside the ${logits.length} logits`);
    const nll = -logSoftmax(logits)[target]!;
    this.addNll(nll);
    return nll;
  }

  /**
   * Adds a sequence scored in one forward pass: `logits` is [positions × vocab] row-major, row t predicting
   * `tokens[t + 1]`, so positions − 1 tokens are scored (the first token has no prediction).
   */
  addSequence(logits: ArrayLike<number>, vocab: number, tokens: ArrayLike<number>): void {
    const positions = tokens.length;
    if (logits.length !== positions * vocab) throw new RangeError(`logits hold ${logits.length} values; ${positions} positions × ${vocab} tokens need ${positions * vocab}`);
    const row = new Float64Array(vocab);
    for (let t = 0; t + 1 < positions; t++) {
      for (let v = 0; v < vocab; v++) row[v] = logits[t * vocab + v]!;
      this.addLogits(row, tokens[t + 1]!);
    }
  }

  /** Adds another accumulator's tokens (e.g. from another worker). */
  merge(other: PerplexityAccumulator): void {
    this.addSum(other.sum + other.compensation, other.count);
  }

  private addSum(value: number, count: number): void {
    const t = this.sum + value;
    if (Math.abs(this.sum) >= Math.abs(value)) this.compensation += this.sum - t + value;
    else this.compensation += value - t + this.sum;
    this.sum = t;
    this.count += count;
  }

  get tokens(): number {
    return this.count;
  }

  /** Mean negative log-likelihood in nats (NaN before any token). */
  get meanNll(): number {
    return this.count === 0 ? Number.NaN : (this.sum + this.compensation) / this.count;
  }

  get perplexity(): number {
    return Math.exp(this.meanNll);
  }
}

/**
 * Seeded PRNG: xoshiro128** (Blackman & Vigna, 2018) with its 128-bit state filled from the seed by
 * SplitMix32 (the 32-bit SplitMix finalizer over a Weyl sequence with increment 0x9e3779b9). Period 2^128 − 1,
 * identical on every platform, so a sampled generation is reproducible from its seed. Floats take 53 bits
 * from two outputs (upper 27 + upper 26 bits), uniform on [0, 1).
 */
export class SeededRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(readonly seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`a seed must be an integer, got ${seed}`);
    // Fold a seed up to 2^53 into the SplitMix state: low 32 bits, then the high bits mixed in.
    let x = (seed >>> 0) ^ Math.imul(Math.floor(seed / 4294967296) >>> 0, 0x85ebca6b);
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s3 = 1; // the all-zero state is a fixed point
  }

  /** The next 32-bit output as an unsigned integer. */
  nextUint32(): number {
    const s1 = this.s1;
    const x = Math.imul(s1, 5);
    const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  /** Uniform on [0, 1) with 53 random bits. */
  nextFloat(): number {
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 67108864 + low) / 9007199254740992;
  }

  /** Uniform integer in [0, n), without modulo bias (rejection sampling). */
  nextBelow(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 4294967296) throw new RangeError(`nextBelow needs an integer in [1, 2^32], got ${n}`);
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** Shuffles `items` in place (Fisher–Yates, from the end) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextBelow(i + 1);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }
}

/** The largest logit, after checking there is one to choose: no NaN, no +Infinity, not all −Infinity. */
function checkedMax(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const z = logits[i]!;
    if (Number.isNaN(z)) throw new RangeError(`logit ${i} is NaN`);
    if (z > max) max = z;
  }
  if (max === Infinity) throw new RangeError('logits contain +Infinity');
  if (max === -Infinity) throw new RangeError('every logit is -Infinity: there is no token to choose');
  return max;
}

function checkTemperature(temperature: number, allowZero: boolean): void {
  if (!(Number.isFinite(temperature) && (temperature > 0 || (allowZero && temperature === 0)))) {
    throw new RangeError(`temperature must be ${allowZero ? '≥ 0' : '> 0'} and finite, got ${temperature}`);
  }
}
