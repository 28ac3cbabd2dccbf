import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, lutimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { test } from 'node:test';
import { getAttributeSync } from '@napi-rs/xattr';
import { HoistError } from '../../src/errors.ts';
import { unpackLayer } from '../../src/layer/unpack.ts';
import {
  assertOutsideUntouched, describeTree, isRoot, runBytes, sandbox, streamOf, tarOf, writeLayout, type TarEntry,
} from './helpers.ts';

const T1 = new Date('2020-01-01T00:00:00Z');
const T2 = new Date('2021-01-01T00:00:00Z');
const T3 = new Date('2022-01-01T00:00:00Z');

async function unpack(target: string, entries: readonly TarEntry[], opts: Parameters<typeof unpackLayer>[2] = {}) {
  return unpackLayer(streamOf(await tarOf(entries)), target, opts);
}

function unsafe(message: string): { name: string; code: string; message: string } {
  return { name: 'HoistError', code: 'UNSAFE_LAYER', message };
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- hostile layers

test('hostile: `../escape` is refused and nothing is written outside', async (t) => {
  const sb = await sandbox(t);
  await assert.rejects(unpack(sb.target, [[{ name: 'ok' }, 'fine'], [{ name: '../escape' }, 'x']]),
    unsafe('layer entry "../escape": path escapes the target; refusing'));
  await assertOutsideUntouched(sb);
});

test('hostile: `a/../../escape` and `../outside/keep` are refused', async (t) => {
  const sb = await sandbox(t);
  await assert.rejects(unpack(sb.target, [[{ name: 'a/', type: 'directory' }], [{ name: 'a/../../escape' }, 'x']]),
    unsafe('layer entry "a/../../escape": path escapes the target; refusing'));
  await assert.rejects(unpack(sb.target, [[{ name: '../outside/keep' }, 'owned']]),
    unsafe('layer entry "../outside/keep": path escapes the target; refusing'));
  await assertOutsideUntouched(sb);
});

test('hostile: the error names the layer when `where` is given', async (t) => {
  const sb = await sandbox(t);
  await assert.rejects(unpack(sb.target, [[{ name: '../x' }, 'x']], { where: 'sha256:abcd' }),
    unsafe('sha256:abcd: layer entry "../x": path escapes the target; refusing'));
});

test('hostile: an absolute name stays inside the target (leading / stripped, like tar)', async (t) => {
  const sb = await sandbox(t);
  const abs = path.join(sb.outside, 'keep');
  const r = await unpack(sb.target, [[{ name: abs }, 'owned']]);
  assert.equal(r.files, 1);
  assert.equal(await readFile(path.join(sb.target, abs), 'utf8'), 'owned');
  await assertOutsideUntouched(sb);
});

test('hostile: an absolute name written by GNU tar -P stays inside the target', async (t) => {
  const sb = await sandbox(t);
  const tar = await runBytes('tar', ['-cPf', '-', path.join(sb.outside, 'keep')]);
  await unpackLayer(streamOf(tar), sb.target);
  assert.equal(await readFile(path.join(sb.target, sb.outside, 'keep'), 'utf8'), 'keep\n');
  await assertOutsideUntouched(sb);
});

test('hostile: a symlinked parent pointing outside resolves inside the target', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [
    [{ name: 'link', type: 'symlink', linkname: sb.outside }],
    [{ name: 'link/keep' }, 'owned'],
    [{ name: 'link/new' }, 'new'],
  ]);
  assert.equal(await readlink(path.join(sb.target, 'link')), sb.outside, 'the symlink itself is kept as written');
  assert.equal(await readFile(path.join(sb.target, sb.outside, 'keep'), 'utf8'), 'owned');
  assert.equal(await readFile(path.join(sb.target, sb.outside, 'new'), 'utf8'), 'new');
  await assertOutsideUntouched(sb);
});

test('hostile: a relative symlink climbing above the target stops at the target', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [
    [{ name: 'a/', type: 'directory' }],
    [{ name: 'a/up', type: 'symlink', linkname: '../../../../..' }],
    [{ name: 'a/up/outside/keep' }, 'owned'],
  ]);
  assert.equal(await readFile(path.join(sb.target, 'outside', 'keep'), 'utf8'), 'owned');
  await assertOutsideUntouched(sb);
});

