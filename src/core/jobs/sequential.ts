/**
 * One-pass calibration for the quantize job: the statistics of each decoder block are computed just before
 * its layers are quantized, from hidden states that went through the blocks before it — with their
 * *quantized* weights by default (the dequantized values of exactly what the job wrote), as llm-compressor's
 * sequential pipeline does (each layer sees the outputs of the already-quantized layers before it), or with
 * their float weights (`propagation: 'float'`: the numbers of the two-pass calibrate-then-quantize job).
 *
 * Per block l, driven by the quantize job (quantize.ts) as it reaches block l's first layer:
 *   1. run block l's graph on the current hidden states, collecting input absmax, per-channel absmax and the
 *      Hessians inside the graph (blockPipeline.ts, the code the calibrate job runs);
 *   2. the job quantizes block l's layers from these statistics and writes them (the streamed writer),
 *      handing back each layer's dequantized written weight (`written`);
 *   3. when the job moves on to block l+1, block l's outputs are recomputed with those weights (float mode:
 *      the outputs of step 1 are kept instead) and become block l+1's inputs.
 * With Hessians, step 2 also measures each layer's output error ‖(W − Q)X‖ / ‖WX‖ = sqrt(tr(E H Eᵀ) / tr(W H Wᵀ))
 * on the calibration tokens from H, the original W and the written Q (inspect/outputError.ts), for quantlens.json.
 * No statistics file is written. Memory: the hidden states of all samples twice (a block's input and output)
 * + one block's graph and Hessians + the block's dequantized written weights (float32).
 */
import type { DecoderModel } from '../runtime/llama/graph';
import { blockModuleNames, blockModules } from '../runtime/llama/graph';
import { calibrationMetadata } from '../runtime/dataset';
import { layerOutputError } from '../inspect/outputError';
import { BlockPipeline, BlockPipelineOptions, BlockStatistics, sharedInputOwner } from './blockPipeline';

export const PROPAGATIONS = ['quantized', 'float'] as const;
/** Which weights carry the hidden states from one block to the next during calibration. */
export type Propagation = (typeof PROPAGATIONS)[number];

/** What the quantize job needs from statistics computed block by block (quantize.ts). */
export interface BlockwiseCalibration {
  /** The decoder block a module belongs to, or undefined (lm_head: no statistics). */
  blockOf(module: string): number | undefined;
  /** Whether the job must hand back the dequantized weights it writes (quantized propagation, output error). */
  readonly wantsWrittenWeights: boolean;
  /** Makes block `l`'s statistics current. Blocks are entered in increasing order. */
  enterBlock(l: number): Promise<void>;
  /** The dequantized [out, in] weight of what was written for `module` (a layer of the current block), and its original. */
  written(module: string, weight: Float32Array, original: Float32Array): Promise<void>;
  /** ‖(W − Q)X‖ / ‖WX‖ on the calibration tokens of each layer written with a Hessian (recorded in quantlens.json). */
  readonly outputErrors: ReadonlyMap<string, { relative: number; sqnrDb: number }>;
}

export interface SequentialCalibrationOptions extends BlockPipelineOptions {
  readonly propagation: Propagation;
  /** Collect Hessians (GPTQ layers). */
  readonly hessians: boolean;
  /** Each block's statistics as they are computed (tests compare them with a reference). */
  readonly onBlockStatistics?: (block: number, statistics: BlockStatistics) => void;
  /** Progress within the pipeline's own work (stage and module). */
  readonly onStage?: (stage: string, module: string) => void;
}

export class SequentialCalibration implements BlockwiseCalibration {
  /** The block whose statistics are current (entered), if any. */
  private current: number | undefined;
  /** The block whose inputs `pipeline.hidden` holds. */
  private inputsOf = 0;
  private statistics: BlockStatistics | undefined;
  private floatOutputs: Float32Array[] | undefined;
  private writtenWeights = new Map<string, Float32Array>();
  private readonly blocks = new Map<string, number>();
  /** Linear layers with statistics, and Hessians computed (one per distinct input), so far. */
  layersCalibrated = 0;
  hessiansComputed = 0;
  readonly outputErrors = new Map<string, { relative: number; sqnrDb: number }>();
  private readonly inFeatures = new Map<string, number>();

  private constructor(
    private readonly pipeline: BlockPipeline,
    private readonly options: SequentialCalibrationOptions,
  ) {
    const c = pipeline.model.config;
    for (let l = 0; l < c.numLayers; l++) {
      for (const m of blockModules(c, l)) {
        this.blocks.set(m.name, l);
        this.inFeatures.set(m.name, m.in);
      }
    }
  }

