/**
 * `ADD https://…` — downloading a remote file for a COPY-like layer, as BuildKit's HTTP source does it
 * (source/http/source.go, with the file name the Dockerfile frontend picks):
 * - the file name is the last segment of the URL's (decoded) path; `__unnamed__` when there is none. The frontend
 *   always passes that name to the HTTP source, so Content-Disposition is never consulted for ADD;
 * - mode 0600, owner 0:0 (a --chown is applied by the copy), mtime from Last-Modified, else the Unix epoch;
 * - redirects are followed (Go's http.Client: at most 10); a gzip Content-Encoding is undone as Go's transport
 *   does, so the file is the document the server meant;
 * - any status other than 2xx at the end fails; `--checksum=sha256:…` (also sha384/sha512) is checked against the
 *   downloaded bytes;
 * - remote archives are never extracted (the caller must not hand the result to add-archive);
 * - git sources (`git@host:repo`, `ssh://`, `git://`, `http(s)://…/repo.git[#ref]`) are not supported.
 * The body streams to `dir/<name>`; nothing is held in memory.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { HoistError } from '../errors.ts';
import { Agent, request, type Dispatcher } from '../registry/undici.ts';
import type * as Undici from 'undici';
import type { SourceEntry } from './source.ts';

const MAX_REDIRECTS = 10;
const USER_AGENT = 'hoist (buildkit-compatible ADD)';

export interface FetchUrlOptions {
  /** `sha256:<hex>` (or sha384/sha512): the download must have this digest. */
  checksum?: string;
  /** An existing directory the file is written into. */
  dir: string;
}

/** gitutil.ParseURL's scp-like form: `user@host:path` (no scheme). */
const SCP_LIKE = /^[A-Za-z0-9_.+-]+@[^:/]+:.+$/;

