/**
 * The MLP of a decoder block, dense or mixture-of-experts, as graph.ts's BlockEmitter emits it:
 *
 * - dense: SwiGLU down(silu(gate(x)) · up(x));
 * - sparse (transformers' MixtralSparseMoeBlock, Qwen2MoeSparseMoeBlock, Qwen3MoeSparseMoeBlock): router logits = gate(x) [E], softmax
 *   over the experts in float32, the top-k experts kept, their weights divided by their sum (Mixtral always,
 *   Qwen2-MoE and Qwen3-MoE when norm_topk_prob), cast back to the activations' type; output Σ_e w_e · expert_e(x), each expert
 *   a SwiGLU; Qwen2-MoE adds sigmoid(shared_expert_gate(x)) · shared_expert(x).
 *
 * Two forms (ExpertForm). 'dense': every expert is computed for every token and weighted by its column of the
 * routing matrix, which is zero for the experts a token is not routed to — what calibration needs
 * (llm-compressor's calibrate_all_experts: every expert sees every token, so every expert gets statistics,
 * while the block's output uses only the routed experts), at E/k× the routed MLP's arithmetic. 'routed' (the
 * CPU's chat graphs): each expert runs on the tokens routed to it only (NonZero of its column, GatherND of those
 * rows, ScatterND with reduction 'add' of its weighted output), so a decode step reads and multiplies k experts'
 * weights, not E (docs/runtime.md §9). Each expert is the BlockEmitter's linear, so quantized experts run as
 * stored.
 *
 * The top-k is computed without TopK or ScatterElements, from ops every provider runs (WebGPU included): an
 * expert's rank is the number of experts ahead of it — a higher probability, or an equal one at a lower index
 * (torch.topk's choice among equal values on the CPU) — and it is selected when its rank is below k. The
 * [E, E] comparison per token is negligible beside one expert's products.
 */
import { DataType, GraphBuilder } from '../onnx/builder';
import { encodeFromFloat32 } from '../../dtypes/convert';
import type { DecoderConfig, MoeNaming } from './config';
import type { GraphTarget } from './linear';

/** How a sparse MLP is computed: every expert on every token, or each expert on its routed tokens only. */
export type ExpertForm = 'dense' | 'routed';

/**
 * The expert form of a full decoder graph for a provider: routed on the CPU (2.43× faster decode on a
 * Mixtral-shaped model: docs/performance.md §7); dense on WebGPU and CUDA, whose placement of NonZero,
 * GatherND and ScatterND is not verified. Block (calibration) graphs are always dense.
 */
export function expertFormFor(target: GraphTarget): ExpertForm {
  return target === 'cpu' ? 'routed' : 'dense';
}

/** A linear module of a block with its input and output features. */
export interface BlockLinear {
  readonly name: string;
  readonly in: number;
  readonly out: number;
}

/** The three projections of a SwiGLU MLP (a dense MLP, a routed expert or a shared expert). */
export interface SwiGluModules {
  readonly gate: BlockLinear;
  readonly up: BlockLinear;
  readonly down: BlockLinear;
}

export type MlpModules =
  | { readonly kind: 'dense'; readonly mlp: SwiGluModules }
  | {
      readonly kind: 'sparse';
      readonly router: BlockLinear;
      readonly experts: readonly SwiGluModules[];
      readonly perToken: number;
      readonly normalizeTopK: boolean;
      /** Qwen2-MoE: the shared expert and its one-output gate. */
      readonly shared?: { readonly mlp: SwiGluModules; readonly gate: BlockLinear };
    };

function swiGlu(prefix: string, names: { gate: string; up: string; down: string }, H: number, I: number): SwiGluModules {
  return {
    gate: { name: `${prefix}.${names.gate}`, in: H, out: I },
    up: { name: `${prefix}.${names.up}`, in: H, out: I },
    down: { name: `${prefix}.${names.down}`, in: I, out: H },
  };
}

const DENSE_NAMES = { gate: 'gate_proj', up: 'up_proj', down: 'down_proj' };

