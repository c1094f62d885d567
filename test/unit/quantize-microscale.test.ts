// Quantize to the 2026 data-free schemes (fp8-block, nvfp4a16, mxfp4a16, mxfp8) and NVFP4 W4A4, dense and
// mixture-of-experts, as llm-compressor writes them: the written files are parsed here (own header reader),
// dequantized by a float64 decoder written from the upstream definitions, and compared with the input within
// each scheme's rounding. Upstream definitions (vllm-project/compressed-tensors @ac8e2ba):
//   - E2M1 values and nibble order: compressors/nvfp4/helpers.py (kE2M1ToFloat, unpack_fp4_from_uint8);
//   - NVFP4 dequantization e2m1 · (weight_scale / weight_global_scale): lifecycle/forward_helpers.py _dequantize;
//   - global scale 448·6 / amax: quantization/utils/helpers.py generate_gparam;
//   - MX scales 2^(e − 127), e from round_to_power_2(amax): quantization/utils/mxfp_utils.py, compressors/mx_utils.py;
//   - fused global scales: llm-compressor observers/helpers.py FUSED_LAYER_NAMES.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { compareWithOriginal } from '../../src/core/inspect/error';
import { CalibrationStatistics, SchemeName, runQuantizeJob } from '../../src/core/jobs/quantize';
import { RawTensor, writeCheckpoint } from '../helpers/safetensorsBytes';
import { heavyTailedWeights, toBf16 } from '../helpers/weights';
import { repoRoot, tempDir } from '../helpers/paths';
import { DESCRIPTION, bf16Round, checkWrittenLayer, mxExponentReference, readSafetensors } from '../helpers/microscaleReference';


const H = 64;
const I = 128;
interface Model {
  dir: string;
  weights: Map<string, { rows: number; cols: number; values: Float32Array }>;
}

