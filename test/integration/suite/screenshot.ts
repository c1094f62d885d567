// Screenshots of the real workbench, taken from inside a test. Works only under test/integration/launcher.mjs,
// which watches $QUANTLENS_SCREENSHOT_DIR: a test writes `<name>.request`; the launcher saves the page as
// `<name>.png` into $QUANTLENS_SCREENSHOTS_OUT (default out/screenshots) and answers with `<name>.done`
// (containing the png's path) or `<name>.failed` (containing the error).
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const TIMEOUT_MS = 20_000;
const POLL_MS = 100;

/**
 * Saves a screenshot of the whole workbench as `<name>.png` and returns its path; `undefined` at once when
 * not running under the QuantLens launcher (e.g. in a desktop VS Code). `name`: letters, digits, `.`, `_`, `-`.
 */
export async function takeScreenshot(name: string): Promise<string | undefined> {
  const dir = process.env.QUANTLENS_SCREENSHOT_DIR;
  if (!dir || process.env.QUANTLENS_UNDER_LAUNCHER !== '1') return undefined;
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) throw new Error(`invalid screenshot name ${JSON.stringify(name)}`);

  const done = join(dir, `${name}.done`);
  const failed = join(dir, `${name}.failed`);
  rmSync(done, { force: true });
  rmSync(failed, { force: true });
  writeFileSync(join(dir, `${name}.request`), new Date().toISOString());

  const deadline = Date.now() + TIMEOUT_MS;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    if (existsSync(done)) {
      const png = readFileSync(done, 'utf8').trim();
      rmSync(done, { force: true });
      return png;
    }
    if (existsSync(failed)) {
      const message = readFileSync(failed, 'utf8');
      rmSync(failed, { force: true });
      throw new Error(`screenshot ${name} failed: ${message}`);
    }
  }
  rmSync(join(dir, `${name}.request`), { force: true });
  throw new Error(`screenshot ${name}: no answer from the launcher within ${TIMEOUT_MS / 1000} s`);
}
