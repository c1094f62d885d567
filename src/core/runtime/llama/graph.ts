/**
 * Builds decoder-only ONNX graphs from config.json and a safetensors checkpoint, tensor by tensor, with the
 * weights streamed into external data:
 *
 * - the full model, with the Optimum / transformers.js I/O: inputs `input_ids` [batch_size,
 *   sequence_length], `attention_mask` [batch_size, total_sequence_length], `past_key_values.N.key|value`
 *   [batch_size, kv_heads, past_sequence_length, head_dim]; outputs `logits` [batch_size, sequence_length,
 *   vocab] (float32 always) and `present.N.key|value`;
 * - one graph per decoder block for calibration: inputs `hidden_states` [batch_size, sequence_length, H] and
 *   `attention_mask` [batch_size, sequence_length] (right padding), output `block_output`, plus in-graph
 *   statistics of every linear's input over the non-padding tokens: `absmax.<module>` (scalar),
 *   `channel_absmax.<module>` [in] and, for Hessian modules, `H_out.<module>` = `H_in.<module>` + XᵀX [in, in]
 *   (the caller scales by 2/n and feeds H_out back as the next batch's H_in).
 *
 * Both use the same block code: RMSNorm (SimplifiedLayerNormalization), q/k/v projections (linear.ts, so
 * quantized checkpoints run from their stored form), attention (attention.ts: com.microsoft.GroupQueryAttention
 * with do_rotary=1 on the CPU and CUDA, the same from plain ops on WebGPU) with cos/sin caches computed in float64
 * from the rope config, o_proj, residual, RMSNorm, the MLP (moe.ts: SwiGLU, or a router and experts), residual.
 */
import { DataType, GraphBuilder, attr } from '../onnx/builder';
import { decodeToFloat32, encodeFromFloat32 } from '../../dtypes/convert';
import { Checkpoint } from '../../safetensors/checkpoint';
import { ModelConfigResult, readModelConfig } from '../../checkpoint/config';
import type { LayerMap, LinearModule } from '../../checkpoint/scheme';
import { modelLayerMap } from '../../checkpoint/summary';
import type { GptqCheckpointFormat } from '../../quant/gptqFormat';
import { DecoderConfig, MLP_EXPERT_NAMING, ModelConfigError, parseDecoderConfig, ropeCaches } from './config';
import { BlockLinear, ExpertForm, Tapper, emitMlp, expertFormFor, mlpLinears, mlpModules } from './moe';
import { AttentionForm, AttentionInputs, attentionFormFor, attentionInputs, emitAttention } from './attention';
import { Fp8WeightMode, GraphTarget, Int8Kernel, LinearEmitContext, int4AccuracyLevelFor, int8KernelFor, defaultFp8Weights, emitLinear, floatInitializer, linearKind, LinearKind, matMulTransA, matMulTransB } from './linear';

export type Precision = 'fp32' | 'fp16';

export interface DecoderGraphOptions {
  /** fp32 (CPU) or fp16 activations and KV cache (CUDA: GroupQueryAttention has no fp32 CUDA kernel). */
  readonly precision?: Precision;
  /** Longest past + current sequence the graph serves (rows of the cos/sin caches). Default min(config, 4096). */
  readonly maxSequenceLength?: number;
  /** MatMulNBits accuracy_level for INT4 layers (0 exact, 4 int8 compute). Default 4. */
  readonly int4AccuracyLevel?: number;
  /** MatMulInteger variant for INT8 layers (default: the target provider's, linear.ts int8KernelFor). */
  readonly int8Kernel?: Int8Kernel;
  /** The execution provider the graph is for (default cpu): WebGPU gets ops it has kernels for (linear.ts). */
  readonly target?: GraphTarget;
  /** FP8 weights expanded to float at build, or dequantized per run (default: linear.ts defaultFp8Weights(target)). */
  readonly fp8Weights?: Fp8WeightMode;
  /** Emit logits for the last position only ([batch, 1, vocab]): cheaper prefill for generation. */
  readonly lastTokenLogitsOnly?: boolean;
  /** GroupQueryAttention or plain ops (default: attention.ts attentionFormFor(target): plain ops on WebGPU only). */
  readonly attention?: AttentionForm;
  /**
   * Mixture-of-experts layers: every expert on every token, or each on its routed tokens (default: moe.ts
   * expertFormFor(target): routed on the CPU). Block graphs are always dense (calibration sees every expert).
   */
  readonly experts?: ExpertForm;
}

