/**
 * `hoist copy` against real registries (distribution 2.8 on loopback, plain http), through the CLI as a process,
 * with skopeo as the independent writer and reader: digests must survive registry → registry, layout → registry
 * and back, multi-platform indexes stay byte-identical, --platform writes a valid one-platform index, --all-tags
 * copies every tag, and bad targets fail with one line.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoist, ok, run } from '../helpers/run.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { makeBusyboxImage, makeBusyboxIndex } from '../../testdata/make-busybox.ts';

let tmp: string;
let root: string;
let r1: TestRegistry;
let r2: TestRegistry;
let image: string;
let imageDigest: string;
let index: string;
let indexDigest: string;

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-regcopy-'));
  root = path.join(tmp, 'store');
  image = path.join(tmp, 'bb');
  index = path.join(tmp, 'idx');
  [r1, r2] = await Promise.all([startRegistry(), startRegistry()]);
  imageDigest = (await makeBusyboxImage(image, 'latest')).digest;
  indexDigest = (await makeBusyboxIndex(index, 'latest')).digest;
});
after(async () => {
  await Promise.all([r1?.stop(), r2?.stop()]);
  await rm(tmp, { recursive: true, force: true });
});

const sha256 = (s: string | Buffer) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

async function skopeoRaw(ref: string): Promise<string> {
  return (await ok(run('skopeo', ['inspect', '--raw', '--tls-verify=false', ref]))).stdout;
}

async function skopeoPush(from: string, to: string, ...extra: string[]): Promise<void> {
  await ok(run('skopeo', ['copy', '-q', '--dest-tls-verify=false', ...extra, from, to]));
}

/** A port with nothing listening: bound then released. */
async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

