/**
 * What `quantlens inspect` and the inspector's header view show: counts, parameters and bytes by dtype,
 * shards, metadata, problems, and the tensor table. Computed from headers only.
 */
import { basename } from 'node:path';
import { DType } from '../dtypes/dtype';
import { Checkpoint, CheckpointLayout, CheckpointProblem } from '../safetensors/checkpoint';
import { ModelConfigResult, ModelConfigSummary, readModelConfig } from './config';
import { DetectedScheme, LayerMap, buildLayerMap } from './scheme';
import { MoeFinding, moeFindings } from './layerGroups';
import { textConfigOf } from './moe';

export interface DtypeTotals {
  readonly tensors: number;
  /** Stored elements (a packed INT4 word counts once here; see the inspector for logical parameters). */
  readonly elements: number;
  readonly bytes: number;
}

export interface TensorRow {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly elements: number;
  readonly bytes: number;
  readonly shard: string;
  /** Absolute byte offset in the shard file. */
  readonly offset: number;
}

export interface CheckpointSummary {
  readonly path: string;
  readonly folder: string;
  readonly layout: CheckpointLayout;
  readonly index?: string;
  /** For a shard opened on its own: the index (file name) that lists it. */
  readonly shardOf?: string;
  readonly tensorCount: number;
  readonly totalElements: number;
  readonly totalBytes: number;
  readonly byDtype: Readonly<Partial<Record<DType, DtypeTotals>>>;
  readonly shards: readonly { name: string; tensors: number; bytes: number; fileSize: number; error?: string }[];
  readonly metadata: Readonly<Record<string, string | number>>;
  readonly config?: ModelConfigSummary;
  readonly configError?: string;
  readonly problems: readonly CheckpointProblem[];
  /** The detected quantization scheme, reconciled with the tensors. */
  readonly scheme: DetectedScheme;
  /** Linear layers by state (quantized / ignored / unquantized / missing). */
  readonly layerCounts: LayerMap['counts'];
  /** Mixture-of-experts modules grouped per layer and role (empty for a dense model). */
  readonly layerGroups: LayerMap['groups'];
  /** A quantized router, experts left unquantized beside quantized ones. */
  readonly moeFindings: readonly MoeFinding[];
  readonly tensors: readonly TensorRow[];
}

export interface CheckpointAnalysis {
  readonly summary: CheckpointSummary;
  readonly layerMap: LayerMap;
}

/** Summary plus the full layer map, from headers and config.json only. */
export async function analyzeCheckpoint(checkpoint: Checkpoint, path: string): Promise<CheckpointAnalysis> {
  const config = await readModelConfig(checkpoint.folder);
  const raw = config.raw;
  // A shard's modules split across files are judged with their parts from the neighbouring shard.
  const tensors = checkpoint.companions.length ? [...checkpoint.tensors, ...checkpoint.companions] : checkpoint.tensors;
  const layerMap = buildLayerMap(tensors, raw?.quantization_config ?? raw?.compression_config, {
    numHiddenLayers: config.summary?.numHiddenLayers,
    tieWordEmbeddings: typeof raw?.tie_word_embeddings === 'boolean' ? raw.tie_word_embeddings : undefined,
    hasConfig: raw !== undefined,
    elsewhere: checkpoint.shardOf?.elsewhere,
    config: raw,
  });
  return { summary: summarize(checkpoint, path, config, layerMap), layerMap };
}

/**
 * The layer map of a whole checkpoint with its config.json, as the jobs, the recipe checks and the graph builder
 * use it: the modules config.json promises (its family, blocks, experts and tied embeddings) reconciled with the
 * tensors, and the quantization_config it declares.
 */
export function modelLayerMap(checkpoint: Checkpoint, config: ModelConfigResult): LayerMap {
  const raw = config.raw;
  const tie = raw?.tie_word_embeddings ?? textConfigOf(raw)?.tie_word_embeddings;
  return buildLayerMap(checkpoint.tensors, raw?.quantization_config, {
    numHiddenLayers: config.summary?.numHiddenLayers,
    tieWordEmbeddings: typeof tie === 'boolean' ? tie : undefined,
    hasConfig: raw !== undefined,
    ...(raw ? { config: raw } : {}),
  });
}

export async function summarizeCheckpoint(checkpoint: Checkpoint, path: string): Promise<CheckpointSummary> {
  return (await analyzeCheckpoint(checkpoint, path)).summary;
}

function summarize(checkpoint: Checkpoint, path: string, config: Awaited<ReturnType<typeof readModelConfig>>, layerMap: LayerMap): CheckpointSummary {
  const byDtype: Partial<Record<DType, DtypeTotals>> = {};
  const perShard = new Map<string, { tensors: number; bytes: number }>();
  let totalElements = 0;
  let totalBytes = 0;
  const tensors: TensorRow[] = checkpoint.tensors.map((t) => {
    const totals = byDtype[t.dtype] ?? { tensors: 0, elements: 0, bytes: 0 };
    byDtype[t.dtype] = { tensors: totals.tensors + 1, elements: totals.elements + t.numel, bytes: totals.bytes + t.byteLength };
    const shard = perShard.get(t.shard) ?? { tensors: 0, bytes: 0 };
    perShard.set(t.shard, { tensors: shard.tensors + 1, bytes: shard.bytes + t.byteLength });
    totalElements += t.numel;
    totalBytes += t.byteLength;
    return { name: t.name, dtype: t.dtype, shape: t.shape, elements: t.numel, bytes: t.byteLength, shard: t.shard, offset: t.fileOffset };
  });
  return {
    path,
    folder: checkpoint.folder,
    layout: checkpoint.layout,
    index: checkpoint.indexPath ? basename(checkpoint.indexPath) : undefined,
    shardOf: checkpoint.shardOf ? basename(checkpoint.shardOf.index) : undefined,
    tensorCount: tensors.length,
    totalElements,
    totalBytes,
    byDtype,
    shards: checkpoint.shards.map((s) => ({
      name: s.name,
      tensors: perShard.get(s.name)?.tensors ?? 0,
      bytes: perShard.get(s.name)?.bytes ?? 0,
      fileSize: s.fileSize,
      error: s.error?.message,
    })),
    metadata: checkpoint.metadata,
    config: config.summary,
    configError: config.error,
    problems: checkpoint.problems,
    scheme: layerMap.scheme,
    layerCounts: layerMap.counts,
    layerGroups: layerMap.groups,
    moeFindings: moeFindings(layerMap.modules, layerMap.groups),
    tensors,
  };
}
