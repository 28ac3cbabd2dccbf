/** images / tag / rmi / prune on the local store, and whole-index copies, through the CLI. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoist, ok, run } from '../helpers/run.ts';
import { makeBusyboxImage, makeBusyboxIndex } from '../../testdata/make-busybox.ts';

let tmp: string;
before(async () => { tmp = await mkdtemp(path.join(tmpdir(), 'hoist-store-cli-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

async function blobCount(root: string): Promise<number> {
  return (await readdir(path.join(root, 'blobs', 'sha256'))).length;
}

test('images, tag, rmi and prune', async () => {
  const root = path.join(tmp, 's1');
  const src = path.join(tmp, 'bb1');
  const { digest } = await makeBusyboxImage(src);
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, 'busybox']));
  await ok(hoist(root, ['tag', 'busybox', 'localhost/mine:1', 'other']));

  const list = JSON.parse((await ok(hoist(root, ['images', '--format', 'json']))).stdout) as { Digest: string; Names: string[]; Size: number }[];
  assert.equal(list.length, 1);
  assert.equal(list[0]!.Digest, digest);
  assert.deepEqual([...list[0]!.Names].sort(), ['docker.io/library/busybox:latest', 'docker.io/library/other:latest', 'localhost/mine:1']);
  assert.ok(list[0]!.Size > 1_000_000);

  const table = (await ok(hoist(root, ['images']))).stdout;
  assert.match(table, /^REPOSITORY\s+TAG\s+IMAGE ID/);
  assert.match(table, /localhost\/mine\s+1\s+/);

  // tag by digest prefix works too
  await ok(hoist(root, ['tag', digest.slice(7, 19), 'bydigest']));

  await ok(hoist(root, ['rmi', 'busybox', 'other', 'localhost/mine:1']));
  const before = await blobCount(root);
  const p1 = await ok(hoist(root, ['prune']));
  assert.equal(p1.stdout.trim(), '', 'bydigest still names the image: nothing to prune');
  assert.equal(await blobCount(root), before);

  await ok(hoist(root, ['rmi', 'bydigest']));
  const p2 = await ok(hoist(root, ['prune']));
  assert.equal(p2.stdout.trim().split('\n').length, 3, 'manifest, config and layer pruned');
  assert.equal(await blobCount(root), 0);
  const index = JSON.parse(await readFile(path.join(root, 'index.json'), 'utf8')) as { manifests: unknown[] };
  assert.deepEqual(index.manifests, []);
});

test('signature attachments are not listed as images, and go with the last name of their repository on rmi', async () => {
  const root = path.join(tmp, 's-sig');
  const src = path.join(tmp, 'bb-sig');
  const { digest } = await makeBusyboxImage(src);
  const env = { COSIGN_PASSWORD: 'pw' };
  const key = path.join(tmp, 'sigkey');
  await ok(hoist(root, ['generate-key', '--output-prefix', key], { env }));
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, 'busybox']));
  await ok(hoist(root, ['sign', '-q', '--key', `${key}.private`, 'busybox'], { env }));
  const hex = digest.slice('sha256:'.length);
  const refNames = async () => (JSON.parse(await readFile(path.join(root, 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] })
    .manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']).sort();
  const sig = `docker.io/library/busybox:sha256-${hex}.sig`;
  const fallback = `docker.io/library/busybox:sha256-${hex}`;
  assert.deepEqual(await refNames(), ['docker.io/library/busybox:latest', fallback, sig].sort());
  const list = JSON.parse((await ok(hoist(root, ['images', '--format', 'json']))).stdout) as { Digest: string; Names: string[] }[];
  assert.deepEqual(list.map((i) => [i.Digest, i.Names]), [[digest, ['docker.io/library/busybox:latest']]]);
  assert.doesNotMatch((await ok(hoist(root, ['images']))).stdout, /sha256-/);

  // Another name in the same repository keeps the attachments; one in another repository does not.
  await ok(hoist(root, ['tag', 'busybox', 'busybox:2', 'localhost/other:1']));
  await ok(hoist(root, ['rmi', 'busybox']));
  assert.deepEqual(await refNames(), ['docker.io/library/busybox:2', fallback, sig, 'localhost/other:1'].sort());
  await ok(hoist(root, ['rmi', 'busybox:2']));
  assert.deepEqual(await refNames(), ['localhost/other:1']);
});

test('rmi of a missing name fails with one line and exit 1; -f ignores it', async () => {
  const root = path.join(tmp, 's2');
  const r = await hoist(root, ['rmi', 'nosuch']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^hoist: no image named "nosuch" in the local store; list images with: hoist images\n$/);
  await ok(hoist(root, ['rmi', '-f', 'nosuch']));
});

test('a multi-platform index is copied whole, and --platform writes a one-platform index', async () => {
  const root = path.join(tmp, 's3');
  const src = path.join(tmp, 'idx');
  const idx = await makeBusyboxIndex(src, 'multi');
  await ok(hoist(root, ['copy', '-q', `oci:${src}:multi`, `oci:${tmp}/idx-copy:multi`]));
  const raw = (await ok(run('skopeo', ['inspect', '--raw', `oci:${tmp}/idx-copy:multi`]))).stdout;
  const { createHash } = await import('node:crypto');
  assert.equal(`sha256:${createHash('sha256').update(raw).digest('hex')}`, idx.digest);
  // every child manifest is in the copy
  const blobs = await readdir(path.join(tmp, 'idx-copy', 'blobs', 'sha256'));
  for (const c of idx.children) assert.ok(blobs.includes(c.digest.slice(7)), `child ${c.digest} copied`);

  const df = path.join(tmp, 'digest.txt');
  await ok(hoist(root, ['copy', '-q', '--platform', 'linux/arm64', '--digestfile', df, `oci:${src}:multi`, `oci:${tmp}/idx-arm:one`]));
  const one = JSON.parse((await ok(run('skopeo', ['inspect', '--raw', `oci:${tmp}/idx-arm:one`]))).stdout) as { manifests: { platform: { architecture: string } }[] };
  assert.equal(one.manifests.length, 1);
  assert.equal(one.manifests[0]!.platform.architecture, 'arm64');
  assert.notEqual(await readFile(df, 'utf8'), idx.digest);
  assert.match(await readFile(df, 'utf8'), /^sha256:[0-9a-f]{64}$/);
  const arm = JSON.parse((await ok(run('skopeo', ['inspect', '--override-arch', 'arm64', `oci:${tmp}/idx-arm:one`]))).stdout) as { Architecture: string };
  assert.equal(arm.Architecture, 'arm64');
});
