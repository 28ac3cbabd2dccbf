/**
 * Blob upload (distribution spec "pushing blobs"): POST opens a session, then either one PUT carrying the
 * whole stream (monolithic) or PATCHes of bounded, buffered chunks with Content-Range followed by an empty
 * PUT ?digest= (chunked). Bytes are verified on the way; a mismatch cancels the session and nothing is stored.
 *
 * A streamed body cannot be replayed, so a failed monolithic PUT is not retried once bytes went out. A chunk is
 * in memory: after a failure the session's status says how much arrived and the rest is sent again.
 */
import { pipeline, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Descriptor } from '../oci/types.ts';
import { Digester, DigestMismatchError, SizeMismatchError, parseDigest, verifyStream } from '../oci/digest.ts';
import { HoistError } from '../errors.ts';
import { repositoryScope } from './auth.ts';
import { RegistryHttpError } from './errors.ts';
import { header, type HttpResponse, type RegistryHttp } from './http.ts';
import { backoffDelay, isRetryableStatus, isTransientNetworkError } from './retry.ts';

/**
 * A chunk is buffered so it can be re-sent after a cut; with several blobs in flight that is memory per blob, so
 * chunks are modest, and blobs up to MONOLITHIC_MAX stream in one PUT (memory bound by stream backpressure, one
 * round trip): the common case of a copy. Larger blobs go chunked, so a cut costs one chunk, not the whole blob.
 */
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;
export const MONOLITHIC_MAX = 128 * 1024 * 1024;

export interface UploadOptions {
  /** Bytes per PATCH (raised to the registry's OCI-Chunk-Min-Length). Default 8 MiB. */
  chunkSize?: number;
  /**
   * Force chunked (true) or monolithic (false). Default: chunked when the size is unknown, above an explicit
   * chunkSize, or above MONOLITHIC_MAX.
   */
  chunked?: boolean;
  /**
   * The stream verifies itself (every ImageSource.getBlob stream does, by contract) and the registry checks
   * `?digest=` on the final PUT: skip hashing the bytes a second time here (a monolithic upload's main CPU cost).
   */
  preverified?: boolean;
}

interface Ctx {
  http: RegistryHttp;
  repo: string;
  what: string;
  scopes: string[];
  preverified: boolean;
}

function location(res: HttpResponse, ctx: Ctx): URL {
  const loc = header(res.headers, 'location');
  if (!loc) throw new HoistError('REGISTRY_ERROR', `${ctx.what}: the registry opened an upload without a Location header; it does not follow the distribution spec`);
  return new URL(loc, res.url);
}

function withDigest(loc: URL, digest: string): string {
  const u = new URL(loc);
  u.searchParams.set('digest', digest);
  return u.toString();
}

/** A failure after which asking the session for its status and re-sending makes sense. */
function isRetryable(e: unknown): boolean {
  if (e instanceof RegistryHttpError) return isRetryableStatus(e.status);
  return isTransientNetworkError(e);
}

/** Best effort: a cancelled session frees space on the registry sooner than its upload purging would. */
async function cancel(ctx: Ctx, loc: URL): Promise<void> {
  try {
    const res = await ctx.http.request({ method: 'DELETE', path: loc.toString(), scopes: ctx.scopes, expect: [200, 202, 204, 404], what: ctx.what, action: 'cancelling upload', noRetry: true });
    await res.body.dump();
  } catch {
    // The session expires on its own.
  }
}

export async function startUpload(ctx: Ctx, query = ''): Promise<HttpResponse> {
  return ctx.http.request({
    method: 'POST',
    path: `/v2/${ctx.repo}/blobs/uploads/${query}`,
    headers: { 'content-length': '0' },
    scopes: ctx.scopes,
    expect: [201, 202],
    what: ctx.what,
    action: 'starting blob upload',
  });
}

/** The upload session: its Location moves with every PATCH (distribution signs the offset into it). */
interface Session {
  loc: URL;
}

