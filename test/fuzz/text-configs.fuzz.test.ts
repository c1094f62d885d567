/**
 * Fuzzing the text inputs beside a checkpoint: recipes (the verbatim upstream recipes of
 * test/fixtures/recipes), config.json, quantize_config.json and *.safetensors.index.json. Every mutated file
 * must end in a valid result (recipe/config diagnostics, a parsed config, an opened checkpoint) or one of
 * the project's typed errors naming the file — never an untyped exception, a hang or unbounded memory.
 * Seeds are printed on failure (rng(seed) of test/helpers/random.ts replays a case).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from '../helpers/random';
import { mutateJsonValue, mutateText, runFuzz } from '../helpers/mutate';
import { repoRoot, tempDir } from '../helpers/paths';
import { analyzeRecipe, validateQuantizationConfig } from '../../src/core/recipe';
import { readModelConfig } from '../../src/core/checkpoint/config';
import { parseDecoderConfig, ModelConfigError } from '../../src/core/runtime/llama/config';
import { Checkpoint, CheckpointError } from '../../src/core/safetensors/checkpoint';
import { SafetensorsError } from '../../src/core/safetensors/errors';

const fixtures = () => join(repoRoot(), 'test', 'fixtures', 'recipes');
const example = () => join(repoRoot(), 'examples', 'tiny-llama');
const decode = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

const GPTQ_QUANTIZE_CONFIG = { bits: 4, group_size: 128, damp_percent: 0.01, desc_act: false, static_groups: false, sym: true, true_sequential: true, model_name_or_path: null, model_file_base_name: 'model', quant_method: 'gptq', checkpoint_format: 'gptq' };
const CT_CONFIG = {
  quantization_config: {
    quant_method: 'compressed-tensors',
    format: 'pack-quantized',
    config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: true, strategy: 'group', group_size: 128 } } },
    ignore: ['lm_head'],
  },
};

describe('fuzz: mutated recipes, config.json, quantize_config.json and index.json', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('quantlens-fuzz-text-')));
  after(() => tmp.cleanup());

  it('200 mutated upstream recipes each give diagnostics, never an exception, a hang or memory growth', async () => {
    const recipes = readdirSync(fixtures()).filter((n) => n.endsWith('.yaml')).map((n) => readFileSync(join(fixtures(), n), 'utf8'));
    const outcomes = await runFuzz({
      cases: 200,
      seedBase: 10_000,
      caseMs: 10_000,
      maxRssGrowth: 512 * 1024 * 1024,
      run: async (i, seed) => {
        const random = rng(seed);
        const { bytes, names } = mutateText(recipes[i % recipes.length]!, random, i);
        // Mutations that add anchors and aliases (randomUnicode inserts '&a' / '*a') are kept: the recipe
        // parser bounds alias expansion itself.
        const analysis = analyzeRecipe(decode(bytes));
        assert.ok(Array.isArray(analysis.diagnostics), `${names.join('+')}: diagnostics must be a list`);
        for (const d of analysis.diagnostics) assert.equal(typeof d.message, 'string');
        return analysis.diagnostics.some((d) => d.severity === 'error') ? 'errors' : 'clean';
      },
    });
    assert.ok((outcomes['errors'] ?? 0) > 20 && (outcomes['clean'] ?? 0) > 5, JSON.stringify(outcomes));
  });

  it('400 mutated config.json / quantize_config.json files each give a parse, diagnostics or a typed error naming the file', async () => {
    const modelConfig = readFileSync(join(example(), 'config.json'), 'utf8');
    const bases = [modelConfig, JSON.stringify({ ...JSON.parse(modelConfig), ...CT_CONFIG }, null, 2), JSON.stringify(GPTQ_QUANTIZE_CONFIG, null, 2)];
    const folder = join(tmp.path, 'config');
    mkdirSync(folder, { recursive: true });
    const path = join(folder, 'config.json');
    const outcomes = await runFuzz({
      cases: 400,
      seedBase: 20_000,
      caseMs: 10_000,
      maxRssGrowth: 512 * 1024 * 1024,
      run: async (i, seed) => {
        const random = rng(seed);
        const base = bases[i % bases.length]!;
        const bytes = random() < 0.3 ? new Uint8Array(Buffer.from(JSON.stringify(mutateJsonValue(JSON.parse(base), random)))) : mutateText(base, random, i).bytes;
        const text = decode(bytes);
        const diagnostics = validateQuantizationConfig(text);
        assert.ok(Array.isArray(diagnostics));
        writeFileSync(path, bytes);
        const read = await readModelConfig(folder);
        if (read.error !== undefined) {
          assert.ok(read.error.includes(path), `the error names the file: ${read.error}`);
          return 'unreadable';
        }
        if (read.raw === undefined) return 'absent';
        try {
          parseDecoderConfig(read.raw);
          return 'decoder';
        } catch (error) {
          assert.ok(error instanceof ModelConfigError, `untyped: ${String(error)}`);
          assert.match(error.message, /^config\.json /);
          return 'refused';
        }
      },
    });
    assert.ok((outcomes['unreadable'] ?? 0) > 20 && (outcomes['decoder'] ?? 0) > 20, JSON.stringify(outcomes));
  });

  it('200 mutated model.safetensors.index.json files each open as a checkpoint (problems reported) or end in a typed error naming the file', async () => {
    const folder = join(tmp.path, 'ckpt');
    mkdirSync(folder, { recursive: true });
    for (const name of readdirSync(example()).filter((n) => n.endsWith('.safetensors'))) copyFileSync(join(example(), name), join(folder, name));
    const index = readFileSync(join(example(), 'model.safetensors.index.json'), 'utf8');
    const indexPath = join(folder, 'model.safetensors.index.json');
    const outcomes = await runFuzz({
      cases: 200,
      seedBase: 30_000,
      caseMs: 10_000,
      maxRssGrowth: 512 * 1024 * 1024,
      run: async (i, seed) => {
        const random = rng(seed);
        const bytes = random() < 0.3 ? new Uint8Array(Buffer.from(JSON.stringify(mutateJsonValue(JSON.parse(index), random)))) : mutateText(index, random, i).bytes;
        writeFileSync(indexPath, bytes);
        try {
          const checkpoint = await Checkpoint.open(folder);
          const problems = checkpoint.problems.length;
          await checkpoint.close();
          return problems > 0 ? 'problems' : 'ok';
        } catch (error) {
          assert.ok(error instanceof CheckpointError || error instanceof SafetensorsError, `untyped: ${String(error)}`);
          assert.ok(error.message.includes(folder), `the message names the file: ${error.message}`);
          return 'error';
        }
      },
    });
    assert.ok((outcomes['error'] ?? 0) + (outcomes['problems'] ?? 0) > 50 && (outcomes['ok'] ?? 0) > 5, JSON.stringify(outcomes));
  });
});
