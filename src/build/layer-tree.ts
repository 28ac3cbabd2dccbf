/**
 * The filesystem of an image (its layer blobs in the store), read in userspace from the layer tars: what COPY --from
 * copies, where COPY --chown finds /etc/passwd and /etc/group, and what COPY and WORKDIR ask about paths. Not read
 * from unpacked snapshots: a rootless snapshot holds files owned by subordinate ids that the builder cannot read.
 *
 * Two passes over a layer, at most:
 * - Index: each layer's tar is read once to list its entries (path, type, mode, owner, size, mtime, link target,
 *   xattrs from pax SCHILY.xattr.*, whiteouts and opaque markers) in tar order. The index is kept in
 *   `indexCacheDir/<diffID hex>.json`, so a base image's layers are read at most once ever. While indexing, the
 *   uncompressed bytes are checked against the diffID, so an index is only ever stored under the right name.
 * - Extraction: match() and readFile() stream again only the layers that hold the final version of a file they
 *   need, writing those files' bytes into a private directory under `tmpDir` (0600, the current user's: ownership and
 *   mode are in the SourceEntry). One read of a blob at a time per layer; bytes never held whole in memory.
 *
 * The union is built bottom-up in memory exactly as unpack.ts applies layers to a directory: names normalised the
 * same way (leading `/` and `.` parts dropped, `..` refused with UNSAFE_LAYER), parent directories resolved through
 * symlinks inside the tree, missing parents made 0755, `.wh.NAME` and `DIR/.wh..wh..opq` (and overlay's char device
 * 0:0) hiding lower content but never the same layer's own entries, devices and fifos left out. A hard link becomes a
 * copy of its target's entry: reported as a file with the target's bytes.
 *
 * Path lookups (stat, readFile, isDir, match) resolve symlinks inside the tree as if it were `/`: `..` stops at the
 * root and an absolute target starts from it, so nothing outside the tree is ever named.
 *
 * match() follows BuildKit's COPY (fsutil copy with FollowLinks and AllowWildcard/AllowEmptyWildcard): the part of
 * the pattern before the first segment holding a wildcard is resolved (symlinks followed); the rest is matched with
 * Go's filepath.Match against the paths below it, walked in name order without following symlinks, a matched
 * directory not descended. A match that is a symlink is followed (its target's entry and subtree are reported under
 * the matched path). A wildcard matching nothing gives no matches (BuildKit copies nothing); a missing plain path
 * or wildcard base is NOT_FOUND. --exclude patterns apply to paths relative to each match, as fsutil's copier does.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline, Transform, type Readable } from 'node:stream';
import { HoistError, isErrno, isHoistError } from '../errors.ts';
import { autoDecompress } from '../layer/compression.ts';
import { forEachTarEntry, type EntryBody, type TarHeader } from '../layer/tar-entries.ts';
import { isOverlayXattr, tarXattrs } from '../layer/xattrs.ts';
import { DigestMismatchError, Digester, parseDigest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/types.ts';
import type { OciLayout } from '../store/layout.ts';
import { IgnoreMatcher, type ParentMatch } from './dockerignore.ts';
import { cleanPath, compareNames, containsWildcards, globMatcher } from './glob.ts';
import type { SourceEntry, SourceMatch, SourceTree } from './source.ts';

/** Bump when the index format or what it records changes: older files are then rebuilt. */
const INDEX_VERSION = 1;
const READ_FILE_LIMIT = 4 * 1024 * 1024;
/** Linux's MAXSYMLINKS, as unpack.ts. */
const MAX_SYMLINKS = 40;
const INDEX_CONCURRENCY = 4;
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

/**
 * One tar entry as the union needs it. Short keys: an index of a big layer holds hundreds of thousands of them.
 * t: f file, d directory, s symlink, h hard link (l = its target, normalised), w whiteout of p, o opaque marker of
 * directory p. n: the entry's ordinal in the tar (which entry holds a file's bytes).
 */
export interface IndexEntry {
  p: string;
  t: 'f' | 'd' | 's' | 'h' | 'w' | 'o';
  m?: number;
  u?: number;
  g?: number;
  z?: number;
  mt?: number;
  l?: string;
  /** xattrs, values base64 */
  x?: Record<string, string>;
  n?: number;
}

export interface LayerIndex {
  v: number;
  diffID: string;
  entries: IndexEntry[];
}

