/**
 * oci: — an OCI image layout directory, read and written with skopeo's semantics (containers/image oci/layout):
 *
 * - Reading `oci:DIR:NAME` picks the index.json entry whose org.opencontainers.image.ref.name is NAME;
 *   `oci:DIR` picks the only entry and fails when there are several, listing their names.
 * - Writing stores blobs and manifests as blobs; only commit() touches index.json: NAME moves to the new manifest
 *   (an entry that had it keeps its place, unnamed), and without a NAME the manifest is added unnamed (replacing an
 *   unnamed entry with the same digest). Nothing is named before commit().
 *
 * The read side works on any LayoutReader, so oci-archive: (a tar of a layout) and the local store share it.
 */
import type { Readable } from 'node:stream';
import { HoistError } from '../errors.ts';
import { digestBytes, digestToTag } from '../oci/digest.ts';
import { parseManifest } from '../oci/manifest.ts';
import { isIndex, OCI_INDEX } from '../oci/mediatype.ts';
import type { Descriptor, ImageIndex, ManifestBlob } from '../oci/types.ts';
import type { Lease } from '../store/lease.ts';
import { OciLayout, REF_NAME_ANNOTATION } from '../store/layout.ts';
import { prune } from '../store/prune.ts';
import { isAttachmentRefName } from '../store/attachment-names.ts';
import type { DestinationCapabilities, ImageDestination, ImageSource } from './types.ts';

const REF_NAME = REF_NAME_ANNOTATION;

/** What reading needs from wherever a layout lives: a directory, a tar of one, the store. */
export interface LayoutReader {
  readIndex(): Promise<ImageIndex>;
  /** A blob stream verified against digest (and size when given) as it is read. */
  openBlob(digest: string, size: number | undefined, where: string): Promise<Readable>;
  /** A small blob (manifest, config) read whole and verified. */
  readBlob(digest: string, size: number | undefined, where: string): Promise<Buffer>;
}

/**
 * Where a layout keeps what a registry keeps under extra tags of the image's repository: signature tags
 * (`sha256-<hex>.sig`), the referrers fallback index (`sha256-<hex>`), --additional-tag. A layout has no repositories,
 * only ref names: `oci:DIR:NAME` uses the tag itself as the ref name; the store, whose ref names are docker references,
 * `<repository>:<tag>`. Without a naming (oci-archive:), a layout has no attachments.
 */
export interface AttachmentNaming {
  tagName(tag: string): string;
}

/** The plain-layout naming: the registry tag is the ref name. */
export const TAG_AS_REF_NAME: AttachmentNaming = { tagName: (tag) => tag };

/**
 * Ref names of attachments rather than images (src/store/attachment-names.ts). `oci:DIR` without a name ignores them
 * when choosing "the only image", so signing an image does not make the layout ambiguous.
 */
export { isAttachmentRefName };

