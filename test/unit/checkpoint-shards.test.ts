// A shard opened on its own (the file a user double-clicks) and Git LFS pointer files given as weights: what
// `quantlens inspect` and the health scan report for them, on real files written to a temporary folder and on
// the shipped example (examples/tiny-llama: two bf16 shards and an index, lm_head in the second).
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Checkpoint, CheckpointError } from '../../src/core/safetensors/checkpoint';
import { SafetensorsError } from '../../src/core/safetensors/errors';
import { readSafetensorsHeader } from '../../src/core/safetensors/reader';
import { writeSafetensors } from '../../src/core/safetensors/writer';
import { analyzeCheckpoint } from '../../src/core/checkpoint/summary';
import { buildLayerMap } from '../../src/core/checkpoint/scheme';
import { scanHealth } from '../../src/core/inspect/health';
import { inspectCommand } from '../../src/cli/inspect';
import type { DType } from '../../src/core/dtypes/dtype';
import { repoRoot, tempDir } from '../helpers/paths';

const f32 = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);
const bf16 = (values: number[]) => new Uint8Array(new Uint16Array(Array.from(new Uint32Array(new Float32Array(values).buffer), (u) => u >>> 16)).buffer);
/** 16 FP8 E4M3 codes, all finite and non-zero (0x01..0x70). */
const fp8 = (seed: number) => new Uint8Array(Array.from({ length: 16 }, (_, i) => 1 + ((i * 7 + seed) % 0x70)));

type Tensor = { name: string; dtype: DType; shape: number[]; data: Uint8Array };

const PROJECTIONS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
const SHARD_1 = 'model-00001-of-00002.safetensors';
const SHARD_2 = 'model-00002-of-00002.safetensors';

/**
 * A one-block Llama with static FP8 (AutoFP8 layout), sharded the way save_pretrained splits by size: every
 * projection's weight and scales in shard 1 except q_proj's input_scale, which falls into shard 2 beside
 * lm_head (a module split across files), and an index mapping all of it.
 */
async function writeShardedFp8(folder: string, withIndex = true): Promise<void> {
  const shard1: Tensor[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [8, 4], data: bf16(Array.from({ length: 32 }, (_, i) => (i % 5) - 2)) }];
  for (const [i, p] of PROJECTIONS.entries()) {
    const module = `model.layers.0.${p}`;
    shard1.push({ name: `${module}.weight`, dtype: 'F8_E4M3', shape: [4, 4], data: fp8(i) });
    shard1.push({ name: `${module}.weight_scale`, dtype: 'F32', shape: [], data: f32([0.01 * (1 + i / 10)]) });
    if (p !== 'self_attn.q_proj') shard1.push({ name: `${module}.input_scale`, dtype: 'F32', shape: [], data: f32([0.02]) });
  }
  const shard2: Tensor[] = [
    { name: 'model.layers.0.self_attn.q_proj.input_scale', dtype: 'F32', shape: [], data: f32([0.02]) },
    { name: 'model.norm.weight', dtype: 'BF16', shape: [4], data: bf16([1, 1, 1, 1]) },
    { name: 'lm_head.weight', dtype: 'BF16', shape: [8, 4], data: bf16(Array.from({ length: 32 }, (_, i) => (i % 3) - 1)) },
  ];
  mkdirSync(folder, { recursive: true });
  await writeSafetensors(join(folder, SHARD_1), shard1);
  await writeSafetensors(join(folder, SHARD_2), shard2);
  writeFileSync(
    join(folder, 'config.json'),
    JSON.stringify({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: 4,
      num_hidden_layers: 1,
      tie_word_embeddings: false,
      quantization_config: { quant_method: 'fp8', activation_scheme: 'static', ignored_layers: ['lm_head'] },
    }),
  );
  if (withIndex) {
    const weight_map: Record<string, string> = {};
    for (const t of shard1) weight_map[t.name] = SHARD_1;
    for (const t of shard2) weight_map[t.name] = SHARD_2;
    writeFileSync(join(folder, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: [...shard1, ...shard2].reduce((s, t) => s + t.data.length, 0) }, weight_map }));
  }
}

/** Runs `quantlens inspect ARGS` in process: its exit code and everything it printed. */
async function inspect(args: string[]): Promise<{ code: number; text: string }> {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  const code = await inspectCommand(args, out);
  return { code, text };
}

