/**
 * Built decoder graphs (chat) live in a cache folder the caller chooses (never the model folder), one
 * subfolder per (model folder, graph kind, options). Calibration's block graphs are not cached: the block
 * pipeline (jobs/blockPipeline.ts) writes each one where it runs it and removes it after. A small manifest records the checkpoint files' sizes and
 * modification times and the options; a later build with the same inputs reuses the graph instead of
 * rebuilding it. The manifest is written last, so an interrupted build is never mistaken for a finished one.
 */
import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { DecoderGraphInfo, DecoderGraphOptions, openDecoderModel, writeDecoderGraph, DecoderModel } from './llama/graph';
import { defaultFp8Weights, int4AccuracyLevelFor, int8KernelFor } from './llama/linear';
import { attentionFormFor } from './llama/attention';
import { expertFormFor } from './llama/moe';

const MANIFEST = 'manifest.json';
/** Bump when the graph builder changes in a way that makes old graphs wrong. */
export const GRAPH_FORMAT_VERSION = 1;

interface FileStamp {
  readonly name: string;
  readonly size: number;
  readonly mtimeMs: number;
}

interface Manifest<T> {
  readonly version: number;
  readonly model: string;
  readonly kind: string;
  readonly options: unknown;
  readonly files: readonly FileStamp[];
  readonly info: T;
}

/** Sizes and mtimes of config.json and the weight files: what decides whether a graph is stale. */
async function stampModel(folder: string): Promise<FileStamp[]> {
  const names = (await fs.readdir(folder)).filter((n) => n === 'config.json' || n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json')).sort();
  return Promise.all(
    names.map(async (name) => {
      const stat = await fs.stat(join(folder, name));
      return { name, size: stat.size, mtimeMs: stat.mtimeMs };
    }),
  );
}

function subfolderKey(model: string, kind: string, options: unknown): string {
  return createHash('sha256').update(JSON.stringify({ model, kind, options, version: GRAPH_FORMAT_VERSION })).digest('hex').slice(0, 16);
}

async function readManifest<T>(dir: string): Promise<Manifest<T> | undefined> {
  try {
    return JSON.parse(await fs.readFile(join(dir, MANIFEST), 'utf8')) as Manifest<T>;
  } catch {
    return undefined;
  }
}

async function cached<T>(
  modelFolder: string,
  cacheDir: string,
  kind: string,
  options: unknown,
  build: (dir: string, model: DecoderModel) => Promise<T>,
  /** The model when the caller has it open (a job's); else it is opened here, only when the graph is built. */
  open?: DecoderModel,
): Promise<{ dir: string; info: T; reused: boolean }> {
  const model = resolve(modelFolder);
  if (resolve(cacheDir).startsWith(model + '/') || resolve(cacheDir) === model) {
    throw new Error(`the graph cache ${cacheDir} is inside the model folder ${model}; choose a cache folder elsewhere (the model folder is never written)`);
  }
  const dir = join(resolve(cacheDir), subfolderKey(model, kind, options));
  const files = await stampModel(model);
  const existing = await readManifest<T>(dir);
  if (existing && existing.version === GRAPH_FORMAT_VERSION && JSON.stringify(existing.files) === JSON.stringify(files) && JSON.stringify(existing.options) === JSON.stringify(options)) {
    return { dir, info: existing.info, reused: true };
  }
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  const opened = open ?? (await openDecoderModel(model));
  let info: T;
  try {
    info = await build(dir, opened);
  } catch (error) {
    await fs.rm(dir, { recursive: true, force: true });
    throw error;
  } finally {
    if (opened !== open) await opened.checkpoint.close();
  }
  const manifest: Manifest<T> = { version: GRAPH_FORMAT_VERSION, model, kind, options, files, info };
  await fs.writeFile(join(dir, MANIFEST), JSON.stringify(manifest, null, 1));
  return { dir, info, reused: false };
}

/** Options with the machine-dependent defaults filled in, so the cache key says what was built. */
function resolvedOptions(options: DecoderGraphOptions): Required<Omit<DecoderGraphOptions, 'maxSequenceLength'>> & { maxSequenceLength?: number } {
  return {
    precision: options.precision ?? 'fp32',
    maxSequenceLength: options.maxSequenceLength,
    // The target provider's kernels, never the host CPU's for a GPU graph (linear.ts int8KernelFor).
    int4AccuracyLevel: options.int4AccuracyLevel ?? int4AccuracyLevelFor(options.target ?? 'cpu'),
    int8Kernel: options.int8Kernel ?? int8KernelFor(options.target ?? 'cpu'),
    target: options.target ?? 'cpu',
    fp8Weights: options.fp8Weights ?? defaultFp8Weights(options.target),
    lastTokenLogitsOnly: options.lastTokenLogitsOnly ?? false,
    // WebGPU graphs built before plain-op attention used GroupQueryAttention: the key changes with the form.
    attention: options.attention ?? attentionFormFor(options.target ?? 'cpu'),
    experts: options.experts ?? expertFormFor(options.target ?? 'cpu'),
  };
}

export interface BuiltDecoderGraph {
  readonly modelPath: string;
  readonly dir: string;
  readonly reused: boolean;
  readonly info: DecoderGraphInfo;
}

/** Builds (or reuses) the full decoder graph of the checkpoint in `modelFolder`. */
export async function buildDecoderGraph(modelFolder: string, cacheDir: string, options: DecoderGraphOptions = {}, open?: DecoderModel): Promise<BuiltDecoderGraph> {
  const resolved = resolvedOptions(options);
  const { dir, info, reused } = await cached(modelFolder, cacheDir, 'decoder', resolved, (d, model) => writeDecoderGraph(model, join(d, 'model.onnx'), resolved), open);
  return { modelPath: join(dir, 'model.onnx'), dir, reused, info };
}
