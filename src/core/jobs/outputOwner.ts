/**
 * Who is writing an output: the owner record a job leaves in its lock file and inside each partial output, and
 * whether that owner is still running.
 *
 * A pid alone is not an identity: after a crash and a reboot, or simply after enough processes, the same pid
 * names another program, and a job that trusted it would wait forever on a lock nobody holds (or worse, a
 * cleanup would spare a dead job's 35 GB). So a record also carries the host name, the boot id (Linux) and
 * the process's start time as the kernel reports it (Linux /proc/PID/stat field 22, in clock ticks since boot;
 * `ps -o lstart=` elsewhere). The owner is dead when its pid no longer runs, is a zombie, or runs with another
 * start time, or when the machine has rebooted since. A record from another host cannot be checked from here
 * and counts as alive: a shared network folder is never cleaned behind a job running elsewhere.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface OwnerRecord {
  readonly pid: number;
  readonly hostname: string;
  /** Linux boot id: a record from before a reboot names no running process. */
  readonly bootId?: string;
  /** The process's start time as the OS reports it; a recycled pid has another one. */
  readonly processStart?: string;
  /** What the owner is, in words a user recognises (the command line, or the editor's job title). */
  readonly command: string;
  /** What the file or folder is ("quantize output", "calibration statistics", …). */
  readonly purpose: string;
  /** The output it is for. */
  readonly out: string;
  /** When the record was written (ISO 8601). */
  readonly since: string;
  /** Tells this record from any other one by the same process. */
  readonly token: string;
}

let cachedBootId: string | null | undefined;

function bootId(): string | undefined {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId ?? undefined;
}

/** The start time and run state of a process, or undefined when it does not run (or cannot be read). */
function processInfo(pid: number): { start?: string; zombie: boolean } | undefined {
  if (process.platform === 'linux') {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return undefined;
    }
    // The command name (field 2) is in parentheses and may contain spaces or ')': split after the last one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { start: fields[19], zombie: fields[0] === 'Z' || fields[0] === 'X' };
  }
  if (process.platform === 'win32') return { zombie: false };
  try {
    const start = execFileSync('ps', ['-o', 'lstart=', '-p', String(pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
    return start ? { start, zombie: false } : undefined;
  } catch {
    return { zombie: false };
  }
}

let ownStart: string | undefined | null;

/** A record naming this process as the owner of `out`. */
export function ownerRecord(out: string, purpose: string, command: string, token: string): OwnerRecord {
  if (ownStart === undefined) ownStart = processInfo(process.pid)?.start ?? null;
  const boot = bootId();
  return {
    pid: process.pid,
    hostname: hostname(),
    ...(boot ? { bootId: boot } : {}),
    ...(ownStart ? { processStart: ownStart } : {}),
    command,
    purpose,
    out,
    since: new Date().toISOString(),
    token,
  };
}

/** Parses a record; undefined when the text is not one (truncated, foreign, hand-edited). */
export function parseOwnerRecord(text: string): OwnerRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Record<string, unknown>;
  const ok = Number.isSafeInteger(r.pid) && (r.pid as number) > 0 && typeof r.hostname === 'string' && typeof r.command === 'string' && typeof r.since === 'string' && typeof r.token === 'string';
  return ok ? (value as OwnerRecord) : undefined;
}

export type OwnerState = { readonly alive: true | false | 'unknown'; readonly why: string };

/** Whether the owner of a record still runs, with the reason in words. */
export function ownerState(record: OwnerRecord): OwnerState {
  if (record.hostname !== hostname()) return { alive: 'unknown', why: `it runs on host ${record.hostname}, which cannot be checked from here` };
  const boot = bootId();
  if (record.bootId && boot && record.bootId !== boot) return { alive: false, why: 'the machine has restarted since' };
  try {
    process.kill(record.pid, 0);
  } catch (error) {
    // EPERM: the pid exists but belongs to another user; go on to compare start times.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return { alive: false, why: `process ${record.pid} is no longer running` };
  }
  const info = processInfo(record.pid);
  if (!info) return { alive: false, why: `process ${record.pid} is no longer running` };
  if (info.zombie) return { alive: false, why: `process ${record.pid} has exited` };
  if (record.processStart && info.start && record.processStart !== info.start) return { alive: false, why: `process ${record.pid} is no longer running (the pid now belongs to another program)` };
  return { alive: true, why: `process ${record.pid} is running` };
}

/** True when the record names this very process. */
export function isOwnProcess(record: OwnerRecord): boolean {
  return record.pid === process.pid && record.hostname === hostname() && (!record.bootId || record.bootId === bootId());
}

function ago(since: string): string {
  const ms = Date.now() - Date.parse(since);
  if (!Number.isFinite(ms)) return '';
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? ` (${s} s ago)` : s < 7200 ? ` (${Math.round(s / 60)} min ago)` : ` (${(s / 3600).toFixed(1)} h ago)`;
}

/** "pid 4242 on host h (`quantlens quantize …`), since 2025-01-01T10:00:00.000Z (12 s ago)" */
export function describeOwner(record: OwnerRecord): string {
  const host = record.hostname === hostname() ? '' : ` on host ${record.hostname}`;
  return `pid ${record.pid}${host} (${record.command}), since ${record.since}${ago(record.since)}`;
}

/** This process's command line, shortened, for owner records of jobs started without a description. */
export function commandOfThisProcess(): string {
  const [node, script, ...args] = process.argv;
  const words = [script ? script.split(/[\\/]/).at(-1)! : (node ?? 'node'), ...args];
  const text = words.map((w) => (/[\s'"]/.test(w) ? JSON.stringify(w) : w)).join(' ');
  return text.length > 300 ? `${text.slice(0, 297)}…` : text;
}
