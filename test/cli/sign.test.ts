/**
 * `hoist generate-key`, `hoist sign`, `hoist verify` and `hoist copy --sign-by-sigstore-private-key` as processes,
 * against a real registry (distribution 2.8, behind a counting proxy), oci: layouts and the local store: round trips in
 * both formats, signing without a single layer GET, appending, tampering, wrong keys and identities, --recursive,
 * signatures carried (or dropped) by copy, skopeo reading and carrying what hoist wrote, and skopeo's key fixture.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hoist, ok, run, type RunResult } from '../helpers/run.ts';
import { makeImage, type MadeImage } from '../helpers/make-image.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';

const FIXTURE = fileURLToPath(new URL('../../testdata/sigstore-skopeo-1.18/', import.meta.url));
const REF_NAME = 'org.opencontainers.image.ref.name';

let tmp: string;
let root: string;
let reg: TestRegistry;
let proxy: FaultProxy;
let layout: string;
let img: MadeImage;
let key: string;
let pass: string;

const sha256 = (b: string | Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hexOf = (d: string) => d.slice('sha256:'.length);

/** hoist with the test key's passphrase in COSIGN_PASSWORD. */
function h(args: string[]): Promise<RunResult> {
  return hoist(root, args, { env: { COSIGN_PASSWORD: 'pw' } });
}

function oneLine(r: RunResult): string {
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${r.stderr}`);
  return lines[0]!;
}

interface Check { format: string; digest: string; identity: string; valid: boolean; reason?: string }

async function verifyJson(args: string[]): Promise<{ code: number; checks: Check[]; stderr: string }> {
  const r = await h(['verify', '--format', 'json', ...args]);
  return { code: r.code, checks: r.stdout.trim() ? JSON.parse(r.stdout) as Check[] : [], stderr: r.stderr };
}

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-sign-cli-'));
  root = path.join(tmp, 'store');
  reg = await startRegistry();
  proxy = await startFaultProxy(reg.url);
  layout = path.join(tmp, 'lay');
  img = await makeImage(layout, { layers: [{ files: { 'etc/hello': 'hi\n' } }, { files: { 'etc/two': 'two\n' } }], ref: 'app' });
  key = path.join(tmp, 'k');
  pass = path.join(tmp, 'pass.txt');
  await writeFile(pass, 'pw\n');
  await ok(h(['generate-key', '--output-prefix', key]));
  await ok(h(['copy', '-q', '--remove-signatures', `oci:${layout}:app`, `docker://${reg.host}/app:1`]));
});
after(async () => {
  await proxy?.stop();
  await reg?.stop();
  await rm(tmp, { recursive: true, force: true });
});

test('generate-key writes an encrypted private key (0600) and a public key, and never overwrites them', async () => {
  const priv = await readFile(`${key}.private`, 'utf8');
  assert.match(priv, /^-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n/);
  assert.match(await readFile(`${key}.pub`, 'utf8'), /^-----BEGIN PUBLIC KEY-----\n/);
  assert.equal((await stat(`${key}.private`)).mode & 0o777, 0o600);
  const again = await h(['generate-key', '--output-prefix', key]);
  assert.notEqual(again.code, 0);
  assert.match(oneLine(again), /k\.private already exists; refusing to overwrite/);
  assert.equal(await readFile(`${key}.private`, 'utf8'), priv);
  // skopeo's command name, passphrase from a file.
  const other = path.join(tmp, 'alias');
  const r = await ok(hoist(root, ['generate-sigstore-key', '--output-prefix', other, '--passphrase-file', pass]));
  assert.match(r.stdout, /Key written to ".*alias\.private" and ".*alias\.pub"/);
  // No passphrase source at all (stdin is not a terminal here): one line saying how to give one.
  const none = await hoist(root, ['generate-key', '--output-prefix', path.join(tmp, 'none')], { env: { COSIGN_PASSWORD: undefined } });
  assert.equal(none.code, 2);
  assert.match(oneLine(none), /--passphrase-file FILE or set COSIGN_PASSWORD/);
});

