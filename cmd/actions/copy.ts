import { writeFile } from 'node:fs/promises';
import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { openDestination, openSource } from '../../src/transport/index.ts';
import { formatImageReference, parseImageReference, type ImageRef } from '../../src/transport/reference.ts';
import { hostPlatform, parsePlatform } from '../../src/oci/platform.ts';
import { parseDockerReference, formatReference, type DockerReference } from '../../src/oci/reference.ts';
import type { ManifestBlob, Platform } from '../../src/oci/types.ts';
import type { RegistryAccess } from '../../src/transport/types.ts';
import { copyImage, type CopyOptions } from '../../src/copy/engine.ts';
import { parseFormatFlag } from '../../src/copy/convert.ts';
import { makeProgress } from '../progress.ts';
import { copyRegistryAccess, overridePlatform, parseIntFlag, type CopyRegistryFlags, type OverrideFlags } from '../registry-flags.ts';
import { loadImagePolicy, type PolicyFlags } from '../policy-flags.ts';
import { storeRoot } from '../../src/store/root.ts';
import { pinTopManifest, type ImagePolicy } from '../../src/sign/policy-check.ts';

interface CopyFlags extends CopyRegistryFlags, OverrideFlags, PolicyFlags {
  all?: boolean;
  multiArch?: string;
  platform: string[];
  digestfile?: string;
  quiet?: boolean;
  progress?: string;
  format?: string;
  preserveDigests?: boolean;
  removeSignatures?: boolean;
  additionalTag: string[];
  destCompressFormat?: 'gzip' | 'zstd';
  destCompressLevel?: string;
  allTags?: boolean;
  jobs?: string;
  imageParallelCopies?: string;
  signBySigstorePrivateKey?: string;
  signPassphraseFile?: string;
  signIdentity?: string;
  signBy?: string;
  signBySqFingerprint?: string;
  signBySigstore?: string;
  /** commander's --no-unpack: false. */
  unpack?: boolean;
}

/** Tags copied at once by --all-tags (each copy has its own blob parallelism). */
const TAG_PARALLELISM = 3;

export default async function copy(g: GlobalOptions, srcArg: string, dstArg: string, flags: CopyFlags): Promise<number> {
  const srcRef = parseImageReference(srcArg);
  const dstRef = parseImageReference(dstArg);
  const platforms = selectedPlatforms(flags);
  const srcAccess = await copyRegistryAccess(flags, 'src');
  const dstAccess = await copyRegistryAccess(flags, 'dest');
  const options = copyOptions(flags, platforms);

  const signer = await prepareSigning(flags, dstRef);
  // The source's signature policy (skopeo's --policy / --insecure-policy), read before anything is opened.
  const policy = await loadImagePolicy(flags, storeRoot(g.root), g);
  if (flags.allTags) {
    if (signer) throw new HoistError('BAD_FLAG', '--all-tags does not sign: copy, then hoist sign each tag', { exitCode: 2 });
    return copyAllTags(g, srcRef, dstRef, srcAccess, dstAccess, options, flags, policy);
  }

  const progress = makeProgress(flags.progress, flags.quiet);
  const opened = await openSource(srcRef, { storeRoot: g.root, registry: srcAccess });
  let digest: string;
  try {
    // Judged on the source's top-level manifest before the destination is even opened; the copy uses that manifest.
    const src = await policy.admit(srcRef, opened);
    const dst = await openDestination(dstRef, { storeRoot: g.root, platform: platforms[0], registry: dstAccess });
    const result = await copyImage(src, dst, { ...options, onEvent: progress?.onEvent });
    progress?.done(result);
    digest = result.digest;
  } finally {
    await opened.close();
  }
  if (signer) await signer(g, dstAccess, flags.quiet === true || flags.progress === 'quiet');
  if (flags.digestfile) await writeFile(flags.digestfile, digest);
  if (dstRef.transport === 'store' && flags.unpack !== false) await unpackCopied(g, dstRef.name, digest, platforms, flags);
  return 0;
}

/**
 * As podman's pull: the image just stored is unpacked into the snapshot cache for the platform `hoist run` would
 * pick (the one --platform/--override-* selected, else this machine's), so its first run doesn't unpack. Best
 * effort: a failure is one warning line, the copy still succeeds, and the first run unpacks.
 */
