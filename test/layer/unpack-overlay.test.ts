/**
 * unpackLayer with whiteouts 'keep-as-overlay' (one overlay lowerdir per layer), char-device whiteouts in tars,
 * and the xattr side of unpacking. Tests that mknod need root (or a user namespace: see test/store/snapshots.test.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { getAttributeSync, listAttributesSync, setAttributeSync } from '@napi-rs/xattr';
import { unpackLayer, type UnpackOptions } from '../../src/layer/unpack.ts';
import { assertOutsideUntouched, isRoot, runBytes, sandbox, streamOf, tarOf, type TarEntry } from './helpers.ts';

const KEEP: UnpackOptions = { whiteouts: 'keep-as-overlay' };
const needsMknod = { skip: !isRoot() && 'mknod of whiteout devices needs root (or a user namespace)' };

/** Root outside any user namespace (trusted.* xattrs and rootful overlay need it). */
function isRealRoot(): boolean {
  if (!isRoot()) return false;
  try {
    return /^\s*0\s+0\s+4294967295\s*$/.test(readFileSync('/proc/self/uid_map', 'utf8'));
  } catch {
    return false;
  }
}
const needsRealRoot = { skip: !isRealRoot() && 'trusted.* xattrs and a rootful overlay need root outside a user namespace' };

async function unpack(target: string, entries: readonly TarEntry[], opts: UnpackOptions = {}) {
  return unpackLayer(streamOf(await tarOf(entries)), target, opts);
}

async function kind(p: string): Promise<string> {
  let st;
  try {
    st = await lstat(p);
  } catch {
    return 'missing';
  }
  if (st.isCharacterDevice()) return st.rdev === 0 ? 'whiteout' : `chardev ${st.rdev}`;
  if (st.isDirectory()) return getAttributeSync(p, 'user.overlay.opaque')?.toString() === 'y' ? 'opaque dir' : 'dir';
  if (st.isFile()) return `file ${await readFile(p, 'utf8')}`;
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

test('keep-as-overlay: `.wh.x` and a char device 0:0 become whiteouts, `.wh..wh..opq` marks its dir opaque', needsMknod, async (t) => {
  const sb = await sandbox(t);
  const warnings: string[] = [];
  const r = await unpack(sb.target, [
    [{ name: 'etc/', type: 'directory' }],
    [{ name: 'etc/.wh.gone' }],
    [{ name: 'etc/also-gone', type: 'character-device', devmajor: 0, devminor: 0 }],
    [{ name: 'etc/keep' }, 'k'],
    [{ name: 'opt/app/', type: 'directory', mode: 0o750 }],
    [{ name: 'opt/app/.wh..wh..opq' }],
    [{ name: 'opt/app/new' }, 'n'],
    // The marker before its directory's entry: the directory is made for it and the entry keeps it.
    [{ name: 'srv/.wh..wh..opq' }],
    [{ name: 'srv/', type: 'directory', mode: 0o700 }],
    // A whiteout below a directory the layer does not list: the parent is made for it.
    [{ name: 'var/lib/.wh.db' }],
  ], { ...KEEP, onWarning: (w) => warnings.push(w) });
  assert.deepEqual(warnings, []);
  assert.equal(r.files, 5); // etc/, etc/keep, opt/app/, opt/app/new, srv/: whiteouts and implicit parents are not counted
  const tree: Record<string, string> = {};
  for (const p of ['etc/gone', 'etc/also-gone', 'etc/keep', 'opt', 'opt/app', 'opt/app/new', 'srv', 'var/lib', 'var/lib/db']) {
    tree[p] = await kind(path.join(sb.target, p));
  }
  assert.deepEqual(tree, {
    'etc/gone': 'whiteout',
    'etc/also-gone': 'whiteout',
    'etc/keep': 'file k',
    opt: 'dir',
    'opt/app': 'opaque dir',
    'opt/app/new': 'file n',
    srv: 'opaque dir',
    'var/lib': 'dir',
    'var/lib/db': 'whiteout',
  });
  assert.equal((await lstat(path.join(sb.target, 'opt/app'))).mode & 0o7777, 0o750);
  assert.equal((await lstat(path.join(sb.target, 'srv'))).mode & 0o7777, 0o700);
  // No marker files and no whiteout names are ever created.
  assert.deepEqual((await readdir(path.join(sb.target, 'opt/app'))), ['new']);
  assert.deepEqual((await readdir(path.join(sb.target, 'etc'))).sort(), ['also-gone', 'gone', 'keep']);
});

test('keep-as-overlay: as real root, opaqueXattrs sets every name given', needsRealRoot, async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'd/', type: 'directory' }], [{ name: 'd/.wh..wh..opq' }]],
    { ...KEEP, opaqueXattrs: ['trusted.overlay.opaque', 'user.overlay.opaque'] });
  const d = path.join(sb.target, 'd');
  assert.deepEqual(listAttributesSync(d).sort(), ['trusted.overlay.opaque', 'user.overlay.opaque']);
  assert.equal(getAttributeSync(d, 'trusted.overlay.opaque')?.toString(), 'y');
});

