/**
 * Sigstore bundles made with a local key (cosign v3's image signature shape) and their OCI 1.1 referrer manifest:
 * sign → verify round trip, a bundle for another digest, a tampered bundle, another key, an attestation that is not
 * a signature, and bundles hoist cannot verify with a key are rejected with a reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DSSEBundleBuilder } from '@sigstore/sign';
import { bundleToJSON } from '@sigstore/bundle';
import { HoistError } from '../../src/errors.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { parseManifest } from '../../src/oci/manifest.ts';
import {
  BUNDLE_MEDIA_TYPE, bundleReferrerManifest, makeBundle, parseBundleStatement, signStatement, verifyBundle,
} from '../../src/sign/bundle.ts';
import { keyHint, publicKeyPem, readPrivateKey, readPublicKey } from '../../src/sign/keys.ts';

const FIXTURE = fileURLToPath(new URL('../../testdata/sigstore-skopeo-1.18/', import.meta.url));
const read = (name: string): string => readFileSync(path.join(FIXTURE, name), 'utf8');
const DIGEST = digestBytes(readFileSync(path.join(FIXTURE, 'image-manifest.json')));
const OTHER = `sha256:${'0'.repeat(64)}`;
const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });

async function rejected(p: Promise<unknown>, reason: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.equal(e.code, 'SIGNATURE_INVALID');
    assert.match(e.message, reason);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
}

/** A DSSE bundle over any statement, signed like makeBundle does (for statements hoist itself never makes). */
async function bundleOver(statement: unknown, priv: KeyObject, pub: KeyObject, payloadType = 'application/vnd.in-toto+json'): Promise<Buffer> {
  const builder = new DSSEBundleBuilder({
    signer: { sign: async (data: Buffer) => ({ signature: sign('sha256', data, priv), key: { $case: 'publicKey', publicKey: publicKeyPem(pub), hint: keyHint(pub) } }) },
    witnesses: [],
  });
  const b = await builder.create({ data: Buffer.from(JSON.stringify(statement)), type: payloadType });
  return Buffer.from(JSON.stringify(bundleToJSON(b)));
}

test('makeBundle: a v0.3 DSSE bundle over cosign\'s sign statement, with the key hint, that verifies', async () => {
  const bundle = await makeBundle(keys.privateKey, keys.publicKey, DIGEST);
  const json = JSON.parse(bundle.toString());
  assert.equal(json.mediaType, BUNDLE_MEDIA_TYPE);
  assert.deepEqual(json.verificationMaterial.publicKey, { hint: keyHint(keys.publicKey) });
  assert.equal(json.verificationMaterial.certificate, undefined);
  assert.deepEqual(json.verificationMaterial.tlogEntries ?? [], []);
  assert.equal(json.dsseEnvelope.payloadType, 'application/vnd.in-toto+json');
  assert.equal(json.dsseEnvelope.signatures.length, 1);
  const statement = JSON.parse(Buffer.from(json.dsseEnvelope.payload, 'base64').toString());
  assert.deepEqual(statement, {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ digest: { sha256: DIGEST.slice('sha256:'.length) } }],
    predicateType: 'https://sigstore.dev/cosign/sign/v1',
    predicate: {},
  });
  assert.deepEqual(Buffer.from(json.dsseEnvelope.payload, 'base64'), signStatement(DIGEST));
  assert.deepEqual(parseBundleStatement(bundle), { predicateType: 'https://sigstore.dev/cosign/sign/v1', subjectDigests: [DIGEST] });
  await verifyBundle(keys.publicKey, bundle, DIGEST);
});

test('round trip with the key skopeo generated', async () => {
  const priv = readPrivateKey(read('skopeo-key.private'), read('passphrase.txt'), 'skopeo-key.private');
  const pub = readPublicKey(read('skopeo-key.pub'), 'skopeo-key.pub');
  await verifyBundle(pub, await makeBundle(priv, pub, DIGEST), DIGEST);
});

test('a bundle for another digest, a tampered bundle, another key: rejected', async () => {
  const bundle = await makeBundle(keys.privateKey, keys.publicKey, DIGEST);
  await rejected(verifyBundle(keys.publicKey, bundle, OTHER), new RegExp(`^the bundle signs ${DIGEST}, not ${OTHER}$`));

  const sigFail = /^the bundle's signature does not verify with this key/;
  const json = JSON.parse(bundle.toString());
  // The statement swapped for one naming another digest, the signature kept.
  const swapped = structuredClone(json);
  swapped.dsseEnvelope.payload = signStatement(OTHER).toString('base64');
  await rejected(verifyBundle(keys.publicKey, Buffer.from(JSON.stringify(swapped)), OTHER), sigFail);
  // One bit of the signature flipped.
  const flipped = structuredClone(json);
  const sig = Buffer.from(flipped.dsseEnvelope.signatures[0].sig, 'base64');
  sig[sig.length - 1] = sig[sig.length - 1]! ^ 0x01;
  flipped.dsseEnvelope.signatures[0].sig = sig.toString('base64');
  await rejected(verifyBundle(keys.publicKey, Buffer.from(JSON.stringify(flipped)), DIGEST), sigFail);
  // The payload type changed (it is part of what DSSE signs).
  const retyped = structuredClone(json);
  retyped.dsseEnvelope.payloadType = 'application/json';
  await rejected(verifyBundle(keys.publicKey, Buffer.from(JSON.stringify(retyped)), DIGEST), /payloadType "application\/json", not application\/vnd\.in-toto\+json/);
  // No signature at all.
  const unsigned = structuredClone(json);
  unsigned.dsseEnvelope.signatures = [];
  await rejected(verifyBundle(keys.publicKey, Buffer.from(JSON.stringify(unsigned)), DIGEST), /^the bundle is malformed \(invalid bundle: content\.dsseEnvelope\.signatures\)$/);
  // Another key.
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await rejected(verifyBundle(other.publicKey, bundle, DIGEST), sigFail);
  // The other key's own bundle is fine with the other key only.
  const theirs = await makeBundle(other.privateKey, other.publicKey, DIGEST);
  await verifyBundle(other.publicKey, theirs, DIGEST);
  await rejected(verifyBundle(keys.publicKey, theirs, DIGEST), sigFail);
});

