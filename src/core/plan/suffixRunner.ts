/**
 * Runs "the model from block l on" for the sensitivity measurement (sensitivity.ts): block l with one linear
 * layer's weight fed as an input (graph.ts `weightInputs`), then the float blocks l+1 … L−1 and the KL head
 * (graph.ts writeKlHeadGraph), which compares each real token's next-token distribution with the float model's
 * from the cached final hidden states. Only [tokens] KL values leave the head.
 *
 * Sessions: one float session per block, created when first needed and held until close (the model's weights
 * once, in the graph's precision — the suffix of every layer runs through them); the head's session; and one
 * variant session per (block, layer) at a time. Hidden states move from session to session as onnxruntime
 * tensors; padded positions are dropped before the head.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { decodeToFloat32, encodeFromFloat32 } from '../dtypes/convert';
import { DecoderModel, writeBlockGraph, writeKlHeadGraph } from '../runtime/llama/graph';
import { DeviceReport, graphOptionsFor } from '../runtime/device';
import { verifyPlacement } from '../runtime/placement';
import { JobCancelled } from '../jobs/jobErrors';
import { type Ort, createSession, loadOrt } from '../util/ort';

const NO_TAPS = { absmax: false, channelAbsmax: false, hessian: false } as const;

export interface SuffixRunnerOptions {
  readonly model: DecoderModel;
  readonly device: DeviceReport;
  /** Folder for the graphs (created by the caller, removed by the caller). */
  readonly work: string;
  /** Padded sequence length of every sample. */
  readonly maxLength: number;
  readonly masks: readonly BigInt64Array[];
  /** Samples per onnxruntime run through the blocks. */
  readonly samplesPerRun: number;
  /** Tokens per run through the head (its [2·tokens, vocab] logits bound its memory). */
  readonly headTokensPerRun: number;
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
}

export class SuffixRunner {
  private readonly ort = loadOrt();
  private readonly floatSessions = new Map<number, Ort.InferenceSession>();
  private head: Ort.InferenceSession | undefined;
  private placementChecked = false;
  private readonly precision: 'fp32' | 'fp16';
  /** Block runs done (each sample batch through one block counts once): what the benchmark reports. */
  blockRuns = 0;

  constructor(private readonly options: SuffixRunnerOptions) {
    this.precision = graphOptionsFor(options.device.device).precision;
  }

  private checkCancelled(): void {
    if (this.options.signal?.aborted) throw new JobCancelled();
  }

  private async createSession(path: string): Promise<Ort.InferenceSession> {
    if (!this.placementChecked) {
      await verifyPlacement(path, this.options.device, this.options.log ?? (() => undefined));
      this.placementChecked = true;
    }
    // No prepacked weights: the float block sessions and a variant fed the same weight as an input then run the
    // same GEMM, so the only difference between a measurement and the reference is the quantization itself.
    return createSession(path, { executionProviders: this.options.device.executionProviders, disablePrepacking: true });
  }

  private graphOptions(): ReturnType<typeof graphOptionsFor> & { maxSequenceLength: number } {
    return { ...graphOptionsFor(this.options.device.device), maxSequenceLength: this.options.maxLength };
  }

  private async floatSession(l: number): Promise<Ort.InferenceSession> {
    let session = this.floatSessions.get(l);
    if (!session) {
      const path = join(this.options.work, `block-${l}.onnx`);
      await writeBlockGraph(this.options.model, l, path, { ...this.graphOptions(), taps: NO_TAPS });
      session = await this.createSession(path);
      this.floatSessions.set(l, session);
    }
    return session;
  }

  private async headSession(): Promise<Ort.InferenceSession> {
    if (!this.head) {
      const path = join(this.options.work, 'head-kl.onnx');
      await writeKlHeadGraph(this.options.model, path, graphOptionsFor(this.options.device.device));
      this.head = await this.createSession(path);
    }
    return this.head;
  }

  /** A float tensor of the graph's precision from float32 values. */
  private floatTensor(values: Float32Array, dims: readonly number[]): Ort.Tensor {
    return this.precision === 'fp16' ? new this.ort.Tensor('float16', new Uint16Array(encodeFromFloat32('F16', values).buffer), dims) : new this.ort.Tensor('float32', values, dims);
  }

  private toFloat32(tensor: Ort.Tensor): Float32Array {
    return this.precision === 'fp16' ? decodeToFloat32('F16', new Uint8Array((tensor.data as Uint16Array).buffer, (tensor.data as Uint16Array).byteOffset, (tensor.data as Uint16Array).byteLength)) : (tensor.data as Float32Array);
  }

  private batchFeeds(states: readonly Float32Array[], first: number, n: number): { hidden: Ort.Tensor; mask: Ort.Tensor } {
    const L = this.options.maxLength;
    const H = this.options.model.config.hiddenSize;
    const flat = new Float32Array(n * L * H);
    const mask = new BigInt64Array(n * L);
    for (let b = 0; b < n; b++) {
      flat.set(states[first + b]!, b * L * H);
      mask.set(this.options.masks[first + b]!, b * L);
    }
    return { hidden: this.floatTensor(flat, [n, L, H]), mask: new this.ort.Tensor('int64', mask, [n, L]) };
  }

