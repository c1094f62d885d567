import { FlagSpec, UsageError, parseArgs, DEVICE_FLAG_DESCRIPTION, deviceFlag } from './args';
import { DEFAULT_CALIBRATION } from '../core/jobs/jobSpec';
import { defaultCalibrationDataset } from '../core/runtime/dataset';
import { runCliJob } from './progress';

export const CALIBRATE_FLAGS: Record<string, FlagSpec> = {
  data: { type: 'string', description: 'dataset: .txt, .jsonl (text or messages) or .json; "default" = the shipped WikiText-2 sample' },
  out: { type: 'string', description: 'statistics file to write (.safetensors; must not exist)' },
  samples: { type: 'number', description: `number of samples (default ${DEFAULT_CALIBRATION.samples})` },
  'seq-len': { type: 'number', description: `tokens per sample (default ${DEFAULT_CALIBRATION.seqLen})` },
  hessians: { type: 'boolean', description: 'also collect GPTQ Hessians (in × in per layer input; large)' },
  device: { type: 'string', description: DEVICE_FLAG_DESCRIPTION },
};

export async function calibrateCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { positionals, flags } = parseArgs(argv, CALIBRATE_FLAGS);
  if (positionals.length !== 1) throw new UsageError('calibrate needs exactly one MODEL folder');
  if (typeof flags.out !== 'string') throw new UsageError('--out FILE is required');
  if (!flags.out.endsWith('.safetensors')) throw new UsageError('--out must name a .safetensors file');
  const data = typeof flags.data === 'string' && flags.data !== 'default' ? flags.data : defaultCalibrationDataset();
  const samples = typeof flags.samples === 'number' ? flags.samples : DEFAULT_CALIBRATION.samples;
  const seqLen = typeof flags['seq-len'] === 'number' ? flags['seq-len'] : DEFAULT_CALIBRATION.seqLen;
  return runCliJob({ kind: 'calibrate', model: positionals[0]!, out: flags.out, dataset: data, samples, seqLen, hessians: flags.hessians === true, device: deviceFlag(flags.device) }, out, (result) =>
    result.kind === 'calibrate' ? result.calibration : result,
  );
}
