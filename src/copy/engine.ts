/**
 * The graph-copy engine: one algorithm for every pair of transports.
 *
 * 1. Walk the manifest graph from the source (manifests are small: fetched whole, in parallel).
 * 2. Collect the unique blobs of every selected image; copy them in parallel, largest first (the long poles start
 *    early), skipping those the destination already has. A blob shared by several platforms is sent once.
 * 3. Put manifests bottom-up (images before the index that lists them), each only after all its blobs are stored:
 *    a failure part way never leaves a manifest whose blobs are missing.
 * 4. commit() makes the result visible (tag, archive rename); on any failure abort() and rethrow.
 */
import pLimit from 'p-limit';
import { Transform, type Readable } from 'node:stream';
import { HoistError } from '../errors.ts';
import { digestBytes, digestToTag } from '../oci/digest.ts';
import { parseManifest, manifestReferences, type ParsedManifest } from '../oci/manifest.ts';
import { bestPlatformMatch, formatPlatform, hostPlatform, platformMatches } from '../oci/platform.ts';
import type { Descriptor, ImageIndex, ManifestBlob, Platform } from '../oci/types.ts';
import type { ImageDestination, ImageSource } from '../transport/types.ts';
import { convertImageManifest, convertIndex, formatOfMediaType, type ManifestFormat } from './convert.ts';
import { needsRecompression, recompress } from './recompress.ts';

export type CopyEvent =
  | { type: 'blob-skip'; digest: string; size: number }
  | { type: 'blob-mount'; digest: string; size: number; from: string }
  | { type: 'blob-start'; digest: string; size: number }
  | { type: 'blob-progress'; digest: string; size: number; bytes: number }
  | { type: 'blob-done'; digest: string; size: number }
  | { type: 'blob-retry'; digest: string; size: number; attempt: number }
  | { type: 'manifest'; digest: string; mediaType: string; skipped: boolean }
  | { type: 'signature'; digest: string; kind: 'tag' | 'referrer' };

export interface CopyOptions {
  /** Copy only these platforms of an index (a new index is written). Undefined or empty: all of them. */
  platforms?: Platform[];
  /** Blobs in flight at once. */
  jobs?: number;
  /** Write manifests in this format (`-f oci|v2s2`); otherwise the destination's preference, else as they are. */
  format?: ManifestFormat;
  /** Refuse any change that would alter a manifest digest (skopeo's --preserve-digests). */
  preserveDigests?: boolean;
  /** Do not carry `sha256-<hex>.sig` signature tags and referrers of the copied manifests (skopeo --remove-signatures). */
  removeSignatures?: boolean;
  /** Extra tags for the top-level manifest at the destination (skopeo --additional-tag). */
  additionalTags?: string[];
  /** Recompress layers (skopeo --dest-compress-format / --dest-compress-level); layers already in it are kept. */
  compressFormat?: 'gzip' | 'zstd';
  compressLevel?: number;
  onEvent?: (e: CopyEvent) => void;
}

export interface CopyResult {
  /** Digest of the top-level manifest written (differs from the source's when platforms were filtered). */
  digest: string;
  mediaType: string;
  blobsCopied: number;
  blobsSkipped: number;
  bytesCopied: number;
}

export const DEFAULT_JOBS = 6;
/** Times a blob is sent when its upload is cut (each time read again from the source). */
const UPLOAD_ATTEMPTS = 3;

interface Node {
  blob: ManifestBlob;
  parsed: ParsedManifest;
  children: Node[];
}

export async function copyImage(src: ImageSource, dst: ImageDestination, opts: CopyOptions = {}): Promise<CopyResult> {
  try {
    const result = await copyGraph(src, dst, opts);
    await dst.commit();
    return result;
  } catch (e) {
    await dst.abort().catch(() => {});
    throw e;
  }
}