/** A pointer file as `git lfs` writes it (oid and size of a made-up object). */
function lfsPointer(size: number, oidByte = 'a'): string {
  return `version https://git-lfs.github.com/spec/v1\noid sha256:${oidByte.repeat(64)}\nsize ${size}\n`;
}

describe('a shard opened on its own', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('beside its index: layers in the other shard are located, not missing, and a split module is judged whole', async () => {
    await writeShardedFp8(tmp.path);
    const path = join(tmp.path, SHARD_1);
    const checkpoint = await Checkpoint.open(path);
    try {
      // What the file holds stays what the view lists; the index only says where the rest is.
      assert.equal(checkpoint.layout, 'single-file');
      assert.equal(checkpoint.tensors.length, 1 + 7 * 2 + 6);
      assert.ok(checkpoint.tensors.every((t) => t.shard === SHARD_1));
      assert.equal(checkpoint.shardOf?.index, join(tmp.path, 'model.safetensors.index.json'));
      assert.equal(checkpoint.shardOf?.elsewhere.get('lm_head.weight'), SHARD_2);
      assert.deepEqual(checkpoint.companions.map((t) => `${t.name} ${t.shard}`), [`model.layers.0.self_attn.q_proj.input_scale ${SHARD_2}`]);
      assert.deepEqual(checkpoint.problems, []);

      const { summary, layerMap } = await analyzeCheckpoint(checkpoint, path);
      const lmHead = layerMap.modules.find((m) => m.name === 'lm_head');
      assert.equal(lmHead?.state, 'elsewhere');
      assert.equal(lmHead?.shard, SHARD_2);
      const qProj = layerMap.modules.find((m) => m.name === 'model.layers.0.self_attn.q_proj')!;
      assert.equal(qProj.state, 'quantized');
      assert.deepEqual(qProj.issues, [], 'its input_scale is in shard 2, read through the index');
      assert.deepEqual(summary.layerCounts, { quantized: 7, ignored: 0, unquantized: 0, missing: 0, elsewhere: 1 });
      assert.deepEqual(summary.scheme.disagreements, []);
      assert.equal(summary.shardOf, 'model.safetensors.index.json');

      const report = await scanHealth(checkpoint, layerMap);
      assert.deepEqual(report.findings.map((f) => f.message), []);
      // Every projection's scales were read, q_proj's input_scale from the neighbouring shard.
      assert.equal(report.scales.find((s) => s.module === 'model.layers.0.self_attn.q_proj')?.scales.map((s) => s.role).sort().join(','), 'input_scale,weight_scale');
    } finally {
      await checkpoint.close();
    }
  });

  it('without its index: what the file lacks is reported honestly, in the singular for one layer', async () => {
    const full = join(tmp.path, 'full');
    await writeShardedFp8(full);
    const alone = join(tmp.path, 'alone');
    mkdirSync(alone);
    copyFileSync(join(full, SHARD_1), join(alone, SHARD_1));
    copyFileSync(join(full, 'config.json'), join(alone, 'config.json'));
    const { code, text } = await inspect([join(alone, SHARD_1), '--scan', '--layers']);
    assert.equal(code, 1, text);
    assert.match(text, /disagreement: 1 layer implied by config\.json is missing\n/);
    assert.match(text, /error: lm_head: config\.json implies this layer, but the checkpoint has no weight for it/);
    assert.match(text, /model\.layers\.0\.self_attn\.q_proj: config declares static input activations, but there is no input_scale/);
    assert.doesNotMatch(text, /in other shards|are missing/);
  });

  it('counts several missing layers in the plural', () => {
    const map = buildLayerMap([], undefined, { numHiddenLayers: 1, tieWordEmbeddings: false, hasConfig: true });
    assert.equal(map.counts.missing, 8);
    assert.deepEqual(map.scheme.disagreements, ['8 layers implied by config.json are missing']);
  });

  it('`quantlens inspect SHARD --scan` on the shipped example reports no missing layer and says where lm_head is', async function () {
    const example = join(repoRoot(), 'examples', 'tiny-llama');
    if (!existsSync(join(example, 'model.safetensors.index.json'))) {
      throw new Error(`the example checkpoint is missing at ${example}: run \`npm run example\` (or node out/scripts/make-example.js examples/tiny-llama)`);
    }
    const { code, text } = await inspect([join(example, SHARD_1), '--scan', '--limit', '0']);
    assert.equal(code, 0, text);
    assert.match(text, /one shard of the checkpoint indexed by model\.safetensors\.index\.json/);
    assert.match(text, /linear {7}0 quantized, 0 ignored, 28 unquantized, 1 in other shards\n {2}lm_head: in model-00002-of-00002\.safetensors\n/);
    assert.match(text, /problems {5}none/);
    assert.match(text, /health scan: 28 tensors \(.*\), 0 errors, 0 warnings/);
    assert.doesNotMatch(text, /missing/);

    // The second shard: the blocks it does not hold are in the first; its lm_head is its own.
    const second = await inspect([join(example, SHARD_2), '--layers', '--limit', '0']);
    assert.equal(second.code, 0, second.text);
    assert.match(second.text, /model\.layers\.0\.self_attn\.q_proj +elsewhere +in model-00001-of-00002\.safetensors/);
    assert.match(second.text, /lm_head +unquantized +float/);
    assert.doesNotMatch(second.text, /missing/);
  });
});

