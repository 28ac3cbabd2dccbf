/** The unpacked-layer cache: atomic completeness, verification against the diffID, concurrency, and real use under overlay. */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { Snapshots } from '../../src/store/snapshots.ts';
import { isRoot, tarOf, type TarEntry } from '../layer/helpers.ts';

const SNAPSHOTS_MODULE = fileURLToPath(new URL('../../src/store/snapshots.ts', import.meta.url));

const diffIDOf = (tar: Buffer): string => `sha256:${createHash('sha256').update(tar).digest('hex')}`;

async function tempStore(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hoist-snap-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A layer as a stream handed out in small chunks (so unpacking takes several turns of the event loop). */
function chunked(tar: Buffer, size = 4096): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < tar.length; i += size) parts.push(tar.subarray(i, i + size));
  return Readable.from(parts);
}

const LAYER: TarEntry[] = [
  [{ name: 'etc/', type: 'directory' }],
  [{ name: 'etc/os-release' }, 'ID=test\n'],
  [{ name: 'bin/', type: 'directory' }],
  [{ name: 'bin/sh', mode: 0o755 }, '#!/bin/true\n'],
];

test('snapshots: ensure unpacks once into <store>/snapshots/<hex>/fs; has, list and remove agree', async (t) => {
  const store = await tempStore(t);
  const tar = await tarOf(LAYER);
  const diffID = diffIDOf(tar);
  const snaps = new Snapshots(store);
  const expected = path.join(store, 'snapshots', diffID.slice('sha256:'.length), 'fs');
  assert.equal(snaps.dir(diffID), expected);
  assert.equal(snaps.has(diffID), false);
  assert.deepEqual(await snaps.list(), []);

  let opened = 0;
  const open = async (): Promise<Readable> => {
    opened++;
    return chunked(tar);
  };
  assert.equal(await snaps.ensure(diffID, open), expected);
  assert.equal(await readFile(path.join(expected, 'etc/os-release'), 'utf8'), 'ID=test\n');
  assert.equal(snaps.has(diffID), true);
  assert.deepEqual(await snaps.list(), [diffID]);
  assert.equal(await snaps.ensure(diffID, open), expected);
  assert.equal(opened, 1, 'a present snapshot is not unpacked again');
  // Only the snapshot: no temp dirs, and the snapshot dir is private (it holds the image's setuid files).
  assert.deepEqual(await readdir(path.join(store, 'snapshots')), [diffID.slice('sha256:'.length)]);
  assert.equal((await lstat(path.dirname(expected))).mode & 0o777, 0o700);

  await snaps.remove(diffID);
  assert.equal(snaps.has(diffID), false);
  assert.deepEqual(await snaps.list(), []);
  assert.deepEqual(await readdir(path.join(store, 'snapshots')), []);
  await snaps.remove(diffID); // absent: no-op
});

test('snapshots: two concurrent ensure() calls with their own streams both succeed and leave one snapshot', async (t) => {
  const store = await tempStore(t);
  const entries: TarEntry[] = [[{ name: 'd/', type: 'directory' }]];
  for (let i = 0; i < 300; i++) entries.push([{ name: `d/f${i}` }, `file ${i}\n`]);
  const tar = await tarOf(entries);
  const diffID = diffIDOf(tar);
  const snaps = new Snapshots(store);
  let opened = 0;
  const open = async (): Promise<Readable> => {
    opened++;
    return chunked(tar, 1024);
  };
  const [a, b] = await Promise.all([snaps.ensure(diffID, open), snaps.ensure(diffID, open)]);
  assert.equal(opened, 2, 'both calls unpacked (neither saw the other’s result in time)');
  assert.equal(a, snaps.dir(diffID));
  assert.equal(b, a);
  assert.deepEqual(await readdir(path.join(store, 'snapshots')), [diffID.slice('sha256:'.length)]);
  assert.equal((await readdir(path.join(a, 'd'))).length, 300);
});

