import assert from 'node:assert/strict';
import {
  GREEDY,
  PerplexityAccumulator,
  SeededRandom,
  argmax,
  klDivergence,
  logSoftmax,
  nextTokenDistribution,
  sampleNext,
  samplingFromGenerationConfig,
  softmax,
  topKFilter,
  topPFilter,
  topTokens,
} from '../../src/core/runtime/sampling';
import { rng } from '../helpers/random';

const close = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(a), Math.abs(b)), `${what}: ${a} vs ${b}`);

/** Logits shaped like a language model's: a few strong candidates over a long Gaussian tail. */
function modelLikeLogits(seed: number, vocab: number, options: { ties?: boolean } = {}): Float32Array {
  const u = rng(seed, { openInterval: true });
  const logits = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) logits[i] = 2 * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  for (let j = 0; j < 5; j++) logits[Math.floor(u() * vocab)] = 8 + 4 * u();
  if (options.ties) for (let i = 0; i < vocab; i += 7) logits[i] = Math.round(logits[i]!);
  return logits;
}

/** Plain float64 softmax written from the definition (shifted by the max only to stay finite). */
function referenceSoftmax(logits: ArrayLike<number>, temperature = 1): number[] {
  const z = Array.from(logits, (x) => x / temperature);
  const max = Math.max(...z);
  const e = z.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

/** Every id sorted by probability (descending, ties by id), then the shortest prefix reaching p of the mass. */
function referenceTopP(probs: ArrayLike<number>, p: number, among?: number[]): number[] {
  const ids = among ?? Array.from({ length: probs.length }, (_, i) => i);
  const sorted = [...ids].sort((a, b) => probs[b]! - probs[a]! || a - b);
  const total = ids.reduce((s, i) => s + probs[i]!, 0);
  const out: number[] = [];
  let cumulative = 0;
  for (const id of sorted) {
    out.push(id);
    cumulative += probs[id]!;
    if (cumulative >= p * total) break;
  }
  return out;
}

/** xoshiro128** and its SplitMix32 seeding in BigInt arithmetic, from the algorithms' definitions. */
function referenceXoshiro(seed: number): () => number {
  const M = 0xffffffffn;
  const mul = (a: bigint, b: bigint) => (a * b) & M;
  const rotl = (x: bigint, k: bigint) => ((x << k) | (x >> (32n - k))) & M;
  let x = (BigInt(seed) & M) ^ mul(BigInt(Math.floor(seed / 2 ** 32)) & M, 0x85ebca6bn);
  const splitmix = () => {
    x = (x + 0x9e3779b9n) & M;
    let z = x;
    z = mul(z ^ (z >> 16n), 0x85ebca6bn);
    z = mul(z ^ (z >> 13n), 0xc2b2ae35n);
    return z ^ (z >> 16n);
  };
  const s = [splitmix(), splitmix(), splitmix(), splitmix()];
  return () => {
    const result = mul(rotl(mul(s[1]!, 5n), 7n), 9n);
    const t = (s[1]! << 9n) & M;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11n);
    return Number(result);
  };
}

describe('runtime sampling: softmax, log-softmax, argmax', () => {
  it('match the float64 formulas, with and without temperature', () => {
    const logits = modelLikeLogits(1, 1000);
    for (const t of [1, 0.6, 2.5]) {
      const ref = referenceSoftmax(logits, t);
      const probs = softmax(logits, t);
      const logprobs = logSoftmax(logits, t);
      for (let i = 0; i < logits.length; i++) {
        close(probs[i]!, ref[i]!, 1e-13, `p[${i}] T=${t}`);
        close(logprobs[i]!, Math.log(ref[i]!), 1e-12, `log p[${i}] T=${t}`);
      }
    }
  });

  it('stay finite for huge logits (the naive formula overflows)', () => {
    // softmax([1000, 1000 + ln 3, -inf]) = [1/4, 3/4, 0] exactly in real arithmetic.
    const lp = logSoftmax([1000, 1000 + Math.log(3), -Infinity]);
    close(lp[0]!, Math.log(0.25), 1e-12, 'log 1/4');
    close(lp[1]!, Math.log(0.75), 1e-12, 'log 3/4');
    assert.equal(lp[2], -Infinity);
    assert.ok(!Number.isFinite(Math.exp(1000)), 'the naive formula would overflow');
    assert.throws(() => logSoftmax([1, Number.NaN]), /logit 1 is NaN/);
    assert.throws(() => logSoftmax([-Infinity, -Infinity]), /every logit is -Infinity/);
    assert.throws(() => softmax([1, 2], 0), /temperature/);
  });

  it('argmax breaks ties towards the lowest id', () => {
    assert.equal(argmax([1, 5, 3, 5, 5]), 1);
    assert.equal(argmax([-Infinity, -Infinity, -1]), 2);
    assert.equal(argmax(new Float32Array([0, 0, 0])), 0);
  });
});

