import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

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

/** The reference test vectors, copied into the repository's fixtures (see their ATTRIBUTION.md). */
export function vectorsDir(...parts: string[]): string {
  return join(repoRoot(), 'test', 'fixtures', 'reference-vectors', ...parts);
}

/** A fresh temporary folder, removed by the returned cleanup. */
export function tempDir(prefix = 'quantlens-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}
