/**
 * containers-policy.json evaluation, ported from containers/image (signature/policy_eval.go,
 * policy_eval_sigstore.go and the transports' PolicyConfigurationIdentity/Namespaces): which requirements apply to
 * an image (transport, then the most specific scope, then the transport default "", then `default`), and whether the
 * image satisfies ALL of them. Signatures come through a callback and their cryptography is checked by the caller's
 * `keyOk`, so this module stays free of registries and crypto.
 */
import { readFile, realpath, lstat } from 'node:fs/promises';
import path from 'node:path';
import { HoistError, isErrno } from '../errors.ts';
import { formatReference, parseDockerReference, repository } from '../oci/reference.ts';
import { storeRoot } from '../store/root.ts';
import { formatImageReference, type ImageRef } from '../transport/reference.ts';
import { describeIdentity, identityMatches } from './policy-identity.ts';
import { loadPolicy, type Policy, type Requirement } from './policy-parse.ts';

export { identityMatches, describeIdentity, type SignedIdentity } from './policy-identity.ts';
export { findPolicyFile, invalidScopeReason, loadPolicy, parsePolicy, SYSTEM_POLICY_PATH, type Policy, type Requirement } from './policy-parse.ts';

/** An image as the policy sees it: containers/image's ImageReference, reduced to what evaluation needs. */
export interface PolicyTarget {
  /** The transport name as containers-policy.json spells it: docker, oci, oci-archive, docker-archive, containers-storage. */
  transport: string;
  /** The image as the user wrote it, for messages: `docker://localhost:5000/app:1`. */
  name: string;
  /** PolicyConfigurationIdentity: the exact scope. */
  identity: string;
  /** PolicyConfigurationNamespaces: the wider scopes, most specific first ("" is implied after them). */
  namespaces: string[];
  /** The image's docker reference for signedIdentity (DockerReference()); undefined for oci:/oci-archive:. */
  dockerReference?: string;
}

export interface PolicyTargetOptions {
  /** Root of hoist's local store (default: storeRoot()), for containers-storage scopes `[driver@root]name`. */
  storeRoot?: string;
  /** Driver name in those scopes (default "hoist"); `[root]` scopes match whatever the driver. */
  storeDriver?: string;
}

/**
 * directory/explicitfilepath.ResolvePathToFullyExplicit: absolute, symlinks resolved; a missing last component is
 * appended to its resolved parent. Paths whose parent is missing too are only made absolute.
 */
