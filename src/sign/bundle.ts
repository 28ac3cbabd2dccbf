/**
 * Sigstore bundles as cosign v3 attaches them to images: a v0.3 bundle holding a DSSE envelope over an in-toto
 * v1 Statement (subject = the manifest digest, predicateType https://sigstore.dev/cosign/sign/v1), stored as the
 * only layer of an OCI 1.1 referrer manifest (cosign's WriteAttestationNewBundleFormat / WriteReferrer).
 * Made and checked offline with a local key: no Fulcio certificate, no Rekor entry, no timestamp — the same as
 * `cosign sign --key k --tlog-upload=false` and `cosign verify --key k --insecure-ignore-tlog`.
 * The sigstore libraries are loaded on first use: they are large and only signing/verifying needs them.
 */
import { sign as cryptoSign, type KeyObject } from 'node:crypto';
import { HoistError } from '../errors.ts';
import { digestBytes, parseDigest } from '../oci/digest.ts';
import { OCI_EMPTY, OCI_MANIFEST } from '../oci/mediatype.ts';
import type { Descriptor } from '../oci/types.ts';
import { goJson } from '../util/go-json.ts';
import { keyHint, publicKeyPem } from './keys.ts';

export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const COSIGN_SIGN_PREDICATE_TYPE = 'https://sigstore.dev/cosign/sign/v1';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const BUNDLE_CONTENT_ANNOTATION = 'dev.sigstore.bundle.content';
export const BUNDLE_PREDICATE_TYPE_ANNOTATION = 'dev.sigstore.bundle.predicateType';
const CREATED_ANNOTATION = 'org.opencontainers.image.created';
const EMPTY_JSON = Buffer.from('{}');

/**
 * The statement cosign v3's signDigestBundle signs: one subject with only the digest (cosign sets no name),
 * the cosign sign predicate type, an empty predicate.
 */
export function signStatement(manifestDigest: string): Buffer {
  const { algorithm, hex } = parseDigest(manifestDigest, 'manifest digest');
  return Buffer.from(JSON.stringify({
    _type: IN_TOTO_STATEMENT_V1,
    subject: [{ digest: { [algorithm]: hex } }],
    predicateType: COSIGN_SIGN_PREDICATE_TYPE,
    predicate: {},
  }));
}

/** A v0.3 bundle (JSON bytes) signing `manifestDigest` with the local key; its publicKey hint is cosign's. */
export async function makeBundle(privateKey: KeyObject, publicKey: KeyObject, manifestDigest: string): Promise<Buffer> {
  const { DSSEBundleBuilder } = await import('@sigstore/sign');
  const { bundleToJSON } = await import('@sigstore/bundle');
  const hint = keyHint(publicKey);
  const pem = publicKeyPem(publicKey);
  const builder = new DSSEBundleBuilder({
    signer: {
      // DSSEBundleBuilder hands over the DSSE pre-authentication encoding; ECDSA-SHA256, DER, as cosign signs.
      sign: async (data: Buffer) => ({ signature: cryptoSign('sha256', data, privateKey), key: { $case: 'publicKey', publicKey: pem, hint } }),
    },
    witnesses: [],
  });
  const bundle = await builder.create({ data: signStatement(manifestDigest), type: IN_TOTO_PAYLOAD_TYPE });
  return Buffer.from(JSON.stringify(bundleToJSON(bundle)));
}

export interface BundleReferrerOptions {
  /** org.opencontainers.image.created (RFC 3339, seconds, UTC) as cosign adds it; default now; null omits it. */
  created?: string | null;
}

/**
 * The referrer manifest cosign's WriteReferrer pushes for a bundle, in go-containerregistry's field order:
 * config = the empty descriptor (`{}`, carrying the artifactType too), one layer = the bundle (titled
 * `sha256-<hex>.sigstore.json`), annotations content/predicateType/created, subject, artifactType.
 * `blobs` are the config and the bundle, to upload before the manifest.
 */
export function bundleReferrerManifest(
  bundle: Buffer, subject: Descriptor, opts: BundleReferrerOptions = {},
): { manifest: Buffer; blobs: Array<{ descriptor: Descriptor; bytes: Buffer }> } {
  const configDigest = digestBytes(EMPTY_JSON);
  const bundleDigest = digestBytes(bundle);
  const created = opts.created === undefined ? new Date().toISOString().replace(/\.\d+Z$/, 'Z') : opts.created;
  // Go maps marshal with sorted keys.
  const annotations: Record<string, string> = {
    [BUNDLE_CONTENT_ANNOTATION]: 'dsse-envelope',
    [BUNDLE_PREDICATE_TYPE_ANNOTATION]: COSIGN_SIGN_PREDICATE_TYPE,
    ...(created !== null ? { [CREATED_ANNOTATION]: created } : {}),
  };
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_EMPTY, size: EMPTY_JSON.length, digest: configDigest, artifactType: BUNDLE_MEDIA_TYPE },
    layers: [{
      mediaType: BUNDLE_MEDIA_TYPE, size: bundle.length, digest: bundleDigest,
      annotations: { 'org.opencontainers.image.title': `${bundleDigest.replace(':', '-')}.sigstore.json` },
    }],
    annotations,
    subject: { mediaType: subject.mediaType, size: subject.size, digest: subject.digest },
    artifactType: BUNDLE_MEDIA_TYPE,
  };
  return {
    manifest: Buffer.from(goJson(manifest)),
    blobs: [
      { descriptor: { mediaType: OCI_EMPTY, digest: configDigest, size: EMPTY_JSON.length }, bytes: Buffer.from(EMPTY_JSON) },
      { descriptor: { mediaType: BUNDLE_MEDIA_TYPE, digest: bundleDigest, size: bundle.length }, bytes: bundle },
    ],
  };
}

