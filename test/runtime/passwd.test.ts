import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveUser } from '../../src/runtime/passwd.ts';
import { HoistError } from '../../src/errors.ts';

const PASSWD = [
  '# a comment line must not be taken for a user with uid 0',
  'root:x:0:0:root:/root:/bin/sh',
  'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
  '  alice:x:1000:1000:Alice:/home/alice:/bin/sh  ',
  'bob:x:1001:1001:Bob::/bin/sh',
  'alice:x:2000:2000:second alice, ignored:/nowhere:/bin/sh',
  '',
].join('\n');

const GROUP = [
  'root:x:0:',
  'wheel:x:10:alice',
  'audio:x:29:bob,alice',
  'alice:x:1000:',
  'staff:x:50:',
  'video:x:44:bob',
  '',
].join('\n');

function rootfs(t: { after: (fn: () => void) => void }, files: Record<string, string> = { passwd: PASSWD, group: GROUP }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hoist-passwd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'etc'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, 'etc', name), text);
  return dir;
}

function notFound(message: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.equal(e.exitCode, 125);
    assert.equal(e.message, message);
    return true;
  };
}

test('no user means root, with root\'s home from passwd', (t) => {
  const r = rootfs(t);
  const root = { uid: 0, gid: 0, additionalGids: [0], home: '/root', name: 'root' };
  assert.deepEqual(resolveUser(r, undefined), root);
  assert.deepEqual(resolveUser(r, ''), root);
});

test('without /etc/passwd and /etc/group, root and numeric ids still work; home is /', (t) => {
  const r = rootfs(t, {});
  assert.deepEqual(resolveUser(r, undefined), { uid: 0, gid: 0, additionalGids: [0], home: '/' });
  assert.deepEqual(resolveUser(r, '123:456'), { uid: 123, gid: 456, additionalGids: [456], home: '/' });
  assert.throws(() => resolveUser(r, 'alice'), notFound('unable to find user alice: no matching entries in passwd file'));
  assert.throws(() => resolveUser(r, '0:staff'), notFound('unable to find group staff: no matching entries in group file'));
});

test('a user name takes uid, gid and home from passwd; supplementary groups from /etc/group, primary gid first', (t) => {
  const r = rootfs(t);
  const alice = { uid: 1000, gid: 1000, additionalGids: [1000, 10, 29], home: '/home/alice', name: 'alice' };
  assert.deepEqual(resolveUser(r, 'alice'), alice, 'first matching entry wins; whitespace around the line is ignored');
  assert.deepEqual(resolveUser(r, '1000'), alice, 'a numeric uid matching an entry is that user');
  assert.deepEqual(resolveUser(r, 'bob'), { uid: 1001, gid: 1001, additionalGids: [1001, 29, 44], home: '/', name: 'bob' },
    'an empty home field gives /');
  assert.deepEqual(resolveUser(r, 'daemon'), { uid: 1, gid: 1, additionalGids: [1], home: '/usr/sbin', name: 'daemon' });
  assert.deepEqual(resolveUser(r, 'alice:'), alice, 'an empty group part is the implicit form');
});

test('an explicit group sets the gid and drops the /etc/group memberships (runc: implicit form only)', (t) => {
  const r = rootfs(t);
  assert.deepEqual(resolveUser(r, 'alice:staff'), { uid: 1000, gid: 50, additionalGids: [50], home: '/home/alice', name: 'alice' });
  assert.deepEqual(resolveUser(r, 'alice:50'), { uid: 1000, gid: 50, additionalGids: [50], home: '/home/alice', name: 'alice' });
  assert.deepEqual(resolveUser(r, 'alice:7777'), { uid: 1000, gid: 7777, additionalGids: [7777], home: '/home/alice', name: 'alice' });
  assert.deepEqual(resolveUser(r, '4242:audio'), { uid: 4242, gid: 29, additionalGids: [29], home: '/' });
  assert.deepEqual(resolveUser(r, ':video'), { uid: 0, gid: 44, additionalGids: [44], home: '/root', name: 'root' });
});

test('a numeric uid without an entry is allowed: gid 0, home /, no groups', (t) => {
  const r = rootfs(t);
  assert.deepEqual(resolveUser(r, '4242'), { uid: 4242, gid: 0, additionalGids: [0], home: '/' });
  assert.deepEqual(resolveUser(r, '+5'), { uid: 5, gid: 0, additionalGids: [0], home: '/' }, 'Go\'s Atoi takes a sign');
});

test('names that are not found fail with docker\'s message and exit 125', (t) => {
  const r = rootfs(t);
  assert.throws(() => resolveUser(r, 'mallory'), notFound('unable to find user mallory: no matching entries in passwd file'));
  assert.throws(() => resolveUser(r, 'alice:nogroup'), notFound('unable to find group nogroup: no matching entries in group file'));
  assert.throws(() => resolveUser(r, '1000:nogroup'), notFound('unable to find group nogroup: no matching entries in group file'));
  assert.throws(() => resolveUser(r, '99999999999999999999'),
    notFound('unable to find user 99999999999999999999: no matching entries in passwd file'), 'too big for Atoi: a name');
});

test('ids outside 0..2^31-1 are refused', (t) => {
  const r = rootfs(t);
  for (const spec of ['-1', '2147483648', '0:-5']) {
    assert.throws(() => resolveUser(r, spec), (e: unknown) => {
      assert.ok(e instanceof HoistError);
      assert.equal(e.exitCode, 125);
      assert.match(e.message, /uids and gids must be in range 0-2147483647/);
      return true;
    }, spec);
  }
  assert.equal(resolveUser(r, '2147483647').uid, 2147483647);
});

test('passwd and group are read inside the rootfs: links resolve there, never on the host', (t) => {
  const outside = mkdtempSync(path.join(os.tmpdir(), 'hoist-passwd-host-'));
  t.after(() => rmSync(outside, { recursive: true, force: true }));
  writeFileSync(path.join(outside, 'passwd'), 'evil:x:0:0::/:/bin/sh\n');
  const r = path.join(outside, 'root');
  mkdirSync(path.join(r, 'etc'), { recursive: true });
  mkdirSync(path.join(r, 'usr/lib'), { recursive: true });
  writeFileSync(path.join(r, 'usr/lib/group'), GROUP);
  symlinkSync('/usr/lib/group', path.join(r, 'etc/group'));
  symlinkSync('../../passwd', path.join(r, 'etc/passwd')); // would be outside/passwd on the host
  assert.throws(() => resolveUser(r, 'evil'), notFound('unable to find user evil: no matching entries in passwd file'));
  assert.deepEqual(resolveUser(r, '7:wheel'), { uid: 7, gid: 10, additionalGids: [10], home: '/' });
});