test('sign through a counting proxy fetches no blob at all; verify finds both formats valid (text and json)', async () => {
  const ref = `docker://${proxy.host}/app:1`;
  const before = proxy.requests.length;
  const r = await ok(h(['sign', '--key', `${key}.private`, ref]));
  assert.equal(r.stdout, `${img.manifest.digest}\n`);
  const during = proxy.requests.slice(before);
  assert.equal(during.filter((q) => q.method === 'GET' && q.path.includes('/blobs/')).length, 0, JSON.stringify(during));
  assert.ok(during.some((q) => q.method === 'PUT' && q.path.endsWith(`/manifests/sha256-${hexOf(img.manifest.digest)}.sig`)));

  const text = await ok(h(['verify', '--key', `${key}.pub`, ref]));
  assert.deepEqual(text.stdout.trim().split('\n'), [
    `simple  ${img.manifest.digest}  ${proxy.host}/app:1  valid`,
    `bundle  ${img.manifest.digest}  -  valid`,
  ]);
  const json = await verifyJson(['--key', `${key}.pub`, ref]);
  assert.equal(json.code, 0);
  assert.deepEqual(json.checks.map((c) => [c.format, c.valid]), [['simple', true], ['bundle', true]]);
  // By digest, matchRepoDigestOrExact accepts any signature of the repository.
  await ok(h(['verify', '--key', `${key}.pub`, `docker://${proxy.host}/app@${img.manifest.digest}`]));
});

test('skopeo reads the .sig tag hoist wrote, and carries it in a copy (use-sigstore-attachments) where hoist verifies it', async () => {
  const tag = `sha256-${hexOf(img.manifest.digest)}.sig`;
  const raw = await ok(run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/app:${tag}`]));
  const m = JSON.parse(raw.stdout) as { layers: { mediaType: string; annotations: Record<string, string> }[] };
  assert.equal(m.layers[0]!.mediaType, 'application/vnd.dev.cosign.simplesigning.v1+json');
  assert.ok(m.layers[0]!.annotations['dev.cosignproject.cosign/signature']);
  await ok(run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/app:${tag}`]));

  const regd = path.join(tmp, 'registries.d');
  await mkdir(regd, { recursive: true });
  await writeFile(path.join(regd, 'default.yaml'), 'default-docker:\n  use-sigstore-attachments: true\n');
  await ok(run('skopeo', ['--registries.d', regd, 'copy', '-q', '--src-tls-verify=false', '--dest-tls-verify=false',
    `docker://${reg.host}/app:1`, `docker://${reg.host}/skopeo-copied:1`]));
  const v = await verifyJson(['--key', `${key}.pub`, '--identity', `${proxy.host}/app:1`, `docker://${reg.host}/skopeo-copied:1`]);
  assert.equal(v.code, 0);
  assert.deepEqual(v.checks.map((c) => [c.format, c.valid]), [['simple', true]]);
});

test('a second signer (skopeo\'s fixture key) appends: each key verifies its own signature; a third key verifies none', async () => {
  const ref = `docker://${reg.host}/app:1`;
  await ok(h(['sign', '-q', '--format', 'simple', '--key', path.join(FIXTURE, 'skopeo-key.private'),
    '--passphrase-file', path.join(FIXTURE, 'passphrase.txt'), ref]));
  const byFixture = await verifyJson(['--key', path.join(FIXTURE, 'skopeo-key.pub'), '--identity', `${reg.host}/app:1`, ref]);
  assert.equal(byFixture.code, 0);
  assert.deepEqual(byFixture.checks.map((c) => [c.format, c.valid]), [['simple', false], ['simple', true], ['bundle', false]]);
  const byOurs = await verifyJson(['--key', `${key}.pub`, '--identity', `${proxy.host}/app:1`, ref]);
  assert.deepEqual(byOurs.checks.map((c) => [c.format, c.valid]), [['simple', true], ['simple', false], ['bundle', true]]);

  const stranger = path.join(tmp, 'stranger');
  await ok(h(['generate-key', '--output-prefix', stranger]));
  const r = await h(['verify', '--key', `${stranger}.pub`, ref]);
  assert.equal(r.code, 1);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 3);
  assert.ok(lines.every((l) => /  invalid: /.test(l)), r.stdout);
  assert.match(oneLine(r), /none of the 3 signatures of sha256:[0-9a-f]{64} is valid/);
});

