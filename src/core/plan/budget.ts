/**
 * What a plan is over and under: the decoder blocks' linear layers (lm_head and the embeddings stay as they
 * are, outside the budget), their exact byte sizes per candidate from the checkpoint's headers alone, and the
 * budget — average stored bits per linear weight (8 × bytes / weights, codes + scales + zero points as written)
 * or a total in bytes of those layers' tensors.
 */
import type { DType } from '../dtypes/dtype';
import { DecoderModel, blockModuleNames } from '../runtime/llama/graph';
import { Candidate, candidateBytes, unservableReason } from './candidates';

export type PlanBudget = { readonly bits: number } | { readonly bytes: number };

export interface PlanLayer {
  readonly module: string;
  readonly block: number;
  readonly rows: number;
  readonly cols: number;
  readonly weightDtype: DType;
}

export class PlanInputError extends Error {
  override readonly name = 'PlanInputError';
}

/** The linear layers of the decoder blocks, from the headers; a non-float weight is an error naming it. */
export function planLayers(model: DecoderModel): PlanLayer[] {
  const layers: PlanLayer[] = [];
  const c = model.config;
  for (let l = 0; l < c.numLayers; l++) {
    for (const module of blockModuleNames(c, l)) {
      const name = `${module}.weight`;
      if (!model.checkpoint.has(name)) throw new PlanInputError(`${model.folder}: ${name} is missing; planning starts from a float checkpoint`);
      const info = model.checkpoint.tensor(name);
      if (!['F32', 'F16', 'BF16'].includes(info.dtype) || info.shape.length !== 2) throw new PlanInputError(`${model.folder}: ${name} is ${info.dtype} [${info.shape.join(', ')}]; planning starts from a float checkpoint (2-D F32, F16 or BF16 weights)`);
      layers.push({ module, block: l, rows: info.shape[0]!, cols: info.shape[1]!, weightDtype: info.dtype });
    }
  }
  return layers;
}

export function budgetText(budget: PlanBudget): string {
  return 'bits' in budget ? `${budget.bits} bits per weight` : `${budget.bytes} bytes`;
}

/** Checks a budget's value (a clear message, never NaN arithmetic later). */
export function checkBudget(budget: PlanBudget): string | undefined {
  if ('bits' in budget) return Number.isFinite(budget.bits) && budget.bits > 0 ? undefined : `--bits must be a positive number of bits per weight, not ${budget.bits}`;
  return Number.isSafeInteger(budget.bytes) && budget.bytes > 0 ? undefined : `--size must be a positive whole number of bytes, not ${budget.bytes}`;
}

export function totalWeights(layers: readonly PlanLayer[]): number {
  return layers.reduce((sum, l) => sum + l.rows * l.cols, 0);
}

/** The budget in whole bytes: bits × weights / 8, rounded down (the plan never exceeds what was asked). */
export function budgetBytes(budget: PlanBudget, layers: readonly PlanLayer[]): number {
  return 'bits' in budget ? Math.floor((budget.bits * totalWeights(layers)) / 8) : budget.bytes;
}

/** Average stored bits per weight of `bytes` over the layers. */
export function bitsPerWeight(bytes: number, layers: readonly PlanLayer[]): number {
  return (8 * bytes) / totalWeights(layers);
}

/** Per layer, the candidates that serve it with their bytes; the others with the reason. */
export function layerOptions(layers: readonly PlanLayer[], candidates: readonly Candidate[]): { layer: PlanLayer; options: { candidate: Candidate; bytes: number }[]; skipped: { candidate: string; reason: string }[] }[] {
  return layers.map((layer) => {
    const options: { candidate: Candidate; bytes: number }[] = [];
    const skipped: { candidate: string; reason: string }[] = [];
    for (const candidate of candidates) {
      const reason = unservableReason(candidate, layer.cols);
      if (reason) skipped.push({ candidate: candidate.name, reason });
      else options.push({ candidate, bytes: candidateBytes(candidate, layer.module, layer.rows, layer.cols, layer.weightDtype) });
    }
    if (options.length === 0) throw new PlanInputError(`${layer.module}: no candidate can quantize it (${skipped.map((s) => `${s.candidate}: ${s.reason}`).join('; ')}); add bf16 to the candidates to keep it, or a scheme that fits`);
    return { layer, options, skipped };
  });
}

/** Smallest and largest totals the candidates allow. */
export function byteRange(options: ReturnType<typeof layerOptions>): { min: number; max: number } {
  let min = 0;
  let max = 0;
  for (const o of options) {
    min += Math.min(...o.options.map((x) => x.bytes));
    max += Math.max(...o.options.map((x) => x.bytes));
  }
  return { min, max };
}
