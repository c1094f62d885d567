// "QuantLens: Plan Mixed Precision…" in a real VS Code, operated through its quick picks from the keyboard
// (test/integration/launcher.mjs): on the example model, data, candidates, a budget in bits (a value below
// what the candidates allow is refused in the box), "Plan and verify", the recipe's name. The job runs in the
// Jobs view; its recipe opens in the recipe preview with the planned config groups; the inspector's Error tab
// shows the sensitivity heatmap — one cell per linear layer, each with the KL of plan.json — and the
// verified points. Also: the command sits in the inspector's title bar.
import * as assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import type { JobRecord } from '../../../src/extension/jobs/jobManager';
import { readPlanFile } from '../../../src/core/plan/planFile';
import { buildRecipePreview, modelLayersFromCheckpoint } from '../../../src/core/recipe';
import { shown, ui, uiAvailable } from './ui';
import { waitFor } from './wait';
import { takeScreenshot } from './screenshot';

const QUICK_INPUT = '.quick-input-widget';
const TITLE = `${QUICK_INPUT} .quick-input-title`;
const ROWS = `${QUICK_INPUT} .quick-input-list .monaco-list-row`;
const MESSAGE = `${QUICK_INPUT} .quick-input-message`;
/**
 * A click into the step's text box before typing, as a user does when the focus is elsewhere: when one step
 * closes, VS Code gives the focus back to the editor (here the inspector's webview), and a webview takes it
 * asynchronously, sometimes after the next step has opened (the steps stay open: ignoreFocusOut).
 */
const FOCUS_BOX = { click: `${QUICK_INPUT} .quick-input-box input` };
const TITLE_BAR_PLAN = '.editor-group-container.active .editor-actions .action-label[aria-label^="Plan Mixed Precision"]';

async function api(): Promise<QuantLensTestApi> {
  return vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.activate();
}

async function quickInputTitled(title: RegExp): Promise<void> {
  try {
    await waitFor(`a quick input titled ${title}`, async () => ((await shown(TITLE)).some((t) => title.test(t.text)) ? true : undefined), 60_000);
  } catch (error) {
    // Say what the workbench shows instead: the step still open, its message, a notification.
    const seen = await Promise.all([TITLE, MESSAGE, `${QUICK_INPUT} input`, '.notifications-toasts .notification-list-item-message'].map(async (css) => `${css}: ${JSON.stringify((await shown(css)).map((e) => e.value ?? e.text))}`));
    throw new Error(`${(error as Error).message}; shown: ${seen.join('; ')}`);
  }
}

