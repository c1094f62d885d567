/**
 * Generation and the side-by-side comparison of a quantized model with its original, over any causal
 * language model that runs a step with a key/value cache (`CausalLM`, implemented over onnxruntime in
 * runtime/causalLM.ts).
 *
 * The comparison runs three token streams in lockstep, one forward step of each per generated token:
 *   quantized     the quantized model answering the prompt (what the user sees on the right),
 *   original      the original model answering the same prompt on its own (what the user sees on the left),
 *   teacher       the original model fed the quantized model's tokens ("teacher-forced"): at each step of
 *                 the quantized answer it gives the original's next-token distribution for the very same
 *                 prefix, so the two distributions can be compared token by token even after the free
 *                 answers have gone different ways.
 * Per step of the quantized answer: whether the two models' greedy (argmax) choices agree and KL(P‖Q) of the
 * original's next-token distribution P against the quantized model's Q (temperature 1, whatever the sampling
 * settings are: the metric describes the models, not the sampler).
 *
 * While the original's own answer and the quantized answer are the same tokens, the teacher stream *is* the
 * original stream, and one forward serves both: onnxruntime returns fresh `present` tensors and never writes
 * its inputs, so a cache can be shared by two continuations. The streams part at the first differing token.
 *
 * Both free streams sample with their own generator seeded identically, so equal logits give equal text.
 */
import { PerplexityAccumulator, SamplingSettings, SeededRandom, argmax, klDivergence, sampleNext } from '../runtime/sampling';
import type { ChatMessage } from '../runtime/tokenizer';
import type { CausalLM, ForwardResult, KVCache } from '../runtime/causalLM';

/** What the engine needs of a tokenizer (ModelTokenizer in tokenizer.ts provides it). */
export interface ChatTokenizer {
  readonly stopTokenIds: readonly number[];
  readonly hasChatTemplate: boolean;
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  encodeChat(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): number[];
  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
  streamingDecoder(options?: { skipSpecialTokens?: boolean }): { push(id: number): string; flush(): string };
}

export interface GenerationSettings extends SamplingSettings {
  /** Tokens to generate at most (stop tokens end earlier). */
  readonly maxNewTokens: number;
  /** Seed of the sampler (both models use the same one). Ignored when greedy. */
  readonly seed: number;
}

export type Side = 'quantized' | 'original';

export type StopReason = 'stop-token' | 'max-tokens' | 'context-full' | 'stopped';

/** Speed and memory of one model in one turn. */
export interface SideStats {
  readonly promptTokens: number;
  readonly generatedTokens: number;
  readonly prefillMs: number;
  /** Time of the decode steps that produced generatedTokens − 1 tokens (the first comes from the prefill). */
  readonly decodeMs: number;
  /** Decode tokens per second (NaN when fewer than two tokens were generated). */
  readonly tokensPerSecond: number;
  readonly weightBytes: number;
  /** Key/value cache of the turn's last state. */
  readonly kvCacheBytes: number;
  readonly stopReason: StopReason;
}

/** One step of the quantized answer, compared with the original teacher-forced on the same prefix. */
export interface CompareStep {
  /** 0-based position in the quantized answer. */
  readonly index: number;
  /** The token the quantized model emitted at this step. */
  readonly token: number;
  readonly quantizedArgmax: number;
  readonly originalArgmax: number;
  readonly agree: boolean;
  /** KL(original ‖ quantized) of the next-token distributions, in nats. */
  readonly kl: number;
}

export interface ChatEvents {
  /** A token of one side's answer, with the text it completes (may be '' while a character is incomplete). */
  token?(side: Side, id: number, text: string): void;
  step?(step: CompareStep): void;
  done?(side: Side, stats: SideStats): void;
}

export interface ChatTurnResult {
  readonly quantized: SideResult;
  readonly original?: SideResult;
  readonly steps: readonly CompareStep[];
  /** Mean KL over the steps and the fraction of steps whose greedy choices agree. */
  readonly meanKl: number;
  readonly agreement: number;
}

export interface SideResult {
  readonly tokens: readonly number[];
  readonly text: string;
  readonly stats: SideStats;
}

export class ChatError extends Error {
  override readonly name = 'ChatError';
  constructor(
    readonly code: 'PromptTooLong' | 'VocabularyMismatch' | 'InvalidSettings',
    message: string,
  ) {
    super(message);
  }
}