test('keep-as-overlay: a whiteout never hides the same layer’s own entries, whatever the order', needsMknod, async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [
    [{ name: '.wh.d1' }], [{ name: 'd1/new' }, 'n'], // hidden, then written below: a new opaque dir
    [{ name: '.wh.d2' }], [{ name: 'd2/', type: 'directory' }], // hidden, then a directory entry: opaque
    [{ name: 'd3/', type: 'directory' }], [{ name: 'd3/new' }, 'n'], [{ name: '.wh.d3' }], // own dir, then hidden: opaque
    [{ name: 'd4/x' }, 'x'], [{ name: '.wh.d4' }], // implicit dir, then hidden: opaque
    [{ name: 'f1' }, 'mine'], [{ name: '.wh.f1' }], // own file wins
    [{ name: '.wh.f2' }], [{ name: 'f2' }, 'mine'], // own file replaces the whiteout
  ], KEEP);
  const tree: Record<string, string> = {};
  for (const p of ['d1', 'd1/new', 'd2', 'd3', 'd3/new', 'd4', 'd4/x', 'f1', 'f2']) tree[p] = await kind(path.join(sb.target, p));
  assert.deepEqual(tree, {
    d1: 'opaque dir', 'd1/new': 'file n', d2: 'opaque dir', d3: 'opaque dir', 'd3/new': 'file n',
    d4: 'opaque dir', 'd4/x': 'file x', f1: 'file mine', f2: 'file mine',
  });
});

test('keep-as-overlay: hostile names never touch anything outside the target', needsMknod, async (t) => {
  const sb = await sandbox(t);
  const unsafe = (name: string, what: string) => ({ code: 'UNSAFE_LAYER', message: `layer entry "${name}": ${what}; refusing` });
  await assert.rejects(unpack(sb.target, [[{ name: '../.wh.keep' }]], KEEP), unsafe('../.wh.keep', 'path escapes the target'));
  await assert.rejects(unpack(sb.target, [[{ name: '../outside/.wh.keep' }]], KEEP), unsafe('../outside/.wh.keep', 'path escapes the target'));
  await assert.rejects(unpack(sb.target, [[{ name: '../outside/.wh..wh..opq' }]], KEEP), unsafe('../outside/.wh..wh..opq', 'path escapes the target'));
  await assert.rejects(unpack(sb.target, [[{ name: '../outside/keep', type: 'character-device' }]], KEEP), unsafe('../outside/keep', 'path escapes the target'));
  await assert.rejects(unpack(sb.target, [[{ name: 'd/.wh...' }]], KEEP), unsafe('d/.wh...', 'whiteout does not name a file'));
  await assertOutsideUntouched(sb);

  // Absolute names and a symlinked parent pointing outside resolve inside the target.
  const keepAbs = path.join(sb.outside, 'keep');
  await unpack(sb.target, [
    [{ name: `${path.dirname(keepAbs)}/.wh.keep` }],
    [{ name: 'a', type: 'symlink', linkname: sb.outside }],
    [{ name: 'a/.wh.keep' }],
    [{ name: 'a/.wh..wh..opq' }],
    [{ name: 'a/f' }, 'f'],
    [{ name: 'a/dev', type: 'character-device', devmajor: 0, devminor: 0 }],
  ], KEEP);
  await assertOutsideUntouched(sb);
  assert.deepEqual(listAttributesSync(sb.outside), [], 'the outside dir got no opaque xattr');
  const inside = path.join(sb.target, sb.outside);
  assert.equal(await kind(path.join(inside, 'keep')), 'whiteout');
  assert.equal(await kind(path.join(inside, 'dev')), 'whiteout');
  assert.equal(await kind(path.join(inside, 'f')), 'file f');
  assert.equal(await kind(inside), 'opaque dir');
  assert.equal(await kind(path.join(sb.target, 'a')), 'symlink');
});

