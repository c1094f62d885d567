/**
 * Where onnxruntime sessions run — the one device policy of QuantLens (docs/runtime.md §7):
 *
 * - `cpu`: the CPU execution provider.
 * - `cuda`: onnxruntime's CUDA provider; an error (DeviceUnavailableError) with the reason when it cannot load.
 * - `webgpu`: onnxruntime-node's built-in WebGPU provider (Dawn over Vulkan on Linux); an error when no
 *   adapter is found. A CPU-emulated Vulkan driver (SwiftShader, lavapipe) is used when asked for explicitly.
 * - `auto`: CUDA when its provider loads, else WebGPU when a hardware adapter is found, else the CPU — with
 *   the reason for each step. A software (CPU-emulated) Vulkan adapter is not a GPU: auto skips it.
 *
 * onnxruntime-node never falls back silently (asking for `cuda` or `webgpu` without one throws), and a
 * provider's first initialisation may be slow or abort the process (Dawn, CUDA contexts), so each probe
 * creates a one-node session in a child process with a timeout; results are cached per process.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, promises as fs } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { GraphBuilder, DataType } from './onnx/builder';
import { int4AccuracyLevelFor, int8KernelFor, type Fp8WeightMode, type GraphTarget, type Int8Kernel } from './llama/linear';
import { ortEntryPath, ortNativeDir, ortVersion } from '../util/ort';

export const DEVICE_PREFERENCES = ['auto', 'cpu', 'cuda', 'webgpu'] as const;
export type DevicePreference = (typeof DEVICE_PREFERENCES)[number];
export type DeviceKind = 'cpu' | 'cuda' | 'webgpu';

export interface DeviceReport {
  /** Where sessions run; 'cpu' with `failed` when the device asked for cannot be used. */
  readonly device: DeviceKind;
  /** One line: why this device (and, for the CPU, what would enable a GPU). */
  readonly reason: string;
  /** Execution providers to pass to InferenceSession.create (one: onnxruntime assigns what a GPU provider lacks to the CPU itself, and placement.ts reports it). */
  readonly executionProviders: readonly string[];
  /** True when the user asked for a device that cannot be used: jobs stop rather than run on the CPU. */
  readonly failed: boolean;
  /** The error text onnxruntime gave, when a probe failed. */
  readonly detail?: string;
}

/** A device that was asked for and cannot be used: never replaced by the CPU silently. */
export class DeviceUnavailableError extends Error {
  override readonly name = 'DeviceUnavailableError';
  constructor(readonly device: DevicePreference, readonly reason: string, readonly detail?: string) {
    super(reason);
  }
}

/** A `--device` / setting value, checked: anything else is a clear error naming where it came from. */
export function parseDevicePreference(value: unknown, where = '--device'): DevicePreference {
  if (value === undefined) return 'auto';
  if (typeof value === 'string' && (DEVICE_PREFERENCES as readonly string[]).includes(value)) return value as DevicePreference;
  throw new Error(`${where} must be one of ${DEVICE_PREFERENCES.join(', ')}, got ${JSON.stringify(value)}`);
}

/** How a graph for `device` is built: the kernels its provider has, never the host CPU's flags for a GPU. */
export interface DeviceGraphOptions {
  readonly target: GraphTarget;
  /**
   * fp32 on the CPU; fp16 on CUDA (its GroupQueryAttention has no fp32 kernel); fp32 on WebGPU (fp16 needs
   * the adapter's shader-f16 feature, which onnxruntime-node does not report and SwiftShader lacks).
   */
  readonly precision: 'fp32' | 'fp16';
  /** The CPU provider's MatMulInteger variant follows the host CPU (VNNI); CUDA's is int8 × int8 (linear.ts int8KernelFor). */
  readonly int8Kernel: Int8Kernel;
  /** MatMulNBits: int8 compute (4) is the CPU's fast path; GPUs compute in float (0). */
  readonly int4AccuracyLevel: number;
  /**
   * FP8 weights: expanded once to float32 at graph build where the provider has no FP8 matrix kernel (the
   * CPU dequantized the whole weight in every run: FP8 decode at 0.06–0.18× the fp32 graph; WebGPU has no
   * float8 kernels), 4 bytes per weight instead of 1; CUDA dequantizes on the GPU and keeps 1 byte per weight.
   */
  readonly fp8Weights: Fp8WeightMode;
}

export function graphOptionsFor(device: DeviceKind): DeviceGraphOptions {
  const kernels = { int8Kernel: int8KernelFor(device), int4AccuracyLevel: int4AccuracyLevelFor(device) };
  switch (device) {
    case 'cpu':
      return { target: 'cpu', precision: 'fp32', ...kernels, fp8Weights: 'expand' };
    case 'cuda':
      return { target: 'cuda', precision: 'fp16', ...kernels, fp8Weights: 'stored' };
    case 'webgpu':
      return { target: 'webgpu', precision: 'fp32', ...kernels, fp8Weights: 'expand' };
  }
}