export interface BundleStatement {
  predicateType: string;
  /** Every subject digest, as `algorithm:hex`. */
  subjectDigests: string[];
}

/**
 * The statement inside a bundle, UNVERIFIED (for listing and for the policy's digest check after verifyBundle).
 * Throws SIGNATURE_INVALID when the bundle is not a DSSE bundle over an in-toto statement.
 */
export function parseBundleStatement(bundle: Buffer): BundleStatement {
  return statementOf(envelopeOf(bundle).payload);
}

/**
 * Verifies a bundle with the public key: the DSSE signature (through @sigstore/verify with the key as the only trust
 * and no log/timestamp thresholds), then the statement: in-toto v1, cosign's sign predicate type, and a subject
 * whose digest is `manifestDigest`. Throws SIGNATURE_INVALID with the reason.
 */
export async function verifyBundle(pub: KeyObject, bundle: Buffer, manifestDigest: string): Promise<void> {
  const sb: typeof import('@sigstore/bundle') = await import('@sigstore/bundle');
  const { Verifier, toSignedEntity } = await import('@sigstore/verify');
  const env = envelopeOf(bundle); // checks the shape first, for clearer reasons than the libraries give
  let parsed;
  try {
    parsed = sb.bundleFromJSON(env.json);
    sb.assertBundle(parsed);
  } catch (e) {
    // @sigstore/bundle's ValidationError lists the missing fields in `fields`.
    const fields = (e as { fields?: unknown }).fields;
    const which = Array.isArray(fields) && fields.length > 0 ? `: ${fields.join(', ')}` : '';
    throw invalid(`the bundle is malformed (${(e as Error).message}${which})`);
  }
  if (parsed.verificationMaterial.content.$case !== 'publicKey') {
    throw invalid('the bundle is signed with a certificate (keyless), not a key; hoist verifies bundles made with a key');
  }
  const verifier = new Verifier({
    certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [],
    // cosign verify --key ignores the hint and uses the key it was given; so do we.
    publicKey: () => ({ publicKey: pub, validFor: () => true }),
  }, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  try {
    verifier.verify(toSignedEntity(parsed));
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    throw invalid(code === 'SIGNATURE_ERROR'
      ? 'the bundle\'s signature does not verify with this key (it was changed, or signed by another key)'
      : `the bundle does not verify: ${(e as Error).message}`);
  }
  const st = statementOf(env.payload);
  if (st.predicateType !== COSIGN_SIGN_PREDICATE_TYPE) {
    throw invalid(`the bundle's statement has predicateType ${JSON.stringify(st.predicateType)}, not ${COSIGN_SIGN_PREDICATE_TYPE} (an attestation, not a signature)`);
  }
  if (!st.subjectDigests.includes(manifestDigest)) {
    throw invalid(`the bundle signs ${st.subjectDigests.join(', ') || 'no digest'}, not ${manifestDigest}`);
  }
}

function invalid(reason: string): HoistError {
  return new HoistError('SIGNATURE_INVALID', reason);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The bundle JSON and its DSSE envelope's payload, checked for shape only. */
function envelopeOf(bundle: Buffer): { json: Obj; payload: Buffer } {
  let json: unknown;
  try {
    json = JSON.parse(bundle.toString('utf8'));
  } catch {
    throw invalid('the bundle is not valid JSON');
  }
  if (!isObj(json)) throw invalid('the bundle is not a JSON object');
  const env = json['dsseEnvelope'];
  if (!isObj(env)) {
    throw invalid(isObj(json['messageSignature'])
      ? 'the bundle holds a message signature, not the DSSE envelope cosign v3 signs images with'
      : 'the bundle has no dsseEnvelope');
  }
  if (env['payloadType'] !== IN_TOTO_PAYLOAD_TYPE) {
    throw invalid(`the bundle's envelope has payloadType ${JSON.stringify(env['payloadType'])}, not ${IN_TOTO_PAYLOAD_TYPE}`);
  }
  const p = env['payload'];
  if (typeof p !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(p)) throw invalid('the bundle\'s envelope payload is not base64');
  return { json, payload: Buffer.from(p, 'base64') };
}

function statementOf(payload: Buffer): BundleStatement {
  let st: unknown;
  try {
    st = JSON.parse(payload.toString('utf8'));
  } catch {
    throw invalid('the bundle\'s payload is not JSON');
  }
  if (!isObj(st)) throw invalid('the bundle\'s payload is not an in-toto statement');
  if (st['_type'] !== IN_TOTO_STATEMENT_V1) {
    throw invalid(`the bundle's statement has _type ${JSON.stringify(st['_type'])}, not ${IN_TOTO_STATEMENT_V1}`);
  }
  const predicateType = st['predicateType'];
  if (typeof predicateType !== 'string') throw invalid('the bundle\'s statement has no predicateType');
  const subjects = st['subject'];
  if (!Array.isArray(subjects)) throw invalid('the bundle\'s statement has no subject list');
  const subjectDigests: string[] = [];
  for (const s of subjects) {
    const d = isObj(s) ? s['digest'] : undefined;
    if (!isObj(d)) continue;
    for (const [alg, hex] of Object.entries(d)) {
      if (typeof hex === 'string') subjectDigests.push(`${alg}:${hex}`);
    }
  }
  return { predicateType, subjectDigests };
}
