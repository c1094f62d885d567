// Runs the compiled unit and fuzz suites (out/test/{unit,fuzz}) under mocha, outside VS Code.
// Usage: node test/run-mocha.mjs [grep]
import Mocha from 'mocha';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function testFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return testFiles(path);
    return name.endsWith('.test.js') ? [path] : [];
  });
}

const mocha = new Mocha({
  reporter: join(root, 'test/mocha-reporter.cjs'),
  timeout: 120_000,
  grep: process.argv[2],
});
const files = [...testFiles(join(root, 'out/test/unit')), ...testFiles(join(root, 'out/test/fuzz'))].sort();
if (files.length === 0) {
  console.error('no compiled tests under out/test: run `node esbuild.mjs --tests` first');
  process.exit(1);
}
for (const file of files) mocha.addFile(file);
mocha.run((failures) => {
  process.exitCode = failures ? 1 : 0;
});