/** Where a file's bytes are: entry `n` of layer `layer`'s tar, `z` bytes long. */
interface ContentRef {
  layer: number;
  n: number;
  z: number;
}

interface Node {
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  linkname?: string;
  xattrs?: Record<string, string>;
  content?: ContentRef;
  children?: Map<string, Node>;
  /** The layer whose entry made (or last replaced) this node; -1 for a parent made because it was missing. */
  layer: number;
  /** The last layer that wrote something below this directory. */
  touched: number;
}

type Resolved = { node: Node; stack: Node[]; names: string[] } | { miss: 'absent' | 'notdir' | 'loop'; at: string };

export interface LayerTreeOptions {
  /** Where matched files' contents are extracted (inside a private subdirectory). The caller removes it. */
  tmpDir: string;
  /** Where per-layer indexes are kept across builds (`<diffID hex>.json`). Without it they live in memory only. */
  indexCacheDir?: string;
  /** Names the tree in messages, e.g. `stage "build"` or an image reference. */
  name?: string;
  /**
   * Small files (up to SMALL_FILE bytes) whose bytes are kept in memory instead of a temp file, up to this many
   * bytes in all for this tree (default 0: every file goes to a temp file, `abs` set). Matched entries then carry
   * `content` instead of `abs`. Creating a file costs far more than its bytes on many filesystems (ext4 under
   * load here: 0.5–1 ms per create), and COPY --from of thousands of small files would otherwise create and
   * remove each of them once more only to read it back.
   */
  memoryBytes?: number;
}

/** The largest file LayerTreeOptions.memoryBytes keeps in memory. */
const SMALL_FILE = 256 * 1024;

/** What an extracted file became: a temp file's path, or its bytes. */
type Extracted = string | Buffer;

export class LayerTree implements SourceTree {
  readonly #layout: OciLayout;
  readonly #layers: Descriptor[];
  readonly #tmpDir: string;
  readonly #name: string;
  readonly #root: Node;
  /** Extracted contents by `layer:n`: the file's path once written, or its bytes (see memoryBytes). */
  readonly #extracted = new Map<string, Promise<Extracted>>();
  readonly #memoryBytes: number;
  /** Bytes of extracted contents held in memory so far. */
  #inMemory = 0;
  /** The read of each layer's blob in progress, so that reads of one blob never overlap. */
  readonly #layerQueue: Promise<unknown>[];
  #dir: Promise<string> | undefined;
  #empty: Promise<string> | undefined;

  private constructor(layout: OciLayout, layers: Descriptor[], opts: LayerTreeOptions) {
    this.#layout = layout;
    this.#layers = layers;
    this.#tmpDir = opts.tmpDir;
    this.#name = opts.name ?? 'the source image';
    this.#memoryBytes = opts.memoryBytes ?? 0;
    this.#root = dirNode(0o755, -1);
    this.#layerQueue = layers.map(() => Promise.resolve());
  }