test('identities: another tag of the same digest, or another --identity, is refused; an explicit --identity is signed and matched', async () => {
  await ok(h(['copy', '-q', '--remove-signatures', `oci:${layout}:app`, `docker://${reg.host}/ident:1`]));
  // The same digest as app:1, whose signatures (by digest) are in another repository: start clean in this one.
  await ok(h(['sign', '-q', '--format', 'simple', '--key', `${key}.private`, `docker://${reg.host}/ident:1`]));
  await ok(h(['copy', '-q', `docker://${reg.host}/ident:1`, `docker://${reg.host}/ident:2`]));
  await ok(h(['verify', '--key', `${key}.pub`, `docker://${reg.host}/ident:1`]));
  const other = await verifyJson(['--key', `${key}.pub`, `docker://${reg.host}/ident:2`]);
  assert.equal(other.code, 1);
  assert.match(other.checks[0]!.reason!, new RegExp(`names ${reg.host}/ident:1, which does not match ${reg.host}/ident:2`));
  const explicit = await h(['verify', '--key', `${key}.pub`, '--identity', `${reg.host}/elsewhere:1`, `docker://${reg.host}/ident:1`]);
  assert.equal(explicit.code, 1);
  assert.match(explicit.stdout, /invalid: it names .*ident:1, which does not match --identity/);

  await ok(h(['sign', '-q', '--format', 'simple', '--identity', 'example.com/released:v1', '--key', `${key}.private`, `docker://${reg.host}/ident:2`]));
  const released = await verifyJson(['--key', `${key}.pub`, '--identity', 'example.com/released:v1', `docker://${reg.host}/ident:2`]);
  assert.equal(released.code, 0);
  assert.deepEqual(released.checks.map((c) => [c.identity, c.valid]), [[`${reg.host}/ident:1`, false], ['example.com/released:v1', true]]);
  // A repository alone accepts any tag in it.
  await ok(h(['verify', '--key', `${key}.pub`, '--identity', 'example.com/released', `docker://${reg.host}/ident:2`]));
});

/** Rewrites the one simple payload of `dir`'s image so every digest is consistent again: only the cryptography can tell. */
async function forgePayload(dir: string, digest: string): Promise<void> {
  const indexPath = path.join(dir, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests: { digest: string; size: number; annotations?: Record<string, string> }[] };
  const entry = index.manifests.find((d) => d.annotations?.[REF_NAME] === `sha256-${hexOf(digest)}.sig`)!;
  const blob = (d: string) => path.join(dir, 'blobs', 'sha256', hexOf(d));
  const manifest = JSON.parse(await readFile(blob(entry.digest), 'utf8')) as { layers: { digest: string; size: number }[] };
  const payload = (await readFile(blob(manifest.layers[0]!.digest), 'utf8')).replace('localhost:5000/app:1', 'localhost:5000/evil:1');
  await writeFile(blob(sha256(payload)), payload);
  manifest.layers[0] = { ...manifest.layers[0]!, digest: sha256(payload), size: Buffer.byteLength(payload) };
  const bytes = JSON.stringify(manifest);
  await writeFile(blob(sha256(bytes)), bytes);
  Object.assign(entry, { digest: sha256(bytes), size: Buffer.byteLength(bytes) });
  await writeFile(indexPath, JSON.stringify(index));
}