/**
 * Longest run of new tokens onnxruntime's WebGPU GroupQueryAttention computes correctly: on onnxruntime-node
 * 1.30 (SwiftShader) it is wrong (8% relative logits) for 32 or more new tokens in one run and right for up to
 * 31, also over a 64-token cache — one GroupQueryAttention node alone reproduces it (docs/runtime.md §7).
 * QuantLens's own WebGPU graphs do not use that kernel (llama/attention.ts) and take any number of tokens per
 * run; a model folder's own ONNX graph that has GroupQueryAttention on WebGPU is fed in runs of this many.
 */
export const WEBGPU_GQA_MAX_TOKENS_PER_RUN = 16;

/** What the provider is called in onnxruntime's logs. */
export function providerName(device: DeviceKind): string {
  return device === 'cuda' ? 'CUDAExecutionProvider' : device === 'webgpu' ? 'WebGpuExecutionProvider' : 'CPUExecutionProvider';
}

/** The provider libraries onnxruntime-node looks for beside libonnxruntime (linux names; .dll on Windows). */
export const CUDA_PROVIDER_FILES = process.platform === 'win32' ? ['onnxruntime_providers_cuda.dll', 'onnxruntime_providers_shared.dll'] : ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'];

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

/** What the CUDA probe found. */
export type CudaFacts = { readonly usable: true } | { readonly usable: false; readonly reason: string; readonly detail?: string };

/** What the WebGPU probe found. */
export type WebGpuFacts =
  | {
      readonly usable: true;
      /** Every Vulkan driver the loader can use is a CPU implementation (SwiftShader, lavapipe): not a GPU. */
      readonly software: boolean;
      /** The Vulkan driver libraries found (ICD manifests' library_path), for the reason line. */
      readonly drivers: readonly string[];
    }
  | { readonly usable: false; readonly reason: string; readonly detail?: string };

export interface DeviceFacts {
  readonly cuda?: CudaFacts;
  readonly webgpu?: WebGpuFacts;
}

const softwareDriverNames = (drivers: readonly string[]) => drivers.map((d) => d.split(/[\\/]/).pop() ?? d).join(', ');

/**
 * The policy itself, from probe results (pure: tested with each combination). `facts` needs the CUDA facts
 * for `cuda` and `auto`, the WebGPU facts for `webgpu` and for `auto` when CUDA is not usable.
 */
export function decideDevice(preference: DevicePreference, facts: DeviceFacts): DeviceReport {
  const cpu = (reason: string, failed = false, detail?: string): DeviceReport => ({ device: 'cpu', reason, executionProviders: ['cpu'], failed, ...(detail ? { detail } : {}) });
  const cuda: DeviceReport = { device: 'cuda', reason: 'CUDA: onnxruntime CUDA provider loaded', executionProviders: ['cuda'], failed: false };
  const webgpu = (reason: string): DeviceReport => ({ device: 'webgpu', reason, executionProviders: ['webgpu'], failed: false });
  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`decideDevice(${preference}) needs the ${what} probe's result`);
    return value;
  };
  switch (preference) {
    case 'cpu':
      return cpu('CPU: chosen in settings (quantlens.runtime.device / --device cpu)');
    case 'cuda': {
      const c = need(facts.cuda, 'CUDA');
      return c.usable ? cuda : cpu(`CUDA was asked for, but ${c.reason}`, true, c.detail);
    }
    case 'webgpu': {
      const w = need(facts.webgpu, 'WebGPU');
      if (!w.usable) return cpu(`WebGPU was asked for, but ${w.reason}`, true, w.detail);
      return webgpu(w.software
        ? `WebGPU: as asked, on a CPU-emulated Vulkan driver (${softwareDriverNames(w.drivers)}) — correct but slow, not a GPU`
        : `WebGPU: onnxruntime's WebGPU provider found a Vulkan adapter (${softwareDriverNames(w.drivers) || 'system driver'})`);
    }
    case 'auto': {
      const c = need(facts.cuda, 'CUDA');
      if (c.usable) return cuda;
      const w = need(facts.webgpu, 'WebGPU');
      if (w.usable && !w.software) return webgpu(`WebGPU: ${c.reason}; onnxruntime's WebGPU provider found a Vulkan adapter (${softwareDriverNames(w.drivers) || 'system driver'})`);
      const gpu = w.usable
        ? `the only WebGPU adapter is a CPU-emulated Vulkan driver (${softwareDriverNames(w.drivers)}), not a GPU — choose webgpu explicitly to use it anyway`
        : w.reason;
      return cpu(`CPU: ${c.reason}; ${gpu}`, false, c.detail ?? (w.usable ? undefined : w.detail));
    }
  }
}

