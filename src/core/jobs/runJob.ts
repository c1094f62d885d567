/**
 * Runs a job described by a JobSpec, in-process. A quantize job with a calibration dataset calibrates and
 * quantizes in one pass, block by block (sequential.ts); with a statistics file it reads that file. The CLI calls this directly; the extension runs it in a
 * child process (job.worker.ts) so that a crash or an out-of-memory kill never takes the editor down.
 *
 * The output's lock is the first thing taken (outputLock.ts): a second job for the same output is refused at
 * once, before any pre-flight work, naming the job that holds it; with the lock held, whatever a dead job left
 * for this output is removed (and logged) before the work starts.
 *
 * Then the model is opened, once (openedModel.ts: config.json, the checkpoint's headers, the layer map, the
 * tokenizer when a stage needs it), and that one object goes to the pre-flight check and every stage; it is
 * closed here when the job ends, whether it succeeded, failed or was cancelled.
 */
import { promises as fs } from 'node:fs';
import { resolve } from 'node:path';
import { CalibrationFile } from './calibrationFile';
import { QuantizeSummary, runQuantizeJob } from './quantize';
import { CalibrationSummary, runCalibrationJob } from './calibrate';
import { preflight, formatPreflight } from './preflight';
import { SequentialCalibration } from './sequential';
import { OpenedModel } from './openedModel';
import type { JobSpec } from './jobSpec';
import { JobCancelled, JobIoError, jobFailure } from './jobErrors';
import { lockOutput } from './jobOutput';
import { OutputLock, removeStaleOutputs } from './outputLock';
import { commandOfThisProcess } from './outputOwner';
import { PlanSummary, runPlanJob } from '../plan/planJob';
import { requireDevice } from '../runtime/device';
import { CPU_MIN_WORK, GraphGptqAlgebra } from '../runtime/gptq/engine';

export class PreflightFailed extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`pre-flight check failed:\n  ${problems.join('\n  ')}`);
  }
}

export interface JobProgress {
  /** 0…1 over the whole job. */
  readonly fraction: number;
  readonly stage: string;
  readonly module?: string;
}

export interface RunJobOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: JobProgress) => void;
  readonly log?: (line: string) => void;
  /** Where the runtime caches built graphs (calibration); a temporary folder when absent. */
  readonly graphCacheDir?: string;
  /** The caller already ran and showed the pre-flight check: it is repeated, but not logged again. */
  readonly preflightDone?: boolean;
  /** What owner records call this job (the command line; the editor's job title). Default: this process's command line. */
  readonly command?: string;
  /** A plan job's verification checkpoints, each before it is removed (tests look at the files). */
  readonly onCheckpoint?: (label: string, folder: string) => Promise<void>;
  /**
   * The model already open for `spec.model` (a plan job's verification quantize jobs run on the plan job's
   * model); it stays open, its owner closes it. Without it the job opens the model and closes it at its end.
   */
  readonly model?: OpenedModel;
}

export type JobResult =
  | { readonly kind: 'quantize'; readonly quantize: QuantizeSummary; readonly calibration?: CalibrationSummary }
  | { readonly kind: 'calibrate'; readonly calibration: CalibrationSummary }
  | { readonly kind: 'plan'; readonly plan: PlanSummary };

