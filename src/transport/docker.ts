/**
 * docker://HOST/REPO[:TAG|@DIGEST] — a repository in a registry, through src/registry's client.
 *
 * Registry → registry copies stream each blob from the GET into the upload (the engine pipes one into the other;
 * nothing touches disk). Clients are shared per host and access options within the process, so a copy inside one
 * registry reuses connections and tokens, and can mount blobs instead of transferring them.
 */
import type { Readable } from 'node:stream';
import { HoistError } from '../errors.ts';
import { digestBytes, digestToTag } from '../oci/digest.ts';
import { OCI_INDEX } from '../oci/mediatype.ts';
import { formatReference, parseDockerReference, repository, type DockerReference } from '../oci/reference.ts';
import type { Descriptor, ImageIndex, ManifestBlob } from '../oci/types.ts';
import { RegistryClient, RegistryHttpError, normalizeRegistryHost, resolveCredentials } from '../registry/index.ts';
import { onShutdown } from '../util/shutdown.ts';
import type { DestinationCapabilities, ImageDestination, ImageSource, RegistryAccess } from './types.ts';

const clients = new Map<string, Promise<RegistryClient>>();

/**
 * Uploads started by this process (in flight or done), by registry, repository and digest. Copies that run side by side (--all-tags,
 * platforms) share blobs; uploading one twice into the same repository at once is wasted bytes, and distribution 2.8
 * rewrites the repository's blob link non-atomically meanwhile, so a manifest PUT can then fail with DIGEST_INVALID.
 * A later copy waits for (or reuses) the first upload instead.
 */
const uploads = new Map<string, Promise<void>>();

/** One client per registry host and access options (tokens and keep-alive connections are shared). */
export function registryClient(host: string, access: RegistryAccess = {}, repo?: string): Promise<RegistryClient> {
  const key = JSON.stringify([normalizeRegistryHost(host), access]);
  let c = clients.get(key);
  if (!c) {
    onShutdown(closeRegistryClients);
    c = (async () => {
      const credentials = await resolveCredentials(host, { creds: access.creds, authfile: access.authfile, repo });
      return new RegistryClient({
        host,
        tlsVerify: access.tlsVerify,
        certDir: access.certDir,
        credentials,
        retryTimes: access.retryTimes,
        retryDelayMs: access.retryDelayMs,
      });
    })();
    clients.set(key, c);
  }
  return c;
}

/** Closes every pooled client (the CLI calls this before exiting so sockets don't hold the process). */
export async function closeRegistryClients(): Promise<void> {
  const all = [...clients.values()];
  clients.clear();
  await Promise.all(all.map(async (c) => (await c).close().catch(() => {})));
}

/** `spec` is what follows `docker://`; no tag means `latest`, as skopeo and docker do. */
export function parseDockerRef(spec: string): DockerReference {
  return parseDockerReference(spec, { defaultTag: true });
}

abstract class DockerSide {
  readonly name: string;
  readonly ref: DockerReference;
  readonly client: RegistryClient;
  /** The repository path inside the registry (`library/busybox`). */
  readonly repo: string;

  constructor(ref: DockerReference, client: RegistryClient) {
    this.ref = ref;
    this.client = client;
    this.repo = ref.path;
    this.name = `docker://${formatReference(ref)}`;
  }

  /** The tag or digest the reference names. */
  get reference(): string {
    return this.ref.digest ?? this.ref.tag ?? 'latest';
  }
}

export class DockerSource extends DockerSide implements ImageSource {
  get mountFrom(): { host: string; repository: string } {
    return { host: normalizeRegistryHost(this.ref.domain), repository: this.repo };
  }

  async getManifest(digest?: string): Promise<ManifestBlob> {
    const m = await this.client.getManifest(this.repo, digest ?? this.reference);
    if (!digest && this.ref.digest && m.digest !== this.ref.digest) {
      throw new HoistError('DIGEST_MISMATCH', `${this.name}: the registry served manifest ${m.digest}, not the digest asked for`);
    }
    return m;
  }

  getBlob(desc: Descriptor): Promise<Readable> {
    return this.client.getBlob(this.repo, desc);
  }

  listTags(): Promise<string[]> {
    return this.client.listTags(this.repo);
  }

  async getTaggedManifest(tag: string): Promise<ManifestBlob | undefined> {
    try {
      return await this.client.getManifest(this.repo, tag);
    } catch (e) {
      if (e instanceof RegistryHttpError && e.status === 404) return undefined;
      throw e;
    }
  }

  listReferrers(digest: string): Promise<Descriptor[]> {
    return this.client.getReferrers(this.repo, digest);
  }

  async close(): Promise<void> {
    // Pooled: closed by closeRegistryClients().
  }
}

export class DockerDestination extends DockerSide implements ImageDestination {
  readonly capabilities: DestinationCapabilities = { indexes: true, wantsUncompressedLayers: false };

