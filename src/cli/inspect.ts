import { Checkpoint } from '../core/safetensors/checkpoint';
import { CheckpointSummary, analyzeCheckpoint } from '../core/checkpoint/summary';
import type { LayerMap } from '../core/checkpoint/scheme';
import { formatBytes, formatCount, formatShape } from '../core/util/format';
import { FlagSpec, UsageError, parseArgs } from './args';

export const INSPECT_FLAGS: Record<string, FlagSpec> = {
  json: { type: 'boolean', description: 'print the summary and tensor table as JSON' },
  limit: { type: 'number', description: 'show at most N rows of the tensor table (default: all)' },
  layers: { type: 'boolean', description: 'also print the layer map (each linear layer and its quantization state)' },
};

export async function inspectCommand(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { positionals, flags } = parseArgs(argv, INSPECT_FLAGS);
  if (positionals.length !== 1) throw new UsageError('inspect needs exactly one PATH (a .safetensors file, an index.json, or a folder)');
  const path = positionals[0]!;
  const checkpoint = await Checkpoint.open(path);
  try {
    const { summary, layerMap } = await analyzeCheckpoint(checkpoint, path);
    const limit = typeof flags.limit === 'number' ? flags.limit : undefined;
    if (flags.json) {
      const json = { ...summary, tensors: limit === undefined ? summary.tensors : summary.tensors.slice(0, limit), ...(flags.layers ? { layers: layerMap.modules } : {}) };
      out.write(`${JSON.stringify(json, null, 2)}\n`);
    } else {
      out.write(renderSummary(summary, limit));
      if (flags.layers) out.write(renderLayerMap(layerMap));
    }
    return summary.problems.some((p) => p.severity === 'error') ? 1 : 0;
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

export function renderSummary(summary: CheckpointSummary, limit?: number): string {
  const lines: string[] = [];
  const layout =
    summary.layout === 'indexed'
      ? `sharded, index ${summary.index}, ${summary.shards.length} shard${summary.shards.length === 1 ? '' : 's'}`
      : summary.layout === 'folder-of-shards'
        ? `folder of ${summary.shards.length} shards (no index)`
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
  lines.push(`linear       ${lc.quantized} quantized, ${lc.ignored} ignored, ${lc.unquantized} unquantized${lc.missing ? `, ${lc.missing} missing` : ''}`);
  for (const d of summary.scheme.disagreements) lines.push(`  disagreement: ${d}`);
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
  const rows = map.modules.map((m) => [
    m.name,
    m.state,
    m.observed ? `${m.observed.kind}${m.observed.bits ? ` ${m.observed.bits}-bit` : ''}${m.observed.strategy ? ` ${m.observed.strategy}${m.observed.groupSize ? ` ${m.observed.groupSize}` : ''}` : ''}` : '-',
    m.declared?.group ?? (m.declared?.ignoredBy ? `ignored by ${m.declared.ignoredBy}` : '-'),
    m.issues.join('; '),
  ]);
  return `\nlayer map\n${table([['module', 'state', 'storage', 'config', 'issues'], ...rows])}\n`;
}
