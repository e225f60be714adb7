// A backend worker over many accounts of a database store (the one
// `authkeep agent` refreshes ahead): for each account, a fresh token and one
// API call, a few at a time. An account that needs its user to sign in again
// is reported and skipped; a provider that is down leaves every session as it
// was, to try again later. The agent and this worker never refresh one account
// twice: they share the account's lease in the database.
//
// AUTHKEEP_STORE=sqlite:/var/lib/app/accounts.db AUTHKEEP_KEY_FILE=/etc/app/store.key \
//   node worker.js https://api.example.com/v1/sync acct-1 acct-2 …

import { Keeper, type KeeperError } from 'authkeep';

interface Outcome {
  account: string;
  status: number | 'sign-in-needed' | 'retry-later' | 'failed';
}

async function syncAll(keeper: Keeper, url: string, accounts: string[], concurrency = 8): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let next = 0;
  async function lane(): Promise<void> {
    while (next < accounts.length) {
      const account = accounts[next++];
      try {
        // The token is attached to requests for the URL's origin only; a 401
        // renews it once (a refresh only if the store still holds it).
        const response = await keeper.fetch(account, url, { method: 'POST' });
        outcomes.push({ account, status: response.status });
      } catch (error) {
        const code = (error as KeeperError).code;
        outcomes.push({
          account,
          status: code === 'LOGIN_REQUIRED' ? 'sign-in-needed' : code === 'RETRY_LATER' ? 'retry-later' : 'failed',
        });
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
  return outcomes;
}

async function main(): Promise<void> {
  const [url, ...accounts] = process.argv.slice(2);
  if (!url) throw new Error('usage: worker URL ACCOUNT...');
  const keeper = await Keeper.open();
  keeper.on('loginRequired', (event) => console.error(`worker: ${event.key} must sign in again`));
  const outcomes = await syncAll(keeper, url, accounts);
  for (const { account, status } of outcomes) console.log(`${account}\t${status}`);
  for (const account of accounts.slice(0, 3)) {
    const status = await keeper.status(account);
    console.log(`${account}: ${status.state}, expires ${status.expiresAt ?? 'unknown'}, last error ${status.lastError?.class ?? 'none'}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
