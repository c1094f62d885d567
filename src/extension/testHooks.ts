/**
 * Test builds only: the host's end of the test-only probe channel (src/webviewMessages/testProbes.ts). Every
 * call into this file sits under `if (__QUANTLENS_TEST_HOOKS__)`, so the production build drops it. It keeps
 * what each page last reported it shows, and sends pages the probes that drive them like a user.
 */
import type { HostEndpoint, ViewMessages } from '../webviewMessages/endpoint';
import type { ChatMessages, ChatSurface } from '../webviewMessages/chat';
import type { ChatHostProbe, ChatRenderedView, InspectorHostProbe, PageProbe, RecipeRenderedView, RenderedView, TableCommand } from '../webviewMessages/testProbes';
import type { InspectorSession } from './inspectorSession';
import type { RecipePreviewSession } from './recipePreview';
import type { ChatViewProvider } from './chat/chatView';

/** Calls `report` with each `rendered` view the page behind `messages` sends. */
function onRendered<View>(messages: HostEndpoint<ViewMessages>, report: (view: View) => void): void {
  messages.onProbe((probe) => {
    const message = probe as PageProbe<View> | undefined;
    if (message?.type === 'probe:rendered') report(message.view);
  });
}

const inspectorViews = new WeakMap<InspectorSession, RenderedView>();

export function observeInspector(session: InspectorSession): void {
  onRendered<RenderedView>(session.messages as HostEndpoint<ViewMessages>, (view) => inspectorViews.set(session, view));
}

/** What the inspector's page last reported it shows. */
export function inspectorRendered(session: InspectorSession): RenderedView | undefined {
  return inspectorViews.get(session);
}

export function revealInInspectorTable(session: InspectorSession, command: TableCommand): void {
  session.messages.postProbe({ type: 'probe:revealInTable', command } satisfies InspectorHostProbe);
}

export function pressKeyInInspectorPage(session: InspectorSession, selector: string, index: number, key: string): void {
  session.messages.postProbe({ type: 'probe:pressKey', selector, index, key } satisfies InspectorHostProbe);
}

const recipeViews = new WeakMap<RecipePreviewSession, RecipeRenderedView>();

export function observeRecipePreview(session: RecipePreviewSession): void {
  onRendered<RecipeRenderedView>(session.messages as HostEndpoint<ViewMessages>, (view) => recipeViews.set(session, view));
}

export function recipePreviewRendered(session: RecipePreviewSession): RecipeRenderedView | undefined {
  return recipeViews.get(session);
}

type RenderedListener = (view: ChatRenderedView, surface: ChatSurface) => void;

/** The chat pages' reports: the latest from any page, and each surface's latest. */
interface ChatViews {
  last?: ChatRenderedView;
  readonly bySurface: Map<ChatSurface, ChatRenderedView>;
  readonly listeners: Set<RenderedListener>;
}

const chatViews = new WeakMap<ChatViewProvider, ChatViews>();

function chatViewsOf(provider: ChatViewProvider): ChatViews {
  let views = chatViews.get(provider);
  if (!views) chatViews.set(provider, (views = { bySurface: new Map(), listeners: new Set() }));
  return views;
}

export function observeChatPage(provider: ChatViewProvider, surface: ChatSurface, messages: HostEndpoint<ChatMessages>): void {
  const views = chatViewsOf(provider);
  onRendered<ChatRenderedView>(messages as HostEndpoint<ViewMessages>, (view) => {
    views.last = view;
    views.bySurface.set(surface, view);
    for (const listener of views.listeners) listener(view, surface);
  });
}

export function forgetChatPage(provider: ChatViewProvider, surface: ChatSurface): void {
  chatViewsOf(provider).bySurface.delete(surface);
}

/** Resolves with a chat page's next report that satisfies `accept`, from `surface` when given. */
export function waitForChatRendered(provider: ChatViewProvider, accept: (view: ChatRenderedView) => boolean, timeoutMs: number, surface?: ChatSurface): Promise<ChatRenderedView> {
  const views = chatViewsOf(provider);
  const current = surface ? views.bySurface.get(surface) : views.last;
  if (current && accept(current)) return Promise.resolve(current);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      views.listeners.delete(listener);
      const last = surface ? views.bySurface.get(surface) : views.last;
      reject(new Error(`the chat ${surface ?? 'page'} did not show the expected state within ${timeoutMs} ms; last: ${JSON.stringify(last)}`));
    }, timeoutMs);
    const listener: RenderedListener = (view, from) => {
      if ((surface && from !== surface) || !accept(view)) return;
      clearTimeout(timer);
      views.listeners.delete(listener);
      resolve(view);
    };
    views.listeners.add(listener);
  });
}

/** Types a prompt into a chat page and sends it from there. */
export function askThroughChatPage(provider: ChatViewProvider, prompt: string, surface: ChatSurface): boolean {
  const page = provider.page(surface);
  page?.postProbe({ type: 'probe:ask', prompt } satisfies ChatHostProbe);
  return page !== undefined;
}