async function openSession(ctx: Ctx): Promise<{ session: Session; minChunk: number }> {
  const started = await startUpload(ctx);
  await started.body.dump();
  const minChunk = Number(header(started.headers, 'oci-chunk-min-length') ?? 0) || 0;
  return { session: { loc: location(started, ctx) }, minChunk };
}

export async function uploadBlob(http: RegistryHttp, repo: string, what: string, desc: Descriptor, stream: Readable, opts: UploadOptions = {}): Promise<void> {
  parseDigest(desc.digest, `${what}: digest`);
  const ctx: Ctx = { http, repo, what, scopes: [repositoryScope(repo, ['pull', 'push'])], preverified: opts.preverified === true };
  const { session, minChunk } = await openSession(ctx);
  const chunkSize = Math.max(opts.chunkSize ?? DEFAULT_CHUNK_SIZE, minChunk, 1);
  // An explicit chunk size asks for chunks above it; otherwise only very large blobs are chunked.
  const threshold = opts.chunkSize !== undefined ? chunkSize : Math.max(MONOLITHIC_MAX, chunkSize);
  const chunked = opts.chunked ?? (desc.size < 0 || desc.size > threshold);
  try {
    if (chunked) await chunkedUpload(ctx, session, desc, stream, chunkSize);
    else await monolithicUpload(ctx, session.loc, desc, stream);
  } catch (e) {
    stream.destroy();
    await cancel(ctx, session.loc);
    throw e;
  }
}

async function monolithicUpload(ctx: Ctx, loc: URL, desc: Descriptor, stream: Readable): Promise<void> {
  let verifyError: unknown;
  let verify: Readable;
  if (ctx.preverified) {
    verify = stream;
    stream.on('error', (e) => { verifyError ??= e; });
  } else {
    const v = verifyStream(desc.digest, desc.size >= 0 ? desc.size : undefined, ctx.what);
    v.on('error', (e) => { verifyError ??= e; });
    pipeline(stream, v, () => {});
    verify = v;
  }
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  if (desc.size >= 0) headers['content-length'] = String(desc.size);
  try {
    const res = await ctx.http.request({ method: 'PUT', path: withDigest(loc, desc.digest), headers, body: verify, scopes: ctx.scopes, expect: [201], what: ctx.what, action: 'uploading blob' });
    await res.body.dump();
  } catch (e) {
    // Our own verification names the problem better than the registry's DIGEST_INVALID or an aborted request.
    if (verifyError instanceof HoistError) throw verifyError;
    if (!(e instanceof HoistError)) throw e;
    if (isRetryable(e)) {
      throw new HoistError('UPLOAD_FAILED', `${ctx.what}: blob upload interrupted (${e.message}); the stream cannot be replayed, run the copy again`, { cause: e });
    }
    throw e;
  }
}

/** The offset the session has reached, from GET on its Location (`Range: 0-<last byte>`), and its new Location. */
async function uploadStatus(ctx: Ctx, loc: URL): Promise<{ received: number; loc: URL }> {
  let res: HttpResponse;
  try {
    res = await ctx.http.request({ method: 'GET', path: loc.toString(), scopes: ctx.scopes, expect: [204, 200], what: ctx.what, action: 'checking upload status' });
  } catch (e) {
    // distribution 2.8 drops a session whose stored size no longer matches the offset signed into its Location,
    // which is what a PATCH cut mid-way leaves behind.
    const why = e instanceof RegistryHttpError ? `HTTP ${e.status}${e.registryCode ? ` ${e.registryCode}` : ''}` : e instanceof Error ? e.message : String(e);
    throw new SessionLost(`${ctx.what}: the registry dropped the upload session after an interruption (${why}); run the copy again`, e);
  }
  await res.body.dump();
  const range = header(res.headers, 'range');
  const m = range === undefined ? null : /^(?:bytes=)?0-(\d+)$/.exec(range.trim());
  // distribution reports an empty session as `0-0` too; taking it as empty at worst costs a 416 below.
  const end = m ? Number(m[1]) : -1;
  const received = end <= 0 ? 0 : end + 1;
  return { received, loc: header(res.headers, 'location') ? location(res, ctx) : loc };
}

