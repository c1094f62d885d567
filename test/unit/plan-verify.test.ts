/**
 * `quantlens plan --verify` on the example model: the plan and each uniform candidate are quantized for real
 * and measured on held-out windows of the calibration file. Checked here: the verification runs and is in the
 * plan file beside the recipe; the plan's written layers lie within the budget and are the bytes the plan
 * counted; every size is the checkpoint files' real size (stat, before the job removes them); the evaluation
 * windows are disjoint from the calibration's; the float perplexity equals the chat engine's perplexity
 * (KV-cache windows, another code path) and the plan's KL equals sampling.ts's klDivergence on the written
 * checkpoint; nothing is left behind.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { repoRoot, tempDir } from '../helpers/paths';
import { runJob } from '../../src/core/jobs/runJob';
import { preflight } from '../../src/core/jobs/preflight';
import type { PlanSummary } from '../../src/core/plan/planJob';
import { planFilePath, readPlanFile } from '../../src/core/plan/planFile';
import { evaluationSamples } from '../../src/core/plan/verify';
import { defaultCalibrationDataset, loadCalibrationDataset } from '../../src/core/runtime/dataset';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { loadChatModel } from '../../src/core/chat/modelPair';
import { perplexity } from '../../src/core/chat/generation';
import { klDivergence } from '../../src/core/runtime/sampling';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');
/** Bytes of every file under `folder`. */
const treeBytes = (folder: string): number => readdirSync(folder, { withFileTypes: true }).reduce((s, e) => s + (e.isDirectory() ? treeBytes(join(folder, e.name)) : statSync(join(folder, e.name)).size), 0);
const safetensorsBytes = (folder: string) => readdirSync(folder).filter((n) => n.endsWith('.safetensors')).reduce((s, n) => s + statSync(join(folder, n)).size, 0);

