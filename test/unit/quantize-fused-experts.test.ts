// Quantize mixture-of-experts checkpoints whose experts are stored fused, as llm-compressor does: the experts
// are linearized into per-expert `mlp.experts.E.gate_proj|up_proj|down_proj` linears and those are quantized
// (llm-compressor modeling/moe/linearize.py, linear_experts.py, moe/gpt_oss.py; docs/formats.md §3.14).
// gpt-oss: gate_up_proj [E, hidden, 2·inter] holds gate in the even, up in the odd columns, [in, out]; the
// transformers-5 fused Qwen3-MoE: gate_up_proj [E, 2·inter, hidden], gate the first half of the rows, [out, in].
// Each expert's slice is cut out of the input here, independently of the job, and the written per-expert tensors
// are dequantized in float64 (test/helpers/microscaleReference.ts) and compared with it within the scheme's rounding.
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { groupMoeModules } from '../../src/core/checkpoint/layerGroups';
import { compareWithOriginal } from '../../src/core/inspect/error';
import { SchemeName, runQuantizeJob } from '../../src/core/jobs/quantize';
import { preflight } from '../../src/core/jobs/preflight';
import { RawTensor, writeCheckpoint } from '../helpers/safetensorsBytes';
import { heavyTailedWeights, toBf16 } from '../helpers/weights';
import { tempDir } from '../helpers/paths';
import { DESCRIPTION, bf16Round, checkWrittenLayer, readSafetensors } from '../helpers/microscaleReference';

type Kind = 'gpt-oss' | 'qwen-fused';
const E = 4;

interface FusedModel {
  dir: string;
  /** Per-expert [out, in] matrices cut from the fused tensors: `model.layers.0.mlp.experts.2.up_proj` → values. */
  experts: Map<string, { rows: number; cols: number; values: Float64Array }>;
  /** gpt-oss per-expert biases, cut the same way. */
  biases: Map<string, Uint8Array>;
  kept: string[];
}

