/**
 * The recipe worker (dist/workers/recipe.worker.js, a real worker thread) and its client: the same results
 * as the core computes in-process, the caller's event loop free while a large recipe is analysed, runs past
 * their time or memory budget stopped and reported as a diagnostic, stale runs superseded by newer ones.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildRecipePreview, validateRecipe } from '../../src/core/recipe';
import { BudgetExceeded, RecipeWorker, SupersededRun, failedAnalysisDiagnostic } from '../../src/core/recipe/recipeWorker';
import { repoRoot } from '../helpers/paths';

const SMALL = 'quant_stage:\n  quant_modifiers:\n    GPTQModifier: {scheme: W4A61, ignore: [lm_head]}\n';

/** A valid recipe with an ignore list of `entries` patterns: about 70 bytes and ~50 µs of validation each. */
function largeRecipe(entries: number): string {
  const lines = ['quant_stage:', '  quant_modifiers:', '    GPTQModifier:', '      scheme: W4A16', '      ignore:'];
  for (let i = 0; i < entries; i++) lines.push(`        - "re:model.layers.${i}.mlp.down_proj_with_a_long_suffix"`);
  return `${lines.join('\n')}\n`;
}

/** Longest gap between ticks of a 10 ms interval on this thread while `work` runs. */
async function longestStall<T>(work: Promise<T>): Promise<{ result: PromiseSettledResult<T>; stallMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 10);
  const [result] = await Promise.allSettled([work]);
  clearInterval(ticker);
  return { result, stallMs };
}

describe('recipe worker (worker_threads, time and memory budgets)', function () {
  this.timeout(60_000);
  const workerPath = join(repoRoot(), 'dist', 'workers', 'recipe.worker.js');
  const heavy = largeRecipe(45_000); // ~3 MB: seconds of validation
  const clients: RecipeWorker[] = [];
  const client = (budget?: ConstructorParameters<typeof RecipeWorker>[1]) => {
    const made = new RecipeWorker(workerPath, budget);
    clients.push(made);
    return made;
  };

  before(function () {
    if (!existsSync(workerPath)) throw new Error(`${workerPath} is missing: run \`node esbuild.mjs\``);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.dispose()));
  });

  it('validates, previews, hovers and completes as the core does in-process', async () => {
    const worker = client();
    assert.deepEqual(await worker.run('doc', 'validate', { text: SMALL, kind: 'recipe' }), validateRecipe(SMALL));
    assert.deepEqual(await worker.run('doc', 'preview', { text: SMALL, fileName: 'recipe.yaml' }), buildRecipePreview(SMALL, { fileName: 'recipe.yaml' }));
    const hover = await worker.run('hover', 'hover', { text: SMALL, position: { line: 2, character: 6 }, kind: 'recipe' });
    assert.match(hover?.contents ?? '', /GPTQModifier/);
    const items = await worker.run('completion', 'completion', { text: 'quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      block_s\n', position: { line: 3, character: 13 }, kind: 'recipe' });
    assert.ok(items.some((i) => i.label === 'block_size'));
  });

  it('a run past its time budget is stopped, reported, and the next run gets a fresh worker', async () => {
    const worker = client({ timeMs: 300, memoryMb: 512 });
    const started = performance.now();
    const { result, stallMs } = await longestStall(worker.run('doc', 'validate', { text: heavy, kind: 'recipe' }));
    const ms = performance.now() - started;
    assert.equal(result.status, 'rejected');
    const error = (result as PromiseRejectedResult).reason as Error;
    assert.ok(error instanceof BudgetExceeded && error.resource === 'time', String(error));
    assert.ok(ms < 2000, `stopped after ${ms.toFixed(0)} ms`);
    // This thread kept running meanwhile (the 3 MB recipe takes seconds to validate in-process).
    assert.ok(stallMs < 250, `event loop stalled ${stallMs.toFixed(0)} ms`);
    const diagnostic = failedAnalysisDiagnostic(error);
    assert.equal(diagnostic.code, 'too-complex');
    assert.equal(diagnostic.severity, 'error');
    assert.match(diagnostic.message, /too large or complex to analyse \(the analysis ran past its 0\.3 s time budget and was stopped\)/);
    assert.deepEqual(await worker.run('doc', 'validate', { text: SMALL, kind: 'recipe' }), validateRecipe(SMALL));
  });

  it('a run past its memory budget is ended by V8 and reported as such', async () => {
    const worker = client({ timeMs: 60_000, memoryMb: 24 });
    const error = await worker.run('doc', 'validate', { text: heavy, kind: 'recipe' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof BudgetExceeded && error.resource === 'memory', String(error));
    assert.match(failedAnalysisDiagnostic(error).message, /too large or complex to analyse \(the analysis ran past its 24 MB memory budget and was stopped\)/);
    assert.deepEqual(await worker.run('doc', 'validate', { text: SMALL, kind: 'recipe' }), validateRecipe(SMALL));
  });

  it('a newer run for the same key supersedes the running one at once; other keys keep their place', async () => {
    const worker = client();
    const stale = worker.run('doc', 'validate', { text: heavy, kind: 'recipe' });
    const other = worker.run('other', 'validate', { text: SMALL, kind: 'recipe' });
    await new Promise((r) => setTimeout(r, 100)); // the heavy run is under way
    const started = performance.now();
    const fresh = worker.run('doc', 'validate', { text: SMALL.replace('W4A61', 'W4A16'), kind: 'recipe' });
    await assert.rejects(stale, SupersededRun);
    assert.deepEqual(await other, validateRecipe(SMALL));
    assert.deepEqual(await fresh, []);
    const ms = performance.now() - started;
    assert.ok(ms < 1500, `the newer runs answered after ${ms.toFixed(0)} ms, not after the stale one`);
    // cancel() without a newer run: a queued run is dropped too.
    const queuedBehind = worker.run('doc', 'validate', { text: heavy, kind: 'recipe' });
    const queued = worker.run('queued', 'validate', { text: SMALL, kind: 'recipe' });
    worker.cancel('queued');
    worker.cancel('doc');
    await assert.rejects(queuedBehind, SupersededRun);
    await assert.rejects(queued, SupersededRun);
    assert.equal(worker.busy('doc') || worker.busy('queued'), false);
  });
});
