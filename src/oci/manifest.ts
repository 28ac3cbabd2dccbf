/**
 * Parsing and validating image manifests and indexes (OCI image-spec 1.1, Docker v2 schema 2 and manifest lists).
 * Every field a copy or a run relies on is checked here, once, so the rest of hoist can trust the shapes and a
 * broken document fails with the field that is wrong instead of deep inside a transfer.
 * Unknown fields are allowed, as the spec asks; the exact bytes stay with the caller (digests are over them).
 */
import { HoistError } from '../errors.ts';
import { verifyBytes } from './digest.ts';
import {
  checkArray, checkDigest, checkNonNegativeInteger, checkObject, checkString, checkStringArray, checkStringMap,
  fail, fieldPath, parseJsonObject, optional, required, type JsonContext, type JsonObject,
} from './json-check.ts';
import {
  DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST, isImageManifest, isIndex, isManifest,
} from './mediatype.ts';
import type { Descriptor, ImageIndex, ImageManifest, ManifestBlob, Platform } from './types.ts';

export type ParsedManifest =
  | { kind: 'index'; mediaType: string; index: ImageIndex }
  | { kind: 'image'; mediaType: string; manifest: ImageManifest };

/** Content types that say nothing about which manifest it is (plain registries and file servers send them). */
const UNINFORMATIVE_TYPES = new Set(['', 'application/json', 'application/octet-stream', 'text/plain']);

/** `application/vnd.oci.image.manifest.v1+json; charset=utf-8` → the bare type, or undefined when it says nothing. */
function informativeType(declared: string | undefined): string | undefined {
  if (declared === undefined) return undefined;
  const bare = declared.split(';')[0]!.trim().toLowerCase();
  return UNINFORMATIVE_TYPES.has(bare) ? undefined : bare;
}

function schema1Error(where: string): HoistError {
  return new HoistError('SCHEMA1',
    `${where}: Docker schema 1 manifests are not supported (deprecated since 2017); re-push the image with a current docker or podman`);
}

/**
 * Parses manifest bytes. The media type comes from the document's own `mediaType`, else `declaredMediaType`
 * (the registry's Content-Type or the referring descriptor's mediaType), else from the shape.
 * Throws HoistError: BAD_MANIFEST (JSON or a field), SCHEMA1, UNSUPPORTED_MEDIA_TYPE, MEDIA_TYPE_MISMATCH.
 */
export function parseManifest(bytes: Uint8Array, where: string, declaredMediaType?: string): ParsedManifest {
  const ctx: JsonContext = { where, what: 'manifest', code: 'BAD_MANIFEST' };
  const doc = parseJsonObject(bytes, ctx);
  const docType = doc['mediaType'];
  if (docType !== undefined) checkString(ctx, docType, 'mediaType');
  const declared = informativeType(declaredMediaType);

  if (doc['schemaVersion'] === 1 || isSchema1Type(docType as string | undefined) || isSchema1Type(declared)) {
    throw schema1Error(where);
  }
  if (typeof docType === 'string' && declared !== undefined && docType !== declared) {
    throw new HoistError('MEDIA_TYPE_MISMATCH',
      `${where}: manifest says its mediaType is "${docType}" but it was served or referenced as "${declared}"; the source is inconsistent`);
  }

  const mediaType = (docType as string | undefined) ?? declared ?? typeByShape(doc);
  if (mediaType === undefined) {
    fail(ctx, 'mediaType', 'missing, and the document has neither "manifests" nor "config" and "layers" to tell what it is');
  }
  if (!isManifest(mediaType)) {
    throw new HoistError('UNSUPPORTED_MEDIA_TYPE',
      `${where}: unsupported manifest media type "${mediaType}"; hoist reads OCI image manifests and indexes and Docker schema 2 manifests and manifest lists`);
  }
  if (doc['schemaVersion'] !== 2) {
    fail(ctx, 'schemaVersion', `must be 2, got ${doc['schemaVersion'] === undefined ? 'nothing' : JSON.stringify(doc['schemaVersion'])}`);
  }

  optional(ctx, doc, 'artifactType', '', checkString);
  optional(ctx, doc, 'annotations', '', checkStringMap);
  optional(ctx, doc, 'subject', '', checkDescriptor);
  if (isIndex(mediaType)) {
    const manifests = required(ctx, doc, 'manifests', '', checkArray);
    manifests.forEach((d, i) => checkDescriptor(ctx, d, fieldPath('manifests', i)));
    return { kind: 'index', mediaType, index: doc as unknown as ImageIndex };
  }
  required(ctx, doc, 'config', '', checkDescriptor);
  const layers = required(ctx, doc, 'layers', '', checkArray);
  layers.forEach((d, i) => checkDescriptor(ctx, d, fieldPath('layers', i)));
  return { kind: 'image', mediaType, manifest: doc as unknown as ImageManifest };
}

