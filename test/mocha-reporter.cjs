// Mocha reporter for every QuantLens suite: the spec output, then one closing line
// `N passed, N failed, N skipped` (what CI counts), and the same counts as JSON in the file named by
// QUANTLENS_TEST_RESULTS so that test/run-all.mjs can add up the unit, fuzz and real-VS-Code runs.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const Mocha = require('mocha');

class QuantLensReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const failures = [];
    runner.on('fail', (test, err) => failures.push({ title: test.fullTitle(), error: String(err && err.message) }));
    runner.once('end', () => {
      const { passes, failures: failed, pending } = runner.stats;
      const file = process.env.QUANTLENS_TEST_RESULTS;
      if (file) {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, JSON.stringify({ passes, failures: failed, pending, failed: failures }, null, 2));
      }
      // Skipped (pending) tests are always counted, so a suite that skipped itself cannot pass unnoticed.
      console.log(`${passes} passed, ${failed} failed, ${pending} skipped`);
    });
  }
}
module.exports = QuantLensReporter;
