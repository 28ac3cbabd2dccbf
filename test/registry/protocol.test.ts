/**
 * The pure parts of the registry protocol: WWW-Authenticate challenges, scopes, Link pages, Retry-After,
 * host names, and how socket errors become one-line messages.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mergeScopes, parseWWWAuthenticate } from '../../src/registry/auth.ts';
import { nextLink } from '../../src/registry/client.ts';
import { httpError, isNotTlsError, networkError } from '../../src/registry/errors.ts';
import { apiHost, isLoopbackHost, normalizeRegistryHost, splitHostPort } from '../../src/registry/host.ts';
import { MAX_RETRY_AFTER_MS, backoffDelay, isRetryableStatus, isTransientNetworkError, parseRetryAfter } from '../../src/registry/retry.ts';

test('WWW-Authenticate: Bearer with quoted, comma-holding scope', () => {
  const h = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"';
  assert.deepEqual(parseWWWAuthenticate(h), [
    {
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:a/b:pull,push repository:c:pull', error: 'insufficient_scope' },
    },
  ]);
});

test('WWW-Authenticate: several challenges, escapes, token values, several headers', () => {
  assert.deepEqual(parseWWWAuthenticate('Basic realm="a \\"quoted\\" realm", Bearer realm=https://x/token , service=svc'), [
    { scheme: 'basic', params: { realm: 'a "quoted" realm' } },
    { scheme: 'bearer', params: { realm: 'https://x/token', service: 'svc' } },
  ]);
  assert.deepEqual(parseWWWAuthenticate(['Basic realm="r"', 'Negotiate']).map((c) => c.scheme), ['basic', 'negotiate']);
  assert.deepEqual(parseWWWAuthenticate(undefined), []);
});

test('scopes merge per resource', () => {
  assert.deepEqual(mergeScopes(['repository:a:pull', 'repository:a:push', 'repository:b:pull', '', 'repository:a:pull repository:c:delete']), [
    'repository:a:pull,push',
    'repository:b:pull',
    'repository:c:delete',
  ]);
});

test('Link rel="next" in relative and absolute forms', () => {
  assert.equal(nextLink('</v2/a/tags/list?n=2&last=b>; rel="next"'), '/v2/a/tags/list?n=2&last=b');
  assert.equal(nextLink('<https://r.example/v2/a/tags/list?last=b>; rel=next'), 'https://r.example/v2/a/tags/list?last=b');
  assert.equal(nextLink('</x>; rel="prev", </y>; rel="next"'), '/y');
  assert.equal(nextLink(undefined), undefined);
});

test('Retry-After: seconds, HTTP date, junk, cap', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('3', now), 3000);
  assert.equal(parseRetryAfter('Wed, 01 Jan 2025 00:00:05 GMT', now), 5000);
  assert.equal(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter('86400', now), MAX_RETRY_AFTER_MS);
});

test('backoff grows exponentially with jitter, and what is retried', () => {
  const p = { times: 3, delayMs: 100 };
  assert.equal(backoffDelay(0, p, () => 0), 50);
  assert.equal(backoffDelay(0, p, () => 1), 100);
  assert.equal(backoffDelay(3, p, () => 1), 800);
  assert.ok([429, 500, 502, 503, 504].every(isRetryableStatus));
  assert.ok(![400, 401, 404, 501].some(isRetryableStatus));
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  assert.ok(isTransientNetworkError(new Error('wrapped', { cause: refused })));
  assert.ok(!isTransientNetworkError(Object.assign(new Error('x'), { code: 'ENOTFOUND' })));
});

test('hosts: Docker Hub aliases, loopback, ports, IPv6', () => {
  assert.equal(normalizeRegistryHost('index.docker.io'), 'docker.io');
  assert.equal(apiHost('docker.io'), 'registry-1.docker.io');
  assert.equal(apiHost('quay.io'), 'quay.io');
  assert.ok(isLoopbackHost('127.0.0.1:5000'));
  assert.ok(isLoopbackHost('127.1.2.3'));
  assert.ok(isLoopbackHost('localhost:5000'));
  assert.ok(isLoopbackHost('[::1]:5000'));
  assert.ok(!isLoopbackHost('10.0.0.1:5000'));
  assert.ok(!isLoopbackHost('registry.example'));
  assert.deepEqual(splitHostPort('[::1]:5000'), { hostname: '::1', port: '5000' });
  assert.deepEqual(splitHostPort('Quay.IO'), { hostname: 'quay.io' });
});

test('socket errors become one-line HoistErrors with a code', () => {
  const mk = (code: string, message = code) => Object.assign(new Error(message), { code });
  assert.equal(networkError('nope.example', 'nope.example/a:b', mk('ENOTFOUND', 'getaddrinfo ENOTFOUND nope.example')).code, 'HOST_NOT_FOUND');
  assert.equal(networkError('h', 'h', mk('ECONNREFUSED')).code, 'CONNECTION_REFUSED');
  const tls = networkError('h:1', 'h:1/a', mk('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate'));
  assert.equal(tls.code, 'TLS');
  assert.match(tls.message, /--cert-dir.*--tls-verify=false/);
  assert.ok(isNotTlsError(mk('ERR_SSL_WRONG_VERSION_NUMBER')));
  assert.ok(!isNotTlsError(mk('DEPTH_ZERO_SELF_SIGNED_CERT')));
});

test('HTTP error answers: registry codes kept, advice given', () => {
  const body = (code: string, message: string) => Buffer.from(JSON.stringify({ errors: [{ code, message, detail: {} }] }));
  const nf = httpError({ host: 'r:5000', what: 'r:5000/a:b', action: 'fetching manifest', status: 404, body: body('MANIFEST_UNKNOWN', 'manifest unknown'), authenticated: false });
  assert.equal(nf.code, 'NOT_FOUND');
  assert.equal(nf.registryCode, 'MANIFEST_UNKNOWN');
  assert.match(nf.message, /MANIFEST_UNKNOWN/);
  const denied = httpError({ host: 'r:5000', what: 'r:5000/a:b', action: 'pushing', status: 403, body: Buffer.from('<html>no</html>'), authenticated: true });
  assert.equal(denied.code, 'DENIED');
  assert.match(denied.message, /hoist login r:5000/);
  const unauth = httpError({ host: 'r:5000', what: 'r:5000/a', action: 'x', status: 401, body: Buffer.alloc(0), authenticated: false });
  assert.equal(unauth.code, 'UNAUTHORIZED');
  assert.match(unauth.message, /check --creds or run hoist login r:5000/);
});
