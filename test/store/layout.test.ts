/** OciLayout: opening, atomic and verified blob writes and reads, index.json and refs, checked by umoci and skopeo. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { HoistError } from '../../src/errors.ts';
import { digestBytes, DigestMismatchError, SizeMismatchError } from '../../src/oci/digest.ts';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import type { Descriptor } from '../../src/oci/types.ts';
import { OciLayout, REF_NAME_ANNOTATION } from '../../src/store/layout.ts';
import { readAll } from '../../src/util/stream.ts';
import { run } from '../helpers/run.ts';
import { blobBytes, blobStream } from './fixtures/content.ts';

let tmp: string;
before(async () => { tmp = await mkdtemp(path.join(tmpdir(), 'hoist-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

let n = 0;
async function fresh(): Promise<OciLayout> {
  return OciLayout.open(path.join(tmp, `l${n++}`), { create: true });
}

/** Files in .tmp/ (temp files left behind would show here). */
async function temps(l: OciLayout): Promise<string[]> {
  return readdir(l.tmpDir).catch(() => []);
}

function sha(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** A stream that yields `chunks` and then fails, like a connection dropped mid-transfer. */
function failingStream(chunks: Buffer[], err: Error): Readable {
  return Readable.from((async function* () {
    for (const c of chunks) yield c;
    throw err;
  })(), { objectMode: false });
}

/** Stores a minimal image (config + one layer + manifest); returns the manifest descriptor. */
async function storeImage(l: OciLayout, seed: string): Promise<Descriptor> {
  const layer = blobBytes(seed, 1000);
  const layerDigest = await l.putBlobBytes(layer);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layerDigest] } }));
  const configDigest = await l.putBlobBytes(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
    layers: [{ mediaType: OCI_LAYER, digest: layerDigest, size: layer.length }],
  }));
  return { mediaType: OCI_MANIFEST, digest: await l.putBlobBytes(manifest), size: manifest.length };
}

