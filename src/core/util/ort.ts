/**
 * onnxruntime-node, loaded in one place for the whole process: calibration (jobs/blockPipeline.ts), the
 * decoder with its KV cache (runtime/causalLM.ts: chat, tests, benchmarks), GPTQ's Gemm (quant/gemm.ts), and
 * the child processes that probe providers and node placement (they are given `ortEntryPath()`).
 *
 * It lives in util/ (the lowest layer) because the maths layer (quant/gemm.ts) needs it as much as the runtime.
 * The package is a native addon: its JavaScript loads `bin/napi-v6/<platform>/<arch>/onnxruntime_binding.node`,
 * which is missing when the package was installed for another platform or a `.vsix` for another target was
 * installed. That failure is turned once into `OnnxRuntimeUnavailableError`, which says which platform needs
 * which file, instead of a bare "Cannot find module" from deep inside a job.
 *
 * The module is loaded with `require` at first use (not at the top of a bundle), so the parts of the extension
 * that never run a graph keep working without it.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as Ort from 'onnxruntime-node';

export type { Ort };

export class OnnxRuntimeUnavailableError extends Error {
  override readonly name = 'OnnxRuntimeUnavailableError';
  constructor(readonly detail: string) {
    super(
      `onnxruntime-node could not be loaded for ${process.platform}-${process.arch} (Node ${process.versions.node}): ${detail}. ` +
        'Its native library must be in node_modules/onnxruntime-node/bin/napi-v6/' +
        `${process.platform}/${process.arch}/; install the QuantLens build for this platform (or run npm install here).`,
    );
  }
}

let loaded: typeof Ort | undefined;
let failure: OnnxRuntimeUnavailableError | undefined;

/** The package as `require` resolves it from `from` (a file or folder path); errors become OnnxRuntimeUnavailableError. */
export function loadOrtFrom(from: string): typeof Ort {
  const requireFrom = createRequire(from.endsWith('/') ? from : `${from}/`);
  try {
    return requireFrom('onnxruntime-node') as typeof Ort;
  } catch (error) {
    const message = (error as Error).message.split('\n')[0] ?? String(error);
    throw new OnnxRuntimeUnavailableError(/onnxruntime_binding\.node/.test(message) ? `its native binding is missing (${message})` : message);
  }
}

/** onnxruntime-node, loaded on first call; throws OnnxRuntimeUnavailableError (the same one every time) when it cannot load. */
export function loadOrt(): typeof Ort {
  if (loaded) return loaded;
  if (failure) throw failure;
  try {
    loaded = loadOrtFrom(__dirname);
    return loaded;
  } catch (error) {
    failure = error as OnnxRuntimeUnavailableError;
    throw failure;
  }
}

/** onnxruntime-node, or null when it cannot load (for code with a JavaScript fallback: quant/gemm.ts). */
export function tryLoadOrt(): typeof Ort | null {
  try {
    return loadOrt();
  } catch (error) {
    if (error instanceof OnnxRuntimeUnavailableError) return null;
    throw error;
  }
}

/** The package's entry file, for child processes that load onnxruntime themselves (provider probes, placement). */
export function ortEntryPath(): string {
  return createRequire(`${__dirname}/`).resolve('onnxruntime-node');
}

/** The package's folder. */
export function ortPackageDir(): string {
  return dirname(createRequire(`${__dirname}/`).resolve('onnxruntime-node/package.json'));
}

/** The native folder for this platform, where libonnxruntime and any provider libraries (CUDA) live. */
export function ortNativeDir(): string {
  return join(ortPackageDir(), 'bin', 'napi-v6', process.platform, process.arch);
}

/** The installed onnxruntime-node version (provider libraries must match it exactly). */
export function ortVersion(): string {
  return (createRequire(`${__dirname}/`)('onnxruntime-node/package.json') as { version: string }).version;
}

/** What a session needs: providers in order, threads, optimisation level. Undefined keys are left out (onnxruntime-node rejects present-but-undefined ones). */
export interface SessionSettings {
  readonly executionProviders?: readonly string[];
  readonly intraOpNumThreads?: number;
  readonly graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Constant weights are not prepacked: a MatMul runs the same GEMM whether its weight is an initializer or an input. */
  readonly disablePrepacking?: boolean;
}

/** Creates an inference session on a file or model bytes with the given settings (default: CPU, level `all`). */
export function createSession(model: string | Uint8Array, settings: SessionSettings = {}): Promise<Ort.InferenceSession> {
  const ort = loadOrt();
  const options: Ort.InferenceSession.SessionOptions = {
    executionProviders: [...(settings.executionProviders ?? ['cpu'])] as Ort.InferenceSession.ExecutionProviderConfig[],
    graphOptimizationLevel: settings.graphOptimizationLevel ?? 'all',
  };
  if (settings.intraOpNumThreads !== undefined) options.intraOpNumThreads = settings.intraOpNumThreads;
  if (settings.disablePrepacking) options.extra = { session: { disable_prepacking: '1' } };
  return typeof model === 'string' ? ort.InferenceSession.create(model, options) : ort.InferenceSession.create(model, options);
}
