/**
 * A plan verified (`quantlens plan --verify`, the plan job's `verify`): the plan's recipe and a uniform recipe of
 * each candidate are quantized for real — the quantize job with a calibration dataset, GPTQ for the GPTQ
 * candidates as their modifier runs it — into temporary checkpoints, and each checkpoint is measured against the
 * float model on held-out text: the mean KL(float ‖ quantized) of the next-token distributions over every
 * evaluated position, the perplexity, and its exact size (the bytes of its .safetensors files, and the bytes of
 * the planned layers' tensors as written). Each checkpoint is removed as soon as it is measured.
 *
 * Held-out text: with the calibration file itself (the default), the evaluation windows are the ones the
 * calibration never sees — the dataset's seeded shuffle picks the calibration's N windows first, so windows
 * N … N+M−1 of the same shuffle are disjoint from them (runtime/dataset.ts). Another evaluation file gives its
 * first M windows of that shuffle.
 *
 * The models run as `quantlens chat` runs them (runtime/chatSession.ts): the graph built from the checkpoint's
 * safetensors with quantized layers in their stored form (MatMulNBits, MatMulInteger, FP8), so what is measured
 * is what was written, activation quantization included. INT4 / INT8 weight-only layers compute in float
 * (MatMulNBits accuracy level 0, not the CPU chat's int8 activations), as vLLM's W4A16 / W8A16 kernels do.
 */
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { Checkpoint } from '../safetensors/checkpoint';
import { ModelTokenizer } from '../runtime/tokenizer';
import { CalibrationSample, DatasetError, loadCalibrationDataset } from '../runtime/dataset';
import { loadChatModel, LoadedChatModel, LoadOptions } from '../chat/modelPair';
import { PerplexityAccumulator, logSoftmax } from '../runtime/sampling';
import type { DevicePreference } from '../runtime/device';
import { DEFAULT_EVAL_SAMPLES, VERIFY_FLOAT_LOGITS_BYTES, type QuantizeJobSpec } from '../jobs/jobSpec';
import { checkCancelled } from '../jobs/jobErrors';
import { OpenedModel } from '../jobs/openedModel';
import type { Candidate } from './candidates';
import { unservableReason } from './candidates';
import { planRecipeYaml, PlannedLayer } from './planRecipe';
import type { PlanLayer } from './budget';

// The defaults live with the job spec, so that the pre-flight check estimates them without loading the runtime.
export { DEFAULT_EVAL_SAMPLES } from '../jobs/jobSpec';

export interface VerifiedPoint {
  /** 'plan', a candidate's name, or 'float' (the model as it is). */
  readonly label: string;
  readonly kind: 'plan' | 'uniform' | 'float';
  /** Bytes of the checkpoint's .safetensors files on disk (headers included). */
  readonly fileBytes: number;
  /** Bytes of the planned layers' tensors as written (the quantity the budget is about). */
  readonly linearBytes: number;
  /** 8 × linearBytes / the planned layers' weights. */
  readonly bitsPerWeight: number;
  /** Mean KL(float ‖ this) over the evaluated positions, nats. */
  readonly kl: number;
  readonly perplexity: number;
  /** Layers a uniform candidate cannot serve (group size), left as they are; their reason. */
  readonly kept?: readonly { readonly module: string; readonly reason: string }[];
}

export interface Verification {
  readonly evalDataset: string;
  /** True when the evaluation windows come from the calibration file, after the calibration's own windows. */
  readonly heldOut: boolean;
  readonly evalSamples: number;
  readonly seqLen: number;
  /** Positions the KL is averaged over (every evaluated position) and tokens the perplexity scores. */
  readonly klPositions: number;
  readonly perplexityTokens: number;
  readonly points: readonly VerifiedPoint[];
  readonly seconds: number;
}

