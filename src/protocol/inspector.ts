/**
 * Messages between the checkpoint inspector's host (extension) and its webview. Both sides import these
 * types; the webview never receives whole tensors, only summaries and pages of rows.
 *
 * Requests carry a `requestId`; the host answers with a `response` of the same id (or an `error`), so the
 * webview can await replies (see webview/shared/rpc.ts).
 */
import type { CheckpointSummary, TensorRow } from '../core/checkpoint/summary';
import type { TensorTableQuery } from '../core/checkpoint/tensorQuery';

/** The header-level summary without the tensor table (which is paged). */
export type SummaryView = Omit<CheckpointSummary, 'tensors'> & { readonly title: string };

export type TensorQuery = TensorTableQuery;

export interface TensorPage {
  readonly total: number;
  readonly offset: number;
  readonly rows: readonly TensorRow[];
  /** Set when the filter could not be used (an invalid regular expression). */
  readonly filterError?: string;
}

export type WebviewToHost =
  | { readonly type: 'ready' }
  | { readonly type: 'request'; readonly requestId: number; readonly method: 'tensorPage'; readonly params: TensorQuery }
  | { readonly type: 'openWholeCheckpoint' };

export type HostToWebview =
  | { readonly type: 'init'; readonly summary: SummaryView; readonly wholeCheckpoint?: string }
  | { readonly type: 'loadError'; readonly message: string }
  | { readonly type: 'response'; readonly requestId: number; readonly result: TensorPage }
  | { readonly type: 'error'; readonly requestId: number; readonly message: string };
