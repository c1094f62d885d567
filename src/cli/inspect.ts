import { Checkpoint } from '../core/safetensors/checkpoint';
import { CheckpointSummary, analyzeCheckpoint } from '../core/checkpoint/summary';
import type { LayerMap } from '../core/checkpoint/scheme';
import { describeGroupCounts } from '../core/checkpoint/layerGroups';
import { nameMatcher } from '../core/checkpoint/tensorQuery';
import { computeStatisticsOfTensors, computeTensorStatistics } from '../core/stats/computeStats';
import { WeightStatistics, WeightView, codesTensorOf, computeWeightStatisticsOfTensor } from '../core/stats/weightStats';
import type { TensorStatistics } from '../core/stats/tensorStats';
import { HealthReport, scanHealth } from '../core/inspect/health';
import { ErrorReport, SIMULATIONS, SimulationName, compareWithOriginal, simulateErrors } from '../core/inspect/error';
import { outputErrors } from '../core/inspect/outputError';
import { recordedOutputErrors } from '../core/inspect/jobOutputError';
import { CalibrationFile } from '../core/jobs/calibrationFile';
import { formatBytes, formatCount, formatShape, jsonWithNonFinite } from '../core/util/format';
import { FlagSpec, UsageError, parseArgs } from './args';

export const INSPECT_FLAGS: Record<string, FlagSpec> = {
  json: { type: 'boolean', description: 'print the summary and tensor table as JSON' },
  limit: { type: 'number', description: 'show at most N rows of the tensor table (default: all)' },
  layers: { type: 'boolean', description: 'also print the layer map (each linear layer and its quantization state)' },
  stats: { type: 'boolean', description: 'stream every tensor (or those matching --tensor) and print exact statistics and histograms' },
  tensor: { type: 'string', description: 'with --stats: only tensors whose name contains this text (or matches re:REGEX)' },
  bins: { type: 'number', description: 'with --stats: histogram bins (default 128)' },
  dequantize: { type: 'boolean', description: 'with --stats: statistics of the dequantized weights (q − zero) · scale of the quantized layers whose codes match --tensor, streamed in row blocks' },
  codes: { type: 'boolean', description: 'with --stats: statistics of the stored codes q (unpacked) of the quantized layers whose codes match --tensor' },
  error: { type: 'boolean', description: 'quantization error per layer: with --compare, against the original; otherwise simulate RTN schemes' },
  compare: { type: 'string', description: 'with --error: the original (unquantized) checkpoint to compare a quantized one against' },
  'calib-stats': { type: 'string', description: 'with --error --compare: a calibration statistics file with Hessians (quantlens calibrate --hessians): also the output error ‖(W−Q)X‖/‖WX‖ on its calibration inputs (without it, the one a calibrated quantize job recorded in the output quantlens.json, when ORIGINAL is the model it quantized)' },
  simulate: { type: 'string', description: `with --error: comma-separated schemes to simulate (default all: ${Object.keys(SIMULATIONS).join(', ')})` },
  scan: { type: 'boolean', description: 'health scan: NaN/Inf/zero/negative/subnormal scales, scale outliers, all-zero or NaN weights; exit 1 on errors' },
};

