/**
 * Recipe and quantization-config validation: the public API of src/core/recipe (no `vscode` here; the
 * extension and the CLI are thin shells over it).
 */
export type { CompletionItem, CompletionKind, Diagnostic, Fix, Hover, ModelLayer, ModelLayers, Position, Range, Severity, TextEdit, ValidateOptions } from './types';
export { validateRecipe, analyzeRecipe } from './recipe';
export type { RecipeAnalysis, RecipeModifier, ResolvedGroup } from './recipe';
export { validateQuantizationConfig, analyzeQuantizationConfig } from './config';
export type { QuantConfigAnalysis, QuantConfigKind } from './config';
export { hoverAt, isRecipeDocument, isQuantConfigDocument, documentKind } from './language';
export type { DocumentKind } from './language';
export { completionsAt } from './completion';
export type { CompletionOptions } from './completion';
export { modelLayersFromCheckpoint, modelLayersFromList } from './model';
export { resolveRecipe, quantizedBytes, formatOf } from './resolve';
export type { LayerPlan, RecipePlan } from './resolve';
export { MODIFIERS, MODIFIER_NAMES, ALL_PRESETS } from './schema';
export { buildRecipePreview, describeRecipeScheme, notARecipeReason, queryPreviewLayers, runAvailability, shortScheme } from './preview';
export type { LayerCounts, ModifierSummary, PreviewDiagnostic, PreviewLayer, PreviewLayerPage, PreviewLayerQuery, PreviewLayerState, RecipePreview, ResolvedMap, RunAvailability, SchemeSummary, StageSummary } from './preview';
