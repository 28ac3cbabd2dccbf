/** Store: images grouped by digest with sizes and dates, tag by name / digest / ID prefix, untag, resolve errors. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { HoistError } from '../../src/errors.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import type { Descriptor } from '../../src/oci/types.ts';
import { REF_NAME_ANNOTATION } from '../../src/store/layout.ts';
import { Store } from '../../src/store/store.ts';
import { blobBytes } from './fixtures/content.ts';

let tmp: string;
before(async () => { tmp = await mkdtemp(path.join(tmpdir(), 'hoist-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

let n = 0;
function freshStore(): Promise<Store> {
  return Store.open(path.join(tmp, `s${n++}`));
}

/** An image with a shared base layer and one of its own; returns its descriptor and total size. */
async function image(s: Store, seed: string, created: string, base: Buffer): Promise<{ desc: Descriptor; size: number }> {
  const own = blobBytes(seed, 3000);
  const baseDigest = await s.layout.putBlobBytes(base);
  const ownDigest = await s.layout.putBlobBytes(own);
  const config = Buffer.from(JSON.stringify({ created, architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const configDigest = await s.layout.putBlobBytes(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
    layers: [{ mediaType: OCI_LAYER_GZIP, digest: baseDigest, size: base.length }, { mediaType: OCI_LAYER_GZIP, digest: ownDigest, size: own.length }],
  }));
  const md = await s.layout.putBlobBytes(manifest);
  return { desc: { mediaType: OCI_MANIFEST, digest: md, size: manifest.length }, size: manifest.length + config.length + base.length + own.length };
}

test('open creates the store; images lists one entry per digest with every name, size and created', async () => {
  const s = await freshStore();
  assert.deepEqual(await s.images(), []);
  const base = blobBytes('base', 10_000);
  const old = await image(s, 'old', '2023-01-01T00:00:00Z', base);
  const neu = await image(s, 'new', '2024-06-01T00:00:00Z', base);
  await s.layout.setRef('docker.io/library/old:1', old.desc);
  await s.layout.setRef('docker.io/library/new:latest', neu.desc);
  await s.layout.setRef('localhost/new:2', neu.desc);

  const list = await s.images();
  assert.equal(list.length, 2);
  assert.deepEqual(list[0], { names: ['docker.io/library/new:latest', 'localhost/new:2'], digest: neu.desc.digest, mediaType: OCI_MANIFEST, size: neu.size, created: '2024-06-01T00:00:00Z' });
  assert.deepEqual(list[1], { names: ['docker.io/library/old:1'], digest: old.desc.digest, mediaType: OCI_MANIFEST, size: old.size, created: '2023-01-01T00:00:00Z' });

  // an index: its own bytes plus every child, the shared base layer counted once; newest child date
  const indexBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [old.desc, neu.desc] }));
  const id = await s.layout.putBlobBytes(indexBytes);
  await s.layout.addUnnamed({ mediaType: OCI_INDEX, digest: id, size: indexBytes.length });
  const idx = (await s.images()).find((i) => i.digest === id);
  assert.deepEqual(idx, { names: [], digest: id, mediaType: OCI_INDEX, size: indexBytes.length + old.size + neu.size - base.length, created: '2024-06-01T00:00:00Z' });
});

test('tag by name (normalized like docker), by digest and by ID prefix; untag', async () => {
  const s = await freshStore();
  const img = await image(s, 'tag', '2024-01-01T00:00:00Z', blobBytes('b2', 100));
  await s.layout.setRef('docker.io/library/busybox:latest', { ...img.desc, annotations: { 'org.example/x': 'y' } });

  await s.tag('busybox', 'localhost/a:1');
  await s.tag(img.desc.digest, 'localhost/b:1');
  await s.tag(img.desc.digest.slice(7, 19), 'localhost/c:1');
  await s.tag(`sha256:${img.desc.digest.slice(7, 30)}`, 'localhost/d:1');
  await s.tag('docker.io/library/busybox:latest', 'localhost/e:1');
  await s.tag(`busybox@${img.desc.digest}`, 'localhost/f:1');
  const names = (await s.layout.listRefs()).map((r) => r.name).sort();
  assert.deepEqual(names, ['docker.io/library/busybox:latest', ...['a', 'b', 'c', 'd', 'e', 'f'].map((x) => `localhost/${x}:1`)]);
  const a = await s.layout.resolveRef('localhost/a:1');
  assert.deepEqual(a?.annotations, { 'org.example/x': 'y', [REF_NAME_ANNOTATION]: 'localhost/a:1' }, 'other annotations travel, the old name does not');

  const resolved = await s.resolve('localhost/c:1');
  assert.equal(resolved.digest, img.desc.digest);
  assert.equal(resolved.annotations?.[REF_NAME_ANNOTATION], undefined);

  assert.equal(await s.untag('localhost/a:1'), true);
  assert.equal(await s.untag('localhost/a:1'), false);
  assert.equal((await s.images())[0]!.names.length, 6);
});

test('resolve: a child manifest of an index by digest; NOT_FOUND and AMBIGUOUS with one line', async () => {
  const s = await freshStore();
  const base = blobBytes('b3', 100);
  const child = await image(s, 'child', '2024-01-01T00:00:00Z', base);
  const indexBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [child.desc] }));
  const id = await s.layout.putBlobBytes(indexBytes);
  await s.layout.setRef('localhost/multi:1', { mediaType: OCI_INDEX, digest: id, size: indexBytes.length });
  assert.deepEqual(await s.resolve(child.desc.digest), child.desc);

  await assert.rejects(s.resolve('nosuch'), (e: HoistError) =>
    e.code === 'NOT_FOUND' && e.message === `image "nosuch" not found in the local store (${s.root}); list images with: hoist images`);
  await assert.rejects(s.resolve('abc'), (e: HoistError) => e.code === 'NOT_FOUND', 'a prefix shorter than 12 is not an ID');
  // a layer digest is stored but is not an image
  assert.ok(await s.layout.hasBlob(digestBytes(base)));
  await assert.rejects(s.resolve(digestBytes(base)), (e: HoistError) => e.code === 'NOT_FOUND');
  await assert.rejects(s.resolve(`sha256:${'0'.repeat(64)}`), (e: HoistError) => e.code === 'NOT_FOUND');

  // two images whose digests share a 12-digit prefix cannot be made on purpose; fake them in index.json
  const p = 'sha256:' + 'ab'.repeat(6);
  await s.layout.updateIndex((idx) => ({ ...idx, manifests: [...idx.manifests,
    { mediaType: OCI_MANIFEST, digest: p + '1'.repeat(52), size: 1 }, { mediaType: OCI_MANIFEST, digest: p + '2'.repeat(52), size: 1 }] }));
  await assert.rejects(s.resolve('ab'.repeat(6)), (e: HoistError) => e.code === 'AMBIGUOUS' && !e.message.includes('\n'));
});
