// Hostile recipes in a real VS Code: a 1.7 MB recipe and a YAML alias bomb (43 million values behind 12
// lines) are opened and analysed while the user types in another file. Analysis runs in the recipe worker,
// so the extension host keeps answering: every edit's document-change event and every tick of a timer on
// the extension host's thread come within a stated bound. The bomb's diagnostic reaches the Problems list at
// the line of the alias that passes the expansion limit.
import * as assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { sleep } from './wait';

/**
 * What an edit in another file may take to come back as a change event, and the longest the extension host's
 * event loop may stall. Typical here: 15-330 ms on a shared 2-core machine that also runs the workbench, the
 * browser and the worker. The same recipes analysed on the extension host stalled it ~1.4 s (1.7 MB) and
 * over 60 s (the bomb, before aliases were bounded).
 */
const RESPONSE_BOUND_MS = 1000;

const BOMB = `a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      targets: *h
`;

/** ~1.7 MB: seconds of validation (in-process it would freeze the extension host that long), ending in a misspelt field. */
function largeRecipe(): string {
  const lines = ['quant_stage:', '  quant_modifiers:', '    GPTQModifier:', '      scheme: W4A16', '      ignore:'];
  for (let i = 0; i < 25_000; i++) lines.push(`        - "re:model.layers.${i}.mlp.down_proj_with_a_long_suffix"`);
  lines.push('      dampning_frac: 0.1');
  return `${lines.join('\n')}\n`;
}