async function copyGraph(src: ImageSource, dst: ImageDestination, opts: CopyOptions): Promise<CopyResult> {
  const emit = opts.onEvent ?? (() => {});
  let top = await loadNode(src, await src.getManifest());
  const sourceTop = top;

  // Choose what to copy from an index.
  if (top.parsed.kind === 'index') {
    const wanted = opts.platforms?.length ? opts.platforms : undefined;
    if (!dst.capabilities.indexes) {
      // A single-image destination (docker-archive) gets one platform: the asked one, else this machine's, like skopeo.
      const want = wanted?.[0] ?? hostPlatform();
      const child = pickPlatform(top, want, src.name);
      top = child;
    } else if (wanted) {
      top = filterIndex(top, wanted, src.name);
    }
  }

  // Manifest format: asked for, else what the destination can read; digests change only when they must.
  const to = opts.format ?? neededFormat(top, dst.capabilities.formats);
  if (to) {
    const converted = convertNode(top, to, src.name);
    if (opts.preserveDigests && converted.blob.digest !== top.blob.digest) {
      throw new HoistError('DIGEST_WOULD_CHANGE', `${src.name}: writing it as ${to === 'oci' ? 'OCI' : 'v2s2'} changes its digest, and --preserve-digests forbids that; drop --preserve-digests or pick a destination that stores ${formatOfMediaType(top.blob.mediaType) ?? 'this'} manifests`);
    }
    top = converted;
  }

  // Unique blobs across the whole graph.
  const blobs = new Map<string, Descriptor>();
  collectBlobs(top, blobs);

  const limit = pLimit(Math.max(1, opts.jobs ?? DEFAULT_JOBS));
  const stats = { blobsCopied: 0, blobsSkipped: 0, bytesCopied: 0 };
  const copyBlob = blobCopier(src, dst, emit, stats);

  // Signatures of the source manifests are looked up while the blobs flow (a few small requests, hidden behind
  // the transfer); they are written after the image, since they name it.
  const signatures = opts.removeSignatures ? Promise.resolve([]) : findSignatures(src, dst, sourceTop);
  signatures.catch(() => {});

  // Layers to recompress are rewritten (once per digest) and the manifests above them rebuilt afterwards.
  const compressTo = opts.compressFormat;
  const replaced = new Map<string, Descriptor>();
  const recompressOne = async (desc: Descriptor): Promise<void> => {
    const r = await recompress(await src.getBlob(desc), desc, compressTo!, opts.compressLevel);
    try {
      replaced.set(desc.digest, r.desc);
      await copyBlob(r.desc, r.open);
    } finally {
      await r.dispose();
    }
  };
  const refuseIfSigned = async (): Promise<void> => {
    if (top.blob.digest !== sourceTop.blob.digest && (await signatures).length) {
      throw new HoistError('SIGNATURES_INVALIDATED', `${src.name} is signed, and this copy changes its digest (${sourceTop.blob.digest} → ${top.blob.digest}), which would invalidate the signatures; copy with --remove-signatures, or without the change`);
    }
  };
  await refuseIfSigned(); // format conversion is known before any transfer
  // Nothing to do: the destination already names this exact manifest (a registry stores a manifest only when all
  // it references is there). Skips one HEAD per blob, which is most of a no-op copy's time.
  const upToDate = !compressTo && dst.currentDigest !== undefined && (await dst.currentDigest()) === top.blob.digest;
  if (!upToDate) {
    const ordered = [...blobs.values()].sort((a, b) => b.size - a.size);
    await Promise.all(ordered.map((desc) => limit(() => (compressTo && needsRecompression(desc, compressTo) ? recompressOne(desc) : copyBlob(desc)))));
    if (replaced.size) top = replaceLayers(top, replaced, src.name);
    await refuseIfSigned(); // and recompression only after it
  } else {
    stats.blobsSkipped = blobs.size;
  }

  // Manifests bottom-up: children (in parallel) before their index.
  const putTree = async (n: Node, topLevel: boolean): Promise<void> => {
    await Promise.all(n.children.map((c) => putTree(c, false)));
    const skipped = !topLevel && dst.hasManifest !== undefined && await dst.hasManifest(n.blob.digest);
    if (!skipped) await dst.putManifest(n.blob, { topLevel });
    emit({ type: 'manifest', digest: n.blob.digest, mediaType: n.blob.mediaType, skipped });
  };
  if (upToDate) emit({ type: 'manifest', digest: top.blob.digest, mediaType: top.blob.mediaType, skipped: true });
  else await putTree(top, true);

  for (const tag of opts.additionalTags ?? []) {
    if (!dst.putTaggedManifest) throw new HoistError('NOT_SUPPORTED', `${dst.name}: --additional-tag needs a registry destination`, { exitCode: 2 });
    await dst.putTaggedManifest(top.blob, tag);
  }

  const found = await signatures;
  if (found.length) {
    for (const sig of found) {
      const sigNode = await loadNode(src, sig.manifest);
      const sigBlobs = new Map<string, Descriptor>();
      collectBlobs(sigNode, sigBlobs);
      await Promise.all([...sigBlobs.values()].map((d) => limit(() => copyBlob(d))));
      if (sig.kind === 'tag') await dst.putTaggedManifest!(sig.manifest, sig.tag);
      else await dst.putReferrer!(sig.manifest, sig.subject);
      emit({ type: 'signature', digest: sig.manifest.digest, kind: sig.kind });
    }
  }

  return { digest: top.blob.digest, mediaType: top.blob.mediaType, ...stats };
}

