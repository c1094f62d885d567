/**
 * Device selection never fails silently: each way CUDA can be unavailable gives the CPU with a reason that
 * says what to do, and asking for CUDA explicitly marks the report as failed. The probe runs the real
 * onnxruntime-node: where its CUDA provider loads, the report must say CUDA; where it does not, it must give
 * the reason (checked against onnxruntime asked directly, so the tests hold on machines with and without CUDA).
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CUDA_PROVIDER_FILES, detectDevice, explainCudaFailure, installProviderLibraries } from '../../src/core/runtime/device';
import { ortNativeDir } from '../../src/core/util/ort';
import { tempDir } from '../helpers/paths';
import { cudaSessionLoads, identityModel } from '../helpers/cudaOracle';

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

  it('with the provider files in place, reports CUDA where onnxruntime loads it and what onnxruntime threw where it does not', async () => {
    // Provider files "present" (empty files in a folder we point at), so the probe asks the real onnxruntime,
    // which loads the provider from its own folder: whether that works depends on the machine. (A folder of
    // its own: the test above saw the empty one.)
    const present = join(tmp.path, 'present');
    await fs.mkdir(present);
    for (const f of CUDA_PROVIDER_FILES) await fs.writeFile(join(present, f), '');
    const answer = cudaSessionLoads(await identityModel(present));
    const report = await detectDevice({ preference: 'cuda', driverPresent: true, binDir: present });
    if (answer.loads) {
      assert.equal(report.device, 'cuda', `onnxruntime loads its CUDA provider here, but the report says: ${report.reason}`);
      assert.equal(report.failed, false);
      assert.equal(report.reason, 'CUDA: onnxruntime CUDA provider loaded');
      assert.equal(report.executionProviders[0], 'cuda');
    } else {
      assert.equal(report.device, 'cpu', `onnxruntime cannot load CUDA here (${answer.error}), but the report says: ${report.reason}`);
      assert.equal(report.failed, true, 'CUDA was asked for: the report fails rather than run on the CPU');
      assert.ok(report.detail && report.detail.length > 0, 'the raw error is kept for the log');
      assert.ok(report.reason.includes(explainCudaFailure(report.detail)), `the reason states the failure: ${report.reason}`);
      assert.match(report.reason, /CUDA/);
    }
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
    assert.ok(ortNativeDir().endsWith(join('bin', 'napi-v6', process.platform, process.arch)));
  });
});
