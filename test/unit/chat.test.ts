/**
 * The chat engine on the shipped example (examples/tiny-llama, `npm run example`) and an INT4 checkpoint
 * quantized from it, against an independent reference written here: a plain greedy loop that calls the ONNX
 * session directly with full recomputation (no KV cache), argmax and KL in float64. Token ids must equal the
 * engine's and the CLI's; the prompt fed to the model must be the Llama-3 prompt of docs/runtime.md §6.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { chatTurn, perplexity } from '../../src/core/chat/generation';
import { ChatPair, loadChatPair, releasePair, turnMessages } from '../../src/core/chat/modelPair';
import { describeChatError } from '../../src/core/chat/errorMessages';
import { ModelTokenizer } from '../../src/core/runtime/tokenizer';
import { repoRoot, tempDir } from '../helpers/paths';
import { runCliCapturingStdout } from '../helpers/runCli';

const SYSTEM = 'You are a concise assistant.';
const PROMPT = 'What is 4-bit quantization?';
/** The expected prompt, verbatim from docs/runtime.md §6. */
const GUIDE_PROMPT =
  '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a concise assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 4-bit quantization?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n';
const GREEDY = { temperature: 0, maxNewTokens: 12, seed: 0 } as const;

/** The reference: one full forward over `ids` (empty cache), returning every row's logits in float64. */
async function fullForward(session: ort.InferenceSession, ids: readonly number[]): Promise<Float64Array[]> {
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
  };
  for (const meta of session.inputMetadata) {
    if (!meta.name.startsWith('past_key_values.') || !meta.isTensor) continue;
    feeds[meta.name] = new ort.Tensor('float32', new Float32Array(0), [1, meta.shape[1] as number, 0, meta.shape[3] as number]);
  }
  const out = await session.run(feeds);
  const logits = out.logits!.data as Float32Array;
  const vocab = logits.length / ids.length;
  return Array.from({ length: ids.length }, (_, t) => Float64Array.from(logits.subarray(t * vocab, (t + 1) * vocab)));
}