/** The settings as the sampler reads them, after checking them (a clear error rather than NaN output). */
export function checkSettings(settings: GenerationSettings): void {
  const bad = (what: string) => {
    throw new ChatError('InvalidSettings', what);
  };
  if (!(settings.temperature >= 0) || !Number.isFinite(settings.temperature)) bad(`temperature must be 0 (greedy) or positive, got ${settings.temperature}`);
  if (settings.topP !== undefined && !(settings.topP > 0 && settings.topP <= 1)) bad(`top-p must be in (0, 1], got ${settings.topP}`);
  if (!Number.isInteger(settings.maxNewTokens) || settings.maxNewTokens < 1) bad(`max new tokens must be a positive integer, got ${settings.maxNewTokens}`);
  if (!Number.isSafeInteger(settings.seed)) bad(`the seed must be an integer, got ${settings.seed}`);
}

/** One model producing its own answer, a step at a time. */
class FreeStream {
  readonly tokens: number[] = [];
  text = '';
  cache: KVCache;
  /** Logits of the next token (after the prompt and tokens so far). */
  logits: Float32Array;
  finished: StopReason | null = null;
  decodeMs = 0;
  private readonly rng: SeededRandom;
  private readonly decoder: ReturnType<ChatTokenizer['streamingDecoder']>;
  private readonly stops: ReadonlySet<number>;

  constructor(
    readonly side: Side,
    readonly model: CausalLM,
    tokenizer: ChatTokenizer,
    readonly promptTokens: number,
    readonly prefillMs: number,
    prefill: ForwardResult,
    private readonly settings: GenerationSettings,
  ) {
    this.cache = prefill.cache;
    this.logits = lastRow(prefill.logits, model.vocabSize);
    this.rng = new SeededRandom(settings.seed);
    this.decoder = tokenizer.streamingDecoder({ skipSpecialTokens: true });
    this.stops = new Set(tokenizer.stopTokenIds);
  }

  /** Chooses the next token; marks the stream finished on a stop token. Returns the token and its text. */
  choose(): { id: number; text: string; stop: boolean } {
    const id = sampleNext(this.logits, this.settings, this.rng);
    if (this.stops.has(id)) {
      this.finished = 'stop-token';
      const rest = this.decoder.flush();
      this.text += rest;
      return { id, text: rest, stop: true };
    }
    this.tokens.push(id);
    const text = this.decoder.push(id);
    this.text += text;
    if (this.tokens.length >= this.settings.maxNewTokens) this.finish('max-tokens');
    else if (this.promptTokens + this.tokens.length >= this.model.maxPositions) this.finish('context-full');
    return { id, text, stop: false };
  }

  finish(reason: StopReason): string {
    if (this.finished === null) this.finished = reason;
    const rest = this.decoder.flush();
    this.text += rest;
    return rest;
  }

  async advance(id: number): Promise<void> {
    const started = performance.now();
    const out = await this.model.forward([id], this.cache, { lastOnly: true });
    this.decodeMs += performance.now() - started;
    this.adopt(out);
  }

  adopt(out: ForwardResult): void {
    this.cache = out.cache;
    this.logits = lastRow(out.logits, this.model.vocabSize);
  }

  stats(): SideStats {
    const decoded = Math.max(0, this.tokens.length - 1);
    return {
      promptTokens: this.promptTokens,
      generatedTokens: this.tokens.length,
      prefillMs: this.prefillMs,
      decodeMs: this.decodeMs,
      tokensPerSecond: decoded > 0 && this.decodeMs > 0 ? (decoded * 1000) / this.decodeMs : Number.NaN,
      weightBytes: this.model.weightBytes,
      kvCacheBytes: this.cache.bytes,
      stopReason: this.finished ?? 'stopped',
    };
  }
}

function lastRow(logits: Float32Array, vocab: number): Float32Array {
  if (logits.length % vocab !== 0 || logits.length === 0) throw new Error(`the model returned ${logits.length} logits, not a multiple of its vocabulary of ${vocab}`);
  return logits.subarray(logits.length - vocab);
}

