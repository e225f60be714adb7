'use strict';
// The library's guarantees, seen from JavaScript, against the development
// identity provider: no network while a token is valid, refresh ahead of
// expiry with the rotated refresh token saved, what each failure does to a
// session, one refresh for a burst of calls, legacy records, errors and
// events, and the same sessions as the `authkeep` command.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const { Keeper } = require('..');
const { CLIENT_ID, Idp, cli, expired, home, readRecord, until, writeRecord } = require('./helpers');

const minutes = (n) => n * 60_000;

/** A token response that is inside its refresh window but still valid. */
function nearExpiry(response) {
  const { expires_in: _, ...rest } = response;
  return {
    ...rest,
    issued_at: new Date(Date.now() - minutes(60)).toISOString(),
    expires_at: new Date(Date.now() + minutes(2)).toISOString(),
  };
}

/** A keeper on a new home, with a session imported for `profile`. */
async function withSession(idp, profile, tokenResponse) {
  const dir = home();
  const keeper = await Keeper.open({ home: dir });
  await keeper.importLogin(profile, { issuer: idp.issuer, clientId: CLIENT_ID, tokenResponse });
  return { dir, keeper };
}

/** Collects a keeper's events by name. */
function record(keeper) {
  const seen = { refreshed: [], refreshFailed: [], loginRequired: [], stored: [] };
  for (const name of Object.keys(seen)) keeper.on(name, (event) => seen[name].push(event));
  return seen;
}