test('open with create makes a spec layout; reopening without create accepts it', async () => {
  const dir = path.join(tmp, 'new', 'nested');
  const l = await OciLayout.open(dir, { create: true });
  assert.equal(l.dir, dir);
  assert.deepEqual(JSON.parse(await readFile(path.join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  assert.deepEqual(JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')),
    { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
  assert.ok((await stat(path.join(dir, 'blobs', 'sha256'))).isDirectory());
  await OciLayout.open(dir, { create: false });
  await OciLayout.open(dir, { create: true }); // idempotent
});

test('many opens with create at once all succeed and do not clobber an index another one updated', async () => {
  const dir = path.join(tmp, 'race');
  const first = await OciLayout.open(dir, { create: true });
  const m = await storeImage(first, 'race');
  await first.setRef('keep', m);
  await Promise.all(Array.from({ length: 20 }, () => OciLayout.open(dir, { create: true })));
  assert.equal((await first.resolveRef('keep'))?.digest, m.digest);

  const dir2 = path.join(tmp, 'race2');
  const opened = await Promise.all(Array.from({ length: 20 }, () => OciLayout.open(dir2, { create: true })));
  assert.equal(opened.length, 20);
  assert.deepEqual((await opened[0]!.readIndex()).manifests, []);
});

test('open without create: a missing dir, no oci-layout, a wrong version, a broken index.json fail with one line', async () => {
  const missing = path.join(tmp, 'nope');
  await assert.rejects(OciLayout.open(missing, { create: false }), (e: HoistError) =>
    e.code === 'NOT_FOUND' && e.message.includes(missing) && !e.message.includes('\n'));

  const empty = path.join(tmp, 'empty');
  await mkdir(empty);
  await assert.rejects(OciLayout.open(empty, { create: false }), (e: HoistError) =>
    e.code === 'BAD_LAYOUT' && e.message.includes(empty) && /no oci-layout file/.test(e.message));

  const v2 = path.join(tmp, 'v2');
  await mkdir(v2);
  await writeFile(path.join(v2, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
  await writeFile(path.join(v2, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
  await assert.rejects(OciLayout.open(v2, { create: false }), (e: HoistError) =>
    e.code === 'BAD_LAYOUT' && /"2\.0\.0" is not supported/.test(e.message));
  // create does not paper over a layout of another version either
  await assert.rejects(OciLayout.open(v2, { create: true }), (e: HoistError) => e.code === 'BAD_LAYOUT');

  const broken = path.join(tmp, 'broken');
  await mkdir(broken);
  await writeFile(path.join(broken, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(path.join(broken, 'index.json'), '{"schemaVersion":2,"manifests":[');
  await assert.rejects(OciLayout.open(broken, { create: false }), (e: HoistError) =>
    e.code === 'BAD_LAYOUT' && e.message.includes(path.join(broken, 'index.json')) && /not valid JSON/.test(e.message) && !e.message.includes('\n'));

  await writeFile(path.join(broken, 'index.json'), '{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:00","size":1}]}');
  await assert.rejects(OciLayout.open(broken, { create: false }), (e: HoistError) =>
    e.code === 'BAD_LAYOUT' && /manifests\[0\]\.digest/.test(e.message));

  const file = path.join(tmp, 'afile');
  await writeFile(file, 'x');
  await assert.rejects(OciLayout.open(file, { create: false }), (e: HoistError) => e.code === 'BAD_LAYOUT');
});

test('putBlob streams, verifies and stores; the file holds exactly the bytes', async () => {
  const l = await fresh();
  const bytes = blobBytes('big', 3 * 1024 * 1024 + 17);
  const d = sha(bytes);
  await l.putBlob(blobStream('big', bytes.length), { digest: d, size: bytes.length });
  assert.ok(await l.hasBlob(d));
  assert.equal(l.blobPath(d), path.join(l.dir, 'blobs', 'sha256', d.slice(7)));
  assert.ok((await readFile(l.blobPath(d))).equals(bytes));
  assert.deepEqual(await temps(l), []);
});

test('a digest mismatch leaves no blob and no temp file', async () => {
  const l = await fresh();
  const wrong = digestBytes('something else');
  await assert.rejects(l.putBlob(blobStream('x', 200_000), { digest: wrong, size: 200_000 }), DigestMismatchError);
  assert.equal(await l.hasBlob(wrong), false);
  assert.deepEqual(await temps(l), []);
  assert.deepEqual(await readdir(path.join(l.dir, 'blobs', 'sha256')), []);
});

test('a short stream, a long stream and a failing source are rejected and leave nothing', async () => {
  const l = await fresh();
  const bytes = blobBytes('t', 300_000);
  const d = sha(bytes);

  // truncated: the right digest and size are declared, the stream ends early
  await assert.rejects(l.putBlob(Readable.from([bytes.subarray(0, 100_000)], { objectMode: false }), { digest: d, size: bytes.length }),
    (e: Error) => e instanceof SizeMismatchError && /truncated/.test(e.message));
  // more bytes than declared
  await assert.rejects(l.putBlob(Readable.from([bytes, Buffer.from('extra')], { objectMode: false }), { digest: d, size: bytes.length }), SizeMismatchError);
  // the right bytes but a declared size that is wrong
  await assert.rejects(l.putBlob(Readable.from([bytes], { objectMode: false }), { digest: d, size: bytes.length + 1 }), SizeMismatchError);
  // the source itself fails part way: its error is what the caller sees
  const boom = new Error('connection reset by peer');
  await assert.rejects(l.putBlob(failingStream([bytes.subarray(0, 65536)], boom), { digest: d, size: bytes.length }), (e) => e === boom);

  assert.equal(await l.hasBlob(d), false);
  assert.deepEqual(await temps(l), []);
  // and a good put still works afterwards
  await l.putBlob(Readable.from([bytes], { objectMode: false }), { digest: d, size: bytes.length }, 'test blob');
  assert.ok(await l.hasBlob(d));
});

test('putBlob of a blob already stored consumes nothing, destroys the stream and succeeds', async () => {
  const l = await fresh();
  const bytes = blobBytes('dup', 200_000);
  const d = await l.putBlobBytes(bytes);
  let pulled = 0;
  const src = new Readable({ read() { pulled++; this.push(bytes); this.push(null); } });
  await l.putBlob(src, { digest: d, size: bytes.length });
  assert.equal(pulled, 0);
  assert.ok(src.destroyed);
  // a stored file of the wrong length is not that blob: it is replaced by verified bytes
  await writeFile(l.blobPath(d), 'short');
  await l.putBlob(Readable.from([bytes], { objectMode: false }), { digest: d, size: bytes.length });
  assert.ok((await readFile(l.blobPath(d))).equals(bytes));
});

test('putBlobBytes computes or checks the digest', async () => {
  const l = await fresh();
  const b = Buffer.from('{"a":1}');
  assert.equal(await l.putBlobBytes(b), sha(b));
  assert.equal(await l.putBlobBytes(new Uint8Array(b), sha(b)), sha(b));
  await assert.rejects(l.putBlobBytes(Buffer.from('{"a":2}'), sha(b)), DigestMismatchError);
  await assert.rejects(l.putBlobBytes(b, 'md5:abc'), (e: HoistError) => e.code === 'BAD_DIGEST');
});

test('reads are verified: a blob corrupted on disk fails openBlob and readBlob', async () => {
  const l = await fresh();
  const bytes = blobBytes('c', 500_000);
  const d = await l.putBlobBytes(bytes);
  assert.ok((await readAll(await l.openBlob(d, bytes.length))).equals(bytes));

  const bad = Buffer.from(bytes);
  bad[250_000] = bad[250_000]! ^ 0xff;
  await writeFile(l.blobPath(d), bad);
  await assert.rejects(readAll(await l.openBlob(d, bytes.length, 'oci:/x blob')), (e: Error) =>
    e instanceof DigestMismatchError && e.message.startsWith('oci:/x blob:'));
  await assert.rejects(readAll(await l.openBlob(d)), DigestMismatchError);

  await writeFile(l.blobPath(d), bytes.subarray(0, 1000));
  await assert.rejects(readAll(await l.openBlob(d, bytes.length)), SizeMismatchError);

  const small = Buffer.from('{"config":true}');
  const sd = await l.putBlobBytes(small);
  assert.ok((await l.readBlob(sd, small.length)).equals(small));
  await writeFile(l.blobPath(sd), '{"config":false}');
  await assert.rejects(l.readBlob(sd), DigestMismatchError);
});

test('a missing blob: openBlob and readBlob fail NOT_FOUND naming digest and layout', async () => {
  const l = await fresh();
  const d = digestBytes('absent');
  for (const read of [() => l.openBlob(d), () => l.readBlob(d)]) {
    await assert.rejects(read(), (e: HoistError) => e.code === 'NOT_FOUND' && e.message.includes(d) && e.message.includes(l.dir));
  }
});

test('a consumer that stops reading early closes the blob file', async () => {
  const l = await fresh();
  const d = await l.putBlobBytes(blobBytes('early', 2_000_000));
  const s = await l.openBlob(d);
  for await (const _ of s) break; // destroys the stream
  assert.ok(s.destroyed);
});

test('refs: set, replace in place, keep other annotations, resolve, list, remove', async () => {
  const l = await fresh();
  const a = await storeImage(l, 'a');
  const b = await storeImage(l, 'b');
  await l.setRef('one', { ...a, annotations: { 'org.example/keep': 'yes' } });
  await l.setRef('two', b);
  await l.setRef('one', { ...b, annotations: { 'org.example/keep': 'still' } }); // moves the name
  const refs = await l.listRefs();
  assert.deepEqual(refs.map((r) => r.name), ['one', 'two'], 'replaced in place, not duplicated');
  const one = await l.resolveRef('one');
  assert.equal(one?.digest, b.digest);
  assert.deepEqual(one?.annotations, { 'org.example/keep': 'still', [REF_NAME_ANNOTATION]: 'one' });
  assert.equal(await l.resolveRef('three'), undefined);

  assert.equal(await l.removeRef('two'), true);
  assert.equal(await l.removeRef('two'), false);
  assert.deepEqual((await l.listRefs()).map((r) => r.name), ['one']);

  await l.addUnnamed(a);
  await l.addUnnamed({ ...a, annotations: { [REF_NAME_ANNOTATION]: 'ignored' } }); // already listed unnamed: no-op
  const idx = await l.readIndex();
  assert.equal(idx.manifests.length, 2);
  assert.deepEqual(idx.manifests[1], a);
  assert.equal((await l.findByDigest(a.digest))?.digest, a.digest);
  assert.equal(await l.findByDigest(digestBytes('none')), undefined);
  assert.deepEqual((await l.listRefs()).map((r) => r.name), ['one']);
});

test('naming a manifest that is not stored is refused and leaves index.json alone', async () => {
  const l = await fresh();
  const ghost = { mediaType: OCI_MANIFEST, digest: digestBytes('ghost'), size: 5 };
  await assert.rejects(l.setRef('ghost', ghost), (e: HoistError) => e.code === 'NOT_FOUND' && e.message.includes(ghost.digest));
  await assert.rejects(l.addUnnamed(ghost), (e: HoistError) => e.code === 'NOT_FOUND');
  assert.deepEqual((await l.readIndex()).manifests, []);
});

test('concurrent setRef calls in one process lose nothing; index.json stays valid and leaves no temp or lock files', async () => {
  const l = await fresh();
  const m = await storeImage(l, 'm');
  await Promise.all(Array.from({ length: 40 }, (_, i) => l.setRef(`r${i}`, m)));
  const raw = await readFile(l.indexPath, 'utf8');
  const idx = JSON.parse(raw) as { schemaVersion: number; mediaType: string; manifests: Descriptor[] };
  assert.equal(idx.schemaVersion, 2);
  assert.equal(idx.mediaType, OCI_INDEX);
  assert.equal(idx.manifests.length, 40);
  assert.deepEqual(new Set((await l.listRefs()).map((r) => r.name)), new Set(Array.from({ length: 40 }, (_, i) => `r${i}`)));
  assert.deepEqual(await temps(l), []);
  assert.equal(await stat(l.lockPath).then(() => true, () => false), false);
});

test('updateIndex keeps unknown top-level fields and fails cleanly when fn throws', async () => {
  const l = await fresh();
  await l.updateIndex((idx) => ({ ...idx, annotations: { 'org.example/x': '1' } }));
  assert.deepEqual((await l.readIndex()).annotations, { 'org.example/x': '1' });
  const before = await readFile(l.indexPath, 'utf8');
  await assert.rejects(l.updateIndex(() => { throw new Error('nope'); }), /nope/);
  assert.equal(await readFile(l.indexPath, 'utf8'), before);
  // the lock was released: another update goes through
  await l.updateIndex((idx) => idx);
});

test('hasBlob through a lease touches the blob; without one it does not', async () => {
  const l = await fresh();
  const d = await l.putBlobBytes(Buffer.from('touch me'));
  const old = new Date(Date.now() - 3_600_000);
  await utimes(l.blobPath(d), old, old);
  assert.ok(await l.hasBlob(d));
  assert.equal((await stat(l.blobPath(d))).mtimeMs, old.getTime());
  const lease = await l.lease();
  try {
    assert.ok(await lease.hasBlob(d));
    assert.ok((await stat(l.blobPath(d))).mtimeMs >= lease.createdMs);
    assert.equal(await lease.hasBlob(digestBytes('absent')), false);
  } finally {
    await lease.release();
  }
  assert.deepEqual(await readdir(l.leasesDir), []);
});

test('umoci and skopeo read a layout hoist wrote, including .tmp/ and .leases/ beside the spec files', async () => {
  const l = await fresh();
  const a = await storeImage(l, 'umoci-a');
  const b = await storeImage(l, 'umoci-b');
  await l.setRef('latest', a);
  await l.setRef('v2', b);
  await l.addUnnamed(b);
  const lease = await l.lease(); // a live lease file present while they read
  try {
    const ls = await run('umoci', ['ls', '--layout', l.dir]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(ls.stdout.trim().split('\n').sort(), ['latest', 'v2']);
    const raw = await run('skopeo', ['inspect', '--raw', `oci:${l.dir}:v2`]);
    assert.equal(raw.code, 0, raw.stderr);
    assert.equal(sha(Buffer.from(raw.stdout)), b.digest);
  } finally {
    await lease.release();
  }
});

test('hoist reads a layout skopeo wrote', async () => {
  const l = await fresh();
  await l.setRef('src', await storeImage(l, 'skopeo-src'));
  const out = path.join(tmp, 'by-skopeo');
  const r = await run('skopeo', ['copy', '-q', `oci:${l.dir}:src`, `oci:${out}:copied`]);
  assert.equal(r.code, 0, r.stderr);
  const theirs = await OciLayout.open(out, { create: false });
  const d = await theirs.resolveRef('copied');
  assert.ok(d, 'the ref skopeo wrote resolves');
  // skopeo may rewrite the manifest (it can compress layers); what it serves for the ref is what we resolve
  const raw = await run('skopeo', ['inspect', '--raw', `oci:${out}:copied`]);
  assert.equal(sha(Buffer.from(raw.stdout)), d.digest);
  const manifest = JSON.parse((await theirs.readBlob(d.digest, d.size)).toString()) as { layers: Descriptor[] };
  for (const layer of manifest.layers) await readAll(await theirs.openBlob(layer.digest, layer.size));
});
