/**
 * The portable RTN engine: every scheme, strategy and dtype — the only one for FP8, F16 arithmetic, block
 * and act-order groups, and the readable reference the SIMD engine (simdEngine.ts) is tested against.
 * x/s is fround(x · (1/s)): equal to the float32 quotient because that quotient lies ≥ 2^-49 (relative) from
 * any float32 midpoint while the float64 product errs by ≤ 2^-52; 16-bit arithmetic goes through
 * 65536-entry lookup tables indexed by the bf16 / f16 code of the rounded value.
 */
import type { QuantArgs } from '../args';
import { E4M3_FORMAT, F16_FORMAT, encodeE4M3, encodeMiniF32Bits, f16ToF32Table } from '../../dtypes/float';
import { CellParams, Config, RNE, cellParams, groupPermutation, nanError } from './params';
import type { RtnOptions } from './types';

/** Four float32 slots and their bit patterns: x/s is stored here to read its float32 bits (one slot per unrolled lane). */
export const SLOT_F = new Float32Array(4);
export const SLOT_I = new Int32Array(SLOT_F.buffer);

/** Lookup tables from a 16-bit compute-dtype code. */
const intTables = new Map<string, Int8Array>();
const fp8Tables = new Map<string, Uint8Array>();
const S_F32 = new Float32Array(1);
const S_I32 = new Int32Array(S_F32.buffer);

/** The float32 value of a 16-bit code of `dtype`. */
export function valueOf16(dtype: 'BF16' | 'F16', code: number): number {
  if (dtype === 'F16') return f16ToF32Table()[code]!;
  S_I32[0] = code << 16;
  return S_F32[0]!;
}

/** code → round-half-even(clamp(value, qmin, qmax)) as int8 (NaN → 0, never reached: inputs are checked). */
function intTable(dtype: 'BF16' | 'F16', bits: number): Int8Array {
  const key = `${dtype}:${bits}`;
  let t = intTables.get(key);
  if (!t) {
    const qmax = 2 ** (bits - 1) - 1;
    const qmin = -(2 ** (bits - 1));
    t = new Int8Array(65536);
    for (let c = 0; c < 65536; c++) {
      let v = valueOf16(dtype, c);
      if (v !== v) v = 0;
      v = v < qmin ? qmin : v > qmax ? qmax : v;
      t[c] = v + RNE - RNE;
    }
    intTables.set(key, t);
  }
  return t;
}

/** code → e4m3fn code of clamp(value + 0, ±448) (the + 0 is the zero point upstream always adds). */
function fp8Table(dtype: 'BF16' | 'F16'): Uint8Array {
  let t = fp8Tables.get(dtype);
  if (!t) {
    t = new Uint8Array(65536);
    for (let c = 0; c < 65536; c++) {
      const v = valueOf16(dtype, c) + 0;
      t[c] = encodeE4M3(v < -448 ? -448 : v > 448 ? 448 : v, { saturate: true });
    }
    fp8Tables.set(dtype, t);
  }
  return t;
}

/** The lookup table of the scheme's 16-bit arithmetic (none for float32 arithmetic). */
function tableFor(cfg: Config): Int8Array | Uint8Array | undefined {
  if (cfg.computeDtype === 'F32') return undefined;
  return cfg.isFloat ? fp8Table(cfg.computeDtype) : intTable(cfg.computeDtype, cfg.bits);
}


/*
 * Kernels. Each quantizes x[xs, xs+n) with one cell's 1/scale (`inv`) and zero point into q[qs, …).
 * They are small, monomorphic and allocation-free; the 16-bit paths round x/s to float32 by storing it
 * in SLOT_F, read its bits from SLOT_I and round them to bf16 with integer RNE:
 *   code = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16
 * (exact for every finite float32, including carries into the exponent and overflow to Inf).
 */

