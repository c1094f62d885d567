/**
 * Calibration data walked through a decoder block by block, the way llm-compressor's sequential pipeline
 * walks a model: the embeddings of every sample are computed once; each block's graph (runtime/llama/graph.ts
 * writeBlockGraph) turns the hidden states of all samples into the next block's, collecting inside the graph
 * per linear layer the input absmax, the per-channel input absmax and the GPTQ Hessian XᵀX. Used by the
 * calibrate job (statistics file, float propagation) and the one-pass quantize job (sequential.ts), so that
 * both compute exactly the same numbers from the same hidden states.
 *
 * Memory bound: 2 × samples × seq_len × hidden × 4 bytes of hidden states (in and out of the current block)
 * + one block's weights in its graph + one Hessian per distinct layer input of that block (q/k/v share one,
 * gate/up share one; in² × 4 bytes each) — independent of the number of blocks. A mixture-of-experts block
 * holds all its E experts' weights, and E + 3 Hessians: the MLP input's (router and every expert's gate/up)
 * and one per expert's down (expert_intermediate² × 4 bytes each) (docs/runtime.md §9).
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { decodeToFloat32, encodeFromFloat32 } from '../dtypes/convert';
import { DecoderModel, blockModuleNames, embedTokens, writeBlockGraph } from '../runtime/llama/graph';
import { ModelTokenizer } from '../runtime/tokenizer';
import { CalibrationDataset, loadCalibrationDataset } from '../runtime/dataset';
import { DeviceReport, DevicePreference, graphOptionsFor, requireDevice } from '../runtime/device';
import { verifyPlacement } from '../runtime/placement';
import { type Ort, createSession, loadOrt } from '../util/ort';
import { checkCancelled } from './jobErrors';

/**
 * The module whose Hessian a module shares (same input): q/k/v → q_proj, gate/up → gate_proj; in a
 * mixture-of-experts layer the router, every expert's gate and up (w1, w3), the shared expert's gate and up and
 * the shared-expert gate all read the MLP's input → the router (`block_sparse_moe.gate` or `mlp.gate`), so that
 * input's Hessian is computed once per layer, not once per expert. Each expert's down (w2) has its own input.
 */
export function sharedInputOwner(module: string): string {
  return module
    .replace(/\.self_attn\.(k|v)_proj$/, '.self_attn.q_proj')
    .replace(/\.mlp\.up_proj$/, '.mlp.gate_proj')
    .replace(/^(.*\.(?:block_sparse_moe|mlp))\.experts\.\d+\.(?:w1|w3|gate_proj|up_proj)$/, '$1.gate')
    .replace(/^(.*\.mlp)\.(?:shared_expert\.(?:gate_proj|up_proj)|shared_expert_gate)$/, '$1.gate');
}

export interface BlockPipelineOptions {
  /** The model's tokenizer (a job's, loaded once: jobs/openedModel.ts); without it, loaded from the model's folder. */
  readonly tokenizer?: ModelTokenizer;
  readonly dataset: string;
  readonly samples: number;
  readonly seqLen: number;
  readonly device?: DevicePreference;
  /** Where block graphs are written while they are used (a fresh folder inside it; removed by close). */
  readonly graphCacheDir?: string;
  /** Tokens per onnxruntime run (samples are batched up to it). Default 2048. */
  readonly tokensPerRun?: number;
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
}

/** One block's statistics over all samples; Hessians already normalised to 2/n Σ x xᵀ (float32). */
export interface BlockStatistics {
  readonly absmax: ReadonlyMap<string, number>;
  readonly channelAbsmax: ReadonlyMap<string, Float32Array>;
  /** Keyed by the owner of each distinct input (sharedInputOwner). */
  readonly hessians: ReadonlyMap<string, Float32Array>;
}

