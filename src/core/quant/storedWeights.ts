/**
 * Dequantizes the weight of one linear module as a checkpoint stores it — float, compressed-tensors
 * int-/float-/pack-quantized (with zero points and g_idx), FP8 block scales, NVFP4 / MXFP4 (fp4Weights.ts) or
 * GPTQ (v1/v2) — into float32
 * [out, in], either whole (`dequantizeStoredWeight`) or in blocks of rows (`openStoredWeight`), which read only
 * those rows' codes: the memory bound is then one block plus the layer's scales, zero points and g_idx.
 * GPTQ stores the weight transposed ([in, out] packed along in), so a block of output rows needs every
 * packed word: that layout is dequantized whole on the first read (the bound is that layer's size).
 *
 * Every value is (q − zero) · scale with the scale and zero point as float32 (exact for every scale dtype
 * a checkpoint uses), rounded once to float32: the same numbers whichever block size reads them.
 */
import { bytesForElements, decodeToFloat32 } from '../dtypes/convert';
import { DTYPE_INFO } from '../dtypes/dtype';
import { E4M3_TO_F32 } from '../dtypes/float';
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LinearModule } from '../checkpoint/scheme';
import type { QuantArgs } from './args';
import { unpackFromInt32 } from './pack';
import { Fp4LayoutError, decodeFp4Rows, e8m0Value, openFp4Layout } from './fp4Weights';
import { GptqCheckpointFormat, GptqFormatError, checkGptqGroups, unpackGptqQweight, unpackGptqQzeros } from './gptqFormat';

export class DequantizeError extends Error {}

/** What dequantization reads: a Checkpoint, or the tensors a job has just written (jobs/writtenLayer.ts). */
export type TensorSource = Pick<Checkpoint, 'has' | 'tensor' | 'readTensorBytes' | 'readTensorRange'>;

async function floats(checkpoint: TensorSource, name: string): Promise<Float32Array> {
  const tensor = checkpoint.tensor(name);
  return decodeToFloat32(tensor.dtype, await checkpoint.readTensorBytes(name));
}

