/**
 * hoist's local store: one OCI layout (so skopeo and umoci read it as `oci:$ROOT:NAME`) whose index.json entries are
 * named with normalized docker references (`docker.io/library/busybox:latest`).
 */
import { HoistError } from '../errors.ts';
import { isDigest } from '../oci/digest.ts';
import { manifestReferences, parseManifest, type ParsedManifest } from '../oci/manifest.ts';
import { isIndex, isManifest } from '../oci/mediatype.ts';
import { formatReference, parseDockerReference, repository } from '../oci/reference.ts';
import type { Descriptor, ImageConfig } from '../oci/types.ts';
import { attachmentRefNames, isAttachmentRefName } from './attachment-names.ts';
import { OciLayout, refName, withoutRefName } from './layout.ts';
import { storeRoot } from './root.ts';

export interface ImageSummary {
  /** Every name the image has (ref names in index.json); empty for an unnamed entry. */
  names: string[];
  digest: string;
  mediaType: string;
  /** Bytes of the manifest, config and layers; for an index, of the index and all its children. Shared blobs count once. */
  size: number;
  /** The config's `created`; for an index, the newest of its images. */
  created?: string;
}

/** An ID prefix must be this long to be taken as one (docker and podman accept 12, the short ID). */
const MIN_ID_PREFIX = 12;

export class Store {
  readonly root: string;
  readonly layout: OciLayout;

  private constructor(root: string, layout: OciLayout) {
    this.root = root;
    this.layout = layout;
  }

  /** Opens the store at `root` (default storeRoot()), creating it when missing. */
  static async open(root: string = storeRoot()): Promise<Store> {
    const layout = await OciLayout.open(root, { create: true });
    return new Store(layout.dir, layout);
  }

  /**
   * One summary per stored manifest digest, newest first (by config `created`), then in index.json order.
   * Signature attachments (`repo:sha256-<hex>.sig`, the referrers fallback `repo:sha256-<hex>`) are not images: skipped.
   */
  async images(): Promise<ImageSummary[]> {
    const groups = new Map<string, { desc: Descriptor; names: string[] }>();
    for (const d of (await this.layout.readIndex()).manifests) {
      if (isAttachmentRefName(refName(d))) continue;
      let g = groups.get(d.digest);
      if (g === undefined) {
        g = { desc: d, names: [] };
        groups.set(d.digest, g);
      }
      const name = refName(d);
      if (name !== undefined && !g.names.includes(name)) g.names.push(name);
    }
    const out: ImageSummary[] = [];
    for (const { desc, names } of groups.values()) {
      const { size, created } = await this.#measure(desc);
      const summary: ImageSummary = { names, digest: desc.digest, mediaType: desc.mediaType, size };
      if (created !== undefined) summary.created = created;
      out.push(summary);
    }
    // Array.prototype.sort is stable: ties keep index.json order.
    return out.sort((a, b) => (b.created ?? '').localeCompare(a.created ?? ''));
  }

  /** Gives the image `existing` (a name, digest, or ID prefix of at least 12 hex digits) the name `newName`. */
  async tag(existing: string, newName: string): Promise<void> {
    const desc = await this.resolve(existing);
    await this.layout.setRef(newName, desc);
  }

  /** Removes a name; false when no image had it. Blobs stay until prune. */
  untag(name: string): Promise<boolean> {
    return this.layout.removeRef(name);
  }

  /**
   * `hoist rmi`: removes a name like untag, and with it the image's signature attachments in that name's repository
   * (`repo:sha256-<hex>.sig`, `repo:sha256-<hex>`, for the image and, for an index, its manifests) once no other name
   * of the repository reaches them — attachments live per repository, as in a registry, so other repositories' names
   * do not keep them. Blobs stay until prune. False when no image had the name.
   */
  async removeName(name: string): Promise<boolean> {
    let removed = false;
    await this.layout.updateIndex(async (idx) => {
      const entry = idx.manifests.find((d) => refName(d) === name);
      if (entry === undefined) return idx;
      removed = true;
      let manifests = idx.manifests.filter((d) => refName(d) !== name);
      const repo = repositoryOf(name);
      if (repo === undefined || isAttachmentRefName(name)) return { ...idx, manifests };
      const kept = new Set<string>();
      for (const d of manifests) {
        const n = refName(d);
        if (n === undefined || isAttachmentRefName(n) || repositoryOf(n) !== repo) continue;
        for (const digest of await this.#reach(d)) kept.add(digest);
      }
      const drop = new Set<string>();
      for (const digest of await this.#reach(entry)) {
        if (!kept.has(digest)) for (const n of attachmentRefNames(repo, digest)) drop.add(n);
      }
      manifests = manifests.filter((d) => !drop.has(refName(d) ?? ''));
      return { ...idx, manifests };
    });
    return removed;
  }

  /** The digests signatures may be attached to for this entry: its own, and for an index its manifests'. */
  async #reach(d: Descriptor): Promise<string[]> {
    const out = [d.digest];
    if (!isIndex(d.mediaType)) return out;
    const bytes = await this.#readIfStored(d);
    if (bytes === undefined) return out;
    const parsed = parseManifest(bytes, `${this.root}: manifest ${d.digest}`, d.mediaType);
    if (parsed.kind === 'index') out.push(...parsed.index.manifests.map((m) => m.digest));
    return out;
  }

