/**
 * The build context: the directory COPY and ADD read from, as BuildKit sees it after the .dockerignore filter.
 *
 * The directory is walked once, lazily, into a compact in-memory tree (names and the few stat fields COPY needs);
 * ignored files are not in it at all, and ignored directories are not even read unless an exception could bring
 * something inside back (then the directory stays, as the parent of what came back, as in BuildKit).
 *
 * COPY sources resolve as BuildKit's copy (fsutil ResolveWildcards with FollowLinks, which the Dockerfile frontend
 * sets): the part before the first wildcard segment is resolved following symlinks, the rest is matched with Go's
 * filepath.Match against paths below it (a matched directory is not searched further), and each match that is a
 * symlink is followed — only that top-level link: links below a copied directory are copied as links. Symlinks
 * resolve inside the context: an absolute target starts at the context root, `..` stops there.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync, type BigIntStats, type Dirent } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { HoistError, isErrno } from '../errors.ts';
import { statKey, type ChecksumCache } from './checksum-cache.ts';
import { IgnoreMatcher, type ParentMatch } from './dockerignore.ts';
import { cleanPath, compareNames, containsWildcards, globMatcher } from './glob.ts';
import type { SourceEntry, SourceMatch, SourceTree } from './source.ts';

/** One walked entry; kept small, there may be 100k of them. */
interface Node {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  size: number;
  mtimeMs: number;
  /** Files: the checksum cache key of the walk's lstat, so checksums need no second lstat. */
  key?: string;
  linkname?: string;
  /** Directories: sorted by name (code point order, as Go's walk). */
  children?: Node[];
}

/** A path resolved in the tree: the node and its real path (symlinks replaced by their targets). */
interface Resolved {
  node: Node;
  rel: string;
}

/** Entries walked between two turns of the event loop. */
const WALK_SLICE = 2000;
/** Files hashed at once by checksum() (cache misses only; hits cost no I/O). */
const HASH_CONCURRENCY = 16;
/** As Linux's MAXSYMLINKS-ish limit in continuity's RootPath. */
const MAX_LINKS = 255;

function nodeOf(name: string, st: BigIntStats): Node | undefined {
  const type = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : undefined;
  // Sockets, FIFOs and devices are not carried: nothing in a context should be one, and a layer can't hold a socket.
  if (type === undefined) return undefined;
  const n: Node = {
    name,
    type,
    mode: Number(st.mode) & 0o7777,
    size: type === 'file' ? Number(st.size) : 0,
    mtimeMs: Number(st.mtimeNs / 1000n) / 1000,
  };
  if (type === 'file') n.key = statKey(st);
  return n;
}

