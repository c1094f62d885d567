// Mixture-of-experts and other 2026 decoder families in the layer map: real safetensors files (tiny shapes,
// zero data: the headers are what the layer map reads) with the config.json each family ships, read back
// through the same path as `quantlens inspect`. Namings as transformers' modeling files spell them
// (Mixtral block_sparse_moe / mlp.experts, Qwen3-MoE, DeepSeek-V3 MLA + shared experts, gpt-oss fused MXFP4
// experts, Phi-3 fused projections, Gemma 3 under text_config).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { CheckpointAnalysis, analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { scanHealth } from '../../src/core/inspect/health';
import { inspectCommand } from '../../src/cli/inspect';
import { RawTensor, writeCheckpoint } from '../helpers/safetensorsBytes';
import { tempDir } from '../helpers/paths';

const SIZE: Record<string, number> = { BF16: 2, F32: 4, I32: 4, I64: 8, U8: 1, F8_E4M3: 1 };
const t = (name: string, dtype: string, shape: number[]): RawTensor => ({ name, dtype, shape, bytes: new Uint8Array(shape.reduce((a, b) => a * b, 1) * SIZE[dtype]!) });

const H = 8;
const I = 16;
const norms = (l: string) => [t(`${l}.input_layernorm.weight`, 'BF16', [H]), t(`${l}.post_attention_layernorm.weight`, 'BF16', [H])];
const attention = (l: string) => ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => t(`${l}.self_attn.${p}.weight`, 'BF16', [H, H]));
/** compressed-tensors pack-quantized INT4, group 8: weight_packed [out, in/8] I32, weight_scale [out, in/8], weight_shape. */
const int4 = (m: string, out: number, inF: number) => [t(`${m}.weight_packed`, 'I32', [out, inF / 8]), t(`${m}.weight_scale`, 'BF16', [out, inF / 8]), t(`${m}.weight_shape`, 'I64', [2])];
const float = (m: string, out: number, inF: number) => [t(`${m}.weight`, 'BF16', [out, inF])];

async function analyze(dir: string, tensors: RawTensor[], config: Record<string, unknown>): Promise<CheckpointAnalysis> {
  writeCheckpoint(dir, tensors);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const checkpoint = await Checkpoint.open(dir);
  try {
    return await analyzeCheckpoint(checkpoint, dir);
  } finally {
    await checkpoint.close();
  }
}

async function cli(args: string[]): Promise<string> {
  let text = '';
  const out = new Writable({ write: (chunk, _enc, done) => ((text += String(chunk)), done()) });
  await inspectCommand(args, out);
  return text;
}

const INT4_CONFIG = (ignore: string[]) => ({
  quant_method: 'compressed-tensors',
  format: 'pack-quantized',
  config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 8 } } },
  ignore,
});