  /** Float block l over all samples (the float pass and the prefix recomputation from a checkpoint). */
  async runFloatBlock(l: number, states: readonly Float32Array[]): Promise<Float32Array[]> {
    const session = await this.floatSession(l);
    const L = this.options.maxLength;
    const H = this.options.model.config.hiddenSize;
    const out: Float32Array[] = [];
    for (let first = 0; first < states.length; first += this.options.samplesPerRun) {
      this.checkCancelled();
      const n = Math.min(this.options.samplesPerRun, states.length - first);
      const { hidden, mask } = this.batchFeeds(states, first, n);
      const result = this.toFloat32((await session.run({ hidden_states: hidden, attention_mask: mask })).block_output!);
      this.blockRuns++;
      for (let b = 0; b < n; b++) out.push(result.slice(b * L * H, (b + 1) * L * H));
    }
    return out;
  }

  /**
   * A session for block `l` with `module`'s weight fed as an input. Its `measure` gives the mean KL over all real
   * tokens of the model with that weight replaced (the rest float) against the float model.
   */
  async variant(l: number, module: string, rows: number, cols: number): Promise<{ measure(weight: Float32Array, inputs: readonly Float32Array[], reference: readonly Float32Array[]): Promise<number>; release(): Promise<void> }> {
    const path = join(this.options.work, `block-${l}-variant.onnx`);
    await writeBlockGraph(this.options.model, l, path, { ...this.graphOptions(), taps: NO_TAPS, weightInputs: [module] });
    const session = await this.createSession(path);
    const c = this.options.model.config;
    // The suffix's sessions exist before the first measurement (created once, held).
    for (let j = l + 1; j < c.numLayers; j++) await this.floatSession(j);
    await this.headSession();
    const measure = async (weight: Float32Array, inputs: readonly Float32Array[], reference: readonly Float32Array[]): Promise<number> => {
      if (weight.length !== rows * cols) throw new Error(`internal: ${module} is [${rows}, ${cols}], given ${weight.length} values`);
      const w = this.floatTensor(weight, [rows, cols]);
      let klSum = 0;
      let tokens = 0;
      for (let first = 0; first < inputs.length; first += this.options.samplesPerRun) {
        this.checkCancelled();
        const n = Math.min(this.options.samplesPerRun, inputs.length - first);
        const { hidden, mask } = this.batchFeeds(inputs, first, n);
        let x = (await session.run({ hidden_states: hidden, attention_mask: mask, [`weight.${module}`]: w })).block_output!;
        this.blockRuns++;
        for (let j = l + 1; j < c.numLayers; j++) {
          this.checkCancelled();
          x = (await this.floatSessions.get(j)!.run({ hidden_states: x, attention_mask: mask })).block_output!;
          this.blockRuns++;
        }
        const sums = await this.headKl(this.toFloat32(x), reference, first, n);
        klSum += sums.kl;
        tokens += sums.tokens;
      }
      return tokens > 0 ? klSum / tokens : 0;
    };
    return {
      measure,
      release: async () => {
        await session.release();
        await fs.rm(path, { force: true });
        await fs.rm(`${path}.data`, { force: true });
      },
    };
  }

  /** Σ KL over the real tokens of samples [first, first + n), whose last hidden states are `states` [n, L, H]. */
  private async headKl(states: Float32Array, reference: readonly Float32Array[], first: number, n: number): Promise<{ kl: number; tokens: number }> {
    const head = await this.headSession();
    const L = this.options.maxLength;
    const H = this.options.model.config.hiddenSize;
    const chunk = this.options.headTokensPerRun;
    const x = new Float32Array(chunk * H);
    const r = new Float32Array(chunk * H);
    let filled = 0;
    let kl = 0;
    let tokens = 0;
    const flush = async () => {
      if (filled === 0) return;
      const out = await head.run({ hidden_states: this.floatTensor(x.slice(0, filled * H), [filled, H]), reference_hidden_states: this.floatTensor(r.slice(0, filled * H), [filled, H]) });
      const values = out.kl!.data as Float32Array;
      for (let t = 0; t < filled; t++) kl += Math.max(0, values[t]!);
      tokens += filled;
      filled = 0;
    };
    for (let b = 0; b < n; b++) {
      const mask = this.options.masks[first + b]!;
      const ref = reference[first + b]!;
      for (let t = 0; t < L; t++) {
        if (mask[t] === 0n) continue;
        x.set(states.subarray((b * L + t) * H, (b * L + t + 1) * H), filled * H);
        r.set(ref.subarray(t * H, (t + 1) * H), filled * H);
        if (++filled === chunk) await flush();
      }
    }
    await flush();
    return { kl, tokens };
  }

  async close(): Promise<void> {
    for (const session of this.floatSessions.values()) await session.release();
    this.floatSessions.clear();
    await this.head?.release();
    this.head = undefined;
  }
}
