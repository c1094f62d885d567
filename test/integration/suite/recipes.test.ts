// Recipe validation in a real VS Code: a recipe with a misspelt key and a missing group_size shows
// diagnostics at the right places as soon as it opens, a quick fix repairs it, and hovers and completions
// come from QuantLens.
import * as assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { takeScreenshot } from './screenshot';
import { waitFor } from './wait';

const BROKEN = `quant_stage:
  quant_modifiers:
    GPTQModifier:
      dampning_frac: 0.1
      ignore: ["lm_head"]
      config_groups:
        group_0:
          targets: ["Linear"]
          weights:
            num_bits: 4
            type: int
            symmetric: true
            strategy: group
`;

describe('Recipe validation in VS Code', function () {
  this.timeout(60_000);
  let uri: vscode.Uri;

  before(() => {
    const folder = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
    mkdirSync(join(folder, 'recipes'), { recursive: true });
    const path = join(folder, 'recipes', 'recipe.yaml');
    writeFileSync(path, BROKEN);
    uri = vscode.Uri.file(path);
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('shows diagnostics on the misspelt key and the group strategy without group_size', async () => {
    const document = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(document);
    const diagnostics = await waitFor('recipe diagnostics', () => {
      const list = vscode.languages.getDiagnostics(uri).filter((d) => d.severity === vscode.DiagnosticSeverity.Error);
      return list.length >= 2 ? list : undefined;
    });
    const misspelt = diagnostics.find((d) => /dampning_frac/.test(d.message));
    assert.ok(misspelt, diagnostics.map((d) => d.message).join('\n'));
    assert.equal(misspelt.range.start.line, 3);
    assert.equal(document.getText(misspelt.range), 'dampning_frac');
    const groupSize = diagnostics.find((d) => /group_size/.test(d.message));
    assert.ok(groupSize, diagnostics.map((d) => d.message).join('\n'));
    assert.ok(groupSize.range.start.line >= 8 && groupSize.range.start.line <= 13, `group_size diagnostic on line ${groupSize.range.start.line}`);
    await takeScreenshot('recipe-diagnostics');
  });

  it('a quick fix renames the misspelt key, and the diagnostic goes away', async () => {
    const document = await vscode.workspace.openTextDocument(uri);
    const misspelt = vscode.languages.getDiagnostics(uri).find((d) => /dampning_frac/.test(d.message))!;
    const actions = await vscode.commands.executeCommand<vscode.CodeAction[]>('vscode.executeCodeActionProvider', uri, misspelt.range, vscode.CodeActionKind.QuickFix.value);
    const fix = actions.find((a) => a.edit && /dampening_frac/.test(a.title));
    assert.ok(fix, `quick fixes offered: ${actions.map((a) => a.title).join(', ')}`);
    assert.ok(await vscode.workspace.applyEdit(fix.edit!));
    assert.match(document.getText(), /\n {6}dampening_frac: 0\.1\n/);
    await waitFor('the misspelt-key diagnostic to clear', () => (vscode.languages.getDiagnostics(uri).some((d) => /dampning_frac/.test(d.message)) ? undefined : true));
  });

  it('hovers document keys and completion offers strategies', async () => {
    const document = await vscode.workspace.openTextDocument(uri);
    const line = document.getText().split('\n').findIndex((l) => l.includes('strategy: group'));
    const hovers = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', uri, new vscode.Position(line, 14));
    const text = hovers.flatMap((h) => h.contents.map((c) => (typeof c === 'string' ? c : c.value))).join('\n');
    assert.match(text, /strategy/i);
    const valuePosition = new vscode.Position(line, document.lineAt(line).text.length);
    const completions = await vscode.commands.executeCommand<vscode.CompletionList>('vscode.executeCompletionItemProvider', uri, valuePosition);
    const labels = completions.items.map((i) => (typeof i.label === 'string' ? i.label : i.label.label));
    assert.ok(labels.includes('channel') || labels.includes('group'), `completions: ${labels.slice(0, 20).join(', ')}`);
  });
});
