/**
 * The decoder graph's configuration, read from config.json: Llama 2 / 3 / 3.1 / 3.2, Mistral and Qwen2
 * (which differ only in fields: GQA head counts, head_dim, rope variant, q/k/v biases, tied embeddings), Qwen3
 * (RMSNorm of each query and key head before the rotary embedding), and the mixture-of-experts Mixtral,
 * Qwen2-MoE and Qwen3-MoE (the same attentions; the MLP of a sparse layer is a router and experts, moe.ts). Anything the graph cannot represent is refused here with the field that says so, before
 * any file is written.
 */

export class ModelConfigError extends Error {
  override readonly name = 'ModelConfigError';
  constructor(readonly field: string, detail: string) {
    super(`config.json ${field}: ${detail}`);
  }
}

export type RopeType = 'default' | 'linear' | 'llama3' | 'dynamic';

export interface RopeConfig {
  readonly type: RopeType;
  readonly theta: number;
  /** Rotated dimensions (= head_dim; partial rotary is not used by these families). */
  readonly dim: number;
  /** linear / llama3 / dynamic factor. */
  readonly factor: number;
  /** llama3 only. */
  readonly lowFreqFactor?: number;
  readonly highFreqFactor?: number;
  readonly originalMaxPositionEmbeddings?: number;
}

/** How a model names the modules of a sparse MLP (checkpoint/moe.ts lists the namings it recognises). */
export interface MoeNaming {
  /** `block_sparse_moe` (Mixtral) or `mlp` (Qwen2-MoE, Qwen3-MoE; Mixtral as newer savers write it). */
  readonly container: 'block_sparse_moe' | 'mlp';
  /** Expert projections: w1 / w3 / w2 (Mixtral) or gate_proj / up_proj / down_proj. */
  readonly gate: string;
  readonly up: string;
  readonly down: string;
}

/** The sparse MLP of a mixture-of-experts decoder (transformers' MixtralSparseMoeBlock, Qwen2MoeSparseMoeBlock). */
export interface MoeDecoderConfig {
  readonly experts: number;
  /** Experts each token is routed to (num_experts_per_tok). */
  readonly perToken: number;
  /** The k routing weights are divided by their sum (Mixtral always; Qwen2-MoE when norm_topk_prob). */
  readonly normalizeTopK: boolean;
  /** Intermediate size of a routed expert. */
  readonly expertIntermediateSize: number;
  /** Qwen2-MoE's shared expert (gated by sigmoid(shared_expert_gate · x)): its intermediate size. */
  readonly sharedExpertIntermediateSize?: number;
  /** Per layer: true = sparse MLP, false = dense MLP of intermediate_size (Qwen2-MoE mlp_only_layers, decoder_sparse_step). */
  readonly sparseLayers: readonly boolean[];
  readonly naming: MoeNaming;
}

export interface DecoderConfig {
  readonly architecture: string;
  readonly modelType: 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'mixtral' | 'qwen2_moe' | 'qwen3_moe';
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly rope: RopeConfig;
  readonly maxPositionEmbeddings: number;
  readonly tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2 always; Llama when attention_bias). */
  readonly qkvBias: boolean;
  /** o_proj carries a bias too (Llama attention_bias). */
  readonly oBias: boolean;
  /** MLP projections carry biases (Llama mlp_bias). */
  readonly mlpBias: boolean;
  /** Qwen3: RMSNorm over head_dim of every query and key head (self_attn.q_norm / k_norm) before the rotary embedding. */
  readonly qkNorm: boolean;
  /** Mistral / Qwen2 sliding window (tokens), when one applies to every layer. */
  readonly slidingWindow?: number;
  /** Mixture of experts (Mixtral, Qwen2-MoE); undefined for a dense model. */
  readonly moe?: MoeDecoderConfig;
}

const SUPPORTED: Record<string, DecoderConfig['modelType']> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  MixtralForCausalLM: 'mixtral',
  Qwen2MoeForCausalLM: 'qwen2_moe',
  Qwen3MoeForCausalLM: 'qwen3_moe',
};

