'use strict';
// One process of a race: opens a keeper on HOME, says "ready", waits for a
// line on stdin, asks for PROFILE's token and prints the outcome as JSON.

const { Keeper } = require('..');

const [home, profile] = process.argv.slice(2);

async function main() {
  const keeper = await Keeper.open({ home });
  process.stdout.write('ready\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  try {
    const token = await keeper.token(profile);
    process.stdout.write(`${JSON.stringify({ token: token.accessToken })}\n`);
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ code: error.code, message: error.message })}\n`);
  }
  process.stdin.pause();
}

main().catch((error) => {
  process.stdout.write(`${JSON.stringify({ code: error.code ?? 'crash', message: String(error) })}\n`);
  process.exitCode = 1;
});
