import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { chmod, chown, link, lutimes, mkdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { diffUpperDir } from '../../src/layer/diff.ts';
import { unpackLayer } from '../../src/layer/unpack.ts';
import { readAll } from '../../src/util/stream.ts';
import { describeTree, isRoot, listTar, runBytes, sandbox, streamOf, tarOf, type ListedEntry, type TarEntry } from './helpers.ts';

const T1 = new Date('2020-01-01T00:00:00Z');
const T2 = new Date('2021-01-01T00:00:00Z');
const T3 = new Date('2022-01-01T00:00:00Z');
const FUTURE = new Date('2030-01-01T00:00:00Z');
const s = (d: Date): number => d.getTime() / 1000;

const BIG = Buffer.alloc(2 * 1024 * 1024 + 5);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 7919) % 251;

async function mknodWhiteout(p: string): Promise<void> {
  await runBytes('mknod', [p, 'c', '0', '0']);
}

function tarBytes(stream: Readable): Promise<Buffer> {
  return readAll(stream, 64 * 1024 * 1024);
}

/** An upper dir as overlay leaves it after a container ran: changes, whiteouts (0:0 devices), an opaque dir, runc's mountpoints. */
async function makeUpper(upper: string): Promise<void> {
  const f = (p: string) => path.join(upper, p);
  for (const d of ['bin', 'etc', 'opt/app', 'dev', 'run']) await mkdir(f(d), { recursive: true });
  await writeFile(f('bin/tool'), 'tool\n');
  await chmod(f('bin/tool'), 0o755);
  await link(f('bin/tool'), f('bin/tool-alias'));
  await writeFile(f('bin/su'), 'su\n');
  await chmod(f('bin/su'), 0o4755);
  await writeFile(f('etc/conf'), 'conf\n');
  await chmod(f('etc/conf'), 0o600);
  await chown(f('etc/conf'), 1000, 1001);
  await mknodWhiteout(f('etc/old'));
  await writeFile(f('etc/zero'), '');
  await chmod(f('etc/zero'), 0o000);
  await symlink('etc/conf', f('link'));
  await writeFile(f('opt/app/new'), 'new\n');
  await runBytes('mknod', [f('dev/null'), 'c', '1', '3']);
  await runBytes('mkfifo', [f('run/fifo')]);
  await runBytes('mknod', [f('run/loop9'), 'b', '7', '9']);
  await writeFile(f('big'), BIG);
  await writeFile(f('high-uid'), 'h\n');
  await chown(f('high-uid'), 300000, 300001);
  await writeFile(f('ä'), 'umlaut\n');
  for (const p of ['bin/tool', 'bin/su', 'etc/conf', 'etc/old', 'etc/zero', 'opt/app/new', 'run/fifo', 'run/loop9', 'high-uid', 'ä']) await utimes(f(p), T1, T1);
  await utimes(f('big'), FUTURE, FUTURE);
  await lutimes(f('link'), T1, T1);
  for (const p of ['bin', 'etc', 'opt/app', 'opt', 'dev', 'run']) await utimes(f(p), T2, T2);
}