describe('tokens', () => {
  let idp;
  before(async () => {
    idp = await Idp.start();
  });
  after(() => idp.stop());

  test('a token far from expiry is returned with no network request', async () => {
    const session = await idp.session();
    const { keeper } = await withSession(idp, 'far', session);
    const before = await idp.counters();
    const token = await keeper.token('far');
    assert.equal(token.accessToken, session.access_token);
    assert.equal(token.tokenType, 'Bearer');
    assert.match(token.expiresAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    for (let i = 0; i < 20; i += 1) await keeper.token('far');
    assert.deepEqual(await idp.counters(), before, 'no request of any kind');
  });

  test('near expiry it is refreshed and the rotated refresh token persisted', async () => {
    const session = await idp.session();
    const { dir, keeper } = await withSession(idp, 'near', nearExpiry(session));
    const seen = record(keeper);
    const before = await idp.refreshCount();
    const token = await keeper.token('near');
    assert.notEqual(token.accessToken, session.access_token);
    assert.equal(await idp.refreshCount(), before + 1);
    const stored = readRecord(dir, 'near');
    assert.equal(stored.access_token, token.accessToken);
    assert.ok(stored.refresh_token && stored.refresh_token !== session.refresh_token, 'rotated and saved');
    assert.ok(await idp.active(token.accessToken));
    // The next call is warm: the new token is far from expiry.
    assert.equal((await keeper.token('near')).accessToken, token.accessToken);
    assert.equal(await idp.refreshCount(), before + 1);
    await until('the events', () => seen.refreshed.length === 1 && seen.stored.length === 1);
    assert.deepEqual(seen.stored[0], { key: 'near', expiresAt: token.expiresAt });
    assert.deepEqual(seen.refreshed[0], { key: 'near', expiresAt: token.expiresAt });
  });

  for (const status of [403, 400]) {
    test(`invalid_grant with ${status} ends the session and emits loginRequired`, async () => {
      const session = await idp.session();
      const { dir, keeper } = await withSession(idp, `dead${status}`, expired(session));
      const seen = record(keeper);
      await idp.fault({ kind: { kind: 'oauth_error', status, error: 'invalid_grant' } });
      try {
        await assert.rejects(keeper.token(`dead${status}`), (error) => {
          assert.equal(error.code, 'LOGIN_REQUIRED');
          assert.ok(!error.message.includes(session.refresh_token), 'no secret in the message');
          return true;
        });
      } finally {
        await idp.clearFaults();
      }
      const stored = readRecord(dir, `dead${status}`);
      assert.equal(stored.refresh_token, undefined, 'the tokens are gone');
      const status_ = await keeper.status(`dead${status}`);
      assert.equal(status_.state, 'ended');
      assert.equal(status_.lastError.class, 'session_dead');
      await until('the events', () => seen.loginRequired.length > 0 && seen.refreshFailed.length > 0);
      assert.deepEqual(seen.loginRequired[0], { key: `dead${status}`, class: 'session_dead' });
      assert.equal(seen.refreshFailed[0].class, 'session_dead');
      // No further request: a login is needed.
      const before = await idp.refreshCount();
      await assert.rejects(keeper.token(`dead${status}`), { code: 'LOGIN_REQUIRED' });
      assert.equal(await idp.refreshCount(), before);
    });
  }

  test('a transient 5xx keeps the session and returns the still-valid token', async () => {
    const session = await idp.session();
    const { dir, keeper } = await withSession(idp, 'blip', nearExpiry(session));
    const seen = record(keeper);
    await idp.fault({ kind: { kind: 'status', status: 503 } });
    let token;
    try {
      token = await keeper.token('blip');
    } finally {
      await idp.clearFaults();
    }
    assert.equal(token.accessToken, session.access_token);
    const stored = readRecord(dir, 'blip');
    assert.equal(stored.refresh_token, session.refresh_token, 'the session is kept');
    const status = await keeper.status('blip');
    assert.equal(status.state, 'valid');
    assert.equal(status.canRenew, true);
    assert.equal(status.lastError.class, 'transient');
    await until('refreshFailed', () => seen.refreshFailed.length === 1);
    assert.deepEqual(seen.refreshFailed[0], { key: 'blip', class: 'transient' });
    assert.equal(seen.loginRequired.length, 0);
    // Expired and the provider still down: retry later, nothing lost.
    const { keeper: second } = await withSession(idp, 'down', expired(await idp.session()));
    await idp.fault({ kind: { kind: 'status', status: 502 } });
    try {
      await assert.rejects(second.token('down'), { code: 'RETRY_LATER' });
    } finally {
      await idp.clearFaults();
    }
  });

  test('a burst of 50 concurrent token() calls at start-up causes one refresh', async () => {
    const session = await idp.session();
    const { dir } = await withSession(idp, 'burst', expired(session));
    const keeper = await Keeper.open({ home: dir });
    const before = await idp.refreshCount();
    const tokens = await Promise.all(Array.from({ length: 50 }, () => keeper.token('burst')));
    assert.equal(await idp.refreshCount(), before + 1);
    assert.equal(new Set(tokens.map((t) => t.accessToken)).size, 1);
    assert.ok(await idp.active(tokens[0].accessToken));
  });

  test('a legacy record without expiry is refreshed once and upgraded', async () => {
    const session = await idp.session();
    const dir = home();
    writeRecord(dir, 'legacy', {
      issuer: idp.issuer,
      client_id: CLIENT_ID,
      access_token: 'opaque-legacy',
      refresh_token: session.refresh_token,
    });
    const keeper = await Keeper.open({ home: dir });
    const before = await idp.refreshCount();
    const token = await keeper.token('legacy');
    assert.notEqual(token.accessToken, 'opaque-legacy');
    assert.ok(token.expiresAt);
    const upgraded = readRecord(dir, 'legacy');
    assert.equal(upgraded.version, 1);
    assert.ok(!Number.isNaN(Date.parse(upgraded.expires_at)));
    for (let i = 0; i < 5; i += 1) assert.equal((await keeper.token('legacy')).accessToken, token.accessToken);
    assert.equal(await idp.refreshCount(), before + 1, 'refreshed once');
  });

  test('minValid takes a duration or seconds', async () => {
    const { keeper } = await withSession(idp, 'min', await idp.session());
    const before = await idp.refreshCount();
    await keeper.token('min', { minValid: '1m' });
    await keeper.token('min', { minValid: 60 });
    assert.equal(await idp.refreshCount(), before);
    const longer = await keeper.token('min', { minValid: '10m' });
    assert.equal(await idp.refreshCount(), before + 1, 'more than the token has left: refreshed');
    assert.ok(longer.expiresAt);
    for (const bad of ['soon', -1, Number.NaN, '-5m']) {
      await assert.rejects(keeper.token('min', { minValid: bad }), { code: 'INVALID_ARGUMENT' });
    }
  });

  test('rejected() refreshes only while the session holds the rejected token', async () => {
    const session = await idp.session();
    const { keeper } = await withSession(idp, 'rej', session);
    const before = await idp.refreshCount();
    const fresh = await keeper.rejected('rej', session.access_token);
    assert.notEqual(fresh.accessToken, session.access_token);
    assert.equal(await idp.refreshCount(), before + 1);
    // Another caller rejected with the old token: the newer one, no request.
    const again = await keeper.rejected('rej', session.access_token);
    assert.equal(again.accessToken, fresh.accessToken);
    assert.equal(await idp.refreshCount(), before + 1);
  });

  test('logout and status', async () => {
    const { keeper } = await withSession(idp, 'bye', await idp.session());
    const status = await keeper.status('bye');
    assert.deepEqual(Object.keys(status).sort(), ['canRenew', 'expiresAt', 'issuer', 'key', 'lastError', 'state']);
    assert.equal(status.key, 'bye');
    assert.equal(status.issuer, idp.issuer);
    assert.equal(status.state, 'valid');
    assert.equal(status.lastError, null);
    assert.equal(await keeper.logout('bye'), true);
    assert.equal(await keeper.logout('bye'), false);
    assert.equal((await keeper.status('bye')).state, 'none');
    await assert.rejects(keeper.token('bye'), { code: 'LOGIN_REQUIRED' });
  });
});

describe('configuration and errors', () => {
  let idp;
  before(async () => {
    idp = await Idp.start();
  });
  after(() => idp.stop());

  test('a Node program and `authkeep token` share sessions and configuration', async () => {
    const dir = home();
    fs.writeFileSync(
      path.join(dir, 'config.toml'),
      'default_profile = "work"\n[profiles.work]\nrefresh_threshold = "10m"\n',
    );
    // Eight minutes left of a long lifetime: inside work's 10-minute window,
    // outside the default 5-minute one.
    const eightMinutes = (response) => ({
      ...nearExpiry(response),
      expires_at: new Date(Date.now() + minutes(8)).toISOString(),
    });
    const keeper = await Keeper.open({ home: dir });
    for (const profile of ['work', 'plain']) {
      await keeper.importLogin(profile, {
        issuer: idp.issuer,
        clientId: CLIENT_ID,
        tokenResponse: eightMinutes(await idp.session()),
      });
    }
    const env = { AUTHKEEP_HOME: dir };
    const before = await idp.refreshCount();
    const plain = await keeper.token('plain');
    const plainByCli = await cli(['token', '--profile', 'plain'], env);
    assert.equal(plainByCli.code, 0, plainByCli.stderr);
    assert.equal(plainByCli.stdout.trim(), plain.accessToken, 'the session Node stored');
    assert.equal(await idp.refreshCount(), before, 'outside the default window: no refresh');
    const work = await keeper.token('work');
    assert.equal(await idp.refreshCount(), before + 1, "inside the profile's window: refreshed");
    // The command (its default profile is work) uses what Node stored.
    const workByCli = await cli(['token'], env);
    assert.equal(workByCli.code, 0, workByCli.stderr);
    assert.equal(workByCli.stdout.trim(), work.accessToken);
    assert.equal(await idp.refreshCount(), before + 1);
    // And Node what the command stores.
    const loggedOut = await cli(['logout', '--profile', 'plain'], env);
    assert.equal(loggedOut.code, 0, loggedOut.stderr);
    await assert.rejects(keeper.token('plain'), { code: 'LOGIN_REQUIRED' });
  });

  test('a broken configuration file is MISCONFIGURED, naming the place', async () => {
    const dir = home();
    fs.writeFileSync(path.join(dir, 'config.toml'), '[profiles.work]\nisuer = "https://x"\n');
    await assert.rejects(Keeper.open({ home: dir }), (error) => {
      assert.equal(error.code, 'MISCONFIGURED');
      assert.match(error.message, /config\.toml:2:1: unknown key "isuer" in \[profiles\.work\]/);
      return true;
    });
    fs.writeFileSync(path.join(dir, 'config.toml'), '[profiles.w]\nclient_secret = "hunter2"\n');
    await assert.rejects(Keeper.open({ home: dir }), (error) => {
      assert.equal(error.code, 'MISCONFIGURED');
      assert.ok(!error.message.includes('hunter2'));
      return true;
    });
  });

  test('bad arguments are INVALID_ARGUMENT', async () => {
    const keeper = await Keeper.open({ home: home() });
    await assert.rejects(keeper.token('../etc'), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(keeper.token(42), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(Keeper.open({ home: home(), store: 'mysql://u:pw@h/db' }), (error) => {
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.ok(!error.message.includes('pw@'));
      return true;
    });
    await assert.rejects(
      keeper.importLogin('x', { issuer: idp.issuer, clientId: CLIENT_ID, tokenResponse: { token_type: 'Bearer' } }),
      { code: 'INVALID_ARGUMENT' },
    );
    await assert.rejects(keeper.importLogin('x', { client: 'dev', tokenResponse: { access_token: 'a' } }), {
      code: 'INVALID_ARGUMENT',
    });
    assert.throws(() => keeper.on('nonsense', () => {}), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => keeper.on('stored', 'not a function'), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => new Keeper({}), TypeError);
  });

  test('a corrupt or newer record is STORE_ERROR and left untouched', async () => {
    const dir = home();
    const keeper = await Keeper.open({ home: dir });
    const file = writeRecord(dir, 'newer', { version: 99, access_token: 'x' });
    await assert.rejects(keeper.token('newer'), { code: 'STORE_ERROR' });
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).version, 99);
    const corrupt = path.join(dir, 'sessions', 'bad.json');
    fs.writeFileSync(corrupt, '{not json', { mode: 0o600 });
    await assert.rejects(keeper.token('bad'), { code: 'STORE_ERROR' });
  });

  test('the store other users may read is refused as MISCONFIGURED', async () => {
    const dir = home();
    const keeper = await Keeper.open({ home: dir });
    await keeper.importLogin('open', { issuer: idp.issuer, clientId: CLIENT_ID, tokenResponse: await idp.session() });
    fs.chmodSync(path.join(dir, 'sessions', 'open.json'), 0o644);
    await assert.rejects(keeper.token('open'), (error) => {
      assert.equal(error.code, 'MISCONFIGURED');
      assert.match(error.message, /chmod 600/);
      return true;
    });
  });
});
