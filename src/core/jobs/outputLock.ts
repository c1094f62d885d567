/**
 * One output, one job; nothing left behind by a job that died.
 *
 *   .NAME.lock                      beside the output NAME, created atomically (a complete record written under a
 *                                   temporary name, then hard-linked to the lock name, which fails if it exists),
 *                                   holding the owner record (outputOwner.ts) as JSON. Taken before any other
 *                                   work and released on success, failure and cancel.
 *   .NAME.<hex>.partial/            the output being built, with the owner record inside (OWNER_FILE); renamed to
 *                                   NAME when complete (a file output is linked out of it, never over another).
 *   .NAME.<hex>.calibration.partial/  statistics computed for NAME's quantize job, same rules.
 *
 * A lock or partial output whose owner is dead is stale: the next job for NAME (or a cleanup after its job
 * process exited) removes it and logs what it removed. A live owner's files are never touched.
 */
import { promises as fs } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { OwnerRecord, OwnerState, describeOwner, isOwnProcess, ownerRecord, ownerState, parseOwnerRecord } from './outputOwner';

/** The owner record inside a partial output folder. */
export const OWNER_FILE = '.quantlens-owner.json';

/**
 * How long a partial output without a readable owner record is left alone after its last change. New partial
 * folders lack the record only for the moment between mkdir and writing it (and between removing it and the
 * final rename), but folders made by QuantLens versions before owner records have none at all, and such a job
 * may still be running: a GPTQ layer of a 70B model or a calibration block can take minutes between writes. An
 * hour without any change to the folder or the files in it means nobody is writing there; the price of waiting
 * is disk space for an hour, the price of guessing wrong would be a live job's output.
 */
export const UNOWNED_PARTIAL_GRACE_MS = 60 * 60 * 1000;
/** A lock is always written complete (link of a finished file); an unreadable one is only in the fallback's window. */
export const UNREADABLE_LOCK_GRACE_MS = 30 * 1000;

export function lockPathOf(out: string): string {
  const target = resolve(out);
  return join(dirname(target), `.${basename(target)}.lock`);
}

/** The second job for an output: refused at once, naming the job that holds it. */
export class OutputBusyError extends Error {
  override readonly name = 'OutputBusyError';
  constructor(
    readonly out: string,
    readonly lockPath: string,
    readonly holder: OwnerRecord | undefined,
    readonly state: OwnerState,
  ) {
    super(
      holder
        ? `${out} is already being written by another QuantLens job: ${describeOwner(holder)}; wait for it to finish or choose another output${state.alive === 'unknown' ? ` (${state.why}; if that job is no longer running, delete ${lockPath})` : ''}`
        : `${out} is locked by ${lockPath}, written moments ago by a job that has not finished writing it; try again in a few seconds`,
    );
  }
}

interface LockFile {
  readonly record?: OwnerRecord;
  readonly ino: number;
  readonly mtimeMs: number;
}

async function readLockFile(path: string): Promise<LockFile | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const stat = await handle.stat();
    const record = parseOwnerRecord(await handle.readFile('utf8'));
    return { ...(record ? { record } : {}), ino: stat.ino, mtimeMs: stat.mtimeMs };
  } finally {
    await handle.close();
  }
}

function lockState(lock: LockFile): OwnerState {
  if (lock.record) return ownerState(lock.record);
  return Date.now() - lock.mtimeMs < UNREADABLE_LOCK_GRACE_MS ? { alive: 'unknown', why: 'its record is still being written' } : { alive: false, why: 'it holds no readable owner record' };
}