/** Options of a block graph only. */
export interface BlockGraphOptions extends DecoderGraphOptions {
  readonly taps?: CalibrationTaps;
  /**
   * Float32 [out, in] weights that replace the checkpoint's for the named linear modules (the one-pass
   * quantize job runs a block with the dequantized values of the layers it has just written).
   */
  readonly weightOverrides?: ReadonlyMap<string, Float32Array>;
  /**
   * Linear modules whose [out, in] weight is a graph input `weight.<module>` (the graph's float type) instead of
   * an initializer: one session runs a block with any candidate quantization of that layer (plan/sensitivity.ts).
   */
  readonly weightInputs?: readonly string[];
}

export interface CalibrationTaps {
  readonly absmax?: boolean;
  readonly channelAbsmax?: boolean;
  /** Accumulate Hessians for all linears (true) or the named modules. */
  readonly hessian?: boolean | readonly string[];
}

export class GraphBuildError extends Error {
  override readonly name = 'GraphBuildError';
}

/** A checkpoint opened for graph building: parsed config, layer map, modules by name. */
export interface DecoderModel {
  readonly folder: string;
  readonly raw: Record<string, unknown>;
  readonly config: DecoderConfig;
  readonly checkpoint: Checkpoint;
  readonly layerMap: LayerMap;
  readonly modules: ReadonlyMap<string, LinearModule>;
  readonly gptqFormat?: GptqCheckpointFormat;
}

