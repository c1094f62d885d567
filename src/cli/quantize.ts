import { promises as fs } from 'node:fs';
import { FlagSpec, UsageError, parseArgs } from './args';
import { CalibrationFile } from '../core/jobs/calibrationFile';
import { JobCancelled, OUTPUT_FORMATS, OutputFormat, SCHEME_PRESETS, SchemeName, runQuantizeJob } from '../core/jobs/quantize';

export const QUANTIZE_FLAGS: Record<string, FlagSpec> = {
  scheme: { type: 'string', description: `one of ${Object.keys(SCHEME_PRESETS).join(', ')} (or give --recipe)` },
  recipe: { type: 'string', description: 'llm-compressor recipe (QuantizationModifier / GPTQModifier) instead of --scheme' },
  format: { type: 'string', description: `output layout: ${OUTPUT_FORMATS.join(', ')} (default compressed-tensors)` },
  out: { type: 'string', description: 'output folder (must not exist; written atomically)' },
  'calib-stats': { type: 'string', description: 'calibration statistics file (input absmax, Hessians) for fp8 and w4a16' },
  ignore: { type: 'string', description: 'comma-separated modules kept in full precision (default lm_head; re: patterns allowed)' },
  'max-shard-size': { type: 'number', description: 'maximum shard size in bytes (default 5e9)' },
  'dampening-frac': { type: 'number', description: 'GPTQ Hessian dampening, fraction of mean(diag H) (default 0.1; a recipe\'s value wins)' },
  'block-size': { type: 'number', description: 'GPTQ lazy-update block size (default 128; a recipe\'s value wins)' },
  'group-params': { type: 'string', description: 'GPTQ group scales: upfront (llm-compressor, default) or lazy (AutoGPTQ)' },
};

export async function quantizeCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { positionals, flags } = parseArgs(argv, QUANTIZE_FLAGS);
  if (positionals.length !== 1) throw new UsageError('quantize needs exactly one MODEL folder');
  const scheme = flags.scheme;
  const recipePath = flags.recipe;
  if (scheme === undefined && recipePath === undefined) throw new UsageError(`--scheme (${Object.keys(SCHEME_PRESETS).join(', ')}) or --recipe FILE is required`);
  if (scheme !== undefined && recipePath !== undefined) throw new UsageError('give --scheme or --recipe, not both');
  if (scheme !== undefined && (typeof scheme !== 'string' || !(scheme in SCHEME_PRESETS))) throw new UsageError(`--scheme must be one of ${Object.keys(SCHEME_PRESETS).join(', ')}`);
  if (typeof flags.out !== 'string') throw new UsageError('--out DIR is required');
  const format = flags.format;
  if (format !== undefined && (typeof format !== 'string' || !(OUTPUT_FORMATS as readonly string[]).includes(format))) throw new UsageError(`--format must be one of ${OUTPUT_FORMATS.join(', ')}`);
  const groupParams = flags['group-params'];
  if (groupParams !== undefined && groupParams !== 'upfront' && groupParams !== 'lazy') throw new UsageError('--group-params must be upfront or lazy');
  let recipe: { text: string; path: string } | undefined;
  if (typeof recipePath === 'string') {
    try {
      recipe = { text: await fs.readFile(recipePath, 'utf8'), path: recipePath };
    } catch (error) {
      throw new UsageError(`cannot read the recipe ${recipePath}: ${(error as Error).message}`);
    }
  }
  const gptq = {
    ...(typeof flags['dampening-frac'] === 'number' ? { dampeningFrac: flags['dampening-frac'] } : {}),
    ...(typeof flags['block-size'] === 'number' ? { blockSize: flags['block-size'] } : {}),
    ...(groupParams ? { groupParams: groupParams as 'upfront' | 'lazy' } : {}),
  };
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
      ...(scheme ? { scheme: scheme as SchemeName } : {}),
      ...(recipe ? { recipe } : {}),
      ...(format ? { format: format as OutputFormat } : {}),
      gptq,
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
