/**
 * Bench section `chat`: the chat engine on the shipped example (the only model here with a tokenizer), float
 * vs INT4 (W4A16 RTN) vs INT8 (W8A8) vs FP8 (dynamic) checkpoints made by the quantize job: decode tokens/s
 * of a greedy turn through core/chat/generation.ts (sampling and streaming included) and the memory it holds (weight files
 * + KV cache), with ratios to float measured in the same run; and the cost of the side-by-side comparison
 * (quantized + original + teacher-forced original) against the quantized model alone. Raw decode speed of
 * the TinyLlama-shaped graphs is the `runtime` section's (test/bench/runtime.bench.ts), not repeated here.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { runQuantizeJob, SchemeName } from '../../src/core/jobs/quantize';
import { chatTurn, GenerationSettings } from '../../src/core/chat/generation';
import { LoadedChatModel, loadChatModel, turnMessages } from '../../src/core/chat/modelPair';
import { formatBytes } from '../../src/core/util/format';
import { BenchRow } from './harness';

const root = join(__dirname, '..', '..');
const SETTINGS: GenerationSettings = { temperature: 0, maxNewTokens: 48, seed: 0 };

async function decodeSpeed(model: LoadedChatModel, original?: LoadedChatModel): Promise<{ tokensPerSecond: number; wallTokensPerSecond: number; bytes: number }> {
  const messages = turnMessages('You are a concise assistant.', [], 'What is 4-bit quantization?');
  const participant = (m: LoadedChatModel) => ({ model: m.model, tokenizer: m.tokenizer, messages });
  await chatTurn(participant(model), original && participant(original), { ...SETTINGS, maxNewTokens: 4 }); // warm-up
  let best = { tokensPerSecond: 0, wallTokensPerSecond: 0, bytes: 0 };
  for (let run = 0; run < 2; run++) {
    const started = performance.now();
    const result = await chatTurn(participant(model), original && participant(original), SETTINGS);
    const wall = performance.now() - started;
    const s = result.quantized.stats;
    const wallTokensPerSecond = (s.generatedTokens * 1000) / wall;
    if (wallTokensPerSecond > best.wallTokensPerSecond) best = { tokensPerSecond: s.tokensPerSecond, wallTokensPerSecond, bytes: s.weightBytes + s.kvCacheBytes };
  }
  return best;
}

export async function chatSection(rows: BenchRow[]): Promise<void> {
  const example = join(root, 'examples', 'tiny-llama');
  if (!existsSync(join(example, 'config.json'))) throw new Error(`${example} is missing: run \`npm run example\` first`);
  const scratch = mkdtempSync(join(tmpdir(), 'quantlens-chat-bench-'));
  const cacheDir = join(scratch, 'graphs');
  try {
    const variants: [string, string][] = [['float', example]];
    for (const [label, scheme] of [['INT4 (W4A16 RTN)', 'w4a16-rtn'], ['INT8 (W8A8)', 'w8a8'], ['FP8 (dynamic)', 'fp8-dynamic']] as [string, SchemeName][]) {
      const out = join(scratch, scheme);
      await runQuantizeJob({ model: example, out, scheme });
      variants.push([label, out]);
    }
    const float = await loadChatModel(example, { cacheDir, intraOpNumThreads: 2 });
    const floatSpeed = await decodeSpeed(float);
    for (const [label, folder] of variants) {
      const model = label === 'float' ? float : await loadChatModel(folder, { cacheDir, intraOpNumThreads: 2 });
      const speed = label === 'float' ? floatSpeed : await decodeSpeed(model);
      rows.push({
        section: 'chat',
        what: `example ${label}: greedy turn, decode (engine incl. sampling)`,
        result: `${speed.tokensPerSecond.toFixed(1)} tok/s`,
        baseline: `${floatSpeed.tokensPerSecond.toFixed(1)} tok/s float`,
        ratio: `${(speed.tokensPerSecond / floatSpeed.tokensPerSecond).toFixed(2)}× float`,
        target: '—',
      });
      rows.push({
        section: 'chat',
        what: `example ${label}: memory (weight files + KV cache after the turn)`,
        result: formatBytes(speed.bytes),
        baseline: `${formatBytes(floatSpeed.bytes)} float`,
        ratio: `${(speed.bytes / floatSpeed.bytes).toFixed(2)}× float`,
        target: '—',
      });
      if (label.startsWith('INT4')) {
        const compared = await decodeSpeed(model, float);
        rows.push({
          section: 'chat',
          what: 'example INT4 side by side with float (3 streams): quantized answer, wall clock',
          result: `${compared.wallTokensPerSecond.toFixed(1)} tok/s`,
          baseline: `${speed.wallTokensPerSecond.toFixed(1)} tok/s alone`,
          ratio: `${(compared.wallTokensPerSecond / speed.wallTokensPerSecond).toFixed(2)}× alone`,
          target: '—',
        });
      }
      if (model !== float) await model.model.release();
    }
    await float.model.release();
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
