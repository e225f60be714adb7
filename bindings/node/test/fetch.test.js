'use strict';
// keeper.fetch(): a standard Response, the token only for the URL's origin,
// and the library's 401 rule (renew once, retry once), with the provider's
// userinfo endpoint as the resource server.

const assert = require('node:assert/strict');
const http = require('node:http');
const { after, before, describe, test } = require('node:test');

const { Keeper } = require('..');
const { CLIENT_ID, Idp, expired, home } = require('./helpers');

describe('fetch', () => {
  let idp;
  before(async () => {
    idp = await Idp.start();
  });
  after(() => idp.stop());

  async function keeperWith(profile, tokenResponse) {
    const keeper = await Keeper.open({ home: home() });
    await keeper.importLogin(profile, { issuer: idp.issuer, clientId: CLIENT_ID, tokenResponse });
    return keeper;
  }

  test('a valid token reaches the origin and the answer is a Response', async () => {
    const session = await idp.session({ user: 'carol' });
    const keeper = await keeperWith('api', session);
    const before = await idp.refreshCount();
    const response = await keeper.fetch('api', `${idp.issuer}/userinfo`);
    assert.ok(response instanceof Response);
    assert.equal(response.status, 200);
    assert.equal(response.ok, true);
    assert.match(response.headers.get('content-type'), /json/);
    assert.equal((await response.json()).sub, 'carol');
    assert.equal(await idp.refreshCount(), before);
  });

  test('a 401 renews the token once and retries once', async () => {
    const session = await idp.session({ user: 'dave' });
    // The server no longer accepts the stored token, which still looks valid.
    const keeper = await keeperWith('stale', { ...session, access_token: 'revoked-elsewhere' });
    const before = await idp.refreshCount();
    const response = await keeper.fetch('stale', new URL(`${idp.issuer}/userinfo`), {
      method: 'POST',
      headers: { 'x-test': '1' },
      body: 'a=1',
    });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).sub, 'dave');
    assert.equal(await idp.refreshCount(), before + 1);
    const token = await keeper.token('stale');
    assert.ok(await idp.active(token.accessToken));
  });

  test('a token that cannot be renewed: the rejection is the answer, and no session is lost', async () => {
    const session = await idp.session();
    const keeper = await keeperWith('bad', { ...session, access_token: 'not-accepted' });
    await idp.fault({ kind: { kind: 'status', status: 503 } });
    let response;
    try {
      response = await keeper.fetch('bad', `${idp.issuer}/userinfo`);
    } finally {
      await idp.clearFaults();
    }
    assert.equal(response.status, 401);
    assert.equal((await keeper.status('bad')).canRenew, true);
  });

  test('no token can be had: the request is not sent', async () => {
    let requests = 0;
    const server = http.createServer((req, res) => {
      requests += 1;
      res.end('x');
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${server.address().port}/`;
    try {
      const keeper = await Keeper.open({ home: home() });
      await assert.rejects(keeper.fetch('nobody', url), { code: 'LOGIN_REQUIRED' });
      const dead = await keeperWith('dead', expired(await idp.session()));
      await idp.fault({ kind: { kind: 'oauth_error', status: 400, error: 'invalid_grant' } });
      try {
        await assert.rejects(dead.fetch('dead', url), { code: 'LOGIN_REQUIRED' });
      } finally {
        await idp.clearFaults();
      }
      assert.equal(requests, 0);
    } finally {
      server.close();
    }
  });

  test('the token goes to the URL origin only, as a bearer header', async () => {
    const seen = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(204);
      res.end();
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const session = await idp.session();
      const keeper = await keeperWith('mine', session);
      const response = await keeper.fetch('mine', `http://127.0.0.1:${server.address().port}/x`);
      assert.equal(response.status, 204);
      assert.equal(await response.text(), '');
      assert.deepEqual(seen, [`Bearer ${session.access_token}`]);
      await assert.rejects(keeper.fetch('mine', 'not a url'), { code: 'INVALID_ARGUMENT' });
    } finally {
      server.close();
    }
  });
});
