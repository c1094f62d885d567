/**
 * The plan's multiple-choice knapsack against brute force (every combination) on small random cases, including
 * layers with identical byte sizes (what real models have) and ties; an impossible budget names the minimum.
 * Also the candidate parser and the exact byte counts of what the writers lay out.
 */
import assert from 'node:assert/strict';
import { KnapsackItem, PlanBudgetError, solveKnapsack } from '../../src/core/plan/knapsack';
import { candidateBytes, parseCandidate, parseCandidates, unservableReason } from '../../src/core/plan/candidates';
import { outputSpecs } from '../../src/core/jobs/outputLayouts';
import { rng } from '../helpers/random';

function bruteForce(items: readonly KnapsackItem[], budget: number): { cost: number; bytes: number } | undefined {
  let best: { cost: number; bytes: number } | undefined;
  const choice = new Array<number>(items.length).fill(0);
  for (;;) {
    let bytes = 0;
    let cost = 0;
    items.forEach((item, i) => {
      bytes += item.options[choice[i]!]!.bytes;
      cost += item.options[choice[i]!]!.cost;
    });
    if (bytes <= budget && (!best || cost < best.cost - 1e-12 || (Math.abs(cost - best.cost) <= 1e-12 && bytes < best.bytes))) best = { cost, bytes };
    let i = 0;
    while (i < items.length && ++choice[i]! === items[i]!.options.length) choice[i++] = 0;
    if (i === items.length) return best;
  }
}

function randomItems(seed: number): KnapsackItem[] {
  const random = rng(seed);
  const n = 1 + Math.floor(random() * 7);
  // A few shapes shared by several layers, as in a decoder (q/k/v/o/gate/up/down repeat per block).
  const shapes = Array.from({ length: 1 + Math.floor(random() * 3) }, () => Array.from({ length: 1 + Math.floor(random() * 3) }, () => 1 + Math.floor(random() * 40)));
  return Array.from({ length: n }, (_, i) => {
    const sizes = shapes[Math.floor(random() * shapes.length)]!;
    // Costs: random, sometimes exactly equal (ties), sometimes zero.
    return { name: `layer${i}`, options: sizes.map((bytes) => ({ bytes, cost: random() < 0.2 ? 0 : Math.floor(random() * 8) / 4 + (random() < 0.5 ? random() : 0) })) };
  });
}

describe('plan: exact knapsack', () => {
  it('matches brute force on 500 random small cases', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const items = randomItems(seed);
      const min = items.reduce((s, it) => s + Math.min(...it.options.map((o) => o.bytes)), 0);
      const max = items.reduce((s, it) => s + Math.max(...it.options.map((o) => o.bytes)), 0);
      const budget = min + Math.floor(rng(seed * 7)() * (max - min + 1));
      const expected = bruteForce(items, budget)!;
      const solution = solveKnapsack(items, budget);
      // The choice read back is consistent with the reported totals, within the budget, and optimal.
      const bytes = solution.choice.reduce((s, c, i) => s + items[i]!.options[c]!.bytes, 0);
      const cost = solution.choice.reduce((s, c, i) => s + items[i]!.options[c]!.cost, 0);
      assert.equal(bytes, solution.bytes, `seed ${seed}`);
      assert.ok(Math.abs(cost - solution.cost) < 1e-9, `seed ${seed}`);
      assert.ok(bytes <= budget, `seed ${seed}: ${bytes} > ${budget}`);
      assert.ok(Math.abs(cost - expected.cost) < 1e-9, `seed ${seed}: cost ${cost}, brute force ${expected.cost}`);
    }
  });

  it('an impossible budget names the smallest possible plan', () => {
    const items: KnapsackItem[] = [
      { name: 'a', options: [{ bytes: 10, cost: 1 }, { bytes: 4, cost: 3 }] },
      { name: 'b', options: [{ bytes: 7, cost: 0 }, { bytes: 5, cost: 2 }] },
    ];
    assert.throws(() => solveKnapsack(items, 8), (e: unknown) => e instanceof PlanBudgetError && e.minimumBytes === 9 && /below the smallest possible plan, 9 bytes/.test(e.message));
    assert.deepEqual(solveKnapsack(items, 9).choice, [1, 1]);
    assert.deepEqual(solveKnapsack(items, 17).choice, [0, 0]);
  });

  it('stays small on a TinyLlama-sized problem (154 layers, 4 shapes, 3 candidates)', () => {
    const random = rng(3);
    const shapes = [[4194304, 2162688, 1146880], [524288, 270336, 143360], [11534336, 5947392, 3153920], [11534336, 5947392, 3153920]];
    const items = Array.from({ length: 154 }, (_, i) => ({ name: `l${i}`, options: shapes[i % 7 < 2 ? 0 : i % 7 < 4 ? 1 : i % 7 < 6 ? 2 : 3]!.map((bytes, k) => ({ bytes, cost: k === 0 ? 0 : random() * k })) }));
    const max = items.reduce((s, it) => s + it.options[0]!.bytes, 0);
    const solution = solveKnapsack(items, Math.floor(max * 0.4));
    assert.ok(solution.bytes <= max * 0.4);
    assert.ok(solution.maxFrontier < 200_000, `frontier ${solution.maxFrontier}`);
  });
});

