/**
 * The WebAssembly SIMD engine of RTN (its kernels: rtn.wat, beside this file): integer schemes with channel,
 * group (group size a multiple of 16) or tensor strategy and BF16 or F32 arithmetic, several times faster
 * than the JS engine and bit-identical to it (tests compare them). This file moves a chunk of rows at a time
 * through the module's memory and turns the kernels' NaN / overflow flags into errors naming the cell.
 */
import type { QuantArgs } from '../args';
import { compileKernels, instantiateWithMemory } from '../../util/wasm';
import { CellParams, Config, cellParams, nanError } from './params';
import { QuantizeError, SCALE_EPS } from './types';
import rtnWasm from './rtn.wat';

interface SimdExports {
  readonly mem: WebAssembly.Memory;
  amax(src: number, groups: number, gs: number, dstA: number, dstB: number): number;
  minmax(src: number, groups: number, gs: number, dstA: number, dstB: number): number;
  qpSym(...a: number[]): void;
  qpAsym(...a: number[]): void;
  quantF32(src: number, groups: number, gs: number, scalePtr: number, zpPtr: number, qmin: number, qmax: number, dst: number): void;
  quantF32Zp(src: number, groups: number, gs: number, scalePtr: number, zpPtr: number, qmin: number, qmax: number, dst: number): void;
  quantBF16(src: number, groups: number, gs: number, scalePtr: number, zpPtr: number, qmin: number, qmax: number, dst: number): void;
  quantBF16Zp(src: number, groups: number, gs: number, scalePtr: number, zpPtr: number, qmin: number, qmax: number, dst: number): void;
  pack4(src: number, n: number, dst: number): void;
  pack8(src: number, n: number, dst: number): void;
}

let simd: SimdExports | null | undefined;
let simdModule: WebAssembly.Module | undefined;
/** Set by quantizeSimd: whether it also wrote the packed words. */
let simdPacked = false;

/** Whether the last quantizeSimd call also wrote the packed words (quantizeRtn packs in JS otherwise). */
export function simdWrotePacked(): boolean {
  return simdPacked;
}

/** The SIMD kernels, or null where WebAssembly SIMD is unavailable. */
function simdKernels(): SimdExports | null {
  if (simd !== undefined) return simd;
  simd = null;
  simdModule = compileKernels(rtnWasm) ?? undefined;
  if (simdModule) simd = instantiateWithMemory<SimdExports>(simdModule, 4 * 1024 * 1024); // room for a chunk of SIMD_CHUNK rows
  return simd;
}

/** True when the WebAssembly SIMD engine is available on this host. */
export function rtnSimdAvailable(): boolean {
  return simdKernels() !== null;
}

/** Elements per chunk of rows handed to the kernels (the working set stays in cache). */
const SIMD_CHUNK = 1 << 17;

/**
 * Runs an int channel / group / tensor quantization through the SIMD kernels. Returns false (having done
 * nothing) when the scheme or shape is not one they handle.
 */