export async function inspectCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { positionals, flags } = parseArgs(argv, INSPECT_FLAGS);
  if (positionals.length !== 1) throw new UsageError('inspect needs exactly one PATH (a .safetensors file, an index.json, or a folder)');
  const path = positionals[0]!;
  const checkpoint = await Checkpoint.open(path);
  try {
    const { summary, layerMap } = await analyzeCheckpoint(checkpoint, path);
    const limit = typeof flags.limit === 'number' ? flags.limit : undefined;
    if ((flags.dequantize || flags.codes) && !flags.stats) throw new UsageError('--dequantize and --codes need --stats');
    if (flags.dequantize && flags.codes) throw new UsageError('--dequantize and --codes exclude each other');
    const view: WeightView | undefined = flags.dequantize ? 'dequantized' : flags.codes ? 'codes' : undefined;
    const stats = flags.stats ? await tensorStatistics(checkpoint, summary, layerMap, typeof flags.tensor === 'string' ? flags.tensor : '', typeof flags.bins === 'number' ? flags.bins : undefined, view) : undefined;
    const health = flags.scan ? await scanHealth(checkpoint, layerMap, { onProgress: progressReporter('health scan') }) : undefined;
    let errors: ErrorReport[] | undefined;
    if (flags.error) {
      if (typeof flags.compare === 'string') {
        const original = await Checkpoint.open(flags.compare);
        const calibration = typeof flags['calib-stats'] === 'string' ? await CalibrationFile.open(flags['calib-stats']) : undefined;
        try {
          const weights = await compareWithOriginal(checkpoint, layerMap, original, { onProgress: progressReporter('comparing') });
          // A statistics file given wins; without one, the output error a calibrated job measured (quantlens.json).
          const outputError = calibration ? await outputErrors(checkpoint, layerMap, original, calibration, { onProgress: progressReporter('output error') }) : await recordedOutputErrors(checkpoint.folder, flags.compare, layerMap);
          errors = [{ ...weights, original: flags.compare, ...(outputError ? { outputError } : {}) }];
        } finally {
          await calibration?.close();
          await original.close();
        }
      } else {
        if (summary.layerCounts.quantized > 0) throw new UsageError('this checkpoint is quantized: give its original with --compare ORIGINAL to measure the error');
        const names = typeof flags.simulate === 'string' ? flags.simulate.split(',').map((n) => n.trim()) : Object.keys(SIMULATIONS);
        for (const name of names) if (!(name in SIMULATIONS)) throw new UsageError(`--simulate: unknown scheme ${JSON.stringify(name)} (known: ${Object.keys(SIMULATIONS).join(', ')})`);
        errors = [];
        for (const name of names) errors.push(await simulateErrors(checkpoint, layerMap, name as SimulationName, { onProgress: progressReporter(`simulating ${name}`) }));
      }
      if (flags['calib-stats'] !== undefined && typeof flags.compare !== 'string') throw new UsageError('--calib-stats needs --compare ORIGINAL: the output error compares a quantized checkpoint with its original');
    } else if (flags.compare !== undefined || flags.simulate !== undefined || flags['calib-stats'] !== undefined) {
      throw new UsageError('--compare, --simulate and --calib-stats need --error');
    }
    if (flags.json) {
      const json = {
        ...(errors ? { errors } : {}),
        ...(health ? { health: { findings: health.findings, scannedTensors: health.scannedTensors, scannedBytes: health.scannedBytes, scales: health.scales } } : {}),
        ...summary,
        tensors: limit === undefined ? summary.tensors : summary.tensors.slice(0, limit),
        ...(flags.layers ? { layers: layerMap.modules } : {}),
        ...(stats ? { statistics: Object.fromEntries(stats) } : {}),
      };
      out.write(`${jsonWithNonFinite(json, 2)}\n`);
    } else {
      out.write(renderSummary(summary, limit, layerMap));
      if (flags.layers) out.write(renderLayerMap(layerMap));
      if (stats) out.write(renderStatistics(stats));
      if (health) out.write(renderHealth(health));
      if (errors) for (const report of errors) out.write(renderErrors(report));
    }
    const healthErrors = health?.findings.some((f) => f.severity === 'error') ?? false;
    return summary.problems.some((p) => p.severity === 'error') || healthErrors ? 1 : 0;
  } finally {
    await checkpoint.close();
  }
}

function table(rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((row) => `  ${row.map((cell, c) => (rightAligned.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd()}`)
    .join('\n');
}

