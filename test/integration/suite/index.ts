// Mocha entry point inside the VS Code extension host (`extensionTestsPath`): runs every compiled
// `*.test.js` beside this file. The shared reporter ends the output with `N passed, N failed, N skipped` and
// writes the counts to $QUANTLENS_TEST_RESULTS for test/run-all.mjs. Resolving rejects -> VS Code exits with code 1.
import Mocha from 'mocha';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

export function run(): Promise<void> {
  // Compiled to out/test/integration/suite/index.js; the repository root is four levels up.
  const root = resolve(__dirname, '../../../..');
  const mocha = new Mocha({
    ui: 'bdd',
    timeout: 60_000,
    color: false,
    reporter: join(root, 'test/mocha-reporter.cjs'),
    // QUANTLENS_TEST_GREP=<pattern> runs only the matching tests (the launcher passes the environment through).
    ...(process.env.QUANTLENS_TEST_GREP ? { grep: process.env.QUANTLENS_TEST_GREP } : {}),
  });
  const files = readdirSync(__dirname)
    .filter((name) => name.endsWith('.test.js'))
    .sort();
  for (const file of files) mocha.addFile(join(__dirname, file));

  return new Promise((resolvePromise, reject) => {
    if (files.length === 0) {
      reject(new Error(`no *.test.js files in ${__dirname}: run \`node esbuild.mjs --tests\``));
      return;
    }
    try {
      mocha.run((failures) => {
        if (failures > 0) reject(new Error(`${failures} integration test(s) failed`));
        else resolvePromise();
      });
    } catch (err) {
      reject(err);
    }
  });
}
