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
import { parseManifest } from '../oci/manifest.ts';
import type { Descriptor, ImageIndex, ManifestBlob } from '../oci/types.ts';
import type { Lease } from '../store/lease.ts';
import { OciLayout, REF_NAME_ANNOTATION } from '../store/layout.ts';
import { prune } from '../store/prune.ts';
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

  constructor(name: string, reader: LayoutReader, top: Descriptor, onClose?: () => Promise<void>) {
    this.name = name;
    this.#reader = reader;
    this.#top = top;
    this.#onClose = onClose;
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
  return new LayoutSource(name, layout, top);
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

  /** `formats`: ['oci'] for oci: layouts (skopeo and umoci read only OCI manifests there); the store keeps any. */
  constructor(name: string, layout: OciLayout, target: CommitTarget, lease: Lease, formats?: ('oci' | 'docker')[]) {
    this.name = name;
    this.#layout = layout;
    this.#target = target;
    this.#lease = lease;
    this.capabilities = { indexes: true, wantsUncompressedLayers: false, ...(formats ? { formats } : {}) };
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return this.#lease.hasBlob(desc.digest);
  }

  async putBlob(desc: Descriptor, stream: Readable): Promise<void> {
    const existed = await this.#layout.hasBlob(desc.digest);
    await this.#lease.putBlob(stream, { digest: desc.digest, size: desc.size }, `${this.name} blob ${desc.digest}`);
    if (!existed) this.#created.add(desc.digest);
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

  async commit(): Promise<void> {
    const top = this.#top;
    try {
      if (top === undefined) throw new HoistError('INTERNAL', `${this.name}: nothing to commit: no top-level manifest was written`);
      const t = this.#target;
      if ('unnamed' in t) {
        await this.#layout.updateIndex((idx) => addManifestLikeSkopeo(idx, top, undefined));
      } else if (t.mode === 'skopeo') {
        await this.#layout.updateIndex((idx) => addManifestLikeSkopeo(idx, top, t.ref));
      } else {
        await this.#layout.setRef(t.ref, top);
      }
    } finally {
      await this.#lease.release();
    }
  }

  async abort(): Promise<void> {
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
  return new LayoutDestination(layoutName('oci', dir, ref), layout, ref !== undefined ? { ref, mode: 'skopeo' } : { unnamed: true }, lease, ['oci']);
}
