/**
 * The one message plumbing of every QuantLens webview, used the same way by the host (src/extension) and by
 * the page (webview/): typed notifications both ways, and requests from the page that the host answers.
 *
 * A view declares its messages once as a `ViewMessages` (see inspector.ts, recipe.ts, chat.ts): the requests
 * as a map from method to params and result, the notifications each side sends as discriminated unions. Then
 * `await page.request('layerPage', query)` is typed by the method, the host's handler for it must return that
 * method's result, and every request ends: with its result, with the handler's error, when cancelled, or when
 * the host stays silent past its timeout (progress messages count as signs of life). Nothing here imports
 * `vscode` or the DOM: each side passes its own post function and feeds received messages to `receive`.
 */

/** Requests of one view: method → the params the page sends and the result the host answers with. */
export type RequestMap = { readonly [method: string]: { readonly params: unknown; readonly result: unknown } };

/** A notification: a plain object discriminated by `type`. */
export interface Notification {
  readonly type: string;
}

/** Everything one view's host and page say to each other. */
export interface ViewMessages {
  /** What the page asks and the host answers. */
  readonly requests: RequestMap;
  /** Notifications from the host to the page. */
  readonly toPage: Notification;
  /** Notifications from the page to the host. */
  readonly toHost: Notification;
}

/** The wire form: one envelope shape for every view, so that one `receive` can route any message. */
export type Envelope =
  | { readonly kind: 'notify'; readonly message: Notification }
  | { readonly kind: 'request'; readonly id: number; readonly method: string; readonly params: unknown }
  | { readonly kind: 'result'; readonly id: number; readonly result: unknown }
  | { readonly kind: 'failure'; readonly id: number; readonly message: string; readonly cancelled: boolean }
  | { readonly kind: 'progress'; readonly id: number; readonly fraction: number; readonly what?: string }
  | { readonly kind: 'cancel'; readonly id: number }
  /** Messages of the test-only channel (src/webviewMessages/testProbes.ts); the product never sends one. */
  | { readonly kind: 'probe'; readonly probe: unknown };

/** How long a request may go without an answer or a progress message before it fails (ms). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** Why a request did not produce a result: the host's error, a cancellation or a timeout. */
export class RequestFailed extends Error {
  constructor(
    readonly method: string,
    message: string,
    readonly reason: 'error' | 'cancelled' | 'timeout',
  ) {
    super(message);
    this.name = 'RequestFailed';
  }

  get cancelled(): boolean {
    return this.reason === 'cancelled';
  }
}

export interface RequestOptions {
  /** Called for each progress message the host sends for this request. */
  readonly onProgress?: (fraction: number, what?: string) => void;
  /** Aborting it asks the host to stop; the request then fails as cancelled. */
  readonly signal?: AbortSignal;
  /**
   * Fail after this many ms without a result or a progress message (default DEFAULT_REQUEST_TIMEOUT_MS).
   * `Infinity` for requests that wait on the user (a file dialog) and offer a Cancel button instead.
   */
  readonly timeoutMs?: number;
}

/** What a host handler gets besides the params. */
export interface RequestContext {
  /** Aborted when the page cancels the request or goes away. */
  readonly signal: AbortSignal;
  /** Sends a progress message (and keeps the page's timeout from firing). */
  progress(fraction: number, what?: string): void;
}

/** The host's handler for every request of a view, each returning its method's result. */
export type RequestHandlers<R extends RequestMap> = {
  readonly [M in keyof R]: (params: R[M]['params'], context: RequestContext) => R[M]['result'] | Promise<R[M]['result']>;
};

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;

