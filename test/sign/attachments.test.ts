/**
 * Signature attachments through the transport interface: signing writes a `.sig` manifest and a bundle referrer that
 * the same transport reads back, in an oci: layout (ref names), the local store (`<repo>:<tag>` ref names) and a real
 * registry (distribution 2.8: tags and the referrers fallback index); appending keeps earlier signatures; the copy
 * engine carries both kinds between all three; prune keeps them; archives refuse them.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeImage, type MadeImage } from '../helpers/make-image.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { generateKeyPair, readPrivateKey } from '../../src/sign/keys.ts';
import { readSignatures, readSimpleSignatures, sigTag, type SignatureEntry } from '../../src/sign/attachments.ts';
import { openSignTarget, signImage } from '../../src/sign/sign-image.ts';
import { verifyImage } from '../../src/sign/verify-image.ts';
import { parseSigManifest, parseSimplePayload } from '../../src/sign/simple-signing.ts';
import { copyImage } from '../../src/copy/engine.ts';
import { openDestination, openSource } from '../../src/transport/index.ts';
import { parseImageReference } from '../../src/transport/reference.ts';
import { closeRegistryClients } from '../../src/transport/docker.ts';
import { Store } from '../../src/store/store.ts';
import { prune } from '../../src/store/prune.ts';
import { HoistError } from '../../src/errors.ts';
import { digestToTag } from '../../src/oci/digest.ts';

let tmp: string;
let reg: TestRegistry;
let layout: string;
let img: MadeImage;
let key1: KeyObject;
let key2: KeyObject;

function makeKey(): KeyObject {
  const pair = generateKeyPair('pw');
  return readPrivateKey(pair.privateKeyPem, 'pw', 'test key');
}

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-attach-'));
  reg = await startRegistry();
  layout = path.join(tmp, 'lay');
  img = await makeImage(layout, { layers: [{ files: { 'etc/hello': 'hi\n' } }], ref: 'app' });
  key1 = makeKey();
  key2 = makeKey();
});
after(async () => {
  await closeRegistryClients();
  await reg?.stop();
  await rm(tmp, { recursive: true, force: true });
});

async function sign(ref: string, key: KeyObject, identity: string, formats = { simple: true, bundle: true }, root?: string): Promise<string[]> {
  const target = await openSignTarget(parseImageReference(ref), { storeRoot: root });
  try {
    return await signImage(target, { privateKey: key, identity, formats });
  } finally {
    await target.source.close();
  }
}

async function signatures(ref: string, root?: string): Promise<{ digest: string; entries: SignatureEntry[] }> {
  const src = await openSource(ref, { storeRoot: root });
  try {
    const digest = (await src.getManifest()).digest;
    return { digest, entries: await readSignatures(src, digest) };
  } finally {
    await src.close();
  }
}

async function verify(ref: string, key: KeyObject, identity: string, root?: string) {
  const src = await openSource(ref, { storeRoot: root });
  try {
    return (await verifyImage(src, { publicKey: createPublicKey(key), identity: { type: 'exact', identity } })).checks;
  } finally {
    await src.close();
  }
}

async function copy(from: string, to: string, root?: string, removeSignatures = false): Promise<void> {
  const src = await openSource(from, { storeRoot: root });
  try {
    await copyImage(src, await openDestination(to, { storeRoot: root }), { removeSignatures });
  } finally {
    await src.close();
  }
}

function refNames(indexJson: string): string[] {
  return (JSON.parse(indexJson) as { manifests: { annotations?: Record<string, string> }[] }).manifests
    .map((d) => d.annotations?.['org.opencontainers.image.ref.name'] ?? '');
}

test('oci: layout — signing adds the .sig and referrer ref names, both read back, and oci:DIR still names the image', async () => {
  const digests = await sign(`oci:${layout}:app`, key1, 'localhost:5000/app:1');
  assert.deepEqual(digests, [img.manifest.digest]);
  const names = refNames(await readFile(path.join(layout, 'index.json'), 'utf8'));
  assert.deepEqual(names.sort(), ['app', digestToTag(img.manifest.digest), sigTag(img.manifest.digest)].sort());

  const { digest, entries } = await signatures(`oci:${layout}:app`);
  assert.equal(digest, img.manifest.digest);
  assert.deepEqual(entries.map((e) => e.format), ['simple', 'bundle']);
  const simple = entries[0]!;
  assert.ok(simple.format === 'simple' && simple.payload);
  const claimed = parseSimplePayload(simple.payload);
  assert.equal(claimed.dockerReference, 'localhost:5000/app:1');
  assert.equal(claimed.manifestDigest, img.manifest.digest);

  // Without a ref name the layout's only image is still found: attachments are not images.
  const src = await openSource(`oci:${layout}`);
  assert.equal((await src.getManifest()).digest, img.manifest.digest);
  await src.close();

  const checks = await verify(`oci:${layout}:app`, key1, 'localhost:5000/app:1');
  assert.deepEqual(checks.map((c) => [c.format, c.valid]), [['simple', true], ['bundle', true]]);
});

test('a second signature is appended: the first layer stays, both verify with their own key only', async () => {
  const dir = path.join(tmp, 'two');
  const two = await makeImage(dir, { layers: [{ files: { a: 'two\n' } }], ref: 'x' });
  await sign(`oci:${dir}:x`, key1, 'localhost:5000/two:1', { simple: true, bundle: false });
  const first = await signatures(`oci:${dir}:x`);
  await sign(`oci:${dir}:x`, key2, 'localhost:5000/two:1', { simple: true, bundle: false });
  const src = await openSource(`oci:${dir}:x`);
  const sigManifest = (await src.getTaggedManifest!(sigTag(two.manifest.digest)))!;
  await src.close();
  const layers = parseSigManifest(sigManifest.bytes, 'test');
  assert.equal(layers.length, 2);
  assert.equal(layers[0]!.descriptor.digest, (first.entries[0] as { layer: { digest: string } }).layer.digest);
  for (const k of [key1, key2]) {
    const checks = await verify(`oci:${dir}:x`, k, 'localhost:5000/two:1');
    assert.deepEqual(checks.map((c) => c.valid).sort(), [false, true]);
    assert.match(checks.find((c) => !c.valid)!.reason!, /cryptographic signature verification failed/);
  }
  // One .sig ref name, replaced in place (not a new entry per signature).
  const names = refNames(await readFile(path.join(dir, 'index.json'), 'utf8'));
  assert.equal(names.filter((n) => n === sigTag(two.manifest.digest)).length, 1);
});

test('the local store: signatures live under <repo>:sha256-….sig, signing by image ID finds that repository, prune keeps them', async () => {
  const root = path.join(tmp, 'store');
  await copy(`oci:${layout}:app`, 'localhost:5000/app:1', root);
  // The layout's signatures came along with the image (oci: → store).
  let found = await signatures('localhost:5000/app:1', root);
  assert.deepEqual(found.entries.map((e) => e.format), ['simple', 'bundle']);

  await sign(img.manifest.digest, key2, 'localhost:5000/app:1', { simple: true, bundle: true }, root);
  const store = await Store.open(root);
  const names = (await store.layout.listRefs()).map((r) => r.name);
  assert.ok(names.includes(`localhost:5000/app:${sigTag(img.manifest.digest)}`), names.join(' '));
  assert.ok(names.includes(`localhost:5000/app:${digestToTag(img.manifest.digest)}`), names.join(' '));

  await prune(store.layout);
  found = await signatures('localhost:5000/app:1', root);
  assert.deepEqual(found.entries.map((e) => e.format), ['simple', 'simple', 'bundle', 'bundle']);
  assert.ok(found.entries.every((e) => e.error === undefined));
  const checks = await verify('localhost:5000/app:1', key2, 'localhost:5000/app:1', root);
  assert.equal(checks.filter((c) => c.valid).length, 2);
});

test('a registry: .sig tag and fallback referrers index; the engine carries both registry → registry, → oci:, and --remove-signatures drops them', async () => {
  const ref = `docker://${reg.host}/app:1`;
  await copy(`oci:${layout}:app`, ref, undefined, true);
  assert.deepEqual((await signatures(ref)).entries, []);
  await sign(ref, key1, `${reg.host}/app:1`);
  const { entries } = await signatures(ref);
  assert.deepEqual(entries.map((e) => e.format), ['simple', 'bundle']);

  await copy(ref, `docker://${reg.host}/other/copy:2`);
  assert.deepEqual((await verify(`docker://${reg.host}/other/copy:2`, key1, `${reg.host}/app:1`)).map((c) => c.valid), [true, true]);
  const out = path.join(tmp, 'from-reg');
  await copy(ref, `oci:${out}:got`);
  assert.deepEqual((await verify(`oci:${out}:got`, key1, `${reg.host}/app:1`)).map((c) => c.valid), [true, true]);
  await copy(ref, `docker://${reg.host}/bare:1`, undefined, true);
  assert.deepEqual((await signatures(`docker://${reg.host}/bare:1`)).entries, []);
});

test('reading: a missing payload blob is an entry with an error, not a failure', async () => {
  const dir = path.join(tmp, 'missing');
  const m = await makeImage(dir, { layers: [{ files: { m: 'x' } }], ref: 'm' });
  await sign(`oci:${dir}:m`, key1, 'localhost:5000/m:1', { simple: true, bundle: false });
  const src = await openSource(`oci:${dir}:m`);
  const [entry] = await readSimpleSignatures(src, m.manifest.digest);
  await src.close();
  await rm(path.join(dir, 'blobs', 'sha256', entry!.layer.digest.slice('sha256:'.length)));
  const again = await signatures(`oci:${dir}:m`);
  assert.equal(again.entries.length, 1);
  const e = again.entries[0]!;
  assert.ok(e.format === 'simple' && e.payload === undefined);
  assert.match(e.error ?? '', /not found|no such|missing/i);
  const checks = await verify(`oci:${dir}:m`, key1, 'localhost:5000/m:1');
  assert.equal(checks[0]!.valid, false);
  assert.equal(checks[0]!.reason, e.error);
});

test('archives cannot hold signatures: one clear error, nothing written', async () => {
  const archive = path.join(tmp, 'a.tar');
  await copy(`oci:${layout}:app`, `oci-archive:${archive}:app`, undefined, true);
  await assert.rejects(openSignTarget(parseImageReference(`oci-archive:${archive}:app`), {}),
    (e: unknown) => e instanceof HoistError && e.code === 'NOT_SUPPORTED' && /archive cannot hold signatures/.test(e.message));
  await access(archive);
});
