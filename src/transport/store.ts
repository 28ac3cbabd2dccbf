/**
 * The local store as a transport: bare names (`busybox`, `localhost:5000/a:1`), digests and image-ID prefixes.
 * The store is an OCI layout whose entries are named by normalized docker references, so reading and writing are
 * the oci: transport's, with the store's naming: `busybox` means `docker.io/library/busybox:latest`, and writing a
 * name replaces whatever image had it (the old one is untagged, as with podman).
 */
import { isDigest } from '../oci/digest.ts';
import { HoistError } from '../errors.ts';
import { formatReference, parseDockerReference } from '../oci/reference.ts';
import { Store } from '../store/store.ts';
import { LayoutDestination, LayoutSource } from './oci-layout.ts';
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

export async function openStoreSource(name: string, opts: OpenOptions = {}): Promise<ImageSource> {
  const store = await Store.open(opts.storeRoot);
  const top = await store.resolve(name);
  return new LayoutSource(displayName(name), store.layout, top);
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
  return new LayoutDestination(normalized, store.layout, { ref: normalized, mode: 'replace' }, lease);
}
