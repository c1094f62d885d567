// The chat view in a real VS Code: the trained example (examples/wikitext-llama, a small Llama trained on
// WikiText-2) quantized to INT4 and its original are loaded, the start of a sentence typed into the page
// streams both continuations side by side with the divergence line, and the page shows exactly the CLI's
// output for the same seed (the unit tests check generation against a full-recomputation reference loop).
// Its screenshot is the README's chat picture: real words, not the synthetic example's noise.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as vscode from 'vscode';
import type { QuantLensTestApi } from '../../../src/extension/testApi';
import { runQuantizeJob } from '../../../src/core/jobs/quantize';
import { DEFAULT_CHAT_SETTINGS } from '../../../src/webviewMessages/chat';
import { takeScreenshot } from './screenshot';

// The model continues plain text (its chat template joins the messages); no system prompt is prepended.
// Greedy decoding of so small a model degenerates into digits ("the 1000…"): sample, seeded, as the CLI does.
const PROMPT = 'The album was released in';
const SAMPLING = { system: '', temperature: 0.8, topP: 0.9, seed: 1, maxNewTokens: 32 };

describe('Chat view with the trained example', function () {
  this.timeout(300_000);
  let scratch: string;
  let extensionPath: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'quantlens-chat-it-'));
    extensionPath = vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.extensionPath;
  });
  after(async () => {
    rmSync(scratch, { recursive: true, force: true });
    // Later tests start from the default settings.
    const quantlens = await vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.activate();
    await quantlens.chat.useSettings(DEFAULT_CHAT_SETTINGS);
  });

  it('continues a sentence typed into the panel with both models side by side, equal to the CLI output for the same seed', async () => {
    const example = join(extensionPath, 'examples', 'wikitext-llama');
    assert.ok(existsSync(join(example, 'config.json')), `the example checkpoint is missing at ${example}`);
    const quantized = join(scratch, 'wikitext-llama-w4a16');
    await runQuantizeJob({ model: example, out: quantized, scheme: 'w4a16-rtn' });

    const quantlens = await vscode.extensions.getExtension<QuantLensTestApi>('quantlens.quantlens')!.activate();
    // The view opens from the command with the pair as its argument, as the Jobs view's result action does.
    await vscode.commands.executeCommand('quantlens.openChat', { quantized, original: example });
    const settings = quantlens.chat.currentSettings;
    assert.equal(settings.temperature, 0, 'the panel starts greedy');
    await quantlens.chat.useSettings(SAMPLING);
    await quantlens.chat.waitForRendered((v) => v.turns === 0 && !v.running, 60_000);

    quantlens.chat.askThroughPage(PROMPT);
    const view = await quantlens.chat.waitForRendered((v) => v.turns === 1 && !v.running && v.quantizedText !== '', 240_000);
    assert.equal(view.error, '');
    assert.equal(view.syntheticNote, '', 'trained weights: no note that the answers are noise');
    // Real words: the trained model continues with English text (weak, but not noise).
    for (const text of [view.quantizedText, view.originalText]) assert.ok((text.match(/\b[A-Za-z]{2,}\b/g) ?? []).length >= 4, `words in the answer: ${JSON.stringify(text)}`);
    assert.match(view.divergence, /^Original teacher-forced on the quantized answer: greedy choices agree on \d+% of \d+ steps · mean KL\(original‖quantized\) [\d.]+(e[+-]\d+)? nats$/);

    const { stdout } = await promisify(execFile)(process.execPath, [
      join(extensionPath, 'bin', 'quantlens.js'), 'chat', quantized, '--compare', example,
      '--system', SAMPLING.system, '--prompt', PROMPT, '--temperature', String(SAMPLING.temperature), '--top-p', String(SAMPLING.topP),
      '--seed', String(SAMPLING.seed), '--max-new-tokens', String(SAMPLING.maxNewTokens), '--json', '--cache', join(scratch, 'cli-graphs'),
    ], { env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' }, maxBuffer: 64 << 20 });
    const cli = JSON.parse(stdout) as { quantized: { text: string; tokens: number[] }; original: { text: string } };
    assert.equal(view.quantizedText, cli.quantized.text);
    assert.equal(view.originalText, cli.original.text);
    assert.equal(quantlens.chat.transcript[0]!.quantized.tokens, cli.quantized.tokens.length);
    // Room for the two answers side by side in the screenshot.
    await vscode.commands.executeCommand('quantlens.chat.focus');
    for (let i = 0; i < 12; i++) await vscode.commands.executeCommand('workbench.action.increaseViewSize');
    await new Promise((r) => setTimeout(r, 500));
    await takeScreenshot('chat');
  });
});
