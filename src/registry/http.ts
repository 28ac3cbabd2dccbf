/**
 * One registry's HTTP plumbing: scheme choice (https, or http for loopback / --tls-verify=false), TLS material,
 * keep-alive connections (one undici Agent), authentication round trips, redirects, and retries.
 * Everything above it speaks in API paths and expected statuses.
 */
import { Readable } from 'node:stream';
import { Agent, request as undiciRequest, type ResponseBody } from './undici.ts';
import type { IncomingHttpHeaders } from 'node:http';
import { HoistError } from '../errors.ts';
import { readAll } from '../util/stream.ts';
import { Authenticator, type Credentials } from './auth.ts';
import { httpError, isNotTlsError, networkError } from './errors.ts';
import { apiHost, isLoopbackHost, urlHost } from './host.ts';
import { isRetryableStatus, isTransientNetworkError, parseRetryAfter, withRetry, type RetryPolicy } from './retry.ts';
import { tlsMaterialFor } from './tls.ts';

export type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

export interface HttpRequest {
  method: Method;
  /** An API path (`/v2/…`, may carry a query) or an absolute URL (upload Locations). */
  path: string;
  headers?: Record<string, string>;
  /** A Readable body is sent once: it is retried only if the failure came before its first byte was read. */
  body?: Buffer | string | Readable;
  /** Token scopes this request needs (`repository:NAME:pull`). */
  scopes: readonly string[];
  /** Statuses the caller handles; any other becomes a HoistError. */
  expect: readonly number[];
  /** For messages: the target (`host/repo:tag`) and the action (`pulling manifest`). */
  what: string;
  action: string;
  /** Send once: the caller has its own recovery (chunk uploads check the session before re-sending). */
  noRetry?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
  /** The URL that answered (after redirects): Locations resolve against it. */
  url: URL;
}

export interface HttpOptions {
  host: string;
  tlsVerify: boolean;
  certDir: string | undefined;
  credentials: Credentials | undefined;
  retry: RetryPolicy;
  userAgent: string;
}

const MAX_REDIRECTS = 5;
const ERROR_BODY_LIMIT = 64 * 1024;

/** First value of a response header. */
export function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** A 5xx/429 answer while retries remain: carried through withRetry, turned into a HoistError if they run out. */
class TransientStatus extends Error {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  readonly body: Buffer;
  constructor(status: number, retryAfterMs: number | undefined, body: Buffer) {
    super(`HTTP ${status}`);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.body = body;
  }
}

export class RegistryHttp {
  readonly host: string;
  readonly auth: Authenticator;
  readonly #opts: HttpOptions;
  readonly #api: string;
  #agent: Agent | undefined;
  #origin: Promise<string> | undefined;
  #closed = false;

