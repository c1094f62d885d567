/**
 * The ONNX protobuf writer and GraphBuilder, checked by onnxruntime itself: a small graph (external and
 * inline initializers, a streamed initializer, symbolic batch dim, negative and float attributes, a
 * com.microsoft op) is written, loaded by ORT from its folder, run, and compared with the same arithmetic
 * done here in float64.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder, DataType, attr } from '../../src/core/runtime/onnx/builder';
import { encodeModel } from '../../src/core/runtime/onnx/proto';
import { rng } from '../helpers/random';
import { tempDir } from '../helpers/paths';

describe('runtime: ONNX writer + GraphBuilder', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  it('writes a graph that onnxruntime loads and runs exactly as a float64 computation', async () => {
    const random = rng(7);
    const K = 64;
    const N = 48;
    const V = 10;
    const w = Float32Array.from({ length: K * N }, () => random() * 2 - 1);
    const bias = Float32Array.from({ length: N }, () => random() - 0.5);
    const table = Float32Array.from({ length: V * K }, () => random() * 2 - 1);

    const modelPath = join(tmp.path, 'tiny', 'model.onnx');
    const g = await GraphBuilder.create({ modelPath });
    const ids = g.input('input_ids', DataType.INT64, ['batch_size', 'sequence_length']);
    await g.initializer('w', DataType.FLOAT, [K, N], w); // 12 KiB: external
    const b = g.constant('bias', DataType.FLOAT, [N], bias); // inline
    // The embedding table arrives in 3 chunks, as a converter streaming from a checkpoint would hand it in.
    const tableBytes = new Uint8Array(table.buffer);
    const third = Math.floor(tableBytes.length / 3 / 4) * 4;
    await g.streamedInitializer('table', DataType.FLOAT, [V, K], [tableBytes.subarray(0, third), tableBytes.subarray(third, 2 * third), tableBytes.subarray(2 * third)]);
    const x = g.op('Gather', ['table', ids], { axis: 0 });
    const y = g.op('FusedMatMul', [x, 'w'], { alpha: attr.float(0.5) }, 'com.microsoft');
    const z = g.op('Add', [y, b]);
    const s = g.op('Softmax', [z], { axis: -1 });
    g.output(s, DataType.FLOAT, ['batch_size', 'sequence_length', N], 'probs');
    const flat = g.op('Reshape', [z, g.int64s('shape', [-1, N])]);
    g.output(flat, DataType.FLOAT, ['rows', N], 'flat');
    const written = await g.finish();
    assert.ok(written.dataBytes >= (K * N + V * K) * 4);
    assert.deepEqual((await fs.readdir(join(tmp.path, 'tiny'))).sort(), ['model.onnx', 'model.onnx.data']);
    assert.ok(written.modelBytes < 2048, `model file holds structure only (${written.modelBytes} bytes)`);

    const session = await ort.InferenceSession.create(modelPath);
    try {
      assert.deepEqual([...session.inputNames], ['input_ids']);
      assert.deepEqual([...session.outputNames], ['probs', 'flat']);
      const tokens = [3, 0, 9, 4, 4, 1];
      const out = await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [2, 3]) });
      const probs = out.probs!.data as Float32Array;
      const rows = out.flat!.data as Float32Array;
      assert.deepEqual(out.probs!.dims, [2, 3, N]);
      assert.deepEqual(out.flat!.dims, [6, N]);
      for (let t = 0; t < tokens.length; t++) {
        const logits = new Float64Array(N);
        for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let k = 0; k < K; k++) acc += table[tokens[t]! * K + k]! * w[k * N + n]!;
          logits[n] = 0.5 * acc + bias[n]!;
        }
        const max = Math.max(...logits);
        const exps = logits.map((v) => Math.exp(v - max));
        const sum = exps.reduce((a, v) => a + v, 0);
        for (let n = 0; n < N; n++) {
          assert.ok(Math.abs(rows[t * N + n]! - logits[n]!) < 1e-5, `row ${t} col ${n}: ${rows[t * N + n]} vs ${logits[n]}`);
          assert.ok(Math.abs(probs[t * N + n]! - exps[n]! / sum) < 1e-6);
        }
      }
    } finally {
      await session.release();
    }
  });

  it('rejects inconsistent tensors and duplicate names with the name in the message', async () => {
    const g = await GraphBuilder.create({ modelPath: join(tmp.path, 'bad', 'model.onnx') });
    try {
      await assert.rejects(g.initializer('w', DataType.FLOAT, [4, 4], new Float32Array(15)), /initializer w: 60 bytes given, \[4, 4\] of FLOAT needs 64/);
      g.input('x', DataType.FLOAT, [1]);
      assert.throws(() => g.input('x', DataType.FLOAT, [1]), /input "x": the name is already used/);
      assert.throws(() => g.op('Softmax', ['x'], { axis: 0.5 }), /attribute axis: 0.5 is not an integer; write attr.float/);
      await assert.rejects(g.streamedInitializer('s', DataType.FLOAT16, [3], [new Uint8Array(4)]), /initializer s: 4 bytes written, \[3\] of FLOAT16 needs 6/);
    } finally {
      await g.abort();
    }
    assert.deepEqual(await fs.readdir(join(tmp.path, 'bad')), []);
  });

  it('encodes negative int64 and symbolic dims so that ORT reports them back', async () => {
    // A model built without the builder: only encodeModel, inline tensors.
    const bytes = encodeModel({
      irVersion: 10,
      opsets: [{ domain: '', version: 21 }],
      graph: {
        name: 'g',
        nodes: [{ opType: 'ReduceSum', inputs: ['x', 'axes'], outputs: ['y'], attributes: { keepdims: attr.int(0) } }],
        initializers: [{ name: 'axes', type: DataType.INT64, dims: [1], raw: new Uint8Array(BigInt64Array.of(-1n).buffer) }],
        inputs: [{ name: 'x', type: DataType.FLOAT, dims: ['batch_size', 3] }],
        outputs: [{ name: 'y', type: DataType.FLOAT, dims: ['batch_size'] }],
      },
    });
    const session = await ort.InferenceSession.create(bytes);
    try {
      const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]) });
      assert.deepEqual([...(out.y!.data as Float32Array)], [6, 15]);
    } finally {
      await session.release();
    }
  });
});
