/**
 * The signatures of an image as policy evaluation sees them: read through the transport (both formats), each with a
 * `keyOk` that does the real cryptography with the policy's key. Loaded only when a policy rule needs signatures.
 */
import { verify, type KeyObject } from 'node:crypto';
import type { ImageSource } from '../transport/types.ts';
import { readSignatures, type SignatureEntry } from './attachments.ts';
import { parseBundleStatement, verifyBundle } from './bundle.ts';
import { readPublicKey } from './keys.ts';
import type { FoundSignature } from './policy.ts';
import { parseSimplePayload, verifySimpleSignature } from './simple-signing.ts';
import { HoistError } from '../errors.ts';

/** A public key of the policy, parsed once per PEM however many signatures it is tried on. */
function keyCache(): (pem: string) => KeyObject {
  const keys = new Map<string, KeyObject>();
  return (pem) => {
    let k = keys.get(pem);
    if (k === undefined) {
      k = readPublicKey(pem, 'a public key of the policy');
      keys.set(pem, k);
    }
    return k;
  };
}

/** DSSE's pre-authentication encoding, what a DSSE signature signs. */
function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

/**
 * Whether one of the bundle's DSSE signatures was made by `key`: only the "is it this key" question, so that a
 * signature by another key reads as a key mismatch; verifyBundle then checks the whole bundle strictly.
 */
function dsseSignedBy(bundle: Buffer, key: KeyObject): boolean {
  const json = JSON.parse(bundle.toString('utf8')) as { dsseEnvelope?: { payload?: unknown; payloadType?: unknown; signatures?: unknown } };
  const env = json.dsseEnvelope;
  if (env === undefined || typeof env.payload !== 'string' || typeof env.payloadType !== 'string' || !Array.isArray(env.signatures)) {
    throw new HoistError('SIGNATURE_INVALID', 'the bundle has no DSSE envelope');
  }
  const signed = pae(env.payloadType, Buffer.from(env.payload, 'base64'));
  return env.signatures.some((s: unknown) => {
    const sig = (s as { sig?: unknown } | null)?.sig;
    if (typeof sig !== 'string') return false;
    try {
      return verify('sha256', signed, key, Buffer.from(sig, 'base64'));
    } catch {
      return false; // malformed DER: not a signature by this key
    }
  });
}

function simpleSignature(e: Extract<SignatureEntry, { format: 'simple' }>, key: (pem: string) => KeyObject): FoundSignature {
  const payload = e.payload;
  // What the payload claims, looked at by the policy only once keyOk said the key signed it.
  let claimed: { dockerReference?: string; manifestDigest: string } = { manifestDigest: '' };
  if (payload !== undefined) {
    try {
      const p = parseSimplePayload(payload);
      claimed = { dockerReference: p.dockerReference, manifestDigest: p.manifestDigest };
    } catch {
      // a payload that does not parse fails in keyOk below, with the parser's reason
    }
  }
  return {
    format: 'simple',
    ...claimed,
    async keyOk(pem) {
      if (payload === undefined) throw new Error(e.error ?? 'the payload could not be read');
      const pub = key(pem);
      let ok: boolean;
      try {
        ok = verify('sha256', payload, pub, Buffer.from(e.signature.replace(/[\r\n]/g, ''), 'base64'));
      } catch {
        ok = false;
      }
      if (!ok) return false;
      // The key signed it: now the strict checks (canonical base64, the payload's exact format) must pass too.
      verifySimpleSignature(pub, payload, e.signature);
      return true;
    },
  };
}

function bundleSignature(e: Extract<SignatureEntry, { format: 'bundle' }>, imageDigest: string, key: (pem: string) => KeyObject): FoundSignature {
  const bundle = e.bundle;
  let subject = '';
  if (bundle !== undefined) {
    try {
      const digests = parseBundleStatement(bundle).subjectDigests;
      subject = digests.includes(imageDigest) ? imageDigest : digests[0] ?? '';
    } catch {
      // fails in keyOk below, with the reason
    }
  }
  return {
    format: 'bundle',
    manifestDigest: subject,
    async keyOk(pem) {
      if (bundle === undefined) throw new Error(e.error ?? 'the bundle could not be read');
      const pub = key(pem);
      if (!dsseSignedBy(bundle, pub)) return false;
      // Signed by this key: the full verification (sigstore libraries, statement, predicate type, subject).
      await verifyBundle(pub, bundle, subject === '' ? imageDigest : subject);
      return true;
    },
  };
}

/** The signatures of `manifestDigest` in `src`, both formats, for evaluatePolicy. */
export async function policySignatures(src: ImageSource, manifestDigest: string): Promise<FoundSignature[]> {
  const key = keyCache();
  return (await readSignatures(src, manifestDigest)).map((e) =>
    e.format === 'simple' ? simpleSignature(e, key) : bundleSignature(e, manifestDigest, key));
}