/** Parses a manifest as a transport hands it over (its mediaType as the declared type). */
export function parseManifestBlob(m: ManifestBlob, where: string): ParsedManifest {
  return parseManifest(m.bytes, where, m.mediaType);
}

function isSchema1Type(mt: string | undefined): boolean {
  // Not mediatype.isSchema1: that also counts plain application/json, which says nothing once a document has its own type.
  return mt === DOCKER_SCHEMA1 || mt === DOCKER_SCHEMA1_SIGNED;
}

function typeByShape(doc: JsonObject): string | undefined {
  if (doc['manifests'] !== undefined) return OCI_INDEX;
  if (doc['config'] !== undefined && doc['layers'] !== undefined) return OCI_MANIFEST;
  return undefined;
}

/** Validates one descriptor (mediaType, digest, size, urls, annotations, data, platform, artifactType). */
export function checkDescriptor(ctx: JsonContext, v: unknown, path: string): Descriptor {
  const d = checkObject(ctx, v, path);
  const mediaType = required(ctx, d, 'mediaType', path, checkString);
  if (mediaType === '') fail(ctx, fieldPath(path, 'mediaType'), 'must not be empty');
  const digest = required(ctx, d, 'digest', path, checkDigest);
  const size = required(ctx, d, 'size', path, checkNonNegativeInteger);
  optional(ctx, d, 'urls', path, checkStringArray);
  optional(ctx, d, 'annotations', path, checkStringMap);
  optional(ctx, d, 'artifactType', path, checkString);
  optional(ctx, d, 'platform', path, checkPlatform);
  const data = d['data'];
  if (data !== undefined) {
    // Embedded data must be the content itself (image-spec "Embedded content"); check it like any fetched blob.
    const dataPath = fieldPath(path, 'data');
    const b64 = checkString(ctx, data, dataPath);
    if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) fail(ctx, dataPath, 'is not valid base64');
    verifyBytes(Buffer.from(b64, 'base64'), digest, `${ctx.where}: ${dataPath}`, size);
  }
  return d as unknown as Descriptor;
}

export function checkPlatform(ctx: JsonContext, v: unknown, path: string): Platform {
  const p = checkObject(ctx, v, path);
  required(ctx, p, 'os', path, checkString);
  required(ctx, p, 'architecture', path, checkString);
  optional(ctx, p, 'variant', path, checkString);
  optional(ctx, p, 'os.version', path, checkString);
  optional(ctx, p, 'os.features', path, checkStringArray);
  optional(ctx, p, 'features', path, checkStringArray);
  return p as unknown as Platform;
}

/**
 * What a manifest needs present for a copy: the config then the layers of an image, or the manifests of an index.
 * `subject` is not included: it points at another image, it is not a part of this one.
 */
export function manifestReferences(p: ParsedManifest): Descriptor[] {
  return p.kind === 'index' ? [...p.index.manifests] : [p.manifest.config, ...p.manifest.layers];
}

/** The config descriptor of an image manifest; an index has none (pick a platform first). */
export function configDescriptorOf(p: ParsedManifest, where = 'manifest'): Descriptor {
  if (p.kind === 'index') {
    throw new HoistError('NOT_AN_IMAGE',
      `${where}: is an image index (${p.mediaType}), which has no config; choose one platform of it (e.g. --platform linux/amd64)`);
  }
  return p.manifest.config;
}

/** The descriptor that points at a manifest as stored: its type, digest and byte length. */
export function manifestDescriptor(m: ManifestBlob): Descriptor {
  return { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
}

/** True for Docker's own manifest types (as opposed to OCI's), e.g. to keep a copy in the format it came in. */
export function isDockerManifestType(mediaType: string): boolean {
  return mediaType.startsWith('application/vnd.docker.') && (isIndex(mediaType) || isImageManifest(mediaType));
}
