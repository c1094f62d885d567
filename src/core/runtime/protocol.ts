/**
 * Messages between the runtime host (session.ts, on the caller's thread) and the runtime worker
 * (workers/runtime.worker.ts), which owns every onnxruntime session. Tensors travel as typed arrays whose
 * buffers are transferred, not copied.
 */

export type WireTensorType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'int8' | 'bool';

export type WireTensorData = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

export interface WireTensor {
  readonly type: WireTensorType;
  readonly dims: readonly number[];
  readonly data: WireTensorData;
}

export interface RuntimeSessionOptions {
  /** onnxruntime execution providers in order of preference, e.g. ['cuda'] or ['cpu']. Default ['cpu']. */
  readonly executionProviders?: readonly string[];
  /** Threads inside one operator (default: onnxruntime's choice, all cores). */
  readonly intraOpThreads?: number;
  readonly interOpThreads?: number;
  readonly graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
}

export interface SessionDescription {
  readonly session: number;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly executionProviders: readonly string[];
}

export type ToRuntime =
  | { readonly type: 'create'; readonly id: number; readonly modelPath: string; readonly options: RuntimeSessionOptions }
  | { readonly type: 'run'; readonly id: number; readonly session: number; readonly feeds: Readonly<Record<string, WireTensor>>; readonly outputs?: readonly string[] }
  | { readonly type: 'release'; readonly id: number; readonly session: number };

export type FromRuntime =
  | { readonly type: 'created'; readonly id: number; readonly description: SessionDescription }
  | { readonly type: 'ran'; readonly id: number; readonly outputs: Readonly<Record<string, WireTensor>> }
  | { readonly type: 'released'; readonly id: number }
  | { readonly type: 'error'; readonly id: number; readonly message: string; readonly stage: 'load' | 'run' | 'release' };
