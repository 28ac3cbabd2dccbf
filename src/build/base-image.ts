/**
 * Images a build reads (FROM, COPY --from=image, RUN --mount from=image): found in the local store, or pulled into
 * it through the copy engine (registry flags and --pull honoured), then loaded for the platform being built.
 */
import { HoistError, isHoistError } from '../errors.ts';
import { parseConfig } from '../oci/config.ts';
import { parseManifest } from '../oci/manifest.ts';
import { bestPlatformMatch, formatPlatform } from '../oci/platform.ts';
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
    if (o.admit) {
      const m = await src.getManifest();
      await o.admit(full, 'docker', m.digest);
    }
    const dst = await openDestination({ transport: 'store', name: full }, { storeRoot: store.root, platform });
    await copyImage(src, dst, { platforms: [platform] });
  } finally {
    await src.close();
  }
  return store.resolve(full);
}

export async function loadImage(store: Store, top: Descriptor, where: string, platform: Platform): Promise<BaseImage> {
  let desc = top;
  let parsed = parseManifest(await store.layout.readBlob(desc.digest, desc.size), where, desc.mediaType);
  if (parsed.kind === 'index') {
    const pick = bestPlatformMatch(platform, parsed.index.manifests);
    if (!pick) {
      const have = parsed.index.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '?')).join(', ');
      throw new HoistError('NO_PLATFORM', `${where}: no image for ${formatPlatform(platform)} in the index (it has ${have}); pass --platform`);
    }
    desc = pick;
    parsed = parseManifest(await store.layout.readBlob(desc.digest, desc.size), where, desc.mediaType);
    if (parsed.kind !== 'image') throw new HoistError('BAD_MANIFEST', `${where}: nested index for ${formatPlatform(platform)}; not supported`);
  }
  const m = parsed.manifest;
  const config = parseConfig(await store.layout.readBlob(m.config.digest, m.config.size), `${where} config`);
  const diffIDs = config.rootfs.diff_ids;
  if (diffIDs.length !== m.layers.length) {
    throw new HoistError('BAD_IMAGE', `${where}: the config lists ${diffIDs.length} layers and the manifest ${m.layers.length}; the image is damaged, pull it again`);
  }
  const layers = m.layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: diffIDs[i]! }));
  return { digest: desc.digest, config, layers };
}
