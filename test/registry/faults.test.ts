/**
 * The client under a misbehaving network: a fault proxy in front of a real registry cuts blob downloads midway,
 * answers 500/503/429, corrupts bytes and trickles bodies; and a port where nothing listens.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DigestMismatchError } from '../../src/oci/digest.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { drain, fileStream, pushSmallImage, randomBlobFile, type BlobFile } from './scenario.ts';

let reg: TestRegistry;
let proxy: FaultProxy;
let tmp: string;
let blob: BlobFile;
let direct: RegistryClient;
let client: RegistryClient;
const REPO = 'faults/app';

before(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'hoist-'));
  blob = await randomBlobFile(tmp, 'blob', 4 * 1024 * 1024 + 321);
  direct = new RegistryClient({ host: reg.host, retryDelayMs: 10 });
  await direct.putBlob(REPO, blob.desc, fileStream(blob));
  client = new RegistryClient({ host: proxy.host, retryDelayMs: 10 });
  await client.ping();
});

after(async () => {
  await client?.close();
  await direct?.close();
  await proxy?.stop();
  await reg?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const blobPath = () => `/v2/${REPO}/blobs/${blob.desc.digest}`;

describe('blob download', { timeout: 30_000 }, () => {
  test('a connection cut mid-blob resumes with Range from the byte reached', async () => {
    const cutAt = 1_500_000;
    proxy.addRule({ method: 'GET', path: blobPath(), action: { kind: 'cut', afterBytes: cutAt } });
    const from = proxy.requests.length;
    const got = await drain(await client.getBlob(REPO, blob.desc));
    assert.deepEqual(got, { digest: blob.desc.digest, size: blob.desc.size });
    const gets = proxy.requests.slice(from).filter((r) => r.method === 'GET' && r.path === blobPath());
    assert.equal(gets.length, 2);
    assert.equal(gets[0]!.fault, 'cut');
    assert.equal(gets[1]!.range, `bytes=${cutAt}-`);
    assert.equal(gets[1]!.status, 206);
  });

  test('a server that ignores Range: the blob is fetched again and the bytes already passed on are skipped', async () => {
    proxy.addRule({ method: 'GET', path: blobPath(), action: { kind: 'cut', afterBytes: 700_001 } });
    proxy.addRule({ method: 'GET', path: blobPath(), header: { name: 'range', present: true }, action: { kind: 'ignore-range' } });
    const from = proxy.requests.length;
    const got = await drain(await client.getBlob(REPO, blob.desc));
    assert.deepEqual(got, { digest: blob.desc.digest, size: blob.desc.size });
    const gets = proxy.requests.slice(from).filter((r) => r.method === 'GET' && r.path === blobPath());
    assert.deepEqual(gets.map((r) => [r.fault, r.status]), [['cut', 200], ['ignore-range', 200]]);
  });

  test('cuts beyond the retry budget end in a clear error', async () => {
    // Every attempt is cut before any byte: no progress, so retries run out.
    proxy.addRule({ method: 'GET', path: blobPath(), times: 10, action: { kind: 'cut', afterBytes: 0 } });
    try {
      const s = await client.getBlob(REPO, blob.desc);
      await assert.rejects(drain(s), (e: unknown) => {
        assert.ok(['NETWORK', 'CONNECTION_REFUSED'].includes((e as { code?: string }).code ?? ''), String(e));
        assert.ok(!(e as Error).message.includes('\n'));
        return true;
      });
    } finally {
      proxy.clearRules();
    }
  });

  test('corrupted bytes end the stream with DigestMismatchError', async () => {
    proxy.addRule({ method: 'GET', path: blobPath(), action: { kind: 'corrupt', atByte: 2_000_000 } });
    await assert.rejects(drain(await client.getBlob(REPO, blob.desc)), DigestMismatchError);
  });

  test('a slow (trickled) body still arrives whole', async () => {
    proxy.addRule({ method: 'GET', path: blobPath(), action: { kind: 'trickle', chunkBytes: 64 * 1024, delayMs: 5, maxMs: 300 } });
    assert.equal((await drain(await client.getBlob(REPO, blob.desc))).digest, blob.desc.digest);
  });
});

describe('retries', { timeout: 30_000 }, () => {
  test('500 and 503 are retried', async () => {
    const { manifest } = await pushSmallImage(direct, REPO, 'retry');
    const p = `/v2/${REPO}/manifests/retry`;
    proxy.addRule({ method: 'GET', path: p, action: { kind: 'status', status: 500 } });
    proxy.addRule({ method: 'GET', path: p, action: { kind: 'status', status: 503 } });
    const before = proxy.count('GET', p);
    assert.deepEqual(await client.getManifest(REPO, 'retry'), manifest);
    assert.equal(proxy.count('GET', p) - before, 3);
  });

  test('429 waits for Retry-After, then succeeds', async () => {
    const p = `/v2/${REPO}/tags/list`;
    proxy.addRule({ method: 'GET', path: p, action: { kind: 'status', status: 429, headers: { 'retry-after': '1' } } });
    const before = proxy.count('GET', p);
    assert.ok((await client.listTags(REPO)).includes('retry'));
    assert.equal(proxy.count('GET', p) - before, 2);
  });

  test('a registry failing every time: retryTimes + 1 attempts, then one clear error', async () => {
    const p = `/v2/${REPO}/manifests/down`;
    proxy.addRule({ method: 'GET', path: p, times: 100, action: { kind: 'status', status: 503 } });
    const before = proxy.count('GET', p);
    try {
      await assert.rejects(client.getManifest(REPO, 'down'), (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'REGISTRY_ERROR');
        assert.match((e as Error).message, /HTTP 503/);
        return true;
      });
      assert.equal(proxy.count('GET', p) - before, 4);
    } finally {
      proxy.clearRules();
    }
  });

  test('a chunk PATCH answered 500 is re-sent after checking the session', async () => {
    const other = await randomBlobFile(tmp, 'chunky', 3 * 1024 * 1024 + 5);
    proxy.addRule({ method: 'PATCH', path: `/v2/${REPO}-chunks/blobs/uploads/`, action: { kind: 'status', status: 500 } });
    const before = proxy.count('PATCH', `/v2/${REPO}-chunks/`);
    await client.putBlob(`${REPO}-chunks`, other.desc, fileStream(other), { chunked: true, chunkSize: 1024 * 1024 });
    assert.equal(proxy.count('PATCH', `/v2/${REPO}-chunks/`) - before, 5); // 4 chunks + 1 re-send
    assert.ok(proxy.count('GET', `/v2/${REPO}-chunks/blobs/uploads/`) >= 1, 'upload status was checked');
    assert.deepEqual(await drain(await direct.getBlob(`${REPO}-chunks`, other.desc)), { digest: other.desc.digest, size: other.desc.size });
  });

  test('an upload cut inside the first chunk starts a fresh session; inside a later one it fails cleanly', async () => {
    const other = await randomBlobFile(tmp, 'cut-upload', 3 * 1024 * 1024 + 9);
    const repo = `${REPO}-cut`;
    // distribution 2.8 then drops the session (its Location no longer matches what it stored).
    proxy.addRule({ method: 'PATCH', path: `/v2/${repo}/blobs/uploads/`, action: { kind: 'cut-request', afterBytes: 300_000 } });
    const posts = proxy.count('POST', `/v2/${repo}/blobs/uploads/`);
    await client.putBlob(repo, other.desc, fileStream(other), { chunked: true, chunkSize: 1024 * 1024 });
    assert.equal(proxy.count('POST', `/v2/${repo}/blobs/uploads/`) - posts, 2);
    assert.deepEqual(await drain(await direct.getBlob(repo, other.desc)), { digest: other.desc.digest, size: other.desc.size });

    // Cut inside the second chunk: the first chunk's bytes are gone from the stream, so this upload cannot finish.
    const repo2 = `${REPO}-cut2`;
    proxy.addRule({ method: 'PATCH', path: `/v2/${repo2}/blobs/uploads/`, skip: 1, action: { kind: 'cut-request', afterBytes: 200_000 } });
    await assert.rejects(client.putBlob(repo2, other.desc, fileStream(other), { chunked: true, chunkSize: 1024 * 1024 }), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'UPLOAD_FAILED', String(e));
      assert.match((e as Error).message, /run the copy again/);
      assert.ok(!(e as Error).message.includes('\n'));
      return true;
    });
    assert.equal(await direct.hasBlob(repo2, other.desc), false);
  });

  test('a failed monolithic PUT is not replayed: clear error, nothing stored', async () => {
    const other = await randomBlobFile(tmp, 'mono', 200_000);
    proxy.addRule({ method: 'PUT', path: `/v2/${REPO}-mono/blobs/uploads/`, action: { kind: 'status', status: 500 } });
    const before = proxy.count('PUT', `/v2/${REPO}-mono/`);
    await assert.rejects(client.putBlob(`${REPO}-mono`, other.desc, fileStream(other), { chunked: false }), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'UPLOAD_FAILED', String(e));
      return true;
    });
    assert.equal(proxy.count('PUT', `/v2/${REPO}-mono/`) - before, 1);
    assert.equal(await direct.hasBlob(`${REPO}-mono`, other.desc), false);
  });
});

describe('connection errors', { timeout: 30_000 }, () => {
  test('connection refused is CONNECTION_REFUSED, after the retries', async () => {
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    const c = new RegistryClient({ host: `127.0.0.1:${port}`, retryTimes: 2, retryDelayMs: 5 });
    try {
      await assert.rejects(c.getManifest('x/y', 'v1'), (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'CONNECTION_REFUSED');
        assert.match((e as Error).message, new RegExp(`127\\.0\\.0\\.1:${port}`));
        assert.ok(!(e as Error).message.includes('\n'));
        return true;
      });
    } finally {
      await c.close();
    }
  });
});
