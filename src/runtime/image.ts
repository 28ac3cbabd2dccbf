/**
 * The image a container runs, as the runtime needs it: the config and the layers (blob + diffID), for this
 * machine's platform when the stored image is an index. Also what a build's FROM loads (src/build/base-image.ts).
 * Errors exit 1; `hoist run` turns them into 125.
 */
import { HoistError } from '../errors.ts';
import { parseConfig } from '../oci/config.ts';
import { parseManifest } from '../oci/manifest.ts';
import { bestPlatformMatch, formatPlatform, hostPlatform } from '../oci/platform.ts';
import type { Descriptor, ImageConfig, Platform } from '../oci/types.ts';
import type { Store } from '../store/store.ts';
import type { LayerRef } from './request.ts';

export interface RunImage {
  /** The image manifest's digest (of the platform's manifest when the name points at an index). */
  digest: string;
  config: ImageConfig;
  /** Bottom first; with the blob's media type (builds keep it in the manifests they write). */
  layers: Array<LayerRef & { mediaType: string }>;
}

export async function loadRunImage(store: Store, top: Descriptor, where: string, platform: Platform = hostPlatform()): Promise<RunImage> {
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
  const layers = m.layers.map((l, i) => ({ diffID: diffIDs[i]!, digest: l.digest, size: l.size, mediaType: l.mediaType }));
  return { digest: desc.digest, config, layers };
}
