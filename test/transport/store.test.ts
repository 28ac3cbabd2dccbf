/**
 * The store transport and the transport registry: bare names normalize like docker, digests and ID prefixes
 * resolve, writing a name replaces the image that had it, skopeo reads the store as an oci: layout, and
 * openSource/openDestination dispatch on the reference.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { openDestination, openSource } from '../../src/transport/index.ts';
import { normalizeStoreName } from '../../src/transport/store.ts';
import { copyImage } from '../../src/copy/engine.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { HoistError } from '../../src/errors.ts';
import { readAll } from '../../src/util/stream.ts';
import type { ImageIndex } from '../../src/oci/types.ts';
import { makeImage, type MadeImage } from '../helpers/make-image.ts';

const exec = promisify(execFile);
let tmp: string;
let root: string;
let src: string;
let a: MadeImage;
let b: MadeImage;

async function copy(from: string, to: string): Promise<string> {
  const s = await openSource(from, { storeRoot: root });
  try {
    return (await copyImage(s, await openDestination(to, { storeRoot: root }))).digest;
  } finally {
    await s.close();
  }
}

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-storetransport-'));
  root = path.join(tmp, 'store');
  src = path.join(tmp, 'src');
  a = await makeImage(src, { layers: [{ files: { a: 'a\n' } }], ref: 'a' });
  b = await makeImage(src, { layers: [{ files: { b: 'b\n' } }], ref: 'b' });
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

test('normalizeStoreName', () => {
  assert.equal(normalizeStoreName('busybox'), 'docker.io/library/busybox:latest');
  assert.equal(normalizeStoreName('user/app:1'), 'docker.io/user/app:1');
  assert.equal(normalizeStoreName('localhost:5000/x'), 'localhost:5000/x:latest');
  assert.throws(() => normalizeStoreName('Bad'), (e: unknown) => e instanceof HoistError && e.code === 'BAD_REFERENCE');
});

test('bare names, digests and ID prefixes; skopeo reads the store', async () => {
  assert.equal(await copy(`oci:${src}:a`, 'busybox'), a.manifest.digest);
  const index = JSON.parse(await readFile(path.join(root, 'index.json'), 'utf8')) as ImageIndex;
  assert.deepEqual(index.manifests.map((d) => d.annotations?.['org.opencontainers.image.ref.name']), ['docker.io/library/busybox:latest']);
  const raw = (await exec('skopeo', ['inspect', '--raw', `oci:${root}:docker.io/library/busybox:latest`], { encoding: 'buffer' })).stdout;
  assert.equal(digestBytes(raw), a.manifest.digest);

  for (const name of ['busybox', 'busybox:latest', 'docker.io/library/busybox:latest', a.manifest.digest, a.manifest.digest.slice(7, 19), `busybox@${a.manifest.digest}`]) {
    const s = await openSource(name, { storeRoot: root });
    const m = await s.getManifest();
    assert.equal(m.digest, a.manifest.digest, name);
    assert.deepEqual(await readAll(await s.getBlob(a.config)), a.configBytes);
    await s.close();
  }
  const s = await openSource('busybox', { storeRoot: root });
  assert.equal(s.name, 'docker.io/library/busybox:latest');
  await s.close();
});

test('writing a name moves it to the new image; the store round-trips to other transports', async () => {
  await copy(`oci:${src}:a`, 'app:1');
  await copy(`oci:${src}:b`, 'app:1');
  const s = await openSource('app:1', { storeRoot: root });
  assert.equal((await s.getManifest()).digest, b.manifest.digest);
  await s.close();
  const index = JSON.parse(await readFile(path.join(root, 'index.json'), 'utf8')) as ImageIndex;
  const named = index.manifests.filter((d) => d.annotations?.['org.opencontainers.image.ref.name'] === 'docker.io/library/app:1');
  assert.equal(named.length, 1);
  assert.equal(await copy('app:1', `docker-archive:${tmp}/app.tar:app:1`), b.manifest.digest);
  const arch = await openSource(`docker-archive:${tmp}/app.tar`);
  const archDigest = (await arch.getManifest()).digest;
  await arch.close();
  assert.equal(await copy(`docker-archive:${tmp}/app.tar`, 'from-archive'), archDigest);
  const back = await openSource('from-archive', { storeRoot: root });
  assert.equal((await back.getManifest()).digest, archDigest);
  await back.close();
});

test('store errors: unknown names, IDs and digests as destinations', async () => {
  await assert.rejects(openSource('not-in-store', { storeRoot: root }), (e: unknown) =>
    e instanceof HoistError && e.code === 'NOT_FOUND' && /image "not-in-store" not found in the local store/.test(e.message));
  await assert.rejects(openDestination(a.manifest.digest, { storeRoot: root }), /is an image ID or digest; to store an image give it a name/);
  await assert.rejects(openDestination(`busybox@${a.manifest.digest}`, { storeRoot: root }), /includes a digest/);
});

test('strings and parsed references both open; docker:// refs are checked before any network use', async () => {
  await assert.rejects(openSource('docker://Busybox'), (e: unknown) => e instanceof HoistError && e.code === 'BAD_REFERENCE');
  await assert.rejects(openDestination('docker://a:b:c'), (e: unknown) => e instanceof HoistError);
  const s = await openSource({ transport: 'oci', dir: src, ref: 'b' });
  assert.equal((await s.getManifest()).digest, b.manifest.digest);
  await s.close();
  await assert.rejects(openSource('foo:bar/baz'), /unknown transport "foo"/);
});
