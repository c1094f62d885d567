/**
 * Errors users can cause are named, and nothing is left behind: a disk that fills up mid-job (a real tmpfs too
 * small for what the job writes), a read-only output folder, permission denied, an output that appears while
 * the job runs, too many open files, an allocation that fails, an input rewritten under a running job — each
 * from a real file-system operation where one can be provoked here, mapped to a JobIoError whose message names
 * the file and says what was left. Owner identities (recycled pids, other hosts, reboots) and the stale lock
 * takeover are checked with real processes and files too.
 *
 * Mounts need root (or a user namespace: `unshare --user --map-root-user --mount`); where neither works the
 * tests that need one are skipped with the reason printed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { preflight } from '../../src/core/jobs/preflight';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { JobIoError, jobFailure } from '../../src/core/jobs/jobErrors';
import { OutputBusyError, PartialOutput, acquireOutputLock, lockPathOf } from '../../src/core/jobs/outputLock';
import { ownerRecord, ownerState } from '../../src/core/jobs/outputOwner';
import { SafetensorsWriter } from '../../src/core/safetensors/writer';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');
const isRoot = process.getuid?.() === 0;

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'quantlens.js'), ...args], { encoding: 'utf8', timeout: 240_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Mounts a tmpfs (as root); the reason it cannot be done otherwise. */
function mountTmpfs(dir: string, options: string): string | undefined {
  if (!isRoot) return 'not root';
  mkdirSync(dir, { recursive: true });
  const result = spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { encoding: 'utf8' });
  return result.status === 0 ? undefined : `mount -t tmpfs failed: ${result.stderr.trim() || result.error?.message}`;
}

