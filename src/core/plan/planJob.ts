/**
 * The plan job (`quantlens plan`, the 'plan' JobSpec): measures every linear layer's sensitivity to every
 * candidate (sensitivity.ts), chooses one candidate per layer minimising the summed KL within the budget
 * (knapsack.ts, exact), and writes the plan as an llm-compressor recipe (planRecipe.ts). The recipe is written
 * in a partial folder beside its name under the output's lock and published only when complete, while the
 * model and the dataset are as they were (jobOutput.ts), like the other jobs' outputs. Beside it goes the plan
 * file (planFile.ts: this summary as JSON), published first. With `verify`, the recipe and a uniform recipe of
 * each candidate are quantized and measured on held-out text before anything is published (verify.ts).
 */
import { basename, join, resolve } from 'node:path';
import { promises as fs } from 'node:fs';
import type { DeviceKind } from '../runtime/device';
import { DEFAULT_BLOCK_SIZE, DEFAULT_DAMPENING_FRAC } from '../quant/gptq';
import { JobOutput, JobOutputOptions, withJobOutput } from '../jobs/jobOutput';
import type { PlanJobSpec, QuantizeJobSpec } from '../jobs/jobSpec';
import { OpenedModel, withOpenedModel } from '../jobs/openedModel';
import { Candidate, parseCandidates } from './candidates';
import { PlanBudget, PlanInputError, bitsPerWeight, budgetBytes, budgetText, byteRange, checkBudget, layerOptions, planLayers, totalWeights } from './budget';
import { solveKnapsack } from './knapsack';
import { measureSensitivity, LayerSensitivity } from './sensitivity';
import { planRecipeYaml, PlannedLayer } from './planRecipe';
import { planFilePath, planFileText } from './planFile';
import { Verification, verifyPlan } from './verify';

export interface PlanJobOptions extends Omit<PlanJobSpec, 'kind' | 'model'>, JobOutputOptions {
  /** The float checkpoint: a folder (opened for this job and closed after) or the job's open model (runJob's). */
  readonly model: string | OpenedModel;
  readonly graphCacheDir?: string;
  readonly tokensPerRun?: number;
  readonly onProgress?: (progress: { fraction: number; stage: string; module?: string }) => void;
  /** Runs a quantize job for the verification (runJob passes itself: no import cycle). */
  readonly quantize?: (spec: QuantizeJobSpec, progress: (fraction: number, stage: string) => void) => Promise<void>;
  /** Each verification checkpoint before it is removed (tests look at its files). */
  readonly onCheckpoint?: (label: string, folder: string) => Promise<void>;
}

export interface PlanLayerRow {
  readonly module: string;
  readonly scheme: string;
  readonly kl: number;
  readonly proxy: number;
  readonly bytes: number;
}

export interface PlanSummary {
  /** The float model planned (absolute path). */
  readonly model: string;
  readonly out: string;
  /** The plan file written beside the recipe (planFile.ts). */
  readonly planFile: string;
  readonly candidates: readonly string[];
  readonly budget: PlanBudget;
  readonly budgetBytes: number;
  /** The plan's bytes (the planned layers' tensors) and its average stored bits per weight. */
  readonly bytes: number;
  readonly bitsPerWeight: number;
  /** What the candidates allow at the least and at the most. */
  readonly minBytes: number;
  readonly maxBytes: number;
  readonly weights: number;
  /** Σ KL of the chosen candidates (each layer measured alone). */
  readonly totalKl: number;
  readonly layers: readonly PlanLayerRow[];
  /** Candidates a layer could not take, with the reason. */
  readonly skipped: readonly { readonly module: string; readonly candidate: string; readonly reason: string }[];
  /** Every measurement (layer × candidate): the editor's heatmap reads it. */
  readonly sensitivity: readonly LayerSensitivity[];
  readonly dataset: string;
  readonly samples: number;
  readonly tokens: number;
  readonly device: DeviceKind;
  readonly blockRuns: number;
  readonly referenceBlockRuns: number;
  readonly seconds: number;
  /** Measured KL, perplexity and size of the plan and of each uniform candidate (with `verify`). */
  readonly verification?: Verification;
}

export function runPlanJob(options: PlanJobOptions): Promise<PlanSummary> {
  return withJobOutput('plan', options.out, options, async (output) => {
    // The candidates and the budget are checked before the model is opened.
    const candidates = parseCandidates(options.candidates);
    const budgetProblem = checkBudget(options.budget);
    if (budgetProblem) throw new PlanInputError(budgetProblem);
    return withOpenedModel(options.model, (opened) => planLocked(options, candidates, opened, output));
  });
}

