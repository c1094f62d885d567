/**
 * Editor support for llm-compressor recipes and quantization configs: diagnostics as you type, hovers,
 * completion and quick fixes. Glue only: every rule lives in src/core/recipe.
 *
 * The model a recipe is checked against is the folder in `quantlens.recipe.model`, or else the nearest
 * ancestor folder of the document holding config.json and *.safetensors.
 *
 * Nothing here parses a document on the extension host's thread: validation runs in one recipe worker,
 * hovers and completion in another (so they never wait behind a long validation), each within a time and
 * memory budget. An edit stops the document's running validation at once; a run past its budget becomes a
 * diagnostic saying the file is too large or complex to analyse.
 */
import * as vscode from 'vscode';
import { join } from 'node:path';
import { recipeModel } from './recipeModel';
import { CompletionItem as CoreCompletion, Diagnostic as CoreDiagnostic, DocumentKind, ModelLayers, Range as CoreRange, documentKind, modelLayersFromCheckpoint } from '../core/recipe';
import { ANALYSIS_BUDGET, EDITOR_SERVICE_BUDGET, RecipeWorker, SupersededRun, failedAnalysisDiagnostic } from '../core/recipe/recipeWorker';

const DEBOUNCE_MS = 300;
const MODEL_CACHE_MS = 30_000;
/** True while the active text editor holds an llm-compressor recipe: shows "Open Recipe Preview" in its title bar. */
export const RECIPE_EDITOR_KEY = 'quantlens.activeEditorIsRecipe';

export interface RecipeSupport {
  /** The value RECIPE_EDITOR_KEY was last set to (for tests: VS Code offers no way to read a context key). */
  activeEditorIsRecipe(): boolean;
}

