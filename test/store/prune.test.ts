/**
 * prune: what it deletes and keeps, leases, quarantine recovery and stale temp files. Blob ages are set with utimes,
 * so nothing here depends on how fast the machine is.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { HoistError } from '../../src/errors.ts';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import type { Descriptor } from '../../src/oci/types.ts';
import { OciLayout } from '../../src/store/layout.ts';
import { prune } from '../../src/store/prune.ts';
import { blobBytes } from './fixtures/content.ts';

let tmp: string;
before(async () => { tmp = await mkdtemp(path.join(tmpdir(), 'hoist-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

let n = 0;
async function fresh(): Promise<OciLayout> {
  return OciLayout.open(path.join(tmp, `l${n++}`), { create: true });
}

const HOUR = 3_600_000;

async function age(l: OciLayout, digest: string, ms = 2 * HOUR): Promise<void> {
  const t = new Date(Date.now() - ms);
  await utimes(l.blobPath(digest), t, t);
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

interface Image { manifest: Descriptor; blobs: string[] }

/** config + layers + manifest, all stored; `blobs` lists every digest the image owns. */
async function storeImage(l: OciLayout, seed: string, layers = 2): Promise<Image> {
  const layerDescs: Descriptor[] = [];
  for (let i = 0; i < layers; i++) {
    const b = blobBytes(`${seed}-${i}`, 5000 + i);
    layerDescs.push({ mediaType: OCI_LAYER, digest: await l.putBlobBytes(b), size: b.length });
  }
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, seed }));
  const configDigest = await l.putBlobBytes(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length }, layers: layerDescs,
  }));
  const md = await l.putBlobBytes(manifest);
  return { manifest: { mediaType: OCI_MANIFEST, digest: md, size: manifest.length }, blobs: [md, configDigest, ...layerDescs.map((d) => d.digest)] };
}

async function storeIndex(l: OciLayout, children: Image[]): Promise<Image> {
  const bytes = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_INDEX,
    manifests: children.map((c, i) => ({ ...c.manifest, platform: { os: 'linux', architecture: i ? 'arm64' : 'amd64' } })),
  }));
  const d = await l.putBlobBytes(bytes);
  return { manifest: { mediaType: OCI_INDEX, digest: d, size: bytes.length }, blobs: [d, ...children.flatMap((c) => c.blobs)] };
}

async function ageAll(l: OciLayout, digests: string[]): Promise<void> {
  for (const d of digests) await age(l, d);
}

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  const pid = child.pid!;
  await new Promise((r) => child.on('exit', r));
  return pid;
}

test('deletes old unreachable blobs; keeps everything reachable from any entry, through indexes', async () => {
  const l = await fresh();
  const tagged = await storeImage(l, 'tagged');
  const unnamed = await storeImage(l, 'unnamed');
  const a = await storeImage(l, 'idx-a');
  const b = await storeImage(l, 'idx-b');
  const idx = await storeIndex(l, [a, b]);
  const orphan = await storeImage(l, 'orphan');
  await l.setRef('t', tagged.manifest);
  await l.addUnnamed(unnamed.manifest);
  await l.setRef('multi', idx.manifest);
  const all = [...tagged.blobs, ...unnamed.blobs, ...idx.blobs, ...orphan.blobs];
  await ageAll(l, all);

  let orphanBytes = 0;
  for (const d of orphan.blobs) orphanBytes += (await stat(l.blobPath(d))).size;

  const r = await prune(l);
  assert.deepEqual(r.deleted, [...orphan.blobs].sort());
  assert.equal(r.freedBytes, orphanBytes);
  for (const d of orphan.blobs) assert.equal(await l.hasBlob(d), false);
  for (const d of [...tagged.blobs, ...unnamed.blobs, ...idx.blobs]) assert.ok(await l.hasBlob(d), `kept ${d}`);

  // removing the names makes them garbage too
  await l.removeRef('multi');
  const r2 = await prune(l);
  assert.deepEqual(r2.deleted, [...new Set(idx.blobs)].sort());
  assert.deepEqual((await prune(l)).deleted, []);
  assert.deepEqual(await readdir(l.tmpDir), [], 'no marker or quarantine file left');
});

test('keeps unreachable blobs newer than the prune start (a write in progress)', async () => {
  const l = await fresh();
  const img = await storeImage(l, 'recent');
  const future = new Date(Date.now() + HOUR);
  for (const d of img.blobs) await utimes(l.blobPath(d), future, future);
  assert.deepEqual((await prune(l)).deleted, []);
  for (const d of img.blobs) assert.ok(await l.hasBlob(d));
});

test('a writer that checked a blob through its lease keeps it; one that did not check it loses it', async () => {
  const l = await fresh();
  const used = await storeImage(l, 'used');
  const unused = await storeImage(l, 'unused');
  await ageAll(l, [...used.blobs, ...unused.blobs]);

  const lease = await l.lease();
  try {
    // The writer's "exists, skip" for every blob of `used` — the check that must not be made false by prune.
    for (const d of used.blobs) assert.ok(await lease.hasBlob(d));
    const r = await prune(l);
    // unused blobs are older than the lease: gone; used ones were touched: kept, and the writer can tag.
    assert.deepEqual(r.deleted, [...unused.blobs].sort());
    await l.setRef('done', used.manifest);
  } finally {
    await lease.release();
  }
  await ageAll(l, used.blobs);
  assert.deepEqual((await prune(l)).deleted, [], 'tagged now, so reachable');
});

