/**
 * Content hashes of context files, kept between builds and keyed by what lstat says about the file, so that a
 * rebuild where nothing changed reads no file contents (what makes a no-op rebuild fast; buildah re-hashes the whole
 * context every time).
 *
 * Key: (dev, ino, size, mtime ns, ctime ns). Any write changes mtime and ctime; a rename or chmod changes ctime;
 * replacing the file changes the inode. Value: the sha256 of the contents, hex.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import pLimit from 'p-limit';
import { isErrno } from '../errors.ts';

const FORMAT = 'hoist-checksums/v1';
/** Files hashed at once: enough to overlap reads with hashing, few enough not to thrash a disk. */
const HASH_CONCURRENCY = 16;
/** The most read at once from one file. */
const READ_CHUNK = 1 << 20;
/**
 * Files up to this size are hashed with synchronous calls: a context is mostly small files, and four promise round
 * trips (open, stat, read, close) cost several times the syscalls themselves.
 */
const SYNC_HASH = 64 * 1024;

/**
 * How recently changed a file may be and still have its hash kept for next time. The racy-git problem: a file
 * written again within the timestamp granularity of the filesystem (1 s on ext3 and HFS+, 2 s on FAT, coarse
 * ticks elsewhere) right after we hashed it keeps the same size, mtime and ctime — its key would not change and
 * the stale hash would be trusted forever. So a file whose mtime or ctime is within this window of the moment we
 * hashed it is used for this build only and hashed again next time, when it will have settled.
 */
export const RACY_WINDOW_MS = 2000;

/**
 * The cache key of a file from its `lstat(p, { bigint: true })`: `dev:ino:size:mtimeNs:ctimeNs`.
 * (Array join makes one flat string; a template literal would keep a tree of pieces, several times the size, and
 * the context walk keeps one key per file.)
 */
export function statKey(st: BigIntStats): string {
  return [st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].join(':');
}

/** When the file of a key last changed (the later of mtime and ctime), in ms, for the racy check. */
function changedMs(key: string): number {
  const [, , , m, c] = key.split(':');
  const mtime = BigInt(m ?? '0');
  const ctime = BigInt(c ?? '0');
  return Number((mtime > ctime ? mtime : ctime) / 1000n) / 1000;
}

interface CacheFile {
  format: string;
  entries: Record<string, string>;
}

/** #hashAsync for a small file, with synchronous calls. */
function hashSync(abs: string, key: string): { digest: string; same: boolean } {
  const fd = openSync(abs, 'r');
  try {
    // The file we opened must be the one that was stat'ed: otherwise the hash is right for now but not for the key.
    const st = fstatSync(fd, { bigint: true });
    const same = statKey(st) === key;
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.max(1, Math.min(Number(st.size) + 1, READ_CHUNK)));
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
    return { digest: h.digest('hex'), same };
  } finally {
    closeSync(fd);
  }
}

export class ChecksumCache {
  readonly file: string;
  readonly #racyWindowMs: number;
  /** What the file held when opened. */
  readonly #stored: Map<string, string>;
  /** Entries seen this run that may be kept: what save() writes. */
  readonly #keep = new Map<string, string>();
  /** Hashes of racy files: good for this run only. */
  readonly #racy = new Map<string, string>();
  readonly #inflight = new Map<string, Promise<string>>();
  readonly #limit = pLimit(HASH_CONCURRENCY);
  #hits = 0;
  #misses = 0;

  private constructor(file: string, stored: Map<string, string>, racyWindowMs: number) {
    this.file = file;
    this.#stored = stored;
    this.#racyWindowMs = racyWindowMs;
  }

