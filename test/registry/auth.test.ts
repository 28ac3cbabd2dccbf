/**
 * Authentication against real registries: htpasswd (Basic) and token auth (Bearer from our token server, which
 * the registry verifies). Wrong passwords, missing credentials, scope upgrades, renewal of a refused token,
 * cross-repository mounts needing two scopes in one token, and identity (refresh) tokens.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/registry/client.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { drain, fileStream, pushSmallImage, randomBlobFile, roundTrip, type BlobFile } from './scenario.ts';

let tmp: string;
let blob: BlobFile;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'hoist-'));
  blob = await randomBlobFile(tmp, 'blob', 5 * 1024 * 1024 + 7);
});

after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** The error is a one-line HoistError with this code that points at login and never shows the secret. */
function authFailure(code: string, secret: string) {
  return (e: unknown) => {
    assert.equal((e as { code?: string }).code, code, String(e));
    const msg = (e as Error).message;
    assert.match(msg, /hoist login 127\.0\.0\.1:\d+/);
    assert.ok(!msg.includes(secret), 'no secret in the message');
    assert.ok(!msg.includes('\n'));
    return true;
  };
}

describe('htpasswd (Basic)', { timeout: 30_000 }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ auth: 'htpasswd' });
  });
  after(async () => {
    await reg?.stop();
  });

  test('push and pull with the right password', async () => {
    const c = new RegistryClient({ host: reg.host, credentials: reg.users[0], retryDelayMs: 10 });
    try {
      await c.ping();
      await roundTrip(c, 'basic/app', blob);
    } finally {
      await c.close();
    }
  });

  test('a blob redirect to another origin is followed without the credentials', async () => {
    // The "storage backend": another registry holding the same blob, reached through a proxy that notes headers.
    const storage = await startRegistry();
    const storageProxy = await startFaultProxy(storage.url);
    const front = await startFaultProxy(reg.url);
    const seed = new RegistryClient({ host: storage.host, retryDelayMs: 10 });
    const c = new RegistryClient({ host: front.host, credentials: reg.users[0], retryDelayMs: 10 });
    try {
      await seed.putBlob('redirect/app', blob.desc, fileStream(blob));
      await c.putBlob('redirect/app', blob.desc, fileStream(blob));
      const p = `/v2/redirect/app/blobs/${blob.desc.digest}`;
      front.addRule({ method: 'GET', path: p, action: { kind: 'status', status: 307, headers: { location: `${storageProxy.url}${p}` }, body: '' } });
      assert.deepEqual(await drain(await c.getBlob('redirect/app', blob.desc)), { digest: blob.desc.digest, size: blob.desc.size });
      const atFront = front.requests.filter((r) => r.method === 'GET' && r.path === p);
      const atStorage = storageProxy.requests.filter((r) => r.method === 'GET' && r.path === p);
      assert.deepEqual(atFront.map((r) => [r.status, r.authorization]), [[307, true]]);
      assert.deepEqual(atStorage.map((r) => [r.status, r.authorization]), [[200, false]]);
    } finally {
      await c.close();
      await seed.close();
      await front.stop();
      await storageProxy.stop();
      await storage.stop();
    }
  });

  test('a wrong password is UNAUTHORIZED, on ping and on use', async () => {
    const wrong = 'not-the-password-123';
    const c = new RegistryClient({ host: reg.host, credentials: { username: reg.users[0]!.username, password: wrong }, retryDelayMs: 10 });
    try {
      await assert.rejects(c.ping(), authFailure('UNAUTHORIZED', wrong));
      await assert.rejects(c.getManifest('basic/app', 'v1'), authFailure('UNAUTHORIZED', wrong));
    } finally {
      await c.close();
    }
  });

  test('no credentials: ping still answers, use is UNAUTHORIZED', async () => {
    const c = new RegistryClient({ host: reg.host, retryDelayMs: 10 });
    try {
      await c.ping();
      await assert.rejects(c.listTags('basic/app'), authFailure('UNAUTHORIZED', 'x-never-x'));
    } finally {
      await c.close();
    }
  });
});