test('oci: layout round trip; tampering with the payload fails verification with a reason', async () => {
  const dir = path.join(tmp, 'oci-rt');
  await ok(h(['copy', '-q', '--remove-signatures', `oci:${layout}:app`, `oci:${dir}:app`]));
  const noId = await h(['sign', '--key', `${key}.private`, `oci:${dir}:app`]);
  assert.equal(noId.code, 2);
  assert.match(oneLine(noId), /names no registry repository and tag .* pass --identity/);
  await ok(h(['sign', '-q', '--key', `${key}.private`, '--identity', 'localhost:5000/app:1', `oci:${dir}:app`]));
  const good = await verifyJson(['--key', `${key}.pub`, '--identity', 'localhost:5000/app:1', `oci:${dir}:app`]);
  assert.deepEqual(good.checks.map((c) => c.valid), [true, true]);

  // Edited in place: the blob no longer matches its digest.
  const simpleOnly = path.join(tmp, 'oci-tamper');
  await ok(h(['copy', '-q', '--remove-signatures', `oci:${layout}:app`, `oci:${simpleOnly}:app`]));
  await ok(h(['sign', '-q', '--format', 'simple', '--key', `${key}.private`, '--identity', 'localhost:5000/app:1', `oci:${simpleOnly}:app`]));
  const idx = JSON.parse(await readFile(path.join(simpleOnly, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const sigDigest = idx.manifests.find((d) => d.annotations?.[REF_NAME]?.endsWith('.sig'))!.digest;
  const sigManifest = JSON.parse(await readFile(path.join(simpleOnly, 'blobs', 'sha256', hexOf(sigDigest)), 'utf8')) as { layers: { digest: string }[] };
  const payloadFile = path.join(simpleOnly, 'blobs', 'sha256', hexOf(sigManifest.layers[0]!.digest));
  const original = await readFile(payloadFile, 'utf8');
  await writeFile(payloadFile, original.replace('localhost:5000/app:1', 'localhost:5000/app:2'));
  const edited = await verifyJson(['--key', `${key}.pub`, '--identity', 'localhost:5000/app:1', `oci:${simpleOnly}:app`]);
  assert.equal(edited.code, 1);
  assert.equal(edited.checks[0]!.valid, false);
  assert.match(edited.checks[0]!.reason!, /digest/i);

  // Rewritten consistently (new blob, new .sig manifest, index.json updated): the signature itself gives it away.
  await writeFile(payloadFile, original);
  await forgePayload(simpleOnly, img.manifest.digest);
  const forged = await verifyJson(['--key', `${key}.pub`, '--identity', 'localhost:5000/evil:1', `oci:${simpleOnly}:app`]);
  assert.equal(forged.code, 1);
  assert.equal(forged.checks[0]!.identity, 'localhost:5000/evil:1');
  assert.match(forged.checks[0]!.reason!, /cryptographic signature verification failed/);
  assert.match(oneLine(await h(['verify', '--key', `${key}.pub`, '--identity', 'localhost:5000/evil:1', `oci:${simpleOnly}:app`])), /none of the 1 signature of .* is valid/);
});

test('local store round trip; signatures survive prune', async () => {
  await ok(h(['copy', '-q', '--remove-signatures', `oci:${layout}:app`, 'localhost:5000/stored:1']));
  const signed = await ok(h(['sign', '-q', '--key', `${key}.private`, 'localhost:5000/stored:1']));
  assert.equal(signed.stdout, `${img.manifest.digest}\n`);
  await ok(h(['prune']));
  const v = await verifyJson(['--key', `${key}.pub`, 'localhost:5000/stored:1']);
  assert.equal(v.code, 0);
  assert.deepEqual(v.checks.map((c) => [c.format, c.identity, c.valid]), [['simple', 'localhost:5000/stored:1', true], ['bundle', '-', true]]);
});

/** A two-platform index in a layout, named `idx`. */
async function makeIndex(dir: string): Promise<{ digest: string; children: string[] }> {
  const a = await makeImage(dir, { layers: [{ files: { a: 'amd64\n' } }], platform: { os: 'linux', architecture: 'amd64' } });
  const b = await makeImage(dir, { layers: [{ files: { a: 'arm64\n' } }], platform: { os: 'linux', architecture: 'arm64' } });
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { ...a.manifest, platform: { os: 'linux', architecture: 'amd64' } },
      { ...b.manifest, platform: { os: 'linux', architecture: 'arm64' } },
    ],
  });
  const digest = sha256(index);
  await writeFile(path.join(dir, 'blobs', 'sha256', hexOf(digest)), index);
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [
    { mediaType: 'application/vnd.oci.image.index.v1+json', digest, size: index.length, annotations: { [REF_NAME]: 'idx' } },
  ] }));
  return { digest, children: [a.manifest.digest, b.manifest.digest] };
}