/** Opens `folder` for graph building (config.json first: without a usable one nothing else is read). */
export async function openDecoderModel(folder: string): Promise<DecoderModel> {
  const configResult = await readModelConfig(folder);
  decoderConfigOf(folder, configResult);
  const checkpoint = await Checkpoint.open(folder);
  try {
    return decoderModelOf(folder, configResult, checkpoint, modelLayerMap(checkpoint, configResult));
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}

function decoderConfigOf(folder: string, configResult: ModelConfigResult): { raw: Record<string, unknown>; config: DecoderConfig } {
  if (configResult.error) throw new ModelConfigError('(file)', configResult.error);
  if (!configResult.raw) throw new ModelConfigError('(file)', `no config.json in ${folder}; the runtime needs it to build a graph`);
  return { raw: configResult.raw, config: parseDecoderConfig(configResult.raw) };
}

/**
 * A checkpoint already open (a job's model: jobs/openedModel.ts), with its config.json and layer map, as a
 * DecoderModel; the checkpoint stays the caller's to close.
 */
export function decoderModelOf(folder: string, configResult: ModelConfigResult, checkpoint: Checkpoint, layerMap: LayerMap): DecoderModel {
  const { raw, config } = decoderConfigOf(folder, configResult);
  const errors = checkpoint.problems.filter((p) => p.severity === 'error');
  if (errors.length > 0) throw new GraphBuildError(`${folder}: the checkpoint is damaged: ${errors[0]!.message}${errors.length > 1 ? ` (and ${errors.length - 1} more problems)` : ''}`);
  const modules = new Map(layerMap.modules.map((m) => [m.name, m]));
  return { folder, raw, config: withCheckpointNaming(folder, config, checkpoint, modules), checkpoint, layerMap, modules, gptqFormat: layerMap.scheme.gptq?.checkpointFormat };
}

/** A tensor holding all experts of a layer in one 3-D array (gpt-oss; transformers 5 as it fuses Mixtral's experts). */
const FUSED_EXPERTS_TENSOR = /^model\.layers\.\d+\.(?:mlp|block_sparse_moe)\.experts\.(?:gate_up_proj|gate_proj|up_proj|down_proj)(?:_blocks)?$/;

/**
 * The expert naming the checkpoint uses: Mixtral's `block_sparse_moe.experts.E.w1` or the `mlp.experts.E.gate_proj`
 * that newer savers (and llm-compressor's linearized experts) write. Experts fused in 3-D tensors are refused here,
 * naming the tensor: the graph runs one linear per expert.
 */
function withCheckpointNaming(folder: string, config: DecoderConfig, checkpoint: Checkpoint, modules: ReadonlyMap<string, LinearModule>): DecoderConfig {
  if (!config.moe) return config;
  const fused = checkpoint.tensors.find((t) => FUSED_EXPERTS_TENSOR.test(t.name.replace(/\.weight$/, '')) && t.shape.length >= 3);
  if (fused) {
    throw new GraphBuildError(`${folder}: tensor ${fused.name} [${fused.shape.join(', ')}] holds the experts of a layer fused in one tensor; the runtime runs one linear per expert (model.layers.N.mlp.experts.E.gate_proj …), as llm-compressor saves them: quantize the checkpoint (the quantize job writes per-expert linears) or save it with per-expert weights`);
  }
  const layer = config.moe.sparseLayers.indexOf(true);
  if (layer < 0 || config.moe.naming === MLP_EXPERT_NAMING) return config;
  const has = (naming: typeof MLP_EXPERT_NAMING) => modules.has(`model.layers.${layer}.${naming.container}.experts.0.${naming.gate}`);
  if (!has(config.moe.naming) && has(MLP_EXPERT_NAMING)) return { ...config, moe: { ...config.moe, naming: MLP_EXPERT_NAMING } };
  return config;
}

function requireTensor(model: DecoderModel, name: string, shape?: readonly number[]): void {
  if (!model.checkpoint.has(name)) throw new GraphBuildError(`${model.folder}: tensor ${name} is missing`);
  const info = model.checkpoint.tensor(name);
  if (shape && (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))) {
    throw new GraphBuildError(`${model.folder}: tensor ${name} has shape [${info.shape.join(', ')}], config.json implies [${shape.join(', ')}]`);
  }
}

function moduleOf(model: DecoderModel, name: string, inFeatures: number, outFeatures: number): LinearModule {
  const module = model.modules.get(name);
  if (!module || module.state === 'missing' || !module.observed) throw new GraphBuildError(`${model.folder}: linear layer ${name} is missing from the checkpoint`);
  const shape = module.observed.shape;
  if (shape && (shape[0] !== outFeatures || shape[1] !== inFeatures)) {
    throw new GraphBuildError(`${model.folder}: ${name} is [${shape.join(', ')}] (out, in), config.json implies [${outFeatures}, ${inFeatures}]`);
  }
  return module;
}

/** The four attention projections of block `l`, with their (in, out) features. */
function attentionModules(config: DecoderConfig, l: number): [BlockLinear, BlockLinear, BlockLinear, BlockLinear] {
  const H = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const p = `model.layers.${l}`;
  return [
    { name: `${p}.self_attn.q_proj`, in: H, out: q },
    { name: `${p}.self_attn.k_proj`, in: H, out: kv },
    { name: `${p}.self_attn.v_proj`, in: H, out: kv },
    { name: `${p}.self_attn.o_proj`, in: q, out: H },
  ];
}

/** Every linear of block `l` with its (in, out) features: attention, then the MLP's (a router and its experts in a sparse layer). */
export function blockModules(config: DecoderConfig, l: number): BlockLinear[] {
  return [...attentionModules(config, l), ...mlpLinears(mlpModules(config, l))];
}

/** Names of the linear modules of block `l` (for taps and Hessians). */
export function blockModuleNames(config: DecoderConfig, l: number): string[] {
  return blockModules(config, l).map((m) => m.name);
}