export async function resolveExplicitPath(p: string): Promise<string> {
  const abs = path.resolve(p);
  try {
    await lstat(abs);
    return await realpath(abs);
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
  }
  try {
    return path.join(await realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

/**
 * docker/policyconfiguration.DockerReferenceNamespaces: the repository, its parent namespaces up to the host[:port],
 * then wildcard domains of the host without its port (`*.example.com`, `*.com`).
 */
export function dockerNamespaces(repo: string): string[] {
  const res: string[] = [];
  let name = repo;
  for (;;) {
    res.push(name);
    const slash = name.lastIndexOf('/');
    if (slash < 0) break;
    name = name.slice(0, slash);
  }
  // `name` is now the host[:port]; wildcards are matched on the host alone.
  const colon = name.indexOf(':');
  if (colon >= 0 && !name.startsWith('[')) name = name.slice(0, colon);
  for (;;) {
    const dot = name.indexOf('.');
    if (dot < 0) break;
    name = name.slice(dot + 1);
    res.push(`*.${name}`);
  }
  return res;
}

/** Parent directories of an absolute path, the path itself first, "/" excluded (oci/layout PolicyConfigurationNamespaces). */
function pathNamespaces(resolved: string): string[] {
  const res: string[] = [];
  let p = resolved;
  for (;;) {
    const slash = p.lastIndexOf('/');
    if (slash < 0 || p === '/') break;
    res.push(p);
    p = p.slice(0, slash);
  }
  return res;
}

/** The policy's view of a hoist image reference: transport name, scopes to look up, docker identity. */
export async function policyTarget(ref: ImageRef, opts: PolicyTargetOptions = {}): Promise<PolicyTarget> {
  const name = formatImageReference(ref);
  switch (ref.transport) {
    case 'docker': {
      // The docker transport adds :latest to a bare name before anything looks at it.
      const r = parseDockerReference(ref.ref, { defaultTag: true });
      const repo = repository(r);
      const namespaces = dockerNamespaces(repo);
      // containers/image refuses name:tag@digest for docker://; hoist accepts it, and looks the policy up by the
      // digest (what is pulled), then by the tag, then the usual repository scopes.
      let identity = formatReference(r);
      if (r.digest !== undefined) {
        identity = `${repo}@${r.digest}`;
        if (r.tag !== undefined) namespaces.unshift(`${repo}:${r.tag}`);
      }
      return { transport: 'docker', name, identity, namespaces, dockerReference: formatReference(r) };
    }
    case 'oci':
    case 'oci-archive': {
      // The ref name inside the layout is not part of the identity: "dir:name" and "dir:" may be the same image.
      const resolved = await resolveExplicitPath(ref.transport === 'oci' ? ref.dir : ref.file);
      return { transport: ref.transport, name, identity: resolved, namespaces: pathNamespaces(resolved) };
    }
    case 'docker-archive': {
      // No scopes but "" (containers/image punts on canonicalizing archive paths); the name inside is the identity.
      const t: PolicyTarget = { transport: 'docker-archive', name, identity: '', namespaces: [] };
      if (ref.ref !== undefined && !ref.ref.startsWith('@')) t.dockerReference = formatReference(parseDockerReference(ref.ref, { defaultTag: true }));
      return t;
    }
    case 'store': {
      // hoist's store plays containers-storage: scopes `[driver@root]name:tag`, `[driver@root]name`, its namespaces,
      // `[driver@root]`, `[root]`, as storage/storage_reference.go builds them.
      const root = opts.storeRoot ?? storeRoot();
      const spec = `[${opts.storeDriver ?? 'hoist'}@${root}]`;
      const id = /^(?:sha256:)?([0-9a-f]{1,64})$/.exec(ref.name)?.[1];
      if (id !== undefined && (ref.name.startsWith('sha256:') || id.length === 64)) {
        return { transport: 'containers-storage', name, identity: `${spec}@${id}`, namespaces: [spec, `[${root}]`] };
      }
      const r = parseDockerReference(ref.name, { defaultTag: true });
      const namespaces: string[] = [];
      if (r.tag !== undefined && r.digest !== undefined) namespaces.push(`${spec}${repository(r)}:${r.tag}`);
      const components = repository(r).split('/');
      while (components.length > 0) {
        namespaces.push(spec + components.join('/'));
        components.pop();
      }
      namespaces.push(spec, `[${root}]`);
      return { transport: 'containers-storage', name, identity: spec + formatReference(r), namespaces, dockerReference: formatReference(r) };
    }
  }
}

export interface RequirementSelection {
  requirements: Requirement[];
  /** The scope key that matched; "" for the transport default; undefined when the policy's `default` applies. */
  scope?: string;
  /** How messages name the section: `scope "localhost:5000/app"`, `transport "docker" default`, `default`. */
  label: string;
}

/** policy_eval.go requirementsForImageRef: exact identity, then namespaces in order, then "", then `default`. */
export function requirementsFor(policy: Policy, target: Pick<PolicyTarget, 'transport' | 'identity' | 'namespaces'>): RequirementSelection {
  const scopes = Object.hasOwn(policy.transports, target.transport) ? policy.transports[target.transport] : undefined;
  if (scopes !== undefined) {
    for (const scope of [target.identity, ...target.namespaces]) {
      if (scope !== '' && Object.hasOwn(scopes, scope)) return { requirements: scopes[scope]!, scope, label: `scope ${JSON.stringify(scope)}` };
    }
    if (Object.hasOwn(scopes, '')) return { requirements: scopes['']!, scope: '', label: `transport "${target.transport}" default` };
  }
  return { requirements: policy.default, label: 'default' };
}

/** A signature found for the image, already parsed by the caller but not yet trusted. */
export interface FoundSignature {
  /** 'simple': a simple-signing payload (`.sig` attachment); 'bundle': a sigstore bundle referrer. */
  format: 'simple' | 'bundle';
  /** Verifies the signature's cryptography against this PEM public key. The caller implements it. */
  keyOk(publicKeyPem: string): Promise<boolean>;
  /** The payload's critical.identity.docker-reference; bundles have none. */
  dockerReference?: string;
  /** The manifest digest the signature covers (payload docker-manifest-digest, or the in-toto subject). */
  manifestDigest: string;
}

export interface EvaluationContext {
  /** The policy file, for messages. */
  policyFile: string;
  /** Reads a keyPath (default: fs.readFile as UTF-8). */
  readFile?: (p: string) => Promise<string>;
  /** The image's signatures; called at most once, and only when a requirement needs them. */
  signatures: () => Promise<FoundSignature[]>;
}

export type PolicyResult = { accepted: true } | { accepted: false; reason: string };

type SigstoreReq = Extract<Requirement, { type: 'sigstoreSigned' }>;

interface LoadedKeys {
  /** `key /k.pub`, `keys /a.pub, /b.pub`, `the key in keyData`. */
  what: string;
  pems: string[];
}

async function loadKeys(req: SigstoreReq, read: (p: string) => Promise<string>): Promise<LoadedKeys | string> {
  const fromData = (b64: string): string => Buffer.from(b64, 'base64').toString('utf8');
  if (req.keyData !== undefined) return { what: 'the key in keyData', pems: [fromData(req.keyData)] };
  if (req.keyDatas !== undefined) return { what: 'the keys in keyDatas', pems: req.keyDatas.map(fromData) };
  const paths = req.keyPath !== undefined ? [req.keyPath] : req.keyPaths ?? [];
  const pems: string[] = [];
  for (const p of paths) {
    try {
      pems.push(await read(p));
    } catch (e) {
      return `cannot read public key ${p}: ${isErrno(e, 'ENOENT') ? 'no such file' : (e as Error).message}`;
    }
  }
  return { what: `${paths.length === 1 ? 'key' : 'keys'} ${paths.join(', ')}`, pems };
}

/** Why one signature does not satisfy the requirement, or undefined if it does. `keyMismatch` marks the crypto case. */
async function checkSignature(
  sig: FoundSignature,
  n: number,
  req: SigstoreReq,
  keys: LoadedKeys,
  image: PolicyTarget & { manifestDigest: string },
): Promise<{ reason: string; keyMismatch: boolean } | undefined> {
  const label = `signature ${n} (${sig.format === 'simple' ? 'simple signing' : 'sigstore bundle'})`;
  // Cryptography first: nothing in the payload is trusted before that.
  let signed = false;
  for (const pem of keys.pems) {
    try {
      if (await sig.keyOk(pem)) {
        signed = true;
        break;
      }
    } catch (e) {
      return { reason: `${label} cannot be verified: ${(e as Error).message}`, keyMismatch: false };
    }
  }
  if (!signed) return { reason: `${label} is not made by ${keys.what}`, keyMismatch: true };
  if (sig.manifestDigest !== image.manifestDigest) {
    return { reason: `${label} is for manifest ${sig.manifestDigest}, not this image's ${image.manifestDigest}`, keyMismatch: false };
  }
  // A bundle signs a digest and no name (cosign verifies bundles by digest), so its identity is the manifest digest
  // just checked: signedIdentity is not applied to bundles. Simple signatures name the image and must match.
  if (sig.format === 'bundle') return undefined;
  if (sig.dockerReference === undefined) return { reason: `${label} has no docker-reference identity`, keyMismatch: false };
  if (!identityMatches(req.signedIdentity, image.dockerReference, sig.dockerReference)) {
    const of = image.dockerReference === undefined ? `an image with no docker reference (${image.name})` : image.dockerReference;
    return {
      reason: `${label} is for "${sig.dockerReference}", which signedIdentity ${describeIdentity(req.signedIdentity)} does not accept for ${of}`,
      keyMismatch: false,
    };
  }
  return undefined;
}

/** prSigstoreSigned.isRunningImageAllowed: one accepted signature is enough. Returns the refusal reason, or undefined. */
async function evaluateSigstore(
  req: SigstoreReq,
  image: PolicyTarget & { manifestDigest: string },
  read: (p: string) => Promise<string>,
  signatures: () => Promise<FoundSignature[]>,
): Promise<string | undefined> {
  if (req.fulcio !== undefined) return 'keyless (Fulcio) signatures are not supported offline by hoist; use keyPath or keyData with the signer\'s public key';
  if (req.pki !== undefined) return 'X.509 (pki) signatures are not supported by hoist; use keyPath or keyData with the signer\'s public key';
  if (req.rekorPublicKeyPath !== undefined || req.rekorPublicKeyPaths !== undefined || req.rekorPublicKeyData !== undefined || req.rekorPublicKeyDatas !== undefined) {
    // Ignoring the Rekor requirement would accept signatures the policy means to refuse: refuse instead.
    return 'keyless / Rekor transparency-log checks (rekorPublicKey…) are not supported offline by hoist; drop rekorPublicKey* to verify by key alone';
  }
  const keys = await loadKeys(req, read);
  if (typeof keys === 'string') return keys;
  const sigs = await signatures();
  if (sigs.length === 0) return `a signature was required, but the image has none (expected one made by ${keys.what})`;
  const rejections: { reason: string; keyMismatch: boolean }[] = [];
  for (const [i, sig] of sigs.entries()) {
    const why = await checkSignature(sig, i + 1, req, keys, image);
    if (why === undefined) return undefined;
    rejections.push(why);
  }
  if (rejections.every((r) => r.keyMismatch)) return `no signature matches ${keys.what} (${sigs.length} checked)`;
  if (rejections.length === 1) return rejections[0]!.reason;
  return `none of the ${rejections.length} signatures was accepted: ${rejections.map((r) => r.reason).join('; ')}`;
}

/**
 * policy_eval.go IsRunningImageAllowed: every requirement must accept; the first refusal is the answer.
 * The reason reads `docker://x:1 refused by policy: sigstoreSigned (scope "x", /etc/containers/policy.json): …`.
 */
export async function evaluatePolicy(
  image: PolicyTarget & { manifestDigest: string },
  selection: RequirementSelection,
  ctx: EvaluationContext,
): Promise<PolicyResult> {
  const read = ctx.readFile ?? ((p: string) => readFile(p, 'utf8'));
  let cached: Promise<FoundSignature[]> | undefined;
  const signatures = (): Promise<FoundSignature[]> => (cached ??= ctx.signatures());
  const refuse = (req: Requirement, why: string): PolicyResult => ({
    accepted: false,
    reason: `${image.name} refused by policy: ${req.type} (${selection.label}, ${ctx.policyFile}): ${why}`,
  });
  if (selection.requirements.length === 0) {
    return { accepted: false, reason: `${image.name} refused by policy: (${selection.label}, ${ctx.policyFile}): the list of requirements is empty` };
  }
  for (const req of selection.requirements) {
    switch (req.type) {
      case 'insecureAcceptAnything':
        continue;
      case 'reject':
        return refuse(req, 'the policy rejects every image here');
      case 'signedBy':
        return refuse(req, 'GPG signatures are not supported by hoist');
      case 'signedBaseLayer':
        // containers/image does not implement it either ("signedBaseLayer not implemented yet!").
        return refuse(req, 'signedBaseLayer is not implemented (nor is it in containers/image)');
      case 'sigstoreSigned': {
        const why = await evaluateSigstore(req, image, read, signatures);
        if (why !== undefined) return refuse(req, why);
        continue;
      }
    }
  }
  return { accepted: true };
}

/**
 * The whole check for a command that uses an image: find and parse the policy (none: accept, as hoist promises),
 * pick the requirements, evaluate them. Throws HoistError POLICY_REJECTED with the one-line reason.
 */
export async function enforcePolicy(
  ref: ImageRef,
  manifestDigest: string,
  opts: {
    /** --policy */
    policyPath?: string;
    env?: NodeJS.ProcessEnv;
    /** Prefix for /etc/containers/policy.json (tests). */
    root?: string;
    signatures: () => Promise<FoundSignature[]>;
    readFile?: (p: string) => Promise<string>;
  } & PolicyTargetOptions,
): Promise<void> {
  const loaded = await loadPolicy(opts.policyPath, opts.env, opts.root === undefined ? {} : { root: opts.root });
  if (loaded === undefined) return;
  const target = await policyTarget(ref, opts);
  const ctx: EvaluationContext = { policyFile: loaded.file, signatures: opts.signatures };
  if (opts.readFile !== undefined) ctx.readFile = opts.readFile;
  const result = await evaluatePolicy({ ...target, manifestDigest }, requirementsFor(loaded.policy, target), ctx);
  if (!result.accepted) throw new HoistError('POLICY_REJECTED', result.reason);
}
