/**
 * The model a recipe is checked against: the linear layers of a checkpoint (name, input and output
 * features) and every module name, read from safetensors headers only (src/core/checkpoint/scheme.ts's
 * layer map does the tensor bookkeeping).
 */
import { modelLayerMap } from '../checkpoint/summary';
import { ModelConfigResult, readModelConfig } from '../checkpoint/config';
import type { LayerMap } from '../checkpoint/scheme';
import { Checkpoint, type CheckpointTensor } from '../safetensors/checkpoint';
import { expertSliceOf, fusedLayoutOf } from '../checkpoint/fusedSlices';
import type { ModelLayer, ModelLayers } from './types';

const EMBEDDING = /(^|\.)(embed_tokens|wte|word_embeddings|embed_in)$/;

/** Opens `dir` (headers and config.json), reads its layers and closes it: for callers without an open model. */
export async function modelLayersFromCheckpoint(dir: string): Promise<ModelLayers> {
  const checkpoint = await Checkpoint.open(dir);
  try {
    const config = await readModelConfig(checkpoint.folder);
    return modelLayersOf(checkpoint, config, modelLayerMap(checkpoint, config));
  } finally {
    await checkpoint.close();
  }
}

/** The layers of a checkpoint already open, with its config.json and layer map (a job's model: jobs/openedModel.ts). */
export function modelLayersOf(checkpoint: Checkpoint, config: ModelConfigResult, layerMap: LayerMap): ModelLayers {
  const raw = config.raw ?? {};
  const textConfig = typeof raw.text_config === 'object' && raw.text_config !== null ? (raw.text_config as Record<string, unknown>) : {};
  const tie = (raw.tie_word_embeddings ?? textConfig.tie_word_embeddings) as unknown;
  const packedBits = (name: string): number | undefined => layerMap.modules.find((m) => m.name === name)?.declared?.scheme?.weights?.numBits;

  const layers: ModelLayer[] = [];
  let linearBytes = 0;
  const byName = new Map(checkpoint.tensors.map((t) => [t.name, t]));
  for (const module of layerMap.modules) {
    if (module.state === 'missing') continue;
    let shape = module.observed?.shape;
    const fused = module.moe?.role === 'fused-experts' && module.observed?.kind === 'float' ? fusedExpertsOf(module.name, byName, raw) : undefined;
    if (fused) {
      layers.push(fused);
      for (const t of module.tensors) linearBytes += byName.get(t)?.byteLength ?? 0;
      continue;
    }
    if (!shape) {
      // compressed-tensors packed int weights: [out, in·bits/32] int32.
      const packed = byName.get(`${module.name}.weight_packed`);
      const bits = packedBits(module.name);
      if (packed && packed.shape.length === 2 && packed.dtype === 'I32' && bits) shape = [packed.shape[0]!, Math.round((packed.shape[1]! * 32) / bits)];
    }
    const biasBytes = ['bias', 'e_score_correction_bias'].reduce((sum, b) => sum + (byName.get(`${module.name}.${b}`)?.byteLength ?? 0), 0);
    layers.push({ name: module.name, className: 'Linear', ...(shape ? { outFeatures: shape[0], inFeatures: shape[1] } : {}), ...(biasBytes ? { biasBytes } : {}) });
    for (const t of module.tensors) linearBytes += byName.get(t)?.byteLength ?? 0;
  }
  const modules = new Set<string>();
  let embedding: ModelLayer | undefined;
  for (const tensor of checkpoint.tensors) {
    const parts = tensor.name.split('.');
    for (let i = 1; i < parts.length; i++) modules.add(parts.slice(0, i).join('.'));
    const owner = parts.slice(0, -1).join('.');
    if (parts.at(-1) === 'weight' && EMBEDDING.test(owner) && tensor.shape.length === 2 && !embedding) {
      embedding = { name: owner, className: 'Embedding', inFeatures: tensor.shape[1], outFeatures: tensor.shape[0] };
    }
  }
  if (embedding) layers.push(embedding);
  // A tied lm_head has no tensor of its own but is still a Linear module of the model.
  if (!layers.some((l) => l.name === 'lm_head') && embedding && tie !== false) {
    layers.push({ name: 'lm_head', className: 'Linear', inFeatures: embedding.inFeatures, outFeatures: embedding.outFeatures, tied: true });
  }
  for (const l of layers) modules.add(l.name);
  const dtype = config.summary?.torchDtype;
  const dtypeBytes = dtype === 'float32' ? 4 : dtype === 'float64' ? 8 : 2;
  return {
    layers,
    modules: [...modules],
    dtypeBytes,
    totalBytes: checkpoint.tensors.reduce((sum, t) => sum + t.byteLength, 0),
    linearBytes,
    source: checkpoint.folder,
  };
}

/**
 * A float fused-experts module as the per-expert linears the quantize job splits it into (jobs/fusedExperts.ts):
 * one expert's projection as [out, in], how many there are, and the bias bytes copied beside them.
 */
function fusedExpertsOf(name: string, byName: ReadonlyMap<string, CheckpointTensor>, config: Record<string, unknown>): ModelLayer | undefined {
  const weight = byName.get(name);
  if (!weight || weight.shape.length !== 3) return undefined;
  const gateUp = name.endsWith('.gate_up_proj');
  const slice = expertSliceOf(weight, fusedLayoutOf(config), 0, gateUp ? 'gate_proj' : 'down_proj');
  if (!slice) return undefined;
  const biasBytes = byName.get(`${name}_bias`)?.byteLength ?? 0;
  return { name, className: 'Linear', outFeatures: slice.rows, inFeatures: slice.cols, fusedExperts: { experts: slice.shape[0], projections: gateUp ? 2 : 1 }, ...(biasBytes ? { biasBytes } : {}) };
}

/** Builds ModelLayers from a plain list (tests, previews of configs without a checkpoint). */
export function modelLayersFromList(layers: readonly { name: string; inFeatures?: number; outFeatures?: number; className?: string }[], dtypeBytes = 2): ModelLayers {
  const modules = new Set<string>();
  for (const l of layers) {
    const parts = l.name.split('.');
    for (let i = 1; i <= parts.length; i++) modules.add(parts.slice(0, i).join('.'));
  }
  return { layers: layers.map((l) => ({ className: 'Linear', ...l })), modules: [...modules], dtypeBytes };
}