describe('Hostile recipes in VS Code', function () {
  this.timeout(180_000);
  let bombUri: vscode.Uri;
  let largeUri: vscode.Uri;
  let notesUri: vscode.Uri;

  before(() => {
    const folder = join(vscode.workspace.workspaceFolders![0]!.uri.fsPath, 'hostile');
    mkdirSync(join(folder, 'bomb'), { recursive: true });
    mkdirSync(join(folder, 'large'), { recursive: true });
    writeFileSync(join(folder, 'bomb', 'recipe.yaml'), BOMB);
    writeFileSync(join(folder, 'large', 'recipe.yaml'), largeRecipe());
    writeFileSync(join(folder, 'notes.md'), '# Notes\n\n');
    bombUri = vscode.Uri.file(join(folder, 'bomb', 'recipe.yaml'));
    largeUri = vscode.Uri.file(join(folder, 'large', 'recipe.yaml'));
    notesUri = vscode.Uri.file(join(folder, 'notes.md'));
  });
  after(async () => {
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('typing elsewhere stays responsive while they are analysed, and the bomb is reported at its alias', async () => {
    // Activation (loading the bundle, the runtime status) is not what is measured here: do it first, and
    // open the file typed into before the clock starts.
    await vscode.extensions.getExtension('quantlens.quantlens')!.activate();
    const notes = await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(notesUri), { preview: false });
    assert.ok(await notes.edit((edit) => edit.insert(new vscode.Position(1, 0), 'warm-up\n')));
    await sleep(500);

    // The extension host's event loop: a 10 ms timer notes its longest gap.
    let last = performance.now();
    let stallMs = 0;
    let stallAt = 0;
    const marks: string[] = [];
    const ticker = setInterval(() => {
      const now = performance.now();
      if (now - last > stallMs) stallAt = now - opened;
      stallMs = Math.max(stallMs, now - last);
      last = now;
    }, 10);
    const latencies: { ms: number; analysing: boolean }[] = [];
    const opened = performance.now();
    let largeDone: number | undefined;
    let bombDone: number | undefined;
    const arrivals = vscode.languages.onDidChangeDiagnostics((event) => {
      const now = performance.now() - opened;
      for (const uri of event.uris) {
        if (vscode.languages.getDiagnostics(uri).length === 0) continue;
        if (uri.toString() === largeUri.toString()) largeDone ??= now;
        if (uri.toString() === bombUri.toString()) bombDone ??= now;
      }
    });
    try {
      // The bomb is shown beside the notes; the large recipe is opened as a document (validated like any open
      // one) without an editor, which would only add the workbench's own time to render it.
      await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(bombUri), { preview: false, viewColumn: vscode.ViewColumn.Beside, preserveFocus: true });
      marks.push(`bomb shown ${(performance.now() - opened).toFixed(0)}`);
      await vscode.workspace.openTextDocument(largeUri);
      marks.push(`large opened ${(performance.now() - opened).toFixed(0)}`);
      const deadline = performance.now() + 60_000;
      while ((largeDone === undefined || bombDone === undefined || latencies.length < 10) && performance.now() < deadline) {
        const analysing = largeDone === undefined || bombDone === undefined;
        const changed = new Promise<number>((resolve) => {
          const subscription = vscode.workspace.onDidChangeTextDocument((event) => {
            if (event.document.uri.toString() !== notesUri.toString()) return;
            subscription.dispose();
            resolve(performance.now());
          });
        });
        const started = performance.now();
        const end = notes.document.lineAt(notes.document.lineCount - 1).range.end;
        assert.ok(await notes.edit((edit) => edit.insert(end, 'typing ')));
        latencies.push({ ms: (await changed) - started, analysing });
        await sleep(50);
      }
    } finally {
      clearInterval(ticker);
      arrivals.dispose();
    }
    const worst = Math.max(...latencies.map((l) => l.ms));
    const during = latencies.filter((l) => l.analysing).length;
    const largeOutcome = vscode.languages.getDiagnostics(largeUri).map((d) => d.code).join(', ');
    console.log(`recipe analysis (from opening the bomb): large recipe answered after ${largeDone?.toFixed(0)} ms (${largeOutcome}), bomb after ${bombDone?.toFixed(0)} ms; ${latencies.length} edits (${during} while analysing), slowest ${worst.toFixed(0)} ms; longest event-loop stall ${stallMs.toFixed(0)} ms (at ${stallAt.toFixed(0)} ms; ${marks.join(', ')} ms); edit round trips ${latencies.map((l) => `${l.ms.toFixed(0)}${l.analysing ? '*' : ''}`).join(' ')} ms`);
    assert.ok(largeDone !== undefined && bombDone !== undefined, 'both recipes got diagnostics within a minute');
    assert.ok(during >= 3, `${during} edits were made while the recipes were being analysed`);
    assert.ok(worst < RESPONSE_BOUND_MS, `slowest edit round trip ${worst.toFixed(0)} ms`);
    assert.ok(stallMs < RESPONSE_BOUND_MS, `extension host event loop stalled ${stallMs.toFixed(0)} ms`);

    // The bomb: one error, at the alias of line 5 whose expansion passes the limit, naming its anchor's line.
    const bomb = vscode.languages.getDiagnostics(bombUri);
    assert.equal(bomb.length, 1, bomb.map((d) => d.message).join('\n'));
    const [diagnostic] = bomb;
    assert.equal(diagnostic!.severity, vscode.DiagnosticSeverity.Error);
    assert.equal(diagnostic!.source, 'QuantLens');
    assert.equal(diagnostic!.code, 'too-many-aliases');
    assert.deepEqual([diagnostic!.range.start.line, diagnostic!.range.start.character], [4, 7]);
    assert.match(diagnostic!.message, /^alias \*d is not expanded: it resolves 820 aliases.*&d \(line 4\) is built from aliases of other anchors/);

    // The large recipe: either its misspelt field (analysis finished) or the budget diagnostic (it did not).
    const large = vscode.languages.getDiagnostics(largeUri);
    assert.ok(
      large.some((d) => /dampning_frac/.test(d.message)) || large.some((d) => d.code === 'too-complex' && /too large or complex to analyse/.test(d.message)),
      large.map((d) => `${d.code}: ${d.message}`).join('\n'),
    );

    // Hovers on the bomb answer too (from the editor-services worker).
    const hoverStarted = performance.now();
    const hovers = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', bombUri, new vscode.Position(10, 8));
    const hoverMs = performance.now() - hoverStarted;
    const text = hovers.flatMap((h) => h.contents.map((c) => (typeof c === 'string' ? c : c.value))).join('\n');
    assert.match(text, /QuantizationModifier/);
    assert.ok(hoverMs < 2000, `hover took ${hoverMs.toFixed(0)} ms`);
  });
});
