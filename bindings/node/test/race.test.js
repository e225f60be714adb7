'use strict';
// Two and eight separate Node processes starting from one expired session:
// one refresh, every process gets a working token, none deletes the other's
// session (the provider rotates refresh tokens and revokes a grant whose
// consumed refresh token is presented again, so a second refresh would show).

const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');

const { Idp } = require('./helpers');
const { race } = require('./race');

describe('separate processes', () => {
  let idp;
  before(async () => {
    idp = await Idp.start();
  });
  after(() => idp.stop());

  for (const processes of [2, 8]) {
    test(`${processes} processes from one expired session: one refresh, all working`, async () => {
      const result = await race(idp, processes);
      assert.deepEqual(result.errors, []);
      assert.equal(result.refreshRequests, 1);
      assert.equal(result.working, processes);
      assert.equal(result.distinctTokens, 1);
      assert.equal(result.sessionKept, true);
      const counters = await idp.counters();
      assert.equal(counters.grants_revoked, 0);
      assert.equal(counters.token_requests.refresh_token?.invalid_grant ?? 0, 0);
    });
  }
});
