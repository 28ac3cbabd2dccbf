/**
 * Bad input: one clear line on stderr (`hoist: …`), a non-zero exit, and the store unchanged.
 * Each case names what was wrong and where.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, writeFile, readdir, truncate, stat, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hoist, ok } from '../helpers/run.ts';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';

let tmp: string;
let root: string;
let src: string;
let layerDigest: string;

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-bad-'));
  root = path.join(tmp, 'store');
  src = path.join(tmp, 'bb');
  const { digest } = await makeBusyboxImage(src);
  const m = JSON.parse(await readFile(path.join(src, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
  layerDigest = m.layers[0]!.digest;
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, 'keep']));
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, `oci-archive:${tmp}/good-oci.tar`]));
  await ok(hoist(root, ['copy', '-q', `oci:${src}:latest`, `docker-archive:${tmp}/good-docker.tar`]));
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

async function storeSnapshot(): Promise<string> {
  const index = await readFile(path.join(root, 'index.json'), 'utf8');
  const blobs = (await readdir(path.join(root, 'blobs', 'sha256'))).sort().join(',');
  return `${index}|${blobs}`;
}

/** Runs a failing copy into the store and checks the one-line message, the exit code, and that the store is unchanged. */
async function failsCleanly(args: string[], message: RegExp): Promise<void> {
  const before = await storeSnapshot();
  const r = await hoist(root, args);
  assert.notEqual(r.code, 0, `exit code for ${args.join(' ')}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^hoist: /);
  assert.match(lines[0]!, message);
  assert.equal(r.stdout, '');
  assert.equal(await storeSnapshot(), before, 'store unchanged');
  const tmpDir = path.join(root, '.tmp');
  const leftovers = await readdir(tmpDir).catch(() => []);
  assert.deepEqual(leftovers, [], 'no temp files left');
}

test('malformed references', async () => {
  await failsCleanly(['copy', `oci:${src}:latest`, 'Busybox'], /invalid image reference "Busybox".*lowercase/);
  await failsCleanly(['copy', `oci:${src}:latest`, 'a:b:c'], /invalid image reference "a:b:c"/);
  await failsCleanly(['inspect', 'docker://'], /invalid image reference|empty/);
});

test('unknown transports', async () => {
  await failsCleanly(['copy', 'foo:bar/baz', 'x'], /unknown transport "foo".*docker:\/\/, oci:, oci-archive:, docker-archive:/);
});

test('missing files and layouts', async () => {
  await failsCleanly(['copy', `oci:${tmp}/nope:latest`, 'x'], /nope.*(not found|does not exist|no such)/i);
  await failsCleanly(['copy', `oci-archive:${tmp}/nope.tar`, 'x'], /nope\.tar.*(not found|does not exist|no such)/i);
  await failsCleanly(['copy', `docker-archive:${tmp}/nope.tar`, 'x'], /nope\.tar.*(not found|does not exist|no such)/i);
  await failsCleanly(['copy', `oci:${src}:nosuchref`, 'x'], /nosuchref/);
  await failsCleanly(['inspect', 'not-in-store'], /not-in-store.*not found in the local store/);
});

test('corrupt and truncated archives', async () => {
  const junk = path.join(tmp, 'junk.tar');
  await writeFile(junk, 'this is not a tar archive at all, just text\n'.repeat(40));
  await failsCleanly(['copy', `oci-archive:${junk}`, 'x'], /junk\.tar/);
  await failsCleanly(['copy', `docker-archive:${junk}`, 'x'], /junk\.tar/);

  for (const name of ['good-oci.tar', 'good-docker.tar']) {
    const cut = path.join(tmp, `cut-${name}`);
    await cp(path.join(tmp, name), cut);
    await truncate(cut, Math.floor((await stat(cut)).size / 2));
    const transport = name.startsWith('good-oci') ? 'oci-archive' : 'docker-archive';
    await failsCleanly(['copy', `${transport}:${cut}`, 'x'], /cut-good-/);
  }
});

test('digest mismatch in a source blob', async () => {
  // A different image (other mtimes → other layer digest), so the store does not already hold the blob we corrupt.
  const bad = path.join(tmp, 'bad-layout');
  process.env['SOURCE_DATE_EPOCH'] = '1000';
  const { digest } = await makeBusyboxImage(bad);
  delete process.env['SOURCE_DATE_EPOCH'];
  const m = JSON.parse(await readFile(path.join(bad, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
  assert.notEqual(m.layers[0]!.digest, layerDigest);
  const blob = path.join(bad, 'blobs', 'sha256', m.layers[0]!.digest.slice(7));
  const bytes = await readFile(blob);
  bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
  await writeFile(blob, bytes);
  await failsCleanly(['copy', '-q', `oci:${bad}:latest`, 'tampered'], /does not match its digest|digest/);
});

test('--debug shows the stack', async () => {
  const r = await hoist(root, ['--debug', 'copy', 'foo:bar/baz', 'x']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /\n\s+at /);
});