const EXPECTED: ListedEntry[] = [
  { name: 'big', type: 'file', mode: '0644', uid: 0, gid: 0, size: BIG.length, mtime: s(T3), sha: '' },
  { name: 'bin/', type: 'directory', mode: '0755', uid: 0, gid: 0, size: 0, mtime: s(T2) },
  { name: 'bin/su', type: 'file', mode: '4755', uid: 0, gid: 0, size: 3, mtime: s(T1), sha: '' },
  { name: 'bin/tool', type: 'file', mode: '0755', uid: 0, gid: 0, size: 5, mtime: s(T1), sha: '' },
  { name: 'bin/tool-alias', type: 'link', mode: '0755', uid: 0, gid: 0, size: 0, mtime: s(T1), linkname: 'bin/tool' },
  { name: 'etc/', type: 'directory', mode: '0755', uid: 0, gid: 0, size: 0, mtime: s(T2) },
  { name: 'etc/conf', type: 'file', mode: '0600', uid: 1000, gid: 1001, size: 5, mtime: s(T1), sha: '' },
  { name: 'etc/.wh.old', type: 'file', mode: '0000', uid: 0, gid: 0, size: 0, mtime: s(T1) },
  { name: 'etc/zero', type: 'file', mode: '0000', uid: 0, gid: 0, size: 0, mtime: s(T1) },
  { name: 'high-uid', type: 'file', mode: '0644', uid: 0o777777, gid: 0o777777, size: 2, mtime: s(T1), pax: { uid: '300000', gid: '300001' }, sha: '' },
  { name: 'link', type: 'symlink', mode: '0777', uid: 0, gid: 0, size: 0, mtime: s(T1), linkname: 'etc/conf' },
  { name: 'opt/', type: 'directory', mode: '0755', uid: 0, gid: 0, size: 0, mtime: s(T2) },
  { name: 'opt/app/', type: 'directory', mode: '0755', uid: 0, gid: 0, size: 0, mtime: s(T2) },
  { name: 'opt/app/.wh..wh..opq', type: 'file', mode: '0000', uid: 0, gid: 0, size: 0, mtime: s(T2) },
  { name: 'opt/app/new', type: 'file', mode: '0644', uid: 0, gid: 0, size: 4, mtime: s(T1), sha: '' },
  { name: 'run/', type: 'directory', mode: '0755', uid: 0, gid: 0, size: 0, mtime: s(T2) },
  { name: 'run/fifo', type: 'fifo', mode: '0644', uid: 0, gid: 0, size: 0, mtime: s(T1) },
  { name: 'run/loop9', type: 'block-device', mode: '0644', uid: 0, gid: 0, size: 0, mtime: s(T1), devmajor: 7, devminor: 9 },
  { name: 'ä', type: 'file', mode: '0644', uid: 0, gid: 0, size: 7, mtime: s(T1), sha: '' },
];

const diffOpts = {
  exclude: (rel: string) => rel === 'dev',
  opaqueXattr: async (abs: string) => abs.endsWith('/opt/app'),
  mtimeClamp: T3,
};

const rootOnly = { skip: !isRoot() && 'mknod, chown and whiteout devices need root' };

test('diff: an upper dir gives exactly the expected entries, in order', rootOnly, async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  await makeUpper(upper);
  const excluded: string[] = [];
  const tar = await tarBytes(diffUpperDir(upper, {
    ...diffOpts,
    exclude: (rel, st) => {
      if (rel === 'dev') {
        assert.ok(st.isDirectory());
        excluded.push(rel);
        return true;
      }
      return false;
    },
  }));
  assert.deepEqual(excluded, ['dev']);
  const entries = await listTar(tar);
  const shaOf = async (p: string): Promise<string> => (await listTar(await tarOf([[{ name: 'x' }, await readFile(path.join(upper, p))]])))[0]?.sha ?? '';
  const expected = await Promise.all(EXPECTED.map(async (e) => (e.sha === '' ? { ...e, sha: await shaOf(e.name) } : e)));
  assert.deepEqual(entries, expected);

  // GNU tar reads it and sees the pax uid/gid and the non-ASCII name.
  await writeFile(path.join(sb.base, 'l.tar'), tar);
  const gnu = (await runBytes('tar', ['--numeric-owner', '-tvf', path.join(sb.base, 'l.tar')])).toString();
  assert.match(gnu, /^-rw-r--r-- 300000\/300001 +2 2020-01-01 00:00 high-uid$/m);
  assert.match(gnu, /^-rw-r--r-- 0\/0 +7 2020-01-01 00:00 ä$/m);
  assert.match(gnu, /^hrwxr-xr-x 0\/0 +0 2020-01-01 00:00 bin\/tool-alias link to bin\/tool$/m);
  // No atime/ctime/uname noise: pax records only where ustar cannot hold the value.
  assert.deepEqual(entries.filter((e) => e.pax !== undefined).map((e) => e.name), ['high-uid']);
});