async function timedForward(model: CausalLM, ids: readonly number[], past: KVCache | null): Promise<{ out: ForwardResult; ms: number }> {
  const started = performance.now();
  const out = await model.forward(ids, past, { lastOnly: true });
  return { out, ms: performance.now() - started };
}

export interface ChatParticipant {
  readonly model: CausalLM;
  readonly tokenizer: ChatTokenizer;
  /** The conversation so far plus the new user message, as this model saw it (its own earlier answers). */
  readonly messages: readonly ChatMessage[];
}

/** Renders the conversation with the model's chat template, ready for the assistant's answer. */
export function promptIds(participant: ChatParticipant): number[] {
  return participant.tokenizer.encodeChat(participant.messages, { addGenerationPrompt: true });
}

function checkPromptFits(ids: readonly number[], model: CausalLM): void {
  if (ids.length >= model.maxPositions) {
    throw new ChatError('PromptTooLong', `the prompt is ${ids.length} tokens; ${model.label} accepts at most ${model.maxPositions} (prompt and answer together). Clear the conversation or shorten the prompt.`);
  }
}

/**
 * One chat turn: the quantized model answers; with `original`, the original answers the same prompt side by
 * side and is teacher-forced on the quantized answer for the per-step comparison. Stops early when `signal`
 * aborts (the partial answers are returned with stop reason 'stopped').
 */
