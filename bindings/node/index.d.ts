// Type declarations of the authkeep package (index.js over the native module).

/** Where sessions are kept, for `Keeper.open`. Both optional. */
export interface OpenOptions {
  /** One directory for configuration and state, as `AUTHKEEP_HOME`. */
  home?: string;
  /**
   * `'file'`, `'encrypted-file'` or `'keyring'` (profiles, as `authkeep
   * token` keeps them), or a database of accounts: `'sqlite:PATH'` (`'sqlite:'`
   * alone: `accounts.db` in the state directory) or `'postgres://…'`. As
   * `AUTHKEEP_STORE`; by default the configuration file's store.
   */
  store?: string;
}

/** What `token()` is asked for. */
export interface TokenOptions {
  /** The token handed out stays valid at least this long: `'10m'`, `'1h30m'`, or seconds. */
  minValid?: string | number;
}

/** A usable access token. */
export interface Token {
  accessToken: string;
  /** Usually `'Bearer'`. */
  tokenType: string;
  /** RFC 3339 (ISO 8601) UTC, or null when the provider gave no expiry. */
  expiresAt: string | null;
}

/** A token response (RFC 6749 §5.1) or another client's token record. */
export type TokenResponse = {
  access_token?: string;
  accessToken?: string;
  token_type?: string;
  expires_in?: number | string;
  refresh_token?: string;
  scope?: string;
  id_token?: string;
  expires_at?: string | number;
  [field: string]: unknown;
};

/** A login obtained elsewhere, for a profile of the file store. */
export interface ProfileLogin {
  issuer: string;
  clientId: string;
  tokenResponse: TokenResponse;
}

/** A login obtained elsewhere, for an account of a database store. */
export interface AccountLogin {
  /** The name of a client stored in the database (`authkeep clients add`). */
  client: string;
  tokenResponse: TokenResponse;
}

/** The class of a failed refresh. */
export type FailureClass = 'session_dead' | 'interaction_required' | 'misconfiguration' | 'transient';

/** What a session amounts to now. Never a secret. */
export interface SessionStatus {
  key: string;
  issuer: string | null;
  expiresAt: string | null;
  canRenew: boolean;
  state: 'none' | 'ended' | 'valid' | 'expired_renewable' | 'login_required';
  lastError: { class: FailureClass; at: string } | null;
}

/** What an event's callback receives. */
export interface KeeperEvent {
  key: string;
  /** `refreshFailed`: the failure's class; `loginRequired`: why, when the provider said. */
  class?: FailureClass;
  /** `refreshed`, `stored`: the new expiry, when known. */
  expiresAt?: string;
}

/**
 * `refreshed`: a refresh succeeded and was saved. `refreshFailed`: a refresh
 * failed (with its class). `loginRequired`: no token can be had without the
 * user. `stored`: a session's tokens changed and were saved (login, import,
 * refresh, end, logout).
 */
export type KeeperEventName = 'refreshed' | 'refreshFailed' | 'loginRequired' | 'stored';

/** `fetch`'s init: the standard one, and the 403 rule. */
export interface KeeperRequestInit extends RequestInit {
  /** Treat a 403 from the URL's origin as a rejection of the token too. */
  refreshOn403?: boolean;
}

/** The `code` of every error authkeep raises. */
export type ErrorCode =
  | 'LOGIN_REQUIRED'
  | 'RETRY_LATER'
  | 'MISCONFIGURED'
  | 'STORE_ERROR'
  | 'INVALID_ARGUMENT';

/** An error of authkeep: its message never carries a secret. */
export interface KeeperError extends Error {
  code: ErrorCode;
}

/**
 * Keeps sessions alive: hands out access tokens, refreshing them when due,
 * once across threads and processes. Keys are profile names on a file store
 * and account ids on a database store.
 */
export declare class Keeper {
  private constructor();
  /** Opens a keeper on the store the options, the environment and `config.toml` choose. */
  static open(options?: OpenOptions): Promise<Keeper>;
  /** A usable access token, refreshed if due. */
  token(key: string, options?: TokenOptions): Promise<Token>;
  /** A server rejected `token` (a 401): a refresh only if the session still holds it. */
  rejected(key: string, token: string): Promise<Token>;
  /** Stores a login obtained elsewhere. */
  importLogin(key: string, login: ProfileLogin | AccountLogin): Promise<void>;
  /** Removes the session; resolves to whether there was one. */
  logout(key: string): Promise<boolean>;
  /** What the session amounts to now, without the network. */
  status(key: string): Promise<SessionStatus>;
  /** Calls `callback` with every event of this name. Listeners do not keep the process alive. */
  on(eventName: KeeperEventName, callback: (event: KeeperEvent) => void): this;
  /**
   * Sends a request with the session's token to the URL's origin; a 401 (or
   * a 403 with `refreshOn403`) renews the token and sends the request once more.
   */
  fetch(key: string, input: string | URL | Request, init?: KeeperRequestInit): Promise<Response>;
}
