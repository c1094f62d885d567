// The recipe preview in a real VS Code: a real llm-compressor recipe (test/fixtures/recipes) opened with
// "QuantLens: Open Recipe Preview" and the shipped example model (examples/tiny-llama, written by `npm test`
// before this suite runs) passed as the command's argument. What the page renders is read back through the
// extension API and compared with the core view model; editing the text updates the page.
import * as assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import { buildRecipePreview, modelLayersFromCheckpoint } from '../../../src/core/recipe';
import { takeScreenshot } from './screenshot';
import { sleep, waitFor } from './wait';

const FIXTURE = 'llmc__e2e__recipes__actorder__recipe_w4a16_actorder_weight.yaml';

async function api(): Promise<QuantLensTestApi> {
  return vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.activate();
}

function extensionPath(): string {
  return vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.extensionPath;
}

function exampleDir(): string {
  const dir = join(extensionPath(), 'examples', 'tiny-llama');
  assert.ok(existsSync(join(dir, 'model.safetensors.index.json')), `the example checkpoint is missing at ${dir} (npm test writes it first)`);
  return dir;
}

/** Waits until the preview of `path` has rendered document version `version` and `ready` holds. */
async function renderedAt(path: string, version: number, ready: (view: NonNullable<ReturnType<QuantLensTestApi['recipePreviews']>[number]['rendered']>) => boolean = () => true) {
  const quantlens = await api();
  return waitFor(`the recipe preview of ${path} at version ${version}`, () => {
    const preview = quantlens.recipePreviews().find((p) => p.path === path);
    const view = preview?.rendered;
    return view && view.version === version && ready(view) ? { ...preview, view } : undefined;
  });
}

