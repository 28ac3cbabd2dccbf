/**
 * Registry authentication: WWW-Authenticate challenges, Basic, and Bearer tokens from the realm
 * (docker token spec and its OAuth2 refresh-token form), cached per scope until they expire.
 *
 * Tokens and passwords only ever go into Authorization headers and token-request bodies: never into
 * messages, errors or logs.
 */
import { HoistError } from '../errors.ts';

export type Credentials = { username: string; password: string } | { identityToken: string };

export interface Challenge {
  /** Lower-cased scheme: 'basic', 'bearer', … */
  scheme: string;
  /** Parameter names lower-cased, values unquoted. */
  params: Record<string, string>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/;

/**
 * Parses one or more WWW-Authenticate values (RFC 9110 §11.6.1): `Scheme k=v, k="quoted, with commas", Other …`.
 * Several challenges may share one header; a token not followed by `=` starts the next one.
 */
export function parseWWWAuthenticate(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseWWWAuthenticate(h));
  const out: Challenge[] = [];
  let s = header;
  let current: Challenge | undefined;
  const skip = (re: RegExp) => {
    const m = re.exec(s);
    if (m) s = s.slice(m[0].length);
  };
  while (true) {
    skip(/^[\s,]+/);
    if (s === '') break;
    const tok = TOKEN.exec(s);
    if (!tok) break; // garbage: keep what parsed so far
    const word = tok[0];
    const rest = s.slice(word.length);
    const eq = /^\s*=\s*/.exec(rest);
    // token68 (e.g. `Basic abc==`) or a parameter: both have `=`; a parameter needs a current challenge.
    if (eq && current) {
      s = rest.slice(eq[0].length);
      let value: string;
      if (s.startsWith('"')) {
        let v = '';
        let i = 1;
        for (; i < s.length && s[i] !== '"'; i++) {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          v += s[i];
        }
        value = v;
        s = s.slice(i + 1);
      } else {
        const m = /^[^\s,]*/.exec(s);
        value = m ? m[0] : '';
        s = s.slice(value.length);
      }
      current.params[word.toLowerCase()] = value;
      continue;
    }
    current = { scheme: word.toLowerCase(), params: {} };
    out.push(current);
    s = rest;
  }
  return out;
}

export function basicAuthHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

/** `repository:NAME:pull,push` */
export function repositoryScope(repo: string, actions: readonly string[]): string {
  return `repository:${repo}:${actions.join(',')}`;
}

/** Merges scopes on the same resource (`repository:a:pull` + `repository:a:push` → `repository:a:pull,push`), sorted. */
export function mergeScopes(scopes: Iterable<string>): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const scope of scopes) {
    for (const one of scope.split(/\s+/)) {
      if (one === '') continue;
      const last = one.lastIndexOf(':');
      const first = one.indexOf(':');
      if (first <= 0 || last === first) continue; // not type:name:actions
      const resource = one.slice(0, last);
      let set = byResource.get(resource);
      if (!set) byResource.set(resource, (set = new Set()));
      for (const a of one.slice(last + 1).split(',')) if (a !== '') set.add(a);
    }
  }
  return [...byResource.entries()]
    .map(([resource, actions]) => `${resource}:${[...actions].sort().join(',')}`)
    .sort();
}

/** What the authenticator needs from the HTTP layer: one request, body read whole (token responses are small). */
export type AuthHttp = (
  url: string,
  init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string },
) => Promise<{ status: number; body: Buffer }>;

interface CachedToken {
  header: string;
  expiresAt: number;
}

interface TokenEntry {
  realm: string;
  service: string;
  /** `resource:action` pairs the token was asked for. */
  grants: Set<string>;
  pending: Promise<CachedToken>;
  settled?: CachedToken;
}

/** `repository:a:pull,push` → {`repository:a:pull`, `repository:a:push`} */
function grantsOf(scopes: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const s of scopes) {
    const last = s.lastIndexOf(':');
    for (const a of s.slice(last + 1).split(',')) if (a !== '') out.add(`${s.slice(0, last)}:${a}`);
  }
  return out;
}

export interface AuthenticatorOptions {
  /** Registry host as the user wrote it, for messages. */
  host: string;
  credentials?: Credentials;
  http: AuthHttp;
  now?: () => number;
}

const DEFAULT_TOKEN_LIFETIME_S = 60;

/**
 * Per-registry auth state. The client asks `authorize(scopes)` before a request and calls `unauthorized(…)`
 * after a 401; the challenge's own scope is merged with the scopes the client predicted, so one token can
 * cover a cross-repository mount (push on the target, pull on the source).
 */
export class Authenticator {
  readonly #host: string;
  readonly #credentials: Credentials | undefined;
  readonly #http: AuthHttp;
  readonly #now: () => number;
  #challenge: Challenge | undefined;
  readonly #tokens = new Map<string, TokenEntry>();

  constructor(opts: AuthenticatorOptions) {
    this.#host = opts.host;
    this.#credentials = opts.credentials;
    this.#http = opts.http;
    this.#now = opts.now ?? Date.now;
  }

