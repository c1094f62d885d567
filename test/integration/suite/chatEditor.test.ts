// The chat in an editor tab, in a real VS Code whose browser window is 1440×900 (the launcher's viewport):
// two W8A8 quantize jobs of the shipped example run through the Jobs command, "Open Chat in Editor" opens a
// tab that starts with the latest job's output against its source model, says the weights are synthetic,
// and a greedy prompt typed into the page shows both answers side by side, each at least 60 characters of
// the answer font wide, with the summary line fully visible. The measurements come from the page itself.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import type { JobRecord } from '../../../src/extension/jobs/jobManager';
import type { QuantizeCommandArgs } from '../../../src/extension/jobs/jobCommands';
import { takeScreenshot } from './screenshot';
import { waitFor } from './wait';

const PROMPT = 'Explain in one paragraph why 8-bit weights are usually enough.';

function quantize(args: QuantizeCommandArgs): Thenable<JobRecord | undefined> {
  return vscode.commands.executeCommand<JobRecord | undefined>('quantlens.quantizeModel', { interactive: false, openResult: false, ...args });
}

describe('Chat in an editor tab at 1440x900', function () {
  this.timeout(300_000);
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'quantlens-chat-editor-'));
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    rmSync(scratch, { recursive: true, force: true });
  });

  it('starts with the latest job, notes synthetic weights, and shows both answers side by side with the whole summary line', async () => {
    const extension = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!;
    const quantlens = await extension.activate();
    const example = join(extension.extensionPath, 'examples', 'tiny-llama');
    const older = join(scratch, 'older-w8a8');
    const latest = join(scratch, 'latest-w8a8');
    for (const output of [older, latest]) {
      const record = await quantize({ model: example, preset: 'w8a8', output });
      assert.equal(record?.status, 'succeeded', record?.error);
    }
    assert.equal(quantlens.jobs()[0]?.spec.out, latest, 'the Jobs view lists the latest job first');

    await quantlens.chat.useSettings({ temperature: 0, maxNewTokens: 40, compare: true });
    // A fresh chat takes the latest job when its first page opens. When an earlier test of this run already
    // chose models, take it the way the model bar's "Use last job" does: the same choice of job.
    if (quantlens.chat.currentModels.state !== 'none') assert.ok(await quantlens.chat.useLatestJob());
    await vscode.commands.executeCommand('quantlens.openChatInEditor');

    // The tab model reaches the extension host a moment after the panel is created.
    await waitFor('the chat as the active editor tab', () => {
      const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
      return input instanceof vscode.TabInputWebview && input.viewType.endsWith('quantlens.chatPanel') ? true : undefined;
    }, 20_000);
    const ready = await quantlens.chat.waitForRendered((v) => v.quantizedModel === latest && v.syntheticNote !== '', 120_000, 'panel');
    assert.equal(ready.originalModel, example, "the latest job's source model is the original");
    assert.match(ready.syntheticNote, /synthetic weights: answers are noise by design/i);

    quantlens.chat.askThroughPage(PROMPT, 'panel');
    const view = await quantlens.chat.waitForRendered((v) => v.turns >= 1 && !v.running && v.quantizedText !== '' && v.layout.summaryShown, 240_000, 'panel');
    assert.equal(view.error, '');
    const summary = /greedy choices agree on \d+% of (\d+) steps · mean KL\(original‖quantized\) [\d.]+(e[+-]\d+)? nats$/.exec(view.divergence);
    assert.ok(summary, `the summary line: ${view.divergence}`);
    assert.ok(Number(summary[1]) <= 40, `the small max-tokens setting reached the page: ${view.divergence}`);
    const { layout } = view;
    const described = JSON.stringify(layout);
    console.log(`chat editor tab layout: ${described}`);
    assert.ok(layout.answerCharWidth > 3, `the answer font's character width was measured: ${described}`);
    assert.ok(layout.pageWidth >= 640, `an editor tab at 1440×900 is wide: ${described}`);
    assert.equal(layout.stacked, false, `wide: the answers are side by side: ${described}`);
    assert.equal(layout.answerColumnChars.length, 2, described);
    for (const chars of layout.answerColumnChars) assert.ok(chars >= 60, `each answer column is at least 60 characters wide: ${described}`);
    assert.equal(layout.summaryClipped, false, `the summary line is not cut off: ${described}`);
    assert.equal(layout.summaryInView, true, `the summary line is inside the visible conversation: ${described}`);
    assert.equal(layout.nestedScrollAreas, 0, `the conversation is the only scroll area: ${described}`);
    await takeScreenshot('chat-editor');
  });
});
