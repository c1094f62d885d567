/** `quantlens plan`: per-layer sensitivity, the exact mixed-precision plan under a budget, and its recipe. */
import { FlagSpec, UsageError, parseArgs, DEVICE_FLAG_DESCRIPTION, deviceFlag } from './args';
import { defaultCalibrationDataset } from '../core/runtime/dataset';
import { runCliJob } from './progress';
import { CandidateError, PLAN_PRESETS, parseCandidates } from '../core/plan/candidates';
import type { PlanSummary } from '../core/plan/planJob';

import { DEFAULT_PLAN_CALIBRATION } from '../core/jobs/jobSpec';

export { DEFAULT_PLAN_CALIBRATION };

export const PLAN_FLAGS: Record<string, FlagSpec> = {
  calib: { type: 'string', description: 'calibration dataset (.txt, .jsonl, .json; "default" = shipped WikiText-2 sample)' },
  samples: { type: 'number', description: `calibration samples (default ${DEFAULT_PLAN_CALIBRATION.samples})` },
  'seq-len': { type: 'number', description: `tokens per calibration sample (default ${DEFAULT_PLAN_CALIBRATION.seqLen})` },
  candidates: { type: 'string', description: `comma-separated schemes: ${Object.keys(PLAN_PRESETS).join(', ')} (bf16 = keep); a group size as w4a16:g64` },
  bits: { type: 'number', description: 'budget: average stored bits per linear weight (codes + scales + zero points)' },
  size: { type: 'number', description: 'budget: total bytes of the planned linear layers\' tensors' },
  out: { type: 'string', description: 'the llm-compressor recipe to write (.yaml; must not exist)' },
  json: { type: 'boolean', description: 'print the plan and every measurement as JSON instead of the table' },
  verify: { type: 'boolean', description: 'quantize with the plan and with each candidate alone; measure KL and perplexity on held-out text against size' },
  eval: { type: 'string', description: 'with --verify: the evaluation text (default: the --calib file\'s windows the calibration does not use)' },
  'eval-samples': { type: 'number', description: 'with --verify: evaluation samples of --seq-len tokens (default a quarter of --samples, at least 4)' },
  device: { type: 'string', description: DEVICE_FLAG_DESCRIPTION },
};

const pad = (s: string, n: number) => s.padEnd(n);

/** The per-layer table and the achieved budget, as the terminal shows them. */
export function planTable(plan: PlanSummary): string {
  const width = Math.max(5, ...plan.layers.map((l) => l.module.length));
  const schemeWidth = Math.max(6, ...plan.layers.map((l) => l.scheme.length));
  const lines = [`${pad('layer', width)}  ${pad('scheme', schemeWidth)}  ${'KL (nats)'.padStart(11)}  ${'proxy'.padStart(11)}  ${'bytes'.padStart(12)}`];
  for (const l of plan.layers) lines.push(`${pad(l.module, width)}  ${pad(l.scheme, schemeWidth)}  ${l.kl.toExponential(3).padStart(11)}  ${l.proxy.toExponential(3).padStart(11)}  ${String(l.bytes).padStart(12)}`);
  const counts = new Map<string, number>();
  for (const l of plan.layers) counts.set(l.scheme, (counts.get(l.scheme) ?? 0) + 1);
  lines.push('');
  lines.push(`planned ${plan.bytes} bytes = ${plan.bitsPerWeight.toFixed(3)} bits per weight over ${plan.weights} weights (budget ${plan.budgetBytes} bytes; the candidates allow ${plan.minBytes} … ${plan.maxBytes})`);
  lines.push(`schemes: ${[...counts].map(([s, n]) => `${n} × ${s}`).join(', ')}; summed KL ${plan.totalKl.toPrecision(4)} nats (each layer alone, ${plan.tokens} tokens of ${plan.dataset}, ${plan.device})`);
  const skipped = new Map<string, string[]>();
  for (const s of plan.skipped) skipped.set(`${s.candidate}: ${s.reason}`, [...(skipped.get(`${s.candidate}: ${s.reason}`) ?? []), s.module]);
  for (const [why, modules] of skipped) lines.push(`skipped ${why} (${modules.length} layer${modules.length === 1 ? '' : 's'}: ${modules.slice(0, 3).join(', ')}${modules.length > 3 ? ', …' : ''})`);
  if (plan.verification) lines.push('', ...verificationTable(plan));
  lines.push(`recipe written to ${plan.out}; the plan${plan.verification ? ' and its verification' : ''} in ${plan.planFile}`);
  return `${lines.join('\n')}\n`;
}

