import { promises as fs } from 'node:fs';
import { FlagSpec, UsageError, parseArgs, DEVICE_FLAG_DESCRIPTION, deviceFlag } from './args';
import { OUTPUT_FORMATS, OutputFormat, SCHEME_PRESETS, SchemeName } from '../core/jobs/quantize';
import { CalibrationSource, DEFAULT_CALIBRATION } from '../core/jobs/jobSpec';
import { defaultCalibrationDataset } from '../core/runtime/dataset';
import { runCliJob } from './progress';
import { PROPAGATIONS, Propagation } from '../core/jobs/sequential';

export const QUANTIZE_FLAGS: Record<string, FlagSpec> = {
  scheme: { type: 'string', description: `one of ${Object.keys(SCHEME_PRESETS).join(', ')} (or give --recipe)` },
  recipe: { type: 'string', description: 'llm-compressor recipe (QuantizationModifier / GPTQModifier) instead of --scheme' },
  format: { type: 'string', description: `output layout: ${OUTPUT_FORMATS.join(', ')} (default compressed-tensors)` },
  out: { type: 'string', description: 'output folder (must not exist; written atomically)' },
  calib: { type: 'string', description: 'calibration dataset (.txt, .jsonl, .json; "default" = shipped WikiText-2 sample), run block by block in the same pass' },
  propagation: { type: 'string', description: 'with --calib: hidden states go from block to block through the quantized weights (quantized, default; as llm-compressor) or the float ones (float)' },
  samples: { type: 'number', description: `calibration samples (default ${DEFAULT_CALIBRATION.samples})` },
  'seq-len': { type: 'number', description: `tokens per calibration sample (default ${DEFAULT_CALIBRATION.seqLen})` },
  'calib-stats': { type: 'string', description: 'calibration statistics file from `quantlens calibrate` instead of --calib' },
  ignore: { type: 'string', description: 'comma-separated modules kept in full precision (default lm_head; re: patterns allowed)' },
  'max-shard-size': { type: 'number', description: 'maximum shard size in bytes (default 5e9)' },
  'dampening-frac': { type: 'number', description: 'GPTQ Hessian dampening, fraction of mean(diag H) (default 0.1; a recipe\'s value wins)' },
  'block-size': { type: 'number', description: 'GPTQ lazy-update block size (default 128; a recipe\'s value wins)' },
  'group-params': { type: 'string', description: 'GPTQ group scales: upfront (llm-compressor, default) or lazy (AutoGPTQ)' },
  device: { type: 'string', description: `calibration: ${DEVICE_FLAG_DESCRIPTION}` },
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
  if (flags['calib-stats'] !== undefined && flags.calib !== undefined) throw new UsageError('give --calib (a dataset) or --calib-stats (a statistics file), not both');
  const propagation = flags.propagation;
  if (propagation !== undefined && !(PROPAGATIONS as readonly unknown[]).includes(propagation)) throw new UsageError(`--propagation must be one of ${PROPAGATIONS.join(', ')}`);
  for (const name of ['samples', 'seq-len', 'propagation'] as const) {
    if (flags[name] !== undefined && flags.calib === undefined) throw new UsageError(`--${name} needs --calib`);
  }
  const calibration: CalibrationSource | undefined =
    typeof flags['calib-stats'] === 'string'
      ? { kind: 'stats', path: flags['calib-stats'] }
      : typeof flags.calib === 'string'
        ? {
            kind: 'dataset',
            path: flags.calib === 'default' ? defaultCalibrationDataset() : flags.calib,
            samples: typeof flags.samples === 'number' ? flags.samples : DEFAULT_CALIBRATION.samples,
            seqLen: typeof flags['seq-len'] === 'number' ? flags['seq-len'] : DEFAULT_CALIBRATION.seqLen,
          }
        : undefined;
  return runCliJob(
    {
      kind: 'quantize',
      model: positionals[0]!,
      out: flags.out,
      ...(scheme ? { preset: scheme as SchemeName } : {}),
      ...(recipe ? { recipe: recipe.path } : {}),
      ...(format ? { format: format as OutputFormat } : {}),
      gptq,
      ignore: typeof flags.ignore === 'string' ? flags.ignore.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
      calibration,
      ...(propagation ? { propagation: propagation as Propagation } : {}),
      maxShardBytes: typeof flags['max-shard-size'] === 'number' ? flags['max-shard-size'] : undefined,
      device: deviceFlag(flags.device),
    },
    out,
    (result) => (result.kind === 'quantize' ? { ...result.quantize, ...(result.calibration ? { calibration: result.calibration } : {}) } : result),
  );
}
