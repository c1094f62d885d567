/**
 * A small WebAssembly assembler: the instruction encodings (core and SIMD specs) the in-repo kernels use,
 * and a module writer (types, functions, one imported and re-exported memory, exports). No build step, no dependency: each
 * kernel is a function that returns its body as bytes. Used by the inspector's error kernels
 * (inspect/errorKernels.ts), until they move to a .wat file as the RTN kernels did (quant/rtn/rtn.wat).
 */
export const enum T {
  I32 = 0x7f,
  F32 = 0x7d,
  F64 = 0x7c,
  V128 = 0x7b,
}

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** Byte emitters for the instructions used (names as in the text format). */
export const I = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  if: [0x04, 0x40],
  else: [0x05],
  end: [0x0b],
  br: (d: number) => [0x0c, ...uleb(d)],
  brIf: (d: number) => [0x0d, ...uleb(d)],
  select: [0x1b],
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32Load: (off = 0) => [0x28, 2, ...uleb(off)],
  f32Load: (off = 0) => [0x2a, 2, ...uleb(off)],
  f64Load: (off = 0) => [0x2b, 3, ...uleb(off)],
  f32Store: (off = 0) => [0x38, 2, ...uleb(off)],
  f64Store: (off = 0) => [0x39, 3, ...uleb(off)],
  i32: (v: number) => [0x41, ...sleb(v | 0)],
  f32: (v: number) => [0x43, ...new Uint8Array(new Float32Array([v]).buffer)],
  f64: (v: number) => [0x44, ...new Uint8Array(new Float64Array([v]).buffer)],
  i32Eqz: [0x45],
  i32GeU: [0x4f],
  f32Eq: [0x5b],
  f32Ne: [0x5c],
  i32Add: [0x6a],
  i32Mul: [0x6c],
  i32And: [0x71],
  i32Shl: [0x74],
  i32ShrU: [0x76],
  f32Nearest: [0x90],
  f32Add: [0x92],
  f32Sub: [0x93],
  f32Mul: [0x94],
  f32Div: [0x95],
  f32Min: [0x96],
  f32Max: [0x97],
  f64Div: [0xa3],
  f64PromoteF32: [0xbb],
  i32ReinterpretF32: [0xbc],
  f32ReinterpretI32: [0xbe],
  // SIMD (0xFD prefix)
  v128Load: (off = 0) => [0xfd, ...uleb(0x00), 4, ...uleb(off)],
  v128Store: (off = 0) => [0xfd, ...uleb(0x0b), 4, ...uleb(off)],
  v128Const: (bytes: ArrayLike<number>) => [0xfd, ...uleb(0x0c), ...Array.from(bytes)],
  shuffle: (lanes: number[]) => [0xfd, ...uleb(0x0d), ...lanes],
  i8x16Splat: [0xfd, ...uleb(0x0f)],
  i16x8Splat: [0xfd, ...uleb(0x10)],
  i32x4Splat: [0xfd, ...uleb(0x11)],
  f32x4Splat: [0xfd, ...uleb(0x13)],
  f64x2Splat: [0xfd, ...uleb(0x14)],
  f32x4ExtractLane: (l: number) => [0xfd, ...uleb(0x1f), l],
  f32x4Ne: [0xfd, ...uleb(0x42)],
  v128And: [0xfd, ...uleb(0x4e)],
  v128Or: [0xfd, ...uleb(0x50)],
  v128Xor: [0xfd, ...uleb(0x51)],
  v128AnyTrue: [0xfd, ...uleb(0x53)],
  f32x4DemoteF64x2Zero: [0xfd, ...uleb(0x5e)],
  f64x2PromoteLowF32x4: [0xfd, ...uleb(0x5f)],
  i8x16NarrowI16x8S: [0xfd, ...uleb(0x65)],
  i8x16NarrowI16x8U: [0xfd, ...uleb(0x66)],
  f32x4Nearest: [0xfd, ...uleb(0x6a)],
  i8x16Add: [0xfd, ...uleb(0x6e)],
  i8x16MinS: [0xfd, ...uleb(0x76)],
  i8x16MaxS: [0xfd, ...uleb(0x78)],
  i32x4Sub: [0xfd, ...uleb(0xb1)],
  f32x4Div: [0xfd, ...uleb(0xe7)],
  i16x8NarrowI32x4S: [0xfd, ...uleb(0x85)],
  i16x8ShrU: [0xfd, ...uleb(0x8d)],
  i32x4ShrU: [0xfd, ...uleb(0xad)],
  i32x4Add: [0xfd, ...uleb(0xae)],
  f32x4Abs: [0xfd, ...uleb(0xe0)],
  f32x4Add: [0xfd, ...uleb(0xe4)],
  f32x4Pmin: [0xfd, ...uleb(0xea)],
  f32x4Pmax: [0xfd, ...uleb(0xeb)],
  f64x2Mul: [0xfd, ...uleb(0xf2)],
  i32x4TruncSatF32x4S: [0xfd, ...uleb(0xf8)],
  // Used by the error kernels (inspect/errorKernels.ts)
  i32Load8U: (off = 0) => [0x2d, 0, ...uleb(off)],
  i32Load8S: (off = 0) => [0x2c, 0, ...uleb(off)],
  i32Load16U: (off = 0) => [0x2f, 1, ...uleb(off)],
  i32Store: (off = 0) => [0x36, 2, ...uleb(off)],
  i32Sub: [0x6b],
  i32DivU: [0x6e],
  i32LtU: [0x49],
  i32GtU: [0x4b],
  i32Or: [0x72],
  v128Load32Zero: (off = 0) => [0xfd, ...uleb(0x5c), 0, ...uleb(off)],
  v128Load64Zero: (off = 0) => [0xfd, ...uleb(0x5d), 0, ...uleb(off)],
  v128Store32Lane: (off: number, lane: number) => [0xfd, ...uleb(0x5a), 0, ...uleb(off), lane],
  i32x4ExtractLane: (l: number) => [0xfd, ...uleb(0x1b), l],
  f64x2ExtractLane: (l: number) => [0xfd, ...uleb(0x21), l],
  i32x4GtS: [0xfd, ...uleb(0x3b)],
  f64x2Eq: [0xfd, ...uleb(0x47)],
  v128Not: [0xfd, ...uleb(0x4d)],
  v128Bitselect: [0xfd, ...uleb(0x52)],
  i16x8ExtendLowI8x16S: [0xfd, ...uleb(0x87)],
  i16x8ExtendLowI8x16U: [0xfd, ...uleb(0x89)],
  i32x4ExtendLowI16x8S: [0xfd, ...uleb(0xa7)],
  i32x4ExtendLowI16x8U: [0xfd, ...uleb(0xa9)],
  i32x4ExtendHighI16x8U: [0xfd, ...uleb(0xaa)],
  i32x4Shl: [0xfd, ...uleb(0xab)],
  f32x4Sub: [0xfd, ...uleb(0xe5)],
  f32x4Mul: [0xfd, ...uleb(0xe6)],
  f64x2Add: [0xfd, ...uleb(0xf0)],
  f64x2Sub: [0xfd, ...uleb(0xf1)],
  f64x2Div: [0xfd, ...uleb(0xf3)],
  f64x2Floor: [0xfd, ...uleb(0x75)],
  f32x4Lt: [0xfd, ...uleb(0x43)],
  f64x2Pmin: [0xfd, ...uleb(0xf6)],
  f64x2Pmax: [0xfd, ...uleb(0xf7)],
  f32x4ConvertI32x4S: [0xfd, ...uleb(0xfa)],
  i32x4TruncSatF64x2SZero: [0xfd, ...uleb(0xfc)],
};

