'use strict';
// The race figures: for 2 and 8 separate Node processes starting at one
// instant from one expired session, TRIALS times each, the refresh requests
// the provider saw and the processes that got a token the provider accepts.
// Usage: node bench/race.js [TRIALS]   (AUTHKEEP_BIN: the authkeep command)

const { Idp } = require('../test/helpers');
const { race } = require('../test/race');

async function main() {
  const trials = Number(process.argv[2] ?? 5);
  const idp = await Idp.start();
  try {
    console.log('processes  trial  refresh requests  with a working token  session kept');
    for (const processes of [2, 8]) {
      for (let trial = 1; trial <= trials; trial += 1) {
        const r = await race(idp, processes);
        console.log(
          `${String(processes).padStart(9)}  ${String(trial).padStart(5)}  ${String(r.refreshRequests).padStart(16)}  ` +
            `${`${r.working}/${processes}`.padStart(20)}  ${r.sessionKept ? 'yes' : 'NO'}`,
        );
      }
    }
    const counters = await idp.counters();
    console.log(`grants revoked: ${counters.grants_revoked}, invalid_grant: ${counters.token_requests.refresh_token?.invalid_grant ?? 0}`);
  } finally {
    await idp.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