  /**
   * The descriptor of a stored image, without its name annotation. Tries, in order: the exact stored name, the name
   * normalized like docker (`busybox` → `docker.io/library/busybox:latest`), a full digest (also of a child manifest),
   * an ID prefix. HoistError NOT_FOUND or AMBIGUOUS.
   */
  async resolve(nameOrDigest: string): Promise<Descriptor> {
    const entries = (await this.layout.readIndex()).manifests;
    const byName = (n: string) => entries.find((d) => refName(d) === n);

    const exact = byName(nameOrDigest);
    if (exact) return withoutRefName(exact);

    const ref = tryParseReference(nameOrDigest);
    if (ref !== undefined) {
      const named = byName(ref.name);
      if (named) return withoutRefName(named);
      if (ref.digest !== undefined) {
        const d = await this.#byDigest(entries, ref.digest);
        if (d) return d;
      }
    }

    const id = /^(?:sha256:)?([0-9a-f]+)$/.exec(nameOrDigest)?.[1];
    if (isDigest(nameOrDigest) || (id !== undefined && id.length === 64)) {
      const d = await this.#byDigest(entries, isDigest(nameOrDigest) ? nameOrDigest : `sha256:${id}`);
      if (d) return d;
    } else if (id !== undefined && id.length >= MIN_ID_PREFIX) {
      const matches = [...new Set(entries.filter((d) => d.digest.startsWith(`sha256:${id}`)).map((d) => d.digest))];
      if (matches.length > 1) {
        throw new HoistError('AMBIGUOUS',
          `image ID "${nameOrDigest}" matches ${matches.length} images in the local store (${this.root}); give more digits (hoist images --digests)`);
      }
      const only = matches[0];
      if (only !== undefined) return withoutRefName(entries.find((d) => d.digest === only)!);
    }
    throw new HoistError('NOT_FOUND', `image "${nameOrDigest}" not found in the local store (${this.root}); list images with: hoist images`);
  }

  /** An index.json entry with this digest, or a stored manifest that is not listed (a child of an index). */
  async #byDigest(entries: Descriptor[], digest: string): Promise<Descriptor | undefined> {
    const listed = entries.find((d) => d.digest === digest);
    if (listed) return withoutRefName(listed);
    if (!await this.layout.hasBlob(digest)) return undefined;
    let parsed: ParsedManifest;
    let size: number;
    try {
      const bytes = await this.layout.readBlob(digest);
      size = bytes.length;
      parsed = parseManifest(bytes, `${this.root}: ${digest}`);
    } catch {
      return undefined; // a layer or config, not an image
    }
    return { mediaType: parsed.mediaType, digest, size };
  }

  /** Size of everything `desc` reaches (each blob once), and the newest config `created`. */
  async #measure(desc: Descriptor): Promise<{ size: number; created?: string }> {
    const sizes = new Map<string, number>();
    let created: string | undefined;
    const queue: Descriptor[] = [desc];
    for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
      if (sizes.has(d.digest)) continue;
      sizes.set(d.digest, d.size);
      if (!isManifest(d.mediaType)) continue;
      const bytes = await this.#readIfStored(d);
      if (bytes === undefined) continue;
      const parsed = parseManifest(bytes, `${this.root}: manifest ${d.digest}`, d.mediaType);
      queue.push(...manifestReferences(parsed));
      if (parsed.kind === 'image') {
        const c = await this.#readIfStored(parsed.manifest.config);
        const when = c === undefined ? undefined : configCreated(c);
        if (when !== undefined && (created === undefined || when > created)) created = when;
      }
    }
    let size = 0;
    for (const s of sizes.values()) size += s;
    return created === undefined ? { size } : { size, created };
  }

  /** A small blob, or undefined when it is not stored (a partial image still lists; a corrupt one fails loudly). */
  async #readIfStored(d: Descriptor): Promise<Buffer | undefined> {
    try {
      return await this.layout.readBlob(d.digest, d.size, `${this.root}: ${d.digest}`);
    } catch (e) {
      if (e instanceof HoistError && e.code === 'NOT_FOUND') return undefined;
      throw e;
    }
  }
}

function configCreated(bytes: Buffer): string | undefined {
  try {
    const c = JSON.parse(bytes.toString('utf8')) as Partial<ImageConfig>;
    return typeof c.created === 'string' ? c.created : undefined;
  } catch {
    return undefined;
  }
}

/** The repository of a stored name (`localhost/a:1` → `localhost/a`); undefined when it is not a docker reference. */
function repositoryOf(name: string): string | undefined {
  try {
    return repository(parseDockerReference(name));
  } catch {
    return undefined;
  }
}

/** `busybox` → `docker.io/library/busybox:latest` (and its digest, if any); undefined when not a reference at all. */
function tryParseReference(s: string): { name: string; digest?: string } | undefined {
  try {
    const r = parseDockerReference(s, { defaultTag: true });
    return r.digest === undefined ? { name: formatReference(r) } : { name: formatReference(r), digest: r.digest };
  } catch {
    return undefined;
  }
}
