// The repository stands on its own: every `docs/<name>.md §N` citation in a tracked file names a document
// and a numbered heading that exist, Markdown links lead to files inside the repository, and no tracked file
// points at a machine path outside it (a sibling `shared` folder, a home directory, a build machine's tree).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { repoRoot } from '../helpers/paths';

interface SourceFile {
  /** Path relative to the repository root, with forward slashes. */
  readonly path: string;
  readonly text: string;
}

/** Section numbers: `3`, `3.5`, `10.1`. */
const SECTION = String.raw`\d+(?:\.\d+)*`;
/**
 * `docs/<name>.md`, then optionally `§A`, continued by ranges (`–B`, `–§B`) and lists (`, §C`, `/ §D`,
 * `and §E`, `or §F`; a list item needs its own §, so `§3.5, 128 columns` cites only 3.5). A `docs/` that
 * continues a longer path or a URL (`git-lfs/blob/main/docs/spec.md`) is another project's file, not ours.
 */
const CITATION = new RegExp(
  String.raw`(?<![\w./:-])docs/([A-Za-z0-9_./-]+?\.md)((?:\s*§\s*${SECTION}(?:\s*[–-]\s*§?\s*${SECTION}|\s*(?:,|/|and|or)\s*§\s*${SECTION})*)?)`,
  'g',
);
/** Machine paths outside the repository. */
const OUTSIDE: readonly RegExp[] = [/\.\.[\\/]shared\b/, /\/work\//, /\/root\//, /\/home\//, /\/[a-z]+\/shared\//];
/** Markdown links and images: `[text](target)`. */
const MARKDOWN_LINK = /!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g;

/** The numbered headings of a Markdown document (`## 3. …`, `### 3.5 …`), outside fenced code blocks. */
function numberedHeadings(markdown: string): Set<string> {
  const sections = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const m = new RegExp(String.raw`^#{1,6}\s+(${SECTION})\.?\s`).exec(line);
    if (m) sections.add(m[1]!);
  }
  return sections;
}

/**
 * Every problem of `files`, one line each (`path:line: what`). `docText(name)` returns the text of
 * docs/<name>, or undefined when there is no such file; `fileExists(path)` answers for Markdown link targets.
 */
function citationProblems(
  files: readonly SourceFile[],
  docText: (name: string) => string | undefined,
  fileExists: (repoPath: string) => boolean,
): string[] {
  const problems: string[] = [];
  const headings = new Map<string, Set<string> | undefined>();
  const sectionsOf = (name: string) => {
    if (!headings.has(name)) {
      const text = docText(name);
      headings.set(name, text === undefined ? undefined : numberedHeadings(text));
    }
    return headings.get(name);
  };
  for (const file of files) {
    const lineAt = (index: number) => file.text.slice(0, index).split('\n').length;
    for (const m of file.text.matchAll(CITATION)) {
      const where = `${file.path}:${lineAt(m.index)}`;
      const name = m[1]!;
      const sections = sectionsOf(name);
      if (!sections) {
        problems.push(`${where}: cites docs/${name}, which does not exist`);
        continue;
      }
      for (const s of (m[2] ?? '').match(new RegExp(SECTION, 'g')) ?? []) {
        if (!sections.has(s)) problems.push(`${where}: cites docs/${name} §${s}, which has no heading numbered ${s}`);
      }
    }
    file.text.split('\n').forEach((line, i) => {
      for (const pattern of OUTSIDE) {
        const hit = pattern.exec(line);
        if (hit) problems.push(`${file.path}:${i + 1}: points outside the repository (${hit[0]}): ${line.trim()}`);
      }
    });
    if (!file.path.endsWith('.md')) continue;
    for (const m of file.text.matchAll(MARKDOWN_LINK)) {
      const target = m[1]!.split('#')[0]!;
      if (!target || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // in-page anchors, https:, mailto:
      const where = `${file.path}:${lineAt(m.index)}`;
      if (target.startsWith('/')) {
        problems.push(`${where}: links to the absolute path ${target}`);
        continue;
      }
      const joined = join(dirname(file.path), decodeURIComponent(target)).split(sep).join('/');
      if (joined.startsWith('../') || joined === '..') problems.push(`${where}: links to ${target}, outside the repository`);
      else if (!fileExists(joined)) problems.push(`${where}: links to ${target}, which does not exist`);
    }
  }
  return problems;
}

/** Tracked files (git ls-files), or every file outside build and dependency folders where git is absent. */
function trackedFiles(root: string): string[] {
  try {
    return execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 })
      .split('\0')
      .filter(Boolean);
  } catch {
    const skip = new Set(['.git', 'node_modules', 'dist', 'out', '.vscode-test']);
    const walk = (dir: string): string[] =>
      readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
        const path = dir ? `${dir}/${e.name}` : e.name;
        if (e.isDirectory()) return skip.has(e.name) ? [] : walk(path);
        return e.isFile() ? [path] : [];
      });
    return walk('');
  }
}

