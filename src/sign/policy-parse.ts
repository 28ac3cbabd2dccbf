/**
 * containers-policy.json: finding the file and parsing it as strictly as containers/image does
 * (signature/policy_config.go, policy_config_sigstore.go): unknown or duplicate keys, wrong types, a missing
 * `default`, empty requirement lists and invalid scopes are errors, because a typo in a security policy must not
 * silently loosen it. Errors are one line naming the file and the JSON path.
 */
import { access, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { HoistError, isErrno } from '../errors.ts';
import { isValidRemapPrefix, parseNormalizedNamed, type SignedIdentity } from './policy-identity.ts';
import { JsonSyntaxError, lineColumn, readJson, type Json, type JsonObject } from './policy-json.ts';

export type { SignedIdentity } from './policy-identity.ts';

export interface SigstoreFulcio {
  caPath?: string;
  caData?: string;
  oidcIssuer: string;
  subjectEmail: string;
}

export interface SigstorePki {
  caRootsPath?: string;
  caRootsData?: string;
  caIntermediatesPath?: string;
  caIntermediatesData?: string;
  subjectEmail?: string;
  subjectHostname?: string;
}

export type Requirement =
  | { type: 'insecureAcceptAnything' }
  | { type: 'reject' }
  | {
      type: 'sigstoreSigned';
      /** Exactly one key source among keyPath, keyPaths, keyData, keyDatas, fulcio, pki. */
      keyPath?: string;
      keyPaths?: string[];
      /** Base64 of a PEM public key, as in the file. */
      keyData?: string;
      keyDatas?: string[];
      fulcio?: SigstoreFulcio;
      pki?: SigstorePki;
      rekorPublicKeyPath?: string;
      rekorPublicKeyPaths?: string[];
      rekorPublicKeyData?: string;
      rekorPublicKeyDatas?: string[];
      /** Filled with matchRepoDigestOrExact when the file has none, as containers/image does. */
      signedIdentity: SignedIdentity;
    }
  | {
      type: 'signedBy';
      keyType: 'GPGKeys' | 'signedByGPGKeys' | 'X509Certificates' | 'signedByX509CAs';
      keyPath?: string;
      keyPaths?: string[];
      keyData?: string;
      signedIdentity: SignedIdentity;
    }
  | { type: 'signedBaseLayer'; baseLayerIdentity: SignedIdentity };

export interface Policy {
  default: Requirement[];
  /** transport name → scope → requirements. Scope "" is the transport's default. */
  transports: Record<string, Record<string, Requirement[]>>;
}

// ---------------------------------------------------------------------------------------------------------------
// Typed access with JSON paths in errors.

class PolicyError extends Error {
  readonly jsonPath: string;
  constructor(jsonPath: string, message: string) {
    super(message);
    this.jsonPath = jsonPath;
  }
}

function child(p: string, key: string | number): string {
  if (typeof key === 'number') return `${p}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${p}.${key}` : `${p}[${JSON.stringify(key)}]`;
}

function kindOf(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function expectObject(v: Json, p: string): JsonObject {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new PolicyError(p, `expected a JSON object, got ${kindOf(v)}`);
  return v;
}

function expectString(v: Json, p: string): string {
  if (typeof v !== 'string') throw new PolicyError(p, `expected a string, got ${kindOf(v)}`);
  return v;
}

function expectStrings(v: Json, p: string): string[] {
  if (!Array.isArray(v)) throw new PolicyError(p, `expected an array of strings, got ${kindOf(v)}`);
  return v.map((e, i) => expectString(e, child(p, i)));
}

/** []byte fields: Go's encoding/json wants standard base64 with padding (it skips \r and \n). */
function expectBase64(v: Json, p: string): string {
  const s = expectString(v, p);
  const bare = s.replace(/[\r\n]/g, '');
  if (bare.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(bare)) throw new PolicyError(p, 'expected base64 data (standard alphabet, with padding)');
  return bare;
}

/** Rejects keys outside `allowed` (first in document order, like containers/image) and returns the object. */
function onlyKeys(v: Json, p: string, allowed: readonly string[]): JsonObject {
  const o = expectObject(v, p);
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new PolicyError(child(p, k), `unknown key ${JSON.stringify(k)}; allowed here: ${allowed.join(', ')}`);
  }
  return o;
}

function required(o: JsonObject, p: string, key: string): Json {
  if (!Object.hasOwn(o, key)) throw new PolicyError(child(p, key), `key "${key}" is missing`);
  return o[key] as Json;
}

function optString(o: JsonObject, p: string, key: string): string | undefined {
  return Object.hasOwn(o, key) ? expectString(o[key] as Json, child(p, key)) : undefined;
}

// ---------------------------------------------------------------------------------------------------------------

function parseIdentity(v: Json, p: string): SignedIdentity {
  const o = expectObject(v, p);
  const type = Object.hasOwn(o, 'type') ? o['type'] : '';
  switch (type) {
    case 'matchExact':
    case 'matchRepoDigestOrExact':
    case 'matchRepository':
      onlyKeys(o, p, ['type']);
      return { type };
    case 'exactReference': {
      onlyKeys(o, p, ['type', 'dockerReference']);
      const ref = expectString(required(o, p, 'dockerReference'), child(p, 'dockerReference'));
      const parsed = parseNormalizedNamed(ref);
      if (parsed === undefined) throw new PolicyError(child(p, 'dockerReference'), `"${ref}" is not a valid docker reference`);
      if (parsed.tag === undefined && parsed.digest === undefined) {
        throw new PolicyError(child(p, 'dockerReference'), `"${ref}" contains neither a tag nor a digest`);
      }
      return { type, dockerReference: ref };
    }
    case 'exactRepository': {
      onlyKeys(o, p, ['type', 'dockerRepository']);
      const repo = expectString(required(o, p, 'dockerRepository'), child(p, 'dockerRepository'));
      if (parseNormalizedNamed(repo) === undefined) throw new PolicyError(child(p, 'dockerRepository'), `"${repo}" is not a valid docker repository`);
      return { type, dockerRepository: repo };
    }
    case 'remapIdentity': {
      onlyKeys(o, p, ['type', 'prefix', 'signedPrefix']);
      const prefix = expectString(required(o, p, 'prefix'), child(p, 'prefix'));
      const signedPrefix = expectString(required(o, p, 'signedPrefix'), child(p, 'signedPrefix'));
      for (const [k, s] of [['prefix', prefix], ['signedPrefix', signedPrefix]] as const) {
        if (!isValidRemapPrefix(s)) throw new PolicyError(child(p, k), `prefix "${s}" is not valid; use a host[:port] or host[:port]/namespace`);
      }
      return { type, prefix, signedPrefix };
    }
    default:
      throw new PolicyError(child(p, 'type'), `unknown signedIdentity type ${JSON.stringify(type)}; use matchExact, matchRepoDigestOrExact, matchRepository, exactReference, exactRepository or remapIdentity`);
  }
}

const SIGSTORE_KEYS = [
  'type', 'keyPath', 'keyPaths', 'keyData', 'keyDatas', 'fulcio', 'pki',
  'rekorPublicKeyPath', 'rekorPublicKeyPaths', 'rekorPublicKeyData', 'rekorPublicKeyDatas', 'signedIdentity',
] as const;

function nonEmptyList(v: Json, p: string, base64: boolean): string[] {
  const list = base64
    ? (Array.isArray(v) ? v.map((e, i) => expectBase64(e, child(p, i))) : expectStrings(v, p))
    : expectStrings(v, p);
  if (list.length === 0) throw new PolicyError(p, 'contains no entries');
  return list;
}

function parseFulcio(v: Json, p: string): SigstoreFulcio {
  const o = onlyKeys(v, p, ['caPath', 'caData', 'oidcIssuer', 'subjectEmail']);
  const caPath = optString(o, p, 'caPath');
  const caData = Object.hasOwn(o, 'caData') ? expectBase64(o['caData'] as Json, child(p, 'caData')) : undefined;
  if (caPath && caData !== undefined) throw new PolicyError(p, 'caPath and caData cannot be used simultaneously');
  if (!caPath && caData === undefined) throw new PolicyError(p, 'one of caPath and caData must be specified');
  const oidcIssuer = optString(o, p, 'oidcIssuer');
  if (!oidcIssuer) throw new PolicyError(child(p, 'oidcIssuer'), 'oidcIssuer not specified');
  const subjectEmail = optString(o, p, 'subjectEmail');
  if (!subjectEmail) throw new PolicyError(child(p, 'subjectEmail'), 'subjectEmail not specified');
  const f: SigstoreFulcio = { oidcIssuer, subjectEmail };
  if (caPath) f.caPath = caPath;
  if (caData !== undefined) f.caData = caData;
  return f;
}

function parsePki(v: Json, p: string): SigstorePki {
  const o = onlyKeys(v, p, ['caRootsPath', 'caRootsData', 'caIntermediatesPath', 'caIntermediatesData', 'subjectEmail', 'subjectHostname']);
  const pki: SigstorePki = {};
  for (const k of ['caRootsPath', 'caIntermediatesPath', 'subjectEmail', 'subjectHostname'] as const) {
    const s = optString(o, p, k);
    if (s) pki[k] = s;
  }
  for (const k of ['caRootsData', 'caIntermediatesData'] as const) {
    if (Object.hasOwn(o, k)) pki[k] = expectBase64(o[k] as Json, child(p, k));
  }
  if (pki.caRootsPath && pki.caRootsData !== undefined) throw new PolicyError(p, 'caRootsPath and caRootsData cannot be used simultaneously');
  if (!pki.caRootsPath && pki.caRootsData === undefined) throw new PolicyError(p, 'one of caRootsPath and caRootsData must be specified');
  if (pki.caIntermediatesPath && pki.caIntermediatesData !== undefined) {
    throw new PolicyError(p, 'caIntermediatesPath and caIntermediatesData cannot be used simultaneously');
  }
  if (!pki.subjectEmail && !pki.subjectHostname) throw new PolicyError(p, 'at least one of subjectEmail and subjectHostname must be specified');
  return pki;
}

function parseSigstoreSigned(o: JsonObject, p: string): Requirement {
  onlyKeys(o, p, SIGSTORE_KEYS);
  const r: Extract<Requirement, { type: 'sigstoreSigned' }> = {
    type: 'sigstoreSigned',
    signedIdentity: Object.hasOwn(o, 'signedIdentity')
      ? parseIdentity(o['signedIdentity'] as Json, child(p, 'signedIdentity'))
      : { type: 'matchRepoDigestOrExact' },
  };
  // Presence counts, as in containers/image, except that an empty keyPath counts as absent (Go's "" check).
  let keySources = 0;
  const keyPath = optString(o, p, 'keyPath');
  if (keyPath) {
    r.keyPath = keyPath;
    keySources++;
  }
  if (Object.hasOwn(o, 'keyPaths')) {
    r.keyPaths = nonEmptyList(o['keyPaths'] as Json, child(p, 'keyPaths'), false);
    keySources++;
  }
  if (Object.hasOwn(o, 'keyData')) {
    r.keyData = expectBase64(o['keyData'] as Json, child(p, 'keyData'));
    keySources++;
  }
  if (Object.hasOwn(o, 'keyDatas')) {
    r.keyDatas = nonEmptyList(o['keyDatas'] as Json, child(p, 'keyDatas'), true);
    keySources++;
  }
  if (Object.hasOwn(o, 'fulcio')) {
    r.fulcio = parseFulcio(o['fulcio'] as Json, child(p, 'fulcio'));
    keySources++;
  }
  if (Object.hasOwn(o, 'pki')) {
    r.pki = parsePki(o['pki'] as Json, child(p, 'pki'));
    keySources++;
  }
  if (keySources !== 1) {
    throw new PolicyError(p, `exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki must be specified, ${keySources === 0 ? 'none' : keySources} present`);
  }
  let rekorSources = 0;
  const rekorPath = optString(o, p, 'rekorPublicKeyPath');
  if (rekorPath) {
    r.rekorPublicKeyPath = rekorPath;
    rekorSources++;
  }
  if (Object.hasOwn(o, 'rekorPublicKeyPaths')) {
    r.rekorPublicKeyPaths = nonEmptyList(o['rekorPublicKeyPaths'] as Json, child(p, 'rekorPublicKeyPaths'), false);
    rekorSources++;
  }
  if (Object.hasOwn(o, 'rekorPublicKeyData')) {
    r.rekorPublicKeyData = expectBase64(o['rekorPublicKeyData'] as Json, child(p, 'rekorPublicKeyData'));
    rekorSources++;
  }
  if (Object.hasOwn(o, 'rekorPublicKeyDatas')) {
    r.rekorPublicKeyDatas = nonEmptyList(o['rekorPublicKeyDatas'] as Json, child(p, 'rekorPublicKeyDatas'), true);
    rekorSources++;
  }
  if (rekorSources > 1) {
    throw new PolicyError(p, 'at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas can be used');
  }
  if (r.fulcio && rekorSources === 0) throw new PolicyError(p, 'fulcio needs one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData or rekorPublicKeyDatas');
  if (r.pki && rekorSources > 0) throw new PolicyError(p, 'rekorPublicKey* is not supported with pki');
  return r;
}

const KEY_TYPES = ['GPGKeys', 'signedByGPGKeys', 'X509Certificates', 'signedByX509CAs'] as const;

function parseSignedBy(o: JsonObject, p: string): Requirement {
  onlyKeys(o, p, ['type', 'keyType', 'keyPath', 'keyPaths', 'keyData', 'signedIdentity']);
  const keyType = optString(o, p, 'keyType') ?? '';
  if (!(KEY_TYPES as readonly string[]).includes(keyType)) {
    throw new PolicyError(child(p, 'keyType'), `invalid keyType ${JSON.stringify(keyType)}; use ${KEY_TYPES.join(', ')}`);
  }
  const r: Extract<Requirement, { type: 'signedBy' }> = {
    type: 'signedBy',
    keyType: keyType as (typeof KEY_TYPES)[number],
    signedIdentity: Object.hasOwn(o, 'signedIdentity')
      ? parseIdentity(o['signedIdentity'] as Json, child(p, 'signedIdentity'))
      : { type: 'matchRepoDigestOrExact' },
  };
  const present = ['keyPath', 'keyPaths', 'keyData'].filter((k) => Object.hasOwn(o, k));
  if (present.length !== 1) {
    throw new PolicyError(p, `exactly one of keyPath, keyPaths and keyData must be specified, ${present.length === 0 ? 'none' : 'more than one'} present`);
  }
  if (Object.hasOwn(o, 'keyPath')) {
    r.keyPath = expectString(o['keyPath'] as Json, child(p, 'keyPath'));
    if (r.keyPath === '') throw new PolicyError(child(p, 'keyPath'), 'keyPath is empty');
  }
  if (Object.hasOwn(o, 'keyPaths')) r.keyPaths = expectStrings(o['keyPaths'] as Json, child(p, 'keyPaths'));
  if (Object.hasOwn(o, 'keyData')) r.keyData = expectBase64(o['keyData'] as Json, child(p, 'keyData'));
  return r;
}

function parseRequirement(v: Json, p: string): Requirement {
  const o = expectObject(v, p);
  const type = Object.hasOwn(o, 'type') ? o['type'] : '';
  switch (type) {
    case 'insecureAcceptAnything':
    case 'reject':
      onlyKeys(o, p, ['type']);
      return { type };
    case 'sigstoreSigned':
      return parseSigstoreSigned(o, p);
    case 'signedBy':
      return parseSignedBy(o, p);
    case 'signedBaseLayer': {
      onlyKeys(o, p, ['type', 'baseLayerIdentity']);
      return { type, baseLayerIdentity: parseIdentity(required(o, p, 'baseLayerIdentity'), child(p, 'baseLayerIdentity')) };
    }
    default:
      throw new PolicyError(child(p, 'type'), `unknown policy requirement type ${JSON.stringify(type)}; use insecureAcceptAnything, reject, sigstoreSigned or signedBy`);
  }
}

function parseRequirements(v: Json, p: string): Requirement[] {
  if (!Array.isArray(v)) throw new PolicyError(p, `expected an array of requirements, got ${kindOf(v)}`);
  if (v.length === 0) throw new PolicyError(p, 'the list of requirements must not be empty');
  return v.map((e, i) => parseRequirement(e, child(p, i)));
}

/** Go's filepath.Clean for absolute paths: no `.`/`..` components, no doubled or trailing slashes. */
function cleanPath(p: string): string {
  const n = path.posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/**
 * Why `scope` cannot be a scope of `transport` (the transports' ValidatePolicyConfigurationScope), or undefined if it can.
 * Transports containers/image does not know are not checked, as there.
 */
export function invalidScopeReason(transport: string, scope: string): string | undefined {
  if (scope === '') return undefined;
  switch (transport) {
    case 'oci':
    case 'oci-archive':
    case 'dir':
      if (!scope.startsWith('/')) return 'must be an absolute path';
      if (scope === '/') return 'use the transport default scope "" instead of "/"';
      if (cleanPath(scope) !== scope) return `uses a non-canonical path, perhaps try ${cleanPath(scope)}`;
      return undefined;
    case 'docker-archive':
    case 'docker-daemon':
    case 'tarball':
    case 'sif':
      return `${transport}: supports no scope except the default ""`;
    case 'containers-storage': {
      if (!scope.startsWith('[')) return 'must start with a store specification, [driver@/graph/root] or [/graph/root]';
      const close = scope.indexOf(']');
      if (close < 1) return 'has no closing "]"';
      const spec = scope.slice(1, close);
      const at = spec.indexOf('@');
      const root = at < 0 ? spec : spec.slice(at + 1);
      if (spec === '' || (at >= 0 && (at === 0 || root === ''))) return 'has an invalid store specification';
      if (!root.startsWith('/')) return 'the graph root must be an absolute path';
      const rest = scope.slice(close + 1);
      if (rest === '') return undefined;
      const fields = rest.split('@');
      const isId = (s: string | undefined): boolean => s !== undefined && /^[0-9a-f]{64}$/.test(s);
      const isDigest = (s: string | undefined): boolean => s !== undefined && /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(s);
      if (fields.length === 2 && !isId(fields[1]) && !isDigest(fields[1])) return `"${fields[1]}" is neither a digest nor an image ID`;
      if (fields.length === 3 && (!isDigest(fields[1]) || !isId(fields[2]))) return 'expected name[:tag]@digest@ID';
      if (fields.length > 3) return 'has too many "@"';
      return undefined;
    }
    default:
      return undefined;
  }
}

function parseTransports(v: Json, p: string): Policy['transports'] {
  const o = expectObject(v, p);
  const out: Policy['transports'] = {};
  for (const [transport, scopesJson] of Object.entries(o)) {
    const tp = child(p, transport);
    const scopes = expectObject(scopesJson, tp);
    const parsed: Record<string, Requirement[]> = {};
    for (const [scope, reqs] of Object.entries(scopes)) {
      const sp = child(tp, scope);
      const why = invalidScopeReason(transport, scope);
      if (why !== undefined) throw new PolicyError(sp, `scope ${JSON.stringify(scope)} is not valid for transport "${transport}": ${why}`);
      parsed[scope] = parseRequirements(reqs, sp);
    }
    out[transport] = parsed;
  }
  return out;
}

/** Parses a policy file's text; `where` (the file) goes into errors. Throws HoistError BAD_POLICY. */
export function parsePolicy(text: string, where: string): Policy {
  let json: Json;
  try {
    json = readJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) {
      throw new HoistError('BAD_POLICY', `invalid policy in ${where}: not valid JSON at ${lineColumn(text, e.offset)}: ${e.message}; fix the file (see containers-policy.json(5))`);
    }
    throw e;
  }
  try {
    const o = onlyKeys(json, '$', ['default', 'transports']);
    if (!Object.hasOwn(o, 'default') || o['default'] === null) throw new PolicyError('$.default', 'the default policy is missing; add "default": [{"type": "reject"}] or another requirement list');
    const policy: Policy = { default: parseRequirements(o['default'] as Json, '$.default'), transports: {} };
    if (Object.hasOwn(o, 'transports')) policy.transports = parseTransports(o['transports'] as Json, '$.transports');
    return policy;
  } catch (e) {
    if (e instanceof PolicyError) {
      throw new HoistError('BAD_POLICY', `invalid policy in ${where}: ${e.jsonPath}: ${e.message}`);
    }
    throw e;
  }
}

export const SYSTEM_POLICY_PATH = '/etc/containers/policy.json';

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Which policy file applies, in containers/image's order (defaultPolicyPath): the explicit path (--policy) as given,
 * else `$HOME/.config/containers/policy.json` if it exists, else /etc/containers/policy.json if it exists.
 * Undefined when there is none: hoist then accepts every image (containers/image would refuse to run instead).
 */
export async function findPolicyFile(
  explicit?: string,
  env: NodeJS.ProcessEnv = process.env,
  /** Prefix for the system path (containers/image's RootForImplicitAbsolutePaths); tests use it. */
  opts: { root?: string } = {},
): Promise<string | undefined> {
  if (explicit !== undefined && explicit !== '') return explicit;
  const home = env['HOME'] || homedir();
  const user = path.join(home, '.config', 'containers', 'policy.json');
  if (await exists(user)) return user;
  const system = opts.root ? path.join(opts.root, SYSTEM_POLICY_PATH) : SYSTEM_POLICY_PATH;
  if (await exists(system)) return system;
  return undefined;
}

/**
 * The policy that applies (see findPolicyFile) and its file; undefined when there is no policy file.
 * An explicit path that cannot be read, or a file that does not parse, is an error: never fall back to "accept".
 */
export async function loadPolicy(
  explicit?: string,
  env: NodeJS.ProcessEnv = process.env,
  opts: { root?: string } = {},
): Promise<{ policy: Policy; file: string } | undefined> {
  const file = await findPolicyFile(explicit, env, opts);
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const why = isErrno(e, 'ENOENT') ? 'no such file' : (e as Error).message;
    throw new HoistError('BAD_POLICY', `cannot read policy file ${file}: ${why}; pass an existing file to --policy`, { cause: e });
  }
  return { policy: parsePolicy(text, file), file };
}
