// The plan file written and read back when measurements are not finite: a model whose mean next-token
// log-probability is below −709 nats (the synthetic example's) has an infinite perplexity, which plain
// JSON.stringify writes as null — a plan file that then could not be read back (the editor showed no plan).
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/paths';
import type { PlanSummary } from '../../src/core/plan/planJob';
import { planFileText, readPlanFile } from '../../src/core/plan/planFile';

function summary(dir: string, perplexity: number, kl: number): PlanSummary {
  const out = join(dir, 'plan.yaml');
  return {
    model: join(dir, 'model'),
    out,
    planFile: join(dir, 'plan.plan.json'),
    candidates: ['w4a16', 'w8a16'],
    budget: { bits: 6 },
    budgetBytes: 1000,
    bytes: 900,
    bitsPerWeight: 5.9,
    minBytes: 600,
    maxBytes: 1200,
    weights: 1024,
    totalKl: kl,
    layers: [{ module: 'model.layers.0.mlp.down_proj', scheme: 'w8a16', kl, proxy: Number.POSITIVE_INFINITY, bytes: 900 }],
    skipped: [],
    sensitivity: [{ module: 'model.layers.0.mlp.down_proj', block: 0, rows: 32, cols: 32, weightDtype: 'BF16', measurements: [{ candidate: 'w8a16', bytes: 900, kl }] }],
    dataset: 'wikitext.txt',
    samples: 2,
    tokens: 32,
    device: 'cpu',
    blockRuns: 3,
    referenceBlockRuns: 2,
    seconds: 1,
    verification: {
      evalDataset: 'wikitext.txt',
      heldOut: true,
      evalSamples: 2,
      seqLen: 16,
      klPositions: 32,
      perplexityTokens: 30,
      points: [
        { label: 'float', kind: 'float', fileBytes: 2000, linearBytes: 2048, bitsPerWeight: 16, kl: 0, perplexity },
        { label: 'plan', kind: 'plan', fileBytes: 1000, linearBytes: 900, bitsPerWeight: 5.9, kl: Number.NaN, perplexity: Number.NEGATIVE_INFINITY },
      ],
      seconds: 1,
    },
  } as PlanSummary;
}

describe('plan file: written and read back with measurements that are not finite', () => {
  it('keeps an infinite perplexity, NaN and infinite KL and proxy as numbers', async () => {
    const dir = tempDir('quantlens-plan-file-');
    try {
      const written = summary(dir.path, Number.POSITIVE_INFINITY, 1.9e30);
      const path = written.planFile;
      await fs.writeFile(path, planFileText(written));
      // Plain JSON text (any JSON reader opens it), with the non-finite values spelled out.
      const raw = JSON.parse(await fs.readFile(path, 'utf8')) as { verification: { points: { perplexity: unknown; kl: unknown }[] }; layers: { proxy: unknown }[] };
      assert.deepEqual(raw.verification.points.map((p) => p.perplexity), ['Infinity', '-Infinity']);
      assert.equal(raw.verification.points[1]!.kl, 'NaN');
      assert.equal(raw.layers[0]!.proxy, 'Infinity');
      const read = await readPlanFile(path);
      assert.deepEqual(read, written);
      assert.equal(read.verification!.points[0]!.perplexity, Number.POSITIVE_INFINITY);
      assert.ok(Number.isNaN(read.verification!.points[1]!.kl));
    } finally {
      dir.cleanup();
    }
  });

  it('refuses a perplexity written as null (what JSON.stringify makes of Infinity), and "Infinity" where a size belongs, naming the field', async () => {
    const dir = tempDir('quantlens-plan-file-');
    try {
      const written = summary(dir.path, Number.POSITIVE_INFINITY, 0.5);
      const path = written.planFile;
      await fs.writeFile(path, JSON.stringify(written));
      await assert.rejects(readPlanFile(path), new RegExp(`^PlanFileError: ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: verification\\.points\\[0\\] lacks label, kind, fileBytes, linearBytes, bitsPerWeight, kl or perplexity`));
      await fs.writeFile(path, planFileText({ ...written, bytes: Number.POSITIVE_INFINITY }));
      await assert.rejects(readPlanFile(path), /: "bytes" is not a number; it is not a plan file written by quantlens plan$/);
    } finally {
      dir.cleanup();
    }
  });
});
