/**
 * storeLayer: a layer tar into the store in one pass (diffID, compression, blob digest, entry count), with real tars
 * from tar-stream and GNU tar, and the stored blob read back with zlib and the zstd program.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { storeLayer, TarHeaderWalker } from '../../src/build/layer-blob.ts';
import { isHoistError } from '../../src/errors.ts';
import { paxHeaderBlocks, paxRecord } from '../../src/layer/xattrs.ts';
import { DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../../src/oci/mediatype.ts';
import { OciLayout } from '../../src/store/layout.ts';
import { listTar, runBytes, tarOf } from '../layer/helpers.ts';

async function layoutFor(t: { after(fn: () => Promise<void>): void }): Promise<OciLayout> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'hoist-lb-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  return OciLayout.open(path.join(base, 'store'), { create: true });
}

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** The tar as a stream cut into `size`-byte chunks (how the bytes arrive must not change the blob). */
function chunked(buf: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let o = 0; o < buf.length; o += size) parts.push(buf.subarray(o, o + size));
  return Readable.from(parts);
}

async function sampleTar(): Promise<Buffer> {
  return tarOf([
    [{ name: 'etc/', type: 'directory', mode: 0o755 }],
    [{ name: 'etc/hello', mode: 0o644 }, 'hello\n'],
    [{ name: `${'long-'.repeat(40)}name`, mode: 0o644 }, 'a name that needs a pax header\n'],
    [{ name: 'data', mode: 0o600, pax: { 'SCHILY.xattr.user.x': 'y' } }, randomBytes(300_000)],
    [{ name: 'link', type: 'symlink', linkname: 'etc/hello' }],
    [{ name: 'hard', type: 'link', linkname: 'etc/hello' }],
  ]);
}

async function tmpFiles(layout: OciLayout): Promise<string[]> {
  return (await readdir(layout.tmpDir).catch(() => [])).filter((n) => n.startsWith('layer-'));
}

test('gzip: diffID is the tar digest, digest the stored blob, the blob gunzips to the tar, entries counted', async (t) => {
  const layout = await layoutFor(t);
  const tar = await sampleTar();
  const s = await storeLayer(layout, chunked(tar, 65536));
  assert.equal(s.diffID, sha256(tar));
  assert.equal(s.uncompressedSize, tar.length);
  assert.equal(s.entries, 6, 'pax headers are part of their entry');
  assert.equal(s.entries, (await listTar(tar)).length);
  assert.equal(s.descriptor.mediaType, OCI_LAYER_GZIP);
  const blob = await readFile(layout.blobPath(s.descriptor.digest));
  assert.equal(sha256(blob), s.descriptor.digest);
  assert.equal(blob.length, s.descriptor.size);
  assert.deepEqual(gunzipSync(blob), tar);
  assert.deepEqual([...blob.subarray(4, 8)], [0, 0, 0, 0], 'no timestamp in the gzip header');
  assert.deepEqual(await tmpFiles(layout), []);

  const docker = await storeLayer(layout, chunked(tar, 1000), { format: 'docker', level: 9 });
  assert.equal(docker.descriptor.mediaType, DOCKER_LAYER_GZIP);
  assert.deepEqual(gunzipSync(await readFile(layout.blobPath(docker.descriptor.digest))), tar);
});

test('zstd: the blob decompresses (zlib and the zstd program) to the tar', async (t) => {
  const layout = await layoutFor(t);
  const tar = await sampleTar();
  const s = await storeLayer(layout, chunked(tar, 4096), { compression: 'zstd', level: 19 });
  assert.equal(s.descriptor.mediaType, OCI_LAYER_ZSTD);
  assert.equal(s.diffID, sha256(tar));
  const file = layout.blobPath(s.descriptor.digest);
  assert.equal(sha256(await readFile(file)), s.descriptor.digest);
  assert.deepEqual(zstdDecompressSync(await readFile(file)), tar);
  assert.deepEqual(await runBytes('zstd', ['-d', '-c', file]), tar);
});

test('deterministic: the same tar gives the same blob however its bytes arrive', async (t) => {
  const layout = await layoutFor(t);
  const tar = await sampleTar();
  const small = await tarOf([[{ name: 'hi', mode: 0o644 }, 'hi\n']]);
  for (const compression of ['gzip', 'zstd'] as const) {
    const digests = new Set<string>();
    for (const size of [tar.length, 511, 8192, 1 << 20]) {
      digests.add((await storeLayer(layout, chunked(tar, size), { compression })).descriptor.digest);
    }
    assert.equal(digests.size, 1, `${compression}: ${[...digests].join(' ')}`);
    // In one piece, the case where a zstd frame would otherwise record the content size.
    const whole = await storeLayer(layout, Readable.from([small]), { compression });
    const bytewise = await storeLayer(layout, chunked(small, 1), { compression });
    assert.equal(bytewise.descriptor.digest, whole.descriptor.digest, compression);
  }
});

