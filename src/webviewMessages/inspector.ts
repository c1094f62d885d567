/**
 * Messages between the checkpoint inspector's host (extension) and its webview. Both sides import these
 * types; the webview never receives whole tensors, only summaries and pages of rows.
 *
 * `InspectorMessages` is the whole exchange, carried by endpoint.ts. What only the integration tests need (the
 * page's `rendered` report, driving the tables) is in testProbes.ts, compiled out of the product.
 */
import type { CheckpointSummary, TensorRow } from '../core/checkpoint/summary';
import type { TensorTableQuery } from '../core/checkpoint/tensorQuery';
import type { LinearModule } from '../core/checkpoint/scheme';
import type { TensorStatistics } from '../core/stats/tensorStats';
import type { WeightStatistics, WeightView } from '../core/stats/weightStats';
import type { ModuleScales } from '../core/inspect/scales';
import type { HealthFinding } from '../core/inspect/health';
import type { ErrorReport, SimulationName } from '../core/inspect/error';
import type { ViewMessages } from './endpoint';

/** The header-level summary without the tensor table (which is paged). */
export type SummaryView = Omit<CheckpointSummary, 'tensors'> & {
  readonly title: string;
  /** The embedding and output-head tensors (embed_tokens, lm_head, …): their bytes and dtypes, which explain a small model's size. */
  readonly embeddings?: { readonly names: readonly string[]; readonly bytes: number; readonly dtypes: readonly string[] };
};

export type TensorQuery = TensorTableQuery;

export interface TensorPage {
  readonly total: number;
  readonly offset: number;
  readonly rows: readonly TensorRow[];
  /** Set when the filter could not be used (an invalid regular expression). */
  readonly filterError?: string;
  /** Names of rows on this page that hold a quantized layer's codes (their statistics can be dequantized). */
  readonly quantizedCodes?: readonly string[];
}

export interface LayerQuery {
  readonly filter: string;
  /** Only modules in this state ('' = all). */
  readonly state: '' | LinearModule['state'] | 'issues';
  readonly offset: number;
  readonly limit: number;
}

export interface LayerPage {
  readonly total: number;
  readonly offset: number;
  readonly rows: readonly LinearModule[];
  readonly filterError?: string;
}

export interface HealthView {
  readonly findings: readonly HealthFinding[];
  readonly scannedTensors: number;
  readonly scannedBytes: number;
}

/**
 * A measured KL, proxy or perplexity, or null where it is not a finite number (a model whose outputs
 * diverge has an infinite perplexity): messages to a page are JSON, which has no Infinity or NaN.
 */
export type Measure = number | null;

/**
 * A mixed-precision plan of this model (the plan file beside it or of the last plan job, src/core/plan/
 * planFile.ts), as the Error tab's sensitivity heatmap and size-vs-KL plot draw it.
 */
export interface PlanView {
  readonly planFile: string;
  /** The recipe the plan wrote. */
  readonly recipe: string;
  readonly candidates: readonly string[];
  readonly bytes: number;
  readonly budgetBytes: number;
  readonly bitsPerWeight: number;
  readonly dataset: string;
  readonly tokens: number;
  /** One per planned linear layer: where it sits, the scheme the plan chose, every candidate's measurement. */
  readonly layers: readonly {
    readonly module: string;
    readonly block: number;
    readonly projection: string;
    readonly chosen: string;
    readonly measurements: readonly { readonly candidate: string; readonly kl?: Measure; readonly proxy?: Measure; readonly bytes: number; readonly unservable?: string }[];
  }[];
  readonly verification?: {
    readonly evalDataset: string;
    readonly heldOut: boolean;
    readonly evalSamples: number;
    readonly seqLen: number;
    readonly points: readonly { readonly label: string; readonly kind: 'plan' | 'uniform' | 'float'; readonly fileBytes: number; readonly linearBytes: number; readonly bitsPerWeight: number; readonly kl: Measure; readonly perplexity: Measure }[];
  };
}

/** Requests the page makes, with their parameter and result types. */
export type InspectorRequests = {
  tensorPage: { params: TensorQuery; result: TensorPage };
  layerPage: { params: LayerQuery; result: LayerPage };
  /** Without `view`: the tensor as stored. With it: the quantized weight whose codes the tensor holds. */
  tensorStats: { params: { tensor: string; bins?: number; view?: WeightView }; result: TensorStatistics | WeightStatistics };
  scales: { params: Record<string, never>; result: ModuleScales[] };
  health: { params: { weights: boolean }; result: HealthView };
  /** Simulate a scheme, or compare with an original (`original: 'pick'` asks the user for the folder). */
  errors: { params: { simulation?: SimulationName; original?: string; calibStats?: string }; result: ErrorReport };
  /** The newest plan of this model, or null when there is none (a plan file that cannot be read is an error). */
  plan: { params: Record<string, never>; result: PlanView | null };
};

export type ErrorParams = InspectorRequests['errors']['params'];

export type InspectorTab = 'overview' | 'layers' | 'tensors' | 'scales' | 'error' | 'health';

export interface InspectorMessages extends ViewMessages {
  requests: InspectorRequests;
  toPage:
    | { readonly type: 'init'; readonly summary: SummaryView; readonly wholeCheckpoint?: string }
    | { readonly type: 'loadError'; readonly message: string }
    /** Switch to a tab; optionally start that tab's on-demand work (load scales, run the health scan, compare). */
    | { readonly type: 'show'; readonly tab: InspectorTab; readonly start?: boolean; readonly params?: ErrorParams }
    /** A health report produced outside the page (the "Run Health Scan" command). */
    | { readonly type: 'healthReport'; readonly report: HealthView }
    /** A plan job of this model finished: the Error tab shows its plan. */
    | { readonly type: 'plan'; readonly plan: PlanView };
  toHost:
    | { readonly type: 'ready' }
    | { readonly type: 'openWholeCheckpoint' };
}

export type InspectorTable = 'tensors' | 'layers';

/** What a tensor's statistics show: a quantized layer's dequantized weight or codes, or the tensor as stored. */
export type TensorValuesView = WeightView | 'stored';

