'use strict';
// N separate Node processes start at the same instant from one expired
// session: how many refresh requests the provider saw, how many processes got
// a token the provider accepts, and whether the session survived. Used by
// race.test.js and by scripts/bench-node-race.sh.

const fs = require('node:fs');
const path = require('node:path');

const { Keeper } = require('..');
const { CLIENT_ID, expired, firstLine, home, start } = require('./helpers');

async function race(idp, processes) {
  const dir = home();
  const keeper = await Keeper.open({ home: dir });
  const session = await idp.session();
  await keeper.importLogin('race', { issuer: idp.issuer, clientId: CLIENT_ID, tokenResponse: expired(session) });
  const children = Array.from({ length: processes }, () =>
    start(process.execPath, [path.join(__dirname, 'race-child.js'), dir, 'race']),
  );
  await Promise.all(children.map((child) => firstLine(child, child.stdoutLines, (l) => l === 'ready')));
  const before = await idp.refreshCount();
  const outcomes = children.map((child) => firstLine(child, child.stdoutLines, (l) => l.startsWith('{')));
  for (const child of children) child.stdin.write('go\n');
  const results = (await Promise.all(outcomes)).map((line) => JSON.parse(line));
  await Promise.all(children.map((child) => new Promise((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once('exit', resolve);
  })));
  const refreshRequests = (await idp.refreshCount()) - before;
  let working = 0;
  for (const result of results) {
    if (result.token && (await idp.active(result.token))) working += 1;
  }
  const stored = JSON.parse(fs.readFileSync(path.join(dir, 'sessions', 'race.json'), 'utf8'));
  const status = await keeper.status('race');
  return {
    processes,
    refreshRequests,
    working,
    distinctTokens: new Set(results.map((r) => r.token)).size,
    errors: results.filter((r) => !r.token),
    sessionKept: Boolean(stored.refresh_token) && status.state === 'valid',
  };
}

module.exports = { race };
