/**
 * Messages between the recipe preview's host (src/extension/recipePreview.ts) and its webview
 * (webview/recipe). The host sends the preview without its layer list; the webview pages the layers
 * (a MoE model has tens of thousands of linear layers) with `layerPage` requests (endpoint.ts).
 */
import type { PreviewLayerPage, PreviewLayerQuery, RecipePreview, RunAvailability } from '../core/recipe/preview';
import type { ViewMessages } from './endpoint';

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

export type RevealRange = { readonly line: number; readonly character?: number; readonly endLine?: number; readonly endCharacter?: number };

export interface RecipeMessages extends ViewMessages {
  requests: {
    layerPage: { params: PreviewLayerQuery; result: PreviewLayerPage };
  };
  toPage:
    | { readonly type: 'update'; readonly update: PreviewUpdate }
    /** Something went wrong outside the preview itself (Run failed to start). */
    | { readonly type: 'notice'; readonly message: string; readonly severity: 'error' | 'info' };
  toHost:
    /** The page (re)loaded; `model` is the folder its saved state remembers, if any. */
    | { readonly type: 'ready'; readonly model?: string }
    /** Reveal a 0-based line (and column) of the recipe in a text editor. */
    | ({ readonly type: 'reveal' } & RevealRange)
    /** A model picked in the page; 'choose' opens a folder dialog. */
    | { readonly type: 'chooseModel'; readonly path: string | 'choose' | '' }
    | { readonly type: 'run' };
}
