import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveChown } from '../../src/build/chown.ts';
import { HoistError } from '../../src/errors.ts';

const passwd = [
  'root:x:0:0:root:/root:/bin/sh',
  '# a comment line',
  'bob:x:1001:100:Bob:/home/bob:/bin/sh',
  'svc:x:1000:4242::/srv:/usr/sbin/nologin',
  '',
].join('\n');
const group = ['root:x:0:', 'users:x:100:bob', 'staff:x:50:', 'svc:x:4242:'].join('\n');
const files = { passwd, group };

test('names resolve through the image passwd and group files', () => {
  assert.deepEqual(resolveChown('bob', files), { uid: 1001, gid: 100 });
  assert.deepEqual(resolveChown('bob:staff', files), { uid: 1001, gid: 50 });
  assert.deepEqual(resolveChown('svc:users', files), { uid: 1000, gid: 100 });
  assert.deepEqual(resolveChown('bob:7', files), { uid: 1001, gid: 7 });
});

test('numeric users are not looked up: gid = uid, as BuildKit', () => {
  // passwd has uid 1000 (svc, primary gid 4242); BuildKit still uses 1000:1000.
  assert.deepEqual(resolveChown('1000', files), { uid: 1000, gid: 1000 });
  assert.deepEqual(resolveChown('1000:50', files), { uid: 1000, gid: 50 });
  assert.deepEqual(resolveChown('1234:staff', files), { uid: 1234, gid: 50 });
  assert.deepEqual(resolveChown('+5', {}), { uid: 5, gid: 5 });
  assert.deepEqual(resolveChown('65534:65534', {}), { uid: 65534, gid: 65534 });
});

test('"root" is 0 without any passwd file; empty parts keep 0 / the user gid', () => {
  assert.deepEqual(resolveChown('root', {}), { uid: 0, gid: 0 });
  assert.deepEqual(resolveChown('root:root', {}), { uid: 0, gid: 0 });
  assert.deepEqual(resolveChown(':staff', files), { uid: 0, gid: 50 });
  assert.deepEqual(resolveChown('bob:', files), { uid: 1001, gid: 100 });
  // Only the first ':' splits: "staff:x" is looked up as a group name.
  assert.throws(() => resolveChown('bob:staff:x', files), /no group "staff:x"/);
});

test('unknown names fail with one line naming the file', () => {
  const oneLine = (code: string, re: RegExp) => (e: unknown): boolean => {
    assert.ok(e instanceof HoistError);
    assert.equal(e.code, code);
    assert.match(e.message, re);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  };
  assert.throws(() => resolveChown('alice', files), oneLine('USER_NOT_FOUND', /^--chown=alice: no user "alice" in the image's \/etc\/passwd; /));
  assert.throws(() => resolveChown('bob:wheel', files), oneLine('GROUP_NOT_FOUND', /^--chown=bob:wheel: no group "wheel" in the image's \/etc\/group; /));
  assert.throws(() => resolveChown('bob', {}), oneLine('USER_NOT_FOUND', /the image has no \/etc\/passwd/));
  assert.throws(() => resolveChown('1:staff', { passwd }), oneLine('GROUP_NOT_FOUND', /the image has no \/etc\/group/));
  // Out of int32: not an id for BuildKit either, so a (missing) name.
  assert.throws(() => resolveChown('99999999999', files), oneLine('USER_NOT_FOUND', /no user "99999999999"/));
  assert.throws(() => resolveChown('-1', files), oneLine('BAD_CHOWN', /ids must be between 0 and 2147483647/));
  assert.throws(() => resolveChown('', files), oneLine('BAD_CHOWN', /needs a value/));
});
