/**
 * One emitter per linear storage: each turns a checkpoint module (as the layer map observed it) into ONNX
 * nodes that compute y = x · Wᵀ (+ bias) from the stored representation itself — never from a dequantized
 * float copy of a quantized weight:
 *
 * | stored                                   | graph                                                           |
 * |------------------------------------------|-----------------------------------------------------------------|
 * | float (bf16/f16/f32) [N, K]              | FusedMatMul(x, W, transB=1): W keeps its [N, K] layout          |
 * | FP8 E4M3 [N, K] + tensor/channel scale   | CPU, WebGPU: float32 W · scale expanded at build → FusedMatMul  |
 * |                                          | CUDA: DequantizeLinear(F8E4M3FN, scale, axis 0) → FusedMatMul   |
 * | INT8 [N, K] + channel scale (W8A8)       | x → per-token (or static) uint8 with zero point 128 →           |
 * |                                          | MatMulInteger(u8, int8 Wᵀ [K, N]) → ·token scale · channel scale |
 * | INT4 pack-quantized / GPTQ v1/v2         | MatMulNBits (bits 4, uint8 zero points); act-order g_idx: the   |
 * |                                          | columns are sorted by group and x is gathered in that order     |
 * | INT8 pack-quantized (W8A16)              | MatMulNBits (bits 8), the same way                              |
 *
 * Activation quantization follows what the checkpoint declares and vLLM executes: static `input_scale`
 * (FP8: QuantizeLinear → DequantizeLinear to E4M3; INT8: QuantizeLinear to uint8 with zero point 128 + zp),
 * dynamic per token (scale = max|x| / qmax over the row; INT8 rounds half to even and clips to [−128, 127];
 * FP8 casts with saturation), or dynamic per tensor.
 *
 * Memory: one module at a time. Float and FP8 weights stream in chunks; INT8 is transposed and INT4 repacked
 * in memory at the stored size of one layer.
 *
 * FP8 weights on providers without FP8 matrix kernels (the CPU; WebGPU has no float8 kernels at all) are
 * expanded once, while the graph is built, into float32 initializers w · scale (see Fp8WeightMode): measured
 * on the CPU provider, a DequantizeLinear of the whole weight in every run made TinyLlama-shaped FP8 decode
 * 0.06–0.18× the fp32 graph. onnxruntime does not fold that DequantizeLinear itself at ORT_ENABLE_ALL (its
 * constant folding skips DequantizeLinear while QDQ transforms are on; with `session.disable_quant_qdq` it
 * folds, and a Cast + Mul form folds at any level), but folding runs at every session load and took ~1 s per
 * 11.5 M weights on the build machine — minutes for a 1B model, each time — where the expansion here is paid
 * once per cached graph and the session loads like the fp32 graph's. The cost: 4 bytes per weight in the
 * graph file and in memory instead of 1 (docs/performance.md §8).
 */
import { readFileSync } from 'node:fs';
import { decodeToFloat32, encodeFromFloat32 } from '../../dtypes/convert';
import type { Checkpoint } from '../../safetensors/checkpoint';
import type { LinearModule } from '../../checkpoint/scheme';
import type { QuantArgs } from '../../quant/args';
import { unpackFromInt32 } from '../../quant/pack';
import { GptqCheckpointFormat, unpackGptqLayer } from '../../quant/gptqFormat';
import { DataType, GraphBuilder } from '../onnx/builder';

export class LinearEmitError extends Error {
  override readonly name = 'LinearEmitError';
  constructor(readonly module: string, detail: string) {
    super(`${module}: ${detail}`);
  }
}

/** int8 = W8A8 (MatMulInteger); int8-weight = weight-only pack-quantized 8-bit (MatMulNBits bits 8). */
export type LinearKind = 'float' | 'fp8' | 'int8' | 'int4' | 'int8-weight';

/**
 * How FP8 weights enter the graph: 'expand' = float initializers w · scale written once at build (for
 * providers whose matrix products have no FP8 kernel: the CPU, WebGPU); 'stored' = the F8E4M3FN bytes
 * + DequantizeLinear in every run (1 byte per weight; CUDA, whose DequantizeLinear runs on the GPU).
 * Both give the same weights bit for bit: an E4M3 value times a float32 scale is exact in float64, so one
 * rounding to float32 is DequantizeLinear's float32 product.
 */
export type Fp8WeightMode = 'expand' | 'stored';