  /** layers bottom first (descriptors of blobs in `layout`), diffIDs in the same order. */
  static async open(layout: OciLayout, layers: Descriptor[], diffIDs: string[], opts: LayerTreeOptions): Promise<LayerTree> {
    if (layers.length !== diffIDs.length) {
      throw new HoistError('BAD_IMAGE', `${opts.name ?? 'image'}: ${layers.length} layers but ${diffIDs.length} diff_ids in its config; the image is damaged`);
    }
    const tree = new LayerTree(layout, layers, opts);
    const indexes = await mapLimit(layers, INDEX_CONCURRENCY, (d, i) => loadIndex(layout, d, diffIDs[i]!, opts.indexCacheDir));
    indexes.forEach((ix, i) => tree.#apply(ix, i, `layer ${layers[i]!.digest}`));
    return tree;
  }

  async stat(rel: string): Promise<SourceEntry | undefined> {
    const parts = queryParts(rel);
    const r = this.#resolve(parts, false);
    return 'miss' in r ? undefined : entryOf(r.node, parts.join('/'));
  }

  async isDir(rel: string): Promise<boolean> {
    const r = this.#resolve(queryParts(rel), true);
    return !('miss' in r) && r.node.type === 'directory';
  }

  async readFile(rel: string): Promise<Buffer | undefined> {
    const r = this.#resolve(queryParts(rel), true);
    if ('miss' in r || r.node.type !== 'file') return undefined;
    if (r.node.size > READ_FILE_LIMIT) {
      throw new HoistError('TOO_LARGE', `${this.#name}: /${rel.replace(/^\/+/, '')} is ${r.node.size} bytes, over the ${READ_FILE_LIMIT}-byte limit for files hoist reads itself`);
    }
    const got = (await this.#extract([r.node.content!])).get(refKey(r.node.content!))!;
    return typeof got === 'string' ? readFile(got) : got;
  }

  async match(pattern: string, exclude: string[] = []): Promise<SourceMatch[]> {
    const cleaned = cleanPath(`/${pattern}`);
    const segs = cleaned === '/' ? [] : cleaned.slice(1).split('/');
    const w = segs.findIndex(containsWildcards);
    let rels: string[];
    if (w < 0) {
      rels = [segs.join('/')];
    } else {
      const base = this.#resolve(segs.slice(0, w), true);
      if ('miss' in base) throw this.#notFound(pattern);
      const matches = globMatcher(segs.slice(w).join('/'));
      rels = [];
      if (base.node.type === 'directory') this.#glob(base.node, '', matches, base.names.join('/'), rels);
    }
    const matcher = exclude.length > 0 ? new IgnoreMatcher(exclude, 'COPY --exclude') : undefined;
    const out: SourceMatch[] = [];
    for (const m of rels) {
      const r = this.#resolve(m === '' ? [] : m.split('/'), true);
      if ('miss' in r) throw this.#notFound(w < 0 ? pattern : `/${m}`);
      const entries: SourceEntry[] = [entryOf(r.node, m)];
      if (r.node.type === 'directory') this.#subtree(r.node, m, '', matcher, undefined, [], entries);
      out.push({ rel: m, entries });
    }
    await this.#attachContents(out);
    return out;
  }

  #notFound(pattern: string): HoistError {
    return new HoistError('NOT_FOUND', `COPY failed: file not found in ${this.#name}: ${pattern}; check the path in that stage or image`);
  }

  /** fsutil's resolveWildcards: a walk below `dir` in name order, symlinks not followed, matched directories not entered. */
  #glob(dir: Node, sub: string, matches: (name: string) => boolean, base: string, out: string[]): void {
    for (const name of sortedNames(dir)) {
      const child = dir.children!.get(name)!;
      const r = sub === '' ? name : `${sub}/${name}`;
      if (matches(r)) out.push(base === '' ? r : `${base}/${r}`);
      else if (child.type === 'directory') this.#glob(child, r, matches, base, out);
    }
  }

