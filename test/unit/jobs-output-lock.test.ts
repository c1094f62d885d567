/**
 * One output, one job, and nothing left behind by a job that died — with real processes on the shipped
 * example: a CLI quantize job SIGKILLed mid-write leaves its partial folder with an owner record, which the
 * next job for that output removes (logged) before it lands; a live job's partial folder survives a concurrent
 * cleanup; of two jobs started together on one output the second is refused at once, naming the first, and the
 * first's output reads back; a job child refused by the extension's job process leaves the running job's files
 * alone.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { JobProcess } from '../../src/core/jobs/jobProcess';
import { OWNER_FILE, lockPathOf, removeStaleOutputs } from '../../src/core/jobs/outputLock';
import { ownerState, parseOwnerRecord } from '../../src/core/jobs/outputOwner';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

interface Run {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; at: number }>;
}

/** Starts `quantlens ARGS` as a user would; `exited` resolves with its output and the time it ended. */
function startCli(...args: string[]): Run {
  const child = spawn(process.execPath, [join(repoRoot(), 'bin', 'quantlens.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; at: number }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, at: Date.now() })),
  );
  return { child, exited };
}

/** Waits (polling) until the folder holds a `.NAME.*.partial` folder with at least `minBytes` of shards in it. */
async function partialFolderOf(dir: string, name: string, minBytes = 1, timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const entry of await fs.readdir(dir)) {
      if (!entry.startsWith(`.${name}.`) || !entry.endsWith('.partial')) continue;
      const inside = await fs.readdir(join(dir, entry)).catch(() => [] as string[]);
      let bytes = 0;
      for (const n of inside) if (n.includes('safetensors')) bytes += (await fs.stat(join(dir, entry, n)).catch(() => ({ size: 0 }))).size;
      if (bytes >= minBytes) return join(dir, entry);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no partial folder for ${name} appeared in ${dir}`);
}

/** The output reads back: every tensor of every shard, and config.json names the scheme's format. */
async function assertReadsBack(out: string, format: string): Promise<void> {
  const config = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8')) as { quantization_config: { format: string } };
  assert.equal(config.quantization_config.format, format);
  const checkpoint = await Checkpoint.open(out);
  try {
    assert.deepEqual(checkpoint.problems.filter((p) => p.severity === 'error'), []);
    assert.ok(checkpoint.tensors.length > 28);
    let bytes = 0;
    for (const tensor of checkpoint.tensors) bytes += (await checkpoint.readTensorBytes(tensor.name)).length;
    assert.equal(bytes, checkpoint.totalBytes);
  } finally {
    await checkpoint.close();
  }
  assert.deepEqual((await fs.readdir(out)).filter((n) => n.startsWith('.')), [], 'no owner record or temporary file in the published output');
}

describe('jobs: output lock and stale partial outputs (real processes)', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  const running: ChildProcess[] = [];
  before(() => {
    if (!existsSync(join(repoRoot(), 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing (node esbuild.mjs builds it)');
    if (!existsSync(join(example(), 'model.safetensors.index.json'))) throw new Error('the example checkpoint is missing (node out/scripts/make-example.js examples/tiny-llama)');
    tmp = tempDir();
  });
  afterEach(() => {
    for (const child of running.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  after(() => tmp.cleanup());

  it('a SIGKILLed job leaves its partial folder with an owner record; the next job for that output removes it and lands', async () => {
    const out = join(tmp.path, 'killed');
    const first = startCli('quantize', example(), '--scheme', 'w4a16-rtn', '--max-shard-size', '2000000', '--out', out);
    running.push(first.child);
    const partial = await partialFolderOf(tmp.path, 'killed', 10_000_000);
    first.child.kill('SIGKILL');
    const ended = await first.exited;
    assert.equal(ended.signal, 'SIGKILL');

    const record = parseOwnerRecord(await fs.readFile(join(partial, OWNER_FILE), 'utf8'));
    assert.ok(record, 'the partial folder holds a readable owner record');
    assert.equal(record.pid, first.child.pid);
    assert.match(record.command, /^quantlens quantize .* --scheme w4a16-rtn .*--out /);
    if (process.platform === 'linux') assert.ok(record.processStart && record.bootId, 'start time and boot id identify the process');
    assert.equal(ownerState(record).alive, false);
    const lock = parseOwnerRecord(await fs.readFile(lockPathOf(out), 'utf8'));
    assert.equal(lock?.pid, first.child.pid, 'the dead job still "holds" the lock file');
    assert.ok(!existsSync(out));

    const second = startCli('quantize', example(), '--scheme', 'w4a16-rtn', '--max-shard-size', '2000000', '--out', out);
    running.push(second.child);
    const result = await second.exited;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`removed the stale lock .* of pid ${first.child.pid} .*: process ${first.child.pid} is no longer running`));
    assert.match(result.stderr, new RegExp(`removed ${partial.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(\\d+\\.\\d MB\\) left by pid ${first.child.pid} \\(quantlens quantize`));
    assert.ok(!existsSync(partial));
    await assertReadsBack(out, 'pack-quantized');
    assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.startsWith('.killed')), [], 'no lock, no partial folder');
  });

  it("a concurrent cleanup never touches a live job's partial folder or lock", async () => {
    const out = join(tmp.path, 'live');
    const job = startCli('quantize', example(), '--scheme', 'w4a16-rtn', '--max-shard-size', '2000000', '--out', out);
    running.push(job.child);
    const partial = await partialFolderOf(tmp.path, 'live');
    // Stopped, the job is alive but cannot finish while the cleanup looks at its files.
    job.child.kill('SIGSTOP');
    try {
      const lines: string[] = [];
      const { removed, kept } = await removeStaleOutputs(out, (line) => lines.push(line));
      assert.deepEqual(removed, []);
      assert.deepEqual(kept.map((k) => k.path), [partial]);
      assert.equal(kept[0]!.owner?.pid, job.child.pid);
      assert.match(lines.join('\n'), new RegExp(`left ${partial.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} alone: it belongs to pid ${job.child.pid}`));
      assert.ok(existsSync(partial) && existsSync(lockPathOf(out)));
    } finally {
      job.child.kill('SIGCONT');
    }
    const result = await job.exited;
    assert.equal(result.code, 0, result.stderr);
    await assertReadsBack(out, 'pack-quantized');
  });

  it('of two jobs started together on one output, the second is refused at once naming the first, and the first lands intact', async () => {
    const out = join(tmp.path, 'together');
    // A GPTQ job (calibration, several seconds): the first is still running when the second starts. A
    // round-to-nearest job of the example finished within the second's start-up on CI, which then found the
    // output already there instead of its writer.
    const job = ['quantize', example(), '--scheme', 'w4a16', '--calib', 'default', '--samples', '8', '--out', out];
    const a = startCli(...job);
    running.push(a.child);
    await new Promise((r) => setTimeout(r, 300));
    const b = startCli(...job);
    running.push(b.child);
    const [ra, rb] = await Promise.all([a.exited, b.exited]);
    // Normally the first one started wins; on a loaded machine the second may reach the lock first.
    const [winner, loser, winnerPid] = ra.code === 0 ? [ra, rb, a.child.pid] : [rb, ra, b.child.pid];
    assert.equal(winner.code, 0, winner.stderr);
    assert.equal(loser.code, 1, loser.stderr);
    assert.match(loser.stderr, new RegExp(`^quantlens: error: ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is already being written by another QuantLens job: pid ${winnerPid} \\(quantlens quantize .*--out .*\\), since \\d{4}-`, 'm'));
    assert.doesNotMatch(loser.stderr, /unexpected error|ENOTEMPTY|quantizing|input [\d.]+ GiB/, 'refused before its pre-flight check and any work');
    assert.ok(loser.at < winner.at, `the refused job ended ${loser.at - winner.at} ms after the winner`);
    await assertReadsBack(out, 'pack-quantized');
    assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.startsWith('.together')), []);
  });

  it("the extension's job process: a job refused because another holds the output leaves the running job's files alone", async () => {
    const out = join(tmp.path, 'editor');
    const script = join(repoRoot(), 'dist', 'workers', 'job.worker.js');
    const cli = startCli('quantize', example(), '--scheme', 'w4a16-rtn', '--max-shard-size', '2000000', '--out', out);
    running.push(cli.child);
    const partial = await partialFolderOf(tmp.path, 'editor');
    cli.child.kill('SIGSTOP');
    try {
      const logs: string[] = [];
      const refused = await new JobProcess({ kind: 'quantize', model: example(), out, preset: 'w4a16-rtn' }, { script, onLog: (l) => logs.push(l) }).done;
      assert.equal(refused.status, 'failed');
      assert.match(refused.status === 'failed' ? refused.message : '', new RegExp(`already being written by another QuantLens job: pid ${cli.child.pid} \\(quantlens quantize`));
      assert.ok(existsSync(partial), "the running job's partial folder is still there");
      assert.equal(parseOwnerRecord(await fs.readFile(lockPathOf(out), 'utf8'))?.pid, cli.child.pid, 'and so is its lock');
    } finally {
      cli.child.kill('SIGCONT');
    }
    const result = await cli.exited;
    assert.equal(result.code, 0, result.stderr);
    await assertReadsBack(out, 'pack-quantized');
  });

  it('a job child killed mid-job by a cancel leaves neither its lock nor its partial folder', async () => {
    const out = join(tmp.path, 'worker-killed');
    const script = join(repoRoot(), 'dist', 'workers', 'job.worker.js');
    let killedPid: number | undefined;
    const logs: string[] = [];
    const job: JobProcess = new JobProcess(
      { kind: 'quantize', model: example(), out, preset: 'w4a16-rtn', maxShardBytes: 2_000_000 },
      {
        script,
        cancelGraceMs: 0,
        onLog: (l) => logs.push(l),
        onProgress: (p) => {
          if (p.fraction > 0.2 && killedPid === undefined) {
            killedPid = -1;
            void fs.readFile(lockPathOf(out), 'utf8').then((text) => {
              killedPid = parseOwnerRecord(text)?.pid;
              job.cancel();
            });
          }
        },
      },
    );
    const outcome = await job.done;
    assert.equal(outcome.status, 'cancelled');
    assert.ok(killedPid && killedPid > 0);
    assert.deepEqual((await fs.readdir(tmp.path)).filter((n) => n.startsWith('.worker-killed')), [], 'neither its lock nor its partial folder is left');
    assert.ok(!existsSync(out));
  });
});