describe('mixture-of-experts and 2026 decoder families in the layer map', function () {
  this.timeout(20000);
  const tmp = tempDir('quantlens-moe-');
  after(() => tmp.cleanup());

  /** Mixtral, as released: block_sparse_moe.experts.E.{w1,w3,w2} and the router block_sparse_moe.gate. */
  function mixtralBlockSparse(missing?: string): RawTensor[] {
    const tensors = [t('model.embed_tokens.weight', 'BF16', [32, H]), t('model.norm.weight', 'BF16', [H]), t('lm_head.weight', 'BF16', [32, H])];
    for (let l = 0; l < 2; l++) {
      const L = `model.layers.${l}`;
      tensors.push(...norms(L), ...attention(L), t(`${L}.block_sparse_moe.gate.weight`, 'BF16', [4, H]));
      for (let e = 0; e < 4; e++) {
        for (const [p, out, inF] of [['w1', I, H], ['w3', I, H], ['w2', H, I]] as const) {
          const name = `${L}.block_sparse_moe.experts.${e}.${p}`;
          if (name !== missing) tensors.push(...float(name, out, inF));
        }
      }
    }
    return tensors;
  }
  const MIXTRAL = { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: H, intermediate_size: I, num_hidden_layers: 2, num_local_experts: 4, num_experts_per_tok: 2, tie_word_embeddings: false, torch_dtype: 'bfloat16' };

  it('Mixtral (block_sparse_moe naming, bf16): every expert and router understood, no false missing, grouped per layer', async () => {
    const { summary, layerMap } = await analyze(join(tmp.path, 'mixtral'), mixtralBlockSparse(), MIXTRAL);
    assert.deepEqual(summary.layerCounts, { quantized: 0, ignored: 0, unquantized: 2 * (4 + 1 + 12) + 1, missing: 0, elsewhere: 0 });
    assert.equal(summary.scheme.description, 'Unquantized bf16 checkpoint; mixture of experts: 4 experts, 2 per token');
    assert.deepEqual(summary.scheme.disagreements, []);
    assert.deepEqual(summary.layerGroups.map((g) => [g.block, g.label, g.modules]), [
      [0, 'router (block_sparse_moe.gate)', 1],
      [0, 'experts 0–3 × w1/w3/w2', 12],
      [1, 'router (block_sparse_moe.gate)', 1],
      [1, 'experts 0–3 × w1/w3/w2', 12],
    ]);
    const w2 = layerMap.modules.find((m) => m.name === 'model.layers.1.block_sparse_moe.experts.2.w2')!;
    assert.deepEqual(w2.moe, { role: 'expert', expert: 2, container: 'model.layers.1.block_sparse_moe.experts' });
    // A group's filter selects exactly its modules.
    const re = new RegExp(summary.layerGroups[1]!.filter.slice(3));
    assert.equal(layerMap.modules.filter((m) => re.test(m.name)).length, 12);

    const text = await cli([join(tmp.path, 'mixtral'), '--layers', '--limit', '0']);
    assert.match(text, /layer 0\s+experts 0–3 × w1\/w3\/w2\s+12 linear, 12 unquantized \(float BF16\)/);
    assert.match(text, /layer 1\s+router \(block_sparse_moe\.gate\)\s+unquantized \(float BF16\)/);
    assert.doesNotMatch(text, /block_sparse_moe\.experts\.0\.w1/, 'experts are summarised, not listed one by one');
    assert.match(text, /model\.layers\.0\.self_attn\.q_proj\s+unquantized/);
  });

  it('Mixtral with one expert projection absent: exactly that module is missing, by its real name', async () => {
    const { layerMap } = await analyze(join(tmp.path, 'mixtral-hole'), mixtralBlockSparse('model.layers.1.block_sparse_moe.experts.3.w3'), MIXTRAL);
    assert.deepEqual(layerMap.modules.filter((m) => m.state === 'missing').map((m) => m.name), ['model.layers.1.block_sparse_moe.experts.3.w3']);
    assert.equal(layerMap.groups.find((g) => g.block === 1 && g.role === 'expert')!.counts.missing, 1);
  });

  it('Mixtral INT4 (compressed-tensors, mlp.experts naming): experts counted and quantized, a quantized router and an unquantized expert flagged', async () => {
    const tensors = [t('model.embed_tokens.weight', 'BF16', [32, H]), t('lm_head.weight', 'BF16', [32, H])];
    for (let l = 0; l < 2; l++) {
      const L = `model.layers.${l}`;
      tensors.push(...norms(L));
      for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) tensors.push(...int4(`${L}.self_attn.${p}`, H, H));
      // Layer 0's router is ignored as recipes do; layer 1's was quantized with everything else.
      tensors.push(...(l === 0 ? float(`${L}.mlp.gate`, 4, H) : int4(`${L}.mlp.gate`, 4, H)));
      for (let e = 0; e < 4; e++) {
        for (const [p, out, inF] of [['gate_proj', I, H], ['up_proj', I, H], ['down_proj', H, I]] as const) {
          const name = `${L}.mlp.experts.${e}.${p}`;
          // Expert 3 of layer 1 never saw a calibration token and was left in bf16 (and ignored).
          tensors.push(...(l === 1 && e === 3 ? float(name, out, inF) : int4(name, out, inF)));
        }
      }
    }
    const config = { ...MIXTRAL, quantization_config: INT4_CONFIG(['lm_head', 're:.*layers\\.0\\.mlp\\.gate$', 're:.*layers\\.1\\.mlp\\.experts\\.3\\..*']) };
    const dir = join(tmp.path, 'mixtral-int4');
    const { summary, layerMap } = await analyze(dir, tensors, config);
    assert.equal(summary.layerCounts.missing, 0);
    assert.deepEqual(summary.layerCounts, { quantized: 8 + 1 + 12 + 9, ignored: 1 + 1 + 3, unquantized: 0, missing: 0, elsewhere: 0 });
    assert.equal(summary.scheme.description, 'INT4 weights, group 8, symmetric (weight-only), layer 1 expert 3 gate_proj, layer 1 expert 3 up_proj, layer 1 expert 3 down_proj and 2 more not quantized; mixture of experts: 4 experts, 2 per token');
    const experts1 = layerMap.groups.find((g) => g.block === 1 && g.role === 'expert')!;
    assert.equal(experts1.label, 'experts 0–3 × gate_proj/up_proj/down_proj');
    assert.deepEqual(experts1.counts, { quantized: 9, ignored: 3, unquantized: 0, missing: 0, elsewhere: 0 });
    assert.deepEqual(summary.moeFindings.map((f) => [f.kind, f.module]), [
      ['quantized-router', 'model.layers.1.mlp.gate'],
      ['unquantized-expert', 'model.layers.1.mlp.experts.3.gate_proj'],
    ]);
    const checkpoint = await Checkpoint.open(dir);
    try {
      const health = await scanHealth(checkpoint, layerMap, { weights: false });
      assert.ok(health.findings.some((f) => f.kind === 'quantized-router' && /must stay in high precision/.test(f.message)));
      assert.ok(health.findings.some((f) => f.kind === 'unquantized-expert' && /layer 1: 3 of 12 expert linear layers are not quantized/.test(f.message)));
    } finally {
      await checkpoint.close();
    }
    const text = await cli([dir, '--layers']);
    assert.match(text, /layer 0\s+experts 0–3 × gate_proj\/up_proj\/down_proj\s+12 linear, 12 quantized \(ct-packed/);
    assert.match(text, /layer 0\s+router \(mlp\.gate\)\s+ignored \(float BF16\)/);
    assert.match(text, /layer 1\s+router \(mlp\.gate\)\s+quantized \(ct-packed/);
    assert.match(text, /warning: model\.layers\.1\.mlp\.gate: the router is quantized/);
  });

  it('Qwen3-MoE: 8 experts per layer, mlp_only_layers dense, q_norm/k_norm are not linear, tied embeddings expect no lm_head', async () => {
    const tensors = [t('model.embed_tokens.weight', 'BF16', [32, H])];
    for (let l = 0; l < 2; l++) {
      const L = `model.layers.${l}`;
      tensors.push(...norms(L), ...attention(L), t(`${L}.self_attn.q_norm.weight`, 'BF16', [4]), t(`${L}.self_attn.k_norm.weight`, 'BF16', [4]));
      if (l === 1) for (const [p, out, inF] of [['gate_proj', I, H], ['up_proj', I, H], ['down_proj', H, I]] as const) tensors.push(...float(`${L}.mlp.${p}`, out, inF));
      else {
        tensors.push(...float(`${L}.mlp.gate`, 8, H));
        for (let e = 0; e < 8; e++) for (const [p, out, inF] of [['gate_proj', 4, H], ['up_proj', 4, H], ['down_proj', H, 4]] as const) tensors.push(...float(`${L}.mlp.experts.${e}.${p}`, out, inF));
      }
    }
    const config = { model_type: 'qwen3_moe', num_hidden_layers: 2, num_experts: 8, num_experts_per_tok: 2, moe_intermediate_size: 4, decoder_sparse_step: 1, mlp_only_layers: [1], tie_word_embeddings: true };
    const { summary } = await analyze(join(tmp.path, 'qwen3-moe'), tensors, config);
    assert.deepEqual(summary.layerCounts, { quantized: 0, ignored: 0, unquantized: 4 + 1 + 24 + 4 + 3, missing: 0, elsewhere: 0 });
    assert.equal(summary.scheme.description, 'Unquantized bf16 checkpoint; mixture of experts: 8 experts, 2 per token, 1 dense layer');
    assert.deepEqual(summary.layerGroups.map((g) => g.label), ['router (mlp.gate)', 'experts 0–7 × gate_proj/up_proj/down_proj']);
    assert.equal(summary.scheme.moe?.experts, 8);
  });

  it('DeepSeek-V3 style: FP8 128×128 blocks, MLA attention, a dense first layer, shared experts, a bare-parameter router with its correction bias', async () => {
    const fp8 = (m: string, out: number, inF: number) => [t(`${m}.weight`, 'F8_E4M3', [out, inF]), t(`${m}.weight_scale_inv`, 'F32', [Math.ceil(out / 128), Math.ceil(inF / 128)])];
    const tensors = [t('model.embed_tokens.weight', 'BF16', [32, H]), t('lm_head.weight', 'BF16', [32, H])];
    for (let l = 0; l < 2; l++) {
      const L = `model.layers.${l}`;
      tensors.push(...norms(L), t(`${L}.self_attn.q_a_layernorm.weight`, 'BF16', [16]), t(`${L}.self_attn.kv_a_layernorm.weight`, 'BF16', [8]));
      tensors.push(...fp8(`${L}.self_attn.q_a_proj`, 16, H), ...fp8(`${L}.self_attn.q_b_proj`, 24, 16), ...fp8(`${L}.self_attn.kv_a_proj_with_mqa`, 12, H), ...fp8(`${L}.self_attn.kv_b_proj`, 32, 8), ...fp8(`${L}.self_attn.o_proj`, H, 16));
      if (l === 0) for (const [p, out, inF] of [['gate_proj', I, H], ['up_proj', I, H], ['down_proj', H, I]] as const) tensors.push(...fp8(`${L}.mlp.${p}`, out, inF));
      else {
        tensors.push(t(`${L}.mlp.gate.weight`, 'BF16', [4, H]), t(`${L}.mlp.gate.e_score_correction_bias`, 'F32', [4]));
        for (let e = 0; e < 4; e++) for (const [p, out, inF] of [['gate_proj', 4, H], ['up_proj', 4, H], ['down_proj', H, 4]] as const) tensors.push(...fp8(`${L}.mlp.experts.${e}.${p}`, out, inF));
        for (const [p, out, inF] of [['gate_proj', 4, H], ['up_proj', 4, H], ['down_proj', H, 4]] as const) tensors.push(...fp8(`${L}.mlp.shared_experts.${p}`, out, inF));
      }
    }
    const config = {
      model_type: 'deepseek_v3', num_hidden_layers: 2, n_routed_experts: 4, num_experts_per_tok: 2, n_shared_experts: 1, first_k_dense_replace: 1, moe_layer_freq: 1, q_lora_rank: 16, kv_lora_rank: 8, tie_word_embeddings: false,
      quantization_config: { quant_method: 'fp8', activation_scheme: 'dynamic', fmt: 'e4m3', weight_block_size: [128, 128] },
    };
    const { summary, layerMap } = await analyze(join(tmp.path, 'deepseek'), tensors, config);
    assert.deepEqual(summary.layerCounts, { quantized: 5 + 3 + 5 + 12 + 3, ignored: 1, unquantized: 1, missing: 0, elsewhere: 0 });
    assert.deepEqual(summary.scheme.disagreements, []);
    assert.equal(summary.scheme.description, 'FP8 weights in 128×128 blocks, dynamic per-group activations, lm_head, 1 router not quantized; mixture of experts: 4 experts, 2 per token, 1 shared, 1 dense layer');
    const router = layerMap.modules.find((m) => m.name === 'model.layers.1.mlp.gate')!;
    assert.equal(router.moe?.role, 'router');
    assert.deepEqual(router.issues, [], 'the router is not an nn.Linear: fp8 does not target it');
    assert.ok(router.tensors.includes('model.layers.1.mlp.gate.e_score_correction_bias'));
    assert.deepEqual(summary.layerGroups.map((g) => [g.block, g.label, g.modules, g.counts.quantized]), [
      [1, 'router (mlp.gate)', 1, 0],
      [1, 'experts 0–3 × gate_proj/up_proj/down_proj', 12, 12],
      [1, 'shared experts × gate_proj/up_proj/down_proj', 3, 3],
    ]);
    assert.deepEqual(summary.moeFindings, []);
  });

  it('gpt-oss MXFP4: fused experts as one module per projection, router and attention kept by modules_to_not_convert', async () => {
    const G = 64; // hidden: two MXFP4 blocks of 32 per row
    const tensors = [t('model.embed_tokens.weight', 'BF16', [32, G]), t('lm_head.weight', 'BF16', [32, G])];
    for (let l = 0; l < 2; l++) {
      const L = `model.layers.${l}`;
      tensors.push(...norms(L), t(`${L}.self_attn.sinks`, 'BF16', [4]));
      for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) tensors.push(t(`${L}.self_attn.${p}.weight`, 'BF16', [G, G]), t(`${L}.self_attn.${p}.bias`, 'BF16', [G]));
      tensors.push(t(`${L}.mlp.router.weight`, 'BF16', [4, G]), t(`${L}.mlp.router.bias`, 'BF16', [4]));
      tensors.push(t(`${L}.mlp.experts.gate_up_proj_blocks`, 'U8', [4, 2 * G, G / 32, 16]), t(`${L}.mlp.experts.gate_up_proj_scales`, 'U8', [4, 2 * G, G / 32]), t(`${L}.mlp.experts.gate_up_proj_bias`, 'BF16', [4, 2 * G]));
      tensors.push(t(`${L}.mlp.experts.down_proj_blocks`, 'U8', [4, G, G / 32, 16]), t(`${L}.mlp.experts.down_proj_scales`, 'U8', [4, G, G / 32]), t(`${L}.mlp.experts.down_proj_bias`, 'BF16', [4, G]));
    }
    const config = {
      architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', num_hidden_layers: 2, num_local_experts: 4, experts_per_token: 2, num_experts_per_tok: 2, tie_word_embeddings: false,
      quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'model.layers.*.mlp.router', 'model.embed_tokens', 'lm_head'] },
    };
    const dir = join(tmp.path, 'gpt-oss');
    const { summary, layerMap } = await analyze(dir, tensors, config);
    assert.deepEqual(summary.layerCounts, { quantized: 4, ignored: 8 + 2 + 1, unquantized: 0, missing: 0, elsewhere: 0 });
    assert.deepEqual(summary.scheme.disagreements, []);
    assert.equal(summary.scheme.family, 'mxfp4');
    assert.equal(summary.scheme.description, 'MXFP4 weights, groups of 32 with E8M0 scales, layer 0 q_proj, layer 0 k_proj, layer 0 v_proj and 7 more not quantized; mixture of experts: 4 experts, 2 per token');
    const gateUp = layerMap.modules.find((m) => m.name === 'model.layers.0.mlp.experts.gate_up_proj')!;
    assert.equal(gateUp.observed?.kind, 'mxfp4');
    assert.equal(gateUp.observed?.groupSize, 32);
    assert.deepEqual([...gateUp.tensors].sort(), ['model.layers.0.mlp.experts.gate_up_proj_bias', 'model.layers.0.mlp.experts.gate_up_proj_blocks', 'model.layers.0.mlp.experts.gate_up_proj_scales']);
    assert.deepEqual(summary.layerGroups.map((g) => [g.block, g.label, g.modules, g.experts]), [
      [0, 'router (mlp.router)', 1, undefined],
      [0, 'experts 0–3 fused × gate_up_proj/down_proj', 2, 4],
      [1, 'router (mlp.router)', 1, undefined],
      [1, 'experts 0–3 fused × gate_up_proj/down_proj', 2, 4],
    ]);
    const checkpoint = await Checkpoint.open(dir);
    try {
      const health = await scanHealth(checkpoint, layerMap);
      assert.deepEqual(health.findings.filter((f) => f.severity !== 'info' && f.kind !== 'zero-weight'), [], 'zero-filled fixture: only all-zero weights to report');
    } finally {
      await checkpoint.close();
    }
    assert.match(await cli([dir, '--layers']), /layer 1\s+experts 0–3 fused × gate_up_proj\/down_proj\s+2 linear, 2 quantized \(mxfp4 4-bit group 32\)/);
  });

  it('Phi-3 fused qkv_proj / gate_up_proj and Gemma 3 under text_config with its extra norms: no false missing', async () => {
    const phi = [t('model.embed_tokens.weight', 'BF16', [32, H]), t('lm_head.weight', 'BF16', [32, H])];
    for (let l = 0; l < 2; l++) {
      const L = `model.layers.${l}`;
      phi.push(...norms(L), ...float(`${L}.self_attn.qkv_proj`, 3 * H, H), ...float(`${L}.self_attn.o_proj`, H, H), ...float(`${L}.mlp.gate_up_proj`, 2 * I, H), ...float(`${L}.mlp.down_proj`, H, I));
    }
    const phiResult = await analyze(join(tmp.path, 'phi3'), phi, { model_type: 'phi3', num_hidden_layers: 2, tie_word_embeddings: false });
    assert.deepEqual(phiResult.summary.layerCounts, { quantized: 0, ignored: 0, unquantized: 9, missing: 0, elsewhere: 0 });
    assert.deepEqual(phiResult.layerMap.modules.slice(0, 4).map((m) => m.projection), ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
    assert.equal(phiResult.summary.scheme.moe, undefined);

    const gemma = [t('language_model.model.embed_tokens.weight', 'BF16', [32, H])];
    for (let l = 0; l < 2; l++) {
      const L = `language_model.model.layers.${l}`;
      gemma.push(...norms(L), t(`${L}.pre_feedforward_layernorm.weight`, 'BF16', [H]), t(`${L}.post_feedforward_layernorm.weight`, 'BF16', [H]));
      gemma.push(t(`${L}.self_attn.q_norm.weight`, 'BF16', [4]), t(`${L}.self_attn.k_norm.weight`, 'BF16', [4]), ...attention(L));
      // Layer 1's up_proj is absent: the one missing layer, named with the multimodal prefix.
      for (const [p, out, inF] of [['gate_proj', I, H], ['up_proj', I, H], ['down_proj', H, I]] as const) if (!(l === 1 && p === 'up_proj')) gemma.push(...float(`${L}.mlp.${p}`, out, inF));
    }
    const gemmaResult = await analyze(join(tmp.path, 'gemma3'), gemma, { model_type: 'gemma3', text_config: { model_type: 'gemma3_text', num_hidden_layers: 2 } });
    assert.deepEqual(gemmaResult.layerMap.modules.filter((m) => m.state === 'missing').map((m) => m.name), ['language_model.model.layers.1.mlp.up_proj']);
    assert.equal(gemmaResult.summary.layerCounts.unquantized, 13);
    assert.ok(!gemmaResult.layerMap.modules.some((m) => /norm/.test(m.name)), 'norms are never linear layers');
  });
});