/** The verified points: size on disk and of the planned layers against KL and perplexity on held-out text. */
export function verificationTable(plan: PlanSummary): string[] {
  const v = plan.verification!;
  const width = Math.max(6, ...v.points.map((p) => p.label.length));
  const lines = [`verified on ${v.evalSamples} × ${v.seqLen} tokens of ${v.evalDataset}${v.heldOut ? ' held out from the calibration' : ''}:`];
  lines.push(`${pad('scheme', width)}  ${'file bytes'.padStart(12)}  ${'layer bytes'.padStart(12)}  ${'bits/w'.padStart(7)}  ${'KL (nats)'.padStart(11)}  ${'perplexity'.padStart(11)}`);
  for (const p of v.points) {
    const kept = p.kept?.length ? `  (${p.kept.length} layer${p.kept.length === 1 ? '' : 's'} kept: ${p.kept[0]!.reason})` : '';
    lines.push(`${pad(p.label, width)}  ${String(p.fileBytes).padStart(12)}  ${String(p.linearBytes).padStart(12)}  ${p.bitsPerWeight.toFixed(3).padStart(7)}  ${p.kl.toExponential(3).padStart(11)}  ${p.perplexity.toFixed(3).padStart(11)}${kept}`);
  }
  return lines;
}

export async function planCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { positionals, flags } = parseArgs(argv, PLAN_FLAGS);
  if (positionals.length !== 1) throw new UsageError('plan needs exactly one MODEL folder');
  if (typeof flags.calib !== 'string') throw new UsageError('--calib DATASET (or --calib default) is required');
  if (typeof flags.candidates !== 'string') throw new UsageError(`--candidates is required (${Object.keys(PLAN_PRESETS).join(', ')}, e.g. w4a16,w8a16)`);
  try {
    parseCandidates(flags.candidates);
  } catch (error) {
    if (error instanceof CandidateError) throw new UsageError(`--candidates: ${error.message}`);
    throw error;
  }
  if ((flags.bits === undefined) === (flags.size === undefined)) throw new UsageError('give the budget as --bits B (average bits per weight) or --size BYTES, one of the two');
  if (typeof flags.out !== 'string') throw new UsageError('--out RECIPE.yaml is required');
  if (!/\.ya?ml$/i.test(flags.out)) throw new UsageError('--out must name a .yaml or .yml file (the recipe)');
  const budget = typeof flags.bits === 'number' ? { bits: flags.bits } : { bytes: flags.size as number };
  if (!flags.verify && (flags.eval !== undefined || flags['eval-samples'] !== undefined)) throw new UsageError('--eval and --eval-samples go with --verify');
  const evalSamples = flags['eval-samples'];
  if (evalSamples !== undefined && (typeof evalSamples !== 'number' || !Number.isSafeInteger(evalSamples) || evalSamples < 1)) throw new UsageError(`--eval-samples must be a positive whole number, not ${String(evalSamples)}`);
  const verify = flags.verify ? { ...(typeof flags.eval === 'string' ? { evalDataset: flags.eval === 'default' ? defaultCalibrationDataset() : flags.eval } : {}), ...(typeof evalSamples === 'number' ? { evalSamples } : {}) } : undefined;
  return runCliJob(
    {
      kind: 'plan',
      model: positionals[0]!,
      out: flags.out,
      dataset: flags.calib === 'default' ? defaultCalibrationDataset() : flags.calib,
      samples: typeof flags.samples === 'number' ? flags.samples : DEFAULT_PLAN_CALIBRATION.samples,
      seqLen: typeof flags['seq-len'] === 'number' ? flags['seq-len'] : DEFAULT_PLAN_CALIBRATION.seqLen,
      candidates: flags.candidates.split(',').map((s) => s.trim()).filter(Boolean),
      budget,
      device: deviceFlag(flags.device),
      ...(verify ? { verify } : {}),
    },
    out,
    (result) => (result.kind !== 'plan' ? result : flags.json ? result.plan : planTable(result.plan)),
  );
}
