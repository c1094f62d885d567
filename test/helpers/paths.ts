import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** The repository root (the folder with package.json), found from a compiled test's location. */
export function repoRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'esbuild.mjs'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the repository root above ${__dirname}`);
    dir = parent;
  }
  return dir;
}

/** ../shared (reference vectors, data) beside the repository. */
export function sharedDir(): string {
  const candidates = [resolve(repoRoot(), '../shared'), resolve(repoRoot(), 'shared')];
  const found = candidates.find((c) => existsSync(join(c, 'reference')));
  if (!found) throw new Error(`cannot find shared/reference beside ${repoRoot()}`);
  return found;
}

/** The reference test vectors, copied into the repository's fixtures (see their ATTRIBUTION.md). */
export function vectorsDir(...parts: string[]): string {
  return join(repoRoot(), 'test', 'fixtures', 'reference-vectors', ...parts);
}

/** A fresh temporary folder, removed by the returned cleanup. */
export function tempDir(prefix = 'quantlens-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}
