'use strict';
// token() on a warm token (valid and outside its refresh window), from
// JavaScript: each call's time from the call to the resolved promise, over
// CALLS calls after a warm-up; prints the median and the 99th percentile.
// `cargo run --release -p authkeep --example warm_token` is the same call from
// Rust. Usage: node bench/token-latency.js [CALLS]

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { Keeper } = require('..');

async function main() {
  const calls = Number(process.argv[2] ?? 20000);
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'authkeep-bench-'));
  fs.chmodSync(home, 0o700);
  try {
    const keeper = await Keeper.open({ home });
    await keeper.importLogin('bench', {
      issuer: 'https://idp.example',
      clientId: 'bench',
      tokenResponse: { access_token: 'warm-token', token_type: 'Bearer', expires_in: 3600, refresh_token: 'r' },
    });
    for (let i = 0; i < 1000; i += 1) await keeper.token('bench');
    const times = new Float64Array(calls);
    for (let i = 0; i < calls; i += 1) {
      const start = process.hrtime.bigint();
      await keeper.token('bench');
      times[i] = Number(process.hrtime.bigint() - start) / 1000;
    }
    times.sort();
    const at = (q) => times[Math.min(calls - 1, Math.floor(q * calls))];
    console.log(`token() from JavaScript, warm, file store: ${calls} calls, median ${at(0.5).toFixed(1)} µs, p99 ${at(0.99).toFixed(1)} µs`);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
