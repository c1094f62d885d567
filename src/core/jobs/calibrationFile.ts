/**
 * The calibration statistics file: one safetensors file that the calibrate job writes and the quantize job
 * reads, so the two can run at different times or on different machines.
 *
 *   <module>.input_absmax   F32 []        max |x| of the Linear's input over all calibration tokens
 *   <module>.input_channel_absmax F32 [in] per-input-channel max |x| (optional; SmoothQuant/AWQ-style views)
 *   <module>.hessian        F32 [in, in]  2/n Σ x xᵀ over the n calibration tokens (GPTQ)
 *   __metadata__: { "quantlens.calibration": "1", samples, seq_len, tokens, dataset }
 */
import { decodeToFloat32 } from '../dtypes/convert';
import { Checkpoint } from '../safetensors/checkpoint';
import { SafetensorsError } from '../safetensors/errors';
import type { CalibrationStatistics } from './quantize';

export class CalibrationFile implements CalibrationStatistics {
  private constructor(private readonly checkpoint: Checkpoint, private readonly absmax: ReadonlyMap<string, number>, readonly metadata: Readonly<Record<string, string | number>>) {}

  static async open(path: string): Promise<CalibrationFile> {
    const checkpoint = await Checkpoint.open(path);
    const absmax = new Map<string, number>();
    for (const tensor of checkpoint.tensors) {
      if (!tensor.name.endsWith('.input_absmax')) continue;
      if (tensor.dtype !== 'F32' || tensor.numel !== 1) {
        throw new SafetensorsError('InvalidTensorEntry', path, `input_absmax must be an F32 scalar, found ${tensor.dtype} [${tensor.shape.join(', ')}]`, tensor.name);
      }
      const value = decodeToFloat32('F32', await checkpoint.readTensorBytes(tensor.name))[0]!;
      if (!Number.isFinite(value) || value < 0) throw new SafetensorsError('InvalidTensorEntry', path, `input_absmax is ${value}; it must be a finite, non-negative number`, tensor.name);
      absmax.set(tensor.name.slice(0, -'.input_absmax'.length), value);
    }
    return new CalibrationFile(checkpoint, absmax, checkpoint.metadata);
  }

  inputAbsMax(module: string): number | undefined {
    return this.absmax.get(module);
  }

  hessianShape(module: string): readonly number[] | undefined {
    const name = `${module}.hessian`;
    return this.checkpoint.has(name) ? this.checkpoint.tensor(name).shape : undefined;
  }

  async hessian(module: string): Promise<Float32Array | undefined> {
    const name = `${module}.hessian`;
    if (!this.checkpoint.has(name)) return undefined;
    const tensor = this.checkpoint.tensor(name);
    if (tensor.dtype !== 'F32' || tensor.shape.length !== 2 || tensor.shape[0] !== tensor.shape[1]) {
      throw new SafetensorsError('InvalidTensorEntry', this.checkpoint.folder, `a Hessian must be a square F32 matrix, found ${tensor.dtype} [${tensor.shape.join(', ')}]`, name);
    }
    return decodeToFloat32('F32', await this.checkpoint.readTensorBytes(name));
  }

  close(): Promise<void> {
    return this.checkpoint.close();
  }
}
