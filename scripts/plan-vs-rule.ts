/**
 * The rule of thumb a mixed-precision plan is compared with (docs/planning.md §6): every mlp.down_proj in INT8
 * per channel (GPTQ w8a16), every other linear layer of the blocks in INT4 with groups of 64 (GPTQ w4a16:g64).
 *
 *   node out/scripts/plan-vs-rule.js MODEL --out RULE.yaml [--plan-json PLAN.json] [--calib TEXT]
 *
 * Prints the rule's bytes and bits per weight counted exactly as `quantlens plan` counts a budget (plan/budget.ts,
 * candidates.ts: the tensors the compressed-tensors writer lays out), and writes the rule as a recipe with the
 * same writer, modifier and GPTQ settings a plan's recipe has (plan/planRecipe.ts), so that the two recipes
 * differ only in which layer gets which scheme. Pass that byte count to `quantlens plan --size`.
 *
 * With --plan-json (the output of `quantlens plan --json`, measured with w4a16:g64 and w8a16 among the
 * candidates), it also prints the rule's summed KL under the plan's own measurements, and, per candidate, the
 * Spearman rank correlation of the GPTQ proxy tr(E H Eᵀ) with the measured KL across the layers.
 *
 * With --calib (a .txt calibration file for plan and quantize), it checks that the file holds training text
 * only: every window it makes (BOS + seq_len − 1 tokens, in file order) must be the training window of the same
 * index in the model's training.json split, so no calibration window can contain a held-out token.
 */
import { existsSync, promises as fs } from 'node:fs';
import { DEFAULT_BLOCK_SIZE, DEFAULT_DAMPENING_FRAC } from '../src/core/quant/gptq';
import { openDecoderModel } from '../src/core/runtime/llama/graph';
import { bitsPerWeight, planLayers, totalWeights } from '../src/core/plan/budget';
import { candidateBytes, parseCandidates, unservableReason } from '../src/core/plan/candidates';
import { planRecipeYaml, PlannedLayer } from '../src/core/plan/planRecipe';
import type { PlanSummary } from '../src/core/plan/planJob';
import { loadCalibrationDataset, defaultCalibrationDataset } from '../src/core/runtime/dataset';
import { ModelTokenizer } from '../src/core/runtime/tokenizer';
import { join } from 'node:path';
// The split's fields as wikitext-perplexity.ts reads them. Not imported from it: bundled into this script, its
// `require.main === module` entry point would run too.
interface TrainingSplit {
  readonly data: { readonly windows: number; readonly seq_len: number; readonly train_windows: readonly [number, number]; readonly held_out_windows: readonly [number, number] };
}

/** Throws unless every window `text` makes is the training window of the same index of `folder`'s record. */
async function checkTrainingOnly(folder: string, text: string): Promise<string> {
  const record = JSON.parse(await fs.readFile(join(folder, 'training.json'), 'utf8')) as TrainingSplit;
  const tokenizer = await ModelTokenizer.load(folder);
  const d = record.data;
  const options = { samples: d.windows + 1, seqLen: d.seq_len, shuffle: false };
  const full = await loadCalibrationDataset(defaultCalibrationDataset(), tokenizer, options);
  const part = await loadCalibrationDataset(text, tokenizer, options);
  if (part.samples.length > d.train_windows[1]) throw new Error(`${text} makes ${part.samples.length} windows; the training part has ${d.train_windows[1]}`);
  part.samples.forEach((s, i) => {
    const t = full.samples[i]!.inputIds;
    if (s.inputIds.length !== t.length || s.inputIds.some((id, j) => id !== t[j])) throw new Error(`${text}: window ${i} is not training window ${i}`);
  });
  return `${text}: ${part.samples.length} windows of ${d.seq_len}, each identical to training window 0…${part.samples.length - 1} (training: ${d.train_windows.join('…')}, held out: ${d.held_out_windows.join('…')})`;
}

