/**
 * The GPU check's driver (built to out/scripts/gpu-check.js, run by scripts/gpu-check.sh from the bundle that
 * scripts/make-gpu-bundle.sh makes). On one machine, for each device — the CPU first (the baseline), then
 * WebGPU, then CUDA when onnxruntime's CUDA provider is present — it runs, each as its own `quantlens` process:
 *   - a chat turn on the example model: fixed prompt, greedy, N new tokens (`chat --json`): decode tokens/s;
 *   - a small GPTQ W4A16 job on the example (`quantize --recipe … --calib default`): whole-process time;
 *   - a chat turn on the CPU job's INT4 output (MatMulNBits), greedy, N tokens;
 * and prints a table against the CPU with the adapter's name and whether each device's greedy tokens equal
 * the CPU's. A WebGPU adapter that is a CPU-emulated Vulkan driver (SwiftShader, lavapipe) is an error unless
 * --allow-software is given. Results also go to WORK/gpu-check.json.
 *
 *   node out/scripts/gpu-check.js --cli bin/quantlens.js --model DIR --work DIR [--tokens 32] [--samples 32]
 *       [--seq-len 16] [--allow-software] [--vulkan-devices PATH]
 *
 * Exit status: 0 all ran and agreed; 1 a device failed; 3 the adapter is not a GPU (without
 * --allow-software); 4 greedy tokens differ from the CPU's.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { detectDevice } from '../../src/core/runtime/device';

interface Options {
  cli: string;
  model: string;
  work: string;
  tokens: number;
  samples: number;
  seqLen: number;
  allowSoftware: boolean;
  vulkanDevices?: string;
}

const PROMPT = 'Write one sentence about quantization of neural networks.';

const RECIPE = `quant_stage:
  quant_modifiers:
    GPTQModifier:
      ignore: ["lm_head"]
      actorder: "static"
      dampening_frac: 0.01
      config_groups:
        group_0:
          targets: ["Linear"]
          weights: {num_bits: 4, type: "int", symmetric: true, strategy: "group", group_size: 128}
`;

function parseOptions(argv: readonly string[]): Options {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const number = (name: string, fallback: number): number => {
    const v = value(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} needs a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const cli = value('cli');
  const model = value('model');
  const work = value('work');
  if (!cli || !model || !work) throw new Error('usage: gpu-check.js --cli bin/quantlens.js --model DIR --work DIR [--tokens N] [--samples N] [--seq-len N] [--allow-software] [--vulkan-devices PATH]');
  const vulkanDevices = value('vulkan-devices');
  return { cli, model, work, tokens: number('tokens', 32), samples: number('samples', 32), seqLen: number('seq-len', 16), allowSoftware: argv.includes('--allow-software'), ...(vulkanDevices ? { vulkanDevices } : {}) };
}

interface Run {
  ok: boolean;
  seconds: number;
  stdout: string;
  /** The last lines of stderr: the CLI's one-line error when it failed. */
  error: string;
}

function run(args: readonly string[]): Promise<Run> {
  return new Promise((resolveRun) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8000)));
    child.on('close', (code, signal) => {
      const lines = stderr.trim().split('\n');
      const error = lines.filter((l) => /error|Error|failed/.test(l)).slice(-2).join(' | ') || lines.slice(-2).join(' | ');
      resolveRun({ ok: code === 0, seconds: (performance.now() - started) / 1000, stdout, error: code === 0 ? '' : `${signal ?? `exit ${code}`}: ${error}` });
    });
  });
}

interface ChatOutcome {
  tokens?: number[];
  tokensPerSecond?: number;
  prefillMs?: number;
  error?: string;
}

async function chat(o: Options, model: string, device: string): Promise<ChatOutcome> {
  const r = await run([o.cli, 'chat', model, '--prompt', PROMPT, '--greedy', '--max-new-tokens', String(o.tokens), '--device', device, '--cache', join(o.work, 'graphs'), '--json']);
  if (!r.ok) return { error: r.error };
  const json = JSON.parse(r.stdout) as { quantized: { tokens?: number[]; stats: { tokensPerSecond: number; prefillMs: number } } };
  const tokens = json.quantized.tokens;
  return { ...(tokens ? { tokens } : {}), tokensPerSecond: json.quantized.stats.tokensPerSecond, prefillMs: json.quantized.stats.prefillMs };
}