describe('plan --verify: quantized for real, measured on held-out text', function () {
  this.timeout(900_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    if (!existsSync(join(example(), 'config.json'))) throw new Error('the example model is missing (node out/scripts/make-example.js examples/tiny-llama makes it)');
    tmp = tempDir();
  });
  after(() => tmp.cleanup());

  it('verifies the plan and each candidate: sizes are the files\' sizes, the plan within its budget, numbers recomputed', async () => {
    const dataset = defaultCalibrationDataset();
    const calibration = { samples: 2, seqLen: 16 };
    const out = join(tmp.path, 'mixed.yaml');
    const seen = new Map<string, { fileBytes: number; kl?: number }>();
    const evaluation = await evaluationSamples({ model: example(), dataset, ...calibration, evalSamples: 3 });
    const graphs = join(tmp.path, 'graphs');
    await fs.mkdir(graphs);
    const float = await loadChatModel(example(), { cacheDir: graphs, graph: { int4AccuracyLevel: 0 } });
    const vocab = float.model.vocabSize;
    try {
      const spec = { kind: 'plan' as const, model: example(), out, dataset, ...calibration, candidates: ['w4a16:g64', 'w8a16'], budget: { bits: 6 }, verify: { evalSamples: 3 } };
      // The pre-flight estimate of what verification puts on disk, against the work folder measured at each checkpoint.
      const estimated = (await preflight(spec)).estimate!.verify!;
      let workBytes = 0;
      let floatGraphFileBytes = 0;
      const result = await runJob(
        spec,
        {
          graphCacheDir: graphs,
          onCheckpoint: async (label, folder) => {
            const work = dirname(folder);
            workBytes = Math.max(workBytes, treeBytes(work));
            floatGraphFileBytes = treeBytes(join(work, 'graphs-float'));
            const record: { fileBytes: number; kl?: number } = { fileBytes: safetensorsBytes(folder) };
            if (label === 'plan') {
              // The KL recomputed on the written checkpoint with sampling.ts's klDivergence, position by position.
              const quantized = await loadChatModel(folder, { cacheDir: join(tmp.path, 'plan-graph'), graph: { int4AccuracyLevel: 0 } });
              try {
                let sum = 0;
                let positions = 0;
                for (const sample of evaluation.samples) {
                  const ids = Array.from(sample.inputIds);
                  const p = (await float.model.forward(ids, null)).logits;
                  const q = (await quantized.model.forward(ids, null)).logits;
                  for (let t = 0; t < ids.length; t++, positions++) sum += klDivergence(p.subarray(t * vocab, (t + 1) * vocab), q.subarray(t * vocab, (t + 1) * vocab));
                }
                record.kl = sum / positions;
              } finally {
                await quantized.model.release();
              }
            }
            seen.set(label, record);
          },
        },
      );
      assert.equal(result.kind, 'plan');
      // The float graph (float32 weights, 64 KiB-aligned, with the graph's own small constants) is the weights the
      // estimate counts, within 1%; the work folder at its fullest (that graph, a checkpoint, the recipes) within the estimate.
      assert.ok(Math.abs(floatGraphFileBytes - estimated.floatGraphBytes) <= 0.01 * estimated.floatGraphBytes, `float graph ${floatGraphFileBytes} bytes, estimated ${estimated.floatGraphBytes}`);
      assert.ok(workBytes > 0 && workBytes <= estimated.diskBytes, `verification's folder held ${workBytes} bytes, estimated ${estimated.diskBytes}`);
      const plan = (result as { plan: PlanSummary }).plan;
      const v = plan.verification!;
      assert.ok(v, 'no verification in the summary');
      assert.deepEqual(v.points.map((p) => p.label), ['float', 'plan', 'w4a16:g64', 'w8a16']);
      assert.equal(v.heldOut, true);
      assert.equal(v.evalSamples, 3);
      assert.equal(v.klPositions, 3 * 16);
      assert.equal(v.perplexityTokens, 3 * 15);

      // Sizes: the files as they were on disk; the float model's are the example's own.
      for (const p of v.points) {
        const fileBytes = p.label === 'float' ? safetensorsBytes(example()) : seen.get(p.label)!.fileBytes;
        assert.equal(p.fileBytes, fileBytes, p.label);
      }
      const point = (label: string) => v.points.find((p) => p.label === label)!;
      // The plan as written: within the budget and exactly the bytes the plan counted.
      assert.equal(point('plan').linearBytes, plan.bytes);
      assert.ok(point('plan').linearBytes <= plan.budgetBytes, `${point('plan').linearBytes} > ${plan.budgetBytes}`);
      assert.ok(Math.abs(point('plan').bitsPerWeight - plan.bitsPerWeight) < 1e-12);
      // The plan lies between the uniform schemes in size, and the float model is the largest.
      assert.ok(point('w4a16:g64').linearBytes < point('plan').linearBytes && point('plan').linearBytes < point('w8a16').linearBytes);
      assert.ok(point('float').fileBytes > point('w8a16').fileBytes);
      assert.equal(point('float').kl, 0);
      assert.ok(point('w4a16:g64').kl > point('w8a16').kl, JSON.stringify(v.points));

      // The KL, recomputed independently on the written plan checkpoint.
      const recomputed = seen.get('plan')!.kl!;
      assert.ok(Math.abs(point('plan').kl - recomputed) <= 1e-9 + 1e-6 * recomputed, `${point('plan').kl} vs ${recomputed}`);
      // The float perplexity, by the chat engine's perplexity (per sample through the KV cache in windows).
      let nll = 0;
      let tokens = 0;
      for (const sample of evaluation.samples) {
        const r = await perplexity(float.model, Array.from(sample.inputIds), 5);
        nll += r.meanNll * r.tokens;
        tokens += r.tokens;
      }
      assert.ok(Math.abs(Math.log(point('float').perplexity) - nll / tokens) < 1e-4, `${Math.log(point('float').perplexity)} vs ${nll / tokens}`);

      // The plan file beside the recipe is the summary; nothing else is left in the folder.
      assert.equal(plan.planFile, planFilePath(out));
      const written = await readPlanFile(plan.planFile);
      assert.deepEqual(written.verification, JSON.parse(JSON.stringify(v)));
      assert.deepEqual(readdirSync(tmp.path).sort(), ['graphs', 'mixed.plan.json', 'mixed.yaml', 'plan-graph']);
    } finally {
      await float.model.release();
    }
  });

  it('evaluates on windows the calibration does not use', async () => {
    const dataset = defaultCalibrationDataset();
    const tokenizer = await ModelTokenizer.load(example());
    const calibration = await loadCalibrationDataset(dataset, tokenizer, { samples: 8, seqLen: 32 });
    const evaluation = await evaluationSamples({ model: example(), dataset, samples: 8, seqLen: 32, evalSamples: 5 });
    assert.equal(evaluation.heldOut, true);
    assert.equal(evaluation.samples.length, 5);
    const used = new Set(calibration.samples.map((s) => s.origin));
    for (const s of evaluation.samples) assert.ok(!used.has(s.origin), `${s.origin} is also a calibration window`);
    // Another file: its own first windows, not held out.
    const other = join(tmp.path, 'eval.txt');
    await fs.writeFile(other, 'The quick brown fox jumps over the lazy dog. '.repeat(200));
    const fromOther = await evaluationSamples({ model: example(), dataset, samples: 8, seqLen: 32, evalDataset: other, evalSamples: 2 });
    assert.equal(fromOther.heldOut, false);
    assert.equal(fromOther.samples.length, 2);
    // A calibration that takes every window leaves nothing to evaluate on: a clear error naming the file.
    const short = join(tmp.path, 'short.txt');
    await fs.writeFile(short, 'one two three four five six seven eight nine ten. '.repeat(8));
    await assert.rejects(evaluationSamples({ model: example(), dataset: short, samples: 100, seqLen: 16 }), /short\.txt: has \d+ samples of 16 tokens and the calibration takes 100 of them: none is left for held-out evaluation/);
  });
});
