/**
 * The output error a calibrated quantize job measured as it wrote each layer (jobs/sequential.ts): at that
 * moment the job holds the layer's Hessian H, its original weight W and the dequantized values of exactly
 * what it wrote, so ‖(W − Q)X‖ / ‖WX‖ over the calibration tokens costs no statistics file. The job records
 * it in the output's quantlens.json (`output_error`); the inspector reads it back here when the quantized
 * checkpoint is compared with the very model the job quantized. A statistics file given by the user wins.
 */
import { existsSync, promises as fs, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LayerMap } from '../checkpoint/scheme';
import type { LayerOutputError, OutputErrorReport } from './outputError';
import { medianSqnr } from './outputError';

/** quantlens.json's `output_error` as the quantize job writes it. */
export interface OutputErrorRecord {
  readonly measured_by: 'quantize job';
  /** Calibration tokens the Hessians summarise. */
  readonly tokens: number;
  readonly layers: Record<string, { readonly relative: number; readonly sqnr_db: number | null }>;
}

/** The record of the errors measured by the job (module → relative error and SQNR). */
export function outputErrorRecord(tokens: number, errors: ReadonlyMap<string, { relative: number; sqnrDb: number }>): OutputErrorRecord {
  // JSON has no Infinity: an exact layer (relative 0) records sqnr_db null; the reader recomputes it.
  const layers = Object.fromEntries([...errors].map(([module, e]) => [module, { relative: e.relative, sqnr_db: Number.isFinite(e.sqnrDb) ? e.sqnrDb : null }]));
  return { measured_by: 'quantize job', tokens, layers };
}

const samePath = (a: string, b: string) => {
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
  return real(a) === real(b);
};

const metadataNumber = (value: unknown) => {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Number.isFinite(n) ? n : undefined;
};

/**
 * The output error recorded in `folder`/quantlens.json, for the quantized layers of `layerMap`, when the job
 * that wrote `folder` quantized `original` (its source_model) and measured one; undefined otherwise.
 */
export async function recordedOutputErrors(folder: string, original: string, layerMap: LayerMap): Promise<OutputErrorReport | undefined> {
  const path = join(folder, 'quantlens.json');
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let record: { source_model?: unknown; calibration?: Record<string, unknown> | null; output_error?: unknown };
  try {
    record = JSON.parse(text) as typeof record;
  } catch (error) {
    throw new Error(`${path}: not valid JSON (${(error as Error).message})`);
  }
  if (record.output_error === undefined) return undefined;
  // Measured against the job's source model: another original would be compared with numbers not its own.
  if (typeof record.source_model !== 'string' || !samePath(record.source_model, original)) return undefined;
  const measured = record.output_error as Partial<OutputErrorRecord> | null;
  if (!measured || typeof measured !== 'object' || typeof measured.layers !== 'object' || measured.layers === null) {
    throw new Error(`${path}: output_error has no layers object (expected { tokens, layers: { "<module>": { relative, sqnr_db } } })`);
  }
  const layers: LayerOutputError[] = [];
  for (const module of layerMap.modules.filter((m) => m.state === 'quantized')) {
    const entry = measured.layers[module.name];
    if (entry === undefined) {
      layers.push({ module: module.name, skipped: 'the quantize job measured no output error for this layer (no Hessian)' });
      continue;
    }
    if (typeof entry?.relative !== 'number' || !(entry.relative >= 0)) throw new Error(`${path}: output_error.layers["${module.name}"].relative is ${JSON.stringify(entry?.relative)}, not a number ≥ 0`);
    layers.push({ module: module.name, relative: entry.relative, sqnrDb: -20 * Math.log10(entry.relative) });
  }
  const calibration = record.calibration ?? {};
  const tokens = metadataNumber(measured.tokens) ?? metadataNumber(calibration.tokens);
  const samples = metadataNumber(calibration.samples);
  const seqLen = metadataNumber(calibration.seq_len);
  return {
    layers,
    ...(tokens !== undefined ? { tokens } : {}),
    ...(samples !== undefined ? { samples } : {}),
    ...(seqLen !== undefined ? { seqLen } : {}),
    ...(typeof calibration.dataset === 'string' ? { dataset: calibration.dataset } : {}),
    medianSqnrDb: medianSqnr(layers),
    measuredBy: 'job',
  };
}
