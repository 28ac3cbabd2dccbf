/**
 * Builds a small OCI image layout from scratch for tests, without network and without hoist's own writers
 * (so a bug in the store cannot hide a bug in a reader): real tar layers made with tar-stream, gzip, a config,
 * a manifest, blobs under blobs/sha256, and index.json with an optional ref name.
 *
 *   const img = await makeImage(dir, { layers: [{ files: { 'etc/hello': 'hi\n' } }], ref: 'v1' });
 *
 * Deterministic: fixed mtimes and gzip without a timestamp, so the same input always gives the same digests.
 * Calling it again on the same dir adds another image (a ref name already in use moves to the new one).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack as tarPack, type Pack } from 'tar-stream';
import { digestBytes } from '../../src/oci/digest.ts';
import { OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import type { Descriptor, ImageIndex, Platform } from '../../src/oci/types.ts';

/** File content, or a symlink / hardlink / directory entry. */
export type FileSpec = string | Buffer | { symlink: string } | { hardlink: string } | { dir: true };

export interface LayerSpec {
  /** Path inside the layer → content. Parent directories get entries of their own. */
  files: Record<string, FileSpec>;
  /** Default gzip (what registries serve); 'none' stores the tar as is. */
  compression?: 'gzip' | 'none';
}

export interface MakeImageOptions {
  layers: LayerSpec[];
  /** org.opencontainers.image.ref.name in index.json; omitted: the manifest is listed without a name. */
  ref?: string;
  platform?: Platform;
  /** Merged into the config's `config` (Env, Cmd, Labels, …). */
  config?: Record<string, unknown>;
  /** Seconds since the epoch for every mtime and `created`. */
  epoch?: number;
  /** How the config is serialized (default JSON.stringify): lets a test store pretty-printed or oddly escaped JSON. */
  formatConfig?: (config: Record<string, unknown>) => string;
}

export interface MadeLayer {
  digest: string;
  size: number;
  mediaType: string;
  /** Digest of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string;
  /** Uncompressed size. */
  diffSize: number;
  /** The uncompressed tar itself (tests are small). */
  tar: Buffer;
}

export interface MadeImage {
  /** Descriptor of the manifest, as listed in index.json (without annotations). */
  manifest: Descriptor;
  manifestBytes: Buffer;
  config: Descriptor;
  configBytes: Buffer;
  layers: MadeLayer[];
}

function collect(pack: Pack): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    pack.on('data', (c: unknown) => { chunks.push(c as Buffer); });
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
}

/** One layer as an uncompressed tar, entries sorted, directories first. */
export async function makeLayerTar(files: Record<string, FileSpec>, epoch = 0): Promise<Buffer> {
  const mtime = new Date(epoch * 1000);
  const pack = tarPack();
  const dirs = new Set<string>();
  for (const name of Object.keys(files)) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const base = { mtime, uid: 0, gid: 0 };
  const entries: [string, FileSpec | null][] = [...[...dirs].map((d): [string, null] => [d, null]), ...Object.entries(files)];
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const done = collect(pack);
  for (const [name, spec] of entries) {
    if (spec === null || (typeof spec === 'object' && 'dir' in spec)) {
      pack.entry({ ...base, name: `${name}/`, type: 'directory', mode: 0o755 });
    } else if (typeof spec === 'string' || Buffer.isBuffer(spec)) {
      pack.entry({ ...base, name, mode: 0o644 }, spec);
    } else if ('symlink' in spec) {
      pack.entry({ ...base, name, type: 'symlink', linkname: spec.symlink, mode: 0o777 });
    } else {
      pack.entry({ ...base, name, type: 'link', linkname: spec.hardlink, mode: 0o644 });
    }
  }
  pack.finalize();
  return done;
}

async function putBlob(dir: string, bytes: Buffer): Promise<string> {
  const digest = digestBytes(bytes);
  const blobDir = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  await writeFile(path.join(blobDir, digest.slice('sha256:'.length)), bytes);
  return digest;
}

/** Writes one image into the OCI layout at `dir` (created when missing) and returns every digest involved. */
export async function makeImage(dir: string, opts: MakeImageOptions): Promise<MadeImage> {
  const epoch = opts.epoch ?? 0;
  const created = new Date(epoch * 1000).toISOString().replace('.000Z', 'Z');
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');

  const layers: MadeLayer[] = [];
  for (const spec of opts.layers) {
    const tar = await makeLayerTar(spec.files, epoch);
    const gzip = (spec.compression ?? 'gzip') === 'gzip';
    const blob = gzip ? gzipSync(tar, { level: 6 }) : tar;
    const digest = await putBlob(dir, blob);
    layers.push({ digest, size: blob.length, mediaType: gzip ? OCI_LAYER_GZIP : OCI_LAYER, diffId: digestBytes(tar), diffSize: tar.length, tar });
  }

  const configDoc: Record<string, unknown> = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...opts.config },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created, created_by: `test/helpers/make-image.ts layer ${i}` })),
  };
  const configBytes = Buffer.from((opts.formatConfig ?? JSON.stringify)(configDoc));
  const config: Descriptor = { mediaType: OCI_CONFIG, digest: await putBlob(dir, configBytes), size: configBytes.length };

  const manifestBytes = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  }));
  const manifest: Descriptor = { mediaType: OCI_MANIFEST, digest: await putBlob(dir, manifestBytes), size: manifestBytes.length };

  const indexPath = path.join(dir, 'index.json');
  let index: ImageIndex = { schemaVersion: 2, manifests: [] };
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8')) as ImageIndex;
  } catch {
    // a new layout
  }
  const REF = 'org.opencontainers.image.ref.name';
  if (opts.ref !== undefined) index.manifests = index.manifests.filter((d) => d.annotations?.[REF] !== opts.ref);
  index.manifests.push(opts.ref === undefined ? { ...manifest } : { ...manifest, annotations: { [REF]: opts.ref } });
  await writeFile(indexPath, JSON.stringify(index));

  return { manifest, manifestBytes, config, configBytes, layers };
}