export function quantizeSimd(
  weight: Float32Array,
  rows: number,
  cols: number,
  args: QuantArgs,
  cfg: Config,
  q: Int8Array,
  scale: Float32Array,
  zeroPoint: Int8Array | undefined,
  packed: Int32Array | undefined,
): boolean {
  const kernels = simdKernels();
  if (!kernels || cfg.isFloat || cfg.computeDtype === 'F16' || cfg.scaleDtype !== cfg.computeDtype || rows * cols === 0) return false;
  const strategy = args.strategy;
  let gs: number;
  let stride: number;
  if (strategy === 'group') {
    gs = args.groupSize!;
    if (gs % 16 !== 0) return false;
    stride = cols;
  } else if (strategy === 'channel' || strategy === 'tensor') {
    stride = Math.ceil(cols / 16) * 16;
    gs = stride;
  } else return false;
  const G = strategy === 'group' ? cols / gs : 1;
  const packBits = packed && (cfg.bits === 4 || cfg.bits === 8) && cols % (32 / cfg.bits) === 0 ? cfg.bits : 0;
  simdPacked = packBits !== 0;
  const chunkRows = Math.max(1, Math.min(rows, Math.floor(SIMD_CHUNK / stride)));
  const cells = chunkRows * G;
  // Memory layout (bytes): src f32 | q i8 | packed | A f32 | B f32 | scale f32 | zp f32
  const SRC = 0;
  const Q = SRC + chunkRows * stride * 4;
  const PK = Q + chunkRows * stride;
  const A = PK + Math.ceil((chunkRows * stride * Math.max(packBits, 1)) / 8 / 16) * 16;
  const B = A + cells * 4;
  const S = B + cells * 4;
  const ZP = S + cells * 4;
  const total = ZP + cells * 4 + 64;
  // A bigger memory is a new instance (see instantiateWithMemory: never grown).
  if (kernels.mem.buffer.byteLength < total) simd = instantiateWithMemory<SimdExports>(simdModule!, total);
  const k = simd!;
  const mem = k.mem;
  const f32 = new Float32Array(mem.buffer);
  const i8 = new Int8Array(mem.buffer);
  const i32 = new Int32Array(mem.buffer);
  const bf16 = cfg.computeDtype === 'BF16' ? 1 : 0;
  const cuda = cfg.cuda ? 1 : 0;
  const eps = SCALE_EPS[cfg.scaleDtype];
  const sym = cfg.symmetric;
  const zpOn = !sym;
  const quant = bf16 ? (zpOn ? k.quantBF16Zp : k.quantBF16) : zpOn ? k.quantF32Zp : k.quantF32;
  const pc = packBits ? (cols * packBits) / 32 : 0;

  const load = (r0: number, r1: number) => {
    if (stride === cols) f32.set(weight.subarray(r0 * cols, r1 * cols), SRC / 4);
    else {
      for (let r = r0; r < r1; r++) {
        const d = SRC / 4 + (r - r0) * stride;
        f32.set(weight.subarray(r * cols, (r + 1) * cols), d);
        f32.fill(0, d + cols, d + stride);
      }
    }
  };
  const where = (r0: number, cell: number) => (strategy === 'group' ? `row ${r0 + Math.floor(cell / G)}, group ${cell % G}` : `row ${r0 + cell}`);
  const checkRange = (r0: number, n: number) => {
    for (let i = 0; i < n; i++) {
      const a = f32[A / 4 + i]!;
      const b = sym ? 0 : f32[B / 4 + i]!;
      if (a === Infinity || a === -Infinity || b === Infinity) throw new QuantizeError(`the weight holds ±Inf (${strategy === 'tensor' ? 'whole tensor' : where(r0, i)}); cannot quantize`);
    }
  };

  if (strategy === 'tensor') {
    // Pass 1: the tensor's range over all chunks; the one cell's parameters in JS; pass 2 quantizes.
    let mn = 0;
    let mx = 0;
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const r1 = Math.min(rows, r0 + chunkRows);
      load(r0, r1);
      const nan = (sym ? k.amax : k.minmax)(SRC, 1, (r1 - r0) * stride, A, B);
      if (nan) throw nanError(`rows ${r0}…${r1 - 1}`);
      if (sym) mx = Math.max(mx, f32[A / 4]!);
      else {
        mn = Math.min(mn, f32[A / 4]!);
        mx = Math.max(mx, f32[B / 4]!);
      }
    }
    const p: CellParams = { scale: 0, inv: 0, zp: 0, zpv: 0 };
    cellParams(cfg, sym ? -mx : mn, mx, p, () => 'whole tensor');
    scale[0] = p.scale;
    if (zeroPoint) zeroPoint[0] = p.zp;
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const r1 = Math.min(rows, r0 + chunkRows);
      load(r0, r1);
      f32[S / 4] = p.scale;
      f32[ZP / 4] = p.zpv;
      quant(SRC, 1, (r1 - r0) * stride, S, ZP, cfg.qmin, cfg.qmax, Q);
      storeQ(r0, r1);
    }
    return true;
  }

  function storeQ(r0: number, r1: number): void {
    if (stride === cols) q.set(i8.subarray(Q, Q + (r1 - r0) * cols), r0 * cols);
    else for (let r = r0; r < r1; r++) q.set(i8.subarray(Q + (r - r0) * stride, Q + (r - r0) * stride + cols), r * cols);
    if (packBits && packed) {
      (packBits === 4 ? k.pack4 : k.pack8)(Q, (r1 - r0) * stride, PK);
      const wordsPerRow = (stride * packBits) / 32;
      if (wordsPerRow === pc) packed.set(i32.subarray(PK / 4, PK / 4 + (r1 - r0) * pc), r0 * pc);
      else for (let r = r0; r < r1; r++) packed.set(i32.subarray(PK / 4 + (r - r0) * wordsPerRow, PK / 4 + (r - r0) * wordsPerRow + pc), r * pc);
    }
  }

  for (let r0 = 0; r0 < rows; r0 += chunkRows) {
    const r1 = Math.min(rows, r0 + chunkRows);
    const n = (r1 - r0) * G;
    load(r0, r1);
    const nan = (sym ? k.amax : k.minmax)(SRC, n, gs, A, B);
    if (nan) {
      // Locate it for the message.
      for (let i = r0 * cols; i < r1 * cols; i++) if (weight[i] !== weight[i]) throw nanError(where(r0, strategy === 'group' ? (Math.floor(i / cols) - r0) * G + Math.floor((i % cols) / gs) : Math.floor(i / cols) - r0));
    }
    checkRange(r0, n);
    if (sym) k.qpSym(A, B, n, (cfg.qmax - cfg.qmin) / 2, cfg.qmin, cfg.qmax, cuda, bf16, eps, S, ZP);
    else k.qpAsym(A, B, n, cfg.qmax - cfg.qmin, cfg.qmin, cfg.qmax, cuda, bf16, eps, S, ZP);
    for (let i = 0; i < n; i++) {
      const s = f32[S / 4 + i]!;
      if (!Number.isFinite(s)) throw new QuantizeError(`scale overflows ${cfg.scaleDtype} (${where(r0, i)}): the weight's range is too large for this dtype`);
    }
    quant(SRC, n, gs, S, ZP, cfg.qmin, cfg.qmax, Q);
    storeQ(r0, r1);
    scale.set(f32.subarray(S / 4, S / 4 + n), r0 * G);
    if (zeroPoint) for (let i = 0; i < n; i++) zeroPoint[r0 * G + i] = f32[ZP / 4 + i]!;
  }
  return true;
}
