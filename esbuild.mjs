// Bundles every shipped and test entry point with esbuild. `tsc --noEmit` (npm run typecheck) does the type
// checking; esbuild only strips types, which keeps a full build under a second.
//
//   node esbuild.mjs              extension, CLI, workers, webviews (dist/)
//   node esbuild.mjs --production the same, minified, no source maps, test hooks compiled out (for the .vsix)
//   node esbuild.mjs --outdir DIR the shipped bundles into DIR instead of dist/ (test/unit/production-bundle.test.ts)
//   node esbuild.mjs --watch      rebuild on change, with problem-matcher friendly output
//   node esbuild.mjs --tests      also unit, fuzz and integration test bundles (out/test/)
//   node esbuild.mjs --bench      also the benchmark (dist/bench/)
//
// WebAssembly kernels are written as text (`*.wat` beside the TypeScript that calls them) and compiled here by
// wabt: importing one gives a Uint8Array of the module's bytes, embedded in the bundle, so the shipped code
// needs neither wabt nor a file beside it.
import * as esbuild from 'esbuild';
import { readdirSync, statSync, existsSync, rmSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, relative, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const args = new Set(process.argv.slice(2));
const production = args.has('--production');
const watch = args.has('--watch');
const outdirArg = process.argv.indexOf('--outdir');
/** Where the shipped bundles go: dist/, or the folder after --outdir. */
const outdirValue = outdirArg > 0 ? process.argv[outdirArg + 1] : 'dist';
if (!outdirValue || outdirValue.startsWith('--')) {
  console.error('esbuild: --outdir needs a folder');
  process.exit(2);
}
const dist = resolve(root, outdirValue);
/**
 * `__QUANTLENS_TEST_HOOKS__` guards everything only the integration tests use (the pages' `rendered` reports,
 * the probes that drive them, activate()'s test API): false in the production build, so that the minifier
 * drops those branches and the modules only they import.
 */
const define = { __QUANTLENS_TEST_HOOKS__: production ? 'false' : 'true' };

/** All files under `dir` whose name ends with one of `suffixes`. */
function filesUnder(dir, suffixes) {
  const abs = join(root, dir);
  if (!existsSync(abs)) return [];
  const out = [];
  for (const name of readdirSync(abs)) {
    const path = join(abs, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(join(dir, name), suffixes));
    else if (suffixes.some((s) => name.endsWith(s))) out.push(join(dir, name));
  }
  return out.sort();
}

/** Prints errors in the `file:line:col: error: text` form the VS Code esbuild problem matcher reads. */
const problemMatcherPlugin = {
  name: 'problem-matcher',
  setup(build) {
    build.onStart(() => {
      if (watch) console.log('[watch] build started');
    });
    build.onEnd((result) => {
      for (const { text, location } of result.errors) {
        console.error(`✘ [ERROR] ${text}`);
        if (location) console.error(`    ${location.file}:${location.line}:${location.column}:`);
      }
      if (watch) console.log('[watch] build finished');
    });
  },
};

/** Loads `*.wat` as the bytes wabt compiles it to (the binary loader: a Uint8Array at run time). */
let wabtReady;
/** Compiled bytes by path and text: many bundles (every test file) import the same kernels. */
const watCache = new Map();
async function compileWat(path) {
  // As bytes: wabt's string overload miscounts text that is not ASCII (the comments have ·, ≤, 2^-9…).
  const text = new Uint8Array(await readFile(path));
  const cached = watCache.get(path);
  if (cached && Buffer.compare(cached.text, text) === 0) return cached.bytes;
  wabtReady ??= createRequire(import.meta.url)('wabt')();
  const wabt = await wabtReady;
  let module;
  try {
    // SIMD is the one proposal the kernels use; naming it keeps the build independent of wabt's defaults.
    module = wabt.parseWat(relative(root, path), text, { simd: true });
    module.validate();
    const bytes = module.toBinary({}).buffer;
    watCache.set(path, { text, bytes });
    return bytes;
  } finally {
    module?.destroy();
  }
}
const watPlugin = {
  name: 'wat',
  setup(build) {
    build.onLoad({ filter: /\.wat$/ }, async (args) => {
      try {
        return { contents: await compileWat(args.path), loader: 'binary', watchFiles: [args.path] };
      } catch (error) {
        // wabt's message carries file:line:col of the faulty instruction.
        return { errors: [{ text: `WebAssembly text does not compile: ${error instanceof Error ? error.message : String(error)}` }] };
      }
    });
  },
};

const nodeCommon = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  sourcemap: production ? false : 'linked',
  minify: production,
  // vscode is provided by the host; onnxruntime-node is a native addon loaded from node_modules.
  external: ['vscode', 'onnxruntime-node'],
  logLevel: 'warning',
  plugins: [watPlugin, problemMatcherPlugin],
  define,
};

const configs = [
  {
    ...nodeCommon,
    entryPoints: { extension: 'src/extension/extension.ts', cli: 'src/cli/main.ts' },
    outdir: dist,
  },
  {
    ...nodeCommon,
    entryPoints: filesUnder('src/core/workers', ['.worker.ts']),
    outdir: join(dist, 'workers'),
    entryNames: '[name]',
  },
  {
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
    sourcemap: production ? false : 'linked',
    minify: production,
    entryPoints: { inspector: 'webview/inspector/main.ts', recipe: 'webview/recipe/main.ts', chat: 'webview/chat/main.ts' },
    outdir: join(dist, 'webview'),
    loader: { '.css': 'css' },
    logLevel: 'warning',
    plugins: [watPlugin, problemMatcherPlugin],
    define,
  },
];

// Repository scripts (the example generator): not shipped, built beside the tests (not for --outdir).
if (outdirArg < 0) configs.push({ ...nodeCommon, entryPoints: filesUnder('scripts', ['.ts']), outdir: 'out/scripts', entryNames: '[name]' });

if (args.has('--tests')) {
  const tests = [
    ...filesUnder('test/unit', ['.test.ts']),
    ...filesUnder('test/fuzz', ['.test.ts']),
    ...filesUnder('test/integration/suite', ['.ts']),
  ];
  configs.push({
    ...nodeCommon,
    sourcemap: 'inline',
    minify: false,
    entryPoints: Object.fromEntries(tests.map((t) => [relative('test', t).replace(/\.ts$/, ''), t])),
    outdir: 'out/test',
    external: [...nodeCommon.external, 'mocha'],
  });
}
if (args.has('--bench')) {
  configs.push({ ...nodeCommon, sourcemap: false, entryPoints: { bench: 'test/bench/bench.ts' }, outdir: 'dist/bench' });
}

const live = configs.filter((c) => (Array.isArray(c.entryPoints) ? c.entryPoints.length > 0 : true));
if (!watch) {
  rmSync(dist, { recursive: true, force: true });
  if (args.has('--tests')) rmSync(join(root, 'out/test'), { recursive: true, force: true });
}
mkdirSync(dist, { recursive: true });

if (watch) {
  for (const config of live) await (await esbuild.context(config)).watch();
} else {
  const started = Date.now();
  // Build every bundle even if one fails, so all errors show at once; fail the command afterwards.
  const results = await Promise.allSettled(live.map((config) => esbuild.build(config)));
  const failed = results.filter((r) => r.status === 'rejected').length;
  if (failed > 0) {
    console.error(`esbuild: ${failed} of ${live.length} bundles failed`);
    process.exit(1);
  }
  console.log(`esbuild: ${live.length} bundles in ${Date.now() - started} ms${production ? ' (production)' : ''}`);
}