describe('Git LFS pointer files given as weights', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('one pointer file: the parser, the checkpoint and the CLI say what it is, how large the object is and what to run', async () => {
    const file = join(tmp.path, 'model.safetensors');
    writeFileSync(file, lfsPointer(4_976_698_672));
    const expected = /model\.safetensors: this is a Git LFS pointer file, not the weights: it stands for an object of 4,976,698,672 bytes \(sha256:aaaaaaaaaaaa…\) that was not downloaded; run `git lfs pull` in the repository to fetch it \(GitLfsPointer\)$/;
    await assert.rejects(readSafetensorsHeader(file), (error: unknown) => error instanceof SafetensorsError && error.code === 'GitLfsPointer' && expected.test(error.message));
    await assert.rejects(Checkpoint.open(file), expected);
    await assert.rejects(inspect([file, '--scan']), expected);
    // Through the folder, too (a folder with one weight file opens that file).
    await assert.rejects(Checkpoint.open(tmp.path), expected);
  });

  it('a sharded folder of pointers says so once, naming every file', async () => {
    writeFileSync(join(tmp.path, SHARD_1), lfsPointer(4_000_000_000, 'b'));
    writeFileSync(join(tmp.path, SHARD_2), lfsPointer(1_500_000_000, 'c'));
    writeFileSync(join(tmp.path, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'a.weight': SHARD_1, 'b.weight': SHARD_2 } }));
    const check = (error: unknown) => {
      assert.ok(error instanceof CheckpointError, String(error));
      assert.equal(error.code, 'GitLfsPointers');
      assert.match(
        error.message,
        /: 2 shard files are Git LFS pointers, not weights: model-00001-of-00002\.safetensors \(4,000,000,000 bytes\), model-00002-of-00002\.safetensors \(1,500,000,000 bytes\); the 5,500,000,000 bytes they stand for were not downloaded; run `git lfs pull` in /,
      );
      assert.equal(error.message.split('git lfs pull').length, 2, 'said once');
      return true;
    };
    await assert.rejects(Checkpoint.open(tmp.path), check);
    await assert.rejects(inspect([join(tmp.path, 'model.safetensors.index.json')]), check);

    // Without the index (a folder of shards), the same single message.
    const { rmSync } = await import('node:fs');
    rmSync(join(tmp.path, 'model.safetensors.index.json'));
    await assert.rejects(Checkpoint.open(tmp.path), check);
  });

  it('a checkpoint with one pointer among real shards opens, with one problem naming that file', async () => {
    await writeShardedFp8(tmp.path);
    writeFileSync(join(tmp.path, SHARD_2), lfsPointer(2_345));
    const { code, text } = await inspect([tmp.path]);
    assert.equal(code, 1);
    assert.match(text, /problems {5}1 error, 0 warnings\n {2}error: 1 shard file is a Git LFS pointer, not weights: model-00002-of-00002\.safetensors \(2,345 bytes\); the 2,345 bytes it stands for were not downloaded; run `git lfs pull` in /);
  });

  it('a small file that only starts like a pointer is still read (and rejected) as safetensors', async () => {
    const file = join(tmp.path, 'model.safetensors');
    writeFileSync(file, 'version 2 of my notes\nsize 12\n');
    await assert.rejects(readSafetensorsHeader(file), (error: unknown) => error instanceof SafetensorsError && error.code === 'HeaderTooLarge');
  });
});
