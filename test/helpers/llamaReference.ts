/**
 * An independent float64 Llama-family forward pass (plain loops: embedding, RMSNorm, rotary embeddings for
 * each rope variant, grouped-query causal attention, SwiGLU or a mixture of experts (moeReference.ts), lm_head)
 * and tiny random checkpoints to run it on. Written from the transformers modelling code's formulas, sharing nothing with src/core/runtime.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { rng } from './random';
import { addMoeWeights, referenceMoeMlp } from './moeReference';

export interface TinyConfig {
  architectures: string[];
  model_type: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  vocab_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling?: Record<string, unknown> | null;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  attention_bias?: boolean;
  hidden_act?: string;
  torch_dtype?: string;
  [key: string]: unknown;
}

/** Weights by tensor name (row-major, float64), as the reference consumes them. */
export type Weights = Map<string, { shape: number[]; data: Float64Array }>;

export function tinyConfig(overrides: Partial<TinyConfig> = {}): TinyConfig {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 50,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 256,
    tie_word_embeddings: false,
    hidden_act: 'silu',
    torch_dtype: 'float32',
    ...overrides,
  };
}

const headDimOf = (c: TinyConfig) => c.head_dim ?? c.hidden_size / c.num_attention_heads;
/** Qwen3 and Qwen3-MoE normalise every query and key head (q_norm, k_norm over head_dim) before the rotary embedding. */
const hasQkNorm = (c: TinyConfig) => c.model_type === 'qwen3' || c.model_type === 'qwen3_moe';

/** Random weights for `config` (values in float32 precision so the file holds them exactly). */
export function randomWeights(config: TinyConfig, seed: number): Weights {
  const random = rng(seed);
  const weights: Weights = new Map();
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float64Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.fround(offset + (random() * 2 - 1) * scale);
    weights.set(name, { shape, data });
  };
  const H = config.hidden_size;
  const D = headDimOf(config);
  const q = config.num_attention_heads * D;
  const kv = (config.num_key_value_heads ?? config.num_attention_heads) * D;
  const I = config.intermediate_size;
  const qkvBias = config.model_type === 'qwen2' || config.model_type === 'qwen2_moe' || config.attention_bias === true;
  add('model.embed_tokens.weight', [config.vocab_size, H], 1);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [H], 0.2, 1);
    add(`${p}.post_attention_layernorm.weight`, [H], 0.2, 1);
    add(`${p}.self_attn.q_proj.weight`, [q, H], 1 / Math.sqrt(H) * 1.5);
    add(`${p}.self_attn.k_proj.weight`, [kv, H], 1 / Math.sqrt(H) * 1.5);
    add(`${p}.self_attn.v_proj.weight`, [kv, H], 1 / Math.sqrt(H));
    add(`${p}.self_attn.o_proj.weight`, [H, q], 1 / Math.sqrt(q));
    if (hasQkNorm(config)) {
      add(`${p}.self_attn.q_norm.weight`, [D], 0.2, 1);
      add(`${p}.self_attn.k_norm.weight`, [D], 0.2, 1);
    }
    if (qkvBias) {
      add(`${p}.self_attn.q_proj.bias`, [q], 0.3);
      add(`${p}.self_attn.k_proj.bias`, [kv], 0.3);
      add(`${p}.self_attn.v_proj.bias`, [kv], 0.3);
    }
    if (addMoeWeights(config, l, add)) continue;
    add(`${p}.mlp.gate_proj.weight`, [I, H], 1 / Math.sqrt(H) * 1.5);
    add(`${p}.mlp.up_proj.weight`, [I, H], 1 / Math.sqrt(H) * 1.5);
    add(`${p}.mlp.down_proj.weight`, [H, I], 1 / Math.sqrt(I));
  }
  add('model.norm.weight', [H], 0.2, 1);
  if (!config.tie_word_embeddings) add('lm_head.weight', [config.vocab_size, H], 1 / Math.sqrt(H));
  return weights;
}