/** The text files among them (no NUL byte, under 4 MiB), except the lock file's registry addresses. */
function textFiles(root: string): SourceFile[] {
  return trackedFiles(root)
    .filter((path) => path !== 'package-lock.json' && existsSync(join(root, path)) && statSync(join(root, path)).size < 4 << 20)
    .map((path) => ({ path, bytes: readFileSync(join(root, path)) }))
    .filter(({ bytes }) => !bytes.includes(0))
    .map(({ path, bytes }) => ({ path, text: bytes.toString('utf8') }));
}

describe('docs citations: the repository stands on its own', () => {
  const root = repoRoot();
  const docText = (name: string) => {
    const path = resolve(root, 'docs', name);
    return path.startsWith(resolve(root, 'docs') + sep) && existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  };
  const fileExists = (repoPath: string) => existsSync(join(root, repoPath));

  it('finds each kind of broken reference in a made-up file set', () => {
    // Built by concatenation so that this file's own text holds none of the references it makes up.
    const doc = 'docs/' + 'guide.md';
    const none = 'docs/' + 'none.md';
    const files: SourceFile[] = [
      { path: 'src/a.ts', text: `// fine: ${doc} §2, ${doc} §1.1–§1.2 and §2; also ${doc} §1.1, 128 columns\n` },
      { path: 'src/u.ts', text: `// another project's: https://example.org/x/blob/main/${none} and other/${none}\n` },
      { path: 'src/b.ts', text: `//\n// wrong: ${doc} §3 and ${doc} §1.1–1.4, ${'docs/' + 'missing.md'} §1\n` },
      { path: 'test/c.ts', text: `const p = '${'..' + '/shared/reference'}'; const q = '${'/wo' + 'rk/x'}';\n` },
      { path: 'README.md', text: `[ok](${doc}#x) [gone](${none}) [out](${'..' + '/elsewhere.md'}) [web](https://example.org/a)\n` },
    ];
    const docs: Record<string, string> = { 'guide.md': '# Guide\n## 1. One\n### 1.1 A\n### 1.2 B\n## 2. Two\n```\n## 3. in a code block\n```\n' };
    const problems = citationProblems(files, (name) => docs[name], (path) => path === doc);
    assert.deepEqual(problems, [
      `src/b.ts:2: cites ${doc} §3, which has no heading numbered 3`,
      `src/b.ts:2: cites ${doc} §1.4, which has no heading numbered 1.4`,
      `src/b.ts:2: cites ${'docs/' + 'missing.md'}, which does not exist`,
      `test/c.ts:1: points outside the repository (${'..' + '/shared'}): const p = '${'..' + '/shared/reference'}'; const q = '${'/wo' + 'rk/x'}';`,
      `test/c.ts:1: points outside the repository (${'/wo' + 'rk/'}): const p = '${'..' + '/shared/reference'}'; const q = '${'/wo' + 'rk/x'}';`,
      `README.md:1: cites ${none}, which does not exist`,
      `README.md:1: links to ${none}, which does not exist`,
      `README.md:1: links to ${'..' + '/elsewhere.md'}, outside the repository`,
    ]);
  });

  it('every docs/<file>.md §N citation, Markdown link and path in a tracked file resolves inside the repository', () => {
    const files = textFiles(root);
    assert.ok(files.length > 100, `read ${files.length} tracked text files`);
    const cited = files.reduce((n, f) => n + [...f.text.matchAll(CITATION)].length, 0);
    assert.ok(cited >= 40, `found ${cited} docs citations (the formats and runtime citations of src/ and test/)`);
    assert.deepEqual(citationProblems(files, docText, fileExists), []);
  });

  it('docs/formats.md and docs/runtime.md number their sections as the code cites them', () => {
    for (const [name, expected] of [
      ['formats.md', ['1.2', '1.6', '2', '3.5', '3.11', '4', '5.7', '6', '7.1', '9', '10.1']],
      ['runtime.md', ['2', '6']],
    ] as const) {
      const sections = numberedHeadings(docText(name) ?? '');
      for (const s of expected) assert.ok(sections.has(s), `docs/${name} has a heading numbered ${s}`);
    }
  });
});