async function planLocked(options: PlanJobOptions, candidates: readonly Candidate[], opened: OpenedModel, output: JobOutput): Promise<PlanSummary> {
  const started = Date.now();
  const model = opened.decoder();
  if (model.layerMap.scheme.quantMethod || model.raw.quantization_config) throw new PlanInputError(`${opened.path} is already quantized; plan from the float checkpoint`);
  await output.watchCheckpoint(model.checkpoint);
  await output.watchInputs([options.dataset]);
  const layers = planLayers(model);
  const perLayer = layerOptions(layers, candidates);
  const range = byteRange(perLayer);
  const budget = budgetBytes(options.budget, layers);
  const describe = (bytes: number) => `${bytes} bytes (${bitsPerWeight(bytes, layers).toFixed(3)} bits per weight)`;
  // An impossible budget is known from the headers: say so before the measurement, not after it.
  if (range.min > budget) solveKnapsack(perLayer.map((o) => ({ name: o.layer.module, options: o.options.map((x) => ({ bytes: x.bytes, cost: 0 })) })), budget, { describeBytes: describe });

  // With verification, the measurement is about this share of the work (each verification point is a
  // calibrated quantize job and two evaluations, about 3 calibration passes; the measurement docs/planning.md §2).
  const measuredCandidates = candidates.filter((c) => c.algorithm !== 'keep').length;
  const measurePasses = 2 + (7 * measuredCandidates * (model.config.numLayers + 1)) / 2;
  const measureShare = options.verify ? measurePasses / (measurePasses + 3 * (measuredCandidates + 1)) : 0.99;
  const report = await measureSensitivity({
    model,
    tokenizer: await opened.tokenizer(),
    dataset: options.dataset,
    samples: options.samples,
    seqLen: options.seqLen,
    candidates,
    ...(options.device ? { device: options.device } : {}),
    ...(options.graphCacheDir ? { graphCacheDir: options.graphCacheDir } : {}),
    ...(options.tokensPerRun ? { tokensPerRun: options.tokensPerRun } : {}),
    ...(options.maxHiddenStateBytes ? { maxHiddenStateBytes: options.maxHiddenStateBytes } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.log ? { log: options.log } : {}),
    onProgress: (p) => options.onProgress?.({ ...p, fraction: p.fraction * measureShare }),
  });
  const byModule = new Map(report.layers.map((l) => [l.module, l]));
  const items = perLayer.map((o) => {
    const measured = byModule.get(o.layer.module)!;
    return {
      name: o.layer.module,
      options: o.options.map((x) => {
        const m = measured.measurements.find((y) => y.candidate === x.candidate.name)!;
        return { bytes: x.bytes, cost: m.kl! };
      }),
    };
  });
  const solution = solveKnapsack(items, budget, { describeBytes: describe, ...(options.signal ? { signal: options.signal } : {}) });
  const planned: PlannedLayer[] = perLayer.map((o, i) => {
    const pick = o.options[solution.choice[i]!]!;
    const m = byModule.get(o.layer.module)!.measurements.find((y) => y.candidate === pick.candidate.name)!;
    return { module: o.layer.module, candidate: pick.candidate, bytes: pick.bytes, kl: m.kl!, proxy: m.proxy! };
  });
  const gptq = { blockSize: DEFAULT_BLOCK_SIZE, dampeningFrac: DEFAULT_DAMPENING_FRAC };
  const header = [
    `Mixed-precision plan by quantlens plan for ${basename(opened.path)}: ${budgetText(options.budget)} budget = ${budget} bytes over ${layers.length} linear layers (${totalWeights(layers)} weights).`,
    `Planned: ${describe(solution.bytes)}; summed KL ${solution.cost.toPrecision(4)} nats (each layer measured alone on ${report.tokens} tokens of ${report.dataset}).`,
    `Candidates: ${candidates.map((c) => c.name).join(', ')}. Layers not named below stay as they are (lm_head, embeddings${planned.some((p) => p.candidate.algorithm === 'keep') ? ', and the layers planned as bf16' : ''}).`,
  ];
  const text = planRecipeYaml(planned, candidates, gptq, header);
  const name = basename(output.out);
  const partial = await output.createPartial('plan recipe');
  await fs.writeFile(join(partial, name), text);
  let verification: Verification | undefined;
  if (options.verify) {
    if (!options.quantize) throw new Error('internal: the plan job verifies through a quantize job and none was given');
    const work = join(partial, 'verify');
    await fs.mkdir(work);
    try {
      verification = await verifyPlan({
        model: opened,
        layers,
        candidates,
        planRecipe: join(partial, name),
        gptq,
        dataset: options.dataset,
        samples: options.samples,
        seqLen: options.seqLen,
        ...(options.verify.evalDataset ? { evalDataset: options.verify.evalDataset } : {}),
        ...(options.verify.evalSamples ? { evalSamples: options.verify.evalSamples } : {}),
        ...(options.device ? { device: options.device } : {}),
        work,
        quantize: options.quantize,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.log ? { log: options.log } : {}),
        ...(options.onCheckpoint ? { onCheckpoint: options.onCheckpoint } : {}),
        onProgress: (fraction, stage) => options.onProgress?.({ fraction: measureShare + (0.99 - measureShare) * fraction, stage }),
      });
    } finally {
      await fs.rm(work, { recursive: true, force: true });
    }
  }
  const planFile = planFilePath(output.out);
  const summary: PlanSummary = {
    model: resolve(opened.path),
    out: output.out,
    planFile,
    candidates: candidates.map((c) => c.name),
    budget: options.budget,
    budgetBytes: budget,
    bytes: solution.bytes,
    bitsPerWeight: bitsPerWeight(solution.bytes, layers),
    minBytes: range.min,
    maxBytes: range.max,
    weights: totalWeights(layers),
    totalKl: solution.cost,
    layers: planned.map((p) => ({ module: p.module, scheme: p.candidate.name, kl: p.kl, proxy: p.proxy, bytes: p.bytes })),
    skipped: perLayer.flatMap((o) => o.skipped.map((s) => ({ module: o.layer.module, ...s }))),
    sensitivity: report.layers,
    dataset: report.dataset,
    samples: report.samples,
    tokens: report.tokens,
    device: report.device,
    blockRuns: report.blockRuns,
    referenceBlockRuns: report.referenceBlockRuns,
    seconds: (Date.now() - started) / 1000,
    ...(verification ? { verification } : {}),
  };
  await fs.writeFile(join(partial, basename(planFile)), planFileText(summary));
  await output.publishFiles([basename(planFile), name]);
  options.onProgress?.({ fraction: 1, stage: 'done' });
  return summary;
}
