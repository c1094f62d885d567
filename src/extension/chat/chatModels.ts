/**
 * Which models the chat starts with, and whether their weights are synthetic. Kept free of `vscode` so the
 * unit tests run it outside VS Code.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

/** The field the example generator (scripts/make-example.ts) writes into config.json; quantizing keeps it. */
export const SYNTHETIC_CONFIG_FIELD = 'quantlens_synthetic';

interface JobRecordShape {
  readonly status?: unknown;
  readonly started?: unknown;
  readonly ended?: unknown;
  readonly spec?: { readonly kind?: unknown; readonly model?: unknown; readonly out?: unknown };
}

export interface QuantizePair {
  readonly quantized: string;
  readonly original: string;
}

/** A succeeded quantize job's output and its source model, or undefined for any other record. */
export function quantizePairOf(record: unknown): QuantizePair | undefined {
  const job = record as JobRecordShape | undefined;
  if (job?.status !== 'succeeded' || job.spec?.kind !== 'quantize') return undefined;
  const { out, model } = job.spec;
  return typeof out === 'string' && typeof model === 'string' ? { quantized: out, original: model } : undefined;
}

/**
 * The latest finished quantize job's output and its source model, from the history the Jobs view keeps.
 * "Latest" is the latest end time (start time for records without one), not a position: the Jobs view keeps
 * its history newest first, and reading it from the end picked the oldest job.
 */
export function latestQuantizeJob(history: unknown): QuantizePair | undefined {
  if (!Array.isArray(history)) return undefined;
  let best: { pair: QuantizePair; time: number } | undefined;
  for (const record of history) {
    const pair = quantizePairOf(record);
    if (!pair) continue;
    const { ended, started } = record as JobRecordShape;
    const time = typeof ended === 'number' ? ended : typeof started === 'number' ? started : -Infinity;
    // Strictly later wins, so between equal times the first record (the newest in the Jobs view's order) stays.
    if (!best || time > best.time) best = { pair, time };
  }
  return best?.pair;
}

/**
 * True when the model folder's config.json marks its weights as synthetic (`"quantlens_synthetic": true`).
 * A missing or unreadable config is not synthetic: loading the model reports that problem itself.
 */
export async function hasSyntheticWeights(folder: string): Promise<boolean> {
  let text: string;
  try {
    text = await fs.readFile(join(folder, 'config.json'), 'utf8');
  } catch {
    return false;
  }
  try {
    const config = JSON.parse(text) as unknown;
    return typeof config === 'object' && config !== null && (config as Record<string, unknown>)[SYNTHETIC_CONFIG_FIELD] === true;
  } catch {
    return false;
  }
}
