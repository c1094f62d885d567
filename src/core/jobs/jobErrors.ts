/**
 * Failures a user's machine causes, named: a full disk, a folder without write permission, a read-only mount,
 * an output that appeared meanwhile, too many open files, too little memory, an input rewritten while the job
 * read it. The job turns such an error into a JobIoError whose message says what happened to which file and
 * what was left behind; anything else stays the error it was (a domain error with its own message, or a bug).
 */
import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import { SafetensorsError } from '../safetensors/errors';
import { displayPath } from './outputLock';

/** A job stopped because it was asked to (nothing is left behind). */
export class JobCancelled extends Error {
  constructor() {
    super('cancelled');
  }
}

/** Throws JobCancelled once `signal` is aborted: the check every job stage makes between units of work. */
export function checkCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new JobCancelled();
}

export type JobIoReason = 'no-space' | 'permission' | 'read-only' | 'output-exists' | 'missing-folder' | 'too-many-files' | 'out-of-memory' | 'input-changed';

export class JobIoError extends Error {
  override readonly name = 'JobIoError';
  constructor(
    readonly reason: JobIoReason,
    message: string,
    /** The errno code behind it (ENOSPC, EACCES, …), when there was one. */
    readonly code?: string,
    /** The file the operation was on. */
    readonly file?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Size, modification time and identity of an input file when the job opened it. */
export interface InputFileState {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
}

/** Records the inputs' state; `expectedSizes` are the sizes their headers were validated against. */
export async function snapshotInputs(paths: readonly string[], expectedSizes: ReadonlyMap<string, number> = new Map()): Promise<InputFileState[]> {
  const states: InputFileState[] = [];
  for (const path of new Set(paths)) {
    const stat = await fs.stat(path).catch(() => undefined);
    if (stat) states.push({ path, size: expectedSizes.get(path) ?? stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino });
  }
  return states;
}

/** How the inputs differ from the snapshot, one phrase per changed file (empty when none changed). */
export async function changedInputs(snapshot: readonly InputFileState[]): Promise<string[]> {
  const changes: string[] = [];
  for (const before of snapshot) {
    const now = await fs.stat(before.path).catch(() => undefined);
    if (!now) changes.push(`${before.path} was deleted`);
    else if (now.ino !== before.ino) changes.push(`${before.path} was replaced by another file`);
    else if (now.size !== before.size) changes.push(`${before.path} changed size from ${before.size} to ${now.size} bytes`);
    else if (now.mtimeMs !== before.mtimeMs) changes.push(`${before.path} was modified at ${new Date(now.mtimeMs).toISOString()}`);
  }
  return changes;
}

const CODES: Record<string, JobIoReason> = {
  ENOSPC: 'no-space',
  EDQUOT: 'no-space',
  EACCES: 'permission',
  EPERM: 'permission',
  EROFS: 'read-only',
  ENOTEMPTY: 'output-exists',
  EEXIST: 'output-exists',
  EMFILE: 'too-many-files',
  ENFILE: 'too-many-files',
  ENOMEM: 'out-of-memory',
};

/** The errno code and path behind an error, looking through SafetensorsError and `cause` chains. */
function errnoOf(error: unknown): { code?: string; path?: string; syscall?: string } {
  let file: string | undefined;
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof SafetensorsError) file ??= e.file;
    const errno = e as NodeJS.ErrnoException & { dest?: string };
    if (typeof errno.code === 'string' && errno.code in CODES) return { code: errno.code, path: errno.dest ?? errno.path ?? file, syscall: errno.syscall };
    if (e instanceof RangeError && /allocation failed/i.test(e.message)) return { code: 'ENOMEM', path: file };
  }
  return {};
}

export interface FailureContext {
  /** "quantize" or "calibrate". */
  readonly job: string;
  readonly out: string;
  readonly partialDir?: string;
  /** The partial output's removal: undefined when it was removed (or never made), else the error. */
  readonly removal?: NodeJS.ErrnoException;
  readonly partialMade: boolean;
  readonly inputs?: readonly InputFileState[];
}

/** "nothing was written under OUT; the partial output was removed" — or what is still there. */
export function leftBehind(ctx: FailureContext): string {
  const nothing = `nothing was written under ${ctx.out}`;
  if (!ctx.partialMade) return nothing;
  if (ctx.removal) return `${nothing}, but the partial output ${ctx.partialDir} could not be removed (${ctx.removal.code ?? ctx.removal.message}): delete it by hand`;
  return `${nothing}; the partial output was removed`;
}

function subject(reason: JobIoReason, code: string, shown: string | undefined, ctx: FailureContext, syscall: string | undefined): string {
  const job = `${ctx.job} ${ctx.out}`;
  const file = shown ?? ctx.out;
  switch (reason) {
    case 'no-space':
      return `${job} stopped: the disk is full (${code}) while writing ${file}; free space in ${dirname(ctx.out)} and run the job again`;
    case 'permission':
      return `${job} stopped: permission denied (${code}) ${syscall === 'open' || syscall === 'scandir' || syscall === 'read' ? 'reading or creating' : 'writing'} ${file}`;
    case 'read-only':
      return `${job} stopped: ${file} is on a read-only file system (${code}); choose an output on a writable disk`;
    case 'output-exists':
      return `${job} stopped: ${file} appeared while the job ran (${code}) and was left as it is (QuantLens never overwrites)`;
    case 'too-many-files':
      return `${job} stopped: too many open files (${code}) opening ${file}; raise the open-file limit (ulimit -n) or close other programs`;
    case 'missing-folder':
      return `${job} cannot start: the folder ${dirname(ctx.out)} does not exist`;
    case 'out-of-memory':
      return `${job} stopped: out of memory${shown ? ` while working on ${shown}` : ''}; close other programs, or use fewer calibration samples`;
    default:
      return `${job} stopped (${code}) at ${file}`;
  }
}

/**
 * The error a failed job reports, once its partial output is gone: an input that changed under the job wins
 * (it explains any read error that followed); errno failures become JobIoError; anything else is returned as is.
 */
export async function jobFailure(error: unknown, ctx: FailureContext): Promise<unknown> {
  const changes = ctx.inputs ? await changedInputs(ctx.inputs) : [];
  if (changes.length) {
    return new JobIoError('input-changed', `${ctx.job} ${ctx.out} stopped: the input changed while the job read it (${changes.join('; ')}); the output would mix old and new data, so ${leftBehind(ctx)}`, undefined, undefined, { cause: error });
  }
  if (error instanceof JobIoError) return error;
  const { code, path, syscall } = errnoOf(error);
  if (!code) return error;
  const reason = CODES[code]!;
  const shown = path ? displayPath(path, ctx.partialDir) + (ctx.partialDir && path.startsWith(ctx.partialDir) ? ` for ${ctx.out}` : '') : undefined;
  return new JobIoError(reason, `${subject(reason, code, shown, ctx, syscall)}: ${leftBehind(ctx)}`, code, path, { cause: error });
}