test('hostile: a symlink chain (relative, absolute, with ..) is resolved inside the target', async (t) => {
  const sb = await sandbox(t);
  const rel = path.relative(sb.target, sb.outside); // '../outside'
  await unpack(sb.target, [
    [{ name: 'l1', type: 'symlink', linkname: 'l2' }],
    [{ name: 'l2', type: 'symlink', linkname: '/d/l3' }],
    [{ name: 'd/', type: 'directory' }],
    [{ name: 'd/l3', type: 'symlink', linkname: `../${rel}` }],
    [{ name: 'l1/keep' }, 'owned'],
  ]);
  // l1 → l2 → /d/l3 → /d/../../outside → (clamped at the root) /outside
  assert.equal(await readFile(path.join(sb.target, 'outside', 'keep'), 'utf8'), 'owned');
  await assertOutsideUntouched(sb);
});

test('hostile: a symlink loop is refused with a one-line error', async (t) => {
  const sb = await sandbox(t);
  await assert.rejects(unpack(sb.target, [
    [{ name: 'x', type: 'symlink', linkname: 'y' }],
    [{ name: 'y', type: 'symlink', linkname: 'x' }],
    [{ name: 'x/f' }, 'f'],
  ]), { code: 'BAD_LAYER', message: 'layer entry "x/f": too many levels of symbolic links below "x"; the layer is damaged' });
  await assertOutsideUntouched(sb);
});

test('hostile: a hard link to ../../etc/passwd is refused', async (t) => {
  const sb = await sandbox(t);
  await assert.rejects(unpack(sb.target, [[{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]]),
    unsafe('layer entry "h": hard link target "../../etc/passwd" escapes the target; refusing'));
  await assert.rejects(unpack(sb.target, [[{ name: 'h', type: 'link', linkname: '../outside/keep' }]]),
    unsafe('layer entry "h": hard link target "../outside/keep" escapes the target; refusing'));
  assert.equal(await exists(path.join(sb.target, 'h')), false);
  await assertOutsideUntouched(sb);
});

test('hostile: a hard link through a symlinked directory never links the outside file', async (t) => {
  const sb = await sandbox(t);
  // Nothing at TARGET/<outside>/keep: the link has no target inside, so it is refused.
  await assert.rejects(unpack(sb.target, [
    [{ name: 'd', type: 'symlink', linkname: sb.outside }],
    [{ name: 'h', type: 'link', linkname: 'd/keep' }],
  ]), { code: 'BAD_LAYER', message: 'layer entry "h": hard link target "d/keep" does not exist in the target; the layer is damaged or out of order' });
  await assertOutsideUntouched(sb);

  // With a file at the in-root location, the link is made to that one.
  await unpack(sb.target, [
    [{ name: `${sb.outside.slice(1)}/keep` }, 'inside'],
    [{ name: 'h', type: 'link', linkname: 'd/keep' }],
  ]);
  const h = await lstat(path.join(sb.target, 'h'));
  const inside = await lstat(path.join(sb.target, sb.outside, 'keep'));
  assert.equal(h.ino, inside.ino);
  await assertOutsideUntouched(sb);
});

test('hostile: a hard link to a symlink links the symlink, not what it points to', async (t) => {
  const sb = await sandbox(t);
  const keep = path.join(sb.outside, 'keep');
  await unpack(sb.target, [
    [{ name: 's', type: 'symlink', linkname: keep }],
    [{ name: 'h', type: 'link', linkname: 's' }],
  ]);
  const h = await lstat(path.join(sb.target, 'h'));
  assert.ok(h.isSymbolicLink());
  assert.equal(await readlink(path.join(sb.target, 'h')), keep);
  await assertOutsideUntouched(sb);
});

test('hostile: a symlink entry later replaced by a directory entry becomes a real directory', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [
    [{ name: 's', type: 'symlink', linkname: sb.outside }],
    [{ name: 's/', type: 'directory', mode: 0o750 }],
    [{ name: 's/keep' }, 'owned'],
  ]);
  const st = await lstat(path.join(sb.target, 's'));
  assert.ok(st.isDirectory() && !st.isSymbolicLink());
  assert.equal(st.mode & 0o7777, 0o750);
  assert.equal(await readFile(path.join(sb.target, 's', 'keep'), 'utf8'), 'owned');
  await assertOutsideUntouched(sb);
});

test('hostile: a file entry over a planted symlink replaces the link instead of writing through it', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [
    [{ name: 'f', type: 'symlink', linkname: path.join(sb.outside, 'keep') }],
    [{ name: 'f', mode: 0o600 }, 'owned'],
  ]);
  const st = await lstat(path.join(sb.target, 'f'));
  assert.ok(st.isFile());
  assert.equal(await readFile(path.join(sb.target, 'f'), 'utf8'), 'owned');
  await assertOutsideUntouched(sb);
});

