/**
 * Image signatures as they are attached to images, read and written through the transport interface only, so the
 * same code serves registries, oci: layouts and the local store:
 *
 * - simple signing: the `sha256-<hex>.sig` tag of the image's repository names an OCI manifest with one layer per
 *   signature (the payload blob; the signature in an annotation). Adding one = read that manifest, append a layer,
 *   upload the new blobs, put the manifest under the tag again (what containers/image and cosign do);
 * - sigstore bundles: a referrer manifest (artifactType = the bundle media type) whose single layer is the bundle,
 *   found through listReferrers (the referrers API, or the `sha256-<hex>` fallback index).
 *
 * Reading never trusts anything: entries come back with the raw bytes, and a blob that cannot be fetched or fails its
 * digest becomes an entry with `error`, so a verifier can report it beside the others instead of failing outright.
 */
import { Readable } from 'node:stream';
import { HoistError } from '../errors.ts';
import { digestBytes, digestToTag } from '../oci/digest.ts';
import { parseManifest } from '../oci/manifest.ts';
import { OCI_MANIFEST } from '../oci/mediatype.ts';
import type { Descriptor, ManifestBlob } from '../oci/types.ts';
import type { ImageDestination, ImageSource } from '../transport/types.ts';
import { readAll } from '../util/stream.ts';
import { BUNDLE_MEDIA_TYPE, bundleReferrerManifest } from './bundle.ts';
import { buildSigManifest, parseSigManifest } from './simple-signing.ts';

/** containers/image's iolimits.MaxSignatureBodySize: a payload or bundle larger than this is not read. */
export const MAX_SIGNATURE_BYTES = 4 * 1024 * 1024;

/** `sha256:abc…` → `sha256-abc….sig`, the tag simple signatures of that manifest live under. */
export function sigTag(manifestDigest: string): string {
  return `${digestToTag(manifestDigest)}.sig`;
}

export interface SimpleSignatureEntry {
  format: 'simple';
  /** The layer of the `.sig` manifest. */
  layer: Descriptor;
  /** Base64 signature from the layer's annotation. */
  signature: string;
  /** The payload bytes, when they could be read. */
  payload?: Buffer;
  /** Why the payload could not be read (missing blob, digest mismatch, too large). */
  error?: string;
}

export interface BundleEntry {
  format: 'bundle';
  /** The referrer manifest's descriptor as listed. */
  referrer: Descriptor;
  bundle?: Buffer;
  error?: string;
}

export type SignatureEntry = SimpleSignatureEntry | BundleEntry;

/** A small blob read whole (≤ MAX_SIGNATURE_BYTES) and verified by the source; HoistErrors become a reason. */
async function readSmallBlob(src: ImageSource, desc: Descriptor, what: string): Promise<{ bytes: Buffer } | { error: string }> {
  if (desc.size > MAX_SIGNATURE_BYTES) return { error: `${what} is ${desc.size} bytes, over the ${MAX_SIGNATURE_BYTES}-byte limit for signatures` };
  try {
    const stream = await src.getBlob(desc);
    return { bytes: await readAll(stream, MAX_SIGNATURE_BYTES, () => new HoistError('SIGNATURE_TOO_LARGE', `${what} is over ${MAX_SIGNATURE_BYTES} bytes`)) };
  } catch (e) {
    if (e instanceof HoistError) return { error: e.message };
    throw e;
  }
}

/** The simple signatures of `manifestDigest` (empty when there is no `.sig` tag or the source has no tags). */
export async function readSimpleSignatures(src: ImageSource, manifestDigest: string): Promise<SimpleSignatureEntry[]> {
  if (!src.getTaggedManifest) return [];
  const tag = sigTag(manifestDigest);
  const m = await src.getTaggedManifest(tag);
  if (m === undefined) return [];
  const entries = parseSigManifest(m.bytes, `${src.name} signature manifest ${tag}`);
  return Promise.all(entries.map(async (e): Promise<SimpleSignatureEntry> => {
    const out: SimpleSignatureEntry = { format: 'simple', layer: e.descriptor, signature: e.signature };
    if (e.payload !== undefined) {
      out.payload = e.payload;
      return out;
    }
    const r = await readSmallBlob(src, e.descriptor, `signature payload ${e.descriptor.digest}`);
    if ('bytes' in r) out.payload = r.bytes;
    else out.error = r.error;
    return out;
  }));
}

