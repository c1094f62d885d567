/**
 * The quantize job: reads a float checkpoint layer by layer and writes a compressed-tensors checkpoint
 * (float-quantized, int-quantized or pack-quantized) that vLLM loads, with config.json's
 * quantization_config, recipe.yaml, and the tokenizer/generation files copied.
 *
 * Safety: the output is built in a temporary sibling folder and renamed to its final name only when
 * complete; inputs are only ever read; a cancelled or failed job removes the temporary folder, and a killed
 * one leaves it under a `.partial` name, never under the final name.
 *
 * Memory: one linear layer at a time. Channel- and group-wise schemes stream a layer in row blocks; tensor-
 * wise schemes (one scale for the whole weight) hold one layer's weight as float32. The bound is
 * max(out × in) × 4 bytes + the encoded outputs of that layer, independent of the model's size.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { decodeToFloat32, encodeFromFloat32 } from '../dtypes/convert';
import type { DType } from '../dtypes/dtype';
import { Checkpoint } from '../safetensors/checkpoint';
import { SafetensorsWriter, TensorSpec, tensorByteLength } from '../safetensors/writer';
import { planShards, shardFileName, writeShardIndex } from '../safetensors/shards';
import { readModelConfig } from '../checkpoint/config';
import { buildLayerMap } from '../checkpoint/scheme';
import { QuantArgs, QuantScheme, inferFormat, presetScheme } from '../quant/args';
import { compilePattern, resolveModule } from '../quant/match';
import { QuantizeError, RtnResult, ScaleDtype, quantizeRtn } from '../quant/rtn';
import { packToInt32, packedShape } from '../quant/pack';

export const SCHEME_PRESETS = {
  fp8: { preset: 'FP8', description: 'FP8 E4M3 weights and activations, per-tensor static scales (needs activation statistics)' },
  'fp8-dynamic': { preset: 'FP8_DYNAMIC', description: 'FP8 E4M3 weights per channel, FP8 activations per token (dynamic)' },
  w8a8: { preset: 'W8A8', description: 'INT8 weights per channel, INT8 activations per token (dynamic)' },
  w4a16: { preset: 'W4A16', description: 'INT4 weights, group 128, GPTQ with act-order (needs Hessians)' },
  'w4a16-rtn': { preset: 'W4A16', description: 'INT4 weights, group 128, round to nearest' },
} as const;
export type SchemeName = keyof typeof SCHEME_PRESETS;

/** Calibration statistics the job consumes (the runtime computes them; tests hand them in directly). */
export interface CalibrationStatistics {
  /** max |x| over all calibration tokens of a Linear's input (static activation scales). */
  inputAbsMax(module: string): number | undefined;
  /** Hessian 2/n Σ x xᵀ of a Linear's input, [in, in] row-major (GPTQ). */
  hessian?(module: string): Promise<Float32Array | Float64Array | undefined>;
}

export interface QuantizeJobOptions {
  readonly model: string;
  readonly out: string;
  readonly scheme: SchemeName;
  /** Modules kept in full precision (names or re: patterns). Default: lm_head. */
  readonly ignore?: readonly string[];
  readonly calibration?: CalibrationStatistics;
  readonly maxShardBytes?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: { fraction: number; stage: string; module?: string }) => void;
  readonly log?: (line: string) => void;
}

export interface QuantizeSummary {
  readonly out: string;
  readonly scheme: SchemeName;
  readonly format: string;
  readonly quantizedLayers: number;
  readonly ignoredLayers: readonly string[];
  readonly inputBytes: number;
  readonly outputBytes: number;
  readonly shards: number;
  readonly seconds: number;
}

export class JobCancelled extends Error {
  constructor() {
    super('cancelled');
  }
}

const MODEL_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'tokenizer.model', 'chat_template.jinja', 'chat_template.json', 'vocab.json', 'merges.txt', 'added_tokens.json'];
const ROW_BLOCK_BYTES = 32 * 1024 * 1024;

