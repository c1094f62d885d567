/**
 * Rules for the microscale formats in recipes and quantization configs (docs/formats.md §3.12–§3.13) that
 * compressed-tensors applies only when it saves, so a recipe that validates there can still write wrong
 * scales: MX scales must be computed as E8M0 (scale_dtype uint8), NVFP4 group scales stored as FP8.
 */
import type { QuantArgs } from '../quant/args';
import type { Ctx } from './checks';
import { PMap, entry } from './tree';

const isDtype = (value: string | undefined, name: string) => value === name || value === `torch.${name}`;

/** Checks one normalised QuantizationArgs of `role` whose mapping is `map`. */
export function checkMicroscaleArgs(ctx: Ctx, map: PMap, args: QuantArgs, role: string): void {
  if (role !== 'weights' || args.type !== 'float') return;
  const where = entry(map, 'scale_dtype')?.value.span ?? entry(map, 'group_size')?.value.span ?? map.span;
  if (args.numBits === 4 && args.groupSize === 32 && !isDtype(args.scaleDtype, 'uint8')) {
    // compressors/format.py picks mxfp4-pack-quantized for FP4 group 32; mxfp_utils.should_generate_mx_scales
    // needs scale_dtype uint8, else the observer's float scales reach compress_mx_scale, which keeps floor(log2).
    ctx.warning(
      'mx-scale-dtype',
      where,
      `FP4 weights in groups of 32 are saved as MXFP4 (mxfp4-pack-quantized), whose scales are E8M0 exponents; without scale_dtype: uint8 the observer computes ordinary float scales and the compressor keeps only their power of two (floor(log2)), so the saved weights are not the calibrated ones. Set scale_dtype: uint8, as the MXFP4 presets do`,
    );
  }
  if (args.numBits === 4 && args.groupSize === 16 && args.scaleDtype !== undefined && !isDtype(args.scaleDtype, 'float8_e4m3fn')) {
    // compressors/nvfp4/base.py stores weight_scale in scale_dtype; vLLM's NVFP4 kernels read float8_e4m3fn.
    ctx.warning('nvfp4-scale-dtype', where, `NVFP4 group scales are stored in scale_dtype (${args.scaleDtype}); vLLM's NVFP4 kernels read float8_e4m3fn scales, as the NVFP4 presets set`);
  }
}
