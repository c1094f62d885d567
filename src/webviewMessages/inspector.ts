/**
 * Messages between the checkpoint inspector's host (extension) and its webview. Both sides import these
 * types; the webview never receives whole tensors, only summaries and pages of rows.
 *
 * Requests carry a `requestId`; the host answers with a `response` of the same id (or an `error`), so the
 * webview can await replies (see webview/common/vscodeApi.ts).
 */
import type { CheckpointSummary, TensorRow } from '../core/checkpoint/summary';
import type { TensorTableQuery } from '../core/checkpoint/tensorQuery';
import type { LinearModule } from '../core/checkpoint/scheme';
import type { TensorStatistics } from '../core/stats/tensorStats';
import type { WeightStatistics, WeightView } from '../core/stats/weightStats';
import type { ModuleScales } from '../core/inspect/scales';
import type { HealthFinding } from '../core/inspect/health';
import type { ErrorReport, SimulationName } from '../core/inspect/error';

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

/** Request methods the webview can call, with their parameter and result types. */
export interface InspectorMethods {
  tensorPage: { params: TensorQuery; result: TensorPage };
  layerPage: { params: LayerQuery; result: LayerPage };
  /** Without `view`: the tensor as stored. With it: the quantized weight whose codes the tensor holds. */
  tensorStats: { params: { tensor: string; bins?: number; view?: WeightView }; result: TensorStatistics | WeightStatistics };
  scales: { params: Record<string, never>; result: ModuleScales[] };
  health: { params: { weights: boolean }; result: HealthView };
  /** Simulate a scheme, or compare with an original (`original: 'pick'` asks the user for the folder). */
  errors: { params: { simulation?: SimulationName; original?: string; calibStats?: string }; result: ErrorReport };
}

export type InspectorMethod = keyof InspectorMethods;

export type WebviewToHost =
  | { readonly type: 'ready' }
  | { readonly type: 'request'; readonly requestId: number; readonly method: InspectorMethod; readonly params: unknown }
  | { readonly type: 'cancel'; readonly requestId: number }
  | { readonly type: 'openWholeCheckpoint' }
  /** What the page shows after rendering (for the log, and for tests to check the real UI). */
  | { readonly type: 'rendered'; readonly view: RenderedView };

export type InspectorTab = 'overview' | 'layers' | 'tensors' | 'scales' | 'error' | 'health';

export interface RenderedView {
  readonly title: string;
  readonly scheme: string;
  readonly tab: string;
  readonly tabs: readonly string[];
  /** On-demand views that have content: 'scales', 'health', 'stats:<tensor>'. */
  readonly loaded: readonly string[];
  /** The first layer of the error ranking on the page, once an error report is shown. */
  readonly worstLayer?: string;
  /** What the virtualized tables hold and actually render (tests check that the DOM stays bounded). */
  readonly tables?: Readonly<Partial<Record<InspectorTable, TableView>>>;
  /** True when the page was reloaded from its saved state (its tab had been hidden and was shown again). */
  readonly restored: boolean;
  /** The selected tensor's detail as the page shows it, once a tensor is selected. */
  readonly tensorDetail?: TensorDetailView;
  /** The overview's fields as the page shows them: label → text ('Linear layers', 'Tensors', 'Parameters', …). */
  readonly overview?: Readonly<Record<string, string>>;
  /** The Scales tab's heatmap as drawn, once the scales are loaded. */
  readonly scales?: HeatmapView;
  /** The Error tab's report as shown, once one is. */
  readonly error?: ErrorReportView;
  /**
   * Milestones of this page load in ms since its navigation began: the script started (after the webview
   * machinery and the bundle loaded), the host's init arrived, the first render was reported.
   */
  readonly timing: { readonly scriptStart: number; readonly init: number; readonly firstRender: number };
}

/** What a tensor's statistics show: a quantized layer's dequantized weight or codes, or the tensor as stored. */
export type TensorValuesView = WeightView | 'stored';

