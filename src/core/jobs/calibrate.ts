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
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type * as Ort from 'onnxruntime-node';
import { decodeToFloat32, encodeFromFloat32 } from '../dtypes/convert';
import { SafetensorsWriter, TensorSpec } from '../safetensors/writer';
import { blockModuleNames, embedTokens, openDecoderModel, writeBlockGraph } from '../runtime/llama/graph';
import { ModelTokenizer } from '../runtime/tokenizer';
import { calibrationMetadata, loadCalibrationDataset } from '../runtime/dataset';
import { DeviceKind, DevicePreference, checkTokensPerRun, deviceForSequences, graphOptionsFor, requireDevice } from '../runtime/device';
import { verifyPlacement } from '../runtime/placement';
import { JobCancelled } from './jobErrors';
import { JobOutput, JobOutputOptions, withJobOutput } from './jobOutput';
import type { CalibrateJobSpec } from './jobSpec';

/** The calibrate job spec (model, out, dataset, samples, seqLen, hessians) plus how to run it. */
export interface CalibrationJobOptions extends Omit<CalibrateJobSpec, 'kind'>, JobOutputOptions {
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

/** The module whose Hessian a module shares (same input): q/k/v → q_proj, gate/up → gate_proj. */
export function sharedInputOwner(module: string): string {
  return module.replace(/\.self_attn\.(k|v)_proj$/, '.self_attn.q_proj').replace(/\.mlp\.up_proj$/, '.mlp.gate_proj');
}

function loadOrt(): typeof Ort {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('onnxruntime-node') as typeof Ort;
}

function checkCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new JobCancelled();
}

export function runCalibrationJob(options: CalibrationJobOptions): Promise<CalibrationSummary> {
  return withJobOutput('calibrate', options.out, options, (output) => calibrateLocked(options, output));
}