function resolveMaxSequence(config: DecoderConfig, options: DecoderGraphOptions): number {
  let length = options.maxSequenceLength ?? Math.min(config.maxPositionEmbeddings, 4096);
  if (!Number.isSafeInteger(length) || length <= 0) throw new GraphBuildError(`maxSequenceLength must be a positive integer, not ${length}`);
  // Within the window a sliding-window model is exactly full attention; the graph stops there.
  if (config.slidingWindow !== undefined) length = Math.min(length, config.slidingWindow);
  return length;
}

class BlockEmitter {
  readonly ctx: LinearEmitContext;
  readonly floatType: DataType.FLOAT | DataType.FLOAT16;
  readonly attentionForm: AttentionForm;
  readonly expertForm: ExpertForm;
  private readonly weightOverrides: ReadonlyMap<string, Float32Array> | undefined;
  private readonly weightInputs: ReadonlySet<string>;

  constructor(
    readonly model: DecoderModel,
    readonly g: GraphBuilder,
    options: BlockGraphOptions,
  ) {
    this.floatType = options.precision === 'fp16' ? DataType.FLOAT16 : DataType.FLOAT;
    this.weightOverrides = options.weightOverrides;
    this.attentionForm = options.attention ?? attentionFormFor(options.target ?? 'cpu');
    this.expertForm = options.experts ?? expertFormFor(options.target ?? 'cpu');
    this.weightInputs = new Set(options.weightInputs ?? []);
    this.ctx = { g, checkpoint: model.checkpoint, floatType: this.floatType, int4AccuracyLevel: options.int4AccuracyLevel ?? int4AccuracyLevelFor(options.target ?? 'cpu'), int8Kernel: options.int8Kernel ?? int8KernelFor(options.target ?? 'cpu'), gptqFormat: model.gptqFormat, target: options.target ?? 'cpu', fp8Weights: options.fp8Weights ?? defaultFp8Weights(options.target) };
  }

  async rmsNorm(x: string, weight: string, size = this.model.config.hiddenSize): Promise<string> {
    requireTensor(this.model, weight, [size]);
    const w = await floatInitializer(this.ctx, weight, this.floatType);
    // stash_type 1: the mean of squares is computed in float32 even for fp16 activations.
    return this.g.op('SimplifiedLayerNormalization', [x, w], { axis: -1, epsilon: attr.float(this.model.config.rmsNormEps), stash_type: 1 });
  }

  /** cos/sin caches for `positions` rows, float64-computed, rounded once to the graph's float type. */
  async ropeCaches(positions: number): Promise<{ cos: string; sin: string }> {
    const { cos, sin } = ropeCaches(this.model.config.rope, positions);
    const half = this.model.config.rope.dim / 2;
    const encode = (v: Float64Array) => (this.floatType === DataType.FLOAT ? Float32Array.from(v) : encodeFromFloat32('F16', Float32Array.from(v)));
    return {
      cos: await this.g.initializer('cos_cache', this.floatType, [positions, half], encode(cos)),
      sin: await this.g.initializer('sin_cache', this.floatType, [positions, half], encode(sin)),
    };
  }

  /** The attention inputs every block shares, from the [batch, total] attention mask and the new tokens [batch, S, …]. */
  async attentionInputs(mask: string, hidden: string, maxSequenceLength: number): Promise<AttentionInputs> {
    return attentionInputs(this.g, this.attentionForm, mask, hidden, await this.ropeCaches(maxSequenceLength), this.floatType);
  }