  /**
   * Everything below directory `dir` (matched as `top`), in walk order, without what `matcher` excludes. An excluded
   * directory is still entered when an exception may bring something below it back; it is then reported (before
   * that first thing) only if something is, as fsutil creates such parents lazily.
   */
  #subtree(dir: Node, top: string, sub: string, matcher: IgnoreMatcher | undefined, info: ParentMatch | undefined,
    pending: Array<{ node: Node; rel: string; done: boolean }>, out: SourceEntry[]): void {
    for (const name of sortedNames(dir)) {
      const child = dir.children!.get(name)!;
      const subRel = sub === '' ? name : `${sub}/${name}`;
      const rel = top === '' ? subRel : `${top}/${subRel}`;
      let excluded = false;
      let childInfo: ParentMatch | undefined;
      if (matcher !== undefined) {
        const m = matcher.matchWithParent(subRel, info);
        excluded = m.excluded;
        childInfo = m.info;
      }
      if (!excluded) {
        for (const p of pending) {
          if (!p.done) out.push(entryOf(p.node, p.rel));
          p.done = true;
        }
        out.push(entryOf(child, rel));
        if (child.type === 'directory') this.#subtree(child, top, subRel, matcher, childInfo, [], out);
      } else if (child.type === 'directory' && !matcher!.canSkipDir(subRel)) {
        this.#subtree(child, top, subRel, matcher, childInfo, [...pending, { node: child, rel, done: false }], out);
      }
    }
  }

  /** Extracts the bytes of every file among the matches and sets their `abs`. */
  async #attachContents(matches: SourceMatch[]): Promise<void> {
    const refs: ContentRef[] = [];
    const byEntry: Array<[SourceEntry, string]> = [];
    for (const m of matches) {
      for (const e of m.entries) {
        const ref = (e as EntryWithRef)[CONTENT];
        if (ref === undefined) continue;
        refs.push(ref);
        byEntry.push([e, refKey(ref)]);
      }
    }
    if (refs.length === 0) return;
    const paths = await this.#extract(refs);
    for (const [e, key] of byEntry) {
      const got = paths.get(key)!;
      if (typeof got === 'string') e.abs = got;
      else e.content = got;
    }
  }

  /** The extracted path (or bytes) of each ref (extracting what is not yet), by refKey. */
  async #extract(refs: ContentRef[]): Promise<Map<string, Extracted>> {
    const dir = await this.#privateDir();
    const wanted = new Map<number, Map<number, Wanted>>();
    for (const ref of refs) {
      const key = refKey(ref);
      if (this.#extracted.has(key)) continue;
      if (ref.z === 0) {
        // Nothing to read: every empty file shares one empty file (or one empty buffer).
        this.#extracted.set(key, this.#memoryBytes > 0 ? Promise.resolve(EMPTY) : (this.#empty ??= emptyFile(dir)));
        continue;
      }
      const d = deferred();
      this.#extracted.set(key, d.promise);
      let perLayer = wanted.get(ref.layer);
      if (perLayer === undefined) wanted.set(ref.layer, perLayer = new Map());
      perLayer.set(ref.n, { d, size: ref.z });
    }
    for (const [layer, perLayer] of wanted) {
      const run = this.#layerQueue[layer]!.then(() => this.#extractLayer(layer, perLayer, dir));
      this.#layerQueue[layer] = run.catch(() => {});
      run.catch((e: unknown) => {
        for (const w of perLayer.values()) w.d.reject(e);
      });
    }
    const out = new Map<string, Extracted>();
    await Promise.all(refs.map(async (ref) => {
      const key = refKey(ref);
      out.set(key, await this.#extracted.get(key)!);
    }));
    return out;
  }

  #privateDir(): Promise<string> {
    this.#dir ??= (async () => {
      await mkdir(this.#tmpDir, { recursive: true });
      return mkdtemp(path.join(this.#tmpDir, 'layers-'));
    })();
    return this.#dir;
  }

  /** One streamed read of layer `layer`, writing the wanted entries (by ordinal) to files; stops after the last. */
  async #extractLayer(layer: number, want: Map<number, Wanted>, dir: string): Promise<void> {
    const desc = this.#layers[layer]!;
    const where = `layer ${desc.digest}`;
    let left = want.size;
    const blob = await this.#layout.openBlob(desc.digest, desc.size, where);
    await walkTar(blob, where, async (h, body, n) => {
      const w = want.get(n);
      if (w === undefined || w.d.settled) return false;
      if (w.size <= SMALL_FILE && this.#inMemory + w.size <= this.#memoryBytes) {
        this.#inMemory += w.size;
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of body) {
          size += (chunk as Buffer).length;
          chunks.push(chunk as Buffer);
        }
        if (size !== w.size) {
          throw new HoistError('BAD_LAYER', `${where}: layer entry "${h.name}" holds ${size} bytes where its index says ${w.size}; the layer index cache is stale: remove it and build again`);
        }
        w.d.resolve(Buffer.concat(chunks, size));
        return --left === 0;
      }
      // Synchronous writes, as unpack.ts does: a promise round trip per call costs far more than the small writes
      // of a layer's many small files. The names are ours alone (private directory, one per entry).
      const file = path.join(dir, `${layer}-${n}`);
      const fd = openSync(file, 'w', 0o600);
      let size = 0;
      try {
        for await (const chunk of body) {
          size += (chunk as Buffer).length;
          writeFull(fd, chunk as Buffer);
        }
      } catch (e) {
        closeSync(fd);
        await rm(file, { force: true });
        throw e;
      }
      closeSync(fd);
      if (size !== w.size) {
        throw new HoistError('BAD_LAYER', `${where}: layer entry "${h.name}" holds ${size} bytes where its index says ${w.size}; the layer index cache is stale: remove it and build again`);
      }
      w.d.resolve(file);
      return --left === 0;
    });
    for (const [n, { d }] of want) {
      if (!d.settled) {
        d.reject(new HoistError('BAD_LAYER', `${where}: entry ${n} of its index is not in the blob; the layer index cache is stale: remove it and build again`));
      }
    }
  }

  /** Applies layer `i`'s entries on top of the union so far, as unpack.ts does to a directory. */
  #apply(ix: LayerIndex, i: number, where: string): void {
    for (const e of ix.entries) {
      const parts = e.p === '' ? [] : e.p.split('/');
      switch (e.t) {
        case 'w': {
          const victim = parts.pop();
          if (victim === undefined) break;
          const parent = this.#resolve(parts, true);
          if ('miss' in parent || parent.node.type !== 'directory') break;
          const child = parent.node.children!.get(victim);
          if (child === undefined) break;
          if (child.layer === i || child.touched === i) {
            // The layer's own entry is never hidden by its whiteout; a directory of its own hides what is below instead.
            if (child.type === 'directory') clearLower(child, i);
          } else {
            parent.node.children!.delete(victim);
          }
          break;
        }
        case 'o': {
          const dir = this.#resolve(parts, true);
          if (!('miss' in dir) && dir.node.type === 'directory') clearLower(dir.node, i);
          break;
        }
        default:
          this.#applyEntry(e, parts, i, where);
      }
    }
  }

  #applyEntry(e: IndexEntry, parts: string[], i: number, where: string): void {
    const base = parts.pop();
    if (base === undefined) {
      // The root itself (`./`): only its metadata.
      if (e.t === 'd') setMeta(this.#root, e, i);
      return;
    }
    const parent = this.#resolve(parts, true, i);
    if ('miss' in parent) {
      const what = parent.miss === 'loop' ? 'too many levels of symbolic links' : `parent "${parent.at}" is not a directory`;
      throw new HoistError('BAD_LAYER', `${where}: layer entry "${e.p}": ${what}; the layer is damaged`);
    }
    if (parent.node.type !== 'directory') {
      throw new HoistError('BAD_LAYER', `${where}: layer entry "${e.p}": parent "${parts.join('/')}" is not a directory; the layer is damaged`);
    }
    for (const n of parent.stack) n.touched = i;
    const children = parent.node.children!;
    const existing = children.get(base);
    switch (e.t) {
      case 'd':
        if (existing?.type === 'directory') {
          // An existing directory stays, with what lower layers put in it; only its metadata changes.
          setMeta(existing, e, i);
        } else {
          const d = dirNode(0o755, i);
          setMeta(d, e, i);
          children.set(base, d);
        }
        break;
      case 'f': {
        const f: Node = { type: 'file', mode: 0, uid: 0, gid: 0, size: e.z ?? 0, mtimeMs: 0, content: { layer: i, n: e.n ?? -1, z: e.z ?? 0 }, layer: i, touched: -1 };
        setMeta(f, e, i);
        children.set(base, f);
        break;
      }
      case 's': {
        const s: Node = { type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtimeMs: 0, linkname: e.l ?? '', layer: i, touched: -1 };
        setMeta(s, e, i);
        children.set(base, s);
        break;
      }
      case 'h': {
        const toParts = (e.l ?? '').split('/').filter((p) => p !== '');
        const toBase = toParts.pop();
        const toParent = toBase === undefined ? undefined : this.#resolve(toParts, true);
        const target = toParent === undefined || 'miss' in toParent || toParent.node.type !== 'directory'
          ? undefined : toParent.node.children!.get(toBase!);
        if (target === undefined) {
          throw new HoistError('BAD_LAYER', `${where}: layer entry "${e.p}": hard link target "${e.l}" does not exist; the layer is damaged or out of order`);
        }
        if (target.type === 'directory') {
          throw new HoistError('BAD_LAYER', `${where}: layer entry "${e.p}": hard link target "${e.l}" is a directory; the layer is damaged`);
        }
        if (target === existing) break; // a link to itself
        // The same inode in a real tree; here a copy of the target's entry sharing its bytes.
        children.set(base, { ...target, layer: i, touched: -1 });
        break;
      }
    }
  }

  /**
   * Resolves `parts` from the root, expanding symlinks inside the tree (`..` stops at the root, an absolute target
   * starts from it). `followLast`: a symlink in the last place is expanded too. `create` (a layer number): missing
   * components become 0755 directories, as unpack.ts makes missing parents.
   */
  #resolve(parts: readonly string[], followLast: boolean, create?: number): Resolved {
    const stack: Node[] = [this.#root];
    const names: string[] = [];
    const queue = [...parts];
    let links = 0;
    while (queue.length > 0) {
      const c = queue.shift()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (names.length > 0) {
          names.pop();
          stack.pop();
        }
        continue;
      }
      const dir = stack[stack.length - 1]!;
      if (dir.type !== 'directory') return { miss: 'notdir', at: names.join('/') };
      let child = dir.children!.get(c);
      if (child === undefined) {
        if (create === undefined) return { miss: 'absent', at: [...names, c].join('/') };
        child = dirNode(0o755, -1);
        dir.children!.set(c, child);
      }
      if (child.type === 'symlink' && (queue.length > 0 || followLast)) {
        if (++links > MAX_SYMLINKS) return { miss: 'loop', at: [...names, c].join('/') };
        const to = child.linkname ?? '';
        if (to.startsWith('/')) {
          stack.length = 1;
          names.length = 0;
        }
        queue.unshift(...to.split('/'));
        continue;
      }
      if (queue.length > 0 && child.type !== 'directory') return { miss: 'notdir', at: [...names, c].join('/') };
      stack.push(child);
      names.push(c);
    }
    return { node: stack[stack.length - 1]!, stack, names };
  }
}