/** The FP8 weight mode of a provider when none is asked for (device.ts graphOptionsFor sets it explicitly). */
export function defaultFp8Weights(target: GraphTarget | undefined): Fp8WeightMode {
  return target === 'cuda' ? 'stored' : 'expand';
}
/**
 * MatMulInteger operand types: activations × weights. 'u8s8' and 'u8u8' are the CPU provider's (below);
 * 's8s8' is the only MatMulInteger kernel the CUDA provider has (int8 × int8), so a CUDA graph with a uint8
 * operand would run that node on the CPU.
 */
export type Int8Kernel = 'u8s8' | 'u8u8' | 's8s8';

/** The onnxruntime execution provider a graph is built for (device.ts decides which). */
export type GraphTarget = 'cpu' | 'cuda' | 'webgpu';

/**
 * The exact-and-fastest MatMulInteger variant of the CPU execution provider on this machine: u8s8 where the
 * host CPU has VNNI (no int16 saturation), u8u8 otherwise. Linux reads /proc/cpuinfo; elsewhere the safe
 * u8u8 is chosen. Only for graphs the CPU provider runs: device.ts picks the kernel per provider.
 */
export function cpuInt8Kernel(): Int8Kernel {
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'ia32')) return 'u8u8';
  try {
    const flags = readFileSync('/proc/cpuinfo', 'utf8');
    return /\b(avx512_vnni|avx_vnni)\b/.test(flags) ? 'u8s8' : 'u8u8';
  } catch {
    return 'u8u8';
  }
}

/**
 * The MatMulInteger variant for a provider: the CPU's follows the host CPU (cpuInt8Kernel); CUDA's is int8 ×
 * int8; WebGPU has none (the graph builder refuses INT8 layers for it), u8u8 keeps the cache key stable.
 */
export function int8KernelFor(target: GraphTarget): Int8Kernel {
  return target === 'cpu' ? cpuInt8Kernel() : target === 'cuda' ? 's8s8' : 'u8u8';
}

/** MatMulNBits accuracy_level for a provider: int8 compute (4) is the CPU's fast path; GPUs compute in float (0). */
export function int4AccuracyLevelFor(target: GraphTarget): number {
  return target === 'cpu' ? 4 : 0;
}

export interface LinearEmitContext {
  readonly g: GraphBuilder;
  readonly checkpoint: Checkpoint;
  /** FLOAT (fp32 graphs) or FLOAT16 (CUDA graphs): the activations' type. */
  readonly floatType: DataType.FLOAT | DataType.FLOAT16;
  /** MatMulNBits accuracy_level: 0 = exact float compute, 4 = int8 compute (fastest on CPU). */
  readonly int4AccuracyLevel: number;
  readonly gptqFormat?: GptqCheckpointFormat;
  /**
   * MatMulInteger operand types for INT8 layers. 'u8s8' (uint8 activations × int8 weights) is the fast path
   * on CPUs with VNNI, but on AVX2-only CPUs MLAS computes it with vpmaddubsw, whose int16 pair sums
   * saturate (wrong results); 'u8u8' (weights shifted by 128, zero point 128) is exact everywhere.
   */
  readonly int8Kernel: Int8Kernel;
  /** Bytes per streamed chunk of float / FP8 weights. */
  readonly chunkBytes?: number;
  /** The provider the graph is for (default cpu): picks ops it has kernels for (see matMulTransB). */
  readonly target?: GraphTarget;
  /** FP8 weights expanded to float at build or dequantized per run (default: defaultFp8Weights(target)). */
  readonly fp8Weights?: Fp8WeightMode;
}

/**
 * y = a · bᵀ. CPU and CUDA: com.microsoft FusedMatMul(transB=1), so [N, K] weights need no transposed copy.
 * WebGPU has no FusedMatMul kernel (onnxruntime would run it on the CPU): MatMul of a Transpose, which
 * onnxruntime's constant folding turns into one transposed initializer at load when b is a weight.
 */
export function matMulTransB(g: GraphBuilder, target: GraphTarget | undefined, a: string, b: string): string {
  if (target === 'webgpu') return g.op('MatMul', [a, g.op('Transpose', [b], { perm: [1, 0] })]);
  return g.op('FusedMatMul', [a, b], { transB: 1 }, 'com.microsoft');
}

/** y = aᵀ · b for a 2-D `a` (the Hessian tap's XᵀX); on WebGPU a Transpose and a MatMul, as above. */
export function matMulTransA(g: GraphBuilder, target: GraphTarget | undefined, a: string, b: string): string {
  if (target === 'webgpu') return g.op('MatMul', [g.op('Transpose', [a], { perm: [1, 0] }), b]);
  return g.op('FusedMatMul', [a, b], { transA: 1 }, 'com.microsoft');
}

