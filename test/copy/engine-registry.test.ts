/**
 * The copy engine against a real registry (Debian's docker-registry): signatures travel with the image (both
 * formats: `.sig` tags and referrers through the tag fallback), --remove-signatures drops them, blobs are mounted
 * within a registry, and a fault proxy's cuts and 5xx end in identical digests — or in a clean failure that pushed
 * no manifest.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { makeImage } from '../helpers/make-image.ts';
import { copyImage, type CopyEvent } from '../../src/copy/engine.ts';
import { openDestination, openSource } from '../../src/transport/index.ts';
import { closeRegistryClients } from '../../src/transport/docker.ts';
import { RegistryClient } from '../../src/registry/index.ts';
import { digestBytes, digestToTag } from '../../src/oci/digest.ts';
import { OCI_EMPTY, OCI_INDEX, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import type { ManifestBlob } from '../../src/oci/types.ts';

let tmp: string;
let a: TestRegistry;
let b: TestRegistry;
let imageDigest: string;
let bigLayer: string;
const FAST = { retryTimes: 3, retryDelayMs: 20 };

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-engine-reg-'));
  [a, b] = await Promise.all([startRegistry(), startRegistry()]);
  const img = await makeImage(path.join(tmp, 'src'), {
    layers: [{ files: { 'big.bin': randomBytes(3 * 1024 * 1024) }, compression: 'none' }, { files: { 'etc/hello': 'hi\n' } }],
    ref: 'v1',
  });
  imageDigest = img.manifest.digest;
  bigLayer = img.layers[0]!.digest;
  await copy(`oci:${path.join(tmp, 'src')}:v1`, `docker://${a.host}/app:v1`);
});

after(async () => {
  await closeRegistryClients();
  await Promise.all([a?.stop(), b?.stop()]);
  await rm(tmp, { recursive: true, force: true });
});

async function copy(from: string, to: string, opts: Parameters<typeof copyImage>[2] = {}, access = FAST) {
  const src = await openSource(from, { registry: access });
  const dst = await openDestination(to, { registry: access });
  try {
    return await copyImage(src, dst, opts);
  } finally {
    await src.close();
  }
}

function manifestBlob(doc: unknown): ManifestBlob {
  const bytes = Buffer.from(JSON.stringify(doc));
  return { bytes, mediaType: OCI_MANIFEST, digest: digestBytes(bytes) };
}

/** Puts a simple-signing `.sig` manifest and a referrer (tag fallback) for the image into registry a. */
async function signInA(): Promise<{ sig: ManifestBlob; referrer: ManifestBlob }> {
  const c = new RegistryClient({ host: a.host });
  try {
    const payload = Buffer.from(JSON.stringify({ critical: { identity: { 'docker-reference': `${a.host}/app` }, image: { 'docker-manifest-digest': imageDigest }, type: 'cosign container image signature' }, optional: null }));
    const config = Buffer.from(JSON.stringify({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: [digestBytes(payload)] } }));
    for (const blob of [payload, config]) {
      await c.putBlob('app', { mediaType: 'application/octet-stream', digest: digestBytes(blob), size: blob.length }, (await import('node:stream')).Readable.from([blob]));
    }
    const sig = manifestBlob({
      schemaVersion: 2, mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestBytes(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: digestBytes(payload), size: payload.length, annotations: { 'dev.cosignproject.cosign/signature': 'MEUCIQ==' } }],
    });
    await c.putManifest('app', `${digestToTag(imageDigest)}.sig`, sig);

    const empty = Buffer.from('{}');
    await c.putBlob('app', { mediaType: OCI_EMPTY, digest: digestBytes(empty), size: 2 }, (await import('node:stream')).Readable.from([empty]));
    const imageSize = (await c.headManifest('app', imageDigest))!.size;
    const referrer = manifestBlob({
      schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.sbom',
      config: { mediaType: OCI_EMPTY, digest: digestBytes(empty), size: 2 },
      layers: [{ mediaType: OCI_EMPTY, digest: digestBytes(empty), size: 2 }],
      subject: { mediaType: OCI_MANIFEST, digest: imageDigest, size: imageSize },
    });
    await c.putManifest('app', referrer.digest, referrer);
    const fallback = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: referrer.digest, size: referrer.bytes.length, artifactType: 'application/vnd.example.sbom' }] }));
    await c.putManifest('app', digestToTag(imageDigest), { bytes: fallback, mediaType: OCI_INDEX, digest: digestBytes(fallback) });
    return { sig, referrer };
  } finally {
    await c.close();
  }
}