export interface VerifyOptions {
  /** The float model: a folder, or the plan job's open model (its tokenizer, checkpoint and decoder are reused). */
  readonly model: string | OpenedModel;
  readonly layers: readonly PlanLayer[];
  readonly candidates: readonly Candidate[];
  /** The plan's recipe file (already written). */
  readonly planRecipe: string;
  readonly gptq: { readonly blockSize: number; readonly dampeningFrac: number };
  /** The calibration the quantize jobs run (the plan's). */
  readonly dataset: string;
  readonly samples: number;
  readonly seqLen: number;
  /** Held-out evaluation text: default the calibration file's windows after the calibration's. */
  readonly evalDataset?: string;
  readonly evalSamples?: number;
  readonly device?: DevicePreference;
  /** A folder of this job's own (removed by the caller): checkpoints, recipes and graphs go under it. */
  readonly work: string;
  /** Runs a quantize job (runJob: its pre-flight check, its own lock and partial folder). */
  readonly quantize: (spec: QuantizeJobSpec, progress: (fraction: number, stage: string) => void) => Promise<void>;
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
  readonly onProgress?: (fraction: number, stage: string) => void;
  /** Each quantized checkpoint before it is removed (tests look at the files). */
  readonly onCheckpoint?: (label: string, folder: string) => Promise<void>;
}

/** The held-out evaluation windows, tokenized with the model's tokenizer. */
export async function evaluationSamples(options: Pick<VerifyOptions, 'model' | 'dataset' | 'samples' | 'seqLen' | 'evalDataset' | 'evalSamples' | 'signal'>): Promise<{ samples: CalibrationSample[]; path: string; heldOut: boolean }> {
  const tokenizer = options.model instanceof OpenedModel ? await options.model.tokenizer() : await ModelTokenizer.load(options.model);
  const wanted = options.evalSamples ?? DEFAULT_EVAL_SAMPLES(options.samples);
  if (!Number.isSafeInteger(wanted) || wanted < 1) throw new DatasetError(options.evalDataset ?? options.dataset, `the number of evaluation samples must be a positive integer, not ${wanted}`);
  const path = options.evalDataset ?? options.dataset;
  const heldOut = resolve(path) === resolve(options.dataset);
  const skip = heldOut ? options.samples : 0;
  const loaded = await loadCalibrationDataset(path, tokenizer, { samples: skip + wanted, seqLen: options.seqLen, ...(options.signal ? { signal: options.signal } : {}) });
  const samples = loaded.samples.slice(skip);
  if (samples.length === 0) {
    throw new DatasetError(path, heldOut
      ? `has ${loaded.samples.length} samples of ${options.seqLen} tokens and the calibration takes ${options.samples} of them: none is left for held-out evaluation; use fewer --samples, a shorter --seq-len or an --eval dataset`
      : `gives no evaluation sample of ${options.seqLen} tokens`);
  }
  return { samples, path, heldOut };
}

/** The uniform recipe of one candidate: every layer it can serve; the others are left as they are. */
export function uniformRecipe(candidate: Candidate, layers: readonly PlanLayer[], gptq: VerifyOptions['gptq']): { text: string; kept: { module: string; reason: string }[] } {
  const planned: PlannedLayer[] = [];
  const kept: { module: string; reason: string }[] = [];
  for (const layer of layers) {
    const reason = unservableReason(candidate, layer.cols);
    if (reason) kept.push({ module: layer.module, reason });
    else planned.push({ module: layer.module, candidate, bytes: 0, kl: 0, proxy: 0 });
  }
  const header = [`Uniform ${candidate.name} over the plan's layers (quantlens plan --verify)${kept.length ? `; ${kept.length} layers it cannot serve stay as they are` : ''}.`];
  return { text: planRecipeYaml(planned, [candidate], gptq, header), kept };
}