test('hostile: whiteouts and opaque markers below a symlink pointing outside stay inside', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'w', type: 'symlink', linkname: sb.outside }]]);
  await unpack(sb.target, [[{ name: 'w/.wh.keep' }], [{ name: 'w/.wh..wh..opq' }]]);
  await assertOutsideUntouched(sb);
  assert.ok((await lstat(path.join(sb.target, 'w'))).isSymbolicLink());
});

test('hostile: a whiteout naming `..` is refused', async (t) => {
  const sb = await sandbox(t);
  await mkdir(path.join(sb.target, 'd'));
  await assert.rejects(unpack(sb.target, [[{ name: 'd/.wh...' }]]),
    unsafe('layer entry "d/.wh...": whiteout does not name a file; refusing'));
  assert.ok(await exists(path.join(sb.target, 'd')));
  await assertOutsideUntouched(sb);
});

// ---------------------------------------------------------------- damaged input

test('damaged: random bytes, a gzipped tar and a truncated tar give BAD_LAYER', async (t) => {
  const sb = await sandbox(t);
  const tar = await tarOf([[{ name: 'a' }, Buffer.alloc(5000, 1)]]);
  const msg = /^layer is not a valid tar stream \(.*\); the layer is damaged, truncated or still compressed$/;
  await assert.rejects(unpackLayer(streamOf(Buffer.alloc(1024, 7)), sb.target), { code: 'BAD_LAYER', message: msg });
  await assert.rejects(unpackLayer(streamOf(gzipSync(tar)), sb.target), { code: 'BAD_LAYER', message: msg });
  await assert.rejects(unpackLayer(streamOf(tar.subarray(0, 2048)), sb.target), { code: 'BAD_LAYER', message: msg });
});

test('damaged: an error of the source stream is what unpackLayer rejects with', async (t) => {
  const sb = await sandbox(t);
  const tar = await tarOf([[{ name: 'a' }, Buffer.alloc(5000, 1)]]);
  const boom = new HoistError('BAD_COMPRESSION', 'layer: gzip data is corrupt');
  const src = new Readable({
    read() {
      this.push(tar.subarray(0, 1024));
      this.destroy(boom);
    },
  });
  await assert.rejects(unpackLayer(src, sb.target), boom);
});

test('damaged: a hard link to a missing file is BAD_LAYER', async (t) => {
  const sb = await sandbox(t);
  await assert.rejects(unpack(sb.target, [[{ name: 'h', type: 'link', linkname: 'nope' }]]),
    { code: 'BAD_LAYER', message: 'layer entry "h": hard link target "nope" does not exist in the target; the layer is damaged or out of order' });
});

test('keep-as-overlay: a layer without whiteouts unpacks exactly as with "apply"', async (t) => {
  const sb = await sandbox(t);
  const other = path.join(sb.base, 'apply');
  t.after(() => rm(other, { recursive: true, force: true }));
  await unpack(sb.target, L1, { whiteouts: 'keep-as-overlay', ownership: 'ignore' });
  await unpack(other, L1, { ownership: 'ignore' });
  const opts = { mtimes: (rel: string) => rel !== '' };
  assert.deepEqual(await describeTree(sb.target, opts), await describeTree(other, opts));
});

// ---------------------------------------------------------------- metadata

/** A tree with every kind of metadata unpackLayer must restore, made on disk so GNU tar can archive it. */
async function makeRichTree(dir: string): Promise<void> {
  const f = (p: string) => path.join(dir, p);
  await mkdir(f('bin'));
  await writeFile(f('bin/su'), 'setuid binary\n');
  await chmod(f('bin/su'), 0o4755);
  await writeFile(f('bin/wall'), 'setgid binary\n');
  await chmod(f('bin/wall'), 0o2755);
  await link(f('bin/su'), f('bin/su-again'));
  await mkdir(f('tmp'));
  await chmod(f('tmp'), 0o1777);
  await mkdir(f('shared'));
  await chmod(f('shared'), 0o2775);
  await mkdir(f('ro'));
  await writeFile(f('ro/file'), 'read only\n');
  await chmod(f('ro/file'), 0o444);
  await mkdir(f('ro/locked'));
  await writeFile(f('ro/locked/secret'), 'secret\n');
  await chmod(f('ro/locked/secret'), 0o000);
  await mkdir(f('home/user'), { recursive: true });
  await writeFile(f('home/user/.profile'), 'export A=1\n');
  await chown(f('home/user'), 1234, 5678);
  await chown(f('home/user/.profile'), 1234, 5678);
  await chmod(f('home/user'), 0o700);
  await symlink('bin/su', f('su-link'));
  await symlink('/nonexistent/absolute', f('dangling'));
  await writeFile(f('big'), Buffer.alloc(3 * 1024 * 1024 + 17, 0xab));
  // Times last, deepest first, so writing children does not move them.
  let n = 0;
  for (const p of ['bin/su', 'bin/wall', 'ro/file', 'ro/locked/secret', 'home/user/.profile', 'big']) await utimes(f(p), T1, new Date(T1.getTime() + 1000 * ++n));
  for (const p of ['su-link', 'dangling']) await lutimes(f(p), T2, new Date(T2.getTime() + 1000 * ++n));
  await chmod(f('ro/locked'), 0o500);
  await chmod(f('ro'), 0o555);
  for (const p of ['ro/locked', 'ro', 'bin', 'tmp', 'shared', 'home/user', 'home', '.']) await utimes(f(p), T3, new Date(T3.getTime() + 1000 * ++n));
}

