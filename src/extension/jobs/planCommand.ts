/**
 * "QuantLens: Plan Mixed Precision…": the plan job's spec from quick picks — model, calibration data,
 * candidate schemes (several), the budget (average bits per weight or a total size, checked against what the
 * candidates allow on this model, from its headers), whether to verify, and the recipe to write. Arguments
 * given programmatically (tests, other extensions) skip their question.
 */
import * as vscode from 'vscode';
import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import { DEFAULT_PLAN_CALIBRATION, JobSpec, PlanJobSpec } from '../../core/jobs/jobSpec';
import { defaultCalibrationDataset } from '../../core/runtime/dataset';
import { openDecoderModel } from '../../core/runtime/llama/graph';
import { PLAN_PRESETS, parseCandidates } from '../../core/plan/candidates';
import { PlanBudget, bitsPerWeight, byteRange, layerOptions, planLayers, totalWeights } from '../../core/plan/budget';
import { planFilePath } from '../../core/plan/planFile';
import { CANCELLED, Maybe, MissingArgument, SpecContext, defaultOutputFolder, outputUnavailable, pickModel } from './jobCommands';

export interface PlanCommandArgs {
  readonly model?: string;
  /** A dataset file, or 'default' for the shipped WikiText-2 sample. */
  readonly calibration?: string;
  readonly samples?: number;
  readonly seqLen?: number;
  readonly candidates?: readonly string[];
  readonly budget?: PlanBudget;
  readonly verify?: boolean;
  readonly output?: string;
  readonly interactive?: boolean;
  readonly openResult?: boolean;
}

const TITLE = 'Plan Mixed Precision';

/** The candidates offered, in order, with what each means; the first two are chosen to begin with. */
const CANDIDATE_ITEMS: readonly { name: string; detail: string }[] = [
  { name: 'w4a16', detail: 'INT4 weights, group 128, GPTQ' },
  { name: 'w8a16', detail: 'INT8 weights per channel, GPTQ' },
  { name: 'w4a16:g64', detail: 'INT4 weights, group 64, GPTQ' },
  { name: 'w4a16:g32', detail: 'INT4 weights, group 32, GPTQ' },
  { name: 'w8a8', detail: 'INT8 weights and per-token activations, round-to-nearest' },
  { name: 'fp8-dynamic', detail: 'FP8 weights per channel, per-token activations, round-to-nearest' },
  { name: 'fp8', detail: 'FP8 weights and static activations, round-to-nearest' },
  { name: 'bf16', detail: 'keep the layer as stored' },
];

/**
 * Every step of the plan's six: clicking elsewhere (to look up the model's size, or a view that takes the
 * focus as it loads) does not throw away the answers given so far; Escape still backs out.
 */
const STEP = { ignoreFocusOut: true } as const;

async function pickData(args: PlanCommandArgs, extensionRoot: string): Promise<Maybe<string>> {
  if (args.calibration) return args.calibration === 'default' ? defaultCalibrationDataset(extensionRoot) : args.calibration;
  if (args.interactive === false) return defaultCalibrationDataset(extensionRoot);
  const files = await vscode.workspace.findFiles('**/*.{txt,jsonl}', '**/{node_modules,.git,.vscode-test}/**', 50);
  const items: (vscode.QuickPickItem & { path?: string })[] = [
    { label: 'WikiText-2 (shipped sample)', description: 'CC BY-SA 4.0 text; verification evaluates on its windows the calibration does not use', path: defaultCalibrationDataset(extensionRoot) },
    ...files.map((uri) => ({ label: basename(uri.fsPath), description: vscode.workspace.asRelativePath(uri), path: uri.fsPath })),
    { label: '$(file) Dataset file…', description: 'txt, jsonl (text or messages), json' },
  ];
  const picked = await vscode.window.showQuickPick(items, { ...STEP, title: `${TITLE}: calibration data`, placeHolder: 'The text each layer\'s sensitivity is measured on' });
  if (!picked) return CANCELLED;
  if (picked.path) return picked.path;
  const file = await vscode.window.showOpenDialog({ title: 'Calibration data', filters: { Datasets: ['txt', 'jsonl', 'json'] } });
  return file?.[0]?.fsPath ?? CANCELLED;
}

