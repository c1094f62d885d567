import { FlagSpec, UsageError, parseArgs } from './args';
import { CalibrationFile } from '../core/jobs/calibrationFile';
import { JobCancelled, SCHEME_PRESETS, SchemeName, runQuantizeJob } from '../core/jobs/quantize';

export const QUANTIZE_FLAGS: Record<string, FlagSpec> = {
  scheme: { type: 'string', description: `one of ${Object.keys(SCHEME_PRESETS).join(', ')}` },
  out: { type: 'string', description: 'output folder (must not exist; written atomically)' },
  'calib-stats': { type: 'string', description: 'calibration statistics file (input absmax, Hessians) for fp8 and w4a16' },
  ignore: { type: 'string', description: 'comma-separated modules kept in full precision (default lm_head; re: patterns allowed)' },
  'max-shard-size': { type: 'number', description: 'maximum shard size in bytes (default 5e9)' },
};

export async function quantizeCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { positionals, flags } = parseArgs(argv, QUANTIZE_FLAGS);
  if (positionals.length !== 1) throw new UsageError('quantize needs exactly one MODEL folder');
  const scheme = flags.scheme;
  if (typeof scheme !== 'string' || !(scheme in SCHEME_PRESETS)) throw new UsageError(`--scheme must be one of ${Object.keys(SCHEME_PRESETS).join(', ')}`);
  if (typeof flags.out !== 'string') throw new UsageError('--out DIR is required');
  const calibration = typeof flags['calib-stats'] === 'string' ? await CalibrationFile.open(flags['calib-stats']) : undefined;
  const controller = new AbortController();
  const onSignal = () => {
    process.stderr.write('\nquantlens: cancelling…\n');
    controller.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let last = 0;
  try {
    const summary = await runQuantizeJob({
      model: positionals[0]!,
      out: flags.out,
      scheme: scheme as SchemeName,
      ignore: typeof flags.ignore === 'string' ? flags.ignore.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
      calibration,
      maxShardBytes: typeof flags['max-shard-size'] === 'number' ? flags['max-shard-size'] : undefined,
      signal: controller.signal,
      log: (line) => process.stderr.write(`${line}\n`),
      onProgress: ({ fraction, stage, module }) => {
        const now = Date.now();
        if (now - last < 250 && fraction < 1) return;
        last = now;
        process.stderr.write(`${process.stderr.isTTY ? '\r' : ''}${stage} ${(fraction * 100).toFixed(0)}%${module ? ` ${module}` : ''}${process.stderr.isTTY ? '\u001b[K' : '\n'}`);
      },
    });
    if (process.stderr.isTTY) process.stderr.write('\n');
    out.write(`${JSON.stringify(summary, null, 2)}\n`);
    return 0;
  } catch (error) {
    if (error instanceof JobCancelled) {
      process.stderr.write('quantlens: cancelled; no output was written\n');
      return 130;
    }
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await calibration?.close();
  }
}
