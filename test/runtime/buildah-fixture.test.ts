/**
 * The buildah-made fixtures really are what the runtime tests rely on: the whiteout image's layers hold
 * `.wh.` files and an opaque-dir marker (read from the tars themselves), and umoci — an independent unpacker —
 * applies them to the filesystem WHITEOUT_EXPECT describes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { after, before, test } from 'node:test';
import { extract as tarExtract, type Header } from 'tar-stream';
import { buildahImage, buildahSkipReason, buildahWhiteoutImage, WHITEOUT_EXPECT, WHITEOUT_LAYERS } from '../helpers/buildah-image.ts';

const skip = buildahSkipReason();

interface Manifest {
  config: { digest: string };
  layers: { digest: string; mediaType: string }[];
}

async function manifestOf(layout: string, tag: string): Promise<Manifest> {
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  assert.ok(desc, `${layout} has no image tagged ${tag}`);
  return JSON.parse(await readFile(blobPath(layout, desc.digest), 'utf8')) as Manifest;
}

function blobPath(layout: string, digest: string): string {
  const [alg, hex] = digest.split(':');
  return path.join(layout, 'blobs', alg!, hex!);
}

/** Every entry header of a (gzip or plain) layer tar, in order. */
async function layerEntries(file: string, gzip: boolean): Promise<Header[]> {
  const headers: Header[] = [];
  const ex = tarExtract();
  ex.on('entry', (h, stream, next) => {
    headers.push(h);
    stream.on('end', next);
    stream.resume();
  });
  if (gzip) await pipeline(createReadStream(file), createGunzip(), ex);
  else await pipeline(createReadStream(file), ex);
  return headers;
}

let work: string;
let layout: string;

before(async () => {
  if (skip) return;
  work = await mkdtemp(path.join(os.tmpdir(), 'hoist-buildah-fixture-test-'));
  layout = path.join(work, 'oci');
  await buildahWhiteoutImage(layout, 'wh');
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

test('the whiteout fixture\'s layers hold whiteouts, an opaque marker, a hardlink, a symlink and an owned file', { skip }, async () => {
  const m = await manifestOf(layout, 'wh');
  assert.equal(m.layers.length, WHITEOUT_LAYERS.layerCount);
  const perLayer: Map<string, Header>[] = [];
  for (const l of m.layers) {
    const entries = await layerEntries(blobPath(layout, l.digest), l.mediaType.endsWith('+gzip'));
    perLayer.push(new Map(entries.map((h) => [h.name.replace(/^\.\//, '').replace(/\/$/, ''), h])));
  }
  for (const [i, names] of Object.entries(WHITEOUT_LAYERS.mustHold)) {
    const layer = perLayer[Number(i)]!;
    for (const n of names) assert.ok(layer.has(n), `layer ${i} lacks ${n}; it holds ${[...layer.keys()].join(', ')}`);
  }
  const l1 = perLayer[1]!;
  assert.equal(l1.get('keep-hard')!.type, 'link');
  assert.equal(l1.get('keep-hard')!.linkname?.replace(/^\//, ''), 'keep');
  assert.equal(l1.get('keep-sym')!.type, 'symlink');
  assert.equal(l1.get('keep-sym')!.linkname, '/keep');
  const priv = l1.get('private')!;
  assert.equal(priv.uid, 1000);
  assert.equal(priv.gid, 1000);
  assert.equal(priv.mode! & 0o7777, 0o700);
  // The re-created /d is opaque: nothing of the old /d is whited out one by one.
  const l2 = perLayer[2]!;
  assert.ok(!l2.has('d/.wh.a') && !l2.has('d/.wh.sub'), 'the opaque dir also has per-entry whiteouts');
});

test('umoci unpacks the whiteout fixture to the expected filesystem', { skip: skip || (!existsSync('/usr/bin/umoci') && 'umoci not installed') }, async () => {
  const bundle = path.join(work, 'bundle');
  const r = spawnSync('umoci', ['unpack', '--image', `${layout}:wh`, bundle], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rootfs = path.join(bundle, 'rootfs');
  const at = (p: string): string => path.join(rootfs, p);
  for (const [p, content] of Object.entries(WHITEOUT_EXPECT.files)) assert.equal(await readFile(at(p), 'utf8'), content, p);
  for (const p of WHITEOUT_EXPECT.absent) assert.equal(existsSync(at(p)), false, `${p} should be gone`);
  for (const [p, target] of Object.entries(WHITEOUT_EXPECT.symlinks)) assert.equal(await readlink(at(p)), target);
  for (const [p, target] of Object.entries(WHITEOUT_EXPECT.hardlinks)) {
    assert.equal((await lstat(at(p))).ino, (await lstat(at(target))).ino, `${p} is not a hardlink of ${target}`);
  }
  for (const [p, want] of Object.entries(WHITEOUT_EXPECT.owners)) {
    const st = await lstat(at(p));
    assert.deepEqual({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }, want, p);
  }
  assert.deepEqual((await readdir(at('/d'))).sort(), WHITEOUT_EXPECT.dEntries);
});

test('buildahImage: FROM scratch with context files, written under the given tag', { skip }, async () => {
  const out = path.join(work, 'scratch');
  const bin = Buffer.from([0, 1, 2, 255]);
  await buildahImage('FROM scratch\nCOPY . /app/\n', { 'hello.txt': 'hi\n', 'sub/bin.dat': bin }, out, 'v1');
  const m = await manifestOf(out, 'v1');
  assert.equal(m.layers.length, 1);
  const entries = await layerEntries(blobPath(out, m.layers[0]!.digest), m.layers[0]!.mediaType.endsWith('+gzip'));
  const names = entries.map((h) => h.name.replace(/^\.\//, '').replace(/\/$/, ''));
  assert.ok(names.includes('app/hello.txt') && names.includes('app/sub/bin.dat'), names.join(', '));
  assert.equal(entries.find((h) => h.name.endsWith('app/sub/bin.dat'))!.size, bin.length);
});