test('keep-as-overlay: a whiteout over a planted symlink replaces the link, never what it points to', needsMknod, async (t) => {
  const sb = await sandbox(t);
  await symlink(path.join(sb.outside, 'keep'), path.join(sb.target, 'x'));
  await unpack(sb.target, [[{ name: '.wh.x' }]], KEEP);
  assert.equal(await kind(path.join(sb.target, 'x')), 'whiteout');
  await assertOutsideUntouched(sb);
});

test('keep-as-overlay: lower and upper snapshots mounted as overlay (rootful, trusted xattrs) give the merged view', needsRealRoot, async (t) => {
  const sb = await sandbox(t);
  const l1 = path.join(sb.base, 'l1');
  const l2 = path.join(sb.base, 'l2');
  t.after(async () => {
    for (const d of [l1, l2]) await rm(d, { recursive: true, force: true });
  });
  const opts = { ...KEEP, opaqueXattrs: ['trusted.overlay.opaque', 'user.overlay.opaque'] };
  await unpack(l1, [
    [{ name: 'etc/', type: 'directory' }], [{ name: 'etc/passwd' }, 'root'], [{ name: 'etc/gone' }, 'g'], [{ name: 'etc/also-gone' }, 'g'],
    [{ name: 'opt/', type: 'directory' }], [{ name: 'opt/app/', type: 'directory' }], [{ name: 'opt/app/old' }, 'o'],
    [{ name: 'opt/app/sub/', type: 'directory' }], [{ name: 'opt/app/sub/x' }, 'x'],
  ], opts);
  await unpack(l2, [
    [{ name: 'etc/', type: 'directory' }], [{ name: 'etc/.wh.gone' }],
    [{ name: 'etc/also-gone', type: 'character-device', devmajor: 0, devminor: 0 }],
    [{ name: 'opt/app/', type: 'directory' }], [{ name: 'opt/app/.wh..wh..opq' }], [{ name: 'opt/app/new' }, 'n'],
  ], opts);
  const script = [
    'set -e',
    `mkdir ${sb.base}/u ${sb.base}/w ${sb.base}/m`,
    `mount -t overlay overlay -o lowerdir=${l2}:${l1},upperdir=${sb.base}/u,workdir=${sb.base}/w ${sb.base}/m`,
    `cd ${sb.base}/m && find . | sort`,
  ].join('\n');
  const out = (await runBytes('unshare', ['--mount', '--propagation', 'private', '--fork', 'sh', '-c', script])).toString();
  assert.deepEqual(out.trim().split('\n'), ['.', './etc', './etc/passwd', './opt', './opt/app', './opt/app/new']);
});

