'use strict';
// authkeep for Node.js. The native module (src/lib.rs, built by `npm install`)
// does the work through the authkeep library; this file only loads it, turns
// its rejections into errors with a `code`, and converts `fetch` requests and
// answers to and from the standard `Request` and `Response`.

const path = require('node:path');

const CODES = new Set([
  'LOGIN_REQUIRED',
  'RETRY_LATER',
  'MISCONFIGURED',
  'STORE_ERROR',
  'INVALID_ARGUMENT',
]);

// napi-rs's own codes for arguments of the wrong type.
const ARGUMENT_STATUSES = new Set([
  'InvalidArg',
  'ObjectExpected',
  'StringExpected',
  'NameExpected',
  'FunctionExpected',
  'NumberExpected',
  'BooleanExpected',
  'ArrayExpected',
  'BigintExpected',
]);

function platformSuffix() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    const glibc = process.report?.getReport?.().header?.glibcVersionRuntime;
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`;
  }
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

function loadNative() {
  const file = path.join(__dirname, `authkeep.${platformSuffix()}.node`);
  try {
    return require(file);
  } catch (error) {
    const wrapped = new Error(
      `authkeep: cannot load the native module ${path.basename(file)} (${error.message}); ` +
        'it is built by `npm install` with cargo: install again with the Rust toolchain on PATH',
    );
    wrapped.code = 'MISCONFIGURED';
    throw wrapped;
  }
}

const native = loadNative();

/** An error of the native module, with its `code` and without the prefix. */
function convert(error) {
  if (!(error instanceof Error)) return error;
  const match = /^([A-Z_]+): /.exec(error.message);
  if (match && CODES.has(match[1])) {
    const converted = new Error(error.message.slice(match[0].length));
    converted.code = match[1];
    return converted;
  }
  if (ARGUMENT_STATUSES.has(error.code)) {
    const converted = new TypeError(error.message);
    converted.code = 'INVALID_ARGUMENT';
    return converted;
  }
  return error;
}

/** Runs a native call, synchronous failures (arguments) included, as a promise. */
async function call(native) {
  try {
    return await native();
  } catch (error) {
    throw convert(error);
  }
}

function sync(fn) {
  try {
    return fn();
  } catch (error) {
    throw convert(error);
  }
}

// Statuses whose answers have no body, which `new Response` refuses one for.
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** A token as the interface promises it: an unknown expiry is null. */
function token(native) {
  return { accessToken: native.accessToken, tokenType: native.tokenType, expiresAt: native.expiresAt ?? null };
}

class Keeper {
  #native;

  /** Use `Keeper.open()`. */
  constructor(handle) {
    if (!(handle instanceof native.NativeKeeper)) {
      throw new TypeError('use Keeper.open() to open a keeper');
    }
    this.#native = handle;
  }

  static async open(options = {}) {
    return new Keeper(await call(() => native.open(options ?? {})));
  }

  async token(key, options = {}) {
    return token(await call(() => this.#native.token(key, options ?? {})));
  }

  async rejected(key, rejected) {
    return token(await call(() => this.#native.rejected(key, rejected)));
  }

  importLogin(key, login) {
    return call(() => this.#native.importLogin(key, login));
  }

  logout(key) {
    return call(() => this.#native.logout(key));
  }

  async status(key) {
    const status = await call(() => this.#native.status(key));
    return {
      key: status.key,
      issuer: status.issuer ?? null,
      expiresAt: status.expiresAt ?? null,
      canRenew: status.canRenew,
      state: status.state,
      lastError: status.lastError ?? null,
    };
  }

  on(eventName, callback) {
    if (typeof callback !== 'function') {
      const error = new TypeError('on(eventName, callback) needs a function');
      error.code = 'INVALID_ARGUMENT';
      throw error;
    }
    // A listener that throws is reported as an uncaught exception, as an
    // EventEmitter's would be, rather than inside the native call.
    const listener = (info) => {
      try {
        callback(info);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    };
    sync(() => this.#native.on(eventName, listener));
    return this;
  }

  async fetch(key, input, init = undefined) {
    let request;
    try {
      request = new Request(input, init);
    } catch (error) {
      const converted = new TypeError(error.message);
      converted.code = 'INVALID_ARGUMENT';
      throw converted;
    }
    const body = request.body ? Buffer.from(await request.arrayBuffer()) : undefined;
    const answer = await call(() =>
      this.#native.fetch(key, {
        url: request.url,
        method: request.method,
        headers: [...request.headers],
        body,
        refreshOn403: init?.refreshOn403 === true,
      }),
    );
    const response = new Response(NULL_BODY.has(answer.status) ? null : answer.body, {
      status: answer.status,
      statusText: answer.statusText,
      headers: answer.headers,
    });
    Object.defineProperty(response, 'url', { value: answer.url });
    return response;
  }
}

module.exports = { Keeper };
