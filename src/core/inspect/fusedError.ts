/**
 * The error comparison of mixture-of-experts layers whose experts are fused (docs/formats.md §3.14), per expert
 * and projection, as the layer map groups experts:
 * - a quantized fused module (gpt-oss's own MXFP4 `*_blocks` / `*_scales`, [E, out, in/32, 16]) against the
 *   same expert's slice of the original's float fused tensor;
 * - a per-expert Linear of a linearized checkpoint (`mlp.experts.E.gate_proj`, what llm-compressor and
 *   `quantlens quantize` write) whose original keeps its experts fused, against that slice.
 * Rows are read in blocks: of the blocks, the rows of one expert's projection; of the original, one expert slice
 * at a time (checkpoint/fusedSlices.ts).
 */
import type { Checkpoint, CheckpointTensor } from '../safetensors/checkpoint';
import type { LinearModule } from '../checkpoint/scheme';
import { fusedExpertModules } from '../checkpoint/moe';
import { readModelConfig } from '../checkpoint/config';
import { ExpertProjection, FusedLayout, FusedSliceReader, expertSliceOf, fusedLayoutOf } from '../checkpoint/fusedSlices';
import { E2M1_VALUES, e8m0Value } from '../quant/fp4Weights';
import type { StoredWeightRows } from '../quant/storedWeights';

/** Rows of an [out, in] matrix read in blocks and decoded in smaller ones, as the comparison streams them. */
export type RowSource = Pick<StoredWeightRows, 'rows' | 'cols' | 'load' | 'decode'>;

export interface ExpertComparison {
  /** The expert's projection as a module of its own (`model.layers.0.mlp.experts.3.up_proj`, role 'expert'). */
  readonly module: LinearModule;
  readonly stored: RowSource;
  readonly reference: RowSource;
}

/** The layout the original's fused tensors are in, from its config.json (gpt-oss's, else transformers 5's). */
export async function originalFusedLayout(original: Checkpoint): Promise<FusedLayout> {
  return fusedLayoutOf((await readModelConfig(original.folder)).raw);
}

const PER_EXPERT = /^(.*\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)$/;

/** The original's float fused tensor holding a projection (`…experts.gate_up_proj` for gate/up), if it has one. */
function originalFused(original: Checkpoint, container: string, projection: ExpertProjection): CheckpointTensor | undefined {
  const name = `${container}.${projection === 'down_proj' ? 'down_proj' : 'gate_up_proj'}`;
  if (!original.has(name)) return undefined;
  const tensor = original.tensor(name);
  return tensor.dtype === 'BF16' || tensor.dtype === 'F16' || tensor.dtype === 'F32' ? tensor : undefined;
}

/** Rows of one expert's projection out of the original's fused float tensor. */
function sliceRows(reader: FusedSliceReader, slice: NonNullable<ReturnType<typeof expertSliceOf>>): RowSource {
  let held: Float32Array = new Float32Array(0);
  let held0 = 0;
  return {
    rows: slice.rows,
    cols: slice.cols,
    async load(r0, r1) {
      held = await reader.rows(slice, r0, r1);
      held0 = r0;
    },
    decode(s0, s1, out) {
      const view = out.subarray(0, (s1 - s0) * slice.cols);
      view.set(held.subarray((s0 - held0) * slice.cols, (s1 - held0) * slice.cols));
      return view;
    },
  };
}

/**
 * The reference rows of a per-expert Linear `…experts.E.proj` [rows, cols] when the original keeps that layer's
 * experts fused; undefined when it does not (or the slice's shape differs).
 */
export function fusedReferenceRows(original: Checkpoint, module: string, rows: number, cols: number, layout: FusedLayout): RowSource | undefined {
  const m = PER_EXPERT.exec(module);
  if (!m) return undefined;
  const projection = m[3] as ExpertProjection;
  const tensor = originalFused(original, m[1]!, projection);
  const slice = tensor && expertSliceOf(tensor, layout, Number(m[2]), projection);
  if (!slice || slice.rows !== rows || slice.cols !== cols) return undefined;
  return sliceRows(new FusedSliceReader((name, start, end) => original.readTensorRange(name, start, end)), slice);
}

/**
 * Rows of one expert's projection in gpt-oss MXFP4 blocks [E, out, in/32, 16] U8 with E8M0 scales [E, out, in/32]:
 * of a fused gate_up, gate_proj's row r is row 2r and up_proj's row 2r + 1 (transformers'
 * `convert_moe_packed_tensors` transposes [E, out, in] into the float [E, in, out] layout). Each byte holds two
 * E2M1 codes, the low nibble first; a value is e2m1 · 2^(scale − 127), computed in float64, rounded once to float32.
 */
