/**
 * Messages between the chat view's host (src/extension/chat) and its webview (webview/chat). The host owns
 * the models and the transcript (so a turn that streams while the view is hidden is not lost); the webview
 * renders it, keeps its inputs with setState, and asks for everything else.
 */
import type { CompareStep, Side, SideStats } from '../core/runtime/chat';
import type { ChatModelInfo } from '../core/runtime/chatSession';
import type { PairPerplexity } from '../core/runtime/chatSession';

export type { Side, SideStats, CompareStep, ChatModelInfo, PairPerplexity };

export interface ChatSettings {
  readonly system: string;
  /** 0 = greedy. */
  readonly temperature: number;
  readonly topP: number;
  readonly maxNewTokens: number;
  readonly seed: number;
  /** Run the original beside the quantized model. */
  readonly compare: boolean;
}

export const DEFAULT_CHAT_SETTINGS: ChatSettings = { system: 'You are a concise assistant.', temperature: 0, topP: 0.9, maxNewTokens: 64, seed: 0, compare: true };

export interface ModelPairView {
  readonly quantized?: string;
  readonly original?: string;
  readonly state: 'none' | 'loading' | 'ready' | 'error';
  /** Progress while loading, the reason when failed. */
  readonly message?: string;
  readonly quantizedInfo?: ChatModelInfo;
  readonly originalInfo?: ChatModelInfo;
  /** The sides whose config.json marks the weights as generated (the shipped example): their answers are noise. */
  readonly synthetic?: readonly Side[];
}

/** Where a chat page is shown: the side-bar view or an editor tab. */
export type ChatSurface = 'view' | 'panel';

export interface SideView {
  text: string;
  tokens: number;
  stats?: SideStats;
}

export interface StepView {
  readonly agree: boolean;
  readonly kl: number;
}

export interface TurnView {
  readonly id: number;
  readonly prompt: string;
  readonly quantized: SideView;
  original?: SideView;
  readonly steps: StepView[];
  meanKl?: number;
  agreement?: number;
  error?: { readonly code: string; readonly message: string };
  running: boolean;
}

export interface ChatStateView {
  readonly models: ModelPairView;
  readonly settings: ChatSettings;
  readonly turns: readonly TurnView[];
  readonly perplexity?: { readonly text: string; readonly result?: PairPerplexity; readonly error?: string; readonly running: boolean };
}

export type HostToChatWebview =
  | { readonly type: 'state'; readonly state: ChatStateView }
  | { readonly type: 'models'; readonly models: ModelPairView }
  | { readonly type: 'turnStarted'; readonly turn: TurnView }
  | { readonly type: 'token'; readonly turnId: number; readonly side: Side; readonly text: string }
  | { readonly type: 'step'; readonly turnId: number; readonly step: StepView }
  | { readonly type: 'sideDone'; readonly turnId: number; readonly side: Side; readonly stats: SideStats }
  | { readonly type: 'turnDone'; readonly turn: TurnView }
  | { readonly type: 'perplexity'; readonly perplexity: NonNullable<ChatStateView['perplexity']> }
  /** Sent to one page after its `ready`: where it is shown (an editor tab sits on the editor's background). */
  | { readonly type: 'surface'; readonly surface: ChatSurface }
  /** Put text into the prompt box and send it (tests and commands). */
  | { readonly type: 'ask'; readonly prompt: string };

export type ChatWebviewToHost =
  | { readonly type: 'ready' }
  | { readonly type: 'send'; readonly prompt: string; readonly settings: ChatSettings }
  | { readonly type: 'stop' }
  | { readonly type: 'clear' }
  | { readonly type: 'pickModel'; readonly side: Side }
  | { readonly type: 'useLastJob' }
  | { readonly type: 'copy'; readonly text: string }
  | { readonly type: 'perplexity'; readonly text: string }
  | { readonly type: 'settings'; readonly settings: ChatSettings }
  /** What the page shows (for the log and for tests to check the real UI). */
  | { readonly type: 'rendered'; readonly view: ChatRenderedView };

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
