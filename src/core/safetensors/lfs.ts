/**
 * Git LFS pointer files. A repository cloned without `git lfs` (or with GIT_LFS_SKIP_SMUDGE=1) holds, in
 * place of each large file, a ~130-byte text file naming the object's hash and size. Read as safetensors,
 * its first 8 bytes ("version ") decode to a header length of 2336927755350992246, and the reference
 * reader's answer — the header is too large — sends users looking in the wrong place; the pointer says
 * exactly what happened, so we recognise it and say that instead.
 *
 * Format (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md): UTF-8 lines `key value\n`, keys
 * sorted, the first line `version https://git-lfs.github.com/spec/v1` (older clients wrote
 * `https://hawser.github.com/spec/v1`), then at least `oid sha256:<64 hex>` and `size <bytes>`; the whole
 * file is under 1024 bytes.
 */
import { SafetensorsError } from './errors';

/** Pointer files are smaller than this (the spec's bound). */
export const MAX_LFS_POINTER_BYTES = 1024;

/** The bytes every pointer file starts with ("version "), which is also all a length prefix sees. */
const POINTER_START = 'version ';
const VERSIONS = ['https://git-lfs.github.com/spec/v1', 'https://hawser.github.com/spec/v1'];

export interface GitLfsPointer {
  /** The object's hash, as written after `oid ` (e.g. `sha256:4d7a…`). */
  readonly oid: string;
  /** Size in bytes of the object the pointer stands for: the real file's size. */
  readonly size: number;
}

/** True when `prefix` (the first bytes of a file) could start a pointer file. */
export function mayBeGitLfsPointer(prefix: Uint8Array): boolean {
  if (prefix.length < POINTER_START.length) return false;
  for (let i = 0; i < POINTER_START.length; i++) if (prefix[i] !== POINTER_START.charCodeAt(i)) return false;
  return true;
}

/** Parses a whole (small) file as a Git LFS pointer; undefined when it is not one. */
export function parseGitLfsPointer(bytes: Uint8Array): GitLfsPointer | undefined {
  if (bytes.length >= MAX_LFS_POINTER_BYTES || !mayBeGitLfsPointer(bytes)) return undefined;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const space = line.indexOf(' ');
    if (space <= 0) return undefined;
    fields.set(line.slice(0, space), line.slice(space + 1).replace(/\r$/, ''));
  }
  const version = fields.get('version');
  const oid = fields.get('oid');
  const size = fields.get('size');
  if (version === undefined || !VERSIONS.includes(version)) return undefined;
  if (oid === undefined || !/^sha256:[0-9a-f]{64}$/.test(oid)) return undefined;
  if (size === undefined || !/^\d+$/.test(size) || !Number.isSafeInteger(Number(size))) return undefined;
  return { oid, size: Number(size) };
}

/** What a user reads about one pointer file: what it is, how large the real file is, and what to run. */
export function describeGitLfsPointer(pointer: GitLfsPointer): string {
  return `this is a Git LFS pointer file, not the weights: it stands for an object of ${pointer.size.toLocaleString('en-US')} bytes (${pointer.oid.slice(0, 19)}…) that was not downloaded; run \`git lfs pull\` in the repository to fetch it`;
}

/** A .safetensors file that is a Git LFS pointer (code 'GitLfsPointer'): says so, with the object's size. */
export class GitLfsPointerError extends SafetensorsError {
  constructor(file: string, readonly pointer: GitLfsPointer) {
    super('GitLfsPointer', file, describeGitLfsPointer(pointer));
  }
}