/** The tensor detail, read back from the page's DOM (tests compare it with an independent computation). */
export interface TensorDetailView {
  readonly tensor: string;
  /** Whether the tensor holds a quantized layer's codes (then the page offers the values toggle). */
  readonly quantized: boolean;
  /** The view the statistics are (or would be) computed in. */
  readonly view: TensorValuesView;
  /** The values toggle as the DOM has it: absent for a tensor that is not a quantized layer's codes. */
  readonly toggle?: {
    readonly tag: string;
    readonly role: string;
    /** Its accessible name (aria-label). */
    readonly label: string;
    /** -1 when it cannot be reached with Tab. */
    readonly tabIndex: number;
    /** Whether it has the keyboard focus. */
    readonly focused: boolean;
    readonly value: string;
    readonly options: readonly string[];
  };
  /** The statistics on screen, when computed. */
  readonly stats?: {
    readonly view: TensorValuesView;
    /** Each field of the statistics grid: label → the text shown. */
    readonly fields: Readonly<Record<string, string>>;
    /** The numbers the page formatted into those fields. */
    readonly values: { readonly min: number; readonly max: number; readonly mean: number; readonly std: number; readonly absMax: number; readonly count: number; readonly nan: number };
    /** Which histogram is drawn: of the values, or of log10 |value| (zeros excluded). */
    readonly histogramAxis: 'linear' | 'log';
    /** Sum of the counts on the histogram's bars (from their tooltips), and how many bars it has. */
    readonly histogramTotal: number;
    readonly histogramBars: number;
  };
}

/** A heatmap read back from its SVG: what a user sees on it and in its cells' tooltips. */
export interface HeatmapView {
  /** Its title (aria-label). */
  readonly title: string;
  /** Row labels (decoder layers), top to bottom, and column labels (projections), left to right. */
  readonly rows: readonly string[];
  readonly columns: readonly string[];
  /** The cells that hold a value, row by row: their labels, tooltip text and fill opacity (darker = larger). */
  readonly cells: readonly { readonly row: string; readonly column: string; readonly text: string; readonly opacity: number }[];
  /** The colour scale under it: the texts at its light (min) and dark (max) ends. */
  readonly legend?: { readonly min: string; readonly max: string };
}

/** The Error tab's report as the DOM has it. */
export interface ErrorReportView {
  /** The status line ("<scheme>: median SQNR … dB over N layers"). */
  readonly summary: string;
  /** The ignore-list suggestion line. */
  readonly suggestion: string;
  /** The "Worst layers" table's header and rows, cell texts left to right. */
  readonly rankingHeader: readonly string[];
  readonly ranking: readonly (readonly string[])[];
  readonly heatmap?: HeatmapView;
  /** Layers listed as not evaluated, with the reason. */
  readonly skipped: readonly string[];
  /** What the numbers are: weight error vs output error on calibration tokens (when the report has both). */
  readonly caption: string;
}

export type InspectorTable = 'tensors' | 'layers';

export interface TableView {
  /** Rows matching the filter. */
  readonly total: number;
  readonly filter: string;
  /** Row elements in the DOM right now. */
  readonly domRows: number;
  /** Index and first cell text of the first and last rendered rows. */
  readonly first?: { readonly index: number; readonly text: string };
  readonly last?: { readonly index: number; readonly text: string };
  /** Every row in the DOM (at most a viewport's worth): its index and the text of each cell. */
  readonly rows: readonly { readonly index: number; readonly cells: readonly string[] }[];
  /** The table's status line as shown ("29 layers", "100,000 tensors", or the filter's error). */
  readonly status: string;
}

/** Sets a table's filter and/or scrolls it (the API's revealInInspector, e.g. "show the last tensor"). */
export interface TableCommand {
  readonly table: InspectorTable;
  readonly filter?: string;
  /** Row index to scroll into view, or 'end'. */
  readonly scrollTo?: number | 'end';
  /**
   * Then open the selected row's detail the way a keyboard user does (Enter on the table), and in a tensor's
   * detail pick `statsView` on the values toggle with the arrow keys and/or press "Compute statistics".
   */
  readonly open?: { readonly statsView?: TensorValuesView; readonly compute?: boolean };
}

export type HostToWebview =
  | { readonly type: 'init'; readonly summary: SummaryView; readonly wholeCheckpoint?: string }
  | { readonly type: 'loadError'; readonly message: string }
  | { readonly type: 'progress'; readonly requestId: number; readonly fraction: number; readonly what?: string }
  /** Switch to a tab; optionally start that tab's on-demand work (load scales, run the health scan). */
  | { readonly type: 'show'; readonly tab: InspectorTab; readonly start?: boolean; readonly params?: InspectorMethods['errors']['params'] }
  /** A health report produced outside the page (the "Run Health Scan" command). */
  | { readonly type: 'healthReport'; readonly report: HealthView }
  | { readonly type: 'table'; readonly command: TableCommand }
  | { readonly type: 'response'; readonly requestId: number; readonly result: unknown }
  | { readonly type: 'error'; readonly requestId: number; readonly message: string; readonly cancelled?: boolean };