export const MIXTRAL_NAMING: MoeNaming = { container: 'block_sparse_moe', gate: 'w1', up: 'w3', down: 'w2' };
export const MLP_EXPERT_NAMING: MoeNaming = { container: 'mlp', gate: 'gate_proj', up: 'up_proj', down: 'down_proj' };

function positiveInt(raw: Record<string, unknown>, field: string, fallback?: number): number {
  const value = raw[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ModelConfigError(field, value === undefined ? 'missing (a positive integer is needed)' : `must be a positive integer, found ${JSON.stringify(value)}`);
  }
  return value;
}

function positiveNumber(raw: Record<string, unknown>, field: string, fallback?: number): number {
  const value = raw[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ModelConfigError(field, value === undefined ? 'missing (a positive number is needed)' : `must be a positive number, found ${JSON.stringify(value)}`);
  }
  return value;
}

function parseRope(raw: Record<string, unknown>, headDim: number, maxPositions: number): RopeConfig {
  const theta = positiveNumber(raw, 'rope_theta', 10000);
  const scaling = raw.rope_scaling;
  if (scaling === undefined || scaling === null) return { type: 'default', theta, dim: headDim, factor: 1 };
  if (typeof scaling !== 'object' || Array.isArray(scaling)) throw new ModelConfigError('rope_scaling', `must be an object or null, found ${JSON.stringify(scaling)}`);
  const s = scaling as Record<string, unknown>;
  const type = s.rope_type ?? s.type;
  const field = s.rope_type !== undefined ? 'rope_scaling.rope_type' : 'rope_scaling.type';
  const factor = (): number => {
    const f = s.factor;
    if (typeof f !== 'number' || !Number.isFinite(f) || f < 1) throw new ModelConfigError('rope_scaling.factor', `must be a number ≥ 1, found ${JSON.stringify(f)}`);
    return f;
  };
  switch (type) {
    case 'default':
      return { type: 'default', theta, dim: headDim, factor: 1 };
    case 'linear':
      return { type: 'linear', theta, dim: headDim, factor: factor() };
    case 'dynamic':
      // Dynamic NTK changes the frequencies only once a sequence grows past max_position_embeddings; the
      // graph's cos/sin cache stops there, so within it dynamic equals the default rope.
      return { type: 'dynamic', theta, dim: headDim, factor: factor(), originalMaxPositionEmbeddings: maxPositions };
    case 'llama3': {
      const low = s.low_freq_factor;
      const high = s.high_freq_factor;
      const original = s.original_max_position_embeddings;
      if (typeof low !== 'number' || !(low > 0)) throw new ModelConfigError('rope_scaling.low_freq_factor', `must be a positive number, found ${JSON.stringify(low)}`);
      if (typeof high !== 'number' || !(high > low)) throw new ModelConfigError('rope_scaling.high_freq_factor', `must be a number above low_freq_factor (${low}), found ${JSON.stringify(high)}`);
      if (typeof original !== 'number' || !Number.isSafeInteger(original) || original <= 0) {
        throw new ModelConfigError('rope_scaling.original_max_position_embeddings', `must be a positive integer, found ${JSON.stringify(original)}`);
      }
      return { type: 'llama3', theta, dim: headDim, factor: factor(), lowFreqFactor: low, highFreqFactor: high, originalMaxPositionEmbeddings: original };
    }
    default:
      throw new ModelConfigError(field, `${JSON.stringify(type)} is not supported (supported: default, linear, llama3, dynamic)`);
  }
}