/** Where the layers held by other shards are, grouped by shard: "lm_head: in model-00002-of-00002.safetensors". */
function elsewhereLines(layerMap: LayerMap | undefined): string[] {
  if (!layerMap) return [];
  const byShard = new Map<string, string[]>();
  for (const m of layerMap.modules) if (m.state === 'elsewhere' && m.shard !== undefined) byShard.set(m.shard, [...(byShard.get(m.shard) ?? []), m.name]);
  return [...byShard].map(([shard, names]) => `  ${names.length > 3 ? `${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : names.join(', ')}: in ${shard}`);
}

export function renderSummary(summary: CheckpointSummary, limit?: number, layerMap?: LayerMap): string {
  const lines: string[] = [];
  const layout =
    summary.layout === 'indexed'
      ? `sharded, index ${summary.index}, ${summary.shards.length} shard${summary.shards.length === 1 ? '' : 's'}`
      : summary.layout === 'folder-of-shards'
        ? `folder of ${summary.shards.length} shards (no index)`
        : summary.shardOf
          ? `one shard of the checkpoint indexed by ${summary.shardOf}; other shards' tensors located through it`
          : 'single file';
  lines.push(`${summary.path}  (${layout})`);
  const c = summary.config;
  if (c) {
    const parts = [
      c.architectures?.join(', '),
      c.modelType && `model_type ${c.modelType}`,
      c.hiddenSize && `hidden ${c.hiddenSize}`,
      c.numHiddenLayers && `${c.numHiddenLayers} layers`,
      c.torchDtype,
      c.quantMethod ? `quantization ${c.quantMethod}` : 'no quantization_config',
    ].filter(Boolean);
    lines.push(`model        ${parts.join(', ')}`);
  } else if (summary.configError) {
    lines.push(`model        config.json unusable: ${summary.configError}`);
  }
  lines.push(`scheme       ${summary.scheme.description}${summary.scheme.source === 'tensors' ? ' (inferred from tensors)' : ''}`);
  const lc = summary.layerCounts;
  lines.push(`linear       ${lc.quantized} quantized, ${lc.ignored} ignored, ${lc.unquantized} unquantized${lc.missing ? `, ${lc.missing} missing` : ''}${lc.elsewhere ? `, ${lc.elsewhere} in other shards` : ''}`);
  if (lc.elsewhere) lines.push(...elsewhereLines(layerMap));
  for (const d of summary.scheme.disagreements) lines.push(`  disagreement: ${d}`);
  for (const f of summary.moeFindings) lines.push(`  ${f.severity}: ${f.message}`);
  for (const e of summary.scheme.configErrors) lines.push(`  config error: ${e}`);
  lines.push(`tensors      ${summary.tensorCount}`);
  const dtypes = Object.entries(summary.byDtype)
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .map(([dtype, t]) => `${dtype} ${formatCount(t.elements)}`);
  lines.push(`parameters   ${formatCount(summary.totalElements)} (${summary.totalElements.toLocaleString('en-US')})${dtypes.length ? `  by dtype: ${dtypes.join(', ')}` : ''}`);
  lines.push(`bytes        ${formatBytes(summary.totalBytes)} (${summary.totalBytes.toLocaleString('en-US')})`);
  const metadata = Object.entries(summary.metadata);
  lines.push(`metadata     ${metadata.length ? metadata.map(([k, v]) => `${k}=${v}`).join(', ') : 'none'}`);
  lines.push('');
  lines.push('dtypes');
  lines.push(
    table(
      [['dtype', 'tensors', 'elements', 'bytes'], ...Object.entries(summary.byDtype).map(([d, t]) => [d, String(t.tensors), t.elements.toLocaleString('en-US'), formatBytes(t.bytes)])],
      new Set([1, 2, 3]),
    ),
  );
  lines.push('');
  lines.push('shards');
  lines.push(
    table(
      [['file', 'tensors', 'bytes', 'status'], ...summary.shards.map((s) => [s.name, String(s.tensors), formatBytes(s.fileSize), s.error ? `error: ${s.error}` : 'ok'])],
      new Set([1, 2]),
    ),
  );
  lines.push('');
  const errors = summary.problems.filter((p) => p.severity === 'error').length;
  lines.push(`problems     ${summary.problems.length === 0 ? 'none' : `${errors} error${errors === 1 ? '' : 's'}, ${summary.problems.length - errors} warning${summary.problems.length - errors === 1 ? '' : 's'}`}`);
  for (const problem of summary.problems) lines.push(`  ${problem.severity}: ${problem.message}`);
  lines.push('');
  const shown = limit === undefined ? summary.tensors : summary.tensors.slice(0, limit);
  lines.push(`tensor table${shown.length < summary.tensors.length ? ` (first ${shown.length} of ${summary.tensors.length})` : ''}`);
  if (shown.length > 0) {
    const multiShard = summary.shards.length > 1;
    lines.push(
      table(
        [
          ['name', 'dtype', 'shape', 'bytes', ...(multiShard ? ['shard'] : [])],
          ...shown.map((t) => [t.name, t.dtype, formatShape(t.shape), formatBytes(t.bytes), ...(multiShard ? [t.shard] : [])]),
        ],
        new Set([3]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

export function renderLayerMap(map: LayerMap): string {
  // Mixture-of-experts modules are shown as one line per layer and role (layerGroups.ts), the rest one by one.
  const rows = map.modules.filter((m) => !m.moe).map((m) => [
    m.name,
    m.state,
    m.state === 'elsewhere' ? `in ${m.shard}` : m.observed ? `${m.observed.kind}${m.observed.bits ? ` ${m.observed.bits}-bit` : ''}${m.observed.strategy ? ` ${m.observed.strategy}${m.observed.groupSize ? ` ${m.observed.groupSize}` : ''}` : ''}` : '-',
    m.declared?.group ?? (m.declared?.ignoredBy ? `ignored by ${m.declared.ignoredBy}` : '-'),
    m.issues.join('; '),
  ]);
  const groups = map.groups.map((g) => [g.block === undefined ? '-' : `layer ${g.block}`, g.label, `${describeGroupCounts(g)}${g.issues ? `, ${g.issues} with issues` : ''}`]);
  const moe = groups.length ? `\nmixture of experts (${map.scheme.moe?.description ?? `${map.groups.length} groups`})\n${table([['layer', 'group', 'state'], ...groups])}\n` : '';
  return `\nlayer map\n${rows.length ? table([['module', 'state', 'storage', 'config', 'issues'], ...rows]) : '  (all linear layers are in mixture-of-experts groups)'}\n${moe}`;
}

async function tensorStatistics(checkpoint: Checkpoint, summary: CheckpointSummary, layerMap: LayerMap, filter: string, bins: number | undefined, view: WeightView | undefined): Promise<Map<string, TensorStatistics>> {
  const { matcher, filterError } = nameMatcher(filter);
  if (filterError) throw new UsageError(`--tensor: ${filterError}`);
  let rows = summary.tensors.filter((t) => matcher(t.name));
  if (view) {
    // Only tensors that hold a quantized layer's codes can be dequantized.
    const codes = new Set(layerMap.modules.map(codesTensorOf).filter((n): n is string => n !== undefined));
    const matched = rows.length;
    rows = rows.filter((r) => codes.has(r.name));
    if (rows.length === 0) {
      throw new UsageError(`--${view === 'dequantized' ? 'dequantize' : 'codes'}: none of the ${matched} tensor${matched === 1 ? '' : 's'} matching ${JSON.stringify(filter)} holds a quantized layer's codes (a compressed-tensors weight / weight_packed or a GPTQ qweight)`);
    }
  }
  const total = rows.reduce((sum, r) => sum + r.bytes, 0);
  let done = 0;
  let lastReport = 0;
  if (!view) {
    // Several tensors at once on the counting workers (a mixture-of-experts layer is many small tensors).
    const bytesOf = new Map(rows.map((r) => [r.name, r.bytes]));
    const stats = await computeStatisticsOfTensors(rows.map((r) => r.name), (name) => computeTensorStatistics(checkpoint, name, { bins }), (name) => bytesOf.get(name) ?? 0, {
      onDone: (name) => {
        done += bytesOf.get(name) ?? 0;
        if (process.stderr.isTTY) process.stderr.write(`\rstatistics: ${((done / Math.max(1, total)) * 100).toFixed(0)}% (${name})\u001b[K`);
      },
    });
    if (process.stderr.isTTY) process.stderr.write('\r\u001b[K');
    return stats;
  }
  const results = new Map<string, TensorStatistics>();
  for (const row of rows) {
    results.set(
      row.name,
      await computeWeightStatisticsOfTensor(checkpoint, layerMap, row.name, {
        bins,
        view,
        onProgress: (fraction) => {
          const now = Date.now();
          if (process.stderr.isTTY && now - lastReport > 200) {
            lastReport = now;
            process.stderr.write(`\rstatistics: ${(((done + fraction * row.bytes) / Math.max(1, total)) * 100).toFixed(0)}% (${row.name})\u001b[K`);
          }
        },
      }),
    );
    done += row.bytes;
  }
  if (process.stderr.isTTY) process.stderr.write('\r\u001b[K');
  return results;
}

const SPARK = ' ▁▂▃▄▅▆▇█';

/** A one-line picture of a histogram (log-scaled heights, 32 columns). */
export function sparkline(counts: readonly number[], width = 32): string {
  if (counts.length === 0) return '';
  const columns = Array.from({ length: Math.min(width, counts.length) }, (_, c) => {
    const from = Math.floor((c * counts.length) / Math.min(width, counts.length));
    const to = Math.floor(((c + 1) * counts.length) / Math.min(width, counts.length));
    return counts.slice(from, to).reduce((a, b) => a + b, 0);
  });
  const top = Math.log1p(Math.max(...columns));
  return columns.map((v) => SPARK[v === 0 ? 0 : Math.max(1, Math.round((Math.log1p(v) / top) * 8))]).join('');
}

const num = (v: number) => (Number.isNaN(v) ? 'NaN' : Math.abs(v) !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5) ? v.toExponential(3) : v.toPrecision(4));

export function renderStatistics(stats: ReadonlyMap<string, TensorStatistics>): string {
  const rows = [...stats].map(([name, s]) => [
    name,
    num(s.stats.min),
    num(s.stats.max),
    num(s.stats.mean),
    num(s.stats.std),
    num(s.stats.absMax),
    String(s.stats.nan),
    String(s.stats.posInf + s.stats.negInf),
    String(s.stats.zeros),
    sparkline(s.linear.counts),
  ]);
  const views = [...stats.values()].map((s) => ('view' in s ? (s as WeightStatistics).view : 'stored'));
  const what = views.includes('dequantized') ? 'dequantized weights (q − zero) · scale, streamed in row blocks' : views.includes('codes') ? 'stored codes q, unpacked' : 'tensors as stored';
  return `\nstatistics of ${what} (exact, every element streamed; histogram: linear bins, log-scaled heights)\n${table([['tensor', 'min', 'max', 'mean', 'std', 'absmax', 'NaN', 'Inf', 'zeros', 'histogram'], ...rows], new Set([1, 2, 3, 4, 5, 6, 7, 8]))}\n`;
}

function progressReporter(label: string): (fraction: number, what: string) => void {
  let last = 0;
  return (fraction, what) => {
    const now = Date.now();
    if (!process.stderr.isTTY || now - last < 200) return;
    last = now;
    process.stderr.write(`\r${label}: ${(fraction * 100).toFixed(0)}% (${what})\u001b[K`);
  };
}

export function renderHealth(report: HealthReport): string {
  if (process.stderr.isTTY) process.stderr.write('\r\u001b[K');
  const errors = report.findings.filter((f) => f.severity === 'error').length;
  const lines = [`\nhealth scan: ${report.scannedTensors} tensors (${formatBytes(report.scannedBytes)} of weights streamed), ${errors} error${errors === 1 ? '' : 's'}, ${report.findings.length - errors} warning${report.findings.length - errors === 1 ? '' : 's'}`];
  for (const f of report.findings) lines.push(`  ${f.severity}: ${f.message}`);
  return `${lines.join('\n')}\n`;
}

export function renderErrors(report: ErrorReport): string {
  if (process.stderr.isTTY) process.stderr.write('\r\u001b[K');
  const output = report.outputError ? new Map(report.outputError.layers.map((l) => [l.module, l])) : undefined;
  const outputCells = (module: string) => {
    if (!output) return [];
    const o = output.get(module);
    return o?.relative !== undefined ? [o.relative.toExponential(3), o.sqnrDb!.toFixed(2)] : ['-', '-'];
  };
  const rows = report.layers.map((l) =>
    l.skipped
      ? [l.module, '-', '-', '-', '-', ...outputCells(l.module), `skipped: ${l.skipped}`]
      : [l.module, l.metrics.relativeFrobenius.toExponential(3), l.metrics.sqnrDb.toFixed(2), l.metrics.maxAbsError.toExponential(3), l.metrics.cosine.toFixed(6), ...outputCells(l.module), report.suggestedIgnore.includes(l.module) ? 'suggest ignore' : ''],
  );
  const title = report.kind === 'simulation' ? `simulated ${report.scheme} (round to nearest)` : `${report.scheme} vs the original${report.original ? ` ${report.original}` : ''}`;
  const oe = report.outputError;
  const tokens = `${oe?.tokens !== undefined ? `${oe.tokens} calibration tokens` : 'the calibration inputs'}${oe?.measuredBy === 'job' ? ', measured by the job' : ''}`;
  return [
    `\nquantization error: ${title}; median SQNR ${report.medianSqnrDb.toFixed(2)} dB${oe ? `; median output SQNR ${oe.medianSqnrDb.toFixed(2)} dB` : ''}`,
    ...(oe ? [`  weight error (rel. Frobenius, SQNR): what round-to-nearest minimises; output error ‖(W−Q)X‖/‖WX‖ on ${tokens}: what GPTQ minimises`] : []),
    table([['layer', 'rel. Frobenius', 'SQNR dB', 'max |err|', 'cosine', ...(oe ? ['output rel.', 'output SQNR dB'] : []), ''], ...rows], new Set(oe ? [1, 2, 3, 4, 5, 6] : [1, 2, 3, 4])),
    `  worst layers: ${report.ranking.slice(0, 5).join(', ')}`,
    `  suggested ignore list: ${report.suggestedIgnore.length ? JSON.stringify(report.suggestedIgnore) : 'none (no layer is an outlier)'}`,
    '',
  ].join('\n');
}
