// Runs the integration tests (out/test/integration/suite/*.test.js, built by `node esbuild.mjs --tests`)
// inside a real VS Code: @vscode/test-electron's runTests, with the VS Code server from code-server plus
// headless chromium standing in for the desktop app (test/integration/vscode-launcher). Downloads nothing.
//
//   node esbuild.mjs --tests && node test/integration/run.mjs [grep]
//
// `grep` (or $QUANTLENS_TEST_GREP) runs only the tests whose full title matches that regular expression, e.g.
// 'Checkpoint inspector on the shipped example|QuantLens in VS Code'.
// Environment: QUANTLENS_SKIP_HOST_SETUP=1 skips scripts/setup-vscode-host.sh (which is < 1 s when the host
// is installed already); QUANTLENS_TEST_RESULTS, QUANTLENS_TEST_TIMEOUT_S, QUANTLENS_SCREENSHOTS_OUT,
// QUANTLENS_TEST_VERBOSE and anything else in the environment reach the launcher and the extension host.
// Exit code: the tests' (0 all passed, 1 some failed), 124 on timeout, 1 when the host could not start.
import { runTests } from '@vscode/test-electron';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, chmodSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const launcher = join(here, 'vscode-launcher');
const testsEntry = join(root, 'out/test/integration/suite/index.js');
const fixture = join(root, 'test/fixtures/workspace');

function fail(message, code = 1) {
  console.error(`[integration] ${message}`);
  process.exit(code);
}

if (process.env.QUANTLENS_SKIP_HOST_SETUP !== '1') {
  const setup = spawnSync('bash', [join(root, 'scripts/setup-vscode-host.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (setup.status !== 0) fail(`scripts/setup-vscode-host.sh failed (${setup.status ?? setup.signal})`);
}
if (process.argv[2]) process.env.QUANTLENS_TEST_GREP = process.argv[2];
if (!existsSync(testsEntry)) fail(`${testsEntry} is missing: run \`node esbuild.mjs --tests\` first`);

// A checkout may have lost the executable bit (archives, some CI caches); test-electron spawns it directly.
if ((statSync(launcher).mode & 0o111) !== 0o111) chmodSync(launcher, 0o755);

// A fresh copy of the fixture workspace (tests write into it) plus a fresh VS Code profile, every run.
const tmp = mkdtempSync(join(tmpdir(), 'quantlens-it-'));
const workspace = join(tmp, 'workspace');
cpSync(fixture, workspace, { recursive: true });
function removeTemp() {
  try {
    rmSync(tmp, { recursive: true, force: true, maxRetries: 3 });
  } catch (err) {
    console.error(`[integration] could not remove ${tmp}: ${err?.message ?? err}`);
  }
}

// Ctrl+C: test-electron forwards SIGINT to the launcher, which closes VS Code; runTests then settles and the
// temp folder goes below. This listener only keeps Node from dying at once. SIGTERM takes the same way.
let running = false;
let terminated = false;
process.on('SIGINT', () => {
  if (!running) {
    removeTemp();
    process.exit(130);
  }
});
process.on('SIGTERM', () => {
  if (!running) {
    removeTemp();
    process.exit(143);
  }
  terminated = true;
  process.emit('SIGINT', 'SIGINT');
  // Should the launcher not react, leave anyway: it notices that its parent is gone and stops the host.
  setTimeout(() => process.exit(143), 30_000).unref();
});

let code = 0;
try {
  running = true;
  await runTests({
    vscodeExecutablePath: launcher,
    extensionDevelopmentPath: root,
    extensionTestsPath: testsEntry,
    launchArgs: [workspace, `--user-data-dir=${join(tmp, 'user-data')}`, `--extensions-dir=${join(tmp, 'extensions')}`],
    extensionTestsEnv: { QUANTLENS_INTEGRATION: '1' },
  });
} catch (err) {
  // TestRunFailedError carries the launcher's exit code (the tests' exit code, or 124 on timeout).
  code = typeof err?.code === 'number' && err.code !== 0 ? err.code : 1;
  if (typeof err?.code !== 'number') console.error(`[integration] ${err?.stack ?? err}`);
} finally {
  running = false;
  removeTemp();
}
if (terminated) code = 143;
process.exit(code);
