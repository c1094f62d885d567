/**
 * The llm-compressor recipe of a plan: one config group per chosen candidate, naming its layers by exact
 * regular expressions (`re:^model\.layers\.0\.mlp\.down_proj$`), under GPTQModifier for the GPTQ candidates
 * (with the block size and dampening the measurement used) and under QuantizationModifier for the
 * round-to-nearest ones; layers planned as bf16 are in no group, so they stay as they are. `quantlens validate`
 * checks it and `quantlens quantize --recipe` runs it (jobs/recipeJob.ts resolves every group per layer).
 */
import { serializeArgs } from '../jobs/outputLayouts';
import type { QuantArgs } from '../quant/args';
import type { Candidate } from './candidates';

export interface PlannedLayer {
  readonly module: string;
  readonly candidate: Candidate;
  readonly bytes: number;
  readonly kl: number;
  readonly proxy: number;
}

/** An exact-match target for one module (llm-compressor's `re:` prefix, Python regex). */
export function exactTarget(module: string): string {
  return `re:^${module.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
}

/** QuantizationArgs as a one-line YAML flow mapping, fields that have a value only. */
function argsYaml(args: QuantArgs): string {
  const fields = Object.entries(serializeArgs(args)!).filter(([k, v]) => v !== null && !(k === 'observer_kwargs'));
  return `{${fields.map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ')}}`;
}

/** A YAML single-quoted scalar ('' escapes a quote; backslashes are literal). */
const quoted = (s: string) => `'${s.replace(/'/g, "''")}'`;

export function planRecipeYaml(layers: readonly PlannedLayer[], candidates: readonly Candidate[], gptq: { blockSize: number; dampeningFrac: number }, header: readonly string[]): string {
  const byCandidate = new Map<string, PlannedLayer[]>();
  for (const c of candidates) byCandidate.set(c.name, []);
  for (const layer of layers) byCandidate.get(layer.candidate.name)!.push(layer);
  let groupIndex = 0;
  const groups = (algorithm: 'gptq' | 'rtn'): string[] => {
    const lines: string[] = [];
    for (const c of candidates) {
      const planned = byCandidate.get(c.name)!;
      if (c.algorithm !== algorithm || planned.length === 0) continue;
      lines.push(`        group_${groupIndex++}:  # ${c.name}: ${planned.length} layer${planned.length === 1 ? '' : 's'}`);
      lines.push('          targets:');
      for (const l of planned) lines.push(`            - ${quoted(exactTarget(l.module))}`);
      lines.push(`          weights: ${argsYaml(c.scheme!.weights!)}`);
      if (c.scheme!.inputActivations) lines.push(`          input_activations: ${argsYaml(c.scheme!.inputActivations)}`);
    }
    return lines;
  };
  const gptqGroups = groups('gptq');
  const rtnGroups = groups('rtn');
  const out = [...header.map((h) => `# ${h}`.trimEnd()), 'default_stage:', '  default_modifiers:'];
  if (gptqGroups.length) out.push('    GPTQModifier:', `      block_size: ${gptq.blockSize}`, `      dampening_frac: ${gptq.dampeningFrac}`, '      config_groups:', ...gptqGroups);
  if (rtnGroups.length) out.push('    QuantizationModifier:', '      config_groups:', ...rtnGroups);
  if (!gptqGroups.length && !rtnGroups.length) {
    // Every layer kept: a recipe that quantizes nothing would be refused; say so instead of writing one.
    throw new Error('the plan keeps every layer as it is (bf16); there is no recipe to write — lower the budget or drop bf16 from the candidates');
  }
  return `${out.join('\n')}\n`;
}
