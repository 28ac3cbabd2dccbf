/**
 * LayerTree: an image's filesystem read from its layer blobs. Real layer tars (tar-stream and GNU tar), gzip'd and
 * zstd'd, stored in a real OciLayout; the union is also checked against unpack.ts applying the same layers to a
 * real directory.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, link, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { setAttributeSync } from '@napi-rs/xattr';
import { LayerTree } from '../../src/build/layer-tree.ts';
import type { SourceEntry } from '../../src/build/source.ts';
import { isHoistError } from '../../src/errors.ts';
import { unpackLayer } from '../../src/layer/unpack.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD } from '../../src/oci/mediatype.ts';
import type { Descriptor } from '../../src/oci/types.ts';
import { OciLayout } from '../../src/store/layout.ts';
import { describeTree, isRoot, runBytes, streamOf, tarOf, type TarEntry } from '../layer/helpers.ts';

interface Env {
  base: string;
  layout: OciLayout;
  tmp: string;
  cache: string;
}

async function env(t: { after(fn: () => Promise<void>): void }): Promise<Env> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'hoist-lt-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const layout = await OciLayout.open(path.join(base, 'store'), { create: true });
  return { base, layout, tmp: path.join(base, 'tmp'), cache: path.join(base, 'index-cache') };
}

interface Stored {
  desc: Descriptor;
  diffID: string;
  tar: Buffer;
}

async function put(layout: OciLayout, tar: Buffer, compression: 'gzip' | 'zstd' | 'none' = 'gzip'): Promise<Stored> {
  const blob = compression === 'gzip' ? gzipSync(tar) : compression === 'zstd' ? zstdCompressSync(tar) : tar;
  const mediaType = compression === 'gzip' ? OCI_LAYER_GZIP : compression === 'zstd' ? OCI_LAYER_ZSTD : OCI_LAYER;
  const digest = await layout.putBlobBytes(blob);
  return { desc: { mediaType, digest, size: blob.length }, diffID: digestBytes(tar), tar };
}

async function openTree(e: Env, layers: Stored[], cache = true): Promise<LayerTree> {
  return LayerTree.open(e.layout, layers.map((l) => l.desc), layers.map((l) => l.diffID), { tmpDir: e.tmp, ...(cache ? { indexCacheDir: e.cache } : {}) });
}

function sha(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

const dir = (name: string, extra: Partial<TarEntry[0]> = {}): TarEntry => [{ name, type: 'directory', mode: 0o755, ...extra }];
const file = (name: string, body: string, extra: Partial<TarEntry[0]> = {}): TarEntry => [{ name, mode: 0o644, ...extra }, body];
const sym = (name: string, to: string): TarEntry => [{ name, type: 'symlink', linkname: to }];
const hard = (name: string, to: string): TarEntry => [{ name, type: 'link', linkname: to }];

/** Three layers exercising every union rule. */
async function unionLayers(layout: OciLayout): Promise<Stored[]> {
  const l1 = await tarOf([
    dir('etc/'),
    file('etc/group', 'root:x:0:\napp:x:1000:\n'),
    dir('usr/'), dir('usr/share/'), file('usr/share/passwd.real', 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n'),
    dir('a/'), file('a/keep', 'keep'), file('a/old', 'old'),
    dir('b/'), file('b/lower', 'lower'), dir('b/sub/'), file('b/sub/deep', 'deep'),
    dir('c/'), file('c/y', 'y'),
    file('f1', 'v1'),
    file('target', 'shared bytes', { mode: 0o640, uid: 7, gid: 8 }),
    sym('lnk', '/real'),
    dir('real/'),
    dir('swap/'), file('swap/inner', 'inner'),
    file('tofile', 'a file first'),
  ]);
  const l2 = await tarOf([
    file('f1', 'v2', { mode: 0o600 }),
    file('a/.wh.old', ''),
    file('b/.wh..wh..opq', ''),
    file('b/new', 'new'),
    file('.wh.c', ''),
    sym('etc/passwd', '../usr/share/passwd.real'),
    hard('hl', 'target'),
    file('lnk/through', 'written through a symlinked parent'),
    // A whiteout never hides the layer's own entry, whatever the order.
    dir('mine/'), file('mine/x', 'x'), file('.wh.mine', ''),
    file('big', 'B'.repeat(200_000), { mode: 0o4755, uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.user.note': 'hello' } }),
    [{ name: 'dev0', type: 'character-device', devmajor: 1, devminor: 3 }],
  ]);
  const l3 = await tarOf([
    dir('mine/'),
    dir('a/', { mode: 0o700, uid: 3 }),
    file('swap', 'a directory replaced by a file'),
    dir('tofile/'), file('tofile/child', 'a file replaced by a directory'),
    file('zero', ''),
    [{ name: 'c', type: 'character-device', devmajor: 0, devminor: 0 }], // overlay's form of a whiteout: c was already gone
    [{ name: 'f1', type: 'character-device', devmajor: 0, devminor: 0 }],
  ]);
  return [await put(layout, l1, 'gzip'), await put(layout, l2, 'zstd'), await put(layout, l3, 'none')];
}

test('union: later layers override, whiteouts delete, opaque dirs hide lower content, hard links become files', async (t) => {
  const e = await env(t);
  const tree = await openTree(e, await unionLayers(e.layout));

  assert.equal(await tree.stat('f1'), undefined, 'f1 whited out by a 0:0 char device in layer 3');
  assert.equal(await tree.stat('a/old'), undefined);
  assert.equal((await tree.stat('a/keep'))?.type, 'file', 'a directory entry in a later layer keeps the lower content');
  assert.deepEqual([(await tree.stat('a'))?.mode, (await tree.stat('a'))?.uid], [0o700, 3], 'and takes the new metadata');
  assert.equal((await tree.stat('swap'))?.type, 'file');
  assert.equal(await tree.stat('swap/inner'), undefined);
  assert.equal((await tree.readFile('tofile/child'))?.toString(), 'a file replaced by a directory');
  assert.equal(await tree.stat('b/lower'), undefined, 'opaque dir hides lower files');
  assert.equal(await tree.stat('b/sub'), undefined, 'opaque dir hides lower dirs');
  assert.equal((await tree.stat('b/new'))?.size, 3);
  assert.equal(await tree.stat('c'), undefined);
  assert.equal(await tree.stat('c/y'), undefined);
  assert.equal((await tree.stat('mine/x'))?.type, 'file', "a layer's whiteout does not hide its own entries");
  assert.equal(await tree.stat('dev0'), undefined, 'devices are left out, as unpack does');
  assert.equal((await tree.stat('real/through'))?.size, 'written through a symlinked parent'.length, 'written through the symlinked parent, inside the tree');
  assert.equal((await tree.stat('lnk/through'))?.rel, 'lnk/through', 'stat resolves parents through symlinks, as lstat does');
  assert.equal((await tree.stat('lnk'))?.type, 'symlink', 'but not the last component');

  const hl = await tree.stat('hl');
  assert.deepEqual({ type: hl?.type, mode: hl?.mode, uid: hl?.uid, gid: hl?.gid, size: hl?.size }, { type: 'file', mode: 0o640, uid: 7, gid: 8, size: 12 });

  const big = await tree.stat('/big');
  assert.equal(big?.mode, 0o4755);
  assert.equal(big?.uid, 1000);
  assert.deepEqual(big?.xattrs, { 'user.note': Buffer.from('hello') });
  assert.equal(big?.mtimeMs, 1e12);

  const link = await tree.stat('etc/passwd');
  assert.deepEqual({ type: link?.type, linkname: link?.linkname }, { type: 'symlink', linkname: '../usr/share/passwd.real' });
  assert.equal((await tree.readFile('etc/passwd'))?.toString(), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n', 'readFile follows the symlink');
  assert.equal((await tree.readFile('/etc/group'))?.toString(), 'root:x:0:\napp:x:1000:\n');
  assert.equal((await tree.readFile('hl'))?.toString(), 'shared bytes');
  assert.equal((await tree.readFile('zero'))?.length, 0);
  assert.equal(await tree.readFile('nope'), undefined);
  assert.equal(await tree.readFile('etc'), undefined, 'a directory has no bytes');

  assert.equal(await tree.isDir('etc'), true);
  assert.equal(await tree.isDir('lnk'), true, 'a symlink to a directory is followed');
  assert.equal(await tree.isDir('etc/passwd'), false);
  assert.equal(await tree.isDir('/'), true);
  assert.equal(await tree.isDir('missing'), false);
  assert.equal((await tree.stat(''))?.type, 'directory');
});

test('the union equals what unpack.ts makes of the same layers on a real directory', async (t) => {
  const e = await env(t);
  const layers = await unionLayers(e.layout);
  const rootfs = path.join(e.base, 'rootfs');
  await mkdir(rootfs);
  for (const l of layers) await unpackLayer(streamOf(l.tar), rootfs, { ownership: isRoot() ? 'preserve' : 'ignore' });
  const want = await describeTree(rootfs, { owners: isRoot(), mtimes: false });
  delete want[''];
  for (const d of Object.values(want)) delete d.hardlinkOf;

  const tree = await openTree(e, layers);
  const [all] = await tree.match('.');
  const got: Record<string, unknown> = {};
  for (const en of all!.entries) {
    if (en.rel === '') continue;
    const d: Record<string, unknown> = { type: en.type === 'directory' ? 'dir' : en.type };
    if (en.type !== 'symlink') d['mode'] = en.mode.toString(8).padStart(4, '0');
    if (isRoot()) {
      d['uid'] = en.uid;
      d['gid'] = en.gid;
    }
    if (en.type === 'file') d['sha'] = sha(await readFile(en.abs!)).slice(0, 12);
    if (en.type === 'symlink') d['link'] = en.linkname;
    got[en.rel] = d;
  }
  assert.deepEqual(got, want);
});

test('match: plain paths, globs, followed symlinks, excludes; contents extracted 0600 into tmpDir', async (t) => {
  const e = await env(t);
  const l1 = await tarOf([
    dir('app/'), file('app/a.txt', 'A', { mode: 0o755, uid: 5, gid: 6 }), file('app/b.log', 'B'),
    dir('app/sub/'), file('app/sub/c.txt', 'C'), file('app/sub/d.log', 'D'),
    dir('app/keep/'), file('app/keep/x.log', 'X'),
    dir('usr/'), dir('usr/bin/'), file('usr/bin/tool', '#!tool', { mode: 0o755 }),
    dir('bin/'), sym('bin/tool', '../usr/bin/tool'), sym('bin/dangling', '/nowhere'),
    sym('applink', 'app'),
  ]);
  const tree = await openTree(e, [await put(e.layout, l1)]);

  const [m] = await tree.match('/app/a.txt');
  assert.equal(m!.rel, 'app/a.txt');
  assert.equal(m!.entries.length, 1);
  const a = m!.entries[0]!;
  assert.deepEqual({ rel: a.rel, type: a.type, mode: a.mode, uid: a.uid, gid: a.gid, size: a.size }, { rel: 'app/a.txt', type: 'file', mode: 0o755, uid: 5, gid: 6, size: 1 });
  assert.equal(await readFile(a.abs!, 'utf8'), 'A');
  assert.ok(a.abs!.startsWith(e.tmp + path.sep), 'extracted under tmpDir');
  const st = await stat(a.abs!);
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(st.uid, process.getuid!());

  const dirMatch = await tree.match('app');
  assert.deepEqual(dirMatch.map((x) => x.rel), ['app']);
  assert.deepEqual(dirMatch[0]!.entries.map((x) => x.rel),
    ['app', 'app/a.txt', 'app/b.log', 'app/keep', 'app/keep/x.log', 'app/sub', 'app/sub/c.txt', 'app/sub/d.log']);
  for (const en of dirMatch[0]!.entries.filter((x) => x.type === 'file')) {
    assert.equal(await readFile(en.abs!, 'utf8'), path.basename(en.rel)[0]!.toUpperCase());
  }

  const globbed = await tree.match('app/*.txt');
  assert.deepEqual(globbed.map((x) => x.rel), ['app/a.txt']);
  const deep = await tree.match('/app/*/*.log');
  assert.deepEqual(deep.map((x) => x.rel), ['app/keep/x.log', 'app/sub/d.log']);
  assert.deepEqual((await tree.match('app/s?b')).map((x) => x.rel), ['app/sub']);
  assert.deepEqual((await tree.match('applink/*.txt')).map((x) => x.rel), ['app/a.txt'], 'the base before the glob is resolved');
  assert.deepEqual(await tree.match('app/*.none'), [], 'a glob that matches nothing copies nothing (BuildKit AllowEmptyWildcard)');

  const viaLink = await tree.match('bin/tool');
  assert.equal(viaLink[0]!.rel, 'bin/tool');
  assert.equal(viaLink[0]!.entries[0]!.type, 'file', 'a matched symlink is followed');
  assert.equal(await readFile(viaLink[0]!.entries[0]!.abs!, 'utf8'), '#!tool');
  const dirLink = await tree.match('applink');
  assert.deepEqual(dirLink[0]!.entries.slice(0, 2).map((x) => [x.rel, x.type]), [['applink', 'directory'], ['applink/a.txt', 'file']]);

  const excluded = await tree.match('app', ['*.log', 'sub']);
  assert.deepEqual(excluded[0]!.entries.map((x) => x.rel), ['app', 'app/a.txt', 'app/keep', 'app/keep/x.log'], '* stays within one segment');
  const reincluded = await tree.match('app', ['**/*.log', '!keep/x.log']);
  assert.deepEqual(reincluded[0]!.entries.map((x) => x.rel), ['app', 'app/a.txt', 'app/keep', 'app/keep/x.log', 'app/sub', 'app/sub/c.txt']);
  const dirOut = await tree.match('app', ['keep', '!keep/x.log']);
  assert.deepEqual(dirOut[0]!.entries.map((x) => x.rel), ['app', 'app/a.txt', 'app/b.log', 'app/keep', 'app/keep/x.log', 'app/sub', 'app/sub/c.txt', 'app/sub/d.log'],
    'an excluded directory comes back when an exception re-includes something below it');

  await assert.rejects(tree.match('nope'), (err: unknown) => isHoistError(err) && err.code === 'NOT_FOUND' && /nope/.test(err.message));
  await assert.rejects(tree.match('nodir/*.txt'), (err: unknown) => isHoistError(err) && err.code === 'NOT_FOUND');
  await assert.rejects(tree.match('bin/dangling'), (err: unknown) => isHoistError(err) && err.code === 'NOT_FOUND');

  const [p1, p2] = await Promise.all([tree.match('app'), tree.match('app/sub')]);
  const abs1 = p1![0]!.entries.find((x) => x.rel === 'app/sub/c.txt')!.abs;
  assert.equal(p2![0]!.entries.find((x) => x.rel === 'app/sub/c.txt')!.abs, abs1, 'concurrent matches share one extraction');
  assert.equal(await readFile(abs1!, 'utf8'), 'C');

  const root = await tree.match('./');
  assert.equal(root[0]!.rel, '');
  assert.equal(root[0]!.entries[0]!.rel, '');
});

test('layers made by GNU tar (long names, hard links, pax xattrs), gzip and zstd', async (t) => {
  const e = await env(t);
  const src = path.join(e.base, 'src');
  const long = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(80)}`;
  await mkdir(path.join(src, long), { recursive: true });
  await writeFile(path.join(src, long, 'file.txt'), 'deep');
  await writeFile(path.join(src, 'orig'), 'linked content');
  await link(path.join(src, 'orig'), path.join(src, 'again'));
  await chmod(path.join(src, 'orig'), 0o751);
  await symlink('orig', path.join(src, 'soft'));
  const tar1 = await runBytes('tar', ['--format=gnu', '--numeric-owner', '--owner=0', '--group=0', '-C', src, '-cf', '-', '.']);
  await rm(path.join(src, 'orig'));
  await writeFile(path.join(src, 'newer'), 'second layer');
  setAttributeSync(path.join(src, 'newer'), 'user.bin', Buffer.from([0xff, 0x00, 0x80]));
  const tar2 = await runBytes('tar', ['--format=posix', '--xattrs', '--xattrs-include=user.*', '--numeric-owner', '--owner=11', '--group=12', '-C', src, '-cf', '-', 'newer']);
  const tree = await openTree(e, [await put(e.layout, tar1, 'gzip'), await put(e.layout, tar2, 'zstd')]);

  assert.equal((await tree.readFile(`${long}/file.txt`))?.toString(), 'deep');
  const again = await tree.stat('again');
  assert.equal(again?.type, 'file');
  assert.equal(again?.mode, 0o751);
  assert.equal((await tree.readFile('again'))?.toString(), 'linked content');
  assert.equal((await tree.readFile('soft'))?.toString(), 'linked content');
  const newer = await tree.stat('newer');
  assert.deepEqual([newer?.uid, newer?.gid, newer?.size], [11, 12, 12]);
  assert.deepEqual(newer?.xattrs, { 'user.bin': Buffer.from([0xff, 0x00, 0x80]) }, 'binary xattr values survive');
  const [m] = await tree.match('.');
  const rels = m!.entries.map((x) => x.rel);
  assert.ok(rels.includes(long) && rels.includes('again') && rels.includes('newer'));
});

test('the per-layer index is cached by diffID and reused without reading the blob again', async (t) => {
  const e = await env(t);
  const l1 = await put(e.layout, await tarOf([dir('etc/'), file('etc/os-release', 'ID=test\n')]));
  const l2 = await put(e.layout, await tarOf([file('etc/hostname', 'box\n')]), 'zstd');
  const first = await openTree(e, [l1, l2]);
  assert.equal((await first.readFile('etc/os-release'))?.toString(), 'ID=test\n');
  const files = (await readdir(e.cache)).sort();
  assert.deepEqual(files, [`${l1.diffID.slice(7)}.json`, `${l2.diffID.slice(7)}.json`].sort());

  // Without the blobs, only the cached indexes can answer.
  await unlink(e.layout.blobPath(l1.desc.digest));
  await unlink(e.layout.blobPath(l2.desc.digest));
  const second = await openTree(e, [l1, l2]);
  assert.equal((await second.stat('etc/hostname'))?.size, 4);
  assert.equal(await second.isDir('etc'), true);
  await assert.rejects(second.readFile('etc/hostname'), (err: unknown) => isHoistError(err) && err.code === 'NOT_FOUND', 'contents still need the blob');

  // A damaged cache file is rebuilt from the blob, not trusted.
  await e.layout.putBlobBytes(zstdCompressSync(l2.tar));
  await writeFile(path.join(e.cache, `${l2.diffID.slice(7)}.json`), '{"v":1,"diffID":"sha256:');
  const third = await LayerTree.open(e.layout, [l2.desc], [l2.diffID], { tmpDir: e.tmp, indexCacheDir: e.cache });
  assert.equal((await third.readFile('etc/hostname'))?.toString(), 'box\n');
  JSON.parse(await readFile(path.join(e.cache, `${l2.diffID.slice(7)}.json`), 'utf8'));
});

test('a diffID that does not match the tar is refused and nothing is cached under it', async (t) => {
  const e = await env(t);
  const l = await put(e.layout, await tarOf([file('x', 'x')]));
  const wrong = digestBytes('something else');
  await assert.rejects(LayerTree.open(e.layout, [l.desc], [wrong], { tmpDir: e.tmp, indexCacheDir: e.cache }),
    (err: unknown) => isHoistError(err) && err.code === 'DIGEST_MISMATCH');
  assert.deepEqual(await readdir(e.cache).catch(() => []), []);
});

test('hostile layers: no path escapes the tree', async (t) => {
  const e = await env(t);
  for (const bad of [[file('../evil', 'x')], [file('a/../../evil', 'x')], [hard('h', '../../etc/passwd')], [file('.wh...', '')]]) {
    const l = await put(e.layout, await tarOf(bad));
    await assert.rejects(openTree(e, [l], false), (err: unknown) => isHoistError(err) && err.code === 'UNSAFE_LAYER', JSON.stringify(bad[0]![0]));
  }

  const sneaky = await tarOf([
    dir('etc/'),
    sym('etc/passwd', '../../../../../../etc/passwd'),
    sym('etc/group', '/etc/../../etc/group'),
    sym('loop1', 'loop2'), sym('loop2', 'loop1'),
    sym('up', '../../..'),
    file('/abs/file', 'absolute names land inside'),
  ]);
  const tree = await openTree(e, [await put(e.layout, sneaky)]);
  assert.equal(await tree.readFile('etc/passwd'), undefined, 'the link resolves inside the tree, where there is no /etc/passwd target');
  assert.equal(await tree.readFile('etc/group'), undefined);
  assert.equal(await tree.readFile('loop1'), undefined);
  assert.equal(await tree.isDir('loop1'), false);
  assert.equal(await tree.isDir('up'), true, '.. stops at the root');
  assert.equal((await tree.readFile('up/abs/file'))?.toString(), 'absolute names land inside');
  assert.equal((await tree.readFile('../../abs/file'))?.toString(), 'absolute names land inside', 'query paths are clamped too');
  const [m] = await tree.match('/etc/../../etc');
  assert.equal(m!.rel, 'etc');
  for (const en of (await tree.match('.'))[0]!.entries as SourceEntry[]) {
    if (en.abs !== undefined) assert.ok(en.abs.startsWith(e.tmp + path.sep));
  }
});

test('no layers (FROM scratch): just the root', async (t) => {
  const e = await env(t);
  const tree = await openTree(e, []);
  assert.equal((await tree.stat('/'))?.type, 'directory');
  assert.equal(await tree.readFile('etc/passwd'), undefined);
  const [m] = await tree.match('.');
  assert.deepEqual(m!.entries.map((x) => x.rel), ['']);
});

test('a layer that is not a tar fails with BAD_LAYER', async (t) => {
  const e = await env(t);
  const junk = Buffer.alloc(4096, 0x41);
  const digest = await e.layout.putBlobBytes(gzipSync(junk));
  await assert.rejects(
    LayerTree.open(e.layout, [{ mediaType: OCI_LAYER_GZIP, digest, size: gzipSync(junk).length }], [digestBytes(junk)], { tmpDir: e.tmp }),
    (err: unknown) => isHoistError(err) && err.code === 'BAD_LAYER');
  assert.ok((await lstat(e.layout.dir)).isDirectory());
});