test('an empty tar (just the end-of-archive blocks) has 0 entries; a blob already stored is fine', async (t) => {
  const layout = await layoutFor(t);
  const empty = Buffer.alloc(1024);
  const a = await storeLayer(layout, Readable.from([empty]));
  assert.equal(a.entries, 0);
  assert.equal(a.diffID, sha256(empty));
  const b = await storeLayer(layout, Readable.from([empty]));
  assert.deepEqual(b, a);
  assert.deepEqual(gunzipSync(await readFile(layout.blobPath(a.descriptor.digest))), empty);
  assert.deepEqual(await tmpFiles(layout), []);
  const fromTarStream = await storeLayer(layout, Readable.from([await tarOf([])]));
  assert.equal(fromTarStream.entries, 0);
});

test('entries of GNU tar archives: long names (L/K headers) and pax headers are not entries of their own', async (t) => {
  const layout = await layoutFor(t);
  const src = await mkdtemp(path.join(os.tmpdir(), 'hoist-lb-src-'));
  t.after(() => rm(src, { recursive: true, force: true }));
  const long = `${'x'.repeat(90)}/${'y'.repeat(90)}`;
  await mkdir(path.join(src, long), { recursive: true });
  await writeFile(path.join(src, long, `${'z'.repeat(120)}.txt`), 'z');
  await symlink(`${'t'.repeat(150)}`, path.join(src, 'longlink'));
  await writeFile(path.join(src, 'big'), randomBytes(100_000));
  for (const format of ['gnu', 'posix']) {
    const file = path.join(src, `../${path.basename(src)}.${format}.tar`);
    t.after(() => rm(file, { force: true }));
    await runBytes('tar', [`--format=${format}`, '-C', src, '-cf', file, '.']);
    const tar = await readFile(file);
    const listed = (await runBytes('tar', ['-tf', file])).toString().split('\n').filter((l) => l !== '');
    const s = await storeLayer(layout, chunked(tar, 777));
    assert.equal(s.entries, listed.length, format);
    assert.equal(s.entries, 6, `${format}: ./, x…/, x…/y…/, the file, longlink, big`);
    assert.equal(s.diffID, sha256(tar));
  }
});

test('a pax size record overrides the header size when walking', () => {
  const body = Buffer.from('12345');
  const pax = paxHeaderBlocks([paxRecord('size', '5')], { mode: 0o644, uid: 0, gid: 0, mtimeS: 0 });
  // A ustar header claiming size 0 (as writers do for sizes that do not fit), then 5 bytes of body padded to 512.
  const h = Buffer.alloc(512);
  h.write('file', 0, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write('00000000000\0', 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write('0', 156, 'latin1');
  h.write('ustar\u000000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const second = Buffer.from(h);
  second.write('file2', 0, 'latin1');
  second.fill(0x20, 148, 156);
  sum = 0;
  for (const b of second) sum += b;
  second.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const tar = Buffer.concat([pax, h, body, Buffer.alloc(507), second, Buffer.alloc(1024)]);
  const w = new TarHeaderWalker();
  for (let o = 0; o < tar.length; o += 100) w.update(tar.subarray(o, o + 100));
  w.end();
  assert.equal(w.entries, 2, 'the 5-byte body was skipped, not read as a header');
});

test('a truncated or corrupt tar fails with BAD_LAYER and leaves nothing behind', async (t) => {
  const layout = await layoutFor(t);
  const tar = await sampleTar();
  await assert.rejects(storeLayer(layout, Readable.from([tar.subarray(0, 5000)])),
    (e: unknown) => isHoistError(e) && e.code === 'BAD_LAYER' && /truncated/.test(e.message));
  await assert.rejects(storeLayer(layout, Readable.from([Buffer.concat([Buffer.alloc(512, 0x41), tar])])),
    (e: unknown) => isHoistError(e) && e.code === 'BAD_LAYER' && /checksum/.test(e.message));
  assert.deepEqual(await tmpFiles(layout), []);
  assert.deepEqual(await readdir(path.join(layout.dir, 'blobs', 'sha256')).catch(() => []), []);
});

test('a source that fails midway rejects with its error and removes the temp file', async (t) => {
  const layout = await layoutFor(t);
  const tar = await sampleTar();
  async function* broken(): AsyncGenerator<Buffer> {
    yield tar.subarray(0, 70_000);
    throw new Error('context read failed');
  }
  await assert.rejects(storeLayer(layout, Readable.from(broken()), { compression: 'zstd' }), /context read failed/);
  assert.deepEqual(await tmpFiles(layout), []);
});

test('compression levels out of range are refused', async (t) => {
  const layout = await layoutFor(t);
  await assert.rejects(storeLayer(layout, Readable.from([Buffer.alloc(1024)]), { level: 10 }), (e: unknown) => isHoistError(e) && e.code === 'BAD_FLAG');
  await assert.rejects(storeLayer(layout, Readable.from([Buffer.alloc(1024)]), { compression: 'zstd', level: 0 }), (e: unknown) => isHoistError(e) && e.code === 'BAD_FLAG');
});
