/** diffUpperDir and extended attributes: carried as pax SCHILY.xattr.*, byte-exact, overlay's own left out. */
import assert from 'node:assert/strict';
import { chown, lstat, mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { getAttributeSync, listAttributesSync, setAttributeSync } from '@napi-rs/xattr';
import { diffUpperDir, overlayOpaque } from '../../src/layer/diff.ts';
import { unpackLayer } from '../../src/layer/unpack.ts';
import { paxRecord, parsePaxRecords } from '../../src/layer/xattrs.ts';
import { readAll } from '../../src/util/stream.ts';
import { isRoot, listTar, runBytes, sandbox, streamOf, tarOf } from './helpers.ts';

const T1 = new Date('2020-01-01T00:00:00Z');

function tarBytes(stream: Readable): Promise<Buffer> {
  return readAll(stream, 64 * 1024 * 1024);
}

test('xattrs round trip: SCHILY.xattr.user.foo in a tar → unpacked file has it → diffUpperDir emits it again', async (t) => {
  const sb = await sandbox(t);
  await unpackLayer(streamOf(await tarOf([
    [{ name: 'd/', type: 'directory', mtime: T1, pax: { 'SCHILY.xattr.user.dir': 'on a dir' } }],
    [{ name: 'd/f', mtime: T1, pax: { 'SCHILY.xattr.user.foo': 'bar', 'SCHILY.xattr.user.a': 'first' } }, 'content'],
    [{ name: 'd/plain', mtime: T1 }, 'plain'],
  ])), sb.target, { ownership: 'ignore' });
  assert.equal(getAttributeSync(path.join(sb.target, 'd/f'), 'user.foo')?.toString(), 'bar');
  await utimes(path.join(sb.target, 'd'), T1, T1);

  const entries = await listTar(await tarBytes(diffUpperDir(sb.target)));
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  assert.deepEqual(entries.map((e) => ({ name: e.name, pax: e.pax, uid: e.uid, gid: e.gid, mtime: e.mtime })), [
    { name: 'd/', pax: { 'SCHILY.xattr.user.dir': 'on a dir' }, uid, gid, mtime: T1.getTime() / 1000 },
    // Names in byte order, so the same tree always gives the same bytes.
    { name: 'd/f', pax: { 'SCHILY.xattr.user.a': 'first', 'SCHILY.xattr.user.foo': 'bar' }, uid, gid, mtime: T1.getTime() / 1000 },
    { name: 'd/plain', pax: undefined, uid, gid, mtime: T1.getTime() / 1000 },
  ]);
  assert.equal(entries[1]?.size, 7);
});

test('xattrs: binary values survive diff → GNU tar and diff → unpackLayer byte for byte', async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  const gnu = path.join(sb.base, 'gnu');
  const ours = path.join(sb.base, 'ours');
  t.after(async () => {
    for (const d of [upper, gnu, ours]) await rm(d, { recursive: true, force: true });
  });
  // Not valid UTF-8, with NUL, newline, '=' and a space: everything a text encoding would break.
  const value = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0xff, 0xc3, 0x28, 0x0a, 0x3d, 0x20]);
  const long = `${'a'.repeat(80)}/${'ü'.repeat(70)}/${'b'.repeat(60)}`; // needs a pax path record, non-ASCII
  await mkdir(path.join(upper, path.dirname(long)), { recursive: true });
  await writeFile(path.join(upper, long), 'deep');
  await writeFile(path.join(upper, 'bin'), 'b');
  for (const p of [long, 'bin', path.dirname(long)]) setAttributeSync(path.join(upper, p), 'user.bin', value);
  const tar = await tarBytes(diffUpperDir(upper));
  await writeFile(path.join(sb.base, 'l.tar'), tar);

  await mkdir(gnu);
  await runBytes('tar', ['--xattrs', '--xattrs-include=user.*', '-xf', path.join(sb.base, 'l.tar'), '-C', gnu]);
  await unpackLayer(streamOf(tar), ours, { ownership: 'ignore' });
  for (const root of [gnu, ours]) {
    for (const p of [long, 'bin', path.dirname(long)]) {
      assert.deepEqual(getAttributeSync(path.join(root, p), 'user.bin'), value, `${root}: ${p}`);
    }
    assert.equal(await readFile(path.join(root, long), 'utf8'), 'deep');
  }
  // tar-stream reads the same names (its own pax path record handling agrees with ours).
  assert.deepEqual((await listTar(tar)).map((e) => e.name), [`${'a'.repeat(80)}/`, `${path.dirname(long)}/`, long, 'bin']);
});