for (const format of ['gnu', 'posix'] as const) {
  test(`metadata: a GNU tar (--format=${format}) of a real tree unpacks to the same tree (modes, owners, times, links)`, { skip: !isRoot() && 'chown to other users needs root' }, async (t) => {
    const sb = await sandbox(t);
    const src = path.join(sb.base, 'src');
    await mkdir(src);
    t.after(() => rm(src, { recursive: true, force: true }));
    await makeRichTree(src);
    const tar = await runBytes('tar', [`--format=${format}`, '--numeric-owner', '-cf', '-', '-C', src, '.']);
    const warnings: string[] = [];
    const r = await unpackLayer(streamOf(tar), sb.target, { onWarning: (w) => warnings.push(w) });
    assert.deepEqual(warnings, []);
    assert.deepEqual(await describeTree(sb.target), await describeTree(src));
    assert.equal(r.bytes, 14 + 14 + 10 + 7 + 11 + 3 * 1024 * 1024 + 17);
    // 7 dirs (the root's `./` entry is not counted), 7 files (one a hard link), 2 symlinks
    assert.equal(r.files, 16);
  });
}

test('metadata: setuid survives chown (mode is applied after the owner)', { skip: !isRoot() && 'needs root' }, async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'suid', mode: 0o6755, uid: 1000, gid: 1000 }, '#!/bin/sh\n']]);
  const st = await lstat(path.join(sb.target, 'suid'));
  assert.equal(st.mode & 0o7777, 0o6755);
  assert.equal(st.uid, 1000);
});

test('metadata: pax uid, gid, mtime, long path and long linkpath are honoured', { skip: !isRoot() && 'needs root' }, async (t) => {
  const sb = await sandbox(t);
  const long = `${'d'.repeat(120)}/${'e'.repeat(120)}/${'f'.repeat(90)}`;
  await unpack(sb.target, [
    [{ name: 'f', pax: { uid: '300000', gid: '300001', mtime: '1234567890.5' } }, 'pax'],
    [{ name: long }, 'deep'],
    [{ name: 'l', type: 'symlink', linkname: long }],
  ]);
  const st = await lstat(path.join(sb.target, 'f'));
  assert.equal(st.uid, 300000);
  assert.equal(st.gid, 300001);
  assert.equal(st.mtimeMs, 1234567890500);
  assert.equal(await readFile(path.join(sb.target, long), 'utf8'), 'deep');
  assert.equal(await readlink(path.join(sb.target, 'l')), long);
  assert.equal(await readFile(path.join(sb.target, 'l'), 'utf8'), 'deep');
});

test('metadata: ownership "ignore" leaves files to the current user', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'd/', type: 'directory', uid: 4321, gid: 4321 }], [{ name: 'd/f', uid: 4321, gid: 4321 }, 'x']], { ownership: 'ignore' });
  for (const p of ['d', 'd/f']) {
    const st = await lstat(path.join(sb.target, p));
    assert.equal(st.uid, process.getuid?.());
  }
});