  constructor(opts: HttpOptions) {
    this.#opts = opts;
    this.host = opts.host;
    this.#api = urlHost(apiHost(opts.host));
    this.auth = new Authenticator({ host: opts.host, credentials: opts.credentials, http: (url, init) => this.#authHttp(url, init) });
  }

  get retryPolicy(): RetryPolicy {
    return this.#opts.retry;
  }

  /** `https://host` or `http://host`, decided once by probing `/v2/` (which also learns the auth challenge). */
  origin(what: string = this.host): Promise<string> {
    if (!this.#origin) {
      const p = this.#probe(what);
      this.#origin = p;
      // A failed probe is not cached: the next call tries again.
      p.catch(() => {
        if (this.#origin === p) this.#origin = undefined;
      });
    }
    return this.#origin;
  }

  async #getAgent(): Promise<Agent> {
    if (this.#closed) throw new HoistError('CLOSED', `${this.host}: registry client used after close()`);
    if (!this.#agent) {
      const tls = await tlsMaterialFor(this.host, this.#opts.certDir);
      this.#agent ??= new Agent({
        connect: { ...tls, rejectUnauthorized: this.#opts.tlsVerify },
        keepAliveTimeout: 10_000,
      });
    }
    return this.#agent;
  }

  async #probe(what: string): Promise<string> {
    const https = `https://${this.#api}`;
    const plainAllowed = !this.#opts.tlsVerify || isLoopbackHost(this.#api);
    const tryOrigin = async (origin: string) =>
      withRetry(
        this.#opts.retry,
        async () => {
          const res = await this.#raw(new URL('/v2/', origin), 'GET', {}, undefined);
          this.auth.learn(res.headers['www-authenticate']);
          await res.body.dump();
          if (isRetryableStatus(res.status)) throw new TransientStatus(res.status, parseRetryAfter(header(res.headers, 'retry-after')), Buffer.alloc(0));
        },
        (e) => {
          if (e instanceof TransientStatus) return { retry: true, delayMs: e.retryAfterMs };
          if (plainAllowed && origin === https && isNotTlsError(e)) return { retry: false };
          return { retry: isTransientNetworkError(e) };
        },
      );
    // On loopback, ask plain http first: nothing leaves the machine, and it skips setting up TLS (~17 ms of CPU,
    // a third of a whole `skopeo inspect`) for the common local test registry. A TLS server answers plain http
    // with 400 ("Client sent an HTTP request to an HTTPS server") or drops it: then use https as usual.
    if (isLoopbackHost(this.#api)) {
      const http = `http://${this.#api}`;
      try {
        const res = await this.#raw(new URL('/v2/', http), 'GET', {}, undefined);
        const body = await readAll(res.body, 64 * 1024, () => new Error('large'));
        if (res.status !== 400 || !/https/i.test(body.toString('utf8'))) {
          this.auth.learn(res.headers['www-authenticate']);
          if (!isRetryableStatus(res.status)) return http;
        }
      } catch {
        // Not plain http (or not up yet): fall through to the usual https-first probe with its retries.
      }
    }
    try {
      await tryOrigin(https);
      return https;
    } catch (e) {
      // Like docker's insecure registries: a server that does not speak TLS at all may be spoken to in plain
      // http; a certificate that fails verification never is.
      if (plainAllowed && isNotTlsError(e)) {
        const http = `http://${this.#api}`;
        try {
          await tryOrigin(http);
        } catch (e2) {
          throw this.#finalError(e2, what, 'connecting');
        }
        return http;
      }
      throw this.#finalError(e, what, 'connecting');
    }
  }

  #finalError(e: unknown, what: string, action: string): HoistError {
    if (e instanceof TransientStatus) {
      return httpError({ host: this.host, what, action, status: e.status, body: e.body, authenticated: this.auth.hasCredentials });
    }
    return networkError(this.host, what, e);
  }

  /** One HTTP exchange, no auth, no redirects, no retries. */
  async #raw(url: URL, method: Method, headers: Record<string, string>, body: Buffer | string | Readable | undefined): Promise<HttpResponse> {
    const agent = await this.#getAgent();
    const res = await undiciRequest(url, {
      dispatcher: agent,
      method,
      headers: { 'user-agent': this.#opts.userAgent, ...headers },
      body: body ?? null,
    });
    return { status: res.statusCode, headers: res.headers, body: res.body, url };
  }

  /** Token-server requests: same connections and TLS trust, retried like the rest. */
  async #authHttp(url: string, init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string }): Promise<{ status: number; body: Buffer }> {
    const what = `${this.host} (token server ${new URL(url).origin})`;
    try {
      return await withRetry(
        this.#opts.retry,
        async () => {
          const res = await this.#raw(new URL(url), init.method, init.headers, init.body);
          const body = await readAll(res.body, 1024 * 1024, () => new HoistError('AUTH_SERVER', `${what}: token response over 1 MiB`));
          if (isRetryableStatus(res.status)) throw new TransientStatus(res.status, parseRetryAfter(header(res.headers, 'retry-after')), body);
          return { status: res.status, body };
        },
        (e) => (e instanceof TransientStatus ? { retry: true, delayMs: e.retryAfterMs } : { retry: isTransientNetworkError(e) }),
      );
    } catch (e) {
      if (e instanceof TransientStatus) return { status: e.status, body: e.body };
      throw networkError(this.host, what, e);
    }
  }

  /**
   * GET/HEAD follow redirects (blob storage). Credentials go to the registry's own origin only: never along a
   * redirect, a Location or a Link to another host.
   */
  async #send(start: URL, registryOrigin: string, req: HttpRequest, auth: string | undefined, body: Buffer | string | Readable | undefined): Promise<HttpResponse> {
    let url = start;
    for (let hops = 0; ; hops++) {
      const headers = { ...req.headers };
      if (auth !== undefined && url.origin === registryOrigin) headers.authorization = auth;
      const res = await this.#raw(url, req.method, headers, body);
      const loc = header(res.headers, 'location');
      const redirect = [301, 302, 303, 307, 308].includes(res.status) && loc !== undefined && (req.method === 'GET' || req.method === 'HEAD');
      if (!redirect || req.expect.includes(res.status)) return res;
      await res.body.dump();
      if (hops >= MAX_REDIRECTS) {
        throw new HoistError('REGISTRY_ERROR', `${req.what}: ${req.action}: more than ${MAX_REDIRECTS} redirects`);
      }
      url = new URL(loc, url);
    }
  }

