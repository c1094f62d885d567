/**
 * The life of a job's output, shared by the quantize and calibrate jobs: take the output's lock (unless the
 * caller holds it), build the output in a partial folder with an owner record, publish it only if every input
 * is as it was when opened and the lock is still this job's, and on any failure remove the partial folder and
 * report the failure with what was left behind (jobErrors.ts).
 */
import { constants, promises as fs } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Checkpoint } from '../safetensors/checkpoint';
import { InputFileState, JobCancelled, JobIoError, changedInputs, jobFailure, snapshotInputs } from './jobErrors';
import { OutputBusyError, OutputLock, PartialOutput, acquireOutputLock } from './outputLock';
import { commandOfThisProcess } from './outputOwner';

export interface JobOutputOptions {
  /** The output's lock when the caller took it (runJob does, before its pre-flight check); else the job takes it. */
  readonly outputLock?: OutputLock;
  /** Names the job in owner records: the command line, or the editor's job title. */
  readonly command?: string;
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
  /**
   * The job and output that failure messages name, when they are not this job's own: runJob's quantize job
   * calibrates into a temporary statistics file first, and its user knows only the quantize output.
   */
  readonly reportAs?: { readonly job: string; readonly out: string };
}

/** Takes the lock on `out`; a file-system failure to create it is a JobIoError naming the folder. */
export async function lockOutput(job: string, out: string, command: string, log?: (line: string) => void): Promise<OutputLock> {
  try {
    return await acquireOutputLock(out, command, log);
  } catch (error) {
    if (error instanceof OutputBusyError) throw error;
    const target = resolve(out);
    const ctx = { job, out: target, partialMade: false };
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new JobIoError('missing-folder', `${job} ${target} cannot start: the folder ${dirname(target)} does not exist`, 'ENOENT', dirname(target), { cause: error });
    // The lock's own temporary name means nothing to a user: name the folder it could not be created in.
    throw await jobFailure(Object.assign(new Error((error as Error).message), { code: (error as NodeJS.ErrnoException).code, path: dirname(target), cause: error }), ctx);
  }
}

export class JobOutput {
  partial: PartialOutput | undefined;
  readonly inputs: InputFileState[] = [];

  constructor(
    readonly job: string,
    readonly out: string,
    readonly lock: OutputLock,
  ) {}

  /** Remembers the inputs as opened (sizes as their headers were validated): publishing checks them again. */
  async watchInputs(paths: readonly string[], sizes?: ReadonlyMap<string, number>): Promise<void> {
    this.inputs.push(...(await snapshotInputs(paths, sizes)));
  }

  watchCheckpoint(checkpoint: Checkpoint): Promise<void> {
    const shards = checkpoint.shards.filter((s) => s.file);
    return this.watchInputs([...shards.map((s) => s.path), join(checkpoint.folder, 'config.json')], new Map(shards.map((s) => [s.path, s.fileSize])));
  }

  /** Creates the partial folder (owner record inside) and returns its path. */
  async createPartial(purpose: string): Promise<string> {
    this.partial = await PartialOutput.create(this.out, purpose, this.lock.record.command);
    return this.partial.dir;
  }

  private async checkBeforePublish(): Promise<void> {
    if ((await changedInputs(this.inputs)).length) throw new Error('an input changed while the job read it');
    if (!(await this.lock.held())) throw Object.assign(new Error(`the lock ${this.lock.path} is no longer this job's`), { code: 'EEXIST', path: this.out });
  }

  /** Renames the partial folder to the output. */
  async publishFolder(): Promise<void> {
    await this.checkBeforePublish();
    await this.partial!.commitFolder();
  }

  /**
   * Publishes files of the partial folder: the last as the output, the others beside it under their own names
   * (the plan file beside its recipe) and first, so the output never appears without them. Nothing is
   * replaced; when publishing fails, the companions already published are removed again.
   */
  async publishFiles(names: readonly string[]): Promise<void> {
    await this.checkBeforePublish();
    const published: string[] = [];
    try {
      for (const name of names.slice(0, -1)) {
        const target = join(dirname(this.out), name);
        await fs.link(this.partial!.path(name), target).catch(async (error: NodeJS.ErrnoException) => {
          if (error.code !== 'EPERM' && error.code !== 'ENOTSUP' && error.code !== 'ENOSYS') throw error;
          await fs.copyFile(this.partial!.path(name), target, constants.COPYFILE_EXCL);
        });
        published.push(target);
      }
      await this.partial!.commitFile(names.at(-1)!);
    } catch (error) {
      for (const target of published) await fs.rm(target, { force: true });
      throw error;
    }
  }

  /** Publishes the file `name` of the partial folder as the output. */
  async publishFile(name: string): Promise<void> {
    await this.checkBeforePublish();
    await this.partial!.commitFile(name);
  }
}

/** Runs `body` with the output locked; on failure the partial output is removed and the error says so. */
export async function withJobOutput<T>(job: string, out: string, options: JobOutputOptions, body: (output: JobOutput) => Promise<T>): Promise<T> {
  const target = resolve(out);
  const lock = options.outputLock ?? (await lockOutput(job, target, options.command ?? commandOfThisProcess(), options.log));
  const output = new JobOutput(job, target, lock);
  try {
    return await body(output);
  } catch (error) {
    const removal = await output.partial?.discard();
    if (error instanceof JobCancelled || options.signal?.aborted) throw new JobCancelled();
    const named = options.reportAs ?? { job, out: target };
    throw await jobFailure(error, { job: named.job, out: resolve(named.out), partialDir: output.partial?.dir, removal, partialMade: output.partial !== undefined, inputs: output.inputs });
  } finally {
    if (!options.outputLock) await lock.release();
  }
}
