// Quantize and calibrate jobs through the commands, in a real VS Code: each preset on the shipped example
// (calibrating with the shipped WikiText-2 sample where the scheme needs it), progress seen while a job runs,
// a run cancelled midway that leaves nothing behind, and a result opened in the inspector.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import type { JobRecord } from '../../../src/extension/jobs/jobManager';
import type { QuantizeCommandArgs } from '../../../src/extension/jobs/jobCommands';
import { takeScreenshot } from './screenshot';
import { sleep, waitFor } from './wait';

async function api(): Promise<QuantLensTestApi> {
  return vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.activate();
}

function exampleDir(): string {
  const ext = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
  return join(ext.extensionPath, 'examples', 'tiny-llama');
}

function quantize(args: QuantizeCommandArgs): Thenable<JobRecord | undefined> {
  return vscode.commands.executeCommand<JobRecord | undefined>('quantlens.quantizeModel', { interactive: false, openResult: false, ...args });
}

const EXPECTED: Record<string, { format: string; quantMethod: string }> = {
  'fp8-dynamic': { format: 'float-quantized', quantMethod: 'compressed-tensors' },
  w8a8: { format: 'int-quantized', quantMethod: 'compressed-tensors' },
  'w4a16-rtn': { format: 'pack-quantized', quantMethod: 'compressed-tensors' },
  fp8: { format: 'float-quantized', quantMethod: 'compressed-tensors' },
  w4a16: { format: 'pack-quantized', quantMethod: 'compressed-tensors' },
};

