/**
 * The inspector page's one state object, handed to every tab view: what survives a reload (saved with
 * setState: VS Code discards a hidden webview's page), what this load of the page holds, and the typed
 * connection to the host. Views keep no module-level state of their own; everything they share is here.
 */
import type { ErrorReport, SimulationName } from '../../src/core/inspect/error';
import type { ModuleScales } from '../../src/core/inspect/scales';
import type { TensorStatistics } from '../../src/core/stats/tensorStats';
import type { WeightStatistics } from '../../src/core/stats/weightStats';
import type { TensorRow } from '../../src/core/checkpoint/summary';
import type { PageEndpoint } from '../../src/webviewMessages/endpoint';
import type { ErrorParams, InspectorMessages, InspectorRequests, InspectorTab, InspectorTable, PlanView, SummaryView, TensorValuesView } from '../../src/webviewMessages/inspector';
import type { HostConnection } from '../common/vscodeApi';
import type { TableState, VirtualTable } from '../common/virtualTable';

/** What the page saves with setState and restores when it is shown again. */
export interface SavedState {
  tab: InspectorTab;
  tensorFilter: string;
  tensorDtype: string;
  tensorTable: TableState;
  selectedTensor?: string;
  statsScale: 'linear' | 'log';
  /** For a quantized layer's codes: dequantized values, the codes, or the tensor as stored (packed words). */
  statsView: TensorValuesView;
  /**
   * The statistics computed for the selected tensor, by view: recomputing after a reload would stream the
   * whole tensor once more.
   */
  shownStats?: { tensor: string; results: Partial<Record<TensorValuesView, TensorStatistics | WeightStatistics>> };
  layerFilter: string;
  layerState: InspectorRequests['layerPage']['params']['state'];
  layerTable: TableState;
  selectedLayer?: string;
  scaleStat: 'max' | 'mean' | 'input';
  selectedScaleModule?: string;
  simulation: SimulationName;
}

const INITIAL: SavedState = {
  tab: 'overview',
  tensorFilter: '',
  tensorDtype: '',
  tensorTable: { scrollTop: 0, selected: 0 },
  statsScale: 'linear',
  statsView: 'dequantized',
  layerFilter: '',
  layerState: '',
  layerTable: { scrollTop: 0, selected: 0 },
  scaleStat: 'max',
  simulation: 'int4-g128',
};

/** A virtualized table, registered by the view that owns it so that others can filter it (MoE groups). */
export interface RegisteredTable {
  readonly table: VirtualTable<unknown>;
  readonly status: HTMLElement;
  filter(): string;
  setFilter(text: string): Promise<void>;
}

/** The tensor whose detail is on the page, and the statistics it shows. */
export interface ShownTensorDetail {
  readonly row: TensorRow;
  readonly quantized: boolean;
  view: TensorValuesView;
  shown?: { view: TensorValuesView; result: TensorStatistics | WeightStatistics };
  /** Shows the cached statistics of the toggle's view again (unless a computation owns the detail). */
  refresh(): void;
}

export interface InspectorPage {
  readonly saved: SavedState;
  /** Writes `saved` to VS Code's webview state. */
  save(): void;
  readonly messages: PageEndpoint<InspectorMessages>;
  /** Whether this load restored a saved state (the page had been hidden and was shown again). */
  readonly restored: boolean;
  /** The checkpoint's summary, once the host sent it. */
  summary?: SummaryView;
  /** On-demand content on the page: 'scales', 'error', 'health', 'stats:<tensor>', '<view>:<tensor>'. */
  readonly loaded: Set<string>;
  readonly tables: Map<InspectorTable, RegisteredTable>;
  /** Each tab's "start its work" action (the host's `show` with start, e.g. from a command). */
  readonly starters: Map<InspectorTab, (params?: ErrorParams) => void>;
  readonly tensors: {
    /** Statistics by `${view}:${tensor}`. */
    readonly statsCache: Map<string, TensorStatistics | WeightStatistics>;
    /** Tensors that hold a quantized layer's codes, as the host marked them on the pages it sent. */
    readonly quantizedCodes: Set<string>;
    detail?: ShownTensorDetail;
  };
  /** Scale summaries once loaded (kept across re-renders of the tab). */
  scales?: ModuleScales[];
  /** The error report on the Error tab, once one is shown. */
  errorReport?: ErrorReport;
  /** The model's mixed-precision plan: undefined until the host answered, null when it has none. */
  plan?: PlanView | null;
  /** Shows a plan on the Error tab (the host pushes one when a plan job of this model finishes). */
  onPlan?: (plan: PlanView | null) => void;
  /**
   * Called by the views whenever what the page shows changed. The product does nothing with it; the test
   * build (testHooks.ts) reports the page to the host.
   */
  changed(): void;
}

export function createPage(connection: HostConnection<InspectorMessages, SavedState>): InspectorPage {
  const saved: SavedState = { ...INITIAL, ...connection.savedState };
  return {
    saved,
    save: () => connection.saveState(saved),
    messages: connection.messages,
    restored: connection.savedState !== undefined,
    loaded: new Set(),
    tables: new Map(),
    starters: new Map(),
    tensors: { statsCache: new Map(), quantizedCodes: new Set() },
    changed: () => undefined,
  };
}

/** Switches to a tab, optionally starting its on-demand work. */
export function showTab(page: InspectorPage, tab: InspectorTab, start: boolean, params?: ErrorParams): void {
  const panels = document.querySelector('vscode-panels') as (HTMLElement & { activeid?: string }) | null;
  if (!panels) return;
  page.saved.tab = tab;
  page.save();
  panels.activeid = `tab-${tab}`;
  window.dispatchEvent(new Event('resize'));
  if (start) page.starters.get(tab)?.(params);
  page.changed();
}
