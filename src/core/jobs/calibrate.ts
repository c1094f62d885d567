/**
 * The calibrate job: runs a dataset through the model decoder block by decoder block and writes the
 * statistics file (jobs/calibrationFile.ts) the quantize job consumes — per linear layer the input absmax
 * (FP8/INT8 static scales), the per-channel input absmax, and optionally the GPTQ Hessian 2/n Σ x xᵀ.
 *
 * Everything is computed inside onnxruntime graphs (runtime/llama/graph.ts writeBlockGraph: Abs/ReduceMax
 * taps and an XᵀX accumulation fed back between runs), block by block, the way llm-compressor's sequential
 * pipeline walks a model: the embeddings of every sample are computed once, each block's graph turns the
 * hidden states of all samples into the next block's, and then it is released. Hidden states propagate
 * through the float weights.
 *
 * Memory bound: 2 × samples × seq_len × hidden × 4 bytes of hidden states (in and out of the current block)
 * + one block's weights in its graph + one Hessian per distinct layer input of that block (q/k/v share one,
 * gate/up share one; in² × 4 bytes each) — independent of the number of blocks. The statistics file is
 * written block by block as each finishes; lm_head gets no statistics (every preset keeps it in full precision).
 *
 * The file is written in a partial folder beside it, under the output's lock (jobOutput.ts), and linked to its
 * name only when complete and while the model and dataset are as they were when opened.
 */
import { basename, join } from 'node:path';
import { SafetensorsWriter, TensorSpec } from '../safetensors/writer';
import { blockModuleNames, blockModules } from '../runtime/llama/graph';
import { calibrationMetadata } from '../runtime/dataset';
import type { DeviceKind, DevicePreference } from '../runtime/device';
import { checkCancelled } from './jobErrors';
import { JobOutput, JobOutputOptions, withJobOutput } from './jobOutput';
import type { CalibrateJobSpec } from './jobSpec';
import { BlockPipeline, sharedInputOwner } from './blockPipeline';
import { OpenedModel, withOpenedModel } from './openedModel';

export { sharedInputOwner };

/** The calibrate job spec (model, out, dataset, samples, seqLen, hessians) plus how to run it. */
export interface CalibrationJobOptions extends Omit<CalibrateJobSpec, 'kind' | 'model'>, JobOutputOptions {
  /** The float checkpoint: a folder (opened for this job and closed after) or the job's open model (runJob's). */
  readonly model: string | OpenedModel;
  /** Where block graphs are written while they are used (a fresh folder inside it; removed at the end). */
  readonly graphCacheDir?: string;
  readonly device?: DevicePreference;
  /** Tokens per onnxruntime run (samples are batched up to it). Default 2048. */
  readonly tokensPerRun?: number;
  readonly onProgress?: (progress: { fraction: number; stage: string; module?: string }) => void;
}

export interface CalibrationSummary {
  readonly out: string;
  readonly dataset: string;
  readonly samples: number;
  readonly seqLen: number;
  /** Real (unpadded) tokens seen by every layer. */
  readonly tokens: number;
  /** Linear layers with statistics. */
  readonly layers: number;
  /** Hessians stored (one per distinct layer input). */
  readonly hessians: number;
  readonly device: DeviceKind;
  readonly seconds: number;
  readonly tokensPerSecond: number;
}

export function runCalibrationJob(options: CalibrationJobOptions): Promise<CalibrationSummary> {
  return withJobOutput('calibrate', options.out, options, (output) => withOpenedModel(options.model, (opened) => calibrateLocked(options, opened, output)));
}