interface PlannedLayer {
  readonly module: string;
  readonly rows: number;
  readonly cols: number;
  readonly weight: string;
  readonly weightDtype: DType;
  readonly scheme: QuantScheme;
  readonly outputs: TensorSpec[];
}

/** The model dtype scales are stored in (compressed-tensors creates scales in the weight's dtype). */
function scaleDtypeOf(dtype: DType): ScaleDtype {
  return dtype === 'F16' ? 'F16' : dtype === 'F32' ? 'F32' : 'BF16';
}

export function outputSpecs(module: string, rows: number, cols: number, weightDtype: DType, scheme: QuantScheme, format: string): TensorSpec[] {
  const w = scheme.weights!;
  const scaleDtype = scaleDtypeOf(weightDtype);
  const scaleShape = w.strategy === 'tensor' ? [1] : w.strategy === 'channel' ? [rows, 1] : w.strategy === 'group' ? [rows, cols / w.groupSize!] : [Math.ceil(rows / w.blockStructure![0]), Math.ceil(cols / w.blockStructure![1])];
  const specs: TensorSpec[] = [];
  if (format === 'pack-quantized') {
    specs.push({ name: `${module}.weight_packed`, dtype: 'I32', shape: packedShape(rows, cols, w.numBits, 1) });
    specs.push({ name: `${module}.weight_scale`, dtype: scaleDtype, shape: scaleShape });
    if (!w.symmetric && w.strategy !== 'tensor') specs.push({ name: `${module}.weight_zero_point`, dtype: 'I32', shape: packedShape(scaleShape[0]!, scaleShape[1]!, w.numBits, 0) });
    specs.push({ name: `${module}.weight_shape`, dtype: 'I64', shape: [2] });
  } else {
    specs.push({ name: `${module}.weight`, dtype: w.type === 'float' ? 'F8_E4M3' : 'I8', shape: [rows, cols] });
    specs.push({ name: `${module}.weight_scale`, dtype: scaleDtype, shape: scaleShape });
    if (!w.symmetric) specs.push({ name: `${module}.weight_zero_point`, dtype: w.type === 'float' ? 'F8_E4M3' : 'I8', shape: scaleShape });
  }
  const a = scheme.inputActivations;
  if (a && !a.dynamic) {
    specs.push({ name: `${module}.input_scale`, dtype: scaleDtype, shape: [1] });
    if (!a.symmetric) specs.push({ name: `${module}.input_zero_point`, dtype: 'I8', shape: [1] });
  }
  return specs;
}

/** compressed-tensors' JSON form of QuantizationArgs (keys sorted, as the writer serialises them). */
export function serializeArgs(args: QuantArgs | undefined): Record<string, unknown> | null {
  if (!args) return null;
  const out: Record<string, unknown> = {
    actorder: args.actorder ?? null,
    block_structure: args.blockStructure ?? null,
    dynamic: args.dynamic,
    group_size: args.groupSize ?? null,
    num_bits: args.numBits,
    observer: args.dynamic === true ? null : (args.observer ?? 'memoryless_minmax'),
    observer_kwargs: {},
    scale_dtype: args.scaleDtype ?? null,
    strategy: args.strategy,
    symmetric: args.symmetric,
    type: args.type,
    zp_dtype: args.symmetric ? null : (args.zpDtype ?? (args.type === 'float' ? 'float8_e4m3fn' : 'int8')),
  };
  return out;
}

export function quantizationConfig(scheme: QuantScheme, format: string, ignore: readonly string[]): Record<string, unknown> {
  return {
    config_groups: {
      group_0: {
        format,
        input_activations: serializeArgs(scheme.inputActivations),
        output_activations: null,
        targets: [...scheme.targets],
        weights: serializeArgs(scheme.weights),
      },
    },
    format,
    global_compression_ratio: null,
    ignore: [...ignore],
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    sparsity_config: {},
    transform_config: {},
    version: '0.12.2',
  };
}