test('metadata: devices and fifos are skipped with a warning each; an xattr that cannot be set is reported once', async (t) => {
  const sb = await sandbox(t);
  const warnings: string[] = [];
  const r = await unpack(sb.target, [
    [{ name: 'dev/', type: 'directory' }],
    [{ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 }],
    [{ name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660 }],
    [{ name: 'run/initctl', type: 'fifo', mode: 0o600 }],
    // Not a valid capability (EINVAL as root, EPERM otherwise): reported once, not again for bin/ping2.
    [{ name: 'bin/ping', mode: 0o755, pax: { 'SCHILY.xattr.security.capability': 'x', 'SCHILY.xattr.user.note': 'hi' } }, 'ping'],
    [{ name: 'bin/ping2', mode: 0o755, pax: { 'SCHILY.xattr.security.capability': 'x' } }, 'ping'],
  ], { onWarning: (w) => warnings.push(w), ownership: 'ignore' });
  assert.equal(warnings.length, 4, warnings.join('\n'));
  assert.deepEqual(warnings.slice(0, 3), [
    'layer entry "dev/null": character-device skipped (cannot create device nodes or fifos without mknod)',
    'layer entry "dev/sda": block-device skipped (cannot create device nodes or fifos without mknod)',
    'layer entry "run/initctl": fifo skipped (cannot create device nodes or fifos without mknod)',
  ]);
  assert.match(warnings[3] ?? '', /^layer entry "bin\/ping": cannot set extended attribute security\.capability \((EINVAL|EPERM)\); left out here and on later entries /);
  assert.equal(getAttributeSync(path.join(sb.target, 'bin/ping'), 'user.note')?.toString(), 'hi');
  assert.deepEqual(await readdir(path.join(sb.target, 'dev')), []);
  assert.equal(await exists(path.join(sb.target, 'run/initctl')), false);
  assert.equal(await readFile(path.join(sb.target, 'bin/ping'), 'utf8'), 'ping');
  assert.equal(r.files, 3); // dev/, bin/ping and bin/ping2; implicit parents are not entries
});

test('metadata: directory times survive children written after them, also across layers', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'd/', type: 'directory', mtime: T1 }], [{ name: 'd/a', mtime: T2 }, 'a']]);
  assert.equal((await lstat(path.join(sb.target, 'd'))).mtimeMs, T1.getTime());
  // A later layer that adds d/b without an entry for d/ leaves d's time as it was.
  await unpack(sb.target, [[{ name: 'd/b', mtime: T3 }, 'b']]);
  assert.equal((await lstat(path.join(sb.target, 'd'))).mtimeMs, T1.getTime());
  // An entry for an existing directory updates its mode and time and keeps its content.
  await unpack(sb.target, [[{ name: 'd/', type: 'directory', mode: 0o700, mtime: T3 }]]);
  const st = await lstat(path.join(sb.target, 'd'));
  assert.equal(st.mode & 0o7777, 0o700);
  assert.equal(st.mtimeMs, T3.getTime());
  assert.deepEqual((await readdir(path.join(sb.target, 'd'))).sort(), ['a', 'b']);
});

test('replacing: file → directory, directory → file, directory → symlink', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [
    [{ name: 'x' }, 'file'],
    [{ name: 'd/', type: 'directory' }], [{ name: 'd/sub/', type: 'directory' }], [{ name: 'd/sub/f' }, 'f'],
    [{ name: 'e/', type: 'directory' }], [{ name: 'e/f' }, 'f'],
  ]);
  await unpack(sb.target, [
    [{ name: 'x/', type: 'directory' }], [{ name: 'x/y' }, 'y'],
    [{ name: 'd' }, 'now a file'],
    [{ name: 'e', type: 'symlink', linkname: 'x' }],
    [{ name: 'e/z' }, 'through the new link'],
  ]);
  assert.equal(await readFile(path.join(sb.target, 'x/y'), 'utf8'), 'y');
  assert.equal(await readFile(path.join(sb.target, 'd'), 'utf8'), 'now a file');
  assert.equal(await readlink(path.join(sb.target, 'e')), 'x');
  assert.equal(await readFile(path.join(sb.target, 'x/z'), 'utf8'), 'through the new link');
});

test('hard links to a file from a lower layer share its inode', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'usr/bin/python3.11', mode: 0o755 }, 'py']]);
  await unpack(sb.target, [[{ name: 'usr/bin/python3', type: 'link', linkname: '/usr/bin/python3.11' }]]);
  const a = await lstat(path.join(sb.target, 'usr/bin/python3.11'));
  const b = await lstat(path.join(sb.target, 'usr/bin/python3'));
  assert.equal(a.ino, b.ino);
  assert.equal(a.nlink, 2);
});

// ---------------------------------------------------------------- whiteouts

