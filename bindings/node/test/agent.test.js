'use strict';
// A worker that calls token(account) for 1,000 accounts of a SQLite store
// while `authkeep agent` refreshes the same accounts: each account is
// refreshed once (the provider's counters per grant), whoever asked.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const { Keeper } = require('..');
const { BIN, CLIENT_ID, Idp, cli, home, start, stop, until } = require('./helpers');

const ACCOUNTS = 1000;

/** The agent's metrics, over its unix socket. */
function metrics(socketPath) {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: '/metrics' }, (response) => {
        let text = '';
        response.on('data', (chunk) => {
          text += chunk;
        });
        response.on('end', () => resolve(text));
      })
      .on('error', reject);
  });
}

/** The agent's successful refreshes. */
function agentRefreshes(text) {
  const line = text.split('\n').find((l) => l.startsWith('authkeep_refreshes_total{outcome="success"'));
  return line ? Number(line.split(' ').pop()) : 0;
}
/** Calls in flight at once from the worker. */
const CONCURRENCY = 32;

describe('a worker beside the agent', () => {
  let idp;
  before(async () => {
    idp = await Idp.start();
  });
  after(() => idp.stop());

  test(`${ACCOUNTS} accounts in SQLite: the worker and the agent never refresh one twice`, async (t) => {
    const dir = home();
    const db = `sqlite:${path.join(dir, 'accounts.db')}`;
    const env = { AUTHKEEP_HOME: dir, AUTHKEEP_STORE: db };
    let result = await cli(['store', 'keygen', '--out', path.join(dir, 'store.key')], env);
    assert.equal(result.code, 0, result.stderr);
    // The worker finds the key as the command does: key_file in config.toml.
    fs.writeFileSync(path.join(dir, 'config.toml'), 'key_file = "store.key"\n');
    result = await cli(['clients', 'add', 'dev', '--issuer', idp.issuer, '--client-id', CLIENT_ID], env);
    assert.equal(result.code, 0, result.stderr);
    // Every account is due: its access token expires in a second.
    const sessions = await idp.sessions(ACCOUNTS, { user: 'user-{n}' });
    const lines = sessions.map((s, i) => JSON.stringify({ id: `acct-${i}`, ...s, expires_in: 1 }));
    result = await cli(['accounts', 'import', '--client', 'dev', '-'], env, `${lines.join('\n')}\n`);
    assert.equal(result.code, 0, result.stderr);

    const agent = start(BIN, ['agent', '--concurrency', '16'], { env: { ...process.env, ...env } });
    await until('the agent to serve', () => agent.stderrText.includes('serving'));
    const worker = await Keeper.open({ home: dir, store: db });
    let workerRefreshes = 0;
    worker.on('refreshed', () => {
      workerRefreshes += 1;
    });
    const tokens = new Array(ACCOUNTS);
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < ACCOUNTS) {
          const i = next;
          next += 1;
          tokens[i] = (await worker.token(`acct-${i}`, { minValid: '1m' })).accessToken;
        }
      }),
    );
    await until('every account refreshed', async () => (await idp.grants()).every((g) => g.refreshes >= 1));
    const byAgent = agentRefreshes(await metrics(path.join(dir, 'agent.sock')));
    assert.equal(await stop(agent), 0, agent.stderrText);
    await until("the worker's events", () => byAgent + workerRefreshes === ACCOUNTS);
    t.diagnostic(`refreshes: ${byAgent} by the agent, ${workerRefreshes} by the worker`);

    const grants = await idp.grants();
    assert.equal(grants.length, ACCOUNTS);
    const twice = grants.filter((g) => g.refreshes !== 1);
    assert.deepEqual(twice, [], 'every grant refreshed exactly once');
    assert.equal(grants.filter((g) => g.revoked).length, 0);
    const counters = await idp.counters();
    assert.equal(counters.token_requests.refresh_token.ok, ACCOUNTS);
    assert.equal(counters.token_requests.refresh_token.invalid_grant ?? 0, 0);
    for (let i = 0; i < ACCOUNTS; i += 1) {
      assert.notEqual(tokens[i], sessions[i].access_token, `acct-${i} got the refreshed token`);
      assert.equal((await worker.token(`acct-${i}`)).accessToken, tokens[i], 'and it is the stored one');
    }
    for (const i of [0, 1, ACCOUNTS / 2, ACCOUNTS - 1]) assert.ok(await idp.active(tokens[i]));
    const status = await worker.status('acct-0');
    assert.equal(status.state, 'valid');
    assert.equal(status.issuer, idp.issuer);
  });
});
