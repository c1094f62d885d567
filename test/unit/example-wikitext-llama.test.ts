/**
 * The trained example (examples/wikitext-llama, committed): a real safetensors checkpoint with tied embeddings,
 * laid out byte for byte as our writer lays it out; its held-out perplexity measured by QuantLens's runtime
 * equals the figure PyTorch recorded when it was trained (scripts/train-tiny-llama.py → training.json); its likeliest
 * next tokens are WikiText's words; a quantized copy made by the quantize job stays
 * close to it.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { readSafetensorsHeader } from '../../src/core/safetensors/reader';
import { buildHeader, referenceOrder } from '../../src/core/safetensors/writer';
import { loadChatModel, type LoadedChatModel } from '../../src/core/chat/modelPair';
import { defaultCalibrationDataset } from '../../src/core/runtime/dataset';
import { topTokens } from '../../src/core/runtime/sampling';
import { runQuantizeJob } from '../../src/core/jobs/quantize';
import { readTrainingRecord, windowsPerplexity, type TrainingRecord } from '../../scripts/wikitext-perplexity';
import { repoRoot, tempDir } from '../helpers/paths';

const example = () => join(repoRoot(), 'examples', 'wikitext-llama');

describe('example: wikitext-llama (trained)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let record: TrainingRecord;
  let text: string;
  before(async () => {
    tmp = tempDir('quantlens-wikitext-llama-');
    record = await readTrainingRecord(example());
    text = (await fs.readFile(defaultCalibrationDataset(), 'utf8')).replace(/\r\n?/g, '\n');
  });
  after(() => tmp.cleanup());

  const load = (folder: string) => loadChatModel(folder, { cacheDir: join(tmp.path, 'graphs'), device: 'cpu' });
  async function withModel<T>(folder: string, use: (m: LoadedChatModel) => Promise<T>): Promise<T> {
    const loaded = await load(folder);
    try {
      return await use(loaded);
    } finally {
      await loaded.model.release();
    }
  }

  it('is a bf16 Llama with tied embeddings (no lm_head tensor), at most 20 MB, laid out exactly as our writer lays it out', async () => {
    const config = JSON.parse(await fs.readFile(join(example(), 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(config.architectures, ['LlamaForCausalLM']);
    assert.equal(config.tie_word_embeddings, true);
    const file = join(example(), 'model.safetensors');
    const header = await readSafetensorsHeader(file);
    assert.ok(header.fileSize <= 20 * 1024 * 1024, `model.safetensors is ${header.fileSize} bytes`);
    const names = header.tensors.map((t) => t.name);
    assert.ok(!names.includes('lm_head.weight'));
    assert.ok(header.tensors.every((t) => t.dtype === 'BF16'));
    assert.equal(names.length, 2 + 9 * (config.num_hidden_layers as number), 'embed_tokens, norm, and 9 tensors per layer');
    // The header our writer builds for the same tensors, order and metadata is the file's header, byte for byte.
    const layout = [...header.tensors].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]);
    assert.deepEqual(layout.map((t) => t.name), referenceOrder(layout).map((t) => t.name));
    const ours = buildHeader(layout.map((t) => ({ spec: t, begin: t.dataOffsets[0], end: t.dataOffsets[1] })), header.metadata as Record<string, string>);
    const handle = await fs.open(file, 'r');
    try {
      const bytes = new Uint8Array(ours.length);
      await handle.read(bytes, 0, bytes.length, 0);
      assert.deepEqual(Buffer.from(bytes), Buffer.from(ours));
    } finally {
      await handle.close();
    }
    const checkpoint = await Checkpoint.open(example());
    assert.equal(checkpoint.tensors.length, names.length);
  });

  it('held-out test slice: the runtime perplexity equals the PyTorch figure recorded at training (within 0.1 %)', async () => {
    await withModel(example(), async ({ model, tokenizer }) => {
      // The recorded ids are WikiText-2 text of the held-out part: they decode to a passage of the shipped file.
      const passage = tokenizer.decode(record.data.test_slice_ids[0]!.slice(1, 200), { skipSpecialTokens: true }).trim();
      assert.ok(passage.length > 200 && text.includes(passage), `the test slice decodes to text that is not in the shipped file: ${passage.slice(0, 80)}`);
      const ours = await windowsPerplexity(model, record.data.test_slice_ids);
      const torch = record.figures.held_out_test_slice;
      assert.equal(ours.tokens, torch.tokens);
      assert.ok(Math.abs(ours.perplexity / torch.perplexity - 1) < 1e-3, `runtime ${ours.perplexity}, PyTorch ${torch.perplexity}`);
      // Trained, not noise: far below the 32,000 of a uniform guess, and above the training figure.
      assert.ok(ours.perplexity < 2000 && record.figures.held_out.perplexity > record.figures.train.perplexity);
    });
  });

  it('its ten likeliest next tokens after a WikiText sentence are words, numbers or punctuation of WikiText', async () => {
    // The model is weak (greedy decoding is degenerate; see its README), but what it learned is the text's
    // vocabulary: a synthetic model's top tokens would be arbitrary pieces of the 32,000.
    await withModel(example(), async ({ model, tokenizer }) => {
      const out = await model.forward(tokenizer.encode(' The album was released in'), null);
      const last = out.logits.subarray(out.logits.length - model.vocabSize);
      const top = topTokens(last, 10).map((t) => tokenizer.decode([t.id]).trim());
      const words = new Set(text.split(/\s+/));
      // A word of the text, or the first piece of one (after 195 steps "Les", of "Lesnar" 317 times, is among them).
      const starts = (token: string) => [...words].some((w) => w.startsWith(token));
      for (const token of top) assert.ok(token === '' || words.has(token) || starts(token), `${JSON.stringify(token)} (of ${JSON.stringify(top)}) is neither a word of WikiText nor the start of one`);
      assert.ok(top.filter((t) => /^[A-Za-z]+$/.test(t)).length >= 3, `too few words among ${JSON.stringify(top)}`);
    });
  });

  it('a W8A8 copy (the quantize job, round to nearest) has a test-slice perplexity within 2 % of the original', async () => {
    const out = join(tmp.path, 'w8a8');
    const summary = await runQuantizeJob({ model: example(), out, scheme: 'w8a8' });
    assert.equal(summary.quantizedLayers, 7 * 4);
    await withModel(out, async ({ model, info }) => {
      assert.equal(info.linearKinds.int8, 28);
      const quantized = await windowsPerplexity(model, record.data.test_slice_ids);
      const original = record.figures.held_out_test_slice.perplexity;
      assert.ok(Math.abs(quantized.perplexity / original - 1) < 0.02, `W8A8 ${quantized.perplexity}, original ${original}`);
      assert.notEqual(quantized.perplexity, original);
    });
  });
});