/** Reads and checks the fields the decoder graph needs. `raw` is the parsed config.json. */
export function parseDecoderConfig(raw: Record<string, unknown>): DecoderConfig {
  const architectures = raw.architectures;
  const architecture = Array.isArray(architectures) && typeof architectures[0] === 'string' ? architectures[0] : undefined;
  const modelType = typeof raw.model_type === 'string' ? raw.model_type : undefined;
  const known = architecture !== undefined ? SUPPORTED[architecture] : undefined;
  if (!known) {
    const what = architecture !== undefined ? `architectures ${JSON.stringify(architectures)}` : `model_type ${JSON.stringify(modelType)} (no architectures field)`;
    throw new ModelConfigError(architecture !== undefined ? 'architectures' : 'model_type', `${what} is not supported; the runtime builds ${Object.keys(SUPPORTED).join(', ')}`);
  }
  if (modelType !== undefined && modelType !== known) throw new ModelConfigError('model_type', `${JSON.stringify(modelType)} does not match architectures ${JSON.stringify(architecture)} (expected "${known}")`);
  const act = raw.hidden_act ?? raw.hidden_activation ?? 'silu';
  if (act !== 'silu') throw new ModelConfigError('hidden_act', `${JSON.stringify(act)} is not supported (the SwiGLU MLP needs "silu")`);

  const hiddenSize = positiveInt(raw, 'hidden_size');
  const numHeads = positiveInt(raw, 'num_attention_heads');
  const numKvHeads = positiveInt(raw, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw new ModelConfigError('num_key_value_heads', `${numKvHeads} does not divide num_attention_heads ${numHeads}`);
  const qwen3 = known === 'qwen3' || known === 'qwen3_moe';
  // Qwen3Config's head_dim defaults to 128, not hidden_size / heads.
  const headDim = raw.head_dim === undefined || raw.head_dim === null ? (qwen3 ? 128 : hiddenSize / numHeads) : positiveInt(raw, 'head_dim');
  if (!Number.isSafeInteger(headDim)) throw new ModelConfigError('num_attention_heads', `${numHeads} does not divide hidden_size ${hiddenSize} and there is no head_dim`);
  if (headDim % 2 !== 0) throw new ModelConfigError('head_dim', `${headDim} is odd; rotary embeddings need an even head size`);
  const maxPositionEmbeddings = positiveInt(raw, 'max_position_embeddings', 2048);

  let slidingWindow: number | undefined;
  const qwen = known === 'qwen2' || known === 'qwen2_moe' || qwen3;
  const useSliding = qwen ? raw.use_sliding_window === true : true;
  if (useSliding && typeof raw.sliding_window === 'number' && raw.sliding_window > 0 && raw.sliding_window < maxPositionEmbeddings) {
    if (qwen && typeof raw.max_window_layers === 'number' && raw.max_window_layers < positiveInt(raw, 'num_hidden_layers')) {
      throw new ModelConfigError('max_window_layers', `a sliding window on only some layers (${raw.max_window_layers} of ${raw.num_hidden_layers}) is not supported`);
    }
    slidingWindow = raw.sliding_window;
  }
  const attentionBias = raw.attention_bias === true;
  const numLayers = positiveInt(raw, 'num_hidden_layers');
  return {
    architecture: architecture!,
    modelType: known,
    hiddenSize,
    intermediateSize: positiveInt(raw, 'intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: positiveInt(raw, 'vocab_size'),
    rmsNormEps: positiveNumber(raw, 'rms_norm_eps', 1e-6),
    rope: parseRope(raw, headDim, maxPositionEmbeddings),
    maxPositionEmbeddings,
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    // Qwen2 and Qwen2-MoE: q/k/v always carry a bias, o_proj never; Qwen3 follows attention_bias like Llama.
    qkvBias: known === 'qwen2' || known === 'qwen2_moe' || attentionBias,
    oBias: known !== 'qwen2' && known !== 'qwen2_moe' && attentionBias,
    mlpBias: raw.mlp_bias === true,
    qkNorm: qwen3,
    slidingWindow,
    ...(known === 'mixtral' || known === 'qwen2_moe' || known === 'qwen3_moe' ? { moe: parseMoe(raw, known, numLayers) } : {}),
  };
}

/**
 * The sparse MLP's fields, with the defaults of transformers' MixtralConfig / Qwen2MoeConfig / Qwen3MoeConfig
 * (what from_pretrained uses for a field config.json leaves out).
 */
function parseMoe(raw: Record<string, unknown>, modelType: 'mixtral' | 'qwen2_moe' | 'qwen3_moe', numLayers: number): MoeDecoderConfig {
  const mixtral = modelType === 'mixtral';
  const expertsField = mixtral ? 'num_local_experts' : 'num_experts';
  const qwen3 = modelType === 'qwen3_moe';
  const experts = positiveInt(raw, expertsField, mixtral ? 8 : qwen3 ? 128 : 60);
  const perToken = positiveInt(raw, 'num_experts_per_tok', mixtral ? 2 : qwen3 ? 8 : 4);
  if (perToken > experts) throw new ModelConfigError('num_experts_per_tok', `${perToken} is more than the ${experts} experts (${expertsField})`);
  if (mixtral) {
    return { experts, perToken, normalizeTopK: true, expertIntermediateSize: positiveInt(raw, 'intermediate_size'), sparseLayers: new Array<boolean>(numLayers).fill(true), naming: MIXTRAL_NAMING };
  }
  const step = positiveInt(raw, 'decoder_sparse_step', 1);
  const mlpOnly = raw.mlp_only_layers ?? [];
  if (!Array.isArray(mlpOnly) || mlpOnly.some((l) => typeof l !== 'number' || !Number.isSafeInteger(l) || l < 0 || l >= numLayers)) {
    throw new ModelConfigError('mlp_only_layers', `must be a list of layer indices below num_hidden_layers ${numLayers}, found ${JSON.stringify(mlpOnly)}`);
  }
  const norm = raw.norm_topk_prob ?? false;
  if (typeof norm !== 'boolean') throw new ModelConfigError('norm_topk_prob', `must be true or false, found ${JSON.stringify(norm)}`);
  // Qwen2MoeDecoderLayer, Qwen3MoeDecoderLayer: sparse when not in mlp_only_layers and (layer_idx + 1) % decoder_sparse_step == 0.
  const sparseLayers = Array.from({ length: numLayers }, (_, l) => !(mlpOnly as number[]).includes(l) && (l + 1) % step === 0);
  return {
    experts,
    perToken,
    normalizeTopK: norm,
    expertIntermediateSize: positiveInt(raw, 'moe_intermediate_size', qwen3 ? 768 : 1408),
    // Qwen3-MoE has no shared expert.
    ...(qwen3 ? {} : { sharedExpertIntermediateSize: positiveInt(raw, 'shared_expert_intermediate_size', 5632) }),
    sparseLayers,
    naming: MLP_EXPERT_NAMING,
  };
}

/**
 * Rotary inverse frequencies per rotated pair, in float64, as transformers computes them for each rope type
 * (`_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`' position scaling folded
 * into the frequencies, `_compute_llama3_parameters`).
 */
export function ropeInverseFrequencies(rope: RopeConfig): Float64Array {
  const half = rope.dim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(rope.theta, (2 * i) / rope.dim);
  if (rope.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / rope.factor;
  } else if (rope.type === 'llama3') {
    const low = rope.lowFreqFactor!;
    const high = rope.highFreqFactor!;
    const original = rope.originalMaxPositionEmbeddings!;
    const lowWavelen = original / low;
    const highWavelen = original / high;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) {
        inv[i] = f / rope.factor;
        continue;
      }
      const smooth = (original / wavelen - low) / (high - low);
      inv[i] = (1 - smooth) * (f / rope.factor) + smooth * f;
    }
  }
  return inv;
}

/** cos/sin caches [positions, dim/2] (GroupQueryAttention's layout), computed in float64, rounded once. */
export function ropeCaches(rope: RopeConfig, positions: number): { cos: Float64Array; sin: Float64Array } {
  const inv = ropeInverseFrequencies(rope);
  const half = inv.length;
  const cos = new Float64Array(positions * half);
  const sin = new Float64Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * inv[i]!;
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
