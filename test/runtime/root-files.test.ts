import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { layeredRoot } from '../../src/runtime/root-files.ts';
import { lookPath } from '../../src/runtime/lookpath.ts';
import { resolveUser } from '../../src/runtime/passwd.ts';

const OPAQUE = ['user.overlay.opaque'];

/** Layer dirs as 'keep-as-overlay' unpacking leaves them: bottom first. */
function layers(t: { after: (fn: () => void) => void }, n: number): string[] {
  const host = mkdtempSync(path.join(os.tmpdir(), 'hoist-layered-'));
  t.after(() => rmSync(host, { recursive: true, force: true }));
  return Array.from({ length: n }, (_, i) => {
    const d = path.join(host, `l${i}`, 'fs');
    mkdirSync(d, { recursive: true });
    return d;
  });
}

function file(layer: string, p: string, text = '#!/bin/sh\n', mode = 0o755): void {
  mkdirSync(path.dirname(path.join(layer, p)), { recursive: true });
  writeFileSync(path.join(layer, p), text);
  chmodSync(path.join(layer, p), mode);
}

/** overlay's whiteout: a character device 0:0 (needs root, or a user namespace on Linux 5.8+). */
function whiteout(layer: string, p: string): void {
  mkdirSync(path.dirname(path.join(layer, p)), { recursive: true });
  execFileSync('mknod', [path.join(layer, p), 'c', '0', '0']);
}

const canMknod = process.getuid?.() === 0;

test('an entry comes from the top-most layer that has it; missing is undefined', (t) => {
  const [a, b] = layers(t, 2) as [string, string];
  file(a, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
  file(b, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nother:x:7:7::/srv:/bin/sh\n');
  file(a, 'bin/tool');
  const root = layeredRoot([a, b], OPAQUE, getAttributeSync);
  assert.match(root.readText('/etc/passwd')!, /other/, 'the upper layer wins');
  assert.ok(root.stat('/bin/tool')?.isFile(), 'a lower entry shows through a layer without it');
  assert.equal(root.stat('/bin/none'), undefined);
  assert.equal(root.readText('/etc/group'), undefined);
  assert.equal(resolveUser(root, 'other').home, '/srv');
  assert.throws(() => resolveUser(root, 'app'), /app/, 'the lower passwd is hidden by the upper one');
});

test('whiteouts delete, opaque directories hide what lies below them', { skip: canMknod ? false : 'mknod 0:0 needs root' }, (t) => {
  const [a, b, c] = layers(t, 3) as [string, string, string];
  file(a, 'usr/bin/gone');
  file(a, 'usr/bin/kept');
  file(a, 'opt/old/run');
  file(a, 'srv/x/run');
  whiteout(b, 'usr/bin/gone');
  mkdirSync(path.join(b, 'opt'));
  setAttributeSync(path.join(b, 'opt'), 'user.overlay.opaque', 'y');
  file(b, 'opt/new/run');
  whiteout(b, 'srv');
  file(c, 'srv/y/run'); // re-created above the whiteout
  const root = layeredRoot([a, b, c], OPAQUE, getAttributeSync);
  assert.equal(root.stat('/usr/bin/gone'), undefined, 'a whiteout removes the lower file');
  assert.ok(root.stat('/usr/bin/kept'), 'its neighbour stays');
  assert.equal(root.stat('/opt/old/run'), undefined, 'an opaque directory hides the lower layer\'s entries');
  assert.ok(root.stat('/opt/new/run'), 'and keeps its own');
  assert.equal(root.stat('/srv/x/run'), undefined, 'a whited-out directory hides everything under it');
  assert.ok(root.stat('/srv/y/run'), 'what an upper layer puts there again shows');
  assert.deepEqual(lookPath(root, 'gone', ['PATH=/usr/bin'], '/'), { kind: 'not-found' });
  assert.deepEqual(lookPath(root, 'kept', ['PATH=/usr/bin'], '/'), { kind: 'ok', path: '/usr/bin/kept' });
});

test('a non-directory in an upper layer hides a lower directory of that name', (t) => {
  const [a, b] = layers(t, 2) as [string, string];
  file(a, 'app/bin/run');
  file(b, 'app', 'a file now\n', 0o644);
  const root = layeredRoot([a, b], OPAQUE, getAttributeSync);
  assert.equal(root.stat('/app/bin/run'), undefined);
  assert.ok(root.stat('/app')?.isFile());
});

test('symlinks resolve across layers and never leave the root', (t) => {
  const [a, b] = layers(t, 2) as [string, string];
  file(a, 'usr/bin/busybox');
  symlinkSync('usr/bin', path.join(a, 'bin'));
  symlinkSync('/usr/bin/busybox', path.join(b, 'sh-link'));
  mkdirSync(path.join(b, 'usr/bin'), { recursive: true });
  symlinkSync('busybox', path.join(b, 'usr/bin/ls'));
  symlinkSync('../../../../../../../../../etc/passwd', path.join(b, 'escape'));
  file(path.dirname(path.dirname(a)), 'etc/passwd', 'host\n', 0o644); // outside every layer
  const root = layeredRoot([a, b], OPAQUE, getAttributeSync);
  assert.deepEqual(lookPath(root, 'ls', ['PATH=/bin'], '/'), { kind: 'ok', path: '/bin/ls' }, 'bin (lower) -> usr/bin, ls (upper) -> busybox (lower)');
  assert.ok(root.stat('/sh-link')?.isFile());
  assert.equal(root.readText('/escape'), undefined, '.. stops at the root, where there is no etc/passwd');
});

test('opaque xattrs are read only through the reader given, and the names asked for', (t) => {
  const [a, b] = layers(t, 2) as [string, string];
  file(a, 'etc/hidden', 'x\n', 0o644);
  mkdirSync(path.join(b, 'etc'));
  const asked: string[] = [];
  const root = layeredRoot([a, b], ['trusted.overlay.opaque', 'user.overlay.opaque'], (f, n) => {
    asked.push(n);
    return f.endsWith(`${path.sep}etc`) && n === 'trusted.overlay.opaque' ? Buffer.from('y') : null;
  });
  assert.equal(root.stat('/etc/hidden'), undefined, 'rootful snapshots mark opaque directories with trusted.overlay.opaque');
  assert.ok(asked.includes('trusted.overlay.opaque'));
});