export const splat32 = (v: number) => I.v128Const(new Uint8Array(new Uint32Array([v, v, v, v]).buffer));

export interface WasmFunc {
  readonly name: string;
  readonly params: T[];
  readonly results: T[];
  readonly locals: T[];
  readonly body: number[];
}

export function assemble(funcs: WasmFunc[]): Uint8Array<ArrayBuffer> {
  const section = (id: number, payload: number[]) => [id, ...uleb(payload.length), ...payload];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const name = (s: string) => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
  const types = funcs.map((f) => [0x60, ...uleb(f.params.length), ...f.params, ...uleb(f.results.length), ...f.results]);
  const code = funcs.map((f) => {
    const groups: number[][] = [];
    for (let i = 0; i < f.locals.length; ) {
      let j = i;
      while (j < f.locals.length && f.locals[j] === f.locals[i]) j++;
      groups.push([...uleb(j - i), f.locals[i]!]);
      i = j;
    }
    const body = [...vec(groups), ...f.body, 0x0b];
    return [...uleb(body.length), ...body];
  });
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    // The memory is imported (env.mem, at least one page), sized by instantiateWithMemory.
    ...section(2, vec([[...name('env'), ...name('mem'), 0x02, 0x00, 0x01]])),
    ...section(3, vec(funcs.map((_, i) => uleb(i)))),
    ...section(7, vec([...funcs.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]), [...name('mem'), 0x02, 0x00]])),
    ...section(10, vec(code)),
  ];
  return new Uint8Array(bytes);
}
