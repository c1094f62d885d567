/** Messages between the recipe worker (recipe.worker.ts) and its client (src/core/recipe/recipeWorker.ts). */
import type { DocumentKind } from '../recipe/language';
import type { RecipePreview } from '../recipe/preview';
import type { CompletionItem, Diagnostic, Hover, ModelLayers, Position } from '../recipe/types';

export interface RecipeMethods {
  /** Diagnostics of a recipe or a quantization config, with the model-aware checks when `model` is given. */
  validate: { params: { text: string; kind: DocumentKind; model?: ModelLayers }; result: Diagnostic[] };
  /** The recipe preview's view model (src/core/recipe/preview.ts). */
  preview: { params: { text: string; fileName: string; model?: ModelLayers }; result: RecipePreview };
  hover: { params: { text: string; position: Position; kind: DocumentKind }; result: Hover | undefined };
  completion: { params: { text: string; position: Position; kind: DocumentKind; model?: ModelLayers }; result: CompletionItem[] };
}

export type RecipeMethodName = keyof RecipeMethods;

export type ToRecipeWorker = { readonly type: 'run'; readonly id: number; readonly method: RecipeMethodName; readonly params: unknown };

export type FromRecipeWorker =
  | { readonly type: 'result'; readonly id: number; readonly result: unknown }
  | { readonly type: 'error'; readonly id: number; readonly message: string };