test('a live lease holds back everything newer than its start, even unchecked blobs', async () => {
  const l = await fresh();
  const lease = await l.lease();
  try {
    const img = await storeImage(l, 'after-lease');
    // a blob written after the lease started, by the lease holder or anybody: never older than the lease
    for (const d of img.blobs) assert.ok((await stat(l.blobPath(d))).mtimeMs >= lease.createdMs);
    const before = new Date(lease.createdMs - 1000);
    await utimes(l.blobPath(img.blobs[0]!), before, before);
    const r = await prune(l);
    assert.deepEqual(r.deleted, [img.blobs[0]], 'only the blob older than the lease');
  } finally {
    await lease.release();
  }
});

test('a lease whose process is dead does not count and is removed; another host\'s lease counts', async () => {
  const l = await fresh();
  const img = await storeImage(l, 'dead-lease');
  await ageAll(l, img.blobs);
  await mkdir(l.leasesDir, { recursive: true });

  // a lease from another host, older than the blobs: prune must keep them
  const remote = path.join(l.leasesDir, '1-remote');
  await writeFile(remote, JSON.stringify({ pid: 1, hostname: 'elsewhere.example', created: '' }));
  const older = new Date(Date.now() - 3 * HOUR);
  await utimes(remote, older, older);
  assert.deepEqual((await prune(l)).deleted, []);
  assert.ok(await exists(remote));
  await rm(remote);

  // the same, but from a dead local pid: ignored (blobs go) and cleaned up
  const pid = await deadPid();
  const dead = path.join(l.leasesDir, `${pid}-dead`);
  await writeFile(dead, JSON.stringify({ pid, hostname: hostname(), created: '' }));
  await utimes(dead, older, older);
  assert.deepEqual((await prune(l)).deleted, [...img.blobs].sort());
  assert.equal(await exists(dead), false);
});

test('a corrupt reachable manifest stops prune before it deletes anything', async () => {
  const l = await fresh();
  const good = await storeImage(l, 'corrupt');
  const orphan = await storeImage(l, 'orphan2');
  await l.setRef('c', good.manifest);
  await ageAll(l, [...good.blobs, ...orphan.blobs]);
  await writeFile(l.blobPath(good.manifest.digest), '{"schemaVersion":2,"layers":[]}');
  await age(l, good.manifest.digest);
  await assert.rejects(prune(l), (e: HoistError) =>
    e.code === 'PRUNE_STOPPED' && e.message.includes(good.manifest.digest) && !e.message.includes('\n'));
  for (const d of orphan.blobs) assert.ok(await l.hasBlob(d), 'nothing deleted');
});

test('a blob left in quarantine by a crashed prune is put back and judged again', async () => {
  const l = await fresh();
  const img = await storeImage(l, 'quarantine');
  await l.setRef('q', img.manifest);
  const layer = img.blobs[2]!;
  const hex = layer.slice('sha256:'.length);
  await mkdir(l.tmpDir, { recursive: true });
  await rename(l.blobPath(layer), path.join(l.tmpDir, `gc-sha256-${hex}-99999`));
  assert.equal(await l.hasBlob(layer), false);
  assert.deepEqual((await prune(l)).deleted, []);
  assert.ok(await l.hasBlob(layer), 'reachable, so restored and kept');
  assert.deepEqual(await readdir(l.tmpDir), []);
});

test('temp files older than an hour are removed; fresh ones (writes in progress) stay', async () => {
  const l = await fresh();
  await mkdir(l.tmpDir, { recursive: true });
  const stale = path.join(l.tmpDir, 'blob-123-abc');
  const fresh1 = path.join(l.tmpDir, 'blob-456-def');
  await writeFile(stale, 'partial');
  await writeFile(fresh1, 'partial');
  const old = new Date(Date.now() - 2 * HOUR);
  await utimes(stale, old, old);
  await prune(l);
  assert.equal(await exists(stale), false);
  assert.ok(await exists(fresh1));
});

test('files under blobs/ that are not digests are left alone', async () => {
  const l = await fresh();
  const foreign = path.join(l.dir, 'blobs', 'sha256', 'oci-put-blob-12345');
  await writeFile(foreign, 'x');
  const t = new Date(Date.now() - 2 * HOUR);
  await utimes(foreign, t, t);
  assert.deepEqual((await prune(l)).deleted, []);
  assert.ok(await exists(foreign));
});

test('a manifest of a type hoist does not parse (an artifact) keeps every blob it references', async () => {
  const l = await fresh();
  const blob = Buffer.from('an sbom');
  const bd = await l.putBlobBytes(blob);
  const emptyConfig = Buffer.from('{}');
  const cd = await l.putBlobBytes(emptyConfig);
  const artifact = Buffer.from(JSON.stringify({
    mediaType: 'application/vnd.oci.artifact.manifest.v1+json', artifactType: 'application/spdx+json',
    blobs: [{ mediaType: 'application/spdx+json', digest: bd, size: blob.length }],
    extra: { config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: cd, size: emptyConfig.length } },
  }));
  const ad = await l.putBlobBytes(artifact);
  await l.setRef('sbom', { mediaType: 'application/vnd.oci.artifact.manifest.v1+json', digest: ad, size: artifact.length });
  await ageAll(l, [bd, cd, ad]);
  assert.deepEqual((await prune(l)).deleted, []);
  await l.removeRef('sbom');
  assert.deepEqual((await prune(l)).deleted, [ad, bd, cd].sort());
});
