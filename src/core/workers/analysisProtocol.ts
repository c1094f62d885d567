/** Messages between the analysis worker and its clients (extension host, CLI). */
import type { CheckpointAnalysis } from '../checkpoint/summary';
import type { HealthReport } from '../inspect/health';
import type { ModuleScales } from '../inspect/scales';
import type { TensorStatistics } from '../stats/tensorStats';
import type { WeightStatistics, WeightView } from '../stats/weightStats';
import type { ErrorReport, SimulationName } from '../inspect/error';

export interface AnalysisMethods {
  /** Header-level analysis: summary and layer map. */
  analyze: { params: { path: string }; result: CheckpointAnalysis };
  /** Statistics of a tensor as stored, or with `view`, of the quantized weight whose codes it holds. */
  tensorStats: { params: { path: string; tensor: string; bins?: number; view?: WeightView }; result: TensorStatistics | WeightStatistics };
  scales: { params: { path: string }; result: ModuleScales[] };
  health: { params: { path: string; weights?: boolean }; result: HealthReport };
  /** Quantization error per layer: a simulation on a float checkpoint, or a comparison with `original`. */
  errors: { params: { path: string; simulation?: SimulationName; original?: string; calibStats?: string }; result: ErrorReport };
  /** Releases the worker's open file handles for a checkpoint. */
  close: { params: { path: string }; result: void };
}

export type MethodName = keyof AnalysisMethods;

export type ToWorker =
  | { readonly type: 'run'; readonly id: number; readonly method: MethodName; readonly params: unknown }
  | { readonly type: 'cancel'; readonly id: number };

export type FromWorker =
  | { readonly type: 'progress'; readonly id: number; readonly fraction: number; readonly what?: string }
  | { readonly type: 'result'; readonly id: number; readonly result: unknown }
  | { readonly type: 'error'; readonly id: number; readonly message: string; readonly cancelled?: boolean };
