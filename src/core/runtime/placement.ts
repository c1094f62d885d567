/**
 * Which execution provider runs each node of a graph. onnxruntime assigns a node its GPU provider has no
 * kernel for to the CPU without an error; it says so only in its verbose log ("Node placements", written
 * by the native logger to the process's stderr). So the graph is opened once more in a child process at
 * verbose level and that log is read back: the job log then says which provider runs the session and
 * which nodes landed on the CPU, and compute nodes on the CPU of a GPU session are an error rather than a
 * silently slow (and differently rounded) run.
 */
import { spawn } from 'node:child_process';
import { type DeviceReport, providerName, runtimeChildEnv } from './device';
import { ortEntryPath } from '../util/ort';

export interface PlacedNode {
  readonly op: string;
  readonly name: string;
}

export interface PlacementReport {
  /** The provider that was asked for, in onnxruntime's spelling (e.g. WebGpuExecutionProvider). */
  readonly provider: string;
  /** Nodes per provider, as onnxruntime logged them. */
  readonly nodes: ReadonlyMap<string, readonly PlacedNode[]>;
  /** Nodes of a GPU session that run on the CPU. */
  readonly onCpu: readonly PlacedNode[];
  /** Of those, the ones that do real work (matrix products, attention, norms, (de)quantization). */
  readonly computeOnCpu: readonly PlacedNode[];
}

/**
 * Op types whose CPU placement in a GPU session means the model's work runs on the CPU. Shape arithmetic
 * (Shape, Gather of a shape, Cast, ReduceSum of the attention mask…) is placed on the CPU by onnxruntime on
 * purpose and is not listed.
 */
export const COMPUTE_OPS = new Set([
  'MatMul', 'FusedMatMul', 'Gemm', 'MatMulNBits', 'MatMulInteger', 'DynamicQuantizeMatMul', 'DequantizeLinear', 'QuantizeLinear',
  'GroupQueryAttention', 'MultiHeadAttention', 'Attention', 'SimplifiedLayerNormalization', 'SkipSimplifiedLayerNormalization',
  'LayerNormalization', 'Softmax', 'RotaryEmbedding', 'Round',
]);

/** Parses onnxruntime's verbose "Node placements" block. */
export function parsePlacements(log: string): Map<string, PlacedNode[]> {
  const nodes = new Map<string, PlacedNode[]>();
  let current: PlacedNode[] | undefined;
  for (const line of log.split('\n')) {
    const all = /All nodes placed on \[(\w+)\]/.exec(line);
    if (all) {
      nodes.set(all[1]!, []);
      current = undefined;
      continue;
    }
    const header = /Node\(s\) placed on \[(\w+)\]/.exec(line);
    if (header) {
      current = [];
      nodes.set(header[1]!, current);
      continue;
    }
    const node = /VerifyEachNodeIsAssignedToAnEp\]\s{3,}(\S+) \((.*)\)\s*$/.exec(line);
    if (node && current) current.push({ op: node[1]!, name: node[2]! });
    else if (!/VerifyEachNodeIsAssignedToAnEp/.test(line)) current = undefined;
  }
  return nodes;
}

const PLACEMENT_SCRIPT = `
const [ortPath, model, options] = process.argv.slice(1);
require(ortPath).InferenceSession.create(model, { ...JSON.parse(options), logSeverityLevel: 0, logVerbosityLevel: 0 })
  .then((s) => s.release()).then(() => process.stdout.write('QUANTLENS-PLACEMENT-OK\\n'),
    (e) => process.stdout.write('QUANTLENS-PLACEMENT-FAILED ' + JSON.stringify(String(e && e.message || e)) + '\\n'));
`;

/**
 * Opens `modelPath` on the report's provider in a child process at onnxruntime's verbose log level and
 * returns where its nodes were placed. Throws when the session cannot be created there (the same error the
 * caller's own session would give).
 */
