/**
 * What activate() returns in test builds (`__QUANTLENS_TEST_HOOKS__`): the integration tests' view into the
 * extension, what each page reports it shows, and the probes that drive pages like a user. The production
 * build returns nothing and drops this file (test/unit/production-bundle.test.ts checks it).
 */
import type { InspectorTab, ErrorParams } from '../webviewMessages/inspector';
import type { ChatSettings, ChatSurface, ModelPairView, TurnView } from '../webviewMessages/chat';
import type { ChatRenderedView, RecipeRenderedView, RenderedView, TableCommand } from '../webviewMessages/testProbes';
import type { DeviceReport } from '../core/runtime/device';
import type { JobRecord } from './jobs/jobManager';
import { InspectorSession } from './inspectorSession';
import { RecipePreviewSession } from './recipePreview';
import type { ChatViewProvider } from './chat/chatView';
import { askThroughChatPage, inspectorRendered, pressKeyInInspectorPage, recipePreviewRendered, revealInInspectorTable, waitForChatRendered } from './testHooks';

export interface QuantLensTestApi {
  /** Open inspector views: what each one opened and what its page reports it shows. */
  inspectors(): { path: string; rendered: RenderedView | undefined }[];
  /** Switches an open inspector to a tab (optionally starting its work), as the commands do. */
  showInspectorTab(path: string, tab: InspectorTab, start?: boolean, params?: ErrorParams): boolean;
  /** Filters and/or scrolls the Tensors or Layers table of an open inspector (shows its tab). */
  revealInInspector(path: string, command: TableCommand): boolean;
  /** Focuses the `index`-th element matching `selector` in an open inspector's page and presses `key` there. */
  pressKeyInInspector(path: string, selector: string, index: number, key: string): boolean;
  /** Open recipe previews: the recipe, the chosen model, what the page renders and what Run would execute. */
  recipePreviews(): { path: string; model?: string; rendered: RecipeRenderedView | undefined; run: ReturnType<RecipePreviewSession['runRequest']> }[];
  /** Whether the active text editor holds a recipe (the context key that shows Open Recipe Preview in its title bar). */
  activeEditorIsRecipe(): boolean;
  /** The Jobs view's records, newest first. */
  jobs(): readonly JobRecord[];
  /** Where runtime sessions run, and why. */
  device(): Promise<DeviceReport>;
  readonly chat: ChatTestApi;
}

export interface ChatTestApi {
  readonly currentModels: ModelPairView;
  readonly currentSettings: ChatSettings;
  readonly transcript: readonly TurnView[];
  useSettings(settings: Partial<ChatSettings>): Promise<void>;
  useLatestJob(): Promise<boolean>;
  /** Resolves with a page's next report that satisfies `accept`, from `surface` when given. */
  waitForRendered(accept: (view: ChatRenderedView) => boolean, timeoutMs: number, surface?: ChatSurface): Promise<ChatRenderedView>;
  /** Types a prompt into a page (the editor tab's when open) and sends it from there. */
  askThroughPage(prompt: string, surface?: ChatSurface): boolean;
}

export interface TestApiParts {
  readonly recipes: { activeEditorIsRecipe(): boolean };
  readonly jobs: { readonly jobs: readonly JobRecord[] };
  readonly runtime: { device(): Promise<DeviceReport> };
  readonly chat: ChatViewProvider;
}

export function createTestApi({ recipes, jobs, runtime, chat }: TestApiParts): QuantLensTestApi {
  const inspector = (path: string) => InspectorSession.all().find((s) => s.path === path);
  return {
    inspectors: () => InspectorSession.all().map((s) => ({ path: s.path, rendered: inspectorRendered(s) })),
    showInspectorTab: (path, tab, start, params) => {
      const session = inspector(path);
      session?.show(tab, start, params);
      return session !== undefined;
    },
    revealInInspector: (path, command) => {
      const session = inspector(path);
      if (session) revealInInspectorTable(session, command);
      return session !== undefined;
    },
    pressKeyInInspector: (path, selector, index, key) => {
      const session = inspector(path);
      if (session) pressKeyInInspectorPage(session, selector, index, key);
      return session !== undefined;
    },
    recipePreviews: () => RecipePreviewSession.all().map((s) => ({ path: s.path, model: s.modelPath, rendered: recipePreviewRendered(s), run: s.runRequest() })),
    activeEditorIsRecipe: () => recipes.activeEditorIsRecipe(),
    jobs: () => jobs.jobs,
    device: () => runtime.device(),
    chat: {
      get currentModels() {
        return chat.currentModels;
      },
      get currentSettings() {
        return chat.currentSettings;
      },
      get transcript() {
        return chat.transcript;
      },
      useSettings: (settings) => chat.useSettings(settings),
      useLatestJob: () => chat.useLatestJob(),
      waitForRendered: (accept, timeoutMs, surface) => waitForChatRendered(chat, accept, timeoutMs, surface),
      askThroughPage: (prompt, surface = chat.page('panel') ? 'panel' : 'view') => askThroughChatPage(chat, prompt, surface),
    },
  };
}
