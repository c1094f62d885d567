/**
 * The page's connection to its host: the VS Code API handle (acquired once per page, as VS Code requires),
 * the view's typed message endpoint (src/webviewMessages/endpoint.ts) and the saved view state.
 */
import { PageEndpoint, type ViewMessages } from '../../src/webviewMessages/endpoint';

interface VsCodeApi<State> {
  postMessage(message: unknown): void;
  getState(): State | undefined;
  setState(state: State): void;
}

declare function acquireVsCodeApi<State>(): VsCodeApi<State>;

export interface HostConnection<V extends ViewMessages, State> {
  readonly messages: PageEndpoint<V>;
  /** The state saved by an earlier load of this page (VS Code keeps it while the view is hidden). */
  readonly savedState: State | undefined;
  saveState(state: State): void;
}

/** Connects the page: host notifications go to `onNotification`, request answers to their callers. */
export function connectToHost<V extends ViewMessages, State>(onNotification: (message: V['toPage']) => void): HostConnection<V, State> {
  const api = acquireVsCodeApi<State>();
  const messages = new PageEndpoint<V>((envelope) => api.postMessage(envelope), onNotification);
  window.addEventListener('message', (event: MessageEvent<unknown>) => void messages.receive(event.data));
  return { messages, savedState: api.getState(), saveState: (state) => api.setState(state) };
}
