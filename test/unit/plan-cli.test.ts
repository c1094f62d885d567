/**
 * `quantlens plan` as a user runs it on the example model: the recipe it writes validates, `quantize --recipe`
 * runs it into a mixed checkpoint in which the inspector's layer map finds the planned scheme on every layer;
 * the plan meets its budget; an impossible budget stops before any measurement with the minimum named; usage
 * mistakes are usage errors.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir } from '../helpers/paths';
import { Checkpoint } from '../../src/core/safetensors/checkpoint';
import { readModelConfig } from '../../src/core/checkpoint/config';
import { buildLayerMap } from '../../src/core/checkpoint/scheme';
import { parseCandidate } from '../../src/core/plan/candidates';
import type { PlanSummary } from '../../src/core/plan/planJob';

const example = () => join(repoRoot(), 'examples', 'tiny-llama');

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'quantlens.js'), ...args], { encoding: 'utf8', timeout: 600_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('plan: CLI, recipe, quantize --recipe', function () {
  this.timeout(900_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    if (!existsSync(join(repoRoot(), 'dist', 'cli.js'))) throw new Error('dist/cli.js is missing (node esbuild.mjs builds it)');
    tmp = tempDir();
  });
  after(() => tmp.cleanup());

  it('plans under a bits budget, and the recipe quantizes into the planned mixed checkpoint', () => {
    const recipe = join(tmp.path, 'plan.yaml');
    const planned = cli('plan', example(), '--calib', 'default', '--samples', '2', '--seq-len', '16', '--candidates', 'w4a16:g64,w8a16,fp8-dynamic', '--bits', '6', '--out', recipe, '--json');
    assert.equal(planned.status, 0, planned.stderr);
    const plan = JSON.parse(planned.stdout) as PlanSummary;
    assert.equal(plan.layers.length, 28);
    assert.ok(plan.bytes <= plan.budgetBytes && plan.bitsPerWeight <= 6, `${plan.bytes} bytes, ${plan.bitsPerWeight} bits`);
    assert.equal(plan.budgetBytes, Math.floor((6 * plan.weights) / 8));
    assert.equal(plan.bytes, plan.layers.reduce((s, l) => s + l.bytes, 0));
    // A mix: a budget between the smallest and largest plans is not met by one scheme everywhere.
    assert.ok(new Set(plan.layers.map((l) => l.scheme)).size >= 2, JSON.stringify(plan.layers.map((l) => l.scheme)));
    assert.ok(Math.abs(plan.totalKl - plan.layers.reduce((s, l) => s + l.kl, 0)) < 1e-12);

    const validated = cli('validate', recipe, '--model', example());
    assert.equal(validated.status, 0, validated.stdout + validated.stderr);

    const out = join(tmp.path, 'mixed');
    const quantized = cli('quantize', example(), '--recipe', recipe, '--calib', 'default', '--samples', '2', '--seq-len', '16', '--out', out);
    assert.equal(quantized.status, 0, quantized.stderr);
    const summary = JSON.parse(quantized.stdout) as { quantizedLayers: number; format: string };
    assert.equal(summary.quantizedLayers, 28);
    assert.equal(summary.format, 'mixed-precision');

    // The inspector's view of the output: every layer carries the planned scheme, stored as declared.
    return (async () => {
      const checkpoint = await Checkpoint.open(out);
      try {
        const config = await readModelConfig(out);
        const map = buildLayerMap(checkpoint.tensors, config.raw!.quantization_config, { numHiddenLayers: 4, hasConfig: true });
        for (const layer of plan.layers) {
          const module = map.modules.find((m) => m.name === layer.module)!;
          assert.equal(module.state, 'quantized', layer.module);
          assert.deepEqual(module.issues, [], layer.module);
          const expected = parseCandidate(layer.scheme).scheme!;
          const w = module.declared!.scheme!.weights!;
          assert.deepEqual([w.type, w.numBits, w.strategy, w.groupSize], [expected.weights!.type, expected.weights!.numBits, expected.weights!.strategy, expected.weights!.groupSize], layer.module);
          assert.equal(Boolean(module.declared!.scheme!.inputActivations), Boolean(expected.inputActivations), layer.module);
          // The bytes the plan counted are the bytes written.
          const written = module.tensors.reduce((s, name) => s + checkpoint.tensor(name).byteLength, 0);
          assert.equal(written, layer.bytes, layer.module);
        }
      } finally {
        await checkpoint.close();
      }
    })();
  });

  it('prints the per-layer table without --json', () => {
    const recipe = join(tmp.path, 'table.yaml');
    const planned = cli('plan', example(), '--calib', 'default', '--samples', '1', '--seq-len', '8', '--candidates', 'w4a16,bf16', '--size', '3000000', '--out', recipe);
    assert.equal(planned.status, 0, planned.stderr);
    assert.match(planned.stdout, /^layer +scheme +KL \(nats\) +proxy +bytes$/m);
    assert.match(planned.stdout, /^model\.layers\.0\.mlp\.down_proj +(w4a16|bf16) /m);
    assert.match(planned.stdout, /^planned \d+ bytes = [\d.]+ bits per weight over 3145728 weights \(budget 3000000 bytes/m);
    assert.match(readFileSync(recipe, 'utf8'), /re:\^model\\\.layers\\\.\d\\\.(self_attn|mlp)\\\.\w+_proj\$/);
  });

  it('an impossible budget stops before the measurement and names the smallest plan', () => {
    const recipe = join(tmp.path, 'none.yaml');
    const planned = cli('plan', example(), '--calib', 'default', '--candidates', 'w4a16,w8a16', '--bits', '2', '--out', recipe);
    assert.equal(planned.status, 1);
    assert.match(planned.stderr, /the budget of 786432 bytes \(2\.000 bits per weight\) is below the smallest possible plan, 1622464 bytes \(4\.126 bits per weight\)/);
    assert.equal(existsSync(recipe), false);
  });

  it('usage mistakes are usage errors', () => {
    const out = join(tmp.path, 'x.yaml');
    assert.equal(cli('plan', example(), '--calib', 'default', '--candidates', 'w4a16', '--out', out).status, 2);
    assert.match(cli('plan', example(), '--calib', 'default', '--candidates', 'w3a16', '--bits', '4', '--out', out).stderr, /unknown candidate scheme "w3a16"/);
    assert.match(cli('plan', example(), '--calib', 'default', '--candidates', 'w4a16', '--bits', '4', '--size', '5', '--out', out).stderr, /--bits B .* or --size BYTES, one of the two/);
  });
});