export function registerRecipeSupport(context: Pick<vscode.ExtensionContext, 'subscriptions' | 'extensionPath'>): RecipeSupport {
  const workerPath = join(context.extensionPath, 'dist', 'workers', 'recipe.worker.js');
  const validation = new RecipeWorker(workerPath, ANALYSIS_BUDGET);
  const editorServices = new RecipeWorker(workerPath, EDITOR_SERVICE_BUDGET);
  const collection = vscode.languages.createDiagnosticCollection('quantlens-recipes');
  const lastResults = new Map<string, readonly CoreDiagnostic[]>();
  const timers = new Map<string, ReturnType<typeof setTimeout>>();
  const models = new Map<string, { at: number; layers: Promise<ModelLayers | undefined> }>();
  const versions = new Map<string, number>();

  const kindOf = (doc: vscode.TextDocument): DocumentKind | undefined => {
    if (doc.uri.scheme !== 'file' && doc.uri.scheme !== 'untitled' && doc.uri.scheme !== 'vscode-remote') return undefined;
    const name = /\.(ya?ml|json)$/i.test(doc.fileName) ? doc.fileName : doc.languageId === 'yaml' ? `${doc.fileName}.yaml` : doc.languageId === 'json' ? `${doc.fileName}.json` : doc.fileName;
    return documentKind(name, doc.getText());
  };

  const modelFor = async (doc: vscode.TextDocument): Promise<ModelLayers | undefined> => {
    const dir = await recipeModel(doc);
    if (!dir) return undefined;
    const cached = models.get(dir);
    if (cached && Date.now() - cached.at < MODEL_CACHE_MS) return cached.layers;
    const layers = modelLayersFromCheckpoint(dir).catch(() => undefined);
    models.set(dir, { at: Date.now(), layers });
    return layers;
  };

  // The same test as validation (documentKind: a recipe file name, or `*_stage:` keys holding `*_modifiers:`),
  // so the title-bar button is there exactly when the editor checks the file as a recipe.
  let activeIsRecipe: boolean | undefined;
  const updateActiveEditor = (): void => {
    const doc = vscode.window.activeTextEditor?.document;
    const value = doc !== undefined && kindOf(doc) === 'recipe';
    if (value === activeIsRecipe) return;
    activeIsRecipe = value;
    void vscode.commands.executeCommand('setContext', RECIPE_EDITOR_KEY, value);
  };

  const validate = async (doc: vscode.TextDocument): Promise<void> => {
    if (doc === vscode.window.activeTextEditor?.document) updateActiveEditor();
    const kind = kindOf(doc);
    const key = doc.uri.toString();
    if (!kind) {
      if (lastResults.has(key)) {
        collection.delete(doc.uri);
        lastResults.delete(key);
      }
      return;
    }
    const version = doc.version;
    versions.set(key, version);
    const model = await modelFor(doc);
    if (versions.get(key) !== version || doc.isClosed) return; // a newer edit is on its way
    let diagnostics: readonly CoreDiagnostic[];
    try {
      diagnostics = await validation.run(key, 'validate', { text: doc.getText(), kind, model });
    } catch (error) {
      if (error instanceof SupersededRun) return; // a newer version of the document is being validated
      diagnostics = [failedAnalysisDiagnostic(error)];
    }
    if (versions.get(key) !== version || doc.isClosed) return;
    lastResults.set(key, diagnostics);
    collection.set(doc.uri, diagnostics.map(toVscodeDiagnostic));
  };

  const schedule = (doc: vscode.TextDocument, delay = DEBOUNCE_MS) => {
    const key = doc.uri.toString();
    clearTimeout(timers.get(key));
    timers.set(
      key,
      setTimeout(() => {
        timers.delete(key);
        void validate(doc);
      }, delay),
    );
  };

  const selector: vscode.DocumentSelector = [
    { language: 'yaml' },
    { language: 'json' },
    { language: 'jsonc' },
    { pattern: '**/*.{yaml,yml}' },
  ];

  context.subscriptions.push(
    collection,
    { dispose: () => timers.forEach((t) => clearTimeout(t)) },
    { dispose: () => void validation.dispose() },
    { dispose: () => void editorServices.dispose() },
    vscode.workspace.onDidOpenTextDocument((doc) => schedule(doc, 0)),
    vscode.window.onDidChangeActiveTextEditor(updateActiveEditor),
    vscode.workspace.onDidChangeTextDocument((event) => {
      // The running validation of the old text is stale: stop it now rather than after the debounce.
      validation.cancel(event.document.uri.toString());
      schedule(event.document);
    }),
    vscode.workspace.onDidSaveTextDocument((doc) => schedule(doc, 0)),
    vscode.workspace.onDidCloseTextDocument((doc) => {
      const key = doc.uri.toString();
      clearTimeout(timers.get(key));
      timers.delete(key);
      validation.cancel(key);
      lastResults.delete(key);
      versions.delete(key);
      collection.delete(doc.uri);
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (!event.affectsConfiguration('quantlens.recipe')) return;
      models.clear();
      for (const doc of vscode.workspace.textDocuments) schedule(doc, 0);
    }),
    vscode.languages.registerHoverProvider(selector, {
      async provideHover(doc, position, token) {
        const kind = kindOf(doc);
        if (!kind) return undefined;
        const hover = await editorService(token, 'hover', () => editorServices.run('hover', 'hover', { text: doc.getText(), position: { line: position.line, character: position.character }, kind }));
        if (!hover) return undefined;
        const markdown = new vscode.MarkdownString(hover.contents);
        return new vscode.Hover(markdown, toVscodeRange(hover.range));
      },
    }),
    vscode.languages.registerCompletionItemProvider(
      selector,
      {
        async provideCompletionItems(doc, position, token) {
          const kind = kindOf(doc);
          if (!kind) return undefined;
          const model = kind === 'recipe' ? await modelFor(doc) : undefined;
          const items = await editorService(token, 'completion', () => editorServices.run('completion', 'completion', { text: doc.getText(), position: { line: position.line, character: position.character }, kind, model }));
          return (items ?? []).map(toVscodeCompletion);
        },
      },
      ':',
      ' ',
      '-',
      '"',
      '[',
      ',',
    ),
    vscode.languages.registerCodeActionsProvider(
      selector,
      {
        provideCodeActions(doc, _range, ctx) {
          const results = lastResults.get(doc.uri.toString());
          if (!results) return undefined;
          const actions: vscode.CodeAction[] = [];
          for (const diagnostic of ctx.diagnostics) {
            if (diagnostic.source !== 'QuantLens') continue;
            const core = results.find((r) => r.fix && r.message === diagnostic.message && toVscodeRange(r.range).isEqual(diagnostic.range));
            if (!core?.fix) continue;
            const action = new vscode.CodeAction(core.fix.title, vscode.CodeActionKind.QuickFix);
            const edit = new vscode.WorkspaceEdit();
            for (const e of core.fix.edits) edit.replace(doc.uri, toVscodeRange(e.range), e.newText);
            action.edit = edit;
            action.diagnostics = [diagnostic];
            action.isPreferred = actions.length === 0;
            actions.push(action);
          }
          return actions;
        },
      },
      { providedCodeActionKinds: [vscode.CodeActionKind.QuickFix] },
    ),
  );

  /** A hover or completion from the worker; undefined when VS Code cancelled it, a newer one replaced it, or it failed. */
  const editorService = async <T>(token: vscode.CancellationToken | undefined, key: string, start: () => Promise<T>): Promise<T | undefined> => {
    const cancel = token?.onCancellationRequested(() => editorServices.cancel(key));
    try {
      return await start();
    } catch {
      return undefined; // editor services fail soft: no hover rather than an error in the editor
    } finally {
      cancel?.dispose();
    }
  };

  for (const doc of vscode.workspace.textDocuments) schedule(doc, 0);
  updateActiveEditor();
  return { activeEditorIsRecipe: () => activeIsRecipe === true };
}

function toVscodeRange(range: CoreRange): vscode.Range {
  return new vscode.Range(range.start.line, range.start.character, range.end.line, range.end.character);
}

function toVscodeDiagnostic(d: CoreDiagnostic): vscode.Diagnostic {
  const severity = d.severity === 'error' ? vscode.DiagnosticSeverity.Error : d.severity === 'warning' ? vscode.DiagnosticSeverity.Warning : vscode.DiagnosticSeverity.Information;
  const diagnostic = new vscode.Diagnostic(toVscodeRange(d.range), d.message, severity);
  diagnostic.source = 'QuantLens';
  diagnostic.code = d.code;
  return diagnostic;
}

const COMPLETION_KINDS: Record<CoreCompletion['kind'], vscode.CompletionItemKind> = {
  stage: vscode.CompletionItemKind.Module,
  group: vscode.CompletionItemKind.Folder,
  modifier: vscode.CompletionItemKind.Class,
  field: vscode.CompletionItemKind.Property,
  value: vscode.CompletionItemKind.Value,
  module: vscode.CompletionItemKind.Reference,
  preset: vscode.CompletionItemKind.EnumMember,
};

function toVscodeCompletion(item: CoreCompletion): vscode.CompletionItem {
  const c = new vscode.CompletionItem(item.label, COMPLETION_KINDS[item.kind]);
  c.range = toVscodeRange(item.range);
  if (item.insertText !== undefined) c.insertText = item.insertText;
  if (item.detail) c.detail = item.detail;
  if (item.documentation) c.documentation = new vscode.MarkdownString(item.documentation);
  if (item.sortText) c.sortText = item.sortText;
  return c;
}
