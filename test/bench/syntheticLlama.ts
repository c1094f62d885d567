/**
 * Random bf16 Llama checkpoints for benchmarks (written once under bench-data/): every linear, norm and
 * embedding tensor of a config's shape, weights ±(1 + m/128)·2^-6 with a random sign (mean 0, small enough
 * that activations stay finite through many blocks), norms 1.0.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { SafetensorsWriter, TensorSpec } from '../../src/core/safetensors/writer';

export interface LlamaBenchConfig {
  readonly hidden_size: number;
  readonly intermediate_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  readonly num_key_value_heads: number;
  readonly vocab_size: number;
  readonly head_dim?: number;
  readonly [key: string]: unknown;
}

/** Writes `folder`/model.safetensors + config.json unless config.json is already there. */
export async function ensureSyntheticLlama(folder: string, config: LlamaBenchConfig): Promise<void> {
  if (existsSync(join(folder, 'config.json'))) return;
  await fs.mkdir(folder, { recursive: true });
  const H = config.hidden_size;
  const head = config.head_dim ?? H / config.num_attention_heads;
  const q = head * config.num_attention_heads;
  const kv = head * config.num_key_value_heads;
  const I = config.intermediate_size;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [config.vocab_size, H] }];
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, dtype: 'BF16', shape: [H] },
      { name: `${p}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [q, H] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: 'BF16', shape: [kv, H] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: 'BF16', shape: [kv, H] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: 'BF16', shape: [H, q] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: 'BF16', shape: [H] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: 'BF16', shape: [I, H] },
      { name: `${p}.mlp.up_proj.weight`, dtype: 'BF16', shape: [I, H] },
      { name: `${p}.mlp.down_proj.weight`, dtype: 'BF16', shape: [H, I] },
    );
  }
  specs.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [H] }, { name: 'lm_head.weight', dtype: 'BF16', shape: [config.vocab_size, H] });
  await writeRandomBf16(join(folder, 'model.safetensors'), specs);
  await fs.writeFile(join(folder, 'config.json'), JSON.stringify(config, null, 2));
}

/** Writes bf16 `specs` as one safetensors file: 1-D tensors (norms) 1.0, the others as the module comment says. */
export async function writeRandomBf16(file: string, specs: readonly TensorSpec[]): Promise<void> {
  const writer = await SafetensorsWriter.create(file, specs, { order: 'given' });
  const chunk = new Uint16Array(1 << 22);
  const random = new Uint8Array(chunk.length);
  for (const spec of specs) {
    let remaining = spec.shape.reduce((a, b) => a * b, 1);
    const isNorm = spec.shape.length === 1;
    while (remaining > 0) {
      const n = Math.min(remaining, chunk.length);
      randomFillSync(random, 0, n);
      for (let i = 0; i < n; i++) chunk[i] = isNorm ? 0x3f80 : ((random[i]! & 0x80) << 8) | (0x3c80 + (random[i]! & 0x7f));
      await writer.write(spec.name, new Uint8Array(chunk.buffer, 0, n * 2));
      remaining -= n;
    }
  }
  await writer.finish();
}