/**
 * Storage the WebGPU provider cannot run as stored: it has no kernels for FP8 (DequantizeLinear from
 * float8, Cast to float8) or for MatMulInteger / Round (checked on onnxruntime-node 1.30: the nodes land on
 * the CPU). A clear error instead of a session that quietly computes those layers on the CPU. FP8 weights
 * expanded to float need no FP8 kernel; FP8 activation quantization (static input_scale or dynamic) still
 * casts to float8 in every run, so only weight-only FP8 layers run there.
 */
function refuseOnWebGpu(ctx: LinearEmitContext, module: LinearModule, kind: LinearKind): void {
  if (ctx.target !== 'webgpu' || (kind !== 'fp8' && kind !== 'int8')) return;
  let what: string;
  if (kind === 'int8') what = 'INT8 W8A8 layers (MatMulInteger, Round)';
  else if ((ctx.fp8Weights ?? defaultFp8Weights(ctx.target)) === 'stored') what = 'FP8 weights dequantized per run (DequantizeLinear from float8)';
  else if (quantizesFp8Activations(module)) what = 'FP8 activation quantization (QuantizeLinear / Cast to float8)';
  else return;
  throw new LinearEmitError(module.name, `onnxruntime's WebGPU provider has no kernels for ${what}; they would run on the CPU. Run this model with --device cpu (or cuda), or set quantlens.runtime.device to cpu`);
}

/** The storage a module will be emitted from. */
export function linearKind(module: LinearModule): LinearKind {
  const observed = module.observed;
  if (!observed) throw new LinearEmitError(module.name, 'no weight in this checkpoint');
  switch (observed.kind) {
    case 'float':
      return 'float';
    case 'ct-fp8':
      return 'fp8';
    case 'ct-int':
      if (observed.bits !== 8) throw new LinearEmitError(module.name, `integer weights of ${observed.bits} bits stored unpacked are not supported`);
      return 'int8';
    case 'ct-packed':
      // The headers do not give packed bits (weight_shape's values do); the config's declaration does, and
      // emitNBits checks the packed width against it.
      return (observed.bits ?? module.declared?.scheme?.weights?.numBits) === 8 ? 'int8-weight' : 'int4';
    case 'gptq':
      return 'int4';
    case 'fp8-block':
      throw new LinearEmitError(module.name, 'FP8 weights with 2-D block scales (weight_scale_inv) are not supported by the runtime');
    case 'nvfp4':
      throw new LinearEmitError(module.name, 'NVFP4 weights are not supported by the runtime');
    case 'mxfp4':
      throw new LinearEmitError(module.name, 'MXFP4 weights are not supported by the runtime');
    default:
      throw new LinearEmitError(module.name, `unrecognised weight storage (${observed.weightDtype ?? 'no weight tensor'})`);
  }
}

const sanitize = (name: string) => name.replace(/[^A-Za-z0-9_.]/g, '_');

async function* convertedChunks(ctx: LinearEmitContext, tensor: string, to: DataType): AsyncGenerator<Uint8Array> {
  const info = ctx.checkpoint.tensor(tensor);
  const chunkBytes = ctx.chunkBytes ?? 8 * 1024 * 1024;
  for await (const { bytes } of ctx.checkpoint.chunks(tensor, { chunkBytes })) {
    if ((to === DataType.FLOAT && info.dtype === 'F32') || (to === DataType.FLOAT16 && info.dtype === 'F16')) {
      yield bytes;
      continue;
    }
    const f32 = decodeToFloat32(info.dtype, bytes);
    yield to === DataType.FLOAT ? new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength) : encodeFromFloat32('F16', f32);
  }
}

/** A float tensor of the checkpoint as an initializer of `type`, converted chunk by chunk. */
export async function floatInitializer(ctx: LinearEmitContext, tensor: string, type: DataType.FLOAT | DataType.FLOAT16, name = sanitize(tensor)): Promise<string> {
  const info = ctx.checkpoint.tensor(tensor);
  if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) throw new LinearEmitError(tensor, `expected a float tensor, found ${info.dtype}`);
  return ctx.g.streamedInitializer(name, type, info.shape, convertedChunks(ctx, tensor, type));
}

async function readFloats(ctx: LinearEmitContext, tensor: string): Promise<Float32Array> {
  const info = ctx.checkpoint.tensor(tensor);
  return decodeToFloat32(info.dtype, await ctx.checkpoint.readTensorBytes(tensor, { maxBytes: 1 << 30 }));
}

