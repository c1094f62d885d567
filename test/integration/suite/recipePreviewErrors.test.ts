// A recipe with errors in the recipe preview, and the preview's button in the editor title bar, in a real
// VS Code. The preview says plainly that the recipe has errors (how many, the first one, a button to its
// line) and shows no output size or layer counts, which a recipe llm-compressor refuses would make up; the
// title-bar button is there over a recipe and not over other YAML (read from the page under the launcher).
import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import { buildRecipePreview, modelLayersFromCheckpoint } from '../../../src/core/recipe';
import { takeScreenshot } from './screenshot';
import { shown, ui, uiAvailable } from './ui';
import { sleep, waitFor } from './wait';

// Two errors: an unknown preset on line 5 (1-based) and a block_size that is not an integer on line 7.
const BROKEN = 'quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      ignore: ["lm_head"]\n      scheme: W4A61\n      targets: ["Linear"]\n      block_size: big\n';
const TITLE_BAR_PREVIEW = '.editor-group-container.active .editor-actions .action-label[aria-label^="Open Recipe Preview"]';

function extension(): vscode.Extension<QuantLensTestApi> {
  return vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
}

function exampleDir(): string {
  const dir = join(extension().extensionPath, 'examples', 'tiny-llama');
  assert.ok(existsSync(join(dir, 'model.safetensors.index.json')), `the example checkpoint is missing at ${dir} (npm test writes it first)`);
  return dir;
}

type Rendered = NonNullable<ReturnType<QuantLensTestApi['recipePreviews']>[number]['rendered']>;

async function renderedAt(path: string, version: number, ready: (view: Rendered) => boolean): Promise<Rendered> {
  const quantlens = await extension().activate();
  return waitFor(`the recipe preview of ${path} at version ${version}`, () => {
    const view = quantlens.recipePreviews().find((p) => p.path === path)?.rendered;
    return view && view.version === version && ready(view) ? view : undefined;
  });
}

describe('Recipe preview of a recipe with errors, and its title-bar button', function () {
  this.timeout(120_000);
  let folder: string;
  let broken: string;

  before(() => {
    folder = join(vscode.workspace.workspaceFolders![0]!.uri.fsPath, 'recipes-with-errors');
    mkdirSync(folder, { recursive: true });
    broken = join(folder, 'w4a61.yaml');
    writeFileSync(broken, BROKEN);
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('says how many errors and which is first, with no size or layer figures; fixing them brings the figures back', async () => {
    const document = await vscode.workspace.openTextDocument(broken);
    await vscode.window.showTextDocument(document);
    await vscode.commands.executeCommand('quantlens.openRecipePreview', { recipe: broken, model: exampleDir() });
    const view = await renderedAt(broken, document.version, (v) => v.errorBanner !== undefined);

    const core = buildRecipePreview(document.getText(), { fileName: broken, model: await modelLayersFromCheckpoint(exampleDir()) });
    assert.ok(core.isRecipe);
    const errors = core.diagnostics.filter((d) => d.severity === 'error');
    assert.deepEqual(errors.map((d) => d.range.start.line + 1), [5, 7], JSON.stringify(core.diagnostics));
    assert.equal(view.errorBanner!.text, `This recipe has 2 errors; the first: line 5: ${errors[0]!.message}`);
    assert.match(errors[0]!.message, /W4A61/);
    assert.equal(view.errorBanner!.line, 5);
    // No made-up figures: no "× smaller", no byte counts, no layer counts, the map marked as not computed.
    assert.doesNotMatch(view.sizeText, /×|smaller|%/);
    assert.match(view.sizeText, /Not computed while the recipe has errors/);
    assert.equal(view.estimatedBytes, undefined);
    assert.equal(view.inputBytes, undefined);
    assert.equal(view.counts, undefined);
    assert.deepEqual(view.visibleRows, []);
    assert.match(view.layerMapWithheld ?? '', /^Not computed: with 2 errors in the recipe, what it quantizes is not known/);
    assert.equal(view.runEnabled, false);
    await takeScreenshot('recipe-preview-errors');

    // Fixed: the banner goes and the figures come back.
    const fix = new vscode.WorkspaceEdit();
    const text = document.getText();
    fix.replace(document.uri, new vscode.Range(document.positionAt(0), document.positionAt(text.length)), text.replace('W4A61', 'W4A16').replace('      block_size: big\n', ''));
    assert.ok(await vscode.workspace.applyEdit(fix));
    const fixed = await renderedAt(broken, document.version, (v) => v.counts !== undefined);
    assert.equal(fixed.errorBanner, undefined);
    assert.equal(fixed.layerMapWithheld, undefined);
    assert.match(fixed.sizeText, /\d\.\d\d× smaller/);
    assert.ok(fixed.counts!.quantized > 0 && fixed.counts!.unmatched === 0, JSON.stringify(fixed.counts));
    await document.save(); // closing a dirty editor would ask
  });

  it('shows Open Recipe Preview in the title bar over a recipe, not over other YAML', async () => {
    const quantlens = await extension().activate();
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    const compose = join(folder, 'docker-compose.yml');
    writeFileSync(compose, 'services:\n  web:\n    image: nginx\n');
    const recipe = join(folder, 'int8.yaml'); // a recipe by its content, not by its name
    writeFileSync(recipe, 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      scheme: W8A8\n      targets: ["Linear"]\n');

    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(recipe));
    await waitFor('the recipe context key', () => (quantlens.activeEditorIsRecipe() ? true : undefined));
    if (uiAvailable()) await waitFor('the Open Recipe Preview button over the recipe', async () => ((await shown(TITLE_BAR_PREVIEW)).length ? true : undefined));

    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(compose));
    await waitFor('the context key off over docker-compose.yml', () => (quantlens.activeEditorIsRecipe() ? undefined : true));
    if (uiAvailable()) {
      await waitFor('the button gone', async () => ((await shown(TITLE_BAR_PREVIEW)).length ? undefined : true));
      await sleep(1000);
      assert.deepEqual(await shown(TITLE_BAR_PREVIEW), [], 'no Open Recipe Preview button over a YAML file that is not a recipe');
    }

    // The button opens the preview of the recipe under it (clicked when the page is reachable; otherwise the
    // command with the editor's URI, which is what VS Code passes from the title bar).
    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(recipe));
    await waitFor('the recipe context key again', () => (quantlens.activeEditorIsRecipe() ? true : undefined));
    if (uiAvailable()) {
      await waitFor('the button back over the recipe', async () => ((await shown(TITLE_BAR_PREVIEW)).length ? true : undefined));
      await ui({ click: TITLE_BAR_PREVIEW });
    } else await vscode.commands.executeCommand('quantlens.openRecipePreview', vscode.Uri.file(recipe));
    const view = await waitFor('the preview of int8.yaml', () => quantlens.recipePreviews().find((p) => p.path === recipe)?.rendered);
    assert.equal(view.isRecipe, true);
    assert.equal(view.errorBanner, undefined);
  });
});
