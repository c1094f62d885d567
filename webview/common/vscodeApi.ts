/** The webview side of the host protocol: the VS Code API handle, typed posting and request/reply. */

interface VsCodeApi<State> {
  postMessage(message: unknown): void;
  getState(): State | undefined;
  setState(state: State): void;
}

declare function acquireVsCodeApi<State>(): VsCodeApi<State>;

export class HostConnection<Outgoing extends { type: string }, Incoming extends { type: string }, State> {
  private readonly api = acquireVsCodeApi<State>();
  private nextRequestId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  constructor(private readonly onMessage: (message: Incoming) => void) {
    window.addEventListener('message', (event: MessageEvent<Incoming & { requestId?: number; result?: unknown; message?: string }>) => {
      const message = event.data;
      if ((message.type === 'response' || message.type === 'error') && message.requestId !== undefined) {
        const waiter = this.pending.get(message.requestId);
        if (!waiter) return;
        this.pending.delete(message.requestId);
        if (message.type === 'response') waiter.resolve(message.result);
        else waiter.reject(new Error(message.message ?? 'request failed'));
        return;
      }
      this.onMessage(message);
    });
  }

  post(message: Outgoing): void {
    this.api.postMessage(message);
  }

  /** Sends `{type:'request', method, params}` and resolves with the host's matching response. */
  request<Result>(method: string, params: unknown): Promise<Result> {
    return this.requestWithId<Result>(method, params).result;
  }

  /** Like `request`, also returning the id (to match progress messages or to cancel). */
  requestWithId<Result>(method: string, params: unknown): { id: number; result: Promise<Result> } {
    const requestId = this.nextRequestId++;
    const result = new Promise<Result>((resolve, reject) => {
      this.pending.set(requestId, { resolve: resolve as (value: unknown) => void, reject });
      this.api.postMessage({ type: 'request', requestId, method, params });
    });
    return { id: requestId, result };
  }

  get state(): State | undefined {
    return this.api.getState();
  }

  set state(state: State) {
    this.api.setState(state);
  }
}
