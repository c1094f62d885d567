/**
 * The pre-flight check: everything that can be known about a job before any work starts, from headers
 * and the file system only, so that a typo or a layer of the wrong width stops the job now rather than after
 * an hour of calibration. Problems stop the job; warnings are shown and the job may go on.
 *
 * Estimates are deliberately simple models with the rates they assume written beside them; they are for
 * "seconds, minutes or hours?", not for a countdown.
 */
import { promises as fs } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import { needsInputStatistics } from '../quant/args';
import { RecipePlan, resolveRecipe } from '../recipe/resolve';
import type { ModelLayers } from '../recipe/types';
import { RUNNABLE_MODIFIERS, SCHEME_PRESETS, recipeYaml } from './quantize';
import { DEFAULT_EVAL_SAMPLES, VERIFY_FLOAT_LOGITS_BYTES, type CalibrateJobSpec, type JobSpec, type PlanJobSpec, type QuantizeJobSpec } from './jobSpec';
import { OpenedModel } from './openedModel';
import { parseCandidates, type Candidate } from '../plan/candidates';
import { planFilePath } from '../plan/planFile';
import { bitsPerWeight, budgetBytes, byteRange, checkBudget, layerOptions, planLayers, type PlanLayer } from '../plan/budget';
import { outputHolder } from './outputLock';
import { PROPAGATIONS } from './sequential';
import { sharedInputOwner } from './blockPipeline';
import { describeOwner } from './outputOwner';
import { routerIgnorePatterns } from '../checkpoint/moe';

export interface PreflightEstimate {
  readonly inputBytes: number;
  readonly outputBytes?: number;
  readonly diskFreeBytes?: number;
  /** Peak memory of the job beyond the runtime itself (bytes), and the memory the machine has free. */
  readonly peakMemoryBytes: number;
  readonly freeMemoryBytes: number;
  readonly seconds: number;
  /** Calibration tokens (samples × sequence length), when the job calibrates. */
  readonly calibrationTokens?: number;
  /** What the memory estimate is made of, in words (the one-pass quantize job's bound). */
  readonly memoryBound?: string;
  /** A plan job's `--verify`, included in the memory (the larger phase) and time above. */
  readonly verify?: VerifyEstimate;
}

/**
 * What `plan --verify` adds (plan/verify.ts). It runs after the measurement has ended and released its
 * sessions, so the job's memory is the larger of the two phases; its disk use is temporary, in the output's
 * partial folder.
 */
export interface VerifyEstimate {
  /** Calibrated quantize jobs: the plan's recipe and one uniform recipe per quantizing candidate. */
  readonly quantizeJobs: number;
  /** Held-out tokens evaluated by the float model and by each checkpoint. */
  readonly evaluationTokens: number;
  /** The float model's graph weights (float32), held from the first evaluation to the last. */
  readonly floatGraphBytes: number;
  readonly peakMemoryBytes: number;
  readonly diskBytes: number;
  readonly seconds: number;
}

export interface PreflightReport {
  readonly problems: readonly string[];
  readonly warnings: readonly string[];
  readonly estimate?: PreflightEstimate;
  /** The per-layer plan (quantize jobs). */
  readonly plan?: RecipePlan;
  /** What the job needs from calibration. */
  readonly needs: { readonly inputAbsMax: boolean; readonly hessians: boolean };
}

/**
 * Throughputs the time estimate assumes, measured with `npm run bench` on a 2-core CPU (see README):
 * RTN quantization of bf16 weights, GPTQ's O(rows · cols²) work, and the calibration forward pass
 * (2 · parameters FLOPs per token, fp32 on the CPU provider with statistics taps).
 */
const RATES = { rtnBytesPerSecond: 0.8e9, gptqFlopsPerSecond: 4e9, forwardFlopsPerSecond: 40e9 } as const;

/** Calibration needs of a plan: static activation scales and NVFP4's input_global_scale need absmax; GPTQ needs Hessians. */
function calibrationNeeds(plan: RecipePlan): PreflightReport['needs'] {
  let inputAbsMax = false;
  let hessians = false;
  for (const layer of plan.layers) {
    if (layer.state !== 'quantized') continue;
    const a = layer.scheme?.inputActivations;
    if (needsInputStatistics(a)) inputAbsMax = true;
    if (layer.algorithms.includes('GPTQ')) hessians = true;
  }
  return { inputAbsMax, hessians };
}

