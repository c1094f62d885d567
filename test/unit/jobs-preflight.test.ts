/**
 * The pre-flight check on the shipped example and on checkpoints written here: every problem is named
 * before any work (group size per layer, missing calibration, existing output, quantized input, bad recipe),
 * and the estimates follow from the shapes (output size within the planned bytes, memory from the widest
 * layer).
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { preflight, formatPreflight } from '../../src/core/jobs/preflight';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

describe('jobs: pre-flight check', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    if (!existsSync(join(example(), 'config.json'))) throw new Error('the example checkpoint is missing (npm test writes it first)');
    tmp = tempDir();
  });
  after(() => tmp.cleanup());

  it('passes a dynamic preset on the example, with estimates from the shapes', async () => {
    const report = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'w8a8'), preset: 'w8a8' });
    assert.deepEqual(report.problems, []);
    assert.equal(report.needs.inputAbsMax, false);
    assert.equal(report.needs.hessians, false);
    const e = report.estimate!;
    // 28 quantized linears of the example: int8 weights (1 byte) + per-channel bf16 scales; embeddings and lm_head stay bf16.
    assert.ok(e.outputBytes! < e.inputBytes, `output ${e.outputBytes} < input ${e.inputBytes}`);
    // The widest linear is down_proj 256×768 or the MLP's 768×256: float32 copy = 768·256·4 bytes.
    assert.equal(e.peakMemoryBytes, 768 * 256 * 4);
    assert.ok(e.seconds > 0 && e.seconds < 60);
    assert.match(formatPreflight(report), /output about/);
  });

  it('names the calibration a static or GPTQ scheme needs, and accepts it once given', async () => {
    const fp8 = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'fp8'), preset: 'fp8' });
    assert.equal(fp8.needs.inputAbsMax, true);
    assert.match(fp8.problems.join('\n'), /needs calibration \(activation absmax for static scales\)/);
    const gptq = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'gptq'), preset: 'w4a16' });
    assert.equal(gptq.needs.hessians, true);
    assert.match(gptq.problems.join('\n'), /Hessians for GPTQ/);
    const data = join(tmp.path, 'calib.txt');
    await fs.writeFile(data, 'some text\n');
    const withData = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'gptq'), preset: 'w4a16', calibration: { kind: 'dataset', path: data, samples: 8, seqLen: 128 } });
    assert.deepEqual(withData.problems, []);
    assert.equal(withData.estimate!.calibrationTokens, 8 * 128);
    // Hessians of one block: q/k/v share a 256² one, o_proj 256², gate/up share 256², down_proj 768²; plus in/out hidden states.
    const states = 2 * 8 * 128 * 256 * 4;
    const hessians = (3 * 256 * 256 + 768 * 768) * 4;
    // One pass (sequential.ts): a block's statistics stay in memory while its layers are quantized (the widest
    // GPTQ working set: down_proj's 768² Hessian and inverse in float64 + its weight); the block's float32
    // weights (q 256², k/v 128·256, o 256², gate/up/down 768·256) are held twice with quantized propagation.
    const gptqWorkingSet = 2 * 768 * 768 * 8 + 256 * 768 * 8;
    const blockWeights = (2 * 256 * 256 + 2 * 128 * 256 + 3 * 768 * 256) * 4;
    assert.equal(withData.estimate!.peakMemoryBytes, states + hessians + 2 * blockWeights + gptqWorkingSet);
    assert.match(formatPreflight(withData), /memory bound: one pass, block by block: hidden states of all samples in and out of a block .* one block's weights .* and Hessians .*no statistics file \(disk: the output only\)/);
    const floatPropagation = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'gptq'), preset: 'w4a16', propagation: 'float', calibration: { kind: 'dataset', path: data, samples: 8, seqLen: 128 } });
    assert.equal(floatPropagation.estimate!.peakMemoryBytes, states + hessians + blockWeights + gptqWorkingSet);
    const wrongPropagation = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'gptq'), preset: 'w4a16', propagation: 'fp16' as never, calibration: { kind: 'dataset', path: data, samples: 8, seqLen: 128 } });
    assert.match(wrongPropagation.problems.join('\n'), /propagation must be one of quantized, float, not "fp16"/);
    const bad = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'gptq'), preset: 'w4a16', calibration: { kind: 'dataset', path: join(tmp.path, 'nope.txt'), samples: 0, seqLen: 1.5 } });
    assert.deepEqual(
      bad.problems.filter((p) => /samples|sequence length|does not exist/.test(p)).length,
      3,
      bad.problems.join('\n'),
    );
  });

  it('names every layer whose input features the group size does not divide', async () => {
    // A tiny Llama-like checkpoint whose MLP width (200) is not a multiple of 128.
    const dir = join(tmp.path, 'odd');
    await fs.mkdir(dir);
    await fs.writeFile(join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 128, intermediate_size: 200, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 16, torch_dtype: 'bfloat16' }));
    const t = (name: string, shape: number[]) => ({ name, dtype: 'BF16' as const, shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 2) });
    await writeSafetensors(join(dir, 'model.safetensors'), [
      t('model.embed_tokens.weight', [16, 128]),
      t('model.layers.0.self_attn.q_proj.weight', [128, 128]),
      t('model.layers.0.self_attn.k_proj.weight', [128, 128]),
      t('model.layers.0.self_attn.v_proj.weight', [128, 128]),
      t('model.layers.0.self_attn.o_proj.weight', [128, 128]),
      t('model.layers.0.mlp.gate_proj.weight', [200, 128]),
      t('model.layers.0.mlp.up_proj.weight', [200, 128]),
      t('model.layers.0.mlp.down_proj.weight', [128, 200]),
      t('lm_head.weight', [16, 128]),
    ]);
    const report = await preflight({ kind: 'quantize', model: dir, out: join(tmp.path, 'odd-int4'), preset: 'w4a16-rtn' });
    assert.equal(report.problems.length, 1, report.problems.join('\n'));
    assert.match(report.problems[0]!, /groups of 128, which does not divide the input features of 1 targeted layer: model\.layers\.0\.mlp\.down_proj \(in_features 200\)/);
  });

  it('refuses an existing output, an output equal to the model, a quantized input and a broken recipe', async () => {
    const existing = join(tmp.path, 'exists');
    await fs.mkdir(existing);
    const a = await preflight({ kind: 'quantize', model: example(), out: existing, preset: 'w8a8' });
    assert.match(a.problems.join('\n'), /already exists; choose a new name/);
    const b = await preflight({ kind: 'quantize', model: example(), out: example(), preset: 'w8a8' });
    assert.match(b.problems.join('\n'), /must differ from the model folder/);
    const recipe = join(tmp.path, 'recipe.yaml');
    await fs.writeFile(recipe, 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      schem: W8A8\n      targets: [Linear]\n');
    const c = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'r'), recipe });
    assert.match(c.problems.join('\n'), /^recipe\.yaml:4: .*schem/m);
    const d = await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'r'), preset: 'w8a8', recipe });
    assert.deepEqual(d.problems, ['choose either a preset or a recipe file']);
  });

  it('a plan with --verify adds the verification: the float model\'s graph held beside each quantize job or checkpoint, memory as the larger phase, time, disk, a line saying so', async () => {
    const data = join(tmp.path, 'plan-calib.txt');
    await fs.writeFile(data, 'text\n');
    const spec = { kind: 'plan' as const, model: example(), out: join(tmp.path, 'plan.yaml'), dataset: data, samples: 8, seqLen: 64, candidates: ['w4a16', 'w8a16', 'bf16'], budget: { bits: 6 } };
    const without = await preflight(spec);
    const withVerify = await preflight({ ...spec, verify: {} });
    assert.deepEqual(withVerify.problems, []);
    assert.equal(without.estimate!.verify, undefined);
    assert.doesNotMatch(formatPreflight(without), /verify adds/);
    const v = withVerify.estimate!.verify!;
    // The float graph holds every weight of the example as float32 (the CPU's graphs): counted here from the headers.
    const checkpoint = await Checkpoint.open(example());
    const elements = checkpoint.tensors.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
    await checkpoint.close();
    assert.equal(v.floatGraphBytes, 4 * elements);
    // The plan and the two quantizing candidates (bf16 quantizes nothing); 8 / 4 = 2, at least 4 windows of 64 tokens.
    assert.equal(v.quantizeJobs, 3);
    assert.equal(v.evaluationTokens, 4 * 64);
    // Verification starts when the measurement has released its sessions: the job needs the larger phase. Here
    // the float graph beside a checkpoint's graph (at most as large) makes verification the larger one, by at
    // least the graph's weights.
    assert.ok(v.peakMemoryBytes >= 2 * v.floatGraphBytes, `${v.peakMemoryBytes} < 2 × ${v.floatGraphBytes}`);
    assert.equal(withVerify.estimate!.peakMemoryBytes, Math.max(without.estimate!.peakMemoryBytes, v.peakMemoryBytes));
    assert.ok(withVerify.estimate!.peakMemoryBytes - without.estimate!.peakMemoryBytes >= v.floatGraphBytes, `${withVerify.estimate!.peakMemoryBytes} − ${without.estimate!.peakMemoryBytes} < ${v.floatGraphBytes}`);
    assert.ok(Math.abs(withVerify.estimate!.seconds - (without.estimate!.seconds + v.seconds)) < 1e-9 * withVerify.estimate!.seconds);
    assert.ok(v.seconds > 0);
    // Disk: the float graph, and one checkpoint (at most the input's size) with its graph at a time.
    assert.equal(v.diskBytes, 2 * v.floatGraphBytes + withVerify.estimate!.inputBytes);
    assert.notEqual(withVerify.estimate!.diskFreeBytes, undefined);
    assert.match(formatPreflight(withVerify), /^verify adds: 3 calibrated quantize jobs \(the plan and each candidate\) and 256 held-out tokens through the float model and each checkpoint; memory about .* \(the float model's graph 0\.\d\d GiB held throughout\), disk about .*, time about .* \(included above\)$/m);
  });

  it('checks a calibrate job: dataset, output and the statistics file size', async () => {
    const data = join(tmp.path, 'calib2.txt');
    await fs.writeFile(data, 'text\n');
    const report = await preflight({ kind: 'calibrate', model: example(), out: join(tmp.path, 'stats.safetensors'), dataset: data, samples: 4, seqLen: 64, hessians: true });
    assert.deepEqual(report.problems, []);
    // 28 linears + lm_head: one absmax each, and one in² Hessian each (the file shares them; this bounds it).
    assert.ok(report.estimate!.outputBytes! >= 29 * 4);
  });
});