/** Bytes of the .safetensors files of a checkpoint (a folder, or one open), and of the planned layers' tensors in it. */
async function checkpointBytes(model: string | Checkpoint, layers: readonly PlanLayer[]): Promise<{ fileBytes: number; linearBytes: number }> {
  const folder = typeof model === 'string' ? model : model.folder;
  let fileBytes = 0;
  for (const name of await fs.readdir(folder)) if (name.endsWith('.safetensors')) fileBytes += (await fs.stat(join(folder, name))).size;
  const checkpoint = typeof model === 'string' ? await Checkpoint.open(folder) : model;
  try {
    const prefixes = layers.map((l) => `${l.module}.`);
    let linearBytes = 0;
    for (const t of checkpoint.tensors) if (prefixes.some((p) => t.name.startsWith(p))) linearBytes += t.byteLength;
    return { fileBytes, linearBytes };
  } finally {
    if (checkpoint !== model) await checkpoint.close();
  }
}

/**
 * The float model's next-token log-probabilities per evaluation sample, kept when they fit in `limit` bytes
 * (float32; else each comparison runs the float model again).
 */
class FloatReference {
  private readonly cached = new Map<number, Float32Array>();
  constructor(
    private readonly model: LoadedChatModel,
    private readonly limit: number,
  ) {}

  async logits(index: number, ids: readonly number[]): Promise<Float32Array> {
    const hit = this.cached.get(index);
    if (hit) return hit;
    const { logits } = await this.model.model.forward(ids, null);
    const held = [...this.cached.values()].reduce((s, a) => s + a.byteLength, 0);
    if (held + logits.byteLength <= this.limit) this.cached.set(index, logits);
    return logits;
  }
}

/** Mean KL(float ‖ quantized) over every position and the quantized model's perplexity on the next tokens. */
async function compare(reference: FloatReference, quantized: LoadedChatModel | undefined, samples: readonly CalibrationSample[], vocab: number, signal: AbortSignal | undefined): Promise<{ kl: number; perplexity: number; positions: number; tokens: number }> {
  let klSum = 0;
  let positions = 0;
  const ppl = new PerplexityAccumulator();
  for (let s = 0; s < samples.length; s++) {
    checkCancelled(signal);
    const sample = samples[s]!;
    const ids = Array.from(sample.inputIds.subarray(0, sample.tokens));
    const p = await reference.logits(s, ids);
    const q = quantized ? (await quantized.model.forward(ids, null)).logits : p;
    for (let t = 0; t < ids.length; t++) {
      const lp = logSoftmax(p.subarray(t * vocab, (t + 1) * vocab));
      const lq = quantized ? logSoftmax(q.subarray(t * vocab, (t + 1) * vocab)) : lp;
      let kl = 0;
      if (quantized) for (let v = 0; v < vocab; v++) kl += Math.exp(lp[v]!) * (lp[v]! - lq[v]!);
      klSum += Math.max(0, kl);
      positions++;
      if (t + 1 < ids.length) ppl.addNll(-lq[ids[t + 1]!]!);
    }
  }
  return { kl: klSum / positions, perplexity: ppl.perplexity, positions, tokens: ppl.tokens };
}