async function pathExists(path: string): Promise<boolean> {
  return fs.access(path).then(
    () => true,
    () => false,
  );
}

/** Free bytes where `path` would be written (its nearest existing ancestor). */
async function diskFree(path: string): Promise<number | undefined> {
  let dir = dirname(resolve(path));
  for (;;) {
    const stat = await fs.statfs(dir).catch(() => undefined);
    if (stat) return stat.bavail * stat.bsize;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** Bytes of one decoder block's calibration working set: hidden states in and out, the block's Hessians. */
function calibrationMemory(model: ModelLayers, tokens: number, hessians: boolean): number {
  const hidden = model.layers.find((l) => l.name.endsWith('q_proj'))?.inFeatures ?? model.layers.find((l) => l.className === 'Embedding')?.inFeatures ?? 0;
  const states = 2 * tokens * hidden * 4;
  if (!hessians) return states;
  // One Hessian per distinct input of a block (blockPipeline.ts sharedInputOwner): q/k/v share one, gate/up
  // share one, o_proj and down_proj; in a mixture-of-experts block the router and every expert's gate/up share
  // one and each expert's down has its own. The largest block counts (Qwen-MoE mixes dense and sparse blocks).
  const inputs = new Map<string, Map<string, number>>();
  for (const l of model.layers) {
    const block = /\.layers\.(\d+)\./.exec(l.name)?.[1];
    if (block === undefined || l.className !== 'Linear') continue;
    if (!inputs.has(block)) inputs.set(block, new Map());
    inputs.get(block)!.set(sharedInputOwner(l.name), l.inFeatures ?? 0);
  }
  let h = 0;
  for (const owners of inputs.values()) h = Math.max(h, [...owners.values()].reduce((sum, width) => sum + width * width * 4, 0));
  return states + h;
}

/**
 * Bytes of the largest decoder block's linear weights as float32 (what its graph holds; experts: all of them,
 * fused or not; Qwen-MoE mixes dense and sparse blocks).
 */
function blockWeightMemory(model: ModelLayers): number {
  const copies = (l: ModelLayers['layers'][number]) => (l.fusedExperts ? l.fusedExperts.experts * l.fusedExperts.projections : 1);
  const blocks = new Map<string, number>();
  for (const l of model.layers) {
    const block = /\.layers\.(\d+)\./.exec(l.name)?.[1];
    if (block === undefined || l.className !== 'Linear') continue;
    blocks.set(block, (blocks.get(block) ?? 0) + (l.inFeatures ?? 0) * (l.outFeatures ?? 0) * 4 * copies(l));
  }
  return Math.max(0, ...blocks.values());
}

/** The GPTQ working set of the widest layer: its Hessian and inverse in float64 plus the weight. */
function gptqMemory(plan: RecipePlan): number {
  let worst = 0;
  for (const l of plan.layers) {
    if (l.state !== 'quantized' || !l.algorithms.includes('GPTQ')) continue;
    const cols = l.inFeatures ?? 0;
    const rows = l.outFeatures ?? 0;
    worst = Math.max(worst, 2 * cols * cols * 8 + rows * cols * 8);
  }
  return worst;
}

/**
 * The quantize job's own working set: a tensor-wise scale holds the whole layer as float32; channel and
 * group strategies stream a layer in row blocks of at most 32 MiB (src/core/jobs/quantize.ts).
 */
function rtnMemory(plan: RecipePlan): number {
  let worst = 0;
  for (const l of plan.layers) {
    if (l.state !== 'quantized') continue;
    const whole = (l.inFeatures ?? 0) * (l.outFeatures ?? 0) * 4;
    worst = Math.max(worst, l.scheme?.weights?.strategy === 'tensor' ? whole : Math.min(whole, 32 * 2 ** 20));
  }
  return worst;
}

function formatGiB(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 2 : 1)} GiB`;
}

async function checkOutput(out: string, problems: string[]): Promise<void> {
  if (!out) problems.push('no output location was given');
  else if (await pathExists(out)) problems.push(`${out} already exists; choose a new name (QuantLens never overwrites)`);
  else if (!(await pathExists(dirname(resolve(out))))) problems.push(`the folder ${dirname(resolve(out))} does not exist`);
  // Another job (not this process) holds the output's lock: it would be refused at its start anyway.
  const holder = out ? await outputHolder(out) : undefined;
  if (holder) problems.push(`${resolve(out)} is being written by another QuantLens job: ${describeOwner(holder)}; wait for it to finish or choose another output`);
}

async function preflightQuantize(spec: QuantizeJobSpec, opened: OpenedModel | Error): Promise<PreflightReport> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const noNeeds = { inputAbsMax: false, hessians: false };
  if (Boolean(spec.preset) === Boolean(spec.recipe)) return { problems: ['choose either a preset or a recipe file'], warnings, needs: noNeeds };
  if (resolve(spec.out) === resolve(spec.model)) problems.push('the output folder must differ from the model folder (inputs are never modified)');
  await checkOutput(spec.out, problems);

  let model: ModelLayers;
  try {
    if (opened instanceof Error) throw opened;
    model = opened.layers;
  } catch (error) {
    return { problems: [...problems, `${spec.model}: ${(error as Error).message}`], warnings, needs: noNeeds };
  }
  const config = opened.config;
  if (!config.raw) problems.push(`${resolve(spec.model, 'config.json')} is missing or invalid${config.error ? `: ${config.error}` : ''}`);
  else if (config.summary?.quantMethod) problems.push(`${basename(resolve(spec.model))} is already quantized (quant_method ${config.summary.quantMethod}); start from the float checkpoint`);

  let recipeText: string;
  if (spec.recipe) {
    try {
      recipeText = await fs.readFile(spec.recipe, 'utf8');
    } catch (error) {
      return { problems: [...problems, `cannot read the recipe ${spec.recipe}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`], warnings, needs: noNeeds };
    }
  } else {
    const preset = SCHEME_PRESETS[spec.preset!];
    // The job keeps mixture-of-experts routers in full precision with a preset (quantize.ts): so does its estimate.
    const ignore = spec.ignore ?? ['lm_head'];
    recipeText = recipeYaml(preset.preset, [...ignore, ...routerIgnorePatterns(opened.layerMap.modules).filter((p) => !ignore.includes(p))], spec.preset === 'w4a16' ? 'gptq' : 'rtn');
  }
  const plan = resolveRecipe(recipeText, model);
  for (const d of plan.diagnostics) {
    const where = spec.recipe ? `${basename(spec.recipe)}:${d.range.start.line + 1}: ` : '';
    if (d.severity === 'error') problems.push(`${where}${d.message}`);
    else if (d.severity === 'warning') warnings.push(`${where}${d.message}`);
  }
  // Modifiers the quantize job cannot run (it refuses them too; here they are named before calibration).
  const unsupported = [...new Set(plan.modifiers.map((m) => m.type).filter((t) => !(RUNNABLE_MODIFIERS as readonly string[]).includes(t)))];
  if (unsupported.length) problems.push(`${spec.recipe ? basename(spec.recipe) : 'recipe'}: QuantLens runs ${RUNNABLE_MODIFIERS.join(' and ')}; it cannot run ${unsupported.join(', ')} (use llm-compressor for this recipe, or remove the modifier)`);
  if (plan.kvCache) problems.push(`${spec.recipe ? basename(spec.recipe) : 'recipe'}: kv_cache_scheme needs calibration of attention outputs, which QuantLens does not run`);
  if (plan.counts.quantized === 0) problems.push('no linear layer would be quantized (every layer is ignored or untouched)');
  // Group sizes that do not divide a targeted layer's input features are among the recipe diagnostics (named).
  const needs = calibrationNeeds(plan);
  const calibration = spec.calibration;
  if ((needs.inputAbsMax || needs.hessians) && !calibration) {
    problems.push(`this scheme needs calibration (${[needs.inputAbsMax ? 'activation absmax for static scales' : '', needs.hessians ? 'Hessians for GPTQ' : ''].filter(Boolean).join(', ')}); choose a calibration dataset`);
  }
  if (calibration?.kind === 'stats' && !(await pathExists(calibration.path))) problems.push(`the calibration statistics file ${calibration.path} does not exist`);
  if (calibration?.kind === 'dataset') checkDataset(calibration, problems);
  if (spec.propagation !== undefined && !(PROPAGATIONS as readonly unknown[]).includes(spec.propagation)) problems.push(`propagation must be one of ${PROPAGATIONS.join(', ')}, not ${JSON.stringify(spec.propagation)}`);
  else if (spec.propagation !== undefined && calibration?.kind !== 'dataset') warnings.push(`propagation ${spec.propagation} applies to calibration from a dataset; ${calibration ? 'statistics from a file are used as they are' : 'this job does not calibrate'}`);
  if (calibration?.kind === 'dataset' && !(await pathExists(calibration.path))) problems.push(`the calibration dataset ${calibration.path} does not exist`);

  const inputBytes = model.totalBytes ?? 0;
  const outputBytes = plan.size.estimatedBytes;
  const free = await diskFree(spec.out);
  if (free !== undefined && outputBytes !== undefined && free < outputBytes * 1.05) {
    problems.push(`not enough disk space in ${dirname(resolve(spec.out))}: about ${formatGiB(outputBytes)} needed, ${formatGiB(free)} free`);
  }
  const tokens = calibration?.kind === 'dataset' ? calibration.samples * calibration.seqLen : undefined;
  const layerMemory = Math.max(rtnMemory(plan), gptqMemory(plan));
  let peakMemoryBytes = layerMemory;
  let memoryBound: string | undefined;
  if (tokens) {
    // One pass (sequential.ts): a block's statistics stay in memory while its layers are quantized.
    const quantizedPropagation = (spec.propagation ?? 'quantized') === 'quantized';
    const states = calibrationMemory(model, tokens, false);
    const hessians = calibrationMemory(model, tokens, needs.hessians) - states;
    const weights = blockWeightMemory(model) * (quantizedPropagation ? 2 : 1);
    peakMemoryBytes = states + hessians + weights + layerMemory;
    memoryBound =
      `one pass, block by block: hidden states of all samples in and out of a block ${formatGiB(states)} + one block's weights ${formatGiB(weights)}` +
      `${quantizedPropagation ? ' (float32 in its graph and the dequantized written copy)' : ''}${needs.hessians ? ` and Hessians ${formatGiB(hessians)}` : ''}` +
      ` + one layer's quantization ${formatGiB(layerMemory)}; independent of the number of blocks; no statistics file (disk: the output only)`;
  }
  const freeMemoryBytes = freemem();
  if (peakMemoryBytes > totalmem() * 0.9) problems.push(`the job needs about ${formatGiB(peakMemoryBytes)} of memory; this machine has ${formatGiB(totalmem())}${tokens ? ' (use fewer calibration samples or a shorter sequence length)' : ''}`);
  else if (peakMemoryBytes > freeMemoryBytes) warnings.push(`the job needs about ${formatGiB(peakMemoryBytes)} of memory and ${formatGiB(freeMemoryBytes)} is free now; other programs may be swapped out`);

  let seconds = inputBytes / RATES.rtnBytesPerSecond;
  for (const l of plan.layers) {
    if (l.state === 'quantized' && l.algorithms.includes('GPTQ')) seconds += ((l.outFeatures ?? 0) * (l.inFeatures ?? 0) ** 2 * 2) / RATES.gptqFlopsPerSecond;
  }
  if (tokens) seconds += (2 * (inputBytes / model.dtypeBytes) * tokens) / RATES.forwardFlopsPerSecond;
  return { problems, warnings, plan, needs, estimate: { inputBytes, outputBytes, diskFreeBytes: free, peakMemoryBytes, freeMemoryBytes, seconds, calibrationTokens: tokens, ...(memoryBound ? { memoryBound } : {}) } };
}