export interface RunBlockOptions {
  /** Collect statistics (absmax, channel absmax; Hessians of these owners). Without it: outputs only. */
  readonly statistics?: { readonly hessianOwners: readonly string[] };
  /** Keep the block's outputs (the next block's inputs). Default true. */
  readonly outputs?: boolean;
  /** Dequantized [out, in] weights to run instead of the checkpoint's (graph.ts weightOverrides). */
  readonly weights?: ReadonlyMap<string, Float32Array>;
  /** Called after each onnxruntime run with the fraction of this block done. */
  readonly onRun?: (fraction: number) => void;
}

export class BlockPipeline {
  private placementChecked = false;

  private constructor(
    readonly model: DecoderModel,
    readonly dataset: CalibrationDataset,
    readonly device: DeviceReport,
    /** Real (unpadded) tokens over all samples. */
    readonly tokens: number,
    /** Every sample's padded length (right padding to the longest sample). */
    readonly maxLength: number,
    /** Attention mask of every sample (1 = real token), [maxLength] each. */
    readonly masks: readonly BigInt64Array[],
    /** Hidden states of every sample at the input of the next block to run. */
    public hidden: Float32Array[],
    private readonly work: string,
    private readonly options: BlockPipelineOptions,
  ) {}

  /** Tokenizes the dataset, picks the device and computes block 0's inputs (the embeddings). */
  static async open(model: DecoderModel, options: BlockPipelineOptions): Promise<BlockPipeline> {
    const log = options.log ?? (() => undefined);
    const tokenizer = options.tokenizer ?? (await ModelTokenizer.load(model.folder));
    const dataset = await loadCalibrationDataset(options.dataset, tokenizer, { samples: options.samples, seqLen: options.seqLen, signal: options.signal });
    for (const warning of dataset.warnings) log(`warning: ${warning}`);
    const samples = dataset.samples;
    const tokens = samples.reduce((sum, s) => sum + s.tokens, 0);
    const L = Math.max(...samples.map((s) => s.inputIds.length));
    // The device asked for, or DeviceUnavailableError: never the CPU in its place.
    const device = await requireDevice(options.device ?? 'auto');
    log(`calibrating on ${samples.length} samples × ${options.seqLen} tokens (${tokens} tokens) from ${dataset.info.dataset}; ${device.reason}`);
    const hidden: Float32Array[] = [];
    for (const sample of samples) {
      checkCancelled(options.signal);
      const padded = new Int32Array(L);
      padded.set(sample.inputIds);
      hidden.push(await embedTokens(model, padded));
    }
    const masks = samples.map((s) => {
      const m = new BigInt64Array(L);
      for (let t = 0; t < s.attentionMask.length; t++) m[t] = BigInt(s.attentionMask[t]!);
      return m;
    });
    const work = join(options.graphCacheDir ?? tmpdir(), `calibrate-${randomBytes(4).toString('hex')}`);
    await fs.mkdir(work, { recursive: true });
    return new BlockPipeline(model, dataset, device, tokens, L, masks, hidden, work, options);
  }

