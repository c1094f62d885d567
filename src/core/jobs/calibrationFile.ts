/**
 * The calibration statistics file: one safetensors file that the calibrate job writes and the quantize job
 * reads, so the two can run at different times or on different machines.
 *
 *   <module>.input_absmax   F32 []        max |x| of the Linear's input over all calibration tokens
 *   <module>.input_channel_absmax F32 [in] per-input-channel max |x| (optional; SmoothQuant/AWQ-style views)
 *   <module>.hessian        F32 [in, in]  2/n Σ x xᵀ over the n calibration tokens (GPTQ)
 *   __metadata__: { "quantlens.calibration": "1", samples, seq_len, tokens, dataset,
 *                   "quantlens.shared_inputs": JSON { module: module whose .hessian it shares } }
 *
 * Linear layers that read the same input (q/k/v_proj; gate/up_proj) have the same Hessian; it is stored
 * once, under the first of them, and the others point at it through "quantlens.shared_inputs".
 */
import { decodeToFloat32 } from '../dtypes/convert';
import { Checkpoint } from '../safetensors/checkpoint';
import { SafetensorsError } from '../safetensors/errors';
import type { CalibrationStatistics } from './quantize';

export class CalibrationFile implements CalibrationStatistics {
  private constructor(
    private readonly checkpoint: Checkpoint,
    private readonly absmax: ReadonlyMap<string, number>,
    private readonly sharedInputs: Readonly<Record<string, string>>,
    readonly metadata: Readonly<Record<string, string | number>>,
  ) {}

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
    let sharedInputs: Record<string, string> = {};
    const shared = checkpoint.metadata['quantlens.shared_inputs'];
    if (typeof shared === 'string') {
      try {
        const parsed = JSON.parse(shared) as unknown;
        if (typeof parsed !== 'object' || parsed === null || Object.values(parsed).some((v) => typeof v !== 'string')) throw new Error('not an object of module names');
        sharedInputs = parsed as Record<string, string>;
      } catch (error) {
        throw new SafetensorsError('InvalidMetadata', path, `metadata quantlens.shared_inputs is not valid: ${(error as Error).message}`);
      }
    }
    return new CalibrationFile(checkpoint, absmax, sharedInputs, checkpoint.metadata);
  }

  inputAbsMax(module: string): number | undefined {
    return this.absmax.get(module);
  }

  /** The tensor holding a module's Hessian: its own, or the one it shares with a module of the same input. */
  private hessianTensor(module: string): string | undefined {
    if (this.checkpoint.has(`${module}.hessian`)) return `${module}.hessian`;
    const owner = this.sharedInputs[module];
    return owner && this.checkpoint.has(`${owner}.hessian`) ? `${owner}.hessian` : undefined;
  }

  hessianShape(module: string): readonly number[] | undefined {
    const name = this.hessianTensor(module);
    return name ? this.checkpoint.tensor(name).shape : undefined;
  }

  async hessian(module: string): Promise<Float32Array | undefined> {
    const name = this.hessianTensor(module);
    if (!name) return undefined;
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