test('diff: the same tree gives byte-identical tars (reading files or touching ctime changes nothing)', rootOnly, async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  await makeUpper(upper);
  const a = await tarBytes(diffUpperDir(upper, diffOpts));
  await readFile(path.join(upper, 'big'));
  await chmod(path.join(upper, 'bin/su'), 0o4755); // ctime moves
  const b = await tarBytes(diffUpperDir(upper, diffOpts));
  assert.ok(a.length > BIG.length);
  assert.ok(a.equals(b), 'two runs differ');
});

test('diff: an upper dir that is not a directory fails the stream with a one-line error', async (t) => {
  const sb = await sandbox(t);
  const file = path.join(sb.base, 'outside', 'keep');
  await assert.rejects(tarBytes(diffUpperDir(file)), { code: 'BAD_UPPER', message: `upper dir ${file} is not a directory; pass the overlay upperdir of the container` });
  const missing = path.join(sb.base, 'missing');
  await assert.rejects(tarBytes(diffUpperDir(missing)), { code: 'BAD_UPPER', message: `upper dir ${missing} does not exist; pass the overlay upperdir of the container` });
});

test('diff: an unreadable directory fails the stream with DIFF_FAILED naming it', { skip: isRoot() && 'root reads everything' }, async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  await mkdir(path.join(upper, 'closed'), { recursive: true });
  await chmod(path.join(upper, 'closed'), 0o000);
  await assert.rejects(tarBytes(diffUpperDir(upper)), {
    code: 'DIFF_FAILED',
    message: `upper dir ${upper}: cannot read at ${path.join(upper, 'closed')} (EACCES); check that the container has stopped and the directory is readable`,
  });
});

test('diff: works without whiteouts as any user; mtime clamp only lowers', async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  await mkdir(path.join(upper, 'd'), { recursive: true });
  await writeFile(path.join(upper, 'd/old'), 'o');
  await writeFile(path.join(upper, 'd/new'), 'n');
  await utimes(path.join(upper, 'd/old'), T1, T1);
  await utimes(path.join(upper, 'd/new'), FUTURE, FUTURE);
  await utimes(path.join(upper, 'd'), T2, T2);
  const entries = await listTar(await tarBytes(diffUpperDir(upper, { mtimeClamp: T3 })));
  assert.deepEqual(entries.map((e) => [e.name, e.mtime]), [['d/', s(T2)], ['d/new', s(T3)], ['d/old', s(T1)]]);
  const unclamped = await listTar(await tarBytes(diffUpperDir(upper)));
  assert.equal(unclamped[1]?.mtime, s(FUTURE));
});

// Round trip: a lower rootfs, a container's changes recorded in an upper dir the way overlay records them,
// the layer diffUpperDir makes of it, and that layer unpacked onto the lower rootfs must equal the tree the
// container saw (made here by applying the same changes to a copy of the lower tree directly).
const BASE: TarEntry[] = [
  [{ name: 'etc/', type: 'directory', mtime: T1 }],
  [{ name: 'etc/keep', mtime: T1 }, 'keep'],
  [{ name: 'etc/gone', mtime: T1 }, 'gone'],
  [{ name: 'etc/changed', mtime: T1 }, 'v1'],
  [{ name: 'var/', type: 'directory', mtime: T1 }],
  [{ name: 'var/cache/', type: 'directory', mtime: T1 }],
  [{ name: 'var/cache/a', mtime: T1 }, 'a'],
  [{ name: 'var/cache/sub/', type: 'directory', mtime: T1 }],
  [{ name: 'var/cache/sub/b', mtime: T1 }, 'b'],
  [{ name: 'var/lib/', type: 'directory', mtime: T1 }],
  [{ name: 'var/lib/db', mtime: T1 }, 'db'],
  [{ name: 'usr/', type: 'directory', mtime: T1 }],
  [{ name: 'usr/bin/', type: 'directory', mtime: T1 }],
  [{ name: 'usr/bin/sh', mode: 0o755, mtime: T1 }, 'sh'],
];

