/**
 * Images a build reads (FROM, COPY --from=image, RUN --mount from=image): found in the local store, or pulled into
 * it through the copy engine (registry flags and --pull honoured), then loaded for the platform being built.
 */
import { HoistError, isHoistError } from '../errors.ts';
import type { Descriptor, ImageConfig, Platform } from '../oci/types.ts';
import type { Store } from '../store/store.ts';
import type { RegistryAccess } from '../transport/types.ts';
import type { BuiltLayer } from './state.ts';

export interface BaseImage {
  /** The platform manifest's digest: part of every cache key built on it. */
  digest: string;
  config: ImageConfig;
  layers: BuiltLayer[];
}

export interface PullOptions {
  pull: 'missing' | 'always' | 'never';
  registry?: RegistryAccess;
  /** Called before a pull (progress). */
  onPull?: (name: string) => void;
  /** Checks an image before it is used (signature policy); throws to refuse. */
  admit?: (name: string, transport: 'docker' | 'store', digest: string) => Promise<void>;
}

export async function resolveImage(store: Store, name: string, platform: Platform, o: PullOptions): Promise<BaseImage> {
  let top: Descriptor | undefined;
  if (o.pull !== 'always') {
    try {
      top = await store.resolve(name);
    } catch (e) {
      if (!isHoistError(e) || e.code !== 'NOT_FOUND') throw e;
      if (o.pull === 'never') throw new HoistError('NOT_FOUND', `FROM ${name}: not in the local store and --pull=never was given; pull it with: hoist copy docker://${name} ${name}`);
    }
  }
  if (top === undefined) top = await pull(store, name, platform, o);
  else await o.admit?.(name, 'store', top.digest);
  return loadImage(store, top, name, platform);
}

async function pull(store: Store, name: string, platform: Platform, o: PullOptions): Promise<Descriptor> {
  const { normalizeStoreName } = await import('../transport/store.ts');
  let full: string;
  try {
    full = normalizeStoreName(name);
  } catch {
    throw new HoistError('BAD_REFERENCE', `FROM ${name}: not an image name (and no earlier stage has that name)`);
  }
  const { openSource, openDestination } = await import('../transport/index.ts');
  const { copyImage } = await import('../copy/engine.ts');
  o.onPull?.(full);
  const src = await openSource({ transport: 'docker', ref: full }, o.registry ? { registry: o.registry } : {});
  try {
    let from = src;
    if (o.admit) {
      const m = await src.getManifest();
      await o.admit(full, 'docker', m.digest);
      // What is stored is the manifest the policy judged, even if the tag moves in between.
      const { pinTopManifest } = await import('../sign/policy-check.ts');
      from = pinTopManifest(src, m);
    }
    const dst = await openDestination({ transport: 'store', name: full }, { storeRoot: store.root, platform });
    await copyImage(from, dst, { platforms: [platform] });
  } finally {
    await src.close();
  }
  const top = await store.resolve(full);
  // Unpacked as podman's pull does, so the first RUN on it starts at once. Best effort and silent: a RUN step that
  // can't unpack reports that itself, and a build without RUN steps has nothing to say about it.
  const { unpackStoredImage } = await import('../runtime/unpack-image.ts');
  await unpackStoredImage(store, top, full, { platform });
  return top;
}

export async function loadImage(store: Store, top: Descriptor, where: string, platform: Platform): Promise<BaseImage> {
  const { loadRunImage } = await import('../runtime/image.ts');
  return loadRunImage(store, top, where, platform);
}
