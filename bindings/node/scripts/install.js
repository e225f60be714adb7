'use strict';
// `npm install` runs this: it builds the native module from the Rust sources
// with cargo (through @napi-rs/cli, a dependency of this package), so nothing
// depends on a prebuilt file. It needs cargo (the toolchain named in the
// repository's rust-toolchain.toml) and a C linker.
//
// `npm install ./bindings/node` from a project outside the repository links
// this directory without installing its dependencies into it; then they are
// installed here first, exactly as locked (production dependencies only).

const { execFileSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');

function napiCli() {
  try {
    const manifest = require.resolve('@napi-rs/cli/package.json', { paths: [root] });
    return path.join(path.dirname(manifest), 'dist', 'cli.js');
  } catch {
    return null;
  }
}

let cli = napiCli();
if (!cli) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(
    npm,
    ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
    { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' },
  );
  cli = napiCli();
  if (!cli) {
    console.error('authkeep: @napi-rs/cli could not be installed; cannot build the native module');
    process.exit(1);
  }
}

try {
  execFileSync(
    process.execPath,
    [cli, 'build', '--platform', '--release', '--no-js', '--dts', 'native.d.ts', '--no-dts-header', '--', '--locked'],
    { cwd: root, stdio: 'inherit' },
  );
} catch (error) {
  console.error(
    'authkeep: building the native module failed. It is built from source with cargo: ' +
      'install the Rust toolchain (https://rustup.rs) and a C linker, then install again.',
  );
  process.exit(typeof error.status === 'number' && error.status !== 0 ? error.status : 1);
}
