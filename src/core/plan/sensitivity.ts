/**
 * Sensitivity of a model's outputs to quantizing each linear layer alone (docs/planning.md): for every linear
 * layer of the decoder blocks and every candidate scheme, the KL divergence of the next-token distribution of
 * the model with that one layer quantized against the float model, averaged over the real calibration tokens;
 * and the GPTQ proxy tr(E H Eᵀ) with E = W − Q(W) and H = XᵀX / n, the layer's input second moment over the
 * same n tokens (the mean squared error the layer adds to its outputs, per token).
 *
 * How it runs, on the job's device (runtime/device.ts):
 *   1. the float model once, block by block from the embeddings, to the last block's outputs: the reference
 *      the KL head compares with (kept for the whole measurement);
 *   2. a walk over the blocks from the embeddings again: block l runs once with the statistics taps (its
 *      Hessians, for GPTQ and the proxy, and its float outputs = block l+1's inputs), then for each layer of
 *      block l and each candidate: the layer's weight is quantized (GPTQ or round-to-nearest, as its recipe will
 *      do it: candidates.ts), dequantized, and block l runs from its cached inputs with that weight, followed
 *      by the float blocks l+1 … L−1 and the KL head (suffixRunner.ts). The prefix 0 … l−1 is never re-run
 *      for a layer: each block's inputs are computed once and serve its 7 × candidates measurements.
 * Cost: two float passes + Σ_l 7 · C · (L − l) block runs (C candidates that quantize): about 7·C·(L+1)/2
 * calibration passes. Memory: 3 × samples × seq_len × hidden × 4 bytes of hidden states (the reference, the
 * current block's inputs and outputs), the model's weights once in the sessions, one block's Hessians.
 *
 * The measurement quantizes weights only: activation quantization (w8a8, fp8) is not simulated, so for those
 * candidates the KL is a lower bound of what the deployed scheme loses (docs/planning.md).
 */
import { promises as fs } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { decodeToFloat32 } from '../dtypes/convert';
import type { DType } from '../dtypes/dtype';
import { DecoderModel, blockModuleNames } from '../runtime/llama/graph';
import type { ModelTokenizer } from '../runtime/tokenizer';
import type { DevicePreference, DeviceKind } from '../runtime/device';
import { QuantizeError, dequantizeRtn, quantizeRtn } from '../quant/rtn';
import { DEFAULT_BLOCK_SIZE, DEFAULT_DAMPENING_FRAC, GptqError, dequantizeGptqResult, quantizeGptq } from '../quant/gptq';
import { quadraticFormsGemm } from '../inspect/outputError';
import { BlockPipeline, sharedInputOwner } from '../jobs/blockPipeline';
import { scaleDtypeOf } from '../jobs/outputLayouts';
import { JobCancelled, checkCancelled } from '../jobs/jobErrors';
import { Candidate, candidateBytes, unservableReason } from './candidates';
import { SuffixRunner } from './suffixRunner';
import { planLayers } from './budget';

export interface SensitivityOptions {
  readonly model: DecoderModel;
  /** The model's tokenizer when the job has it loaded (jobs/openedModel.ts); else read from the model's folder. */
  readonly tokenizer?: ModelTokenizer;
  readonly dataset: string;
  readonly samples: number;
  readonly seqLen: number;
  readonly candidates: readonly Candidate[];
  readonly device?: DevicePreference;
  readonly graphCacheDir?: string;
  /** Tokens per onnxruntime run through the blocks (samples are batched up to it). Default 2048. */
  readonly tokensPerRun?: number;
  /** Limit on the hidden states held (3 × samples × seq_len × hidden × 4 bytes). Default: half the machine's memory. */
  readonly maxHiddenStateBytes?: number;
  /** GPTQ settings of the GPTQ candidates (the recipe writes the same). */
  readonly gptq?: { readonly blockSize?: number; readonly dampeningFrac?: number };
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
  readonly onProgress?: (progress: { fraction: number; stage: string; module?: string }) => void;
  /** Each dequantized weight measured (tests recompute the numbers from it in float64). */
  readonly onWeight?: (module: string, candidate: string, weight: Float32Array) => void;
}

export interface CandidateMeasurement {
  readonly candidate: string;
  /** Bytes the candidate writes for this layer (candidates.ts candidateBytes). */
  readonly bytes: number;
  /** Mean KL(float ‖ quantized) over the calibration tokens, nats; 0 for bf16; absent when unservable. */
  readonly kl?: number;
  /** tr(E H Eᵀ), H = XᵀX / n; absent when unservable. */
  readonly proxy?: number;
  /** Why the candidate cannot serve this layer. */
  readonly unservable?: string;
}

