'use strict';
// What the tests share: the `authkeep` command (AUTHKEEP_BIN, set by the test
// script; by default the debug build of the repository), the development
// identity provider it runs, private homes, and child processes that are
// always stopped.

const assert = require('node:assert/strict');
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const REPO = path.join(__dirname, '..', '..', '..');
const BIN = process.env.AUTHKEEP_BIN || path.join(REPO, 'target', 'debug', 'authkeep-main');
/** The client id of the provider's sessions. */
const CLIENT_ID = 'authkeep-demo';
/** The longest any wait in a test lasts. */
const WAIT_MS = 60_000;

const children = new Set();
const homes = [];
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
  for (const dir of homes) fs.rmSync(dir, { recursive: true, force: true });
});

/** Starts a child process whose stdout and stderr are read as lines. */
function start(command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.stdoutLines = readline.createInterface({ input: child.stdout });
  child.stderrText = '';
  child.stderr.on('data', (chunk) => {
    child.stderrText += chunk;
  });
  return child;
}

/** The first line a child prints that satisfies `test`, within WAIT_MS. */
function firstLine(child, lines, test = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line within ${WAIT_MS} ms: ${child.stderrText}`)), WAIT_MS);
    const onLine = (line) => {
      if (test(line)) {
        clearTimeout(timer);
        lines.off('line', onLine);
        resolve(line);
      }
    };
    lines.on('line', onLine);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} first: ${child.stderrText}`));
    });
  });
}

/** Stops a child and waits for it. */
function stop(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.exitCode);
  }
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill(signal);
  });
}

/** Runs the `authkeep` command to its end: `{ code, stdout, stderr }`. */
function cli(args, env = {}, input = undefined) {
  return new Promise((resolve) => {
    const child = execFile(
      BIN,
      args,
      { env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin.end(input);
  });
}

/** The development identity provider, on a free loopback port. */
class Idp {
  static async start(args = []) {
    const child = start(BIN, ['devidp', '--addr', '127.0.0.1:0', ...args]);
    const issuer = await firstLine(child, child.stdoutLines, (line) => line.startsWith('http'));
    return new Idp(child, issuer.trim());
  }

  constructor(child, issuer) {
    this.child = child;
    this.issuer = issuer;
  }

  async admin(method, route, body = undefined) {
    const response = await fetch(this.issuer + route, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${route}: ${response.status} ${text}`);
    return text;
  }

  /** A new grant's token response (the provider's default access token lifetime unless given). */
  async session(request = {}) {
    return JSON.parse(await this.admin('POST', '/admin/sessions', request));
  }

  /** `count` grants' token responses at once. */
  async sessions(count, request = {}) {
    const text = await this.admin('POST', '/admin/sessions/bulk', { count, ...request });
    return text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line));
  }

  async counters() {
    return JSON.parse(await this.admin('GET', '/admin/counters'));
  }

  /** Token requests of the refresh grant, by outcome. */
  async refreshes() {
    const counters = await this.counters();
    return counters.token_requests.refresh_token ?? {};
  }

  /** Every refresh request, whatever its outcome. */
  async refreshCount() {
    return Object.values(await this.refreshes()).reduce((a, b) => a + b, 0);
  }

  /** Each grant's refreshes and whether it was revoked. */
  async grants() {
    const text = await this.admin('GET', '/admin/grants');
    return text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line));
  }

  async fault(plan) {
    await this.admin('POST', '/admin/faults', plan);
  }

  async clearFaults() {
    await this.admin('DELETE', '/admin/faults');
  }

  /** Whether the provider accepts an access token. */
  async active(token) {
    const response = await fetch(this.issuer + '/introspect', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }).toString(),
    });
    return (await response.json()).active === true;
  }

  stop() {
    return stop(this.child);
  }
}

/** A private home for configuration and state (0700), removed at exit. */
function home() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'authkeep-node-'));
  fs.chmodSync(dir, 0o700);
  homes.push(dir);
  return dir;
}

/** Writes a session record as another tool (or an older authkeep) left it. */
function writeRecord(dir, profile, record) {
  const sessions = path.join(dir, 'sessions');
  fs.mkdirSync(sessions, { recursive: true, mode: 0o700 });
  const file = path.join(sessions, `${profile}.json`);
  fs.writeFileSync(file, JSON.stringify(record), { mode: 0o600 });
  return file;
}

function readRecord(dir, profile) {
  return JSON.parse(fs.readFileSync(path.join(dir, 'sessions', `${profile}.json`), 'utf8'));
}

/** A token response whose access token is due for a refresh (it expired a minute ago). */
function expired(response) {
  const { expires_in: _, ...rest } = response;
  return { ...rest, expires_at: new Date(Date.now() - 60_000).toISOString() };
}

/** Waits until `check()` is true, within WAIT_MS. */
async function until(what, check) {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

module.exports = {
  BIN,
  CLIENT_ID,
  Idp,
  cli,
  expired,
  home,
  readRecord,
  start,
  firstLine,
  stop,
  until,
  writeRecord,
};