  async linear(name: string, inFeatures: number, outFeatures: number, x: string): Promise<string> {
    const module = moduleOf(this.model, name, inFeatures, outFeatures);
    const override = this.weightOverrides?.get(name);
    const fed = this.weightInputs.has(name);
    if (!override && !fed) return emitLinear(this.ctx, module, x);
    let w: string;
    if (fed) {
      w = `weight.${name}`;
    } else {
      if (override!.length !== inFeatures * outFeatures) throw new GraphBuildError(`${name}: the replacement weight has ${override!.length} values, [${outFeatures}, ${inFeatures}] needs ${inFeatures * outFeatures}`);
      const base = name.replace(/[^A-Za-z0-9_.]/g, '_');
      const data = this.floatType === DataType.FLOAT ? override! : encodeFromFloat32('F16', override!);
      w = await this.g.initializer(`${base}.weight_replaced`, this.floatType, [outFeatures, inFeatures], data);
    }
    const y = matMulTransB(this.g, this.ctx.target, x, w);
    const bias = `${name}.bias`;
    return this.model.checkpoint.has(bias) ? this.g.op('Add', [y, await floatInitializer(this.ctx, bias, this.floatType)]) : y;
  }

  /** Qwen3's q_norm / k_norm: RMSNorm over head_dim of each of the `heads` heads in x [batch, seq, heads · head_dim]. */
  private async headNorm(x: string, weight: string, heads: number): Promise<string> {
    const D = this.model.config.headDim;
    const split = this.g.op('Reshape', [x, this.g.int64s('heads_shape', [0, 0, heads, D])]);
    return this.g.op('Reshape', [await this.rmsNorm(split, weight, D), this.g.int64s('merged_shape', [0, 0, heads * D])]);
  }

  /** One decoder block. Returns the block's output and the present KV values. */
  async block(l: number, x: string, attention: AttentionInputs, past: { key: string; value: string } | undefined, tapper?: Tapper): Promise<{ out: string; presentKey: string; presentValue: string }> {
    const g = this.g;
    const c = this.model.config;
    const [q, k, v, o] = attentionModules(c, l);
    const p = `model.layers.${l}`;
    const h = await this.rmsNorm(x, `${p}.input_layernorm.weight`);
    tapper?.tap(h, c.hiddenSize, [q.name, k.name, v.name]);
    let qv = await this.linear(q.name, q.in, q.out, h);
    let kv = await this.linear(k.name, k.in, k.out, h);
    if (c.qkNorm) {
      qv = await this.headNorm(qv, `${p}.self_attn.q_norm.weight`, c.numHeads);
      kv = await this.headNorm(kv, `${p}.self_attn.k_norm.weight`, c.numKvHeads);
    }
    const vv = await this.linear(v.name, v.in, v.out, h);
    const { output: attn, presentKey, presentValue } = emitAttention(g, l, c, attention, qv, kv, vv, past);
    tapper?.tap(attn, c.numHeads * c.headDim, [o.name]);
    const attnOut = await this.linear(o.name, o.in, o.out, attn);
    const mid = g.op('Add', [x, attnOut]);
    const h2 = await this.rmsNorm(mid, `${p}.post_attention_layernorm.weight`);
    const mlpOut = await emitMlp(this, mlpModules(c, l), h2, tapper, this.expertForm);
    return { out: g.op('Add', [mid, mlpOut]), presentKey, presentValue };
  }
}

export interface GraphIo {
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
}

/** Facts about a built full-model graph that a session needs (KV shapes, types). */
export interface DecoderGraphInfo {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly hiddenSize: number;
  readonly vocabSize: number;
  readonly precision: Precision;
  readonly maxSequenceLength: number;
  readonly lastTokenLogitsOnly: boolean;
  /** Storage of each linear module (float, fp8, int8, int4). */
  readonly linearKinds: Readonly<Record<string, LinearKind>>;
}

function linearKinds(model: DecoderModel, withLmHead: boolean): Record<string, LinearKind> {
  const kinds: Record<string, LinearKind> = {};
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const m of blockModules(model.config, l)) kinds[m.name] = linearKind(moduleOf(model, m.name, m.in, m.out));
  }
  if (withLmHead && !model.config.tieWordEmbeddings) kinds.lm_head = linearKind(moduleOf(model, 'lm_head', model.config.hiddenSize, model.config.vocabSize));
  return kinds;
}

