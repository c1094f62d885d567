// `npm test`: type-check, lint, build, unit + fuzz tests, then the integration tests inside a real VS Code.
// Prints one closing line `N passed, N failed, N skipped` over all of them; exits non-zero if anything failed,
// including a stage that crashed before it could count its tests.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const resultsDir = join(root, 'out/test-results');
rmSync(resultsDir, { recursive: true, force: true });

let passed = 0;
let failed = 0;
let skipped = 0;
const problems = [];

function step(name, command, args, resultsFile) {
  console.log(`\n=== ${name} ===`);
  const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' };
  if (resultsFile) env.QUANTLENS_TEST_RESULTS = join(resultsDir, resultsFile);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  if (resultsFile) {
    const file = join(resultsDir, resultsFile);
    if (existsSync(file)) {
      const counts = JSON.parse(readFileSync(file, 'utf8'));
      passed += counts.passes;
      failed += counts.failures;
      skipped += counts.pending ?? 0;
      if (counts.pending > 0) problems.push(`${name}: ${counts.pending} skipped`);
      if (counts.failures > 0) problems.push(`${name}: ${counts.failures} failed`);
      return;
    }
  }
  if (result.status !== 0) {
    failed += 1;
    problems.push(`${name}: exited with ${result.status ?? result.signal}`);
  }
}

step('type check (tsc --noEmit)', process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', root]);
step('lint (eslint, no warnings)', process.execPath, [join(root, 'node_modules/eslint/bin/eslint.js'), '--max-warnings', '0', root]);
step('contributed commands are all registered', process.execPath, [join(root, 'scripts/check-contributions.mjs')]);
step('build (esbuild)', process.execPath, [join(root, 'esbuild.mjs'), '--tests']);
step('example checkpoint (examples/tiny-llama)', process.execPath, [join(root, 'out/scripts/make-example.js'), join(root, 'examples/tiny-llama')]);
// The host set-up first: it installs what the WebGPU unit tests need too (SwiftShader with chromium, libvulkan1).
step('test host set-up (scripts/setup-vscode-host.sh)', 'bash', [join(root, 'scripts/setup-vscode-host.sh')]);
step('unit and fuzz tests', process.execPath, [join(root, 'test/run-mocha.mjs')], 'unit.json');
step('integration tests in a real VS Code', process.execPath, [join(root, 'test/integration/run.mjs')], 'integration.json');

if (problems.length) console.log(`\nProblems:\n${problems.map((p) => `- ${p}`).join('\n')}`);
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