/** The hidden link from a reported entry back to the bytes it needs (not part of SourceEntry). */
const CONTENT = Symbol('layer-tree.content');
type EntryWithRef = SourceEntry & { [CONTENT]?: ContentRef };

function entryOf(node: Node, rel: string): SourceEntry {
  const e: EntryWithRef = {
    rel, type: node.type, mode: node.mode, uid: node.uid, gid: node.gid, size: node.type === 'file' ? node.size : 0, mtimeMs: node.mtimeMs,
  };
  if (node.type === 'symlink') e.linkname = node.linkname ?? '';
  if (node.xattrs !== undefined) {
    const x: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(node.xattrs)) if (!isOverlayXattr(k)) x[k] = Buffer.from(v, 'base64');
    if (Object.keys(x).length > 0) e.xattrs = x;
  }
  if (node.type === 'file' && node.content !== undefined) Object.defineProperty(e, CONTENT, { value: node.content });
  return e;
}

function dirNode(mode: number, layer: number): Node {
  return { type: 'directory', mode, uid: 0, gid: 0, size: 0, mtimeMs: 0, children: new Map(), layer, touched: -1 };
}

function setMeta(n: Node, e: IndexEntry, layer: number): void {
  n.mode = e.m ?? n.mode;
  n.uid = e.u ?? 0;
  n.gid = e.g ?? 0;
  n.mtimeMs = e.mt ?? 0;
  if (e.x !== undefined) n.xattrs = e.x;
  else delete n.xattrs;
  n.layer = layer;
}