/** Writes the full decoder graph (`modelPath` and `modelPath.data`). */
export async function writeDecoderGraph(model: DecoderModel, modelPath: string, options: DecoderGraphOptions = {}): Promise<DecoderGraphInfo> {
  const c = model.config;
  const maxSequenceLength = resolveMaxSequence(c, options);
  const kinds = linearKinds(model, true);
  const g = await GraphBuilder.create({ modelPath, graphName: `${c.architecture} decoder`, metadata: { 'quantlens.max_sequence_length': String(maxSequenceLength) } });
  try {
    const e = new BlockEmitter(model, g, options);
    const ft = e.floatType;
    const ids = g.input('input_ids', DataType.INT64, ['batch_size', 'sequence_length']);
    const mask = g.input('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']);
    const pasts: { key: string; value: string }[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const dims = ['batch_size', c.numKvHeads, 'past_sequence_length', c.headDim];
      pasts.push({ key: g.input(`past_key_values.${l}.key`, ft, dims), value: g.input(`past_key_values.${l}.value`, ft, dims) });
    }
    requireTensor(model, 'model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]);
    const table = await floatInitializer(e.ctx, 'model.embed_tokens.weight', ft);
    let x = g.op('Gather', [table, ids], { axis: 0 });
    const attention = await e.attentionInputs(mask, ids, maxSequenceLength);
    const presents: string[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const { out, presentKey, presentValue } = await e.block(l, x, attention, pasts[l]);
      x = out;
      presents.push(presentKey, presentValue);
    }
    if (options.lastTokenLogitsOnly) x = g.op('Slice', [x, g.int64s('starts', [-1]), g.int64s('ends', [2 ** 62]), g.int64s('axes', [1])]);
    const normed = await e.rmsNorm(x, 'model.norm.weight');
    let logits: string;
    if (c.tieWordEmbeddings) logits = matMulTransB(g, e.ctx.target, normed, table);
    else logits = await e.linear('lm_head', c.hiddenSize, c.vocabSize, normed);
    if (ft !== DataType.FLOAT) logits = g.op('Cast', [logits], { to: DataType.FLOAT });
    g.output(logits, DataType.FLOAT, ['batch_size', options.lastTokenLogitsOnly ? 1 : 'sequence_length', c.vocabSize], 'logits');
    for (let l = 0; l < c.numLayers; l++) {
      const dims = ['batch_size', c.numKvHeads, 'total_sequence_length', c.headDim];
      g.output(presents[2 * l]!, ft, dims);
      g.output(presents[2 * l + 1]!, ft, dims);
    }
    await g.finish();
  } catch (error) {
    await g.abort();
    throw error;
  }
  return {
    numLayers: c.numLayers,
    numKvHeads: c.numKvHeads,
    headDim: c.headDim,
    hiddenSize: c.hiddenSize,
    vocabSize: c.vocabSize,
    precision: options.precision ?? 'fp32',
    maxSequenceLength,
    lastTokenLogitsOnly: options.lastTokenLogitsOnly ?? false,
    linearKinds: kinds,
  };
}

export interface BlockGraphInfo {
  readonly block: number;
  readonly modules: readonly string[];
  /** Modules whose Hessian the graph accumulates (inputs H_in.<m>, outputs H_out.<m>). */
  readonly hessianModules: readonly string[];
  /** Input features of each module (the Hessian is [in, in]). */
  readonly inFeatures: Readonly<Record<string, number>>;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
}