describe('runtime sampling: top-k and top-p', () => {
  it('top-k keeps the k most probable, ties by id, like a full sort', () => {
    for (const [seed, ties] of [[2, false], [3, true]] as const) {
      const probs = softmax(modelLikeLogits(seed, 5000, { ties }));
      const sorted = Array.from({ length: probs.length }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b);
      for (const k of [1, 2, 5, 50, 4999, 5000, 6000]) assert.deepEqual(Array.from(topKFilter(probs, k)), sorted.slice(0, k), `k=${k}`);
    }
    assert.deepEqual(Array.from(topKFilter([0.25, 0.25, 0.25, 0.25], 2)), [0, 1]);
    assert.throws(() => topKFilter([1], 0), /top-k/);
  });

  it('top-p keeps the smallest most-probable set holding ≥ p of the mass, like a full sort', () => {
    for (const seed of [4, 5, 6]) {
      for (const vocab of [10, 3000, 128256]) {
        const probs = softmax(modelLikeLogits(seed, vocab, { ties: seed === 6 }));
        for (const p of [0.05, 0.5, 0.9, 0.95, 0.999, 1]) {
          const kept = Array.from(topPFilter(probs, p));
          assert.deepEqual(kept, referenceTopP(probs, p), `seed ${seed} vocab ${vocab} p=${p}`);
          // The defining property: the kept mass reaches p, and without its last token it would not.
          const mass = kept.reduce((s, id) => s + probs[id]!, 0);
          assert.ok(mass >= p * (1 - 1e-12), `mass ${mass} < ${p}`);
          if (kept.length > 1) assert.ok(mass - probs[kept.at(-1)!]! < p, 'not minimal');
        }
      }
    }
  });

  it('top-p: a hand-checked case, flat and spread distributions', () => {
    // [0.5, 0.3, 0.15, 0.05]: p=0.8 → {0, 1}; p=0.81 → {0, 1, 2}; p=0.5 → {0}.
    const probs = [0.15, 0.5, 0.05, 0.3];
    assert.deepEqual(Array.from(topPFilter(probs, 0.8)), [1, 3]);
    assert.deepEqual(Array.from(topPFilter(probs, 0.81)), [1, 3, 0]);
    assert.deepEqual(Array.from(topPFilter(probs, 0.5)), [1]);
    const flat = new Float64Array(1000).fill(1 / 1000);
    assert.equal(topPFilter(flat, 0.5).length, referenceTopP(flat, 0.5).length);
    // Probabilities spread over a thousand binary orders of magnitude (tiny ones far below the others).
    const spread = Array.from({ length: 60 }, (_, i) => 2 ** (-17 * i));
    for (const p of [0.9, 0.999999, 1]) assert.deepEqual(Array.from(topPFilter(spread, p)), referenceTopP(spread, p), `spread p=${p}`);
  });

  it('top-k then top-p on the renormalized top-k distribution, as transformers orders them', () => {
    const logits = modelLikeLogits(7, 2000);
    const probs = referenceSoftmax(logits, 0.7);
    const topk = Array.from({ length: probs.length }, (_, i) => i)
      .sort((a, b) => probs[b]! - probs[a]! || a - b)
      .slice(0, 40);
    const expected = referenceTopP(probs, 0.9, topk);
    const dist = nextTokenDistribution(logits, { temperature: 0.7, topK: 40, topP: 0.9 });
    assert.deepEqual(Array.from(dist.ids), expected);
    const total = expected.reduce((s, id) => s + probs[id]!, 0);
    expected.forEach((id, j) => close(dist.probs[j]!, probs[id]! / total, 1e-12, `renormalized p of ${id}`));
  });
});