export async function verifyPlan(options: VerifyOptions): Promise<Verification> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const progress = options.onProgress ?? (() => undefined);
  const weights = options.layers.reduce((s, l) => s + l.rows * l.cols, 0);
  const evaluation = await evaluationSamples(options);
  log(`verify: ${evaluation.samples.length} evaluation samples of ${options.seqLen} tokens from ${evaluation.path}${evaluation.heldOut ? ` (held out: after the calibration's ${options.samples})` : ''}`);
  const quantizing = options.candidates.filter((c) => c.algorithm !== 'keep');
  const runs: { label: string; kind: 'plan' | 'uniform'; recipe: string; kept?: { module: string; reason: string }[] }[] = [{ label: 'plan', kind: 'plan', recipe: options.planRecipe }];
  for (const candidate of quantizing) {
    const uniform = uniformRecipe(candidate, options.layers, options.gptq);
    const recipe = join(options.work, `uniform-${runs.length}.yaml`);
    await fs.writeFile(recipe, uniform.text);
    runs.push({ label: candidate.name, kind: 'uniform', recipe, ...(uniform.kept.length ? { kept: uniform.kept } : {}) });
  }
  // One graph cache per model, removed with its checkpoint: the graphs are as large as the weights.
  const opened = options.model instanceof OpenedModel ? options.model : undefined;
  const modelPath = opened ? opened.path : (options.model as string);
  const load = async (folder: string, cacheDir: string, open?: LoadOptions['open']) => {
    await fs.mkdir(cacheDir, { recursive: true });
    return loadChatModel(folder, { cacheDir, graph: { int4AccuracyLevel: 0 }, ...(options.device ? { device: options.device } : {}), ...(open ? { open } : {}) });
  };
  const float = await load(modelPath, join(options.work, 'graphs-float'), opened ? { decoder: opened.decoder(), tokenizer: await opened.tokenizer() } : undefined);
  const points: VerifiedPoint[] = [];
  let klPositions = 0;
  let perplexityTokens = 0;
  try {
    const vocab = float.model.vocabSize;
    const reference = new FloatReference(float, VERIFY_FLOAT_LOGITS_BYTES);
    const steps = runs.length + 1;
    progress(0, 'verify: the float model');
    const floatResult = await compare(reference, undefined, evaluation.samples, vocab, options.signal);
    klPositions = floatResult.positions;
    perplexityTokens = floatResult.tokens;
    const floatBytes = await checkpointBytes(opened ? opened.checkpoint : modelPath, options.layers);
    points.push({ label: 'float', kind: 'float', ...floatBytes, bitsPerWeight: (8 * floatBytes.linearBytes) / weights, kl: 0, perplexity: floatResult.perplexity });
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i]!;
      checkCancelled(options.signal);
      const out = join(options.work, `checkpoint-${i}`);
      const at = (i + 1) / steps;
      log(`verify: quantizing with ${run.kind === 'plan' ? 'the plan' : `uniform ${run.label}`}`);
      await options.quantize(
        { kind: 'quantize', model: modelPath, out, recipe: run.recipe, calibration: { kind: 'dataset', path: options.dataset, samples: options.samples, seqLen: options.seqLen }, ...(options.device ? { device: options.device } : {}) },
        (fraction, stage) => progress(at - (1 - 0.8 * fraction) / steps, `verify ${run.label}: ${stage}`),
      );
      await options.onCheckpoint?.(run.label, out);
      const bytes = await checkpointBytes(out, options.layers);
      progress(at - 0.2 / steps, `verify ${run.label}: measuring on held-out text`);
      const cacheDir = join(options.work, `graphs-${i}`);
      const quantized = await load(out, cacheDir);
      let measured;
      try {
        measured = await compare(reference, quantized, evaluation.samples, vocab, options.signal);
      } finally {
        await quantized.model.release();
      }
      points.push({ label: run.label, kind: run.kind, ...bytes, bitsPerWeight: (8 * bytes.linearBytes) / weights, kl: measured.kl, perplexity: measured.perplexity, ...(run.kept ? { kept: run.kept } : {}) });
      log(`verify: ${run.label}: ${bytes.fileBytes} bytes on disk, KL ${measured.kl.toExponential(3)} nats, perplexity ${measured.perplexity.toFixed(3)}`);
      await fs.rm(out, { recursive: true, force: true });
      await fs.rm(cacheDir, { recursive: true, force: true });
    }
  } finally {
    await float.model.release();
  }
  progress(1, 'verified');
  return {
    evalDataset: evaluation.path,
    heldOut: evaluation.heldOut,
    evalSamples: evaluation.samples.length,
    seqLen: options.seqLen,
    klPositions,
    perplexityTokens,
    points,
    seconds: (Date.now() - started) / 1000,
  };
}
