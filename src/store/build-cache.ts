/**
 * The build cache: step key → what the step produced (a layer in the store, or nothing), as one small JSON file per
 * key under `<store>/build-cache/steps/`. Blobs stay in the store's blobs/; `hoist prune` removes entries whose blobs
 * are gone and entries older than its --cache-ttl.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile, utimes } from 'node:fs/promises';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pidAlive } from './lock.ts';

/** A layer a step produced: the compressed blob in the store and its uncompressed digest. */
export interface CachedLayer {
  digest: string;
  size: number;
  mediaType: string;
  diffID: string;
}

export interface CacheEntry {
  /** The step's layer; absent for a step that changed no file. */
  layer?: CachedLayer;
  /** The history entry's `created` the first time: a cached rebuild gives the same config, so the same image ID. */
  created: string;
}

export const CACHE_DIR = 'build-cache';

/** A stable key from the parent's key and the parts of a step (instruction, flags, env, input checksums). */
export function stepKey(parent: string, ...parts: unknown[]): string {
  const h = createHash('sha256');
  h.update(parent);
  for (const p of parts) h.update('\0' + JSON.stringify(p));
  return `sha256:${h.digest('hex')}`;
}

export class BuildCache {
  readonly dir: string;
  readonly #ttlMs: number | undefined;
  readonly #disabled: boolean;

  constructor(storeRoot: string, opts: { disabled?: boolean; ttlMs?: number } = {}) {
    this.dir = path.join(storeRoot, CACHE_DIR, 'steps');
    this.#disabled = opts.disabled ?? false;
    this.#ttlMs = opts.ttlMs;
  }

  #file(key: string): string {
    return path.join(this.dir, `${key.replace(/^sha256:/, '')}.json`);
  }

  /** The entry for `key`, or undefined (no entry, --no-cache, older than the TTL, or unreadable). */
  async get(key: string): Promise<CacheEntry | undefined> {
    if (this.#disabled) return undefined;
    let text: string;
    try {
      text = await readFile(this.#file(key), 'utf8');
    } catch {
      return undefined;
    }
    let e: CacheEntry & { stored?: number };
    try {
      e = JSON.parse(text) as CacheEntry & { stored?: number };
    } catch {
      return undefined;
    }
    if (this.#ttlMs !== undefined && e.stored !== undefined && Date.now() - e.stored > this.#ttlMs) return undefined;
    // Used entries stay: prune trims by the file's mtime.
    const now = new Date();
    await utimes(this.#file(key), now, now).catch(() => {});
    return e.layer ? { layer: e.layer, created: e.created } : { created: e.created };
  }

  /** Records a step's result (also under --no-cache, as docker does: the next build may use it). Atomic. */
  async put(key: string, entry: CacheEntry): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const file = this.#file(key);
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await writeFile(tmp, JSON.stringify({ ...entry, stored: Date.now() }));
      await rename(tmp, file);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }
}

export interface TrimResult {
  /** Entries removed (too old, or all with `all`). */
  removed: number;
  /** Blobs the remaining entries use: prune keeps them. */
  keep: Set<string>;
  /** Their layers' diffIDs: prune keeps those snapshots (a rebuild runs on them). */
  keepDiffIDs: Set<string>;
}

/**
 * For `hoist prune`: drops entries not used for `maxAgeMs` (by file mtime: get() touches it), or all of them, and
 * tells which blobs the rest still need. Entries whose blob is gone are harmless (get() misses) and go too.
 */
export async function trimBuildCache(storeRoot: string, opts: { maxAgeMs?: number; all?: boolean; hasBlob: (d: string) => Promise<boolean> }): Promise<TrimResult> {
  const dir = path.join(storeRoot, CACHE_DIR, 'steps');
  const keep = new Set<string>();
  const keepDiffIDs = new Set<string>();
  let removed = 0;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return { removed, keep, keepDiffIDs };
  }
  const now = Date.now();
  for (const n of names) {
    const file = path.join(dir, n);
    let drop = opts.all === true || !n.endsWith('.json');
    let layer: CachedLayer | undefined;
    if (!drop) {
      try {
        const st = await stat(file);
        if (opts.maxAgeMs !== undefined && now - st.mtimeMs > opts.maxAgeMs) drop = true;
        layer = (JSON.parse(await readFile(file, 'utf8')) as CacheEntry).layer;
        if (layer && !(await opts.hasBlob(layer.digest))) drop = true;
      } catch {
        drop = true;
      }
    }
    if (drop) {
      await rm(file, { force: true });
      removed++;
    } else if (layer) {
      keep.add(layer.digest);
      keepDiffIDs.add(layer.diffID);
    }
  }
  // Temp dirs of builds that are gone (a live build's pid is in the name).
  const tmp = path.join(storeRoot, CACHE_DIR, 'tmp');
  for (const t of await readdir(tmp).catch(() => [] as string[])) {
    const pid = Number(t.split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && !pidAlive(pid)) await rm(path.join(tmp, t), { recursive: true, force: true });
  }
  return { removed, keep, keepDiffIDs };
}

/** Parses buildah's --cache-ttl (`90s`, `10m`, `2h`, `1h30m`, or plain seconds) to milliseconds. */
export function parseDuration(s: string): number | undefined {
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(s)) !== null) {
    const n = Number(m[1]);
    total += n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    consumed = re.lastIndex;
  }
  return consumed === s.length && s.length > 0 ? total : undefined;
}
