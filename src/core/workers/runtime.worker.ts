/**
 * The runtime worker: loads onnxruntime-node and owns all inference sessions, so graph loading and
 * inference never block the caller's event loop (the extension host or the CLI). Errors — a model that
 * does not load, a missing CUDA provider, a failed run — are answered as messages, never thrown across.
 */
import { parentPort } from 'node:worker_threads';
import type * as Ort from 'onnxruntime-node';
import type { FromRuntime, ToRuntime, WireTensor, WireTensorData } from '../runtime/protocol';

const port = parentPort;
if (!port) throw new Error('runtime.worker must run in a worker thread');

let ort: typeof Ort | undefined;
let loadError: string | undefined;
try {
  // Loaded here (not at the top level of a bundle that may run without the native addon) so that a missing
  // or broken onnxruntime-node is reported per request instead of killing the worker.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  ort = require('onnxruntime-node') as typeof Ort;
} catch (error) {
  loadError = `onnxruntime-node could not be loaded: ${(error as Error).message}`;
}

const sessions = new Map<number, { session: Ort.InferenceSession; providers: readonly string[] }>();
let nextSession = 1;

const post = (message: FromRuntime, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

function toOrt(name: string, t: WireTensor): Ort.Tensor {
  if (!ort) throw new Error(loadError);
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (count !== t.data.length) throw new Error(`input ${name}: dims [${t.dims.join(', ')}] need ${count} elements, ${t.data.length} given`);
  return new ort.Tensor(t.type, t.data as never, [...t.dims]);
}

function fromOrt(name: string, value: Ort.OnnxValue): WireTensor {
  const tensor = value as Ort.Tensor;
  const type = tensor.type as WireTensor['type'];
  if (!['float32', 'float16', 'int64', 'int32', 'uint8', 'int8', 'bool'].includes(type)) throw new Error(`output ${name} has type ${tensor.type}, which the runtime protocol does not carry`);
  return { type, dims: [...tensor.dims], data: tensor.data as WireTensorData };
}

async function handle(message: ToRuntime): Promise<void> {
  switch (message.type) {
    case 'create': {
      if (!ort) return post({ type: 'error', id: message.id, stage: 'load', message: loadError! });
      const providers = message.options.executionProviders ?? ['cpu'];
      try {
        const options: Ort.InferenceSession.SessionOptions = { executionProviders: [...providers], graphOptimizationLevel: message.options.graphOptimizationLevel ?? 'all' };
        // onnxruntime-node rejects keys that are present but undefined.
        if (message.options.intraOpThreads !== undefined) options.intraOpNumThreads = message.options.intraOpThreads;
        if (message.options.interOpThreads !== undefined) options.interOpNumThreads = message.options.interOpThreads;
        const session = await ort.InferenceSession.create(message.modelPath, options);
        const id = nextSession++;
        sessions.set(id, { session, providers });
        post({ type: 'created', id: message.id, description: { session: id, inputNames: session.inputNames, outputNames: session.outputNames, executionProviders: providers } });
      } catch (error) {
        post({ type: 'error', id: message.id, stage: 'load', message: `${message.modelPath} with providers [${providers.join(', ')}]: ${(error as Error).message}` });
      }
      return;
    }
    case 'run': {
      const entry = sessions.get(message.session);
      if (!entry) return post({ type: 'error', id: message.id, stage: 'run', message: `session ${message.session} does not exist (released?)` });
      try {
        const feeds: Record<string, Ort.Tensor> = {};
        for (const [name, tensor] of Object.entries(message.feeds)) feeds[name] = toOrt(name, tensor);
        const results = message.outputs ? await entry.session.run(feeds, [...message.outputs]) : await entry.session.run(feeds);
        const outputs: Record<string, WireTensor> = {};
        const transfer = new Set<ArrayBuffer>();
        for (const [name, value] of Object.entries(results)) {
          const wire = fromOrt(name, value);
          outputs[name] = wire;
          if (wire.data.byteOffset === 0 && wire.data.byteLength === wire.data.buffer.byteLength && wire.data.buffer instanceof ArrayBuffer) transfer.add(wire.data.buffer);
        }
        post({ type: 'ran', id: message.id, outputs }, [...transfer]);
      } catch (error) {
        post({ type: 'error', id: message.id, stage: 'run', message: (error as Error).message });
      }
      return;
    }
    case 'release': {
      const entry = sessions.get(message.session);
      sessions.delete(message.session);
      try {
        await entry?.session.release();
        post({ type: 'released', id: message.id });
      } catch (error) {
        post({ type: 'error', id: message.id, stage: 'release', message: (error as Error).message });
      }
      return;
    }
  }
}

port.on('message', (message: ToRuntime) => {
  void handle(message);
});
