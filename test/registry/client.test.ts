/**
 * RegistryClient against a real distribution registry (no auth, plain http on 127.0.0.1: the client tries https
 * first and falls back, like docker with a loopback registry). A fault proxy in front of the same registry counts
 * requests where the test needs to see how the client talked, and serves the odd answer no real registry here gives.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DigestMismatchError, digestBytes, digestToTag } from '../../src/oci/digest.ts';
import { DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1_SIGNED, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import type { Descriptor } from '../../src/oci/types.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { RegistryHttpError } from '../../src/registry/errors.ts';
import { startFaultProxy, type FaultAction, type FaultProxy } from '../helpers/fault-proxy.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { drain, fileStream, manifestBlob, pushSmallImage, randomBlobFile, type BlobFile } from './scenario.ts';

const run = promisify(execFile);

let reg: TestRegistry;
let proxy: FaultProxy;
let tmp: string;
let big: BlobFile;
let client: RegistryClient;
let viaProxy: RegistryClient;

before(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'hoist-'));
  big = await randomBlobFile(tmp, 'big', 6 * 1024 * 1024 + 123);
  client = new RegistryClient({ host: reg.host, retryDelayMs: 10 });
  viaProxy = new RegistryClient({ host: proxy.host, retryDelayMs: 10 });
});

after(async () => {
  await client?.close();
  await viaProxy?.close();
  await proxy?.stop();
  await reg?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const errCode = (code: string, registryCode?: string) => (e: unknown) => {
  assert.ok(e instanceof Error && (e as { code?: string }).code === code, `expected ${code}, got ${String(e)}`);
  if (registryCode !== undefined) assert.equal((e as RegistryHttpError).registryCode, registryCode);
  assert.ok(!(e as Error).message.includes('\n'), 'one-line message');
  return true;
};

describe('blobs', { timeout: 30_000 }, () => {
  test('ping falls back to plain http on a loopback registry', async () => {
    await client.ping();
  });

  test('monolithic push and verified pull of a multi-MiB blob', async () => {
    assert.equal(await client.hasBlob('blobs/mono', big.desc), false);
    const puts = proxy.count('PUT', '/v2/blobs/mono/blobs/uploads/');
    await viaProxy.putBlob('blobs/mono', big.desc, fileStream(big), { chunked: false });
    assert.equal(proxy.count('PUT', '/v2/blobs/mono/blobs/uploads/'), puts + 1);
    assert.equal(proxy.count('PATCH', '/v2/blobs/mono/'), 0);
    assert.equal(await client.hasBlob('blobs/mono', big.desc), true);
    const got = await drain(await client.getBlob('blobs/mono', big.desc));
    assert.deepEqual(got, { digest: big.desc.digest, size: big.desc.size });
  });

  test('chunked push sends Content-Range PATCHes of the chunk size', async () => {
    await viaProxy.putBlob('blobs/chunked', big.desc, fileStream(big), { chunked: true, chunkSize: 1024 * 1024 });
    assert.equal(proxy.count('PATCH', '/v2/blobs/chunked/blobs/uploads/'), 7); // 6 MiB + 123 bytes
    const got = await drain(await client.getBlob('blobs/chunked', big.desc));
    assert.equal(got.digest, big.desc.digest);
  });

  test('a blob larger than an explicit chunk size goes chunked by default', async () => {
    const small = await randomBlobFile(tmp, 'medium', 300_000);
    await viaProxy.putBlob('blobs/auto', small.desc, fileStream(small), { chunkSize: 128 * 1024 });
    assert.equal(proxy.count('PATCH', '/v2/blobs/auto/'), 3);
    assert.equal(await client.hasBlob('blobs/auto', small.desc), true);
  });

  test('an empty blob round-trips', async () => {
    const desc: Descriptor = { mediaType: OCI_EMPTY, digest: digestBytes(''), size: 0 };
    await client.putBlob('blobs/empty', desc, Readable.from([]));
    assert.deepEqual(await drain(await client.getBlob('blobs/empty', desc)), { digest: desc.digest, size: 0 });
  });

  for (const chunked of [false, true]) {
    test(`a source that does not match its descriptor is refused (${chunked ? 'chunked' : 'monolithic'})`, async () => {
      const data = randomBytes(200_000);
      const desc: Descriptor = { mediaType: 'application/octet-stream', digest: digestBytes(randomBytes(8)), size: data.length };
      await assert.rejects(client.putBlob('blobs/bad', desc, Readable.from([data]), { chunked, chunkSize: 64 * 1024 }), DigestMismatchError);
      assert.equal(await client.hasBlob('blobs/bad', desc), false);
      assert.equal(await client.hasBlob('blobs/bad', { ...desc, digest: digestBytes(data) }), false);
    });
  }

  test('a missing blob is NOT_FOUND with the registry code', async () => {
    const desc: Descriptor = { mediaType: 'application/octet-stream', digest: digestBytes('nope'), size: 4 };
    await pushSmallImage(client, 'blobs/missing', 'v1');
    await assert.rejects(client.getBlob('blobs/missing', desc), errCode('NOT_FOUND', 'BLOB_UNKNOWN'));
  });

  test('cross-repository mount, and the fallback when the registry declines', async () => {
    const { layer } = await pushSmallImage(client, 'mount/src', 'v1');
    assert.equal(await client.mountBlob('mount/dst', layer, 'mount/src'), true);
    assert.equal(await client.hasBlob('mount/dst', layer), true);

    const absent: Descriptor = { mediaType: 'application/octet-stream', digest: digestBytes(randomBytes(16)), size: 16 };
    const deletes = proxy.count('DELETE', '/v2/mount/dst2/blobs/uploads/');
    assert.equal(await viaProxy.mountBlob('mount/dst2', absent, 'mount/src'), false);
    // The upload session the registry opened instead was cancelled.
    assert.equal(proxy.count('DELETE', '/v2/mount/dst2/blobs/uploads/'), deletes + 1);
    assert.equal(await client.hasBlob('mount/dst2', absent), false);
  });
});

describe('manifests', { timeout: 30_000 }, () => {
  for (const kind of ['oci', 'docker'] as const) {
    test(`${kind} manifest: put, get by tag and digest, head`, async () => {
      const { manifest } = await pushSmallImage(client, `man/${kind}`, 'v1', kind);
      const byTag = await client.getManifest(`man/${kind}`, 'v1');
      assert.deepEqual(byTag, manifest);
      const byDigest = await client.getManifest(`man/${kind}`, manifest.digest);
      assert.ok(byDigest.bytes.equals(manifest.bytes));
      assert.deepEqual(await client.headManifest(`man/${kind}`, 'v1'), { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.bytes.length });
      assert.equal(await client.headManifest(`man/${kind}`, 'nope'), undefined);
    });
  }

  test('OCI index and Docker manifest list', async () => {
    const a = await pushSmallImage(client, 'man/multi', 'amd64');
    const b = await pushSmallImage(client, 'man/multi', 'arm64');
    const entry = (m: typeof a.manifest, architecture: string) => ({ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, platform: { architecture, os: 'linux' } });
    const index = manifestBlob({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [entry(a.manifest, 'amd64'), entry(b.manifest, 'arm64')] }, OCI_INDEX);
    assert.equal(await client.putManifest('man/multi', 'latest', index), index.digest);
    const got = await client.getManifest('man/multi', 'latest');
    assert.equal(got.mediaType, OCI_INDEX);
    assert.equal(got.digest, index.digest);

    const d1 = await pushSmallImage(client, 'man/list', 'one', 'docker');
    const list = manifestBlob({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: [entry(d1.manifest, 'amd64')] }, DOCKER_MANIFEST_LIST);
    await client.putManifest('man/list', 'latest', list);
    assert.deepEqual(await client.getManifest('man/list', list.digest), list);
  });

  test('missing tag and missing repository are NOT_FOUND with the registry codes', async () => {
    await pushSmallImage(client, 'man/exists', 'v1');
    await assert.rejects(client.getManifest('man/exists', 'nope'), errCode('NOT_FOUND', 'MANIFEST_UNKNOWN'));
    await assert.rejects(client.getManifest('man/never-pushed', 'v1'), errCode('NOT_FOUND'));
    await assert.rejects(client.listTags('man/never-pushed'), errCode('NOT_FOUND', 'NAME_UNKNOWN'));
  });

  test('delete by digest', async () => {
    const { manifest } = await pushSmallImage(client, 'man/del', 'v1');
    await client.deleteManifest('man/del', manifest.digest);
    assert.equal(await client.headManifest('man/del', manifest.digest), undefined);
    await assert.rejects(client.getManifest('man/del', manifest.digest), errCode('NOT_FOUND', 'MANIFEST_UNKNOWN'));
    await assert.rejects(client.deleteManifest('man/del', 'v1'), errCode('BAD_REFERENCE'));
  });

  test('tags: n= is sent and Link pages are followed', async () => {
    const { manifest } = await pushSmallImage(client, 'man/tags', 't0');
    for (const t of ['t1', 't2', 't3', 't4']) await client.putManifest('man/tags', t, manifest);
    // distribution 2.8 ignores n= for tags and answers one page: the client must still get every tag.
    assert.deepEqual([...(await viaProxy.listTags('man/tags', { pageSize: 2 }))].sort(), ['t0', 't1', 't2', 't3', 't4']);
    assert.equal(proxy.count('GET', '/v2/man/tags/tags/list?n=2'), 1);

    // Paginating registries (distribution 3, Harbor, …) answer pages with Link; relative and absolute forms.
    const page = (tags: string[], link?: string): FaultAction => ({
      kind: 'status',
      status: 200,
      headers: link ? { link } : {},
      body: JSON.stringify({ name: 'man/paged', tags }),
    });
    proxy.addRule({ method: 'GET', path: /\/v2\/man\/paged\/tags\/list\?n=2$/, action: page(['a', 'b'], '</v2/man/paged/tags/list?n=2&last=b>; rel="next"') });
    proxy.addRule({ method: 'GET', path: 'last=b', action: page(['c', 'd'], `<${proxy.url}/v2/man/paged/tags/list?n=2&last=d>; rel="next"`) });
    proxy.addRule({ method: 'GET', path: 'last=d', action: page(['e']) });
    assert.deepEqual(await viaProxy.listTags('man/paged', { pageSize: 2 }), ['a', 'b', 'c', 'd', 'e']);
    assert.equal(proxy.count('GET', '/v2/man/paged/tags/list'), 3);
  });

  test('invalid names never reach the wire', async () => {
    await assert.rejects(client.getManifest('Bad/Repo', 'v1'), errCode('BAD_REFERENCE'));
    await assert.rejects(client.getManifest('ok/repo', '../../x'), errCode('BAD_REFERENCE'));
    await assert.rejects(client.getManifest('ok/repo', 'sha256:abc'), errCode('BAD_DIGEST'));
  });

  test('a manifest whose bytes do not match Docker-Content-Digest is refused', async () => {
    await pushSmallImage(client, 'man/corrupt', 'v1');
    proxy.addRule({ method: 'GET', path: '/v2/man/corrupt/manifests/v1', action: { kind: 'corrupt', atByte: 40 } });
    await assert.rejects(viaProxy.getManifest('man/corrupt', 'v1'), DigestMismatchError);
  });

  test('schema 1 manifests are rejected by media type', async () => {
    const body = JSON.stringify({ schemaVersion: 1, name: 'x/y', tag: 'old', fsLayers: [], history: [] });
    proxy.addRule({ method: 'GET', path: '/v2/man/old/manifests/old', action: { kind: 'status', status: 200, headers: { 'content-type': DOCKER_SCHEMA1_SIGNED }, body } });
    await assert.rejects(viaProxy.getManifest('man/old', 'old'), (e: unknown) => errCode('SCHEMA1')(e) && /schema 1/.test((e as Error).message));
    proxy.addRule({ method: 'GET', path: '/v2/man/old/manifests/json', action: { kind: 'status', status: 200, headers: { 'content-type': 'application/json' }, body } });
    await assert.rejects(viaProxy.getManifest('man/old', 'json'), errCode('SCHEMA1'));
  });

  test('an oversized manifest is refused unread', async () => {
    const body = `{"schemaVersion":2,"pad":"${'x'.repeat(4 * 1024 * 1024)}"}`;
    proxy.addRule({ method: 'GET', path: '/v2/man/huge/manifests/v1', action: { kind: 'status', status: 200, headers: { 'content-type': OCI_MANIFEST }, body } });
    await assert.rejects(viaProxy.getManifest('man/huge', 'v1'), errCode('MANIFEST_TOO_LARGE'));
  });
});

describe('referrers', { timeout: 30_000 }, () => {
  test('fallback tag index, filtered by artifact type', async () => {
    const subject = await pushSmallImage(client, 'ref/app', 'v1');
    const subjectDesc = { mediaType: subject.manifest.mediaType, digest: subject.manifest.digest, size: subject.manifest.bytes.length };
    assert.deepEqual(await client.getReferrers('ref/app', subject.manifest.digest), []);

    const emptyDesc: Descriptor = { mediaType: OCI_EMPTY, digest: digestBytes('{}'), size: 2 };
    await client.putBlob('ref/app', emptyDesc, Readable.from([Buffer.from('{}')]));
    const sig = manifestBlob(
      { schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.sig', config: emptyDesc, layers: [emptyDesc], subject: subjectDesc },
      OCI_MANIFEST,
    );
    await client.putManifest('ref/app', sig.digest, sig);
    const sigDesc: Descriptor = { mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.bytes.length, artifactType: 'application/vnd.example.sig' };
    const fallback = manifestBlob({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [sigDesc] }, OCI_INDEX);
    await client.putManifest('ref/app', digestToTag(subject.manifest.digest), fallback);

    assert.deepEqual(await client.getReferrers('ref/app', subject.manifest.digest), [sigDesc]);
    assert.deepEqual(await client.getReferrers('ref/app', subject.manifest.digest, 'application/vnd.example.sig'), [sigDesc]);
    assert.deepEqual(await client.getReferrers('ref/app', subject.manifest.digest, 'application/vnd.other'), []);
  });

  test('the referrers API is used when the registry answers it', async () => {
    const subject = digestBytes(randomBytes(8));
    const a: Descriptor = { mediaType: OCI_MANIFEST, digest: digestBytes('a'), size: 10, artifactType: 'application/vnd.example.sbom' };
    const b: Descriptor = { mediaType: OCI_MANIFEST, digest: digestBytes('b'), size: 11, artifactType: 'application/vnd.example.sig' };
    const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [a, b] });
    proxy.addRule({ method: 'GET', path: `/v2/ref/api/referrers/${subject}`, times: 2, action: { kind: 'status', status: 200, headers: { 'content-type': OCI_INDEX }, body } });
    assert.deepEqual(await viaProxy.getReferrers('ref/api', subject), [a, b]);
    assert.deepEqual(await viaProxy.getReferrers('ref/api', subject, 'application/vnd.example.sig'), [b]);
    // No fallback tag was consulted.
    assert.equal(proxy.count('GET', `/v2/ref/api/manifests/${digestToTag(subject)}`), 0);
  });
});

describe('interop with skopeo', { timeout: 30_000 }, () => {
  test('skopeo reads what we push, and we read what skopeo pushes', async () => {
    const { manifest, layer } = await pushSmallImage(client, 'interop/ours', 'v1');
    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/interop/ours:v1`], { encoding: 'buffer' });
    assert.ok(raw.stdout.equals(manifest.bytes));
    // skopeo copy fetches and verifies every blob, then uploads them again from a layout (no mount possible).
    const layout = path.join(tmp, 'layout');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/interop/ours:v1`, `oci:${layout}:v1`]);
    await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${reg.host}/interop/theirs:v1`]);
    const theirs = await client.getManifest('interop/theirs', 'v1');
    // skopeo re-serialises the manifest, so compare what it describes rather than its bytes.
    const parsed = JSON.parse(theirs.bytes.toString('utf8')) as { layers: Descriptor[] };
    assert.equal(theirs.mediaType, OCI_MANIFEST);
    assert.deepEqual(parsed.layers.map((l) => l.digest), [layer.digest]);
    assert.deepEqual(await drain(await client.getBlob('interop/theirs', layer)), { digest: layer.digest, size: layer.size });
  });
});