test('xattrs: a file capability (binary security.capability) round-trips as root; high uids stay in the same pax header', { skip: !isRoot() && 'security.* needs root' }, async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  const out = path.join(sb.base, 'out');
  t.after(async () => {
    for (const d of [upper, out]) await rm(d, { recursive: true, force: true });
  });
  await mkdir(upper);
  const f = path.join(upper, 'newuidmap');
  await writeFile(f, 'x');
  await chown(f, 300000, 300001);
  // VFS_CAP_REVISION_2 | effective; permitted = cap_setuid (bit 7: a 0x80 byte) and cap_setgid (bit 6).
  const cap = Buffer.alloc(20);
  cap.writeUInt32LE(0x02000001, 0);
  cap.writeUInt32LE((1 << 7) | (1 << 6), 4);
  setAttributeSync(f, 'security.capability', cap);
  const tar = await tarBytes(diffUpperDir(upper));
  const [entry] = await listTar(tar);
  assert.equal(entry?.pax?.['uid'], '300000');
  assert.equal(entry?.pax?.['gid'], '300001');
  assert.ok(entry?.pax?.['SCHILY.xattr.security.capability'] !== undefined);
  await unpackLayer(streamOf(tar), out);
  const g = path.join(out, 'newuidmap');
  assert.deepEqual(getAttributeSync(g, 'security.capability'), cap);
  const st = await lstat(g);
  assert.equal(st.uid, 300000);
  assert.equal(st.gid, 300001);
});

test('xattrs: overlay’s own xattrs are not carried; a directory marked opaque by overlay is found by default', async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  t.after(() => rm(upper, { recursive: true, force: true }));
  await mkdir(path.join(upper, 'opq'), { recursive: true });
  await mkdir(path.join(upper, 'xw'), { recursive: true });
  await mkdir(path.join(upper, 'plain'), { recursive: true });
  await writeFile(path.join(upper, 'opq/f'), 'f');
  setAttributeSync(path.join(upper, 'opq'), 'user.overlay.opaque', 'y');
  setAttributeSync(path.join(upper, 'opq'), 'user.keep', 'k');
  // 'x' means "holds xwhiteouts" (Linux 6.7+), not opaque.
  setAttributeSync(path.join(upper, 'xw'), 'user.overlay.opaque', 'x');
  setAttributeSync(path.join(upper, 'opq/f'), 'user.overlay.origin', Buffer.from([0, 1, 2]));
  assert.equal(await overlayOpaque(path.join(upper, 'opq')), true);
  assert.equal(await overlayOpaque(path.join(upper, 'xw')), false);
  assert.equal(await overlayOpaque(path.join(upper, 'plain')), false);
  assert.equal(await overlayOpaque(path.join(upper, 'missing')), false);
  const entries = await listTar(await tarBytes(diffUpperDir(upper)));
  assert.deepEqual(entries.map((e) => [e.name, e.pax]), [
    ['opq/', { 'SCHILY.xattr.user.keep': 'k' }],
    ['opq/.wh..wh..opq', undefined],
    ['opq/f', undefined],
    ['plain/', undefined],
    ['xw/', undefined],
  ]);
});

test('xattrs: trusted.overlay.opaque (rootful overlay) is found by default and not carried', { skip: !isRoot() && 'trusted.* needs root' }, async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  t.after(() => rm(upper, { recursive: true, force: true }));
  await mkdir(path.join(upper, 'opq'), { recursive: true });
  setAttributeSync(path.join(upper, 'opq'), 'trusted.overlay.opaque', 'y');
  setAttributeSync(path.join(upper, 'opq'), 'trusted.other', 't');
  assert.deepEqual(listAttributesSync(path.join(upper, 'opq')).sort(), ['trusted.other', 'trusted.overlay.opaque']);
  const entries = await listTar(await tarBytes(diffUpperDir(upper)));
  assert.deepEqual(entries.map((e) => [e.name, e.pax]), [['opq/', { 'SCHILY.xattr.trusted.other': 't' }], ['opq/.wh..wh..opq', undefined]]);
});

test('pax records: lengths count their own digits, values are raw bytes', () => {
  // 9 bytes of " path=x\n"-style body + its length digit(s): the classic 9→10 carry.
  for (const v of ['', 'x', 'a'.repeat(90), 'a'.repeat(91), 'a'.repeat(992), Buffer.from([0xff, 0x00])]) {
    const rec = paxRecord('k', v);
    const len = Number(rec.toString('latin1', 0, rec.indexOf(0x20)));
    assert.equal(len, rec.length);
    assert.deepEqual(parsePaxRecords(rec), [['k', Buffer.from(v)]]);
  }
});