test('a validly signed statement that is not cosign\'s image signature is rejected', async () => {
  const hex = DIGEST.slice('sha256:'.length);
  const provenance = await bundleOver({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'x', digest: { sha256: hex } }], predicateType: 'https://slsa.dev/provenance/v1', predicate: {} }, keys.privateKey, keys.publicKey);
  await rejected(verifyBundle(keys.publicKey, provenance, DIGEST), /predicateType "https:\/\/slsa\.dev\/provenance\/v1", not https:\/\/sigstore\.dev\/cosign\/sign\/v1/);
  const oldStatement = await bundleOver({ _type: 'https://in-toto.io/Statement/v0.1', subject: [{ digest: { sha256: hex } }], predicateType: 'https://sigstore.dev/cosign/sign/v1', predicate: {} }, keys.privateKey, keys.publicKey);
  await rejected(verifyBundle(keys.publicKey, oldStatement, DIGEST), /_type "https:\/\/in-toto\.io\/Statement\/v0\.1"/);
  const twoSubjects = await bundleOver({ _type: 'https://in-toto.io/Statement/v1', subject: [{ digest: { sha256: '1'.repeat(64) } }, { digest: { sha256: hex } }], predicateType: 'https://sigstore.dev/cosign/sign/v1', predicate: {} }, keys.privateKey, keys.publicKey);
  await verifyBundle(keys.publicKey, twoSubjects, DIGEST); // any subject may be the image, as in-toto verifiers match
  const notJson = await bundleOver('just a string', keys.privateKey, keys.publicKey);
  await rejected(verifyBundle(keys.publicKey, notJson, DIGEST), /not an in-toto statement/);
});

test('bundles hoist cannot check with a key are refused with the reason', async () => {
  await rejected(verifyBundle(keys.publicKey, Buffer.from('{'), DIGEST), /^the bundle is not valid JSON$/);
  const json = JSON.parse((await makeBundle(keys.privateKey, keys.publicKey, DIGEST)).toString());
  const message = { mediaType: json.mediaType, verificationMaterial: json.verificationMaterial, messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest: 'AA==' }, signature: 'AA==' } };
  await rejected(verifyBundle(keys.publicKey, Buffer.from(JSON.stringify(message)), DIGEST), /message signature, not the DSSE envelope/);
  const keyless = structuredClone(json);
  keyless.verificationMaterial = { certificate: { rawBytes: Buffer.from('not a certificate').toString('base64') } };
  await rejected(verifyBundle(keys.publicKey, Buffer.from(JSON.stringify(keyless)), DIGEST), /^the bundle is signed with a certificate \(keyless\), not a key/);
  const bare = structuredClone(json);
  delete bare.verificationMaterial;
  await rejected(verifyBundle(keys.publicKey, Buffer.from(JSON.stringify(bare)), DIGEST), /^the bundle is malformed \(invalid bundle: verificationMaterial/);
});

test('bundleReferrerManifest: cosign\'s referrer layout, a valid OCI manifest, blobs matching their descriptors', async () => {
  const bundle = await makeBundle(keys.privateKey, keys.publicKey, DIGEST);
  const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: DIGEST, size: 503, annotations: { dropped: 'yes' } };
  const r = bundleReferrerManifest(bundle, subject, { created: '2025-01-02T03:04:05Z' });
  const bd = digestBytes(bundle);
  assert.equal(r.manifest.toString(), JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', size: 2, digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', artifactType: BUNDLE_MEDIA_TYPE },
    layers: [{ mediaType: BUNDLE_MEDIA_TYPE, size: bundle.length, digest: bd, annotations: { 'org.opencontainers.image.title': `${bd.replace(':', '-')}.sigstore.json` } }],
    annotations: {
      'dev.sigstore.bundle.content': 'dsse-envelope',
      'dev.sigstore.bundle.predicateType': 'https://sigstore.dev/cosign/sign/v1',
      'org.opencontainers.image.created': '2025-01-02T03:04:05Z',
    },
    subject: { mediaType: subject.mediaType, size: 503, digest: DIGEST },
    artifactType: BUNDLE_MEDIA_TYPE,
  }));
  const parsed = parseManifest(r.manifest, 'referrer');
  assert.equal(parsed.kind, 'image');
  for (const b of r.blobs) {
    assert.equal(digestBytes(b.bytes), b.descriptor.digest);
    assert.equal(b.bytes.length, b.descriptor.size);
  }
  assert.deepEqual(r.blobs.map((b) => b.descriptor.mediaType), ['application/vnd.oci.empty.v1+json', BUNDLE_MEDIA_TYPE]);
  assert.equal(r.blobs[0]!.bytes.toString(), '{}');

  const noDate = JSON.parse(bundleReferrerManifest(bundle, subject, { created: null }).manifest.toString());
  assert.equal(noDate.annotations['org.opencontainers.image.created'], undefined);
  const now = JSON.parse(bundleReferrerManifest(bundle, subject).manifest.toString());
  assert.match(now.annotations['org.opencontainers.image.created'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
});