test('whiteouts: `.wh.NAME` removes files and whole directories left by lower layers', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [
    [{ name: 'etc/', type: 'directory' }], [{ name: 'etc/a' }, 'a'], [{ name: 'etc/b' }, 'b'],
    [{ name: 'var/', type: 'directory' }], [{ name: 'var/cache/', type: 'directory' }], [{ name: 'var/cache/x/', type: 'directory', mode: 0o500 }], [{ name: 'var/cache/x/y' }, 'y'],
  ]);
  const r = await unpack(sb.target, [[{ name: 'etc/.wh.a' }], [{ name: 'var/.wh.cache' }], [{ name: 'nope/.wh.nothing' }], [{ name: '.wh.ghost' }]]);
  assert.deepEqual(r, { files: 0, bytes: 0 });
  assert.deepEqual(await readdir(path.join(sb.target, 'etc')), ['b']);
  assert.deepEqual(await readdir(path.join(sb.target, 'var')), []);
  assert.equal(await exists(path.join(sb.target, 'nope')), false, 'a whiteout below a missing dir creates nothing');
});

test('whiteouts: the same layer’s own file survives its whiteout, in either order', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [[{ name: 'a' }, 'lower'], [{ name: 'b' }, 'lower'], [{ name: 'd/', type: 'directory' }], [{ name: 'd/old' }, 'old']]);
  await unpack(sb.target, [
    [{ name: '.wh.a' }], [{ name: 'a' }, 'upper'],
    [{ name: 'b' }, 'upper'], [{ name: '.wh.b' }],
    [{ name: 'd/new' }, 'new'], [{ name: '.wh.d' }],
  ]);
  assert.equal(await readFile(path.join(sb.target, 'a'), 'utf8'), 'upper');
  assert.equal(await readFile(path.join(sb.target, 'b'), 'utf8'), 'upper');
  assert.deepEqual(await readdir(path.join(sb.target, 'd')), ['new'], 'd from lower is hidden, the layer’s d/new stays');
});

test('whiteouts: an opaque marker empties lower content and keeps this layer’s, before or after it in the tar', async (t) => {
  const sb = await sandbox(t);
  await unpack(sb.target, [
    [{ name: 'o1/', type: 'directory' }], [{ name: 'o1/lower' }, 'l'], [{ name: 'o1/sub/', type: 'directory' }], [{ name: 'o1/sub/lower' }, 'l'],
    [{ name: 'o2/', type: 'directory' }], [{ name: 'o2/lower' }, 'l'], [{ name: 'o2/sub/', type: 'directory' }], [{ name: 'o2/sub/lower' }, 'l'],
  ]);
  await unpack(sb.target, [
    [{ name: 'o1/', type: 'directory' }], [{ name: 'o1/.wh..wh..opq' }], [{ name: 'o1/mine' }, 'm'], [{ name: 'o1/sub/mine' }, 'm'],
    [{ name: 'o2/mine' }, 'm'], [{ name: 'o2/sub/mine' }, 'm'], [{ name: 'o2/.wh..wh..opq' }],
  ]);
  for (const d of ['o1', 'o2']) {
    assert.deepEqual((await readdir(path.join(sb.target, d))).sort(), ['mine', 'sub'], d);
    assert.deepEqual(await readdir(path.join(sb.target, d, 'sub')), ['mine'], `${d}/sub`);
  }
});