async function gptqJob(o: Options, device: string): Promise<{ seconds?: number; out?: string; error?: string }> {
  const recipe = join(o.work, 'gptq-w4a16.yaml');
  await fs.writeFile(recipe, RECIPE);
  const out = join(o.work, `gptq-${device}`);
  await fs.rm(out, { recursive: true, force: true });
  const r = await run([o.cli, 'quantize', o.model, '--recipe', recipe, '--calib', 'default', '--samples', String(o.samples), '--seq-len', String(o.seqLen), '--device', device, '--out', out]);
  return r.ok ? { seconds: r.seconds, out } : { error: r.error };
}

interface VulkanDevice {
  name: string;
  type: string;
  vendorId: string;
}

/** The Vulkan devices the loader sees in this environment (the bundle's vulkan-devices helper). */
function vulkanDevices(o: Options): { devices: VulkanDevice[]; note?: string } {
  if (!o.vulkanDevices || !existsSync(o.vulkanDevices)) return { devices: [], note: 'the vulkan-devices helper is not in this bundle' };
  const r = spawnSync(o.vulkanDevices, { encoding: 'utf8' });
  if (r.error) return { devices: [], note: `vulkan-devices could not run: ${r.error.message}` };
  const devices = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as VulkanDevice);
  return devices.length ? { devices } : { devices, note: (r.stderr || `vulkan-devices exited with ${r.status}`).trim() };
}

