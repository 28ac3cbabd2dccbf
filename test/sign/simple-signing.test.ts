/**
 * Simple signing against what skopeo 1.18 wrote: its signature verifies with its key and names the fixture image;
 * one flipped payload byte, another digest, another identity or another key are rejected with a reason; hoist's
 * payload and `.sig` manifest/config are byte for byte what containers/image writes; payloads are parsed as
 * strictly as containers/image parses them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HoistError } from '../../src/errors.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { readPrivateKey, readPublicKey } from '../../src/sign/keys.ts';
import {
  SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, buildSigManifest, makeSimplePayload, parseSigManifest,
  parseSimplePayload, signBytes, verifySimpleSignature,
} from '../../src/sign/simple-signing.ts';

const FIXTURE = fileURLToPath(new URL('../../testdata/sigstore-skopeo-1.18/', import.meta.url));
const read = (name: string): Buffer => readFileSync(path.join(FIXTURE, name));
const payload = read('payload.json');
const sigManifest = read('sig-manifest.json');
const signature = JSON.parse(sigManifest.toString()).layers[0].annotations[SIGNATURE_ANNOTATION] as string;
const pub = readPublicKey(read('skopeo-key.pub').toString(), 'skopeo-key.pub');
const IMAGE_DIGEST = digestBytes(read('image-manifest.json'));
const IDENTITY = 'localhost:5000/fixtures/signed:v1';

function rejected(fn: () => unknown, reason: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.equal(e.code, 'SIGNATURE_INVALID');
    assert.match(e.message, reason);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
}

test('skopeo\'s signature verifies with its key and covers the fixture image and identity', () => {
  assert.equal(IMAGE_DIGEST, 'sha256:5d3d18d2bc2c8af5f8fff565c12749603c209f6de8ff79bf59ff4c5e5452347b');
  const p = verifySimpleSignature(pub, payload, signature);
  assert.deepEqual(p, { dockerReference: IDENTITY, manifestDigest: IMAGE_DIGEST });
  assert.deepEqual(verifySimpleSignature(pub, payload, signature, { manifestDigest: IMAGE_DIGEST, dockerReference: IDENTITY }), p);
  assert.deepEqual(parseSimplePayload(payload), { ...p, creator: 'containers/image 5.34.2', timestamp: 1795342003 });
});

test('one flipped payload byte, another digest, another identity, another key: rejected with a reason', () => {
  const crypto = /^cryptographic signature verification failed/;
  for (const i of [0, 1, 40, payload.indexOf('5d3d'), payload.indexOf('signed:v1'), payload.length - 2, payload.length - 1]) {
    const changed = Buffer.from(payload);
    changed[i] = changed[i]! ^ 0x01;
    rejected(() => verifySimpleSignature(pub, changed, signature), crypto);
  }
  // The same signature over a payload naming another digest or identity.
  const otherDigest = Buffer.from(payload.toString().replace('5d3d18d2', '5d3d18d3'));
  rejected(() => verifySimpleSignature(pub, otherDigest, signature), crypto);
  const otherName = Buffer.from(payload.toString().replace('signed:v1', 'signed:v2'));
  rejected(() => verifySimpleSignature(pub, otherName, signature), crypto);
  // The genuine signature, checked against another image or another name.
  const other = `sha256:${'0'.repeat(64)}`;
  rejected(() => verifySimpleSignature(pub, payload, signature, { manifestDigest: other }),
    new RegExp(`^the signature is for manifest ${IMAGE_DIGEST}, not ${other}$`));
  rejected(() => verifySimpleSignature(pub, payload, signature, { manifestDigest: IMAGE_DIGEST, dockerReference: 'localhost:5000/fixtures/signed:v2' }),
    /^the signature is for "localhost:5000\/fixtures\/signed:v1", not "localhost:5000\/fixtures\/signed:v2"$/);
  // Another key.
  const otherPub = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  rejected(() => verifySimpleSignature(otherPub, payload, signature), crypto);
  // A broken signature value.
  rejected(() => verifySimpleSignature(pub, payload, 'not base64!'), /^the signature annotation is not valid base64$/);
  rejected(() => verifySimpleSignature(pub, payload, ''), crypto);
  rejected(() => verifySimpleSignature(pub, payload, Buffer.from('garbage').toString('base64')), crypto);
  const sig = Buffer.from(signature, 'base64');
  sig[sig.length - 1] = sig[sig.length - 1]! ^ 0x01;
  rejected(() => verifySimpleSignature(pub, payload, sig.toString('base64')), crypto);
});

test('hoist\'s payload is containers/image\'s byte for byte', () => {
  const ours = makeSimplePayload(IDENTITY, IMAGE_DIGEST, { creator: 'containers/image 5.34.2', timestamp: 1795342003 });
  assert.equal(ours.toString(), payload.toString());
  const now = Math.floor(Date.now() / 1000);
  const p = parseSimplePayload(makeSimplePayload('example.com/a&b<c>', IMAGE_DIGEST));
  assert.equal(p.creator, 'hoist 0.1.0');
  assert.ok(p.timestamp! >= now - 5 && p.timestamp! <= now + 5);
  // Go's encoder escapes <, >, & in strings.
  assert.match(makeSimplePayload('x<&>', IMAGE_DIGEST).toString(), /"docker-reference":"x\\u003c\\u0026\\u003e"/);
});

test('sign → verify round trip with skopeo\'s private key and with a fresh key', () => {
  const key = readPrivateKey(read('skopeo-key.private').toString(), read('passphrase.txt').toString(), 'skopeo-key.private');
  const p = makeSimplePayload('registry.example/app:1', IMAGE_DIGEST);
  const s = signBytes(key, p);
  assert.deepEqual(verifySimpleSignature(pub, p, s, { manifestDigest: IMAGE_DIGEST, dockerReference: 'registry.example/app:1' }),
    { dockerReference: 'registry.example/app:1', manifestDigest: IMAGE_DIGEST });
  const fresh = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const s2 = signBytes(fresh.privateKey, p);
  assert.match(s2, /^MEU|^MEQ|^MEY/); // base64 of an ASN.1 SEQUENCE
  verifySimpleSignature(fresh.publicKey, p, s2);
  rejected(() => verifySimpleSignature(pub, p, s2), /^cryptographic/);
});

test('payloads are parsed as strictly as containers/image parses them', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const D = IMAGE_DIGEST;
  const crit = `"critical":{"identity":{"docker-reference":"r/x:1"},"image":{"docker-manifest-digest":"${D}"},"type":"cosign container image signature"}`;
  const check = (json: string): unknown => verifySimpleSignature(publicKey, Buffer.from(json), sign('sha256', Buffer.from(json), privateKey).toString('base64'));
  const bad = (json: string, reason: RegExp): void => rejected(() => check(json), reason);

  // Accepted: cosign's `"optional": null`, unknown optional keys, keys in any order, whitespace.
  assert.deepEqual(check(`{${crit},"optional":null}`), { dockerReference: 'r/x:1', manifestDigest: D });
  check(`{"optional":{"foo":[1,{"a":null}],"creator":"cosign"},${crit}}`);
  check(` { ${crit} , "optional" : { "timestamp" : 1.7e9 } } \n`);

  bad(`{${crit}}`, /^key "optional" missing$/);
  bad(`{${crit},"optional":{},"extra":1}`, /^unknown key "extra"$/);
  bad(`{${crit},"optional":{},"optional":{}}`, /^duplicate key "optional" in the payload$/);
  bad(`{${crit},"optional":{"creator":"a","creator":"b"}}`, /^duplicate key "creator"/);
  bad(`{${crit},"optional":[]}`, /^optional must be a JSON object, got an array$/);
  bad(`{${crit},"optional":{"creator":5}}`, /^optional\.creator must be a string, got number$/);
  bad(`{${crit},"optional":{"timestamp":1.5}}`, /^optional\.timestamp is not an integer$/);
  bad(`{${crit},"optional":{"timestamp":"1"}}`, /^optional\.timestamp must be a number, got a string$/);
  bad(`{${crit},"optional":{}} x`, /^unexpected data after/);
  bad(`{${crit},"optional":{}`, /^the payload is not valid JSON/);
  bad(`[]`, /^the payload must be a JSON object, got an array$/);
  const c = (identity: string, image: string, type: string, extra = ''): string =>
    `{"critical":{"identity":${identity},"image":${image},"type":${type}${extra}},"optional":{}}`;
  const id = '{"docker-reference":"r/x:1"}';
  const img = `{"docker-manifest-digest":"${D}"}`;
  const ty = '"cosign container image signature"';
  check(c(id, img, ty));
  bad(c(id, img, ty, ',"x":1'), /^unknown key "x" in critical$/);
  bad(c(id, img, '"atomic container signature"'), /^unrecognized signature type "atomic container signature"$/);
  bad(c(id, img, 'null'), /^unrecognized signature type ""$/);
  bad(c(id, img, '1'), /^critical\.type must be a string, got number$/);
  bad(c(id, `{"Docker-Manifest-Digest":"${D}"}`, ty), /^unknown key "Docker-Manifest-Digest" in critical\.image$/);
  bad(c(id, `{"docker-manifest-digest":"${D.toUpperCase()}"}`, ty), /^invalid docker-manifest-digest value/);
  bad(c(id, '{"docker-manifest-digest":"sha256:abc"}', ty), /^invalid docker-manifest-digest value "sha256:abc"$/);
  bad(c(id, `{"docker-manifest-digest":"${D}","x":1}`, ty), /^unknown key "x" in critical\.image$/);
  bad(c('{}', img, ty), /^key "docker-reference" missing in critical\.identity$/);
  bad(c('{"docker-reference":null}', img, ty), /^critical\.identity\.docker-reference is empty$/);
  bad(c('{"docker-reference":["r"]}', img, ty), /^critical\.identity\.docker-reference must be a string, got an array$/);
  bad(c(id, 'null', ty), /^critical\.image must be a JSON object, got null$/);
});

test('buildSigManifest reproduces skopeo\'s .sig manifest and config byte for byte', () => {
  const r = buildSigManifest(undefined, { payload, signature });
  assert.equal(r.manifest.toString(), sigManifest.toString());
  assert.equal(r.config.toString(), read('sig-config.json').toString());
  assert.equal(r.added, true);
  assert.deepEqual(r.blobs.map((b) => b.descriptor), [
    { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestBytes(r.config), size: r.config.length },
    { mediaType: SIMPLE_SIGNING_MEDIA_TYPE, digest: digestBytes(payload), size: payload.length },
  ]);
  for (const b of r.blobs) assert.equal(digestBytes(b.bytes), b.descriptor.digest);
});

test('buildSigManifest appends to an existing manifest, keeps other layers, skips an identical signature', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const p2 = makeSimplePayload(IDENTITY, IMAGE_DIGEST, { timestamp: 1 });
  const s2 = signBytes(privateKey, p2);
  const two = buildSigManifest({ manifest: sigManifest }, { payload: p2, signature: s2 });
  assert.equal(two.added, true);
  const m = JSON.parse(two.manifest.toString());
  assert.equal(m.layers.length, 2);
  assert.deepEqual(m.layers[0], JSON.parse(sigManifest.toString()).layers[0]);
  assert.deepEqual(m.layers[1], { mediaType: SIMPLE_SIGNING_MEDIA_TYPE, digest: digestBytes(p2), size: p2.length, annotations: { [SIGNATURE_ANNOTATION]: s2 } });
  assert.deepEqual(JSON.parse(two.config.toString()).rootfs.diff_ids, [digestBytes(payload), digestBytes(p2)]);
  assert.equal(m.config.digest, digestBytes(two.config));
  assert.deepEqual(two.blobs.map((b) => b.descriptor.digest), [digestBytes(two.config), digestBytes(p2)]);

  // The same payload and signature again: nothing added, same manifest bytes, only the config to (re)upload.
  const again = buildSigManifest({ manifest: two.manifest }, { payload: p2, signature: s2 });
  assert.equal(again.added, false);
  assert.ok(again.manifest.equals(two.manifest));
  assert.deepEqual(again.blobs.map((b) => b.descriptor.digest), [digestBytes(two.config)]);
  // Same payload, another signature (ECDSA is randomized): a new entry, as containers/image compares annotations too.
  assert.equal(buildSigManifest({ manifest: two.manifest }, { payload: p2, signature: signBytes(privateKey, p2) }).added, true);

  // A cosign-style manifest with an attestation layer and extra annotations: kept as is.
  const foreign = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: 2, digest: digestBytes('{}') },
    layers: [{ mediaType: 'application/vnd.dsse.envelope.v1+json', size: 3, digest: digestBytes('abc'), annotations: { 'predicateType': 'x' } }],
    annotations: { a: 'b' },
  }));
  const mixed = JSON.parse(buildSigManifest({ manifest: foreign }, { payload, signature }).manifest.toString());
  assert.equal(mixed.layers.length, 2);
  assert.equal(mixed.layers[0].mediaType, 'application/vnd.dsse.envelope.v1+json');
  assert.deepEqual(mixed.annotations, { a: 'b' });
  assert.deepEqual(Object.keys(mixed), ['schemaVersion', 'mediaType', 'config', 'layers', 'annotations']);

  assert.throws(() => buildSigManifest({ manifest: Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}') }, { payload, signature }),
    (e: unknown) => e instanceof HoistError && /is an image index/.test(e.message));
});

test('parseSigManifest lists the simple-signing layers with their signatures', () => {
  const entries = parseSigManifest(sigManifest, 'sha256-5d3d.sig');
  assert.equal(entries.length, 1);
  assert.equal(entries[0]!.signature, signature);
  assert.equal(entries[0]!.descriptor.digest, digestBytes(payload));
  assert.equal(entries[0]!.payload, undefined);
  verifySimpleSignature(pub, payload, entries[0]!.signature, { manifestDigest: IMAGE_DIGEST });

  const m = JSON.parse(sigManifest.toString());
  m.layers.push({ mediaType: 'application/vnd.dsse.envelope.v1+json', size: 1, digest: digestBytes('x') });
  m.layers.push({ mediaType: SIMPLE_SIGNING_MEDIA_TYPE, size: 1, digest: digestBytes('y') }); // no signature annotation
  m.layers.push({ mediaType: SIMPLE_SIGNING_MEDIA_TYPE, size: payload.length, digest: digestBytes(payload), data: payload.toString('base64'), annotations: { [SIGNATURE_ANNOTATION]: 'AAAA' } });
  const listed = parseSigManifest(Buffer.from(JSON.stringify(m)), 'x.sig');
  assert.equal(listed.length, 2);
  assert.ok(listed[1]!.payload?.equals(payload));
  assert.equal(listed[1]!.signature, 'AAAA');

  m.layers.push({ mediaType: SIMPLE_SIGNING_MEDIA_TYPE, size: 1, digest: 'sha256:nothex' });
  assert.throws(() => parseSigManifest(Buffer.from(JSON.stringify(m)), 'x.sig'),
    (e: unknown) => e instanceof HoistError && e.message.startsWith('x.sig: layers[4].digest'));
  assert.throws(() => parseSigManifest(Buffer.from('nope'), 'y.sig'), (e: unknown) => e instanceof HoistError && e.message.startsWith('y.sig: manifest is not valid JSON'));
});
