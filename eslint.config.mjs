// ESLint over every TypeScript and JavaScript source the project writes (src/, webview/, test/, scripts/,
// the build and test runners). `npm test` runs it and fails on any warning. The rules are the ones the code
// already keeps: typescript-eslint's recommended set (which is what the code's eslint-disable comments name),
// plus the few below that say how this project writes TypeScript.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['node_modules/', 'dist/', 'out/', '.vscode-test/', 'examples/', 'bench-data/', 'test-results/', 'test/fixtures/', '**/*.d.ts'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Unused values are errors, except names that start with _ (kept on purpose, e.g. a callback's unused parameter).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'prefer-const': 'error',
      'no-var': 'error',
    },
  },
  {
    // Node scripts and runners written as plain JavaScript (CommonJS or ES modules).
    files: ['**/*.cjs', '**/*.mjs', 'bin/**/*.js'],
    languageOptions: {
      globals: {
        require: 'readonly', module: 'writable', process: 'readonly', console: 'readonly', __dirname: 'readonly',
        Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly',
        URLSearchParams: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Written in the oldest JavaScript on purpose: it must run, and explain, on any Node.
    files: ['scripts/check-node.cjs'],
    rules: { 'no-var': 'off' },
  },
);
