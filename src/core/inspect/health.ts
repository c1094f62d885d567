/**
 * Health scan: NaN / Inf / zero / negative / subnormal scales, scale outliers (inside a tensor and across
 * layers of the same projection), all-zero or non-finite weights, and the layer map's own disagreements.
 * Every finding names the tensor and says what is wrong and why it matters.
 */
import type { Checkpoint } from '../safetensors/checkpoint';
import type { LayerMap } from '../checkpoint/scheme';
import { moeFindings } from '../checkpoint/layerGroups';
import { codeTable } from '../stats/tensorStats';
import { CancelledError, computeStatisticsOfTensors, computeTensorStatistics } from '../stats/computeStats';
import { ModuleScales, ScaleSummary, readScaleOverview } from './scales';

export interface HealthFinding {
  readonly severity: 'error' | 'warning' | 'info';
  readonly kind:
    | 'nan-scale'
    | 'inf-scale'
    | 'zero-scale'
    | 'negative-scale'
    | 'subnormal-scale'
    | 'saturated-scale'
    | 'scale-outlier'
    | 'scale-spread'
    | 'zero-weight'
    | 'nonfinite-weight'
    | 'layer-mismatch'
    | 'missing-layer'
    | 'quantized-router'
    | 'unquantized-expert';
  readonly tensor?: string;
  readonly module?: string;
  readonly message: string;
}

export interface HealthReport {
  readonly findings: readonly HealthFinding[];
  readonly scannedTensors: number;
  readonly scannedBytes: number;
  readonly scales: readonly ModuleScales[];
}

/** A scale more than this many times the median of its projection across layers is an outlier. */
export const CROSS_LAYER_OUTLIER_RATIO = 10;
/** Within one scale tensor, max/median above this flags a channel or group that dominates. */
export const WITHIN_TENSOR_SPREAD_RATIO = 1000;

function scaleFindings(s: ScaleSummary, module: string): HealthFinding[] {
  const out: HealthFinding[] = [];
  const isZeroPoint = s.role.endsWith('zero_point');
  const count = (n: number, total: number) => (total === 1 ? '' : ` (${n} of ${total})`);
  if (s.stats.nan > 0) out.push({ severity: 'error', kind: 'nan-scale', tensor: s.tensor, module, message: `${s.tensor} holds NaN${count(s.stats.nan, s.stats.count)}: dequantized weights there are NaN` });
  if (s.stats.posInf + s.stats.negInf > 0) out.push({ severity: 'error', kind: 'inf-scale', tensor: s.tensor, module, message: `${s.tensor} holds ±Inf${count(s.stats.posInf + s.stats.negInf, s.stats.count)}` });
  if (isZeroPoint) return out;
  if (s.stats.zeros > 0) out.push({ severity: 'error', kind: 'zero-scale', tensor: s.tensor, module, message: `${s.tensor} has zero scales${count(s.stats.zeros, s.stats.count)}: every weight (or activation) there dequantizes to 0` });
  if (s.negatives > 0) out.push({ severity: 'error', kind: 'negative-scale', tensor: s.tensor, module, message: `${s.tensor} has negative scales${count(s.negatives, s.stats.count)}: symmetric scales are absmax/qmax and must be positive` });
  if (s.subnormals > 0) out.push({ severity: 'warning', kind: 'subnormal-scale', tensor: s.tensor, module, message: `${s.tensor} has subnormal ${s.dtype} scales${count(s.subnormals, s.stats.count)}: they have lost precision` });
  if (s.saturated > 0) {
    const why = s.exponents ? 'the E8M0 maximum 2^127' : 'the F8_E4M3 maximum 448: they were clipped, so the weights there dequantize too small (an NVFP4 global scale too large for this layer leaves the FP8 group scales no headroom)';
    out.push({ severity: 'warning', kind: 'saturated-scale', tensor: s.tensor, module, message: `${s.tensor} has scales at ${why}${count(s.saturated, s.stats.count)}` });
  }
  if (s.stats.count > 1 && s.median > 0 && s.stats.max / s.median > WITHIN_TENSOR_SPREAD_RATIO) {
    out.push({ severity: 'warning', kind: 'scale-spread', tensor: s.tensor, module, message: `${s.tensor}: the largest scale is ${(s.stats.max / s.median).toFixed(0)}× the median; an outlier channel or group dominates this layer's range` });
  }
  return out;
}