function floatModel(dir: string, kind: 'dense' | 'mixtral' | 'qwen-moe', seed: number): Model {
  const tensors: RawTensor[] = [];
  const weights: Model['weights'] = new Map();
  let s = seed;
  const linear = (name: string, rows: number, cols: number) => {
    const { bytes, values } = toBf16(heavyTailedWeights(s++, rows * cols));
    tensors.push({ name: `${name}.weight`, dtype: 'BF16', shape: [rows, cols], bytes });
    weights.set(name, { rows, cols, values });
  };
  const norm = (name: string) => tensors.push({ name, dtype: 'BF16', shape: [H], bytes: toBf16(Float32Array.from({ length: H }, () => 1)).bytes });
  tensors.push({ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [32, H], bytes: toBf16(heavyTailedWeights(s++, 32 * H)).bytes });
  for (let l = 0; l < 2; l++) {
    const L = `model.layers.${l}`;
    norm(`${L}.input_layernorm.weight`);
    norm(`${L}.post_attention_layernorm.weight`);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) linear(`${L}.self_attn.${p}`, H, H);
    if (kind === 'dense') for (const [p, r, c] of [['gate_proj', I, H], ['up_proj', I, H], ['down_proj', H, I]] as const) linear(`${L}.mlp.${p}`, r, c);
    else {
      const moe = kind === 'mixtral' ? `${L}.block_sparse_moe` : `${L}.mlp`;
      linear(`${moe}.gate`, 4, H);
      const names = kind === 'mixtral' ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj'];
      for (let e = 0; e < 4; e++) for (const [k, p] of names.entries()) linear(`${moe}.experts.${e}.${p}`, k < 2 ? I : H, k < 2 ? H : I);
    }
  }
  norm('model.norm.weight');
  linear('lm_head', 32, H);
  writeCheckpoint(dir, tensors);
  const base = { hidden_size: H, intermediate_size: I, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'bfloat16', rms_norm_eps: 1e-5 };
  const config =
    kind === 'dense'
      ? { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...base }
      : kind === 'mixtral'
        ? { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', ...base, num_local_experts: 4, num_experts_per_tok: 2 }
        : { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', ...base, num_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: I, decoder_sparse_step: 1, mlp_only_layers: [] };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return { dir, weights };
}

describe('quantize to NVFP4, MXFP4, MXFP8 and FP8 block, dense and mixture-of-experts', function () {
  this.timeout(120_000);
  const tmp = tempDir('quantlens-microscale-');
  after(() => tmp.cleanup());

  const cases: [('dense' | 'mixtral' | 'qwen-moe'), SchemeName][] = [
    ['dense', 'fp8-block'], ['dense', 'nvfp4a16'], ['dense', 'mxfp4a16'], ['dense', 'mxfp8'],
    ['mixtral', 'nvfp4a16'], ['mixtral', 'mxfp4a16'], ['qwen-moe', 'nvfp4a16'], ['qwen-moe', 'mxfp8'], ['qwen-moe', 'fp8-block'],
  ];
  for (const [kind, scheme] of cases) {
    it(`${kind} → ${scheme}: every element within the scheme's rounding of a float64 dequantization; routers and lm_head untouched; the inspector names it`, async () => {
      const model = floatModel(join(tmp.path, `${kind}-${scheme}-in`), kind, 11);
      const out = join(tmp.path, `${kind}-${scheme}-out`);
      const summary = await runQuantizeJob({ model: model.dir, out, scheme });
      const written = readSafetensors(join(out, 'model.safetensors'));
      const input = readSafetensors(join(model.dir, 'model.safetensors'));
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: { format: string; ignore: string[]; config_groups: { group_0: { weights: Record<string, unknown> } } } };
      const kept = [...model.weights.keys()].filter((m) => m === 'lm_head' || /\.(gate)$/.test(m));
      assert.equal(summary.quantizedLayers, model.weights.size - kept.length);
      for (const m of kept) assert.deepEqual(written.get(`${m}.weight`)!.bytes, input.get(`${m}.weight`)!.bytes, `${m} stays as it was`);
      if (kind !== 'dense') assert.ok(config.quantization_config.ignore.includes(kind === 'mixtral' ? 're:.*block_sparse_moe.gate$' : 're:.*mlp.gate$'), JSON.stringify(config.quantization_config.ignore));
      const expectedFormat = { 'fp8-block': 'float-quantized', nvfp4a16: 'nvfp4-pack-quantized', mxfp4a16: 'mxfp4-pack-quantized', mxfp8: 'mxfp8-quantized' }[scheme as string];
      assert.equal(config.quantization_config.format, expectedFormat);
      const wargs = config.quantization_config.config_groups.group_0.weights;
      if (scheme === 'nvfp4a16') assert.equal(wargs.scale_dtype, 'torch.float8_e4m3fn');
      if (scheme === 'mxfp4a16' || scheme === 'mxfp8') assert.equal(wargs.scale_dtype, 'torch.uint8');

      const globals = new Map<string, number>();
      let errSq = new Map<string, number>();
      for (const [m, w] of model.weights) {
        if (kept.includes(m)) continue;
        const checked = checkWrittenLayer(written, m, scheme, w);
        errSq.set(m, checked.errSq);
        if (checked.globalScale !== undefined) globals.set(m, checked.globalScale);
        if (scheme === 'mxfp4a16' || scheme === 'mxfp8') {
          // Every E8M0 exponent is the one upstream derives from its group's amax.
          const sc = written.get(`${m}.weight_scale`)!;
          for (let k = 0; k < sc.bytes.length; k++) {
            let amax = 0;
            for (let c = 0; c < 32; c++) amax = Math.max(amax, Math.abs(w.values[k * 32 + c]!));
            assert.equal(sc.bytes[k], mxExponentReference(amax, scheme === 'mxfp8' ? 8 : 2), `${m} group ${k}`);
          }
        }
      }
      if (scheme === 'nvfp4a16') {
        // One global scale per fused set (q/k/v, gate/up or w1/w3), from the set's joint amax: 2688 / amax in bf16 steps.
        for (const [m, g] of globals) {
          const leaf = m.slice(m.lastIndexOf('.') + 1);
          const parent = m.slice(0, m.lastIndexOf('.'));
          const set = [['q_proj', 'k_proj', 'v_proj'], ['gate_proj', 'up_proj'], ['w1', 'w3']].find((s) => s.includes(leaf)) ?? [leaf];
          const amax = Math.max(...set.map((p) => Math.max(...Array.from(model.weights.get(`${parent}.${p}`)!.values, Math.abs))));
          assert.equal(g, Math.fround(bf16Round(bf16Round(1 / amax) * 2688)), m);
        }
      }

      // The inspector: scheme in model-card words, no disagreements, per-layer error = the float64 one here.
      const quantized = await Checkpoint.open(out);
      const original = await Checkpoint.open(model.dir);
      try {
        const { summary: s, layerMap } = await analyzeCheckpoint(quantized, out);
        assert.ok(s.scheme.description.startsWith(DESCRIPTION[scheme]!), s.scheme.description);
        assert.deepEqual(layerMap.modules.flatMap((m) => m.issues.map((i) => `${m.name}: ${i}`)), []);
        const compared = await compareWithOriginal(quantized, layerMap, original);
        assert.equal(compared.layers.length, errSq.size);
        for (const layer of compared.layers) {
          const want = errSq.get(layer.module)!;
          // NVFP4's effective scale weight_scale / weight_global_scale is not a power of two: the inspector's
          // float32 reconstructions round each product once (2^-24 relative), the float64 values here do not.
          const tolerance = scheme.startsWith('nvfp4') ? 1e-6 : 1e-9;
          assert.ok(Math.abs(layer.metrics.errNormSq - want) <= tolerance * want + 1e-30, `${layer.module}: ${layer.metrics.errNormSq} vs ${want}`);
        }
      } finally {
        await quantized.close();
        await original.close();
      }
      errSq = new Map();
    });
  }

  it('nvfp4 (W4A4): input_global_scale from the calibrated input amax, 2688 / amax in bf16 steps; refused without calibration', async () => {
    const model = floatModel(join(tmp.path, 'w4a4-in'), 'dense', 5);
    await assert.rejects(runQuantizeJob({ model: model.dir, out: join(tmp.path, 'w4a4-none'), scheme: 'nvfp4' }), /input_global_scale.*calibration/);
    const absmax = (m: string) => 1 + m.length / 10;
    const calibration: CalibrationStatistics = { inputAbsMax: absmax };
    const out = join(tmp.path, 'w4a4-out');
    await runQuantizeJob({ model: model.dir, out, scheme: 'nvfp4', calibration });
    const written = readSafetensors(join(out, 'model.safetensors'));
    for (const m of model.weights.keys()) {
      if (m === 'lm_head') continue;
      const t = written.get(`${m}.input_global_scale`)!;
      assert.equal(t.dtype, 'F32');
      assert.equal(new Float32Array(t.bytes.slice().buffer)[0], Math.fround(bf16Round(bf16Round(1 / bf16Round(absmax(m))) * 2688)), m);
    }
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: { config_groups: { group_0: { input_activations: Record<string, unknown> } } } };
    assert.equal(config.quantization_config.config_groups.group_0.input_activations.dynamic, 'local');
    const quantized = await Checkpoint.open(out);
    try {
      const { summary: s, layerMap } = await analyzeCheckpoint(quantized, out);
      assert.equal(s.scheme.description.split(', lm_head')[0], DESCRIPTION.nvfp4);
      assert.deepEqual(layerMap.modules.flatMap((m) => m.issues), []);
    } finally {
      await quantized.close();
    }
  });

  it('a recipe naming NVFP4A16 writes the same bytes as --scheme nvfp4a16; the upstream NVFP4/FP8 mixed recipe runs', async () => {
    const model = floatModel(join(tmp.path, 'recipe-in'), 'dense', 7);
    const viaScheme = join(tmp.path, 'recipe-scheme');
    const viaRecipe = join(tmp.path, 'recipe-recipe');
    await runQuantizeJob({ model: model.dir, out: viaScheme, scheme: 'nvfp4a16' });
    const text = 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      targets: [Linear]\n      ignore: [lm_head]\n      scheme: NVFP4A16\n';
    await runQuantizeJob({ model: model.dir, out: viaRecipe, recipe: { text, path: 'nvfp4a16.yaml' } });
    assert.deepEqual(readFileSync(join(viaRecipe, 'model.safetensors')), readFileSync(join(viaScheme, 'model.safetensors')));
    const a = JSON.parse(readFileSync(join(viaRecipe, 'config.json'), 'utf8')) as { quantization_config: unknown };
    const b = JSON.parse(readFileSync(join(viaScheme, 'config.json'), 'utf8')) as { quantization_config: unknown };
    assert.deepEqual(a.quantization_config, b.quantization_config);

    const upstream = readFileSync(join(repoRoot(), 'test', 'fixtures', 'recipes', 'llmc__e2e__recipes__non_uniform__recipe_nvfp4_fp8_mixed.yaml'), 'utf8');
    const mixed = join(tmp.path, 'recipe-mixed');
    await runQuantizeJob({ model: model.dir, out: mixed, recipe: { text: upstream, path: 'recipe_nvfp4_fp8_mixed.yaml' }, calibration: { inputAbsMax: () => 2 } });
    const written = readSafetensors(join(mixed, 'model.safetensors'));
    assert.equal(written.get('model.layers.0.mlp.down_proj.weight')!.dtype, 'F8_E4M3');
    assert.equal(written.get('model.layers.0.self_attn.q_proj.weight_packed')!.dtype, 'U8');
    assert.ok(written.has('model.layers.1.mlp.up_proj.input_global_scale'));
    const config = JSON.parse(readFileSync(join(mixed, 'config.json'), 'utf8')) as { quantization_config: { format: string } };
    assert.equal(config.quantization_config.format, 'mixed-precision');
  });
});