  #uploadKey(digest: string): string {
    return `${normalizeRegistryHost(this.ref.domain)}/${this.repo}@${digest}`;
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    const pending = uploads.get(this.#uploadKey(desc.digest));
    if (pending && (await pending.then(() => true, () => false))) return true;
    return this.client.hasBlob(this.repo, desc);
  }

  async putBlob(desc: Descriptor, stream: Readable): Promise<void> {
    const key = this.#uploadKey(desc.digest);
    const pending = uploads.get(key);
    if (pending && (await pending.then(() => true, () => false))) {
      stream.on('error', () => {});
      stream.destroy();
      return;
    }
    // Streams handed to a destination are verified by their source (ImageSource.getBlob's contract).
    const upload = this.client.putBlob(this.repo, desc, stream, { preverified: true });
    uploads.set(key, upload);
    try {
      await upload;
    } catch (e) {
      // Kept on success (the blob is there for the rest of this process); a failed upload is forgotten.
      if (uploads.get(key) === upload) uploads.delete(key);
      throw e;
    }
  }

  async mountBlob(desc: Descriptor, from: { host: string; repository: string }): Promise<boolean> {
    if (from.host !== normalizeRegistryHost(this.ref.domain) || from.repository === this.repo) return false;
    try {
      return await this.client.mountBlob(this.repo, desc, from.repository);
    } catch {
      // Some registries answer a mount with an error instead of 202: fall back to a plain copy.
      return false;
    }
  }

  async hasManifest(digest: string): Promise<boolean> {
    return (await this.client.headManifest(this.repo, digest)) !== undefined;
  }

  async currentDigest(): Promise<string | undefined> {
    return (await this.client.headManifest(this.repo, this.reference))?.digest;
  }

  async putManifest(m: ManifestBlob, opts: { topLevel: boolean }): Promise<void> {
    if (opts.topLevel && this.ref.digest && this.ref.digest !== m.digest) {
      throw new HoistError('DIGEST_MISMATCH', `${this.name}: the destination names digest ${this.ref.digest} but the image copied is ${m.digest}; drop the @digest or copy without changes`);
    }
    await this.client.putManifest(this.repo, opts.topLevel ? this.reference : m.digest, m);
  }

  async putTaggedManifest(m: ManifestBlob, tag: string): Promise<void> {
    await this.client.putManifest(this.repo, tag, m);
  }

  /**
   * Pushes the referrer by digest; distribution 2.8 has no referrers API, so the `sha256-<hex>` fallback index is
   * updated too (read, add the descriptor if missing, put) — what the distribution spec asks clients to do.
   */
  async putReferrer(m: ManifestBlob, subject: Descriptor): Promise<void> {
    await this.client.putManifest(this.repo, m.digest, m);
    const parsed = JSON.parse(m.bytes.toString('utf8')) as { artifactType?: string; config?: { mediaType?: string }; annotations?: Record<string, string> };
    const desc: Descriptor = { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
    const artifactType = parsed.artifactType ?? parsed.config?.mediaType;
    if (artifactType) desc.artifactType = artifactType;
    if (parsed.annotations) desc.annotations = parsed.annotations;
    const existing = await this.client.getReferrers(this.repo, subject.digest).catch(() => []);
    if (existing.some((d) => d.digest === m.digest)) return;
    const tag = digestToTag(subject.digest);
    const current = await this.#fallbackIndex(tag);
    current.manifests.push(desc);
    const bytes = Buffer.from(JSON.stringify(current));
    await this.client.putManifest(this.repo, tag, { bytes, mediaType: OCI_INDEX, digest: digestBytes(bytes) });
  }

  async #fallbackIndex(tag: string): Promise<ImageIndex> {
    try {
      const m = await this.client.getManifest(this.repo, tag);
      const idx = JSON.parse(m.bytes.toString('utf8')) as ImageIndex;
      if (m.mediaType === OCI_INDEX && Array.isArray(idx.manifests)) return idx;
    } catch (e) {
      if (!(e instanceof RegistryHttpError && e.status === 404)) throw e;
    }
    return { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
  }

  async commit(): Promise<void> {
    // The top-level manifest was the last thing put: a registry has nothing else to make visible.
  }

  async abort(): Promise<void> {
    // Blobs already uploaded stay as unreferenced blobs (the registry's GC removes them); no manifest was put
    // before its blobs, so nothing visible is incomplete.
  }
}

export async function openDockerSource(spec: string, access?: RegistryAccess): Promise<ImageSource> {
  const ref = parseDockerRef(spec);
  return new DockerSource(ref, await registryClient(ref.domain, access, repository(ref)));
}

export async function openDockerDestination(spec: string, access?: RegistryAccess): Promise<ImageDestination> {
  const ref = parseDockerRef(spec);
  return new DockerDestination(ref, await registryClient(ref.domain, access, repository(ref)));
}

