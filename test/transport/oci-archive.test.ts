/**
 * oci-archive: against skopeo: archives skopeo writes are read in place with its digests; archives hoist writes
 * skopeo reads with the same digest and config; writing is atomic; broken archives fail with one clear line.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, readFile, writeFile, readdir, stat, truncate, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { openDestination, openSource } from '../../src/transport/index.ts';
import { copyImage } from '../../src/copy/engine.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { HoistError } from '../../src/errors.ts';
import { readAll } from '../../src/util/stream.ts';
import { makeImage, type MadeImage } from '../helpers/make-image.ts';

const exec = promisify(execFile);
let tmp: string;
let src: string;
let img: MadeImage;

async function skopeo(...args: string[]): Promise<Buffer> {
  return (await exec('skopeo', args, { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 })).stdout;
}

async function copy(from: string, to: string): Promise<string> {
  const s = await openSource(from);
  try {
    return (await copyImage(s, await openDestination(to))).digest;
  } finally {
    await s.close();
  }
}

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-ociarchive-'));
  src = path.join(tmp, 'src');
  img = await makeImage(src, { layers: [{ files: { 'bin/busybox': await readFile('/bin/busybox') } }, { files: { 'etc/y': 'y\n' } }], ref: 'v1' });
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

test('reads an archive skopeo wrote (plain and gzipped) with its digests', async () => {
  const arch = path.join(tmp, 'sk.tar');
  await skopeo('copy', '-q', `oci:${src}:v1`, `oci-archive:${arch}:v9`);
  const raw = await skopeo('inspect', '--raw', `oci-archive:${arch}:v9`);
  const gz = path.join(tmp, 'sk.tar.gz');
  await writeFile(gz, gzipSync(await readFile(arch)));
  for (const ref of [`oci-archive:${arch}:v9`, `oci-archive:${arch}`, `oci-archive:${gz}:v9`]) {
    const s = await openSource(ref);
    try {
      const m = await s.getManifest();
      assert.deepEqual(m.bytes, raw, ref);
      assert.equal(m.digest, img.manifest.digest);
      assert.deepEqual(await readAll(await s.getBlob(img.config)), img.configBytes);
      for (const l of img.layers) assert.equal(digestBytes(await readAll(await s.getBlob(l), 1 << 30)), l.digest);
      assert.deepEqual(await s.listTags!(), ['v9']);
    } finally {
      await s.close();
    }
  }
  await assert.rejects(openSource(`oci-archive:${arch}:nope`), /oci-archive:.*sk\.tar: no image named "nope" in the layout \(has v9\)/);
});

test('what hoist writes skopeo reads with the same digest and config; only layout files are archived', async () => {
  const arch = path.join(tmp, 'mine.tar');
  assert.equal(await copy(`oci:${src}:v1`, `oci-archive:${arch}:v2`), img.manifest.digest);
  assert.equal(digestBytes(await skopeo('inspect', '--raw', `oci-archive:${arch}:v2`)), img.manifest.digest);
  assert.deepEqual(await skopeo('inspect', '--config', '--raw', `oci-archive:${arch}:v2`), img.configBytes);
  const { stdout } = await exec('tar', ['-tf', arch]);
  const names = stdout.trim().split('\n');
  const blobs = [img.manifest, img.config, ...img.layers].map((d) => `blobs/sha256/${d.digest.slice(7)}`).sort();
  assert.deepEqual(names, ['blobs/', 'blobs/sha256/', ...blobs, 'index.json', 'oci-layout']);
  // and back again
  assert.equal(await copy(`oci-archive:${arch}:v2`, `oci:${tmp}/back:b`), img.manifest.digest);
  // no staging directory is left beside the archive
  assert.deepEqual((await readdir(tmp)).filter((n) => n.includes('.hoist-') || n.includes('.tmp-')), []);
});

test('an existing archive is replaced whole on commit and untouched on abort', async () => {
  const arch = path.join(tmp, 'replace.tar');
  await writeFile(arch, 'previous');
  const s = await openSource(`oci:${src}:v1`);
  const d = await openDestination(`oci-archive:${arch}`);
  for (const b of [img.config, ...img.layers]) await d.putBlob(b, await s.getBlob(b));
  await d.putManifest(await s.getManifest(), { topLevel: true });
  await d.abort();
  await s.close();
  assert.equal(await readFile(arch, 'utf8'), 'previous');
  assert.deepEqual((await readdir(tmp)).filter((n) => n.startsWith('.replace.tar')), []);
  await copy(`oci:${src}:v1`, `oci-archive:${arch}`);
  const index = JSON.parse((await exec('tar', ['-xOf', arch, 'index.json'])).stdout) as { manifests: { annotations?: unknown }[] };
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0]!.annotations, undefined, 'no ref given: listed unnamed, like skopeo');
  assert.equal(digestBytes(await skopeo('inspect', '--raw', `oci-archive:${arch}`)), img.manifest.digest);
});

async function failsOpening(ref: string, re: RegExp, code?: string): Promise<void> {
  await assert.rejects(openSource(ref), (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.ok(!e.message.includes('\n'));
    assert.match(e.message, re);
    if (code) assert.equal(e.code, code);
    return true;
  });
}

test('bad archives: missing, not a tar, truncated, a docker archive, missing and corrupt blobs', async () => {
  await failsOpening(`oci-archive:${tmp}/nope.tar`, /nope\.tar: no such file/, 'NOT_FOUND');
  const junk = path.join(tmp, 'junk.tar');
  await writeFile(junk, 'junk\n'.repeat(300));
  await failsOpening(`oci-archive:${junk}`, /junk\.tar: not a tar archive/, 'BAD_ARCHIVE');

  const good = path.join(tmp, 'good.tar');
  await copy(`oci:${src}:v1`, `oci-archive:${good}`);
  const cut = path.join(tmp, 'cut.tar');
  await writeFile(cut, await readFile(good));
  await truncate(cut, Math.floor((await stat(cut)).size / 2));
  await failsOpening(`oci-archive:${cut}`, /cut\.tar: the tar archive is truncated/, 'BAD_ARCHIVE');

  const docker = path.join(tmp, 'docker.tar');
  await skopeo('copy', '-q', `oci:${src}:v1`, `docker-archive:${docker}`);
  await failsOpening(`oci-archive:${docker}`, /docker\.tar: index\.json is missing; it is a docker save archive: read it with docker-archive:/);

  // A layout tar missing a layer, and one whose layer bytes were altered: found when the blob is read.
  const tree = path.join(tmp, 'tree');
  await mkdir(tree);
  await exec('tar', ['-xf', good, '-C', tree]);
  const layerFile = path.join(tree, 'blobs', 'sha256', img.layers[1]!.digest.slice(7));
  const layerBytes = await readFile(layerFile);
  await rm(layerFile);
  const missing = path.join(tmp, 'missing-blob.tar');
  await exec('tar', ['-cf', missing, '-C', tree, '.']);
  const s1 = await openSource(`oci-archive:${missing}`);
  await assert.rejects(s1.getBlob(img.layers[1]!), /blob sha256:[0-9a-f]+ is missing from the archive/);
  await s1.close();

  layerBytes[layerBytes.length - 3]! ^= 0xff;
  await writeFile(layerFile, layerBytes);
  const corrupt = path.join(tmp, 'corrupt-blob.tar');
  await exec('tar', ['-cf', corrupt, '-C', tree, '.']);
  const s2 = await openSource(`oci-archive:${corrupt}`);
  await assert.rejects(readAll(await s2.getBlob(img.layers[1]!)), (e: unknown) => e instanceof HoistError && e.code === 'DIGEST_MISMATCH');
  await s2.close();

  await assert.rejects(openDestination(`oci-archive:${tmp}/no/such/dir.tar`), /directory .*no\/such does not exist/);
  await assert.rejects(openDestination(`oci-archive:${tmp}`), /is a directory/);
});
