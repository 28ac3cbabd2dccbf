import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { lookPath } from '../../src/runtime/lookpath.ts';

/** host/ (outside) and host/root (the rootfs) with executables, plain files, directories and links. */
function rootfs(t: { after: (fn: () => void) => void }): string {
  const host = mkdtempSync(path.join(os.tmpdir(), 'hoist-lookpath-'));
  t.after(() => rmSync(host, { recursive: true, force: true }));
  const root = path.join(host, 'root');
  const file = (p: string, mode: number): void => {
    mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    writeFileSync(path.join(root, p), '#!/bin/sh\n');
    chmodSync(path.join(root, p), mode);
  };
  file('usr/bin/tool', 0o755);
  file('usr/local/bin/plain', 0o644);
  file('usr/bin/plain', 0o711);
  file('usr/local/bin/only-plain', 0o644);
  file('usr/bin/owner-only', 0o100);
  file('opt/app/run', 0o700);
  mkdirSync(path.join(root, 'usr/bin/dir'));
  chmodSync(path.join(root, 'usr/bin/dir'), 0o755);
  symlinkSync('usr/bin', path.join(root, 'bin'));
  symlinkSync('/opt/app/run', path.join(root, 'usr/bin/link'));
  // An executable on the host, reachable only by climbing out of the root.
  writeFileSync(path.join(host, 'hostexe'), '#!/bin/sh\n');
  chmodSync(path.join(host, 'hostexe'), 0o755);
  symlinkSync('../../../../../../../../hostexe', path.join(root, 'usr/bin/escape'));
  symlinkSync(path.join(host, 'hostexe'), path.join(root, 'usr/bin/escape-abs'));
  return root;
}

const ENV = ['HOME=/root', 'PATH=/usr/local/bin:/usr/bin:/bin'];

test('a bare name is searched in $PATH, in order, first executable wins', (t) => {
  const r = rootfs(t);
  assert.deepEqual(lookPath(r, 'tool', ENV, '/'), { kind: 'ok', path: '/usr/bin/tool' });
  assert.deepEqual(lookPath(r, 'plain', ENV, '/'), { kind: 'ok', path: '/usr/bin/plain' }, 'the non-executable one is skipped');
  assert.deepEqual(lookPath(r, 'owner-only', ENV, '/'), { kind: 'ok', path: '/usr/bin/owner-only' }, 'any x bit counts');
  assert.deepEqual(lookPath(r, 'link', ENV, '/'), { kind: 'ok', path: '/usr/bin/link' }, 'links are followed in the root');
  assert.deepEqual(lookPath(r, 'tool', ['PATH=/bin'], '/'), { kind: 'ok', path: '/bin/tool' }, 'through a directory link');
});

test('a PATH search never says not-executable: files without x bits and directories are skipped', (t) => {
  const r = rootfs(t);
  assert.deepEqual(lookPath(r, 'only-plain', ENV, '/'), { kind: 'not-found' });
  assert.deepEqual(lookPath(r, 'dir', ENV, '/'), { kind: 'not-found' });
  assert.deepEqual(lookPath(r, 'nothing', ENV, '/'), { kind: 'not-found' });
  assert.deepEqual(lookPath(r, '', ENV, '/'), { kind: 'not-found' });
});

test('the last PATH counts; no PATH finds nothing; an empty entry is the working directory', (t) => {
  const r = rootfs(t);
  assert.deepEqual(lookPath(r, 'tool', ['PATH=/nowhere', 'PATH=/usr/bin'], '/'), { kind: 'ok', path: '/usr/bin/tool' });
  assert.deepEqual(lookPath(r, 'tool', ['HOME=/'], '/'), { kind: 'not-found' });
  assert.deepEqual(lookPath(r, 'tool', ['PATH='], '/usr/bin'), { kind: 'not-found' });
  assert.deepEqual(lookPath(r, 'run', ['PATH=/nowhere:'], '/opt/app'), { kind: 'ok', path: '/opt/app/run' });
  assert.deepEqual(lookPath(r, 'run', ['PATH=app'], '/opt'), { kind: 'ok', path: '/opt/app/run' });
});

test('a name with a slash is checked as it is, relative to the working directory', (t) => {
  const r = rootfs(t);
  assert.deepEqual(lookPath(r, '/opt/app/run', ENV, '/'), { kind: 'ok', path: '/opt/app/run' });
  assert.deepEqual(lookPath(r, './run', ENV, '/opt/app'), { kind: 'ok', path: '/opt/app/run' });
  assert.deepEqual(lookPath(r, 'app/run', ENV, '/opt'), { kind: 'ok', path: '/opt/app/run' });
  assert.deepEqual(lookPath(r, '../../opt/app/run', ENV, '/usr/bin'), { kind: 'ok', path: '/opt/app/run' });
  assert.deepEqual(lookPath(r, '/usr/local/bin/plain', ENV, '/'), { kind: 'not-executable', path: '/usr/local/bin/plain' });
  assert.deepEqual(lookPath(r, '/usr/bin/dir', ENV, '/'), { kind: 'not-executable', path: '/usr/bin/dir' });
  assert.deepEqual(lookPath(r, './dir', ENV, '/usr/bin'), { kind: 'not-executable', path: '/usr/bin/dir' });
  assert.deepEqual(lookPath(r, '/missing', ENV, '/'), { kind: 'not-found' });
  assert.deepEqual(lookPath(r, '/usr/bin/tool/x', ENV, '/'), { kind: 'not-found' }, 'below a file');
});

test('links climbing out of the rootfs resolve inside it', (t) => {
  const r = rootfs(t);
  assert.deepEqual(lookPath(r, 'escape', ENV, '/'), { kind: 'not-found' });
  assert.deepEqual(lookPath(r, 'escape-abs', ENV, '/'), { kind: 'not-found' });
  assert.deepEqual(lookPath(r, '/usr/bin/escape', ENV, '/'), { kind: 'not-found' });
});
