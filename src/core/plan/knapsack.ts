/**
 * The exact multiple-choice knapsack behind a mixed-precision plan: one option per item (a candidate scheme per
 * linear layer), minimising the summed cost (sensitivity) with the summed bytes within a budget.
 *
 * Dynamic programming over the Pareto frontier: after each item, the reachable (bytes, cost) totals are kept
 * sorted by bytes with only the states no other state dominates (fewer or equal bytes and lower or equal
 * cost); every state of the next frontier is some frontier state plus one option, so the optimum is never
 * pruned — the result is exact, not a greedy guess. It is fast on real models because layers of the same
 * shape add the same byte sizes: byte totals coincide, and the frontier holds one state per distinct total at
 * most. States over the budget are dropped as they are made. The frontier after each item is kept (parent
 * index, option) to read the choice back.
 */

export class PlanBudgetError extends Error {
  override readonly name = 'PlanBudgetError';
  constructor(
    message: string,
    /** The smallest total the items can reach (each at its smallest option). */
    readonly minimumBytes: number,
  ) {
    super(message);
  }
}

export interface KnapsackOption {
  /** Whole bytes (exact arithmetic in doubles up to 2^53). */
  readonly bytes: number;
  /** Non-negative, finite. */
  readonly cost: number;
}

export interface KnapsackItem {
  readonly name: string;
  readonly options: readonly KnapsackOption[];
}

export interface KnapsackSolution {
  /** Index into each item's options. */
  readonly choice: readonly number[];
  readonly bytes: number;
  readonly cost: number;
  /** Largest frontier along the way (the work done is about items × options × this). */
  readonly maxFrontier: number;
}

/** Frontier states beyond this mean the byte sizes barely coincide: the planner says so instead of thrashing. */
export const MAX_FRONTIER = 5_000_000;

export function solveKnapsack(items: readonly KnapsackItem[], budgetBytes: number, options: { signal?: AbortSignal; describeBytes?: (bytes: number) => string } = {}): KnapsackSolution {
  const describe = options.describeBytes ?? ((b: number) => `${b} bytes`);
  if (!(budgetBytes >= 0)) throw new PlanBudgetError(`the budget must be a non-negative number of bytes, not ${budgetBytes}`, 0);
  let minimum = 0;
  for (const item of items) {
    if (item.options.length === 0) throw new Error(`internal: ${item.name} has no option`);
    for (const o of item.options) {
      if (!Number.isSafeInteger(o.bytes) || o.bytes < 0) throw new Error(`internal: ${item.name} has an option of ${o.bytes} bytes`);
      if (!Number.isFinite(o.cost) || o.cost < 0) throw new Error(`internal: ${item.name} has an option of cost ${o.cost}`);
    }
    minimum += Math.min(...item.options.map((o) => o.bytes));
  }
  if (minimum > budgetBytes) {
    throw new PlanBudgetError(`the budget of ${describe(budgetBytes)} is below the smallest possible plan, ${describe(minimum)} (every layer at its smallest candidate); raise the budget or add a smaller candidate`, minimum);
  }
  // Frontier: parallel arrays sorted by bytes ascending, cost strictly descending.
  let bytes = new Float64Array([0]);
  let cost = new Float64Array([0]);
  const parents: Int32Array[] = [];
  const picks: Uint16Array[] = [];
  let maxFrontier = 1;
  for (const item of items) {
    if (options.signal?.aborted) throw new Error('cancelled');
    const n = bytes.length;
    const k = item.options.length;
    // Candidate states, filtered by budget, then sorted by (bytes, cost).
    const cb: number[] = [];
    const cc: number[] = [];
    const cp: number[] = [];
    const co: number[] = [];
    for (let o = 0; o < k; o++) {
      const ob = item.options[o]!.bytes;
      const oc = item.options[o]!.cost;
      for (let s = 0; s < n; s++) {
        const b = bytes[s]! + ob;
        if (b > budgetBytes) break; // bytes ascend within the frontier
        cb.push(b);
        cc.push(cost[s]! + oc);
        cp.push(s);
        co.push(o);
      }
    }
    const order = Array.from(cb.keys()).sort((a, b) => cb[a]! - cb[b]! || cc[a]! - cc[b]!);
    const nb: number[] = [];
    const nc: number[] = [];
    const np: number[] = [];
    const no: number[] = [];
    let best = Infinity;
    for (const i of order) {
      // Sorted by bytes then cost: a state survives only if it is cheaper than every state with fewer or equal bytes.
      if (cc[i]! < best) {
        best = cc[i]!;
        nb.push(cb[i]!);
        nc.push(cc[i]!);
        np.push(cp[i]!);
        no.push(co[i]!);
      }
    }
    if (nb.length > MAX_FRONTIER) throw new Error(`the plan's search grew past ${MAX_FRONTIER} states at ${item.name}: the layers' byte sizes barely coincide; plan with fewer candidates`);
    bytes = Float64Array.from(nb);
    cost = Float64Array.from(nc);
    parents.push(Int32Array.from(np));
    picks.push(Uint16Array.from(no));
    maxFrontier = Math.max(maxFrontier, nb.length);
  }
  // The cheapest state within the budget is the frontier's last (costs descend with bytes).
  let state = bytes.length - 1;
  const total = { bytes: bytes[state]!, cost: cost[state]! };
  const choice = new Array<number>(items.length);
  for (let i = items.length - 1; i >= 0; i--) {
    choice[i] = picks[i]![state]!;
    state = parents[i]![state]!;
  }
  return { choice, bytes: total.bytes, cost: total.cost, maxFrontier };
}