async function calibrateLocked(options: CalibrationJobOptions, opened: OpenedModel, output: JobOutput): Promise<CalibrationSummary> {
  const started = Date.now();
  const progress = options.onProgress ?? (() => undefined);
  const model = opened.decoder();
  let writer: SafetensorsWriter | undefined;
  let pipeline: BlockPipeline | undefined;
  try {
    await output.watchCheckpoint(model.checkpoint);
    await output.watchInputs([options.dataset]);
    const c = model.config;
    progress({ fraction: 0, stage: 'tokenize' });
    pipeline = await BlockPipeline.open(model, {
      tokenizer: await opened.tokenizer(),
      dataset: options.dataset,
      samples: options.samples,
      seqLen: options.seqLen,
      ...(options.device ? { device: options.device } : {}),
      ...(options.graphCacheDir ? { graphCacheDir: options.graphCacheDir } : {}),
      ...(options.tokensPerRun ? { tokensPerRun: options.tokensPerRun } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
    const dataset = pipeline.dataset;
    const tokens = pipeline.tokens;

    // The statistics file's layout is known before any work: tensors are written block by block in this order.
    const specs: TensorSpec[] = [];
    const shared: Record<string, string> = {};
    for (let l = 0; l < c.numLayers; l++) {
      for (const { name: m, in: K } of blockModules(c, l)) {
        specs.push({ name: `${m}.input_absmax`, dtype: 'F32', shape: [] }, { name: `${m}.input_channel_absmax`, dtype: 'F32', shape: [K] });
        if (!options.hessians) continue;
        const owner = sharedInputOwner(m);
        if (owner === m) specs.push({ name: `${m}.hessian`, dtype: 'F32', shape: [K, K] });
        else shared[m] = owner;
      }
    }
    writer = await SafetensorsWriter.create(join(await output.createPartial('calibration statistics'), basename(output.out)), specs, {
      order: 'given',
      metadata: {
        'quantlens.calibration': '1',
        ...Object.fromEntries(Object.entries(calibrationMetadata(dataset.info)).map(([k, v]) => [k, String(v)])),
        sha256: dataset.info.sha256,
        ...(options.hessians ? { 'quantlens.shared_inputs': JSON.stringify(shared) } : {}),
      },
    });

    let layersWritten = 0;
    let hessiansWritten = 0;
    for (let l = 0; l < c.numLayers; l++) {
      checkCancelled(options.signal);
      const modules = blockModuleNames(c, l);
      const owners = options.hessians ? modules.filter((m) => sharedInputOwner(m) === m) : [];
      progress({ fraction: l / c.numLayers, stage: `block ${l + 1}/${c.numLayers}`, module: `model.layers.${l}` });
      // Hidden states propagate through the float weights.
      const { statistics, outputs } = await pipeline.runBlock(l, {
        statistics: { hessianOwners: owners },
        onRun: (fraction) => progress({ fraction: (l + fraction) / c.numLayers, stage: `block ${l + 1}/${c.numLayers}`, module: `model.layers.${l}` }),
      });
      pipeline.hidden = outputs!;
      // This block's statistics, in the file's order.
      for (const m of modules) {
        await writer.write(`${m}.input_absmax`, new Uint8Array(Float32Array.of(statistics!.absmax.get(m)!).buffer));
        await writer.write(`${m}.input_channel_absmax`, new Uint8Array(statistics!.channelAbsmax.get(m)!.buffer));
        layersWritten++;
        const h = statistics!.hessians.get(m);
        if (h) {
          await writer.write(`${m}.hessian`, new Uint8Array(h.buffer));
          hessiansWritten++;
        }
      }
    }
    checkCancelled(options.signal);
    await writer.finish();
    writer = undefined;
    await output.publishFile(basename(output.out));
    const seconds = (Date.now() - started) / 1000;
    progress({ fraction: 1, stage: 'done' });
    return {
      out: options.out,
      dataset: dataset.info.dataset,
      samples: dataset.samples.length,
      seqLen: options.seqLen,
      tokens,
      layers: layersWritten,
      hessians: hessiansWritten,
      device: pipeline.device.device,
      seconds,
      tokensPerSecond: tokens / seconds,
    };
  } finally {
    await writer?.abort();
    await pipeline?.close();
  }
}