/** Removes from `dir` what lower layers left, keeping (and descending into) what layer `i` wrote. */
function clearLower(dir: Node, i: number): void {
  for (const [name, child] of dir.children!) {
    if (child.layer === i || child.touched === i) {
      if (child.type === 'directory') clearLower(child, i);
    } else {
      dir.children!.delete(name);
    }
  }
}

function sortedNames(dir: Node): string[] {
  return [...dir.children!.keys()].sort(compareNames);
}

/** A query path as components: leading `/`, `.` and empty parts dropped, `..` stopping at the root. */
function queryParts(rel: string): string[] {
  const c = cleanPath(`/${rel}`);
  return c === '/' ? [] : c.slice(1).split('/');
}

function refKey(r: ContentRef): string {
  return `${r.layer}:${r.n}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Per-layer index: build from the blob, or load from the cache.

export async function loadIndex(layout: OciLayout, desc: Descriptor, diffID: string, cacheDir: string | undefined): Promise<LayerIndex> {
  const { hex } = parseDigest(diffID, 'diff_id');
  const file = cacheDir === undefined ? undefined : path.join(cacheDir, `${hex}.json`);
  if (file !== undefined) {
    try {
      const ix = JSON.parse(await readFile(file, 'utf8')) as Partial<LayerIndex>;
      if (ix.v === INDEX_VERSION && ix.diffID === diffID && Array.isArray(ix.entries)) return ix as LayerIndex;
    } catch (e) {
      // Missing, half-written by a crashed writer of an older version, or garbage: rebuilt below either way.
      if (!isErrno(e, 'ENOENT') && !(e instanceof SyntaxError) && !isErrno(e, 'EISDIR')) throw e;
    }
  }
  const ix = await buildIndex(layout, desc, diffID);
  if (file !== undefined) await writeIndex(file, ix);
  return ix;
}

/**
 * The index of a layer read from its uncompressed tar as it is being written (a build step's layer): with
 * saveIndex() under the diffID the writer computed from the same bytes, LayerTree.open() then finds it cached and
 * never reads the stored blob back just to list it.
 */
export async function indexTar(tar: Readable, where: string): Promise<IndexEntry[]> {
  const entries: IndexEntry[] = [];
  await walkTar(tar, where, async (h, _body, n) => {
    const e = indexEntry(h, n, where);
    if (e !== undefined) entries.push(e);
    return false;
  });
  return entries;
}

/**
 * The index entry of a tar entry this process writes (copy-layer.ts onEntry: the header as given to the tar writer,
 * before pax rewriting, and the raw xattrs), as indexTar() would read it back from the tar; `n` is its ordinal.
 */
export function writtenIndexEntry(h: TarHeader, xattrs: Array<[string, Buffer]>, n: number, where: string): IndexEntry | undefined {
  const e = indexEntry(h, n, where);
  if (e !== undefined && (e.t === 'f' || e.t === 'd' || e.t === 's') && xattrs.length > 0) {
    e.x = {};
    for (const [k, v] of xattrs) e.x[k] = v.toString('base64');
  }
  return e;
}

/** Saves an index made by indexTar() in `cacheDir` (as loadIndex() does), for the layer `diffID`. */
export async function saveIndex(cacheDir: string, diffID: string, entries: IndexEntry[]): Promise<void> {
  const { hex } = parseDigest(diffID, 'diff_id');
  await writeIndex(path.join(cacheDir, `${hex}.json`), { v: INDEX_VERSION, diffID, entries });
}

/**
 * Temp file and rename: readers see the whole index or none. Not synced: it is a cache, and what a crash can leave
 * (an empty or cut-off file) does not parse, so loadIndex() builds it again; a sync here waited behind every dirty
 * page of the store's filesystem (a build's new snapshots) on the way to the next step.
 */
async function writeIndex(file: string, ix: LayerIndex): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}-${Math.random().toString(36).slice(2)}.tmp`;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(JSON.stringify(ix));
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

async function buildIndex(layout: OciLayout, desc: Descriptor, diffID: string): Promise<LayerIndex> {
  const where = `layer ${desc.digest}`;
  const hasher = new Digester(parseDigest(diffID, 'diff_id').algorithm);
  const entries: IndexEntry[] = [];
  const blob = await layout.openBlob(desc.digest, desc.size, where);
  await walkTar(blob, where, async (h, _body, n) => {
    const e = indexEntry(h, n, where);
    if (e !== undefined) entries.push(e);
    return false;
  }, hasher);
  const actual = hasher.digest();
  if (actual !== diffID) throw new DigestMismatchError(`${where} (uncompressed, its diff_id)`, diffID, actual);
  return { v: INDEX_VERSION, diffID, entries };
}

export type { EntryBody, TarHeader } from '../layer/tar-entries.ts';

function indexEntry(h: TarHeader, n: number, where: string): IndexEntry | undefined {
  const name = h.name;
  const parts = splitName(name, name, 'path', where);
  const base = parts[parts.length - 1];
  const type = h.type ?? 'file';
  const parentPath = parts.slice(0, -1).join('/');
  if (base !== undefined && base.startsWith(WHITEOUT_PREFIX)) {
    if (base === OPAQUE_MARKER) return { p: parentPath, t: 'o' };
    if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return undefined; // aufs bookkeeping, ignored as unpack does
    const victim = base.slice(WHITEOUT_PREFIX.length);
    if (victim === '' || victim === '.' || victim === '..') {
      throw new HoistError('UNSAFE_LAYER', `${where}: layer entry "${name}": whiteout does not name a file; refusing`);
    }
    return { p: parentPath === '' ? victim : `${parentPath}/${victim}`, t: 'w' };
  }
  const p = parts.join('/');
  if (type === 'character-device' && !h.devmajor && !h.devminor) return base === undefined ? undefined : { p, t: 'w' };
  const pax = h.pax ?? {};
  const e: IndexEntry = { p, t: 'f' };
  switch (type) {
    case 'file': case 'contiguous-file':
      e.t = 'f';
      e.z = h.size ?? 0;
      e.n = n;
      break;
    case 'directory':
      e.t = 'd';
      break;
    case 'symlink': {
      const to = h.linkname ?? '';
      if (to === '' || to.includes('\0')) {
        throw new HoistError('BAD_LAYER', `${where}: layer entry "${name}": symlink has an empty or invalid target; the layer is damaged`);
      }
      e.t = 's';
      e.l = to;
      break;
    }
    case 'link':
      e.t = 'h';
      e.l = splitName(h.linkname ?? '', name, `hard link target "${h.linkname ?? ''}"`, where).join('/');
      if (e.l === '') throw new HoistError('BAD_LAYER', `${where}: layer entry "${name}": hard link has an empty target; the layer is damaged`);
      return e; // a link has its target's metadata
    default:
      return undefined; // devices, fifos, unknown types: not in a rootfs hoist makes either (unpack.ts skips them)
  }
  if (base === undefined && e.t !== 'd') return undefined; // only a directory can stand for the root
  e.m = (h.mode ?? (e.t === 'd' ? 0o755 : 0o644)) & 0o7777;
  const uid = paxInt(pax['uid']) ?? h.uid ?? 0;
  const gid = paxInt(pax['gid']) ?? h.gid ?? 0;
  if (uid !== 0) e.u = uid;
  if (gid !== 0) e.g = gid;
  const mt = paxTimeMs(pax['mtime']) ?? h.mtime?.getTime() ?? 0;
  if (mt !== 0) e.mt = mt;
  const xattrs = tarXattrs(h.pax);
  if (xattrs.size > 0) {
    e.x = {};
    for (const [k, v] of xattrs) e.x[k] = v.toString('base64');
  }
  return e;
}

/** Components of an entry or link name: leading `/`, `.` and empty parts dropped; `..` refused, as unpack.ts. */
function splitName(name: string, entryName: string, what: string, where: string): string[] {
  if (name.includes('\0')) throw new HoistError('UNSAFE_LAYER', `${where}: layer entry "${entryName}": ${what} contains a NUL byte; refusing`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new HoistError('UNSAFE_LAYER', `${where}: layer entry "${entryName}": ${what} escapes the root; refusing`);
  return parts;
}

function paxInt(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

function paxTimeMs(v: string | undefined): number | undefined {
  if (v === undefined || !/^-?\d+(\.\d+)?$/.test(v)) return undefined;
  const ms = Number(v) * 1000;
  return Number.isFinite(ms) ? ms : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Streaming a layer blob's tar.

/**
 * Reads a (possibly compressed) layer blob as a tar, calling `onEntry` with each entry's header, body and ordinal;
 * `onEntry` returning true stops the read there (the blob is closed). `hasher` sees every uncompressed byte (only
 * meaningful for a read to the end).
 */
export async function walkTar(blob: Readable, where: string, onEntry: (h: TarHeader, body: EntryBody, n: number) => Promise<boolean>,
  hasher?: Digester): Promise<void> {
  // The blob's and the decompressor's errors reach forEachTarEntry through the pipeline's last stream.
  const stages: NodeJS.ReadWriteStream[] = [autoDecompress(where)];
  if (hasher !== undefined) {
    stages.push(new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hasher.update(chunk);
        cb(null, chunk);
      },
    }));
  }
  const tail = pipeline([blob, ...stages] as unknown as [Readable, NodeJS.ReadWriteStream], () => {}) as unknown as Readable;
  const badTar = (e: unknown): unknown => {
    if (isHoistError(e)) return e;
    return new HoistError('BAD_LAYER', `${where}: not a valid tar stream (${(e as Error).message}); the layer is damaged or truncated`, { cause: e });
  };
  try {
    await forEachTarEntry(tail, onEntry, badTar);
  } finally {
    blob.destroy(); // read to its end already, or given up on: either way closed now
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers.

interface Wanted {
  d: Deferred;
  size: number;
}

async function emptyFile(dir: string): Promise<string> {
  const file = path.join(dir, 'empty');
  const fh = await open(file, 'w', 0o600);
  await fh.close();
  return file;
}

const EMPTY = Buffer.alloc(0);

interface Deferred {
  promise: Promise<Extracted>;
  resolve(v: Extracted): void;
  reject(e: unknown): void;
  settled: boolean;
}

function deferred(): Deferred {
  let res!: (v: Extracted) => void;
  let rej!: (e: unknown) => void;
  const promise = new Promise<Extracted>((a, b) => {
    res = a;
    rej = b;
  });
  promise.catch(() => {}); // awaited by whoever asked; a failure nobody awaits must not crash the process
  const d: Deferred = {
    promise,
    settled: false,
    resolve(v) {
      if (d.settled) return;
      d.settled = true;
      res(v);
    },
    reject(e) {
      if (d.settled) return;
      d.settled = true;
      rej(e);
    },
  };
  return d;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function writeFull(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}