function collectBlobs(n: Node, into: Map<string, Descriptor>): void {
  if (n.parsed.kind === 'image') {
    for (const d of manifestReferences(n.parsed)) if (!into.has(d.digest)) into.set(d.digest, d);
  }
  for (const c of n.children) collectBlobs(c, into);
}

/**
 * Copies one blob (skip if present, mount within a registry, else stream source → destination); each digest at most
 * once per copy, however many images share it.
 */
function blobCopier(
  src: ImageSource,
  dst: ImageDestination,
  emit: (e: CopyEvent) => void,
  stats: { blobsCopied: number; blobsSkipped: number; bytesCopied: number },
): (desc: Descriptor, open?: () => Readable) => Promise<void> {
  const seen = new Map<string, Promise<void>>();
  const transferOnce = async (desc: Descriptor, open?: () => Readable): Promise<void> => {
    const source = open ? open() : await src.getBlob(desc);
    // Count bytes in a pass-through: a 'data' listener on the source would start it flowing before the
    // destination is ready to read, and bytes would be lost.
    let bytes = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        emit({ type: 'blob-progress', digest: desc.digest, size: desc.size, bytes });
        cb(null, chunk);
      },
    });
    // The destination's pipeline reports errors; these listeners only keep a late error (after the copy already
    // failed on another blob) from becoming an uncaught exception.
    source.on('error', (e) => counted.destroy(e));
    counted.on('error', () => {});
    source.pipe(counted);
    try {
      await dst.putBlob(desc, counted);
    } catch (e) {
      destroyQuietly(source);
      destroyQuietly(counted);
      throw e;
    }
    // A destination may return without reading (another copy in this process just stored the blob): close the
    // source, or its connection stays busy and the client pool never closes.
    if (!source.readableEnded) destroyQuietly(source);
  };
  const copyOne = async (desc: Descriptor, open?: () => Readable): Promise<void> => {
    if (await dst.hasBlob(desc)) {
      stats.blobsSkipped++;
      emit({ type: 'blob-skip', digest: desc.digest, size: desc.size });
      return;
    }
    if (!open && src.mountFrom && dst.mountBlob && await dst.mountBlob(desc, src.mountFrom)) {
      stats.blobsSkipped++;
      emit({ type: 'blob-mount', digest: desc.digest, size: desc.size, from: src.mountFrom.repository });
      return;
    }
    emit({ type: 'blob-start', digest: desc.digest, size: desc.size });
    // An interrupted upload cannot resume mid-stream (the bytes are gone), but the source can be read again:
    // re-fetch and re-send, a few times, before giving up.
    for (let attempt = 1; ; attempt++) {
      try {
        await transferOnce(desc, open);
        break;
      } catch (e) {
        if (attempt >= UPLOAD_ATTEMPTS || !(e instanceof HoistError) || e.code !== 'UPLOAD_FAILED') throw e;
        emit({ type: 'blob-retry', digest: desc.digest, size: desc.size, attempt });
      }
    }
    stats.blobsCopied++;
    stats.bytesCopied += desc.size;
    emit({ type: 'blob-done', digest: desc.digest, size: desc.size });
  };
  return (desc, open) => {
    let p = seen.get(desc.digest);
    if (!p) {
      p = copyOne(desc, open);
      seen.set(desc.digest, p);
    }
    return p;
  };
}

