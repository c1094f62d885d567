/**
 * The plan the inspector's Error tab shows for a model: the plan file of the last plan job of that model in
 * this window, else the newest plan file beside the model (in its folder or the folder above, where the
 * editor's plan command writes recipes) whose "model" is that folder (src/core/plan/planFile.ts).
 */
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { findPlanFile, readPlanFile } from '../core/plan/planFile';
import type { PlanSummary } from '../core/plan/planJob';
import type { PlanView } from '../webviewMessages/inspector';

/** Plan files of plan jobs that succeeded in this window, by model folder (latest last). */
const planJobs = new Map<string, string>();

export function recordPlanJob(model: string, planFile: string): void {
  planJobs.set(resolve(model), planFile);
}

/** The model folder of an inspected path (a file, an index or a folder of shards). */
export function modelFolderOf(inspected: string): string {
  return statSync(inspected, { throwIfNoEntry: false })?.isDirectory() ? resolve(inspected) : dirname(resolve(inspected));
}

/** Non-finite measurements as null (PlanView's Measure): a page receives JSON. */
const measure = (v: number): number | null => (Number.isFinite(v) ? v : null);

export function planViewOf(plan: PlanSummary): PlanView {
  const chosen = new Map(plan.layers.map((l) => [l.module, l.scheme]));
  return {
    planFile: plan.planFile,
    recipe: plan.out,
    candidates: plan.candidates,
    bytes: plan.bytes,
    budgetBytes: plan.budgetBytes,
    bitsPerWeight: plan.bitsPerWeight,
    dataset: plan.dataset,
    tokens: plan.tokens,
    layers: plan.sensitivity.map((l) => ({
      module: l.module,
      block: l.block,
      projection: l.module.split('.').at(-1) ?? l.module,
      chosen: chosen.get(l.module) ?? '',
      measurements: l.measurements.map((m) => ({ candidate: m.candidate, bytes: m.bytes, ...(m.kl !== undefined ? { kl: measure(m.kl) } : {}), ...(typeof m.proxy === 'number' ? { proxy: measure(m.proxy) } : {}), ...(m.unservable ? { unservable: m.unservable } : {}) })),
    })),
    ...(plan.verification
      ? {
          verification: {
            evalDataset: plan.verification.evalDataset,
            heldOut: plan.verification.heldOut,
            evalSamples: plan.verification.evalSamples,
            seqLen: plan.verification.seqLen,
            points: plan.verification.points.map(({ label, kind, fileBytes, linearBytes, bitsPerWeight, kl, perplexity }) => ({ label, kind, fileBytes, linearBytes, bitsPerWeight, kl: measure(kl), perplexity: measure(perplexity) })),
          },
        }
      : {}),
  };
}

/** The plan to show for an inspected checkpoint, or null when it has none. */
export async function planFor(inspected: string): Promise<PlanView | null> {
  const model = modelFolderOf(inspected);
  const fromJob = planJobs.get(model);
  const file = fromJob && statSync(fromJob, { throwIfNoEntry: false })?.isFile() ? fromJob : await findPlanFile(model, [model, dirname(model)]);
  return file ? planViewOf(await readPlanFile(file)) : null;
}