export async function scanHealth(
  checkpoint: Checkpoint,
  layerMap: LayerMap,
  options: { signal?: AbortSignal; onProgress?: (fraction: number, what: string) => void; weights?: boolean } = {},
): Promise<HealthReport> {
  const findings: HealthFinding[] = [];
  for (const module of layerMap.modules) {
    // A layer the index places in another shard is where it should be: nothing to report for this file.
    if (module.state === 'elsewhere') continue;
    if (module.state === 'missing') findings.push({ severity: 'error', kind: 'missing-layer', module: module.name, message: `${module.name}: ${module.issues[0] ?? 'missing'}` });
    else for (const issue of module.issues) findings.push({ severity: 'warning', kind: 'layer-mismatch', module: module.name, message: `${module.name}: ${issue}` });
  }
  // Mixture of experts: a quantized router, experts left unquantized beside quantized ones.
  findings.push(...moeFindings(layerMap.modules, layerMap.groups));

  const scales = await readScaleOverview(checkpoint, layerMap, { signal: options.signal, onProgress: (f) => options.onProgress?.(f * 0.2, 'scales') });
  let scannedTensors = 0;
  let scannedBytes = 0;
  for (const module of scales) {
    for (const s of module.scales) {
      scannedTensors++;
      findings.push(...scaleFindings(s, module.module));
    }
  }
  // Per-tensor scalars (FP8 weight_scale / input_scale) compared across layers of the same projection.
  const byKey = new Map<string, { value: number; tensor: string; module: string }[]>();
  for (const module of scales) {
    for (const s of module.scales) {
      if (s.stats.count !== 1 || !Number.isFinite(s.stats.max) || s.stats.max <= 0) continue;
      const key = `${module.projection}.${s.role}`;
      const list = byKey.get(key) ?? [];
      list.push({ value: s.stats.max, tensor: s.tensor, module: module.module });
      byKey.set(key, list);
    }
  }
  for (const [key, list] of byKey) {
    if (list.length < 3) continue;
    const sorted = list.map((l) => l.value).sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    for (const item of list) {
      if (item.value > CROSS_LAYER_OUTLIER_RATIO * median || item.value < median / CROSS_LAYER_OUTLIER_RATIO) {
        findings.push({
          severity: 'warning',
          kind: 'scale-outlier',
          tensor: item.tensor,
          module: item.module,
          message: `${item.tensor} = ${item.value.toPrecision(4)} is ${(item.value / median).toPrecision(3)}× the median ${key} across layers (${median.toPrecision(4)})`,
        });
      }
    }
  }

  // Weights: all-zero, NaN or Inf, from exact bit-pattern counts (one streamed pass per tensor).
  if (options.weights !== false) {
    const weights = layerMap.modules
      .filter((m) => m.state !== 'missing' && m.state !== 'elsewhere')
      .map((m) => checkpoint.has(`${m.name}.weight`) ? checkpoint.tensor(`${m.name}.weight`) : undefined)
      .filter((t): t is NonNullable<typeof t> => t !== undefined && codeTable(t.dtype) !== undefined);
    const total = weights.reduce((sum, t) => sum + t.byteLength, 0);
    let done = 0;
    // Counted on the counting workers, several tensors at once (a mixture-of-experts layer is hundreds of
    // small experts): progress is the finished tensors plus the parts of those in flight.
    const inFlight = new Map<string, number>();
    const report = (name: string) => options.onProgress?.(0.2 + (0.8 * (done + [...inFlight.values()].reduce((a, b) => a + b, 0))) / Math.max(1, total), name);
    const byName = new Map(weights.map((t) => [t.name, t]));
    const counted = await computeStatisticsOfTensors(
      weights.map((t) => t.name),
      (name) =>
        computeTensorStatistics(checkpoint, name, {
          bins: 1,
          signal: options.signal,
          onProgress: (fraction) => {
            inFlight.set(name, fraction * byName.get(name)!.byteLength);
            report(name);
          },
        }),
      (name) => byName.get(name)!.byteLength,
      {
        onDone: (name) => {
          inFlight.delete(name);
          done += byName.get(name)!.byteLength;
          report(name);
        },
      },
    ).catch((error: unknown) => {
      throw error instanceof CancelledError ? new Error('cancelled') : error;
    });
    for (const [name, { stats }] of counted) {
      const tensor = byName.get(name)!;
      scannedTensors++;
      scannedBytes += tensor.byteLength;
      if (stats.count > 0 && stats.zeros === stats.count) findings.push({ severity: 'error', kind: 'zero-weight', tensor: tensor.name, message: `${tensor.name} is all zeros` });
      const bad = stats.nan + stats.posInf + stats.negInf;
      if (bad > 0) findings.push({ severity: 'error', kind: 'nonfinite-weight', tensor: tensor.name, message: `${tensor.name} holds ${bad} NaN/Inf value${bad === 1 ? '' : 's'}` });
    }
  }
  const order = { error: 0, warning: 1, info: 2 };
  findings.sort((a, b) => order[a.severity] - order[b.severity]);
  return { findings, scannedTensors, scannedBytes, scales };
}