type FoundSignature =
  | { kind: 'tag'; tag: string; manifest: ManifestBlob }
  | { kind: 'referrer'; subject: Descriptor; manifest: ManifestBlob };

/**
 * The signatures of every manifest in the source graph: containers/image's `sha256-<hex>.sig` tags and OCI referrers
 * (cosign v3 bundles, SBOMs, attestations). Only what the destination can store is looked for.
 */
async function findSignatures(src: ImageSource, dst: ImageDestination, top: Node): Promise<FoundSignature[]> {
  const nodes: Node[] = [];
  const walk = (n: Node): void => { nodes.push(n); n.children.forEach(walk); };
  walk(top);
  const found: FoundSignature[] = [];
  await Promise.all(nodes.map(async (n) => {
    const subject: Descriptor = { mediaType: n.blob.mediaType, digest: n.blob.digest, size: n.blob.bytes.length };
    if (src.getTaggedManifest && dst.putTaggedManifest) {
      const tag = `${digestToTag(n.blob.digest)}.sig`;
      const m = await src.getTaggedManifest(tag);
      if (m) found.push({ kind: 'tag', tag, manifest: m });
    }
    if (src.listReferrers && dst.putReferrer) {
      for (const r of await src.listReferrers(n.blob.digest)) {
        found.push({ kind: 'referrer', subject, manifest: await src.getManifest(r.digest) });
      }
    }
  }));
  return found;
}

async function loadNode(src: ImageSource, blob: ManifestBlob): Promise<Node> {
  const parsed = parseManifest(blob.bytes, `${src.name} manifest ${blob.digest}`, blob.mediaType);
  if (parsed.kind === 'image') return { blob, parsed, children: [] };
  const children = await Promise.all(parsed.index.manifests.map(async (d) => loadNode(src, await src.getManifest(d.digest))));
  return { blob, parsed, children };
}

function pickPlatform(top: Node, want: Platform, name: string): Node {
  if (top.parsed.kind !== 'index') return top;
  const d = bestPlatformMatch(want, top.parsed.index.manifests);
  const child = d && top.children.find((c) => c.blob.digest === d.digest);
  if (!child) {
    throw new HoistError('PLATFORM_NOT_FOUND', `${name}: no image for platform ${formatPlatform(want)} in the index (has ${platformsOf(top.parsed.index).join(', ') || 'none'}); pick one with --platform`);
  }
  return child.parsed.kind === 'index' ? pickPlatform(child, want, name) : child;
}

/** A new index that lists only the wanted platforms; other fields and the descriptors' bytes are kept as they were. */
function filterIndex(top: Node, wanted: Platform[], name: string): Node {
  if (top.parsed.kind !== 'index') return top;
  const index = top.parsed.index;
  const keep = index.manifests.filter((d) => d.platform && wanted.some((w) => platformMatches(w, d.platform!)));
  for (const w of wanted) {
    if (!keep.some((d) => platformMatches(w, d.platform!))) {
      throw new HoistError('PLATFORM_NOT_FOUND', `${name}: no image for platform ${formatPlatform(w)} in the index (has ${platformsOf(index).join(', ')}); pick one of those with --platform`);
    }
  }
  if (keep.length === index.manifests.length) return top;
  const keepDigests = new Set(keep.map((d) => d.digest));
  // Re-serialize from the raw JSON, not the parsed form, so fields hoist doesn't model survive.
  const raw = JSON.parse(top.blob.bytes.toString('utf8')) as ImageIndex;
  raw.manifests = raw.manifests.filter((d) => keepDigests.has(d.digest));
  const bytes = Buffer.from(JSON.stringify(raw));
  const blob: ManifestBlob = { bytes, mediaType: top.blob.mediaType, digest: digestBytes(bytes) };
  const parsed = parseManifest(bytes, `${name} filtered index`, top.blob.mediaType);
  return { blob, parsed, children: top.children.filter((c) => keepDigests.has(c.blob.digest)) };
}