/** The sigstore bundles attached to `manifestDigest` as referrers. */
export async function readBundles(src: ImageSource, manifestDigest: string): Promise<BundleEntry[]> {
  if (!src.listReferrers) return [];
  const referrers = (await src.listReferrers(manifestDigest)).filter((d) => d.artifactType === BUNDLE_MEDIA_TYPE);
  return Promise.all(referrers.map(async (referrer): Promise<BundleEntry> => {
    const out: BundleEntry = { format: 'bundle', referrer };
    try {
      const m = await src.getManifest(referrer.digest);
      const where = `${src.name} bundle referrer ${referrer.digest}`;
      const parsed = parseManifest(m.bytes, where, m.mediaType);
      const layer = parsed.kind === 'image' ? parsed.manifest.layers.find((l) => l.mediaType === BUNDLE_MEDIA_TYPE) : undefined;
      if (layer === undefined) {
        out.error = `referrer ${referrer.digest} has no ${BUNDLE_MEDIA_TYPE} layer`;
        return out;
      }
      const r = await readSmallBlob(src, layer, `bundle ${layer.digest}`);
      if ('bytes' in r) out.bundle = r.bytes;
      else out.error = r.error;
    } catch (e) {
      if (!(e instanceof HoistError)) throw e;
      out.error = e.message;
    }
    return out;
  }));
}

/** Both kinds: simple signatures first, then bundles. */
export async function readSignatures(src: ImageSource, manifestDigest: string): Promise<SignatureEntry[]> {
  const [simple, bundles] = await Promise.all([readSimpleSignatures(src, manifestDigest), readBundles(src, manifestDigest)]);
  return [...simple, ...bundles];
}

/** Uploads a small blob unless the destination has it. */
async function putSmallBlob(dst: ImageDestination, descriptor: Descriptor, bytes: Buffer): Promise<void> {
  const desc: Descriptor = { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size };
  if (await dst.hasBlob(desc)) return;
  await dst.putBlob(desc, Readable.from([bytes]));
}

function noAttachments(dst: ImageDestination): HoistError {
  return new HoistError('NOT_SUPPORTED', `${dst.name}: cannot hold signatures; sign images in a registry (docker://), an oci: layout or the local store`, { exitCode: 2 });
}

/**
 * Appends one simple signature to the `.sig` manifest of `manifestDigest`: `src` reads the current one (the same image
 * as `dst`), the payload and a rebuilt config are uploaded, then the manifest is put under the tag. Returns the new
 * manifest; `added` is false when the exact signature was already there (nothing is written then).
 */
export async function appendSimpleSignature(
  src: ImageSource,
  dst: ImageDestination,
  manifestDigest: string,
  signature: { payload: Buffer; signature: string },
): Promise<{ manifest: ManifestBlob; added: boolean }> {
  if (!dst.putTaggedManifest) throw noAttachments(dst);
  const tag = sigTag(manifestDigest);
  const existing = src.getTaggedManifest ? await src.getTaggedManifest(tag) : undefined;
  const built = buildSigManifest(existing === undefined ? undefined : { manifest: existing.bytes }, signature);
  const manifest: ManifestBlob = { bytes: built.manifest, mediaType: OCI_MANIFEST, digest: digestBytes(built.manifest) };
  if (!built.added && existing !== undefined) return { manifest: existing, added: false };
  for (const b of built.blobs) await putSmallBlob(dst, b.descriptor, b.bytes);
  await dst.putTaggedManifest(manifest, tag);
  return { manifest, added: true };
}

/** Attaches a bundle to `subject` as a referrer: its blobs, then the referrer manifest. Returns that manifest. */
export async function putBundleReferrer(dst: ImageDestination, subject: Descriptor, bundle: Buffer): Promise<ManifestBlob> {
  if (!dst.putReferrer) throw noAttachments(dst);
  const built = bundleReferrerManifest(bundle, subject);
  for (const b of built.blobs) await putSmallBlob(dst, b.descriptor, b.bytes);
  const manifest: ManifestBlob = { bytes: built.manifest, mediaType: OCI_MANIFEST, digest: digestBytes(built.manifest) };
  await dst.putReferrer(manifest, subject);
  return manifest;
}
