/**
 * The candidate schemes a mixed-precision plan chooses from (`quantlens plan --candidates`): a preset name,
 * optionally with a group size override (`w4a16:g64`), or `bf16` = keep the layer as it is stored. Each
 * candidate knows which algorithm quantizes it (the same one its recipe's modifier runs), which layers it can
 * serve, and exactly how many bytes it writes for a layer (the writers' tensor layouts, jobs/outputLayouts.ts).
 */
import type { DType } from '../dtypes/dtype';
import { QuantScheme, presetScheme } from '../quant/args';
import { tensorByteLength } from '../safetensors/writer';
import { formatOf } from '../recipe/resolve';
import { outputSpecs } from '../jobs/outputLayouts';

export class CandidateError extends Error {
  override readonly name = 'CandidateError';
}

/**
 * The presets a plan offers, with the algorithm each is measured and written with:
 * - weight-only integer schemes (w4a16, w8a16) run GPTQ (GPTQModifier): at 4 bits GPTQ is what people ship, and
 *   the plan must measure the error of the weights the recipe will actually produce;
 * - w8a8, fp8 and fp8-dynamic run round-to-nearest (QuantizationModifier): per-channel INT8 / FP8 weights lose
 *   little to RTN, and QuantLens' GPTQ writes integer weights only for the activation-free schemes.
 */
export const PLAN_PRESETS = {
  w4a16: { preset: 'W4A16', algorithm: 'gptq' },
  w8a16: { preset: 'W8A16', algorithm: 'gptq' },
  w8a8: { preset: 'W8A8', algorithm: 'rtn' },
  fp8: { preset: 'FP8', algorithm: 'rtn' },
  'fp8-dynamic': { preset: 'FP8_DYNAMIC', algorithm: 'rtn' },
  bf16: { preset: undefined, algorithm: 'keep' },
} as const;
export type PlanPresetName = keyof typeof PLAN_PRESETS;

export interface Candidate {
  /** As given (`w4a16:g64`), the name tables and the recipe's comments use. */
  readonly name: string;
  /** What the layer gets; undefined for `bf16` (kept as stored). */
  readonly scheme?: QuantScheme;
  readonly algorithm: 'gptq' | 'rtn' | 'keep';
}

/** Parses one `--candidates` entry. */
export function parseCandidate(text: string): Candidate {
  const match = /^([a-z0-9-]+)(?::g(\d+))?$/.exec(text.trim().toLowerCase());
  const names = Object.keys(PLAN_PRESETS).join(', ');
  if (!match) throw new CandidateError(`candidate ${JSON.stringify(text)} is not a scheme: use one of ${names}, optionally with a group size (w4a16:g64)`);
  const base = match[1]!;
  if (!(base in PLAN_PRESETS)) throw new CandidateError(`unknown candidate scheme ${JSON.stringify(base)}: use one of ${names}`);
  const preset = PLAN_PRESETS[base as PlanPresetName];
  if (preset.algorithm === 'keep') {
    if (match[2] !== undefined) throw new CandidateError(`${text}: bf16 keeps the layer as stored; it has no group size`);
    return { name: 'bf16', algorithm: 'keep' };
  }
  let scheme = presetScheme(preset.preset)!;
  // GPTQModifier's default activation order ("static") is part of the scheme it writes.
  if (preset.algorithm === 'gptq') scheme = { ...scheme, weights: { ...scheme.weights!, actorder: 'weight' } };
  if (match[2] !== undefined) {
    const group = Number(match[2]);
    if (scheme.weights!.strategy !== 'group') throw new CandidateError(`${text}: ${base} quantizes weights per ${scheme.weights!.strategy}, not in groups; a group size applies to w4a16 and w8a16`);
    if (!Number.isSafeInteger(group) || group <= 0) throw new CandidateError(`${text}: the group size must be a positive integer`);
    scheme = { ...scheme, weights: { ...scheme.weights!, groupSize: group } };
  }
  const w = scheme.weights!;
  const name = w.strategy === 'group' && match[2] !== undefined ? `${base}:g${w.groupSize}` : base;
  return { name, scheme, algorithm: preset.algorithm };
}

/** Parses `--candidates a,b,…`: at least one, no duplicates. */
export function parseCandidates(list: string | readonly string[]): Candidate[] {
  const items = (typeof list === 'string' ? list.split(',') : [...list]).map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new CandidateError(`give at least one candidate scheme (${Object.keys(PLAN_PRESETS).join(', ')})`);
  const candidates = items.map(parseCandidate);
  const seen = new Set<string>();
  for (const c of candidates) {
    if (seen.has(c.name)) throw new CandidateError(`candidate ${c.name} is listed twice`);
    seen.add(c.name);
  }
  return candidates;
}

/** Why `candidate` cannot quantize a layer of `cols` input features, or undefined when it can. */
export function unservableReason(candidate: Candidate, cols: number): string | undefined {
  const w = candidate.scheme?.weights;
  if (!w) return undefined;
  if (w.strategy === 'group' && cols % w.groupSize! !== 0) return `in_features ${cols} is not divisible by group_size ${w.groupSize}`;
  return undefined;
}

/**
 * Bytes of tensor data `candidate` writes for a [rows, cols] layer stored as `weightDtype`: codes, scales, zero
 * points, g_idx and weight_shape exactly as the compressed-tensors writer lays them out (outputSpecs), or the
 * weight as stored for `bf16`. The safetensors header is not counted (a few dozen bytes per tensor).
 */
export function candidateBytes(candidate: Candidate, module: string, rows: number, cols: number, weightDtype: DType): number {
  if (!candidate.scheme) return tensorByteLength({ name: `${module}.weight`, dtype: weightDtype, shape: [rows, cols] });
  return outputSpecs(module, rows, cols, weightDtype, candidate.scheme, formatOf(candidate.scheme)).reduce((sum, spec) => sum + tensorByteLength(spec), 0);
}
