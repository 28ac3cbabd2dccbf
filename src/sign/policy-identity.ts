/**
 * signedIdentity of containers-policy.json: does the docker reference a signature claims match the image being used?
 * A port of containers/image signature/policy_reference_match.go, including its parsing quirks, so a policy accepts
 * exactly the signatures podman and skopeo accept.
 */
import { formatReference, parseDockerReference, repository, type DockerReference } from '../oci/reference.ts';

export type SignedIdentity =
  | { type: 'matchExact' }
  | { type: 'matchRepoDigestOrExact' }
  | { type: 'matchRepository' }
  | { type: 'exactReference'; dockerReference: string }
  | { type: 'exactRepository'; dockerRepository: string }
  | { type: 'remapIdentity'; prefix: string; signedPrefix: string };

/**
 * reference.ParseNormalizedNamed as containers/image's copy of it behaves: besides the distribution/reference
 * rules, everything before the first `:` must be lowercase — so an uppercase registry host is refused
 * (`UPPERCASE/foo:latest`), where newer distribution/reference would accept it. Undefined for anything invalid.
 */
export function parseNormalizedNamed(s: string): DockerReference | undefined {
  const colon = s.indexOf(':');
  const remote = colon < 0 ? s : s.slice(0, colon);
  if (remote.toLowerCase() !== remote) return undefined;
  try {
    return parseDockerReference(s);
  } catch {
    return undefined;
  }
}

/** reference.ParseNamed: like parseNormalizedNamed, but only for the fully qualified, canonical form. */
function parseNamedCanonical(s: string): DockerReference | undefined {
  const r = parseNormalizedNamed(s);
  return r !== undefined && formatReference(r) === s ? r : undefined;
}

function isNameOnly(r: DockerReference): boolean {
  return r.tag === undefined && r.digest === undefined;
}

/** matchRepoDigestOrExact on parsed values (policy_reference_match.go matchRepoDigestOrExactReferenceValues). */
function matchRepoDigestOrExactValues(intended: DockerReference, signature: DockerReference): boolean {
  // No default tags here: the image reference already has its tag, and a signature must name one exactly.
  if (isNameOnly(signature)) return false;
  // A tagged reference (also tag+digest) must match exactly.
  if (intended.tag !== undefined) return formatReference(signature) === formatReference(intended);
  // A digest reference accepts any signature for the repository: the signature's manifest digest is checked against
  // the manifest separately, and the manifest against the reference's digest when it was fetched.
  if (intended.digest !== undefined) return repository(signature) === repository(intended);
  return false;
}

/** remapIdentity's prefix test: the reference's repository equals the prefix or continues it after a `/`. */
export function refMatchesPrefix(ref: DockerReference, prefix: string): boolean {
  const name = repository(ref);
  if (name.length < prefix.length) return false;
  if (name.length === prefix.length) return name === prefix;
  // Only `/` can follow: `:` and `@` never occur in a repository name after the host (a port must match exactly).
  return name.startsWith(prefix) && name[prefix.length] === '/';
}

/**
 * remapIdentity's rewrite: the image reference with `prefix` replaced by `signedPrefix`, or the reference unchanged when
 * the prefix does not match. Undefined when the rewrite is not a canonical reference (containers/image then rejects).
 */
export function remapReferencePrefix(ref: DockerReference, prefix: string, signedPrefix: string): DockerReference | undefined {
  if (!refMatchesPrefix(ref, prefix)) return ref;
  return parseNamedCanonical(signedPrefix + formatReference(ref).slice(prefix.length));
}

// reference.DomainRegexp and NameRegexp (host[:port], or a full name), used to validate remapIdentity prefixes.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_ONLY = new RegExp(`^${DOMAIN}$`);
const DOMAIN_PREFIX = new RegExp(`^${DOMAIN}/`);
const NAME = new RegExp(`^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);

/**
 * validateIdentityRemappingPrefix: a prefix is a host[:port], or a repository (namespace) that starts with a host.
 * Like containers/image, this does not catch every useless value (`ns/name` on Docker Hub simply never matches).
 */
export function isValidRemapPrefix(s: string): boolean {
  return DOMAIN_ONLY.test(s) || (NAME.test(s) && DOMAIN_PREFIX.test(s));
}

/**
 * Does `signatureRef` (the docker-reference a simple-signing payload claims) satisfy `id` for an image known as
 * `imageRef`? `imageRef` is the image's docker reference with its tag and/or digest (docker:// references get
 * `:latest` added before this, as containers/image does); undefined for images with no docker identity (oci:,
 * oci-archive:), which only exactReference and exactRepository can accept. Missing `id` = matchRepoDigestOrExact,
 * the default of sigstoreSigned and signedBy. Invalid references never match.
 */
export function identityMatches(id: SignedIdentity | undefined, imageRef: string | undefined, signatureRef: string): boolean {
  const kind = id ?? { type: 'matchRepoDigestOrExact' as const };
  const signature = parseNormalizedNamed(signatureRef);
  if (signature === undefined) return false;
  switch (kind.type) {
    case 'exactReference': {
      const intended = parseNormalizedNamed(kind.dockerReference);
      if (intended === undefined || isNameOnly(intended) || isNameOnly(signature)) return false;
      return formatReference(signature) === formatReference(intended);
    }
    case 'exactRepository': {
      const intended = parseNormalizedNamed(kind.dockerRepository);
      return intended !== undefined && repository(signature) === repository(intended);
    }
  }
  // The remaining kinds compare with the image's own reference, which some images do not have.
  if (imageRef === undefined) return false;
  const intended = parseNormalizedNamed(imageRef);
  if (intended === undefined) return false;
  switch (kind.type) {
    case 'matchExact':
      if (isNameOnly(intended) || isNameOnly(signature)) return false;
      return formatReference(signature) === formatReference(intended);
    case 'matchRepoDigestOrExact':
      return matchRepoDigestOrExactValues(intended, signature);
    case 'matchRepository':
      return repository(signature) === repository(intended);
    case 'remapIdentity': {
      const remapped = remapReferencePrefix(intended, kind.prefix, kind.signedPrefix);
      return remapped !== undefined && matchRepoDigestOrExactValues(remapped, signature);
    }
  }
}

/** `matchRepoDigestOrExact`, `exactReference "x"`: how a signedIdentity reads in messages. */
export function describeIdentity(id: SignedIdentity | undefined): string {
  if (id === undefined) return 'matchRepoDigestOrExact';
  switch (id.type) {
    case 'exactReference':
      return `exactReference "${id.dockerReference}"`;
    case 'exactRepository':
      return `exactRepository "${id.dockerRepository}"`;
    case 'remapIdentity':
      return `remapIdentity "${id.prefix}" → "${id.signedPrefix}"`;
    default:
      return id.type;
  }
}