test('diff: round trip — diff of an upper dir unpacked onto the lower tree gives what the container saw', rootOnly, async (t) => {
  const sb = await sandbox(t);
  const base = await tarOf(BASE);
  const lower = path.join(sb.base, 'lower');
  const seen = path.join(sb.base, 'seen');
  const upper = path.join(sb.base, 'upper');
  await unpackLayer(streamOf(base), lower);
  await unpackLayer(streamOf(base), seen);
  const f = (root: string, p: string) => path.join(root, p);

  // The container's view: changes applied directly.
  await rm(f(seen, 'etc/gone'));
  await writeFile(f(seen, 'etc/changed'), 'v2');
  await rm(f(seen, 'var/cache'), { recursive: true });
  await mkdir(f(seen, 'var/cache'));
  await writeFile(f(seen, 'var/cache/fresh'), 'fresh');
  await rm(f(seen, 'var/lib'), { recursive: true });
  await mkdir(f(seen, 'srv/www'), { recursive: true });
  await writeFile(f(seen, 'srv/www/index.html'), '<h1>hi</h1>');
  await link(f(seen, 'srv/www/index.html'), f(seen, 'srv/www/default.html'));
  await symlink('../usr/bin/sh', f(seen, 'etc/shell'));

  // The same changes as overlay records them in the upper dir.
  await mkdir(f(upper, 'etc'), { recursive: true });
  await mknodWhiteout(f(upper, 'etc/gone'));
  await writeFile(f(upper, 'etc/changed'), 'v2');
  await symlink('../usr/bin/sh', f(upper, 'etc/shell'));
  await mkdir(f(upper, 'var/cache'), { recursive: true }); // opaque: removed and re-created
  await writeFile(f(upper, 'var/cache/fresh'), 'fresh');
  await mknodWhiteout(f(upper, 'var/lib'));
  await mkdir(f(upper, 'srv/www'), { recursive: true });
  await writeFile(f(upper, 'srv/www/index.html'), '<h1>hi</h1>');
  await link(f(upper, 'srv/www/index.html'), f(upper, 'srv/www/default.html'));
  // Times as the container left them: copy them from the container's view.
  for (const p of ['etc/changed', 'var/cache/fresh', 'srv/www/index.html']) await utimes(f(upper, p), T3, T3);
  for (const p of ['etc/changed', 'var/cache/fresh', 'srv/www/index.html']) await utimes(f(seen, p), T3, T3);
  await lutimes(f(upper, 'etc/shell'), T3, T3);
  await lutimes(f(seen, 'etc/shell'), T3, T3);
  for (const p of ['var/cache', 'srv/www', 'srv', 'etc', 'var']) {
    await utimes(f(upper, p), T2, T2);
    await utimes(f(seen, p), T2, T2);
  }

  const layer = await tarBytes(diffUpperDir(upper, { opaqueXattr: async (abs) => abs === f(upper, 'var/cache') }));
  const names = (await listTar(layer)).map((e) => e.name);
  assert.deepEqual(names, [
    'etc/', 'etc/changed', 'etc/.wh.gone', 'etc/shell',
    'srv/', 'srv/www/', 'srv/www/default.html', 'srv/www/index.html',
    'var/', 'var/cache/', 'var/cache/.wh..wh..opq', 'var/cache/fresh', 'var/.wh.lib',
  ]);
  await unpackLayer(streamOf(layer), lower);
  const opts = { mtimes: (rel: string) => rel !== '' };
  assert.deepEqual(await describeTree(lower, opts), await describeTree(seen, opts));
});

test('diff: a reader that stops early ends the walk without a crash or a leaked descriptor', async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  await mkdir(upper);
  for (let i = 0; i < 8; i++) await writeFile(path.join(upper, `f${i}`), BIG);
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const before = fds();
  for (let stopAfter = 1; stopAfter <= 5; stopAfter++) {
    let n = 0;
    for await (const chunk of diffUpperDir(upper)) {
      n += (chunk as Buffer).length;
      if (n >= stopAfter * BIG.length) break;
    }
  }
  // The walk notices the destroyed pack at its next write: give it a few turns of the event loop.
  for (let i = 0; i < 50 && fds() !== before; i++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(fds(), before);
});
