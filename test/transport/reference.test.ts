/** parseImageReference / formatImageReference: transports, bare store names, and clear errors for bad input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatImageReference, parseImageReference, type ImageRef } from '../../src/transport/reference.ts';
import { HoistError } from '../../src/errors.ts';

function parses(input: string, want: ImageRef): void {
  assert.deepEqual(parseImageReference(input), want, input);
  assert.equal(formatImageReference(want), input, `round trip of ${input}`);
}

test('docker://', () => {
  parses('docker://busybox', { transport: 'docker', ref: 'busybox' });
  parses('docker://localhost:5000/a/b:1@sha256:' + 'a'.repeat(64), { transport: 'docker', ref: `localhost:5000/a/b:1@sha256:${'a'.repeat(64)}` });
});

test('oci: splits the path at the first colon, like skopeo', () => {
  parses('oci:/tmp/x', { transport: 'oci', dir: '/tmp/x' });
  parses('oci:/tmp/x:latest', { transport: 'oci', dir: '/tmp/x', ref: 'latest' });
  parses('oci:rel/dir:docker.io/library/busybox:latest', { transport: 'oci', dir: 'rel/dir', ref: 'docker.io/library/busybox:latest' });
  assert.deepEqual(parseImageReference('oci:/tmp/x:'), { transport: 'oci', dir: '/tmp/x' });
});

test('oci-archive: and docker-archive:', () => {
  parses('oci-archive:/tmp/a.tar', { transport: 'oci-archive', file: '/tmp/a.tar' });
  parses('oci-archive:/tmp/a.tar:v1.2', { transport: 'oci-archive', file: '/tmp/a.tar', ref: 'v1.2' });
  parses('docker-archive:a.tar', { transport: 'docker-archive', file: 'a.tar' });
  parses('docker-archive:a.tar:busybox:latest', { transport: 'docker-archive', file: 'a.tar', ref: 'busybox:latest' });
  parses('docker-archive:a.tar:localhost:5000/x:1', { transport: 'docker-archive', file: 'a.tar', ref: 'localhost:5000/x:1' });
  parses('docker-archive:a.tar:@2', { transport: 'docker-archive', file: 'a.tar', ref: '@2' });
});

test('bare names go to the local store, even when they contain a colon', () => {
  for (const name of ['busybox', 'busybox:1.0', 'localhost:5000/a', 'localhost:5000/a:t', 'quay.io/x/y:z', 'foo:bar',
    `sha256:${'b'.repeat(64)}`, 'b'.repeat(64), 'abc123', `busybox@sha256:${'c'.repeat(64)}`]) {
    parses(name, { transport: 'store', name });
  }
});

function fails(input: string, re: RegExp, code = 'BAD_REFERENCE'): void {
  assert.throws(() => parseImageReference(input), (e: unknown) => {
    assert.ok(e instanceof HoistError, `HoistError for ${input}`);
    assert.equal(e.code, code, `${input}: ${e.message}`);
    assert.ok(!e.message.includes('\n'));
    assert.match(e.message, re);
    return true;
  }, input);
}

test('unknown transports and malformed references are clear errors', () => {
  fails('foo:bar/baz', /^unknown transport "foo" in "foo:bar\/baz"; use docker:\/\/, oci:, oci-archive:, docker-archive:, or a bare name for the local store$/);
  fails('foo:/tmp/x', /unknown transport "foo"/);
  fails('a:b:c', /invalid image reference "a:b:c".*tag "b:c"/);
  fails('Busybox', /invalid image reference "Busybox".*lowercase/);
  fails('', /empty/);
  fails('docker://', /invalid image reference "docker:\/\/": empty/);
  fails('docker:busybox', /docker:\/\/host\/name/);
  fails('docker://x/Upper', /lowercase/);
  fails('oci:', /oci: needs a path/);
  fails('oci:/tmp/x:bad name', /not a valid image name/);
  fails('docker-archive:a.tar:@x', /not an image index/);
  fails(`docker-archive:a.tar:busybox@sha256:${'d'.repeat(64)}`, /has a digest/);
  fails('docker-archive::x', /needs a file/);
});

test('transports hoist does not implement say so', () => {
  fails('dir:/tmp/x', /^dir:\/tmp\/x: the dir: transport is not supported yet/, 'NOT_SUPPORTED');
  fails('docker-daemon:busybox:latest', /daemonless/, 'NOT_SUPPORTED');
  fails('containers-storage:busybox', /podman/, 'NOT_SUPPORTED');
});