/** The MLP modules of block `l`. */
export function mlpModules(config: DecoderConfig, l: number): MlpModules {
  const H = config.hiddenSize;
  const p = `model.layers.${l}`;
  const moe = config.moe;
  if (!moe || !moe.sparseLayers[l]) return { kind: 'dense', mlp: swiGlu(`${p}.mlp`, DENSE_NAMES, H, config.intermediateSize) };
  const naming: MoeNaming = moe.naming;
  const container = `${p}.${naming.container}`;
  const experts = Array.from({ length: moe.experts }, (_, e) => swiGlu(`${container}.experts.${e}`, naming, H, moe.expertIntermediateSize));
  const shared = moe.sharedExpertIntermediateSize !== undefined ? { mlp: swiGlu(`${container}.shared_expert`, DENSE_NAMES, H, moe.sharedExpertIntermediateSize), gate: { name: `${container}.shared_expert_gate`, in: H, out: 1 } } : undefined;
  return { kind: 'sparse', router: { name: `${container}.gate`, in: H, out: moe.experts }, experts, perToken: moe.perToken, normalizeTopK: moe.normalizeTopK, ...(shared ? { shared } : {}) };
}

/** Every linear of an MLP, in the order the block computes them (router first; each expert's gate, up, down). */
export function mlpLinears(modules: MlpModules): BlockLinear[] {
  const of = (m: SwiGluModules) => [m.gate, m.up, m.down];
  if (modules.kind === 'dense') return of(modules.mlp);
  return [modules.router, ...modules.experts.flatMap(of), ...(modules.shared ? [...of(modules.shared.mlp), modules.shared.gate] : [])];
}

/** Records statistics of a tensor that is the input of some linear modules (graph.ts writeBlockGraph). */
export interface Tapper {
  tap(x: string, inFeatures: number, modules: readonly string[]): void;
}

/** What the MLP emission needs from the block emitter. */
export interface MlpEmitter {
  readonly g: GraphBuilder;
  readonly floatType: DataType.FLOAT | DataType.FLOAT16;
  linear(name: string, inFeatures: number, outFeatures: number, x: string): Promise<string>;
}

async function emitSwiGlu(e: MlpEmitter, m: SwiGluModules, x: string, tapper: Tapper | undefined): Promise<string> {
  const g = e.g;
  const gv = await e.linear(m.gate.name, m.gate.in, m.gate.out, x);
  const uv = await e.linear(m.up.name, m.up.in, m.up.out, x);
  const act = g.op('Mul', [g.op('Mul', [gv, g.op('Sigmoid', [gv])]), uv]);
  tapper?.tap(act, m.down.in, [m.down.name]);
  return e.linear(m.down.name, m.down.in, m.down.out, act);
}

/**
 * The routing weights [batch, seq, E] in float32 from the router logits: softmax, the top-k kept (ties to the
 * lower expert index), the others zero, optionally divided by the sum of the kept ones.
 */
export function emitRoutingWeights(g: GraphBuilder, logits: string, experts: number, perToken: number, normalize: boolean): string {
  const probs = g.op('Softmax', [logits], { axis: -1 });
  // ahead[…, e, j] = p_j > p_e, or p_j = p_e and j < e: the experts ranked before e.
  const pe = g.op('Unsqueeze', [probs, g.int64s('axes', [-1])]);
  const pj = g.op('Unsqueeze', [probs, g.int64s('axes', [-2])]);
  const lowerIndex = new Float32Array(experts * experts);
  for (let e = 0; e < experts; e++) for (let j = 0; j < e; j++) lowerIndex[e * experts + j] = 1;
  const lower = g.constant('expert_lower_index', DataType.FLOAT, [experts, experts], lowerIndex);
  const greater = g.op('Cast', [g.op('Greater', [pj, pe])], { to: DataType.FLOAT });
  const tied = g.op('Mul', [g.op('Cast', [g.op('Equal', [pj, pe])], { to: DataType.FLOAT }), lower]);
  const rank = g.op('ReduceSum', [g.op('Add', [greater, tied]), g.int64s('axes', [-1])], { keepdims: 0 });
  // Ranks are small whole numbers: below k - 0.5 means among the first k.
  const selected = g.op('Cast', [g.op('Less', [rank, g.constant('top_k_bound', DataType.FLOAT, [], Float32Array.of(perToken - 0.5))])], { to: DataType.FLOAT });
  const kept = g.op('Mul', [probs, selected]);
  if (!normalize) return kept;
  return g.op('Div', [kept, g.op('ReduceSum', [kept, g.int64s('axes', [-1])], { keepdims: 1 })]);
}

/**
 * The MLP of a block on its normalised input `x` [batch, seq, H]; statistics of every linear's input through
 * `tapper` (dense form only: the statistics are over all tokens).
 */