/** A two-layer fused-experts model, BF16, with hidden size h and expert intermediate size n. */
function fusedModel(dir: string, kind: Kind, h: number, n: number, seed: number): FusedModel {
  const tensors: RawTensor[] = [];
  const experts: FusedModel['experts'] = new Map();
  const biases: FusedModel['biases'] = new Map();
  const kept: string[] = [];
  let s = seed;
  const bf16 = (name: string, shape: number[]) => {
    const { bytes, values } = toBf16(heavyTailedWeights(s++, shape.reduce((a, b) => a * b, 1)));
    tensors.push({ name, dtype: 'BF16', shape, bytes });
    return { bytes, values };
  };
  bf16('model.embed_tokens.weight', [32, h]);
  for (let l = 0; l < 2; l++) {
    const L = `model.layers.${l}`;
    bf16(`${L}.input_layernorm.weight`, [h]);
    bf16(`${L}.post_attention_layernorm.weight`, [h]);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) bf16(`${L}.self_attn.${p}.weight`, [h, h]);
    const X = `${L}.mlp.experts`;
    if (kind === 'gpt-oss') {
      bf16(`${L}.mlp.router.weight`, [E, h]);
      bf16(`${L}.mlp.router.bias`, [E]);
      kept.push(`${L}.mlp.router.weight`, `${L}.mlp.router.bias`);
      const gu = bf16(`${X}.gate_up_proj`, [E, h, 2 * n]).values;
      const gub = bf16(`${X}.gate_up_proj_bias`, [E, 2 * n]).bytes;
      const dn = bf16(`${X}.down_proj`, [E, n, h]).values;
      const dnb = bf16(`${X}.down_proj_bias`, [E, h]).bytes;
      for (let e = 0; e < E; e++) {
        for (const [k, p] of ['gate_proj', 'up_proj'].entries()) {
          const v = new Float64Array(n * h);
          for (let r = 0; r < n; r++) for (let c = 0; c < h; c++) v[r * h + c] = gu[e * h * 2 * n + c * 2 * n + 2 * r + k]!;
          experts.set(`${X}.${e}.${p}`, { rows: n, cols: h, values: v });
          const b = new Uint8Array(2 * n);
          for (let r = 0; r < n; r++) b.set(gub.subarray((e * 2 * n + 2 * r + k) * 2, (e * 2 * n + 2 * r + k) * 2 + 2), 2 * r);
          biases.set(`${X}.${e}.${p}.bias`, b);
        }
        const v = new Float64Array(h * n);
        for (let r = 0; r < h; r++) for (let c = 0; c < n; c++) v[r * n + c] = dn[e * n * h + c * h + r]!;
        experts.set(`${X}.${e}.down_proj`, { rows: h, cols: n, values: v });
        biases.set(`${X}.${e}.down_proj.bias`, dnb.slice(e * h * 2, (e + 1) * h * 2));
      }
    } else {
      bf16(`${L}.mlp.gate.weight`, [E, h]);
      kept.push(`${L}.mlp.gate.weight`);
      const gu = bf16(`${X}.gate_up_proj`, [E, 2 * n, h]).values;
      const dn = bf16(`${X}.down_proj`, [E, h, n]).values;
      for (let e = 0; e < E; e++) {
        for (const [k, p] of ['gate_proj', 'up_proj'].entries()) {
          const v = new Float64Array(n * h);
          for (let r = 0; r < n; r++) for (let c = 0; c < h; c++) v[r * h + c] = gu[e * 2 * n * h + (k * n + r) * h + c]!;
          experts.set(`${X}.${e}.${p}`, { rows: n, cols: h, values: v });
        }
        experts.set(`${X}.${e}.down_proj`, { rows: h, cols: n, values: Float64Array.from(dn.subarray(e * h * n, (e + 1) * h * n)) });
      }
    }
  }
  bf16('model.norm.weight', [h]);
  bf16('lm_head.weight', [32, h]);
  kept.push('lm_head.weight');
  writeCheckpoint(dir, tensors);
  const base = { hidden_size: h, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 32, tie_word_embeddings: false, torch_dtype: 'bfloat16', rms_norm_eps: 1e-5 };
  const config =
    kind === 'gpt-oss'
      ? { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', ...base, intermediate_size: n, head_dim: h / 4, num_local_experts: E, num_experts_per_tok: 2, experts_per_token: 2, swiglu_limit: 7 }
      : { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', ...base, intermediate_size: 4 * n, num_experts: E, num_experts_per_tok: 2, moe_intermediate_size: n, decoder_sparse_step: 1, mlp_only_layers: [] };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return { dir, experts, biases, kept };
}

describe('quantize fused mixture-of-experts tensors (gpt-oss, transformers-5 fused Qwen3-MoE) as per-expert linears', function () {
  this.timeout(120_000);
  const tmp = tempDir('quantlens-fused-experts-');
  after(() => tmp.cleanup());

  const cases: [Kind, SchemeName][] = [
    ['gpt-oss', 'mxfp4a16'], ['gpt-oss', 'nvfp4a16'], ['gpt-oss', 'fp8-block'], ['gpt-oss', 'w4a16-rtn'],
    ['qwen-fused', 'mxfp4a16'], ['qwen-fused', 'nvfp4a16'], ['qwen-fused', 'fp8-block'], ['qwen-fused', 'w4a16-rtn'],
  ];
  for (const [kind, scheme] of cases) {
    it(`${kind} → ${scheme}: each expert's gate/up/down slice within the scheme's rounding of a float64 dequantization; the fused tensors gone; router and lm_head untouched; config and layer map as upstream`, async () => {
      // W4A16's group 128 needs inputs of two groups at least, or its scales read as per-channel ones.
      const size = scheme === 'w4a16-rtn' ? 256 : 128;
      const model = fusedModel(join(tmp.path, `${kind}-${scheme}-in`), kind, size, size, 3);
      const out = join(tmp.path, `${kind}-${scheme}-out`);
      const summary = await runQuantizeJob({ model: model.dir, out, scheme });
      const written = readSafetensors(join(out, 'model.safetensors'));
      const input = readSafetensors(join(model.dir, 'model.safetensors'));
      // 2 layers × (4 attention + 4 experts × 3 projections).
      assert.equal(summary.quantizedLayers, 2 * (4 + 3 * E));
      assert.deepEqual([...written.keys()].filter((n) => /experts\.(gate_up|down)_proj/.test(n)), [], 'no fused tensor is left');
      for (const name of model.kept) assert.deepEqual(written.get(name)!.bytes, input.get(name)!.bytes, `${name} stays as it was`);
      for (const [name, bytes] of model.biases) {
        assert.equal(written.get(name)!.dtype, 'BF16');
        assert.deepEqual(written.get(name)!.bytes, bytes, name);
      }
      if (kind === 'qwen-fused') assert.equal([...written.keys()].filter((n) => n.endsWith('.bias')).length, 0);

      const globals = new Map<string, number>();
      const errSq = new Map<string, number>();
      for (const [m, w] of model.experts) {
        const checked = checkWrittenLayer(written, m, scheme, w);
        errSq.set(m, checked.errSq);
        if (checked.globalScale !== undefined) globals.set(m, checked.globalScale);
      }
      if (scheme === 'nvfp4a16') {
        // An expert's gate_proj and up_proj share one global scale from their joint amax (FUSED_LAYER_NAMES).
        for (const [m, g] of globals) {
          const parent = m.slice(0, m.lastIndexOf('.'));
          const set = m.endsWith('down_proj') ? [m] : [`${parent}.gate_proj`, `${parent}.up_proj`];
          const amax = Math.max(...set.map((p) => Math.max(...Array.from(model.experts.get(p)!.values, Math.abs))));
          assert.equal(g, Math.fround(bf16Round(bf16Round(1 / amax) * 2688)), m);
        }
      }

      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: { ignore: string[]; config_groups: { group_0: { targets: string[] } } } };
      assert.deepEqual(config.quantization_config.config_groups.group_0.targets, ['Linear']);
      assert.deepEqual(config.quantization_config.ignore, ['lm_head', kind === 'gpt-oss' ? 're:.*mlp.router$' : 're:.*mlp.gate$']);

      // The inspector: the scheme in model-card words; per layer, a router and 4 experts × gate/up/down, all quantized;
      // the error comparison with the fused original: each expert's projection against its slice, as computed here.
      const quantized = await Checkpoint.open(out);
      const original = await Checkpoint.open(model.dir);
      try {
        const { summary: s, layerMap } = await analyzeCheckpoint(quantized, out);
        assert.ok(s.scheme.description.startsWith(DESCRIPTION[scheme]!), s.scheme.description);
        assert.deepEqual(layerMap.modules.flatMap((m) => m.issues.map((i) => `${m.name}: ${i}`)), []);
        assert.deepEqual(layerMap.modules.filter((m) => m.state === 'missing').map((m) => m.name), []);
        const groups = groupMoeModules(layerMap.modules).map((g) => `${g.block} ${g.role} ${g.label}: ${g.counts.quantized} quantized, ${g.counts.ignored} ignored`);
        const router = kind === 'gpt-oss' ? 'router (mlp.router)' : 'router (mlp.gate)';
        assert.deepEqual(groups, [0, 1].flatMap((b) => [`${b} router ${router}: 0 quantized, 1 ignored`, `${b} expert experts 0–3 × gate_proj/up_proj/down_proj: 12 quantized, 0 ignored`]));
        const compared = await compareWithOriginal(quantized, layerMap, original);
        const experts = compared.layers.filter((l) => l.module.includes('.experts.'));
        assert.deepEqual(experts.map((l) => `${l.module} ${l.skipped ?? 'measured'}`).sort(), [...model.experts.keys()].map((m) => `${m} measured`).sort());
        assert.equal(compared.layers.length, experts.length + 8, '8 attention layers besides');
        for (const layer of experts) {
          const want = errSq.get(layer.module)!;
          // NVFP4's scale weight_scale / weight_global_scale is rounded once more to float32 by the inspector.
          const tolerance = scheme === 'nvfp4a16' ? 1e-6 : 1e-9;
          assert.ok(Math.abs(layer.metrics.errNormSq - want) <= tolerance * want + 1e-30, `${layer.module}: ${layer.metrics.errNormSq} vs ${want}`);
        }
      } finally {
        await quantized.close();
        await original.close();
      }
    });
  }

  it('the pre-flight estimate counts fused experts as the job writes them: each scheme\'s estimate is the written tensors\' bytes', async () => {
    for (const [kind, scheme] of cases) {
      const size = scheme === 'w4a16-rtn' ? 128 : 64;
      const model = fusedModel(join(tmp.path, `estimate-${kind}-${scheme}-in`), kind, size, size, 21);
      const out = join(tmp.path, `estimate-${kind}-${scheme}-out`);
      const report = await preflight({ kind: 'quantize', model: model.dir, out, preset: scheme });
      assert.deepEqual(report.problems, [], `${kind} ${scheme}`);
      const estimate = report.estimate!.outputBytes!;
      await runQuantizeJob({ model: model.dir, out, scheme });
      // The output's size on disk: its tensors' bytes plus the safetensors header (8-byte length + JSON), which
      // the estimate leaves out, as it leaves out config.json and the other small files beside the weights.
      const file = readFileSync(join(out, 'model.safetensors'));
      const headerBytes = 8 + Number(file.readBigUInt64LE(0));
      assert.equal(estimate, file.byteLength - headerBytes, `${kind} ${scheme}: estimated ${estimate} bytes, written ${file.byteLength - headerBytes} bytes of tensors`);
      // That margin is small: under 200 bytes per tensor (its name, dtype, shape and offsets).
      const tensors = Object.keys(JSON.parse(file.subarray(8, headerBytes).toString('utf8')) as object).filter((k) => k !== '__metadata__').length;
      assert.ok(headerBytes < 200 * tensors, `${kind} ${scheme}: header ${headerBytes} bytes for ${tensors} tensors`);
      const input = statSync(join(model.dir, 'model.safetensors')).size;
      assert.ok(estimate < 0.75 * input, `${kind} ${scheme}: ${estimate} bytes, not the float input's ${input}`);
    }
  });

  it('a recipe targeting Linear quantizes the linearized experts as the preset does, byte for byte', async () => {
    const model = fusedModel(join(tmp.path, 'recipe-in'), 'gpt-oss', 64, 64, 13);
    const viaScheme = join(tmp.path, 'recipe-scheme');
    const viaRecipe = join(tmp.path, 'recipe-recipe');
    await runQuantizeJob({ model: model.dir, out: viaScheme, scheme: 'mxfp4a16' });
    const text = 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      targets: [Linear]\n      ignore: [lm_head, "re:.*mlp.router$"]\n      scheme: MXFP4A16\n';
    await runQuantizeJob({ model: model.dir, out: viaRecipe, recipe: { text, path: 'mxfp4a16.yaml' } });
    assert.deepEqual(readFileSync(join(viaRecipe, 'model.safetensors')), readFileSync(join(viaScheme, 'model.safetensors')));
  });

  it('all experts ignored: the fused tensors are copied as they were', async () => {
    const model = fusedModel(join(tmp.path, 'ignored-in'), 'gpt-oss', 64, 32, 5);
    const out = join(tmp.path, 'ignored-out');
    const lines: string[] = [];
    await runQuantizeJob({ model: model.dir, out, scheme: 'mxfp4a16', ignore: ['lm_head', 're:.*mlp\\.experts.*'], log: (l) => lines.push(l) });
    const written = readSafetensors(join(out, 'model.safetensors'));
    const input = readSafetensors(join(model.dir, 'model.safetensors'));
    for (const name of ['model.layers.0.mlp.experts.gate_up_proj', 'model.layers.1.mlp.experts.down_proj_bias']) assert.deepEqual(written.get(name)!.bytes, input.get(name)!.bytes, name);
    assert.ok(lines.some((l) => /fused experts kept in high precision.*model\.layers\.0\.mlp\.experts/.test(l)), lines.join('\n'));
  });

  it('a fused tensor a scheme cannot serve is refused, naming the tensor, the expert and why', async () => {
    // gpt-oss's own hidden size 2880 is not a multiple of 128: here 96.
    const model = fusedModel(join(tmp.path, 'odd-in'), 'gpt-oss', 96, 32, 7);
    await assert.rejects(runQuantizeJob({ model: model.dir, out: join(tmp.path, 'odd-out'), scheme: 'w4a16-rtn' }), /model\.layers\.0\.mlp\.experts\.gate_up_proj \(expert 0's gate_proj, model\.layers\.0\.mlp\.experts\.0\.gate_proj\): input features 96 are not divisible by group_size 128/);
    // A fused tensor whose shape does not fit its layout with config.json's hidden_size.
    const wrong = fusedModel(join(tmp.path, 'shape-in'), 'qwen-fused', 64, 32, 9);
    const config = JSON.parse(readFileSync(join(wrong.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(wrong.dir, 'config.json'), JSON.stringify({ ...config, hidden_size: 32 }));
    await assert.rejects(runQuantizeJob({ model: wrong.dir, out: join(tmp.path, 'shape-out'), scheme: 'mxfp4a16' }), /model\.layers\.0\.mlp\.experts\.gate_up_proj: shape \[4, 64, 64\] does not fit the fused-experts layout \[experts, 2 × intermediate, hidden\].*hidden_size 32/);
  });
});