  /**
   * Sends a request with authentication, redirects and retries, and returns the response when its status is one
   * of `req.expect` (the caller then owns the body). Anything else is thrown as one HoistError.
   */
  async request(req: HttpRequest): Promise<HttpResponse> {
    const origin = await this.origin(req.what);
    const url = new URL(req.path, origin);
    let streamStarted = false;
    // undici destroys a request body when the request fails; a fresh wrapper per send keeps the caller's stream
    // intact (and sendable) as long as nothing has been read from it.
    const bodyForSend = (): Buffer | string | Readable | undefined => {
      const src = req.body;
      if (!(src instanceof Readable)) return src;
      return Readable.from(
        (async function* () {
          streamStarted = true;
          yield* src;
        })(),
        { objectMode: false },
      );
    };
    try {
      return await withRetry(
        req.noRetry ? { ...this.#opts.retry, times: 0 } : this.#opts.retry,
        async () => {
          let auth = await this.auth.authorize(req.scopes);
          for (let authRound = 0; ; authRound++) {
            const res = await this.#send(url, origin, req, auth, bodyForSend());
            if (res.status === 401 && !req.expect.includes(401) && authRound < 2 && !streamStarted) {
              const challenge = res.headers['www-authenticate'];
              await res.body.dump();
              const next = await this.auth.unauthorized(challenge, req.scopes, auth);
              if (next !== undefined) {
                auth = next;
                continue;
              }
              // Nothing new to try: report this 401 (its body is gone; the status says enough).
              throw httpError({ host: this.host, what: req.what, action: req.action, status: 401, body: Buffer.alloc(0), authenticated: this.auth.hasCredentials });
            }
            if (req.expect.includes(res.status)) return res;
            const errBody = await readAll(res.body, ERROR_BODY_LIMIT, () => new Error('error body too large')).catch(() => Buffer.alloc(0));
            if (isRetryableStatus(res.status)) throw new TransientStatus(res.status, parseRetryAfter(header(res.headers, 'retry-after')), errBody);
            throw httpError({ host: this.host, what: req.what, action: req.action, status: res.status, body: errBody, authenticated: this.auth.hasCredentials });
          }
        },
        (e) => {
          // A stream body that has been (partly) sent cannot be sent again from here.
          if (streamStarted) return { retry: false };
          if (e instanceof TransientStatus) return { retry: true, delayMs: e.retryAfterMs };
          if (e instanceof HoistError) return { retry: false };
          return { retry: isTransientNetworkError(e) };
        },
      );
    } catch (e) {
      throw this.#finalError(e, req.what, req.action);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const a = this.#agent;
    this.#agent = undefined;
    if (a) await a.close();
  }
}