test('skopeo pushes, hoist copies to another repository and another registry, skopeo sees the same digest', async () => {
  await skopeoPush(`oci:${image}:latest`, `docker://${r1.host}/a:1`);
  assert.equal(sha256(await skopeoRaw(`docker://${r1.host}/a:1`)), imageDigest);
  // Go-style booleans on both sides, as skopeo users write them.
  await ok(hoist(root, ['copy', '-q', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${r1.host}/a:1`, `docker://${r1.host}/b/c:2`]));
  await ok(hoist(root, ['copy', '-q', '--tls-verify=false', '--retry-times', '2', '--retry-delay', '100ms', '-j', '2',
    `docker://${r1.host}/a:1`, `docker://${r2.host}/copied:v1`]));
  assert.equal(sha256(await skopeoRaw(`docker://${r1.host}/b/c:2`)), imageDigest);
  assert.equal(sha256(await skopeoRaw(`docker://${r2.host}/copied:v1`)), imageDigest);
});

test('hoist pushes from an oci: layout, skopeo pulls the same image back', async () => {
  const digestfile = path.join(tmp, 'push.digest');
  await ok(hoist(root, ['copy', '-q', '--dest-tls-verify', '--digestfile', digestfile, `oci:${image}:latest`, `docker://${r2.host}/pushed:x`]));
  assert.equal(await readFile(digestfile, 'utf8'), imageDigest);
  assert.equal(sha256(await skopeoRaw(`docker://${r2.host}/pushed:x`)), imageDigest);
  const out = path.join(tmp, 'pulled');
  await skopeoPush(`docker://${r2.host}/pushed:x`, `oci:${out}:got`, '--src-tls-verify=false');
  assert.equal(sha256(await readFile(path.join(out, 'blobs', 'sha256', imageDigest.slice(7)))), imageDigest);
});

test('a two-platform index keeps its digest registry → registry; --platform writes a valid one-platform index', async () => {
  await skopeoPush(`oci:${index}:latest`, `docker://${r1.host}/multi:1`, '--all');
  await ok(hoist(root, ['copy', '-q', '-a', `docker://${r1.host}/multi:1`, `docker://${r2.host}/multi:1`]));
  assert.equal(sha256(await skopeoRaw(`docker://${r2.host}/multi:1`)), indexDigest);

  const digestfile = path.join(tmp, 'arm.digest');
  await ok(hoist(root, ['copy', '-q', '--platform', 'linux/arm64', '--digestfile', digestfile, `docker://${r1.host}/multi:1`, `docker://${r2.host}/multi:arm`]));
  const raw = await skopeoRaw(`docker://${r2.host}/multi:arm`);
  const written = await readFile(digestfile, 'utf8');
  assert.equal(sha256(raw), written);
  assert.notEqual(written, indexDigest);
  const idx = JSON.parse(raw) as { manifests: { digest: string; platform: { architecture: string } }[] };
  assert.equal(idx.manifests.length, 1);
  assert.equal(idx.manifests[0]!.platform.architecture, 'arm64');
  // The child it lists is there and is the source's arm64 image, byte for byte.
  const src = JSON.parse(await skopeoRaw(`docker://${r1.host}/multi:1`)) as typeof idx;
  const arm = src.manifests.find((m) => m.platform.architecture === 'arm64')!;
  assert.equal(idx.manifests[0]!.digest, arm.digest);
  assert.equal(sha256(await skopeoRaw(`docker://${r2.host}/multi@${arm.digest}`)), arm.digest);
});

test('--all-tags copies every tag of a repository', async () => {
  for (const t of ['t1', 't2', 't3']) await skopeoPush(`oci:${image}:latest`, `docker://${r1.host}/many:${t}`);
  const r = await ok(hoist(root, ['copy', '--all-tags', '--dest-tls-verify=false', `docker://${r1.host}/many`, `docker://${r2.host}/many-copy`]));
  assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('Copied tag')).length, 3);
  const tags = JSON.parse((await ok(run('skopeo', ['list-tags', '--tls-verify=false', `docker://${r2.host}/many-copy`]))).stdout) as { Tags: string[] };
  assert.deepEqual([...tags.Tags].sort(), ['t1', 't2', 't3']);
  for (const t of tags.Tags) assert.equal(sha256(await skopeoRaw(`docker://${r2.host}/many-copy:${t}`)), imageDigest);

  const tagged = await hoist(root, ['copy', '--all-tags', `docker://${r1.host}/many:t1`, `docker://${r2.host}/x`]);
  assert.notEqual(tagged.code, 0);
  assert.match(tagged.stderr, /^hoist: --all-tags: .*names a tag or digest.*\n$/);
});

test('--additional-tag and --dest-compress-format reach the engine: skopeo sees the tags and reads the zstd layer', async () => {
  await ok(hoist(root, ['copy', '-q', '--additional-tag', 'extra', '--additional-tag', 'more', '--remove-signatures',
    '--dest-compress-format', 'zstd', '--dest-compress-level', '3', `oci:${image}:latest`, `docker://${r2.host}/tagged:main`]));
  const tags = JSON.parse((await ok(run('skopeo', ['list-tags', '--tls-verify=false', `docker://${r2.host}/tagged`]))).stdout) as { Tags: string[] };
  assert.deepEqual([...tags.Tags].sort(), ['extra', 'main', 'more']);
  const raw = await skopeoRaw(`docker://${r2.host}/tagged:extra`);
  assert.equal(sha256(await skopeoRaw(`docker://${r2.host}/tagged:main`)), sha256(raw));
  const m = JSON.parse(raw) as { layers: { mediaType: string }[] };
  assert.match(m.layers[0]!.mediaType, /zstd$/);
  // skopeo verifies every blob it pulls: the recompressed layer's digest and size are right.
  await skopeoPush(`docker://${r2.host}/tagged:more`, `oci:${tmp}/zstd-pulled:x`, '--src-tls-verify=false');

  const bad = await hoist(root, ['copy', '--dest-compress-level', '3', `oci:${image}:latest`, `docker://${r2.host}/tagged:x`]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^hoist: --dest-compress-level needs --dest-compress-format[^\n]*\n$/);
});

test('--multi-arch index-only is refused with one line; system copies this machine\'s image', async () => {
  const r = await hoist(root, ['copy', '--multi-arch', 'index-only', `docker://${r1.host}/multi:1`, `docker://${r2.host}/m:io`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^hoist: --multi-arch index-only is not supported[^\n]*\n$/);
  await ok(hoist(root, ['copy', '-q', '--multi-arch', 'system', '--override-arch', 'arm64', '--override-variant', 'v8',
    `docker://${r1.host}/multi:1`, `docker://${r2.host}/m:sys`]));
  const idx = JSON.parse(await skopeoRaw(`docker://${r2.host}/m:sys`)) as { manifests: { platform: { architecture: string } }[] };
  assert.deepEqual(idx.manifests.map((m) => m.platform.architecture), ['arm64']);
});

test('bad targets fail with one line and a non-zero exit', async () => {
  const port = await deadPort();
  const cases: [string[], RegExp][] = [
    [['copy', `docker://127.0.0.1:${port}/a:1`, `oci:${tmp}/never:x`], /refused/],
    [['copy', `docker://${r1.host}/no-such-repo:1`, `oci:${tmp}/never:x`], /no-such-repo/],
    [['copy', `docker://${r1.host}/a:no-such-tag`, `oci:${tmp}/never:x`], /no-such-tag/],
    [['copy', '--dest-tls-verify=perhaps', `oci:${image}:latest`, `docker://${r1.host}/a:1`], /--dest-tls-verify=perhaps: not a boolean/],
    [['copy', '--retry-delay', '5 parsecs', `oci:${image}:latest`, `docker://${r1.host}/a:1`], /--retry-delay 5 parsecs: not a duration/],
  ];
  for (const [args, re] of cases) {
    const r = await hoist(root, ['copy', '-q', ...args.slice(1)]);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, /^hoist: [^\n]+\n$/, `one line for ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
});
