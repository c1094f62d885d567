// "Quantize Model…" operated from the keyboard in a real VS Code: keys typed into the quick picks and the
// output box, what the quick pick and the editor title bar show read from the page (test/integration/
// launcher.mjs). The workspace holds a model, two finished outputs (each with the recipe.yaml every job
// writes), the user's own recipes/recipe.yaml and a recipe with an error.
import * as assert from 'node:assert/strict';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import type { JobRecord } from '../../../src/extension/jobs/jobManager';
import { ShownElement, shown, ui, uiAvailable } from './ui';
import { sleep, waitFor } from './wait';

const QUICK_INPUT = '.quick-input-widget';
const TITLE = `${QUICK_INPUT} .quick-input-title`;
const ROWS = `${QUICK_INPUT} .quick-input-list .monaco-list-row`;
const TITLE_BAR_QUANTIZE = '.editor-group-container.active .editor-actions .action-label[aria-label^="Quantize Model"]';

// Line 5 (0-based 4), column 15: an unknown preset scheme, which the core's validator reports as an error.
const BROKEN_RECIPE = 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      ignore: ["lm_head"]\n      scheme: W9A99\n      targets: ["Linear"]\n';

// FP8 weights per channel, dynamic per-token activations: nothing in it to warn about on tiny-llama.
const USER_RECIPE = 'quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      ignore: ["lm_head"]\n      config_groups:\n        group_0:\n          weights: {num_bits: 8, type: float, symmetric: true, strategy: channel, dynamic: false}\n          input_activations: {num_bits: 8, type: float, symmetric: true, strategy: token, dynamic: true}\n          targets: ["Linear"]\n';

function extension(): vscode.Extension<QuantLensTestApi> {
  return vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
}

/** Waits until the quick input shows `title` (the step of the command it belongs to). */
async function quickInputTitled(title: RegExp): Promise<void> {
  await waitFor(`a quick input titled ${title}`, async () => ((await shown(TITLE)).some((t) => title.test(t.text)) ? true : undefined), 30_000);
}

/** The quick pick's rows as shown, once `ready` accepts them. */
async function rowsWhen(what: string, ready: (rows: ShownElement[]) => boolean): Promise<ShownElement[]> {
  return waitFor(what, async () => {
    const rows = await shown(ROWS);
    return ready(rows) ? rows : undefined;
  }, 30_000);
}