describe('plan: candidates', () => {
  it('parses presets and group overrides, and refuses what is not one', () => {
    const c = parseCandidate('w4a16:g64');
    assert.equal(c.name, 'w4a16:g64');
    assert.equal(c.algorithm, 'gptq');
    assert.equal(c.scheme!.weights!.groupSize, 64);
    assert.equal(c.scheme!.weights!.actorder, 'weight');
    assert.equal(parseCandidate('fp8-dynamic').algorithm, 'rtn');
    assert.equal(parseCandidate('bf16').algorithm, 'keep');
    assert.throws(() => parseCandidate('w3a16'), /unknown candidate scheme "w3a16"/);
    assert.throws(() => parseCandidate('w8a8:g64'), /per channel, not in groups/);
    assert.throws(() => parseCandidates('w4a16,w4a16'), /listed twice/);
  });

  it('says why a group size cannot serve a layer', () => {
    assert.equal(unservableReason(parseCandidate('w4a16'), 960), 'in_features 960 is not divisible by group_size 128');
    assert.equal(unservableReason(parseCandidate('w4a16:g64'), 960), undefined);
    assert.equal(unservableReason(parseCandidate('fp8'), 960), undefined);
  });

  it('counts the bytes the writers lay out', () => {
    // INT4 g128 BF16 model, [256, 768]: int32-packed codes (8 per word), BF16 scales [256, 6], weight_shape I64[2].
    assert.equal(candidateBytes(parseCandidate('w4a16'), 'm', 256, 768, 'BF16'), (256 * 768) / 2 + 256 * 6 * 2 + 16);
    // W8A8 per channel: I8 codes + a BF16 scale per row.
    assert.equal(candidateBytes(parseCandidate('w8a8'), 'm', 256, 768, 'BF16'), 256 * 768 + 256 * 2);
    // FP8 static: F8 codes, one scale, one input scale.
    assert.equal(candidateBytes(parseCandidate('fp8'), 'm', 256, 768, 'F16'), 256 * 768 + 2 + 2);
    assert.equal(candidateBytes(parseCandidate('bf16'), 'm', 256, 768, 'BF16'), 256 * 768 * 2);
    // The same as the writer's own specs.
    const specs = outputSpecs('m', 64, 256, 'F32', parseCandidate('w8a16:g64').scheme!, 'pack-quantized');
    assert.equal(candidateBytes(parseCandidate('w8a16:g64'), 'm', 64, 256, 'F32'), (64 * 256) + 64 * 4 * 4 + 16);
    assert.deepEqual(specs.map((s) => s.name), ['m.weight_packed', 'm.weight_scale', 'm.weight_shape']);
  });
});