/** True for the sources BuildKit's Dockerfile frontend treats as git repositories. */
export function isGitUrl(src: string): boolean {
  if (SCP_LIKE.test(src)) return true;
  if (/^(git|ssh):\/\//i.test(src)) return true;
  if (/^https?:\/\//i.test(src)) {
    // An HTTP(S) URL is a git source only when its path (before the #fragment) ends in .git.
    try {
      return new URL(src).pathname.endsWith('.git');
    } catch {
      return false;
    }
  }
  return false;
}

/** True for an `http://` or `https://` source that ADD downloads (git URLs excluded). */
export function isHttpUrl(src: string): boolean {
  return /^https?:\/\//.test(src) && !isGitUrl(src);
}

/** The file name BuildKit gives a download: path.Base of the URL's path, `__unnamed__` when that is `.` or `/`. */
export function urlFileName(url: string): string {
  let p: string;
  try {
    p = new URL(url).pathname;
  } catch {
    return '__unnamed__';
  }
  // Go's url.Parse gives the decoded path; a segment that does not decode stays as written.
  let decoded: string;
  try {
    decoded = decodeURIComponent(p);
  } catch {
    decoded = p;
  }
  const trimmed = decoded.replace(/\/+$/, '');
  if (trimmed === '') return '__unnamed__';
  const base = trimmed.slice(trimmed.lastIndexOf('/') + 1);
  // `..` (from an encoded %2e%2e) would name the directory above the download dir.
  return base === '' || base === '.' || base === '..' ? '__unnamed__' : base;
}

const DIGEST_HEX: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

function parseChecksum(checksum: string, url: string): { algo: string; hex: string } {
  const m = /^([a-z0-9]+):([a-f0-9]+)$/.exec(checksum);
  const want = m ? DIGEST_HEX[m[1]!] : undefined;
  if (!m || want === undefined || m[2]!.length !== want) {
    throw new HoistError('BAD_CHECKSUM', `ADD ${url}: --checksum=${checksum} is not a digest; write it as sha256:<64 hex digits>`);
  }
  return { algo: m[1]!, hex: m[2]! };
}

let agent: Agent | undefined;
function dispatcher(): Dispatcher {
  agent ??= new Agent({ connect: { timeout: 30_000 } });
  return agent;
}

/** Downloads `url` into `opts.dir` and describes the file as a COPY source entry. */
export async function fetchUrl(url: string, opts: FetchUrlOptions): Promise<{ entry: SourceEntry; digest: string }> {
  if (isGitUrl(url)) {
    throw new HoistError('UNSUPPORTED', `ADD ${url}: git sources are not supported by hoist; clone the repository into the build context and COPY it`);
  }
  let start: URL;
  try {
    start = new URL(url);
  } catch {
    throw new HoistError('BAD_URL', `ADD ${url}: not a valid URL`);
  }
  if (start.protocol !== 'http:' && start.protocol !== 'https:') {
    throw new HoistError('UNSUPPORTED', `ADD ${url}: only http and https URLs can be downloaded`);
  }
  const pinned = opts.checksum === undefined ? undefined : parseChecksum(opts.checksum, url);
  const name = urlFileName(url);
  const file = path.join(opts.dir, name);

  let current = start;
  let res: Undici.Dispatcher.ResponseData | undefined;
  for (let hops = 0; ; hops++) {
    try {
      res = await request(current, {
        dispatcher: dispatcher(),
        method: 'GET',
        headers: { 'user-agent': USER_AGENT, 'accept-encoding': 'gzip' },
        body: null,
      });
    } catch (e) {
      const code = (e as { code?: string }).code ?? (e as Error).message;
      throw new HoistError('NETWORK', `ADD ${url}: cannot download from ${current.host} (${code}); check the URL and the network`, { cause: e });
    }
    const location = header(res.headers, 'location');
    if ([301, 302, 303, 307, 308].includes(res.statusCode) && location !== undefined) {
      await res.body.dump();
      if (hops >= MAX_REDIRECTS) throw new HoistError('HTTP_ERROR', `ADD ${url}: stopped after ${MAX_REDIRECTS} redirects`);
      current = new URL(location, current);
      if (current.protocol !== 'http:' && current.protocol !== 'https:') {
        throw new HoistError('HTTP_ERROR', `ADD ${url}: redirected to ${current.protocol} URL ${current.href}, which cannot be downloaded`);
      }
      continue;
    }
    break;
  }
  if (res.statusCode < 200 || res.statusCode > 299) {
    await res.body.dump().catch(() => undefined);
    const via = current.href === start.href ? '' : ` (redirected to ${current.href})`;
    throw new HoistError('HTTP_ERROR', `ADD ${url}: the server answered ${res.statusCode}${via}; check the URL`);
  }

  const sha256 = createHash('sha256');
  const pinnedHash = pinned !== undefined && pinned.algo !== 'sha256' ? createHash(pinned.algo) : undefined;
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      sha256.update(chunk);
      pinnedHash?.update(chunk);
      cb(null, chunk);
    },
  });
  const encoding = (header(res.headers, 'content-encoding') ?? '').toLowerCase();
  const stages: Array<Readable | Transform> = [res.body];
  if (encoding === 'gzip') stages.push(createGunzip());
  try {
    await pipeline([...stages, hasher, createWriteStream(file, { mode: 0o600 })]);
  } catch (e) {
    throw new HoistError('NETWORK', `ADD ${url}: the download failed (${(e as Error).message}); try again`, { cause: e });
  }

  const digest = `sha256:${sha256.digest('hex')}`;
  if (pinned !== undefined) {
    const got = pinnedHash !== undefined ? `${pinned.algo}:${pinnedHash.digest('hex')}` : digest;
    const expected = `${pinned.algo}:${pinned.hex}`;
    if (got !== expected) {
      throw new HoistError('DIGEST_MISMATCH', `ADD ${url}: digest mismatch: got ${got}, expected ${expected}; fix --checksum or the URL`);
    }
  }

  const st = await stat(file);
  const entry: SourceEntry = {
    rel: name,
    type: 'file',
    mode: 0o600,
    uid: 0,
    gid: 0,
    size: st.size,
    mtimeMs: lastModified(header(res.headers, 'last-modified')),
    abs: file,
  };
  return { entry, digest };
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Go's http.ParseTime: RFC 1123 (`Mon, 02 Jan 2006 15:04:05 GMT`), RFC 850 and asctime. Anything else (or no
 * header) gives the Unix epoch, as BuildKit sets it.
 */
function lastModified(v: string | undefined): number {
  if (v === undefined) return 0;
  const s = v.trim();
  const ok = /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(s)
    || /^[A-Za-z]+, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/.test(s)
    || /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/.test(s);
  if (!ok) return 0;
  const t = Date.parse(/GMT$/.test(s) ? s : `${s} GMT`);
  return Number.isFinite(t) ? t : 0;
}