/** The session is gone or inconsistent: only a new session with every byte again can finish the upload. */
class SessionLost extends HoistError {
  constructor(message: string, cause: unknown) {
    super('UPLOAD_FAILED', message, { cause });
  }
}

/** PATCHes one buffered chunk; after a failure asks the session how much arrived and sends the rest. */
async function sendChunk(ctx: Ctx, session: Session, chunk: Buffer, start: number): Promise<void> {
  const policy = ctx.http.retryPolicy;
  let offset = 0;
  for (let attempt = 0; ; attempt++) {
    const part = chunk.subarray(offset);
    try {
      const res = await ctx.http.request({
        method: 'PATCH',
        path: session.loc.toString(),
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(part.length),
          'content-range': `${start + offset}-${start + chunk.length - 1}`,
        },
        body: part,
        scopes: ctx.scopes,
        expect: [202, 204],
        what: ctx.what,
        action: 'uploading blob chunk',
        noRetry: true,
      });
      await res.body.dump();
      session.loc = location(res, ctx);
      return;
    } catch (e) {
      if (attempt >= policy.times || !isRetryable(e)) throw e;
      await sleep(backoffDelay(attempt, policy));
      const st = await uploadStatus(ctx, session.loc);
      if (st.received < start || st.received > start + chunk.length) {
        throw new SessionLost(`${ctx.what}: after an interruption the registry holds ${st.received} bytes of the upload, expected ${start}–${start + chunk.length}; run the copy again`, e);
      }
      session.loc = st.loc;
      offset = st.received - start;
      if (offset === chunk.length) return;
    }
  }
}

async function chunkedUpload(ctx: Ctx, session: Session, desc: Descriptor, stream: Readable, chunkSize: number): Promise<void> {
  const d = new Digester(parseDigest(desc.digest).algorithm);
  // Sized for the blob when it is smaller than a chunk; flushed whenever full.
  const buf = Buffer.allocUnsafe(Math.max(1, desc.size >= 0 ? Math.min(chunkSize, desc.size) : chunkSize));
  let filled = 0;
  let sent = 0;
  const flush = async () => {
    if (filled === 0) return;
    const chunk = buf.subarray(0, filled);
    try {
      await sendChunk(ctx, session, chunk, sent);
    } catch (e) {
      // Everything sent so far is still in the buffer only while this is the first chunk: then a fresh session
      // can start over; later, the stream has moved on and cannot be replayed.
      if (!(e instanceof SessionLost) || sent !== 0) throw e;
      await cancel(ctx, session.loc);
      session.loc = (await openSession(ctx)).session.loc;
      await sendChunk(ctx, session, chunk, 0);
    }
    sent += filled;
    filled = 0;
  };
  for await (const c of stream) {
    let b = c as Buffer;
    d.update(b);
    // Checked first, so a full buffer always has room left in the blob's declared size.
    if (desc.size >= 0 && d.size > desc.size) throw new SizeMismatchError(ctx.what, desc.size, d.size);
    while (b.length > 0) {
      const n = Math.min(b.length, buf.length - filled);
      b.copy(buf, filled, 0, n);
      filled += n;
      b = b.subarray(n);
      if (filled === buf.length) await flush();
    }
  }
  // Check before the final PUT so a bad source never becomes a blob.
  if (desc.size >= 0 && d.size !== desc.size) throw new SizeMismatchError(ctx.what, desc.size, d.size);
  const actual = d.digest();
  if (actual !== desc.digest) throw new DigestMismatchError(ctx.what, desc.digest, actual);
  await flush();
  const res = await ctx.http.request({
    method: 'PUT',
    path: withDigest(session.loc, desc.digest),
    headers: { 'content-length': '0', 'content-type': 'application/octet-stream' },
    scopes: ctx.scopes,
    expect: [201],
    what: ctx.what,
    action: 'completing blob upload',
  });
  await res.body.dump();
}
