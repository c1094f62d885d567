/**
 * Device selection never fails silently: each way CUDA can be unavailable gives the CPU with a reason that
 * says what to do, and asking for CUDA explicitly marks the report as failed. The probe runs the real
 * onnxruntime-node (whose CUDA provider is not installed on a CPU machine).
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CUDA_PROVIDER_FILES, detectDevice, explainCudaFailure, installProviderLibraries, onnxruntimeBinDir } from '../../src/core/runtime/device';
import { tempDir } from '../helpers/paths';

describe('runtime: device selection', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  it('uses the CPU when settings say so, without probing', async () => {
    const report = await detectDevice({ preference: 'cpu' });
    assert.deepEqual(report.executionProviders, ['cpu']);
    assert.match(report.reason, /chosen in settings/);
    assert.equal(report.failed, false);
  });

  it('explains a missing driver, and fails when CUDA was asked for', async () => {
    const auto = await detectDevice({ driverPresent: false });
    assert.equal(auto.device, 'cpu');
    assert.match(auto.reason, /no NVIDIA GPU driver found/);
    assert.equal(auto.failed, false);
    const forced = await detectDevice({ preference: 'cuda', driverPresent: false });
    assert.equal(forced.failed, true);
    assert.match(forced.reason, /CUDA was asked for/);
  });

  it('names the missing provider libraries and the command that installs them', async () => {
    const report = await detectDevice({ driverPresent: true, binDir: tmp.path });
    assert.equal(report.device, 'cpu');
    for (const f of CUDA_PROVIDER_FILES) assert.ok(report.reason.includes(f), report.reason);
    assert.match(report.reason, /Set Up CUDA Runtime/);
  });

  it('reports what onnxruntime throws when the provider is present but cannot load', async () => {
    // Provider files "present" (empty files in a folder we point at); the real onnxruntime then fails to load CUDA.
    for (const f of CUDA_PROVIDER_FILES) await fs.writeFile(join(tmp.path, f), '');
    const report = await detectDevice({ driverPresent: true, binDir: tmp.path });
    assert.equal(report.device, 'cpu');
    assert.ok(report.detail && report.detail.length > 0, 'the raw error is kept for the log');
    assert.match(report.reason, /^CPU: (onnxruntime's CUDA provider failed to load|CUDA (libraries not found|could not start))/);
  });

  it('turns typical loader errors into advice', () => {
    assert.match(explainCudaFailure('Failed to load library libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file'), /install CUDA 12 and cuDNN 9/);
    assert.match(explainCudaFailure('/x/libonnxruntime_providers_shared.so: cannot open shared object file'), /Set Up CUDA Runtime/);
  });

  it('copies provider libraries from a folder only when both are there, atomically', async () => {
    const source = join(tmp.path, 'src');
    const bin = join(tmp.path, 'bin');
    await fs.mkdir(source);
    await fs.mkdir(bin);
    await fs.writeFile(join(source, CUDA_PROVIDER_FILES[0]!), 'cuda');
    await assert.rejects(installProviderLibraries(source, bin), /does not hold .*providers_shared/);
    await fs.writeFile(join(source, CUDA_PROVIDER_FILES[1]!), 'shared');
    await fs.writeFile(join(source, 'unrelated.so'), 'x');
    const copied = await installProviderLibraries(source, bin);
    assert.deepEqual((await fs.readdir(bin)).sort(), [...CUDA_PROVIDER_FILES].sort());
    assert.equal(copied.length, 2);
    assert.ok(onnxruntimeBinDir().endsWith(join('bin', 'napi-v6', process.platform, process.arch)));
  });
});