/** The descriptor a referrers listing carries for a referrer manifest (artifactType and annotations lifted up). */
export function referrerDescriptor(m: ManifestBlob): Descriptor {
  const parsed = JSON.parse(m.bytes.toString('utf8')) as { artifactType?: string; config?: { mediaType?: string }; annotations?: Record<string, string> };
  const desc: Descriptor = { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
  const artifactType = parsed.artifactType ?? parsed.config?.mediaType;
  if (artifactType) desc.artifactType = artifactType;
  if (parsed.annotations) desc.annotations = parsed.annotations;
  return desc;
}

/** The ref names in an index, in index order, without repeats. */
export function refNames(index: ImageIndex): string[] {
  const names: string[] = [];
  for (const d of index.manifests) {
    const n = d.annotations?.[REF_NAME];
    if (n !== undefined && !names.includes(n)) names.push(n);
  }
  return names;
}

function listing(index: ImageIndex): string {
  const names = refNames(index);
  const unnamed = index.manifests.filter((d) => d.annotations?.[REF_NAME] === undefined).length;
  const parts = [...names];
  if (unnamed > 0) parts.push(`${unnamed} unnamed`);
  return parts.length ? parts.join(', ') : 'nothing';
}

/**
 * containers/image's getManifestDescriptor: without a ref the only entry (whatever its name); with one the first
 * entry named so. `where` names the layout (`oci:/tmp/l`), `how` says how to name an image in messages.
 */
export function selectManifest(index: ImageIndex, ref: string | undefined, where: string, how: string): Descriptor {
  if (ref === undefined) {
    if (index.manifests.length === 1) return index.manifests[0]!;
    const images = index.manifests.filter((d) => !isAttachmentRefName(d.annotations?.[REF_NAME]));
    if (images.length === 1) return images[0]!;
    if (index.manifests.length === 0) throw new HoistError('NOT_FOUND', `${where}: the layout holds no image`);
    throw new HoistError('AMBIGUOUS', `${where}: the layout holds ${index.manifests.length} images; name one as ${how} (has ${listing(index)})`);
  }
  const d = index.manifests.find((m) => m.annotations?.[REF_NAME] === ref);
  if (d === undefined) throw new HoistError('NOT_FOUND', `${where}: no image named "${ref}" in the layout (has ${listing(index)})`);
  return d;
}

export class LayoutSource implements ImageSource {
  readonly name: string;
  readonly #reader: LayoutReader;
  readonly #top: Descriptor;
  readonly #onClose: (() => Promise<void>) | undefined;
  readonly #naming: AttachmentNaming | undefined;

  constructor(name: string, reader: LayoutReader, top: Descriptor, onClose?: () => Promise<void>, naming?: AttachmentNaming) {
    this.name = name;
    this.#reader = reader;
    this.#top = top;
    this.#onClose = onClose;
    this.#naming = naming;
  }

  async getManifest(digest?: string): Promise<ManifestBlob> {
    const d = digest ?? this.#top.digest;
    const size = digest === undefined || digest === this.#top.digest ? this.#top.size : undefined;
    const declared = digest === undefined || digest === this.#top.digest ? this.#top.mediaType : undefined;
    const where = `${this.name} manifest ${d}`;
    const bytes = await this.#reader.readBlob(d, size, where);
    const parsed = parseManifest(bytes, where, declared);
    return { bytes, mediaType: parsed.mediaType, digest: d };
  }

  async getBlob(desc: Descriptor): Promise<Readable> {
    return this.#reader.openBlob(desc.digest, desc.size, `${this.name} blob ${desc.digest}`);
  }

  async listTags(): Promise<string[]> {
    return refNames(await this.#reader.readIndex());
  }

  /** The manifest under the ref name the naming gives `tag`; undefined when there is none (or no naming). */
  async getTaggedManifest(tag: string): Promise<ManifestBlob | undefined> {
    if (this.#naming === undefined) return undefined;
    const name = this.#naming.tagName(tag);
    const d = (await this.#reader.readIndex()).manifests.find((m) => m.annotations?.[REF_NAME] === name);
    return d === undefined ? undefined : this.#readListed(d, `${this.name} manifest ${name}`);
  }

  /**
   * Referrers of `digest`: the `sha256-<hex>` fallback index (what hoist writes, as a registry without the referrers
   * API keeps them), plus manifests listed in index.json with an artifactType whose subject is `digest` (how ORAS
   * lays referrers out). Only those candidate entries are read, so a big store is not scanned.
   */
  async listReferrers(digest: string): Promise<Descriptor[]> {
    if (this.#naming === undefined) return [];
    const index = await this.#reader.readIndex();
    const out: Descriptor[] = [];
    const fallbackName = this.#naming.tagName(digestToTag(digest));
    const fallback = index.manifests.find((m) => m.annotations?.[REF_NAME] === fallbackName);
    if (fallback !== undefined && isIndex(fallback.mediaType)) {
      const m = await this.#readListed(fallback, `${this.name} referrers index ${fallbackName}`);
      const parsed = parseManifest(m.bytes, `${this.name} referrers index ${fallbackName}`, m.mediaType);
      if (parsed.kind === 'index') out.push(...parsed.index.manifests);
    }
    for (const d of index.manifests) {
      if (d.artifactType === undefined || out.some((o) => o.digest === d.digest)) continue;
      const m = await this.#readListed(d, `${this.name} manifest ${d.digest}`);
      const doc = JSON.parse(m.bytes.toString('utf8')) as { subject?: { digest?: string } };
      if (doc.subject?.digest === digest) out.push(referrerDescriptor(m));
    }
    return out;
  }

  async #readListed(d: Descriptor, where: string): Promise<ManifestBlob> {
    const bytes = await this.#reader.readBlob(d.digest, d.size, where);
    const parsed = parseManifest(bytes, where, d.mediaType);
    return { bytes, mediaType: parsed.mediaType, digest: d.digest };
  }

  async close(): Promise<void> {
    await this.#onClose?.();
  }
}

/** `oci:DIR[:REF]` as a string for messages. */
export function layoutName(transport: string, location: string, ref: string | undefined): string {
  return `${transport}:${location}${ref !== undefined ? `:${ref}` : ''}`;
}

export async function openOciLayoutSource(dir: string, ref?: string): Promise<ImageSource> {
  const name = layoutName('oci', dir, ref);
  const layout = await OciLayout.open(dir, { create: false });
  const top = selectManifest(await layout.readIndex(), ref, layoutName('oci', dir, undefined), `oci:${dir}:NAME`);
  return new LayoutSource(name, layout, top, undefined, TAG_AS_REF_NAME);
}

/**
 * How commit() records the top-level manifest in index.json:
 * - `skopeo`: containers/image's addManifest — the name moves to the new entry, an entry that had it stays listed
 *   unnamed (nothing a user had becomes garbage), and an unnamed entry with the same digest is replaced;
 * - `replace`: the store's tagging — an entry with the name is replaced in place (its image is untagged, as podman does).
 */
export type CommitTarget = { ref: string; mode: 'skopeo' | 'replace' } | { unnamed: true };

/** containers/image oci/layout addManifest, as a pure function over index.json. */
export function addManifestLikeSkopeo(index: ImageIndex, desc: Descriptor, name: string | undefined): ImageIndex {
  const strip = (d: Descriptor): Descriptor => {
    if (d.annotations?.[REF_NAME] === undefined) return d;
    const { [REF_NAME]: _n, ...others } = d.annotations;
    const { annotations: _a, ...rest } = d;
    return Object.keys(others).length ? { ...rest, annotations: others } : rest;
  };
  const entry: Descriptor = name === undefined ? strip(desc) : { ...desc, annotations: { ...desc.annotations, [REF_NAME]: name } };
  const manifests = [...index.manifests];
  if (name !== undefined) {
    const i = manifests.findIndex((d) => d.annotations?.[REF_NAME] === name);
    if (i >= 0) manifests[i] = strip(manifests[i]!);
  }
  const same = manifests.findIndex((d) => d.digest === entry.digest && d.annotations?.[REF_NAME] === undefined);
  if (same >= 0) manifests[same] = entry;
  else manifests.push(entry);
  return { ...index, manifests };
}

/**
 * Writes into an OciLayout. Blobs go in as they arrive, through a lease that keeps a concurrent prune from
 * collecting them before commit; index.json changes only in commit().
 */
export class LayoutDestination implements ImageDestination {
  readonly name: string;
  readonly capabilities: DestinationCapabilities;
  readonly #layout: OciLayout;
  readonly #target: CommitTarget;
  readonly #lease: Lease;
  #top: Descriptor | undefined;
  /** Blobs this copy stored that were not there before: abort() discards them, so a failed copy changes nothing. */
  readonly #created = new Set<string>();
  readonly #inflight = new Set<Promise<void>>();
  readonly #naming: AttachmentNaming | undefined;
  /** Ref name → manifest, named in commit() (signature tags, --additional-tag). */
  readonly #tags = new Map<string, Descriptor>();
  /** Referrers to add to their subject's fallback index in commit(). */
  readonly #referrers: { subject: string; desc: Descriptor }[] = [];

  /**
   * `formats`: ['oci'] for oci: layouts (skopeo and umoci read only OCI manifests there); the store keeps any.
   * `naming`: where extra tags and referrers go; without one the destination stores none.
   */
  constructor(name: string, layout: OciLayout, target: CommitTarget, lease: Lease, formats?: ('oci' | 'docker')[], naming?: AttachmentNaming) {
    this.name = name;
    this.#layout = layout;
    this.#target = target;
    this.#lease = lease;
    this.capabilities = { indexes: true, wantsUncompressedLayers: false, ...(formats ? { formats } : {}) };
    this.#naming = naming;
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return this.#lease.hasBlob(desc.digest);
  }

  async putBlob(desc: Descriptor, stream: Readable): Promise<void> {
    const put = (async () => {
      const existed = await this.#layout.hasBlob(desc.digest);
      await this.#lease.putBlob(stream, { digest: desc.digest, size: desc.size }, `${this.name} blob ${desc.digest}`);
      if (!existed) this.#created.add(desc.digest);
    })();
    // The engine stops at the first failed blob while others are still being written; abort() waits for those.
    this.#inflight.add(put);
    try {
      await put;
    } finally {
      this.#inflight.delete(put);
    }
  }

  async hasManifest(digest: string): Promise<boolean> {
    return this.#lease.hasBlob(digest);
  }

  async putManifest(m: ManifestBlob, opts: { topLevel: boolean }): Promise<void> {
    const existed = await this.#layout.hasBlob(m.digest);
    await this.#lease.putBlobBytes(m.bytes, m.digest);
    if (!existed) this.#created.add(m.digest);
    if (opts.topLevel) this.#top = { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
  }

  /** Stores `m` now; names it `tag` (through the naming) in commit(), replacing what had that name. */
  async putTaggedManifest(m: ManifestBlob, tag: string): Promise<void> {
    const name = this.#attachmentName(tag);
    await this.putManifest(m, { topLevel: false });
    this.#tags.set(name, { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length });
  }

  /** Stores `m` now; commit() adds it to the `sha256-<hex>` fallback index of `subject` (as on a registry without the referrers API). */
  async putReferrer(m: ManifestBlob, subject: Descriptor): Promise<void> {
    this.#attachmentName(digestToTag(subject.digest));
    await this.putManifest(m, { topLevel: false });
    this.#referrers.push({ subject: subject.digest, desc: referrerDescriptor(m) });
  }

  #attachmentName(tag: string): string {
    if (this.#naming === undefined) {
      throw new HoistError('NOT_SUPPORTED', `${this.name}: this destination cannot hold extra tags, signatures or referrers; use a registry, an oci: layout or the local store`, { exitCode: 2 });
    }
    return this.#naming.tagName(tag);
  }

  async commit(): Promise<void> {
    const top = this.#top;
    try {
      const attachments = this.#tags.size > 0 || this.#referrers.length > 0;
      if (top === undefined && !attachments) throw new HoistError('INTERNAL', `${this.name}: nothing to commit: no top-level manifest was written`);
      const t = this.#target;
      if (top === undefined) {
        // Attachments only (hoist sign): the image itself is already named.
      } else if ('unnamed' in t) {
        await this.#layout.updateIndex((idx) => addManifestLikeSkopeo(idx, top, undefined));
      } else if (t.mode === 'skopeo') {
        await this.#layout.updateIndex((idx) => addManifestLikeSkopeo(idx, top, t.ref));
      } else {
        await this.#layout.setRef(t.ref, top);
      }
      // After the image: a signature is named only once what it signs is.
      if (attachments) await this.#layout.updateIndex((idx) => this.#withAttachments(idx));
    } finally {
      await this.#lease.release();
    }
  }

  /**
   * index.json with the tags and referrer fallback indexes of this session. Runs under the index lock, so two writers
   * adding referrers to the same subject cannot lose each other's; an attachment name is replaced in place (a
   * re-signed `.sig` manifest supersedes the old one, which held the same signatures and fewer).
   */
  async #withAttachments(idx: ImageIndex): Promise<ImageIndex> {
    const manifests = [...idx.manifests];
    const set = (name: string, desc: Descriptor): void => {
      const entry: Descriptor = { ...desc, annotations: { ...desc.annotations, [REF_NAME]: name } };
      const i = manifests.findIndex((d) => d.annotations?.[REF_NAME] === name);
      if (i >= 0) manifests[i] = entry;
      else manifests.push(entry);
    };
    for (const [name, desc] of this.#tags) set(name, desc);
    const bySubject = new Map<string, Descriptor[]>();
    for (const r of this.#referrers) bySubject.set(r.subject, [...(bySubject.get(r.subject) ?? []), r.desc]);
    for (const [subject, added] of bySubject) {
      const name = this.#naming!.tagName(digestToTag(subject));
      const current = manifests.find((d) => d.annotations?.[REF_NAME] === name);
      let fallback: ImageIndex = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
      if (current !== undefined && isIndex(current.mediaType)) {
        const where = `${this.name} referrers index ${name}`;
        const parsed = parseManifest(await this.#layout.readBlob(current.digest, current.size, where), where, current.mediaType);
        if (parsed.kind === 'index') fallback = parsed.index;
      }
      const list = [...fallback.manifests];
      for (const d of added) if (!list.some((e) => e.digest === d.digest)) list.push(d);
      if (list.length === fallback.manifests.length) continue;
      const bytes = Buffer.from(JSON.stringify({ ...fallback, manifests: list }));
      const digest = digestBytes(bytes);
      await this.#lease.putBlobBytes(bytes, digest);
      set(name, { mediaType: OCI_INDEX, digest, size: bytes.length });
    }
    return { ...idx, manifests };
  }

  async abort(): Promise<void> {
    await Promise.allSettled([...this.#inflight]);
    try {
      if (this.#created.size) await prune(this.#layout, { only: this.#created, ignoreLease: this.#lease.path });
    } finally {
      await this.#lease.release();
    }
  }
}

export async function openOciLayoutDestination(dir: string, ref?: string): Promise<ImageDestination> {
  const layout = await OciLayout.open(dir, { create: true });
  const lease = await layout.lease();
  return new LayoutDestination(layoutName('oci', dir, ref), layout, ref !== undefined ? { ref, mode: 'skopeo' } : { unnamed: true }, lease, ['oci'], TAG_AS_REF_NAME);
}
