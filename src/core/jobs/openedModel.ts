/**
 * A job's model, opened once when the job starts and handed down to every stage: the pre-flight check,
 * calibration (the block pipeline), quantization, the recipe's resolution and planning. It holds config.json
 * (parsed once: raw and summary), the open checkpoint (headers and index read once; its file handles), the
 * layer map built once, and what the stages derive from them on first use: the recipe's view of the layers,
 * the decoder model of the graph builder and the tokenizer. `close()` is the one place its file handles are
 * released; runJob calls it after success, failure and cancellation alike.
 *
 * Stages that are also run on their own (tests, the extension's quick picks, the CLI's validate) take a folder
 * or an OpenedModel: `withOpenedModel` opens one for a folder and closes it again, and leaves a given one open
 * (its owner closes it).
 */
import { ModelConfigResult, readModelConfig } from '../checkpoint/config';
import type { LayerMap } from '../checkpoint/scheme';
import { modelLayerMap } from '../checkpoint/summary';
import { modelLayersOf } from '../recipe/model';
import type { ModelLayers } from '../recipe/types';
import { DecoderModel, decoderModelOf } from '../runtime/llama/graph';
import { ModelTokenizer } from '../runtime/tokenizer';
import { Checkpoint } from '../safetensors/checkpoint';

export class OpenedModel {
  private modelLayers: ModelLayers | undefined;
  private decoderModel: DecoderModel | undefined;
  private tokenizerLoad: Promise<ModelTokenizer> | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    /** The folder as the job names it (messages name it so). */
    readonly path: string,
    /** config.json: `raw` and `summary` when present and valid, else why not (`error`); never read again. */
    readonly config: ModelConfigResult,
    readonly checkpoint: Checkpoint,
    readonly layerMap: LayerMap,
  ) {}

  /** Opens the checkpoint at `path` (headers only) and reads its config.json; throws the checkpoint's error. */
  static async open(path: string): Promise<OpenedModel> {
    const checkpoint = await Checkpoint.open(path);
    try {
      const config = await readModelConfig(checkpoint.folder);
      return new OpenedModel(path, config, checkpoint, modelLayerMap(checkpoint, config));
    } catch (error) {
      await checkpoint.close();
      throw error;
    }
  }

  /** The absolute folder of the checkpoint. */
  get folder(): string {
    return this.checkpoint.folder;
  }

  /** The layers and modules a recipe is resolved against (recipe/model.ts). */
  get layers(): ModelLayers {
    this.modelLayers ??= modelLayersOf(this.checkpoint, this.config, this.layerMap);
    return this.modelLayers;
  }

  /**
   * The decoder the graph builder and the block pipeline run (runtime/llama/graph.ts), over this checkpoint;
   * throws what openDecoderModel throws for a config.json or checkpoint it cannot run.
   */
  decoder(): DecoderModel {
    this.decoderModel ??= decoderModelOf(this.path, this.config, this.checkpoint, this.layerMap);
    return this.decoderModel;
  }

  /** The model's tokenizer, loaded on first use and then shared (a failed load is not retried). */
  tokenizer(): Promise<ModelTokenizer> {
    this.tokenizerLoad ??= ModelTokenizer.load(this.path);
    return this.tokenizerLoad;
  }

  /** Releases the checkpoint's file handles; later calls wait for the first. */
  close(): Promise<void> {
    this.closing ??= this.checkpoint.close();
    return this.closing;
  }
}

/** Runs `use` with `model` opened: a folder is opened for it and closed after; an OpenedModel stays its owner's. */
export async function withOpenedModel<T>(model: string | OpenedModel, use: (opened: OpenedModel) => Promise<T>): Promise<T> {
  if (model instanceof OpenedModel) return use(model);
  const opened = await OpenedModel.open(model);
  try {
    return await use(opened);
  } finally {
    await opened.close();
  }
}
