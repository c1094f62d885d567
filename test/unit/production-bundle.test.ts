// The .vsix carries no test hook: `node esbuild.mjs --production` (what `npm run package` runs) is built into
// a temporary folder and every bundle it ships (extension, CLI, workers, webviews) is searched for the names
// only the test channel uses (src/webviewMessages/testProbes.ts). The same build with the hooks on must
// contain every one of those names, so the search is known to find a hook that leaks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { TEST_ONLY_NAMES } from '../../src/webviewMessages/testProbes';

// Compiled to out/test/unit/; the repository root is three levels up.
const root = resolve(__dirname, '../../..');

function build(outdir: string, production: boolean): Map<string, string> {
  const run = spawnSync(process.execPath, ['esbuild.mjs', ...(production ? ['--production'] : []), '--outdir', outdir], { cwd: root, encoding: 'utf8' });
  assert.equal(run.status, 0, `esbuild failed: ${run.stderr}`);
  const bundles = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.js')) bundles.set(relative(outdir, path), readFileSync(path, 'utf8'));
    }
  };
  walk(outdir);
  return bundles;
}

describe('production bundles: no test hooks in the .vsix', function () {
  this.timeout(300_000);
  let scratch: string;
  let production: Map<string, string>;
  let withHooks: Map<string, string>;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'quantlens-bundles-'));
    production = build(join(scratch, 'production'), true);
    withHooks = build(join(scratch, 'with-hooks'), false);
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('builds every shipped bundle', () => {
    for (const name of ['extension.js', 'cli.js', 'webview/inspector.js', 'webview/recipe.js', 'webview/chat.js', 'workers/analysis.worker.js']) {
      assert.ok(production.has(name), `${name} missing from the production build (${[...production.keys()].join(', ')})`);
    }
    // The product's own messages are there: the search reads the real bundles.
    assert.match(production.get('webview/inspector.js')!, /openWholeCheckpoint/);
    assert.match(production.get('extension.js')!, /openWholeCheckpoint/);
  });

  it('finds every test-only name in the build with the hooks on', () => {
    const all = [...withHooks.values()].join('\n');
    const missing = TEST_ONLY_NAMES.filter((name) => !all.includes(name));
    assert.deepEqual(missing, [], 'these names are not in the test build, so their absence from the production build proves nothing');
  });

  it('ships none of them in the production build', () => {
    const leaks = [...production].flatMap(([file, text]) => TEST_ONLY_NAMES.filter((name) => text.includes(name)).map((name) => `${file}: ${name}`));
    assert.deepEqual(leaks, []);
  });
});
