import { test } from 'node:test';
import assert from 'node:assert/strict';
import { familiarName, formatReference, parseDockerReference, repository } from '../../src/oci/reference.ts';
import { HoistError } from '../../src/errors.ts';

const D = 'sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa';

// [input, domain, path, tag, digest, full form, familiar form] — expectations from distribution/reference's own tests.
const valid: Array<[string, string, string, string | undefined, string | undefined, string, string]> = [
  ['busybox', 'docker.io', 'library/busybox', undefined, undefined, 'docker.io/library/busybox', 'busybox'],
  ['busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined, 'docker.io/library/busybox:latest', 'busybox:latest'],
  ['library/busybox', 'docker.io', 'library/busybox', undefined, undefined, 'docker.io/library/busybox', 'busybox'],
  ['docker.io/busybox', 'docker.io', 'library/busybox', undefined, undefined, 'docker.io/library/busybox', 'busybox'],
  ['docker.io/library/busybox', 'docker.io', 'library/busybox', undefined, undefined, 'docker.io/library/busybox', 'busybox'],
  ['index.docker.io/library/busybox:1', 'docker.io', 'library/busybox', '1', undefined, 'docker.io/library/busybox:1', 'busybox:1'],
  ['index.docker.io/debian', 'docker.io', 'library/debian', undefined, undefined, 'docker.io/library/debian', 'debian'],
  ['fooo/bar', 'docker.io', 'fooo/bar', undefined, undefined, 'docker.io/fooo/bar', 'fooo/bar'],
  ['docker.io/library/foo/bar', 'docker.io', 'library/foo/bar', undefined, undefined, 'docker.io/library/foo/bar', 'library/foo/bar'],
  ['other/library', 'docker.io', 'other/library', undefined, undefined, 'docker.io/other/library', 'other/library'],
  ['localhost/app', 'localhost', 'app', undefined, undefined, 'localhost/app', 'localhost/app'],
  ['localhost:5000/a/b:t', 'localhost:5000', 'a/b', 't', undefined, 'localhost:5000/a/b:t', 'localhost:5000/a/b:t'],
  [`127.0.0.1:5000/x@${D}`, '127.0.0.1:5000', 'x', undefined, D, `127.0.0.1:5000/x@${D}`, `127.0.0.1:5000/x@${D}`],
  [`busybox:latest@${D}`, 'docker.io', 'library/busybox', 'latest', D, `docker.io/library/busybox:latest@${D}`, `busybox:latest@${D}`],
  ['example.com:8000/private/moonbase', 'example.com:8000', 'private/moonbase', undefined, undefined, 'example.com:8000/private/moonbase', 'example.com:8000/private/moonbase'],
  ['test_com/foo', 'docker.io', 'test_com/foo', undefined, undefined, 'docker.io/test_com/foo', 'test_com/foo'],
  ['test-com:8080/foo', 'test-com:8080', 'foo', undefined, undefined, 'test-com:8080/foo', 'test-com:8080/foo'],
  ['xn--n3h.com:18080/foo', 'xn--n3h.com:18080', 'foo', undefined, undefined, 'xn--n3h.com:18080/foo', 'xn--n3h.com:18080/foo'],
  ['[fc00::1]:5000/docker/docker', '[fc00::1]:5000', 'docker/docker', undefined, undefined, '[fc00::1]:5000/docker/docker', '[fc00::1]:5000/docker/docker'],
  // An uppercase first component cannot be a namespace, so docker takes it for a registry host.
  ['Foo/bar', 'Foo', 'bar', undefined, undefined, 'Foo/bar', 'Foo/bar'],
  ['192.168.0.1:80', 'docker.io', 'library/192.168.0.1', '80', undefined, 'docker.io/library/192.168.0.1:80', '192.168.0.1:80'],
  ['docker---rules/d__o.c-k_er', 'docker.io', 'docker---rules/d__o.c-k_er', undefined, undefined, 'docker.io/docker---rules/d__o.c-k_er', 'docker---rules/d__o.c-k_er'],
  ['docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a', 'docker.io', 'library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a', undefined, undefined,
    'docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a', '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a'],
];

test('references normalize like docker', () => {
  for (const [input, domain, path, tag, digest, full, familiar] of valid) {
    const r = parseDockerReference(input);
    assert.deepEqual(r, { domain, path, ...(tag === undefined ? {} : { tag }), ...(digest === undefined ? {} : { digest }) }, input);
    assert.equal(formatReference(r), full, input);
    assert.equal(familiarName(r), familiar, input);
    assert.equal(repository(r), `${domain}/${path}`, input);
    // The full form is a fixed point.
    assert.deepEqual(parseDockerReference(full), r, `reparse ${full}`);
  }
});

test('defaultTag adds latest only when neither tag nor digest is given', () => {
  assert.equal(formatReference(parseDockerReference('busybox', { defaultTag: true })), 'docker.io/library/busybox:latest');
  assert.equal(familiarName(parseDockerReference('busybox', { defaultTag: true })), 'busybox:latest');
  assert.equal(parseDockerReference('busybox').tag, undefined);
  assert.equal(parseDockerReference('busybox:1.36', { defaultTag: true }).tag, '1.36');
  const byDigest = parseDockerReference(`busybox@${D}`, { defaultTag: true });
  assert.equal(byDigest.tag, undefined);
  assert.equal(byDigest.digest, D);
});

// [input, text the one-line message must contain]
const invalid: Array<[string, string]> = [
  ['Busybox', 'repository name must be lowercase'],
  ['Foo:bar', 'repository name must be lowercase'],
  ['docker/Docker', 'repository name must be lowercase'],
  ['docker.io/docker/Docker', 'repository name must be lowercase'],
  ['a:b:c', 'tag "b:c" is invalid'],
  ['busybox:', 'tag "" is invalid'],
  ['busybox:-x', 'tag "-x" is invalid'],
  [`busybox:${'a'.repeat(129)}`, 'is invalid'],
  ['busybox@sha256:zz', 'digest "sha256:zz" is invalid'],
  ['busybox@md5:d41d8cd98f00b204e9800998ecf8427e', 'digest "md5:d41d8cd98f00b204e9800998ecf8427e" is invalid'],
  [`busybox@${D.toUpperCase().replace('SHA256', 'sha256')}`, 'is invalid'],
  ['https://github.com/docker/docker', 'no URL scheme'],
  ['-docker', 'component "-docker" is invalid'],
  ['-docker/docker', 'component "-docker" is invalid'],
  ['docker-/docker', 'component "docker-" is invalid'],
  ['-docker.io/docker/docker', '"-docker.io" is not a valid registry host'],
  ['docker///docker', 'empty component'],
  ['docker/', 'empty component'],
  ['____/____', 'component "____" is invalid'],
  // A first component with a dot is taken for a registry host, as docker does.
  ['dock..er/docker', '"dock..er" is not a valid registry host'],
  ['dock_.er/docker', '"dock_.er" is not a valid registry host'],
  ['library/dock..er', 'component "dock..er" is invalid'],
  ['[fc00::1]', 'is invalid'],
  ['[fc00::1]:5000', 'is invalid'],
  ['fc00::1:5000/debian', 'is not a valid registry host'],
  ['[fe80::1%eth0]:5000/debian', 'is not a valid registry host'],
  ['1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a', 'image ID'],
  [`${'a'.repeat(300)}/docker`, 'must not be more than 255 characters'],
  ['', 'empty'],
];

test('invalid references fail with one clear line naming the input', () => {
  for (const [input, fragment] of invalid) {
    assert.throws(() => parseDockerReference(input), (e: unknown) => {
      assert.ok(e instanceof HoistError, input);
      assert.equal(e.code, 'BAD_REFERENCE', input);
      assert.ok(e.message.startsWith(`invalid image reference "${input}": `), `${input}: ${e.message}`);
      assert.ok(e.message.includes(fragment), `${input}: expected "${fragment}" in: ${e.message}`);
      assert.ok(!e.message.includes('\n'), input);
      return true;
    });
  }
});

test('the lowercase error reads exactly as documented', () => {
  assert.throws(() => parseDockerReference('Foo:bar'), { message: 'invalid image reference "Foo:bar": repository name must be lowercase' });
});