test('--recursive signs an index and every image it lists; without it only the index is signed', async () => {
  const dir = path.join(tmp, 'index');
  const idx = await makeIndex(dir);
  await ok(h(['copy', '-q', `oci:${dir}:idx`, `docker://${reg.host}/idx:1`]));
  await ok(h(['copy', '-q', `oci:${dir}:idx`, `docker://${reg.host}/idx-top:1`]));

  const r = await ok(h(['sign', '-q', '--recursive', '--key', `${key}.private`, `docker://${reg.host}/idx:1`]));
  assert.deepEqual(r.stdout.trim().split('\n'), [idx.digest, ...idx.children]);
  await ok(h(['verify', '--key', `${key}.pub`, `docker://${reg.host}/idx:1`]));
  for (const child of idx.children) {
    const v = await verifyJson(['--key', `${key}.pub`, `docker://${reg.host}/idx@${child}`]);
    assert.equal(v.code, 0, v.stderr);
    assert.deepEqual(v.checks.map((c) => [c.format, c.digest, c.valid]), [['simple', child, true], ['bundle', child, true]]);
  }

  await ok(h(['sign', '-q', '--key', `${key}.private`, `docker://${reg.host}/idx-top:1`]));
  await ok(h(['verify', '--key', `${key}.pub`, `docker://${reg.host}/idx-top:1`]));
  const child = await h(['verify', '--key', `${key}.pub`, `docker://${reg.host}/idx-top@${idx.children[0]}`]);
  assert.equal(child.code, 1);
  assert.equal(child.stdout, '');
  assert.match(oneLine(child), /no signatures found for sha256:/);
});

test('copy carries both formats registry → registry and registry → oci:, and --remove-signatures drops them', async () => {
  const src = `docker://${reg.host}/app:1`;
  await ok(h(['copy', '-q', src, `docker://${reg.host}/carried:1`]));
  const out = path.join(tmp, 'carried-oci');
  await ok(h(['copy', '-q', src, `oci:${out}:x`]));
  for (const ref of [`docker://${reg.host}/carried:1`, `oci:${out}:x`]) {
    const v = await verifyJson(['--key', `${key}.pub`, '--identity', `${proxy.host}/app:1`, ref]);
    assert.equal(v.code, 0, `${ref}: ${v.stderr}`);
    assert.deepEqual(v.checks.map((c) => c.format), ['simple', 'simple', 'bundle'], ref);
    assert.deepEqual(v.checks.map((c) => c.valid), [true, false, true], ref);
  }
  await ok(h(['copy', '-q', '--remove-signatures', src, `docker://${reg.host}/nosig:1`]));
  const none = await h(['verify', '--key', `${key}.pub`, `docker://${reg.host}/nosig:1`]);
  assert.equal(none.code, 1);
  assert.match(oneLine(none), /no signatures found/);
});