/** int, float32 arithmetic: q = rne(clamp(fround(fround(x/s) + zp))). */
function intSpanF32(x: Float32Array, xs: number, n: number, inv: number, zp: number, qmin: number, qmax: number, q: Int8Array, qs: number): void {
  if (zp === 0) {
    for (let j = 0; j < n; j++) {
      let r = (Math.fround(x[xs + j]! * inv) + RNE - RNE) | 0;
      if (r > qmax) r = qmax;
      else if (r < qmin) r = qmin;
      q[qs + j] = r;
    }
  } else {
    for (let j = 0; j < n; j++) {
      let r = (Math.fround(Math.fround(x[xs + j]! * inv) + zp) + RNE - RNE) | 0;
      if (r > qmax) r = qmax;
      else if (r < qmin) r = qmin;
      q[qs + j] = r;
    }
  }
}

/** int, bf16 arithmetic, symmetric: q = table[bf16(fround(x/s))], four lanes per iteration. */
function intSpanBF16Sym(x: Float32Array, xs: number, n: number, inv: number, t: Int8Array, q: Int8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  let j = 0;
  for (; j + 3 < n; j += 4) {
    F[0] = x[xs + j]! * inv;
    F[1] = x[xs + j + 1]! * inv;
    F[2] = x[xs + j + 2]! * inv;
    F[3] = x[xs + j + 3]! * inv;
    const u0 = I[0]!;
    const u1 = I[1]!;
    const u2 = I[2]!;
    const u3 = I[3]!;
    q[qs + j] = t[(u0 + 0x7fff + ((u0 >>> 16) & 1)) >>> 16]!;
    q[qs + j + 1] = t[(u1 + 0x7fff + ((u1 >>> 16) & 1)) >>> 16]!;
    q[qs + j + 2] = t[(u2 + 0x7fff + ((u2 >>> 16) & 1)) >>> 16]!;
    q[qs + j + 3] = t[(u3 + 0x7fff + ((u3 >>> 16) & 1)) >>> 16]!;
  }
  for (; j < n; j++) {
    F[0] = x[xs + j]! * inv;
    const u = I[0]!;
    q[qs + j] = t[(u + 0x7fff + ((u >>> 16) & 1)) >>> 16]!;
  }
}

