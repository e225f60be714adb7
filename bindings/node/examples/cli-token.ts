// A CLI that prints a profile's access token, as `authkeep token` does:
// `node cli-token.js [PROFILE] [--min-valid 10m]`. Exit codes: 0 printed,
// 2 configuration, 3 sign in again, 4 try again later, 1 anything else.
// Several of these started at once refresh an expired session once.

import { Keeper, type ErrorCode, type KeeperError } from 'authkeep';

const EXIT: Record<ErrorCode, number> = {
  MISCONFIGURED: 2,
  INVALID_ARGUMENT: 2,
  LOGIN_REQUIRED: 3,
  RETRY_LATER: 4,
  STORE_ERROR: 1,
};

async function main(args: string[]): Promise<number> {
  const at = args.indexOf('--min-valid');
  const minValid = at >= 0 ? args[at + 1] : undefined;
  const profile = args.find((arg, i) => !arg.startsWith('--') && args[i - 1] !== '--min-valid') ?? 'default';
  try {
    const keeper = await Keeper.open();
    const token = await keeper.token(profile, minValid ? { minValid } : {});
    process.stdout.write(`${token.accessToken}\n`);
    return 0;
  } catch (error) {
    const code = (error as KeeperError).code;
    process.stderr.write(`cli-token: ${(error as Error).message}\n`);
    if (code === 'LOGIN_REQUIRED') process.stderr.write(`cli-token: run \`authkeep login --profile ${profile}\`\n`);
    return code in EXIT ? EXIT[code] : 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