test('registry → registry keeps the digest and carries both signature formats; --remove-signatures drops them', async () => {
  const { sig, referrer } = await signInA();
  const r = await copy(`docker://${a.host}/app:v1`, `docker://${b.host}/mirror/app:v1`);
  assert.equal(r.digest, imageDigest);
  const c = new RegistryClient({ host: b.host });
  try {
    assert.equal((await c.getManifest('mirror/app', 'v1')).digest, imageDigest);
    assert.equal((await c.getManifest('mirror/app', `${digestToTag(imageDigest)}.sig`)).digest, sig.digest);
    const refs = await c.getReferrers('mirror/app', imageDigest);
    assert.deepEqual(refs.map((d) => d.digest), [referrer.digest]);

    await copy(`docker://${a.host}/app:v1`, `docker://${b.host}/bare/app:v1`, { removeSignatures: true });
    assert.equal((await c.getManifest('bare/app', 'v1')).digest, imageDigest);
    assert.equal(await c.headManifest('bare/app', `${digestToTag(imageDigest)}.sig`), undefined);
    assert.deepEqual(await c.getReferrers('bare/app', imageDigest), []);
  } finally {
    await c.close();
  }
});

test('a copy that would change a signed image\'s digest is refused unless signatures are removed', async () => {
  await assert.rejects(copy(`docker://${a.host}/app:v1`, `docker://${b.host}/conv/app:v1`, { format: 'docker' }), /would invalidate the signatures; copy with --remove-signatures/);
  const r = await copy(`docker://${a.host}/app:v1`, `docker://${b.host}/conv/app:v1`, { format: 'docker', removeSignatures: true });
  assert.notEqual(r.digest, imageDigest);
});

test('within one registry, blobs are mounted, not transferred', async () => {
  const events: CopyEvent[] = [];
  const r = await copy(`docker://${a.host}/app:v1`, `docker://${a.host}/other/app:v1`, { removeSignatures: true, onEvent: (e) => events.push(e) });
  assert.equal(r.digest, imageDigest);
  assert.equal(r.blobsCopied, 0);
  assert.ok(events.filter((e) => e.type === 'blob-mount').length >= 2, 'layers mounted');
});

