/** A small, strict argument parser: unknown flags are errors, so typos never run a job with defaults. */
import { DevicePreference, parseDevicePreference } from '../core/runtime/device';

export interface FlagSpec {
  readonly type: 'boolean' | 'string' | 'number';
  readonly description: string;
}

export interface ParsedArgs {
  readonly positionals: string[];
  readonly flags: Record<string, string | number | boolean | undefined>;
}

export class UsageError extends Error {}

export const DEVICE_FLAG_DESCRIPTION = 'where onnxruntime runs: auto (default: CUDA, else a GPU through WebGPU, else the CPU), cpu, cuda or webgpu; a device asked for that cannot be used is an error';

/** `--device auto|cpu|cuda|webgpu` (device.ts's policy). */
export function deviceFlag(value: string | number | boolean | undefined): DevicePreference {
  try {
    return parseDevicePreference(value, '--device');
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export function parseArgs(argv: readonly string[], spec: Readonly<Record<string, FlagSpec>>): ParsedArgs {
  const positionals: string[] = [];
  const flags: Record<string, string | number | boolean | undefined> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const flag = spec[name];
    if (!flag) throw new UsageError(`unknown option --${name}`);
    if (flag.type === 'boolean') {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      flags[name] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    if (flag.type === 'number') {
      const number = Number(value);
      if (!Number.isFinite(number)) throw new UsageError(`--${name} needs a number, got ${JSON.stringify(value)}`);
      flags[name] = number;
    } else {
      flags[name] = value;
    }
  }
  return { positionals, flags };
}
