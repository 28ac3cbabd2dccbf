import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { parseTmpfs, parseVolume } from '../../src/runtime/cli-parse.ts';
import { HoistError } from '../../src/errors.ts';

function badMount(flagValue: string, re: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.equal(e.code, 'BAD_MOUNT');
    assert.equal(e.exitCode, 125);
    assert.ok(e.message.includes(flagValue), `${e.message} should name ${flagValue}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'));
    return true;
  };
}

test('-v SRC:DST binds read-write with rprivate propagation, paths cleaned', () => {
  assert.deepEqual(parseVolume('/srv/data:/data'),
    { type: 'bind', source: '/srv/data', destination: '/data', readonly: false, options: ['rprivate'] });
  assert.deepEqual(parseVolume('/srv//data/:/data/x/../y/'),
    { type: 'bind', source: '/srv/data', destination: '/data/y', readonly: false, options: ['rprivate'] });
  assert.deepEqual(parseVolume('/:/host'), { type: 'bind', source: '/', destination: '/host', readonly: false, options: ['rprivate'] });
});

test('-v modes: ro/rw, propagation, z/Z and consistency hints, comma-separated', () => {
  assert.equal(parseVolume('/a:/b:ro').readonly, true);
  assert.equal(parseVolume('/a:/b:rw').readonly, false);
  assert.deepEqual(parseVolume('/a:/b:ro,rslave'),
    { type: 'bind', source: '/a', destination: '/b', readonly: true, options: ['rslave'] });
  assert.deepEqual(parseVolume('/a:/b:z').options, ['rprivate']);
  assert.deepEqual(parseVolume('/a:/b:Z,shared,cached').options, ['shared']);
});

test('-v with a ./ or ../ source takes it from the current directory (docker CLI 23+)', () => {
  assert.equal(parseVolume('./sub:/x').source, path.join(process.cwd(), 'sub'));
  assert.equal(parseVolume('.:/x').source, process.cwd());
  assert.equal(parseVolume('../up:/x').source, path.resolve(process.cwd(), '../up'));
});

test('-v refuses named and anonymous volumes, bad modes and bad paths, naming the value', () => {
  assert.throws(() => parseVolume('mydata:/data'), badMount('-v mydata:/data', /named volumes are not supported.*-v \/host\/path:\/data/));
  assert.throws(() => parseVolume('/data'), badMount('-v /data', /anonymous volumes are not supported/));
  assert.throws(() => parseVolume('/data:ro'), badMount('-v /data:ro', /anonymous volumes are not supported/));
  assert.throws(() => parseVolume('/a:/b:rw,ro'), badMount('-v /a:/b:rw,ro', /invalid mode 'rw,ro'/));
  assert.throws(() => parseVolume('/a:/b:shared,rprivate'), badMount('-v /a:/b:shared,rprivate', /invalid mode/));
  assert.throws(() => parseVolume('/a:/b:exec'), badMount('-v /a:/b:exec', /invalid mode 'exec'/));
  assert.throws(() => parseVolume('/a:/b:nocopy'), badMount('-v /a:/b:nocopy', /named volumes only/));
  assert.throws(() => parseVolume('/a:b'), badMount('-v /a:b', /container path 'b' must be absolute/));
  assert.throws(() => parseVolume('/a:/'), badMount('-v /a:/', /can't be '\/'/));
  assert.throws(() => parseVolume('/a:/b:ro:x'), badMount('-v /a:/b:ro:x', /invalid volume specification/));
  assert.throws(() => parseVolume(':/b'), badMount('-v :/b', /invalid volume specification/));
  assert.throws(() => parseVolume(''), badMount('-v ', /invalid volume specification/));
});

test('--tmpfs DST gets docker\'s noexec,nosuid,nodev,rprivate', () => {
  assert.deepEqual(parseTmpfs('/run'),
    { type: 'tmpfs', destination: '/run', readonly: false, options: ['noexec', 'nosuid', 'nodev', 'rprivate'] });
  assert.deepEqual(parseTmpfs('/run/'), parseTmpfs('/run'));
  assert.deepEqual(parseTmpfs('/run:'), parseTmpfs('/run'));
});

test('--tmpfs options merge like moby\'s MergeTmpfsOptions: the last one per flag or key wins', () => {
  assert.deepEqual(parseTmpfs('/run:exec,size=64m').options, ['nosuid', 'nodev', 'rprivate', 'exec', 'size=64m']);
  assert.deepEqual(parseTmpfs('/run:size=1m,mode=1777,size=2m').options,
    ['noexec', 'nosuid', 'nodev', 'rprivate', 'mode=1777', 'size=2m']);
  assert.deepEqual(parseTmpfs('/run:shared,defaults,uid=1000,gid=1000').options,
    ['noexec', 'nosuid', 'nodev', 'shared', 'uid=1000', 'gid=1000']);
  const ro = parseTmpfs('/cache:ro');
  assert.equal(ro.readonly, true);
  assert.deepEqual(ro.options, ['noexec', 'nosuid', 'nodev', 'rprivate', 'ro']);
  assert.equal(parseTmpfs('/cache:ro,rw').readonly, false);
});

test('--tmpfs refuses unknown options and bad destinations, naming the value', () => {
  assert.throws(() => parseTmpfs('/run:bogus'), badMount('--tmpfs /run:bogus', /invalid tmpfs option 'bogus'/));
  assert.throws(() => parseTmpfs('/run:size=1m,'), badMount('--tmpfs /run:size=1m,', /invalid tmpfs option ''/));
  assert.throws(() => parseTmpfs('/run:foo=1'), badMount('--tmpfs /run:foo=1', /invalid tmpfs option 'foo=1'/));
  assert.throws(() => parseTmpfs('/run:rbind'), badMount('--tmpfs /run:rbind', /not a tmpfs option/));
  assert.throws(() => parseTmpfs('run'), badMount('--tmpfs run', /must be absolute/));
  assert.throws(() => parseTmpfs('/'), badMount('--tmpfs /', /can't be '\/'/));
  assert.throws(() => parseTmpfs(''), badMount('--tmpfs ', /must be absolute/));
});
