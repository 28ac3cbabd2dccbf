/**
 * Image references as users write them to skopeo and podman: `docker://busybox`, `oci:/tmp/l:tag`,
 * `oci-archive:f.tar`, `docker-archive:f.tar:busybox:latest`, or a bare name (`busybox:1.0`, `localhost:5000/a`)
 * for hoist's local store.
 *
 * The path/ref split of oci:, oci-archive: and docker-archive: follows containers/image: the path ends at the first
 * `:` (so paths cannot contain one), and `oci:/tmp/x` has no ref.
 */
import { HoistError } from '../errors.ts';
import { parseDockerReference } from '../oci/reference.ts';

export type ImageRef =
  | { transport: 'docker'; /** Everything after `docker://`: a docker reference. */ ref: string }
  | { transport: 'oci'; dir: string; /** org.opencontainers.image.ref.name; omitted: the only image. */ ref?: string }
  | { transport: 'oci-archive'; file: string; ref?: string }
  | { transport: 'docker-archive'; file: string; /** A docker reference (`busybox:latest`) or `@N`, the Nth image. */ ref?: string }
  | { transport: 'store'; /** As written: a name, a digest or an image-ID prefix. */ name: string };

export type TransportName = ImageRef['transport'];

const LIST = 'use docker://, oci:, oci-archive:, docker-archive:, or a bare name for the local store';

/** Transports of containers/image that hoist does not implement: named so the error says so instead of "unknown". */
const NOT_SUPPORTED: Record<string, string> = {
  'dir': 'the dir: transport is not supported yet; use oci: (an OCI image layout directory) instead',
  'docker-daemon': 'hoist is daemonless and does not talk to a Docker daemon; `docker save` to a file and use docker-archive:',
  'containers-storage': 'hoist does not read podman/buildah storage; `podman save --format oci-archive` and use oci-archive:',
  'ostree': 'the ostree: transport is not supported',
  'sif': 'the sif: transport is not supported',
  'tarball': 'the tarball: transport is not supported; use oci-archive: or docker-archive:',
};

function bad(input: string, why: string): HoistError {
  return new HoistError('BAD_REFERENCE', `invalid image reference "${input}": ${why}`, { exitCode: 2 });
}

/**
 * An OCI ref name (org.opencontainers.image.ref.name) as containers/image validates it
 * (oci/internal.ValidateImageName): components of alphanumerics joined by `-._:@+` or `--`, separated by `/`.
 */
const OCI_REF_NAME = /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/;

export function isValidOciRefName(s: string): boolean {
  return OCI_REF_NAME.test(s);
}

/** `PATH[:REF]` split at the first `:`, as containers/image does for oci: and oci-archive:. */
function splitPathAndRef(input: string, transport: 'oci' | 'oci-archive', rest: string): { path: string; ref?: string } {
  const colon = rest.indexOf(':');
  const p = colon < 0 ? rest : rest.slice(0, colon);
  const ref = colon < 0 ? undefined : rest.slice(colon + 1);
  if (p === '') throw bad(input, `${transport}: needs a path, as in ${transport}:${transport === 'oci' ? '/path/to/layout' : 'image.tar'}[:name]`);
  if (ref === undefined || ref === '') return { path: p };
  if (!isValidOciRefName(ref)) {
    throw bad(input, `"${ref}" is not a valid image name inside an OCI layout; use letters, digits and . _ - : @ + / (paths cannot contain ":")`);
  }
  return { path: p, ref };
}

function parseDockerArchive(input: string, rest: string): ImageRef {
  const colon = rest.indexOf(':');
  const file = colon < 0 ? rest : rest.slice(0, colon);
  const ref = colon < 0 ? undefined : rest.slice(colon + 1);
  if (file === '') throw bad(input, 'docker-archive: needs a file, as in docker-archive:image.tar[:name:tag or :@N]');
  if (ref === undefined || ref === '') return { transport: 'docker-archive', file };
  if (ref.startsWith('@')) {
    if (!/^@\d+$/.test(ref)) throw bad(input, `"${ref}" is not an image index; write @0, @1, … to pick the Nth image in the archive`);
    return { transport: 'docker-archive', file, ref };
  }
  const parsed = parseDockerReference(ref);
  if (parsed.digest !== undefined) {
    throw bad(input, `"${ref}" has a digest; an image in a docker-archive is picked by name:tag or @N`);
  }
  return { transport: 'docker-archive', file, ref };
}

/** True when `s` is something the local store can look up: a name, a digest, or an image-ID prefix. */
function isStoreName(s: string): boolean {
  if (/^sha256:[0-9a-f]{1,64}$/.test(s) || /^[0-9a-f]{64}$/.test(s)) return true;
  try {
    parseDockerReference(s);
    return true;
  } catch {
    return false;
  }
}

export function parseImageReference(input: string): ImageRef {
  const m = /^([a-z][a-z0-9-]*):(.*)$/s.exec(input);
  if (m) {
    const transport = m[1]!;
    const rest = m[2]!;
    switch (transport) {
      case 'docker': {
        if (!rest.startsWith('//')) throw bad(input, 'the docker transport is written docker://host/name[:tag], with two slashes');
        const ref = rest.slice(2);
        if (ref === '') throw bad(input, 'empty reference after docker://');
        parseDockerReference(ref);
        return { transport: 'docker', ref };
      }
      case 'oci': {
        const { path: dir, ref } = splitPathAndRef(input, 'oci', rest);
        return ref === undefined ? { transport: 'oci', dir } : { transport: 'oci', dir, ref };
      }
      case 'oci-archive': {
        const { path: file, ref } = splitPathAndRef(input, 'oci-archive', rest);
        return ref === undefined ? { transport: 'oci-archive', file } : { transport: 'oci-archive', file, ref };
      }
      case 'docker-archive':
        return parseDockerArchive(input, rest);
    }
    const unsupported = NOT_SUPPORTED[transport];
    if (unsupported !== undefined) {
      throw new HoistError('NOT_SUPPORTED', `${input}: ${unsupported}`, { exitCode: 2 });
    }
    // `busybox:1.0`, `localhost:5000/a`: a prefix is a transport only where the whole is not an image name.
    if (isStoreName(input)) return { transport: 'store', name: input };
    // What follows `word:` looks like a tag (a mistyped name such as `a:b:c`): say what is wrong with the name.
    // Anything else (`foo:/path`, `foo:bar/baz`) is a transport hoist does not know.
    if (!/^[\w.:@-]*$/.test(rest)) {
      throw new HoistError('BAD_REFERENCE', `unknown transport "${transport}" in "${input}"; ${LIST}`, { exitCode: 2 });
    }
  }
  if (input === '') throw bad(input, `empty reference; ${LIST}`);
  if (isStoreName(input)) return { transport: 'store', name: input };
  parseDockerReference(input); // throws the precise reason
  throw bad(input, LIST);
}

export function formatImageReference(r: ImageRef): string {
  switch (r.transport) {
    case 'docker':
      return `docker://${r.ref}`;
    case 'oci':
      return `oci:${r.dir}${r.ref !== undefined ? `:${r.ref}` : ''}`;
    case 'oci-archive':
      return `oci-archive:${r.file}${r.ref !== undefined ? `:${r.ref}` : ''}`;
    case 'docker-archive':
      return `docker-archive:${r.file}${r.ref !== undefined ? `:${r.ref}` : ''}`;
    case 'store':
      return r.name;
  }
}