async function pickCandidates(args: PlanCommandArgs): Promise<Maybe<string[]>> {
  if (args.candidates) return [...args.candidates];
  if (args.interactive === false) throw new MissingArgument('no candidate schemes were given');
  const items = CANDIDATE_ITEMS.map((c, i) => ({ label: c.name, description: c.detail, picked: i < 2 }));
  const picked = await vscode.window.showQuickPick(items, { ...STEP, title: `${TITLE}: candidate schemes`, placeHolder: `One scheme per layer is chosen among these (${Object.keys(PLAN_PRESETS).join(', ')})`, canPickMany: true });
  if (!picked) return CANCELLED;
  if (picked.length === 0) {
    void vscode.window.showErrorMessage('QuantLens: choose at least one candidate scheme to plan with.');
    return CANCELLED;
  }
  return picked.map((p) => p.label);
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 };

/** "1500000", "1.5 MB", "2 GiB" → bytes (whole), or undefined. */
export function parseSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$/i.exec(text);
  if (!match) return undefined;
  const bytes = Math.floor(Number(match[1]) * SIZE_UNITS[(match[2] ?? '').toLowerCase()]!);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

/** What the candidates allow on this model, from its headers: the budget box names the range and checks it. */
async function allowedRange(model: string, candidates: readonly string[]): Promise<{ min: number; max: number; weights: number; bits: (bytes: number) => number } | undefined> {
  try {
    const decoder = await openDecoderModel(model);
    try {
      const layers = planLayers(decoder);
      const range = byteRange(layerOptions(layers, parseCandidates(candidates)));
      return { ...range, weights: totalWeights(layers), bits: (bytes) => bitsPerWeight(bytes, layers) };
    } finally {
      await decoder.checkpoint.close();
    }
  } catch {
    // The pre-flight check reports what is wrong with the model or the candidates, in full.
    return undefined;
  }
}

async function pickBudget(args: PlanCommandArgs, model: string, candidates: readonly string[]): Promise<Maybe<PlanBudget>> {
  if (args.budget) return args.budget;
  if (args.interactive === false) throw new MissingArgument('no budget was given');
  const kind = await vscode.window.showQuickPick(
    [
      { label: 'Average bits per weight', description: 'codes + scales + zero points as written, over the planned layers', budget: 'bits' as const },
      { label: 'Total size', description: 'bytes of the planned layers\' tensors (e.g. 1500000, 1.5 MB, 2 GiB)', budget: 'size' as const },
    ],
    { ...STEP, title: `${TITLE}: budget` },
  );
  if (!kind) return CANCELLED;
  const range = await allowedRange(model, candidates);
  const between = range ? `${range.bits(range.min).toFixed(3)} … ${range.bits(range.max).toFixed(3)} bits per weight = ${range.min} … ${range.max} bytes` : undefined;
  const tooSmall = (bytes: number) => (range && bytes < range.min ? `below the smallest possible plan, ${range.min} bytes (${range.bits(range.min).toFixed(3)} bits per weight: every layer at its smallest candidate)` : undefined);
  const answer = await vscode.window.showInputBox({
    ...STEP,
    title: `${TITLE}: ${kind.budget === 'bits' ? 'bits per weight' : 'total size'}`,
    prompt: between ? `These candidates allow ${between}` : undefined,
    value: range ? (kind.budget === 'bits' ? ((range.bits(range.min) + range.bits(range.max)) / 2).toFixed(2) : String(Math.round((range.min + range.max) / 2))) : '',
    validateInput: (v) => {
      if (kind.budget === 'bits') {
        const bits = Number(v.trim());
        if (!/^\d+(\.\d+)?$/.test(v.trim()) || !(bits > 0)) return 'a positive number of bits per weight, e.g. 5.5';
        return range ? tooSmall(Math.floor((bits * range.weights) / 8)) : undefined;
      }
      const bytes = parseSize(v);
      if (bytes === undefined) return 'a positive size: bytes, or with a unit (KB, MB, GB, KiB, MiB, GiB)';
      return tooSmall(bytes);
    },
  });
  if (answer === undefined) return CANCELLED;
  return kind.budget === 'bits' ? { bits: Number(answer.trim()) } : { bytes: parseSize(answer)! };
}

