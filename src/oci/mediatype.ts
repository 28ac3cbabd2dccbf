/**
 * Media types hoist reads and writes, and how to classify them.
 * OCI image-spec 1.1 and Docker image manifest v2 schema 2.
 */

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const OCI_LAYER_ND = 'application/vnd.oci.image.layer.nondistributable.v1.tar';
export const OCI_LAYER_ND_GZIP = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
export const OCI_LAYER_ND_ZSTD = 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd';

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const DOCKER_LAYER_FOREIGN_GZIP = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
export const DOCKER_LAYER_ZSTD = 'application/vnd.docker.image.rootfs.diff.tar.zstd';

/** Schema 1 manifests: recognised only to reject them with a clear message. */
export const DOCKER_SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+json';
export const DOCKER_SCHEMA1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

/** Every manifest type hoist handles, for registry Accept headers (most preferred first). */
export const MANIFEST_TYPES: readonly string[] = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST];

export function isIndex(mt: string | undefined): boolean {
  return mt === OCI_INDEX || mt === DOCKER_MANIFEST_LIST;
}

export function isImageManifest(mt: string | undefined): boolean {
  return mt === OCI_MANIFEST || mt === DOCKER_MANIFEST;
}

export function isManifest(mt: string | undefined): boolean {
  return isIndex(mt) || isImageManifest(mt);
}

export function isSchema1(mt: string | undefined): boolean {
  return mt === DOCKER_SCHEMA1 || mt === DOCKER_SCHEMA1_SIGNED || mt === 'application/json';
}

export type Compression = 'none' | 'gzip' | 'zstd';

/** The compression a layer media type declares; undefined when the type is not a known layer type. */
export function layerCompression(mt: string): Compression | undefined {
  switch (mt) {
    case OCI_LAYER: case OCI_LAYER_ND: case DOCKER_LAYER:
      return 'none';
    case OCI_LAYER_GZIP: case OCI_LAYER_ND_GZIP: case DOCKER_LAYER_GZIP: case DOCKER_LAYER_FOREIGN_GZIP:
      return 'gzip';
    case OCI_LAYER_ZSTD: case OCI_LAYER_ND_ZSTD: case DOCKER_LAYER_ZSTD:
      return 'zstd';
    default:
      return undefined;
  }
}

export function isLayer(mt: string): boolean {
  return layerCompression(mt) !== undefined;
}

/** Non-distributable ("foreign") layers: registries may refuse them; copies may skip them. */
export function isNonDistributable(mt: string): boolean {
  return mt === OCI_LAYER_ND || mt === OCI_LAYER_ND_GZIP || mt === OCI_LAYER_ND_ZSTD || mt === DOCKER_LAYER_FOREIGN_GZIP;
}
