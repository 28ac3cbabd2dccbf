/**
 * "Simple signing" signatures as containers/image stores them in sigstore attachments (cosign's legacy format):
 * a JSON payload naming the image, an ECDSA-SHA256 signature over its exact bytes, and the `sha256-<hex>.sig`
 * manifest that carries one layer per signature. Payload bytes and manifest bytes follow containers/image
 * (signature/internal/sigstore_payload.go, docker/docker_image_dest.go) so its readers accept ours as their own.
 */
import { sign, verify, type KeyObject } from 'node:crypto';
import { HoistError } from '../errors.ts';
import { digestBytes } from '../oci/digest.ts';
import { parseManifest } from '../oci/manifest.ts';
import { OCI_CONFIG, OCI_MANIFEST } from '../oci/mediatype.ts';
import type { Descriptor } from '../oci/types.ts';
import { goJson } from '../util/go-json.ts';

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const SIGNATURE_TYPE = 'cosign container image signature';
/** The `optional.creator` hoist writes, like containers/image's "containers/image 5.34.2". */
export const CREATOR = 'hoist 0.1.0';

export interface PayloadOptions {
  /** optional.creator; default CREATOR. */
  creator?: string;
  /** optional.timestamp, Unix seconds; default now. */
  timestamp?: number;
}

/**
 * The payload as containers/image's UntrustedSigstorePayload.MarshalJSON writes it: Go maps, so keys sorted
 * (critical{identity,image,type}, optional{creator,timestamp}), compact, with Go's HTML-safe escapes.
 */
export function makeSimplePayload(dockerReference: string, manifestDigest: string, opts: PayloadOptions = {}): Buffer {
  if (dockerReference === '' || manifestDigest === '') throw new Error('makeSimplePayload: empty reference or digest');
  const payload = {
    critical: {
      identity: { 'docker-reference': dockerReference },
      image: { 'docker-manifest-digest': manifestDigest },
      type: SIGNATURE_TYPE,
    },
    optional: { creator: opts.creator ?? CREATOR, timestamp: opts.timestamp ?? Math.floor(Date.now() / 1000) },
  };
  return Buffer.from(goJson(payload));
}

/** Base64 of the ASN.1 DER ECDSA signature over sha256(data) (sigstore's ECDSA SignerVerifier). */
export function signBytes(key: KeyObject, data: Buffer): string {
  return sign('sha256', data, key).toString('base64');
}

export interface SimplePayload {
  dockerReference: string;
  manifestDigest: string;
}

/** The parsed payload with the informational fields too. None of it is trusted until the signature verified. */
export interface SimplePayloadDetails extends SimplePayload {
  creator?: string;
  timestamp?: number;
}

/** What the caller expects the signature to cover; each given field must match exactly. */
export interface SimpleExpectation {
  manifestDigest?: string;
  dockerReference?: string;
}

/**
 * containers/image's VerifySigstorePayload: the signature first (nothing in the payload is looked at before),
 * then the payload's strict parse. With `expect`, also the exact digest and identity. Throws SIGNATURE_INVALID
 * with the reason; returns the signed digest and identity.
 */
export function verifySimpleSignature(pub: KeyObject, payload: Buffer, signatureB64: string, expect: SimpleExpectation = {}): SimplePayload {
  const b64 = signatureB64.replace(/[\r\n]/g, ''); // Go's base64 decoder skips newlines, nothing else
  if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) {
    throw invalid('the signature annotation is not valid base64');
  }
  let ok: boolean;
  try {
    ok = verify('sha256', payload, pub, Buffer.from(b64, 'base64'));
  } catch {
    ok = false; // a malformed DER signature throws in some OpenSSL versions; it is just as invalid
  }
  if (!ok) throw invalid('cryptographic signature verification failed (the payload was changed, or it was signed by another key)');
  const p = parseSimplePayload(payload);
  if (expect.manifestDigest !== undefined && p.manifestDigest !== expect.manifestDigest) {
    throw invalid(`the signature is for manifest ${p.manifestDigest}, not ${expect.manifestDigest}`);
  }
  if (expect.dockerReference !== undefined && p.dockerReference !== expect.dockerReference) {
    throw invalid(`the signature is for ${JSON.stringify(p.dockerReference)}, not ${JSON.stringify(expect.dockerReference)}`);
  }
  return { dockerReference: p.dockerReference, manifestDigest: p.manifestDigest };
}