// Three layers exercising whiteouts, opaque dirs (marker before and after the layer's own entries), writes and
// whiteouts through a symlinked parent, hard links losing their first name, and type changes.
const L1: TarEntry[] = [
  [{ name: 'etc/', type: 'directory', mtime: T1 }],
  [{ name: 'etc/a', mtime: T1 }, 'a1'],
  [{ name: 'etc/b', mtime: T1 }, 'b1'],
  [{ name: 'etc/sub/', type: 'directory', mtime: T1 }],
  [{ name: 'etc/sub/c', mtime: T1 }, 'c1'],
  [{ name: 'etc/sub/deep/', type: 'directory', mtime: T1 }],
  [{ name: 'etc/sub/deep/d', mtime: T1 }, 'd1'],
  [{ name: 'opt/', type: 'directory', mtime: T1 }],
  [{ name: 'opt/x/', type: 'directory', mtime: T1 }],
  [{ name: 'opt/x/1', mtime: T1 }, '1'],
  [{ name: 'opt/x/2', mtime: T1 }, '2'],
  [{ name: 'opt/x/nested/', type: 'directory', mtime: T1 }],
  [{ name: 'opt/x/nested/n', mtime: T1 }, 'n'],
  [{ name: 'var/', type: 'directory', mtime: T1 }],
  [{ name: 'var/keep', mtime: T1 }, 'keep'],
  [{ name: 'var/gone/', type: 'directory', mtime: T1 }],
  [{ name: 'var/gone/f', mtime: T1 }, 'f'],
  [{ name: 'usr/', type: 'directory', mtime: T1 }],
  [{ name: 'usr/bin/', type: 'directory', mtime: T1 }],
  [{ name: 'usr/bin/tool', mode: 0o755, mtime: T1, uid: 1000, gid: 1000 }, 'tool'],
  [{ name: 'usr/bin/su', mode: 0o4755, mtime: T1 }, 'su'],
  [{ name: 'bin', type: 'symlink', linkname: 'usr/bin', mtime: T1 }],
  [{ name: 'tmp/', type: 'directory', mode: 0o1777, mtime: T1 }],
  [{ name: 'data/', type: 'directory', mtime: T1 }],
  [{ name: 'data/hl', mtime: T1 }, 'hl'],
  [{ name: 'data/hl2', type: 'link', linkname: 'data/hl', mtime: T1 }],
];
const L2: TarEntry[] = [
  [{ name: 'etc/', type: 'directory', mtime: T2 }],
  [{ name: 'etc/.wh.a', mtime: T2 }],
  [{ name: 'etc/sub/', type: 'directory', mtime: T2 }],
  [{ name: 'etc/sub/.wh..wh..opq', mtime: T2 }],
  [{ name: 'etc/sub/new', mtime: T2 }, 'n2'],
  [{ name: 'opt/x/', type: 'directory', mtime: T2 }],
  [{ name: 'opt/x/3', mtime: T2 }, '3'],
  [{ name: 'opt/x/.wh..wh..opq', mtime: T2 }],
  [{ name: 'var/', type: 'directory', mtime: T2 }],
  [{ name: 'var/.wh.gone', mtime: T2 }],
  [{ name: 'bin/newtool', mode: 0o755, mtime: T2 }, 'newtool'],
  [{ name: 'data/', type: 'directory', mtime: T2 }],
  [{ name: 'data/.wh.hl', mtime: T2 }],
];
const L3: TarEntry[] = [
  [{ name: 'etc/', type: 'directory', mtime: T3 }],
  [{ name: 'etc/a', mtime: T3 }, 'a3'],
  [{ name: 'etc/.wh.b', mtime: T3 }],
  [{ name: 'etc/sub', mtime: T3 }, 'sub is a file now'],
  [{ name: 'opt/x/', type: 'directory', mtime: T3 }],
  [{ name: 'opt/x/.wh.3', mtime: T3 }],
  [{ name: 'opt/x/4', mtime: T3 }, '4'],
  [{ name: 'var/', type: 'directory', mtime: T3 }],
  [{ name: 'var/.wh.keep', mtime: T3 }],
  [{ name: 'var/keep/', type: 'directory', mode: 0o700, mtime: T3 }],
  [{ name: 'var/keep/inner', mtime: T3 }, 'inner'],
  [{ name: 'bin/.wh.tool', mtime: T3 }],
];

test('whiteouts: three layers give the expected rootfs', async (t) => {
  const sb = await sandbox(t);
  for (const l of [L1, L2, L3]) await unpack(sb.target, l);
  const tree = await describeTree(sb.target, { owners: false, mtimes: false });
  assert.deepEqual(Object.keys(tree).sort(), [
    '', 'bin', 'data', 'data/hl2', 'etc', 'etc/a', 'etc/sub', 'opt', 'opt/x', 'opt/x/4', 'tmp',
    'usr', 'usr/bin', 'usr/bin/newtool', 'usr/bin/su', 'var', 'var/keep', 'var/keep/inner',
  ]);
  assert.equal(await readFile(path.join(sb.target, 'etc/a'), 'utf8'), 'a3');
  assert.equal(await readFile(path.join(sb.target, 'data/hl2'), 'utf8'), 'hl');
  assert.equal(tree['usr/bin/su']?.mode, '4755');
  assert.equal(tree['tmp']?.mode, '1777');
  assert.equal(tree['var/keep']?.mode, '0700');
});

