'use strict';
// The TypeScript examples, compiled with the package's declarations and run:
// the CLI prints a token (and exits 3 when a login is needed), and the
// desktop module follows the signed-in state through events.

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const { Keeper } = require('..');
const { CLIENT_ID, Idp, expired, home, until } = require('./helpers');

const ROOT = path.join(__dirname, '..');
// Inside the package, so that the examples' `require('authkeep')` finds it.
const OUT = path.join(ROOT, 'target', 'examples-js');

function run(script, args, env) {
  try {
    const stdout = execFileSync(process.execPath, [path.join(OUT, 'examples', script), ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { code: 0, stdout: stdout.toString() };
  } catch (error) {
    return { code: error.status, stdout: String(error.stdout), stderr: String(error.stderr) };
  }
}

describe('examples', () => {
  let idp;
  before(async () => {
    execFileSync(
      process.execPath,
      [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json', '--noEmit', 'false', '--outDir', OUT, '--rootDir', '.'],
      { cwd: ROOT, stdio: 'inherit' },
    );
    idp = await Idp.start();
  });
  after(() => idp.stop());

  test('cli-token prints a token, or exits 3 for a login', async () => {
    const dir = home();
    const keeper = await Keeper.open({ home: dir });
    const session = await idp.session();
    await keeper.importLogin('work', { issuer: idp.issuer, clientId: CLIENT_ID, tokenResponse: session });
    const printed = run('cli-token.js', ['work', '--min-valid', '1m'], { AUTHKEEP_HOME: dir });
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout, `${session.access_token}\n`);
    const missing = run('cli-token.js', ['nobody'], { AUTHKEEP_HOME: dir });
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /authkeep login --profile nobody/);
  });

  test('the desktop module shows the signed-in state and shares one refresh', async () => {
    const dir = home();
    process.env.AUTHKEEP_HOME = dir;
    const { DesktopAuth } = require(path.join(OUT, 'examples', 'desktop-main.js'));
    const keeper = await Keeper.open({ home: dir });
    await keeper.importLogin('app', { issuer: idp.issuer, clientId: CLIENT_ID, tokenResponse: expired(await idp.session()) });
    const auth = await DesktopAuth.open('app');
    assert.equal(auth.state.kind, 'signed-in');
    const changes = [];
    auth.onChange((state) => changes.push(state.kind));
    const before = await idp.refreshCount();
    const tokens = await Promise.all(Array.from({ length: 20 }, () => auth.token()));
    assert.equal(new Set(tokens).size, 1);
    assert.equal(await idp.refreshCount(), before + 1);
    const me = await auth.api(`${idp.issuer}/userinfo`);
    assert.equal(me.status, 200);
    await auth.signOut();
    assert.equal(auth.state.kind, 'signed-out');
    assert.equal(await auth.token(), null);
    await until('the state changes', () => changes.includes('signed-out'));
  });
});
