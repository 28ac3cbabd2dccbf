/**
 * A client for one registry host speaking the OCI distribution API (and Docker's v2 dialect of it).
 * Stream-based and small: manifests are bytes + media type + digest, blobs are verified streams.
 * It knows nothing of stores or transports.
 */
import type { Readable } from 'node:stream';
import { HoistError } from '../errors.ts';
import { DigestMismatchError, digestBytes, digestToTag, isDigest, parseDigest, verifyBytes } from '../oci/digest.ts';
import { DOCKER_SCHEMA1_SIGNED, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, isIndex, isSchema1 } from '../oci/mediatype.ts';
import type { Descriptor, ManifestBlob } from '../oci/types.ts';
import { repositoryScope, type Credentials } from './auth.ts';
import { openBlob } from './blob-download.ts';
import { startUpload, uploadBlob, type UploadOptions } from './blob-upload.ts';
import { RegistryHttpError } from './errors.ts';
import { header, RegistryHttp } from './http.ts';
import { readAll } from '../util/stream.ts';
import { DEFAULT_RETRY } from './retry.ts';

export interface RegistryOptions {
  /** `127.0.0.1:5000`, `quay.io`, `docker.io` (the API goes to registry-1.docker.io). */
  host: string;
  /** Verify TLS certificates (default true). false also allows plain http for any host. */
  tlsVerify?: boolean;
  /** certs.d-style directory: `*.crt` CAs, `*.cert` + `*.key` client pair. */
  certDir?: string;
  credentials?: Credentials;
  /** Retries after the first attempt (default 3). */
  retryTimes?: number;
  /** Base backoff delay (default 500 ms). */
  retryDelayMs?: number;
  userAgent?: string;
}