/** bf16 arithmetic with a zero point: v = bf16(fround(x/s)); w = bf16(fround(v + zp)); out = table[w]. */
function spanBF16Zp(x: Float32Array, xs: number, n: number, inv: number, zpv: number, t: Int8Array | Uint8Array, q: Int8Array | Uint8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  for (let j = 0; j < n; j++) {
    F[0] = x[xs + j]! * inv;
    const u = I[0]!;
    I[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
    F[0] = F[0]! + zpv;
    const w = I[0]!;
    q[qs + j] = t[(w + 0x7fff + ((w >>> 16) & 1)) >>> 16]!;
  }
}

/** f16 arithmetic (with zero point when `addZp`): codes via the float32-bits encoder. */
function spanF16(x: Float32Array, xs: number, n: number, inv: number, addZp: boolean, zpv: number, t: Int8Array | Uint8Array, q: Int8Array | Uint8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  const dec = f16ToF32Table();
  for (let j = 0; j < n; j++) {
    F[0] = x[xs + j]! * inv;
    let c = encodeMiniF32Bits(F16_FORMAT, I[0]!, F[0]!, false);
    if (addZp) {
      F[0] = dec[c]! + zpv;
      c = encodeMiniF32Bits(F16_FORMAT, I[0]!, F[0]!, false);
    }
    q[qs + j] = t[c]!;
  }
}

/** FP8, float32 arithmetic: code = e4m3(clamp(fround(fround(x/s) + zp), ±448)); zp = 0 turns −0 into +0. */
function fp8SpanF32(x: Float32Array, xs: number, n: number, inv: number, zpv: number, q: Uint8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  for (let j = 0; j < n; j++) {
    F[0] = Math.fround(x[xs + j]! * inv) + zpv;
    // saturate: true is clamp-then-cast: everything above 448 (and below 464, where RNE would stay at 448 anyway) gives 448.
    q[qs + j] = encodeMiniF32Bits(E4M3_FORMAT, I[0]!, F[0]!, true);
  }
}

/** FP8, bf16 arithmetic, symmetric: code = table[bf16(fround(x/s))] (the table adds the +0). */
function fp8SpanBF16Sym(x: Float32Array, xs: number, n: number, inv: number, t: Uint8Array, q: Uint8Array, qs: number): void {
  const F = SLOT_F;
  const I = SLOT_I;
  for (let j = 0; j < n; j++) {
    F[0] = x[xs + j]! * inv;
    const u = I[0]!;
    q[qs + j] = t[(u + 0x7fff + ((u >>> 16) & 1)) >>> 16]!;
  }
}

/** Quantizes x[xs, xs+n) with one cell's parameters into q[qs, …). */
function quantizeSpan(cfg: Config, table: Int8Array | Uint8Array | undefined, x: Float32Array, xs: number, n: number, p: CellParams, q: Int8Array | Uint8Array, qs: number): void {
  const c = cfg.computeDtype;
  if (c === 'F32') {
    if (cfg.isFloat) fp8SpanF32(x, xs, n, p.inv, p.zpv, q as Uint8Array, qs);
    else intSpanF32(x, xs, n, p.inv, p.zpv, cfg.qmin, cfg.qmax, q as Int8Array, qs);
  } else if (c === 'BF16') {
    // A zero zero-point changes nothing but the sign of a −0 quotient, which only FP8 can see (its table adds + 0).
    if (p.zpv !== 0) spanBF16Zp(x, xs, n, p.inv, p.zpv, table!, q, qs);
    else if (cfg.isFloat) fp8SpanBF16Sym(x, xs, n, p.inv, table as Uint8Array, q as Uint8Array, qs);
    else intSpanBF16Sym(x, xs, n, p.inv, table as Int8Array, q as Int8Array, qs);
  } else {
    spanF16(x, xs, n, p.inv, p.zpv !== 0, p.zpv, table!, q, qs);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Min/max (widened to include 0), with a NaN check on the rare path
// ---------------------------------------------------------------------------------------------------------

let MN = 0;
let MX = 0;

/**
 * Min/max of x[s, e) folded into MN/MX (which start at 0: the range always includes 0). Returns false when
 * a NaN was seen; the NaN test sits on the rarely taken branch (a NaN fails both comparisons).
 */
function minMaxSpan(x: Float32Array, s: number, e: number): boolean {
  let mn = MN;
  let mx = MX;
  let ok = true;
  for (let i = s; i < e; i++) {
    const v = x[i]!;
    if (v < mn) mn = v;
    if (!(v <= mx)) {
      if (v !== v) ok = false;
      else mx = v;
    }
  }
  MN = mn;
  MX = mx;
  return ok;
}

/** max |x| over x[s, e) folded into MX (symmetric schemes need only this); false when a NaN was seen. */
function absMaxSpan(x: Float32Array, s: number, e: number): boolean {
  let mx = MX;
  let ok = true;
  for (let i = s; i < e; i++) {
    const a = Math.abs(x[i]!);
    if (!(a <= mx)) {
      if (a !== a) ok = false;
      else mx = a;
    }
  }
  MX = mx;
  return ok;
}

/** Range of x[s, e) for the scheme into MN/MX: symmetric → MN = −amax, MX = amax (same scale). */
function rangeSpan(sym: boolean, x: Float32Array, s: number, e: number): boolean {
  if (sym) {
    const ok = absMaxSpan(x, s, e);
    MN = -MX;
    return ok;
  }
  return minMaxSpan(x, s, e);
}

/**
 * The range of a whole [rows, cols] tensor, widened to include 0: [−amax, amax] when `symmetric`, else
 * [min, max]. Throws for a NaN, naming its row.
 */
export function tensorRange(symmetric: boolean, weight: Float32Array, rows: number, cols: number): [number, number] {
  MN = 0;
  MX = 0;
  for (let r = 0; r < rows; r++) if (!rangeSpan(symmetric, weight, r * cols, (r + 1) * cols)) throw nanError(`row ${r}`);
  return [MN, MX];
}

/** The portable path: every scheme, strategy and dtype. */
export function quantizeJs(
  weight: Float32Array,
  rows: number,
  cols: number,
  args: QuantArgs,
  cfg: Config,
  options: RtnOptions,
  q: Int8Array | Uint8Array,
  scaleShape: readonly number[],
  p: CellParams,
  store: (cell: number) => void,
): void {
  const n = rows * cols;
  const table = tableFor(cfg);
  switch (args.strategy) {
    case 'tensor': {
      const [mn, mx] = tensorRange(cfg.symmetric, weight, rows, cols);
      cellParams(cfg, mn, mx, p, () => 'whole tensor');
      store(0);
      if (n > 0) quantizeSpan(cfg, table, weight, 0, n, p, q, 0);
      break;
    }
    case 'channel': {
      for (let r = 0; r < rows; r++) {
        const s = r * cols;
        MN = 0;
        MX = 0;
        if (!rangeSpan(cfg.symmetric, weight, s, s + cols)) throw nanError(`row ${r}`);
        cellParams(cfg, MN, MX, p, () => `row ${r}`);
        store(r);
        quantizeSpan(cfg, table, weight, s, cols, p, q, s);
      }
      break;
    }
    case 'group': {
      const gs = args.groupSize!;
      const groups = cols / gs;
      if (options.gIdx) {
        const perm = groupPermutation(options.gIdx, cols, groups, gs);
        const xg = new Float32Array(cols);
        const qg = cfg.isFloat ? new Uint8Array(cols) : new Int8Array(cols);
        for (let r = 0; r < rows; r++) {
          const s = r * cols;
          for (let c = 0; c < cols; c++) xg[c] = weight[s + perm[c]!]!;
          for (let g = 0; g < groups; g++) {
            MN = 0;
            MX = 0;
            if (!rangeSpan(cfg.symmetric, xg, g * gs, (g + 1) * gs)) throw nanError(`row ${r}, group ${g}`);
            cellParams(cfg, MN, MX, p, () => `row ${r}, group ${g}`);
            store(r * groups + g);
            quantizeSpan(cfg, table, xg, g * gs, gs, p, qg, g * gs);
          }
          for (let c = 0; c < cols; c++) q[s + perm[c]!] = qg[c]!;
        }
      } else {
        for (let r = 0; r < rows; r++) {
          for (let g = 0; g < groups; g++) {
            const s = r * cols + g * gs;
            MN = 0;
            MX = 0;
            if (!rangeSpan(cfg.symmetric, weight, s, s + gs)) throw nanError(`row ${r}, group ${g}`);
            cellParams(cfg, MN, MX, p, () => `row ${r}, group ${g}`);
            store(r * groups + g);
            quantizeSpan(cfg, table, weight, s, gs, p, q, s);
          }
        }
      }
      break;
    }
    case 'block': {
      const [br, bc] = args.blockStructure!;
      const [bRows, bCols] = scaleShape as [number, number];
      for (let bi = 0; bi < bRows; bi++) {
        const r0 = bi * br;
        const r1 = Math.min(rows, r0 + br);
        for (let bj = 0; bj < bCols; bj++) {
          const c0 = bj * bc;
          const w = Math.min(cols, c0 + bc) - c0;
          // Zero padding of partial blocks cannot change min/max, which already include 0.
          MN = 0;
          MX = 0;
          for (let r = r0; r < r1; r++) if (!rangeSpan(cfg.symmetric, weight, r * cols + c0, r * cols + c0 + w)) throw nanError(`row ${r}, block (${bi}, ${bj})`);
          cellParams(cfg, MN, MX, p, () => `block (${bi}, ${bj})`);
          store(bi * bCols + bj);
          for (let r = r0; r < r1; r++) quantizeSpan(cfg, table, weight, r * cols + c0, w, p, q, r * cols + c0);
        }
      }
      break;
    }
  }
}