test('copy --sign-by-sigstore-private-key signs the destination in both formats as the destination\'s name', async () => {
  const dst = `docker://${reg.host}/signed-on-copy:1`;
  const r = await ok(hoist(root, ['copy', '-q', '--remove-signatures', '--sign-by-sigstore-private-key', `${key}.private`,
    '--sign-passphrase-file', pass, `oci:${layout}:app`, dst], { env: { COSIGN_PASSWORD: undefined } }));
  assert.equal(r.stderr, '');
  const v = await verifyJson(['--key', `${key}.pub`, dst]);
  assert.equal(v.code, 0, v.stderr);
  assert.deepEqual(v.checks.map((c) => [c.format, c.identity, c.valid]), [['simple', `${reg.host}/signed-on-copy:1`, true], ['bundle', '-', true]]);

  // A wrong passphrase fails before anything is copied.
  await writeFile(path.join(tmp, 'bad.txt'), 'nope\n');
  const bad = await hoist(root, ['copy', '-q', '--sign-by-sigstore-private-key', `${key}.private`, '--sign-passphrase-file', path.join(tmp, 'bad.txt'),
    `oci:${layout}:app`, `docker://${reg.host}/never:1`]);
  assert.equal(bad.code, 1);
  assert.match(oneLine(bad), /wrong passphrase/);
  const inspect = await hoist(root, ['inspect', '--raw', `docker://${reg.host}/never:1`]);
  assert.notEqual(inspect.code, 0);
});

test('keyless and GPG signing flags exist and fail with one line', async () => {
  const ref = `docker://${reg.host}/app:1`;
  for (const args of [
    ['sign', '--fulcio-url', 'https://fulcio.example', ref],
    ['sign', '--key', `${key}.private`, '--rekor-url', 'https://rekor.example', ref],
    ['sign', '--oidc-issuer', 'https://oauth2.example', ref],
    ['copy', '--sign-by-sigstore', path.join(tmp, 'params.yaml'), `oci:${layout}:app`, `docker://${reg.host}/kl:1`],
    ['copy', '--sign-by', 'ABCDEF', `oci:${layout}:app`, `docker://${reg.host}/kl:1`],
    ['copy', '--sign-by-sq-fingerprint', 'ABCDEF', `oci:${layout}:app`, `docker://${reg.host}/kl:1`],
  ]) {
    const r = await h(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(oneLine(r), /keyless signing needs the Fulcio, Rekor and OIDC network services|GPG \/ OpenPGP signing is not supported/);
  }
  const archive = await h(['sign', '--key', `${key}.private`, '--identity', 'x.io/a:1', `oci-archive:${path.join(tmp, 'a.tar')}`]);
  assert.equal(archive.code, 2);
  assert.match(oneLine(archive), /archive cannot hold signatures/);
});

test('skopeo 1.18\'s own signature (the fixture) verifies with its key, and not once its identity or key differs', async () => {
  // The fixture's manifest, .sig manifest and blobs laid out as an oci: layout (no layers are needed to verify).
  const dir = path.join(tmp, 'fixture');
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const entries = [];
  for (const [file, ref] of [['image-manifest.json', 'signed'], ['sig-manifest.json', undefined], ['sig-config.json', null], ['payload.json', null]] as const) {
    const bytes = await readFile(path.join(FIXTURE, file));
    await writeFile(path.join(dir, 'blobs', 'sha256', hexOf(sha256(bytes))), bytes);
    if (ref === null) continue;
    const name = ref ?? `sha256-${hexOf(sha256(await readFile(path.join(FIXTURE, 'image-manifest.json'))))}.sig`;
    entries.push({ mediaType: (JSON.parse(bytes.toString('utf8')) as { mediaType: string }).mediaType, digest: sha256(bytes), size: bytes.length, annotations: { [REF_NAME]: name } });
  }
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: entries }));
  const pub = path.join(FIXTURE, 'skopeo-key.pub');
  const good = await verifyJson(['--key', pub, '--identity', 'localhost:5000/fixtures/signed:v1', `oci:${dir}:signed`]);
  assert.equal(good.code, 0, good.stderr);
  assert.deepEqual(good.checks, [{ format: 'simple', digest: 'sha256:5d3d18d2bc2c8af5f8fff565c12749603c209f6de8ff79bf59ff4c5e5452347b', identity: 'localhost:5000/fixtures/signed:v1', valid: true }]);
  assert.equal((await verifyJson(['--key', pub, '--identity', 'localhost:5000/fixtures/signed:v2', `oci:${dir}:signed`])).code, 1);
  assert.equal((await verifyJson(['--key', `${key}.pub`, '--identity', 'localhost:5000/fixtures/signed:v1', `oci:${dir}:signed`])).code, 1);
});
