/**
 * The VS Code glue (src/extension/recipeLanguage.ts) against a minimal stand-in for the `vscode` module:
 * diagnostics after an edit, hover, completion and quick fixes reach the editor API in its types.
 */
import assert from 'node:assert/strict';
import Module from 'node:module';
import { join } from 'node:path';
import { repoRoot, tempDir } from '../helpers/paths';
import { writeFileSync } from 'node:fs';

type Listener<T> = (value: T) => void;

class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}
class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(sl: number, sc: number, el: number, ec: number) {
    this.start = new Position(sl, sc);
    this.end = new Position(el, ec);
  }
  isEqual(other: Range): boolean {
    return this.start.line === other.start.line && this.start.character === other.start.character && this.end.line === other.end.line && this.end.character === other.end.character;
  }
}
class Diagnostic {
  source?: string;
  code?: string;
  constructor(
    readonly range: Range,
    readonly message: string,
    readonly severity: number,
  ) {}
}
class MarkdownString {
  constructor(readonly value: string) {}
}
class Hover {
  constructor(
    readonly contents: MarkdownString,
    readonly range: Range,
  ) {}
}
class CompletionItem {
  range?: Range;
  insertText?: string;
  detail?: string;
  documentation?: MarkdownString;
  sortText?: string;
  constructor(
    readonly label: string,
    readonly kind: number,
  ) {}
}
class WorkspaceEdit {
  readonly edits: { uri: unknown; range: Range; newText: string }[] = [];
  replace(uri: unknown, range: Range, newText: string): void {
    this.edits.push({ uri, range, newText });
  }
}
class CodeAction {
  edit?: WorkspaceEdit;
  diagnostics?: Diagnostic[];
  isPreferred?: boolean;
  constructor(
    readonly title: string,
    readonly kind: string,
  ) {}
}

function fakeVscode() {
  const listeners = { open: [] as Listener<unknown>[], change: [] as Listener<unknown>[], save: [] as Listener<unknown>[], close: [] as Listener<unknown>[], config: [] as Listener<unknown>[], activeEditor: [] as Listener<unknown>[] };
  /** Context keys as set through `setContext`. */
  const contextKeys = new Map<string, unknown>();
  const window = { activeTextEditor: undefined as { document: unknown } | undefined, onDidChangeActiveTextEditor: (fn: Listener<unknown>) => (listeners.activeEditor.push(fn), disposable) };
  const collections = new Map<string, Map<string, Diagnostic[]>>();
  const providers: { hover?: { provideHover: (d: unknown, p: Position) => Promise<Hover | undefined> }; completion?: { provideCompletionItems: (d: unknown, p: Position) => Promise<CompletionItem[] | undefined> }; actions?: { provideCodeActions: (d: unknown, r: Range, c: { diagnostics: Diagnostic[] }) => CodeAction[] | undefined } } = {};
  const settings: Record<string, string> = {};
  const disposable = { dispose() {} };
  const on = (list: Listener<unknown>[]) => (fn: Listener<unknown>) => {
    list.push(fn);
    return disposable;
  };
  return {
    listeners,
    contextKeys,
    window,
    collections,
    providers,
    settings,
    api: {
      Position,
      Range,
      Diagnostic,
      MarkdownString,
      Hover,
      CompletionItem,
      WorkspaceEdit,
      CodeAction,
      DiagnosticSeverity: { Error: 0, Warning: 1, Information: 2, Hint: 3 },
      CompletionItemKind: { Module: 8, Folder: 18, Class: 6, Property: 9, Value: 11, Reference: 17, EnumMember: 19 },
      CodeActionKind: { QuickFix: 'quickfix' },
      window,
      commands: {
        executeCommand: async (command: string, key: string, value: unknown) => {
          if (command === 'setContext') contextKeys.set(key, value);
        },
      },
      languages: {
        createDiagnosticCollection(name: string) {
          const store = new Map<string, Diagnostic[]>();
          collections.set(name, store);
          return { set: (uri: { toString(): string }, d: Diagnostic[]) => store.set(uri.toString(), d), delete: (uri: { toString(): string }) => store.delete(uri.toString()), dispose() {} };
        },
        registerHoverProvider: (_s: unknown, p: typeof providers.hover) => ((providers.hover = p), disposable),
        registerCompletionItemProvider: (_s: unknown, p: typeof providers.completion) => ((providers.completion = p), disposable),
        registerCodeActionsProvider: (_s: unknown, p: typeof providers.actions) => ((providers.actions = p), disposable),
      },
      workspace: {
        textDocuments: [] as unknown[],
        workspaceFolders: undefined,
        onDidOpenTextDocument: on(listeners.open),
        onDidChangeTextDocument: on(listeners.change),
        onDidSaveTextDocument: on(listeners.save),
        onDidCloseTextDocument: on(listeners.close),
        onDidChangeConfiguration: on(listeners.config),
        getConfiguration: () => ({ get: (key: string) => settings[key] }),
        getWorkspaceFolder: () => undefined,
      },
    },
  };
}