/**
 * UntrustedSigstorePayload.strictUnmarshalJSON: top level exactly `critical` and `optional` (null allowed),
 * `critical` exactly `type`, `image`, `identity`, each of those exactly its one key; duplicate keys refused;
 * `optional.creator` a string, `optional.timestamp` an integral number, other optional keys ignored.
 * A JSON null where Go decodes into a string leaves it empty, as Go does. Throws SIGNATURE_INVALID.
 */
export function parseSimplePayload(payload: Buffer): SimplePayloadDetails {
  const root = strictParse(payload.toString('utf8'));
  const top = exactObject(root, ['critical', 'optional'], '');
  const out: SimplePayloadDetails = { dockerReference: '', manifestDigest: '' };
  const optional = top.get('optional')!;
  if (optional !== null) {
    const o = objectOf(optional, 'optional');
    if (o.has('creator')) out.creator = stringOf(o.get('creator')!, 'optional.creator');
    if (o.has('timestamp')) {
      const t = o.get('timestamp')!;
      if (t !== null && typeof t !== 'number') throw invalid(`optional.timestamp must be a number, got ${kind(t)}`);
      const n = t ?? 0;
      if (!Number.isInteger(n)) throw invalid('optional.timestamp is not an integer');
      out.timestamp = n;
    }
  }
  const critical = exactObject(top.get('critical')!, ['type', 'image', 'identity'], 'critical');
  const type = stringOf(critical.get('type')!, 'critical.type');
  if (type !== SIGNATURE_TYPE) throw invalid(`unrecognized signature type ${JSON.stringify(type)}`);
  const image = exactObject(critical.get('image')!, ['docker-manifest-digest'], 'critical.image');
  const digest = stringOf(image.get('docker-manifest-digest')!, 'critical.image.docker-manifest-digest');
  if (!/^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$/.test(digest)) {
    throw invalid(`invalid docker-manifest-digest value ${JSON.stringify(digest)}`);
  }
  out.manifestDigest = digest;
  const identity = exactObject(critical.get('identity')!, ['docker-reference'], 'critical.identity');
  out.dockerReference = stringOf(identity.get('docker-reference')!, 'critical.identity.docker-reference');
  if (out.dockerReference === '') throw invalid('critical.identity.docker-reference is empty');
  return out;
}

export interface SigEntry {
  descriptor: Descriptor;
  /** Set when the descriptor embeds the payload (`data`); otherwise the caller fetches descriptor.digest. */
  payload?: Buffer;
  signature: string;
}

/**
 * The `sha256-<hex>.sig` manifest after adding one signature, as containers/image's
 * putSignaturesToSigstoreAttachments writes it: an OCI image manifest whose layers are the payloads (one per
 * signature, the signature in an annotation) and whose config lists their digests as diff_ids. `existing` keeps
 * its layers (and artifactType, subject, annotations); the config is rebuilt from the layers. A layer with the same
 * media type, payload and exactly the same annotations already there is not added twice (`added` false).
 * `blobs` are what must be uploaded before the manifest: the config, and the payload when added.
 */