  /** Tokenizes the dataset and computes the embeddings (block 0's inputs). The model stays the caller's. */
  static async open(model: DecoderModel, options: SequentialCalibrationOptions): Promise<SequentialCalibration> {
    return new SequentialCalibration(await BlockPipeline.open(model, options), options);
  }

  /** The quantize job drives this calibration block by block (quantize.ts CalibrationStatistics.blockwise). */
  get blockwise(): BlockwiseCalibration {
    return this;
  }

  /** The dataset file, watched by the job for changes. */
  get inputFiles(): readonly string[] {
    return [this.options.dataset];
  }

  /** What a statistics file of this calibration would carry as metadata (recorded in quantlens.json). */
  get metadata(): Record<string, string> {
    const info = this.pipeline.dataset.info;
    return { ...Object.fromEntries(Object.entries(calibrationMetadata(info)).map(([k, v]) => [k, String(v)])), sha256: info.sha256, propagation: this.options.propagation };
  }

  get wantsWrittenWeights(): boolean {
    return this.options.propagation === 'quantized' || this.options.hessians;
  }

  get tokens(): number {
    return this.pipeline.tokens;
  }

  get device(): BlockPipeline['device'] {
    return this.pipeline.device;
  }

  get dataset(): BlockPipeline['dataset'] {
    return this.pipeline.dataset;
  }

  blockOf(module: string): number | undefined {
    return this.blocks.get(module);
  }

  inputAbsMax(module: string): number | undefined {
    return this.statistics?.absmax.get(module);
  }

  hessianShape(module: string): readonly number[] | undefined {
    const K = this.inFeatures.get(module);
    return this.options.hessians && K !== undefined ? [K, K] : undefined;
  }

  async hessian(module: string): Promise<Float32Array | undefined> {
    if (this.blocks.get(module) !== this.current) throw new Error(`internal: the Hessian of ${module} was asked for while block ${this.current} is current`);
    return this.statistics?.hessians.get(sharedInputOwner(module));
  }

  async written(module: string, weight: Float32Array, original: Float32Array): Promise<void> {
    if (this.blocks.get(module) !== this.current) throw new Error(`internal: ${module} was written while block ${this.current} is current`);
    if (this.options.propagation === 'quantized') this.writtenWeights.set(module, weight);
    // The output error GPTQ minimises, on the inputs this layer was quantized for (the Error tab shows it).
    const h = this.statistics?.hessians.get(sharedInputOwner(module));
    const cols = this.inFeatures.get(module)!;
    if (h && h.length === cols * cols) this.outputErrors.set(module, await layerOutputError(original, weight, weight.length / cols, cols, h));
  }

  async enterBlock(l: number): Promise<void> {
    if (this.current !== undefined && l <= this.current) throw new Error(`internal: block ${l} entered after block ${this.current} (blocks go in increasing order)`);
    const c = this.pipeline.model.config;
    if (this.current !== undefined) {
      // The finished block's outputs become the next one's inputs.
      const done = this.current;
      if (this.options.propagation === 'quantized') {
        this.options.onStage?.(`block ${done + 1}/${c.numLayers}: outputs with quantized weights`, `model.layers.${done}`);
        this.pipeline.hidden = (await this.pipeline.runBlock(done, { weights: this.writtenWeights })).outputs!;
      } else {
        this.pipeline.hidden = this.floatOutputs!;
      }
      this.floatOutputs = undefined;
      this.writtenWeights = new Map();
      this.inputsOf = done + 1;
    }
    this.statistics = undefined;
    // Blocks with no layer to quantize pass their inputs on through their (float) weights.
    for (; this.inputsOf < l; this.inputsOf++) {
      this.options.onStage?.(`block ${this.inputsOf + 1}/${c.numLayers}: outputs`, `model.layers.${this.inputsOf}`);
      this.pipeline.hidden = (await this.pipeline.runBlock(this.inputsOf, {})).outputs!;
    }
    this.options.onStage?.(`block ${l + 1}/${c.numLayers}: calibrate`, `model.layers.${l}`);
    const owners = this.options.hessians ? blockModuleNames(c, l).filter((m) => sharedInputOwner(m) === m) : [];
    const float = this.options.propagation === 'float';
    const result = await this.pipeline.runBlock(l, { statistics: { hessianOwners: owners }, outputs: float });
    this.statistics = result.statistics!;
    this.layersCalibrated += this.statistics.absmax.size;
    this.hessiansComputed += this.statistics.hessians.size;
    this.floatOutputs = result.outputs;
    this.current = l;
    this.options.onBlockStatistics?.(l, this.statistics);
  }

  close(): Promise<void> {
    this.statistics = undefined;
    this.floatOutputs = undefined;
    this.writtenWeights = new Map();
    return this.pipeline.close();
  }
}
