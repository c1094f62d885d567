/**
 * `quantlens` — the command-line shell over the core. Errors end in exit code 1 and one clear line on
 * stderr (`quantlens: error: …`); usage mistakes in exit code 2. Anything else is a bug: `quantlens:
 * unexpected error: …` with the stack, so that a bug report carries it.
 */
import { CheckpointError } from '../core/safetensors/checkpoint';
import { SafetensorsError } from '../core/safetensors/errors';
import { UsageError } from './args';
import { INSPECT_FLAGS, inspectCommand } from './inspect';
import { VALIDATE_FLAGS, validateCommand } from './validate';
import { QUANTIZE_FLAGS, quantizeCommand } from './quantize';
import { QuantizeError } from '../core/quant/rtn';
import { CALIBRATE_FLAGS, calibrateCommand } from './calibrate';
import { PreflightFailed } from '../core/jobs/runJob';
import { JobIoError } from '../core/jobs/jobErrors';
import { OutputBusyError } from '../core/jobs/outputLock';
import { CHAT_FLAGS, ChatCommandError, chatCommand } from './chat';
import { DeviceUnavailableError } from '../core/runtime/device';
import { PlacementError } from '../core/runtime/placement';
import { PLAN_FLAGS, planCommand } from './plan';
import { PlanBudgetError } from '../core/plan/knapsack';
import { PlanInputError } from '../core/plan/budget';
import { CandidateError } from '../core/plan/candidates';

const USAGE = `usage: quantlens <command> [options]

commands:
  inspect PATH [--json] [--limit N]   summarize a .safetensors file, an index.json or a checkpoint folder
${Object.entries(INSPECT_FLAGS)
  .map(([name, flag]) => `      --${name.padEnd(10)} ${flag.description}`)
  .join('\n')}
  quantize MODEL --scheme S --out DIR  quantize a float checkpoint (compressed-tensors output vLLM loads)
${Object.entries(QUANTIZE_FLAGS)
  .map(([name, flag]) => `      --${name.padEnd(14)} ${flag.description}`)
  .join('\n')}
  calibrate MODEL --out FILE           run a dataset through the model and write activation statistics
                                       (input absmax, optional GPTQ Hessians) for quantize --calib-stats
${Object.entries(CALIBRATE_FLAGS)
  .map(([name, flag]) => `      --${name.padEnd(14)} ${flag.description}`)
  .join('\n')}
  plan MODEL --calib DATASET --candidates S[,S…] (--bits B | --size BYTES) --out RECIPE.yaml [--verify]
                                       measure each linear layer's sensitivity (KL on the outputs) and write
                                       the exact mixed-precision plan under the budget as a recipe
${Object.entries(PLAN_FLAGS)
  .map(([name, flag]) => `      --${name.padEnd(14)} ${flag.description}`)
  .join('\n')}
  validate FILE [--model DIR] [--json] check an llm-compressor recipe or a config.json / quantize_config.json;
                                       exit 1 on errors
${Object.entries(VALIDATE_FLAGS)
  .map(([name, flag]) => `      --${name.padEnd(10)} ${flag.description}`)
  .join('\n')}
  chat MODEL --prompt TEXT [--compare ORIGINAL] [--greedy] [--json]
                                       one chat turn, streamed; with --compare side by side with the original
${Object.entries(CHAT_FLAGS)
  .map(([name, flag]) => `      --${name.padEnd(14)} ${flag.description}`)
  .join('\n')}
  help                                 show this text
`;

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'inspect':
        return await inspectCommand(rest, process.stdout);
      case 'validate':
        return await validateCommand(rest, process.stdout);
      case 'quantize':
        return await quantizeCommand(rest, process.stdout);
      case 'calibrate':
        return await calibrateCommand(rest, process.stdout);
      case 'plan':
        return await planCommand(rest, process.stdout);
      case 'chat':
        return await chatCommand(rest, process.stdout);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`quantlens: ${error.message}\n(run \`quantlens help\` for usage)\n`);
      return 2;
    }
    if (error instanceof SafetensorsError || error instanceof CheckpointError || error instanceof QuantizeError || error instanceof PreflightFailed || error instanceof ChatCommandError || error instanceof JobIoError || error instanceof OutputBusyError || error instanceof DeviceUnavailableError || error instanceof PlacementError || error instanceof PlanBudgetError || error instanceof PlanInputError || error instanceof CandidateError) {
      process.stderr.write(`quantlens: error: ${error.message}\n`);
      return 1;
    }
    const message = error instanceof Error ? error.message : String(error);
    const stack = error instanceof Error && error.stack ? `\n${error.stack}` : '';
    process.stderr.write(`quantlens: unexpected error: ${message}${stack}\n(this is a bug in QuantLens; please report it with the lines above)\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`quantlens: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