describe('runtime sampling: seeded PRNG and sampleNext', () => {
  it('xoshiro128** with SplitMix32 seeding equals a BigInt implementation of the definitions', () => {
    for (const seed of [0, 1, 42, 0xffffffff, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
      const ours = new SeededRandom(seed);
      const ref = referenceXoshiro(seed);
      for (let i = 0; i < 2000; i++) assert.equal(ours.nextUint32(), ref(), `seed ${seed} output ${i}`);
    }
  });

  it('floats are 53-bit uniform on [0, 1): a chi-square test over 64 bins', () => {
    const r = new SeededRandom(7);
    const bins = new Array<number>(64).fill(0);
    const n = 640_000;
    let min = 1;
    for (let i = 0; i < n; i++) {
      const x = r.nextFloat();
      assert.ok(x >= 0 && x < 1);
      min = Math.min(min, x);
      bins[Math.floor(x * 64)]!++;
    }
    const expected = n / 64;
    const chi2 = bins.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    assert.ok(chi2 < 110, `chi-square ${chi2} over 63 degrees of freedom (p < 0.0002 above 110)`);
    const ref = referenceXoshiro(9);
    const again = new SeededRandom(9);
    assert.equal(again.nextFloat(), ((ref() >>> 5) * 2 ** 26 + (ref() >>> 6)) / 2 ** 53);
  });

  it('nextBelow is unbiased and shuffle is a reproducible permutation', () => {
    const r = new SeededRandom(11);
    const counts = new Array<number>(3).fill(0);
    for (let i = 0; i < 30_000; i++) counts[r.nextBelow(3)]!++;
    for (const c of counts) assert.ok(Math.abs(c - 10_000) < 400, `counts ${counts.join(', ')}`);
    const a = new SeededRandom(5).shuffle(Array.from({ length: 100 }, (_, i) => i));
    const b = new SeededRandom(5).shuffle(Array.from({ length: 100 }, (_, i) => i));
    assert.deepEqual(a, b);
    assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
    assert.notDeepEqual(a, new SeededRandom(6).shuffle(Array.from({ length: 100 }, (_, i) => i)));
  });

  it('the same seed gives the same tokens; another seed other tokens', () => {
    const settings = { temperature: 1, topK: 50, topP: 0.95 };
    const steps = Array.from({ length: 40 }, (_, i) => modelLikeLogits(100 + i, 4000));
    const run = (seed: number) => {
      const r = new SeededRandom(seed);
      return steps.map((logits) => sampleNext(logits, settings, r));
    };
    assert.deepEqual(run(1234), run(1234));
    assert.notDeepEqual(run(1234), run(1235));
  });

  it('draws follow the filtered distribution (frequencies within 4 standard errors)', () => {
    const logits = [2, 1, 0.5, 0, -1, -3];
    const settings = { temperature: 0.8, topP: 0.9 };
    const probs = referenceSoftmax(logits, 0.8);
    const kept = referenceTopP(probs, 0.9);
    const total = kept.reduce((s, id) => s + probs[id]!, 0);
    const r = new SeededRandom(3);
    const n = 50_000;
    const counts = new Array<number>(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[sampleNext(logits, settings, r)]!++;
    for (let id = 0; id < logits.length; id++) {
      const p = kept.includes(id) ? probs[id]! / total : 0;
      const se = Math.sqrt((p * (1 - p)) / n);
      assert.ok(Math.abs(counts[id]! / n - p) <= 4 * se + 1e-12, `token ${id}: ${counts[id]! / n} vs ${p}`);
    }
  });

  it('temperature → 0 equals greedy; temperature 0 is greedy and draws nothing', () => {
    for (let seed = 0; seed < 20; seed++) {
      const logits = modelLikeLogits(200 + seed, 3000);
      const greedy = argmax(logits);
      const r = new SeededRandom(seed);
      assert.equal(sampleNext(logits, { temperature: 1e-4 }, r), greedy);
      assert.equal(sampleNext(logits, { temperature: 1e-4, topP: 0.5, topK: 10 }, r), greedy);
      const before = new SeededRandom(seed);
      const after = new SeededRandom(seed);
      assert.equal(sampleNext(logits, GREEDY, after), greedy);
      assert.equal(after.nextUint32(), before.nextUint32(), 'greedy consumed no random number');
    }
    assert.equal(sampleNext([3, 7, 7], { temperature: 0 }, new SeededRandom(1)), 1);
    assert.equal(sampleNext([3, 7, 5], { temperature: 1, topK: 1 }, new SeededRandom(1)), 1);
    assert.throws(() => sampleNext([1, Number.NaN, 2], { temperature: 1, topK: 2 }, new SeededRandom(1)), /logit 1 is NaN/);
    assert.throws(() => sampleNext([1, 2], { temperature: 1, topP: 0 }, new SeededRandom(1)), /top-p must be in \(0, 1\]/);
    // Tokens masked to −Infinity inside the top-k are never drawn.
    const masked = [0, -Infinity, -Infinity, 0.5];
    const r = new SeededRandom(2);
    for (let i = 0; i < 200; i++) assert.ok([0, 3].includes(sampleNext(masked, { temperature: 1, topK: 3 }, r)));
  });

  it('generation_config.json settings as transformers reads them', () => {
    assert.deepEqual(samplingFromGenerationConfig({ do_sample: true, temperature: 0.6, top_p: 0.9 }), { temperature: 0.6, topK: 50, topP: 0.9 });
    assert.deepEqual(samplingFromGenerationConfig({ temperature: 0.6 }), GREEDY);
  });

  it('topTokens lists the most probable tokens with probabilities', () => {
    const top = topTokens([0, Math.log(3), Math.log(6)], 2);
    assert.deepEqual(top.map((t) => t.id), [2, 1]);
    close(top[0]!.prob, 0.6, 1e-15, 'p');
    close(top[1]!.logprob, Math.log(0.3), 1e-14, 'log p');
  });
});

describe('runtime sampling: KL divergence and perplexity', () => {
  it('KL(P‖Q) of known distributions, from logits (shift-invariant)', () => {
    // P = [1/2, 1/4, 1/4], Q = [1/4, 1/2, 1/4]: KL = 1/2 ln 2 + 1/4 ln 1/2 = 1/4 ln 2.
    const p = [0.5, 0.25, 0.25];
    const q = [0.25, 0.5, 0.25];
    close(klDivergence(p.map(Math.log), q.map((x) => Math.log(x) + 17)), 0.25 * Math.LN2, 1e-15, 'KL');
    // And the other direction: 1/4 ln 1/2 + 1/2 ln 2 = 1/4 ln 2 too (a symmetric pair), unlike this one:
    const r = [0.9, 0.05, 0.05];
    close(klDivergence(r.map(Math.log), q.map(Math.log)), 0.9 * Math.log(0.9 / 0.25) + 0.05 * Math.log(0.05 / 0.5) + 0.05 * Math.log(0.05 / 0.25), 1e-14, 'KL(R‖Q)');
    assert.equal(klDivergence([1, 2, 3], [1, 2, 3]), 0);
    assert.equal(klDivergence([0, -Infinity], [0, 0]), Math.LN2, 'p = 0 terms contribute nothing');
    assert.equal(klDivergence([0, 0], [0, -Infinity]), Infinity);
    assert.throws(() => klDivergence([1, 2], [1, 2, 3]), /2 and 3 tokens/);
  });

  it('KL matches Σ p (log p − log q) in float64 for a quantization-like perturbation', () => {
    const original = modelLikeLogits(300, 50_000);
    const u = rng(301);
    const quantized = original.map((x) => x + (u() - 0.5) * 0.2);
    for (const t of [1, 0.7]) {
      const p = referenceSoftmax(original, t);
      const q = referenceSoftmax(quantized, t);
      let ref = 0;
      for (let i = 0; i < p.length; i++) if (p[i]! > 0) ref += p[i]! * (Math.log(p[i]!) - Math.log(q[i]!));
      close(klDivergence(original, quantized, t), ref, 1e-9, `T=${t}`);
    }
  });

  it('perplexity: uniform logits give the vocabulary size; otherwise exp(mean NLL)', () => {
    const uniform = new PerplexityAccumulator();
    for (let i = 0; i < 10; i++) uniform.addLogits(new Float32Array(32_000), i);
    close(uniform.perplexity, 32_000, 1e-12, 'uniform');
    assert.equal(uniform.tokens, 10);

    const vocab = 500;
    const positions = 33;
    const logits = new Float32Array(positions * vocab);
    const u = rng(400);
    for (let i = 0; i < logits.length; i++) logits[i] = 3 * (u() - 0.5);
    const tokens = Array.from({ length: positions }, () => Math.floor(u() * vocab));
    let nll = 0;
    for (let t = 0; t + 1 < positions; t++) {
      const p = referenceSoftmax(logits.subarray(t * vocab, (t + 1) * vocab));
      nll -= Math.log(p[tokens[t + 1]!]!);
    }
    const acc = new PerplexityAccumulator();
    acc.addSequence(logits, vocab, tokens);
    assert.equal(acc.tokens, positions - 1);
    close(acc.meanNll, nll / (positions - 1), 1e-13, 'mean NLL');
    close(acc.perplexity, Math.exp(nll / (positions - 1)), 1e-12, 'perplexity');

    const split = new PerplexityAccumulator();
    split.addSequence(logits.subarray(0, 10 * vocab), vocab, tokens.slice(0, 10));
    const rest = new PerplexityAccumulator();
    rest.addSequence(logits.subarray(9 * vocab), vocab, tokens.slice(9));
    split.merge(rest);
    assert.equal(split.tokens, positions - 1);
    close(split.meanNll, acc.meanNll, 1e-14, 'merged');
    assert.ok(Number.isNaN(new PerplexityAccumulator().meanNll));
    assert.throws(() => acc.addSequence(logits, vocab, tokens.slice(1)), /32 positions × 500 tokens need 16000/);
  });
});
