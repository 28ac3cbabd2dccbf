/**
 * A small docker-token-spec auth server for tests: a node:http server on 127.0.0.1 that authenticates with Basic
 * (GET) or an OAuth2 refresh token (POST form), and answers ES256 JWTs that distribution's `auth.token` accepts.
 *
 * distribution 2.8 finds the signing key through the JWT header: `x5c`, `jwk`, or `kid` — a libtrust key ID
 * looked up among the public keys of `rootcertbundle`. We use `kid`, with a self-signed certificate for the key
 * (made by the openssl CLI; Node cannot issue certificates) as the bundle.
 */
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TokenRequestRecord {
  method: string;
  /** Scopes asked for, in the order sent. */
  scopes: string[];
  /** Authenticated user, if any. */
  user?: string;
  grant: 'basic' | 'anonymous' | 'refresh_token' | 'rejected';
}

export interface TokenServerOptions {
  /** username → password */
  users: Record<string, string>;
  /** refresh (identity) token → username, for POST grant_type=refresh_token */
  identityTokens?: Record<string, string>;
  /** Anonymous callers get pull (otherwise nothing). */
  anonymousPull?: boolean;
  /** Token lifetime in seconds, reported as expires_in and put in `exp` (default 300). */
  expiresIn?: number;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate of the signing key: the registry's `rootcertbundle`. */
  certFile: string;
  requests: TokenRequestRecord[];
  /** The next `n` tokens are issued already expired (beyond the registry's 60 s leeway). */
  issueExpired(n: number): void;
  stop(): Promise<void>;
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

/** libtrust's key ID: base32 of the first 240 bits of SHA-256(DER SubjectPublicKeyInfo), in groups of 4 joined by ':'. */
export function libtrustKeyId(pub: KeyObject): string {
  const der = pub.export({ type: 'spki', format: 'der' });
  const sum = createHash('sha256').update(der).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let s = '';
  for (const byte of sum) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      s += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return s.match(/.{1,4}/g)!.join(':');
}

export async function startTokenServer(dir: string, opts: TokenServerOptions): Promise<TokenServer> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyFile = path.join(dir, 'token-signing.key');
  const certFile = path.join(dir, 'token-signing.crt');
  await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await run('openssl', ['req', '-x509', '-new', '-key', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=hoist-test-token-issuer']);
  const kid = libtrustKeyId(publicKey);
  const service = 'hoist-test-registry';
  const issuer = 'hoist-test-issuer';
  const lifetime = opts.expiresIn ?? 300;
  const requests: TokenRequestRecord[] = [];
  let expiredLeft = 0;

  const issue = (user: string | undefined, scopes: string[]): string => {
    const access: { type: string; name: string; actions: string[] }[] = [];
    for (const scope of scopes.flatMap((s) => s.split(' ')).filter(Boolean)) {
      const first = scope.indexOf(':');
      const last = scope.lastIndexOf(':');
      if (first <= 0 || last === first) continue;
      const wanted = scope.slice(last + 1).split(',');
      const granted = user !== undefined ? wanted : opts.anonymousPull ? wanted.filter((a) => a === 'pull') : [];
      access.push({ type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: granted });
    }
    const now = Math.floor(Date.now() / 1000);
    const expired = expiredLeft > 0;
    if (expired) expiredLeft--;
    const claims = {
      iss: issuer,
      sub: user ?? '',
      aud: service,
      iat: expired ? now - 600 : now,
      nbf: expired ? now - 600 : now - 5,
      exp: expired ? now - 300 : now + lifetime,
      jti: randomBytes(12).toString('hex'),
      access,
    };
    const head = b64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', kid }));
    const body = b64url(JSON.stringify(claims));
    const sig = sign('sha256', Buffer.from(`${head}.${body}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${head}.${body}.${b64url(sig)}`;
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const deny = (rec: TokenRequestRecord) => {
        requests.push(rec);
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="hoist-test-token"' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      };
      let user: string | undefined;
      let scopes: string[];
      let grant: TokenRequestRecord['grant'];
      if (req.method === 'POST') {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
        if (form.get('grant_type') === 'refresh_token') {
          user = opts.identityTokens?.[form.get('refresh_token') ?? ''];
          grant = 'refresh_token';
        } else if (form.get('grant_type') === 'password') {
          const u = form.get('username') ?? '';
          user = opts.users[u] !== undefined && opts.users[u] === form.get('password') ? u : undefined;
          grant = 'basic';
        } else {
          grant = 'rejected';
        }
        if (user === undefined) return deny({ method: 'POST', scopes, grant: 'rejected' });
      } else {
        scopes = url.searchParams.getAll('scope');
        const authz = req.headers.authorization;
        if (authz?.startsWith('Basic ')) {
          const plain = Buffer.from(authz.slice(6), 'base64').toString('utf8');
          const i = plain.indexOf(':');
          const u = plain.slice(0, i);
          if (i <= 0 || opts.users[u] === undefined || opts.users[u] !== plain.slice(i + 1)) {
            return deny({ method: 'GET', scopes, grant: 'rejected' });
          }
          user = u;
          grant = 'basic';
        } else {
          grant = 'anonymous';
        }
      }
      requests.push({ method: req.method ?? 'GET', scopes, grant, ...(user !== undefined ? { user } : {}) });
      const token = issue(user, scopes);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token, access_token: token, expires_in: lifetime, issued_at: new Date().toISOString() }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    requests,
    issueExpired(n: number) {
      expiredLeft = n;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