/**
 * The Vulkan ICD manifests the loader would read, in its own order of sources: VK_DRIVER_FILES /
 * VK_ICD_FILENAMES (replace the search), else the XDG config and data folders and /etc; VK_ADD_DRIVER_FILES
 * adds to either. Each entry is a manifest file or a folder of them. Returns the drivers' library paths.
 */
export function vulkanDriverLibraries(env: NodeJS.ProcessEnv = process.env): string[] {
  const split = (v: string | undefined) => (v ?? '').split(process.platform === 'win32' ? ';' : ':').filter(Boolean);
  let sources = split(env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES);
  if (sources.length === 0) {
    const home = env.HOME ?? homedir();
    const configDirs = [env.XDG_CONFIG_HOME || join(home, '.config'), ...split(env.XDG_CONFIG_DIRS || '/etc/xdg'), '/etc'];
    const dataDirs = [env.XDG_DATA_HOME || join(home, '.local', 'share'), ...split(env.XDG_DATA_DIRS || '/usr/local/share:/usr/share')];
    sources = [...configDirs, ...dataDirs].map((d) => join(d, 'vulkan', 'icd.d'));
  }
  sources.push(...split(env.VK_ADD_DRIVER_FILES));
  const manifests: string[] = [];
  for (const source of sources) {
    try {
      if (statSync(source).isDirectory()) manifests.push(...readdirSync(source).filter((n) => n.endsWith('.json')).sort().map((n) => join(source, n)));
      else manifests.push(source);
    } catch {
      // A folder that does not exist is simply not a source.
    }
  }
  const libraries: string[] = [];
  for (const manifest of manifests) {
    try {
      const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { ICD?: { library_path?: unknown } };
      const path = parsed.ICD?.library_path;
      if (typeof path === 'string') libraries.push(path.startsWith('.') ? resolve(dirname(manifest), path) : path);
    } catch {
      // An unreadable manifest is skipped, as the loader skips it.
    }
  }
  return libraries;
}

/** Vulkan drivers that run on the CPU: SwiftShader, Mesa's lavapipe (lvp), the loader's mock driver. */
export function isSoftwareVulkanDriver(library: string): boolean {
  const name = library.split(/[\\/]/).pop() ?? library;
  return /swiftshader|lvp|lavapipe|llvmpipe|mock_icd/i.test(name);
}

/** The child process of a probe: creates a session of `model` on one provider; prints OK or the error. */
const PROBE_SCRIPT = `
const [ortPath, model, provider] = process.argv.slice(1);
require(ortPath).InferenceSession.create(model, { executionProviders: [provider] })
  .then((s) => s.release()).then(() => process.stdout.write('QUANTLENS-PROBE-OK\\n'),
    (e) => process.stdout.write('QUANTLENS-PROBE-FAILED ' + JSON.stringify(String(e && e.message || e)) + '\\n'));
`;

export interface ProbeOutcome {
  readonly ok: boolean;
  /** onnxruntime's error, or how the child ended (signal, timeout) and its stderr. */
  readonly detail?: string;
}

/** Environment of a child that runs onnxruntime: Node mode under Electron, a runtime folder for Dawn. */
export function runtimeChildEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, ELECTRON_RUN_AS_NODE: '1', XDG_RUNTIME_DIR: env.XDG_RUNTIME_DIR || tmpdir() };
}

