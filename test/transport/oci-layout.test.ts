/**
 * oci: layouts against skopeo: what skopeo writes is read with its digests; what hoist writes skopeo reads; and
 * index.json after a sequence of copies (retag, untagged, same digest twice) is exactly what skopeo leaves.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, readFile, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { openDestination, openSource } from '../../src/transport/index.ts';
import { addManifestLikeSkopeo } from '../../src/transport/oci-layout.ts';
import { copyImage } from '../../src/copy/engine.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { OCI_INDEX } from '../../src/oci/mediatype.ts';
import { HoistError } from '../../src/errors.ts';
import { readAll } from '../../src/util/stream.ts';
import type { ImageIndex } from '../../src/oci/types.ts';
import { makeImage, type MadeImage } from '../helpers/make-image.ts';

const exec = promisify(execFile);
let tmp: string;
let src: string;
let v1: MadeImage;
let other: MadeImage;

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
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-ocilayout-'));
  src = path.join(tmp, 'src');
  v1 = await makeImage(src, { layers: [{ files: { 'bin/busybox': await readFile('/bin/busybox') } }, { files: { 'etc/x': 'x\n' } }], ref: 'v1' });
  other = await makeImage(src, { layers: [{ files: { 'etc/other': 'other\n' } }], ref: 'other', epoch: 5 });
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

test('reads a layout skopeo wrote, with its digests and verified blobs', async () => {
  const dir = path.join(tmp, 'by-skopeo');
  await skopeo('copy', '-q', `oci:${src}:v1`, `oci:${dir}:t`);
  const raw = await skopeo('inspect', '--raw', `oci:${dir}:t`);
  for (const ref of [`oci:${dir}:t`, `oci:${dir}`]) {
    const s = await openSource(ref);
    try {
      assert.equal(s.name, ref);
      const m = await s.getManifest();
      assert.deepEqual(m.bytes, raw);
      assert.equal(m.digest, digestBytes(raw));
      assert.equal(m.mediaType, v1.manifest.mediaType);
      assert.deepEqual(await readAll(await s.getBlob(v1.config)), await skopeo('inspect', '--config', '--raw', `oci:${dir}:t`));
      for (const l of v1.layers) assert.equal(digestBytes(await readAll(await s.getBlob(l), 1 << 30)), l.digest);
      assert.deepEqual(await s.listTags!(), ['t']);
      assert.deepEqual((await s.getManifest(m.digest)).bytes, raw);
    } finally {
      await s.close();
    }
  }
});

test('choosing an image: several need a name, unknown names and missing layouts are clear errors', async () => {
  await assert.rejects(openSource(`oci:${src}`), (e: unknown) =>
    e instanceof HoistError && e.code === 'AMBIGUOUS' && e.message === `oci:${src}: the layout holds 2 images; name one as oci:${src}:NAME (has v1, other)`);
  await assert.rejects(openSource(`oci:${src}:nosuch`), (e: unknown) =>
    e instanceof HoistError && e.code === 'NOT_FOUND' && e.message === `oci:${src}: no image named "nosuch" in the layout (has v1, other)`);
  await assert.rejects(openSource(`oci:${tmp}/nope:latest`), (e: unknown) =>
    e instanceof HoistError && e.code === 'NOT_FOUND' && /nope: no such directory/.test(e.message));
  const empty = path.join(tmp, 'empty-layout');
  await makeImage(empty, { layers: [] });
  await writeFile(path.join(empty, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [] }));
  await assert.rejects(openSource(`oci:${empty}`), /the layout holds no image/);
});

test('an index and its children; a corrupt blob fails its stream', async () => {
  const dir = path.join(tmp, 'with-index');
  const a = await makeImage(dir, { layers: [{ files: { a: 'a' } }], platform: { os: 'linux', architecture: 'amd64' } });
  const b = await makeImage(dir, { layers: [{ files: { b: 'b' } }], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [
    { ...a.manifest, platform: { os: 'linux', architecture: 'amd64' } },
    { ...b.manifest, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ] }));
  const indexDigest = digestBytes(index);
  await writeFile(path.join(dir, 'blobs', 'sha256', indexDigest.slice(7)), index);
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [
    { mediaType: OCI_INDEX, digest: indexDigest, size: index.length, annotations: { 'org.opencontainers.image.ref.name': 'multi' } },
  ] }));
  const s = await openSource(`oci:${dir}:multi`);
  const top = await s.getManifest();
  assert.equal(top.mediaType, OCI_INDEX);
  assert.equal(top.digest, indexDigest);
  const child = await s.getManifest(b.manifest.digest);
  assert.deepEqual(child.bytes, b.manifestBytes);
  assert.equal(child.mediaType, b.manifest.mediaType);

  // The whole index copies, and skopeo reads the copy with the same digest.
  const out = path.join(tmp, 'index-copy');
  assert.equal(await copy(`oci:${dir}:multi`, `oci:${out}:m`), indexDigest);
  assert.equal(digestBytes(await skopeo('inspect', '--raw', `oci:${out}:m`)), indexDigest);

  const layer = a.layers[0]!;
  const blob = path.join(dir, 'blobs', 'sha256', layer.digest.slice(7));
  const bytes = await readFile(blob);
  bytes[bytes.length - 5]! ^= 0xff;
  await writeFile(blob, bytes);
  await assert.rejects(readAll(await s.getBlob(layer)), (e: unknown) => e instanceof HoistError && e.code === 'DIGEST_MISMATCH');
  await s.close();
});

test('what hoist writes skopeo reads, and index.json ends as skopeo leaves it', async () => {
  const mine = path.join(tmp, 'mine');
  const theirs = path.join(tmp, 'theirs');
  // retag (t moves, the old image stays unnamed), untagged twice (no duplicate), another name on the same image
  const steps: [string, string | undefined][] = [['v1', 't'], ['other', 't'], ['v1', undefined], ['v1', undefined], ['other', undefined], ['v1', 'u'], ['v1', 't']];
  for (const [from, to] of steps) {
    await copy(`oci:${src}:${from}`, `oci:${mine}${to ? `:${to}` : ''}`);
    await skopeo('copy', '-q', `oci:${src}:${from}`, `oci:${theirs}${to ? `:${to}` : ''}`);
    const a = JSON.parse(await readFile(path.join(mine, 'index.json'), 'utf8')) as ImageIndex;
    const b = JSON.parse(await readFile(path.join(theirs, 'index.json'), 'utf8')) as ImageIndex;
    assert.deepEqual(a.manifests, b.manifests, `after copying ${from} to ${to ?? '(no name)'}`);
  }
  assert.equal(digestBytes(await skopeo('inspect', '--raw', `oci:${mine}:t`)), v1.manifest.digest);
  assert.deepEqual(await skopeo('inspect', '--config', '--raw', `oci:${mine}:u`), v1.configBytes);
  const blobs = (await readdir(path.join(mine, 'blobs', 'sha256'))).sort();
  assert.deepEqual(blobs, (await readdir(path.join(theirs, 'blobs', 'sha256'))).sort(), 'same blobs');
});

test('nothing is named before commit; abort leaves index.json and ends the lease', async () => {
  const dir = path.join(tmp, 'uncommitted');
  await copy(`oci:${src}:other`, `oci:${dir}:keep`);
  const before = await readFile(path.join(dir, 'index.json'), 'utf8');
  const s = await openSource(`oci:${src}:v1`);
  const d = await openDestination(`oci:${dir}:new`);
  for (const b of [v1.config, ...v1.layers]) await d.putBlob(b, await s.getBlob(b));
  await d.putManifest(await s.getManifest(), { topLevel: true });
  assert.equal(await readFile(path.join(dir, 'index.json'), 'utf8'), before);
  assert.equal(await d.hasBlob(v1.layers[0]!), true);
  assert.equal(await d.hasManifest!(v1.manifest.digest), true);
  await d.abort();
  await s.close();
  assert.equal(await readFile(path.join(dir, 'index.json'), 'utf8'), before);
  assert.deepEqual(await readdir(path.join(dir, '.leases')).catch(() => []), []);
});

test('addManifestLikeSkopeo keeps other annotations and drops an emptied annotations object', () => {
  const d = (n: number, ann?: Record<string, string>) => ({ mediaType: 'm', digest: `sha256:${String(n).repeat(64)}`, size: n, ...(ann ? { annotations: ann } : {}) });
  const REF = 'org.opencontainers.image.ref.name';
  const idx = { schemaVersion: 2 as const, manifests: [d(1, { [REF]: 'a', other: 'x' }), d(2, { [REF]: 'b' })] };
  assert.deepEqual(addManifestLikeSkopeo(idx, d(3), 'b').manifests, [d(1, { [REF]: 'a', other: 'x' }), d(2), d(3, { [REF]: 'b' })]);
  assert.deepEqual(addManifestLikeSkopeo(idx, d(1), 'a').manifests, [d(1, { other: 'x', [REF]: 'a' }), d(2, { [REF]: 'b' })].map((m, i) => (i === 0 ? d(1, { [REF]: 'a' }) : m)));
  assert.deepEqual(addManifestLikeSkopeo(idx, d(2, { [REF]: 'zzz' }), undefined).manifests, [...idx.manifests, d(2)]);
});