async function unpackCopied(g: GlobalOptions, name: string, digest: string, platforms: Platform[], flags: CopyFlags): Promise<void> {
  const { Store } = await import('../../src/store/store.ts');
  const { unpackStoredImage } = await import('../../src/runtime/unpack-image.ts');
  const { normalizeStoreName } = await import('../../src/transport/store.ts');
  const store = await Store.open(g.root);
  const quiet = flags.quiet === true || flags.progress === 'quiet';
  let top;
  try {
    top = await store.resolve(digest);
  } catch {
    return; // renamed or removed by another process meanwhile: nothing of ours to unpack
  }
  await unpackStoredImage(store, top, normalizeStoreName(name), {
    platform: platforms.length === 1 ? platforms[0]! : hostPlatform(),
    debug: g.debug,
    ...(quiet ? {} : { onProgress: (line: string) => process.stderr.write(`${line}\n`) }),
    onWarning: (line: string) => process.stderr.write(`hoist: ${line}\n`),
  });
}

type Signer = (g: GlobalOptions, access: RegistryAccess, quiet: boolean) => Promise<void>;

/**
 * skopeo's signing flags. Everything that can fail (unsupported kinds, no identity, key, passphrase) is checked before
 * the copy starts; the returned signer signs the destination's top manifest afterwards, in both formats (skopeo has
 * no format flag; containers tools read the simple signature, cosign v3 the bundle).
 */
async function prepareSigning(flags: CopyFlags, dstRef: ImageRef): Promise<Signer | undefined> {
  if (flags.signBy !== undefined || flags.signBySqFingerprint !== undefined) {
    throw new HoistError('NOT_SUPPORTED', `--${flags.signBy !== undefined ? 'sign-by' : 'sign-by-sq-fingerprint'}: GPG / OpenPGP signing is not supported by hoist; sign with --sign-by-sigstore-private-key KEY`, { exitCode: 2 });
  }
  if (flags.signBySigstorePrivateKey === undefined && flags.signBySigstore === undefined) {
    if (flags.signPassphraseFile !== undefined || flags.signIdentity !== undefined) {
      throw new HoistError('BAD_FLAG', `--${flags.signPassphraseFile !== undefined ? 'sign-passphrase-file' : 'sign-identity'} needs --sign-by-sigstore-private-key KEY`, { exitCode: 2 });
    }
    return undefined; // nothing to sign: the signing code is not even loaded
  }
  const { KEYLESS_MESSAGE, loadPrivateKey } = await import('./sign.ts');
  if (flags.signBySigstore !== undefined) throw new HoistError('NOT_SUPPORTED', `--sign-by-sigstore: ${KEYLESS_MESSAGE}; use --sign-by-sigstore-private-key KEY`, { exitCode: 2 });
  if (flags.signBySigstorePrivateKey === undefined) return undefined;
  const { signingIdentity, openSignTarget, signImage } = await import('../../src/sign/sign-image.ts');
  if (dstRef.transport === 'oci-archive' || dstRef.transport === 'docker-archive') {
    throw new HoistError('NOT_SUPPORTED', `${formatImageReference(dstRef)}: an archive cannot hold signatures; copy to a registry, an oci: layout or the local store to sign`, { exitCode: 2 });
  }
  const identity = signingIdentity(dstRef, 'sign-identity', flags.signIdentity);
  const privateKey = await loadPrivateKey('sign-by-sigstore-private-key', flags.signBySigstorePrivateKey, flags.signPassphraseFile);
  return async (g, access, quiet) => {
    const target = await openSignTarget(dstRef, { storeRoot: g.root, registry: access });
    try {
      await signImage(target, {
        privateKey, identity, formats: { simple: true, bundle: true },
        ...(quiet ? {} : { onInfo: (line: string) => process.stderr.write(`${line}\n`) }),
      });
    } finally {
      await target.source.close();
    }
  };
}


/** --platform, else --override-*, else --multi-arch system → this machine; otherwise every platform (empty list). */
function selectedPlatforms(flags: CopyFlags): Platform[] {
  if (flags.multiArch === 'index-only') {
    throw new HoistError('NOT_SUPPORTED', '--multi-arch index-only is not supported by hoist; use --multi-arch all (the default) or system', { exitCode: 2 });
  }
  if (flags.platform.length > 0) return flags.platform.map((p) => parsePlatform(p));
  const override = overridePlatform(flags, hostPlatform());
  if (override) return [override];
  if (flags.multiArch === 'system') return [hostPlatform()];
  return [];
}