describe('Quantize and calibrate jobs', function () {
  this.timeout(300_000);
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'quantlens-jobs-'));
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    rmSync(scratch, { recursive: true, force: true });
  });

  for (const preset of Object.keys(EXPECTED)) {
    it(`"Quantize Model…" with the ${preset} preset writes a checkpoint the inspector recognises`, async () => {
      const out = join(scratch, `tiny-${preset}`);
      const needsCalibration = preset === 'fp8' || preset === 'w4a16';
      const record = await quantize({ model: exampleDir(), preset: preset as QuantizeCommandArgs['preset'], output: out, ...(needsCalibration ? { calibration: 'default', samples: 4, seqLen: 64 } : {}) });
      assert.ok(record, 'the command returns the job record');
      assert.equal(record.status, 'succeeded', record.error);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: { format: string; quant_method: string } };
      assert.equal(config.quantization_config.format, EXPECTED[preset]!.format);
      assert.equal(config.quantization_config.quant_method, EXPECTED[preset]!.quantMethod);
      assert.ok(existsSync(join(out, 'recipe.yaml')));
      const quantlens = await api();
      const listed = quantlens.jobs().find((j) => j.id === record.id);
      assert.equal(listed?.status, 'succeeded', 'the Jobs view lists the run');
      if (needsCalibration) assert.ok(listed?.result?.kind === 'quantize' && listed.result.calibration && listed.result.calibration.tokens === 4 * 64);
    });
  }

  it('runs a recipe file as the recipe preview\'s Run does, and names a modifier it cannot run', async () => {
    const ext = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
    const recipes = join(ext.extensionPath, 'test', 'fixtures', 'recipes');
    const out = join(scratch, 'recipe-fp8-dynamic');
    const record = await quantize({ model: exampleDir(), recipe: join(recipes, 'llmc__e2e__recipes__FP8__recipe_fp8_dynamic.yaml'), output: out });
    assert.equal(record?.status, 'succeeded', record?.error);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: { format: string } };
    assert.equal(config.quantization_config.format, 'float-quantized');
    const smooth = await quantize({ model: exampleDir(), recipe: join(recipes, 'llmc__e2e__recipes__INT8__recipe_int8_channel_weight_dynamic_per_token.yaml'), output: join(scratch, 'smooth') });
    assert.equal(smooth?.status, 'failed');
    assert.match(smooth!.error!, /SmoothQuant/);
    assert.ok(!existsSync(join(scratch, 'smooth')));
  });

  it('the pre-flight check stops a job with a named problem before any work', async () => {
    const out = join(scratch, 'needs-calibration');
    const record = await quantize({ model: exampleDir(), preset: 'w4a16', output: out });
    assert.equal(record?.status, 'failed');
    assert.match(record!.error!, /pre-flight check failed: .*needs calibration/);
    assert.ok(!existsSync(out));
  });

  it('refuses a job on an output another job is writing, naming that job (a CLI run, or a job of this window)', async () => {
    const out = join(scratch, 'owned');
    const ext = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
    const cli = spawn(process.execPath, [join(ext.extensionPath, 'bin', 'quantlens.js'), 'quantize', exampleDir(), '--scheme', 'w4a16-rtn', '--max-shard-size', '2000000', '--out', out], { stdio: 'ignore' });
    try {
      // waitFor waits for a value other than undefined.
      await waitFor('the CLI job to hold the output', () => readdirSync(scratch).find((n) => n.startsWith('.owned.') && n.endsWith('.partial')), 60_000);
      // Stopped, it stays alive and keeps the output's lock while the editor tries the same output.
      cli.kill('SIGSTOP');
      const refused = await quantize({ model: exampleDir(), preset: 'w8a8', output: out });
      assert.equal(refused?.status, 'failed');
      assert.match(refused!.error!, new RegExp(`is being written by another QuantLens job: pid ${cli.pid} \\(quantlens quantize .*--out .*owned\\), since `));
      assert.ok(readdirSync(scratch).some((n) => n.startsWith('.owned.') && n.endsWith('.partial')), "the CLI job's partial output is untouched");
    } finally {
      cli.kill('SIGCONT');
      cli.kill('SIGKILL');
    }
    // Two jobs of this window on one output: the second is refused at once, naming the first.
    const mine = join(scratch, 'mine');
    const first = quantize({ model: exampleDir(), preset: 'w4a16', output: mine, calibration: 'default', samples: 64, seqLen: 256 });
    const quantlens = await api();
    const job = await waitFor('the first job to start', () => quantlens.jobs().find((j) => j.spec.out === mine && (j.status === 'running' || j.status === 'checking')), 60_000);
    const second = await quantize({ model: exampleDir(), preset: 'w8a8', output: mine });
    assert.equal(second?.status, 'failed');
    assert.match(second!.error!, /is already being written by Quantize tiny-llama → w4a16 \((running|in its pre-flight check) since /);
    await vscode.commands.executeCommand('quantlens.cancelJob', job.id);
    assert.equal((await first)?.status, 'cancelled');
  });

  it('shows progress while a job runs and cancels it within a second, leaving no output', async () => {
    const out = join(scratch, 'cancelled');
    const running = quantize({ model: exampleDir(), preset: 'w4a16', output: out, calibration: 'default', samples: 64, seqLen: 256 });
    const quantlens = await api();
    const job = await waitFor('the job to report progress', () => quantlens.jobs().find((j) => j.spec.out === out && j.status === 'running' && (j.progress?.fraction ?? 0) > 0), 60_000);
    await vscode.commands.executeCommand('workbench.view.extension.quantlens');
    await sleep(300);
    await takeScreenshot('jobs-running');
    const asked = Date.now();
    assert.equal(await vscode.commands.executeCommand('quantlens.cancelJob', job.id), true);
    const finished = await running;
    const took = Date.now() - asked;
    assert.equal(finished?.status, 'cancelled');
    assert.ok(took < 1500, `cancel took ${took} ms`);
    assert.ok(!existsSync(out), 'no output under the final name');
    assert.deepEqual(readdirSync(scratch).filter((n) => n.startsWith('.cancelled')), [], 'no partial output left');
  });

  it('opens a finished result in the inspector, compared with the original', async () => {
    const quantlens = await api();
    const done = quantlens.jobs().find((j) => j.status === 'succeeded' && j.spec.out.endsWith('tiny-w8a8'));
    assert.ok(done);
    await vscode.commands.executeCommand('quantlens.openJobResult', done.id);
    const view = await waitFor('the inspector on the result', () => quantlens.inspectors().find((i) => i.path.startsWith(done.spec.out) && i.rendered?.scheme)?.rendered, 60_000);
    assert.match(view.scheme, /INT8 weights per channel, INT8 activations per token/);
    await waitFor('the error tab comparing with the original', () => quantlens.inspectors().find((i) => i.path.startsWith(done.spec.out) && i.rendered?.tab === 'error' && i.rendered.worstLayer)?.rendered, 60_000);
    await takeScreenshot('job-result-compared');
  });
});