/** Writes config.json + model.safetensors (F32) for the weights. */
export async function writeTinyCheckpoint(folder: string, config: TinyConfig, weights: Weights): Promise<void> {
  await fs.mkdir(folder, { recursive: true });
  await fs.writeFile(join(folder, 'config.json'), JSON.stringify(config, null, 2));
  await writeSafetensors(
    join(folder, 'model.safetensors'),
    [...weights].map(([name, { shape, data }]) => ({ name, dtype: 'F32' as const, shape, data: new Uint8Array(Float32Array.from(data).buffer) })),
  );
}

/** Rotary inverse frequencies per rope variant (transformers' rope init functions, in float64). */
export function referenceInvFreq(config: TinyConfig): Float64Array {
  const D = headDimOf(config);
  const base = config.rope_theta;
  const inv = Float64Array.from({ length: D / 2 }, (_, i) => Math.pow(base, -(2 * i) / D));
  const scaling = config.rope_scaling as Record<string, number | string> | null | undefined;
  const type = scaling ? (scaling.rope_type ?? scaling.type) : 'default';
  if (type === 'linear') return inv.map((f) => f / (scaling!.factor as number));
  if (type === 'llama3') {
    const factor = scaling!.factor as number;
    const lowFactor = scaling!.low_freq_factor as number;
    const highFactor = scaling!.high_freq_factor as number;
    const oldContext = scaling!.original_max_position_embeddings as number;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > oldContext / lowFactor) return f / factor;
      if (wavelen < oldContext / highFactor) return f;
      const smooth = (oldContext / wavelen - lowFactor) / (highFactor - lowFactor);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  return inv; // default, and dynamic within max_position_embeddings
}

export interface ReferenceHooks {
  /** Called with every linear's input rows [tokens, in] (float64) before the matmul. */
  linearInput?: (module: string, rows: Float64Array[], token: number) => void;
  /** Replaces a linear's weight [out, in] (dequantized checkpoints). */
  weight?: (module: string) => Float64Array | undefined;
  /** Transforms a linear's input row (simulated activation quantization). */
  quantizeInput?: (module: string, row: Float64Array) => Float64Array;
}

export interface ReferenceOutput {
  /** [tokens, vocab] */
  logits: Float64Array[];
  /** Hidden state after each block: [layer][token] → [hidden]. */
  blockOutputs: Float64Array[][];
}