test('whiteouts: three layers unpack to the same tree as `umoci unpack --rootless`', async (t) => {
  const sb = await sandbox(t);
  const layout = path.join(sb.base, 'layout');
  const bundle = path.join(sb.base, 'bundle');
  t.after(async () => {
    await rm(layout, { recursive: true, force: true });
    await rm(bundle, { recursive: true, force: true });
  });
  const tars = [await tarOf(L1), await tarOf(L2), await tarOf(L3)];
  await writeLayout(layout, tars);
  await runBytes('umoci', ['unpack', '--rootless', '--image', `${layout}:test`, bundle]);
  // umoci --rootless does not chown: compare with ownership ignored.
  for (const tar of tars) await unpackLayer(streamOf(tar), sb.target, { ownership: 'ignore' });
  const opts = { mtimes: (rel: string) => rel !== '' }; // the root has no entry: its time is "now" on both sides
  assert.deepEqual(await describeTree(sb.target, opts), await describeTree(path.join(bundle, 'rootfs'), opts));
});

// ---------------------------------------------------------------- as an ordinary user

const UNPACK_MODULE = fileURLToPath(new URL('../../src/layer/unpack.ts', import.meta.url));

/** Runs unpackLayer on each layer (as files) in a child process as `uid`, returns its warnings. */
function unpackAs(uid: number, gid: number, target: string, layerFiles: string[]): Promise<string[]> {
  const script = `
    import { createReadStream } from 'node:fs';
    const { unpackLayer } = await import(${JSON.stringify(UNPACK_MODULE)});
    const warnings = [];
    for (const f of ${JSON.stringify(layerFiles)}) await unpackLayer(createReadStream(f), ${JSON.stringify(target)}, { onWarning: (w) => warnings.push(w) });
    process.stdout.write(JSON.stringify(warnings));
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { uid, gid, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(`child exit ${code}: ${err}`))));
  });
}

test('as an ordinary user: read-only dirs, foreign owners and whiteouts inside read-only dirs', async (t) => {
  const sb = await sandbox(t);
  const uid = isRoot() ? 65534 : (process.getuid?.() ?? 0);
  const gid = isRoot() ? 65534 : (process.getgid?.() ?? 0);
  const files: string[] = [];
  const layers: TarEntry[][] = [
    [
      [{ name: 'ro/', type: 'directory', mode: 0o555, mtime: T1, uid: 0, gid: 0 }],
      [{ name: 'ro/f', mode: 0o444, mtime: T1, uid: 0, gid: 0 }, 'f'],
      [{ name: 'ro/locked/', type: 'directory', mode: 0o500, mtime: T1 }],
      [{ name: 'ro/locked/old', mode: 0o400, mtime: T1 }, 'old'],
      [{ name: 'ro/gone/', type: 'directory', mode: 0o500, mtime: T1 }],
      [{ name: 'ro/gone/x/', type: 'directory', mode: 0o000, mtime: T1 }],
      [{ name: 'ro/gone/x/y', mode: 0o000, mtime: T1 }, 'y'],
      [{ name: 'suid', mode: 0o4755, mtime: T1, uid: 0, gid: 0 }, 's'],
    ],
    [
      [{ name: 'ro/.wh.f', mtime: T2 }],
      [{ name: 'ro/.wh.gone', mtime: T2 }],
      [{ name: 'ro/locked/new', mtime: T2 }, 'new'],
      [{ name: 'ro/locked/.wh.old', mtime: T2 }],
    ],
  ];
  for (const [i, l] of layers.entries()) {
    const f = path.join(sb.base, `layer${i}.tar`);
    await writeFile(f, await tarOf(l));
    files.push(f);
  }
  const target = path.join(sb.base, 'user-rootfs');
  await mkdir(target);
  if (isRoot()) {
    await chmod(sb.base, 0o755); // mkdtemp's 0700 would keep the child out
    await chown(target, uid, gid);
  }

  const warnings = await unpackAs(uid, gid, target, files);
  if (isRoot()) {
    assert.equal(warnings.length, 2, warnings.join('\n')); // once per layer: chown is given up after the first EPERM
    assert.match(warnings[0] ?? '', /^layer entry "ro\/": cannot set owner 0:0 \(EPERM\); files keep the current user as owner/);
  }
  const tree = await describeTree(target, { mtimes: (rel) => rel !== '' });
  assert.deepEqual(tree, {
    '': { type: 'dir', mode: '0755', uid, gid },
    ro: { type: 'dir', mode: '0555', uid, gid, mtime: T1.getTime() / 1000 },
    'ro/locked': { type: 'dir', mode: '0500', uid, gid, mtime: T1.getTime() / 1000 },
    'ro/locked/new': { type: 'file', mode: '0644', uid, gid, mtime: T2.getTime() / 1000, sha: '11507a0e2f5e' },
    suid: { type: 'file', mode: '4755', uid, gid, mtime: T1.getTime() / 1000, sha: '043a718774c5' },
  });
});
