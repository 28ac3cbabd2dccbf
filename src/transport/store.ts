/**
 * The local store as a transport: bare names (`busybox`, `localhost:5000/a:1`), digests and image-ID prefixes.
 * The store is an OCI layout whose entries are named by normalized docker references, so reading and writing are
 * the oci: transport's, with the store's naming: `busybox` means `docker.io/library/busybox:latest`, and writing a
 * name replaces whatever image had it (the old one is untagged, as with podman).
 */
import { isDigest } from '../oci/digest.ts';
import { HoistError } from '../errors.ts';
import { formatReference, parseDockerReference, repository } from '../oci/reference.ts';
import type { Descriptor } from '../oci/types.ts';
import { refName } from '../store/layout.ts';
import { Store } from '../store/store.ts';
import { LayoutDestination, LayoutSource, type AttachmentNaming } from './oci-layout.ts';
import type { ImageDestination, ImageSource, OpenOptions } from './types.ts';

/** `busybox` → `docker.io/library/busybox:latest`: the form names are stored in. Throws BAD_REFERENCE. */
export function normalizeStoreName(name: string): string {
  return formatReference(parseDockerReference(name, { defaultTag: true }));
}

/** A digest or a bare hex image ID rather than a name. */
function isIdLike(s: string): boolean {
  return isDigest(s) || /^sha256:[0-9a-f]+$/.test(s) || /^[0-9a-f]{64}$/.test(s);
}

/** How the image is shown in messages: the normalized name, or what the user gave when it is an ID. */
function displayName(name: string): string {
  if (isIdLike(name)) return name;
  try {
    return normalizeStoreName(name);
  } catch {
    return name;
  }
}

/** The store's attachment naming: a registry tag of the image's repository is the ref name `<repository>:<tag>`. */
function repositoryNaming(repo: string): AttachmentNaming {
  return { tagName: (tag) => `${repo}:${tag}` };
}

/**
 * The repository an image's signatures live under: that of the name it was given by; for an ID or digest, that of the
 * names the image has in the store, when they agree on one (otherwise undefined: there is no one place).
 */
async function attachmentRepository(store: Store, name: string, top: Descriptor): Promise<string | undefined> {
  if (!isIdLike(name)) {
    try {
      return repository(parseDockerReference(name, { defaultTag: true }));
    } catch {
      // an exact stored name that is not a docker reference: fall through to the image's names
    }
  }
  const repos = new Set<string>();
  for (const d of (await store.layout.readIndex()).manifests) {
    const n = d.digest === top.digest ? refName(d) : undefined;
    if (n === undefined) continue;
    try {
      repos.add(repository(parseDockerReference(n)));
    } catch {
      // not a docker reference: no repository to offer
    }
  }
  return repos.size === 1 ? [...repos][0] : undefined;
}

export async function openStoreSource(name: string, opts: OpenOptions = {}): Promise<ImageSource> {
  const store = await Store.open(opts.storeRoot);
  const top = await store.resolve(name);
  const repo = await attachmentRepository(store, name, top);
  return new LayoutSource(displayName(name), store.layout, top, undefined, repo === undefined ? undefined : repositoryNaming(repo));
}

/**
 * A destination for an existing stored image's attachments only (signatures): `name` may be an ID or digest, and
 * nothing but extra tags and referrers may be written. Throws when the image has no single repository to put them in.
 */
export async function openStoreAttachmentDestination(name: string, opts: OpenOptions = {}): Promise<ImageDestination> {
  const store = await Store.open(opts.storeRoot);
  const top = await store.resolve(name);
  const repo = await attachmentRepository(store, name, top);
  if (repo === undefined) {
    throw new HoistError('BAD_REFERENCE', `"${name}" in the local store has no single repository name to keep signatures under; name the image (hoist tag ${name} NAME:TAG) and use that name`, { exitCode: 2 });
  }
  const lease = await store.layout.lease();
  return new LayoutDestination(displayName(name), store.layout, { unnamed: true }, lease, undefined, repositoryNaming(repo));
}

export async function openStoreDestination(name: string, opts: OpenOptions = {}): Promise<ImageDestination> {
  if (isIdLike(name)) {
    throw new HoistError('BAD_REFERENCE', `"${name}" is an image ID or digest; to store an image give it a name, as in busybox:1.0`, { exitCode: 2 });
  }
  const parsed = parseDockerReference(name, { defaultTag: true });
  if (parsed.digest !== undefined) {
    throw new HoistError('BAD_REFERENCE', `"${name}" includes a digest; name the stored image by name:tag (its digest is fixed by its content)`, { exitCode: 2 });
  }
  const normalized = formatReference(parsed);
  const store = await Store.open(opts.storeRoot);
  const lease = await store.layout.lease();
  return new LayoutDestination(normalized, store.layout, { ref: normalized, mode: 'replace' }, lease, undefined, repositoryNaming(repository(parsed)));
}