async function ints(checkpoint: TensorSource, name: string): Promise<Int32Array> {
  const tensor = checkpoint.tensor(name);
  if (tensor.dtype !== 'I32') throw new DequantizeError(`${name}: expected I32, found ${tensor.dtype}`);
  const bytes = await checkpoint.readTensorBytes(name);
  return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/**
 * The block of a 2-D scale [s0, s1] over a [rows, cols] weight when no config declares it: 128 × 128 (every
 * FP8 block checkpoint published: DeepSeek-V3/R1, Qwen3 -FP8, compressed-tensors FP8_BLOCK) when the scale
 * has that shape, else the smallest block that covers the weight.
 */
function inferredBlock(s0: number, s1: number, rows: number, cols: number): readonly [number, number] {
  if (Math.ceil(rows / 128) === s0 && Math.ceil(cols / 128) === s1) return [128, 128];
  return [Math.ceil(rows / s0), Math.ceil(cols / s1)];
}

/** Which scale cell covers element (r, c), from the scale's shape (and the declared block structure). Shared with the streamed statistics (stats/weightStats.ts). */
export function cellMapper(scaleShape: readonly number[], rows: number, cols: number, block?: readonly [number, number], gIdx?: Int32Array): (r: number, c: number) => number {
  const numel = scaleShape.reduce((a, b) => a * b, 1);
  if (numel === 1) return () => 0;
  const [s0, s1 = 1] = scaleShape;
  if (block || (s0 !== rows && s0! > 0)) {
    const [br, bc] = block ?? inferredBlock(s0!, s1, rows, cols);
    return (r, c) => Math.floor(r / br) * s1 + Math.floor(c / bc);
  }
  if (s1 === 1) return (r) => r;
  if (gIdx) return (r, c) => r * s1 + gIdx[c]!;
  const gs = Math.ceil(cols / s1);
  return (r, c) => r * s1 + Math.floor(c / gs);
}

/**
 * Where each element's scale cell is, without a call per element: cell(r, c) = ⌊r / rowDiv⌋ · rowStride +
 * colCell[c], the same mapping as `cellMapper`.
 */
interface CellLayout {
  readonly rowDiv: number;
  readonly rowStride: number;
  readonly colCell: Int32Array;
}

function cellLayout(scaleShape: readonly number[], rows: number, cols: number, block?: readonly [number, number], gIdx?: Int32Array): CellLayout {
  const colCell = new Int32Array(cols);
  const numel = scaleShape.reduce((a, b) => a * b, 1);
  if (numel === 1) return { rowDiv: 1, rowStride: 0, colCell };
  const [s0, s1 = 1] = scaleShape;
  if (block || (s0 !== rows && s0! > 0)) {
    const [br, bc] = block ?? inferredBlock(s0!, s1, rows, cols);
    for (let c = 0; c < cols; c++) colCell[c] = Math.floor(c / bc);
    return { rowDiv: br, rowStride: s1, colCell };
  }
  if (s1 === 1) return { rowDiv: 1, rowStride: 1, colCell };
  if (gIdx) colCell.set(gIdx.subarray(0, cols));
  else {
    const gs = Math.ceil(cols / s1);
    for (let c = 0; c < cols; c++) colCell[c] = Math.floor(c / gs);
  }
  return { rowDiv: 1, rowStride: s1, colCell };
}

/** Throws when some element of the [rows, cols] weight maps outside the `cells` scale values. */
function checkCoverage(layout: CellLayout, rows: number, cols: number, cells: number, what: string): void {
  if (rows === 0 || cols === 0) return;
  let maxCol = 0;
  let minCol = 0;
  for (let c = 0; c < cols; c++) {
    const k = layout.colCell[c]!;
    if (k > maxCol) maxCol = k;
    if (k < minCol) minCol = k;
  }
  const last = Math.floor((rows - 1) / layout.rowDiv) * layout.rowStride + maxCol;
  if (minCol < 0 || last >= cells) throw new DequantizeError(`${what} does not cover the weight [${rows}, ${cols}] (element cell ${minCol < 0 ? minCol : last} of ${cells})`);
}

/** A quantized (or float) linear weight, dequantized a block of rows at a time. */
export interface StoredWeightRows {
  /** Logical [out, in]. */
  readonly rows: number;
  readonly cols: number;
  /** Dequantizes rows [r0, r1) into out[0, (r1 − r0) · cols); returns that prefix of `out`. */
  read(r0: number, r1: number, out: Float32Array): Promise<Float32Array>;
  /**
   * The same in two steps, so that one file read can feed several smaller (cache-sized) decodes: `load`
   * reads the stored rows [r0, r1); `decode` dequantizes rows [s0, s1) within them into
   * out[0, (s1 − s0) · cols) and returns that prefix.
   */
  load(r0: number, r1: number): Promise<void>;
  decode(s0: number, s1: number, out: Float32Array): Float32Array;
  /**
   * Present for int8 codes (compressed-tensors int- and pack-quantized) whose scale cells are runs of
   * consecutive elements of the row-major weight (per tensor, per channel, groups without g_idx): then
   * `decodeCodes` gives rows [s0, s1) of those loaded as their codes, and the scales and zero points (as
   * values) of the cells covering them, in order — (code − zero) · scale of cell ⌊i / cellLen⌋ is what
   * `decode` gives — for callers that reconstruct the values themselves.
   */
  readonly codeRuns?: CodeRuns;
  decodeCodes?(s0: number, s1: number, codes: Int8Array, scale: Float32Array, zero: Float32Array): void;
}

export interface CodeRuns {
  /** Elements per scale cell (per tensor: the whole weight). */
  readonly cellLen: number;
  /** Cells per row (per tensor: 0, the one cell serves every row). */
  readonly cellsPerRow: number;
  readonly hasZero: boolean;
}

/** The runs `layout` describes, if its cells are runs of consecutive elements (see StoredWeightRows.codeRuns). */
function codeRuns(layout: CellLayout, rows: number, cols: number, cells: number, hasZero: boolean, zero: ArrayLike<number>): CodeRuns | undefined {
  const { rowDiv, rowStride, colCell } = layout;
  // Integer zero points keep code − zero exact in float32 (the reconstruction's arithmetic).
  for (let k = 0; k < cells; k++) if (!(Number.isInteger(zero[k]) && Math.abs(zero[k]!) <= 256)) return undefined;
  if (cells === 1 && rowStride === 0) return { cellLen: Math.max(1, rows * cols), cellsPerRow: 0, hasZero };
  if (rowDiv !== 1 || rowStride < 1 || cols % rowStride !== 0) return undefined;
  const gs = cols / rowStride;
  for (let c = 0; c < cols; c++) if (colCell[c] !== Math.floor(c / gs)) return undefined;
  return { cellLen: gs, cellsPerRow: rowStride, hasZero };
}

/** Throws unless rows [s0, s1) are within those `weight` loaded last (decoding no rows checks that). */
function checkLoaded(weight: StoredWeightRows, s0: number, s1: number): void {
  const none = new Float32Array(0);
  weight.decode(s0, s0, none);
  weight.decode(s1, s1, none);
}

/**
 * `weight` with decodeCodes when its codes come in runs of one scale cell (`runs`): `copyCodes` puts the
 * int8 codes of loaded rows [s0, s1) into `codes`; the cells' scales and zero points come from `runs`.
 */
function withCodeRuns(
  weight: StoredWeightRows,
  runs: CodeRuns | undefined,
  scaleAll: Float32Array,
  zeroAll: ArrayLike<number>,
  copyCodes: (s0: number, s1: number, codes: Int8Array) => void,
): StoredWeightRows {
  if (!runs) return weight;
  return {
    ...weight,
    codeRuns: runs,
    decodeCodes(s0, s1, codes, cellScale, cellZero) {
      checkLoaded(weight, s0, s1);
      copyCodes(s0, s1, codes);
      cellsOf(runs, s0, s1, scaleAll, zeroAll, cellScale, cellZero);
    },
  };
}

/** Scales and zero points of the cells covering rows [s0, s1) under `runs`, into `scale` and `zero`. */
function cellsOf(runs: CodeRuns, s0: number, s1: number, scaleAll: Float32Array, zeroAll: ArrayLike<number>, scale: Float32Array, zero: Float32Array): void {
  const first = s0 * runs.cellsPerRow;
  const count = runs.cellsPerRow === 0 ? 1 : (s1 - s0) * runs.cellsPerRow;
  scale.set(scaleAll.subarray(first, first + count));
  for (let k = 0; k < count; k++) zero[k] = zeroAll[first + k]!;
}

/** A StoredWeightRows from its two steps (`decode` gets the first loaded row too). */
function twoStep(name: string, rows: number, cols: number, load: (r0: number, r1: number) => Promise<void>, decode: (s0: number, s1: number, out: Float32Array, r0: number) => void): StoredWeightRows {
  let loaded0 = 0;
  let loaded1 = 0;
  const weight: StoredWeightRows = {
    rows,
    cols,
    async load(r0, r1) {
      checkRows(name, rows, r0, r1, undefined, cols);
      await load(r0, r1);
      loaded0 = r0;
      loaded1 = r1;
    },
    decode(s0, s1, out) {
      if (!(s0 >= loaded0 && s1 <= loaded1 && s0 <= s1)) throw new DequantizeError(`${name}: rows [${s0}, ${s1}) are not within the rows loaded [${loaded0}, ${loaded1})`);
      checkRows(name, rows, s0, s1, out, cols);
      decode(s0, s1, out, loaded0);
      return out.subarray(0, (s1 - s0) * cols);
    },
    async read(r0, r1, out) {
      checkRows(name, rows, r0, r1, out, cols);
      await weight.load(r0, r1);
      return weight.decode(r0, r1, out);
    },
  };
  return weight;
}

/** A byte buffer that grows to the largest block asked for and is then reused. */
class ByteBuffer {
  private buffer = new Uint8Array(0);
  get(length: number): Uint8Array {
    if (this.buffer.length < length) this.buffer = new Uint8Array(length);
    return this.buffer;
  }
}

function checkRows(name: string, rows: number, r0: number, r1: number, out: Float32Array | undefined, cols: number): void {
  if (!(Number.isSafeInteger(r0) && Number.isSafeInteger(r1) && 0 <= r0 && r0 <= r1 && r1 <= rows)) throw new DequantizeError(`${name}: rows [${r0}, ${r1}) are outside the weight's ${rows} rows`);
  if (out && out.length < (r1 - r0) * cols) throw new DequantizeError(`${name}: the output holds ${out.length} values, rows [${r0}, ${r1}) need ${(r1 - r0) * cols}`);
}

/**
 * Opens the weight of `module` for dequantizing in row blocks. Reads the scales, zero points and g_idx
 * (small) now and the codes of each block on `read`. `declared` (the config's weight args) resolves what
 * shapes alone cannot (bits of a packed weight, a block structure); `gptqFormat` is the checkpoint_format.
 */
export async function openStoredWeight(
  checkpoint: TensorSource,
  module: LinearModule,
  options: { declared?: QuantArgs; gptqFormat?: GptqCheckpointFormat; slabElements?: number } = {},
): Promise<StoredWeightRows> {
  const observed = module.observed;
  const name = module.name;
  if (!observed) throw new DequantizeError(`${name}: no weight in this checkpoint`);
  const has = (suffix: string) => checkpoint.has(`${name}.${suffix}`);
  const bytes = new ByteBuffer();
  switch (observed.kind) {
    case 'float': {
      const [rows, cols] = observed.shape!;
      const weightName = `${name}.weight`;
      const dtype = checkpoint.tensor(weightName).dtype;
      if (DTYPE_INFO[dtype].bits % 8 !== 0) {
        // Sub-byte floats (F4/F6) do not split on row boundaries in general: decode whole, hand out rows.
        let whole: Float32Array | undefined;
        return twoStep(
          weightName,
          rows,
          cols,
          async () => {
            whole ??= await floats(checkpoint, weightName);
          },
          (s0, s1, out) => out.set(whole!.subarray(s0 * cols, s1 * cols)),
        );
      }
      const rowBytes = bytesForElements(dtype, cols);
      let raw: Uint8Array = new Uint8Array(0);
      return twoStep(
        weightName,
        rows,
        cols,
        async (r0, r1) => {
          raw = await checkpoint.readTensorRange(weightName, r0 * rowBytes, r1 * rowBytes, bytes.get((r1 - r0) * rowBytes));
        },
        (s0, s1, out, r0) => decodeToFloat32(dtype, raw.subarray((s0 - r0) * rowBytes, (s1 - r0) * rowBytes), out),
      );
    }
    case 'ct-int':
    case 'ct-fp8':
    case 'fp8-block': {
      const [rows, cols] = observed.shape!;
      const weightTensor = checkpoint.tensor(`${name}.weight`);
      if (DTYPE_INFO[weightTensor.dtype].bits !== 8) throw new DequantizeError(`${weightTensor.name}: expected 8-bit codes (I8 or F8_E4M3), found ${weightTensor.dtype}`);
      const scaleName = has('weight_scale_inv') ? 'weight_scale_inv' : 'weight_scale';
      // MXFP8 (mxfp8-quantized) stores E8M0 exponents as U8 beside F8_E4M3 codes: 2^(e − 127) (docs/formats.md §3.13).
      const scaleTensor = checkpoint.tensor(`${name}.${scaleName}`);
      const scale = scaleTensor.dtype === 'U8' && weightTensor.dtype === 'F8_E4M3' ? Float32Array.from(await checkpoint.readTensorBytes(scaleTensor.name), e8m0Value) : await floats(checkpoint, `${name}.${scaleName}`);
      const scaleShape = checkpoint.tensor(`${name}.${scaleName}`).shape;
      const zp = has('weight_zero_point') ? await floats(checkpoint, `${name}.weight_zero_point`) : new Float32Array(scale.length);
      if (zp.length < scale.length) throw new DequantizeError(`${name}.weight_zero_point: ${zp.length} values, but ${scaleName} has ${scale.length}`);
      const gIdx = has('weight_g_idx') ? await ints(checkpoint, `${name}.weight_g_idx`) : undefined;
      const block = options.declared?.strategy === 'block' ? options.declared.blockStructure : undefined;
      const layout = cellLayout(scaleShape, rows, cols, block, gIdx);
      checkCoverage(layout, rows, cols, scale.length, `${name}.${scaleName} [${scaleShape.join(', ')}]`);
      // The value of every 8-bit code: E4M3 for FP8 weights, the signed byte otherwise.
      const codeValue = weightTensor.dtype === 'F8_E4M3' ? E4M3_TO_F32 : Float32Array.from({ length: 256 }, (_, b) => (b << 24) >> 24);
      const { rowDiv, rowStride, colCell } = layout;
      const oneCellPerRow = colCell.every((k) => k === 0);
      const rowValues = new Float32Array(256);
      let raw: Uint8Array = new Uint8Array(0);
      let loaded0 = 0;
      const runs = weightTensor.dtype === 'I8' ? codeRuns(layout, rows, cols, scale.length, has('weight_zero_point'), zp) : undefined;
      const weight = twoStep(
        weightTensor.name,
        rows,
        cols,
        async (r0, r1) => {
          raw = await checkpoint.readTensorRange(weightTensor.name, r0 * cols, r1 * cols, bytes.get((r1 - r0) * cols));
          loaded0 = r0;
        },
        (s0, s1, out, r0) => {
          const codes = raw;
          for (let r = s0, i = 0, j = (s0 - r0) * cols; r < s1; r++) {
            const base = Math.floor(r / rowDiv) * rowStride;
            if (oneCellPerRow) {
              // Per channel / per tensor: one scale and zero point for the whole row, so the row's 256
              // possible values are computed once (the same float32 values) and the codes look them up.
              const z = zp[base]!;
              const sc = scale[base]!;
              for (let b = 0; b < 256; b++) rowValues[b] = (codeValue[b]! - z) * sc;
              for (let c = 0; c < cols; c++, i++, j++) out[i] = rowValues[codes[j]!]!;
              continue;
            }
            for (let c = 0; c < cols; c++, i++, j++) {
              const k = base + colCell[c]!;
              out[i] = (codeValue[codes[j]!]! - zp[k]!) * scale[k]!;
            }
          }
        },
      );
      return withCodeRuns(weight, runs, scale, zp, (s0, s1, codes) => codes.set(new Int8Array(raw.buffer, raw.byteOffset + (s0 - loaded0) * cols, (s1 - s0) * cols)));
    }
    case 'ct-packed': {
      const shapeBytes = await checkpoint.readTensorBytes(`${name}.weight_shape`);
      const shape = new BigInt64Array(shapeBytes.buffer.slice(shapeBytes.byteOffset, shapeBytes.byteOffset + 16));
      const rows = Number(shape[0]);
      const cols = Number(shape[1]);
      const packedTensor = checkpoint.tensor(`${name}.weight_packed`);
      const packedCols = packedTensor.shape[1]!;
      const bits = options.declared?.numBits ?? [4, 8, 2, 3, 5, 6, 7, 1].find((b) => Math.ceil((cols * b) / 32) === packedCols);
      if (!bits) throw new DequantizeError(`${name}: cannot tell the bit width of weight_packed [${packedTensor.shape.join(', ')}] for ${cols} input features`);
      if (packedTensor.dtype !== 'I32' || packedTensor.shape.length !== 2 || packedTensor.shape[0] !== rows || packedCols !== Math.ceil((cols * bits) / 32)) {
        throw new DequantizeError(`${packedTensor.name}: expected I32 [${rows}, ${Math.ceil((cols * bits) / 32)}] for ${bits}-bit weights [${rows}, ${cols}], found ${packedTensor.dtype} [${packedTensor.shape.join(', ')}]`);
      }
      const scale = await floats(checkpoint, `${name}.weight_scale`);
      const scaleShape = checkpoint.tensor(`${name}.weight_scale`).shape;
      const groups = scaleShape.length === 2 ? scaleShape[1]! : 1;
      const zp = has('weight_zero_point') ? unpackFromInt32(await ints(checkpoint, `${name}.weight_zero_point`), rows, groups, bits, 0) : new Int8Array(scale.length);
      const gIdx = has('weight_g_idx') ? await ints(checkpoint, `${name}.weight_g_idx`) : undefined;
      const layout = cellLayout(scaleShape, rows, cols, undefined, gIdx);
      checkCoverage(layout, rows, cols, Math.min(scale.length, zp.length), `${name}.weight_scale [${scaleShape.join(', ')}]`);
      const { rowDiv, rowStride, colCell } = layout;
      const rowBytes = packedCols * 4;
      let q = new Int8Array(0);
      let words: Int32Array = new Int32Array(0);
      let loaded0 = 0;
      const runs = codeRuns(layout, rows, cols, Math.min(scale.length, zp.length), has('weight_zero_point'), zp);
      const weight = twoStep(
        packedTensor.name,
        rows,
        cols,
        async (r0, r1) => {
          const raw = await checkpoint.readTensorRange(packedTensor.name, r0 * rowBytes, r1 * rowBytes, bytes.get((r1 - r0) * rowBytes));
          // A fresh ByteBuffer allocation starts at offset 0, so its int32 view is aligned.
          words = new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
          loaded0 = r0;
        },
        (s0, s1, out, r0) => {
          if (q.length < (s1 - s0) * cols) q = new Int8Array((s1 - s0) * cols);
          const codes = q;
          unpackFromInt32(words.subarray((s0 - r0) * packedCols, (s1 - r0) * packedCols), s1 - s0, cols, bits, 1, codes);
          for (let r = s0, i = 0; r < s1; r++) {
            const base = Math.floor(r / rowDiv) * rowStride;
            for (let c = 0; c < cols; c++, i++) {
              const k = base + colCell[c]!;
              out[i] = (codes[i]! - zp[k]!) * scale[k]!;
            }
          }
        },
      );
      return withCodeRuns(weight, runs, scale, zp, (s0, s1, codes) =>
        unpackFromInt32(words.subarray((s0 - loaded0) * packedCols, (s1 - loaded0) * packedCols), s1 - s0, cols, bits, 1, codes),
      );
    }
    case 'nvfp4':
    case 'mxfp4': {
      const layout = await openFp4Layout(checkpoint, module).catch((error: unknown) => {
        throw error instanceof Fp4LayoutError ? new DequantizeError(error.message) : error;
      });
      let raw: Uint8Array = new Uint8Array(0);
      return twoStep(
        layout.packedName,
        layout.rows,
        layout.cols,
        async (r0, r1) => {
          raw = await layout.readBytes(r0, r1, bytes.get(((r1 - r0) * layout.cols) / 2));
        },
        // e2m1(code) · scale in float64, rounded once to float32.
        (s0, s1, out, r0) => decodeFp4Rows(layout, raw.subarray(((s0 - r0) * layout.cols) / 2), s0, s1, out),
      );
    }
    case 'gptq':
      return openGptqWeight(checkpoint, name, observed.shape ?? [0, 0], observed.bits, options.gptqFormat ?? 'gptq', options.slabElements ?? GPTQ_SLAB_ELEMENTS);
    default:
      throw new DequantizeError(`${name}: dequantizing ${observed.kind} weights is not supported`);
  }
}

/** Codes of a GPTQ weight unpacked at a time (see openGptqWeight): 8 MiB of codes, 4 MiB of 4-bit words. */
const GPTQ_SLAB_ELEMENTS = 8 * 1024 * 1024;
/** Strided reads of a GPTQ slab in flight at once (positional reads of one file handle). */
const GPTQ_READS_IN_FLIGHT = 16;

/**
 * A GPTQ weight in row blocks of W [N, K] (out × in), without dequantizing the layer whole. GPTQ stores the
 * codes transposed, qweight [K·bits/32, N]: the rows of W are columns of qweight. A load reads a slab of
 * qweight's columns [c0, c1) — one strided read per packed row, every read (c1 − c0) words — wide enough
 * that the slab holds about `slabElements` codes, and unpacks it to codes [K, c1 − c0]; the row blocks
 * that follow, up to c1, decode from it. Memory is the slab and the scales / zero points / g_idx (small),
 * independent of the layer's size: a 70B MLP weight is 235 M values.
 */
async function openGptqWeight(checkpoint: TensorSource, name: string, shape: readonly number[], bits: number | undefined, format: GptqCheckpointFormat, slabElements: number): Promise<StoredWeightRows> {
  const [N, K] = [shape[0] ?? 0, shape[1] ?? 0];
  if (!bits || N === 0 || K === 0) throw new DequantizeError(`${name}: cannot tell the GPTQ layout (bits/in_features) from qweight and g_idx`);
  const qweightName = `${name}.qweight`;
  const qweight = checkpoint.tensor(qweightName);
  const packedRows = (K * bits) / 32;
  if (qweight.dtype !== 'I32' || qweight.shape.length !== 2 || qweight.shape[0] !== packedRows || qweight.shape[1] !== N) {
    throw new DequantizeError(`${qweightName}: expected I32 [${packedRows}, ${N}] for ${bits}-bit weights [${N}, ${K}], found ${qweight.dtype} [${qweight.shape.join(', ')}]`);
  }
  const scales = await floats(checkpoint, `${name}.scales`);
  const gIdx = await ints(checkpoint, `${name}.g_idx`);
  let zeros: Uint8Array;
  try {
    const groups = checkGptqGroups({ bits, inFeatures: K, outFeatures: N, scales, gIdx });
    zeros = unpackGptqQzeros(await ints(checkpoint, `${name}.qzeros`), groups, N, bits, format);
  } catch (error) {
    if (error instanceof GptqFormatError) throw new DequantizeError(`${name}: ${error.message}`);
    throw error;
  }
  const width = Math.min(N, Math.max(1, Math.floor(slabElements / K)));
  let words = new Int32Array(0);
  let codes: Uint8Array = new Uint8Array(0);
  let c0 = 0;
  let c1 = 0;
  return twoStep(
    qweightName,
    N,
    K,
    async (r0, r1) => {
      if (r0 >= c0 && r1 <= c1) return;
      const w = Math.min(N - r0, Math.max(width, r1 - r0));
      if (words.length < packedRows * w) words = new Int32Array(packedRows * w);
      const bytes = new Uint8Array(words.buffer, 0, packedRows * w * 4);
      if (w === N) await checkpoint.readTensorRange(qweightName, 0, packedRows * N * 4, bytes);
      else {
        // Column block [r0, r0 + w) of every packed row, a few reads in flight at a time.
        for (let p0 = 0; p0 < packedRows; p0 += GPTQ_READS_IN_FLIGHT) {
          const reads: Promise<Uint8Array>[] = [];
          for (let p = p0; p < Math.min(packedRows, p0 + GPTQ_READS_IN_FLIGHT); p++) {
            reads.push(checkpoint.readTensorRange(qweightName, (p * N + r0) * 4, (p * N + r0 + w) * 4, bytes.subarray(p * w * 4, (p + 1) * w * 4)));
          }
          await Promise.all(reads);
        }
      }
      // Unpacking a [packedRows, w] block of qweight is unpacking a qweight of w output features.
      codes = unpackGptqQweight(words.subarray(0, packedRows * w), K, w, bits);
      c0 = r0;
      c1 = r0 + w;
    },
    (s0, s1, out) => {
      // W[n, k] = scales[g_idx[k], n] · (q[k, n] − z[g_idx[k], n]), rounded once to float32 (exact for f16
      // scales). Input features outside, the block's rows inside: codes and scales are read in runs.
      const w = c1 - c0;
      for (let k = 0; k < K; k++) {
        const g = gIdx[k]! * N;
        const q = k * w - c0;
        for (let n = s0, o = k; n < s1; n++, o += K) out[o] = scales[g + n]! * (codes[q + n]! - zeros[g + n]!);
      }
    },
  );
}

/**
 * The dequantized weight [out, in] of `module`, whole (see `openStoredWeight` for blocks of rows).
 */
export async function dequantizeStoredWeight(
  checkpoint: TensorSource,
  module: LinearModule,
  options: { declared?: QuantArgs; gptqFormat?: GptqCheckpointFormat; slabElements?: number } = {},
): Promise<{ weight: Float32Array; rows: number; cols: number }> {
  const stored = await openStoredWeight(checkpoint, module, options);
  const weight = new Float32Array(stored.rows * stored.cols);
  await stored.read(0, stored.rows, weight);
  return { weight, rows: stored.rows, cols: stored.cols };
}