test('keep-as-overlay: an opaque xattr that cannot be set is reported once, and fatal when none can be set', async (t) => {
  const sb = await sandbox(t);
  const warnings: string[] = [];
  await unpack(path.join(sb.base, 'partial'), [[{ name: 'd/.wh..wh..opq' }], [{ name: 'e/.wh..wh..opq' }]],
    { ...KEEP, opaqueXattrs: ['bogus.opaque', 'user.overlay.opaque'], onWarning: (w) => warnings.push(w) });
  assert.deepEqual(warnings, ['layer entry "d/.wh..wh..opq": cannot set bogus.opaque on opaque directory "d" (ENOTSUP); '
    + 'the other opaque xattrs are set, so overlay mounts that read bogus.opaque will not see it opaque']);
  for (const d of ['d', 'e']) assert.equal(await kind(path.join(sb.base, 'partial', d)), 'opaque dir');
  await rm(path.join(sb.base, 'partial'), { recursive: true });

  await assert.rejects(unpack(sb.target, [[{ name: 'd/', type: 'directory' }], [{ name: 'd/.wh..wh..opq' }]], { ...KEEP, opaqueXattrs: ['bogus.opaque'] }), {
    code: 'UNSUPPORTED',
    message: 'layer entry "d/.wh..wh..opq": cannot mark directory "d" opaque (bogus.opaque: ENOTSUP); put the snapshots on a filesystem with extended attributes (user.* needs ext4, xfs, btrfs or tmpfs)',
  });
});

const UNPACK_MODULE = fileURLToPath(new URL('../../src/layer/unpack.ts', import.meta.url));

test('keep-as-overlay: an ordinary user outside any user namespace makes whiteouts too (Linux >= 5.8)', { skip: !isRoot() && 'runs a child as another user' }, async (t) => {
  const sb = await sandbox(t);
  const tarFile = path.join(sb.base, 'l.tar');
  await writeFile(tarFile, await tarOf([[{ name: 'a' }, 'a'], [{ name: '.wh.x' }], [{ name: 'd/.wh..wh..opq' }]]));
  await chmod(sb.base, 0o755);
  await chmod(tarFile, 0o644);
  await chown(sb.target, 65534, 65534);
  const script = `
    import { createReadStream } from 'node:fs';
    const { unpackLayer } = await import(${JSON.stringify(UNPACK_MODULE)});
    const warnings = [];
    await unpackLayer(createReadStream(${JSON.stringify(tarFile)}), ${JSON.stringify(sb.target)}, { whiteouts: 'keep-as-overlay', ownership: 'ignore', onWarning: (w) => warnings.push(w) });
    process.stdout.write(JSON.stringify(warnings));
  `;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] });
    let s = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (s += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(s) : reject(new Error(`child exit ${code}: ${err}`))));
  });
  assert.deepEqual(JSON.parse(out), []);
  assert.equal(await kind(path.join(sb.target, 'x')), 'whiteout');
  assert.equal(await kind(path.join(sb.target, 'd')), 'opaque dir');
  assert.equal((await lstat(path.join(sb.target, 'x'))).uid, 65534);
});

// ---------------------------------------------------------------- 'apply' mode and xattrs (any user)

test('apply: a char device 0:0 entry removes the lower file like `.wh.NAME`', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'etc/', type: 'directory' }], [{ name: 'etc/gone' }, 'g'], [{ name: 'etc/keep' }, 'k'], [{ name: 'd/', type: 'directory' }], [{ name: 'd/x' }, 'x']]);
  const warnings: string[] = [];
  const r = await unpack(sb.target, [
    [{ name: 'etc/gone', type: 'character-device', devmajor: 0, devminor: 0 }],
    [{ name: 'd', type: 'character-device', devmajor: 0, devminor: 0 }],
    [{ name: 'etc/null', type: 'character-device', devmajor: 1, devminor: 3 }],
  ], { onWarning: (w) => warnings.push(w) });
  assert.deepEqual(await readdir(path.join(sb.target, 'etc')), ['keep']);
  assert.equal(await kind(path.join(sb.target, 'd')), 'missing');
  assert.deepEqual(warnings, ['layer entry "etc/null": character-device skipped (cannot create device nodes or fifos without mknod)']);
  assert.equal(r.files, 0);
});

