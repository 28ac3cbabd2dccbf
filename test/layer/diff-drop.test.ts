/** diffUpperDir's dropIfUnchanged: directories left with nothing below them can be left out of the layer. */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { setAttributeSync } from '@napi-rs/xattr';
import { diffUpperDir } from '../../src/layer/diff.ts';
import { readAll } from '../../src/util/stream.ts';
import { listTar, sandbox } from './helpers.ts';

function tarBytes(stream: Readable): Promise<Buffer> {
  return readAll(stream, 64 * 1024 * 1024);
}

async function makeTree(root: string, files: readonly string[], dirs: readonly string[] = []): Promise<void> {
  for (const d of dirs) await mkdir(path.join(root, d), { recursive: true });
  for (const f of files) {
    await mkdir(path.join(root, path.dirname(f)), { recursive: true });
    await writeFile(path.join(root, f), f);
  }
}

// What runc leaves in the upper dir of a `RUN true`: mountpoints it made, and their parents copied up.
const MOUNTPOINTS = ['etc/hosts', 'etc/resolv.conf', 'etc/hostname', 'dev', 'proc', 'sys'];
const isMountpoint = (rel: string): boolean => MOUNTPOINTS.includes(rel);

test('dropIfUnchanged: a tree whose only content is excluded gives a layer with zero entries', async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  t.after(() => rm(upper, { recursive: true, force: true }));
  await makeTree(upper, ['etc/hosts', 'etc/resolv.conf', 'etc/hostname'], ['dev/pts', 'proc', 'sys', 'run/secrets/empty']);
  const asked: string[] = [];
  const tar = await tarBytes(diffUpperDir(upper, {
    exclude: isMountpoint,
    dropIfUnchanged: (rel, st) => {
      assert.ok(st.isDirectory());
      asked.push(rel);
      return true;
    },
  }));
  assert.deepEqual(await listTar(tar), []);
  assert.ok(tar.equals(Buffer.alloc(1024)), 'just the end-of-archive blocks');
  // Deepest first (post-order), and never about excluded paths.
  assert.deepEqual(asked, ['etc', 'run/secrets/empty', 'run/secrets', 'run']);
});

test('dropIfUnchanged: a directory with an emitted child still comes first, before its child', async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  t.after(() => rm(upper, { recursive: true, force: true }));
  await makeTree(upper, ['etc/hosts', 'etc/app/conf', 'etc/z', 'usr/lib/x/y/file'], ['dev', 'usr/share/empty']);
  const entries = await listTar(await tarBytes(diffUpperDir(upper, { exclude: isMountpoint, dropIfUnchanged: () => true })));
  assert.deepEqual(entries.map((e) => e.name), [
    'etc/', 'etc/app/', 'etc/app/conf', 'etc/z',
    'usr/', 'usr/lib/', 'usr/lib/x/', 'usr/lib/x/y/', 'usr/lib/x/y/file',
  ]);
});

test('dropIfUnchanged: only the directories it answers true for are dropped; order stays pre-order', async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  t.after(() => rm(upper, { recursive: true, force: true }));
  await makeTree(upper, ['b'], ['a/b/c', 'a/b2', 'changed/same']);
  const entries = await listTar(await tarBytes(diffUpperDir(upper, { dropIfUnchanged: (rel) => rel !== 'a/b' && rel !== 'changed' })));
  // a/b/c dropped; a/b kept (changed), so a comes with it; a/b2 dropped; changed kept though its child is dropped.
  assert.deepEqual(entries.map((e) => e.name), ['a/', 'a/b/', 'b', 'changed/']);
  // Without the option every directory is emitted, in the same order as before.
  const all = await listTar(await tarBytes(diffUpperDir(upper)));
  assert.deepEqual(all.map((e) => e.name), ['a/', 'a/b/', 'a/b/c/', 'a/b2/', 'b', 'changed/', 'changed/same/']);
});

test('dropIfUnchanged: an opaque directory is a change even when empty (never asked about)', async (t) => {
  const sb = await sandbox(t);
  const upper = path.join(sb.base, 'upper');
  t.after(() => rm(upper, { recursive: true, force: true }));
  await makeTree(upper, [], ['var/cache']);
  setAttributeSync(path.join(upper, 'var/cache'), 'user.overlay.opaque', 'y');
  const asked: string[] = [];
  const entries = await listTar(await tarBytes(diffUpperDir(upper, { dropIfUnchanged: (rel) => (asked.push(rel), true) })));
  assert.deepEqual(entries.map((e) => e.name), ['var/', 'var/cache/', 'var/cache/.wh..wh..opq']);
  assert.deepEqual(asked, []);
});