describe('token auth (Bearer)', { timeout: 30_000 }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ auth: 'token' });
  });
  after(async () => {
    await reg?.stop();
  });

  test('push and pull with tokens from the realm', async () => {
    const c = new RegistryClient({ host: reg.host, credentials: reg.users[0], retryDelayMs: 10 });
    try {
      await c.ping();
      await roundTrip(c, 'tok/app', blob);
      const granted = reg.tokenServer!.requests.filter((r) => r.user === reg.users[0]!.username);
      assert.ok(granted.some((r) => r.scopes.includes('repository:tok/app:pull,push')));
    } finally {
      await c.close();
    }
  });

  test('a pull token is upgraded to pull,push when pushing; a push token serves later pulls', async () => {
    const ts = reg.tokenServer!;
    const seed = new RegistryClient({ host: reg.host, credentials: reg.users[0], retryDelayMs: 10 });
    const { manifest } = await pushSmallImage(seed, 'tok/scoped', 'v1');
    await seed.close();

    const c = new RegistryClient({ host: reg.host, credentials: reg.users[0], retryDelayMs: 10 });
    try {
      const from = ts.requests.length;
      await c.getManifest('tok/scoped', 'v1');
      await c.getManifest('tok/scoped', 'v1');
      assert.deepEqual(ts.requests.slice(from).map((r) => r.scopes), [['repository:tok/scoped:pull']], 'one pull token, cached');
      await c.putManifest('tok/scoped', 'v2', manifest);
      await c.getManifest('tok/scoped', 'v2');
      assert.deepEqual(ts.requests.slice(from).map((r) => r.scopes), [['repository:tok/scoped:pull'], ['repository:tok/scoped:pull,push']]);
    } finally {
      await c.close();
    }
  });

  test('a token the registry refuses is renewed once (renewal on 401)', async () => {
    const ts = reg.tokenServer!;
    const c = new RegistryClient({ host: reg.host, credentials: reg.users[0], retryDelayMs: 10 });
    try {
      await pushSmallImage(c, 'tok/renew', 'v1');
      ts.issueExpired(1);
      const from = ts.requests.length;
      const c2 = new RegistryClient({ host: reg.host, credentials: reg.users[0], retryDelayMs: 10 });
      try {
        await c2.getManifest('tok/renew', 'v1');
      } finally {
        await c2.close();
      }
      const asked = ts.requests.slice(from).filter((r) => r.scopes.includes('repository:tok/renew:pull'));
      assert.equal(asked.length, 2, 'the expired token was replaced');
    } finally {
      await c.close();
    }
  });

  test('cross-repository mount asks one token for both repositories', async () => {
    const ts = reg.tokenServer!;
    const c = new RegistryClient({ host: reg.host, credentials: reg.users[0], retryDelayMs: 10 });
    try {
      const { layer } = await pushSmallImage(c, 'tok/mount-src', 'v1');
      const from = ts.requests.length;
      assert.equal(await c.mountBlob('tok/mount-dst', layer, 'tok/mount-src'), true);
      assert.equal(await c.hasBlob('tok/mount-dst', layer), true);
      const both = ts.requests.slice(from).find((r) => r.scopes.includes('repository:tok/mount-dst:pull,push'));
      assert.ok(both?.scopes.includes('repository:tok/mount-src:pull'), JSON.stringify(ts.requests.slice(from)));
    } finally {
      await c.close();
    }
  });

  test('an identity token is exchanged with grant_type=refresh_token', async () => {
    const ts = reg.tokenServer!;
    const c = new RegistryClient({ host: reg.host, credentials: { identityToken: `idtoken-${reg.users[0]!.password}` }, retryDelayMs: 10 });
    try {
      const from = ts.requests.length;
      await pushSmallImage(c, 'tok/oauth', 'v1');
      const reqs = ts.requests.slice(from);
      assert.ok(reqs.length > 0);
      assert.ok(reqs.every((r) => r.method === 'POST' && r.grant === 'refresh_token' && r.user === reg.users[0]!.username));
    } finally {
      await c.close();
    }
  });

  test('a wrong password is refused by the token server; anonymous gets no access', async () => {
    const wrong = 'wrong-pass-456';
    const c = new RegistryClient({ host: reg.host, credentials: { username: reg.users[0]!.username, password: wrong }, retryDelayMs: 10 });
    try {
      await assert.rejects(c.ping(), authFailure('UNAUTHORIZED', wrong));
      await assert.rejects(c.getManifest('tok/app', 'v1'), authFailure('UNAUTHORIZED', wrong));
    } finally {
      await c.close();
    }
    const anon = new RegistryClient({ host: reg.host, retryDelayMs: 10 });
    try {
      await anon.ping();
      await assert.rejects(anon.getManifest('tok/app', 'v1'), authFailure('UNAUTHORIZED', 'x-never-x'));
    } finally {
      await anon.close();
    }
  });
});
