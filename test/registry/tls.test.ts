/**
 * TLS against a real registry serving a certificate from a throw-away CA: trusted through a certs.d-style
 * --cert-dir, refused without it (with the hint), accepted unverified with tlsVerify:false, and mutual TLS with a
 * client pair in the same directory.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryClient } from '../../src/registry/client.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { pushSmallImage, randomBlobFile, roundTrip, type BlobFile } from './scenario.ts';

let tmp: string;
let blob: BlobFile;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'hoist-'));
  blob = await randomBlobFile(tmp, 'blob', 4 * 1024 * 1024 + 99);
});

after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('TLS registry', { timeout: 30_000 }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ tls: true });
  });
  after(async () => {
    await reg?.stop();
  });

  test('trusted through --cert-dir (ca.crt)', async () => {
    const c = new RegistryClient({ host: reg.host, certDir: reg.certDir, retryDelayMs: 10 });
    try {
      await c.ping();
      await roundTrip(c, 'tls/app', blob);
    } finally {
      await c.close();
    }
  });

  test('without the CA: a TLS error with the hint, and no fallback to plain http', async () => {
    const c = new RegistryClient({ host: reg.host, retryDelayMs: 10 });
    try {
      await assert.rejects(c.ping(), (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'TLS', String(e));
        assert.match((e as Error).message, /--cert-dir/);
        assert.match((e as Error).message, /--tls-verify=false/);
        assert.ok(!(e as Error).message.includes('\n'));
        return true;
      });
    } finally {
      await c.close();
    }
  });

  test('tlsVerify:false talks to it unverified', async () => {
    const c = new RegistryClient({ host: reg.host, tlsVerify: false, retryDelayMs: 10 });
    try {
      await pushSmallImage(c, 'tls/unverified', 'v1');
      assert.deepEqual(await c.listTags('tls/unverified'), ['v1']);
    } finally {
      await c.close();
    }
  });

  test('a --cert-dir that does not exist is a clear error', async () => {
    const c = new RegistryClient({ host: reg.host, certDir: path.join(tmp, 'nope'), retryDelayMs: 10 });
    try {
      await assert.rejects(c.ping(), (e: unknown) => (e as { code?: string }).code === 'CERT_DIR');
    } finally {
      await c.close();
    }
  });
});

describe('mutual TLS registry', { timeout: 30_000 }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ mtls: true });
  });
  after(async () => {
    await reg?.stop();
  });

  test('client.cert + client.key from --cert-dir are presented', async () => {
    const c = new RegistryClient({ host: reg.host, certDir: reg.certDir, retryDelayMs: 10 });
    try {
      await pushSmallImage(c, 'mtls/app', 'v1');
      assert.deepEqual(await c.listTags('mtls/app'), ['v1']);
    } finally {
      await c.close();
    }
  });

  test('without a client certificate the handshake fails as a TLS error', async () => {
    const onlyCa = path.join(tmp, 'only-ca');
    await mkdir(onlyCa);
    await copyFile(path.join(reg.certDir!, 'ca.crt'), path.join(onlyCa, 'ca.crt'));
    const c = new RegistryClient({ host: reg.host, certDir: onlyCa, retryTimes: 0 });
    try {
      await assert.rejects(c.ping(), (e: unknown) => {
        const code = (e as { code?: string }).code;
        assert.ok(code === 'TLS' || code === 'NETWORK', String(e));
        return true;
      });
    } finally {
      await c.close();
    }
  });
});
