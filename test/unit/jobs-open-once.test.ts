/**
 * A job opens its model once (issue 16): config.json is read once, the checkpoint's headers (index and shards)
 * are opened once and the tokenizer is loaded once per job, however many stages (pre-flight check,
 * calibration, quantization, planning) use them. Counted from outside the code under test: reads of the
 * model's config.json and tokenizer.json through node:fs (which every reader of them goes through) and calls
 * of Checkpoint.open on the model folder (this test's bundle holds the one Checkpoint class the job uses).
 * Each job must also close every file handle it opened, after success and after cancellation.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { runJob } from '../../src/core/jobs/runJob';
import { JobCancelled } from '../../src/core/jobs/jobErrors';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

interface OpenCounts {
  config: number;
  tokenizer: number;
  checkpoint: number;
  /** Checkpoints opened on the model and not closed again. */
  open: Set<Checkpoint>;
}

/** Counts, until restored, what is read of `model`'s folder: config.json, tokenizer.json, Checkpoint.open. */
function countModelReads(model: string): { counts: OpenCounts; restore: () => void } {
  const folder = resolve(model);
  const counts: OpenCounts = { config: 0, tokenizer: 0, checkpoint: 0, open: new Set() };
  const readFile = fs.readFile;
  const open = Checkpoint.open.bind(Checkpoint);
  fs.readFile = ((path: Parameters<typeof fs.readFile>[0], ...rest: unknown[]) => {
    if (typeof path === 'string' && resolve(path) === join(folder, 'config.json')) counts.config++;
    if (typeof path === 'string' && resolve(path) === join(folder, 'tokenizer.json')) counts.tokenizer++;
    return (readFile as (...args: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readFile;
  Checkpoint.open = async (path: string) => {
    const checkpoint = await open(path);
    if (resolve(path) === folder) {
      counts.checkpoint++;
      counts.open.add(checkpoint);
      const close = checkpoint.close.bind(checkpoint);
      checkpoint.close = async () => {
        counts.open.delete(checkpoint);
        await close();
      };
    }
    return checkpoint;
  };
  return {
    counts,
    restore: () => {
      fs.readFile = readFile;
      Checkpoint.open = open;
    },
  };
}

describe('jobs: a job opens its model once', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    if (!existsSync(join(example(), 'config.json'))) throw new Error('the example checkpoint is missing (npm test writes it first)');
    tmp = tempDir();
  });
  after(() => tmp.cleanup());

  it('quantize with one-pass GPTQ calibration (w4a16 from a dataset): config.json read once, checkpoint opened once, tokenizer loaded once, all closed', async () => {
    const { counts, restore } = countModelReads(example());
    const out = join(tmp.path, 'w4a16');
    const logs: string[] = [];
    try {
      const result = await runJob(
        { kind: 'quantize', model: example(), out, preset: 'w4a16', calibration: { kind: 'dataset', path: defaultCalibrationDataset(), samples: 2, seqLen: 32 } },
        { graphCacheDir: tmp.path, log: (line) => logs.push(line) },
      );
      assert.equal(result.kind, 'quantize');
      if (result.kind === 'quantize') assert.equal(result.quantize.gptqLayers, 28);
    } finally {
      restore();
    }
    assert.deepEqual({ config: counts.config, checkpoint: counts.checkpoint, tokenizer: counts.tokenizer, leftOpen: counts.open.size }, { config: 1, checkpoint: 1, tokenizer: 1, leftOpen: 0 });
    // The job's summary line names what it writes, the output folder (not the recipe or scheme).
    const line = logs.find((l) => l.startsWith('quantizing '));
    assert.ok(line?.includes(`into ${resolve(out)}`), line);
  });

  it('quantize with a recipe: the recipe is resolved against the job\'s one model', async () => {
    const recipe = join(tmp.path, 'rtn.yaml');
    await fs.writeFile(recipe, 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n      scheme: W8A16\n      targets: [Linear]\n');
    const { counts, restore } = countModelReads(example());
    try {
      await runJob({ kind: 'quantize', model: example(), out: join(tmp.path, 'recipe-out'), recipe });
    } finally {
      restore();
    }
    assert.deepEqual({ config: counts.config, checkpoint: counts.checkpoint, leftOpen: counts.open.size }, { config: 1, checkpoint: 1, leftOpen: 0 });
  });

  it('calibrate: config.json read once, checkpoint opened once, tokenizer loaded once, all closed', async () => {
    const { counts, restore } = countModelReads(example());
    try {
      await runJob({ kind: 'calibrate', model: example(), out: join(tmp.path, 'stats.safetensors'), dataset: defaultCalibrationDataset(), samples: 2, seqLen: 32, hessians: false }, { graphCacheDir: tmp.path });
    } finally {
      restore();
    }
    assert.deepEqual({ config: counts.config, checkpoint: counts.checkpoint, tokenizer: counts.tokenizer, leftOpen: counts.open.size }, { config: 1, checkpoint: 1, tokenizer: 1, leftOpen: 0 });
  });

  it('plan with --verify (its quantize jobs and the float model\'s evaluation included): config.json read once, checkpoint opened once, tokenizer loaded once, all closed', async () => {
    const { counts, restore } = countModelReads(example());
    try {
      const result = await runJob(
        { kind: 'plan', model: example(), out: join(tmp.path, 'plan.yaml'), dataset: defaultCalibrationDataset(), samples: 2, seqLen: 16, candidates: ['w8a16', 'bf16'], budget: { bits: 12 }, verify: { evalSamples: 1 } },
        { graphCacheDir: tmp.path },
      );
      // The float model and the plan's and w8a16's checkpoints were measured.
      assert.deepEqual(result.kind === 'plan' ? result.plan.verification?.points.map((p) => p.label) : [], ['float', 'plan', 'w8a16']);
    } finally {
      restore();
    }
    assert.deepEqual({ config: counts.config, checkpoint: counts.checkpoint, tokenizer: counts.tokenizer, leftOpen: counts.open.size }, { config: 1, checkpoint: 1, tokenizer: 1, leftOpen: 0 });
  });

  it('a cancelled job closes what it opened', async () => {
    const { counts, restore } = countModelReads(example());
    const controller = new AbortController();
    try {
      await assert.rejects(
        runJob(
          { kind: 'quantize', model: example(), out: join(tmp.path, 'cancelled'), preset: 'w4a16', calibration: { kind: 'dataset', path: defaultCalibrationDataset(), samples: 2, seqLen: 32 } },
          { graphCacheDir: tmp.path, signal: controller.signal, onProgress: (p) => p.stage.startsWith('gptq') && controller.abort() },
        ),
        JobCancelled,
      );
    } finally {
      restore();
    }
    assert.equal(counts.checkpoint, 1);
    assert.equal(counts.open.size, 0);
    assert.equal(existsSync(join(tmp.path, 'cancelled')), false);
  });
});