describe('Recipe preview in VS Code', function () {
  this.timeout(120_000);
  let path: string;

  before(() => {
    const folder = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
    mkdirSync(join(folder, 'recipes'), { recursive: true });
    path = join(folder, 'recipes', 'w4a16-gptq.yaml');
    copyFileSync(join(extensionPath(), 'test', 'fixtures', 'recipes', FIXTURE), path);
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('opens beside the recipe with the example model and shows what core computes', async () => {
    const document = await vscode.workspace.openTextDocument(path);
    await vscode.window.showTextDocument(document);
    await vscode.commands.executeCommand('quantlens.openRecipePreview', { recipe: path, model: exampleDir() });
    const { view, model, run } = await renderedAt(path, document.version, (v) => v.counts !== undefined && v.visibleRows.length > 0);
    assert.equal(model, exampleDir());

    const core = buildRecipePreview(document.getText(), { fileName: path, model: await modelLayersFromCheckpoint(exampleDir()) });
    assert.ok(core.isRecipe && core.resolved);
    assert.deepEqual(view.counts, core.resolved.counts);
    assert.deepEqual(view.counts, { total: 29, quantized: 28, ignored: 1, unmatched: 0, indivisible: 0 });
    assert.equal(view.estimatedBytes, core.resolved.size.estimatedBytes);
    assert.equal(view.inputBytes, core.resolved.size.inputBytes);
    assert.ok(view.estimatedBytes! < view.inputBytes!);
    assert.deepEqual(view.schemes, ['INT4 weights, group 128, symmetric, GPTQ act-order static, dampening 0.01']);
    assert.equal(view.stages, 1);
    // The four vision-model ignore entries match nothing in the text-only example: warnings on line 4.
    assert.deepEqual(view.diagnostics.map((d) => [d.line, d.severity]), core.diagnostics.map((d) => [d.range.start.line + 1, d.severity]));
    assert.ok(view.diagnostics.length === 4 && view.diagnostics.every((d) => d.line === 4 && d.severity === 'warning'));
    // The table shows the first rows of the layer map, in checkpoint order, with their states.
    const shown = view.visibleRows.length;
    assert.deepEqual(view.visibleRows, core.resolved.layers.slice(0, shown).map((l) => ({ name: l.name, state: l.state, flagged: false })));

    if (vscode.workspace.isTrusted) {
      assert.equal(view.runEnabled, true, view.runReasons.join(' '));
      assert.deepEqual(run, { command: 'quantlens.quantizeModel', args: { model: exampleDir(), recipe: path } });
    } else {
      assert.equal(view.runEnabled, false);
      assert.match(view.runReasons.join(' '), /not trusted/);
    }
    // Text editor and preview side by side.
    const tabs = vscode.window.tabGroups.all.flatMap((g) => g.tabs.map((t) => t.input));
    assert.ok(tabs.some((t) => t instanceof vscode.TabInputCustom && t.viewType === 'quantlens.recipePreview' && t.uri.fsPath === path));
    assert.ok(tabs.some((t) => t instanceof vscode.TabInputText && t.uri.fsPath === path));
    // The page at full width for the screenshot (the text editor stays open in its group).
    await vscode.commands.executeCommand('workbench.action.closeSidebar');
    await vscode.commands.executeCommand('workbench.action.toggleMaximizeEditorGroup');
    await sleep(500); // layout after the resize
    await takeScreenshot('recipe-preview');
    await vscode.commands.executeCommand('workbench.action.toggleMaximizeEditorGroup');
  });

  it('follows edits: an indivisible group_size flags layers and disables Run, a new dampening shows in the words', async () => {
    const document = await vscode.workspace.openTextDocument(path);
    const text = document.getText();
    const at = text.indexOf('group_size: 128');
    const edit = new vscode.WorkspaceEdit();
    edit.replace(document.uri, new vscode.Range(document.positionAt(at), document.positionAt(at + 'group_size: 128'.length)), 'group_size: 512');
    assert.ok(await vscode.workspace.applyEdit(edit));
    const { view } = await renderedAt(path, document.version, (v) => v.counts !== undefined && v.visibleRows.length > 0);
    // in_features 768 (the four down_proj) is not a multiple of 512.
    assert.equal(view.counts!.indivisible, 4);
    assert.equal(view.runEnabled, false);
    const groupSizeLine = document.getText().split('\n').findIndex((l) => l.includes('group_size: 512')) + 1;
    assert.ok(view.diagnostics.some((d) => d.severity === 'error' && d.line === groupSizeLine && /does not divide/.test(d.message)), JSON.stringify(view.diagnostics));
    assert.ok(view.runReasons.some((r) => /1 error/.test(r)), view.runReasons.join(' '));
    await takeScreenshot('recipe-preview-indivisible');

    const back = new vscode.WorkspaceEdit();
    const line = document.getText().split('\n').findIndex((l) => l.includes('actorder:'));
    back.replace(document.uri, new vscode.Range(document.positionAt(document.getText().indexOf('group_size: 512')), document.positionAt(document.getText().indexOf('group_size: 512') + 15)), 'group_size: 128');
    back.insert(document.uri, new vscode.Position(line + 1, 0), '      dampening_frac: 0.1\n');
    assert.ok(await vscode.workspace.applyEdit(back));
    const after = await renderedAt(path, document.version, (v) => v.counts !== undefined);
    assert.deepEqual(after.view.schemes, ['INT4 weights, group 128, symmetric, GPTQ act-order static, dampening 0.1']);
    assert.equal(after.view.counts!.indivisible, 0);
    assert.equal(after.view.runEnabled, vscode.workspace.isTrusted);
  });

  it('says so when a YAML file is not an llm-compressor recipe', async () => {
    const folder = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
    const compose = join(folder, 'docker-compose.yml');
    writeFileSync(compose, 'services:\n  web:\n    image: nginx\n');
    await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(compose), 'quantlens.recipePreview');
    const document = await vscode.workspace.openTextDocument(compose);
    const { view } = await renderedAt(compose, document.version);
    assert.equal(view.isRecipe, false);
    assert.match(view.notRecipe ?? '', /docker-compose\.yml is not an llm-compressor recipe/);
    assert.equal(view.runEnabled, false);
  });
});