test('cuts mid-blob and 503s through a fault proxy still give identical digests', async () => {
  const proxy = await startFaultProxy(a.url);
  try {
    proxy.addRule({ method: 'GET', path: /\/blobs\/sha256:/, action: { kind: 'cut', afterBytes: 1024 * 1024 } });
    proxy.addRule({ method: 'HEAD', path: /\/blobs\//, action: { kind: 'status', status: 503 } });
    proxy.addRule({ method: 'GET', path: /\/manifests\//, action: { kind: 'status', status: 500 } });
    const r = await copy(`docker://${proxy.host}/app:v1`, `docker://${b.host}/faulty/app:v1`, { removeSignatures: true });
    assert.equal(r.digest, imageDigest);
    assert.ok(proxy.count('GET', /\/blobs\/sha256:/) >= 3, 'the cut blob was fetched again');
  } finally {
    await proxy.stop();
  }
});

test('a source that serves corrupt bytes fails the copy cleanly: no manifest at the destination', async () => {
  const proxy = await startFaultProxy(a.url);
  try {
    proxy.addRule({ method: 'GET', path: /\/blobs\/sha256:/, times: 100, action: { kind: 'corrupt', atByte: 100 } });
    await assert.rejects(copy(`docker://${proxy.host}/app:v1`, `docker://${b.host}/corrupt/app:v1`, { removeSignatures: true }), /does not match its digest/);
    const c = new RegistryClient({ host: b.host });
    try {
      assert.equal(await c.headManifest('corrupt/app', 'v1'), undefined);
      assert.equal(await c.headManifest('corrupt/app', imageDigest), undefined);
    } finally {
      await c.close();
    }
  } finally {
    await proxy.stop();
  }
});

test('--dest-compress-format zstd rewrites layers and manifest; the config (diffIDs) stays; back to gzip works', async () => {
  const r = await copy(`docker://${a.host}/app:v1`, `docker://${b.host}/zstd/app:v1`, { compressFormat: 'zstd', removeSignatures: true });
  assert.notEqual(r.digest, imageDigest);
  const c = new RegistryClient({ host: b.host });
  try {
    const m = JSON.parse((await c.getManifest('zstd/app', 'v1')).bytes.toString('utf8')) as { config: { digest: string }; layers: { mediaType: string }[] };
    assert.ok(m.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+zstd'));
    const ca = new RegistryClient({ host: a.host });
    const orig = JSON.parse((await ca.getManifest('app', 'v1').finally(() => ca.close())).bytes.toString('utf8')) as { config: { digest: string } };
    assert.equal(m.config.digest, orig.config.digest);
  } finally {
    await c.close();
  }
  // Every layer verifies on the way back (decompressed content = the config's diffIDs is checked by docker-archive).
  await copy(`docker://${b.host}/zstd/app:v1`, `docker-archive:${path.join(tmp, 'zstd.tar')}`);
  const back = await copy(`docker://${b.host}/zstd/app:v1`, `docker://${b.host}/gz/app:v1`, { compressFormat: 'gzip' });
  assert.notEqual(back.digest, r.digest);
});

test('a signed image is refused before anything is pushed when recompression would change its digest', async () => {
  await assert.rejects(copy(`docker://${a.host}/app:v1`, `docker://${b.host}/zsigned/app:v1`, { compressFormat: 'zstd' }), /would invalidate the signatures/);
  const c = new RegistryClient({ host: b.host });
  try {
    assert.equal(await c.headManifest('zsigned/app', 'v1'), undefined);
  } finally {
    await c.close();
  }
});

test('a second copy with everything in place transfers and checks no blob', async () => {
  await copy(`docker://${a.host}/app:v1`, `docker://${b.host}/again/app:v1`, { removeSignatures: true });
  const proxy = await startFaultProxy(b.url);
  try {
    const r = await copy(`docker://${a.host}/app:v1`, `docker://${proxy.host}/again/app:v1`, { removeSignatures: true });
    assert.equal(r.digest, imageDigest);
    assert.equal(r.blobsCopied, 0);
    assert.equal(proxy.count('HEAD', /\/blobs\//), 0);
    assert.equal(proxy.count('PUT', /\/manifests\//), 0);
  } finally {
    await proxy.stop();
  }
});

test('an upload cut mid-way is sent again from the source, and the copy completes with the same digest', async () => {
  const proxy = await startFaultProxy(b.url);
  try {
    // Twice: the re-sent upload is cut too, the third attempt goes through.
    proxy.addRule({ method: 'PUT', path: encodeURIComponent(bigLayer), times: 2, action: { kind: 'cut-request', afterBytes: 512 * 1024 } });
    const events: CopyEvent[] = [];
    const r = await copy(`docker://${a.host}/app:v1`, `docker://${proxy.host}/recut/app:v1`, { removeSignatures: true, onEvent: (e) => events.push(e) });
    assert.equal(r.digest, imageDigest);
    assert.equal(events.filter((e) => e.type === 'blob-retry').length, 2, 'the big layer was sent three times');
    const c = new RegistryClient({ host: b.host });
    try {
      assert.equal((await c.getManifest('recut/app', 'v1')).digest, imageDigest);
    } finally {
      await c.close();
    }
  } finally {
    await proxy.stop();
  }
});

test('copies side by side into one repository upload each shared blob once', async () => {
  const proxy = await startFaultProxy(b.url);
  try {
    const results = await Promise.all(['t1', 't2', 't3'].map((t) =>
      copy(`docker://${a.host}/app:v1`, `docker://${proxy.host}/shared/app:${t}`, { removeSignatures: true })));
    for (const r of results) assert.equal(r.digest, imageDigest);
    // config + two layers: one upload session each, however many copies needed them
    assert.equal(proxy.count('POST', '/v2/shared/app/blobs/uploads/'), 3, JSON.stringify(proxy.requests.filter((q) => q.method !== 'GET').map((q) => `${q.method} ${q.path.slice(0, 90)} ${q.status}`)));
    const c = new RegistryClient({ host: b.host });
    try {
      for (const t of ['t1', 't2', 't3']) assert.equal((await c.getManifest('shared/app', t)).digest, imageDigest);
    } finally {
      await c.close();
    }
  } finally {
    await proxy.stop();
  }
});
