// Stops `npm ci`, `npm run example` and `npm test` at once, with a plain message, on a Node.js the project
// does not support. Written in the oldest JavaScript on purpose: it must run (and explain) on any Node.
'use strict';
var supported = require('../package.json').engines.node; // ">=20"
var minimumMajor = parseInt(supported.replace(/[^0-9]/g, ''), 10);
var major = parseInt(process.versions.node.split('.')[0], 10);
if (!(major >= minimumMajor)) {
  process.stderr.write(
    'QuantLens needs Node.js ' + supported + ' (tested with 20 and 24); this is Node ' + process.versions.node +
      ' at ' + process.execPath + '.\n' +
      'Install a supported Node.js (for example Debian bookworm\'s nodejs 20 or a Node 22/24 release) and run the command again.\n',
  );
  process.exit(1);
}
