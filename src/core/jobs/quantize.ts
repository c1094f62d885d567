/**
 * The quantize job: reads a float checkpoint layer by layer and writes a quantized checkpoint that vLLM loads:
 *
 *   - compressed-tensors (default; float-quantized, int-quantized or pack-quantized, per config group), with
 *     config.json's quantization_config and recipe.yaml, exactly as llm-compressor writes them (docs/formats.md §3);
 *   - AutoGPTQ (`format: 'gptq'`): qweight / qzeros (v1, zero − 1) / scales (F16) / g_idx per Linear,
 *     quantize_config.json and quantization_config `quant_method: gptq` (docs/formats.md §5), for INT4/INT8
 *     weight-only schemes;
 *   - AutoFP8 (`format: 'autofp8'`): weight F8_E4M3 + per-tensor F32 weight_scale (+ input_scale when static),
 *     quantization_config `quant_method: fp8` (docs/formats.md §6), for FP8 schemes.
 *
 * What to quantize comes from a preset (`scheme`) or an llm-compressor recipe (`recipe`, resolved per layer by
 * src/core/recipe/resolve.ts): QuantizationModifier layers get round-to-nearest (quant/rtn/), GPTQModifier layers
 * GPTQ (gptq.ts) with the Hessians of the calibration statistics.
 *
 * Safety (jobOutput.ts): the output's lock is held throughout; the output is built in a partial folder with an
 * owner record and renamed only when complete and no input changed; a cancelled or failed job removes it (a
 * killed one leaves it, never under the final name, for the next job for that output to remove).
 *
 * Memory: one linear layer at a time. Channel- and group-wise RTN streams a layer in row blocks; per-tensor
 * schemes, the GPTQ layout and GPTQ itself hold one layer's weight as float32 (out × in × 4 bytes) plus, for
 * GPTQ, its Hessian (in × in, float32 from the statistics file and once more in the working precision: 4 or 8
 * bytes per element) and an accumulator of the weight's size. Independent of the model's size.
 */
import { promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { decodeToFloat32, encodeFromFloat32 } from '../dtypes/convert';
import { bytesPerElement, type DType } from '../dtypes/dtype';
import type { Checkpoint } from '../safetensors/checkpoint';
import { SafetensorsWriter, TensorSpec, tensorByteLength } from '../safetensors/writer';
import { planShards, shardFileName, writeShardIndex } from '../safetensors/shards';
import { QuantScheme, needsInputStatistics, presetScheme } from '../quant/args';
import { compilePattern, resolveModule } from '../quant/match';
import { QuantizeError, RtnResult, ScaleDtype, quantizeAutoFp8, quantizeRtn } from '../quant/rtn';
import { packToInt32 } from '../quant/pack';
import { DEFAULT_BLOCK_SIZE, DEFAULT_DAMPENING_FRAC, GptqError, quantizeGptq, type GptqAlgebra } from '../quant/gptq';
import { toGptqLayer } from '../quant/gptqFormat';
import type { Precision } from '../quant/gemm';
import { formatOf } from '../recipe/resolve';
import { JobCancelled, checkCancelled } from './jobErrors';
import { JobOutput, JobOutputOptions, withJobOutput } from './jobOutput';
import type { BlockwiseCalibration } from './sequential';
import { LayerRecorder } from './writtenLayer';
import { outputErrorRecord } from '../inspect/jobOutputError';
import { ResolvedJob, resolveRecipeJob } from './recipeJob';
import { ConfigGroup, autoFp8Config, autoFp8OutputSpecs, checkFormatCombination, gptqOutputSpecs, gptqQuantizeConfig, microscaleVariantOf, outputSpecs, quantizationConfig, recipeYaml, scaleDtypeOf } from './outputLayouts';
import { RowReader, globalScaleGroups, weightGlobalScales, writeMicroscaleLayer } from './microscaleLayer';
import { routerIgnorePatterns } from '../checkpoint/moe';
import { OpenedModel, withOpenedModel } from './openedModel';
import { FusedExpertSlice, FusedSliceReader, JobOutputSpec, linearizedFusedTensors, linearizedSpecs, planFusedExperts, writeFusedCopy } from './fusedExperts';

export { autoFp8Config, autoFp8OutputSpecs, gptqOutputSpecs, gptqQuantizeConfig, outputSpecs, quantizationConfig, recipeYaml, serializeArgs } from './outputLayouts';
export type { ConfigGroup } from './outputLayouts';

export const SCHEME_PRESETS = {
  fp8: { preset: 'FP8', description: 'FP8 E4M3 weights and activations, per-tensor static scales (needs activation statistics)' },
  'fp8-dynamic': { preset: 'FP8_DYNAMIC', description: 'FP8 E4M3 weights per channel, FP8 activations per token (dynamic)' },
  w8a8: { preset: 'W8A8', description: 'INT8 weights per channel, INT8 activations per token (dynamic)' },
  w4a16: { preset: 'W4A16', description: 'INT4 weights, group 128, GPTQ with act-order (needs Hessians)' },
  'w4a16-rtn': { preset: 'W4A16', description: 'INT4 weights, group 128, round to nearest' },
  'fp8-block': { preset: 'FP8_BLOCK', description: 'FP8 E4M3 weights in 128×128 blocks, FP8 activations per group of 128 (dynamic)' },
  nvfp4a16: { preset: 'NVFP4A16', description: 'NVFP4 weights: FP4 E2M1, groups of 16 with FP8 scales and a global scale' },
  nvfp4: { preset: 'NVFP4', description: 'NVFP4 weights and activations (needs activation statistics for input_global_scale)' },
  mxfp4a16: { preset: 'MXFP4A16', description: 'MXFP4 weights: FP4 E2M1, groups of 32 with E8M0 scales' },
  mxfp8: { preset: 'MXFP8', description: 'MXFP8 weights and activations: FP8 E4M3, groups of 32 with E8M0 scales (dynamic activations)' },
} as const;
export type SchemeName = keyof typeof SCHEME_PRESETS;

export const OUTPUT_FORMATS = ['compressed-tensors', 'gptq', 'autofp8'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Modifiers the job can run; every other one in a recipe is refused with a message naming it. */
export const RUNNABLE_MODIFIERS = ['QuantizationModifier', 'GPTQModifier'] as const;

/** Calibration statistics the job consumes (the runtime computes them; tests hand them in directly). */
export interface CalibrationStatistics {
  /** max |x| over all calibration tokens of a Linear's input (static activation scales). */
  inputAbsMax(module: string): number | undefined;
  /** Hessian 2/n Σ x xᵀ of a Linear's input, [in, in] row-major (GPTQ). */
  hessian?(module: string): Promise<Float32Array | Float64Array | undefined>;
  /** The Hessian's shape without reading it (pre-flight checks); undefined when there is none. */
  hessianShape?(module: string): readonly number[] | undefined;
  /** The statistics' metadata (dataset, samples, seq_len, tokens), recorded in the output's quantlens.json. */
  readonly metadata?: Readonly<Record<string, string | number>>;
  /**
   * Statistics computed block by block while the job runs (sequential.ts): the job writes the layers in
   * decoder-block order, enters each block before quantizing its layers, and hands back what it wrote.
   */
  readonly blockwise?: BlockwiseCalibration;
  /** Files the statistics come from, watched for changes while the job runs (the calibration dataset). */
  readonly inputFiles?: readonly string[];
}

/** GPTQ settings (GPTQModifier fields); a recipe's values win over these defaults. */
export interface GptqJobSettings {
  readonly blockSize: number;
  readonly dampeningFrac: number;
  /** 'upfront' (llm-compressor) or 'lazy' (AutoGPTQ) group parameters; see gptq.ts. */
  readonly groupParams: 'upfront' | 'lazy';
  readonly engine?: 'auto' | 'js' | 'ort';
  readonly precision?: Precision;
}

export interface QuantizeJobOptions extends JobOutputOptions {
  /** The float checkpoint: a folder (opened for this job and closed after) or the job's open model (runJob's). */
  readonly model: string | OpenedModel;
  readonly out: string;
  /** A preset; or give `recipe`. */
  readonly scheme?: SchemeName;
  /** An llm-compressor recipe (YAML/JSON text); `path` names it in messages. */
  readonly recipe?: { readonly text: string; readonly path?: string };
  /** Output layout. Default compressed-tensors. */
  readonly format?: OutputFormat;
  /** Modules kept in full precision (names or re: patterns), for presets. Default: lm_head. */
  readonly ignore?: readonly string[];
  readonly calibration?: CalibrationStatistics;
  readonly gptq?: Partial<GptqJobSettings>;
  /** GPTQ's algebra on the job's device (runtime/gptq/engine.ts); without it, or with an explicit engine, JS. */
  readonly gptqAlgebra?: GptqAlgebra;
  readonly maxShardBytes?: number;
  readonly onProgress?: (progress: { fraction: number; stage: string; module?: string }) => void;
}

export interface QuantizeSummary {
  readonly out: string;
  readonly scheme?: SchemeName;
  readonly recipe?: string;
  /** The output layout. */
  readonly outputFormat: OutputFormat;
  /** compressed-tensors format (or "mixed-precision"); "gptq" / "fp8" for the other layouts. */
  readonly format: string;
  readonly quantizedLayers: number;
  readonly gptqLayers: number;
  readonly ignoredLayers: readonly string[];
  readonly inputBytes: number;
  readonly outputBytes: number;
  readonly shards: number;
  readonly seconds: number;
}

export { JobCancelled };

const MODEL_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'tokenizer.model', 'chat_template.jinja', 'chat_template.json', 'vocab.json', 'merges.txt', 'added_tokens.json'];
const ROW_BLOCK_BYTES = 32 * 1024 * 1024;
const rowBlockOf = (cols: number) => Math.max(1, Math.floor(ROW_BLOCK_BYTES / (cols * 4)));

/** What happens to one linear layer. */
export interface LayerJob {
  readonly scheme: QuantScheme;
  /** Config group name in quantization_config. */
  readonly group: string;
  readonly algorithm: 'rtn' | 'gptq';
  readonly gptq?: GptqJobSettings;
}

interface PlannedLayer extends LayerJob {
  readonly module: string;
  readonly rows: number;
  readonly cols: number;
  readonly weight: string;
  readonly weightDtype: DType;
  readonly outputs: TensorSpec[];
  /** A per-expert Linear read out of a fused-experts tensor (fusedExperts.ts); `weight` then names no tensor. */
  readonly slice?: FusedExpertSlice;
}

export function runQuantizeJob(options: QuantizeJobOptions): Promise<QuantizeSummary> {
  return withJobOutput('quantize', options.out, options, (output) => withOpenedModel(options.model, (opened) => quantizeLocked(options, opened, output)));
}

async function quantizeLocked(options: QuantizeJobOptions, opened: OpenedModel, output: JobOutput): Promise<QuantizeSummary> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const outputFormat: OutputFormat = options.format ?? 'compressed-tensors';
  if (!(OUTPUT_FORMATS as readonly string[]).includes(outputFormat)) throw new QuantizeError(`format must be one of ${OUTPUT_FORMATS.join(', ')}, not ${JSON.stringify(outputFormat)}`);
  if ((options.scheme === undefined) === (options.recipe === undefined)) throw new QuantizeError('give either a scheme preset or a recipe (not both)');
  if (options.recipe && options.ignore) throw new QuantizeError('a recipe carries its own ignore lists; --ignore applies to presets only');
  const out = resolve(options.out);
  if (out === opened.folder) throw new QuantizeError('the output folder must differ from the model folder (inputs are never modified)');
  try {
    await fs.access(out);
    throw new QuantizeError(`${out} already exists; choose a new output folder (QuantLens never overwrites)`);
  } catch (error) {
    if (error instanceof QuantizeError) throw error;
  }
  const gptqDefaults = options.gptq ?? {};

  // What each layer gets: a preset for every targeted Linear, or the recipe's per-layer resolution.
  let presetJob: LayerJob | undefined;
  let resolved: ResolvedJob | undefined;
  let ignore: readonly string[];
  if (options.scheme) {
    const { preset } = SCHEME_PRESETS[options.scheme];
    let scheme = presetScheme(preset)!;
    const isGptq = options.scheme === 'w4a16';
    // GPTQModifier's default actorder ("static") is resolved into the scheme it saves.
    if (isGptq) scheme = { ...scheme, weights: { ...scheme.weights!, actorder: 'weight' } };
    const settings: GptqJobSettings = {
      blockSize: gptqDefaults.blockSize ?? DEFAULT_BLOCK_SIZE,
      dampeningFrac: gptqDefaults.dampeningFrac ?? DEFAULT_DAMPENING_FRAC,
      groupParams: gptqDefaults.groupParams ?? 'upfront',
      ...(gptqDefaults.engine ? { engine: gptqDefaults.engine } : {}),
      ...(gptqDefaults.precision ? { precision: gptqDefaults.precision } : {}),
    };
    presetJob = { scheme, group: 'group_0', algorithm: isGptq ? 'gptq' : 'rtn', ...(isGptq ? { gptq: settings } : {}) };
    if (isGptq && !options.calibration?.hessian) {
      throw new QuantizeError('w4a16 runs GPTQ, which needs calibration Hessians (a calibration statistics file: --calib-stats FILE); use w4a16-rtn for round-to-nearest');
    }
    if (needsInputStatistics(scheme.inputActivations) && !options.calibration) {
      throw new QuantizeError(`${options.scheme} has ${scheme.inputActivations!.dynamic === 'local' ? 'a calibrated input_global_scale' : 'static activation scales'}, which need calibration statistics (input absmax per layer); run with calibration data (--calib), or use ${options.scheme === 'nvfp4' ? 'nvfp4a16' : 'fp8-dynamic'}`);
    }
    ignore = options.ignore ?? ['lm_head'];
  } else {
    resolved = resolveRecipeJob(options, opened.layers, gptqDefaults);
    ignore = resolved.ignore;
    if ([...resolved.layers.values()].some((l) => l.algorithm === 'gptq') && !options.calibration?.hessian) {
      throw new QuantizeError(`${options.recipe!.path ?? 'the recipe'} runs GPTQModifier, which needs calibration Hessians (a calibration statistics file: --calib-stats FILE)`);
    }
  }
  const jobFor = (module: string): LayerJob | undefined => (presetJob ? presetJob : resolved!.layers.get(module));

  const checkpoint = opened.checkpoint;
  await output.watchCheckpoint(checkpoint);
  if (options.calibration?.inputFiles?.length) await output.watchInputs(options.calibration.inputFiles);
  const blockwise = options.calibration?.blockwise;
  const config = opened.config;
  if (!config.raw) throw new QuantizeError(`${join(checkpoint.folder, 'config.json')} is missing or invalid${config.error ? `: ${config.error}` : ''}`);
  if (config.summary?.quantMethod) throw new QuantizeError(`the model is already quantized (quant_method ${config.summary.quantMethod}); start from the float checkpoint`);
  const errors = checkpoint.problems.filter((p) => p.severity === 'error');
  if (errors.length) throw new QuantizeError(`the input checkpoint has problems: ${errors.map((p) => p.message).join('; ')}`);

  // Which linear layers get which scheme.
  const layerMap = opened.layerMap;
  // Presets keep mixture-of-experts routers in full precision, as llm-compressor's MoE examples ignore them.
  if (presetJob) ignore = [...ignore, ...routerIgnorePatterns(layerMap.modules).filter((p) => !ignore.includes(p))];
  const presetTargets = presetJob ? [{ name: 'group_0', targets: presetJob.scheme.targets.map((t) => compilePattern(t)) }] : [];
  const ignorePatterns = presetJob ? ignore.map((i) => compilePattern(i)) : [];
  const planned = new Map<string, PlannedLayer>();
  const ignored: string[] = [];
  const problems: string[] = [];
  // Float fused experts become per-expert linears, as llm-compressor linearizes them (fusedExperts.ts).
  const fusedPlan = planFusedExperts(checkpoint.tensors, config.raw, layerMap.modules, problems);
  const fusedReader = new FusedSliceReader((name, start, end) => checkpoint.readTensorRange(name, start, end));
  for (const module of [...layerMap.modules, ...fusedPlan.modules]) {
    if (module.state !== 'unquantized' || !module.observed?.shape) continue;
    const slice = 'slice' in module ? module.slice : undefined;
    let job: LayerJob | undefined;
    if (presetJob) job = resolveModule(module.name, 'Linear', presetTargets, ignorePatterns).group ? presetJob : undefined;
    // A recipe sees the fused module (its targets may name it); its linearized experts follow it.
    else job = jobFor(module.name) ?? (slice ? jobFor(slice.tensor) : undefined);
    if (!job) {
      ignored.push(module.name);
      continue;
    }
    const [rows, cols] = module.observed.shape;
    const w = job.scheme.weights!;
    const where = slice ? `${slice.tensor} (expert ${slice.expert}'s ${slice.projection}, ${module.name})` : module.name;
    if ((w.strategy === 'group' || w.strategy === 'tensor_group') && cols % w.groupSize! !== 0) problems.push(`${where}: input features ${cols} are not divisible by group_size ${w.groupSize}`);
    const hasInputStatistics = blockwise ? blockwise.blockOf(module.name) !== undefined : options.calibration?.inputAbsMax(module.name) !== undefined;
    if (needsInputStatistics(job.scheme.inputActivations) && !hasInputStatistics) {
      problems.push(`${module.name}: no calibration input statistics (input_absmax) for its static activation scale`);
    }
    if (w.actorder === 'group' && job.algorithm !== 'gptq') problems.push(`${module.name}: actorder "group" saves weight_g_idx, which only GPTQ produces (use GPTQModifier, or drop actorder)`);
    if (job.algorithm === 'gptq') {
      const shape = options.calibration?.hessianShape?.(module.name);
      if (options.calibration?.hessianShape && !shape) problems.push(`${module.name}: the calibration statistics have no Hessian for this layer`);
      else if (shape && (shape.length !== 2 || shape[0] !== cols || shape[1] !== cols)) problems.push(`${module.name}: its Hessian is [${shape.join(', ')}], in_features is ${cols} (expected [${cols}, ${cols}])`);
    }
    const weight = `${module.name}.weight`;
    const weightDtype = slice ? slice.dtype : checkpoint.tensor(weight).dtype;
    let outputs: TensorSpec[];
    if (outputFormat === 'gptq') {
      try {
        outputs = gptqOutputSpecs(module.name, rows, cols, w);
      } catch (error) {
        problems.push(`${where}: ${(error as Error).message} (the GPTQ layout packs whole int32 words)`);
        outputs = [];
      }
    } else if (outputFormat === 'autofp8') outputs = autoFp8OutputSpecs(module.name, rows, cols, job.scheme.inputActivations?.dynamic === false);
    else outputs = outputSpecs(module.name, rows, cols, weightDtype, job.scheme, formatOf(job.scheme));
    planned.set(weight, { ...job, module: module.name, rows, cols, weight, weightDtype, outputs, ...(slice ? { slice } : {}) });
  }
  const fusedOutputs = linearizedFusedTensors(fusedPlan, planned, log);
  if (planned.size === 0) throw new QuantizeError('no linear layer to quantize (all are ignored or not floating point)');
  checkFormatCombination(outputFormat, [...planned.values()], options.scheme);
  const byModule = new Map([...planned.values()].map((l) => [l.module, l]));
  const scaleGroups = globalScaleGroups(new Map([...byModule].map(([m, l]) => [m, l.scheme])), new Set([...layerMap.modules, ...fusedPlan.modules].map((m) => m.name)), problems);
  if (problems.length) throw new QuantizeError(`pre-flight check failed:\n  ${problems.join('\n  ')}`);
  // NVFP4 weight global scales first: a fused group's scale needs all its members' amax (microscaleLayer.ts).
  const readLayerRows = (layer: PlannedLayer, r0: number, r1: number) => (layer.slice ? fusedReader.rows(layer.slice, r0, r1) : readRows(checkpoint, layer.weight, layer.cols, r0, r1, layer.weightDtype));
  const readModuleRows: RowReader = (m, r0, r1) => readLayerRows(byModule.get(m)!, r0, r1);
  const globalScales = await weightGlobalScales(scaleGroups, byModule, (m) => scaleDtypeOf(byModule.get(m)!.weightDtype), readModuleRows, rowBlockOf);

  // Config groups (compressed-tensors): one per distinct group name and scheme.
  const groups = new Map<string, ConfigGroup>();
  for (const layer of planned.values()) {
    const format = formatOf(layer.scheme);
    let name = layer.group;
    for (let i = 1; groups.has(name) && JSON.stringify(groups.get(name)!.scheme) !== JSON.stringify(layer.scheme); i++) name = `${layer.group}_${i}`;
    if (!groups.has(name)) groups.set(name, { name, scheme: layer.scheme, format });
  }

  // Output tensors in input order, each quantized weight replaced by its encoded set.
  const specs: JobOutputSpec<PlannedLayer>[] = [];
  for (const tensor of checkpoint.tensors) {
    const linearized = fusedOutputs.get(tensor.name);
    if (linearized) { specs.push(...linearizedSpecs(linearized, tensor.name, (w) => planned.get(w))); continue; }
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
  const shardUnits: (typeof specs)[] = [];
  for (const spec of specs) {
    const last = shardUnits.at(-1);
    if (last && spec.layer && last[0]!.layer === spec.layer) last.push(spec);
    else shardUnits.push([spec]);
  }
  // Statistics computed block by block need the layers block after block (the input's order puts
  // model.layers.10 before model.layers.2): the layers' units are reordered among their own places.
  if (blockwise) {
    const blockOfUnit = (unit: (typeof specs)[number][]) => (unit[0]!.layer ? (blockwise.blockOf(unit[0]!.layer.module) ?? Number.MAX_SAFE_INTEGER) : undefined);
    const places = shardUnits.flatMap((unit, i) => (blockOfUnit(unit) === undefined ? [] : [i]));
    const ordered = places.map((i) => shardUnits[i]!).sort((a, b) => blockOfUnit(a)! - blockOfUnit(b)!);
    places.forEach((place, k) => (shardUnits[place] = ordered[k]!));
  }
  const maxShard = options.maxShardBytes ?? 5_000_000_000;
  const shardGroups = planShards(
    shardUnits.map((g, i) => ({ name: String(i), dtype: 'U8' as const, shape: [g.reduce((sum, s) => sum + tensorByteLength(s), 0)] })),
    maxShard,
  ).map((shard) => shard.flatMap((g) => shardUnits[Number(g.name)]!));

  const temp = await output.createPartial('quantize output');
  const gptqCount = [...planned.values()].filter((l) => l.algorithm === 'gptq').length;
  const formatName = outputFormat === 'gptq' ? 'gptq' : outputFormat === 'autofp8' ? 'fp8' : groups.size === 1 ? [...groups.values()][0]!.format : 'mixed-precision';
  log(`quantizing ${planned.size} layers (${gptqCount} with GPTQ) by ${options.scheme ?? options.recipe?.path ?? 'the recipe'} as ${outputFormat} (${formatName}) into ${out}; ${ignored.length} kept in full precision: ${ignored.join(', ') || 'none'}`);
  const weightMap = new Map<string, string>();
  const totalInput = checkpoint.totalBytes;
  let processed = 0;
  let enteredBlock: number | undefined;
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
          const block = blockwise?.blockOf(spec.layer.module);
          if (blockwise && block !== undefined && block !== enteredBlock) {
            await blockwise.enterBlock(block);
            enteredBlock = block;
          }
          options.onProgress?.({ fraction: processed / totalInput, stage: spec.layer.algorithm === 'gptq' ? 'gptq' : 'quantize', module: spec.layer.module });
          if (blockwise && block !== undefined) {
            // The dequantized values of exactly the bytes written, for the block's outputs (sequential.ts).
            const recorder = blockwise.wantsWrittenWeights ? new LayerRecorder(writer) : undefined;
            await quantizeLayer(readLayerRows, spec.layer, outputFormat, recorder ?? writer, options, globalScales);
            if (recorder) await blockwise.written(spec.layer.module, await recorder.dequantize(spec.layer.module, spec.layer.scheme.weights!, outputFormat), await readLayerRows(spec.layer, 0, spec.layer.rows));
          } else {
            await quantizeLayer(readLayerRows, spec.layer, outputFormat, writer, options, globalScales);
          }
          i += spec.layer.outputs.length;
          processed += spec.layer.slice ? spec.layer.rows * spec.layer.cols * bytesPerElement(spec.layer.weightDtype)! : checkpoint.tensor(spec.layer.weight).byteLength;
        } else if (spec.floatSlice || spec.biasSlice) {
          await writeFusedCopy(spec, fusedReader, (name, bytes) => writer.write(name, bytes), rowBlockOf(spec.floatSlice?.cols ?? 1), () => checkCancelled(options.signal));
          processed += tensorByteLength(spec);
          i++;
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

  let quantizationConfigJson: Record<string, unknown>;
  const first = [...planned.values()][0]!;
  if (outputFormat === 'gptq') {
    quantizationConfigJson = gptqQuantizeConfig(first.scheme.weights!, first.gptq?.dampeningFrac ?? DEFAULT_DAMPENING_FRAC);
    await fs.writeFile(join(temp, 'quantize_config.json'), `${JSON.stringify(quantizationConfigJson, null, 2)}\n`);
  } else if (outputFormat === 'autofp8') {
    quantizationConfigJson = autoFp8Config(first.scheme.inputActivations?.dynamic === false ? 'static' : 'dynamic', ignored);
  } else {
    quantizationConfigJson = quantizationConfig([...groups.values()], ignore);
  }
  const configJson = { ...config.raw, quantization_config: quantizationConfigJson };
  await fs.writeFile(join(temp, 'config.json'), `${JSON.stringify(configJson, null, 2)}\n`);
  if (outputFormat === 'compressed-tensors') {
    const recipeText = resolved ? resolved.recipeText : recipeYaml(SCHEME_PRESETS[options.scheme!].preset, ignore, presetJob!.algorithm, presetJob!.gptq);
    await fs.writeFile(join(temp, 'recipe.yaml'), recipeText);
  }
  // What the inspector needs to compare the output with its source: the source folder, the calibration.
  // With one-pass calibration: the output error the job measured per layer (inspect/jobOutputError.ts).
  const measured = blockwise?.outputErrors.size ? { output_error: outputErrorRecord(Number(options.calibration!.metadata?.tokens), blockwise.outputErrors) } : {};
  await fs.writeFile(join(temp, 'quantlens.json'), `${JSON.stringify({ source_model: checkpoint.folder, calibration: options.calibration?.metadata ? Object.fromEntries(['dataset', 'samples', 'seq_len', 'tokens', 'sha256'].filter((k) => k in options.calibration!.metadata!).map((k) => [k, options.calibration!.metadata![k]])) : null, ...measured }, null, 2)}\n`);
  for (const file of MODEL_FILES) {
    await fs.copyFile(join(checkpoint.folder, file), join(temp, file)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }
  checkCancelled(options.signal);
  await output.publishFolder();
  options.onProgress?.({ fraction: 1, stage: 'done' });
  return {
    out,
    ...(options.scheme ? { scheme: options.scheme } : {}),
    ...(options.recipe ? { recipe: options.recipe.path ?? 'recipe' } : {}),
    outputFormat,
    format: formatName,
    quantizedLayers: planned.size,
    gptqLayers: gptqCount,
    ignoredLayers: ignored,
    inputBytes: totalInput,
    outputBytes,
    shards: shardGroups.length,
    seconds: (Date.now() - started) / 1000,
  };
}

/** Reads rows [r0, r1) of a 2-D float weight as float32. */
async function readRows(checkpoint: Checkpoint, name: string, cols: number, r0: number, r1: number, dtype: DType): Promise<Float32Array> {
  const bytesPerElement = dtype === 'F32' ? 4 : dtype === 'F64' ? 8 : 2;
  const bytes = await checkpoint.readTensorRange(name, r0 * cols * bytesPerElement, r1 * cols * bytesPerElement);
  return decodeToFloat32(dtype, bytes);
}

const i32Bytes = (a: Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Quantized values of a whole layer (GPTQ or RTN), for the writers that need the whole layer. */
interface WholeLayer {
  readonly q: Int8Array;
  readonly scale: Float32Array;
  readonly zeroPoint?: Int8Array;
  readonly gIdx?: Int32Array;
  readonly saveGIdx: boolean;
}

async function quantizeWholeLayer(read: LayerRowReader, layer: PlannedLayer, scaleDtype: ScaleDtype, options: QuantizeJobOptions): Promise<WholeLayer> {
  const { rows, cols, scheme } = layer;
  const w = scheme.weights!;
  const weight = await read(layer, 0, rows);
  if (layer.algorithm === 'gptq') {
    const hessian = await options.calibration!.hessian!(layer.module);
    if (!hessian) throw new QuantizeError(`${layer.module}: the calibration statistics have no Hessian for this layer`);
    const settings = layer.gptq!;
    try {
      const result = await quantizeGptq(weight, rows, cols, hessian, w, {
        module: layer.module,
        blockSize: settings.blockSize,
        dampeningFrac: settings.dampeningFrac,
        groupParams: settings.groupParams,
        scaleDtype,
        ...(settings.engine ? { engine: settings.engine } : options.gptqAlgebra ? { algebra: options.gptqAlgebra } : {}),
        ...(settings.precision ? { precision: settings.precision } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      options.log?.(`${layer.module}: GPTQ loss ${result.loss.toPrecision(4)} (${result.where}, ${result.precision}, ${(result.seconds.factorize + result.seconds.loop).toFixed(2)} s)`);
      return { q: result.q, scale: result.scale, zeroPoint: result.zeroPoint, gIdx: result.gIdx, saveGIdx: result.saveGIdx };
    } catch (error) {
      if (options.signal?.aborted) throw new JobCancelled();
      if (error instanceof GptqError) throw new QuantizeError(error.message);
      throw error;
    }
  }
  let result: RtnResult;
  try {
    result = quantizeRtn(weight, rows, cols, w, { scaleDtype });
  } catch (error) {
    throw new QuantizeError(`${layer.weight}: ${(error as Error).message}`);
  }
  if (result.kind !== 'int') throw new QuantizeError(`${layer.weight}: integer quantization expected`);
  return { q: result.q, scale: result.scale, zeroPoint: result.zeroPoint, saveGIdx: false };
}

/** Rows [r0, r1) of a planned layer's float weight as float32 (a 2-D weight, or a fused expert's slice). */
type LayerRowReader = (layer: PlannedLayer, r0: number, r1: number) => Promise<Float32Array>;

async function quantizeLayer(read: LayerRowReader, layer: PlannedLayer, outputFormat: OutputFormat, writer: Pick<SafetensorsWriter, 'write'>, options: QuantizeJobOptions, globalScales: ReadonlyMap<string, number>): Promise<void> {
  const { rows, cols, scheme } = layer;
  const w = scheme.weights!;
  if (outputFormat === 'gptq') {
    // AutoGPTQ stores F16 scales: compute them in F16 so the stored values are exactly the ones used.
    const whole = await quantizeWholeLayer(read, layer, 'F16', options);
    const gptq = toGptqLayer(whole.q, rows, cols, w.numBits, whole.scale, 'gptq', {
      ...(whole.zeroPoint ? { zeroPoint: whole.zeroPoint } : {}),
      ...(whole.saveGIdx && whole.gIdx ? { gIdx: whole.gIdx } : {}),
      groupSize: w.strategy === 'group' ? w.groupSize! : -1,
    });
    await writer.write(`${layer.module}.qweight`, i32Bytes(gptq.qweight));
    await writer.write(`${layer.module}.qzeros`, i32Bytes(gptq.qzeros));
    await writer.write(`${layer.module}.scales`, encodeFromFloat32('F16', gptq.scales));
    await writer.write(`${layer.module}.g_idx`, i32Bytes(gptq.gIdx));
    return;
  }
  if (outputFormat === 'autofp8') {
    const weight = await read(layer, 0, rows);
    let result;
    try {
      result = quantizeAutoFp8(weight, rows, cols, { computeDtype: scaleDtypeOf(layer.weightDtype) });
    } catch (error) {
      throw new QuantizeError(`${layer.weight}: ${(error as Error).message}`);
    }
    await writer.write(`${layer.module}.weight`, result.q);
    await writer.write(`${layer.module}.weight_scale`, encodeFromFloat32('F32', result.scale));
    if (scheme.inputActivations?.dynamic === false) {
      const absmax = options.calibration!.inputAbsMax(layer.module)!;
      // AutoFP8: the running max of amax / 448 over calibration batches = the overall amax / 448.
      await writer.write(`${layer.module}.input_scale`, encodeFromFloat32('F32', Float32Array.of(absmax > 0 ? absmax / 448 : 1)));
    }
    return;
  }

  const scaleDtype = scaleDtypeOf(layer.weightDtype);
  const format = formatOf(scheme);
  const variant = microscaleVariantOf(format);
  if (variant) {
    const job = { plan: layer, variant, dtype: scaleDtype, globalScale: globalScales.get(layer.module), inputAbsMax: options.calibration?.inputAbsMax(layer.module), rowBlock: rowBlockOf(cols) };
    return writeMicroscaleLayer(job, (_m, r0, r1) => read(layer, r0, r1), (name, bytes) => writer.write(name, bytes), () => checkCancelled(options.signal));
  }
  const [weightSpec, scaleSpec, ...rest] = layer.outputs;
  const scales: Uint8Array[] = [];
  const zeroPoints: Int8Array[] = [];
  let gIdx: Int32Array | undefined;
  const writeValues = async (q: Int8Array | Uint8Array, nRows: number) => {
    if (format === 'pack-quantized') await writer.write(weightSpec!.name, i32Bytes(packToInt32(q as Int8Array, nRows, cols, w.numBits, 1)));
    else await writer.write(weightSpec!.name, new Uint8Array(q.buffer, q.byteOffset, q.byteLength));
  };
  if (layer.algorithm === 'gptq') {
    const whole = await quantizeWholeLayer(read, layer, scaleDtype, options);
    await writeValues(whole.q, rows);
    scales.push(encodeFromFloat32(scaleSpec!.dtype, whole.scale));
    if (whole.zeroPoint) zeroPoints.push(whole.zeroPoint);
    gIdx = whole.gIdx;
  } else {
    // Row blocks for row-independent strategies; the whole weight when one scale covers it.
    const rowBlock = w.strategy === 'channel' || w.strategy === 'group' ? rowBlockOf(cols) : rows;
    for (let r0 = 0; r0 < rows; r0 += rowBlock) {
      checkCancelled(options.signal);
      const r1 = Math.min(rows, r0 + rowBlock);
      const weight = await read(layer, r0, r1);
      let result: RtnResult;
      try {
        result = quantizeRtn(weight, r1 - r0, cols, w, { scaleDtype });
      } catch (error) {
        throw new QuantizeError(`${layer.weight}: ${(error as Error).message}`);
      }
      await writeValues(result.q, r1 - r0);
      scales.push(encodeFromFloat32(scaleSpec!.dtype, result.scale));
      if (result.kind === 'int' && result.zeroPoint) zeroPoints.push(result.zeroPoint);
    }
  }
  for (const bytes of scales) await writer.write(scaleSpec!.name, bytes);
  for (const spec of rest) {
    if (spec.name.endsWith('.weight_zero_point')) {
      const all = zeroPoints.length === 1 ? zeroPoints[0]! : Int8Array.from(zeroPoints.flatMap((z) => Array.from(z)));
      if (format === 'pack-quantized') await writer.write(spec.name, i32Bytes(packToInt32(all, rows, spec.shape[1]!, w.numBits, 0)));
      else await writer.write(spec.name, new Uint8Array(all.buffer, all.byteOffset, all.byteLength));
    } else if (spec.name.endsWith('.weight_g_idx')) {
      if (!gIdx) throw new QuantizeError(`${layer.module}: actorder "group" saves weight_g_idx, which only GPTQ produces; use GPTQModifier for this scheme`);
      await writer.write(spec.name, i32Bytes(gIdx));
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