function findChild(dir: Node, name: string): Node | undefined {
  const c = dir.children;
  if (!c) return undefined;
  let lo = 0;
  let hi = c.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const cmp = compareNames(c[mid]!.name, name);
    if (cmp === 0) return c[mid];
    if (cmp < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}

function joinRel(a: string, b: string): string {
  return a === '' ? b : `${a}/${b}`;
}

function notFound(pattern: string): HoistError {
  return new HoistError('NOT_FOUND', `COPY failed: file not found in build context or excluded by .dockerignore: stat ${pattern}: file does not exist`);
}

function unreadable(what: string, e: unknown): HoistError {
  const code = (e as { code?: string }).code ?? String(e);
  return new HoistError('CONTEXT_UNREADABLE', `build context: cannot read ${what} (${code}); make it readable or add it to .dockerignore`, { cause: e });
}

/** An upper bound of the segments a Go filepath.Match pattern can match: a class can match a '/' (Go's quirk). */
function maxSegments(pattern: string): number {
  let n = 1;
  for (const ch of pattern) if (ch === '/' || ch === '[') n++;
  return n;
}

/** Runs `fn` over `items`, `width` at a time, stopping at the first error. */
async function forEachLimited<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

/** After the walk: drops excluded directories nothing came back in, sorts every directory's entries by name. */
function finishDir(dir: Node, excludedDirs: Set<Node>): void {
  const kids = dir.children!;
  let w = 0;
  for (const c of kids) {
    if (c.type === 'directory') {
      finishDir(c, excludedDirs);
      if (c.children!.length === 0 && excludedDirs.has(c)) continue;
    }
    kids[w++] = c;
  }
  kids.length = w;
  kids.sort((a, b) => compareNames(a.name, b.name));
}

export class BuildContext implements SourceTree {
  /** The context directory, absolute. */
  readonly dir: string;
  readonly ignore: IgnoreMatcher;
  #tree: Promise<Node> | undefined;
  /** The walked node each returned entry came from: checksum() takes its cache key from there. */
  readonly #origin = new WeakMap<SourceEntry, Node>();

  /** `dir` and a '/', to make `abs` paths with. */
  readonly #dirSlash: string;

  private constructor(dir: string, ignore: IgnoreMatcher) {
    this.dir = dir;
    this.#dirSlash = dir.endsWith('/') ? dir : `${dir}/`;
    this.ignore = ignore;
  }

  /** The context at `dir` (a directory; a symlink to one is fine), filtered by `ignore`. Nothing is read yet. */
  static async open(dir: string, ignore: IgnoreMatcher): Promise<BuildContext> {
    const abs = resolve(dir);
    try {
      const st = await stat(abs);
      if (!st.isDirectory()) throw new HoistError('BAD_CONTEXT', `build context ${dir}: not a directory; pass the directory holding the files to COPY`);
    } catch (e) {
      if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR')) {
        throw new HoistError('NOT_FOUND', `build context ${dir}: no such directory; pass an existing directory as the context`, { cause: e });
      }
      throw e;
    }
    return new BuildContext(abs, ignore);
  }

  #root(): Promise<Node> {
    this.#tree ??= this.#walk();
    return this.#tree;
  }

  /**
   * Reads the whole (filtered) context into the tree, with synchronous readdir/lstat calls: on a context of small
   * files a promise per syscall (a thread-pool round trip) costs more than the syscall, and the walk is what a no-op
   * rebuild spends most of its time on. The event loop gets a turn every WALK_SLICE entries, so other stages'
   * streams keep moving during the walk of a big context.
   */
  async #walk(): Promise<Node> {
    const root = nodeOf('', await stat(this.dir, { bigint: true }))!;
    root.children = [];
    /** Excluded directories walked for the exceptions: dropped at the end unless something came back inside. */
    const excludedDirs = new Set<Node>();
    const ignore = this.ignore;
    const stack: Array<{ dir: Node; abs: string; rel: string; info: ParentMatch | undefined; excluded: boolean }> = [
      { dir: root, abs: this.dir, rel: '', info: undefined, excluded: false },
    ];
    let sinceYield = 0;
    while (stack.length > 0) {
      const { dir, abs, rel, info, excluded } = stack.pop()!;
      let dirents: Dirent[];
      try {
        dirents = readdirSync(abs, { withFileTypes: true });
      } catch (e) {
        // BuildKit walks an excluded directory only for the exceptions, and shrugs at one it can't read.
        if (excluded && isErrno(e, 'EACCES')) continue;
        if (isErrno(e, 'ENOENT') && rel !== '') continue; // removed while we walked
        throw unreadable(rel === '' ? abs : rel, e);
      }
      for (const d of dirents) {
        const crel = joinRel(rel, d.name);
        let cinfo: ParentMatch | undefined;
        let cexcluded = false;
        if (!ignore.empty) {
          const m = ignore.matchWithParent(crel, info);
          cexcluded = m.excluded;
          cinfo = m.info;
          if (cexcluded && (!d.isDirectory() || ignore.canSkipDir(crel))) continue;
        }
        const cabs = join(abs, d.name);
        let st: BigIntStats;
        try {
          st = lstatSync(cabs, { bigint: true });
        } catch (e) {
          if (isErrno(e, 'ENOENT')) continue; // removed while we walked
          throw unreadable(crel, e);
        }
        const node = nodeOf(d.name, st);
        if (node === undefined) continue;
        if (node.type === 'directory') {
          node.children = [];
          if (cexcluded) excludedDirs.add(node);
          dir.children!.push(node);
          stack.push({ dir: node, abs: cabs, rel: crel, info: cinfo, excluded: cexcluded });
          continue;
        }
        if (cexcluded) continue; // raced: was a directory at readdir time
        if (node.type === 'symlink') {
          try {
            node.linkname = readlinkSync(cabs);
          } catch (e) {
            throw unreadable(crel, e);
          }
        }
        dir.children!.push(node);
      }
      sinceYield += dirents.length;
      if (sinceYield >= WALK_SLICE) {
        sinceYield = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
    }
    finishDir(root, excludedDirs);
    return root;
  }

  /**
   * A COPY source word as a path relative to the root: cleaned, a leading '/' dropped ('.' and '/' are the root).
   * A path that climbs out of the context is refused (BuildKit would quietly read it from the context root instead;
   * the classic builder refused it, and that is what a user means by it).
   */
  #normalize(word: string): string {
    const c = cleanPath(word);
    if (c === '..' || c.startsWith('../')) {
      throw new HoistError('OUTSIDE_CONTEXT', `COPY failed: forbidden path outside the build context: ${word}; copy files from inside ${this.dir}`);
    }
    if (c === '.' || c === '/') return '';
    return c.startsWith('/') ? c.slice(1) : c;
  }

  /**
   * Resolves `path` (clean, relative) in the tree as continuity's RootPath does: every symlink on the way is
   * followed (the last one only with `followLast`), absolute targets start at the root, `..` stops at the root.
   * Undefined when something on the way is missing (or ignored) or not a directory.
   */
  #resolve(root: Node, path: string, followLast: boolean): Resolved | undefined {
    let parts = path === '' ? [] : path.split('/');
    let chain: Node[] = [];
    let names: string[] = [];
    let hops = 0;
    let i = 0;
    while (i < parts.length) {
      const name = parts[i++]!;
      if (name === '' || name === '.') continue;
      if (name === '..') {
        chain.pop();
        names.pop();
        continue;
      }
      const dir = chain.length > 0 ? chain[chain.length - 1]! : root;
      if (dir.type !== 'directory') return undefined;
      const child = findChild(dir, name);
      if (child === undefined) return undefined;
      if (child.type === 'symlink' && (i < parts.length || followLast)) {
        if (++hops > MAX_LINKS) {
          throw new HoistError('TOO_MANY_LINKS', `COPY failed: too many levels of symbolic links in ${path} in the build context; fix the symlink loop`);
        }
        const target = child.linkname ?? '';
        if (target.startsWith('/')) {
          chain = [];
          names = [];
        }
        parts = [...target.split('/'), ...parts.slice(i)];
        i = 0;
        continue;
      }
      chain.push(child);
      names.push(name);
    }
    return { node: chain.length > 0 ? chain[chain.length - 1]! : root, rel: names.join('/') };
  }

  async match(pattern: string, exclude: string[] = []): Promise<SourceMatch[]> {
    const root = await this.#root();
    const path = this.#normalize(pattern);
    const ex = exclude.length > 0 ? new IgnoreMatcher(exclude, 'COPY --exclude') : undefined;
    const segs = path === '' ? [] : path.split('/');
    const w = segs.findIndex(containsWildcards);
    if (w < 0) {
      const r = this.#resolve(root, path, true);
      if (r === undefined) throw notFound(pattern);
      return [this.#matchOf(path, r, ex)];
    }
    const base = this.#resolve(root, segs.slice(0, w).join('/'), true);
    if (base === undefined) throw notFound(pattern);
    // BuildKit sets AllowEmptyWildcard for COPY and ADD: a glob that matches nothing copies nothing.
    if (base.node.type !== 'directory') return [];
    const rest = segs.slice(w).join('/');
    const isMatch = globMatcher(rest);
    const depthLimit = maxSegments(rest);
    const found: string[] = [];
    const visit = (dir: Node, relFromBase: string, depth: number): void => {
      for (const child of dir.children ?? []) {
        const r = joinRel(relFromBase, child.name);
        if (isMatch(r)) {
          found.push(joinRel(base.rel, r));
          continue; // a matched directory is copied whole, not searched
        }
        if (child.type === 'directory' && depth < depthLimit) visit(child, r, depth + 1);
      }
    };
    visit(base.node, '', 1);
    const out: SourceMatch[] = [];
    for (const rel of found) {
      // Each match is followed if it is a symlink (FollowLinks applies to every matched source).
      const r = this.#resolve(root, rel, true);
      if (r === undefined) throw notFound(rel);
      out.push(this.#matchOf(rel, r, ex));
    }
    return out;
  }

  async stat(rel: string): Promise<SourceEntry | undefined> {
    const root = await this.#root();
    const path = this.#normalize(rel);
    const r = this.#resolve(root, path, false);
    if (r === undefined) return undefined;
    const out: SourceEntry[] = [];
    this.#emit(r.node, path, r.rel, out);
    return out[0];
  }

  /**
   * The match of source `rel` resolved to `target`: the entries carry `rel` (the path as written, so a followed
   * symlink keeps its own name and its target's contents appear below it) while `abs` points at the real file.
   */
  #matchOf(rel: string, target: Resolved, ex: IgnoreMatcher | undefined): SourceMatch {
    const entries: SourceEntry[] = [];
    this.#emit(target.node, rel, target.rel, entries);
    if (target.node.type === 'directory') this.#emitChildren(target.node, rel, target.rel, '', undefined, ex, entries);
    return { rel, entries };
  }

  /**
   * The subtree below `dir`, preorder, names sorted. `ex` (COPY --exclude) applies to paths relative to the match,
   * as fsutil's copy applies it: an excluded directory is dropped unless an exception brings back something below.
   */
  #emitChildren(
    dir: Node,
    vrel: string,
    realRel: string,
    exRel: string,
    parent: ParentMatch | undefined,
    ex: IgnoreMatcher | undefined,
    out: SourceEntry[],
  ): void {
    for (const child of dir.children ?? []) {
      const cv = joinRel(vrel, child.name);
      const cr = joinRel(realRel, child.name);
      if (ex === undefined) {
        this.#emit(child, cv, cr, out);
        if (child.type === 'directory') this.#emitChildren(child, cv, cr, '', undefined, undefined, out);
        continue;
      }
      const sub = joinRel(exRel, child.name);
      const m = ex.matchWithParent(sub, parent);
      if (m.excluded && (child.type !== 'directory' || ex.canSkipDir(sub))) continue;
      const mark = out.length;
      this.#emit(child, cv, cr, out);
      if (child.type === 'directory') this.#emitChildren(child, cv, cr, sub, m.info, ex, out);
      if (m.excluded && out.length === mark + 1) out.length = mark;
    }
  }

  #emit(node: Node, rel: string, realRel: string, out: SourceEntry[]): void {
    const e: SourceEntry = { rel, type: node.type, mode: node.mode, uid: 0, gid: 0, size: node.size, mtimeMs: node.mtimeMs };
    if (node.linkname !== undefined) e.linkname = node.linkname;
    // Concatenated, not path.join'ed: the string then shares the context path and the rel it is made of.
    if (node.type === 'file') e.abs = realRel === '' ? this.dir : `${this.#dirSlash}${realRel}`;
    this.#origin.set(e, node);
    out.push(e);
  }

  /**
   * A digest of what `matches` would copy: sha256 over the sorted records (path, type, mode, owner, link target,
   * content sha256) of every entry, plus the matched paths. The same when nothing changed — including a file only
   * touched (mtime is not in it, as BuildKit's content hash leaves it out) — and different when a name, a mode, a
   * link target or any byte changes. Content hashes come from `cache`, so an unchanged context reads no file.
   */
  async checksum(matches: SourceMatch[], cache: ChecksumCache): Promise<string> {
    const records: string[] = [];
    const files: { at: number; fields: (string | number)[]; e: SourceEntry; abs: string }[] = [];
    for (const m of matches) {
      records.push(JSON.stringify(['match', m.rel]));
      for (const e of m.entries) {
        const fields: (string | number)[] = [e.rel, e.type, e.mode, e.uid, e.gid, e.linkname ?? ''];
        if (e.xattrs) for (const k of Object.keys(e.xattrs).sort()) fields.push(`xattr:${k}=${e.xattrs[k]!.toString('base64')}`);
        if (e.type === 'file' && e.abs !== undefined) {
          // Known already (a rebuild): no promise per file.
          const key = this.#origin.get(e)?.key;
          const known = key === undefined ? undefined : cache.known(key);
          if (known !== undefined) {
            fields.push(known);
            records.push(JSON.stringify(fields));
            continue;
          }
          files.push({ at: records.length, fields, e, abs: e.abs });
          records.push('');
        } else {
          records.push(JSON.stringify([...fields, '']));
        }
      }
    }
    await forEachLimited(files, HASH_CONCURRENCY, async (f) => {
      records[f.at] = JSON.stringify([...f.fields, await this.#contentHash(f.e, f.abs, cache)]);
    });
    records.sort();
    const h = createHash('sha256');
    for (const r of records) h.update(`${r}\n`);
    return `sha256:${h.digest('hex')}`;
  }

  async #contentHash(e: SourceEntry, abs: string, cache: ChecksumCache): Promise<string> {
    try {
      const node = this.#origin.get(e);
      if (node?.key !== undefined) return await cache.hashKeyed(abs, node.key);
      return await cache.hashFile(abs, await lstat(abs, { bigint: true }));
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR') || isErrno(err, 'EISDIR')) {
        throw new HoistError('CONTEXT_CHANGED', `build context: ${e.rel} was removed or replaced during the build; run the build again`, { cause: err });
      }
      if (isErrno(err, 'EACCES')) {
        throw new HoistError('CONTEXT_UNREADABLE', `build context: cannot read ${e.rel} (permission denied); make it readable or add it to .dockerignore`, { cause: err });
      }
      throw err;
    }
  }
}