async function readInt32(ctx: LinearEmitContext, tensor: string): Promise<Int32Array> {
  const info = ctx.checkpoint.tensor(tensor);
  if (info.dtype !== 'I32') throw new LinearEmitError(tensor, `expected I32, found ${info.dtype}`);
  const bytes = await ctx.checkpoint.readTensorBytes(tensor, { maxBytes: 1 << 30 });
  return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** Float data in the graph's float type. */
async function floatData(ctx: LinearEmitContext, name: string, values: Float32Array, dims: readonly number[]): Promise<string> {
  const data = ctx.floatType === DataType.FLOAT ? values : encodeFromFloat32('F16', values);
  return ctx.g.initializer(name, ctx.floatType, dims, data);
}

function floatConstant(ctx: LinearEmitContext, base: string, values: readonly number[], dims: readonly number[] = []): string {
  const f32 = Float32Array.from(values);
  return ctx.g.constant(base, ctx.floatType, dims, ctx.floatType === DataType.FLOAT ? f32 : encodeFromFloat32('F16', f32));
}

/**
 * Emits the module applied to `x` ([batch, seq, K] in the graph's float type). Returns the output value
 * ([batch, seq, N]).
 */
export async function emitLinear(ctx: LinearEmitContext, module: LinearModule, x: string): Promise<string> {
  const kind = linearKind(module);
  refuseOnWebGpu(ctx, module, kind);
  const base = sanitize(module.name);
  let y: string;
  switch (kind) {
    case 'float':
      y = await emitFloat(ctx, module, base, x);
      break;
    case 'fp8':
      y = await emitFp8(ctx, module, base, x);
      break;
    case 'int8':
      y = await emitInt8(ctx, module, base, x);
      break;
    case 'int4':
      y = await emitNBits(ctx, module, base, x, 4);
      break;
    case 'int8-weight':
      y = await emitNBits(ctx, module, base, x, 8);
      break;
  }
  const biasName = `${module.name}.bias`;
  if (ctx.checkpoint.has(biasName)) y = ctx.g.op('Add', [y, await floatInitializer(ctx, biasName, ctx.floatType)]);
  return y;
}

async function emitFloat(ctx: LinearEmitContext, module: LinearModule, base: string, x: string): Promise<string> {
  const w = await floatInitializer(ctx, `${module.name}.weight`, ctx.floatType, `${base}.weight`);
  return matMulTransB(ctx.g, ctx.target, x, w);
}

/** The declared input-activation args of a module (compressed-tensors group or AutoFP8 scheme). */
function activationArgs(module: LinearModule): QuantArgs | undefined {
  return module.declared?.scheme?.inputActivations;
}

/** Per-row (token) or whole-tensor dynamic scale: max(|x|) / qmax, floored so an all-zero row stays zero. */
function dynamicScale(ctx: LinearEmitContext, x: string, qmax: number, perToken: boolean): string {
  const g = ctx.g;
  const abs = g.op('Abs', [x]);
  let max = perToken ? g.op('ReduceMax', [abs, g.int64s('axes', [-1])], { keepdims: 1 }) : g.op('ReduceMax', [abs], { keepdims: 0 });
  // onnxruntime's CPU ReduceMax returns an empty [0, K] input unreduced, [0, K] instead of [0, 1]: an expert no
  // token is routed to runs on zero rows (moe.ts), so the per-token shape is restated as x's leading dims + [1].
  if (perToken) max = g.op('Reshape', [max, g.op('Concat', [g.op('Slice', [g.op('Shape', [x]), g.int64s('zero', [0]), g.int64s('last', [-1])]), g.int64s('one', [1])], { axis: 0 })]);
  const floored = g.op('Max', [max, floatConstant(ctx, 'tiny', [ctx.floatType === DataType.FLOAT ? 1e-30 : 1e-7])]);
  return g.op('Div', [floored, floatConstant(ctx, 'qmax', [qmax])]);
}

async function scalarInputScale(ctx: LinearEmitContext, module: LinearModule): Promise<number> {
  const values = await readFloats(ctx, `${module.name}.input_scale`);
  if (values.length !== 1) throw new LinearEmitError(module.name, `input_scale has ${values.length} values; only a per-tensor static scale is supported`);
  if (!(values[0]! > 0) || !Number.isFinite(values[0]!)) throw new LinearEmitError(module.name, `input_scale is ${values[0]}, not a positive finite number`);
  return values[0]!;
}

/** Whether an FP8 module quantizes its input activations (static input_scale, or dynamic per token/tensor). */
function quantizesFp8Activations(module: LinearModule): boolean {
  const a = activationArgs(module);
  return Boolean(module.observed?.staticInputScale) || Boolean(a && a.dynamic !== false);
}

/**
 * The FP8 weight [rows, cols] as float values w · scale (one scale, or one per row), streamed chunk by chunk
 * into an initializer of the graph's float type: each E4M3 code decodes exactly to float32 and the float64
 * product with a float32 scale is exact, so storing it into a Float32Array rounds once, as DequantizeLinear
 * does (fp16 graphs round that float32 value once more).
 */
async function expandedFp8Weight(ctx: LinearEmitContext, module: LinearModule, base: string, rows: number, cols: number, scale: Float32Array): Promise<string> {
  const weight = `${module.name}.weight`;
  const perRow = scale.length === rows && scale.length !== 1;
  const chunkBytes = Math.max(cols, Math.floor((ctx.chunkBytes ?? 8 * 1024 * 1024) / 4));
  const floatType = ctx.floatType;
  const chunks = async function* (): AsyncGenerator<Uint8Array> {
    for await (const { offset, bytes } of ctx.checkpoint.chunks(weight, { chunkBytes })) {
      const values = decodeToFloat32('F8_E4M3', bytes);
      if (perRow) {
        // Row by row: `offset` counts elements (one byte each) from the start of the tensor.
        let row = Math.floor(offset / cols);
        let rowEnd = (row + 1) * cols - offset;
        for (let i = 0; i < values.length; row++, rowEnd += cols) {
          const s = scale[row]!;
          const stop = Math.min(rowEnd, values.length);
          for (; i < stop; i++) values[i] = values[i]! * s;
        }
      } else {
        const s = scale[0]!;
        for (let i = 0; i < values.length; i++) values[i] = values[i]! * s;
      }
      yield floatType === DataType.FLOAT ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength) : encodeFromFloat32('F16', values);
    }
  };
  return ctx.g.streamedInitializer(`${base}.weight_expanded`, floatType, [rows, cols], chunks());
}