/** The recipe llm-compressor would save beside the checkpoint for this job. */
export function recipeYaml(preset: string, ignore: readonly string[], algorithm: 'rtn' | 'gptq'): string {
  const modifier = algorithm === 'gptq' ? 'GPTQModifier' : 'QuantizationModifier';
  const extra = algorithm === 'gptq' ? '      actorder: static\n      block_size: 128\n      dampening_frac: 0.1\n' : '';
  return `default_stage:\n  default_modifiers:\n    ${modifier}:\n${extra}      targets: [Linear]\n      ignore: [${ignore.map((i) => JSON.stringify(i)).join(', ')}]\n      scheme: ${preset}\n`;
}

function checkCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new JobCancelled();
}

export async function runQuantizeJob(options: QuantizeJobOptions): Promise<QuantizeSummary> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const { preset } = SCHEME_PRESETS[options.scheme];
  if (options.scheme === 'w4a16') {
    if (!options.calibration?.hessian) throw new QuantizeError('w4a16 runs GPTQ, which needs calibration Hessians; run it with calibration data, or use w4a16-rtn for round-to-nearest');
  }
  const scheme = presetScheme(preset)!;
  if (scheme.inputActivations && !scheme.inputActivations.dynamic && !options.calibration) {
    throw new QuantizeError(`${options.scheme} has static activation scales, which need calibration statistics (input absmax per layer); use fp8-dynamic, or run with calibration data`);
  }
  const format = inferFormat(scheme);
  const ignore = options.ignore ?? ['lm_head'];
  const out = resolve(options.out);
  const model = resolve(options.model);
  if (out === model) throw new QuantizeError('the output folder must differ from the model folder (inputs are never modified)');
  try {
    await fs.access(out);
    throw new QuantizeError(`${out} already exists; choose a new output folder (QuantLens never overwrites)`);
  } catch (error) {
    if (error instanceof QuantizeError) throw error;
  }

  const checkpoint = await Checkpoint.open(model);
  const temp = join(dirname(out), `.${basename(out)}.${randomBytes(4).toString('hex')}.partial`);
  try {
    const config = await readModelConfig(checkpoint.folder);
    if (!config.raw) throw new QuantizeError(`${join(checkpoint.folder, 'config.json')} is missing or invalid${config.error ? `: ${config.error}` : ''}`);
    if (config.summary?.quantMethod) throw new QuantizeError(`the model is already quantized (quant_method ${config.summary.quantMethod}); start from the float checkpoint`);
    const errors = checkpoint.problems.filter((p) => p.severity === 'error');
    if (errors.length) throw new QuantizeError(`the input checkpoint has problems: ${errors.map((p) => p.message).join('; ')}`);

    // Which linear layers get the scheme.
    const layerMap = buildLayerMap(checkpoint.tensors, undefined, { hasConfig: true });
    const targets = [{ name: 'group_0', targets: scheme.targets.map((t) => compilePattern(t)) }];
    const ignorePatterns = ignore.map((i) => compilePattern(i));
    const planned = new Map<string, PlannedLayer>();
    const ignored: string[] = [];
    const problems: string[] = [];
    for (const module of layerMap.modules) {
      if (module.state !== 'unquantized' || !module.observed?.shape) continue;
      const resolution = resolveModule(module.name, 'Linear', targets, ignorePatterns);
      if (!resolution.group) {
        ignored.push(module.name);
        continue;
      }
      const [rows, cols] = module.observed.shape;
      const w = scheme.weights!;
      if (w.strategy === 'group' && cols % w.groupSize! !== 0) problems.push(`${module.name}: input features ${cols} are not divisible by group_size ${w.groupSize}`);
      if (scheme.inputActivations && !scheme.inputActivations.dynamic && options.calibration?.inputAbsMax(module.name) === undefined) problems.push(`${module.name}: no calibration input statistics`);
      const weight = `${module.name}.weight`;
      const weightDtype = checkpoint.tensor(weight).dtype;
      planned.set(weight, { module: module.name, rows, cols, weight, weightDtype, scheme, outputs: outputSpecs(module.name, rows, cols, weightDtype, scheme, format) });
    }
    if (problems.length) throw new QuantizeError(`pre-flight check failed:\n  ${problems.join('\n  ')}`);
    if (planned.size === 0) throw new QuantizeError('no linear layer to quantize (all are ignored or not floating point)');

    // Output tensors in input order, each quantized weight replaced by its encoded set.
    const specs: (TensorSpec & { source: string; layer?: PlannedLayer })[] = [];
    for (const tensor of checkpoint.tensors) {
      const layer = planned.get(tensor.name);
      if (layer) for (const spec of layer.outputs) specs.push({ ...spec, source: tensor.name, layer });
      else specs.push({ name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, source: tensor.name });
    }
    const outputBytes = specs.reduce((sum, s) => sum + tensorByteLength(s), 0);
    // Disk: the output plus a margin must fit where it is written.
    const stat = await fs.statfs(dirname(out)).catch(() => undefined);
    if (stat && stat.bavail * stat.bsize < outputBytes * 1.05) {
      throw new QuantizeError(`not enough disk space in ${dirname(out)}: ${outputBytes} bytes needed, ${stat.bavail * stat.bsize} available`);
    }
    // Keep a layer's tensors together in one shard (vLLM resolves through the index either way).
    const groups: (typeof specs)[] = [];
    for (const spec of specs) {
      const last = groups.at(-1);
      if (last && spec.layer && last[0]!.layer === spec.layer) last.push(spec);
      else groups.push([spec]);
    }
    const maxShard = options.maxShardBytes ?? 5_000_000_000;
    const shardGroups = planShards(
      groups.map((g, i) => ({ name: String(i), dtype: 'U8' as const, shape: [g.reduce((sum, s) => sum + tensorByteLength(s), 0)] })),
      maxShard,
    ).map((shard) => shard.flatMap((g) => groups[Number(g.name)]!));

    await fs.mkdir(temp, { recursive: false });
    log(`quantizing ${planned.size} layers to ${options.scheme} (${format}); ${ignored.length} kept in full precision: ${ignored.join(', ') || 'none'}`);
    const weightMap = new Map<string, string>();
    const totalInput = checkpoint.totalBytes;
    let processed = 0;
    for (let s = 0; s < shardGroups.length; s++) {
      const name = shardFileName(s, shardGroups.length);
      const shardSpecs = shardGroups[s]!;
      const writer = await SafetensorsWriter.create(join(temp, name), shardSpecs, { metadata: { format: 'pt' }, order: 'given' });
      try {
        let i = 0;
        while (i < shardSpecs.length) {
          checkCancelled(options.signal);
          const spec = shardSpecs[i]!;
          if (spec.layer) {
            options.onProgress?.({ fraction: processed / totalInput, stage: 'quantize', module: spec.layer.module });
            await quantizeLayer(checkpoint, spec.layer, format, writer, options);
            i += spec.layer.outputs.length;
            processed += checkpoint.tensor(spec.layer.weight).byteLength;
          } else {
            for await (const { bytes } of checkpoint.chunks(spec.source)) {
              checkCancelled(options.signal);
              await writer.write(spec.name, bytes);
            }
            processed += tensorByteLength(spec);
            i++;
          }
          options.onProgress?.({ fraction: processed / totalInput, stage: 'quantize' });
        }
        await writer.finish();
      } catch (error) {
        await writer.abort();
        throw error;
      }
      for (const spec of shardSpecs) weightMap.set(spec.name, name);
    }
    if (shardGroups.length > 1) await writeShardIndex(temp, weightMap, outputBytes);

    const configJson = { ...config.raw, quantization_config: quantizationConfig(scheme, format, ignore) };
    await fs.writeFile(join(temp, 'config.json'), `${JSON.stringify(configJson, null, 2)}\n`);
    await fs.writeFile(join(temp, 'recipe.yaml'), recipeYaml(preset, ignore, options.scheme === 'w4a16' ? 'gptq' : 'rtn'));
    for (const file of MODEL_FILES) {
      await fs.copyFile(join(checkpoint.folder, file), join(temp, file)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    }
    checkCancelled(options.signal);
    await fs.rename(temp, out);
    options.onProgress?.({ fraction: 1, stage: 'done' });
    return {
      out,
      scheme: options.scheme,
      format,
      quantizedLayers: planned.size,
      ignoredLayers: ignored,
      inputBytes: totalInput,
      outputBytes,
      shards: shardGroups.length,
      seconds: (Date.now() - started) / 1000,
    };
  } catch (error) {
    await fs.rm(temp, { recursive: true, force: true });
    throw error;
  } finally {
    await checkpoint.close();
  }
}

