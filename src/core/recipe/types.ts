/**
 * Diagnostics, fixes and editor-facing results of the recipe / quantization-config validator. Positions are
 * 0-based lines and UTF-16 characters (what VS Code uses), so the extension maps them one to one.
 */

export type Severity = 'error' | 'warning' | 'info';

export interface Position {
  readonly line: number;
  readonly character: number;
}

export interface Range {
  readonly start: Position;
  readonly end: Position;
}

export interface TextEdit {
  readonly range: Range;
  readonly newText: string;
}

export interface Fix {
  readonly title: string;
  readonly edits: readonly TextEdit[];
}

export interface Diagnostic {
  readonly severity: Severity;
  readonly message: string;
  readonly range: Range;
  /** Stable identifier of the rule, e.g. `unknown-field`, `retired-field`, `yaml-syntax`. */
  readonly code: string;
  readonly fix?: Fix;
}

export interface Hover {
  /** Markdown. */
  readonly contents: string;
  readonly range: Range;
}

export type CompletionKind = 'stage' | 'group' | 'modifier' | 'field' | 'value' | 'module' | 'preset';

export interface CompletionItem {
  readonly label: string;
  readonly kind: CompletionKind;
  /** One line shown beside the label (type, default). */
  readonly detail?: string;
  /** Markdown. */
  readonly documentation?: string;
  /** Text inserted in place of `range` (defaults to the label). */
  readonly insertText?: string;
  /** The text the item replaces: the partial word before the cursor. */
  readonly range: Range;
  readonly sortText?: string;
}

/** The linear layers (and all module names) of a model, for target / ignore / group-size checks. */
export interface ModelLayer {
  /** Full module name, e.g. `model.layers.0.self_attn.q_proj`. */
  readonly name: string;
  /** `Linear` for linear layers, `Embedding` for embeddings. */
  readonly className: string;
  /** Input features (weight columns), when known. */
  readonly inFeatures?: number;
  readonly outFeatures?: number;
  /** True for an lm_head tied to the embeddings (absent from the checkpoint's tensors). */
  readonly tied?: boolean;
  /** Bytes of the layer's biases (`bias`, a router's `e_score_correction_bias`), which a quantize job copies as they are. */
  readonly biasBytes?: number;
  /**
   * Float fused mixture-of-experts tensors (`mlp.experts.gate_up_proj` / `down_proj`, docs/formats.md §3.14),
   * which the quantize job splits into `experts` × `projections` per-expert linears of [outFeatures, inFeatures]
   * each (gate_up_proj: gate_proj and up_proj; down_proj: down_proj); their biases are in biasBytes.
   */
  readonly fusedExperts?: { readonly experts: number; readonly projections: number };
}

export interface ModelLayers {
  /** Linear (and embedding) modules, in checkpoint order. */
  readonly layers: readonly ModelLayer[];
  /** Every module name that owns a tensor, including parents (`model`, `model.layers.0`, norms …). */
  readonly modules: readonly string[];
  /** Bytes per element of the unquantized weights (2 for bf16/fp16, 4 for fp32). */
  readonly dtypeBytes: number;
  /** Sum of all tensor bytes of the checkpoint, when read from one. */
  readonly totalBytes?: number;
  /** Bytes of the linear layers' own tensors (weights, scales, zero points, g_idx), when read from one. */
  readonly linearBytes?: number;
  /** Where the layers came from (a checkpoint folder), for messages. */
  readonly source?: string;
}

export interface ValidateOptions {
  /** Layers of the model the recipe or config applies to; enables the per-layer checks. */
  readonly model?: ModelLayers;
}
