/**
 * Runs a job described by a JobSpec, in-process: calibration (when the spec asks for a dataset) followed by
 * quantization, with one progress scale across both. The CLI calls this directly; the extension runs it in a
 * child process (job.worker.ts) so that a crash or an out-of-memory kill never takes the editor down.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CalibrationFile } from './calibrationFile';
import { QuantizeSummary, runQuantizeJob } from './quantize';
import { CalibrationSummary, runCalibrationJob } from './calibrate';
import { preflight, formatPreflight } from './preflight';
import type { JobSpec } from './jobSpec';

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
}

export type JobResult = { readonly kind: 'quantize'; readonly quantize: QuantizeSummary; readonly calibration?: CalibrationSummary } | { readonly kind: 'calibrate'; readonly calibration: CalibrationSummary };

export async function runJob(spec: JobSpec, options: RunJobOptions = {}): Promise<JobResult> {
  const log = options.log ?? (() => undefined);
  // Headers only, so it is cheap to repeat here even when the caller already showed it: things may have
  // changed since (an output created meanwhile), and the quantize step needs to know what to calibrate.
  const report = await preflight(spec);
  if (!options.preflightDone) log(formatPreflight(report));
  if (report.problems.length) throw new PreflightFailed(report.problems);
  if (spec.kind === 'calibrate') {
    const calibration = await runCalibrationJob({
      model: spec.model,
      out: spec.out,
      dataset: spec.dataset,
      samples: spec.samples,
      seqLen: spec.seqLen,
      hessians: spec.hessians,
      graphCacheDir: options.graphCacheDir,
      device: spec.device,
      signal: options.signal,
      log,
      onProgress: (p) => options.onProgress?.({ ...p, stage: `calibrate: ${p.stage}` }),
    });
    return { kind: 'calibrate', calibration };
  }

  // Calibration from a dataset goes to a temporary statistics file beside the output, removed at the end.
  let calibrationSummary: CalibrationSummary | undefined;
  let statsPath: string | undefined;
  let tempStats: string | undefined;
  const calibrationShare = spec.calibration?.kind === 'dataset' ? 0.5 : 0;
  if (spec.calibration?.kind === 'dataset') {
    tempStats = join(dirname(resolve(spec.out)), `.${basename(spec.out)}.${randomBytes(4).toString('hex')}.calibration.safetensors`);
    calibrationSummary = await runCalibrationJob({
      model: spec.model,
      out: tempStats,
      dataset: spec.calibration.path,
      samples: spec.calibration.samples,
      seqLen: spec.calibration.seqLen,
      hessians: report.needs.hessians,
      graphCacheDir: options.graphCacheDir,
      device: spec.device,
      signal: options.signal,
      log,
      onProgress: (p) => options.onProgress?.({ fraction: p.fraction * calibrationShare, stage: `calibrate: ${p.stage}`, module: p.module }),
    });
    statsPath = tempStats;
  } else if (spec.calibration?.kind === 'stats') {
    statsPath = spec.calibration.path;
  }
  const calibration = statsPath ? await CalibrationFile.open(statsPath) : undefined;
  try {
    const recipe = spec.recipe ? { text: await fs.readFile(spec.recipe, 'utf8'), path: spec.recipe } : undefined;
    const quantize = await runQuantizeJob({
      model: spec.model,
      out: spec.out,
      ...(spec.preset ? { scheme: spec.preset } : {}),
      ...(recipe ? { recipe } : {}),
      ...(spec.format ? { format: spec.format } : {}),
      ignore: spec.ignore,
      gptq: spec.gptq,
      calibration,
      maxShardBytes: spec.maxShardBytes,
      signal: options.signal,
      log,
      onProgress: (p) => options.onProgress?.({ fraction: calibrationShare + p.fraction * (1 - calibrationShare), stage: p.stage, module: p.module }),
    });
    return { kind: 'quantize', quantize, calibration: calibrationSummary };
  } finally {
    await calibration?.close();
    if (tempStats) await fs.rm(tempStats, { force: true });
  }
}
