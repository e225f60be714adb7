// An Electron-style main-process module (no Electron needed to read it): it
// keeps the signed-in state of one profile for the UI, and answers the
// renderer's requests for a token. A burst of IPC calls at launch shares one
// refresh; a session the provider ended turns the UI to "sign in".
//
// In Electron: `const auth = await DesktopAuth.open('default');`, then
// `ipcMain.handle('auth:token', () => auth.token())` and
// `auth.onChange((state) => win.webContents.send('auth:state', state))`.

import { Keeper, type KeeperError } from 'authkeep';

export type SignInState =
  | { kind: 'signed-in'; expiresAt: string | null }
  | { kind: 'signed-out' }
  | { kind: 'sign-in-needed'; reason: string }
  | { kind: 'offline'; since: string };

export class DesktopAuth {
  #state: SignInState = { kind: 'signed-out' };
  readonly #listeners = new Set<(state: SignInState) => void>();

  private constructor(
    private readonly keeper: Keeper,
    private readonly profile: string,
  ) {}

  static async open(profile: string): Promise<DesktopAuth> {
    const auth = new DesktopAuth(await Keeper.open(), profile);
    auth.keeper
      .on('stored', (event) => {
        if (event.key !== auth.profile) return;
        auth.set(event.expiresAt ? { kind: 'signed-in', expiresAt: event.expiresAt } : { kind: 'signed-out' });
      })
      .on('loginRequired', (event) => {
        if (event.key === auth.profile) auth.set({ kind: 'sign-in-needed', reason: event.class ?? 'no session' });
      })
      .on('refreshFailed', (event) => {
        if (event.key === auth.profile && event.class === 'transient') {
          auth.set({ kind: 'offline', since: new Date().toISOString() });
        }
      })
      .on('refreshed', (event) => {
        if (event.key === auth.profile) auth.set({ kind: 'signed-in', expiresAt: event.expiresAt ?? null });
      });
    const status = await auth.keeper.status(profile);
    auth.#state =
      status.state === 'valid' || status.state === 'expired_renewable'
        ? { kind: 'signed-in', expiresAt: status.expiresAt }
        : status.state === 'none'
          ? { kind: 'signed-out' }
          : { kind: 'sign-in-needed', reason: status.lastError?.class ?? status.state };
    return auth;
  }

  get state(): SignInState {
    return this.#state;
  }

  /** Calls `listener` with every change of the signed-in state; returns how to stop. */
  onChange(listener: (state: SignInState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The renderer's `auth:token` request: a token, or null when the user must
   * sign in (the state says so too). Concurrent calls share one refresh.
   */
  async token(): Promise<string | null> {
    try {
      return (await this.keeper.token(this.profile, { minValid: '1m' })).accessToken;
    } catch (error) {
      if ((error as KeeperError).code === 'LOGIN_REQUIRED') return null;
      throw error;
    }
  }

  /** The renderer's API calls go through here: a 401 renews the token once. */
  api(url: string, init?: RequestInit): Promise<Response> {
    return this.keeper.fetch(this.profile, url, init);
  }

  /** "Sign out" in the UI: the session is removed (the provider is not told). */
  async signOut(): Promise<void> {
    await this.keeper.logout(this.profile);
    this.set({ kind: 'signed-out' });
  }

  private set(state: SignInState): void {
    if (JSON.stringify(state) === JSON.stringify(this.#state)) return;
    this.#state = state;
    for (const listener of this.#listeners) listener(state);
  }
}
