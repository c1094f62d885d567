/**
 * Whether onnxruntime-node's CUDA execution provider loads on this machine, asked of onnxruntime itself (in a
 * child process: a provider that fails to initialise may abort its process). Tests of device selection and of
 * session creation hold on machines with and without CUDA, and check what QuantLens reports against this.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { DataType, GraphBuilder } from '../../src/core/runtime/onnx/builder';

export type CudaAnswer = { readonly loads: true } | { readonly loads: false; readonly error: string };

const SCRIPT = `
const [ortPath, model] = process.argv.slice(1);
require(ortPath).InferenceSession.create(model, { executionProviders: ['cuda'] })
  .then((s) => s.release())
  .then(() => console.log('CUDA-LOADS'), (e) => console.log('CUDA-FAILS ' + JSON.stringify(String((e && e.message) || e))));
`;

/** Creates a session for `modelPath` on the CUDA provider alone, in a child process, and says what happened. */
export function cudaSessionLoads(modelPath: string): CudaAnswer {
  const child = spawnSync(process.execPath, ['-e', SCRIPT, require.resolve('onnxruntime-node'), modelPath], { encoding: 'utf8', timeout: 120_000 });
  if (child.stdout.includes('CUDA-LOADS')) return { loads: true };
  const failed = /CUDA-FAILS (.*)/.exec(child.stdout)?.[1];
  if (failed) return { loads: false, error: JSON.parse(failed) as string };
  return { loads: false, error: `the CUDA session process ended with ${child.signal ?? `exit code ${child.status}`}: ${child.stderr.trim().split('\n').slice(-3).join(' | ')}` };
}

/** A one-node model (y = Identity(x)) written into `folder`, for asking a provider to load. */
export async function identityModel(folder: string): Promise<string> {
  const g = await GraphBuilder.create({ modelPath: join(folder, 'identity.onnx') });
  const x = g.input('x', DataType.FLOAT, [1]);
  g.output(g.op('Identity', [x]), DataType.FLOAT, [1], 'y');
  return (await g.finish()).modelPath;
}
