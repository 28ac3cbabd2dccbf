/**
 * Enforcing containers-policy.json where an image enters hoist (copy's source, run's and build's pulls), as
 * containers/image's copy.Image does: the policy is judged on the top-level manifest the reference names (for an
 * index: the index, whose signatures are the ones looked at) before anything is written, and the copy then uses that
 * very manifest (the source is pinned to it), so a tag that moves between the check and the copy cannot slip an
 * unchecked image through.
 *
 * Signatures are read through the transport interface (both formats) and handed to the policy evaluation unparsed
 * trust-wise: each one's `keyOk` does the real cryptography with the policy's key.
 */
import { verify, type KeyObject } from 'node:crypto';
import type { ManifestBlob } from '../oci/types.ts';
import type { ImageSource } from '../transport/types.ts';
import type { ImageRef } from '../transport/reference.ts';
import { readSignatures, type SignatureEntry } from './attachments.ts';
import { parseBundleStatement, verifyBundle } from './bundle.ts';
import { readPublicKey } from './keys.ts';
import {
  evaluatePolicy, loadPolicy, policyTarget, requirementsFor, type FoundSignature, type Policy, type PolicyTargetOptions,
} from './policy.ts';
import { parseSimplePayload, verifySimpleSignature } from './simple-signing.ts';
import { HoistError } from '../errors.ts';

export interface PolicyOptions extends PolicyTargetOptions {
  /** --policy FILE (else ~/.config/containers/policy.json, else /etc/containers/policy.json). */
  policyPath?: string;
  /** --insecure-policy: accept everything without reading any policy (skopeo: it wins over --policy). */
  insecure?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Prefix for /etc/containers/policy.json (containers/image's RootForImplicitAbsolutePaths); tests use it. */
  root?: string;
}

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

/**
 * `src` as it is, except that its top-level manifest is `top`: the manifest the policy accepted is the one copied.
 * Other calls (blobs, child manifests, signatures) reach the real source.
 */
export function pinTopManifest(src: ImageSource, top: ManifestBlob): ImageSource {
  return new Proxy(src, {
    get(target, prop) {
      if (prop === 'getManifest') {
        return (digest?: string) => (digest === undefined || digest === top.digest ? Promise.resolve(top) : target.getManifest(digest));
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The policy of one command: read once (a missing explicit file or a bad one fails here, before any image is
 * touched), then asked about each image the command reads.
 */
export class ImagePolicy {
  readonly #policy: { policy: Policy; file: string } | undefined;
  readonly #opts: PolicyOptions;

  private constructor(policy: { policy: Policy; file: string } | undefined, opts: PolicyOptions) {
    this.#policy = policy;
    this.#opts = opts;
  }

  /** Finds and parses the policy (none found, or --insecure-policy: everything is accepted). Throws BAD_POLICY. */
  static async load(opts: PolicyOptions = {}): Promise<ImagePolicy> {
    if (opts.insecure) return new ImagePolicy(undefined, opts);
    const loaded = await loadPolicy(opts.policyPath, opts.env, opts.root === undefined ? {} : { root: opts.root });
    return new ImagePolicy(loaded, opts);
  }

  /** The policy file in force, if any. */
  get file(): string | undefined {
    return this.#policy?.file;
  }

  /**
   * Throws HoistError POLICY_REJECTED (one line: the image, the rule, the file, why) unless the policy accepts `ref`,
   * whose top-level manifest is `manifestDigest`; signatures are read from `src` only when a rule needs them.
   */
  async check(ref: ImageRef, manifestDigest: string, src: ImageSource): Promise<void> {
    if (this.#policy === undefined) return;
    const target = await policyTarget(ref, this.#opts);
    const result = await evaluatePolicy({ ...target, manifestDigest }, requirementsFor(this.#policy.policy, target), {
      policyFile: this.#policy.file,
      signatures: () => policySignatures(src, manifestDigest),
    });
    if (!result.accepted) throw new HoistError('POLICY_REJECTED', result.reason);
  }

  /** Resolves `src`'s top-level manifest, checks it (see check) and returns `src` pinned to that manifest. */
  async admit(ref: ImageRef, src: ImageSource): Promise<ImageSource> {
    if (this.#policy === undefined) return src;
    const top = await src.getManifest();
    await this.check(ref, top.digest, src);
    return pinTopManifest(src, top);
  }
}