/** The distribution spec's limit clients should enforce; bigger "manifests" are refused unread. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

const REPO_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export class RegistryClient {
  readonly host: string;
  readonly #http: RegistryHttp;

  constructor(opts: RegistryOptions) {
    this.host = opts.host;
    this.#http = new RegistryHttp({
      host: opts.host,
      tlsVerify: opts.tlsVerify ?? true,
      certDir: opts.certDir,
      credentials: opts.credentials,
      retry: { times: opts.retryTimes ?? DEFAULT_RETRY.times, delayMs: opts.retryDelayMs ?? DEFAULT_RETRY.delayMs },
      userAgent: opts.userAgent ?? 'hoist/0.1',
    });
  }

  /** Checks the registry answers the v2 API, and that the credentials work when some are given. */
  async ping(): Promise<void> {
    await this.#http.origin();
    if (!this.#http.auth.hasCredentials) return;
    const res = await this.#http.request({ method: 'GET', path: '/v2/', scopes: [], expect: [200], what: this.host, action: 'logging in' });
    await res.body.dump();
  }

  async getManifest(repo: string, reference: string, opts: { accept?: string[] } = {}): Promise<ManifestBlob> {
    const what = this.#what(repo, reference);
    const res = await this.#http.request({
      method: 'GET',
      path: `/v2/${repo}/manifests/${reference}`,
      headers: { accept: (opts.accept ?? MANIFEST_TYPES).join(', ') },
      scopes: [repositoryScope(repo, ['pull'])],
      expect: [200],
      what,
      action: 'fetching manifest',
    });
    const tooLarge = (n: number | string) =>
      new HoistError('MANIFEST_TOO_LARGE', `${what}: manifest is ${n} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit; refusing it`);
    const declared = Number(header(res.headers, 'content-length'));
    if (declared > MAX_MANIFEST_BYTES) {
      res.body.destroy();
      throw tooLarge(declared);
    }
    const bytes = await readAll(res.body, MAX_MANIFEST_BYTES, () => tooLarge(`over ${MAX_MANIFEST_BYTES}`));
    const mediaType = manifestMediaType(header(res.headers, 'content-type'), bytes, what);
    const served = header(res.headers, 'docker-content-digest');
    let digest: string;
    if (isDigest(reference)) {
      verifyBytes(bytes, reference, what);
      if (served !== undefined && isDigest(served) && parseDigest(served).algorithm === parseDigest(reference).algorithm && served !== reference) {
        throw new DigestMismatchError(`${what} (Docker-Content-Digest)`, reference, served);
      }
      digest = reference;
    } else if (served !== undefined && isDigest(served)) {
      verifyBytes(bytes, served, `${what} (Docker-Content-Digest)`);
      digest = served;
    } else {
      digest = digestBytes(bytes);
    }
    return { bytes, mediaType, digest };
  }

  async headManifest(repo: string, reference: string): Promise<{ digest: string; mediaType: string; size: number } | undefined> {
    const what = this.#what(repo, reference);
    const res = await this.#http.request({
      method: 'HEAD',
      path: `/v2/${repo}/manifests/${reference}`,
      headers: { accept: MANIFEST_TYPES.join(', ') },
      scopes: [repositoryScope(repo, ['pull'])],
      expect: [200, 404],
      what,
      action: 'checking manifest',
    });
    await res.body.dump();
    if (res.status === 404) return undefined;
    const served = header(res.headers, 'docker-content-digest');
    const mediaType = stripParams(header(res.headers, 'content-type'));
    const size = Number(header(res.headers, 'content-length'));
    if (served !== undefined && isDigest(served) && mediaType && Number.isSafeInteger(size)) {
      return { digest: isDigest(reference) ? reference : served, mediaType, size };
    }
    // Not every registry says the digest on HEAD: then the manifest itself tells.
    const m = await this.getManifest(repo, reference);
    return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
  }

  async putManifest(repo: string, reference: string, m: ManifestBlob): Promise<string> {
    const what = this.#what(repo, reference);
    if (m.bytes.length > MAX_MANIFEST_BYTES) {
      throw new HoistError('MANIFEST_TOO_LARGE', `${what}: manifest is ${m.bytes.length} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit registries accept`);
    }
    if (isSchema1(m.mediaType)) throw schema1Error(what, m.mediaType);
    verifyBytes(m.bytes, m.digest, what);
    if (isDigest(reference) && reference !== m.digest) {
      throw new DigestMismatchError(what, reference, m.digest);
    }
    const res = await this.#http.request({
      method: 'PUT',
      path: `/v2/${repo}/manifests/${reference}`,
      headers: { 'content-type': m.mediaType },
      body: m.bytes,
      scopes: [repositoryScope(repo, ['pull', 'push'])],
      expect: [201, 200, 202],
      what,
      action: 'pushing manifest',
    });
    await res.body.dump();
    const stored = header(res.headers, 'docker-content-digest');
    if (stored !== undefined && isDigest(stored) && parseDigest(stored).algorithm === parseDigest(m.digest).algorithm && stored !== m.digest) {
      throw new DigestMismatchError(`${what} (stored by the registry)`, m.digest, stored);
    }
    return m.digest;
  }

  async deleteManifest(repo: string, digest: string): Promise<void> {
    const what = this.#what(repo, digest);
    if (!isDigest(digest)) throw new HoistError('BAD_REFERENCE', `${what}: manifests are deleted by digest; resolve the tag first`);
    const res = await this.#http.request({
      method: 'DELETE',
      path: `/v2/${repo}/manifests/${digest}`,
      scopes: [repositoryScope(repo, ['delete'])],
      expect: [202, 200, 204],
      what,
      action: 'deleting manifest',
    });
    await res.body.dump();
  }

  /** Every tag, following `Link: <…>; rel="next"` pages. `pageSize` sets `n=`. */
  async listTags(repo: string, opts: { pageSize?: number } = {}): Promise<string[]> {
    const what = `${this.host}/${this.#repo(repo)}`;
    const tags: string[] = [];
    let path: string | undefined = `/v2/${repo}/tags/list${opts.pageSize ? `?n=${opts.pageSize}` : ''}`;
    const seen = new Set<string>();
    while (path !== undefined && !seen.has(path) && seen.size < 10_000) {
      seen.add(path);
      const res = await this.#http.request({ method: 'GET', path, scopes: [repositoryScope(repo, ['pull'])], expect: [200], what, action: 'listing tags' });
      const body = await readAll(res.body, 16 * 1024 * 1024, () => new HoistError('REGISTRY_ERROR', `${what}: tag list page over 16 MiB`));
      const page = parseJson<{ tags?: unknown }>(body, what, 'tag list');
      if (Array.isArray(page.tags)) for (const t of page.tags) if (typeof t === 'string') tags.push(t);
      const next = nextLink(res.headers.link);
      path = next === undefined ? undefined : new URL(next, res.url).toString();
    }
    return tags;
  }

  /**
   * Manifests whose `subject` is `digest`: from the referrers API when the registry offers it (200 with an index),
   * else from the `sha256-<hex>` tag fallback index that OCI 1.1 clients maintain.
   */
  async getReferrers(repo: string, digest: string, artifactType?: string): Promise<Descriptor[]> {
    const what = this.#what(repo, digest);
    if (!isDigest(digest)) throw new HoistError('BAD_REFERENCE', `${what}: referrers are looked up by digest`);
    const res = await this.#http.request({
      method: 'GET',
      path: `/v2/${repo}/referrers/${digest}${artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : ''}`,
      headers: { accept: OCI_INDEX },
      scopes: [repositoryScope(repo, ['pull'])],
      expect: [200, 400, 404, 405, 406, 501],
      what,
      action: 'listing referrers',
    });
    let manifests: Descriptor[] | undefined;
    if (res.status === 200 && stripParams(header(res.headers, 'content-type')) === OCI_INDEX) {
      const body = await readAll(res.body, MAX_MANIFEST_BYTES, () => new HoistError('MANIFEST_TOO_LARGE', `${what}: referrers index over ${MAX_MANIFEST_BYTES} bytes`));
      manifests = indexManifests(body, what);
    } else {
      await res.body.dump();
      let fallback: ManifestBlob;
      try {
        fallback = await this.getManifest(repo, digestToTag(digest), { accept: [OCI_INDEX] });
      } catch (e) {
        if (e instanceof RegistryHttpError && e.status === 404) return [];
        throw e;
      }
      manifests = isIndex(fallback.mediaType) ? indexManifests(fallback.bytes, what) : [];
    }
    return artifactType === undefined ? manifests : manifests.filter((d) => d.artifactType === artifactType);
  }

  async hasBlob(repo: string, desc: Descriptor): Promise<boolean> {
    const what = this.#what(repo, desc.digest);
    const res = await this.#http.request({
      method: 'HEAD',
      path: `/v2/${repo}/blobs/${desc.digest}`,
      scopes: [repositoryScope(repo, ['pull'])],
      expect: [200, 404],
      what,
      action: 'checking blob',
    });
    await res.body.dump();
    return res.status === 200;
  }

  /** The blob as a stream verified against desc (digest and size); resumes after dropped connections. */
  async getBlob(repo: string, desc: Descriptor): Promise<Readable> {
    const what = this.#what(repo, desc.digest);
    return openBlob(this.#http, { path: `/v2/${repo}/blobs/${desc.digest}`, scopes: [repositoryScope(repo, ['pull'])], what, action: 'fetching blob' }, desc);
  }

  async putBlob(repo: string, desc: Descriptor, stream: Readable, opts?: UploadOptions): Promise<void> {
    const what = this.#what(repo, desc.digest);
    await uploadBlob(this.#http, repo, what, desc, stream, opts);
  }

  /**
   * Cross-repository mount: true when the registry linked the blob from `fromRepo`; false when it declined
   * (it then opens an ordinary upload session, which is cancelled here).
   */
  async mountBlob(repo: string, desc: Descriptor, fromRepo: string): Promise<boolean> {
    const what = this.#what(repo, desc.digest);
    this.#repo(fromRepo);
    parseDigest(desc.digest, `${what}: digest`);
    const ctx = { http: this.#http, repo, what, scopes: [repositoryScope(repo, ['pull', 'push']), repositoryScope(fromRepo, ['pull'])], preverified: false };
    const res = await startUpload(ctx, `?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(fromRepo)}`);
    await res.body.dump();
    if (res.status === 201) return true;
    const loc = header(res.headers, 'location');
    if (loc) {
      const del = await this.#http
        .request({ method: 'DELETE', path: new URL(loc, res.url).toString(), scopes: ctx.scopes, expect: [200, 202, 204, 404], what, action: 'cancelling upload', noRetry: true })
        .catch(() => undefined);
      await del?.body.dump();
    }
    return false;
  }

  async close(): Promise<void> {
    await this.#http.close();
  }

  /** Validates names before they become URL paths; returns the message prefix `host/repo:tag` or `host/repo@digest`. */
  #what(repo: string, reference: string): string {
    this.#repo(repo);
    if (isDigest(reference)) return `${this.host}/${repo}@${reference}`;
    if (reference.includes(':')) parseDigest(reference, `${this.host}/${repo}@${reference}`);
    if (!TAG_RE.test(reference)) {
      throw new HoistError('BAD_REFERENCE', `${this.host}/${repo}:${reference}: invalid tag; tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -`);
    }
    return `${this.host}/${repo}:${reference}`;
  }

  #repo(repo: string): string {
    if (!REPO_RE.test(repo) || repo.length > 255) {
      throw new HoistError('BAD_REFERENCE', `${this.host}/${repo}: invalid repository name; use lowercase [a-z0-9] components separated by / . _ -`);
    }
    return repo;
  }
}

