/**
 * The error report's mixture-of-experts layers laid out as a grid: one row per decoder block and projection,
 * one column per expert, so that a layer of 128 experts is one row per projection rather than 384 lines and an
 * expert that quantized badly stands out. Per-expert layers are `…experts.E.<projection>`, as the layer map names
 * them (fused experts are reported per expert too: docs/formats.md §3.14). No DOM here: the Error tab draws it.
 */
import type { LayerError } from '../../src/core/inspect/error';

const PER_EXPERT = /\.experts\.(\d+)\.([^.]+)$/;

/** The expert index of a per-expert layer, or undefined for any other layer. */
export function expertOf(layer: Pick<LayerError, 'module'>): number | undefined {
  const m = PER_EXPERT.exec(layer.module);
  return m ? Number(m[1]) : undefined;
}

export interface ExpertGrid {
  /** "layer 3 gate_proj", in block order, projections in the order first seen. */
  readonly rows: readonly string[];
  /** Expert indices, ascending. */
  readonly experts: readonly number[];
  /** The layer at (row, expert column), if measured. */
  at(row: number, column: number): LayerError | undefined;
}

/** The grid of the evaluated per-expert layers; undefined when the report has none. */
export function expertGrid(evaluated: readonly LayerError[]): ExpertGrid | undefined {
  const cells = new Map<string, LayerError>();
  const rowKeys: { block: number; projection: string }[] = [];
  const experts = new Set<number>();
  for (const layer of evaluated) {
    const m = PER_EXPERT.exec(layer.module);
    if (!m || layer.block === undefined) continue;
    const projection = m[2]!;
    const expert = Number(m[1]);
    if (!rowKeys.some((k) => k.block === layer.block && k.projection === projection)) rowKeys.push({ block: layer.block, projection });
    experts.add(expert);
    cells.set(`${layer.block}|${projection}|${expert}`, layer);
  }
  if (!cells.size) return undefined;
  const order = [...new Set(rowKeys.map((k) => k.projection))];
  rowKeys.sort((a, b) => a.block - b.block || order.indexOf(a.projection) - order.indexOf(b.projection));
  const columns = [...experts].sort((a, b) => a - b);
  return {
    rows: rowKeys.map((k) => `layer ${k.block} ${k.projection}`),
    experts: columns,
    at: (row, column) => cells.get(`${rowKeys[row]!.block}|${rowKeys[row]!.projection}|${columns[column]}`),
  };
}
