// A certified OpenID Provider (panva's oidc-provider 8.x) on loopback, for
// authkeep's conformance tests. Never a production server.
//
//   node server.mjs [PORT]          (PORT 0 or absent: the OS chooses)
//
// Once listening it prints exactly one line to stdout,
// {"issuer":"http://127.0.0.1:PORT"}, and nothing else ever: everything the
// provider says goes to stderr. It exits when its stdin closes (so a test that
// dies leaves no process behind) or on SIGTERM/SIGINT.
//
// Environment: ACCESS_TTL, the access token lifetime in seconds (default 3600),
// so that tests of refresh and rotation need not wait long.
//
// What it offers: the built-in development login and consent pages
// (devInteractions: any login name, any password), the device authorization
// grant, the authorization code grant with PKCE S256 for a public native client
// on any loopback port (RFC 8252), refresh tokens rotated on every use (a consumed
// one presented again revokes the grant), client credentials for a confidential
// service client, revocation (RFC 7009) and introspection (RFC 7662).

import * as http from 'node:http';

// oidc-provider prints its notices with console.info, to stdout; stdout carries
// only the one line the tests read, so every console method writes to stderr.
// This must run before oidc-provider is loaded, hence the dynamic import below.
for (const method of ['log', 'info', 'debug']) {
  console[method] = (...args) => console.error(...args);
}
const { default: Provider, errors } = await import('oidc-provider');

const PUBLIC_CLIENT = 'authkeep-public';
const SERVICE_CLIENT = 'authkeep-service';
const SERVICE_SECRET = 'service-secret';
const API_RESOURCE = 'urn:authkeep:api';
const API_SCOPE = 'api:read';
const DAY = 24 * 60 * 60;

function fail(message) {
  console.error(`server.mjs: ${message}`);
  process.exit(2);
}

function parsePort(text) {
  if (text === undefined) return 0;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    fail(`the port must be a number from 0 to 65535, not ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function parseTtl(name, text, fallback) {
  if (text === undefined || text === '') return fallback;
  if (!/^\d{1,9}$/.test(text) || Number(text) === 0) {
    fail(`${name} must be a positive number of seconds, not ${JSON.stringify(text)}`);
  }
  return Number(text);
}

const port = parsePort(process.argv[2]);
const accessTtl = parseTtl('ACCESS_TTL', process.env.ACCESS_TTL, 3600);

function configuration() {
  return {
    clients: [
      {
        client_id: PUBLIC_CLIENT,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: [
          'authorization_code',
          'refresh_token',
          'urn:ietf:params:oauth:grant-type:device_code',
        ],
        response_types: ['code'],
        // Any port on this loopback address is accepted for a native client
        // (RFC 8252 §7.3), so authkeep's listener may bind port 0.
        redirect_uris: ['http://127.0.0.1/callback'],
      },
      {
        client_id: SERVICE_CLIENT,
        client_secret: SERVICE_SECRET,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: API_SCOPE,
      },
    ],
    // The service client's scope must be one the provider knows.
    scopes: ['openid', 'offline_access', API_SCOPE],
    // Any login name is an account; the password is not checked.
    async findAccount(ctx, sub) {
      return { accountId: sub, async claims() { return { sub }; } };
    },
    cookies: { keys: ['authkeep-conformance-only-not-a-secret'] },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // A client credentials request without `resource` is for the one API,
        // so a client that sends only `scope` (as most do) gets its token.
        async defaultResource(ctx) {
          return ctx.oidc.params?.grant_type === 'client_credentials' ? API_RESOURCE : undefined;
        },
        async getResourceServerInfo(ctx, indicator) {
          if (indicator !== API_RESOURCE) {
            throw new errors.InvalidTarget();
          }
          return { scope: API_SCOPE, accessTokenTTL: accessTtl, accessTokenFormat: 'opaque' };
        },
        async useGrantedResource() {
          return false;
        },
      },
    },
    // A refresh token for every client allowed the grant, with or without
    // offline_access: oidc-provider drops offline_access from an authorization
    // request without prompt=consent, and authkeep does not send that prompt.
    async issueRefreshToken(ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    // Every use of a refresh token issues a new one and consumes the old.
    rotateRefreshToken: true,
    ttl: {
      AccessToken: accessTtl,
      ClientCredentials: accessTtl,
      DeviceCode: 10 * 60,
      Grant: 14 * DAY,
      IdToken: 60 * 60,
      Interaction: 60 * 60,
      RefreshToken: 14 * DAY,
      Session: 14 * DAY,
    },
  };
}

// Listen first: the issuer names the port, which is known only once bound.
const server = http.createServer();
server.on('error', (error) => fail(`cannot listen on 127.0.0.1:${port}: ${error.message}`));
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let provider;
  try {
    provider = new Provider(issuer, configuration());
  } catch (error) {
    fail(`invalid provider configuration: ${error.message}`);
  }
  provider.on('server_error', (ctx, error) => console.error('server_error:', error));
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

function stop() {
  process.exit(0);
}
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