async function emitFp8(ctx: LinearEmitContext, module: LinearModule, base: string, x: string): Promise<string> {
  const g = ctx.g;
  const [rows, cols] = module.observed!.shape!;
  const weight = `${module.name}.weight`;
  const scale = await readFloats(ctx, `${module.name}.weight_scale`);
  if (ctx.checkpoint.has(`${module.name}.weight_zero_point`)) throw new LinearEmitError(module.name, 'asymmetric FP8 weights (weight_zero_point) are not supported');
  if (scale.length !== 1 && scale.length !== rows) throw new LinearEmitError(module.name, `weight_scale has ${scale.length} values; FP8 needs one (tensor) or ${rows} (channel)`);
  let w: string;
  if ((ctx.fp8Weights ?? defaultFp8Weights(ctx.target)) === 'expand') {
    w = await expandedFp8Weight(ctx, module, base, rows, cols, scale);
  } else {
    const w8 = await g.streamedInitializer(`${base}.weight`, DataType.FLOAT8E4M3FN, [rows, cols], (async function* () {
      for await (const { bytes } of ctx.checkpoint.chunks(weight, { chunkBytes: ctx.chunkBytes ?? 8 * 1024 * 1024 })) yield bytes;
    })());
    if (scale.length === 1) w = g.op('DequantizeLinear', [w8, await floatData(ctx, `${base}.weight_scale`, scale, [])]);
    else w = g.op('DequantizeLinear', [w8, await floatData(ctx, `${base}.weight_scale`, scale, [rows])], { axis: 0 });
  }

  let xq = x;
  const a = activationArgs(module);
  if (module.observed!.staticInputScale) {
    const s = await scalarInputScale(ctx, module);
    const scaleName = floatConstant(ctx, `${base}.input_scale`, [s]);
    const zero = g.constant(`${base}.input_zero`, DataType.FLOAT8E4M3FN, [], new Uint8Array(1));
    xq = g.op('DequantizeLinear', [g.op('QuantizeLinear', [x, scaleName, zero], { saturate: 1 }), scaleName, zero]);
  } else if (a && a.dynamic !== false) {
    if (a.type !== 'float' || a.numBits !== 8) throw new LinearEmitError(module.name, `FP8 weights with ${a.type}${a.numBits} dynamic activations are not supported`);
    const s = dynamicScale(ctx, x, 448, a.strategy === 'token');
    const q = g.op('Cast', [g.op('Div', [x, s])], { to: DataType.FLOAT8E4M3FN, saturate: 1 });
    xq = g.op('Mul', [g.op('Cast', [q], { to: ctx.floatType }), s]);
  }
  return matMulTransB(g, ctx.target, xq, w);
}