export async function checkPlacement(modelPath: string, device: DeviceReport, options: { timeoutMs?: number; graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all' } = {}): Promise<PlacementReport> {
  const provider = providerName(device.device);
  const sessionOptions = { executionProviders: [...device.executionProviders], graphOptimizationLevel: options.graphOptimizationLevel ?? 'all' };
  const log = await new Promise<string>((resolveLog, reject) => {
    const child = spawn(process.execPath, ['-e', PLACEMENT_SCRIPT, ortEntryPath(), modelPath, JSON.stringify(sessionOptions)], { stdio: ['ignore', 'pipe', 'pipe'], env: runtimeChildEnv() });
    let stdout = '';
    // Only the placement lines are kept: a verbose log of a large model is many megabytes.
    let placements = '';
    let tail = '';
    let pending = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      const lines = (pending + d.toString()).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (line.includes('VerifyEachNodeIsAssignedToAnEp')) placements += `${line}\n`;
        else if (!line.includes('[V:') && !line.includes('[I:')) tail = `${tail}${line}\n`.slice(-2000);
      }
    });
    const timeoutMs = options.timeoutMs ?? 600_000;
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`the placement check could not start: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (stdout.includes('QUANTLENS-PLACEMENT-OK')) return resolveLog(placements);
      const failed = /QUANTLENS-PLACEMENT-FAILED (.*)/.exec(stdout)?.[1];
      if (failed) return reject(new Error(`${modelPath} cannot be opened on ${provider}: ${JSON.parse(failed) as string}`));
      reject(new Error(`the placement check of ${modelPath} on ${provider} ${signal === 'SIGKILL' ? `did not finish within ${timeoutMs / 1000} s` : `crashed (${signal ?? `exit code ${code}`})`}${tail.trim() ? `: ${tail.trim()}` : ''}`));
    });
  });
  const nodes = parsePlacements(log);
  if (nodes.size === 0) throw new Error(`onnxruntime logged no node placements for ${modelPath}; cannot tell which provider runs it`);
  const onCpu = device.device === 'cpu' ? [] : [...(nodes.get('CPUExecutionProvider') ?? [])];
  return { provider, nodes, onCpu, computeOnCpu: onCpu.filter((n) => COMPUTE_OPS.has(n.op)) };
}

/** Op types with counts, e.g. "Shape ×2, Cast ×3". */
export function summarizeNodes(nodes: readonly PlacedNode[]): string {
  const counts = new Map<string, number>();
  for (const n of nodes) counts.set(n.op, (counts.get(n.op) ?? 0) + 1);
  return [...counts].map(([op, count]) => (count > 1 ? `${op} ×${count}` : op)).join(', ');
}

/** One line for the job log: which provider runs the session and what landed on the CPU. */
export function describePlacement(report: PlacementReport): string {
  const total = [...report.nodes.values()].reduce((sum, list) => sum + list.length, 0);
  const onProvider = report.nodes.get(report.provider)?.length ?? 0;
  if (report.provider === 'CPUExecutionProvider') return 'session runs on CPUExecutionProvider (all nodes)';
  if (report.onCpu.length === 0) return `session runs on ${report.provider} (all ${total || onProvider} nodes)`;
  return `session runs on ${report.provider} (${onProvider} nodes); on the CPU: ${report.onCpu.length} nodes (${summarizeNodes(report.onCpu)})`;
}

/** A GPU session whose real work would run on the CPU. */
export class PlacementError extends Error {
  override readonly name = 'PlacementError';
  constructor(readonly report: PlacementReport) {
    super(`${report.provider} has no kernel for ${summarizeNodes(report.computeOnCpu)} in this graph: onnxruntime would run them on the CPU. Choose the CPU (--device cpu / quantlens.runtime.device) to run this model there`);
  }
}

/** Logs where the session runs and refuses a GPU session that would compute on the CPU. */
export async function verifyPlacement(modelPath: string, device: DeviceReport, log: (line: string) => void): Promise<PlacementReport> {
  if (device.device === 'cpu') {
    log('session runs on CPUExecutionProvider (all nodes)');
    return { provider: 'CPUExecutionProvider', nodes: new Map(), onCpu: [], computeOnCpu: [] };
  }
  const report = await checkPlacement(modelPath, device);
  log(describePlacement(report));
  if (report.computeOnCpu.length) throw new PlacementError(report);
  return report;
}
