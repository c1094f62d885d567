/**
 * Set by esbuild's `define` (esbuild.mjs): true in development and test builds, false in the production
 * (.vsix) build, where every `if (__QUANTLENS_TEST_HOOKS__)` branch and the test-only code it reaches are
 * dropped. See src/webviewMessages/testProbes.ts.
 */
declare const __QUANTLENS_TEST_HOOKS__: boolean;