/** Reads rows [r0, r1) of a 2-D float weight as float32. */
async function readRows(checkpoint: Checkpoint, name: string, cols: number, r0: number, r1: number, dtype: DType): Promise<Float32Array> {
  const bytesPerElement = dtype === 'F32' ? 4 : dtype === 'F64' ? 8 : 2;
  const bytes = await checkpoint.readTensorRange(name, r0 * cols * bytesPerElement, r1 * cols * bytesPerElement);
  return decodeToFloat32(dtype, bytes);
}

function scaleBytes(result: RtnResult, dtype: DType): Uint8Array {
  return encodeFromFloat32(dtype, result.scale);
}

async function quantizeLayer(checkpoint: Checkpoint, layer: PlannedLayer, format: string, writer: SafetensorsWriter, options: QuantizeJobOptions): Promise<void> {
  const { rows, cols, scheme } = layer;
  const w = scheme.weights!;
  const scaleDtype = scaleDtypeOf(layer.weightDtype);
  const [weightSpec, scaleSpec, ...rest] = layer.outputs;
  // Row blocks for row-independent strategies; the whole weight when one scale covers it.
  const rowBlock = w.strategy === 'channel' || w.strategy === 'group' ? Math.max(1, Math.floor(ROW_BLOCK_BYTES / (cols * 4))) : rows;
  const scales: Uint8Array[] = [];
  const zeroPoints: Int8Array[] = [];
  for (let r0 = 0; r0 < rows; r0 += rowBlock) {
    checkCancelled(options.signal);
    const r1 = Math.min(rows, r0 + rowBlock);
    const weight = await readRows(checkpoint, layer.weight, cols, r0, r1, layer.weightDtype);
    let result: RtnResult;
    try {
      result = quantizeRtn(weight, r1 - r0, cols, w, { scaleDtype });
    } catch (error) {
      throw new QuantizeError(`${layer.weight}: ${(error as Error).message}`);
    }
    if (format === 'pack-quantized') {
      const packed = packToInt32(result.q as Int8Array, r1 - r0, cols, w.numBits, 1);
      await writer.write(weightSpec!.name, new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength));
    } else {
      await writer.write(weightSpec!.name, new Uint8Array(result.q.buffer, result.q.byteOffset, result.q.byteLength));
    }
    scales.push(scaleBytes(result, scaleSpec!.dtype));
    if (result.kind === 'int' && result.zeroPoint) zeroPoints.push(result.zeroPoint);
  }
  for (const bytes of scales) await writer.write(scaleSpec!.name, bytes);
  for (const spec of rest) {
    if (spec.name.endsWith('.weight_zero_point')) {
      const all = Int8Array.from(zeroPoints.flatMap((z) => Array.from(z)));
      if (format === 'pack-quantized') {
        const groups = spec.shape[1]!;
        const packed = packToInt32(all, rows, groups, w.numBits, 0);
        await writer.write(spec.name, new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength));
      } else {
        await writer.write(spec.name, new Uint8Array(all.buffer));
      }
    } else if (spec.name.endsWith('.weight_shape')) {
      await writer.write(spec.name, new Uint8Array(new BigInt64Array([BigInt(rows), BigInt(cols)]).buffer));
    } else if (spec.name.endsWith('.input_scale')) {
      const absmax = options.calibration!.inputAbsMax(layer.module)!;
      const a = scheme.inputActivations!;
      const qmax = a.type === 'float' ? 448 : (2 ** a.numBits - 1) / 2;
      const value = absmax > 0 ? absmax / qmax : 1;
      await writer.write(spec.name, encodeFromFloat32(spec.dtype, Float32Array.of(value)));
    } else {
      throw new QuantizeError(`internal: no writer for ${spec.name}`);
    }
  }
}
