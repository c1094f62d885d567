/**
 * The test-only channel between a webview and its host: what the integration tests observe (each page's
 * `rendered` report: what it shows, read back from its DOM) and how they drive a page the way a user would
 * (typing a prompt, filtering and scrolling a table). None of it is the product's: the code that sends or
 * receives these runs only under `if (__QUANTLENS_TEST_HOOKS__)`, which `node esbuild.mjs --production`
 * (the .vsix build) sets to false and drops; test/unit/production-bundle.test.ts checks that it does.
 */
import type { InspectorTable, TensorValuesView } from './inspector';

/** Every probe message type: the production bundles contain none of these names. */
export const TEST_PROBE_TYPES = ['probe:rendered', 'probe:revealInTable', 'probe:ask', 'probe:pressKey'] as const;

/**
 * Names that only the test channel uses: members of the test API (src/extension/testApi.ts; its other
 * members, such as the chat's `transcript`, are product methods too) and fields of the pages' `rendered`
 * reports. Property names survive minification, so a leaked hook would show in the production bundles.
 */
export const TEST_ONLY_NAMES = [
  ...TEST_PROBE_TYPES,
  'showInspectorTab',
  'revealInInspector',
  'pressKeyInInspector',
  'recipePreviews',
  'waitForRendered',
  'askThroughPage',
  'tensorDetail',
  'worstLayer',
  'histogramTotal',
  'rankingHeader',
  'visibleRows',
  'runReasons',
  'nestedScrollAreas',
  'summaryClipped',
] as const;

/** Page → host: what the page shows now (sent after each render). */
export type PageProbe<View> = { readonly type: (typeof TEST_PROBE_TYPES)[0]; readonly view: View };

/**
 * Host → inspector page: set a table's filter and/or scroll it, as a user would; or focus the `index`-th
 * element matching `selector` and press `key` there (keydown, as the keyboard delivers it).
 */
export type InspectorHostProbe =
  | { readonly type: (typeof TEST_PROBE_TYPES)[1]; readonly command: TableCommand }
  | { readonly type: (typeof TEST_PROBE_TYPES)[3]; readonly selector: string; readonly index: number; readonly key: string };

/** Host → chat page: type a prompt into the prompt box and send it. */
export type ChatHostProbe = { readonly type: (typeof TEST_PROBE_TYPES)[2]; readonly prompt: string };

// ---------------------------------------------------------------------------------------------- inspector

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
  /** The Error tab's mixed-precision plan section as shown, when the model has a plan. */
  readonly plan?: PlanSectionView;
  /**
   * Milestones of this page load in ms since its navigation began: the script started (after the webview
   * machinery and the bundle loaded), the host's init arrived, the first render was reported.
   */
  readonly timing: { readonly scriptStart: number; readonly init: number; readonly firstRender: number };
}

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

/** The plan section of the Error tab (webview/inspector/planSection.ts), read back from its DOM. */
export interface PlanSectionView {
  readonly summary: string;
  /** The colour-by dropdown's value ('chosen' or a candidate). */
  readonly colourBy: string;
  readonly heatmap?: HeatmapView;
  /** The layer detail's heading and rows (candidate, KL, proxy, bytes, why not), once a cell was chosen. */
  readonly detail?: { readonly module: string; readonly rows: readonly (readonly string[])[] };
  /** The size-vs-KL plot's points (their accessible names) and the verification table's rows. */
  readonly scatter: readonly string[];
  readonly verification: readonly (readonly string[])[];
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


// ---------------------------------------------------------------------------------------------- recipe preview

/** What the page reports after rendering (for the log and for tests to check the real UI). */
export interface RecipeRenderedView {
  readonly version: number;
  readonly isRecipe: boolean;
  /** The "not a recipe" text, when shown. */
  readonly notRecipe?: string;
  readonly stages: number;
  readonly modifiers: readonly string[];
  /** Scheme descriptions as shown in the summary. */
  readonly schemes: readonly string[];
  readonly diagnostics: readonly { readonly line: number; readonly severity: string; readonly message: string }[];
  /** The banner at the top while the recipe has errors: its text and the 1-based line its button opens. */
  readonly errorBanner?: { readonly text: string; readonly line: number };
  /** The "Estimated output size" section's text as shown. */
  readonly sizeText: string;
  /** The layer section's text when it shows no layer map because the recipe's errors withheld it. */
  readonly layerMapWithheld?: string;
  readonly model?: string;
  /** Counts as printed on the page, e.g. { quantized: 28, ignored: 1, unmatched: 0, indivisible: 0 }. */
  readonly counts?: { readonly total: number; readonly quantized: number; readonly ignored: number; readonly unmatched: number; readonly indivisible: number };
  readonly inputBytes?: number;
  readonly estimatedBytes?: number;
  /** Rows of the layer table currently in the DOM (name and state text). */
  readonly visibleRows: readonly { readonly name: string; readonly state: string; readonly flagged: boolean }[];
  readonly runEnabled: boolean;
  readonly runReasons: readonly string[];
  readonly scrollTop: number;
}

// ---------------------------------------------------------------------------------------------- chat

export interface ChatRenderedView {
  readonly turns: number;
  /** Text of the last turn's answers as the page shows them. */
  readonly quantizedText: string;
  readonly originalText: string;
  /** The divergence summary line of the last turn. */
  readonly divergence: string;
  /** An error shown in the panel, if any. */
  readonly error: string;
  readonly running: boolean;
  /** The model paths the page shows (quantized, original; '' when none). */
  readonly quantizedModel: string;
  readonly originalModel: string;
  /** The synthetic-weights note as shown ('' when the page shows none). */
  readonly syntheticNote: string;
  readonly layout: ChatLayoutView;
}

/** Measurements of the page, so tests can check what the user sees fits. */
export interface ChatLayoutView {
  /** The page's width in CSS pixels. */
  readonly pageWidth: number;
  /** True when the last turn's answers are stacked (quantized above original) rather than side by side. */
  readonly stacked: boolean;
  /** Each answer column of the last turn: its text box's inner width in characters of the answer font. */
  readonly answerColumnChars: readonly number[];
  /** Width in CSS pixels of one character of the answer font. */
  readonly answerCharWidth: number;
  /** The last turn's summary line: shown at all, and whether its text is cut off horizontally. */
  readonly summaryShown: boolean;
  readonly summaryClipped: boolean;
  /** The summary line lies inside the conversation's visible area. */
  readonly summaryInView: boolean;
  /** Elements inside the conversation that scroll on their own (0: one scroll area). */
  readonly nestedScrollAreas: number;
}
