/**
 * Bench section `gptq`: GPTQ on one Llama-shaped layer with a synthetic Hessian (diagonal with a heavy-tailed
 * spread plus a few correlated directions, so Cholesky has real work), INT4 group 128, act-order static,
 * block 128 — against round-to-nearest of the same layer in the same run (the floor: GPTQ quantizes every
 * column too) and, as context, the PyTorch CPU figures of docs/performance.md §2 (6.85 s for 4096×4096, 51.8 s for
 * 4096×14336, measured on a quiet 2-core machine: compare them only with a quiet run here).
 *
 * Then the engines on the CPU (docs/performance.md §6): one 1024×1024 and one 4096×4096 layer, GPTQ in
 * JavaScript (with onnxruntime's CPU Gemm for the big products, quantizeGptq's 'auto') against GPTQ's
 * algebra as onnxruntime graphs on the CPU provider (runtime/gptq/, what a GPU runs), same layer, same run.
 * QUANTLENS_BENCH_GPTQ_SHAPES=none skips the PyTorch-comparison shapes.
 */
import type { BenchRow } from './harness';
import { quantizeGptq } from '../../src/core/quant/gptq';
import { quantizeRtn } from '../../src/core/quant/rtn';
import type { QuantArgs } from '../../src/core/quant/args';
import { rng } from '../helpers/random';
import { GraphGptqAlgebra } from '../../src/core/runtime/gptq/engine';
import { decideDevice } from '../../src/core/runtime/device';

const ARGS: QuantArgs = { numBits: 4, type: 'int', symmetric: true, strategy: 'group', groupSize: 128, dynamic: false, actorder: 'weight' };

function syntheticLayer(rows: number, cols: number, seed: number): { weight: Float32Array; hessian: Float32Array } {
  const random = rng(seed);
  const weight = new Float32Array(rows * cols);
  for (let i = 0; i < weight.length; i++) weight[i] = (random() - 0.5) * 0.05 / (0.2 + random());
  const hessian = new Float32Array(cols * cols);
  const directions = Array.from({ length: 4 }, () => Float32Array.from({ length: cols }, () => random() - 0.5));
  for (let i = 0; i < cols; i++) {
    const row = i * cols;
    for (const v of directions) {
      const vi = v[i]!;
      for (let j = 0; j < cols; j++) hessian[row + j]! += vi * v[j]!;
    }
    hessian[row + i]! += Math.exp(2 * (random() - 0.5)) * 0.5;
  }
  return { weight, hessian };
}

export async function gptqSection(rows: BenchRow[]): Promise<void> {
  const shapes: [number, number, number][] = [
    [4096, 4096, 6.85],
    [4096, 14336, 51.8],
  ];
  const only = process.env.QUANTLENS_BENCH_GPTQ_SHAPES;
  for (const [out, inFeatures, torchSeconds] of shapes) {
    if (only && !only.split(',').includes(`${out}x${inFeatures}`)) continue;
    const { weight, hessian } = syntheticLayer(out, inFeatures, out + inFeatures);
    let t = performance.now();
    quantizeRtn(weight, out, inFeatures, { ...ARGS, actorder: undefined });
    const rtnSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    const result = await quantizeGptq(weight, out, inFeatures, hessian, ARGS, { dampeningFrac: 0.1 });
    const gptqSeconds = (performance.now() - t) / 1000;
    rows.push({
      section: 'gptq',
      what: `GPTQ INT4 g128 act-order, ${out}×${inFeatures} (out×in), Hessian given (${result.engine}, ${result.precision}; factorize ${result.seconds.factorize.toFixed(1)} s, columns ${result.seconds.loop.toFixed(1)} s)`,
      result: `${gptqSeconds.toFixed(2)} s`,
      baseline: `${rtnSeconds.toFixed(3)} s RTN of the same layer`,
      ratio: `${(gptqSeconds / rtnSeconds).toFixed(0)}× RTN; ${(gptqSeconds / torchSeconds).toFixed(2)}× PyTorch's ${torchSeconds} s`,
      target: `≤ PyTorch CPU ${torchSeconds} s (docs/performance.md §2)`,
    });
  }
  await enginesOnTheCpu(rows);
}

async function enginesOnTheCpu(rows: BenchRow[]): Promise<void> {
  const algebra = await GraphGptqAlgebra.create(decideDevice('cpu', {}));
  try {
    for (const size of (process.env.QUANTLENS_BENCH_GPTQ_ENGINES ?? '1024,4096').split(',').map(Number)) {
      const { weight, hessian } = syntheticLayer(size, size, 7 * size);
      // Sessions are created once per job: warm every graph (first, middle and last panels, the block) outside the timing.
      if (size === 1024) {
        const warm = syntheticLayer(64, 384, 1);
        await quantizeGptq(warm.weight, 64, 384, warm.hessian, ARGS, { algebra });
      }
      let t = performance.now();
      const js = await quantizeGptq(weight, size, size, hessian, ARGS, { dampeningFrac: 0.1 });
      const jsSeconds = (performance.now() - t) / 1000;
      t = performance.now();
      const graph = await quantizeGptq(weight, size, size, hessian, ARGS, { dampeningFrac: 0.1, algebra });
      const graphSeconds = (performance.now() - t) / 1000;
      let same = 0;
      for (let i = 0; i < js.q.length; i++) if (js.q[i] === graph.q[i]) same++;
      rows.push({
        section: 'gptq',
        what: `GPTQ INT4 g128 act-order ${size}×${size} on the CPU: onnxruntime graphs (factorize ${graph.seconds.factorize.toFixed(2)} s, columns ${graph.seconds.loop.toFixed(2)} s; ${((100 * same) / js.q.length).toFixed(2)} % codes equal)`,
        result: `${graphSeconds.toFixed(2)} s`,
        baseline: `${jsSeconds.toFixed(2)} s JS (${js.where}, ${js.precision}; factorize ${js.seconds.factorize.toFixed(2)} s, columns ${js.seconds.loop.toFixed(2)} s)`,
        ratio: `${(jsSeconds / graphSeconds).toFixed(2)}× JS`,
        target: 'the faster engine runs GPTQ on the CPU',
      });
    }
  } finally {
    await algebra.close();
  }
}
