/**
 * What a user asks a job to do, as plain data: the extension's commands, the recipe preview's Run button
 * and the CLI all describe a job this way, the pre-flight check reads it, and the jobs worker runs it.
 */
import type { GptqJobSettings, OutputFormat, SchemeName } from './quantize';
import type { DevicePreference } from '../runtime/device';
import type { Propagation } from './sequential';

/** Where calibration statistics come from: a statistics file made earlier, or a dataset run now. */
export type CalibrationSource =
  | { readonly kind: 'stats'; readonly path: string }
  | { readonly kind: 'dataset'; readonly path: string; readonly samples: number; readonly seqLen: number };

export interface QuantizeJobSpec {
  readonly kind: 'quantize';
  /** Float checkpoint folder (read only). */
  readonly model: string;
  /** Output folder; must not exist. */
  readonly out: string;
  /** A preset, or… */
  readonly preset?: SchemeName;
  /** …an llm-compressor recipe file. Exactly one of the two. */
  readonly recipe?: string;
  readonly ignore?: readonly string[];
  /** compressed-tensors (default), AutoGPTQ's or AutoFP8's layout. */
  readonly format?: OutputFormat;
  readonly calibration?: CalibrationSource;
  /**
   * With a calibration dataset: which weights carry the hidden states from block to block — 'quantized'
   * (default; each block is calibrated on the outputs of the already-quantized blocks before it, as
   * llm-compressor's sequential pipeline does) or 'float' (the numbers of `quantlens calibrate` + --calib-stats).
   */
  readonly propagation?: Propagation;
  /** GPTQ settings a recipe does not give (dampening, block size, group parameters). */
  readonly gptq?: Partial<GptqJobSettings>;
  readonly maxShardBytes?: number;
  /** Where calibration's onnxruntime sessions run (device.ts's policy; default auto). */
  readonly device?: DevicePreference;
}

export interface CalibrateJobSpec {
  readonly kind: 'calibrate';
  readonly model: string;
  /** The statistics file to write (`*.safetensors`); must not exist. */
  readonly out: string;
  readonly dataset: string;
  readonly samples: number;
  readonly seqLen: number;
  /** Collect GPTQ Hessians too (large: in² floats per distinct layer input). */
  readonly hessians: boolean;
  /** Where the onnxruntime sessions run (device.ts's policy; default auto). */
  readonly device?: DevicePreference;
}

/** A mixed-precision plan (src/core/plan): sensitivity per layer and candidate, then the exact plan as a recipe. */
export interface PlanJobSpec {
  readonly kind: 'plan';
  /** Float checkpoint folder (read only). */
  readonly model: string;
  /** The recipe to write (YAML); must not exist. */
  readonly out: string;
  readonly dataset: string;
  readonly samples: number;
  readonly seqLen: number;
  /** Candidate schemes (plan/candidates.ts): w4a16, w8a16, w8a8, fp8, fp8-dynamic, bf16, with :gN group overrides. */
  readonly candidates: readonly string[];
  /** Average stored bits per linear weight, or a total in bytes of the planned layers' tensors. */
  readonly budget: { readonly bits: number } | { readonly bytes: number };
  readonly device?: DevicePreference;
  /** Limit on the hidden states the measurement holds (default: half the machine's memory). */
  readonly maxHiddenStateBytes?: number;
  /**
   * Quantize with the plan and with each candidate uniformly and measure KL and perplexity on held-out text
   * (plan/verify.ts): by default the calibration file's windows after the calibration's own.
   */
  readonly verify?: { readonly evalDataset?: string; readonly evalSamples?: number };
}

export type JobSpec = QuantizeJobSpec | CalibrateJobSpec | PlanJobSpec;

/** Planning costs about 7 · candidates · (layers + 1) / 2 calibration passes: a smaller default than quantize's. */
export const DEFAULT_PLAN_CALIBRATION = { samples: 32, seqLen: 512 } as const;

/** `plan --verify`'s evaluation windows when none are asked for: a quarter of the calibration's, at least 4. */
export const DEFAULT_EVAL_SAMPLES = (calibrationSamples: number): number => Math.max(4, Math.ceil(calibrationSamples / 4));

/** `plan --verify` keeps the float model's logits between comparisons while they fit in this many bytes. */
export const VERIFY_FLOAT_LOGITS_BYTES = 256 * 1024 * 1024;

/** Defaults llm-compressor's examples use for calibration (512 samples × 2048 tokens is their largest). */
export const DEFAULT_CALIBRATION = { samples: 128, seqLen: 512 } as const;

/** A one-line description of a job for logs, the Jobs view and notifications. */
export function describeJob(spec: JobSpec): string {
  const model = spec.model.split(/[\\/]/).filter(Boolean).at(-1) ?? spec.model;
  if (spec.kind === 'plan') return `Plan ${model} (${spec.candidates.join(', ')} under ${'bits' in spec.budget ? `${spec.budget.bits} bits per weight` : `${spec.budget.bytes} bytes`})`;
  if (spec.kind === 'calibrate') return `Calibrate ${model} (${spec.samples} × ${spec.seqLen} tokens${spec.hessians ? ', with Hessians' : ''})`;
  const what = spec.preset ?? (spec.recipe ? spec.recipe.split(/[\\/]/).at(-1) : 'recipe');
  return `Quantize ${model} → ${what}`;
}