/** Ranks 1..n, ties sharing their mean rank. */
export function ranks(values: readonly number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const out = new Array<number>(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let k = i; k <= j; k++) out[order[k]![1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

/** Spearman's rank correlation: Pearson's correlation of the ranks. */
export function spearman(a: readonly number[], b: readonly number[]): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const mean = (r: number[]) => r.reduce((s, x) => s + x, 0) / r.length;
  const ma = mean(ra);
  const mb = mean(rb);
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < ra.length; i++) {
    sab += (ra[i]! - ma) * (rb[i]! - mb);
    saa += (ra[i]! - ma) ** 2;
    sbb += (rb[i]! - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

async function main(args: string[]): Promise<void> {
  const take = (flag: string): string | undefined => {
    const at = args.indexOf(flag);
    return at >= 0 ? args.splice(at, 2)[1] : undefined;
  };
  const out = take('--out');
  const planJson = take('--plan-json');
  const calib = take('--calib');
  const folder = args[0];
  if (!folder || !out || args.length !== 1) throw new Error('usage: plan-vs-rule MODEL --out RULE.yaml [--plan-json PLAN.json]');
  if (calib) process.stdout.write(`${await checkTrainingOnly(folder, calib)}\n`);
  if (existsSync(out)) throw new Error(`${out} exists; the rule's recipe is never written over a file`);
  const [int4, int8] = parseCandidates(['w4a16:g64', 'w8a16']) as [ReturnType<typeof parseCandidates>[0], ReturnType<typeof parseCandidates>[0]];
  const model = await openDecoderModel(folder);
  try {
    const layers = planLayers(model);
    const rule: PlannedLayer[] = layers.map((layer) => {
      const candidate = layer.module.endsWith('.mlp.down_proj') ? int8 : int4;
      const reason = unservableReason(candidate, layer.cols);
      if (reason) throw new Error(`${layer.module}: the rule's ${candidate.name} cannot serve it (${reason})`);
      return { module: layer.module, candidate, bytes: candidateBytes(candidate, layer.module, layer.rows, layer.cols, layer.weightDtype), kl: 0, proxy: 0 };
    });
    const bytes = rule.reduce((s, l) => s + l.bytes, 0);
    const bits = bitsPerWeight(bytes, layers);
    const header = [
      `Rule of thumb for ${folder}: mlp.down_proj in w8a16 (INT8 per channel), every other block linear layer in w4a16:g64, all GPTQ.`,
      `Size: ${bytes} bytes (${bits.toFixed(3)} bits per weight over ${layers.length} linear layers, ${totalWeights(layers)} weights), counted as quantlens plan counts a budget.`,
    ];
    const partial = `${out}.partial`;
    await fs.writeFile(partial, planRecipeYaml(rule, [int4, int8], { blockSize: DEFAULT_BLOCK_SIZE, dampeningFrac: DEFAULT_DAMPENING_FRAC }, header));
    await fs.rename(partial, out);
    process.stdout.write(`rule of thumb: ${bytes} bytes = ${bits.toFixed(4)} bits per weight over ${layers.length} layers (${totalWeights(layers)} weights); recipe written to ${out}\n`);

    if (planJson) {
      const plan = JSON.parse(await fs.readFile(planJson, 'utf8')) as PlanSummary;
      const measured = new Map(plan.sensitivity.map((l) => [l.module, l]));
      let ruleKl = 0;
      for (const l of rule) {
        const m = measured.get(l.module)?.measurements.find((x) => x.candidate === l.candidate.name);
        if (m?.kl === undefined) throw new Error(`${planJson}: no ${l.candidate.name} measurement of ${l.module}; plan with --candidates including w4a16:g64,w8a16`);
        ruleKl += m.kl;
      }
      process.stdout.write(`summed KL (each layer alone, the plan's measurements): rule ${ruleKl.toPrecision(4)} nats, plan ${plan.totalKl.toPrecision(4)} nats at ${plan.bytes} bytes (${plan.bitsPerWeight.toFixed(4)} bits per weight)\n`);
      const names = [...new Set(plan.sensitivity.flatMap((l) => l.measurements.map((m) => m.candidate)))];
      for (const name of names) {
        const pairs = plan.sensitivity.flatMap((l) => l.measurements.filter((m) => m.candidate === name && m.kl !== undefined && m.proxy !== undefined && m.kl > 0).map((m) => [m.proxy!, m.kl!] as const));
        if (pairs.length < 3) continue;
        process.stdout.write(`${name}: Spearman(proxy, KL) = ${spearman(pairs.map((p) => p[0]), pairs.map((p) => p[1])).toFixed(3)} over ${pairs.length} layers\n`);
      }
    }
  } finally {
    await model.checkpoint.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`plan-vs-rule: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
