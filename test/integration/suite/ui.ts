// The workbench as a user operates it: keys typed into whatever has the focus (a quick pick, an input box)
// and what the page shows, through test/integration/launcher.mjs (protocol described there). Works only
// under that launcher; `uiAvailable()` says whether it is there.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type UiStep = { type: string } | { press: string } | { query: string } | { click: string };
export interface ShownElement {
  readonly text: string;
  readonly ariaLabel: string | null;
  readonly title: string | null;
  /** An input's value (null for other elements). */
  readonly value: string | null;
}

const TIMEOUT_MS = 20_000;
let counter = 0;

export function uiAvailable(): boolean {
  return Boolean(process.env.QUANTLENS_SCREENSHOT_DIR) && process.env.QUANTLENS_UNDER_LAUNCHER === '1';
}

/** Runs the steps in the page, in order; one result per step (a query's elements, else null). */
export async function ui(...steps: UiStep[]): Promise<(ShownElement[] | null)[]> {
  const dir = process.env.QUANTLENS_SCREENSHOT_DIR;
  if (!dir || !uiAvailable()) throw new Error('keyboard and page access need test/integration/launcher.mjs');
  const name = `ui-${process.pid}-${++counter}`;
  const done = join(dir, `${name}.ui-done`);
  const failed = join(dir, `${name}.ui-failed`);
  writeFileSync(join(dir, `${name}.ui.tmp`), JSON.stringify({ steps }));
  // Written whole before the launcher sees it: it only picks up names ending in .ui.
  renameSync(join(dir, `${name}.ui.tmp`), join(dir, `${name}.ui`));
  const deadline = Date.now() + TIMEOUT_MS;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    if (existsSync(done)) {
      const results = JSON.parse(readFileSync(done, 'utf8')) as (ShownElement[] | null)[];
      rmSync(done, { force: true });
      return results;
    }
    if (existsSync(failed)) {
      const message = readFileSync(failed, 'utf8');
      rmSync(failed, { force: true });
      throw new Error(`ui ${JSON.stringify(steps)} failed: ${message}`);
    }
  }
  throw new Error(`ui ${JSON.stringify(steps)}: no answer from the launcher within ${TIMEOUT_MS / 1000} s`);
}

/** What the page shows for `css` (text, aria-label and title of each match). */
export async function shown(css: string): Promise<ShownElement[]> {
  return (await ui({ query: css }))[0] ?? [];
}