/** Creates a one-node session on `provider` in a child process; a crash or a hang is a failed probe. */
export async function probeProvider(provider: 'cuda' | 'webgpu', options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ProbeOutcome> {
  const model = await identityModel();
  const ortPath = ortEntryPath();
  return new Promise((resolveOutcome) => {
    const child = spawn(process.execPath, ['-e', PROBE_SCRIPT, ortPath, model, provider], { stdio: ['ignore', 'pipe', 'pipe'], env: runtimeChildEnv(options.env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 60_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolveOutcome({ ok: false, detail: `the probe process could not start: ${error.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (stdout.includes('QUANTLENS-PROBE-OK')) return resolveOutcome({ ok: true });
      const failed = /QUANTLENS-PROBE-FAILED (.*)/.exec(stdout)?.[1];
      if (failed) return resolveOutcome({ ok: false, detail: JSON.parse(failed) as string });
      const how = timedOut ? `did not finish within ${(options.timeoutMs ?? 60_000) / 1000} s` : `crashed (${signal ?? `exit code ${code}`})`;
      resolveOutcome({ ok: false, detail: `the ${provider} probe ${how}${stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}` });
    });
  });
}

export interface DetectOptions {
  readonly preference?: DevicePreference;
  /** Tests: where to look for the CUDA provider libraries (default: onnxruntime-node's native folder). */
  readonly binDir?: string;
  /** Tests: whether an NVIDIA driver is present (default: look). */
  readonly driverPresent?: boolean;
  /** The environment the probes (and later sessions) see: VK_ICD_FILENAMES etc. Default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

async function probeCuda(options: DetectOptions): Promise<CudaFacts> {
  const driver = options.driverPresent ?? nvidiaDriverPresent();
  if (!driver) return { usable: false, reason: 'no NVIDIA GPU driver found on this machine' };
  let binDir: string;
  try {
    binDir = options.binDir ?? ortNativeDir();
  } catch (error) {
    return { usable: false, reason: `onnxruntime-node is not installed (${(error as Error).message})` };
  }
  const missing = CUDA_PROVIDER_FILES.filter((f) => !existsSync(join(binDir, f)));
  if (missing.length) return { usable: false, reason: `an NVIDIA GPU is present, but onnxruntime's CUDA provider is not installed (${missing.join(', ')} missing) — run "QuantLens: Set Up CUDA Runtime…"` };
  const outcome = await probeProvider('cuda', options);
  return outcome.ok ? { usable: true } : { usable: false, reason: explainCudaFailure(outcome.detail ?? ''), detail: outcome.detail };
}

async function probeWebGpu(options: DetectOptions): Promise<WebGpuFacts> {
  const env = options.env ?? process.env;
  const drivers = vulkanDriverLibraries(env);
  const outcome = await probeProvider('webgpu', options);
  if (!outcome.ok) {
    const noAdapter = /Failed to get a WebGPU adapter/i.test(outcome.detail ?? '');
    const why = noAdapter
      ? drivers.length === 0
        ? 'no WebGPU adapter: no Vulkan driver (ICD) was found — install the GPU vendor\'s Vulkan driver and the Vulkan loader (libvulkan1)'
        : `no WebGPU adapter: Dawn could not use the Vulkan driver(s) ${softwareDriverNames(drivers)} (is the Vulkan loader libvulkan1 installed?)`
      : `onnxruntime's WebGPU provider could not start: ${(outcome.detail ?? '').split('\n')[0]}`;
    return { usable: false, reason: why, detail: outcome.detail };
  }
  return { usable: true, software: drivers.length > 0 && drivers.every(isSoftwareVulkanDriver), drivers };
}

const factsCache = new Map<string, Promise<unknown>>();

/** A probe's result, once per process for the same inputs (a probe starts a process: seconds). */
function cachedProbe<T>(kind: string, options: DetectOptions, probe: () => Promise<T>): Promise<T> {
  const env = options.env ?? process.env;
  const key = JSON.stringify([kind, options.binDir, options.driverPresent, env.VK_ICD_FILENAMES, env.VK_DRIVER_FILES, env.VK_ADD_DRIVER_FILES, env.LD_LIBRARY_PATH]);
  let entry = factsCache.get(key) as Promise<T> | undefined;
  if (!entry) factsCache.set(key, (entry = probe()));
  return entry;
}

/** Probes what `preference` needs (cached per process) and applies the policy. Never throws for an unusable device: see `failed`. */
export async function detectDevice(options: DetectOptions = {}): Promise<DeviceReport> {
  const preference = options.preference ?? 'auto';
  if (preference === 'cpu') return decideDevice('cpu', {});
  const cuda = preference === 'webgpu' ? undefined : await cachedProbe('cuda', options, () => probeCuda(options));
  const webgpu = preference === 'cuda' || cuda?.usable ? undefined : await cachedProbe('webgpu', options, () => probeWebGpu(options));
  return decideDevice(preference, { cuda, webgpu });
}

/** The device to run on, or DeviceUnavailableError when the one asked for cannot be used. */
export async function requireDevice(preference: DevicePreference = 'auto', options: Omit<DetectOptions, 'preference'> = {}): Promise<DeviceReport> {
  const report = await detectDevice({ ...options, preference });
  if (report.failed) throw new DeviceUnavailableError(preference, report.reason, report.detail);
  return report;
}

/**
 * Puts CUDA provider libraries the user already has (e.g. unpacked from onnxruntime's GPU package of the
 * same version) beside onnxruntime-node's own library, where it loads them from. Returns what was copied.
 */
export async function installProviderLibraries(fromFolder: string, binDir = ortNativeDir()): Promise<string[]> {
  const names = await fs.readdir(fromFolder).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot read ${fromFolder}: ${error.code ?? error.message}`);
  });
  const missing = CUDA_PROVIDER_FILES.filter((f) => !names.includes(f));
  if (missing.length) throw new Error(`${fromFolder} does not hold ${missing.join(' and ')}; choose the folder with onnxruntime ${ortVersion()}'s CUDA provider libraries (runtimes/linux-x64/native in its GPU package)`);
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
