import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { main } from '../../src/cli/main';
import { validateCommand } from '../../src/cli/validate';
import { rawSafetensors } from '../helpers/safetensorsBytes';
import { repoRoot, tempDir } from '../helpers/paths';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const out = new Capture();
  const code = await validateCommand(args, out);
  return { code, out: out.text };
}

const VALID = 'quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n      ignore: [lm_head]\n      scheme: W4A16\n';

describe('quantlens validate', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    tmp = tempDir('quantlens-validate-');
  });
  after(() => tmp.cleanup());

  it('exit 0 and "OK" for a valid recipe', async () => {
    const file = join(tmp.path, 'recipe.yaml');
    writeFileSync(file, VALID);
    const { code, out } = await run([file]);
    assert.equal(code, 0);
    assert.match(out, /recipe\.yaml: OK \(llm-compressor recipe\)/);
  });

  it('exit 1 and file:line:col: severity: message for errors (1-based positions)', async () => {
    const file = join(tmp.path, 'bad_recipe.yaml');
    writeFileSync(file, VALID.replace('scheme: W4A16', 'scheme: W4A61').replace('ignore', 'ignor'));
    const { code, out } = await run([file]);
    assert.equal(code, 1);
    const lines = out.trim().split('\n');
    assert.ok(lines.some((l) => /bad_recipe\.yaml:4:7: error: unknown field "ignor" in GPTQModifier: did you mean "ignore"\?/.test(l)), out);
    assert.ok(lines.some((l) => /bad_recipe\.yaml:5:15: error: unknown preset scheme "W4A61"/.test(l)), out);
    assert.ok(lines.some((l) => /^ {4}fix: Change to W4A16$/.test(l)), out);
    assert.match(lines.at(-1)!, /2 errors, 0 warnings/);
  });

  it('--json prints 0-based diagnostics with fixes', async () => {
    const file = join(tmp.path, 'json_recipe.yaml');
    writeFileSync(file, VALID.replace('W4A16', 'W4A61'));
    const { code, out } = await run([file, '--json']);
    assert.equal(code, 1);
    const json = JSON.parse(out) as { files: { file: string; kind: string; diagnostics: { range: unknown; code: string; fix?: unknown }[] }[]; errors: number; warnings: number };
    assert.equal(json.errors, 1);
    assert.equal(json.files[0]!.kind, 'recipe');
    assert.deepEqual(json.files[0]!.diagnostics[0]!.range, { start: { line: 4, character: 14 }, end: { line: 4, character: 19 } });
    assert.ok(json.files[0]!.diagnostics[0]!.fix);
  });

  it('validates config.json and quantize_config.json', async () => {
    const config = join(tmp.path, 'config.json');
    writeFileSync(config, JSON.stringify({ quantization_config: { quant_method: 'gptq', bits: 5, group_size: 128, sym: true } }));
    const bad = await run([config]);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /config\.json:1:\d+: error: bits must be 2, 3, 4 or 8/);
    const gptq = join(tmp.path, 'quantize_config.json');
    writeFileSync(gptq, JSON.stringify({ bits: 4, group_size: 128, desc_act: false, sym: true }, null, 2));
    const ok = await run([gptq]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /quantization config/);
  });

  it('--model checks the recipe against a checkpoint and prints the plan', async () => {
    const model = join(tmp.path, 'model');
    mkdirSync(model);
    const header: Record<string, unknown> = {};
    let offset = 0;
    for (const [name, shape] of [
      ['model.layers.0.self_attn.q_proj.weight', [64, 64]],
      ['model.layers.0.mlp.down_proj.weight', [64, 96]],
      ['lm_head.weight', [100, 64]],
    ] as const) {
      const bytes = shape[0] * shape[1] * 2;
      header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
      offset += bytes;
    }
    writeFileSync(join(model, 'model.safetensors'), rawSafetensors(JSON.stringify(header), new Uint8Array(offset)));
    writeFileSync(join(model, 'config.json'), JSON.stringify({ torch_dtype: 'bfloat16' }));
    const recipe = join(tmp.path, 'model_recipe.yaml');
    writeFileSync(recipe, 'q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n      config_groups:\n        group_0:\n          targets: [Linear]\n          weights: {num_bits: 4, strategy: group, group_size: 64}\n');
    const bad = await run([recipe, '--model', model]);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /model_recipe\.yaml:8:\d+: error: group_size 64 of config group "group_0" does not divide the input features of 1 targeted layer: model\.layers\.0\.mlp\.down_proj \(in_features 96\)/);
    writeFileSync(recipe, VALID);
    const ok = await run([recipe, '--model', model]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /plan: 2 layers quantized, 1 ignored/);
    assert.match(ok.out, /estimated size: .* → /);
    // A checkpoint folder: its config.json and recipe are checked against its own weights.
    copyFileSync(recipe, join(model, 'recipe.yaml'));
    const folder = await run([model]);
    assert.equal(folder.code, 0, folder.out);
    assert.match(folder.out, /recipe\.yaml: OK/);
  });

  it('never crashes on binary input; usage errors exit 2 through main', async () => {
    const file = join(tmp.path, 'garbage_recipe.yaml');
    writeFileSync(file, Buffer.from([0x00, 0xff, 0xfe, 0x13, 0x37, 0x89, 0x50]));
    const { code, out } = await run([file]);
    assert.equal(code, 1);
    assert.match(out, /unacceptable character/);
    const stderr = process.stderr.write;
    const stdout = process.stdout.write;
    let captured = '';
    process.stderr.write = ((s: string) => {
      captured += s;
      return true;
    }) as typeof process.stderr.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      assert.equal(await main(['validate']), 2);
      assert.equal(await main(['validate', join(tmp.path, 'missing.yaml')]), 2);
      assert.equal(await main(['validate', file, '--nope']), 2);
    } finally {
      process.stderr.write = stderr;
      process.stdout.write = stdout;
    }
    assert.match(captured, /validate needs exactly one FILE/);
  });

  it('the real recipe fixtures pass through the CLI', async () => {
    const dir = join(repoRoot(), 'test', 'fixtures', 'recipes');
    const ok = await run([join(dir, 'llmc__e2e__recipes__kv_cache__default.yaml')]);
    assert.equal(ok.code, 0);
    const old = await run([join(dir, 'ct__examples__llama_1.1b__example_quant_recipe.yaml')]);
    assert.equal(old.code, 1);
    assert.match(old.out, /:15:13: error: scheme_overrides is not a field of QuantizationModifier in current llm-compressor/);
  });
});
