/**
 * The same jobs through the CLI (bin/quantlens.js, as a user runs it): calibrate writes a statistics file
 * that quantize --calib-stats consumes for GPTQ; quantize --calib calibrates from a dataset first; the
 * pre-flight check and usage mistakes end with clear messages and the documented exit codes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'quantlens.js'), ...args], { encoding: 'utf8', timeout: 240_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('jobs: CLI calibrate and quantize --calib', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    if (!existsSync(join(repoRoot(), 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing (node esbuild.mjs builds it)');
    tmp = tempDir();
  });
  after(() => tmp.cleanup());

  it('calibrate writes statistics that quantize --calib-stats uses for GPTQ', () => {
    const stats = join(tmp.path, 'stats.safetensors');
    const calibrated = cli('calibrate', example(), '--data', 'default', '--samples', '2', '--seq-len', '32', '--hessians', '--out', stats);
    assert.equal(calibrated.status, 0, calibrated.stderr);
    const summary = JSON.parse(calibrated.stdout) as { tokens: number; layers: number; hessians: number; device: string };
    assert.deepEqual([summary.tokens, summary.layers, summary.hessians, summary.device], [64, 28, 16, 'cpu']);
    const out = join(tmp.path, 'gptq');
    const quantized = cli('quantize', example(), '--scheme', 'w4a16', '--calib-stats', stats, '--out', out);
    assert.equal(quantized.status, 0, quantized.stderr);
    assert.equal((JSON.parse(quantized.stdout) as { gptqLayers: number }).gptqLayers, 28);
    assert.equal((JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: { format: string } }).quantization_config.format, 'pack-quantized');
  });

  it('quantize --calib calibrates from the dataset, then quantizes (FP8 static)', () => {
    const out = join(tmp.path, 'fp8');
    const result = cli('quantize', example(), '--scheme', 'fp8', '--calib', 'default', '--samples', '2', '--seq-len', '16', '--out', out);
    assert.equal(result.status, 0, result.stderr);
    const summary = JSON.parse(result.stdout) as { calibration: { tokens: number }; quantizedLayers: number };
    assert.equal(summary.calibration.tokens, 32);
    assert.equal(summary.quantizedLayers, 28);
    assert.match(result.stderr, /calibrating on 2 samples × 16 tokens/);
  });

  it('stops at the pre-flight check with the problem named, and refuses inconsistent flags', () => {
    const missing = cli('quantize', example(), '--scheme', 'fp8', '--out', join(tmp.path, 'x'));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /pre-flight check failed:[\s\S]*needs calibration \(activation absmax for static scales\)/);
    assert.ok(!existsSync(join(tmp.path, 'x')));
    const usage = cli('quantize', example(), '--scheme', 'fp8', '--samples', '4', '--out', join(tmp.path, 'y'));
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--samples needs --calib/);
    const both = cli('quantize', example(), '--scheme', 'fp8', '--calib', 'default', '--calib-stats', 'a.safetensors', '--out', join(tmp.path, 'z'));
    assert.equal(both.status, 2);
    const propagationAlone = cli('quantize', example(), '--scheme', 'w4a16', '--propagation', 'float', '--calib-stats', 'a.safetensors', '--out', join(tmp.path, 'p'));
    assert.equal(propagationAlone.status, 2);
    assert.match(propagationAlone.stderr, /--propagation needs --calib/);
    const badPropagation = cli('quantize', example(), '--scheme', 'w4a16', '--calib', 'default', '--propagation', 'fp16', '--out', join(tmp.path, 'p'));
    assert.equal(badPropagation.status, 2);
    assert.match(badPropagation.stderr, /--propagation must be one of quantized, float/);
    assert.ok(!existsSync(join(tmp.path, 'p')));
    const badOut = cli('calibrate', example(), '--out', join(tmp.path, 'stats.txt'));
    assert.equal(badOut.status, 2);
    assert.match(badOut.stderr, /must name a \.safetensors file/);
  });
});