function mxfp4ExpertRows(checkpoint: Checkpoint, blocks: CheckpointTensor, scales: CheckpointTensor, expert: number, projection: ExpertProjection): RowSource {
  const [, outRows, groups, groupBytes] = blocks.shape as [number, number, number, number];
  const gateUp = projection !== 'down_proj';
  const step = gateUp ? 2 : 1;
  const offset = projection === 'up_proj' ? 1 : 0;
  const rowBytes = groups * groupBytes;
  const cols = groups * groupBytes * 2;
  let codes: Uint8Array = new Uint8Array(0);
  let exps: Uint8Array = new Uint8Array(0);
  let held0 = 0;
  return {
    rows: outRows / step,
    cols,
    async load(r0, r1) {
      // The fused rows [step · r0, step · r1) of the expert: gate and up rows alternate.
      const first = expert * outRows + step * r0;
      const count = step * (r1 - r0);
      codes = await checkpoint.readTensorRange(blocks.name, first * rowBytes, (first + count) * rowBytes);
      exps = await checkpoint.readTensorRange(scales.name, first * groups, (first + count) * groups);
      held0 = r0;
    },
    decode(s0, s1, out) {
      for (let r = s0; r < s1; r++) {
        const local = step * (r - held0) + offset;
        const o = (r - s0) * cols;
        for (let g = 0; g < groups; g++) {
          const e = exps[local * groups + g]!;
          const scale = e8m0Value(e);
          const base = local * rowBytes + g * groupBytes;
          for (let b = 0; b < groupBytes; b++) {
            const byte = codes[base + b]!;
            const c = o + (g * groupBytes + b) * 2;
            out[c] = E2M1_VALUES[byte & 15]! * scale;
            out[c + 1] = E2M1_VALUES[byte >> 4]! * scale;
          }
        }
      }
      return out.subarray(0, (s1 - s0) * cols);
    },
  };
}

/**
 * One comparison per expert and projection of a quantized fused-experts module, each against the original's
 * slice; a string says why the module cannot be compared (its storage, or no fused float original).
 */
export function fusedModuleComparisons(quantized: Checkpoint, original: Checkpoint, module: LinearModule, layout: FusedLayout): ExpertComparison[] | string {
  const parts = fusedExpertModules(module.tensors.map((name) => quantized.tensor(name))).get(module.name);
  const blocks = parts?.get('blocks');
  const scales = parts?.get('scales');
  if (!blocks || !scales || blocks.shape.length !== 4 || blocks.dtype !== 'U8' || scales.shape.length !== 3 || scales.shape.some((d, i) => d !== blocks.shape[i])) {
    return `${module.name}: only MXFP4 fused experts (U8 _blocks [experts, out, in/32, 16] with _scales [experts, out, in/32]) can be compared per expert`;
  }
  const container = module.name.slice(0, module.name.lastIndexOf('.'));
  const projections: ExpertProjection[] = module.name.endsWith('.gate_up_proj') ? ['gate_proj', 'up_proj'] : ['down_proj'];
  const fused = originalFused(original, container, projections[0]!);
  if (!fused) return `the original checkpoint has no float ${module.name} to compare with`;
  const reader = new FusedSliceReader((name, start, end) => original.readTensorRange(name, start, end));
  const comparisons: ExpertComparison[] = [];
  for (let e = 0; e < blocks.shape[0]!; e++) {
    for (const projection of projections) {
      const stored = mxfp4ExpertRows(quantized, blocks, scales, e, projection);
      const slice = expertSliceOf(fused, layout, e, projection);
      if (!slice || slice.rows !== stored.rows || slice.cols !== stored.cols) {
        return `shape mismatch: quantized ${blocks.name} [${blocks.shape.join(', ')}] (experts of [${stored.rows}, ${stored.cols}]), original ${fused.name} [${fused.shape.join(', ')}]`;
      }
      const expertModule: LinearModule = { name: `${container}.${e}.${projection}`, block: module.block, projection, state: 'quantized', tensors: [], issues: [], moe: { role: 'expert', expert: e, container } };
      comparisons.push({ module: expertModule, stored, reference: sliceRows(reader, slice) });
    }
  }
  return comparisons;
}