/** Writes the calibration graph of decoder block `l`. */
export async function writeBlockGraph(model: DecoderModel, l: number, modelPath: string, options: BlockGraphOptions = {}): Promise<BlockGraphInfo> {
  const c = model.config;
  if (!Number.isSafeInteger(l) || l < 0 || l >= c.numLayers) throw new GraphBuildError(`block ${l} does not exist (the model has ${c.numLayers})`);
  const taps = options.taps ?? { absmax: true, channelAbsmax: true, hessian: true };
  const modules = blockModules(c, l);
  const names = modules.map((m) => m.name);
  const hessianModules = taps.hessian === true ? names : taps.hessian ? names.filter((n) => (taps.hessian as readonly string[]).includes(n)) : [];
  if (Array.isArray(taps.hessian)) {
    for (const n of taps.hessian as readonly string[]) if (!names.includes(n)) throw new GraphBuildError(`hessian tap ${n} is not a linear module of block ${l} (${names.join(', ')})`);
  }
  const inFeatures = Object.fromEntries(modules.map((m) => [m.name, m.in]));
  const maxSequenceLength = resolveMaxSequence(c, options);
  const g = await GraphBuilder.create({ modelPath, graphName: `${c.architecture} block ${l}` });
  const inputs: string[] = [];
  const outputs: string[] = [];
  try {
    // Calibration statistics are over every token of every expert: the dense form.
    const e = new BlockEmitter(model, g, { ...options, experts: 'dense' });
    const ft = e.floatType;
    inputs.push(g.input('hidden_states', ft, ['batch_size', 'sequence_length', c.hiddenSize]));
    const mask = g.input('attention_mask', DataType.INT64, ['batch_size', 'sequence_length']);
    inputs.push(mask);
    for (const m of hessianModules) inputs.push(g.input(`H_in.${m}`, DataType.FLOAT, [inFeatures[m]!, inFeatures[m]!]));
    for (const m of options.weightInputs ?? []) {
      const module = modules.find((x) => x.name === m);
      if (!module) throw new GraphBuildError(`weight input ${m} is not a linear module of block ${l} (${names.join(', ')})`);
      inputs.push(g.input(`weight.${m}`, ft, [module.out, module.in]));
    }
    const attention = await e.attentionInputs(mask, inputs[0]!, maxSequenceLength);
    const keep = g.op('Unsqueeze', [g.op('Cast', [mask], { to: DataType.BOOL }), g.int64s('axes', [-1])]);
    const zero = g.constant('zero', DataType.FLOAT, [], Float32Array.of(0));
    const tapper: Tapper = {
      tap: (x, K, targets) => {
        // Padding rows are replaced by zeros (Where, not Mul, so that garbage in them cannot leak as NaN).
        const xf = ft === DataType.FLOAT ? x : g.op('Cast', [x], { to: DataType.FLOAT });
        const flat = g.op('Reshape', [g.op('Where', [keep, xf, zero]), g.int64s('shape', [-1, K])]);
        const abs = taps.absmax || taps.channelAbsmax ? g.op('Abs', [flat]) : undefined;
        const channel = taps.channelAbsmax || taps.absmax ? g.op('ReduceMax', [abs!, g.int64s('axes', [0])], { keepdims: 0 }) : undefined;
        const scalar = taps.absmax ? g.op('ReduceMax', [channel!], { keepdims: 0 }) : undefined;
        const wantsHessian = targets.filter((t) => hessianModules.includes(t));
        const xtx = wantsHessian.length > 0 ? matMulTransA(g, e.ctx.target, flat, flat) : undefined;
        for (const t of targets) {
          if (scalar) outputs.push(g.output(g.op('Identity', [scalar]), DataType.FLOAT, [], `absmax.${t}`));
          if (taps.channelAbsmax) outputs.push(g.output(g.op('Identity', [channel!]), DataType.FLOAT, [K], `channel_absmax.${t}`));
          if (wantsHessian.includes(t)) outputs.push(g.output(g.op('Add', [`H_in.${t}`, xtx!]), DataType.FLOAT, [K, K], `H_out.${t}`));
        }
      },
    };
    const { out } = await e.block(l, inputs[0]!, attention, undefined, tapper);
    outputs.unshift(g.output(out, ft, ['batch_size', 'sequence_length', c.hiddenSize], 'block_output'));
    await g.finish();
  } catch (error) {
    await g.abort();
    throw error;
  }
  return { block: l, modules: names, hessianModules, inFeatures, inputs, outputs };
}

