/**
 * Interop with the peers as independent readers and writers (issue "Foundation" acceptance):
 * what hoist writes into its store or an oci: layout, skopeo and umoci read with the same manifest digest;
 * what skopeo writes into oci: and docker-archive:, hoist reads with identical digests; a docker-archive written by
 * hoist gives skopeo the same config.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoist, ok, run } from '../helpers/run.ts';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';

let tmp: string;
let root: string;
let src: string;
let srcDigest: string;
const NAME = 'docker.io/library/busybox:latest';

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-interop-'));
  root = path.join(tmp, 'store');
  src = path.join(tmp, 'bb');
  srcDigest = (await makeBusyboxImage(src, 'latest')).digest;
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

async function skopeoDigest(ref: string): Promise<string> {
  const r = await ok(run('skopeo', ['inspect', '--raw', ref]));
  const { createHash } = await import('node:crypto');
  return `sha256:${createHash('sha256').update(r.stdout).digest('hex')}`;
}

test('an image hoist copies into its store is read by skopeo and umoci with the same digest', async () => {
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, 'busybox']));
  assert.equal(await skopeoDigest(`oci:${root}:${NAME}`), srcDigest);
  const ins = JSON.parse((await ok(run('skopeo', ['inspect', `oci:${root}:${NAME}`]))).stdout) as { Digest: string };
  assert.equal(ins.Digest, srcDigest);
  const ls = await ok(run('umoci', ['ls', '--layout', root]));
  assert.match(ls.stdout, /docker\.io\/library\/busybox:latest/);
  const bundle = path.join(tmp, 'bundle-store');
  await ok(run('umoci', ['unpack', '--rootless', '--image', `${root}:${NAME}`, bundle]));
  assert.ok((await readdir(path.join(bundle, 'rootfs', 'bin'))).includes('busybox'));
});

test('an image hoist writes to an oci: layout is read by skopeo and umoci with the same digest', async () => {
  const dst = path.join(tmp, 'out-oci');
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, `oci:${dst}:v1`]));
  assert.equal(await skopeoDigest(`oci:${dst}:v1`), srcDigest);
  const bundle = path.join(tmp, 'bundle-oci');
  await ok(run('umoci', ['unpack', '--rootless', '--image', `${dst}:v1`, bundle]));
  assert.ok((await readdir(path.join(bundle, 'rootfs', 'bin'))).includes('sh'));
});

test('hoist inspect agrees with skopeo inspect key for key on an oci: layout', async () => {
  const mine = JSON.parse((await ok(hoist(root, ['inspect', `oci:${src}:latest`]))).stdout) as Record<string, unknown>;
  const theirs = JSON.parse((await ok(run('skopeo', ['inspect', `oci:${src}:latest`]))).stdout) as Record<string, unknown>;
  for (const [k, v] of Object.entries(theirs)) assert.deepEqual(mine[k], v, `key ${k}`);
  // LayersData is newer skopeo's (1.9.3 here lacks it); hoist always writes it.
  assert.ok(Array.isArray(mine['LayersData']));
  const myConfig = (await ok(hoist(root, ['inspect', '--config', `oci:${src}:latest`]))).stdout;
  const theirConfig = (await ok(run('skopeo', ['inspect', '--config', `oci:${src}:latest`]))).stdout;
  assert.equal(myConfig, theirConfig);
  const myRaw = (await ok(hoist(root, ['inspect', '--raw', `oci:${src}:latest`]))).stdout;
  const theirRaw = (await ok(run('skopeo', ['inspect', '--raw', `oci:${src}:latest`]))).stdout;
  assert.equal(myRaw, theirRaw);
});

test('images skopeo writes into oci: and docker-archive: are read by hoist with identical digests', async () => {
  const sk = path.join(tmp, 'sk-oci');
  await ok(run('skopeo', ['copy', '-q', `oci:${src}:latest`, `oci:${sk}:t`]));
  const fromOci = JSON.parse((await ok(hoist(root, ['inspect', `oci:${sk}:t`]))).stdout) as { Digest: string };
  assert.equal(fromOci.Digest, await skopeoDigest(`oci:${sk}:t`));

  const arch = path.join(tmp, 'sk.tar');
  await ok(run('skopeo', ['copy', '-q', `oci:${src}:latest`, `docker-archive:${arch}:busybox:latest`]));
  const mine = JSON.parse((await ok(hoist(root, ['inspect', `docker-archive:${arch}`]))).stdout) as { Digest: string; Layers: string[] };
  const theirs = JSON.parse((await ok(run('skopeo', ['inspect', `docker-archive:${arch}`]))).stdout) as { Digest: string; Layers: string[] };
  assert.equal(mine.Digest, theirs.Digest);
  assert.deepEqual(mine.Layers, theirs.Layers);
  // And hoist copies it on into its store with that digest: the store keeps Docker manifests byte for byte
  // (skopeo 1.9's oci: reader only takes OCI-typed manifests, so read it back with hoist).
  await ok(hoist(root, ['copy', '-q', `docker-archive:${arch}`, 'from-archive:1']));
  const back = JSON.parse((await ok(hoist(root, ['inspect', 'from-archive:1']))).stdout) as { Digest: string };
  assert.equal(back.Digest, theirs.Digest);
});

test('a docker-archive hoist writes gives skopeo the same config', async () => {
  const arch = path.join(tmp, 'hoist.tar');
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, `docker-archive:${arch}:busybox:latest`]));
  const theirs = (await ok(run('skopeo', ['inspect', '--config', '--raw', `docker-archive:${arch}`]))).stdout;
  const orig = (await ok(run('skopeo', ['inspect', '--config', '--raw', `oci:${src}:latest`]))).stdout;
  assert.equal(theirs, orig);
  const manifestJson = JSON.parse((await ok(run('tar', ['-xOf', arch, 'manifest.json']))).stdout) as { RepoTags: string[] }[];
  assert.deepEqual(manifestJson[0]!.RepoTags, ['docker.io/library/busybox:latest']);
});

test('an oci-archive round trip keeps the digest', async () => {
  const arch = path.join(tmp, 'hoist-oci.tar');
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, `oci-archive:${arch}:v2`]));
  assert.equal(await skopeoDigest(`oci-archive:${arch}:v2`), srcDigest);
  await ok(hoist(root, ['copy', '-q', `oci-archive:${arch}:v2`, 'roundtrip:v2']));
  const r = JSON.parse((await ok(hoist(root, ['inspect', 'roundtrip:v2']))).stdout) as { Digest: string };
  assert.equal(r.Digest, srcDigest);
});
