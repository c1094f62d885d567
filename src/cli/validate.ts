/**
 * `quantlens validate FILE [--model DIR] [--json]`: validates an llm-compressor recipe (YAML) or a
 * quantization config (config.json / quantize_config.json). A folder validates the configs and recipe it
 * holds against its own weights. Prints `file:line:col: severity: message`; exit code 1 on errors.
 */
import { promises as fs } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { Diagnostic, ModelLayers, analyzeRecipe, modelLayersFromCheckpoint, resolveRecipe, validateQuantizationConfig } from '../core/recipe';
import { formatBytes } from '../core/util/format';
import { FlagSpec, UsageError, parseArgs } from './args';

export const VALIDATE_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', description: 'checkpoint folder to check targets, ignore entries and group sizes against' },
  json: { type: 'boolean', description: 'print the diagnostics as JSON (0-based ranges)' },
};

interface FileReport {
  readonly file: string;
  readonly kind: 'recipe' | 'config';
  readonly diagnostics: readonly Diagnostic[];
  readonly plan?: ReturnType<typeof resolveRecipe>;
}

const RECIPE_FILES = /^(.*recipe.*\.ya?ml)$/i;
const CONFIG_FILES = ['config.json', 'quantize_config.json', 'quant_config.json'];

export async function validateCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { positionals, flags } = parseArgs(argv, VALIDATE_FLAGS);
  if (positionals.length !== 1) throw new UsageError('validate needs exactly one FILE (a recipe .yaml, a config.json / quantize_config.json, or a checkpoint folder)');
  const target = positionals[0]!;
  let stat;
  try {
    stat = await fs.stat(target);
  } catch {
    throw new UsageError(`no such file or folder: ${target}`);
  }

  let files: string[];
  let modelDir = typeof flags.model === 'string' ? flags.model : undefined;
  if (stat.isDirectory()) {
    const names = await fs.readdir(target);
    files = [...CONFIG_FILES.filter((n) => names.includes(n)), ...names.filter((n) => RECIPE_FILES.test(n)).sort()].map((n) => join(target, n));
    if (files.length === 0) throw new UsageError(`${target} holds no recipe (*recipe*.yaml) and no config.json / quantize_config.json`);
    if (!modelDir && names.some((n) => n.endsWith('.safetensors'))) modelDir = target;
  } else files = [target];

  const model: ModelLayers | undefined = modelDir ? await modelLayersFromCheckpoint(modelDir) : undefined;
  const reports: FileReport[] = [];
  for (const file of files) {
    const text = await readText(file);
    const kind = isJsonFile(file, text) ? 'config' : 'recipe';
    if (kind === 'config') {
      reports.push({ file, kind, diagnostics: validateQuantizationConfig(text, { model }) });
    } else {
      const analysis = analyzeRecipe(text, { model });
      const plan = model && !analysis.diagnostics.some((d) => d.severity === 'error') ? resolveRecipe(analysis, model) : undefined;
      reports.push({ file, kind, diagnostics: analysis.diagnostics, ...(plan ? { plan } : {}) });
    }
  }

  const all = reports.flatMap((r) => r.diagnostics);
  const errors = all.filter((d) => d.severity === 'error').length;
  const warnings = all.filter((d) => d.severity === 'warning').length;
  if (flags.json) {
    const json = {
      ...(model ? { model: model.source ?? modelDir } : {}),
      files: reports.map((r) => ({
        file: r.file,
        kind: r.kind,
        diagnostics: r.diagnostics,
        ...(r.plan ? { plan: { counts: r.plan.counts, size: r.plan.size, layers: r.plan.layers.map((l) => ({ name: l.name, state: l.state, modifier: l.modifier, group: l.group, description: l.description, format: l.format, ignoredBy: l.ignoredBy, algorithms: l.algorithms })) } } : {}),
      })),
      errors,
      warnings,
    };
    out.write(`${JSON.stringify(json, null, 2)}\n`);
  } else {
    for (const r of reports) {
      const name = displayName(r.file);
      for (const d of r.diagnostics) {
        out.write(`${name}:${d.range.start.line + 1}:${d.range.start.character + 1}: ${d.severity}: ${d.message}\n`);
        if (d.fix) out.write(`    fix: ${d.fix.title}\n`);
      }
      const e = r.diagnostics.filter((d) => d.severity === 'error').length;
      const w = r.diagnostics.filter((d) => d.severity === 'warning').length;
      out.write(`${name}: ${e === 0 && w === 0 ? 'OK' : `${e} error${e === 1 ? '' : 's'}, ${w} warning${w === 1 ? '' : 's'}`} (${r.kind === 'recipe' ? 'llm-compressor recipe' : 'quantization config'}${model ? `, checked against ${displayName(model.source ?? modelDir!)}` : ''})\n`);
      if (r.plan) out.write(renderPlan(r.plan));
    }
  }
  return errors > 0 ? 1 : 0;
}

async function readText(file: string): Promise<string> {
  const bytes = await fs.readFile(file);
  // Undecodable bytes become U+FFFD; the validator reports them rather than crashing.
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes).replace(/^\uFEFF/, '');
}

function isJsonFile(file: string, text: string): boolean {
  if (/\.json$/i.test(file)) return true;
  if (/\.ya?ml$/i.test(file)) return false;
  return text.trimStart().startsWith('{');
}

function displayName(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith('..') ? rel : file || basename(file);
}

function renderPlan(plan: ReturnType<typeof resolveRecipe>): string {
  const lines = [`  plan: ${plan.counts.quantized} layers quantized, ${plan.counts.ignored} ignored, ${plan.counts.untouched} left as they are`];
  const bySchema = new Map<string, number>();
  for (const l of plan.layers) if (l.description) bySchema.set(`${l.modifier}: ${l.description}`, (bySchema.get(`${l.modifier}: ${l.description}`) ?? 0) + 1);
  for (const [text, count] of bySchema) lines.push(`    ${count} × ${text}`);
  if (plan.kvCache) lines.push(`    KV cache: ${plan.kvCache.args.type}${plan.kvCache.args.numBits} on ${plan.kvCache.modules.length} attention modules`);
  const size = plan.size;
  if (size.originalBytes !== undefined && size.estimatedBytes !== undefined) lines.push(`  estimated size: ${formatBytes(size.originalBytes)} → ${formatBytes(size.estimatedBytes)}`);
  else lines.push(`  linear layers: ${formatBytes(size.linearOriginalBytes)} → ${formatBytes(size.linearEstimatedBytes)} (estimated)`);
  return `${lines.join('\n')}\n`;
}