function checkDataset(calibration: { samples: number; seqLen: number }, problems: string[]): void {
  if (!Number.isInteger(calibration.samples) || calibration.samples < 1) problems.push(`samples must be a positive whole number, not ${calibration.samples}`);
  if (!Number.isInteger(calibration.seqLen) || calibration.seqLen < 1) problems.push(`the sequence length must be a positive whole number, not ${calibration.seqLen}`);
}

async function preflightCalibrate(spec: CalibrateJobSpec, opened: OpenedModel | Error): Promise<PreflightReport> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const needs = { inputAbsMax: true, hessians: spec.hessians };
  await checkOutput(spec.out, problems);
  checkDataset(spec, problems);
  if (!(await pathExists(spec.dataset))) problems.push(`the calibration dataset ${spec.dataset} does not exist`);
  let model: ModelLayers;
  try {
    if (opened instanceof Error) throw opened;
    model = opened.layers;
  } catch (error) {
    return { problems: [...problems, `${spec.model}: ${(error as Error).message}`], warnings, needs };
  }
  const config = opened.config;
  if (!config.raw) problems.push(`${resolve(spec.model, 'config.json')} is missing or invalid${config.error ? `: ${config.error}` : ''}`);
  else if (config.summary?.quantMethod) problems.push(`${basename(resolve(spec.model))} is already quantized (quant_method ${config.summary.quantMethod}); calibrate the float checkpoint`);
  const tokens = spec.samples * spec.seqLen;
  const inputBytes = model.totalBytes ?? 0;
  const peakMemoryBytes = calibrationMemory(model, tokens, spec.hessians);
  const freeMemoryBytes = freemem();
  if (peakMemoryBytes > totalmem() * 0.9) problems.push(`calibration needs about ${formatGiB(peakMemoryBytes)} of memory; this machine has ${formatGiB(totalmem())} (use fewer samples or a shorter sequence length)`);
  else if (peakMemoryBytes > freeMemoryBytes) warnings.push(`calibration needs about ${formatGiB(peakMemoryBytes)} of memory and ${formatGiB(freeMemoryBytes)} is free now`);
  // The statistics file: one absmax per linear layer plus, with Hessians, one in² matrix per layer.
  const outputBytes = model.layers.reduce((sum, l) => sum + (l.className === 'Linear' ? 4 + (spec.hessians ? (l.inFeatures ?? 0) ** 2 * 4 : 0) : 0), 0);
  const free = await diskFree(spec.out);
  if (free !== undefined && free < outputBytes * 1.05) problems.push(`not enough disk space for the statistics file: about ${formatGiB(outputBytes)} needed, ${formatGiB(free)} free`);
  const seconds = (2 * (inputBytes / model.dtypeBytes) * tokens) / RATES.forwardFlopsPerSecond;
  return { problems, warnings, needs, estimate: { inputBytes, outputBytes, diskFreeBytes: free, peakMemoryBytes, freeMemoryBytes, seconds, calibrationTokens: tokens } };
}