export async function runJob(spec: JobSpec, options: RunJobOptions = {}): Promise<JobResult> {
  const log = options.log ?? (() => undefined);
  const command = options.command ?? commandOfThisProcess();
  // A missing output folder is the pre-flight check's to report (with everything else it finds).
  let lock: OutputLock | undefined = await lockOutput(spec.kind, spec.out, command, log).catch((error: unknown) => {
    if (error instanceof JobIoError && error.reason === 'missing-folder') return undefined;
    throw error;
  });
  // The model this job opened (and closes), not one the caller lent it.
  let ownModel: OpenedModel | undefined;
  try {
    if (lock) await removeStaleOutputs(spec.out, log);
    if (options.model && resolve(options.model.path) !== resolve(spec.model)) throw new Error(`internal: the job for ${spec.model} was given the open model of ${options.model.path}`);
    // A model that cannot be opened is the pre-flight check's to report, with everything else it finds.
    const opening = options.model ?? (await OpenedModel.open(spec.model).then((opened) => (ownModel = opened), (error: unknown) => (error instanceof Error ? error : new Error(String(error)))));
    // Headers only, so it is cheap to repeat here even when the caller already showed it: things may have
    // changed since (an output created meanwhile), and the quantize step needs to know what to calibrate.
    const report = await preflight(spec, opening);
    if (!options.preflightDone) log(formatPreflight(report));
    if (report.problems.length) throw new PreflightFailed(report.problems);
    if (opening instanceof Error) throw opening;
    const model = opening;
    lock ??= await lockOutput(spec.kind, spec.out, command, log);
    const owned = { outputLock: lock, command, signal: options.signal, log };
    if (spec.kind === 'calibrate') {
      const calibration = await runCalibrationJob({
        ...owned,
        model,
        out: spec.out,
        dataset: spec.dataset,
        samples: spec.samples,
        seqLen: spec.seqLen,
        hessians: spec.hessians,
        graphCacheDir: options.graphCacheDir,
        device: spec.device,
        onProgress: (p) => options.onProgress?.({ ...p, stage: `calibrate: ${p.stage}` }),
      });
      return { kind: 'calibrate', calibration };
    }
    if (spec.kind === 'plan') {
      const plan = await runPlanJob({
        ...owned,
        model,
        out: spec.out,
        dataset: spec.dataset,
        samples: spec.samples,
        seqLen: spec.seqLen,
        candidates: spec.candidates,
        budget: spec.budget,
        ...(spec.device ? { device: spec.device } : {}),
        ...(spec.maxHiddenStateBytes ? { maxHiddenStateBytes: spec.maxHiddenStateBytes } : {}),
        ...(options.graphCacheDir ? { graphCacheDir: options.graphCacheDir } : {}),
        ...(spec.verify ? { verify: spec.verify } : {}),
        ...(options.onCheckpoint ? { onCheckpoint: options.onCheckpoint } : {}),
        // The verification's quantize jobs: each with its own pre-flight check, lock and partial folder, on this job's model.
        quantize: async (quantizeSpec, progress) => {
          await runJob(quantizeSpec, { ...options, preflightDone: true, model, onProgress: (p) => progress(p.fraction, p.stage) });
        },
        onProgress: (p) => options.onProgress?.({ ...p, stage: `plan: ${p.stage}` }),
      });
      return { kind: 'plan', plan };
    }

    // Calibration from a dataset runs in the same pass as quantization, block by block (sequential.ts): no
    // statistics file; a statistics file made earlier (`quantlens calibrate`) is read as it is.
    let sequential: SequentialCalibration | undefined;
    let lastFraction = 0;
    const calibrationStarted = Date.now();
    if (spec.calibration?.kind === 'dataset') {
      sequential = await SequentialCalibration.open(model.decoder(), {
        tokenizer: await model.tokenizer(),
        dataset: spec.calibration.path,
        samples: spec.calibration.samples,
        seqLen: spec.calibration.seqLen,
        propagation: spec.propagation ?? 'quantized',
        hessians: report.needs.hessians,
        ...(spec.device ? { device: spec.device } : {}),
        ...(options.graphCacheDir ? { graphCacheDir: options.graphCacheDir } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        log,
        onStage: (stage, module) => options.onProgress?.({ fraction: lastFraction, stage: `calibrate: ${stage}`, module }),
      });
    }
    const statsPath = spec.calibration?.kind === 'stats' ? spec.calibration.path : undefined;
    const calibration = sequential ?? (statsPath ? await CalibrationFile.open(statsPath) : undefined);
    let gptqAlgebra: GraphGptqAlgebra | undefined;
    try {
      if (report.needs.hessians) {
        // GPTQ's algebra runs on the job's device: the calibration's, or the one asked for with a statistics file.
        const device = sequential?.device ?? (await requireDevice(spec.device ?? 'auto'));
        gptqAlgebra = await GraphGptqAlgebra.create(device, { log, ...(options.graphCacheDir ? { workDir: options.graphCacheDir } : {}) });
        log(`GPTQ runs on ${gptqAlgebra.where}${device.device === 'cpu' ? ` (layers under 2^${Math.log2(CPU_MIN_WORK)} multiply-adds in exact float64 JavaScript)` : ''}: ${device.reason}`);
      }
      const recipe = spec.recipe ? { text: await fs.readFile(spec.recipe, 'utf8'), path: spec.recipe } : undefined;
      const quantize = await runQuantizeJob({
        ...owned,
        model,
        out: spec.out,
        ...(spec.preset ? { scheme: spec.preset } : {}),
        ...(recipe ? { recipe } : {}),
        ...(spec.format ? { format: spec.format } : {}),
        ignore: spec.ignore,
        gptq: spec.gptq,
        ...(gptqAlgebra ? { gptqAlgebra } : {}),
        calibration,
        maxShardBytes: spec.maxShardBytes,
        onProgress: (p) => {
          lastFraction = p.fraction;
          options.onProgress?.({ fraction: p.fraction, stage: p.stage, module: p.module });
        },
      });
      let calibrationSummary: CalibrationSummary | undefined;
      if (sequential && spec.calibration?.kind === 'dataset') {
        // Calibration and quantization share the time: the summary's rate is over the whole pass.
        const seconds = (Date.now() - calibrationStarted) / 1000;
        calibrationSummary = {
          out: spec.out,
          dataset: sequential.dataset.info.dataset,
          samples: sequential.dataset.samples.length,
          seqLen: spec.calibration.seqLen,
          tokens: sequential.tokens,
          layers: sequential.layersCalibrated,
          hessians: sequential.hessiansComputed,
          device: sequential.device.device,
          seconds,
          tokensPerSecond: sequential.tokens / seconds,
        };
      }
      return { kind: 'quantize', quantize, calibration: calibrationSummary };
    } finally {
      await gptqAlgebra?.close();
      await calibration?.close();
    }
  } catch (error) {
    if (error instanceof JobCancelled || options.signal?.aborted) throw error instanceof JobCancelled ? error : new JobCancelled();
    throw await jobFailure(error, { job: spec.kind, out: resolve(spec.out), partialDir: undefined, removal: undefined, partialMade: false });
  } finally {
    await ownModel?.close();
    await lock?.release();
  }
}
