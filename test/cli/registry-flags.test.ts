/** skopeo-style flag values: Go booleans after `=`, Go durations, platform overrides. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { overridePlatform, parseGoDuration, rewriteGoBoolFlags } from '../../cmd/registry-flags.ts';

const cmds = new Set(['copy', 'inspect']);
const rw = (...a: string[]) => rewriteGoBoolFlags(['node', 'hoist', ...a], cmds).slice(2);

test('Go-style --flag=BOOL becomes what commander parses, only for the registry commands', () => {
  assert.deepEqual(rw('copy', '--dest-tls-verify=false', '--src-tls-verify=true', 'a', 'b'), ['copy', '--no-dest-tls-verify', '--src-tls-verify', 'a', 'b']);
  assert.deepEqual(rw('--root', 'copy', 'copy', '--remove-signatures=false', '--all=1', 'a', 'b'), ['--root', 'copy', 'copy', '--all', 'a', 'b']);
  assert.deepEqual(rw('inspect', '--no-tags=false', '--tls-verify=F', 'x'), ['inspect', '--tags', '--no-tls-verify', 'x']);
  assert.deepEqual(rw('copy', '--', '--tls-verify=false'), ['copy', '--', '--tls-verify=false']);
  assert.deepEqual(rw('run', 'img', '--tls-verify=false'), ['run', 'img', '--tls-verify=false']);
  assert.deepEqual(rw('copy', '--creds=a:b', 'x', 'y'), ['copy', '--creds=a:b', 'x', 'y']);
  // run: up to the image only; the container's own arguments are left as they are.
  const runCmds = new Set(['run']);
  const rwRun = (...a: string[]) => rewriteGoBoolFlags(['node', 'hoist', ...a], runCmds).slice(2);
  assert.deepEqual(rwRun('run', '--tls-verify=false', '-e', 'X=1', '-v', '/a:/b', 'img', 'cmd', '--tls-verify=false'),
    ['run', '--no-tls-verify', '-e', 'X=1', '-v', '/a:/b', 'img', 'cmd', '--tls-verify=false']);
  assert.deepEqual(rwRun('run', 'img', '--tls-verify=false'), ['run', 'img', '--tls-verify=false']);
  assert.throws(() => rw('copy', '--tls-verify=no'), /--tls-verify=no: not a boolean/);
});

test('Go durations', () => {
  assert.equal(parseGoDuration('retry-delay', '2s'), 2000);
  assert.equal(parseGoDuration('retry-delay', '500ms'), 500);
  assert.equal(parseGoDuration('retry-delay', '1m30s'), 90_000);
  assert.equal(parseGoDuration('retry-delay', '1.5h'), 5_400_000);
  assert.equal(parseGoDuration('retry-delay', '0'), 0);
  for (const bad of ['', '2', 's', '2 s', '-1s', '2d']) assert.throws(() => parseGoDuration('retry-delay', bad), /not a duration/, bad);
});

test('--override-* over a base platform', () => {
  const base = { os: 'linux', architecture: 'arm', variant: 'v7' };
  assert.equal(overridePlatform({}, base), undefined);
  assert.deepEqual(overridePlatform({ overrideArch: 'arm64' }, base), { os: 'linux', architecture: 'arm64' });
  assert.deepEqual(overridePlatform({ overrideOs: 'freebsd' }, base), { os: 'freebsd', architecture: 'arm', variant: 'v7' });
  assert.deepEqual(overridePlatform({ overrideArch: 'arm64', overrideVariant: 'v8' }, base), { os: 'linux', architecture: 'arm64', variant: 'v8' });
});