/** Reads an incoming message as an envelope, or undefined for anything else (other senders, malformed data). */
function asEnvelope(value: unknown): Envelope | undefined {
  if (!isObject(value) || typeof value.kind !== 'string') return undefined;
  const id = typeof value.id === 'number' && Number.isSafeInteger(value.id);
  switch (value.kind) {
    case 'notify':
      return isObject(value.message) && typeof value.message.type === 'string' ? (value as Envelope) : undefined;
    case 'request':
      return id && typeof value.method === 'string' ? (value as Envelope) : undefined;
    case 'result':
    case 'cancel':
      return id ? (value as Envelope) : undefined;
    case 'failure':
      return id && typeof value.message === 'string' ? (value as Envelope) : undefined;
    case 'progress':
      return id && typeof value.fraction === 'number' ? (value as Envelope) : undefined;
    case 'probe':
      return value as Envelope;
    default:
      return undefined;
  }
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** What both sides share: posting, notifications in and out, the test-only probe channel. */
abstract class Endpoint<Out extends Notification, In extends Notification> {
  private probeListener: ((probe: unknown) => void) | undefined;

  constructor(
    protected readonly postEnvelope: (envelope: Envelope) => void,
    private readonly onNotification: (message: In) => void,
  ) {}

  notify(message: Out): void {
    this.postEnvelope({ kind: 'notify', message });
  }

  /** Feeds a received message in; returns false when it is not one of ours. */
  receive(data: unknown): boolean {
    const envelope = asEnvelope(data);
    if (!envelope) return false;
    if (envelope.kind === 'notify') this.onNotification(envelope.message as In);
    else if (envelope.kind === 'probe') this.probeListener?.(envelope.probe);
    else this.receiveEnvelope(envelope);
    return true;
  }

  /** Test builds only (see testProbes.ts): send on, and listen to, the probe channel. */
  postProbe(probe: unknown): void {
    this.postEnvelope({ kind: 'probe', probe });
  }

  onProbe(listener: (probe: unknown) => void): void {
    this.probeListener = listener;
  }

  protected abstract receiveEnvelope(envelope: Exclude<Envelope, { kind: 'notify' | 'probe' }>): void;
}

/** The page's side of a view: sends requests and page notifications, receives host notifications. */
export class PageEndpoint<V extends ViewMessages> extends Endpoint<V['toHost'], V['toPage']> {
  private nextId = 1;
  private readonly pending = new Map<number, { method: string; resolve: (result: unknown) => void; fail: (error: RequestFailed) => void; progress?: RequestOptions['onProgress']; alive: () => void }>();

  constructor(post: (envelope: Envelope) => void, onNotification: (message: V['toPage']) => void) {
    super(post, onNotification);
  }

  /** Asks the host; resolves with the method's result, or rejects with a RequestFailed. */
  request<M extends keyof V['requests'] & string>(method: M, params: V['requests'][M]['params'], options: RequestOptions = {}): Promise<V['requests'][M]['result']> {
    const id = this.nextId++;
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settle = () => {
        clearTimeout(timer);
        this.pending.delete(id);
        options.signal?.removeEventListener('abort', abort);
      };
      const fail = (error: RequestFailed) => {
        settle();
        reject(error);
      };
      const alive = () => {
        if (!Number.isFinite(timeoutMs)) return;
        clearTimeout(timer);
        timer = setTimeout(() => {
          this.postEnvelope({ kind: 'cancel', id });
          fail(new RequestFailed(method, `${method}: no answer from the extension within ${Math.round(timeoutMs / 1000)} s`, 'timeout'));
        }, timeoutMs);
      };
      const abort = () => {
        this.postEnvelope({ kind: 'cancel', id });
        fail(new RequestFailed(method, 'cancelled', 'cancelled'));
      };
      if (options.signal?.aborted) return reject(new RequestFailed(method, 'cancelled', 'cancelled'));
      options.signal?.addEventListener('abort', abort);
      this.pending.set(id, {
        method,
        resolve: (result) => {
          settle();
          resolve(result as V['requests'][M]['result']);
        },
        fail,
        progress: options.onProgress,
        alive,
      });
      alive();
      this.postEnvelope({ kind: 'request', id, method, params });
    });
  }

  protected receiveEnvelope(envelope: Exclude<Envelope, { kind: 'notify' | 'probe' }>): void {
    const waiter = this.pending.get(envelope.id);
    if (!waiter) return; // settled already (timed out or cancelled here)
    if (envelope.kind === 'result') waiter.resolve(envelope.result);
    else if (envelope.kind === 'failure') waiter.fail(new RequestFailed(waiter.method, envelope.message, envelope.cancelled ? 'cancelled' : 'error'));
    else if (envelope.kind === 'progress') {
      waiter.alive();
      waiter.progress?.(envelope.fraction, envelope.what);
    }
  }
}

export interface HostEndpointOptions {
  /** Whether an error thrown by a handler means "cancelled by the user" (reported as such, not as a failure). */
  readonly isCancellation?: (error: unknown) => boolean;
  /** Called for each handler failure that is not a cancellation (the host logs it). */
  readonly onFailure?: (method: string, error: unknown) => void;
}

/** The host's side of a view: answers the page's requests, sends host notifications, receives page notifications. */
export class HostEndpoint<V extends ViewMessages> extends Endpoint<V['toPage'], V['toHost']> {
  private readonly running = new Map<number, AbortController>();

  constructor(
    post: (envelope: Envelope) => void,
    private readonly handlers: RequestHandlers<V['requests']>,
    onNotification: (message: V['toHost']) => void,
    private readonly options: HostEndpointOptions = {},
  ) {
    super(post, onNotification);
  }

  /** Aborts every request still running (the page reloaded or closed). */
  cancelAll(): void {
    for (const controller of this.running.values()) controller.abort();
  }

  protected receiveEnvelope(envelope: Exclude<Envelope, { kind: 'notify' | 'probe' }>): void {
    if (envelope.kind === 'cancel') this.running.get(envelope.id)?.abort();
    else if (envelope.kind === 'request') void this.answer(envelope.id, envelope.method, envelope.params);
  }

  private async answer(id: number, method: string, params: unknown): Promise<void> {
    const controller = new AbortController();
    this.running.set(id, controller);
    try {
      // Only the view's own methods: the page's text could name any property of the handler object.
      if (!Object.prototype.hasOwnProperty.call(this.handlers, method)) throw new Error(`unknown request "${method}"`);
      const handler = this.handlers[method as keyof V['requests']]!;
      const context: RequestContext = { signal: controller.signal, progress: (fraction, what) => this.postEnvelope({ kind: 'progress', id, fraction, ...(what !== undefined ? { what } : {}) }) };
      const result = await handler(params as never, context);
      this.postEnvelope({ kind: 'result', id, result });
    } catch (error) {
      const cancelled = controller.signal.aborted || (this.options.isCancellation?.(error) ?? false);
      if (!cancelled) this.options.onFailure?.(method, error);
      this.postEnvelope({ kind: 'failure', id, message: cancelled ? 'cancelled' : errorText(error), cancelled });
    } finally {
      this.running.delete(id);
    }
  }
}
