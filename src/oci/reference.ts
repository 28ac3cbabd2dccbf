/**
 * Docker image references (`busybox`, `ghcr.io/o/r:tag`, `localhost:5000/a@sha256:…`), parsed and normalized the
 * way docker and containers/image do it (github.com/distribution/reference, ParseNormalizedNamed), so a name means
 * the same image here as in the tools users come from.
 */
import { HoistError } from '../errors.ts';
import { parseDigest } from './digest.ts';

export interface DockerReference {
  /** Registry host with optional port: `docker.io`, `localhost:5000`, `[::1]:5000`. */
  domain: string;
  /** Repository path inside the registry: `library/busybox`, `a/b`. */
  path: string;
  tag?: string;
  digest?: string;
}

export interface ParseReferenceOptions {
  /** Give `latest` to a reference that has neither tag nor digest (what pulling does; tagging a local image does not). */
  defaultTag?: boolean;
}

export const DOCKER_HUB = 'docker.io';
const LEGACY_DOCKER_HUB = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
const NAME_TOTAL_LENGTH_MAX = 255;

// The regular expressions of distribution/reference (regexp.go), anchored.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_AND_PORT = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const IDENTIFIER = /^[a-f0-9]{64}$/;

function bad(input: string, why: string): HoistError {
  return new HoistError('BAD_REFERENCE', `invalid image reference "${input}": ${why}`, { exitCode: 2 });
}

/**
 * Splits the registry off the way docker does: the first `/`-separated component is a registry only when it
 * looks like a host (has `.` or `:`, is `localhost`, or has uppercase letters, which repositories cannot have);
 * otherwise the image is on Docker Hub, where one-component names live under `library/`.
 */
function splitDomain(s: string): { domain: string; remainder: string } {
  const slash = s.indexOf('/');
  let domain = DOCKER_HUB;
  let remainder = s;
  if (slash >= 0) {
    const first = s.slice(0, slash);
    if (first === 'localhost' || /[.:]/.test(first) || first.toLowerCase() !== first) {
      domain = first === LEGACY_DOCKER_HUB ? DOCKER_HUB : first;
      remainder = s.slice(slash + 1);
    }
  }
  if (domain === DOCKER_HUB && !remainder.includes('/')) remainder = OFFICIAL_PREFIX + remainder;
  return { domain, remainder };
}

/** Parses a docker reference (`name[:tag][@digest]`) into its normalized parts; throws BAD_REFERENCE. */
export function parseDockerReference(s: string, opts: ParseReferenceOptions = {}): DockerReference {
  if (s === '') throw bad(s, 'empty reference');
  if (s.includes('://')) throw bad(s, 'a reference has no URL scheme; write it as host[:port]/path[:tag]');
  if (IDENTIFIER.test(s)) throw bad(s, 'a 64-character hex string is an image ID, not a repository name; prefix it with "sha256:" to name a digest');

  const { domain, remainder } = splitDomain(s);
  let rest = remainder;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.indexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const path = rest;

  if (!DOMAIN_AND_PORT.test(domain)) throw bad(s, `"${domain}" is not a valid registry host[:port]`);
  if (path.toLowerCase() !== path) throw bad(s, 'repository name must be lowercase');
  const components = path.split('/');
  for (const c of components) {
    if (c === '') throw bad(s, 'repository path has an empty component');
    if (!PATH_COMPONENT.test(c)) {
      throw bad(s, `repository path component "${c}" is invalid; use lowercase letters and digits, separated by ".", "_", "__" or "-"`);
    }
  }
  if (domain.length + 1 + path.length > NAME_TOTAL_LENGTH_MAX) {
    throw bad(s, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  if (tag !== undefined && !TAG.test(tag)) {
    throw bad(s, `tag "${tag}" is invalid; a tag is up to 128 letters, digits, "_", "." or "-", not starting with "." or "-"`);
  }
  if (digest !== undefined) {
    if (!DIGEST.test(digest)) throw bad(s, `digest "${digest}" is invalid; expected sha256:<64 hex digits>`);
    try {
      parseDigest(digest);
    } catch {
      throw bad(s, `digest "${digest}" is invalid; expected sha256:<64 hex digits> or sha512:<128 hex digits>`);
    }
  }

  const ref: DockerReference = { domain, path };
  if (tag !== undefined) ref.tag = tag;
  else if (digest === undefined && opts.defaultTag) ref.tag = 'latest';
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

function suffix(r: DockerReference): string {
  return (r.tag !== undefined ? `:${r.tag}` : '') + (r.digest !== undefined ? `@${r.digest}` : '');
}

/** `docker.io/library/busybox` — the repository without tag or digest. */
export function repository(r: DockerReference): string {
  return `${r.domain}/${r.path}`;
}

/** `docker.io/library/busybox:latest`, `localhost:5000/a:t@sha256:…` — the fully qualified form. */
export function formatReference(r: DockerReference): string {
  return repository(r) + suffix(r);
}

/** The short form docker shows: `busybox:latest`, `user/app`, `localhost:5000/a:t`. */
export function familiarName(r: DockerReference): string {
  let name = repository(r);
  if (r.domain === DOCKER_HUB) {
    name = r.path;
    const rest = r.path.startsWith(OFFICIAL_PREFIX) ? r.path.slice(OFFICIAL_PREFIX.length) : undefined;
    if (rest !== undefined && !rest.includes('/')) name = rest;
  }
  return name + suffix(r);
}
