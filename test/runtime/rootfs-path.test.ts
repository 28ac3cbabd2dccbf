import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readFileInRoot, resolveInRoot } from '../../src/runtime/rootfs-path.ts';
import { HoistError } from '../../src/errors.ts';

/** A sandbox: `host/` stands for the host outside, `root/` for the container's rootfs. */
function sandbox(t: { after: (fn: () => void) => void }): { host: string; root: string } {
  const host = mkdtempSync(path.join(os.tmpdir(), 'hoist-rootfs-path-'));
  t.after(() => rmSync(host, { recursive: true, force: true }));
  const root = path.join(host, 'root');
  mkdirSync(path.join(root, 'etc'), { recursive: true });
  mkdirSync(path.join(root, 'usr/share/base'), { recursive: true });
  mkdirSync(path.join(root, 'usr/lib'), { recursive: true });
  writeFileSync(path.join(host, 'secret'), 'host secret\n');
  writeFileSync(path.join(root, 'secret'), 'container secret\n');
  writeFileSync(path.join(root, 'usr/share/base/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(path.join(root, 'plainfile'), 'x');
  symlinkSync('/usr/share/base/passwd', path.join(root, 'etc/passwd')); // absolute, inside
  symlinkSync('usr/lib', path.join(root, 'lib')); // relative directory link
  symlinkSync('../../../../../../../../secret', path.join(root, 'etc/escape')); // climbs past the root
  symlinkSync(path.join(host, 'secret'), path.join(root, 'etc/hostabs')); // the host's absolute path
  symlinkSync('/missing/dir', path.join(root, 'dangling'));
  symlinkSync('loop-b', path.join(root, 'loop-a'));
  symlinkSync('loop-a', path.join(root, 'loop-b'));
  return { host, root };
}

test('resolveInRoot joins plain paths and normalizes . and ..', (t) => {
  const { root } = sandbox(t);
  assert.equal(resolveInRoot(root, '/usr/share/base/passwd'), path.join(root, 'usr/share/base/passwd'));
  assert.equal(resolveInRoot(root, '/usr/./share//base/../base/passwd'), path.join(root, 'usr/share/base/passwd'));
  assert.equal(resolveInRoot(root, '/'), root);
  assert.equal(resolveInRoot(root, ''), root);
  assert.equal(resolveInRoot(root, 'usr/lib'), path.join(root, 'usr/lib'), 'relative paths start at /');
  assert.equal(resolveInRoot(`${root}/`, '/etc'), path.join(root, 'etc'));
});

test('resolveInRoot follows symlinks inside the root: absolute targets restart at the root', (t) => {
  const { root } = sandbox(t);
  assert.equal(resolveInRoot(root, '/etc/passwd'), path.join(root, 'usr/share/base/passwd'));
  assert.equal(resolveInRoot(root, '/lib/x.so'), path.join(root, 'usr/lib/x.so'));
  assert.equal(resolveInRoot(root, '/lib/../share'), path.join(root, 'usr/share'), '.. after a link applies to its target');
});

test('resolveInRoot never leaves the root: .. stops there, host paths are container paths', (t) => {
  const { host, root } = sandbox(t);
  assert.equal(resolveInRoot(root, '/../../../secret'), path.join(root, 'secret'));
  assert.equal(resolveInRoot(root, '/etc/escape'), path.join(root, 'secret'));
  const hostAbs = resolveInRoot(root, '/etc/hostabs');
  assert.ok(hostAbs.startsWith(`${root}/`), hostAbs);
  assert.equal(hostAbs, path.join(root, host, 'secret'));
  assert.equal(readFileInRoot(root, '/etc/escape'), 'container secret\n');
  assert.equal(readFileInRoot(root, '/etc/hostabs'), undefined, 'the host file must not be read');
});

test('resolveInRoot keeps missing components as written, also below dangling links and files', (t) => {
  const { root } = sandbox(t);
  assert.equal(resolveInRoot(root, '/nope/a/b'), path.join(root, 'nope/a/b'));
  assert.equal(resolveInRoot(root, '/nope/../etc/passwd'), path.join(root, 'usr/share/base/passwd'));
  assert.equal(resolveInRoot(root, '/dangling'), path.join(root, 'missing/dir'));
  assert.equal(resolveInRoot(root, '/dangling/file'), path.join(root, 'missing/dir/file'));
  assert.equal(resolveInRoot(root, '/plainfile/x'), path.join(root, 'plainfile/x'), 'ENOTDIR counts as missing');
});

test('resolveInRoot allows 40 links and fails on the 41st and on loops, with exit 125', (t) => {
  const { root } = sandbox(t);
  writeFileSync(path.join(root, 'end'), 'end');
  // l0 -> l1 -> … -> l39 -> /end: 40 links.
  for (let i = 0; i < 40; i++) symlinkSync(i === 39 ? '/end' : `l${i + 1}`, path.join(root, `l${i}`));
  assert.equal(resolveInRoot(root, '/l0'), path.join(root, 'end'));
  symlinkSync('l0', path.join(root, 'l-extra'));
  const isLoop = (e: unknown): boolean => {
    assert.ok(e instanceof HoistError);
    assert.equal(e.code, 'SYMLINK_LOOP');
    assert.equal(e.exitCode, 125);
    assert.match(e.message, /too many levels of symbolic links/);
    return true;
  };
  assert.throws(() => resolveInRoot(root, '/l-extra'), isLoop);
  assert.throws(() => resolveInRoot(root, '/loop-a/x'), isLoop);
});

test('readFileInRoot reads through links and says undefined for what is missing', (t) => {
  const { root } = sandbox(t);
  assert.equal(readFileInRoot(root, '/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  assert.equal(readFileInRoot(root, '/etc/group'), undefined);
  assert.equal(readFileInRoot(root, '/dangling'), undefined);
  assert.equal(readFileInRoot(root, '/plainfile/x'), undefined);
  assert.throws(() => readFileInRoot(root, '/etc'), (e: unknown) => e instanceof HoistError && e.exitCode === 125 && /directory/.test(e.message));
});
