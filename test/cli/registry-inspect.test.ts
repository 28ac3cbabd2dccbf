/**
 * Reading a real registry through the CLI, compared with skopeo's output on the same references:
 * inspect (key for key, --raw, --config, --format), list-tags JSON, delete, manifest-digest.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoist, ok, run } from '../helpers/run.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { makeBusyboxImage, makeBusyboxIndex } from '../../testdata/make-busybox.ts';

let tmp: string;
let root: string;
let reg: TestRegistry;
let imageDigest: string;
let indexDigest: string;

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-reginspect-'));
  root = path.join(tmp, 'store');
  reg = await startRegistry();
  imageDigest = (await makeBusyboxImage(path.join(tmp, 'bb'), 'latest')).digest;
  indexDigest = (await makeBusyboxIndex(path.join(tmp, 'idx'), 'latest')).digest;
  for (const tag of ['1', '2', 'latest']) {
    await ok(run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${tmp}/bb:latest`, `docker://${reg.host}/app:${tag}`]));
  }
  await ok(run('skopeo', ['copy', '-q', '--all', '--dest-tls-verify=false', `oci:${tmp}/idx:latest`, `docker://${reg.host}/multi:1`]));
});
after(async () => {
  await reg?.stop();
  await rm(tmp, { recursive: true, force: true });
});

const skopeo = (args: string[]) => ok(run('skopeo', [args[0]!, '--tls-verify=false', ...args.slice(1)]));

test('hoist inspect docker:// equals skopeo inspect key for key (Name and RepoTags included)', async () => {
  for (const ref of [`docker://${reg.host}/app:1`, `docker://${reg.host}/multi:1`]) {
    const mine = JSON.parse((await ok(hoist(root, ['inspect', '--tls-verify=false', ref]))).stdout) as Record<string, unknown>;
    const theirs = JSON.parse((await skopeo(['inspect', ref])).stdout) as Record<string, unknown>;
    assert.ok(Object.keys(theirs).length >= 10, `skopeo printed ${Object.keys(theirs).join(',')}`);
    for (const [k, v] of Object.entries(theirs)) {
      if (k === 'RepoTags') assert.deepEqual([...(mine[k] as string[])].sort(), [...(v as string[])].sort(), `${ref} key ${k}`);
      else assert.deepEqual(mine[k], v, `${ref} key ${k}`);
    }
    assert.equal(mine['Name'], ref.replace(/^docker:\/\//, '').replace(/:[^:/]+$/, ''));
  }
  const mine = JSON.parse((await ok(hoist(root, ['inspect', `docker://${reg.host}/app:1`]))).stdout) as { Digest: string; RepoTags: string[] };
  assert.equal(mine.Digest, imageDigest);
  assert.deepEqual([...mine.RepoTags].sort(), ['1', '2', 'latest']);
  const noTags = JSON.parse((await ok(hoist(root, ['inspect', '-n', `docker://${reg.host}/app:1`]))).stdout) as { RepoTags: string[] };
  assert.deepEqual(noTags.RepoTags, []);
});

test('inspect --raw and --config equal skopeo\'s; --format renders a template', async () => {
  for (const ref of [`docker://${reg.host}/app:1`, `docker://${reg.host}/multi:1`]) {
    assert.equal((await ok(hoist(root, ['inspect', '--raw', ref]))).stdout, (await skopeo(['inspect', '--raw', ref])).stdout);
    assert.deepEqual(
      JSON.parse((await ok(hoist(root, ['inspect', '--config', ref]))).stdout),
      JSON.parse((await skopeo(['inspect', '--config', ref])).stdout),
    );
  }
  const d = await ok(hoist(root, ['inspect', '--format', '{{.Digest}}', `docker://${reg.host}/multi:1`]));
  assert.equal(d.stdout, `${indexDigest}\n`);
  assert.equal(d.stdout, (await skopeo(['inspect', '--format', '{{.Digest}}', `docker://${reg.host}/multi:1`])).stdout);
  const arm = await ok(hoist(root, ['inspect', '--override-arch', 'arm64', '--format', '{{.Architecture}} {{.Variant}}', `docker://${reg.host}/multi:1`]));
  assert.equal(arm.stdout, 'arm64 v8\n');
  const os = await ok(hoist(root, ['inspect', '--config', '--format', '{{.os}}', `docker://${reg.host}/app:1`]));
  assert.equal(os.stdout, 'linux\n');
});

test('list-tags prints skopeo\'s JSON', async () => {
  const mine = (await ok(hoist(root, ['list-tags', `docker://${reg.host}/app`]))).stdout;
  const theirs = (await skopeo(['list-tags', `docker://${reg.host}/app`])).stdout;
  assert.deepEqual(JSON.parse(mine), JSON.parse(theirs));
  assert.equal(mine, theirs);
});

test('manifest-digest prints the sha256 of the file, as skopeo does', async () => {
  const file = path.join(tmp, 'manifest.json');
  await writeFile(file, (await skopeo(['inspect', '--raw', `docker://${reg.host}/multi:1`])).stdout);
  const mine = (await ok(hoist(root, ['manifest-digest', file]))).stdout;
  assert.equal(mine, `${indexDigest}\n`);
  assert.equal(mine, (await ok(run('skopeo', ['manifest-digest', file]))).stdout);
  assert.equal(mine, `sha256:${createHash('sha256').update(await readFile(file)).digest('hex')}\n`);
});

test('delete removes the manifest; inspecting it afterwards fails with one not-found line', async () => {
  await ok(run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${tmp}/bb:latest`, `docker://${reg.host}/gone:1`]));
  await ok(hoist(root, ['delete', '--tls-verify=false', `docker://${reg.host}/gone:1`]));
  const r = await hoist(root, ['inspect', `docker://${reg.host}/gone:1`]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^hoist: [^\n]*gone:1[^\n]*not found[^\n]*\n$/);
  const s = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/gone:1`]);
  assert.notEqual(s.code, 0, 'skopeo no longer finds it either');

  const again = await hoist(root, ['delete', `docker://${reg.host}/gone:1`]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /^hoist: [^\n]*gone:1: manifest unknown[^\n]*\n$/);
});
