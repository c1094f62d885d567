/**
 * Runs the CLI's main() in this process with its standard output captured (standard error silenced, as a test
 * reads only the JSON a command prints), restoring both whatever happens.
 */
import { main } from '../../src/cli/main';

export async function runCliCapturingStdout(args: readonly string[]): Promise<{ code: number; stdout: string }> {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => (chunks.push(String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    const code = await main([...args]);
    return { code, stdout: chunks.join('') };
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}