function document(path: string, text: string, version = 1) {
  return {
    uri: { scheme: 'file', fsPath: path, toString: () => `file://${path}` },
    fileName: path,
    languageId: path.endsWith('.json') ? 'json' : 'yaml',
    version,
    isClosed: false,
    getText: () => text,
  };
}

const settle = (ms = 60) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value (validation runs in a worker thread that starts on first use). */
async function eventually<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await settle(20);
  }
}

describe('VS Code glue (registerRecipeSupport) with a stand-in vscode API', () => {
  const fake = fakeVscode();
  const moduleApi = Module as unknown as { _load: (request: string, parent: unknown, isMain: boolean) => unknown };
  const originalLoad = moduleApi._load;
  let tmp: ReturnType<typeof tempDir>;
  let disposables: { dispose(): unknown }[] = [];
  let registerRecipeSupport: typeof import('../../src/extension/recipeLanguage').registerRecipeSupport;

  before(() => {
    tmp = tempDir('quantlens-ext-');
    moduleApi._load = function (request: string, parent: unknown, isMain: boolean) {
      if (request === 'vscode') return fake.api;
      return originalLoad.call(this, request, parent, isMain);
    };
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only after the module loader hook above is in place
    registerRecipeSupport = (require('../../src/extension/recipeLanguage') as typeof import('../../src/extension/recipeLanguage')).registerRecipeSupport;
    const subscriptions: unknown[] = [];
    // The recipe worker is dist/workers/recipe.worker.js under the extension's folder (built by esbuild.mjs).
    registerRecipeSupport({ subscriptions, extensionPath: repoRoot() } as never);
    disposables = subscriptions as { dispose(): unknown }[];
    assert.ok(subscriptions.length >= 8);
  });
  after(() => {
    for (const d of disposables) d.dispose(); // stops the worker threads
    moduleApi._load = originalLoad;
    tmp.cleanup();
  });

  it('publishes diagnostics (debounced) for recipes only, and clears them on close', async () => {
    const store = fake.collections.get('quantlens-recipes')!;
    const path = join(tmp.path, 'recipe.yaml');
    const doc = document(path, 'q_stage:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A61}\n');
    fake.listeners.open.forEach((l) => l(doc));
    const other = document(join(tmp.path, 'ci.yaml'), 'jobs: {}\n');
    fake.listeners.open.forEach((l) => l(other));
    const diagnostics = await eventually('diagnostics of recipe.yaml', () => store.get(`file://${path}`));
    await settle();
    assert.equal(diagnostics.length, 1);
    assert.equal(diagnostics[0]!.source, 'QuantLens');
    assert.equal(diagnostics[0]!.code, 'unknown-preset');
    assert.equal(diagnostics[0]!.severity, 0);
    assert.deepEqual([diagnostics[0]!.range.start.line, diagnostics[0]!.range.start.character], [2, 27]);
    assert.equal(store.has(`file://${join(tmp.path, 'ci.yaml')}`), false);

    // Quick fix from the diagnostic.
    const actions = fake.providers.actions!.provideCodeActions(doc, diagnostics[0]!.range, { diagnostics })!;
    assert.equal(actions.length, 1);
    assert.equal(actions[0]!.title, 'Change to W4A16');
    assert.equal(actions[0]!.edit!.edits[0]!.newText, 'W4A16');
    assert.equal(actions[0]!.isPreferred, true);

    // An edit fixes it: debounced revalidation.
    const fixed = document(path, 'q_stage:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A16}\n', 2);
    fake.listeners.change.forEach((l) => l({ document: fixed }));
    assert.equal(store.get(`file://${path}`)!.length, 1, 'not yet: debounced');
    await eventually('the fixed recipe to validate clean', () => (store.get(`file://${path}`)!.length === 0 ? true : undefined));
    fake.listeners.close.forEach((l) => l(fixed));
    assert.equal(store.has(`file://${path}`), false);
  });

  it('sets the title-bar context key while the active editor holds a recipe, by the same test as validation', async () => {
    const activate = (doc: ReturnType<typeof document> | undefined) => {
      fake.window.activeTextEditor = doc ? { document: doc } : undefined;
      fake.listeners.activeEditor.forEach((l) => l(fake.window.activeTextEditor));
    };
    const key = 'quantlens.activeEditorIsRecipe';
    // Recognised by content, whatever the name.
    activate(document(join(tmp.path, 'int4.yaml'), 'q_stage:\n  q_modifiers:\n    GPTQModifier: {scheme: W4A16}\n'));
    assert.equal(fake.contextKeys.get(key), true);
    activate(document(join(tmp.path, 'ci.yaml'), 'jobs:\n  build:\n    runs-on: ubuntu\n'));
    assert.equal(fake.contextKeys.get(key), false);
    activate(document(join(tmp.path, 'recipe.yaml'), ''));
    assert.equal(fake.contextKeys.get(key), true, 'a file named recipe.yaml is checked as a recipe, even empty');
    activate(undefined);
    assert.equal(fake.contextKeys.get(key), false);
    // A YAML file that becomes a recipe as it is typed: the key follows on the (debounced) revalidation.
    const growing = document(join(tmp.path, 'draft.yaml'), 'notes: {}\n');
    activate(growing);
    assert.equal(fake.contextKeys.get(key), false);
    const typed = { ...growing, version: 2, getText: () => 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier: {scheme: W8A8}\n' };
    fake.window.activeTextEditor = { document: typed };
    fake.listeners.change.forEach((l) => l({ document: typed }));
    await eventually('the key to follow the edit', () => (fake.contextKeys.get(key) === true ? true : undefined));
    activate(undefined);
  });

  it('an alias bomb gets its diagnostic from the worker, and hovers still answer', async () => {
    const store = fake.collections.get('quantlens-recipes')!;
    const path = join(tmp.path, 'bomb_recipe.yaml');
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (const [name, previous] of [['b', 'a'], ['c', 'b'], ['d', 'c'], ['e', 'd'], ['f', 'e'], ['g', 'f'], ['h', 'g']]) lines.push(`${name}: &${name} [${Array(9).fill(`*${previous}`).join(', ')}]`);
    const doc = document(path, `${lines.join('\n')}\nquant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      targets: *h\n`);
    const started = Date.now();
    fake.listeners.open.forEach((l) => l(doc));
    const diagnostics = await eventually('the bomb diagnostic', () => store.get(`file://${path}`));
    assert.ok(Date.now() - started < 5000);
    assert.deepEqual(diagnostics.map((d) => [d.code, d.range.start.line]), [['too-many-aliases', 4]]);
    assert.match(diagnostics[0]!.message, /^alias \*d is not expanded/);
    const hover = (await fake.providers.hover!.provideHover(doc, new Position(10, 8)))!;
    assert.match(hover.contents.value, /QuantizationModifier/);
  });

  it('hover and completion go through the core', async () => {
    const doc = document(join(tmp.path, 'recipe.yaml'), 'q_stage:\n  q_modifiers:\n    GPTQModifier:\n      block_s\n');
    const hover = (await fake.providers.hover!.provideHover(doc, new Position(2, 6)))!;
    assert.match(hover.contents.value, /GPTQModifier/);
    const items = (await fake.providers.completion!.provideCompletionItems(doc, new Position(3, 13)))!;
    const blockSize = items.find((i) => i.label === 'block_size')!;
    assert.equal(blockSize.insertText, 'block_size: ');
    assert.deepEqual([blockSize.range!.start.character, blockSize.range!.end.character], [6, 13]);
    assert.ok(blockSize.documentation instanceof MarkdownString);
  });

  it('associates the nearest checkpoint folder (config.json + *.safetensors) as the model', async () => {
    const store = fake.collections.get('quantlens-recipes')!;
    const header = JSON.stringify({ 'model.layers.0.mlp.down_proj.weight': { dtype: 'BF16', shape: [4, 96], data_offsets: [0, 768] } });
    const bytes = Buffer.alloc(8 + header.length + 768);
    bytes.writeBigUInt64LE(BigInt(header.length), 0);
    bytes.write(header, 8);
    writeFileSync(join(tmp.path, 'model.safetensors'), bytes);
    writeFileSync(join(tmp.path, 'config.json'), '{"torch_dtype": "bfloat16"}');
    const path = join(tmp.path, 'model_recipe.yaml');
    const doc = document(path, 'q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n          targets: [Linear]\n          weights: {num_bits: 4, strategy: group, group_size: 64}\n');
    fake.listeners.open.forEach((l) => l(doc));
    const d = await eventually('diagnostics against the model', () => store.get(`file://${path}`));
    assert.equal(d.length, 1, d.map((x) => x.message).join(' | '));
    assert.match(d[0]!.message, /down_proj \(in_features 96\)/);
  });
});
