/**
 * Mixture-of-experts layers, summarised: one group per layer and role (routed experts × projections, router,
 * shared experts, shared-expert gate, fused experts) with counts by state, so that a layer of 128 experts is
 * one line rather than 384; and the findings only an MoE checkpoint can have: a quantized router (routing
 * decides which experts run: vLLM and llm-compressor keep it in high precision) and experts of a layer left
 * unquantized while the others are quantized.
 */
import type { LinearModule } from './scheme';
import type { MoeRole } from './moe';

export interface LayerGroup {
  readonly block?: number;
  readonly role: MoeRole['role'];
  /** "experts 0–127 × gate_proj/up_proj/down_proj", "router (mlp.gate)", "shared experts × …". */
  readonly label: string;
  /** Linear modules in the group (a fused module counts once, holding `experts` experts). */
  readonly modules: number;
  readonly experts?: number;
  readonly counts: Readonly<Record<LinearModule['state'], number>>;
  /** Storage of the group's present modules, most common first ("ct-packed 4-bit group 128"). */
  readonly storage: readonly string[];
  /** A `re:` filter that selects exactly this group's modules in the layer table. */
  readonly filter: string;
  readonly issues: number;
}

export interface MoeFinding {
  readonly severity: 'warning' | 'error';
  readonly kind: 'quantized-router' | 'unquantized-expert';
  readonly module: string;
  readonly message: string;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export function storageLabel(m: LinearModule): string {
  const o = m.observed;
  if (!o) return m.state === 'elsewhere' ? 'in other shards' : '-';
  return `${o.kind}${o.bits ? ` ${o.bits}-bit` : ''}${o.strategy ? ` ${o.strategy}${o.groupSize ? ` ${o.groupSize}` : ''}` : ''}${o.kind === 'float' && o.weightDtype ? ` ${o.weightDtype}` : ''}`;
}

/** Expert indices as ranges: "0–127", "0–5, 7–9". */
function ranges(indices: readonly number[]): string {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}–${sorted[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

/** One group per MoE layer and role, in layer-map order; empty for a dense checkpoint. */
export function groupMoeModules(modules: readonly LinearModule[]): LayerGroup[] {
  const byKey = new Map<string, LinearModule[]>();
  for (const m of modules) {
    if (!m.moe) continue;
    const key = `${m.moe.role}\u0000${m.moe.container}`;
    const list = byKey.get(key);
    if (list) list.push(m);
    else byKey.set(key, [m]);
  }
  const groups: LayerGroup[] = [];
  for (const list of byKey.values()) {
    const first = list[0]!;
    const role = first.moe!.role;
    const container = first.moe!.container;
    const projections = [...new Set(list.map((m) => m.projection))];
    const tail = container.replace(/^.*?layers\.\d+\./, '');
    const label =
      role === 'expert'
        ? `experts ${ranges(list.map((m) => m.moe!.expert!))} × ${projections.join('/')}`
        : role === 'fused-experts'
          ? `experts${first.moe!.experts !== undefined ? ` 0–${first.moe!.experts - 1}` : ''} fused × ${projections.join('/')}`
          : role === 'router'
            ? `router (${tail})`
            : role === 'shared-expert'
              ? `shared expert${tail.endsWith('experts') ? 's' : ''} × ${projections.join('/')}`
              : `shared-expert gate (${tail})`;
    const counts = { quantized: 0, ignored: 0, unquantized: 0, missing: 0, elsewhere: 0 };
    const storage = new Map<string, number>();
    let issues = 0;
    for (const m of list) {
      counts[m.state]++;
      if (m.issues.length && m.state !== 'missing') issues++;
      if (m.observed) storage.set(storageLabel(m), (storage.get(storageLabel(m)) ?? 0) + 1);
    }
    const filter =
      role === 'expert'
        ? `re:${escape(container)}\\.\\d+\\.(${projections.map(escape).join('|')})$`
        : role === 'router' || role === 'shared-expert-gate'
          ? `re:${escape(container)}$`
          : `re:${escape(container)}\\.(${projections.map(escape).join('|')})$`;
    groups.push({
      block: first.block,
      role,
      label,
      modules: list.length,
      experts: role === 'expert' ? new Set(list.map((m) => m.moe!.expert)).size : role === 'fused-experts' ? first.moe!.experts : undefined,
      counts,
      storage: [...storage.entries()].sort((a, b) => b[1] - a[1]).map(([s]) => s),
      filter,
      issues,
    });
  }
  const roleOrder: MoeRole['role'][] = ['router', 'expert', 'fused-experts', 'shared-expert', 'shared-expert-gate'];
  return groups.sort((a, b) => (a.block ?? Infinity) - (b.block ?? Infinity) || roleOrder.indexOf(a.role) - roleOrder.indexOf(b.role));
}

/** "384 linear, 384 quantized" / "1 linear, unquantized" — a group's counts in words. */
export function describeGroupCounts(g: LayerGroup): string {
  const states = (['quantized', 'ignored', 'unquantized', 'missing', 'elsewhere'] as const).filter((s) => g.counts[s] > 0);
  if (g.modules === 1) return `${states[0] === 'elsewhere' ? 'in other shards' : states[0]}${g.storage[0] ? ` (${g.storage[0]})` : ''}`;
  const parts = states.map((s) => `${g.counts[s]} ${s === 'elsewhere' ? 'in other shards' : s}`);
  return `${g.modules} linear, ${parts.join(', ')}${g.storage.length ? ` (${g.storage.join('; ')})` : ''}`;
}

/**
 * Routers that were quantized, and layers whose routed experts are partly quantized (or all left in high
 * precision while other layers' experts are quantized).
 */
export function moeFindings(modules: readonly LinearModule[], groups: readonly LayerGroup[] = groupMoeModules(modules)): MoeFinding[] {
  const findings: MoeFinding[] = [];
  for (const m of modules) {
    if (m.moe?.role !== 'router' || m.state !== 'quantized') continue;
    findings.push({
      severity: 'warning',
      kind: 'quantized-router',
      module: m.name,
      message: `${m.name}: the router is quantized (${storageLabel(m)}); routers choose which experts run and must stay in high precision (ignore it, e.g. "re:.*${m.name.endsWith('.router') ? 'mlp\\.router' : m.name.includes('block_sparse_moe') ? 'block_sparse_moe\\.gate' : 'mlp\\.gate'}$")`,
    });
  }
  const expertGroups = groups.filter((g) => g.role === 'expert' || g.role === 'fused-experts');
  const anyQuantized = expertGroups.some((g) => g.counts.quantized > 0);
  if (!anyQuantized) return findings;
  for (const g of expertGroups) {
    const left = g.counts.unquantized + g.counts.ignored;
    if (left === 0) continue;
    const where = g.block !== undefined ? `layer ${g.block}` : g.filter;
    const members = modules.filter((m) => m.moe && m.block === g.block && (m.moe.role === g.role) && (m.state === 'unquantized' || m.state === 'ignored'));
    const sample = members.slice(0, 3).map((m) => m.name);
    findings.push({
      severity: 'warning',
      kind: 'unquantized-expert',
      module: sample[0] ?? where,
      message: `${where}: ${left} of ${g.modules} expert linear layers are not quantized while other experts are (${sample.join(', ')}${members.length > 3 ? ` and ${members.length - 3} more` : ''}); experts no calibration token reached are a common cause`,
    });
  }
  return findings;
}
