/**
 * Layer recompression for `copy --dest-compress-format gzip|zstd [--dest-compress-level N]`.
 *
 * The new digest is known only after the last byte, and a registry upload (monolithic PUT) or a layout write wants it
 * up front, so the recompressed bytes go to a temp file while they are hashed; the file then streams to the
 * destination and is removed. The uncompressed content (the config's diffID) does not change, so the config is kept.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Digester } from '../oci/digest.ts';
import { autoDecompress, compressStream } from '../layer/compression.ts';
import {
  DOCKER_LAYER_GZIP, DOCKER_LAYER_ZSTD, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, isLayer, isNonDistributable, layerCompression,
} from '../oci/mediatype.ts';
import type { Descriptor } from '../oci/types.ts';

export type CompressFormat = 'gzip' | 'zstd';

/** True when this layer is to be rewritten (non-distributable layers are left alone: their bytes live elsewhere). */
export function needsRecompression(desc: Descriptor, to: CompressFormat): boolean {
  return isLayer(desc.mediaType) && !isNonDistributable(desc.mediaType) && layerCompression(desc.mediaType) !== to;
}

/** The layer media type for `to` in the manifest's own family (OCI or Docker). */
export function recompressedMediaType(mediaType: string, to: CompressFormat): string {
  const docker = mediaType.startsWith('application/vnd.docker.');
  if (to === 'gzip') return docker ? DOCKER_LAYER_GZIP : OCI_LAYER_GZIP;
  return docker ? DOCKER_LAYER_ZSTD : OCI_LAYER_ZSTD;
}

export interface Recompressed {
  desc: Descriptor;
  /** Opens the recompressed bytes (from the temp file). */
  open(): Readable;
  dispose(): Promise<void>;
}

/** `source` is the verified stream of the original layer. */
export async function recompress(source: Readable, desc: Descriptor, to: CompressFormat, level?: number): Promise<Recompressed> {
  const dir = await mkdtemp(path.join(tmpdir(), 'hoist-recompress-'));
  const file = path.join(dir, 'layer');
  const d = new Digester('sha256');
  const hash = new Transform({
    transform(chunk: Buffer, _e, cb) { d.update(chunk); cb(null, chunk); },
  });
  try {
    await pipeline(source, autoDecompress(`layer ${desc.digest}`), compressStream(to, level), hash, createWriteStream(file));
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const out: Descriptor = { ...desc, mediaType: recompressedMediaType(desc.mediaType, to), digest: d.digest(), size: d.size };
  return {
    desc: out,
    open: () => createReadStream(file),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}
