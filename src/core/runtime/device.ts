/**
 * Where onnxruntime sessions run: CUDA when its provider libraries and CUDA/cuDNN load, the CPU otherwise —
 * always with a one-line reason the user can act on. onnxruntime-node never falls back silently: asking for
 * `cuda` when the provider cannot load throws (docs/runtime.md §2), so the probe creates a
 * one-node session on CUDA and reports what it threw.
 */
import { existsSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GraphBuilder, DataType } from './onnx/builder';

export type DevicePreference = 'auto' | 'cpu' | 'cuda';

export interface DeviceReport {
  readonly device: 'cuda' | 'cpu';
  /** One line: why this device (and, for the CPU, what would enable CUDA). */
  readonly reason: string;
  /** Execution providers to pass to InferenceSession.create. */
  readonly executionProviders: readonly string[];
  /** True when the user asked for CUDA and it cannot be used: jobs should stop rather than run on the CPU. */
  readonly failed: boolean;
  /** The error text onnxruntime gave, when a probe failed. */
  readonly detail?: string;
}

/** The provider libraries onnxruntime-node looks for beside libonnxruntime (linux names; .dll on Windows). */
export const CUDA_PROVIDER_FILES = process.platform === 'win32' ? ['onnxruntime_providers_cuda.dll', 'onnxruntime_providers_shared.dll'] : ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'];

/** onnxruntime-node's native folder for this platform (where the CUDA provider libraries must go). */
export function onnxruntimeBinDir(): string {
  const pkg = require.resolve('onnxruntime-node/package.json');
  return join(dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
}

export function onnxruntimeVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('onnxruntime-node/package.json') as { version: string }).version;
}

/** Is an NVIDIA driver present? (Linux: the kernel module's proc entry; elsewhere: nvidia-smi on PATH.) */
export function nvidiaDriverPresent(): boolean {
  if (process.platform === 'linux') return existsSync('/proc/driver/nvidia/version');
  if (process.platform === 'win32') {
    const root = process.env.SystemRoot ?? 'C:\\Windows';
    return existsSync(join(root, 'System32', 'nvidia-smi.exe'));
  }
  return false;
}

let probeModel: Promise<string> | undefined;

/** A one-node model (Identity) written once per process, used to ask a provider to load. */
function identityModel(): Promise<string> {
  probeModel ??= (async () => {
    const folder = await fs.mkdtemp(join(tmpdir(), 'quantlens-probe-'));
    const g = await GraphBuilder.create({ modelPath: join(folder, 'probe.onnx') });
    const x = g.input('x', DataType.FLOAT, [1]);
    g.output(g.op('Identity', [x]), DataType.FLOAT, [1], 'y');
    return (await g.finish()).modelPath;
  })();
  return probeModel;
}

/** The first line of an onnxruntime error, with the advice that usually fixes it. */
export function explainCudaFailure(message: string): string {
  const first = message.split('\n').find((l) => l.trim()) ?? message;
  const library = /lib(cudnn|cublas|cublasLt|cudart|cufft|curand)[\w.]*\.so[\w.]*/.exec(message)?.[0];
  if (library) return `CUDA libraries not found (${library}): install CUDA 12 and cuDNN 9 so the loader finds them (LD_LIBRARY_PATH), then reload`;
  if (/providers_cuda|providers_shared/.test(message)) return `onnxruntime's CUDA provider failed to load: ${first.trim()} — run "QuantLens: Set Up CUDA Runtime…"`;
  if (/driver/i.test(message)) return `the NVIDIA driver is too old for CUDA 12: ${first.trim()}`;
  return `CUDA could not start: ${first.trim()}`;
}

export interface DetectOptions {
  readonly preference?: DevicePreference;
  /** Tests: where to look for the provider libraries (default: onnxruntime-node's native folder). */
  readonly binDir?: string;
  /** Tests: whether a driver is present (default: look). */
  readonly driverPresent?: boolean;
}

export async function detectDevice(options: DetectOptions = {}): Promise<DeviceReport> {
  const preference = options.preference ?? 'auto';
  const cpu = (reason: string, failed = false, detail?: string): DeviceReport => ({ device: 'cpu', reason, executionProviders: ['cpu'], failed, detail });
  if (preference === 'cpu') return cpu('CPU: chosen in settings (quantlens.runtime.device)');
  const wantCuda = preference === 'cuda';
  const driver = options.driverPresent ?? nvidiaDriverPresent();
  if (!driver) return cpu(wantCuda ? 'CUDA was asked for, but no NVIDIA driver was found on this machine' : 'CPU: no NVIDIA GPU driver found', wantCuda);
  let binDir: string;
  try {
    binDir = options.binDir ?? onnxruntimeBinDir();
  } catch (error) {
    return cpu(`CPU: onnxruntime-node is not installed (${(error as Error).message})`, wantCuda);
  }
  const missing = CUDA_PROVIDER_FILES.filter((f) => !existsSync(join(binDir, f)));
  if (missing.length) {
    return cpu(`CPU: an NVIDIA GPU is present, but onnxruntime's CUDA provider is not installed (${missing.join(', ')} missing) — run "QuantLens: Set Up CUDA Runtime…"`, wantCuda);
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');
    const session = await ort.InferenceSession.create(await identityModel(), { executionProviders: ['cuda'] });
    await session.release();
    return { device: 'cuda', reason: 'CUDA: onnxruntime CUDA provider loaded', executionProviders: ['cuda', 'cpu'], failed: false };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return cpu(`CPU: ${explainCudaFailure(message)}`, wantCuda, message);
  }
}

/**
 * Puts CUDA provider libraries the user already has (e.g. unpacked from onnxruntime's GPU package of the
 * same version) beside onnxruntime-node's own library, where it loads them from. Returns what was copied.
 */
export async function installProviderLibraries(fromFolder: string, binDir = onnxruntimeBinDir()): Promise<string[]> {
  const names = await fs.readdir(fromFolder).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot read ${fromFolder}: ${error.code ?? error.message}`);
  });
  const missing = CUDA_PROVIDER_FILES.filter((f) => !names.includes(f));
  if (missing.length) throw new Error(`${fromFolder} does not hold ${missing.join(' and ')}; choose the folder with onnxruntime ${onnxruntimeVersion()}'s CUDA provider libraries (runtimes/linux-x64/native in its GPU package)`);
  const wanted = names.filter((n) => /^(lib)?onnxruntime_providers_(cuda|shared|tensorrt)\.(so|dll)$/.test(n));
  const copied: string[] = [];
  for (const name of wanted) {
    // Copy under a temporary name and rename, so a half-copied library is never loaded.
    const target = join(binDir, name);
    const temp = `${target}.${process.pid}.partial`;
    await fs.copyFile(join(fromFolder, name), temp);
    await fs.rename(temp, target);
    copied.push(target);
  }
  return copied;
}