export interface LayerSensitivity {
  readonly module: string;
  readonly block: number;
  readonly rows: number;
  readonly cols: number;
  readonly weightDtype: DType;
  readonly measurements: readonly CandidateMeasurement[];
}

export interface SensitivityReport {
  readonly layers: readonly LayerSensitivity[];
  readonly dataset: string;
  readonly samples: number;
  readonly seqLen: number;
  /** Real (unpadded) calibration tokens the KL is averaged over. */
  readonly tokens: number;
  readonly device: DeviceKind;
  /** Block runs (one sample batch through one block) of the float pass, and of the whole measurement. */
  readonly referenceBlockRuns: number;
  readonly blockRuns: number;
  /**
   * The measurement's float32 noise: the KL it reports for the first layer left unquantized (its own weight fed
   * to the variant graph). KL values near it are rounding, not quantization error.
   */
  readonly floatNoiseKl: number;
  readonly seconds: number;
}

/** The quantized-then-dequantized weight a candidate gives (what its recipe's modifier will write). */
async function quantizedWeight(candidate: Candidate, module: string, weight: Float32Array, rows: number, cols: number, hessian: Float32Array | undefined, weightDtype: DType, options: SensitivityOptions): Promise<Float32Array> {
  const w = candidate.scheme!.weights!;
  const scaleDtype = scaleDtypeOf(weightDtype);
  if (candidate.algorithm === 'gptq') {
    if (!hessian) throw new Error(`internal: no Hessian for ${module}`);
    try {
      const result = await quantizeGptq(weight, rows, cols, hessian, w, {
        module,
        blockSize: options.gptq?.blockSize ?? DEFAULT_BLOCK_SIZE,
        dampeningFrac: options.gptq?.dampeningFrac ?? DEFAULT_DAMPENING_FRAC,
        groupParams: 'upfront',
        scaleDtype,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return dequantizeGptqResult(result);
    } catch (error) {
      if (options.signal?.aborted) throw new JobCancelled();
      if (error instanceof GptqError) throw new QuantizeError(`${module} (${candidate.name}): ${error.message}`);
      throw error;
    }
  }
  try {
    return dequantizeRtn(quantizeRtn(weight, rows, cols, w, { scaleDtype }));
  } catch (error) {
    throw new QuantizeError(`${module} (${candidate.name}): ${(error as Error).message}`);
  }
}

export async function measureSensitivity(options: SensitivityOptions): Promise<SensitivityReport> {
  const started = Date.now();
  const { model, candidates, signal } = options;
  const log = options.log ?? (() => undefined);
  const progress = options.onProgress ?? (() => undefined);
  const c = model.config;
  const pipeline = await BlockPipeline.open(model, {
    ...(options.tokenizer ? { tokenizer: options.tokenizer } : {}),
    dataset: options.dataset,
    samples: options.samples,
    seqLen: options.seqLen,
    ...(options.device ? { device: options.device } : {}),
    ...(options.graphCacheDir ? { graphCacheDir: options.graphCacheDir } : {}),
    ...(options.tokensPerRun ? { tokensPerRun: options.tokensPerRun } : {}),
    ...(signal ? { signal } : {}),
    log,
  });
  const work = join(options.graphCacheDir ?? tmpdir(), `plan-${randomBytes(4).toString('hex')}`);
  let runner: SuffixRunner | undefined;
  try {
    const L = pipeline.maxLength;
    const stateBytes = pipeline.hidden.length * L * c.hiddenSize * 4;
    const limit = options.maxHiddenStateBytes ?? Math.floor(totalmem() / 2);
    if (3 * stateBytes > limit) {
      throw new QuantizeError(`the sensitivity measurement holds 3 sets of hidden states, 3 × ${pipeline.hidden.length} samples × ${L} tokens × ${c.hiddenSize} × 4 bytes = ${3 * stateBytes} bytes, over the limit of ${limit} bytes; use fewer --samples or a shorter --seq-len`);
    }
    await fs.mkdir(work, { recursive: true });
    const samplesPerRun = Math.max(1, Math.floor((options.tokensPerRun ?? 2048) / L));
    // The head's [2·tokens, vocab] float32 logits (and their log-softmax) stay near 256 MiB a run.
    const headTokensPerRun = Math.max(1, Math.min(options.tokensPerRun ?? 2048, Math.floor(2 ** 28 / (2 * 4 * 2 * c.vocabSize))));
    runner = new SuffixRunner({ model, device: pipeline.device, work, maxLength: L, masks: pipeline.masks, samplesPerRun, headTokensPerRun, ...(signal ? { signal } : {}), log });

    const layers = planLayers(model);
    const measured = candidates.filter((cand) => cand.algorithm !== 'keep');
    let totalUnits = 0;
    for (const layer of layers) totalUnits += measured.filter((cand) => !unservableReason(cand, layer.cols)).length * (c.numLayers - layer.block);
    totalUnits += 2 * c.numLayers; // the two float passes
    let doneUnits = 0;
    const report = (stage: string, module?: string) => progress({ fraction: Math.min(1, doneUnits / totalUnits), stage, ...(module ? { module } : {}) });

    // 1. The float model's last hidden states: the reference of every KL.
    let states = pipeline.hidden;
    for (let l = 0; l < c.numLayers; l++) {
      report(`reference: block ${l + 1}/${c.numLayers}`, `model.layers.${l}`);
      states = await runner.runFloatBlock(l, states);
      doneUnits++;
    }
    const reference = states;
    const referenceBlockRuns = runner.blockRuns;

    // 2. The walk: each block's inputs once, every layer × candidate of the block from them.
    const results: LayerSensitivity[] = [];
    let inputs = pipeline.hidden;
    let floatNoiseKl = NaN;
    for (let l = 0; l < c.numLayers; l++) {
      checkCancelled(signal);
      const modules = blockModuleNames(c, l);
      const owners = modules.filter((m) => sharedInputOwner(m) === m);
      report(`block ${l + 1}/${c.numLayers}: statistics`, `model.layers.${l}`);
      pipeline.hidden = inputs;
      const { statistics, outputs } = await pipeline.runBlock(l, { statistics: { hessianOwners: owners }, outputs: true });
      doneUnits++;
      for (const layer of layers.filter((x) => x.block === l)) {
        const { module, rows, cols, weightDtype } = layer;
        // Normalised 2/n XᵀX (blockPipeline.ts): GPTQ takes it as it is; the proxy's H = XᵀX / n is half of it.
        const hessian = statistics!.hessians.get(sharedInputOwner(module));
        const weight = decodeToFloat32(weightDtype, await model.checkpoint.readTensorBytes(`${module}.weight`, { maxBytes: 2 ** 31 }));
        const measurements: CandidateMeasurement[] = [];
        let variant: Awaited<ReturnType<SuffixRunner['variant']>> | undefined;
        try {
          for (const candidate of candidates) {
            const bytes = candidateBytes(candidate, module, rows, cols, weightDtype);
            const unservable = unservableReason(candidate, cols);
            if (unservable) {
              measurements.push({ candidate: candidate.name, bytes, unservable });
              continue;
            }
            if (candidate.algorithm === 'keep') {
              measurements.push({ candidate: candidate.name, bytes, kl: 0, proxy: 0 });
              continue;
            }
            report(`block ${l + 1}/${c.numLayers}: ${candidate.name}`, module);
            const q = await quantizedWeight(candidate, module, weight, rows, cols, hessian, weightDtype, options);
            options.onWeight?.(module, candidate.name, q);
            const proxy = hessian ? (await quadraticFormsGemm(weight, q, rows, cols, hessian)).error / 2 : NaN;
            variant ??= await runner.variant(l, module, rows, cols);
            if (Number.isNaN(floatNoiseKl)) floatNoiseKl = await variant.measure(weight, inputs, reference);
            const kl = await variant.measure(q, inputs, reference);
            doneUnits += c.numLayers - l;
            measurements.push({ candidate: candidate.name, bytes, kl, proxy });
          }
        } finally {
          await variant?.release();
        }
        results.push({ ...layer, measurements });
      }
      inputs = outputs!;
    }
    progress({ fraction: 1, stage: 'measured' });
    return {
      layers: results,
      dataset: pipeline.dataset.info.dataset,
      samples: pipeline.dataset.samples.length,
      seqLen: options.seqLen,
      tokens: pipeline.tokens,
      device: pipeline.device.device,
      referenceBlockRuns,
      blockRuns: runner.blockRuns + c.numLayers * Math.ceil(pipeline.hidden.length / samplesPerRun),
      floatNoiseKl,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await runner?.close();
    await pipeline.close();
    await fs.rm(work, { recursive: true, force: true });
  }
}