export async function emitMlp(e: MlpEmitter, modules: MlpModules, x: string, tapper?: Tapper, form: ExpertForm = 'dense'): Promise<string> {
  const g = e.g;
  if (modules.kind === 'dense') {
    tapper?.tap(x, modules.mlp.gate.in, [modules.mlp.gate.name, modules.mlp.up.name]);
    return emitSwiGlu(e, modules.mlp, x, tapper);
  }
  const { router, experts, shared } = modules;
  // The router, every expert's gate and up, and the shared expert with its gate all read the same input.
  const readers = [router.name, ...experts.flatMap((m) => [m.gate.name, m.up.name]), ...(shared ? [shared.mlp.gate.name, shared.mlp.up.name, shared.gate.name] : [])];
  tapper?.tap(x, router.in, readers);
  let logits = await e.linear(router.name, router.in, router.out, x);
  if (e.floatType !== DataType.FLOAT) logits = g.op('Cast', [logits], { to: DataType.FLOAT });
  let weights = emitRoutingWeights(g, logits, experts.length, modules.perToken, modules.normalizeTopK);
  if (e.floatType !== DataType.FLOAT) weights = g.op('Cast', [weights], { to: e.floatType });
  const sum = form === 'routed' && !tapper ? await emitRoutedExperts(e, experts, x, weights) : undefined;
  if (shared) {
    const y = await emitSwiGlu(e, shared.mlp, x, tapper);
    const gate = g.op('Sigmoid', [await e.linear(shared.gate.name, shared.gate.in, shared.gate.out, x)]);
    const gated = g.op('Mul', [y, gate]);
    if (sum) return g.op('Add', [sum, gated]);
    return g.op('Add', [await emitDenseExperts(e, experts, x, weights, tapper), gated]);
  }
  return sum ?? emitDenseExperts(e, experts, x, weights, tapper);
}

/** Σ_e w_e · expert_e(x) with every expert on every token. */
async function emitDenseExperts(e: MlpEmitter, experts: readonly SwiGluModules[], x: string, weights: string, tapper: Tapper | undefined): Promise<string> {
  const g = e.g;
  // One Slice per expert's column, not one Split: WebGPU binds all of a Split's outputs to one shader, which
  // fails beyond the adapter's storage buffers per stage (12 on SwiftShader; docs/runtime.md §8).
  const axes = g.int64s('expert_axis', [-1]);
  let sum: string | undefined;
  for (let i = 0; i < experts.length; i++) {
    const column = g.op('Slice', [weights, g.int64s('expert_start', [i]), g.int64s('expert_end', [i + 1]), axes]);
    const y = g.op('Mul', [await emitSwiGlu(e, experts[i]!, x, tapper), column]);
    sum = sum === undefined ? y : g.op('Add', [sum, y]);
  }
  return sum!;
}

/**
 * Σ_e w_e · expert_e(x) with each expert on the rows of the tokens routed to it: NonZero of its weight column
 * gives the rows, GatherND takes them, ScatterND adds the weighted outputs back into [tokens, H]. An expert no
 * token is routed to runs on zero rows, which costs nothing. Tokens whose weight underflowed to 0 are skipped:
 * their term is 0 either way.
 */
async function emitRoutedExperts(e: MlpEmitter, experts: readonly SwiGluModules[], x: string, weights: string): Promise<string> {
  const g = e.g;
  const H = experts[0]!.gate.in;
  const shape = g.op('Shape', [x]);
  const rows = g.op('Reshape', [x, g.int64s('token_rows', [-1, H])]);
  const routing = g.op('Reshape', [weights, g.int64s('token_routing', [-1, experts.length])]);
  const zero = g.constant('zero_value', e.floatType, [], e.floatType === DataType.FLOAT ? Float32Array.of(0) : encodeFromFloat32('F16', Float32Array.of(0)));
  let sum = g.op('Expand', [zero, g.op('Shape', [rows])]);
  const axes = g.int64s('expert_axis', [1]);
  for (let i = 0; i < experts.length; i++) {
    const column = g.op('Slice', [routing, g.int64s('expert_start', [i]), g.int64s('expert_end', [i + 1]), axes]);
    const routed = g.op('Reshape', [g.op('Greater', [column, zero]), g.int64s('flat', [-1])]);
    const index = g.op('Transpose', [g.op('NonZero', [routed])], { perm: [1, 0] });
    const y = await emitSwiGlu(e, experts[i]!, g.op('GatherND', [rows, index]), undefined);
    sum = g.op('ScatterND', [sum, index, g.op('Mul', [y, g.op('GatherND', [column, index])])], { reduction: 'add' });
  }
  return g.op('Reshape', [sum, shape]);
}