/**
 * A plan: the candidates, the budget against what they allow (known from the headers: an impossible budget
 * stops the job before the measurement), and the measurement's memory and time (plan/sensitivity.ts).
 */
async function preflightPlan(spec: PlanJobSpec, opened: OpenedModel | Error): Promise<PreflightReport> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const needs = { inputAbsMax: false, hessians: true };
  await checkOutput(spec.out, problems);
  if (spec.out && (await pathExists(planFilePath(spec.out)))) problems.push(`${planFilePath(spec.out)} (the plan file written beside the recipe) already exists; choose a new recipe name (QuantLens never overwrites)`);
  checkDataset(spec, problems);
  if (!(await pathExists(spec.dataset))) problems.push(`the calibration dataset ${spec.dataset} does not exist`);
  if (spec.verify?.evalDataset && !(await pathExists(spec.verify.evalDataset))) problems.push(`the evaluation dataset ${spec.verify.evalDataset} does not exist`);
  const budgetProblem = checkBudget(spec.budget);
  if (budgetProblem) problems.push(budgetProblem);
  let candidates;
  try {
    candidates = parseCandidates(spec.candidates);
  } catch (error) {
    problems.push((error as Error).message);
  }
  try {
    if (opened instanceof Error) throw opened;
    const model = opened.decoder();
    if (model.raw.quantization_config) problems.push(`${basename(resolve(spec.model))} is already quantized; plan from the float checkpoint`);
    const layers = planLayers(model);
    if (candidates && !budgetProblem) {
      const range = byteRange(layerOptions(layers, candidates));
      const budget = budgetBytes(spec.budget, layers);
      const describe = (b: number) => `${b} bytes (${bitsPerWeight(b, layers).toFixed(3)} bits per weight)`;
      if (range.min > budget) problems.push(`the budget of ${describe(budget)} is below the smallest possible plan, ${describe(range.min)} (every layer at its smallest candidate); raise the budget or add a smaller candidate`);
      else if (range.max <= budget) warnings.push(`the budget of ${describe(budget)} allows every layer its largest candidate (${describe(range.max)}): the plan is that`);
    }
    const c = model.config;
    const inputBytes = model.checkpoint.totalBytes;
    const tokens = spec.samples * spec.seqLen;
    const measured = candidates ? candidates.filter((x) => x.algorithm !== 'keep').length : 1;
    // 3 sets of hidden states + the model's weights once in fp32 sessions + one block's Hessians.
    const stateBytes = 3 * tokens * c.hiddenSize * 4;
    const parameters = inputBytes / (layers[0]?.weightDtype === 'F32' ? 4 : 2);
    const measurementBytes = stateBytes + 4 * parameters + 4 * (3 * c.hiddenSize ** 2 + c.intermediateSize ** 2);
    const verify = spec.verify ? verifyEstimate(spec, opened, layers, candidates ?? [], parameters, inputBytes) : undefined;
    const peakMemoryBytes = Math.max(measurementBytes, verify?.peakMemoryBytes ?? 0);
    const phase = verify && verify.peakMemoryBytes > measurementBytes ? '--verify' : 'the measurement';
    const freeMemoryBytes = freemem();
    if (spec.maxHiddenStateBytes !== undefined && stateBytes > spec.maxHiddenStateBytes) problems.push(`the measurement holds 3 × ${tokens} tokens × ${c.hiddenSize} × 4 = ${stateBytes} bytes of hidden states, over the limit of ${spec.maxHiddenStateBytes} bytes; use fewer samples or a shorter sequence length`);
    else if (peakMemoryBytes > totalmem() * 0.9) problems.push(`${phase} needs about ${formatGiB(peakMemoryBytes)} of memory; this machine has ${formatGiB(totalmem())} (use fewer samples or a shorter sequence length${verify ? ', or plan without --verify' : ''})`);
    else if (peakMemoryBytes > freeMemoryBytes) warnings.push(`${phase} needs about ${formatGiB(peakMemoryBytes)} of memory and ${formatGiB(freeMemoryBytes)} is free now`);
    const free = verify ? await diskFree(spec.out) : undefined;
    if (verify && free !== undefined && free < verify.diskBytes * 1.05) problems.push(`not enough disk space in ${dirname(resolve(spec.out))} for --verify's checkpoints and graphs: about ${formatGiB(verify.diskBytes)} needed, ${formatGiB(free)} free`);
    // Two float passes + 7 · C · (L − l) block runs for each block l.
    const passes = 2 + (7 * measured * (c.numLayers + 1)) / 2;
    const seconds = ((2 * parameters * tokens) / RATES.forwardFlopsPerSecond) * passes + (verify?.seconds ?? 0);
    const memoryBound = `3 × ${tokens} tokens × ${c.hiddenSize} × 4 bytes of hidden states, the model's weights once in the sessions, one block's Hessians${verify ? `; --verify after it: the float model's graph with its kept logits, beside one quantize job or one checkpoint's graph at a time` : ''}`;
    return { problems, warnings, needs, estimate: { inputBytes, outputBytes: 0, ...(free !== undefined ? { diskFreeBytes: free } : {}), peakMemoryBytes, freeMemoryBytes, seconds, calibrationTokens: tokens, memoryBound, ...(verify ? { verify } : {}) } };
  } catch (error) {
    return { problems: [...problems, `${spec.model}: ${(error as Error).message}`], warnings, needs };
  }
}

