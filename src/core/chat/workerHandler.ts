/**
 * The chat worker's side: messages in, a loaded pair, turns streamed back as messages. Runs in a
 * worker_thread (src/core/workers/chat.worker.ts) so generation never runs on the extension host's thread;
 * `stop` aborts the running turn between two steps. One pair and one conversation per worker.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ChatTurnResult, CompareStep, GenerationSettings, Side, SideStats } from './generation';
import { ChatPair, ChatModelInfo, ChatDevice, Conversation, PairPerplexity, loadChatPair, pairPerplexity, releasePair, runPairTurn } from './modelPair';
import { describeChatError } from './errorMessages';

export type ToChatWorker =
  | { readonly type: 'load'; readonly id: number; readonly quantized: string; readonly original?: string; readonly device: ChatDevice; readonly cacheDir: string; readonly threads?: number }
  | { readonly type: 'turn'; readonly id: number; readonly system: string; readonly prompt: string; readonly settings: GenerationSettings; readonly compare: boolean }
  | { readonly type: 'perplexity'; readonly id: number; readonly text: string }
  /** Forget the conversation (the models stay loaded). */
  | { readonly type: 'clear'; readonly id: number }
  | { readonly type: 'stop' };

export interface LoadedPairInfo {
  readonly quantized: ChatModelInfo;
  readonly original?: ChatModelInfo;
}

export type FromChatWorker =
  | { readonly type: 'progress'; readonly id: number; readonly what: string }
  | { readonly type: 'token'; readonly id: number; readonly side: Side; readonly token: number; readonly text: string }
  | { readonly type: 'step'; readonly id: number; readonly step: CompareStep }
  | { readonly type: 'sideDone'; readonly id: number; readonly side: Side; readonly stats: SideStats }
  | { readonly type: 'result'; readonly id: number; readonly result: LoadedPairInfo | ChatTurnResult | PairPerplexity | null }
  | { readonly type: 'error'; readonly id: number; readonly code: string; readonly message: string };

export function serveChat(port: MessagePort | { on(event: 'message', listener: (m: ToChatWorker) => void): void; postMessage(m: FromChatWorker): void }): void {
  let pair: ChatPair | undefined;
  let conversation = new Conversation();
  let running: AbortController | undefined;
  /** Requests run one after another (a session runs one thing at a time); stop jumps the queue. */
  let queue: Promise<void> = Promise.resolve();
  const post = (message: FromChatWorker) => port.postMessage(message);

  const handle = async (message: Exclude<ToChatWorker, { type: 'stop' }>): Promise<void> => {
    const id = message.id;
    const controller = new AbortController();
    running = controller;
    try {
      switch (message.type) {
        case 'load': {
          if (pair) await releasePair(pair);
          pair = undefined;
          conversation = new Conversation();
          pair = await loadChatPair(message.quantized, message.original, {
            cacheDir: message.cacheDir,
            device: message.device,
            ...(message.threads ? { intraOpNumThreads: message.threads } : {}),
            onProgress: (what) => post({ type: 'progress', id, what }),
          });
          post({ type: 'result', id, result: { quantized: pair.quantized.info, ...(pair.original ? { original: pair.original.info } : {}) } });
          return;
        }
        case 'turn': {
          if (!pair) throw new Error('no model is loaded: pick a model first');
          const result = await runPairTurn(
            pair,
            conversation,
            message.system,
            message.prompt,
            message.settings,
            {
              token: (side, token, text) => post({ type: 'token', id, side, token, text }),
              step: (step) => post({ type: 'step', id, step }),
              done: (side, stats) => post({ type: 'sideDone', id, side, stats }),
            },
            controller.signal,
            message.compare,
          );
          post({ type: 'result', id, result });
          return;
        }
        case 'perplexity': {
          if (!pair) throw new Error('no model is loaded: pick a model first');
          post({ type: 'result', id, result: await pairPerplexity(pair, message.text, controller.signal) });
          return;
        }
        case 'clear':
          conversation = new Conversation();
          post({ type: 'result', id, result: null });
          return;
      }
    } catch (error) {
      const { code, message: text } = describeChatError(error);
      post({ type: 'error', id, code, message: text });
    } finally {
      if (running === controller) running = undefined;
    }
  };

  port.on('message', (message: ToChatWorker) => {
    if (message.type === 'stop') {
      running?.abort();
      return;
    }
    queue = queue.then(() => handle(message));
  });
}