export function buildSigManifest(
  existing: { manifest: Buffer } | undefined,
  added: { payload: Buffer; signature: string },
): { manifest: Buffer; config: Buffer; blobs: Array<{ descriptor: Descriptor; bytes: Buffer }>; added: boolean } {
  const layers: Descriptor[] = [];
  const extra: { artifactType?: string; subject?: Descriptor; annotations?: Record<string, string> } = {};
  if (existing !== undefined) {
    const parsed = parseManifest(existing.manifest, 'the signature manifest');
    if (parsed.kind !== 'image') {
      throw new HoistError('BAD_MANIFEST', `the signature manifest: is an image index (${parsed.mediaType}), not the image manifest signatures are kept in; delete the tag or sign another way`);
    }
    const m = parsed.manifest;
    for (const l of m.layers) layers.push(goDescriptor(l));
    if (m.artifactType !== undefined) extra.artifactType = m.artifactType;
    if (m.subject !== undefined) extra.subject = goDescriptor(m.subject);
    if (m.annotations !== undefined) extra.annotations = m.annotations;
  }

  const annotations = { [SIGNATURE_ANNOTATION]: added.signature };
  const payloadDigest = digestBytes(added.payload);
  const blobs: Array<{ descriptor: Descriptor; bytes: Buffer }> = [];
  const already = layers.some((l) => l.mediaType === SIMPLE_SIGNING_MEDIA_TYPE && l.size === added.payload.length &&
    l.digest === payloadDigest && sameStringMap(l.annotations, annotations));
  if (!already) {
    const layer: Descriptor = { mediaType: SIMPLE_SIGNING_MEDIA_TYPE, digest: payloadDigest, size: added.payload.length, annotations };
    layers.push(layer);
    blobs.push({ descriptor: { mediaType: SIMPLE_SIGNING_MEDIA_TYPE, digest: payloadDigest, size: added.payload.length }, bytes: added.payload });
  }

  // imgspecv1.Image marshalled by Go: architecture, os, config (a struct: always present), rootfs.
  const config = Buffer.from(goJson({
    architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
  }));
  const configDescriptor: Descriptor = { mediaType: OCI_CONFIG, digest: digestBytes(config), size: config.length };
  blobs.unshift({ descriptor: configDescriptor, bytes: config });

  // imgspecv1.Manifest field order: schemaVersion, mediaType, artifactType, config, layers, subject, annotations.
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    ...(extra.artifactType !== undefined ? { artifactType: extra.artifactType } : {}),
    config: configDescriptor,
    layers,
    ...(extra.subject !== undefined ? { subject: extra.subject } : {}),
    ...(extra.annotations !== undefined ? { annotations: extra.annotations } : {}),
  };
  return { manifest: Buffer.from(goJson(manifest)), config, blobs, added: !already };
}

/**
 * The simple-signing entries of a `.sig` manifest: every layer of the simple-signing media type with a signature
 * annotation (other attachments — attestations, unknown types — are skipped, as containers/image's policy does).
 * Throws BAD_MANIFEST (via parseManifest) when the manifest itself is malformed or an index.
 */
export function parseSigManifest(manifest: Buffer, where: string): SigEntry[] {
  const parsed = parseManifest(manifest, where);
  if (parsed.kind !== 'image') {
    throw new HoistError('BAD_MANIFEST', `${where}: is an image index (${parsed.mediaType}), not a signature manifest`);
  }
  const out: SigEntry[] = [];
  for (const layer of parsed.manifest.layers) {
    if (layer.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE) continue;
    const signature = layer.annotations?.[SIGNATURE_ANNOTATION];
    if (signature === undefined) continue;
    const entry: SigEntry = { descriptor: layer, signature };
    // checkDescriptor already verified embedded data against the digest.
    if (layer.data !== undefined) entry.payload = Buffer.from(layer.data, 'base64');
    out.push(entry);
  }
  return out;
}

/** A descriptor in imgspecv1.Descriptor's field order (mediaType, digest, size, urls, annotations, data, platform, artifactType). */
function goDescriptor(d: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls !== undefined && d.urls.length > 0) out.urls = d.urls;
  if (d.annotations !== undefined && Object.keys(d.annotations).length > 0) out.annotations = d.annotations;
  if (d.data !== undefined && d.data !== '') out.data = d.data;
  if (d.platform !== undefined) out.platform = d.platform;
  if (d.artifactType !== undefined && d.artifactType !== '') out.artifactType = d.artifactType;
  return out;
}