  get hasCredentials(): boolean {
    return this.#credentials !== undefined;
  }

  /** Learns the scheme from a `/v2/` answer without sending anything. */
  learn(header: string | string[] | undefined): void {
    const c = pickChallenge(parseWWWAuthenticate(header));
    if (c) this.#challenge = c;
  }

  /** The Authorization header to send for these scopes, or undefined (anonymous) while no challenge is known. */
  async authorize(scopes: readonly string[]): Promise<string | undefined> {
    const c = this.#challenge;
    if (!c) return undefined;
    if (c.scheme === 'basic') return this.#basic();
    return (await this.#token(c, mergeScopes(scopes), undefined)).header;
  }

  /**
   * After a 401: the header to retry with, or undefined when nothing new can be tried (the caller then
   * reports the 401). `sent` is the header the refused request carried: a cached token that was refused
   * is dropped and fetched anew (renewal on 401).
   */
  async unauthorized(header: string | string[] | undefined, scopes: readonly string[], sent: string | undefined): Promise<string | undefined> {
    const c = pickChallenge(parseWWWAuthenticate(header)) ?? this.#challenge;
    if (!c) return undefined;
    this.#challenge = c;
    if (c.scheme === 'basic') {
      const h = this.#basic();
      return h === sent ? undefined : h;
    }
    const wanted = mergeScopes([...scopes, c.params.scope ?? '']);
    const t = await this.#token(c, wanted, sent);
    return t.header === sent ? undefined : t.header;
  }

  #basic(): string | undefined {
    const cr = this.#credentials;
    return cr && 'username' in cr ? basicAuthHeader(cr.username, cr.password) : undefined;
  }

  async #token(c: Challenge, scopes: string[], refused: string | undefined): Promise<CachedToken> {
    const realm = c.params.realm;
    if (!realm) {
      throw new HoistError('AUTH_SERVER', `${this.#host}: the registry asks for a Bearer token but names no realm; it is misconfigured`);
    }
    const service = c.params.service ?? '';
    const want = grantsOf(scopes);
    // Any live token asked for at least these scopes will do: a push token also serves pulls of that repository.
    for (const [key, e] of this.#tokens) {
      if (e.realm !== realm || e.service !== service || ![...want].every((g) => e.grants.has(g))) continue;
      if (e.settled === undefined) return e.pending;
      if (e.settled.header === refused || e.settled.expiresAt <= this.#now()) {
        this.#tokens.delete(key);
        continue;
      }
      return e.settled;
    }
    const key = `${realm}\n${service}\n${scopes.join(' ')}`;
    const pending = this.#fetchToken(realm, c.params.service, scopes);
    const entry: TokenEntry = { realm, service, grants: want, pending };
    this.#tokens.set(key, entry);
    pending.then(
      (t) => {
        entry.settled = t;
      },
      () => {
        if (this.#tokens.get(key) === entry) this.#tokens.delete(key);
      },
    );
    return pending;
  }

  async #fetchToken(realm: string, service: string | undefined, scopes: string[]): Promise<CachedToken> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new HoistError('AUTH_SERVER', `${this.#host}: the registry's token realm "${realm}" is not a URL; it is misconfigured`);
    }
    const cr = this.#credentials;
    const headers: Record<string, string> = {};
    let res: { status: number; body: Buffer };
    const started = this.#now();
    if (cr && 'identityToken' in cr) {
      // OAuth2 refresh-token grant (what docker does with an identity token).
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cr.identityToken, client_id: 'hoist' });
      if (service !== undefined) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      headers['content-type'] = 'application/x-www-form-urlencoded';
      res = await this.#http(url.toString(), { method: 'POST', headers, body: form.toString() });
    } else {
      if (service !== undefined) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (cr) headers.authorization = basicAuthHeader(cr.username, cr.password);
      res = await this.#http(url.toString(), { method: 'GET', headers });
    }
    if (res.status === 401 || res.status === 403) {
      throw new HoistError('UNAUTHORIZED', `${this.#host}: ${cr ? 'the token server refused the credentials' : 'authentication required'} (HTTP ${res.status}); check --creds or run hoist login ${this.#host}`);
    }
    if (res.status !== 200) {
      throw new HoistError('AUTH_SERVER', `${this.#host}: the token server ${url.origin} answered HTTP ${res.status}; try again later`);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(res.body.toString('utf8')) as typeof body;
    } catch {
      throw new HoistError('AUTH_SERVER', `${this.#host}: the token server ${url.origin} answered something that is not JSON`);
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : body.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new HoistError('AUTH_SERVER', `${this.#host}: the token server ${url.origin} answered without a token`);
    }
    const lifetime = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_LIFETIME_S;
    // Renew a little early so a token does not expire between our check and the registry's.
    const margin = Math.min(5_000, lifetime * 100);
    return { header: `Bearer ${token}`, expiresAt: started + lifetime * 1000 - margin };
  }
}

function pickChallenge(cs: Challenge[]): Challenge | undefined {
  return cs.find((c) => c.scheme === 'bearer') ?? cs.find((c) => c.scheme === 'basic');
}
