/**
 * The built image into the store: config and manifest (OCI, or Docker v2s2 with --format docker), named by every
 * -t; then the outputs (-o type=local|oci|docker-archive|registry, --push) through the copy engine.
 */
import { HoistError } from '../errors.ts';
import {
  DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_LAYER_ZSTD, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP,
  OCI_LAYER_ZSTD, OCI_MANIFEST,
} from '../oci/mediatype.ts';
import type { Descriptor, ImageConfig } from '../oci/types.ts';
import type { Store } from '../store/store.ts';
import type { RegistryAccess } from '../transport/types.ts';
import { containerConfig, orderedConfig, type BuiltLayer } from './state.ts';

export interface WriteImageOptions {
  format: 'oci' | 'docker';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** The config's `created`. */
  created: string;
  tags: string[];
  warn: (m: string) => void;
}

export interface WrittenImage {
  digest: string;
  configDigest: string;
  descriptor: Descriptor;
  /** The normalized names given. */
  names: string[];
}

const TO_DOCKER: Record<string, string> = { [OCI_LAYER_GZIP]: DOCKER_LAYER_GZIP, [OCI_LAYER]: DOCKER_LAYER, [OCI_LAYER_ZSTD]: DOCKER_LAYER_ZSTD };
const TO_OCI: Record<string, string> = { [DOCKER_LAYER_GZIP]: OCI_LAYER_GZIP, [DOCKER_LAYER]: OCI_LAYER, [DOCKER_LAYER_ZSTD]: OCI_LAYER_ZSTD };

export async function writeImage(store: Store, layers: BuiltLayer[], config: ImageConfig, o: WriteImageOptions): Promise<WrittenImage> {
  const { normalizeStoreName } = await import('../transport/store.ts');
  const names = o.tags.map((t) => {
    try {
      return normalizeStoreName(t);
    } catch (e) {
      throw new HoistError('BAD_REFERENCE', `-t ${t}: ${(e as Error).message}`, { exitCode: 2 });
    }
  });
  const c = structuredClone(config);
  if (Object.keys(o.labels).length) containerConfig(c).Labels = { ...(containerConfig(c).Labels ?? {}), ...o.labels };
  c.created = o.created;
  const configBytes = Buffer.from(JSON.stringify(orderedConfig(c)));
  const docker = o.format === 'docker';
  if (docker && layers.some((l) => l.mediaType === OCI_LAYER_ZSTD || l.mediaType === DOCKER_LAYER_ZSTD)) {
    throw new HoistError('BAD_FLAG', '--format docker cannot carry zstd layers (Docker v2s2 has no zstd type); build with --format oci or without --compress zstd');
  }
  if (docker && Object.keys(o.annotations).length) o.warn('--annotation is ignored with --format docker (Docker manifests have no annotations)');
  const lease = await store.layout.lease();
  try {
    const configDigest = await lease.putBlobBytes(configBytes);
    const manifest: Record<string, unknown> = {
      schemaVersion: 2,
      mediaType: docker ? DOCKER_MANIFEST : OCI_MANIFEST,
      config: { mediaType: docker ? DOCKER_CONFIG : OCI_CONFIG, digest: configDigest, size: configBytes.length },
      layers: layers.map((l) => ({ mediaType: (docker ? TO_DOCKER : TO_OCI)[l.mediaType] ?? l.mediaType, digest: l.digest, size: l.size })),
    };
    if (!docker && Object.keys(o.annotations).length) manifest['annotations'] = { ...o.annotations };
    const bytes = Buffer.from(JSON.stringify(manifest));
    const digest = await lease.putBlobBytes(bytes);
    const descriptor: Descriptor = { mediaType: manifest['mediaType'] as string, digest, size: bytes.length };
    if (names.length === 0) await store.layout.addUnnamed(descriptor);
    for (const n of names) await store.layout.setRef(n, descriptor);
    return { digest, configDigest, descriptor, names };
  } finally {
    await lease.release().catch(() => {});
  }
}

export type Output =
  | { type: 'local'; dest: string }
  | { type: 'oci'; dest: string }
  | { type: 'docker-archive'; dest: string }
  | { type: 'registry' };

/** docker build's -o: `type=local,dest=DIR`, `type=oci,dest=FILE`, `type=docker,dest=FILE`, `type=registry`, or a bare DIR. */
export function parseOutput(spec: string): Output {
  if (!spec.includes('=')) return { type: 'local', dest: spec };
  const kv = new Map<string, string>();
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    kv.set(eq < 0 ? part : part.slice(0, eq), eq < 0 ? '' : part.slice(eq + 1));
  }
  const type = kv.get('type') ?? 'local';
  const dest = kv.get('dest');
  if (type === 'registry' || type === 'image') return { type: 'registry' };
  if (type !== 'local' && type !== 'oci' && type !== 'docker' && type !== 'docker-archive' && type !== 'tar') {
    throw new HoistError('BAD_FLAG', `-o ${spec}: unknown type "${type}"; use local, oci, docker-archive or registry`, { exitCode: 2 });
  }
  if (!dest) throw new HoistError('BAD_FLAG', `-o ${spec}: needs dest=PATH`, { exitCode: 2 });
  if (type === 'tar') throw new HoistError('BAD_FLAG', `-o ${spec}: type=tar is not supported; use type=local,dest=DIR and tar it, or type=oci`, { exitCode: 2 });
  return { type: type === 'docker' ? 'docker-archive' : type, dest };
}

export async function exportImage(store: Store, image: WrittenImage, layers: BuiltLayer[], out: Output, registry: RegistryAccess | undefined, tmpDir: string): Promise<void> {
  if (out.type === 'local') {
    const { LayerTree } = await import('./layer-tree.ts');
    const { materialize } = await import('./materialize.ts');
    const path = await import('node:path');
    const tree = await LayerTree.open(store.layout, layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })), layers.map((l) => l.diffID),
      { tmpDir, indexCacheDir: path.join(store.root, 'build-cache', 'layer-index') });
    for (const m of await tree.match('.')) await materialize(m.entries, m.rel, path.resolve(out.dest));
    return;
  }
  const { openSource, openDestination } = await import('../transport/index.ts');
  const { copyImage } = await import('../copy/engine.ts');
  const targets: string[] = [];
  if (out.type === 'registry') {
    if (image.names.length === 0) throw new HoistError('BAD_FLAG', '--push / -o type=registry needs a name: add -t REGISTRY/REPO:TAG', { exitCode: 2 });
    targets.push(...image.names.map((n) => `docker://${n}`));
  } else if (out.type === 'oci') {
    targets.push(`oci-archive:${out.dest}${image.names[0] ? `:${image.names[0].slice(image.names[0].lastIndexOf(':') + 1)}` : ''}`);
  } else {
    targets.push(`docker-archive:${out.dest}${image.names[0] ? `:${image.names[0]}` : ''}`);
  }
  for (const t of targets) {
    const src = await openSource({ transport: 'store', name: image.digest }, { storeRoot: store.root });
    try {
      const dst = await openDestination(t, { storeRoot: store.root, ...(registry ? { registry } : {}) });
      await copyImage(src, dst, {});
    } finally {
      await src.close();
    }
  }
}