test('snapshots: two processes ensuring the same layer at once both succeed and leave one snapshot', async (t) => {
  const store = await tempStore(t);
  const entries: TarEntry[] = [[{ name: 'd/', type: 'directory' }]];
  for (let i = 0; i < 2000; i++) entries.push([{ name: `d/f${i}` }, `file ${i}\n`]);
  const tar = await tarOf(entries);
  const diffID = diffIDOf(tar);
  const tarFile = path.join(store, 'layer.tar');
  await writeFile(tarFile, tar);
  const script = `
    import { createReadStream } from 'node:fs';
    const { Snapshots } = await import(${JSON.stringify(SNAPSHOTS_MODULE)});
    const dir = await new Snapshots(${JSON.stringify(store)}).ensure(${JSON.stringify(diffID)}, async () => createReadStream(${JSON.stringify(tarFile)}, { highWaterMark: 4096 }));
    process.stdout.write(dir);
  `;
  const run = (): Promise<string> => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exit ${code}: ${err}`))));
  });
  const dirs = await Promise.all([run(), run(), run()]);
  const snaps = new Snapshots(store);
  assert.deepEqual(dirs, [snaps.dir(diffID), snaps.dir(diffID), snaps.dir(diffID)]);
  assert.deepEqual(await readdir(path.join(store, 'snapshots')), [diffID.slice('sha256:'.length)]);
  assert.equal((await readdir(path.join(snaps.dir(diffID), 'd'))).length, 2000);
});

test('snapshots: content that does not match the diffID is refused and nothing is left behind', async (t) => {
  const store = await tempStore(t);
  const tar = await tarOf(LAYER);
  const wrong = diffIDOf(Buffer.from('something else'));
  const snaps = new Snapshots(store);
  await assert.rejects(snaps.ensure(wrong, async () => chunked(tar)), {
    code: 'DIGEST_MISMATCH',
    message: `layer ${wrong} (uncompressed): content does not match its digest (expected ${wrong}, got ${diffIDOf(tar)}); the source is corrupt or was tampered with`,
  });
  assert.equal(snaps.has(wrong), false);
  assert.deepEqual(await readdir(path.join(store, 'snapshots')), []);
  assert.deepEqual(await snaps.list(), []);
});

test('snapshots: a failing source, a damaged tar or a failing open leave nothing behind', async (t) => {
  const store = await tempStore(t);
  const tar = await tarOf(LAYER);
  const diffID = diffIDOf(tar);
  const snaps = new Snapshots(store);
  const boom = new Error('network went away');
  const failing = new Readable({
    read() {
      this.push(tar.subarray(0, 1536));
      this.destroy(boom);
    },
  });
  await assert.rejects(snaps.ensure(diffID, async () => failing), boom);
  await assert.rejects(snaps.ensure(diffID, async () => chunked(Buffer.alloc(2048, 7))), { code: 'BAD_LAYER' });
  await assert.rejects(snaps.ensure(diffID, async () => {
    throw boom;
  }), boom);
  assert.equal(snaps.has(diffID), false);
  assert.deepEqual(await readdir(path.join(store, 'snapshots')), []);
  // And then a good stream still works.
  await snaps.ensure(diffID, async () => chunked(tar));
  assert.equal(snaps.has(diffID), true);
});

test('snapshots: malformed diffIDs are refused before touching the filesystem', async (t) => {
  const store = await tempStore(t);
  const snaps = new Snapshots(store);
  for (const bad of ['sha256:../../etc', 'sha256:ABC', '../x', 'md5:d41d8cd98f00b204e9800998ecf8427e']) {
    assert.throws(() => snaps.dir(bad), { code: 'BAD_DIGEST' });
    await assert.rejects(snaps.ensure(bad, async () => chunked(Buffer.alloc(0))), { code: 'BAD_DIGEST' });
    await assert.rejects(snaps.remove(bad), { code: 'BAD_DIGEST' });
  }
  assert.deepEqual(await readdir(store), []);
});

// ---------------------------------------------------------------- end to end, rootless

const CI_USER = process.env['HOIST_CI_USER'] ?? 'hoistci';

function userIds(name: string): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim());
    const gid = Number(execFileSync('id', ['-g', name], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

const ci = isRoot() ? userIds(CI_USER) : undefined;

test(`snapshots: as ${CI_USER} in a user namespace, two layers mounted as overlay (userxattr) show the merged view`, {
  skip: !isRoot() ? 'needs root to switch to the unprivileged user' : ci === undefined ? `no user ${CI_USER} (set HOIST_CI_USER)` : false,
}, async (t) => {
  const { uid, gid } = ci as { uid: number; gid: number };
  const base = await mkdtemp(path.join(os.tmpdir(), 'hoist-snap-userns-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const store = path.join(base, 'store');
  for (const d of ['store', 'upper', 'work', 'merged']) await mkdir(path.join(base, d));

  const l1 = await tarOf([
    [{ name: 'etc/', type: 'directory' }], [{ name: 'etc/passwd' }, 'root:x:0:0::/root:/bin/sh\n'],
    [{ name: 'etc/gone' }, 'g'], [{ name: 'etc/also-gone' }, 'g'],
    [{ name: 'opt/', type: 'directory' }], [{ name: 'opt/app/', type: 'directory' }], [{ name: 'opt/app/old' }, 'o'],
    [{ name: 'opt/app/sub/', type: 'directory' }], [{ name: 'opt/app/sub/x' }, 'x'],
  ]);
  const l2 = await tarOf([
    [{ name: 'etc/', type: 'directory' }], [{ name: 'etc/.wh.gone' }],
    [{ name: 'etc/also-gone', type: 'character-device', devmajor: 0, devminor: 0 }],
    [{ name: 'opt/app/', type: 'directory' }], [{ name: 'opt/app/.wh..wh..opq' }], [{ name: 'opt/app/new' }, 'new\n'],
    [{ name: 'home/', type: 'directory' }],
    [{ name: 'home/user/', type: 'directory', uid: 1000, gid: 1000, mode: 0o700 }],
    [{ name: 'home/user/file', uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.user.note': 'kept' } }, 'mine\n'],
  ]);
  const layers = [];
  for (const [i, tar] of [l1, l2].entries()) {
    const file = path.join(base, `l${i + 1}.tar`);
    await writeFile(file, tar);
    layers.push({ file, diffID: diffIDOf(tar) });
  }
  for (const p of [base, ...['store', 'upper', 'work', 'merged', 'l1.tar', 'l2.tar'].map((n) => path.join(base, n))]) await chown(p, uid, gid);

  const script = `
    import { createReadStream, lstatSync, readFileSync } from 'node:fs';
    import { execFileSync } from 'node:child_process';
    import { getAttributeSync } from '@napi-rs/xattr';
    const { Snapshots } = await import(${JSON.stringify(SNAPSHOTS_MODULE)});
    const layers = ${JSON.stringify(layers)};
    const snaps = new Snapshots(${JSON.stringify(store)});
    const warnings = [];
    const dirs = [];
    for (const l of layers) dirs.push(await snaps.ensure(l.diffID, async () => createReadStream(l.file), { onWarning: (w) => warnings.push(w) }));
    const m = ${JSON.stringify(path.join(base, 'merged'))};
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o',
      'userxattr,lowerdir=' + [...dirs].reverse().join(':') + ',upperdir=${path.join(base, 'upper')},workdir=${path.join(base, 'work')}', m]);
    const tree = execFileSync('find', ['.'], { cwd: m }).toString().trim().split('\\n').sort();
    const st = lstatSync(m + '/home/user/file');
    const result = {
      tree, warnings,
      owner: [st.uid, st.gid],
      content: readFileSync(m + '/opt/app/new', 'utf8'),
      note: getAttributeSync(m + '/home/user/file', 'user.note')?.toString(),
    };
    execFileSync('umount', [m]);
    // Files owned by container users can only be removed from inside the namespace.
    await snaps.remove(layers[0].diffID);
    result.after = await snaps.list();
    process.stdout.write(JSON.stringify(result));
  `;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('runuser', ['-u', CI_USER, '--', 'unshare', '--user', '--map-root-user', '--map-auto', '--mount', '--fork',
      process.execPath, '--input-type=module', '-e', script], { cwd: path.join(fileURLToPath(new URL('../..', import.meta.url))), stdio: ['ignore', 'pipe', 'pipe'] });
    let s = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (s += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(s) : reject(new Error(`exit ${code}: ${err}`))));
  });
  const r = JSON.parse(out) as { tree: string[]; warnings: string[]; owner: number[]; content: string; note: string; after: string[] };
  assert.deepEqual(r.warnings, []);
  assert.deepEqual(r.tree, ['.', './etc', './etc/passwd', './home', './home/user', './home/user/file', './opt', './opt/app', './opt/app/new']);
  assert.deepEqual(r.owner, [1000, 1000]);
  assert.equal(r.content, 'new\n');
  assert.equal(r.note, 'kept');
  assert.deepEqual(r.after, [layers[1]?.diffID]);

  // Seen from the host: the container's uid 1000 is a subordinate id of the user, the snapshot root is the user.
  const snaps = new Snapshots(store);
  const file = await lstat(path.join(snaps.dir(layers[1]?.diffID ?? ''), 'home/user/file'));
  assert.ok(file.uid >= 100000 && file.uid !== uid, `uid ${file.uid} should be a subordinate id`);
  assert.equal((await lstat(snaps.dir(layers[1]?.diffID ?? ''))).uid, uid);
  assert.deepEqual(await readdir(path.join(store, 'snapshots')), [(layers[1]?.diffID ?? '').slice('sha256:'.length)]);
});