async function emitInt8(ctx: LinearEmitContext, module: LinearModule, base: string, x: string): Promise<string> {
  const g = ctx.g;
  const [rows, cols] = module.observed!.shape!;
  const raw = await ctx.checkpoint.readTensorBytes(`${module.name}.weight`, { maxBytes: 2 ** 31 });
  // MatMulInteger wants B as [K, N]: transpose the int8 weight once, here (u8u8: shifted by 128 on the way).
  const unsigned = ctx.int8Kernel === 'u8u8';
  // s8s8 (CUDA): activations stay int8, zero point 0; u8s8 / u8u8: activations shifted by 128 into uint8.
  const signedActivations = ctx.int8Kernel === 's8s8';
  const flip = unsigned ? 0x80 : 0;
  const transposed = new Uint8Array(rows * cols);
  // 64×64 tiles keep both the reads and the strided writes in cache.
  const TILE = 64;
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = c0; c < c1; c++) transposed[c * rows + r] = raw[row + c]! ^ flip;
      }
    }
  }
  const wT = await g.initializer(`${base}.weight_t`, unsigned ? DataType.UINT8 : DataType.INT8, [cols, rows], transposed);
  const scale = await readFloats(ctx, `${module.name}.weight_scale`);
  if (scale.length !== 1 && scale.length !== rows) throw new LinearEmitError(module.name, `weight_scale has ${scale.length} values; INT8 needs one (tensor) or ${rows} (channel)`);
  const weightScale = await floatData(ctx, `${base}.weight_scale`, scale, scale.length === 1 ? [] : [rows]);
  let weightZero: string | undefined;
  if (ctx.checkpoint.has(`${module.name}.weight_zero_point`)) {
    const zp = await ctx.checkpoint.readTensorBytes(`${module.name}.weight_zero_point`);
    if (zp.length !== 1 && zp.length !== rows) throw new LinearEmitError(module.name, `weight_zero_point has ${zp.length} values; ${rows} or 1 expected`);
    weightZero = await g.initializer(`${base}.weight_zero_point`, unsigned ? DataType.UINT8 : DataType.INT8, zp.length === 1 ? [] : [rows], zp.map((v) => v ^ flip));
  } else if (unsigned) {
    weightZero = g.constant('zero_point_128', DataType.UINT8, [], Uint8Array.of(128));
  }

  const a = activationArgs(module);
  let u8: string;
  let activationZero: string;
  let tokenScale: string;
  if (module.observed!.staticInputScale) {
    const s = await scalarInputScale(ctx, module);
    let zp = 0;
    if (ctx.checkpoint.has(`${module.name}.input_zero_point`)) {
      const zpBytes = await ctx.checkpoint.readTensorBytes(`${module.name}.input_zero_point`);
      zp = new Int8Array(zpBytes.buffer, zpBytes.byteOffset, 1)[0]!;
    }
    // round(x / s) + zp clipped to int8 (s8s8), or shifted by 128 into uint8: one QuantizeLinear with zero point zp or 128 + zp.
    tokenScale = floatConstant(ctx, `${base}.input_scale`, [s]);
    activationZero = signedActivations
      ? g.constant(`${base}.input_zero_s8`, DataType.INT8, [], Int8Array.of(zp))
      : g.constant(`${base}.input_zero_u8`, DataType.UINT8, [], Uint8Array.of(128 + zp));
    u8 = g.op('QuantizeLinear', [x, tokenScale, activationZero]);
  } else if (a && a.dynamic !== false) {
    if (a.type !== 'int' || a.numBits !== 8 || !a.symmetric) throw new LinearEmitError(module.name, `INT8 weights with ${a.symmetric ? '' : 'asymmetric '}${a.type}${a.numBits} dynamic activations are not supported`);
    tokenScale = dynamicScale(ctx, x, 127, a.strategy === 'token');
    const q = g.op('Clip', [g.op('Round', [g.op('Div', [x, tokenScale])]), floatConstant(ctx, 'qmin', [-128]), floatConstant(ctx, 'qmax', [127])]);
    if (signedActivations) {
      u8 = g.op('Cast', [q], { to: DataType.INT8 });
      activationZero = g.constant('zero_point_s8', DataType.INT8, [], Int8Array.of(0));
    } else {
      u8 = g.op('Cast', [g.op('Add', [q, floatConstant(ctx, 'shift', [128])])], { to: DataType.UINT8 });
      activationZero = g.constant('zero_point_128', DataType.UINT8, [], Uint8Array.of(128));
    }
  } else {
    throw new LinearEmitError(module.name, 'INT8 weights without activation quantization (W8A16) are not supported: the checkpoint declares no input activations');
  }
  const inputs = [u8, wT, activationZero];
  if (weightZero) inputs.push(weightZero);
  const acc = g.op('MatMulInteger', inputs);
  const accFloat = g.op('Cast', [acc], { to: ctx.floatType });
  return g.op('Mul', [g.op('Mul', [accFloat, tokenScale]), weightScale]);
}

