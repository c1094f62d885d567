/**
 * The plan file: the plan job's whole result as JSON (the PlanSummary — the chosen scheme per layer, every
 * layer × candidate measurement, and the verification when it ran), written beside the recipe as
 * `<recipe name without .yaml>.plan.json` and published with it. The editor's sensitivity heatmap and its
 * size-vs-KL plot read it; a fixed name would make two plans in one folder overwrite each other.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { PlanSummary } from './planJob';
import { jsonWithNonFinite } from '../util/format';

export const PLAN_FILE_SUFFIX = '.plan.json';

/** `plans/w4mix.yaml` → `plans/w4mix.plan.json`. */
export function planFilePath(recipe: string): string {
  return join(dirname(recipe), `${basename(recipe).replace(/\.ya?ml$/i, '')}${PLAN_FILE_SUFFIX}`);
}

export class PlanFileError extends Error {
  override readonly name = 'PlanFileError';
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
/** A measured KL, proxy or perplexity: finite, or ±Infinity / NaN where the model's outputs diverge. */
const isMeasure = (v: unknown): v is number => typeof v === 'number';

/**
 * Measurements that may not be finite: a model whose mean next-token log-probability is below −709 nats (the
 * synthetic example's is) has a perplexity beyond the largest double, Infinity, and JSON has no Infinity
 * (JSON.stringify writes null, which reads back as no number).
 * Non-finite numbers are written as the strings "Infinity", "-Infinity" or "NaN"; in these fields they are read
 * back as numbers (anywhere else they are not numbers, and the file is refused).
 */
const MEASURE_FIELDS = new Set(['kl', 'totalKl', 'proxy', 'perplexity']);
const NON_FINITE_TEXT = new Set(['Infinity', '-Infinity', 'NaN']);

/** The plan file's text for a plan job's summary. */
export function planFileText(summary: PlanSummary): string {
  return `${jsonWithNonFinite(summary, 1)}\n`;
}

/**
 * Reads and checks a plan file (the fields the editor uses), naming the file and the field that is wrong.
 * Plan files are written by QuantLens, but a file in a workspace is whatever is in it.
 */
export async function readPlanFile(path: string, maxBytes = 64 * 1024 * 1024): Promise<PlanSummary> {
  const stat = await fs.stat(path).catch(() => undefined);
  if (!stat?.isFile()) throw new PlanFileError(`${path}: no such plan file`);
  if (stat.size > maxBytes) throw new PlanFileError(`${path}: ${stat.size} bytes is larger than a plan file can be (${maxBytes})`);
  let value: unknown;
  try {
    value = JSON.parse(await fs.readFile(path, 'utf8'), (key, v: unknown) => (MEASURE_FIELDS.has(key) && typeof v === 'string' && NON_FINITE_TEXT.has(v) ? Number(v) : v));
  } catch (error) {
    throw new PlanFileError(`${path}: not JSON (${(error as Error).message})`);
  }
  const bad = (what: string) => new PlanFileError(`${path}: ${what}; it is not a plan file written by quantlens plan`);
  if (!isObject(value)) throw bad('the top level is not an object');
  for (const key of ['model', 'out', 'planFile', 'dataset'] as const) if (typeof value[key] !== 'string') throw bad(`"${key}" is not a string`);
  for (const key of ['bytes', 'budgetBytes', 'bitsPerWeight', 'tokens'] as const) if (!isNumber(value[key])) throw bad(`"${key}" is not a number`);
  if (!Array.isArray(value.candidates) || !value.candidates.every((c) => typeof c === 'string')) throw bad('"candidates" is not a list of names');
  if (!Array.isArray(value.layers)) throw bad('"layers" is not a list');
  for (const [i, l] of value.layers.entries()) {
    if (!isObject(l) || typeof l.module !== 'string' || typeof l.scheme !== 'string' || !isMeasure(l.kl) || !isNumber(l.bytes)) throw bad(`layers[${i}] lacks module, scheme, kl or bytes`);
  }
  if (!Array.isArray(value.sensitivity)) throw bad('"sensitivity" is not a list');
  for (const [i, l] of value.sensitivity.entries()) {
    if (!isObject(l) || typeof l.module !== 'string' || !isNumber(l.block) || !Array.isArray(l.measurements)) throw bad(`sensitivity[${i}] lacks module, block or measurements`);
    for (const [j, m] of l.measurements.entries()) {
      if (!isObject(m) || typeof m.candidate !== 'string' || !isNumber(m.bytes) || (m.kl !== undefined && !isMeasure(m.kl))) throw bad(`sensitivity[${i}].measurements[${j}] lacks candidate or bytes, or has a non-numeric kl`);
    }
  }
  if (value.verification !== undefined) {
    const v = value.verification;
    if (!isObject(v) || !Array.isArray(v.points)) throw bad('"verification" has no list of points');
    for (const [i, p] of v.points.entries()) {
      if (!isObject(p) || typeof p.label !== 'string' || !['plan', 'uniform', 'float'].includes(p.kind as string) || !isNumber(p.fileBytes) || !isNumber(p.linearBytes) || !isNumber(p.bitsPerWeight) || !isMeasure(p.kl) || !isMeasure(p.perplexity)) throw bad(`verification.points[${i}] lacks label, kind, fileBytes, linearBytes, bitsPerWeight, kl or perplexity`);
    }
  }
  return value as unknown as PlanSummary;
}

/**
 * The newest plan file for a model folder among `folders` (the model's own folder and its parent, where the
 * editor offers to write recipes): one whose "model" is that folder. Unreadable files are skipped.
 */
export async function findPlanFile(modelFolder: string, folders: readonly string[]): Promise<string | undefined> {
  const model = resolve(modelFolder);
  let best: { path: string; mtime: number } | undefined;
  for (const folder of folders) {
    const names = await fs.readdir(folder).catch(() => [] as string[]);
    for (const name of names) {
      if (!name.endsWith(PLAN_FILE_SUFFIX)) continue;
      const path = join(folder, name);
      const plan = await readPlanFile(path).catch(() => undefined);
      if (!plan || resolve(dirname(path), plan.model) !== model) continue;
      const mtime = (await fs.stat(path)).mtimeMs;
      if (!best || mtime > best.mtime) best = { path, mtime };
    }
  }
  return best?.path;
}
