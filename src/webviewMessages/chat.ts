/**
 * Messages between the chat view's host (src/extension/chat) and its webview (webview/chat). The host owns
 * the models and the transcript (so a turn that streams while the view is hidden is not lost); the webview
 * renders it, keeps its inputs with setState, and asks for everything else.
 */
import type { CompareStep, Side, SideStats } from '../core/chat/generation';
import type { ChatModelInfo } from '../core/chat/modelPair';
import type { PairPerplexity } from '../core/chat/modelPair';
import type { ViewMessages } from './endpoint';

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

export interface ChatMessages extends ViewMessages {
  requests: {
    /** Opens a folder dialog for one side; resolves once the chosen pair starts loading (false: nothing chosen). */
    pickModel: { params: { side: Side }; result: boolean };
    /** The latest finished quantize job's output and source as the pair; false when there is none. */
    useLastJob: { params: Record<string, never>; result: boolean };
    copy: { params: { text: string }; result: void };
  };
  toPage:
    | { readonly type: 'state'; readonly state: ChatStateView }
    | { readonly type: 'models'; readonly models: ModelPairView }
    | { readonly type: 'turnStarted'; readonly turn: TurnView }
    | { readonly type: 'token'; readonly turnId: number; readonly side: Side; readonly text: string }
    | { readonly type: 'step'; readonly turnId: number; readonly step: StepView }
    | { readonly type: 'sideDone'; readonly turnId: number; readonly side: Side; readonly stats: SideStats }
    | { readonly type: 'turnDone'; readonly turn: TurnView }
    | { readonly type: 'perplexity'; readonly perplexity: NonNullable<ChatStateView['perplexity']> }
    /** Sent to one page after its `ready`: where it is shown (an editor tab sits on the editor's background). */
    | { readonly type: 'surface'; readonly surface: ChatSurface };
  toHost:
    | { readonly type: 'ready' }
    | { readonly type: 'send'; readonly prompt: string; readonly settings: ChatSettings }
    | { readonly type: 'stop' }
    | { readonly type: 'clear' }
    | { readonly type: 'perplexity'; readonly text: string }
    | { readonly type: 'settings'; readonly settings: ChatSettings };
}