  /**
   * Runs block `l` over the current hidden states of all samples. Returns its statistics (when asked) and
   * its outputs (when asked); the caller decides whether they become the next block's inputs (`hidden`).
   */
  async runBlock(l: number, options: RunBlockOptions): Promise<{ statistics?: BlockStatistics; outputs?: Float32Array[] }> {
    const ort = loadOrt();
    const c = this.model.config;
    const H = c.hiddenSize;
    const L = this.maxLength;
    const signal = this.options.signal;
    const graphOptions = graphOptionsFor(this.device.device);
    const precision = graphOptions.precision;
    const modules = blockModuleNames(c, l);
    const owners = options.statistics?.hessianOwners ?? [];
    const withStats = options.statistics !== undefined;
    const keepOutputs = options.outputs ?? true;
    const graphPath = join(this.work, `block-${l}${options.weights ? '-quantized' : ''}.onnx`);
    const taps = withStats ? { absmax: true, channelAbsmax: true, hessian: owners } : { absmax: false, channelAbsmax: false, hessian: false };
    const info = await writeBlockGraph(this.model, l, graphPath, { ...graphOptions, taps, maxSequenceLength: L, ...(options.weights ? { weightOverrides: options.weights } : {}) });
    // Every block's graph has the same ops: the first one tells where the sessions run.
    if (!this.placementChecked) {
      await verifyPlacement(graphPath, this.device, this.options.log ?? (() => undefined));
      this.placementChecked = true;
    }
    const session = await createSession(graphPath, { executionProviders: this.device.executionProviders });
    try {
      const absmax = new Map<string, number>(modules.map((m) => [m, 0]));
      const channel = new Map<string, Float32Array>(modules.map((m) => [m, new Float32Array(info.inFeatures[m]!)]));
      const hessian = new Map<string, Float32Array>(owners.map((m) => [m, new Float32Array(info.inFeatures[m]! ** 2)]));
      const count = this.hidden.length;
      const batch = Math.max(1, Math.floor((this.options.tokensPerRun ?? 2048) / L));
      const runs = Math.ceil(count / batch);
      const next: Float32Array[] = [];
      for (let r = 0; r < runs; r++) {
        checkCancelled(signal);
        const first = r * batch;
        const n = Math.min(batch, count - first);
        const states = new Float32Array(n * L * H);
        const mask = new BigInt64Array(n * L);
        for (let b = 0; b < n; b++) {
          states.set(this.hidden[first + b]!, b * L * H);
          mask.set(this.masks[first + b]!, b * L);
        }
        const feeds: Record<string, Ort.Tensor> = {
          hidden_states: precision === 'fp16' ? new ort.Tensor('float16', new Uint16Array(encodeFromFloat32('F16', states).buffer), [n, L, H]) : new ort.Tensor('float32', states, [n, L, H]),
          attention_mask: new ort.Tensor('int64', mask, [n, L]),
        };
        for (const m of owners) feeds[`H_in.${m}`] = new ort.Tensor('float32', hessian.get(m)!, [info.inFeatures[m]!, info.inFeatures[m]!]);
        const out = await session.run(feeds);
        if (keepOutputs) {
          const block = out.block_output!;
          const result = precision === 'fp16' ? decodeToFloat32('F16', new Uint8Array((block.data as Uint16Array).buffer)) : (block.data as Float32Array);
          for (let b = 0; b < n; b++) next.push(result.slice(b * L * H, (b + 1) * L * H));
        }
        if (withStats) {
          for (const m of modules) {
            absmax.set(m, Math.max(absmax.get(m)!, (out[`absmax.${m}`]!.data as Float32Array)[0]!));
            const acc = channel.get(m)!;
            const batchMax = out[`channel_absmax.${m}`]!.data as Float32Array;
            for (let k = 0; k < acc.length; k++) if (batchMax[k]! > acc[k]!) acc[k] = batchMax[k]!;
          }
          for (const m of owners) hessian.set(m, out[`H_out.${m}`]!.data as Float32Array);
        }
        options.onRun?.((r + 1) / runs);
      }
      if (!withStats) return keepOutputs ? { outputs: next } : {};
      for (const m of modules) {
        const value = absmax.get(m)!;
        if (!Number.isFinite(value)) throw new Error(`${m}: the calibration activations contain NaN or Inf (absmax ${value}); the model or the data is broken`);
      }
      // Hessians normalised to 2/n Σ x xᵀ, in float32 (what the statistics file stores).
      const factor = 2 / this.tokens;
      const hessians = new Map<string, Float32Array>();
      for (const [m, h] of hessian) {
        const scaled = new Float32Array(h.length);
        for (let k = 0; k < h.length; k++) scaled[k] = h[k]! * factor;
        hessians.set(m, scaled);
      }
      return { statistics: { absmax, channelAbsmax: channel, hessians }, ...(keepOutputs ? { outputs: next } : {}) };
    } finally {
      await session.release();
      await fs.rm(graphPath, { force: true });
      await fs.rm(`${graphPath}.data`, { force: true });
    }
  }

  /** Removes the graph folder (the model's checkpoint stays open: it belongs to the caller). */
  async close(): Promise<void> {
    this.hidden = [];
    await fs.rm(this.work, { recursive: true, force: true });
  }
}
