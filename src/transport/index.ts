/**
 * Opens the ImageSource / ImageDestination for a reference. Each transport module is imported only when used,
 * so `hoist inspect oci:…` never loads tar or registry code.
 */
import { parseImageReference, type ImageRef } from './reference.ts';
import type { ImageDestination, ImageSource, OpenOptions } from './types.ts';

function resolveRef(ref: ImageRef | string): ImageRef {
  return typeof ref === 'string' ? parseImageReference(ref) : ref;
}

export async function openSource(ref: ImageRef | string, opts: OpenOptions = {}): Promise<ImageSource> {
  const r = resolveRef(ref);
  switch (r.transport) {
    case 'docker':
      return (await import('./docker.ts')).openDockerSource(r.ref, opts.registry);
    case 'oci':
      return (await import('./oci-layout.ts')).openOciLayoutSource(r.dir, r.ref);
    case 'oci-archive':
      return (await import('./oci-archive.ts')).openOciArchiveSource(r.file, r.ref);
    case 'docker-archive':
      return (await import('./docker-archive.ts')).openDockerArchiveSource(r.file, r.ref);
    case 'store':
      return (await import('./store.ts')).openStoreSource(r.name, opts);
  }
}

export async function openDestination(ref: ImageRef | string, opts: OpenOptions = {}): Promise<ImageDestination> {
  const r = resolveRef(ref);
  switch (r.transport) {
    case 'docker':
      return (await import('./docker.ts')).openDockerDestination(r.ref, opts.registry);
    case 'oci':
      return (await import('./oci-layout.ts')).openOciLayoutDestination(r.dir, r.ref);
    case 'oci-archive':
      return (await import('./oci-archive.ts')).openOciArchiveDestination(r.file, r.ref);
    case 'docker-archive':
      return (await import('./docker-archive.ts')).openDockerArchiveDestination(r.file, r.ref);
    case 'store':
      return (await import('./store.ts')).openStoreDestination(r.name, opts);
  }
}
