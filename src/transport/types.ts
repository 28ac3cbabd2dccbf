/**
 * The one interface every transport implements (docker://, oci:, oci-archive:, docker-archive:, the local store),
 * so that src/copy is a single engine for every pair. Modelled on go-containerregistry's small
 * Image/Layer/Descriptor surface, split into a read side and a write side like containers/image.
 */
import type { Readable } from 'node:stream';
import type { Descriptor, ManifestBlob, Platform } from '../oci/types.ts';

export interface ImageSource {
  /** The reference as the user wrote it (normalized), for messages: `oci:/tmp/l:latest`. */
  readonly name: string;

  /**
   * Without a digest: the manifest (or index) the reference names.
   * With a digest: that manifest (a child of an index, a signature manifest…).
   * Bytes are exact and verified against `digest` when the digest is known in advance.
   */
  getManifest(digest?: string): Promise<ManifestBlob>;

  /**
   * A blob (config or layer) as a stream. The stream is verified against desc.digest and desc.size while it
   * is consumed and errors at the end on a mismatch, so a consumer that commits only after 'end' never
   * commits bad bytes.
   */
  getBlob(desc: Descriptor): Promise<Readable>;

  /** Tags known for this repository/layout, when the transport has the notion (registry tags, ref names). */
  listTags?(): Promise<string[]>;

  /** The manifest under another tag of the same repository (signature tags `sha256-<hex>.sig`); undefined if absent. */
  getTaggedManifest?(tag: string): Promise<ManifestBlob | undefined>;

  /** Referrers of a manifest (OCI 1.1: referrers API, or the `sha256-<hex>` tag fallback). */
  listReferrers?(digest: string): Promise<Descriptor[]>;

  /** Where blobs can be mounted from when the destination is the same registry: `host` and `repository`. */
  readonly mountFrom?: { host: string; repository: string };

  close(): Promise<void>;
}

export interface DestinationCapabilities {
  /** Can store an index (multi-platform). docker-archive cannot: the engine then picks one platform. */
  indexes: boolean;
  /** Layers must be stored uncompressed (docker-archive). The destination decompresses itself. */
  wantsUncompressedLayers: boolean;
  /**
   * Manifest formats the destination's readers understand; the engine converts others to the first one
   * (oci: layouts: ['oci'], as skopeo and umoci read nothing else). Undefined: any, kept byte for byte.
   */
  formats?: ('oci' | 'docker')[];
}

export interface ImageDestination {
  readonly name: string;
  readonly capabilities: DestinationCapabilities;

  /** True when the destination already holds this blob (so the engine skips it). */
  hasBlob(desc: Descriptor): Promise<boolean>;

  /**
   * Stores a blob from a stream. Verifies digest and size; a mismatch rejects and leaves nothing visible.
   * May be called concurrently for different blobs.
   */
  putBlob(desc: Descriptor, stream: Readable): Promise<void>;

  /** True when the destination already holds this manifest (by digest). */
  hasManifest?(digest: string): Promise<boolean>;

  /**
   * The digest the destination reference names right now, if it can tell cheaply. Only for destinations that store a
   * manifest only once everything it references is present (registries): equal digests mean nothing to copy.
   */
  currentDigest?(): Promise<string | undefined>;

  /**
   * Cross-repository mount (same registry): true when the blob is now in the destination without a transfer,
   * false when the registry declined (the engine then copies it).
   */
  mountBlob?(desc: Descriptor, from: { host: string; repository: string }): Promise<boolean>;

  /** Stores a manifest under an extra tag of the destination repository (signature tags, --additional-tag). */
  putTaggedManifest?(m: ManifestBlob, tag: string): Promise<void>;

  /** Stores a referrer of `subject` so that the destination lists it (referrers API or tag fallback index). */
  putReferrer?(m: ManifestBlob, subject: Descriptor): Promise<void>;

  /**
   * Stores a manifest. The engine calls this only after every blob it references is stored, and for an index
   * only after every child manifest. `topLevel` marks the manifest the reference should name.
   */
  putManifest(m: ManifestBlob, opts: { topLevel: boolean }): Promise<void>;

  /** Makes the result visible: tags the top-level manifest, renames an archive into place. Nothing is visible before. */
  commit(): Promise<void>;

  /** Abandons the copy: removes temp files; leaves any existing content untouched. Safe to call after a failure. */
  abort(): Promise<void>;
}

/** Options a transport may need when opening (credentials, TLS, platform choice are added by later issues). */
export interface OpenOptions {
  /** Platform to pick when a single-image destination receives an index (docker-archive). */
  platform?: Platform;
  /** The local store's root (the global --root flag); default storeRoot(). */
  storeRoot?: string;
  /** Registry access for docker:// references. */
  registry?: RegistryAccess;
}

/** What the CLI knows about reaching a registry (skopeo's flags), per side of a copy. */
export interface RegistryAccess {
  /** `USER[:PASS]` */
  creds?: string;
  authfile?: string;
  /** false: plain http or unverified TLS allowed. Default true (loopback registries may use plain http anyway). */
  tlsVerify?: boolean;
  certDir?: string;
  retryTimes?: number;
  retryDelayMs?: number;
}