function stripParams(ct: string | undefined): string | undefined {
  const v = ct?.split(';')[0]?.trim();
  return v === '' ? undefined : v;
}

function parseJson<T>(bytes: Buffer, what: string, kind: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new HoistError('REGISTRY_ERROR', `${what}: the registry sent a ${kind} that is not valid JSON`);
  }
}

function schema1Error(what: string, mt: string): HoistError {
  return new HoistError('SCHEMA1', `${what}: is a Docker schema 1 manifest (${mt}), which hoist does not support; re-push the image with a current tool (schema 2 or OCI)`);
}

/** The manifest's media type from Content-Type, or from the JSON when the registry is vague; rejects schema 1. */
function manifestMediaType(contentType: string | undefined, bytes: Buffer, what: string): string {
  const ct = stripParams(contentType);
  if (ct !== undefined && isSchema1(ct) && ct !== 'application/json') throw schema1Error(what, ct);
  if (ct !== undefined && ct !== 'application/json' && ct !== 'text/plain' && ct !== 'application/octet-stream') return ct;
  const j = parseJson<{ schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown; config?: unknown }>(bytes, what, 'manifest');
  if (j.schemaVersion === 1) throw schema1Error(what, ct ?? DOCKER_SCHEMA1_SIGNED);
  if (typeof j.mediaType === 'string' && j.mediaType !== '') return j.mediaType;
  if (Array.isArray(j.manifests)) return OCI_INDEX;
  if (j.config !== undefined) return OCI_MANIFEST;
  throw new HoistError('REGISTRY_ERROR', `${what}: cannot tell what kind of manifest the registry sent (Content-Type ${ct ?? 'missing'})`);
}

function indexManifests(bytes: Buffer, what: string): Descriptor[] {
  const j = parseJson<{ manifests?: unknown }>(bytes, what, 'referrers index');
  if (!Array.isArray(j.manifests)) return [];
  return j.manifests.filter(
    (d): d is Descriptor => typeof d === 'object' && d !== null && typeof (d as Descriptor).digest === 'string' && typeof (d as Descriptor).mediaType === 'string',
  );
}

/** The `rel="next"` target of a Link header. */
export function nextLink(link: string | string[] | undefined): string | undefined {
  const values = Array.isArray(link) ? link : link === undefined ? [] : [link];
  for (const v of values) {
    for (const part of v.split(/,(?=\s*<)/)) {
      const m = /^\s*<([^>]*)>(.*)$/.exec(part);
      if (m && /;\s*rel="?next"?/i.test(m[2]!)) return m[1];
    }
  }
  return undefined;
}