/** The graph with layer descriptors replaced (recompressed), manifests and indexes above them rebuilt. */
function replaceLayers(n: Node, replaced: Map<string, Descriptor>, name: string): Node {
  const where = `${name} manifest ${n.blob.digest}`;
  if (n.parsed.kind === 'image') {
    const raw = JSON.parse(n.blob.bytes.toString('utf8')) as { layers: Descriptor[] };
    let changed = false;
    raw.layers = raw.layers.map((l) => {
      const r = replaced.get(l.digest);
      if (!r) return l;
      changed = true;
      return { ...l, mediaType: r.mediaType, digest: r.digest, size: r.size };
    });
    if (!changed) return n;
    const bytes = Buffer.from(JSON.stringify(raw));
    return { blob: { bytes, mediaType: n.blob.mediaType, digest: digestBytes(bytes) }, parsed: parseManifest(bytes, where, n.blob.mediaType), children: [] };
  }
  const children = n.children.map((c) => replaceLayers(c, replaced, name));
  if (children.every((c, i) => c === n.children[i])) return n;
  return indexOver(n, children, formatOfMediaType(n.blob.mediaType) ?? 'oci', where);
}

/** Index `n` rewritten in `format` to list `children` (new versions of its children, in the same order). */
function indexOver(n: Node, children: Node[], format: ManifestFormat, where: string): Node {
  const map = new Map<string, Descriptor>();
  n.children.forEach((old, i) => {
    const c = children[i]!;
    map.set(old.blob.digest, { mediaType: c.blob.mediaType, digest: c.blob.digest, size: c.blob.bytes.length });
  });
  const bytes = convertIndex(JSON.parse(n.blob.bytes.toString('utf8')) as Record<string, unknown>, format, map, where);
  const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType: string }).mediaType;
  return { blob: { bytes, mediaType, digest: digestBytes(bytes) }, parsed: parseManifest(bytes, where, mediaType), children };
}

/** The format to convert to, when the destination cannot store some manifest of the graph as it is. */
function neededFormat(n: Node, formats: ('oci' | 'docker')[] | undefined): ManifestFormat | undefined {
  if (!formats) return undefined;
  const fits = (m: Node): boolean => formats.includes(formatOfMediaType(m.blob.mediaType) ?? 'oci') && m.children.every(fits);
  return fits(n) ? undefined : formats[0];
}

/** The same graph with every manifest in format `to` (children first, so an index lists the converted digests). */
function convertNode(n: Node, to: ManifestFormat, name: string): Node {
  const where = `${name} manifest ${n.blob.digest}`;
  const children = n.children.map((c) => convertNode(c, to, name));
  if (formatOfMediaType(n.blob.mediaType) === to && children.every((c, i) => c === n.children[i])) return n;
  if (n.parsed.kind === 'index') return indexOver(n, children, to, where);
  const bytes = convertImageManifest(JSON.parse(n.blob.bytes.toString('utf8')) as Record<string, unknown>, to, where);
  const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType: string }).mediaType;
  const blob: ManifestBlob = { bytes, mediaType, digest: digestBytes(bytes) };
  return { blob, parsed: parseManifest(bytes, where, mediaType), children };
}

function platformsOf(index: ImageIndex): string[] {
  return index.manifests.filter((d) => d.platform).map((d) => formatPlatform(d.platform!));
}

function destroyQuietly(s: Readable): void {
  s.on('error', () => {});
  s.destroy();
}