async function pickVerify(args: PlanCommandArgs): Promise<Maybe<boolean>> {
  if (args.verify !== undefined) return args.verify;
  if (args.interactive === false) return false;
  const picked = await vscode.window.showQuickPick(
    [
      { label: 'Plan', description: 'measure the sensitivities and write the recipe', verify: false },
      { label: 'Plan and verify', description: 'also quantize with the plan and with each candidate alone, and measure KL and perplexity on held-out text against size (one quantize job each)', verify: true },
    ],
    { ...STEP, title: `${TITLE}: verify` },
  );
  return picked ? picked.verify : CANCELLED;
}

/** An output the recipe can go to: new, unowned, with no plan file of that name beside it. */
async function recipeUnavailable(path: string, running: SpecContext['running']): Promise<string | undefined> {
  if (!/\.ya?ml$/i.test(path)) return 'the recipe is a .yaml (or .yml) file';
  const plan = planFilePath(path);
  if (await fs.access(plan).then(() => true, () => false)) return `${basename(plan)} (the plan file written beside the recipe) already exists; choose another name`;
  return outputUnavailable(path, running);
}

async function pickRecipe(args: PlanCommandArgs, model: string, running: SpecContext['running']): Promise<Maybe<string>> {
  if (args.output) return args.output;
  const suggestion = join(defaultOutputFolder(model), `${basename(model)}-plan`);
  let candidate = `${suggestion}.yaml`;
  for (let i = 2; await recipeUnavailable(candidate, running); i++) candidate = `${suggestion}-${i}.yaml`;
  if (args.interactive === false) return candidate;
  const answer = await vscode.window.showInputBox({
    ...STEP,
    title: `${TITLE}: recipe`,
    prompt: 'The llm-compressor recipe to write (a new .yaml file; the plan file goes beside it)',
    value: candidate,
    valueSelection: [candidate.length - basename(candidate).length, candidate.length - '.yaml'.length],
    validateInput: async (v) => (!v.trim() ? 'a path is needed' : recipeUnavailable(v.trim(), running)),
  });
  return answer?.trim() || CANCELLED;
}

/** Builds a plan job spec from arguments and quick picks; undefined when the user backs out. */
export async function planSpecFromUser(args: PlanCommandArgs, context: SpecContext): Promise<JobSpec | undefined> {
  const interactive = args.interactive !== false;
  const model = await pickModel(args.model, `${TITLE}: model`, interactive, context.modelNote);
  if (model === CANCELLED) return undefined;
  const dataset = await pickData(args, context.extensionRoot);
  if (dataset === CANCELLED) return undefined;
  const candidates = await pickCandidates(args);
  if (candidates === CANCELLED) return undefined;
  const budget = await pickBudget(args, model, candidates);
  if (budget === CANCELLED) return undefined;
  const verify = await pickVerify(args);
  if (verify === CANCELLED) return undefined;
  const out = await pickRecipe(args, model, context.running);
  if (out === CANCELLED) return undefined;
  const spec: PlanJobSpec = {
    kind: 'plan',
    model,
    out,
    dataset,
    samples: args.samples ?? DEFAULT_PLAN_CALIBRATION.samples,
    seqLen: args.seqLen ?? DEFAULT_PLAN_CALIBRATION.seqLen,
    candidates,
    budget,
    ...(verify ? { verify: {} } : {}),
  };
  return spec;
}
