/**
 * The bytes a quantize job writes for one linear layer, kept while the layer is written so that the layer
 * can be dequantized from exactly those bytes (quant/storedWeights.ts, the code that reads any stored
 * checkpoint) — the weights the one-pass job then runs the block with (sequential.ts). Memory: the layer's
 * encoded tensors (its share of the output), released with the recorder.
 */
import type { DType } from '../dtypes/dtype';
import type { CheckpointTensor } from '../safetensors/checkpoint';
import type { SafetensorsWriter } from '../safetensors/writer';
import { buildLayerMap } from '../checkpoint/scheme';
import type { QuantArgs } from '../quant/args';
import { TensorSource, dequantizeStoredWeight } from '../quant/storedWeights';

const RECORDED = 'written-layer';

export class LayerRecorder implements Pick<SafetensorsWriter, 'write'> {
  private readonly chunks = new Map<string, Uint8Array[]>();

  constructor(private readonly writer: SafetensorsWriter) {}

  async write(name: string, bytes: Uint8Array): Promise<void> {
    // The writer's next tensor is the one `name` must be: its spec gives dtype and shape for reading back.
    await this.writer.write(name, bytes);
    const list = this.chunks.get(name) ?? [];
    list.push(bytes.slice());
    this.chunks.set(name, list);
  }

  /** The dequantized [out, in] float32 weight of `module` from the recorded tensors. */
  async dequantize(module: string, declared: QuantArgs, outputFormat: string): Promise<Float32Array> {
    const specs = new Map(this.writer.order.map((s) => [s.name, s]));
    const tensors = new Map<string, { info: CheckpointTensor; bytes: Uint8Array }>();
    for (const [name, list] of this.chunks) {
      const spec = specs.get(name)!;
      const bytes = list.length === 1 ? list[0]! : Buffer.concat(list);
      const numel = spec.shape.reduce((a, b) => a * b, 1);
      tensors.set(name, { info: { name, dtype: spec.dtype as DType, shape: spec.shape, numel, dataOffsets: [0, bytes.length], byteLength: bytes.length, fileOffset: 0, shard: RECORDED }, bytes });
    }
    const source: TensorSource = {
      has: (name) => tensors.has(name),
      tensor: (name) => {
        const t = tensors.get(name);
        if (!t) throw new Error(`${module}: ${name} was not written with the layer`);
        return t.info;
      },
      readTensorBytes: async (name) => tensors.get(name)!.bytes,
      readTensorRange: async (name, start, end, into) => {
        const range = tensors.get(name)!.bytes.subarray(start, end);
        if (!into) return range;
        into.set(range);
        return into.subarray(0, range.length);
      },
    };
    const layerMap = buildLayerMap([...tensors.values()].map((t) => t.info), undefined, { hasConfig: false });
    const linear = layerMap.modules.find((m) => m.name === module);
    if (!linear) throw new Error(`internal: the tensors written for ${module} (${[...tensors.keys()].join(', ')}) do not describe a linear layer`);
    const { weight } = await dequantizeStoredWeight(source, linear, { declared, ...(outputFormat === 'gptq' ? { gptqFormat: 'gptq' as const } : {}) });
    return weight;
  }
}

