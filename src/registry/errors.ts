/**
 * Turns what goes wrong talking to a registry (socket errors, TLS failures, HTTP error answers with their
 * OCI error bodies) into one-line HoistErrors that say what to do.
 */
import { HoistError } from '../errors.ts';

/** The `code` of the first error in the `cause` chain that has one. */
export function errorCode(e: unknown): string | undefined {
  for (let c: unknown = e, depth = 0; c !== null && typeof c === 'object' && depth < 5; c = (c as { cause?: unknown }).cause, depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

const CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_SIGNATURE_FAILURE', 'INVALID_CA', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH', 'CERT_CHAIN_TOO_LONG', 'INVALID_PURPOSE',
]);

/** The server's certificate could not be verified (never a reason to fall back to plain http). */
export function isCertificateError(e: unknown): boolean {
  const code = errorCode(e);
  return code !== undefined && CERT_CODES.has(code);
}

/** The server does not speak TLS on that port (a plain-http registry): the https → http fallback cue. */
export function isNotTlsError(e: unknown): boolean {
  const code = errorCode(e) ?? '';
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || code === 'ERR_SSL_HTTP_REQUEST') return true;
  if (code === 'EPROTO') {
    const m = String((e as { message?: unknown }).message ?? '');
    return /wrong version number|packet length too long|http request/i.test(m);
  }
  return false;
}

/** A network-level failure as one HoistError. `what` names the target: `127.0.0.1:5000` or `host/repo:tag`. */
export function networkError(host: string, what: string, e: unknown): HoistError {
  if (e instanceof HoistError) return e;
  const code = errorCode(e);
  // Node appends advice about its own flags after ';' (e.g. --use-system-ca) that does not apply to hoist.
  const detail = (e instanceof Error ? e.message : String(e)).split('\n')[0]!.split(';')[0]!.trim();
  switch (code) {
    case 'ENOTFOUND':
    case 'EAI_NONAME':
    case 'EAI_AGAIN':
      return new HoistError('HOST_NOT_FOUND', `${what}: registry host ${host} not found (DNS lookup failed); check the name`, { cause: e });
    case 'ECONNREFUSED':
      return new HoistError('CONNECTION_REFUSED', `${what}: connection to ${host} refused; is the registry running and the port right?`, { cause: e });
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return new HoistError('TIMEOUT', `${what}: ${host} did not answer in time; check the network or try again`, { cause: e });
  }
  if (isCertificateError(e)) {
    return new HoistError('TLS', `${what}: TLS certificate of ${host} not trusted (${code}: ${detail}); pass --cert-dir with its CA, or --tls-verify=false if you trust the network`, { cause: e });
  }
  if (code?.startsWith('ERR_SSL') || code === 'EPROTO' || code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
    return new HoistError('TLS', `${what}: TLS handshake with ${host} failed (${detail}); check --cert-dir, or use --tls-verify=false for a plain-http registry`, { cause: e });
  }
  return new HoistError('NETWORK', `${what}: talking to ${host} failed (${code ?? 'error'}: ${detail}); try again`, { cause: e });
}

/** An HTTP answer from the registry that ended an operation: keeps the status and the registry's error code. */
export class RegistryHttpError extends HoistError {
  readonly status: number;
  /** The first OCI error code the registry gave (MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN, DENIED…), if any. */
  readonly registryCode: string | undefined;
  constructor(code: string, message: string, status: number, registryCode: string | undefined) {
    super(code, message);
    this.status = status;
    this.registryCode = registryCode;
  }
}

export interface RegistryErrorBody {
  code: string;
  message: string;
}

/** The `errors` array of an OCI distribution error body, if the body is one. */
export function parseErrorBody(body: Buffer): RegistryErrorBody[] {
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: unknown };
    if (!Array.isArray(j.errors)) return [];
    return j.errors
      .filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null)
      .map((x) => ({ code: String(x.code ?? ''), message: String(x.message ?? '') }));
  } catch {
    return [];
  }
}

/**
 * An unexpected HTTP answer as a HoistError. `what` is the target (`host/repo:tag`), `action` what we tried
 * ("pulling manifest"), `authenticated` whether credentials were in play (changes the advice for 401).
 */
export function httpError(opts: {
  host: string;
  what: string;
  action: string;
  status: number;
  body: Buffer;
  authenticated: boolean;
}): RegistryHttpError {
  const { host, what, action, status } = opts;
  const errs = parseErrorBody(opts.body);
  const first = errs[0];
  const regCodes = errs.map((x) => x.code).filter((c) => c !== '');
  const said = first ? ` ${first.message || first.code}${first.code && first.message ? ` (${first.code})` : ''}` : '';
  const login = `check --creds or run hoist login ${host}`;
  const mk = (code: string, message: string) => new RegistryHttpError(code, message, status, regCodes[0]);
  if (status === 401) {
    const why = opts.authenticated ? 'credentials rejected' : 'authentication required';
    return mk('UNAUTHORIZED', `${what}: ${action}: ${why} (HTTP 401${said ? `:${said}` : ''}); ${login}`);
  }
  if (status === 403) {
    return mk('DENIED', `${what}: ${action}: access denied (HTTP 403${said ? `:${said}` : ''}); ${login}, or ask for access to this repository`);
  }
  if (status === 404) {
    const code = regCodes[0] ?? 'NOT_FOUND';
    const advice =
      code === 'BLOB_UNKNOWN' ? 'the registry lacks this blob; the image there is incomplete or was garbage-collected'
      : code === 'NAME_UNKNOWN' ? 'check the repository name'
      : code === 'MANIFEST_UNKNOWN' ? 'check the tag or digest'
      : 'check the repository name and tag';
    return mk('NOT_FOUND', `${what}: ${action}: not found (${code}${first?.message ? `: ${first.message}` : ''}); ${advice}`);
  }
  if (status === 405 || regCodes.includes('UNSUPPORTED')) {
    return mk('UNSUPPORTED', `${what}: ${action}: the registry does not support this (HTTP ${status}${said ? `:${said}` : ''})`);
  }
  if (status === 429) {
    return mk('TOO_MANY_REQUESTS', `${what}: ${action}: the registry keeps answering "too many requests" (HTTP 429); wait and try again`);
  }
  if (status >= 500) {
    return mk('REGISTRY_ERROR', `${what}: ${action}: the registry failed (HTTP ${status}${said ? `:${said}` : ''}); try again later`);
  }
  return mk('REGISTRY_ERROR', `${what}: ${action}: unexpected HTTP ${status}${said ? ` (${said.trim()})` : ''}`);
}