function argmax64(row: Float64Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

function logSoftmax64(row: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const log = max + Math.log(sum);
  return row.map((v) => v - log);
}

/** Greedy decoding by full recomputation: the whole sequence through the session at every step. */
async function referenceGreedy(session: ort.InferenceSession, prompt: readonly number[], stops: ReadonlySet<number>, maxNew: number): Promise<number[]> {
  const ids = [...prompt];
  const answer: number[] = [];
  while (answer.length < maxNew) {
    const rows = await fullForward(session, ids);
    const next = argmax64(rows.at(-1)!);
    if (stops.has(next)) break;
    answer.push(next);
    ids.push(next);
  }
  return answer;
}

describe('chat: generation and comparison on the example model', function () {
  this.timeout(600_000);
  const example = join(repoRoot(), 'examples', 'tiny-llama');
  let tmp: ReturnType<typeof tempDir>;
  let int4: string;
  let cacheDir: string;
  let pair: ChatPair;

  before(async function () {
    if (!existsSync(join(example, 'config.json'))) throw new Error(`${example} is missing: run \`npm run example\` first`);
    tmp = tempDir('quantlens-chat-');
    int4 = join(tmp.path, 'tiny-llama-w4a16');
    cacheDir = join(tmp.path, 'graphs');
    await runQuantizeJob({ model: example, out: int4, scheme: 'w4a16-rtn' });
    pair = await loadChatPair(int4, example, { cacheDir, intraOpNumThreads: 1 });
  });
  after(async () => {
    if (pair) await releasePair(pair);
    tmp?.cleanup();
  });

  it('feeds the model the Llama-3 prompt of the guide (system prompt + user message, generation header)', () => {
    const ids = pair.quantized.tokenizer.encodeChat(turnMessages(SYSTEM, [], PROMPT), { addGenerationPrompt: true });
    assert.equal(pair.quantized.tokenizer.decode(ids), GUIDE_PROMPT);
    assert.equal(ids.length, 29);
    assert.deepEqual(pair.quantized.info.linearKinds, { int4: 28, float: 1 });
    assert.deepEqual(pair.original!.info.linearKinds, { float: 29 });
  });

  it('greedy answers of both models equal a full-recomputation reference loop, and the per-step KL and agreement equal the reference', async () => {
    const tokens = { quantized: [] as number[], original: [] as number[] };
    const streamed = { quantized: '', original: '' };
    const result = await chatTurn(
      { model: pair.quantized.model, tokenizer: pair.quantized.tokenizer, messages: turnMessages(SYSTEM, [], PROMPT) },
      { model: pair.original!.model, tokenizer: pair.original!.tokenizer, messages: turnMessages(SYSTEM, [], PROMPT) },
      GREEDY,
      { token: (side, id, text) => (id >= 0 && tokens[side].push(id), (streamed[side] += text)) },
    );
    const prompt = pair.quantized.tokenizer.encodeChat(turnMessages(SYSTEM, [], PROMPT), { addGenerationPrompt: true });
    const stops = new Set(pair.quantized.tokenizer.stopTokenIds);
    const qSession = await ort.InferenceSession.create(pair.quantized.model.path);
    const oSession = await ort.InferenceSession.create(pair.original!.model.path);
    try {
      const qRef = await referenceGreedy(qSession, prompt, stops, GREEDY.maxNewTokens);
      const oRef = await referenceGreedy(oSession, prompt, stops, GREEDY.maxNewTokens);
      assert.deepEqual(result.quantized.tokens, qRef);
      assert.deepEqual(result.original!.tokens, oRef);
      assert.deepEqual(tokens.quantized, qRef);
      assert.equal(streamed.quantized, pair.quantized.tokenizer.decode(qRef, { skipSpecialTokens: true }));
      assert.equal(result.original!.text, pair.original!.tokenizer.decode(oRef, { skipSpecialTokens: true }));
      assert.ok(result.quantized.stats.tokensPerSecond > 0);
      assert.ok(result.quantized.stats.kvCacheBytes > 0 && result.quantized.stats.weightBytes > 0);

      // Teacher forcing: the original over prompt + quantized answer, every row at once.
      const oRows = await fullForward(oSession, [...prompt, ...qRef]);
      const qRows = await fullForward(qSession, [...prompt, ...qRef]);
      assert.equal(result.steps.length, qRef.length);
      let agree = 0;
      for (const step of result.steps) {
        const p = oRows[prompt.length - 1 + step.index]!;
        const q = qRows[prompt.length - 1 + step.index]!;
        const lp = logSoftmax64(p);
        const lq = logSoftmax64(q);
        let kl = 0;
        for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
        assert.equal(step.originalArgmax, argmax64(p), `step ${step.index}: original argmax`);
        assert.equal(step.quantizedArgmax, argmax64(q), `step ${step.index}: quantized argmax`);
        assert.ok(Math.abs(step.kl - kl) <= 1e-4 + 1e-3 * kl, `step ${step.index}: KL ${step.kl} vs reference ${kl}`);
        if (step.originalArgmax === step.quantizedArgmax) agree++;
      }
      assert.equal(result.agreement, agree / result.steps.length);
      // INT4 round-to-nearest changes the synthetic model's distributions measurably.
      assert.ok(result.meanKl > 0);
    } finally {
      await qSession.release();
      await oSession.release();
    }
  });

  it('quantlens chat --greedy --json prints the same tokens as the reference loop', async () => {
    const { code, stdout } = await runCliCapturingStdout(['chat', int4, '--compare', example, '--system', SYSTEM, '--prompt', PROMPT, '--greedy', '--max-new-tokens', String(GREEDY.maxNewTokens), '--json', '--cache', cacheDir]);
    assert.equal(code, 0);
    const json = JSON.parse(stdout) as { quantized: { tokens: number[]; text: string }; original: { tokens: number[] }; comparison: { steps: unknown[] } };
    const prompt = pair.quantized.tokenizer.encodeChat(turnMessages(SYSTEM, [], PROMPT), { addGenerationPrompt: true });
    const session = await ort.InferenceSession.create(pair.quantized.model.path);
    try {
      assert.deepEqual(json.quantized.tokens, await referenceGreedy(session, prompt, new Set(pair.quantized.tokenizer.stopTokenIds), GREEDY.maxNewTokens));
    } finally {
      await session.release();
    }
    assert.equal(json.comparison.steps.length, json.quantized.tokens.length);
  });

  it('stops mid-generation with the partial answer', async () => {
    const controller = new AbortController();
    let seen = 0;
    const result = await chatTurn(
      { model: pair.quantized.model, tokenizer: pair.quantized.tokenizer, messages: turnMessages('', [], 'Hello') },
      undefined,
      { temperature: 0.8, topP: 0.9, maxNewTokens: 200, seed: 3 },
      { token: () => ++seen === 3 && controller.abort() },
      controller.signal,
    );
    assert.equal(result.quantized.tokens.length, 3);
    assert.equal(result.quantized.stats.stopReason, 'stopped');
  });

  it('sampling is reproducible from the seed and equal logits give equal text on both sides', async () => {
    const settings = { temperature: 0.9, topP: 0.95, maxNewTokens: 8, seed: 42 };
    const messages = turnMessages('', [], 'Tell me a story');
    const same = { model: pair.original!.model, tokenizer: pair.original!.tokenizer, messages };
    const a = await chatTurn(same, same, settings);
    const b = await chatTurn(same, undefined, settings);
    assert.deepEqual(a.quantized.tokens, a.original!.tokens);
    assert.deepEqual(a.quantized.tokens, b.quantized.tokens);
    assert.ok(a.steps.every((s) => s.agree && s.kl < 1e-9), 'a model compared with itself agrees everywhere with KL 0');
  });

  it('perplexity through cached windows equals the reference over one full forward', async () => {
    const ids = pair.quantized.tokenizer.encode('Quantization maps weights to a few levels; the error shows in the logits.');
    const result = await perplexity(pair.quantized.model, ids, 5);
    const session = await ort.InferenceSession.create(pair.quantized.model.path);
    try {
      const rows = await fullForward(session, ids);
      let nll = 0;
      for (let t = 0; t + 1 < ids.length; t++) nll -= logSoftmax64(rows[t]!)[ids[t + 1]!]!;
      const reference = Math.exp(nll / (ids.length - 1));
      assert.equal(result.tokens, ids.length - 1);
      assert.ok(Math.abs(result.perplexity - reference) / reference < 1e-4, `${result.perplexity} vs ${reference}`);
    } finally {
      await session.release();
    }
  });

  it('says in plain words when the tokenizer or the chat template is missing', async () => {
    const noTokenizer = join(tmp.path, 'no-tokenizer');
    await fs.mkdir(noTokenizer);
    await fs.copyFile(join(example, 'config.json'), join(noTokenizer, 'config.json'));
    const missing = await loadChatPair(noTokenizer, undefined, { cacheDir }).then(
      () => assert.fail('loaded a model without tokenizer'),
      (error: unknown) => describeChatError(error),
    );
    assert.equal(missing.code, 'NoTokenizer');
    assert.match(missing.message, /no tokenizer\.json/);

    // A base model: the tokenizer without chat_template, the graph already built.
    const base = join(tmp.path, 'base');
    await fs.mkdir(base);
    const config = JSON.parse(await fs.readFile(join(example, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    delete config.chat_template;
    await fs.writeFile(join(base, 'tokenizer_config.json'), JSON.stringify(config));
    await fs.copyFile(join(example, 'tokenizer.json'), join(base, 'tokenizer.json'));
    await fs.symlink(pair.original!.model.path, join(base, 'model.onnx'));
    await fs.symlink(`${pair.original!.model.path}.data`, join(base, 'model.onnx.data'));
    const tokenizer = await ModelTokenizer.load(base);
    const error = await chatTurn({ model: pair.original!.model, tokenizer, messages: turnMessages('', [], 'Hi') }, undefined, GREEDY).then(
      () => assert.fail('chatted without a chat template'),
      (e: unknown) => describeChatError(e),
    );
    assert.equal(error.code, 'NoChatTemplate');
    assert.match(error.message, /no chat template/i);
  });
});
