/**
 * Signing an image where it is, without pulling it: only manifests are read (the one the reference names and, with
 * `recursive`, the children of an index); no layer or config is ever fetched. Each manifest gets a simple-signing
 * signature in its `.sig` attachment and/or a sigstore bundle referrer.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { HoistError } from '../errors.ts';
import { parseManifest } from '../oci/manifest.ts';
import { formatReference, parseDockerReference, type DockerReference } from '../oci/reference.ts';
import type { Descriptor, ManifestBlob } from '../oci/types.ts';
import { openDestination, openSource } from '../transport/index.ts';
import { formatImageReference, type ImageRef } from '../transport/reference.ts';
import type { ImageDestination, ImageSource, OpenOptions } from '../transport/types.ts';
import { appendSimpleSignature, putBundleReferrer } from './attachments.ts';
import { makeBundle } from './bundle.ts';
import { makeSimplePayload, signBytes } from './simple-signing.ts';

export interface SignFormats {
  simple: boolean;
  bundle: boolean;
}

/** `simple|bundle|both` → the formats to write. */
export function parseSignFormat(flag: string, value: string): SignFormats {
  switch (value) {
    case 'simple': return { simple: true, bundle: false };
    case 'bundle': return { simple: false, bundle: true };
    case 'both': return { simple: true, bundle: true };
  }
  throw new HoistError('BAD_FLAG', `--${flag} ${value}: expected simple, bundle or both`, { exitCode: 2 });
}

/** The form identities are written and compared in: tag kept, digest dropped when there is a tag (`host/repo:tag`), else `host/repo@digest`. */
function identityOf(r: DockerReference): string {
  if (r.tag !== undefined) return formatReference({ domain: r.domain, path: r.path, tag: r.tag });
  return formatReference(r);
}

/**
 * An identity as a user writes it (`--identity localhost:5000/app:1`, `busybox`), fully qualified. No tag is added:
 * a repository alone is kept as it is (cosign's style; containers/image's default rule then never accepts it).
 */
export function normalizeIdentity(flag: string, value: string): string {
  try {
    return identityOf(parseDockerReference(value));
  } catch (e) {
    throw new HoistError('BAD_FLAG', `--${flag} ${value}: not a docker reference (${(e as Error).message.replace(/^invalid image reference "[^"]*": /, '')}); write it as HOST/REPO:TAG`, { exitCode: 2 });
  }
}

/**
 * The docker reference an image is known by, for signing and for matchRepoDigestOrExact: docker:// references with
 * `:latest` added to a bare name (what skopeo signs as, and what containers/image compares with); store names
 * normalized. Undefined for oci: and archives, and for store IDs/digests, which name no repository and tag.
 */
export function imageIdentity(ref: ImageRef): string | undefined {
  if (ref.transport === 'docker') return identityOf(parseDockerReference(ref.ref, { defaultTag: true }));
  if (ref.transport !== 'store') return undefined;
  if (/^(?:sha256:[0-9a-f]+|[0-9a-f]{64})$/.test(ref.name)) return undefined;
  try {
    return identityOf(parseDockerReference(ref.name, { defaultTag: true }));
  } catch {
    return undefined;
  }
}

/** The identity to sign as: `--identity` if given, else the image's own; throws a usage error when there is none. */
export function signingIdentity(ref: ImageRef, flag: string, given: string | undefined): string {
  if (given !== undefined) return normalizeIdentity(flag, given);
  const id = imageIdentity(ref);
  if (id === undefined) {
    throw new HoistError('BAD_FLAG', `${formatImageReference(ref)} names no registry repository and tag to sign the image as; pass --${flag} HOST/REPO:TAG (the name it will be pulled by)`, { exitCode: 2 });
  }
  return id;
}

/** The image to sign, for reading (manifests, the current `.sig`) and for writing its attachments. */
export interface SignTarget {
  source: ImageSource;
  destination: ImageDestination;
}

/** Opens both sides of `ref` for signing. Only registries, oci: layouts and the store keep signatures. */
export async function openSignTarget(ref: ImageRef, opts: OpenOptions): Promise<SignTarget> {
  if (ref.transport === 'oci-archive' || ref.transport === 'docker-archive') {
    throw new HoistError('NOT_SUPPORTED', `${formatImageReference(ref)}: an archive cannot hold signatures; sign the image in a registry (docker://), an oci: layout or the local store`, { exitCode: 2 });
  }
  const source = await openSource(ref, opts);
  try {
    const destination = ref.transport === 'store'
      ? await (await import('../transport/store.ts')).openStoreAttachmentDestination(ref.name, opts)
      : await openDestination(ref, opts);
    return { source, destination };
  } catch (e) {
    await source.close();
    throw e;
  }
}

export interface SignOptions {
  privateKey: KeyObject;
  /** The docker reference simple signatures claim (see signingIdentity); needed when formats.simple. */
  identity?: string;
  formats: SignFormats;
  /** Also sign every manifest an index lists (and theirs). */
  recursive?: boolean;
  /** Progress lines (for stderr). */
  onInfo?: (line: string) => void;
}

/** The top manifest, and with `recursive` every manifest below it, each once; only manifests are fetched. */
async function manifestsToSign(src: ImageSource, recursive: boolean): Promise<ManifestBlob[]> {
  const top = await src.getManifest();
  const out: ManifestBlob[] = [top];
  if (!recursive) return out;
  const seen = new Set([top.digest]);
  const walk = async (m: ManifestBlob): Promise<void> => {
    const parsed = parseManifest(m.bytes, `${src.name} manifest ${m.digest}`, m.mediaType);
    if (parsed.kind !== 'index') return;
    for (const d of parsed.index.manifests) {
      if (seen.has(d.digest)) continue;
      seen.add(d.digest);
      const child = await src.getManifest(d.digest);
      out.push(child);
      await walk(child);
    }
  };
  await walk(top);
  return out;
}

/**
 * Signs the image `target` names; returns the signed manifest digests (the top one first). Everything is written, then
 * committed (a layout names the new attachments only then); on failure the destination is aborted.
 */
export async function signImage(target: SignTarget, opts: SignOptions): Promise<string[]> {
  const { source: src, destination: dst } = target;
  if (opts.formats.simple && opts.identity === undefined) throw new Error('signImage: simple signatures need an identity');
  const publicKey = createPublicKey(opts.privateKey);
  try {
    const manifests = await manifestsToSign(src, opts.recursive === true);
    for (const m of manifests) {
      const subject: Descriptor = { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
      if (opts.formats.simple) {
        const payload = makeSimplePayload(opts.identity!, m.digest);
        const r = await appendSimpleSignature(src, dst, m.digest, { payload, signature: signBytes(opts.privateKey, payload) });
        opts.onInfo?.(`Signed ${m.digest} as ${opts.identity} (simple signing, ${r.manifest.digest})`);
      }
      if (opts.formats.bundle) {
        const referrer = await putBundleReferrer(dst, subject, await makeBundle(opts.privateKey, publicKey, m.digest));
        opts.onInfo?.(`Signed ${m.digest} (sigstore bundle, referrer ${referrer.digest})`);
      }
    }
    await dst.commit();
    return manifests.map((m) => m.digest);
  } catch (e) {
    await dst.abort().catch(() => {});
    throw e;
  }
}
