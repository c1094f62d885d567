/**
 * `quantlens chat MODEL [--compare ORIGINAL] --prompt TEXT [--greedy] [--json]`: one chat turn with a model
 * (a safetensors checkpoint folder, quantized or not, or a folder with model.onnx), streamed to stdout. With
 * --compare, the original answers the same prompt too, and each step of the quantized answer is compared with
 * the original teacher-forced on it (greedy agreement, KL divergence); the summary goes to stderr (or into
 * the JSON).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promises as fs } from 'node:fs';
import type { GenerationSettings, SideStats } from '../core/chat/generation';
import { Conversation, loadChatPair, pairPerplexity, releasePair, runPairTurn } from '../core/chat/modelPair';
import { describeChatError } from '../core/chat/errorMessages';
import { formatBytes } from '../core/util/format';
import { FlagSpec, UsageError, parseArgs, DEVICE_FLAG_DESCRIPTION, deviceFlag } from './args';

export const CHAT_FLAGS: Record<string, FlagSpec> = {
  compare: { type: 'string', description: 'the original checkpoint: answer side by side, per-step agreement and KL' },
  prompt: { type: 'string', description: 'the user message (required)' },
  system: { type: 'string', description: 'system prompt' },
  greedy: { type: 'boolean', description: 'always take the most probable token (same as --temperature 0)' },
  temperature: { type: 'number', description: 'sampling temperature (default 0.6; 0 = greedy)' },
  'top-p': { type: 'number', description: 'nucleus sampling mass (default 0.9)' },
  'max-new-tokens': { type: 'number', description: 'tokens to generate at most (default 128)' },
  seed: { type: 'number', description: 'sampler seed (default 0)' },
  perplexity: { type: 'string', description: 'also the perplexity of the model(s) on this text file' },
  device: { type: 'string', description: DEVICE_FLAG_DESCRIPTION },
  cache: { type: 'string', description: 'folder for ONNX graphs built from checkpoints (default ~/.cache/quantlens/graphs)' },
  json: { type: 'boolean', description: 'print the result as JSON (token ids, text, per-step comparison, speed)' },
};

/** The graph cache the CLI shares between runs. */
export function defaultGraphCache(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'quantlens', 'graphs');
}

export class ChatCommandError extends Error {}

export async function chatCommand(argv: readonly string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const { positionals, flags } = parseArgs(argv, CHAT_FLAGS);
  if (positionals.length !== 1) throw new UsageError('chat needs exactly one MODEL folder');
  if (typeof flags.prompt !== 'string' || flags.prompt.trim() === '') throw new UsageError('chat needs --prompt TEXT');
  const device = deviceFlag(flags.device);
  const settings: GenerationSettings = {
    temperature: flags.greedy ? 0 : ((flags.temperature as number | undefined) ?? 0.6),
    topP: (flags['top-p'] as number | undefined) ?? 0.9,
    maxNewTokens: (flags['max-new-tokens'] as number | undefined) ?? 128,
    seed: (flags.seed as number | undefined) ?? 0,
  };
  const json = flags.json === true;
  const perplexityText = typeof flags.perplexity === 'string' ? await fs.readFile(flags.perplexity, 'utf8').catch(() => {
    throw new UsageError(`cannot read --perplexity file ${flags.perplexity}`);
  }) : undefined;

  try {
    const pair = await loadChatPair(positionals[0]!, flags.compare as string | undefined, {
      cacheDir: (flags.cache as string | undefined) ?? defaultGraphCache(),
      device,
      onProgress: (what) => err.write(`${what}…\n`),
    });
    try {
      const comparing = pair.original !== undefined;
      if (!json && comparing) out.write(`── ${pair.quantized.info.label} (quantized)\n`);
      const result = await runPairTurn(pair, new Conversation(), (flags.system as string | undefined) ?? '', flags.prompt, settings, {
        // Without --compare the answer streams as it comes; with it, each answer is printed whole below.
        token: (side, _id, text) => {
          if (!json && side === 'quantized') out.write(text);
        },
      });
      if (!json) {
        out.write('\n');
        if (result.original) out.write(`── ${pair.original!.info.label} (original)\n${result.original.text}\n`);
      }
      const ppl = perplexityText !== undefined ? await pairPerplexity(pair, perplexityText) : undefined;
      if (json) {
        out.write(`${JSON.stringify({
          settings,
          quantized: { model: pair.quantized.info, ...result.quantized },
          ...(result.original ? { original: { model: pair.original!.info, ...result.original } } : {}),
          ...(comparing ? { comparison: { teacherForced: 'original on the quantized answer', meanKl: result.meanKl, agreement: result.agreement, steps: result.steps } } : {}),
          ...(ppl ? { perplexity: ppl } : {}),
        }, null, 1)}\n`);
      } else {
        const line = (name: string, s: SideStats) =>
          `${name}: ${s.generatedTokens} tokens (${s.stopReason}), prompt ${s.promptTokens} tokens in ${s.prefillMs.toFixed(0)} ms, ${Number.isNaN(s.tokensPerSecond) ? '–' : s.tokensPerSecond.toFixed(1)} tok/s, weights ${formatBytes(s.weightBytes)}, KV cache ${formatBytes(s.kvCacheBytes)}\n`;
        err.write(line(pair.quantized.info.label, result.quantized.stats));
        if (result.original) {
          err.write(line(pair.original!.info.label, result.original.stats));
          err.write(`original teacher-forced on the quantized answer: greedy choices agree on ${(result.agreement * 100).toFixed(1)}% of ${result.steps.length} steps, mean KL(original‖quantized) ${result.meanKl.toFixed(4)} nats\n`);
        }
        if (ppl) {
          err.write(`perplexity on ${flags.perplexity} (${ppl.quantized.tokens} tokens): ${pair.quantized.info.label} ${ppl.quantized.perplexity.toFixed(3)}${ppl.original ? `, ${pair.original!.info.label} ${ppl.original.perplexity.toFixed(3)}` : ''}\n`);
        }
      }
      return 0;
    } finally {
      await releasePair(pair);
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new ChatCommandError(describeChatError(error).message);
  }
}
