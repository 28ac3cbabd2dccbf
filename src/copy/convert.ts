/**
 * Manifest format conversion between OCI and Docker v2 schema 2, as `copy -f oci|v2s2` and the `oci:` destinations
 * (which skopeo 1.9 and umoci read only in OCI form) need it.
 *
 * Only media types change: config and layer blobs are the same bytes with the same digests (unlike containers/image,
 * which re-marshals the config and so changes the image ID; keeping it means nothing Docker-specific such as
 * Healthcheck is lost and `inspect --config` shows the same document on both sides).
 * A conversion that would lose information (artifacts, subject, annotations, zstd layers in v2s2) is refused with a
 * message instead of silently dropping it.
 */
import { HoistError } from '../errors.ts';
import {
  DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_FOREIGN_GZIP, DOCKER_LAYER_GZIP, DOCKER_LAYER_ZSTD, DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ND_GZIP, OCI_LAYER_ZSTD, OCI_MANIFEST,
} from '../oci/mediatype.ts';
import type { Descriptor } from '../oci/types.ts';

export type ManifestFormat = 'oci' | 'docker';

export function formatOfMediaType(mt: string): ManifestFormat | undefined {
  if (mt === OCI_MANIFEST || mt === OCI_INDEX) return 'oci';
  if (mt === DOCKER_MANIFEST || mt === DOCKER_MANIFEST_LIST) return 'docker';
  return undefined;
}

/** `-f` values as skopeo spells them. */
export function parseFormatFlag(s: string): ManifestFormat {
  if (s === 'oci') return 'oci';
  if (s === 'v2s2' || s === 'docker') return 'docker';
  throw new HoistError('BAD_FLAG', `--format: unknown manifest format "${s}"; use oci or v2s2`, { exitCode: 2 });
}

const LAYER_TO_OCI: Record<string, string> = {
  [DOCKER_LAYER]: OCI_LAYER,
  [DOCKER_LAYER_GZIP]: OCI_LAYER_GZIP,
  [DOCKER_LAYER_ZSTD]: OCI_LAYER_ZSTD,
  [DOCKER_LAYER_FOREIGN_GZIP]: OCI_LAYER_ND_GZIP,
};
const LAYER_TO_DOCKER: Record<string, string> = {
  [OCI_LAYER]: DOCKER_LAYER,
  [OCI_LAYER_GZIP]: DOCKER_LAYER_GZIP,
  [OCI_LAYER_ND_GZIP]: DOCKER_LAYER_FOREIGN_GZIP,
};

type Json = Record<string, unknown>;

/** Image manifest bytes in the other format. `raw` is the parsed source JSON (so unmodelled fields are seen). */
export function convertImageManifest(raw: Json, to: ManifestFormat, where: string): Buffer {
  const config = raw['config'] as Descriptor;
  const layers = raw['layers'] as Descriptor[];
  if (to === 'oci') {
    if (config.mediaType !== DOCKER_CONFIG && config.mediaType !== OCI_CONFIG) refuse(where, 'oci', `config media type ${config.mediaType}`);
    const out: Json = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor(config, OCI_CONFIG),
      layers: layers.map((l, i) => descriptor(l, LAYER_TO_OCI[l.mediaType] ?? (isOciLayer(l.mediaType) ? l.mediaType : refuse(where, 'oci', `layers[${i}] media type ${l.mediaType}`)))),
    };
    return Buffer.from(JSON.stringify(out));
  }
  for (const k of ['subject', 'artifactType', 'annotations'] as const) {
    if (raw[k] !== undefined) refuse(where, 'v2s2', `the manifest has ${k}, which v2s2 cannot carry`);
  }
  if (config.mediaType !== OCI_CONFIG && config.mediaType !== DOCKER_CONFIG) refuse(where, 'v2s2', `config media type ${config.mediaType} (an artifact, not an image)`);
  const out: Json = {
    schemaVersion: 2,
    mediaType: DOCKER_MANIFEST,
    config: descriptor(config, DOCKER_CONFIG, false),
    layers: layers.map((l, i) => {
      if (l.annotations) refuse(where, 'v2s2', `layers[${i}] has annotations`);
      const mt = LAYER_TO_DOCKER[l.mediaType] ?? (l.mediaType.startsWith('application/vnd.docker.') && l.mediaType !== DOCKER_LAYER_ZSTD ? l.mediaType : undefined);
      return descriptor(l, mt ?? refuse(where, 'v2s2', `layers[${i}] media type ${l.mediaType} (v2s2 has no zstd; use --dest-compress-format gzip)`), false);
    }),
  };
  return Buffer.from(JSON.stringify(out));
}

/** Index bytes in the other format, with each child descriptor replaced by its converted manifest's. */
export function convertIndex(raw: Json, to: ManifestFormat, children: Map<string, Descriptor>, where: string): Buffer {
  const manifests = (raw['manifests'] as Descriptor[]).map((d) => {
    const c = children.get(d.digest);
    return c ? { ...d, mediaType: c.mediaType, digest: c.digest, size: c.size } : d;
  });
  if (to === 'oci') {
    const out: Json = { schemaVersion: 2, mediaType: OCI_INDEX, manifests };
    if (raw['annotations']) out['annotations'] = raw['annotations'];
    return Buffer.from(JSON.stringify(out));
  }
  for (const k of ['subject', 'artifactType', 'annotations'] as const) {
    if (raw[k] !== undefined) refuse(where, 'v2s2', `the index has ${k}, which a Docker manifest list cannot carry`);
  }
  const list = manifests.map((d, i) => {
    if (formatOfMediaType(d.mediaType) !== 'docker') refuse(where, 'v2s2', `manifests[${i}] is ${d.mediaType}`);
    const { annotations: _a, artifactType: _t, ...rest } = d;
    return rest;
  });
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: list }));
}

/** A descriptor with a new media type; field order as Go marshals OCI descriptors (mediaType, digest, size, …). */
function descriptor(d: Descriptor, mediaType: string, keepOciFields = true): Json {
  const out: Json = { mediaType, digest: d.digest, size: d.size };
  if (d.urls) out['urls'] = d.urls;
  if (keepOciFields && d.annotations) out['annotations'] = d.annotations;
  return out;
}

function isOciLayer(mt: string): boolean {
  return mt.startsWith('application/vnd.oci.image.layer.');
}

function refuse(where: string, to: string, why: string): never {
  throw new HoistError('CANNOT_CONVERT', `${where}: cannot convert to ${to}: ${why}; copy without --format (or with --preserve-digests) to keep it as it is`);
}