test('apply: a whiteout for a directory the layer itself lists hides the lower content but keeps the layer’s', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'd/', type: 'directory' }], [{ name: 'd/old' }, 'o'], [{ name: 'd/sub/', type: 'directory' }], [{ name: 'd/sub/old' }, 'o']]);
  await unpack(sb.target, [[{ name: 'd/', type: 'directory' }], [{ name: 'd/new' }, 'n'], [{ name: 'd/sub/', type: 'directory' }], [{ name: '.wh.d' }]]);
  assert.deepEqual((await readdir(path.join(sb.target, 'd'))).sort(), ['new', 'sub']);
  assert.deepEqual(await readdir(path.join(sb.target, 'd/sub')), []);
});

test('xattrs: user.* from pax records are written on files, dirs and the root; overlay’s own are refused once', async (t) => {
  const sb = await sandbox(t);
  const warnings: string[] = [];
  await unpack(sb.target, [
    [{ name: './', type: 'directory', pax: { 'SCHILY.xattr.user.root': 'r' } }],
    [{ name: 'd/', type: 'directory', pax: { 'SCHILY.xattr.user.dir': 'dv' } }],
    [{ name: 'd/f', pax: { 'SCHILY.xattr.user.foo': 'bar', 'SCHILY.xattr.user.empty': '', 'SCHILY.xattr.user.overlay.opaque': 'y' } }, 'f'],
    [{ name: 'd/g', pax: { 'SCHILY.xattr.trusted.overlay.redirect': '/x', 'SCHILY.xattr.user.overlay.opaque': 'y' } }, 'g'],
    // bsdtar's form: url-encoded name, base64 value; the SCHILY record wins when both name the same xattr.
    [{ name: 'd/h', pax: { 'LIBARCHIVE.xattr.user.b%20sd': Buffer.from([0x80, 0x01]).toString('base64'), 'LIBARCHIVE.xattr.user.both': 'eA==', 'SCHILY.xattr.user.both': 'schily' } }, 'h'],
    [{ name: 'd/l', type: 'symlink', linkname: 'f', pax: { 'SCHILY.xattr.user.link': 'x' } }],
  ], { onWarning: (w) => warnings.push(w), ownership: 'ignore' });
  const get = (p: string, n: string) => getAttributeSync(path.join(sb.target, p), n);
  assert.equal(get('', 'user.root')?.toString(), 'r');
  assert.equal(get('d', 'user.dir')?.toString(), 'dv');
  assert.equal(get('d/f', 'user.foo')?.toString(), 'bar');
  assert.equal(get('d/f', 'user.empty')?.length, 0);
  assert.deepEqual(listAttributesSync(path.join(sb.target, 'd/f')).sort(), ['user.empty', 'user.foo']);
  assert.deepEqual(listAttributesSync(path.join(sb.target, 'd/g')), []);
  assert.deepEqual(get('d/h', 'user.b sd'), Buffer.from([0x80, 0x01]));
  assert.equal(get('d/h', 'user.both')?.toString(), 'schily');
  // user.* on a symlink is refused by the kernel: quietly left out.
  assert.deepEqual(warnings, [
    'layer entry "d/f": extended attribute user.overlay.opaque is overlay\'s own state; not applied',
    'layer entry "d/g": extended attribute trusted.overlay.redirect is overlay\'s own state; not applied',
  ]);
});

test('xattrs: a binary value written by GNU tar --xattrs comes back byte for byte', async (t) => {
  const sb = await sandbox(t);
  const src = path.join(sb.base, 'src');
  t.after(() => rm(src, { recursive: true, force: true }));
  await mkdir(src);
  const value = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0xff, 0xc3, 0x28, 0x0a, 0x3d, 0x20]);
  await writeFile(path.join(src, 'bin'), 'b');
  setAttributeSync(path.join(src, 'bin'), 'user.bin', value);
  const tar = await runBytes('tar', ['--format=posix', '--xattrs', '--xattrs-include=user.*', '-cf', '-', '-C', src, 'bin']);
  await unpackLayer(streamOf(tar), sb.target, { ownership: 'ignore' });
  assert.deepEqual(getAttributeSync(path.join(sb.target, 'bin'), 'user.bin'), value);
});