/**
 * Packs unsigned `bits`-bit values [N, K] into MatMulNBits' B [N, K/block, block·bits/8]: 4 bits two to a byte
 * (low nibble = even k), 8 bits one to a byte.
 */
function packNBitRows(values: (n: number, k: number) => number, rows: number, cols: number, bits: 4 | 8): Uint8Array {
  const out = new Uint8Array((rows * cols * bits) / 8);
  let at = 0;
  for (let n = 0; n < rows; n++) {
    if (bits === 8) for (let k = 0; k < cols; k++) out[at++] = values(n, k) & 255;
    else for (let k = 0; k < cols; k += 2) out[at++] = (values(n, k) & 15) | ((values(n, k + 1) & 15) << 4);
  }
  return out;
}

async function emitNBits(ctx: LinearEmitContext, module: LinearModule, base: string, x: string, bits: 4 | 8): Promise<string> {
  const g = ctx.g;
  const observed = module.observed!;
  const has = (suffix: string) => ctx.checkpoint.has(`${module.name}.${suffix}`);
  let rows: number;
  let cols: number;
  /** Unsigned codes q[n, k] ∈ [0, 2^bits), zero points z[n, group] likewise, scales s[n, group]. */
  let code: (n: number, k: number) => number;
  let zeros: ((n: number, group: number) => number) | undefined;
  let scales: Float32Array;
  let scaleRowMajorNG: boolean;
  let groups: number;
  let gIdx: Int32Array | undefined;
  /** The checkpoint tensor whose bytes are B as they stand (CT pack-quantized, K a multiple of 8). */
  let packedBytes: string | undefined;

  if (observed.kind === 'gptq') {
    if (observed.bits !== 4 || !observed.shape) throw new LinearEmitError(module.name, `GPTQ with ${observed.bits ?? 'unknown'} bits is not supported (4-bit only)`);
    [rows, cols] = observed.shape;
    const layer = {
      bits: 4,
      inFeatures: cols,
      outFeatures: rows,
      qweight: await readInt32(ctx, `${module.name}.qweight`),
      qzeros: await readInt32(ctx, `${module.name}.qzeros`),
      scales: await readFloats(ctx, `${module.name}.scales`),
      gIdx: await readInt32(ctx, `${module.name}.g_idx`),
    };
    const unpacked = unpackGptqLayer(layer, ctx.gptqFormat ?? 'gptq');
    groups = unpacked.groups;
    const q = unpacked.q; // [K, N]
    const z = unpacked.zeros; // [G, N]
    code = (n, k) => q[k * rows + n]!;
    zeros = (n, grp) => z[grp * rows + n]!;
    scales = layer.scales; // [G, N]
    scaleRowMajorNG = false;
    gIdx = layer.gIdx;
  } else {
    const shapeBytes = await ctx.checkpoint.readTensorBytes(`${module.name}.weight_shape`);
    if (shapeBytes.length !== 16) throw new LinearEmitError(module.name, 'weight_shape must hold two int64 values');
    const shape = new BigInt64Array(shapeBytes.buffer.slice(shapeBytes.byteOffset, shapeBytes.byteOffset + 16));
    rows = Number(shape[0]);
    cols = Number(shape[1]);
    const packed = ctx.checkpoint.tensor(`${module.name}.weight_packed`);
    const perWord = 32 / bits;
    if (packed.shape[1] !== Math.ceil(cols / perWord)) throw new LinearEmitError(module.name, `weight_packed [${packed.shape.join(', ')}] does not hold ${bits}-bit values for ${cols} input features (4- and 8-bit pack-quantized are supported)`);
    if (cols % perWord === 0) packedBytes = packed.name;
    // Unpacked only when the columns must be reordered (act-order); see the zero-copy path below.
    let q: Int8Array | undefined;
    const unpacked = async () => (q ??= unpackFromInt32(await readInt32(ctx, packed.name), rows, cols, bits, 1)); // signed, [N, K]
    if (cols % perWord !== 0 || has('weight_g_idx')) await unpacked();
    const offset = 1 << (bits - 1);
    code = (n, k) => q![n * cols + k]! + offset;
    scales = await readFloats(ctx, `${module.name}.weight_scale`);
    const scaleShape = ctx.checkpoint.tensor(`${module.name}.weight_scale`).shape;
    groups = scaleShape.length === 2 ? scaleShape[1]! : 1;
    scaleRowMajorNG = true;
    if (has('weight_zero_point')) {
      const zp = unpackFromInt32(await readInt32(ctx, `${module.name}.weight_zero_point`), rows, groups, bits, 0);
      zeros = (n, grp) => zp[n * groups + grp]! + offset;
    }
    if (has('weight_g_idx')) gIdx = await readInt32(ctx, `${module.name}.weight_g_idx`);
  }

  // Column order: act-order checkpoints give every input column a group; sorting columns by group makes the
  // groups contiguous, and the activations are gathered in the same order.
  let order: Int32Array | undefined;
  let groupSize = Math.ceil(cols / groups);
  if (gIdx) {
    if (gIdx.length !== cols) throw new LinearEmitError(module.name, `g_idx has ${gIdx.length} entries for ${cols} input features`);
    const sorted = Int32Array.from({ length: cols }, (_, i) => i).sort((a, b) => gIdx![a]! - gIdx![b]! || a - b);
    const trivial = sorted.every((v, i) => v === i);
    for (let j = 0; j < cols; j++) {
      if (gIdx[sorted[j]!] !== Math.floor(j / groupSize)) {
        throw new LinearEmitError(module.name, `g_idx does not assign exactly ${groupSize} columns to each of the ${groups} groups (column ${sorted[j]} is in group ${gIdx[sorted[j]!]})`);
      }
    }
    if (!trivial) order = sorted;
  }
  // MatMulNBits blocks are a power of two ≥ 16; a per-channel (one group) layer repeats its scale per block.
  let block = groupSize;
  let repeat = 1;
  if (groups === 1 && cols % 128 === 0) {
    block = 128;
    repeat = cols / 128;
    groupSize = 128;
  }
  if (block < 16 || (block & (block - 1)) !== 0 || cols % block !== 0) {
    throw new LinearEmitError(module.name, `group size ${groupSize} over ${cols} input features is not a power-of-two block ≥ 16 that divides them`);
  }
  const blocks = cols / block;
  const col = order ? (k: number) => order![k]! : (k: number) => k;
  const groupOfBlock = (b: number) => Math.floor(b / repeat);
  // compressed-tensors packs u = q + 2^(bits−1) to int32 words, low bits first, along K: without a column
  // permutation its bytes already are MatMulNBits' B, so they stream straight from the checkpoint.
  const B = packedBytes && !order ? undefined : packNBitRows((n, k) => code(n, col(k)), rows, cols, bits);
  const S = new Float32Array(rows * blocks);
  for (let n = 0; n < rows; n++) {
    for (let b = 0; b < blocks; b++) {
      const grp = groupOfBlock(b);
      S[n * blocks + b] = scaleRowMajorNG ? scales[n * groups + grp]! : scales[grp * rows + n]!;
    }
  }
  const bName = B
    ? await g.initializer(`${base}.qweight_nbits`, DataType.UINT8, [rows, blocks, (block * bits) / 8], B)
    : await g.streamedInitializer(`${base}.qweight_nbits`, DataType.UINT8, [rows, blocks, (block * bits) / 8], (async function* () {
        for await (const { bytes } of ctx.checkpoint.chunks(packedBytes!, { chunkBytes: ctx.chunkBytes ?? 8 * 1024 * 1024 })) yield bytes;
      })());
  const inputs = [x, bName, await floatData(ctx, `${base}.scales`, S, [rows, blocks])];
  if (zeros) {
    const zpBytes = Math.ceil((blocks * bits) / 8);
    const Z = new Uint8Array(rows * zpBytes);
    for (let n = 0; n < rows; n++) {
      for (let b = 0; b < blocks; b++) {
        if (bits === 8) {
          Z[n * zpBytes + b] = zeros(n, groupOfBlock(b)) & 255;
          continue;
        }
        const at = n * zpBytes + (b >> 1);
        Z[at] = Z[at]! | ((zeros(n, groupOfBlock(b)) & 15) << ((b & 1) * 4));
      }
    }
    inputs.push(await g.initializer(`${base}.zero_points`, DataType.UINT8, [rows * zpBytes], Z));
  }
  const input = order ? g.op('Gather', [x, await g.initializer(`${base}.act_order`, DataType.INT64, [cols], BigInt64Array.from(order, (v) => BigInt(v)))], { axis: -1 }) : x;
  inputs[0] = input;
  return g.op('MatMulNBits', inputs, { K: cols, N: rows, bits, block_size: block, accuracy_level: ctx.int4AccuracyLevel }, 'com.microsoft');
}