async function calibrateLocked(options: CalibrationJobOptions, output: JobOutput): Promise<CalibrationSummary> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const progress = options.onProgress ?? (() => undefined);
  const ort = loadOrt();
  const model = await openDecoderModel(options.model);
  const work = join(options.graphCacheDir ?? tmpdir(), `calibrate-${randomBytes(4).toString('hex')}`);
  let writer: SafetensorsWriter | undefined;
  try {
    await output.watchCheckpoint(model.checkpoint);
    await output.watchInputs([options.dataset]);
    const c = model.config;
    progress({ fraction: 0, stage: 'tokenize' });
    const tokenizer = await ModelTokenizer.load(options.model);
    const dataset = await loadCalibrationDataset(options.dataset, tokenizer, { samples: options.samples, seqLen: options.seqLen, signal: options.signal });
    for (const warning of dataset.warnings) log(`warning: ${warning}`);
    const samples = dataset.samples;
    const tokens = samples.reduce((sum, s) => sum + s.tokens, 0);
    // The device asked for, or DeviceUnavailableError: never the CPU in its place.
    const L = Math.max(...samples.map((s) => s.inputIds.length));
    const device = deviceForSequences(await requireDevice(options.device ?? 'auto'), options.device ?? 'auto', L);
    const graphOptions = graphOptionsFor(device.device);
    const precision = graphOptions.precision;
    log(`calibrating on ${samples.length} samples × ${options.seqLen} tokens (${tokens} tokens) from ${dataset.info.dataset}; ${device.reason}`);

    // The statistics file's layout is known before any work: tensors are written block by block in this order.
    const specs: TensorSpec[] = [];
    const shared: Record<string, string> = {};
    const inFeatures = (module: string) => (/\.o_proj$/.test(module) ? c.numHeads * c.headDim : /\.down_proj$/.test(module) ? c.intermediateSize : c.hiddenSize);
    for (let l = 0; l < c.numLayers; l++) {
      for (const m of blockModuleNames(c, l)) {
        const K = inFeatures(m);
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
    await fs.mkdir(work, { recursive: true });

    // Block 0's input: the embeddings of every sample.
    const H = c.hiddenSize;
    checkTokensPerRun(device.device, L);
    let hidden: Float32Array[] = [];
    for (let i = 0; i < samples.length; i++) {
      checkCancelled(options.signal);
      const padded = new Int32Array(L);
      padded.set(samples[i]!.inputIds);
      hidden.push(await embedTokens(model, padded));
    }
    const masks = samples.map((s) => {
      const m = new BigInt64Array(L);
      for (let t = 0; t < s.attentionMask.length; t++) m[t] = BigInt(s.attentionMask[t]!);
      return m;
    });
    const batch = Math.max(1, Math.floor((options.tokensPerRun ?? 2048) / L));
    const runs = Math.ceil(samples.length / batch);
    let layersWritten = 0;
    let hessiansWritten = 0;

    for (let l = 0; l < c.numLayers; l++) {
      checkCancelled(options.signal);
      const modules = blockModuleNames(c, l);
      const owners = options.hessians ? modules.filter((m) => sharedInputOwner(m) === m) : [];
      const graphPath = join(work, `block-${l}.onnx`);
      progress({ fraction: l / c.numLayers, stage: `block ${l + 1}/${c.numLayers}`, module: `model.layers.${l}` });
      const info = await writeBlockGraph(model, l, graphPath, { ...graphOptions, taps: { absmax: true, channelAbsmax: true, hessian: owners }, maxSequenceLength: L });
      // Every block's graph has the same ops: the first one tells where the sessions run.
      if (l === 0) await verifyPlacement(graphPath, device, log);
      const session = await ort.InferenceSession.create(graphPath, { executionProviders: [...device.executionProviders], graphOptimizationLevel: 'all' });
      try {
        const absmax = new Map<string, number>(modules.map((m) => [m, 0]));
        const channel = new Map<string, Float32Array>(modules.map((m) => [m, new Float32Array(info.inFeatures[m]!)]));
        const hessian = new Map<string, Float32Array>(owners.map((m) => [m, new Float32Array(info.inFeatures[m]! ** 2)]));
        const next: Float32Array[] = [];
        for (let r = 0; r < runs; r++) {
          checkCancelled(options.signal);
          const first = r * batch;
          const count = Math.min(batch, samples.length - first);
          const states = new Float32Array(count * L * H);
          const mask = new BigInt64Array(count * L);
          for (let b = 0; b < count; b++) {
            states.set(hidden[first + b]!, b * L * H);
            mask.set(masks[first + b]!, b * L);
          }
          const feeds: Record<string, Ort.Tensor> = {
            hidden_states: precision === 'fp16' ? new ort.Tensor('float16', new Uint16Array(encodeFromFloat32('F16', states).buffer), [count, L, H]) : new ort.Tensor('float32', states, [count, L, H]),
            attention_mask: new ort.Tensor('int64', mask, [count, L]),
          };
          for (const m of owners) feeds[`H_in.${m}`] = new ort.Tensor('float32', hessian.get(m)!, [info.inFeatures[m]!, info.inFeatures[m]!]);
          const out = await session.run(feeds);
          const block = out.block_output!;
          const result = precision === 'fp16' ? decodeToFloat32('F16', new Uint8Array((block.data as Uint16Array).buffer)) : (block.data as Float32Array);
          for (let b = 0; b < count; b++) next.push(result.slice(b * L * H, (b + 1) * L * H));
          for (const m of modules) {
            absmax.set(m, Math.max(absmax.get(m)!, (out[`absmax.${m}`]!.data as Float32Array)[0]!));
            const acc = channel.get(m)!;
            const batchMax = out[`channel_absmax.${m}`]!.data as Float32Array;
            for (let k = 0; k < acc.length; k++) if (batchMax[k]! > acc[k]!) acc[k] = batchMax[k]!;
          }
          for (const m of owners) hessian.set(m, out[`H_out.${m}`]!.data as Float32Array);
          progress({ fraction: (l + (r + 1) / runs) / c.numLayers, stage: `block ${l + 1}/${c.numLayers}`, module: `model.layers.${l}` });
        }
        hidden = next;
        // This block's statistics, in the file's order; Hessians normalised to 2/n Σ x xᵀ.
        for (const m of modules) {
          const value = absmax.get(m)!;
          if (!Number.isFinite(value)) throw new Error(`${m}: the calibration activations contain NaN or Inf (absmax ${value}); the model or the data is broken`);
          await writer.write(`${m}.input_absmax`, new Uint8Array(Float32Array.of(value).buffer));
          await writer.write(`${m}.input_channel_absmax`, new Uint8Array(channel.get(m)!.buffer));
          layersWritten++;
          const h = hessian.get(m);
          if (h) {
            const scaled = new Float32Array(h.length);
            const factor = 2 / tokens;
            for (let k = 0; k < h.length; k++) scaled[k] = h[k]! * factor;
            await writer.write(`${m}.hessian`, new Uint8Array(scaled.buffer));
            hessiansWritten++;
          }
        }
      } finally {
        await session.release();
        await fs.rm(graphPath, { force: true });
        await fs.rm(`${graphPath}.data`, { force: true });
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
      samples: samples.length,
      seqLen: options.seqLen,
      tokens,
      layers: layersWritten,
      hessians: hessiansWritten,
      device: device.device,
      seconds,
      tokensPerSecond: tokens / seconds,
    };
  } finally {
    await writer?.abort();
    await fs.rm(work, { recursive: true, force: true });
    await model.checkpoint.close();
  }
}