function nvidiaSmiName(): string | undefined {
  const r = spawnSync('nvidia-smi', ['--query-gpu=name,driver_version', '--format=csv,noheader'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().split('\n').join('; ') : undefined;
}

/** Fixed digits, but three significant ones below 1 (a CPU-emulated adapter decodes at 0.05 tokens/s). */
const fmt = (v: number | undefined, digits: number, unit = '') => (v === undefined || Number.isNaN(v) ? '–' : `${v < 1 ? v.toPrecision(3) : v.toFixed(digits)}${unit}`);

function sameTokens(a: readonly number[] | undefined, b: readonly number[] | undefined): string {
  if (!a || !b) return '–';
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return `NO (differ at token ${i + 1})`;
  return a.length === b.length ? `yes (${n} tokens)` : `NO (${a.length} vs ${b.length} tokens)`;
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  await fs.mkdir(o.work, { recursive: true });
  const say = (line: string) => process.stdout.write(`${line}\n`);

  const vulkan = vulkanDevices(o);
  const smi = nvidiaSmiName();
  const webgpu = await detectDevice({ preference: 'webgpu' });
  const cuda = await detectDevice({ preference: 'cuda' });
  say(`Vulkan devices (what Dawn can pick): ${vulkan.devices.map((d) => `${d.name} [${d.type}, vendor ${d.vendorId}]`).join('; ') || `none${vulkan.note ? ` (${vulkan.note})` : ''}`}`);
  say(`nvidia-smi: ${smi ?? 'not available'}`);
  say(`WebGPU: ${webgpu.reason}`);
  say(`CUDA: ${cuda.reason}`);

  const software = webgpu.failed
    ? false
    : /CPU-emulated/.test(webgpu.reason) || (vulkan.devices.length > 0 && vulkan.devices.every((d) => d.type === 'cpu'));
  if (software && !o.allowSoftware) {
    say(`\nGPU CHECK FAILED: the WebGPU adapter is a CPU-emulated Vulkan driver (${vulkan.devices.map((d) => d.name).join(', ') || webgpu.reason}), not a GPU.`);
    say('Point VK_ICD_FILENAMES at the NVIDIA Vulkan ICD (nvidia_icd.json), or pass --allow-software to measure the emulation anyway.');
    return 3;
  }
  const adapter = webgpu.failed ? '–' : (vulkan.devices.find((d) => d.type !== 'cpu') ?? vulkan.devices[0])?.name ?? 'unnamed adapter (no vulkan-devices helper)';

  const devices: { device: string; available: boolean; why: string }[] = [
    { device: 'cpu', available: true, why: 'baseline' },
    { device: 'webgpu', available: !webgpu.failed, why: webgpu.reason },
    { device: 'cuda', available: !cuda.failed, why: cuda.reason },
  ];
  interface Row { device: string; chat?: ChatOutcome; job?: { seconds?: number; out?: string; error?: string }; int4?: ChatOutcome; skipped?: string }
  const rows: Row[] = [];
  let int4Model: string | undefined;
  for (const d of devices) {
    if (!d.available) {
      rows.push({ device: d.device, skipped: d.why });
      say(`${d.device}: not run — ${d.why}`);
      continue;
    }
    say(`${d.device}: chat (${o.tokens} tokens, greedy)…`);
    const chatOutcome = await chat(o, o.model, d.device);
    say(`${d.device}: GPTQ W4A16 job (${o.samples} × ${o.seqLen} tokens)…`);
    const job = await gptqJob(o, d.device);
    if (d.device === 'cpu') int4Model = job.out;
    say(`${d.device}: chat on the CPU job's INT4 output…`);
    const int4 = int4Model ? await chat(o, int4Model, d.device) : { error: 'the CPU GPTQ job failed, so there is no INT4 model' };
    rows.push({ device: d.device, chat: chatOutcome, job, int4 });
  }

  const cpu = rows[0]!;
  const table = [['device', 'adapter', 'chat tok/s (fp32)', 'vs CPU', 'prefill ms', 'greedy = CPU', 'chat tok/s (INT4)', 'vs CPU', 'greedy = CPU', 'GPTQ job s', 'vs CPU']];
  const errors: string[] = [];
  let mismatch = false;
  for (const r of rows) {
    if (r.skipped) {
      table.push([r.device, '–', `not run: ${r.skipped}`, '', '', '', '', '', '', '', '']);
      continue;
    }
    for (const [what, outcome] of [['chat', r.chat], ['GPTQ job', r.job], ['INT4 chat', r.int4]] as const) if (outcome?.error) errors.push(`${r.device} ${what}: ${outcome.error}`);
    const ratio = (mine: number | undefined, base: number | undefined, invert = false) => (mine && base ? `${fmt(invert ? base / mine : mine / base, 2)}×` : '–');
    const same = r.device === 'cpu' ? 'baseline' : sameTokens(r.chat?.tokens, cpu.chat?.tokens);
    const sameInt4 = r.device === 'cpu' ? 'baseline' : sameTokens(r.int4?.tokens, cpu.int4?.tokens);
    if (same.startsWith('NO') || sameInt4.startsWith('NO')) mismatch = true;
    table.push([
      r.device,
      r.device === 'webgpu' ? adapter : r.device === 'cuda' ? smi ?? 'CUDA' : 'CPU',
      fmt(r.chat?.tokensPerSecond, 1), ratio(r.chat?.tokensPerSecond, cpu.chat?.tokensPerSecond), fmt(r.chat?.prefillMs, 0), same,
      fmt(r.int4?.tokensPerSecond, 1), ratio(r.int4?.tokensPerSecond, cpu.int4?.tokensPerSecond), sameInt4,
      fmt(r.job?.seconds, 1), ratio(r.job?.seconds, cpu.job?.seconds, true),
    ]);
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  say('');
  for (const [i, row] of table.entries()) {
    say(`| ${row.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`);
    if (i === 0) say(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  }
  say(`(vs CPU: speed over this machine's CPU, higher is faster; chat: ${o.tokens} new tokens, decode rate; GPTQ job: whole quantlens process)`);
  for (const e of errors) say(`FAILED ${e}`);
  if (mismatch) say('GREEDY TOKENS DIFFER from the CPU\'s on a device (see the table)');
  await fs.writeFile(join(o.work, 'gpu-check.json'), `${JSON.stringify({ date: new Date().toISOString(), vulkan: vulkan.devices, nvidiaSmi: smi, webgpu, cuda, settings: { tokens: o.tokens, samples: o.samples, seqLen: o.seqLen, prompt: PROMPT }, rows }, null, 1)}\n`);
  return errors.length ? 1 : mismatch ? 4 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`gpu-check: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