/** Creates `path` holding `text`, complete or not at all: false when it exists. */
async function createComplete(path: string, text: string): Promise<boolean> {
  const temp = `${path}.${randomBytes(8).toString('hex')}.tmp`;
  await fs.writeFile(temp, text, { flag: 'wx' });
  try {
    await fs.link(temp, path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw error;
    // No hard links on this file system: an exclusive create, whose short unwritten window the grace covers.
    try {
      await fs.writeFile(path, text, { flag: 'wx' });
      return true;
    } catch (createError) {
      if ((createError as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw createError;
    }
  } finally {
    await fs.rm(temp, { force: true });
  }
}

/**
 * Removes a stale lock without ever removing a fresh one. Only the holder of `.NAME.lock.break` may remove a
 * lock, and only after reading it again and finding the very file it judged stale (same inode): two jobs that
 * find the same stale lock cannot both remove it, and neither removes the lock the other then took. The break
 * file is held for the time of one stat and one unlink; one left by a process killed in that moment is itself
 * stale and is moved aside and removed (only if it is still the file judged, same inode).
 */
async function breakStaleLock(path: string, judged: LockFile, command: string): Promise<'removed' | 'gone' | 'busy'> {
  const breaker = `${path}.break`;
  if (!(await createComplete(breaker, `${JSON.stringify(ownerRecord(path, 'lock breaker', command, randomBytes(8).toString('hex')))}\n`))) {
    const other = await readLockFile(breaker);
    if (other && lockState(other).alive === false) {
      const aside = `${breaker}.${randomBytes(4).toString('hex')}.stale`;
      if (await fs.rename(breaker, aside).then(() => true, () => false)) {
        if ((await fs.stat(aside)).ino !== other.ino) await fs.link(aside, breaker).catch(() => undefined);
        await fs.rm(aside, { force: true });
      }
    }
    return 'busy';
  }
  try {
    const now = await readLockFile(path);
    if (!now || now.ino !== judged.ino) return 'gone';
    await fs.rm(path);
    return 'removed';
  } finally {
    await fs.rm(breaker, { force: true });
  }
}

export class OutputLock {
  private released = false;
  constructor(
    readonly out: string,
    readonly path: string,
    readonly record: OwnerRecord,
  ) {}

  /** True while the lock file is still this job's (a job checks before it publishes its output). */
  async held(): Promise<boolean> {
    if (this.released) return false;
    const lock = await readLockFile(this.path).catch(() => undefined);
    return lock?.record?.token === this.record.token;
  }

  async release(): Promise<void> {
    if (this.released) return;
    if (await this.held()) await fs.rm(this.path, { force: true }).catch(() => undefined);
    this.released = true;
  }
}

/**
 * Takes the lock on `out` for this process, taking over a stale one (logged). Throws OutputBusyError when a live
 * job holds it, and the file system's error (ENOENT for a missing folder, EROFS, EACCES, ENOSPC) when the lock
 * cannot be created.
 */
export async function acquireOutputLock(out: string, command: string, log: (line: string) => void = () => undefined): Promise<OutputLock> {
  const target = resolve(out);
  const path = lockPathOf(target);
  for (let attempt = 0; attempt < 20; attempt++) {
    const record = ownerRecord(target, 'output lock', command, randomBytes(8).toString('hex'));
    if (await createComplete(path, `${JSON.stringify(record, null, 2)}\n`)) return new OutputLock(target, path, record);
    const existing = await readLockFile(path);
    if (!existing) continue;
    if (existing.record && isOwnProcess(existing.record)) throw new OutputBusyError(target, path, existing.record, { alive: true, why: 'this process holds it' });
    const state = lockState(existing);
    if (state.alive !== false) throw new OutputBusyError(target, path, existing.record, state);
    const broken = await breakStaleLock(path, existing, command);
    if (broken === 'removed') log(`removed the stale lock ${path}${existing.record ? ` of ${describeOwner(existing.record)}` : ''}: ${state.why}`);
    // Another job is removing it at this moment: look again shortly.
    else if (broken === 'busy') await new Promise((r) => setTimeout(r, 10 + Math.random() * 20));
  }
  const existing = await readLockFile(path);
  throw new OutputBusyError(target, path, existing?.record, existing ? lockState(existing) : { alive: 'unknown', why: 'other jobs keep taking it' });
}

/** The live job (not this process) that holds `out`'s lock, if any: for pre-flight checks and output pickers. */
export async function outputHolder(out: string): Promise<OwnerRecord | undefined> {
  const lock = await readLockFile(lockPathOf(out)).catch(() => undefined);
  if (!lock?.record || isOwnProcess(lock.record)) return undefined;
  return lockState(lock).alive === false ? undefined : lock.record;
}

/** A partial output folder beside `out`, with this process's owner record inside. */
export class PartialOutput {
  private constructor(
    readonly out: string,
    readonly dir: string,
  ) {}

  static async create(out: string, purpose: string, command: string, suffix = 'partial'): Promise<PartialOutput> {
    const target = resolve(out);
    const token = randomBytes(4).toString('hex');
    const dir = join(dirname(target), `.${basename(target)}.${token}.${suffix}`);
    await fs.mkdir(dir);
    const partial = new PartialOutput(target, dir);
    try {
      await fs.writeFile(join(dir, OWNER_FILE), `${JSON.stringify(ownerRecord(target, purpose, command, token), null, 2)}\n`, { flag: 'wx' });
    } catch (error) {
      await partial.discard();
      throw error;
    }
    return partial;
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** Publishes the folder as `out` (refusing to replace anything there). */
  async commitFolder(): Promise<void> {
    await fs.rm(this.path(OWNER_FILE));
    const existing = await fs.lstat(this.out).then(
      () => true,
      () => false,
    );
    if (existing) throw Object.assign(new Error(`ENOTEMPTY: ${this.out} appeared while the job ran`), { code: 'ENOTEMPTY', path: this.out });
    await fs.rename(this.dir, this.out);
  }

  /** Publishes the file `name` inside the folder as `out` (a link: fails rather than replace), then removes the folder. */
  async commitFile(name: string): Promise<void> {
    try {
      await fs.link(this.path(name), this.out);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw error;
      if (await fs.lstat(this.out).then(() => true, () => false)) throw Object.assign(new Error(`EEXIST: ${this.out} appeared while the job ran`), { code: 'EEXIST', path: this.out });
      await fs.rename(this.path(name), this.out);
    }
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  /** Removes the folder; the error when it could not be removed. */
  async discard(): Promise<NodeJS.ErrnoException | undefined> {
    try {
      await fs.rm(this.dir, { recursive: true, force: true });
      return undefined;
    } catch (error) {
      return error as NodeJS.ErrnoException;
    }
  }
}

export interface StaleEntry {
  readonly path: string;
  readonly bytes: number;
  readonly owner?: OwnerRecord;
  readonly why: string;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Bytes of a file or folder (recursively) and its newest modification time. */
async function sizeAndNewest(path: string): Promise<{ bytes: number; newest: number }> {
  const stat = await fs.lstat(path);
  let bytes = stat.isDirectory() ? 0 : stat.size;
  let newest = stat.mtimeMs;
  if (stat.isDirectory()) {
    for (const name of await fs.readdir(path)) {
      const inner = await sizeAndNewest(join(path, name)).catch(() => ({ bytes: 0, newest: 0 }));
      bytes += inner.bytes;
      newest = Math.max(newest, inner.newest);
    }
  }
  return { bytes, newest };
}

function formatSize(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${bytes} bytes`;
}

/**
 * Removes what dead jobs left for `out`: partial outputs and temporary statistics whose owner is gone (or, without
 * an owner record, unchanged for UNOWNED_PARTIAL_GRACE_MS), and a stale lock. Live owners' files are kept. Each
 * removal is logged with its size and owner.
 */
export async function removeStaleOutputs(out: string, log: (line: string) => void = () => undefined): Promise<{ removed: StaleEntry[]; kept: StaleEntry[] }> {
  const target = resolve(out);
  const dir = dirname(target);
  const name = escapeRegExp(basename(target));
  // Partial folders (and the safetensors writer's or older versions' partial files and statistics temporaries).
  const partial = new RegExp(`^\\.${name}\\.[0-9a-f]{8,12}(\\.calibration)?\\.(partial|safetensors)$`);
  const lockLeftover = new RegExp(`^\\.${name}\\.lock\\.(break|([0-9a-f]+\\.(stale|tmp))|break\\.[0-9a-f]+\\.(stale|tmp))$`);
  const removed: StaleEntry[] = [];
  const kept: StaleEntry[] = [];
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const entry of names) {
    const path = join(dir, entry);
    const isPartial = partial.test(entry) && (entry.endsWith('.partial') || entry.endsWith('.calibration.safetensors'));
    const isLockLeftover = lockLeftover.test(entry);
    if (!isPartial && !isLockLeftover) continue;
    const stat = await fs.lstat(path).catch(() => undefined);
    if (!stat) continue;
    const recordText = isLockLeftover ? await fs.readFile(path, 'utf8').catch(() => '') : stat.isDirectory() ? await fs.readFile(join(path, OWNER_FILE), 'utf8').catch(() => '') : '';
    const owner = parseOwnerRecord(recordText);
    const { bytes, newest } = await sizeAndNewest(path).catch(() => ({ bytes: 0, newest: Date.now() }));
    let dead: boolean;
    let why: string;
    if (owner) {
      const state = ownerState(owner);
      dead = state.alive === false && !isOwnProcess(owner);
      why = state.why;
    } else {
      const grace = isLockLeftover ? UNREADABLE_LOCK_GRACE_MS : UNOWNED_PARTIAL_GRACE_MS;
      const idle = Date.now() - newest;
      dead = idle >= grace;
      why = dead ? `it has no owner record and nothing in it changed for ${Math.round(idle / 60000)} min` : `it has no owner record and changed ${Math.round(idle / 1000)} s ago (kept for ${Math.round(grace / 60000) || 1} min in case an older QuantLens is writing it)`;
    }
    const item: StaleEntry = { path, bytes, ...(owner ? { owner } : {}), why };
    if (!dead) {
      kept.push(item);
      log(`left ${path} alone: ${owner ? `it belongs to ${describeOwner(owner)}, and ` : ''}${why}`);
      continue;
    }
    await fs.rm(path, { recursive: true, force: true });
    removed.push(item);
    log(`removed ${path} (${formatSize(bytes)}) left by ${owner ? describeOwner(owner) : 'an unknown job'}: ${why}`);
  }
  const lockPath = lockPathOf(target);
  const lock = await readLockFile(lockPath).catch(() => undefined);
  if (lock && !(lock.record && isOwnProcess(lock.record))) {
    const state = lockState(lock);
    if (state.alive === false && (await breakStaleLock(lockPath, lock, 'stale output cleanup')) === 'removed') {
      removed.push({ path: lockPath, bytes: 0, ...(lock.record ? { owner: lock.record } : {}), why: state.why });
      log(`removed the stale lock ${lockPath}${lock.record ? ` of ${describeOwner(lock.record)}` : ''}: ${state.why}`);
    }
  }
  return { removed, kept };
}

/** `path` shown relative to the partial folder it is in ("model-00001-of-00002.safetensors"), else as is. */
export function displayPath(path: string, partialDir: string | undefined): string {
  if (partialDir && resolve(path).startsWith(`${resolve(partialDir)}${sep}`)) return relative(partialDir, path);
  return path;
}