describe('Plan Mixed Precision… through its quick picks', function () {
  this.timeout(600_000);
  let ws: string;
  let model: string;

  before(async function () {
    if (!uiAvailable()) this.skip();
    ws = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
    model = join(ws, 'plan-models', 'tiny-llama');
    cpSync(join(vscode.extensions.getExtension('quantlens.quantlens')!.extensionPath, 'examples', 'tiny-llama'), model, { recursive: true });
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeQuickOpen');
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    if (ws) rmSync(join(ws, 'plan-models'), { recursive: true, force: true });
  });

  it('plans and verifies; the recipe preview shows the planned groups, the Error tab the heatmap of plan.json', async () => {
    const quantlens = await api();
    const shard = join(model, 'model-00001-of-00002.safetensors');
    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(shard));
    await waitFor('the Plan Mixed Precision… button over the model', async () => ((await shown(TITLE_BAR_PLAN)).length ? true : undefined));
    // The page is drawn before the plan starts, as a user has it: the finished job's plan reaches it, and a
    // page that reloads later reads the plan file.
    await waitFor('the inspector page', () => quantlens.inspectors().find((i) => i.path === shard && i.rendered)?.rendered);

    // A short calibration (the command's arguments), everything else chosen in the quick picks.
    const job = vscode.commands.executeCommand<JobRecord | undefined>('quantlens.planMixedPrecision', { model, samples: 2, seqLen: 16 });
    await quickInputTitled(/Plan Mixed Precision: calibration data/);
    await ui(FOCUS_BOX, { type: 'WikiText' }, { press: 'Enter' });

    await quickInputTitled(/Plan Mixed Precision: candidate schemes/);
    const rows = await waitFor('the candidates', async () => ((await shown(ROWS)).length >= 8 ? shown(ROWS) : undefined));
    assert.match(rows[0]!.text, /^w4a16\s*INT4 weights, group 128, GPTQ/);
    // w4a16 and w8a16 come checked: accept them.
    await ui(FOCUS_BOX, { press: 'Enter' });

    await quickInputTitled(/Plan Mixed Precision: budget/);
    await ui(FOCUS_BOX, { type: 'bits per weight' }, { press: 'Enter' });
    await quickInputTitled(/Plan Mixed Precision: bits per weight/);
    const prompt = await waitFor('the allowed range', async () => (await shown(`${QUICK_INPUT} .quick-input-description, ${MESSAGE}`)).find((e) => /allow/.test(e.text))?.text);
    assert.match(prompt, /These candidates allow 4\.\d{3} … 8\.\d{3} bits per weight/);
    // Below the smallest plan: refused in the box, with the minimum named.
    const clear = Array.from({ length: 12 }, () => ({ press: 'Backspace' }));
    await ui(FOCUS_BOX, { press: 'End' }, ...clear, { type: '1' });
    await waitFor('the refusal', async () => ((await shown(MESSAGE)).some((m) => /below the smallest possible plan, \d+ bytes \(4\.\d{3} bits per weight/.test(m.text)) ? true : undefined));
    await ui({ press: 'Backspace' }, { type: '6' }, { press: 'Enter' });

    await quickInputTitled(/Plan Mixed Precision: verify/);
    await ui(FOCUS_BOX, { type: 'and verify' }, { press: 'Enter' });
    await quickInputTitled(/Plan Mixed Precision: recipe/);
    const box = await waitFor('the recipe box', async () => (await shown(`${QUICK_INPUT} input`)).find((i) => i.value)?.value ?? undefined);
    const recipe = join(ws, 'plan-models', 'tiny-llama-plan.yaml');
    assert.equal(box, recipe, 'the recipe goes beside the model, inside the workspace');
    await ui(FOCUS_BOX, { press: 'Enter' });

    const record = await job;
    assert.ok(record, 'the command returns the job record');
    assert.equal(record.status, 'succeeded', record.error);
    assert.deepEqual(record.spec.kind === 'plan' && [record.spec.candidates, record.spec.budget, record.spec.verify], [['w4a16', 'w8a16'], { bits: 6 }, {}]);
    // Read back as the editor reads it (the synthetic example's perplexities are infinite: the file keeps them).
    const plan = await readPlanFile(join(ws, 'plan-models', 'tiny-llama-plan.plan.json'));
    assert.equal(plan.layers.length, 28);
    assert.ok(plan.bytes <= plan.budgetBytes);

    // The Jobs view lists it.
    await vscode.commands.executeCommand('workbench.view.extension.quantlens');
    await waitFor('the job in the Jobs view', async () => (await shown('.monaco-list-row')).find((r) => /^tiny-llama-plan\.yaml\s*succeeded · /.test(r.text)));

    // The recipe preview opened on the written recipe against the model, with one group per planned scheme.
    const preview = await waitFor('the recipe preview of the plan', () => {
      const p = quantlens.recipePreviews().find((x) => x.path === recipe);
      return p?.rendered?.counts ? p : undefined;
    }, 60_000);
    assert.equal(preview.model, model);
    const core = buildRecipePreview(readFileSync(recipe, 'utf8'), { fileName: recipe, model: await modelLayersFromCheckpoint(model) });
    assert.ok(core.isRecipe && core.resolved);
    const chosen = new Set(plan.layers.map((l) => l.scheme));
    assert.equal(preview.rendered!.schemes.length, chosen.size);
    assert.deepEqual(preview.rendered!.schemes, core.stages.flatMap((st) => st.modifiers.flatMap((m) => m.schemes.map((s) => s.description))));
    // Both candidates are GPTQ's: one GPTQModifier, with the block size and dampening the measurement used.
    assert.equal(preview.rendered!.modifiers.length, 1);
    assert.match(preview.rendered!.modifiers[0]!, /^GPTQModifier .*dampening 0\.1/);
    assert.deepEqual(preview.rendered!.counts, { total: 29, quantized: 28, ignored: 0, unmatched: 1, indivisible: 0 });

    // The inspector of the model: the Error tab shows the plan's heatmap, one cell per linear, KL as in plan.json.
    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(shard));
    await waitFor('the inspector page', () => quantlens.inspectors().find((i) => i.path === shard && i.rendered)?.rendered);
    const section = await waitFor('the plan section', () => {
      const rendered = quantlens.inspectors().find((i) => i.path === shard)?.rendered;
      // The page may reload once it is shown again (a hidden webview's page is discarded): ask until it is there.
      if (rendered?.tab !== 'error') assert.ok(quantlens.showInspectorTab(shard, 'error'));
      return rendered?.tab === 'error' && rendered.plan?.heatmap ? rendered.plan : undefined;
    }, 60_000);
    await takeScreenshot('plan-error-tab');
    const heatmap = section.heatmap!;
    assert.deepEqual(heatmap.rows, ['layer 0', 'layer 1', 'layer 2', 'layer 3']);
    assert.deepEqual(heatmap.columns, ['q', 'k', 'v', 'o', 'gate', 'up', 'down']);
    assert.equal(heatmap.cells.length, 28);
    const expected = plan.layers.map((l) => `${l.module}: ${l.scheme} KL ${l.kl.toExponential(3)} nats`);
    assert.deepEqual(heatmap.cells.map((c) => c.text).sort(), expected.sort());
    for (const cell of heatmap.cells) {
      const module = cell.text.split(':')[0]!;
      assert.equal(`layer ${module.split('.')[2]}`, cell.row);
      assert.equal(`${module.split('.').at(-1)!.replace('_proj', '')}`, cell.column);
    }
    // A cell, chosen from the keyboard (focus, Enter), shows that layer's measurements under the heatmap.
    const cell = heatmap.cells.findIndex((c) => c.text.startsWith('model.layers.2.mlp.down_proj:'));
    assert.ok(quantlens.pressKeyInInspector(shard, '#plan-heatmap svg.heatmap rect.cell', cell, 'Enter'));
    const detail = await waitFor('the layer detail', () => quantlens.inspectors().find((i) => i.path === shard)?.rendered?.plan?.detail);
    assert.equal(detail.module, 'model.layers.2.mlp.down_proj');
    const measured = plan.sensitivity.find((l) => l.module === 'model.layers.2.mlp.down_proj')!.measurements;
    const chosenScheme = plan.layers.find((l) => l.module === 'model.layers.2.mlp.down_proj')!.scheme;
    assert.deepEqual(
      detail.rows.map((r) => r.slice(0, 4)),
      measured.map((m) => [m.candidate === chosenScheme ? `${m.candidate} (planned)` : m.candidate, m.kl === undefined ? '—' : m.kl.toExponential(3), m.proxy === undefined ? '—' : m.proxy.toExponential(3), m.bytes.toLocaleString('en-US')]),
    );
    const kls = plan.layers.map((l) => l.kl).filter((v) => v > 0);
    assert.deepEqual(heatmap.legend, { min: `KL ${Math.min(...kls).toExponential(3)} nats`, max: `KL ${Math.max(...kls).toExponential(3)} nats` });
    assert.equal(section.colourBy, 'chosen');
    assert.match(section.summary, /^tiny-llama-plan\.yaml: .* bits per weight \(budget [\d,]+ bytes\)/);
    // The verified points: the plot shows the plan and each scheme alone; the table adds the float model.
    const points = plan.verification!.points;
    assert.deepEqual(section.verification.map((r) => r[0]), points.map((p) => p.label));
    assert.deepEqual(section.verification.map((r) => r[3]), points.map((p) => p.kl.toExponential(3)));
    assert.equal(section.scatter.length, points.filter((p) => Number.isFinite(p.kl) && p.kl > 0).length);
    assert.ok(section.scatter.some((s) => s.startsWith(`plan: ${points.find((p) => p.kind === 'plan')!.fileBytes.toLocaleString('en-US')} bytes on disk`)), section.scatter.join(' | '));
  });
});
