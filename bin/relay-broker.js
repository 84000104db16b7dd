#!/usr/bin/env node
// The `relay-broker` command as npm links it. Committed (not built) so that `npx relay-broker` in a
// fresh clone never meets a missing bin file: npm caches a failed bin link, and a later build would
// not repair it. It runs the compiled CLI, or says how to build it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'agent', 'cli.js');
if (!fs.existsSync(cli)) {
  process.stderr.write(
    `relay-broker: the CLI is not built (${path.relative(process.cwd(), cli) || cli} is missing).\n` +
      `Fix: run \`npm install\` (it builds) or \`npm run build\` in ${root}.\n`,
  );
  process.exit(2);
}
require(cli)
  .main(process.argv)
  .then(
    // Exit explicitly: keep-alive sockets of fetch must not hold a finished command open.
    (code) => process.exit(code),
    () => process.exit(1),
  );