/**
 * `plan --verify`'s cost (plan/verify.ts): the float model's graph (float32, the CPU's precision and the
 * larger one) stays loaded with its logits kept up to VERIFY_FLOAT_LOGITS_BYTES while, one at a time, each
 * calibrated quantize job runs (the one-pass bound of preflightQuantize) and each checkpoint's graph (at most
 * float32 too) evaluates one sample at a time. Disk: the float graph, and one checkpoint (at most the float
 * input's size) with its graph at a time.
 */
function verifyEstimate(spec: PlanJobSpec, opened: OpenedModel, layers: readonly PlanLayer[], candidates: readonly Candidate[], parameters: number, inputBytes: number): VerifyEstimate {
  const c = opened.decoder().config;
  const quantizing = candidates.filter((x) => x.algorithm !== 'keep');
  const gptq = quantizing.some((x) => x.algorithm === 'gptq');
  const quantizeJobs = 1 + quantizing.length;
  const tokens = spec.samples * spec.seqLen;
  const evaluationTokens = (spec.verify?.evalSamples ?? DEFAULT_EVAL_SAMPLES(spec.samples)) * spec.seqLen;
  const floatGraphBytes = 4 * parameters;
  const floatLogits = evaluationTokens * c.vocabSize * 4;
  const keptLogits = Math.min(VERIFY_FLOAT_LOGITS_BYTES, floatLogits);
  const layerWork = layers.reduce((worst, l) => Math.max(worst, gptq ? 2 * l.cols * l.cols * 8 + l.rows * l.cols * 8 : Math.min(l.rows * l.cols * 4, 32 * 2 ** 20)), 0);
  const quantizeJob = calibrationMemory(opened.layers, tokens, gptq) + 2 * blockWeightMemory(opened.layers) + layerWork;
  const evaluation = 4 * parameters + spec.seqLen * c.vocabSize * 4;
  const peakMemoryBytes = floatGraphBytes + keptLogits + Math.max(quantizeJob, evaluation);
  const diskBytes = floatGraphBytes + inputBytes + 4 * parameters;
  // Each quantize job reads the model once and runs one calibration pass (GPTQ over every planned layer when a
  // candidate is GPTQ); the held-out text runs through each checkpoint, and through the float model once, or
  // once per checkpoint when its logits are not kept.
  const forward = (n: number) => (2 * parameters * n) / RATES.forwardFlopsPerSecond;
  const gptqSeconds = gptq ? layers.reduce((sum, l) => sum + (l.rows * l.cols ** 2 * 2) / RATES.gptqFlopsPerSecond, 0) : 0;
  const floatPasses = floatLogits <= VERIFY_FLOAT_LOGITS_BYTES ? 1 : 1 + quantizeJobs;
  const seconds = quantizeJobs * (inputBytes / RATES.rtnBytesPerSecond + forward(tokens) + gptqSeconds + forward(evaluationTokens)) + floatPasses * forward(evaluationTokens);
  return { quantizeJobs, evaluationTokens, floatGraphBytes, peakMemoryBytes, diskBytes, seconds };
}

