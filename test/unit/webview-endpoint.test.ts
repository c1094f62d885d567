// The one webview message plumbing (src/webviewMessages/endpoint.ts): a page and a host endpoint joined the
// way VS Code joins them (each message structured-cloned, delivered asynchronously), checked for what a
// user of a view depends on: answers reach the request that asked, a host error reaches the page with its
// text, Cancel stops the host's work, and a silent host becomes an error instead of a page that waits forever.
import assert from 'node:assert/strict';
import { HostEndpoint, PageEndpoint, RequestFailed, RequestHandlers, ViewMessages } from '../../src/webviewMessages/endpoint';

interface TestView extends ViewMessages {
  requests: {
    square: { params: { x: number }; result: number };
    slow: { params: { steps: number; stepMs: number }; result: string };
    never: { params: Record<string, never>; result: void };
  };
  toPage: { type: 'hello'; text: string };
  toHost: { type: 'clicked'; id: number };
}

function link(handlers: Partial<RequestHandlers<TestView['requests']>>, options: { onFailure?: (method: string, error: unknown) => void } = {}) {
  const toPage: unknown[] = [];
  const toHost: unknown[] = [];
  // postMessage delivers a structured clone on a later task.
  const deliver = (target: () => { receive(data: unknown): boolean }, log: unknown[]) => (envelope: unknown) => {
    const copy = structuredClone(envelope);
    log.push(copy);
    setTimeout(() => target().receive(copy), 0);
  };
  const pageNotes: TestView['toPage'][] = [];
  const hostNotes: TestView['toHost'][] = [];
  const page: PageEndpoint<TestView> = new PageEndpoint<TestView>(deliver(() => host, toHost), (m) => pageNotes.push(m));
  const host: HostEndpoint<TestView> = new HostEndpoint<TestView>(deliver(() => page, toPage), handlers as RequestHandlers<TestView['requests']>, (m) => hostNotes.push(m), options);
  return { page, host, pageNotes, hostNotes, toHost, toPage };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('webview messages: one typed request/response plumbing for every view', () => {
  it('answers each request with its own result, also when several are in flight', async () => {
    const { page } = link({ square: async ({ x }) => (await sleep(x % 3), x * x) });
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((x) => page.request('square', { x })));
    assert.deepEqual(results, [1, 4, 9, 16, 25, 36]);
  });

  it('carries notifications both ways and ignores messages that are not envelopes', async () => {
    const { page, host, pageNotes, hostNotes } = link({});
    host.notify({ type: 'hello', text: 'hi' });
    page.notify({ type: 'clicked', id: 7 });
    await sleep(5);
    assert.deepEqual(pageNotes, [{ type: 'hello', text: 'hi' }]);
    assert.deepEqual(hostNotes, [{ type: 'clicked', id: 7 }]);
    assert.equal(page.receive({ type: 'hello', text: 'not wrapped' }), false);
    assert.equal(page.receive({ kind: 'result', id: 'x' }), false);
    assert.equal(host.receive(null), false);
    assert.equal(pageNotes.length, 1);
  });

  it("rejects with the host's error text, and tells the host's log", async () => {
    const logged: string[] = [];
    const { page } = link({ square: ({ x }) => { if (x < 0) throw new Error(`no square of ${x} here`); return x * x; } }, { onFailure: (method, error) => logged.push(`${method}: ${(error as Error).message}`) });
    const failure = await page.request('square', { x: -2 }).then(() => undefined, (e: unknown) => e);
    assert.ok(failure instanceof RequestFailed);
    assert.equal(failure.message, 'no square of -2 here');
    assert.equal(failure.reason, 'error');
    assert.deepEqual(logged, ['square: no square of -2 here']);
  });

  it('refuses a method the view does not have, even one the handler object inherits', async () => {
    const { page } = link({ square: ({ x }) => x * x });
    const failure = await (page.request as (m: string, p: unknown) => Promise<unknown>)('toString', {}).then(() => undefined, (e: unknown) => e);
    assert.ok(failure instanceof RequestFailed);
    assert.match(failure.message, /unknown request "toString"/);
  });

  it('Cancel aborts the host handler and rejects the request as cancelled', async () => {
    let hostSignal: AbortSignal | undefined;
    const { page } = link({
      slow: ({ steps, stepMs }, { signal, progress }) =>
        new Promise((resolve, reject) => {
          hostSignal = signal;
          let step = 0;
          const timer = setInterval(() => {
            progress(++step / steps);
            if (step < steps) return;
            clearInterval(timer);
            resolve('done');
          }, stepMs);
          signal.addEventListener('abort', () => (clearInterval(timer), reject(new Error('aborted by the page'))));
        }),
    });
    const controller = new AbortController();
    const fractions: number[] = [];
    const request = page.request('slow', { steps: 100, stepMs: 5 }, { signal: controller.signal, onProgress: (f) => fractions.push(f) });
    await sleep(40);
    controller.abort();
    const failure = await request.then(() => undefined, (e: unknown) => e);
    assert.ok(failure instanceof RequestFailed && failure.cancelled, 'rejected as cancelled');
    await sleep(10);
    assert.equal(hostSignal?.aborted, true, 'the host was told to stop');
    assert.ok(fractions.length > 0 && fractions.length < 100, `progress arrived before the cancel (${fractions.length})`);
  });

  it('fails a request the host never answers after its timeout, naming the method', async () => {
    const { page } = link({ never: () => new Promise<void>(() => undefined) });
    const started = Date.now();
    const failure = await page.request('never', {}, { timeoutMs: 60 }).then(() => undefined, (e: unknown) => e);
    assert.ok(failure instanceof RequestFailed);
    assert.equal(failure.reason, 'timeout');
    assert.match(failure.message, /^never: no answer from the extension within/);
    assert.ok(Date.now() - started >= 55);
  });

  it('counts progress as a sign of life: a long request that reports keeps going past the timeout', async () => {
    const { page } = link({
      slow: ({ steps, stepMs }, { progress }) =>
        new Promise((resolve) => {
          let step = 0;
          const timer = setInterval(() => {
            progress(++step / steps);
            if (step < steps) return;
            clearInterval(timer);
            resolve(`${steps} steps`);
          }, stepMs);
        }),
    });
    // 10 steps of 30 ms = 300 ms in all, five times the 60 ms silence allowed.
    assert.equal(await page.request('slow', { steps: 10, stepMs: 30 }, { timeoutMs: 60 }), '10 steps');
  });
});