/**
 * The model's head as a KL meter (plan/sensitivity.ts): inputs `hidden_states` and `reference_hidden_states`
 * [tokens, H] (the last block's outputs of a changed model and of the float model, same tokens), output `kl`
 * [tokens] = KL(softmax(ref logits) ‖ softmax(logits)) in nats, each row's next-token distribution through the
 * final RMSNorm and lm_head (or the tied embeddings). Both go through the head in one batch (Concat, then Split),
 * so the head's weights are in the graph once; the KL arithmetic is float64 (float32 on WebGPU, which has none).
 * Only [tokens] floats leave the graph: never [tokens, vocab] logits.
 */
export async function writeKlHeadGraph(model: DecoderModel, modelPath: string, options: DecoderGraphOptions = {}): Promise<void> {
  const c = model.config;
  const g = await GraphBuilder.create({ modelPath, graphName: `${c.architecture} head (KL)` });
  try {
    const e = new BlockEmitter(model, g, options);
    const ft = e.floatType;
    const x = g.input('hidden_states', ft, ['tokens', c.hiddenSize]);
    const ref = g.input('reference_hidden_states', ft, ['tokens', c.hiddenSize]);
    const both = g.op('Concat', [ref, x], { axis: 0 });
    const normed = await e.rmsNorm(both, 'model.norm.weight');
    let logits: string;
    if (c.tieWordEmbeddings) {
      requireTensor(model, 'model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]);
      logits = matMulTransB(g, e.ctx.target, normed, await floatInitializer(e.ctx, 'model.embed_tokens.weight', ft));
    } else logits = await e.linear('lm_head', c.hiddenSize, c.vocabSize, normed);
    // KL is a small difference of two log-softmaxes: in float32 the log-sum-exp's rounding (an ulp of ~10) is
    // of the size of a small KL itself, so the subtraction is done in float64 where the provider has kernels.
    const klType = (options.target ?? 'cpu') === 'webgpu' ? DataType.FLOAT : DataType.DOUBLE;
    logits = g.op('Cast', [logits], { to: klType });
    const logProbs = g.op('LogSoftmax', [logits], { axis: -1 });
    const [lp, lq] = g.node('Split', [logProbs], [g.uniqueName('log_p'), g.uniqueName('log_q')], { axis: 0, num_outputs: 2 });
    const kl = g.op('ReduceSum', [g.op('Mul', [g.op('Exp', [lp!]), g.op('Sub', [lp!, lq!])]), g.int64s('axes', [-1])], { keepdims: 0 });
    g.output(klType === DataType.FLOAT ? kl : g.op('Cast', [kl], { to: DataType.FLOAT }), DataType.FLOAT, ['tokens'], 'kl');
    await g.finish();
  } catch (error) {
    await g.abort();
    throw error;
  }
}

/**
 * Embeddings of `ids` ([count] token ids) as float32 [count, hidden], reading only the rows needed: the
 * input of block 0 for calibration.
 */
export async function embedTokens(model: DecoderModel, ids: ArrayLike<number | bigint>): Promise<Float32Array> {
  const { hiddenSize: H, vocabSize: V } = model.config;
  const name = 'model.embed_tokens.weight';
  requireTensor(model, name, [V, H]);
  const info = model.checkpoint.tensor(name);
  const elementBytes = info.byteLength / (V * H);
  const out = new Float32Array(ids.length * H);
  const rows = new Map<number, Float32Array>();
  for (let i = 0; i < ids.length; i++) {
    const id = Number(ids[i]);
    if (!Number.isSafeInteger(id) || id < 0 || id >= V) throw new GraphBuildError(`token id ${ids[i]} at position ${i} is outside the vocabulary (0 … ${V - 1})`);
    let row = rows.get(id);
    if (!row) {
      const bytes = await model.checkpoint.readTensorRange(name, id * H * elementBytes, (id + 1) * H * elementBytes);
      row = decodeToFloat32(info.dtype, bytes);
      rows.set(id, row);
    }
    out.set(row, i * H);
  }
  return out;
}