/** Go's maps.Equal on map[string]string, where a missing map equals an empty one. */
function sameStringMap(a: Record<string, string> | undefined, b: Record<string, string>): boolean {
  const ka = Object.keys(a ?? {});
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && b[k] === a![k]);
}

function invalid(reason: string): HoistError {
  return new HoistError('SIGNATURE_INVALID', reason);
}

// ---- A strict JSON reader: Go's json.Decoder token rules plus duplicate-key detection (JSON.parse keeps the last). ----

type Json = null | boolean | number | string | Json[] | Map<string, Json>;

function kind(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Map) return 'an object';
  return typeof v === 'string' ? 'a string' : typeof v;
}

function objectOf(v: Json, path: string): Map<string, Json> {
  if (!(v instanceof Map)) throw invalid(`${path || 'the payload'} must be a JSON object, got ${kind(v)}`);
  return v;
}

/** ParanoidUnmarshalJSONObjectExactFields: these keys, each once, nothing else. */
function exactObject(v: Json, keys: string[], path: string): Map<string, Json> {
  const o = objectOf(v, path);
  for (const k of o.keys()) {
    if (!keys.includes(k)) throw invalid(`unknown key ${JSON.stringify(k)}${path ? ` in ${path}` : ''}`);
  }
  for (const k of keys) {
    if (!o.has(k)) throw invalid(`key ${JSON.stringify(k)} missing${path ? ` in ${path}` : ''}`);
  }
  return o;
}

function stringOf(v: Json, path: string): string {
  if (v === null) return ''; // Go leaves a string untouched when decoding null into it
  if (typeof v !== 'string') throw invalid(`${path} must be a string, got ${kind(v)}`);
  return v;
}

const WS = /[ \t\n\r]*/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const LITERAL = /true|false|null/y;
const MAX_DEPTH = 64;

function strictParse(text: string): Json {
  let pos = 0;
  const fail = (what: string): never => {
    throw invalid(`the payload is not valid JSON: ${what} at offset ${pos}`);
  };
  const skip = (): void => {
    WS.lastIndex = pos;
    WS.exec(text);
    pos = WS.lastIndex;
  };
  const match = (re: RegExp): string | undefined => {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (m === null) return undefined;
    pos = re.lastIndex;
    return m[0];
  };
  const value = (depth: number): Json => {
    if (depth > MAX_DEPTH) fail('nesting too deep');
    skip();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const o = new Map<string, Json>();
      skip();
      if (text[pos] === '}') {
        pos++;
        return o;
      }
      for (;;) {
        skip();
        const k = match(STRING);
        if (k === undefined) fail('expected a string key');
        const key = JSON.parse(k!) as string;
        if (o.has(key)) throw invalid(`duplicate key ${JSON.stringify(key)} in the payload`);
        skip();
        if (text[pos] !== ':') fail('expected ":"');
        pos++;
        o.set(key, value(depth + 1));
        skip();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return o;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      pos++;
      const a: Json[] = [];
      skip();
      if (text[pos] === ']') {
        pos++;
        return a;
      }
      for (;;) {
        a.push(value(depth + 1));
        skip();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return a;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') {
      const s = match(STRING);
      if (s === undefined) fail('bad string');
      return JSON.parse(s!) as string;
    }
    const lit = match(LITERAL);
    if (lit !== undefined) return lit === 'null' ? null : lit === 'true';
    const num = match(NUMBER);
    if (num !== undefined) {
      const n = Number(num);
      if (!Number.isFinite(n)) fail(`number ${num} out of range`);
      return n;
    }
    return fail(c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
  };
  const v = value(0);
  skip();
  if (pos !== text.length) throw invalid('unexpected data after the payload\'s JSON object');
  return v;
}