function unmount(dir: string): void {
  spawnSync('umount', [dir]);
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('jobs: errors users can cause are named, and nothing is left behind', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  const mounts: string[] = [];
  before(() => {
    if (!existsSync(join(repoRoot(), 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing (node esbuild.mjs builds it)');
    if (!existsSync(join(example(), 'model.safetensors.index.json'))) throw new Error('the example checkpoint is missing (node out/scripts/make-example.js examples/tiny-llama)');
    tmp = tempDir();
  });
  after(() => {
    for (const dir of mounts.splice(0).reverse()) unmount(dir);
    tmp.cleanup();
  });

  it('a disk that fills up mid-job: the message names the output and says nothing was left; the disk holds nothing', async function () {
    const disk = join(tmp.path, 'small-disk');
    const out = join(disk, 'w8a8');
    // Big enough for the pre-flight check (the estimated tensors plus its 5% margin), too small for everything
    // the job writes: the shard's header and the copied tokenizer files come on top (tokenizer.json is 9 MB).
    const estimate = (await preflight({ kind: 'quantize', model: example(), out: join(tmp.path, 'probe'), preset: 'w8a8' })).estimate!.outputBytes!;
    const sizeKiB = Math.ceil((estimate * 1.05 + 512 * 1024) / 4096) * 4;
    let result: { status: number | null; stderr: string; left: string };
    const why = mountTmpfs(disk, `size=${sizeKiB}k`);
    if (!why) {
      mounts.push(disk);
      const run = cli('quantize', example(), '--scheme', 'w8a8', '--out', out);
      result = { status: run.status, stderr: run.stderr, left: (await fs.readdir(disk)).join(' ') };
    } else {
      // Not root: a mount namespace of our own, where the mount exists only for the job's shell.
      mkdirSync(disk, { recursive: true });
      const script = `mount -t tmpfs -o size=${sizeKiB}k tmpfs "$1" || exit 99; "$2" "$3" quantize "$4" --scheme w8a8 --out "$5"; echo "exit=$?" >&2; echo "left=$(ls -A "$1" | tr '\\n' ' ')" >&2`;
      const run = spawnSync('unshare', ['--user', '--map-root-user', '--mount', 'sh', '-c', script, 'sh', disk, process.execPath, join(repoRoot(), 'bin', 'quantlens.js'), example(), out], { encoding: 'utf8', timeout: 240_000 });
      if (run.status === 99 || run.error || !/exit=\d+/.test(run.stderr)) {
        console.log(`      skipped: cannot mount a tmpfs (${why}; unshare: ${run.error?.message ?? run.stderr.trim().split('\n')[0]})`);
        this.skip();
      }
      result = { status: Number(/exit=(\d+)/.exec(run.stderr)![1]), stderr: run.stderr, left: /left=(.*)/.exec(run.stderr)![1]!.trim() };
    }
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`^quantlens: error: quantize ${escape(out)} stopped: the disk is full \\(ENOSPC\\) while writing [\\w.-]+ for ${escape(out)}; free space in ${escape(disk)} and run the job again: nothing was written under ${escape(out)}; the partial output was removed$`, 'm'));
    assert.doesNotMatch(result.stderr, /unexpected error/);
    assert.equal(result.left, '', 'the disk holds nothing: no output, no partial folder, no lock');
  });

  it('the safetensors writer reports a full disk with the file and the errno behind it', async function () {
    const disk = join(tmp.path, 'tiny-disk');
    const why = mountTmpfs(disk, 'size=64k');
    if (why) {
      console.log(`      skipped: ${why} (the CLI test above covers ENOSPC in a user namespace)`);
      this.skip();
    }
    mounts.push(disk);
    const path = join(disk, 'stats.safetensors');
    const writer = await SafetensorsWriter.create(path, [{ name: 'h', dtype: 'F32', shape: [512, 512] }]);
    const error = await writer.write('h', new Uint8Array(512 * 512 * 4)).then(
      () => undefined,
      (e: unknown) => e,
    );
    await writer.abort();
    assert.match(String(error), /stats\.safetensors: could not write \d+ bytes at offset \d+: ENOSPC/);
    assert.equal((error as { cause?: { code?: string } }).cause?.code, 'ENOSPC');
    assert.deepEqual(await fs.readdir(disk), [], 'the partial file is gone');
    const mapped = await jobFailure(error, { job: 'calibrate', out: path, partialMade: true });
    assert.ok(mapped instanceof JobIoError && mapped.reason === 'no-space' && mapped.file === path);
    assert.equal(mapped.message, `calibrate ${path} stopped: the disk is full (ENOSPC) while writing ${path}; free space in ${disk} and run the job again: nothing was written under ${path}; the partial output was removed`);
  });

  it('a read-only output folder (EROFS) is named at once, before any work', async function () {
    const disk = join(tmp.path, 'read-only');
    const why = mountTmpfs(disk, 'ro,size=64k');
    if (why) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    mounts.push(disk);
    const out = join(disk, 'w8a8');
    const run = cli('quantize', example(), '--scheme', 'w8a8', '--out', out);
    assert.equal(run.status, 1);
    assert.match(run.stderr, new RegExp(`^quantlens: error: quantize ${escape(out)} stopped: ${escape(disk)} is on a read-only file system \\(EROFS\\); choose an output on a writable disk: nothing was written under ${escape(out)}$`, 'm'));
    assert.doesNotMatch(run.stderr, /unexpected error|input [\d.]+ GiB/);
  });

  it('permission denied (EACCES by file modes, EPERM by the kernel) names the file', async () => {
    const locked = join(tmp.path, 'no-write');
    mkdirSync(locked, { mode: 0o700 });
    let error: unknown;
    if (!isRoot) {
      await fs.chmod(locked, 0o500);
      error = await acquireOutputLock(join(locked, 'out'), 'test').catch((e: unknown) => e);
      await fs.chmod(locked, 0o700);
    } else {
      // Root ignores file modes: the same write as an unprivileged user (nobody), in a folder only root may enter.
      const target = join(locked, 'out');
      const script = `try { require('fs').writeFileSync(${JSON.stringify(target)}, 'x'); } catch (e) { process.stdout.write(JSON.stringify({ code: e.code, syscall: e.syscall, path: e.path, message: e.message })); }`;
      const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', uid: 65534, gid: 65534, cwd: '/' });
      const errno = JSON.parse(run.stdout || '{}') as { code?: string; syscall?: string; path?: string; message?: string };
      assert.equal(errno.code, 'EACCES', run.stderr);
      error = Object.assign(new Error(errno.message), errno);
    }
    const out = join(locked, 'out');
    const mapped = await jobFailure(error, { job: 'quantize', out, partialMade: false });
    assert.ok(mapped instanceof JobIoError && mapped.reason === 'permission', String(mapped));
    assert.match(mapped.message, new RegExp(`^quantize ${escape(out)} stopped: permission denied \\(EACCES\\) (reading or creating|writing) ${escape(locked)}.*: nothing was written under ${escape(out)}$`));

    // EPERM from a real call: a hard link to a folder is not permitted, even to root.
    const eperm = await fs.link(locked, join(tmp.path, 'folder-link')).catch((e: unknown) => e);
    const mappedEperm = await jobFailure(eperm, { job: 'quantize', out, partialMade: true, partialDir: join(tmp.path, '.out.0000.partial') });
    assert.ok(mappedEperm instanceof JobIoError && mappedEperm.reason === 'permission' && mappedEperm.code === 'EPERM');
    assert.match(mappedEperm.message, /permission denied \(EPERM\) writing .*folder-link: nothing was written under .*out; the partial output was removed$/);
  });

  it('an output that appears while the job runs (ENOTEMPTY) is left as it is, and the partial output removed', async () => {
    const out = join(tmp.path, 'appeared');
    const error = await runQuantizeJob({
      model: example(),
      out,
      scheme: 'w8a8',
      onProgress: ({ fraction }) => {
        if (fraction > 0.5 && !existsSync(out)) {
          mkdirSync(out);
          spawnSync('sh', ['-c', `echo mine > "${join(out, 'notes.txt')}"`]);
        }
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof JobIoError && error.reason === 'output-exists', String(error));
    assert.equal(error.message, `quantize ${out} stopped: ${out} appeared while the job ran (ENOTEMPTY) and was left as it is (QuantLens never overwrites): nothing was written under ${out}; the partial output was removed`);
    assert.deepEqual(await fs.readdir(out), ['notes.txt']);
    assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.startsWith('.appeared')), []);

    // A file output (calibration statistics) is linked into place: a file that appeared is not replaced (EEXIST).
    const file = join(tmp.path, 'stats.safetensors');
    const partial = await PartialOutput.create(file, 'calibration statistics', 'test');
    await fs.writeFile(partial.path('stats.safetensors'), 'new');
    await fs.writeFile(file, 'theirs');
    const exists = await partial.commitFile('stats.safetensors').catch((e: unknown) => e);
    assert.equal((exists as NodeJS.ErrnoException).code, 'EEXIST');
    assert.equal(await fs.readFile(file, 'utf8'), 'theirs');
    const mapped = await jobFailure(exists, { job: 'calibrate', out: file, partialDir: partial.dir, removal: await partial.discard(), partialMade: true });
    assert.match((mapped as Error).message, new RegExp(`^calibrate ${escape(file)} stopped: ${escape(file)} appeared while the job ran \\(EEXIST\\)`));
    assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.startsWith('.stats')), []);
  });

  it('too many open files (EMFILE, ENFILE) and failed allocations (RangeError, ENOMEM) are named', async () => {
    // A real EMFILE: a process whose open-file limit is reached.
    const script = `const fs = require('fs'); const fds = []; try { for (;;) fds.push(fs.openSync(process.execPath, 'r')); } catch (e) { process.stdout.write(JSON.stringify({ code: e.code, syscall: e.syscall, path: e.path, message: e.message })); }`;
    const run = spawnSync('sh', ['-c', 'ulimit -n 40 && exec "$0" -e "$1"', process.execPath, script], { encoding: 'utf8' });
    const errno = JSON.parse(run.stdout) as { code: string; syscall: string; path: string; message: string };
    assert.equal(errno.code, 'EMFILE', run.stderr);
    const out = join(tmp.path, 'out');
    const emfile = await jobFailure(Object.assign(new Error(errno.message), errno), { job: 'quantize', out, partialMade: false });
    assert.ok(emfile instanceof JobIoError && emfile.reason === 'too-many-files');
    assert.equal(emfile.message, `quantize ${out} stopped: too many open files (EMFILE) opening ${process.execPath}; raise the open-file limit (ulimit -n) or close other programs: nothing was written under ${out}`);
    // ENFILE (the whole system's table is full) cannot be provoked safely on a shared machine: Node's error shape.
    const enfile = await jobFailure(Object.assign(new Error("ENFILE: file table overflow, open '/m/a.safetensors'"), { code: 'ENFILE', syscall: 'open', path: '/m/a.safetensors' }), { job: 'quantize', out, partialMade: false });
    assert.ok(enfile instanceof JobIoError && enfile.reason === 'too-many-files' && /too many open files \(ENFILE\) opening \/m\/a\.safetensors/.test(enfile.message));

    // A real allocation failure: V8 cannot reserve 1 TiB.
    let allocation: unknown;
    try {
      new ArrayBuffer(2 ** 40);
    } catch (e) {
      allocation = e;
    }
    assert.match(String(allocation), /RangeError: Array buffer allocation failed/);
    const oom = await jobFailure(allocation, { job: 'quantize', out, partialMade: true, partialDir: join(tmp.path, '.out.1234abcd.partial') });
    assert.ok(oom instanceof JobIoError && oom.reason === 'out-of-memory');
    assert.equal(oom.message, `quantize ${out} stopped: out of memory; close other programs, or use fewer calibration samples: nothing was written under ${out}; the partial output was removed`);
    const enomem = await jobFailure(Object.assign(new Error('ENOMEM: not enough memory, read'), { code: 'ENOMEM', syscall: 'read' }), { job: 'calibrate', out, partialMade: false });
    assert.ok(enomem instanceof JobIoError && enomem.reason === 'out-of-memory');
    // A bug stays what it is (the CLI prints it as an unexpected error, with its stack).
    const bug = new TypeError("Cannot read properties of undefined (reading 'shape')");
    assert.equal(await jobFailure(bug, { job: 'quantize', out, partialMade: false }), bug);
  });

  it('an input file that changes under a running job stops it, naming the file; nothing is published', async () => {
    const model = join(tmp.path, 'model-copy');
    await fs.cp(example(), model, { recursive: true });
    const shard = join(model, 'model-00002-of-00002.safetensors');
    const out = join(tmp.path, 'from-changed');
    let touched = false;
    const error = await runQuantizeJob({
      model,
      out,
      scheme: 'w8a8',
      onProgress: ({ fraction }) => {
        if (fraction > 0.1 && !touched) {
          touched = true;
          // Someone re-downloads the shard in place: same size, new contents and modification time.
          spawnSync('sh', ['-c', `printf 'xxxx' | dd of="${shard}" bs=1 seek=1000000 conv=notrunc status=none`]);
        }
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(touched);
    assert.ok(error instanceof JobIoError && error.reason === 'input-changed', String(error));
    assert.match(error.message, new RegExp(`^quantize ${escape(out)} stopped: the input changed while the job read it \\(${escape(shard)} was modified at \\d{4}-.*\\); the output would mix old and new data, so nothing was written under ${escape(out)}; the partial output was removed$`));
    assert.ok(!existsSync(out));
    assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.startsWith('.from-changed')), []);
  });

  it("owner identity: a recycled pid, a rebooted machine, another host and a gone process are told apart", () => {
    const own = ownerRecord('/x/out', 'test', 'test', 'token');
    assert.equal(ownerState(own).alive, true);
    if (process.platform === 'linux') {
      assert.equal(ownerState({ ...own, processStart: String(Number(own.processStart) + 1) }).alive, false, 'same pid, other start time: recycled');
      assert.equal(ownerState({ ...own, bootId: '00000000-0000-0000-0000-000000000000' }).alive, false, 'before a reboot');
    }
    assert.equal(ownerState({ ...own, hostname: `${hostname()}-elsewhere` }).alive, 'unknown');
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    assert.equal(ownerState({ ...own, pid: Number(gone.stdout), processStart: undefined }).alive, false);
  });

  it('a stale lock is taken over by exactly one of many jobs that find it at once', async () => {
    const out = join(tmp.path, 'contended');
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await fs.writeFile(lockPathOf(out), JSON.stringify({ ...ownerRecord(out, 'output lock', 'a job that was killed', 'dead'), pid: Number(gone.stdout) }));
    const logs: string[] = [];
    // Each attempt runs in this process, so the winner's lock is "held by this process" for the others.
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => acquireOutputLock(out, 'contender', (l) => logs.push(l))));
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status === 'rejected' ? String(r.reason) : 'won')));
    for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof OutputBusyError, String(r.reason));
    assert.ok(logs.some((l) => /removed the stale lock .* of pid \d+ \(a job that was killed\)/.test(l)));
    const lock = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireOutputLock>>>).value;
    assert.ok(await lock.held());
    await lock.release();
    assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.startsWith('.contended')), [], 'no lock and no temporary lock files are left');
  });
});
