/**
 * Checking an image's signatures with a public key, both formats: each signature found is judged on its own
 * (cryptography first, then the manifest digest it covers, then — simple signing only — the identity it claims),
 * and reported with the reason when it fails. Like signing, only manifests and signature blobs are read.
 */
import type { KeyObject } from 'node:crypto';
import { HoistError } from '../errors.ts';
import type { ImageSource } from '../transport/types.ts';
import { readSignatures, type SignatureEntry } from './attachments.ts';
import { parseBundleStatement, verifyBundle } from './bundle.ts';
import { identityMatches, parseNormalizedNamed } from './policy-identity.ts';
import { parseSimplePayload, verifySimpleSignature } from './simple-signing.ts';
import { formatReference, repository } from '../oci/reference.ts';

/** How the identity a simple signature claims is judged. */
export type IdentityRule =
  /** containers/image's default signedIdentity, against the image's docker reference. */
  | { type: 'matchRepoDigestOrExact'; imageReference: string }
  /** --identity: the claim must be this reference (a repository alone: any tag or digest in it). */
  | { type: 'exact'; identity: string };

export interface SignatureCheck {
  format: 'simple' | 'bundle';
  /** The manifest digest the signature claims to cover ('-' when it cannot be read). */
  digest: string;
  /** The identity a simple signature claims ('-' for bundles, which name none). */
  identity: string;
  valid: boolean;
  reason?: string;
}

export interface VerifyOptions {
  publicKey: KeyObject;
  identity: IdentityRule;
}

export interface VerifyReport {
  /** The digest of the manifest the reference names (what signatures must cover). */
  digest: string;
  checks: SignatureCheck[];
}

function identityOk(rule: IdentityRule, claimed: string): boolean {
  if (rule.type === 'matchRepoDigestOrExact') return identityMatches({ type: 'matchRepoDigestOrExact' }, rule.imageReference, claimed);
  const want = parseNormalizedNamed(rule.identity);
  const got = parseNormalizedNamed(claimed);
  if (want === undefined || got === undefined) return false;
  if (want.tag === undefined && want.digest === undefined) return repository(got) === repository(want);
  return formatReference(got) === formatReference(want);
}

function describeRule(rule: IdentityRule): string {
  return rule.type === 'exact' ? `--identity ${rule.identity}` : `${rule.imageReference} (matchRepoDigestOrExact)`;
}

async function check(entry: SignatureEntry, digest: string, opts: VerifyOptions): Promise<SignatureCheck> {
  if (entry.format === 'simple') {
    // What the payload claims, for the listing; trusted only once the signature verified.
    let claimed = { digest: '-', identity: '-' };
    if (entry.payload !== undefined) {
      try {
        const p = parseSimplePayload(entry.payload);
        claimed = { digest: p.manifestDigest, identity: p.dockerReference };
      } catch {
        // shown as '-'; the verification below says why
      }
    }
    const out = (valid: boolean, reason?: string): SignatureCheck =>
      ({ format: 'simple', ...claimed, valid, ...(reason !== undefined ? { reason } : {}) });
    if (entry.payload === undefined) return out(false, entry.error ?? 'the payload could not be read');
    let signed;
    try {
      signed = verifySimpleSignature(opts.publicKey, entry.payload, entry.signature);
    } catch (e) {
      if (e instanceof HoistError) return out(false, e.message);
      throw e;
    }
    if (signed.manifestDigest !== digest) return out(false, `it signs manifest ${signed.manifestDigest}, not this image's ${digest}`);
    if (!identityOk(opts.identity, signed.dockerReference)) {
      return out(false, `it names ${signed.dockerReference}, which does not match ${describeRule(opts.identity)}`);
    }
    return out(true);
  }
  let claimedDigest = '-';
  if (entry.bundle !== undefined) {
    try {
      claimedDigest = parseBundleStatement(entry.bundle).subjectDigests[0] ?? '-';
    } catch {
      // shown as '-'
    }
  }
  const out = (valid: boolean, reason?: string): SignatureCheck =>
    ({ format: 'bundle', digest: claimedDigest, identity: '-', valid, ...(reason !== undefined ? { reason } : {}) });
  if (entry.bundle === undefined) return out(false, entry.error ?? 'the bundle could not be read');
  try {
    await verifyBundle(opts.publicKey, entry.bundle, digest);
  } catch (e) {
    if (e instanceof HoistError) return out(false, e.message);
    throw e;
  }
  return out(true);
}

/** Finds and checks every signature of the manifest `src` names. */
export async function verifyImage(src: ImageSource, opts: VerifyOptions): Promise<VerifyReport> {
  const top = await src.getManifest();
  const entries = await readSignatures(src, top.digest);
  const checks: SignatureCheck[] = [];
  for (const e of entries) checks.push(await check(e, top.digest, opts));
  return { digest: top.digest, checks };
}