export async function chatTurn(
  quantized: ChatParticipant,
  original: ChatParticipant | undefined,
  settings: GenerationSettings,
  events: ChatEvents = {},
  signal?: AbortSignal,
): Promise<ChatTurnResult> {
  checkSettings(settings);
  if (original && original.model.vocabSize !== quantized.model.vocabSize) {
    throw new ChatError('VocabularyMismatch', `${quantized.model.label} has a vocabulary of ${quantized.model.vocabSize} tokens and ${original.model.label} one of ${original.model.vocabSize}: they cannot be compared token by token`);
  }
  const qPrompt = promptIds(quantized);
  checkPromptFits(qPrompt, quantized.model);
  const oPrompt = original ? promptIds(original) : [];
  if (original) checkPromptFits(oPrompt, original.model);

  const qPre = await timedForward(quantized.model, qPrompt, null);
  const q = new FreeStream('quantized', quantized.model, quantized.tokenizer, qPrompt.length, qPre.ms, qPre.out, settings);
  let o: FreeStream | undefined;
  /** The original teacher-forced on the quantized answer: its cache and next-token logits. */
  let teacher: { cache: KVCache; logits: Float32Array } | undefined;
  /** True while the teacher's token history equals the original stream's, so they share forwards. */
  let shared = false;
  if (original) {
    const oPre = await timedForward(original.model, oPrompt, null);
    o = new FreeStream('original', original.model, original.tokenizer, oPrompt.length, oPre.ms, oPre.out, settings);
    if (sameIds(qPrompt, oPrompt)) shared = true;
    else {
      const tPre = await original.model.forward(qPrompt, null, { lastOnly: true });
      teacher = { cache: tPre.cache, logits: lastRow(tPre.logits, original.model.vocabSize) };
    }
  }
  const teacherLogits = () => (shared ? o!.logits : teacher!.logits);
  const steps: CompareStep[] = [];
  let klSum = 0;
  let agreeCount = 0;

  const finishSide = (stream: FreeStream, reason: StopReason) => {
    const rest = stream.finish(reason);
    if (rest) events.token?.(stream.side, -1, rest);
  };

  while (q.finished === null || (o && o.finished === null)) {
    if (signal?.aborted) {
      if (q.finished === null) finishSide(q, 'stopped');
      if (o && o.finished === null) finishSide(o, 'stopped');
      break;
    }
    let qToken: number | undefined;
    if (q.finished === null) {
      if (o) {
        const p = teacherLogits();
        const qa = argmax(q.logits);
        const oa = argmax(p);
        const kl = klDivergence(p, q.logits);
        const step: CompareStep = { index: steps.length, token: -1, quantizedArgmax: qa, originalArgmax: oa, agree: qa === oa, kl };
        const chosen = q.choose();
        const complete = { ...step, token: chosen.id };
        steps.push(complete);
        klSum += kl;
        if (complete.agree) agreeCount++;
        events.step?.(complete);
        if (chosen.text || !chosen.stop) events.token?.('quantized', chosen.id, chosen.text);
        if (!chosen.stop) qToken = chosen.id;
      } else {
        const chosen = q.choose();
        if (chosen.text || !chosen.stop) events.token?.('quantized', chosen.id, chosen.text);
        if (!chosen.stop) qToken = chosen.id;
      }
      if (q.finished !== null) events.done?.('quantized', q.stats());
    }
    let oToken: number | undefined;
    if (o && o.finished === null) {
      const chosen = o.choose();
      if (chosen.text || !chosen.stop) events.token?.('original', chosen.id, chosen.text);
      if (!chosen.stop) oToken = chosen.id;
      if (o.finished !== null) events.done?.('original', o.stats());
    }

    // Advance the streams that go on. The teacher needs the quantized token only while the quantized answer
    // goes on; it shares the original's forward while both took the same token.
    const work: (() => Promise<void>)[] = [];
    if (qToken !== undefined && q.finished === null) work.push(() => q.advance(qToken!));
    const teacherNeeds = o !== undefined && qToken !== undefined && q.finished === null;
    if (o && oToken !== undefined && o.finished === null) {
      if (shared && teacherNeeds && oToken !== qToken) {
        // The answers part here: the teacher keeps the shared cache and continues on the quantized token.
        teacher = { cache: o.cache, logits: o.logits };
        shared = false;
      }
      const stream = o;
      work.push(() => stream.advance(oToken!));
    } else if (shared && teacherNeeds) {
      // The original finished; the teacher continues alone from the shared state.
      teacher = { cache: o!.cache, logits: o!.logits };
      shared = false;
    }
    if (teacherNeeds && !shared) {
      const t = teacher!;
      const token = qToken!;
      work.push(async () => {
        const out = await original!.model.forward([token], t.cache, { lastOnly: true });
        teacher = { cache: out.cache, logits: lastRow(out.logits, original!.model.vocabSize) };
      });
    }
    // One forward at a time: concurrent runs would share the cores and blur each model's tokens per second.
    for (const w of work) await w();
  }
  if (q.finished === 'stopped') events.done?.('quantized', q.stats());
  if (o?.finished === 'stopped') events.done?.('original', o.stats());

  const side = (s: FreeStream): SideResult => ({ tokens: [...s.tokens], text: s.text, stats: s.stats() });
  return {
    quantized: side(q),
    ...(o ? { original: side(o) } : {}),
    steps,
    meanKl: steps.length > 0 ? klSum / steps.length : Number.NaN,
    agreement: steps.length > 0 ? agreeCount / steps.length : Number.NaN,
  };
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export interface PerplexityResult {
  readonly tokens: number;
  readonly perplexity: number;
  readonly meanNll: number;
  readonly ms: number;
}

/**
 * Perplexity of `model` on `ids`: exp of the mean negative log-likelihood of tokens 1..n−1, each predicted
 * from all tokens before it. Runs in windows of `window` tokens through the cache (so memory stays bounded by
 * one window's logits); texts longer than the model's context are refused rather than silently truncated.
 */
export async function perplexity(model: CausalLM, ids: readonly number[], window = 256, signal?: AbortSignal): Promise<PerplexityResult> {
  if (ids.length < 2) throw new ChatError('InvalidSettings', `perplexity needs a text of at least 2 tokens, got ${ids.length}`);
  if (ids.length > model.maxPositions) throw new ChatError('PromptTooLong', `the text is ${ids.length} tokens; ${model.label} accepts at most ${model.maxPositions}`);
  const started = performance.now();
  const acc = new PerplexityAccumulator();
  const vocab = model.vocabSize;
  let cache: KVCache | null = null;
  for (let start = 0; start < ids.length; start += window) {
    if (signal?.aborted) throw new ChatError('InvalidSettings', 'perplexity stopped');
    const chunk = ids.slice(start, start + window);
    const out: ForwardResult = await model.forward(chunk, cache);
    cache = out.cache;
    for (let t = 0; t < chunk.length; t++) {
      const next = start + t + 1;
      if (next >= ids.length) break;
      acc.addLogits(out.logits.subarray(t * vocab, (t + 1) * vocab), ids[next]!);
    }
  }
  return { tokens: acc.tokens, perplexity: acc.perplexity, meanNll: acc.meanNll, ms: performance.now() - started };
}