/**
 * The pre-flight check of `spec`. A job passes its model (jobs/openedModel.ts), or the error that opening it
 * gave (reported as a problem of the model); without one, the model is opened here and closed again.
 */
export function preflight(spec: JobSpec, model?: OpenedModel | Error): Promise<PreflightReport> {
  const check = (opened: OpenedModel | Error) => (spec.kind === 'quantize' ? preflightQuantize(spec, opened) : spec.kind === 'plan' ? preflightPlan(spec, opened) : preflightCalibrate(spec, opened));
  if (model) return check(model);
  return OpenedModel.open(spec.model).then(
    (opened) => check(opened).finally(() => opened.close()),
    (error: unknown) => check(error instanceof Error ? error : new Error(String(error))),
  );
}

/** "about 3 minutes" — the estimate in words. */
export function describeDuration(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** A multi-line, plain-text rendering of a report for logs and the CLI. */
export function formatPreflight(report: PreflightReport): string {
  const lines: string[] = [];
  const e = report.estimate;
  if (e) {
    lines.push(`input ${formatGiB(e.inputBytes)}${e.outputBytes !== undefined ? `, output about ${formatGiB(e.outputBytes)}` : ''}${e.diskFreeBytes !== undefined ? ` (${formatGiB(e.diskFreeBytes)} free)` : ''}`);
    lines.push(`memory about ${formatGiB(e.peakMemoryBytes)} (${formatGiB(e.freeMemoryBytes)} free); time about ${describeDuration(e.seconds)}${e.calibrationTokens ? ` including ${e.calibrationTokens} calibration tokens` : ''}`);
    if (e.memoryBound) lines.push(`memory bound: ${e.memoryBound}`);
    const v = e.verify;
    if (v) {
      lines.push(
        `verify adds: ${v.quantizeJobs} calibrated quantize jobs (the plan and each candidate) and ${v.evaluationTokens} held-out tokens through the float model and each checkpoint; ` +
          `memory about ${formatGiB(v.peakMemoryBytes)} after the measurement (the float model's graph ${formatGiB(v.floatGraphBytes)} held throughout), ` +
          `disk about ${formatGiB(v.diskBytes)} while it runs (the float graph, one checkpoint and its graph at a time), time about ${describeDuration(v.seconds)} (included above)`,
      );
    }
  }
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  for (const p of report.problems) lines.push(`problem: ${p}`);
  return lines.join('\n');
}
