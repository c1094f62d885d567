/**
 * Messages between the recipe preview's host (src/extension/recipePreview.ts) and its webview
 * (webview/recipe). The host sends the preview without its layer list; the webview pages the layers
 * (a MoE model has tens of thousands of linear layers) with `layerPage` requests answered by `response`.
 */
import type { PreviewLayerPage, PreviewLayerQuery, RecipePreview, RunAvailability } from '../core/recipe/preview';

/** The preview as posted: the resolved map carries counts and size, the rows come through `layerPage`. */
export type PreviewView =
  | Extract<RecipePreview, { isRecipe: false }>
  | (Omit<Extract<RecipePreview, { isRecipe: true }>, 'resolved'> & { readonly resolved?: Omit<NonNullable<Extract<RecipePreview, { isRecipe: true }>['resolved']>, 'layers'> });

export interface ModelChoice {
  /** Absolute folder path. */
  readonly path: string;
  /** Shown in the picker: workspace-relative when possible. */
  readonly label: string;
  /** Where it was found: the `quantlens.recipe.model` setting, the recipe's own folder chain, the workspace, or chosen. */
  readonly origin: 'setting' | 'ancestor' | 'workspace' | 'chosen';
}

export interface PreviewUpdate {
  readonly fileName: string;
  /** The document version this preview was computed from. */
  readonly version: number;
  readonly preview: PreviewView;
  readonly model?: string;
  /** Set while the chosen model's headers are being read, or when they could not be read. */
  readonly modelStatus?: { readonly loading?: boolean; readonly error?: string };
  readonly models: readonly ModelChoice[];
  readonly run: RunAvailability;
}

export interface RecipeMethods {
  layerPage: { params: PreviewLayerQuery; result: PreviewLayerPage };
}

export type RecipeMethod = keyof RecipeMethods;

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

export type RecipeWebviewToHost =
  /** The page (re)loaded; `model` is the folder its saved state remembers, if any. */
  | { readonly type: 'ready'; readonly model?: string }
  | { readonly type: 'request'; readonly requestId: number; readonly method: RecipeMethod; readonly params: unknown }
  /** Reveal a 0-based line (and column) of the recipe in a text editor. */
  | { readonly type: 'reveal'; readonly line: number; readonly character?: number; readonly endLine?: number; readonly endCharacter?: number }
  /** A model picked in the page; 'choose' opens a folder dialog. */
  | { readonly type: 'chooseModel'; readonly path: string | 'choose' | '' }
  | { readonly type: 'run' }
  | { readonly type: 'rendered'; readonly view: RecipeRenderedView };

export type RecipeHostToWebview =
  | { readonly type: 'update'; readonly update: PreviewUpdate }
  /** Something went wrong outside the preview itself (Run failed to start). */
  | { readonly type: 'notice'; readonly message: string; readonly severity: 'error' | 'info' }
  | { readonly type: 'response'; readonly requestId: number; readonly result: unknown }
  | { readonly type: 'error'; readonly requestId: number; readonly message: string };