/** The float64 forward pass of one sequence (no padding). */
export function referenceForward(config: TinyConfig, weights: Weights, tokens: readonly number[], hooks: ReferenceHooks = {}): ReferenceOutput {
  const H = config.hidden_size;
  const D = headDimOf(config);
  const nHeads = config.num_attention_heads;
  const nKv = config.num_key_value_heads ?? nHeads;
  const T = tokens.length;
  const w = (name: string) => {
    const t = weights.get(name);
    if (!t) throw new Error(`reference: no weight ${name}`);
    return t.data;
  };
  const linear = (module: string, rows: Float64Array[], outFeatures: number): Float64Array[] => {
    hooks.linearInput?.(module, rows, T);
    const W = hooks.weight?.(module) ?? w(`${module}.weight`);
    const bias = weights.get(`${module}.bias`)?.data;
    const K = rows[0]!.length;
    return rows.map((row0) => {
      const row = hooks.quantizeInput ? hooks.quantizeInput(module, row0) : row0;
      const out = new Float64Array(outFeatures);
      for (let n = 0; n < outFeatures; n++) {
        let acc = bias ? bias[n]! : 0;
        for (let k = 0; k < K; k++) acc += row[k]! * W[n * K + k]!;
        out[n] = acc;
      }
      return out;
    });
  };
  const rmsNorm = (rows: Float64Array[], weight: Float64Array) =>
    rows.map((row) => {
      let ss = 0;
      for (const v of row) ss += v * v;
      const inv = 1 / Math.sqrt(ss / row.length + config.rms_norm_eps);
      return row.map((v, i) => v * inv * weight[i]!);
    });
  const inv = referenceInvFreq(config);
  const rope = (vec: Float64Array, heads: number, pos: number) => {
    // rotate_half: pairs (i, i + D/2) within each head.
    const out = new Float64Array(vec.length);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < D / 2; i++) {
        const angle = pos * inv[i]!;
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        const a = vec[h * D + i]!;
        const b = vec[h * D + i + D / 2]!;
        out[h * D + i] = a * c - b * s;
        out[h * D + i + D / 2] = b * c + a * s;
      }
    }
    return out;
  };

  const table = w('model.embed_tokens.weight');
  let x = tokens.map((t) => table.slice(t * H, (t + 1) * H));
  const blockOutputs: Float64Array[][] = [];
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const h = rmsNorm(x, w(`${p}.input_layernorm.weight`));
    const headNorm = (vec: Float64Array, heads: number, weight: string) => {
      if (!hasQkNorm(config)) return vec;
      const g = w(weight);
      const out = new Float64Array(vec.length);
      for (let head = 0; head < heads; head++) {
        let ss = 0;
        for (let d = 0; d < D; d++) ss += vec[head * D + d]! ** 2;
        const inv = 1 / Math.sqrt(ss / D + config.rms_norm_eps);
        for (let d = 0; d < D; d++) out[head * D + d] = vec[head * D + d]! * inv * g[d]!;
      }
      return out;
    };
    const q = linear(`${p}.self_attn.q_proj`, h, nHeads * D).map((v, t) => rope(headNorm(v, nHeads, `${p}.self_attn.q_norm.weight`), nHeads, t));
    const k = linear(`${p}.self_attn.k_proj`, h, nKv * D).map((v, t) => rope(headNorm(v, nKv, `${p}.self_attn.k_norm.weight`), nKv, t));
    const v = linear(`${p}.self_attn.v_proj`, h, nKv * D);
    const attn = q.map((qt, t) => {
      const out = new Float64Array(nHeads * D);
      for (let head = 0; head < nHeads; head++) {
        const kvHead = Math.floor(head / (nHeads / nKv));
        const scores = new Float64Array(t + 1);
        for (let j = 0; j <= t; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qt[head * D + d]! * k[j]![kvHead * D + d]!;
          scores[j] = dot / Math.sqrt(D);
        }
        const max = Math.max(...scores);
        let sum = 0;
        for (let j = 0; j <= t; j++) sum += (scores[j] = Math.exp(scores[j]! - max));
        for (let j = 0; j <= t; j++) {
          const p_ = scores[j]! / sum;
          for (let d = 0; d < D; d++) out[head * D + d] += p_ * v[j]![kvHead * D + d]!;
        }
      }
      return out;
    });
    const o = linear(`${p}.self_attn.o_proj`, attn, H);
    const mid = x.map((row, t) => row.map((val, i) => val + o[t]![i]!));
    const h2 = rmsNorm(mid, w(`${p}.post_attention_layernorm.weight`));
    const sparse = referenceMoeMlp(config, weights, linear, l, h2);
    if (sparse) {
      x = mid.map((row, t) => row.map((val, i) => val + sparse[t]![i]!));
      blockOutputs.push(x);
      continue;
    }
    const gate = linear(`${p}.mlp.gate_proj`, h2, config.intermediate_size);
    const up = linear(`${p}.mlp.up_proj`, h2, config.intermediate_size);
    const act = gate.map((g, t) => g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[t]![i]!));
    const down = linear(`${p}.mlp.down_proj`, act, H);
    x = mid.map((row, t) => row.map((val, i) => val + down[t]![i]!));
    blockOutputs.push(x);
  }
  const normed = rmsNorm(x, w('model.norm.weight'));
  const head = config.tie_word_embeddings ? table : (hooks.weight?.('lm_head') ?? w('lm_head.weight'));
  const logits = normed.map((row) => {
    const out = new Float64Array(config.vocab_size);
    for (let n = 0; n < config.vocab_size; n++) {
      let acc = 0;
      for (let k = 0; k < H; k++) acc += row[k]! * head[n * H + k]!;
      out[n] = acc;
    }
    return out;
  });
  return { logits, blockOutputs };
}

/** max |a − b| / max |b| over all entries. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}

/** ‖a − b‖ / ‖b‖ (Frobenius) over all entries. */
export function relativeFrobenius(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < expected.length; i++) {
    diff += (actual[i]! - expected[i]!) ** 2;
    norm += expected[i]! ** 2;
  }
  return Math.sqrt(diff / norm);
}