  /**
   * Opens the cache kept in `file` (missing or unreadable: an empty cache — it is only a cache).
   * `racyWindowMs` is for tests; see RACY_WINDOW_MS.
   */
  static async open(file: string, opts: { racyWindowMs?: number } = {}): Promise<ChecksumCache> {
    const stored = new Map<string, string>();
    try {
      const data = JSON.parse(await readFile(file, 'utf8')) as Partial<CacheFile>;
      if (data.format === FORMAT && data.entries && typeof data.entries === 'object') {
        // A length check only (no pattern per entry: this runs on every build, over every file of the context): a
        // damaged value can only make a content hash differ, so a step misses the cache, never a wrong hit.
        const entries = data.entries as Record<string, unknown>;
        for (const k in entries) {
          const v = entries[k];
          if (typeof v === 'string' && v.length === 64) stored.set(k, v);
        }
      }
    } catch (e) {
      if (!isErrno(e, 'ENOENT') && !(e instanceof SyntaxError) && !isErrno(e, 'EISDIR')) throw e;
    }
    return new ChecksumCache(file, stored, opts.racyWindowMs ?? RACY_WINDOW_MS);
  }

  /** Lookups answered without reading the file. */
  get hits(): number {
    return this.#hits;
  }

  /** Files whose contents were read and hashed. */
  get misses(): number {
    return this.#misses;
  }

  /** The sha256 (hex) of the file at `abs`, whose lstat (bigint) is `st`. */
  hashFile(abs: string, st: BigIntStats): Promise<string> {
    return this.hashKeyed(abs, statKey(st));
  }

  /** The hash of the file with this key when it needs no reading (kept from before or hashed already), else undefined. */
  known(key: string): string | undefined {
    const kept = this.#keep.get(key) ?? this.#racy.get(key);
    if (kept !== undefined) {
      this.#hits++;
      return kept;
    }
    const stored = this.#stored.get(key);
    if (stored !== undefined) {
      this.#hits++;
      this.#keep.set(key, stored);
    }
    return stored;
  }

  /** hashFile for a caller that kept only the statKey of an earlier lstat (the context walk). */
  hashKeyed(abs: string, key: string): Promise<string> {
    const kept = this.#keep.get(key) ?? this.#racy.get(key);
    if (kept !== undefined) {
      this.#hits++;
      return Promise.resolve(kept);
    }
    const stored = this.#stored.get(key);
    if (stored !== undefined) {
      this.#hits++;
      this.#keep.set(key, stored);
      return Promise.resolve(stored);
    }
    const running = this.#inflight.get(key);
    if (running) return running;
    this.#misses++;
    const p = this.#limit(() => this.#hash(abs, key)).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #hash(abs: string, key: string): Promise<string> {
    const size = Number(key.split(':')[2]);
    const { digest, same } = size <= SYNC_HASH ? hashSync(abs, key) : await this.#hashAsync(abs, key);
    const settled = Date.now() - changedMs(key) >= this.#racyWindowMs;
    if (same && settled) this.#keep.set(key, digest);
    else this.#racy.set(key, digest);
    return digest;
  }

  async #hashAsync(abs: string, key: string): Promise<{ digest: string; same: boolean }> {
    const fh = await open(abs, 'r');
    let digest: string;
    let same: boolean;
    try {
      // The file we opened must be the one that was stat'ed: otherwise the hash is right for now but not for the key.
      const st = await fh.stat({ bigint: true });
      same = statKey(st) === key;
      // Read in bounded chunks straight into one buffer: a Readable per file costs more than the read of a small
      // file (most of a context), and a big one never sits in memory whole.
      const h = createHash('sha256');
      const buf = Buffer.allocUnsafe(Math.max(1, Math.min(Number(st.size) + 1, READ_CHUNK)));
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
      }
      digest = h.digest('hex');
    } finally {
      await fh.close();
    }
    return { digest, same };
  }

  /**
   * Writes the entries seen this run (entries of files not seen are dropped: deleted or changed files would
   * otherwise pile up). Atomic: a temp file renamed over the old one, so a reader or a concurrent build sees the
   * old or the new file, never a torn one; of two concurrent builds the last to save wins. Writes nothing when
   * nothing changed.
   */
  async save(): Promise<void> {
    await Promise.allSettled([...this.#inflight.values()]);
    if (this.#keep.size === this.#stored.size && [...this.#keep.keys()].every((k) => this.#stored.has(k))) return;
    const data: CacheFile = { format: FORMAT, entries: Object.fromEntries(this.#keep) };
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify(data));
      await rename(tmp, this.file);
      this.#stored.clear();
      for (const [k, v] of this.#keep) this.#stored.set(k, v);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }
}