function copyOptions(flags: CopyFlags, platforms: Platform[]): CopyOptions {
  const opts: CopyOptions = { platforms };
  if (flags.format) opts.format = parseFormatFlag(flags.format);
  if (flags.preserveDigests) opts.preserveDigests = true;
  if (flags.removeSignatures) opts.removeSignatures = true;
  if (flags.additionalTag.length > 0) opts.additionalTags = flags.additionalTag;
  if (flags.jobs !== undefined && flags.imageParallelCopies !== undefined && flags.jobs !== flags.imageParallelCopies) {
    throw new HoistError('BAD_FLAG', `--jobs ${flags.jobs} and --image-parallel-copies ${flags.imageParallelCopies} disagree; they are the same setting, pass one`, { exitCode: 2 });
  }
  const jobs = flags.jobs ?? flags.imageParallelCopies;
  if (jobs !== undefined) opts.jobs = parseIntFlag(flags.jobs !== undefined ? 'jobs' : 'image-parallel-copies', jobs, 1);
  if (flags.destCompressFormat) opts.compressFormat = flags.destCompressFormat;
  if (flags.destCompressLevel !== undefined) {
    if (!flags.destCompressFormat) {
      throw new HoistError('BAD_FLAG', '--dest-compress-level needs --dest-compress-format gzip|zstd', { exitCode: 2 });
    }
    opts.compressLevel = parseIntFlag('dest-compress-level', flags.destCompressLevel);
    const max = flags.destCompressFormat === 'gzip' ? 9 : 22;
    if (opts.compressLevel < 1 || opts.compressLevel > max) {
      throw new HoistError('BAD_FLAG', `--dest-compress-level ${opts.compressLevel}: ${flags.destCompressFormat} levels are 1 to ${max}`, { exitCode: 2 });
    }
  }
  return opts;
}

/** A docker:// reference that names a repository only (what --all-tags copies from and to). */
function repositoryOnly(ref: ImageRef, arg: string, side: string): DockerReference {
  if (ref.transport !== 'docker') {
    throw new HoistError('BAD_FLAG', `--all-tags: the ${side} must be a docker:// repository, not ${arg}`, { exitCode: 2 });
  }
  const r = parseDockerReference(ref.ref);
  if (r.tag !== undefined || r.digest !== undefined) {
    throw new HoistError('BAD_FLAG', `--all-tags: the ${side} ${arg} names a tag or digest; give the repository alone (docker://${r.domain}/${r.path})`, { exitCode: 2 });
  }
  return r;
}

async function copyAllTags(
  g: GlobalOptions, srcRef: ImageRef, dstRef: ImageRef, srcAccess: RegistryAccess, dstAccess: RegistryAccess,
  options: CopyOptions, flags: CopyFlags, policy: ImagePolicy,
): Promise<number> {
  const from = repositoryOnly(srcRef, formatArg(srcRef), 'source');
  const to = repositoryOnly(dstRef, formatArg(dstRef), 'destination');
  if (flags.digestfile || (options.additionalTags?.length ?? 0) > 0) {
    throw new HoistError('BAD_FLAG', '--all-tags copies many images: --digestfile and --additional-tag do not apply; drop them', { exitCode: 2 });
  }
  const { default: pLimit } = await import('p-limit');
  const listing = await openSource(`docker://${formatReference(from)}`, { registry: srcAccess });
  const tags = await listing.listTags!();
  await listing.close();
  if (tags.length === 0) {
    throw new HoistError('NOT_FOUND', `docker://${formatReference(from)}: the repository has no tags to copy`);
  }
  const quiet = flags.quiet || flags.progress === 'quiet';
  const limit = pLimit(TAG_PARALLELISM);
  // Every tag is judged by the policy before any is copied, so a refused tag leaves nothing written (skopeo stops at
  // the refused tag after copying the earlier ones). Each tag's checked top-level manifest is kept, and copied.
  const checked = new Map<string, ManifestBlob>();
  const tagRef = (tag: string): ImageRef => ({ transport: 'docker', ref: formatReference({ ...from, tag }) });
  if (policy.file !== undefined) await settleAll(tags.map((tag) => limit(async () => {
    const src = await openSource(tagRef(tag), { storeRoot: g.root, registry: srcAccess });
    try {
      const top = await src.getManifest();
      await policy.check(tagRef(tag), top.digest, src);
      checked.set(tag, top);
    } finally {
      await src.close();
    }
  })));
  await settleAll(tags.map((tag) => limit(async () => {
    const src = await openSource(tagRef(tag), { storeRoot: g.root, registry: srcAccess });
    try {
      const dst = await openDestination(`docker://${formatReference({ ...to, tag })}`, { storeRoot: g.root, registry: dstAccess });
      // Bars of several images at once would interleave: one line per tag instead.
      const top = checked.get(tag);
      const result = await copyImage(top === undefined ? src : pinTopManifest(src, top), dst, options);
      if (!quiet) process.stderr.write(`Copied tag ${tag}: ${result.digest}\n`);
    } finally {
      await src.close();
    }
  })));
  return 0;
}

/** Waits for every task (none left running behind an error), then throws the first failure. */
async function settleAll(tasks: Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(tasks)).find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

function formatArg(r: ImageRef): string {
  return r.transport === 'docker' ? `docker://${r.ref}` : r.transport;
}
