/**
 * The analysis worker: opens checkpoints and runs the heavy, streamed work (statistics, scales, health) off
 * the caller's event loop. One request at a time per method call id; each can be cancelled.
 */
import { parentPort } from 'node:worker_threads';
import { Checkpoint } from '../safetensors/checkpoint';
import { CheckpointAnalysis, analyzeCheckpoint } from '../checkpoint/summary';
import { computeTensorStatistics } from '../stats/computeStats';
import { computeWeightStatisticsOfTensor } from '../stats/weightStats';
import { readScaleOverview } from '../inspect/scales';
import { scanHealth } from '../inspect/health';
import { compareWithOriginal, simulateErrors } from '../inspect/error';
import { outputErrors } from '../inspect/outputError';
import { recordedOutputErrors } from '../inspect/jobOutputError';
import { CalibrationFile } from '../jobs/calibrationFile';
import type { AnalysisMethods, FromWorker, ToWorker } from './analysisProtocol';

const port = parentPort;
if (!port) throw new Error('analysis.worker must run in a worker thread');

const open = new Map<string, Promise<{ checkpoint: Checkpoint; analysis: CheckpointAnalysis }>>();
const running = new Map<number, AbortController>();

function load(path: string): Promise<{ checkpoint: Checkpoint; analysis: CheckpointAnalysis }> {
  let entry = open.get(path);
  if (!entry) {
    entry = (async () => {
      const checkpoint = await Checkpoint.open(path);
      return { checkpoint, analysis: await analyzeCheckpoint(checkpoint, path) };
    })();
    open.set(path, entry);
    entry.catch(() => open.delete(path));
  }
  return entry;
}

const post = (message: FromWorker) => port.postMessage(message);

async function run(id: number, method: keyof AnalysisMethods, params: unknown, signal: AbortSignal): Promise<unknown> {
  const progress = (fraction: number, what?: string) => post({ type: 'progress', id, fraction, what });
  switch (method) {
    case 'analyze': {
      const { path } = params as AnalysisMethods['analyze']['params'];
      return (await load(path)).analysis;
    }
    case 'tensorStats': {
      const { path, tensor, bins, view } = params as AnalysisMethods['tensorStats']['params'];
      const { checkpoint, analysis } = await load(path);
      if (view) return computeWeightStatisticsOfTensor(checkpoint, analysis.layerMap, tensor, { view, bins, signal, onProgress: (f) => progress(f, tensor) });
      return computeTensorStatistics(checkpoint, tensor, { bins, signal, onProgress: (f) => progress(f, tensor) });
    }
    case 'scales': {
      const { path } = params as AnalysisMethods['scales']['params'];
      const { checkpoint, analysis } = await load(path);
      return readScaleOverview(checkpoint, analysis.layerMap, { signal, onProgress: (f) => progress(f, 'scales') });
    }
    case 'health': {
      const { path, weights } = params as AnalysisMethods['health']['params'];
      const { checkpoint, analysis } = await load(path);
      return scanHealth(checkpoint, analysis.layerMap, { signal, weights, onProgress: progress });
    }
    case 'errors': {
      const { path, simulation, original, calibStats } = params as AnalysisMethods['errors']['params'];
      const { checkpoint, analysis } = await load(path);
      if (original) {
        const reference = await Checkpoint.open(original);
        const calibration = calibStats ? await CalibrationFile.open(calibStats).catch((error: unknown) => {
          throw new Error(`calibration statistics ${calibStats}: ${error instanceof Error ? error.message : String(error)}`);
        }) : undefined;
        try {
          // With calibration statistics the weight error takes the first half of the progress bar.
          const share = calibration ? 0.5 : 1;
          const weights = await compareWithOriginal(checkpoint, analysis.layerMap, reference, { signal, onProgress: (f, what) => progress(f * share, what) });
          // A statistics file given wins; without one, the output error a calibrated job measured (quantlens.json).
          const outputError = calibration ? await outputErrors(checkpoint, analysis.layerMap, reference, calibration, { signal, onProgress: (f, what) => progress(0.5 + f / 2, what) }) : await recordedOutputErrors(checkpoint.folder, original, analysis.layerMap);
          return { ...weights, original, ...(outputError ? { outputError } : {}) };
        } finally {
          await calibration?.close();
          await reference.close();
        }
      }
      return simulateErrors(checkpoint, analysis.layerMap, simulation ?? 'int4-g128', { signal, onProgress: progress });
    }
    case 'close': {
      const { path } = params as AnalysisMethods['close']['params'];
      const entry = open.get(path);
      open.delete(path);
      if (entry) await (await entry).checkpoint.close().catch(() => undefined);
      return undefined;
    }
  }
}

port.on('message', (message: ToWorker) => {
  if (message.type === 'cancel') {
    running.get(message.id)?.abort();
    return;
  }
  const controller = new AbortController();
  running.set(message.id, controller);
  run(message.id, message.method, message.params, controller.signal).then(
    (result) => post({ type: 'result', id: message.id, result }),
    (error: unknown) =>
      post({ type: 'error', id: message.id, message: error instanceof Error ? error.message : String(error), cancelled: controller.signal.aborted }),
  ).finally(() => running.delete(message.id));
});