describe('Quantize Model… from the keyboard', function () {
  this.timeout(300_000);
  let ws: string;
  let model: string;
  let userRecipe: string;
  let brokenRecipe: string;
  let broken: string;

  before(async function () {
    if (!uiAvailable()) this.skip();
    ws = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
    model = join(ws, 'models', 'tiny-llama');
    cpSync(join(extension().extensionPath, 'examples', 'tiny-llama'), model, { recursive: true });
    mkdirSync(join(ws, 'recipes'), { recursive: true });
    mkdirSync(join(ws, 'outputs'), { recursive: true });
    userRecipe = join(ws, 'recipes', 'recipe.yaml');
    writeFileSync(userRecipe, USER_RECIPE);
    brokenRecipe = join(ws, 'recipes', 'broken-recipe.yaml');
    writeFileSync(brokenRecipe, BROKEN_RECIPE);
    // A file that is not a checkpoint, in a folder with a config.json: the inspector cannot read it.
    mkdirSync(join(ws, 'notmodel'), { recursive: true });
    writeFileSync(join(ws, 'notmodel', 'config.json'), '{"model_type": "llama"}');
    broken = join(ws, 'notmodel', 'broken.safetensors');
    writeFileSync(broken, Buffer.from('this is not a safetensors header'));
    // Two finished outputs: real jobs, each leaving a recipe.yaml beside its weights.
    for (const preset of ['w8a8', 'w4a16-rtn'] as const) {
      const record = await vscode.commands.executeCommand<JobRecord | undefined>('quantlens.quantizeModel', { model, preset, output: join(ws, 'outputs', `tiny-${preset}`), interactive: false, openResult: false });
      assert.equal(record?.status, 'succeeded', record?.error);
    }
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeQuickOpen');
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    if (ws) for (const dir of ['models', 'recipes', 'outputs', 'notmodel']) rmSync(join(ws, dir), { recursive: true, force: true });
  });

  it('typing recipe.yaml picks the workspace recipe, not an output\'s copy, and quantizes into the workspace', async () => {
    const job = vscode.commands.executeCommand<JobRecord | undefined>('quantlens.quantizeModel');
    await quickInputTitled(/Quantize Model: model/);
    const models = await rowsWhen('the model list', (rows) => rows.length > 0);
    assert.deepEqual(models.map((r) => r.text.includes('outputs/')), models.map(() => false), 'quantized outputs are not offered as models');
    await ui({ type: 'tiny-llama' }, { press: 'Enter' });

    await quickInputTitled(/Quantize Model: scheme/);
    await ui({ type: 'recipe.yaml' });
    // Each row shows its folder and, once checked, its problems.
    const rows = await rowsWhen('the recipes checked', (r) => r.length >= 2 && r.every((row) => !row.text.includes('checking')));
    assert.ok(rows.every((r) => !r.text.includes('outputs/')), `no output's recipe.yaml is offered: ${rows.map((r) => r.text).join(' | ')}`);
    assert.match(rows[0]!.text, /^recipe\.yaml\s*recipes\/.*no problems/);
    assert.match(rows.find((r) => r.text.includes('broken-recipe.yaml'))!.text, /1 error — line 5: unknown preset scheme "W9A99"/);
    await ui({ press: 'Enter' });

    await quickInputTitled(/Quantize Model: output/);
    const box = await waitFor('the output box', async () => (await shown(`${QUICK_INPUT} input`)).find((i) => i.value)?.value ?? undefined);
    assert.equal(box, join(ws, 'models', 'tiny-llama-recipe'), 'the default output is beside the model, inside the workspace');
    await ui({ press: 'Enter' });
    // The recipe has no warnings against this model, so the pre-flight check asks nothing (the test
    // workbench refuses modal dialogs).
    const record = await job;
    assert.ok(record, 'the command returns the job record');
    assert.equal(record.status, 'succeeded', record.error);
    assert.equal(record.spec.kind === 'quantize' && record.spec.recipe, userRecipe);
    assert.equal(record.spec.out, join(ws, 'models', 'tiny-llama-recipe'));

    // The Jobs view: the output's name as the label, the state beside it.
    await vscode.commands.executeCommand('workbench.view.extension.quantlens');
    const item = await waitFor('the job in the Jobs view', async () => (await shown('.monaco-list-row')).find((r) => r.text.startsWith('tiny-llama-recipe')));
    assert.match(item.text, /^tiny-llama-recipe\s*succeeded · /);
  });

  it('refuses a recipe with errors in the pick, and its button opens it at the error', async () => {
    const job = vscode.commands.executeCommand<JobRecord | undefined>('quantlens.quantizeModel', { model, openResult: false });
    await quickInputTitled(/Quantize Model: scheme/);
    await ui({ type: 'broken-recipe' });
    await rowsWhen('the broken recipe checked', (rows) => rows[0]?.text.includes('broken-recipe.yaml') === true && rows[0].text.includes('error'));
    await ui({ press: 'Enter' });
    await quickInputTitled(/broken-recipe\.yaml has 1 error \(line 5: unknown preset scheme/);
    assert.ok((await shown(ROWS)).length > 0, 'the pick stays open');

    const button = `${ROWS} .action-label[aria-label*="first error"]`;
    const buttons = await waitFor('the open-at-error button', async () => ((await shown(button)).length ? shown(button) : undefined));
    assert.match(buttons[0]!.ariaLabel ?? '', /line 5/);
    await ui({ click: button });
    assert.equal(await job, undefined, 'no job was started');
    const editor = await waitFor('the recipe open in an editor', () => (vscode.window.activeTextEditor?.document.uri.fsPath === brokenRecipe ? vscode.window.activeTextEditor : undefined));
    assert.equal(editor.selection.active.line, 4);
    assert.equal(editor.selection.active.character, 14);
  });

  it('asks for the model when the command comes from a file outside any checkpoint, instead of taking the workspace root', async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    const job = vscode.commands.executeCommand<JobRecord | undefined>('quantlens.quantizeModel', vscode.Uri.file(join(ws, 'README.md')));
    await quickInputTitled(/Quantize Model: model/);
    const rows = await rowsWhen('the model list', (r) => r.length > 0);
    assert.ok(rows.some((r) => r.text.includes('models/tiny-llama')), rows.map((r) => r.text).join(' | '));
    await ui({ press: 'Escape' });
    assert.equal(await job, undefined);
  });

  it('shows the title-bar button only over a checkpoint that opened', async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(join(model, 'model-00001-of-00002.safetensors')));
    await waitFor('the Quantize Model… button over the model', async () => ((await shown(TITLE_BAR_QUANTIZE)).length ? true : undefined));

    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(broken));
    await waitFor('the button gone', async () => ((await shown(TITLE_BAR_QUANTIZE)).length ? undefined : true));
    await sleep(2000);
    assert.deepEqual(await shown(TITLE_BAR_QUANTIZE), [], 'no Quantize Model… button over a file that did not open');

    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(join(ws, 'README.md')));
    await sleep(1000);
    assert.deepEqual(await shown(TITLE_BAR_QUANTIZE), [], 'no Quantize Model… button over a text file');
  });
});
