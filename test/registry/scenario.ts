/**
 * Shared pieces of the registry tests: random blob files, stream digests, and a small image pushed the way a
 * copy would (blobs first, then the manifest).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { digestBytes } from '../../src/oci/digest.ts';
import { DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import type { Descriptor, ManifestBlob } from '../../src/oci/types.ts';
import type { RegistryClient } from '../../src/registry/client.ts';

export interface BlobFile {
  path: string;
  desc: Descriptor;
}

/** A file of `size` random bytes and its descriptor. */
export async function randomBlobFile(dir: string, name: string, size: number, mediaType = OCI_LAYER_GZIP): Promise<BlobFile> {
  const data = randomBytes(size);
  const file = path.join(dir, name);
  await writeFile(file, data);
  return { path: file, desc: { mediaType, digest: digestBytes(data), size } };
}

export function fileStream(b: BlobFile): Readable {
  return createReadStream(b.path, { highWaterMark: 256 * 1024 });
}

/** sha256 and length of everything a stream yields (it must end without error). */
export async function drain(s: Readable): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of s) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

export function manifestBlob(json: object, mediaType: string): ManifestBlob {
  const bytes = Buffer.from(JSON.stringify(json));
  return { bytes, mediaType, digest: digestBytes(bytes) };
}

/** Pushes config + one small layer + manifest; OCI or Docker schema 2 types. */
export async function pushSmallImage(
  c: RegistryClient,
  repo: string,
  tag: string,
  kind: 'oci' | 'docker' = 'oci',
  extra: Record<string, unknown> = {},
): Promise<{ manifest: ManifestBlob; config: Descriptor; layer: Descriptor }> {
  const configBytes = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, tag, nonce: randomBytes(8).toString('hex') }));
  const layerBytes = randomBytes(1000);
  const config: Descriptor = { mediaType: kind === 'oci' ? OCI_CONFIG : DOCKER_CONFIG, digest: digestBytes(configBytes), size: configBytes.length };
  const layer: Descriptor = { mediaType: kind === 'oci' ? OCI_LAYER_GZIP : DOCKER_LAYER_GZIP, digest: digestBytes(layerBytes), size: layerBytes.length };
  await c.putBlob(repo, config, Readable.from([configBytes]));
  await c.putBlob(repo, layer, Readable.from([layerBytes]));
  const mt = kind === 'oci' ? OCI_MANIFEST : DOCKER_MANIFEST;
  const manifest = manifestBlob({ schemaVersion: 2, mediaType: mt, config, layers: [layer], ...extra }, mt);
  await c.putManifest(repo, tag, manifest);
  return { manifest, config, layer };
}

/**
 * What every registry setup must do: a multi-MiB blob pushed monolithic and chunked and pulled back verified,
 * a manifest put and read back, tags listed.
 */
export async function roundTrip(c: RegistryClient, repo: string, blob: BlobFile): Promise<void> {
  await c.putBlob(repo, blob.desc, fileStream(blob), { chunked: false });
  assert.deepEqual(await drain(await c.getBlob(repo, blob.desc)), { digest: blob.desc.digest, size: blob.desc.size });
  await c.putBlob(`${repo}-chunked`, blob.desc, fileStream(blob), { chunked: true, chunkSize: 2 * 1024 * 1024 });
  assert.deepEqual(await drain(await c.getBlob(`${repo}-chunked`, blob.desc)), { digest: blob.desc.digest, size: blob.desc.size });
  const { manifest } = await pushSmallImage(c, repo, 'v1');
  assert.deepEqual(await c.getManifest(repo, 'v1'), manifest);
  assert.deepEqual(await c.listTags(repo), ['v1']);
}
