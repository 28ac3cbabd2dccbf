/**
 * COPY/ADD without a container: the layer tar a Dockerfile copy instruction adds, computed from the sources and
 * the image's filesystem below it, with BuildKit's semantics (dockerfile2llb dispatchCopy → the file op's copy in
 * solver/llbsolver/file → tonistiigi/fsutil copy; ADD archives as solver/llbsolver/file/unpack).
 *
 * Per match of each source word, in order (a later one overrides an earlier one at the same path):
 * 1. Dest parents. A dest ending in '/' (or '/.') is created whole, else its parent is; missing directories are
 *    created 0755 (the octal --chmod's permission bits when there is one: fsutil#228; buildkitd runs with
 *    umask 0), owned by --chown or 0:0, stamped `now`. The dest is then resolved through the image's symlinks (fs.RootPath).
 * 2. Where the match goes. A directory's CONTENTS go into dest (created as in 1 when missing; an existing dest
 *    keeps its mode and owner, and takes the source directory's mtime, as fsutil restores it). A file (or
 *    symlink) goes to dest/basename when dest is a directory by then, else to dest itself.
 * 3. Below that, every entry keeps the source's mode, mtime, xattrs and symlink target, with --chmod applied to
 *    files and directories (never symlinks) and --chown to everything; without --chown a stage's or image's
 *    files keep their owner (`keepOwner`), the build context's are 0:0 (BuildKit's session resets them). A file
 *    over an existing directory, or a directory over an existing non-directory, fails as in fsutil. An existing
 *    directory below the top is merged into and takes the source's metadata.
 * --parents: each match lands at dest/<its path below the word's `/./` pivot>; the directories in between are
 * copied with the source's metadata (an existing one only takes the source's mode), and dest is a directory.
 * ADD archives (add-archive.ts): extracted into dest (always a directory, created 0755 with --chown); entries keep
 * the archive's owner (or --chown) and mode (--chmod does not apply); paths are cleaned and may not leave dest,
 * neither directly nor through a symlink; symlinks in the way are followed inside dest; an entry replaces
 * whatever is at its path unless both are directories; implied parents are 0755 and 0:0; hard links become
 * copies of their target's bytes; devices and fifos are refused. Whiteout-looking names (`.wh.x`) are written as
 * the plain files BuildKit extracts, so a layer consumer will read them as whiteouts, exactly as with BuildKit.
 *
 * The tar: the final state of every path the copy touched, sorted path by path (parents first), each path once;
 * directories of the image above them are repeated with the image's metadata. Headers carry numeric ids only,
 * whole-second mtimes (clamped to `mtimeClamp`), no atime/ctime; pax records only for long names, ids past the
 * ustar range and xattrs; no hard links. File bytes stream from disk (or memory for heredocs) when the tar is read.
 */
import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pack as tarPack, type Pack } from 'tar-stream';
import { HoistError } from '../errors.ts';
import { drained, ignoreSinkError, pushPaxXattrs, type PackHeader } from '../layer/tar-pack.ts';
import { isArchiveMatch, openArchive, type ArchiveMatch, type ArchiveReader } from './add-archive.ts';
import { octalChmod, parseChmod, type ChmodFn } from './chmod.ts';
import type { SourceEntry, SourceMatch } from './source.ts';

export interface ParentsOptions {
  /** Per source word: its `/./` pivot relative to the source root ('' when the word has none; see splitParentsPivot). */
  pivots?: string[];
  /** The source's entry at `rel` in word `word`'s tree: gives the in-between directories their metadata. */
  stat?: (word: number, rel: string) => Promise<SourceEntry | undefined>;
}

export interface CopyLayerOptions {
  /** The destination, already expanded and made absolute against WORKDIR by the caller; a trailing '/' kept (and `.` made '/'). */
  dest: string;
  /** How many source words the instruction had (>1 requires a dest ending in '/'). */
  sourceCount: number;
  chown?: { uid: number; gid: number };
  /** Raw --chmod value (octal or symbolic), see chmod.ts. */
  chmod?: string;
  /** --parents. `true` alone: no pivots, in-between directories made like created parents. */
  parents?: boolean | ParentsOptions;
  /** The image's filesystem below this layer (symlinks not followed); absent paths give undefined. */
  lower: (absPath: string) => Promise<SourceEntry | undefined>;
  /** Newer mtimes become this (reproducible builds). */
  mtimeClamp?: Date;
  /** Without --chown, keep the sources' uid/gid (COPY --from a stage or image). Default: 0:0 (the build context). */
  keepOwner?: boolean;
  /** The time stamped on directories the copy creates (BuildKit: the build's clock). Default: now. */
  now?: Date;
  /** For messages. Default 'COPY'. */
  instruction?: 'COPY' | 'ADD';
  /**
   * Called for each tar entry in the order written (its header before any pax rewriting, and its xattrs), so the
   * caller can index the layer without parsing the tar back (layer-tree.ts writtenIndexEntry).
   */
  onEntry?: WrittenEntry;
}

/** See CopyLayerOptions.onEntry. `h` is the entry's header as tar-stream takes it; `xattrs` sorted by name. */
export type WrittenEntry = (h: PackHeader, xattrs: Array<[string, Buffer]>) => void;

/** One source match: a tree to copy or (ADD) an archive to extract. */
export type CopySource = SourceMatch | ArchiveMatch;

/** Where bytes of a file come from. */
type Data =
  | { kind: 'file'; abs: string }
  | { kind: 'buffer'; buf: Buffer }
  | { kind: 'archive'; reader: ArchiveReader; offset: number };

/** What the layer holds at one path (or, for `lower` nodes, what the image has there). */
export interface PlannedNode {
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits with setuid/setgid/sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  size: number;
  linkname?: string;
  xattrs?: Record<string, Buffer>;
  /** A directory that hides what the image had below it: written with `DIR/.wh..wh..opq`. */
  opaque?: boolean;
  /** Read from the image (a directory above the copy, repeated as it is). */
  lower?: boolean;
  data?: Data;
}

export interface CopyPlan {
  /** Every path the layer will hold (no leading '/'), sorted as written. */
  entries: Array<{ path: string; node: PlannedNode }>;
  /** Releases archive temp files. */
  close(): Promise<void>;
}

const S_IFREG = 0o100000;
const USTAR_MAX_ID = 0o777777;
const MAX_MTIME_S = 2 ** 31 - 1;
const MAX_LINKS = 255;
const OPAQUE = '.wh..wh..opq';
const EMPTY = Buffer.alloc(0);

/** `src/./pattern` → pivot `src`, as BuildKit's --parents (strings.Cut at the first "/./"). No pivot: ''. */
export function splitParentsPivot(word: string): { pivot: string; pattern: string } {
  const i = word.indexOf('/./');
  if (i < 0) return { pivot: '', pattern: word };
  return { pivot: clean(word.slice(0, i)), pattern: word.slice(i + 3) };
}

/**
 * The uncompressed layer tar for one COPY/ADD. Option errors (several sources to a non-directory dest, a bad
 * --chmod) throw at once; everything else (the image in the way, unreadable files) destroys the stream with a
 * one-line HoistError.
 */
export function copyLayer(matches: CopySource[][], opts: CopyLayerOptions): Readable {
  const planner = new Planner(opts); // validates
  const pack = tarPack();
  // The reader gets errors through the iterator below; a destroy after it stopped reading must not be an
  // unhandled 'error' event.
  pack.on('error', ignoreSinkError);
  (async () => {
    const plan = await planner.run(matches);
    try {
      await writePlan(plan.entries, pack, opts.mtimeClamp, opts.onEntry);
    } finally {
      await plan.close();
    }
  })().then(
    () => pack.finalize(),
    (e: unknown) => pack.destroy(e instanceof Error ? e : new Error(String(e))),
  );
  return Readable.from(pack, { objectMode: false });
}

/** The plan copyLayer writes (for callers that want errors before streaming, and for tests). */
export async function planCopy(matches: CopySource[][], opts: CopyLayerOptions): Promise<CopyPlan> {
  return new Planner(opts).run(matches);
}

// ---- paths: relative to the image root, '/'-separated, no leading '/', '' is the root ----

function segments(p: string): string[] {
  return p.split('/').filter((s) => s !== '' && s !== '.');
}

/** Lexical clean; '..' stops at the root (Go's filepath.Clean on an absolute path). */
function clean(p: string): string {
  const out: string[] = [];
  for (const s of segments(p)) {
    if (s === '..') out.pop();
    else out.push(s);
  }
  return out.join('/');
}

function join(a: string, b: string): string {
  return a === '' ? b : b === '' ? a : `${a}/${b}`;
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function baseOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

const ROOT: PlannedNode = { type: 'directory', mode: 0o755, uid: 0, gid: 0, mtimeMs: 0, size: 0, lower: true };

class Planner {
  readonly #o: CopyLayerOptions;
  readonly #ins: string;
  readonly #chmod: ChmodFn | undefined;
  readonly #createdMode: number;
  readonly #now: number;
  readonly #parents: ParentsOptions | undefined;
  /** The cleaned dest, and what fsutil's Copy creates before anything else ('' = nothing). */
  readonly #dest: string;
  readonly #ensure: string | undefined;
  readonly #upper = new Map<string, PlannedNode>();
  /** Paths where something of the image was removed (an archive entry replaced a directory): the image's tree below is gone. */
  readonly #cleared = new Set<string>();
  readonly #lowerCache = new Map<string, PlannedNode | null>();
  readonly #readers: ArchiveReader[] = [];

  constructor(o: CopyLayerOptions) {
    this.#o = o;
    this.#ins = o.instruction ?? 'COPY';
    const raw = o.dest;
    const rawSegs = raw.split('/');
    const last = rawSegs[rawSegs.length - 1];
    const dirLike = raw === '' || last === '' || last === '.';
    if (o.sourceCount > 1 && !raw.endsWith('/')) {
      throw new HoistError('BAD_DEST', `When using ${this.#ins} with more than one source file, the destination must be a directory and end with a /`);
    }
    this.#dest = clean(raw);
    // fsutil: `if d, f := filepath.Split(dst); f != "" && f != "." { ensureDstPath = d }`
    this.#ensure = dirLike ? this.#dest : clean(rawSegs.slice(0, -1).join('/'));
    this.#chmod = o.chmod === undefined ? undefined : parseChmod(o.chmod);
    const octal = o.chmod === undefined ? undefined : octalChmod(o.chmod);
    this.#createdMode = octal === undefined ? 0o755 : octal & 0o777;
    this.#now = (o.now ?? new Date()).getTime();
    this.#parents = o.parents === undefined || o.parents === false ? undefined : o.parents === true ? {} : o.parents;
  }

  async run(matches: CopySource[][]): Promise<CopyPlan> {
    const close = async (): Promise<void> => {
      await Promise.all(this.#readers.map((r) => r.close()));
    };
    try {
      for (let w = 0; w < matches.length; w++) {
        for (const m of matches[w] ?? []) {
          if (isArchiveMatch(m)) await this.#extract(m);
          else await this.#copyMatch(m, w);
        }
      }
      return { entries: await this.#entries(), close };
    } catch (e) {
      await close();
      throw e;
    }
  }

  // ---- messages ----

  #err(code: string, what: string): HoistError {
    return new HoistError(code, `${this.#ins} to ${this.#o.dest}: ${what}`);
  }

  #notDir(p: string): HoistError {
    return this.#err('NOT_A_DIRECTORY', `/${p} is not a directory in the image, so nothing can be created below it; change the destination or remove /${p} in an earlier step`);
  }

  // ---- the image as this layer leaves it so far ----

  async #lowerGet(p: string): Promise<PlannedNode | undefined> {
    if (p === '') return ROOT;
    const hit = this.#lowerCache.get(p);
    if (hit !== undefined) return hit ?? undefined;
    // Only real directories are walked into: a path below a file or a symlink of the image is absent.
    const parent = await this.#lowerGet(parentOf(p));
    let node: PlannedNode | null = null;
    if (parent?.type === 'directory') {
      const e = await this.#o.lower(`/${p}`);
      if (e !== undefined) node = fromEntry(e, true);
    }
    this.#lowerCache.set(p, node);
    return node ?? undefined;
  }

  #hidden(p: string): boolean {
    for (let a = p; ; a = parentOf(a)) {
      if (this.#cleared.has(a)) return true;
      if (a === '') return false;
    }
  }

  /** What is at `p` now (symlinks not followed). */
  async #get(p: string): Promise<PlannedNode | undefined> {
    const u = this.#upper.get(p);
    if (u !== undefined) return u;
    if (p === '') return ROOT;
    if (this.#cleared.size > 0 && this.#hidden(p)) return undefined;
    return this.#lowerGet(p);
  }

  async #put(p: string, node: PlannedNode): Promise<void> {
    if (p === '') return; // the root's own metadata is never part of a layer
    node.lower = false;
    if (node.type === 'directory' && this.#cleared.has(p) && (await this.#lowerGet(p))?.type === 'directory') node.opaque = true;
    this.#upper.set(p, node);
  }

  /** RemoveAll before an archive entry of another kind takes the path. */
  #remove(p: string, existing: PlannedNode): void {
    if (existing.type === 'directory') {
      const prefix = `${p}/`;
      for (const k of [...this.#upper.keys()]) if (k.startsWith(prefix)) this.#upper.delete(k);
      this.#cleared.add(p);
    }
    this.#upper.delete(p);
  }

  /**
   * `rel` resolved through symlinks, relative to `base`. Default: containerd's fs.RootPath (absolute targets
   * re-rooted at the image root, '..' stops there). With `archive`: BuildKit's extraction rules, where the root
   * is `base` and a link leading above it is an error.
   */
  async #resolve(rel: string, followLeaf: boolean, base = '', archive?: string): Promise<string> {
    let parts = segments(rel);
    const out: string[] = [];
    let links = 0;
    let missing = false;
    while (parts.length > 0) {
      const part = parts.shift()!;
      if (part === '..') {
        if (out.length > 0) out.pop();
        else if (archive !== undefined) {
          throw new HoistError('BAD_ARCHIVE', `ADD ${archive}: a symlink in the way of "${rel}" points outside the extraction root ${this.#o.dest}; the archive is unsafe`);
        }
        continue;
      }
      const last = parts.length === 0;
      if (missing || (last && !followLeaf)) {
        out.push(part);
        continue;
      }
      const here = join(base, [...out, part].join('/'));
      const e = await this.#get(here);
      if (e === undefined) {
        missing = true;
        out.push(part);
      } else if (e.type === 'symlink') {
        if (++links > MAX_LINKS) throw this.#err('SYMLINK_LOOP', `too many symbolic links resolving /${join(base, rel)}; fix the link loop in the image`);
        const target = e.linkname ?? '';
        if (target.startsWith('/')) out.length = 0;
        parts = [...segments(target), ...parts];
      } else if (e.type !== 'directory' && !last) {
        throw this.#notDir(here);
      } else {
        out.push(part);
      }
    }
    return join(base, out.join('/'));
  }

  /** MkdirAll: the missing directories of `p` (already resolved) become `make()`. */
  async #mkdirAll(p: string, make: () => PlannedNode): Promise<void> {
    let acc = '';
    for (const s of segments(p)) {
      acc = join(acc, s);
      const e = await this.#get(acc);
      if (e === undefined) await this.#put(acc, make());
      else if (e.type !== 'directory') throw this.#notDir(acc);
    }
  }

  #createdDir(): PlannedNode {
    const o = this.#o.chown ?? { uid: 0, gid: 0 };
    return { type: 'directory', mode: this.#createdMode, uid: o.uid, gid: o.gid, mtimeMs: this.#now, size: 0 };
  }

  /** A source entry as the copy writes it: --chmod, --chown / owner rules applied. */
  #copied(e: SourceEntry): PlannedNode {
    const owner = this.#o.chown ?? (this.#o.keepOwner ? { uid: e.uid, gid: e.gid } : { uid: 0, gid: 0 });
    const node = fromEntry(e, false);
    node.uid = owner.uid;
    node.gid = owner.gid;
    if (e.type !== 'symlink' && this.#chmod !== undefined) node.mode = this.#chmod(e.mode & 0o7777, e.type === 'directory');
    if (e.type === 'file' && node.data === undefined) {
      throw this.#err('NO_DATA', `source file ${e.rel} has no bytes to copy (neither a path nor content); this is a bug in hoist`);
    }
    return node;
  }

  // ---- COPY / ADD of a tree ----

  async #copyMatch(m: SourceMatch, word: number): Promise<void> {
    const first = m.entries[0];
    if (first === undefined) return;
    if (this.#ensure !== undefined && this.#ensure !== '') await this.#mkdirAll(await this.#resolve(this.#ensure, true), () => this.#createdDir());
    const dst = await this.#resolve(this.#dest, true);
    if (this.#parents !== undefined) {
      await this.#copyParents(m, word, dst);
      return;
    }
    const srcIsDir = first.type === 'directory';
    const atDest = await this.#get(dst);
    let target = dst;
    if (!srcIsDir && atDest?.type === 'directory') target = join(dst, baseOf(m.rel !== '' ? m.rel : first.rel));
    await this.#mkdirAll(srcIsDir && atDest === undefined ? dst : parentOf(target), () => this.#createdDir());
    await this.#copyTree(m, target, false);
  }

  async #copyParents(m: SourceMatch, word: number, dst: string): Promise<void> {
    const p = this.#parents!;
    const first = m.entries[0]!;
    const pivot = clean(p.pivots?.[word] ?? '');
    // The pivot directory is the copy's source root: its contents go into dest, which is always a directory.
    const atDest = await this.#get(dst);
    if (atDest === undefined) await this.#mkdirAll(dst, () => this.#createdDir());
    else if (atDest.type !== 'directory') throw this.#err('NOT_A_DIRECTORY', `cannot copy a directory to /${dst}, which is a file in the image; copy to another path`);
    const pivotEntry = await p.stat?.(word, pivot);
    if (pivotEntry !== undefined && dst !== '') {
      const cur = (await this.#get(dst))!;
      await this.#put(dst, { ...cur, mtimeMs: pivotEntry.mtimeMs });
    }
    const rel = this.#under(pivot, first.rel);
    if (rel === '') {
      await this.#copyTree(m, dst, false);
      return;
    }
    let acc = '';
    for (const s of segments(parentOf(rel))) {
      acc = join(acc, s);
      const t = join(dst, acc);
      const existing = await this.#get(t);
      const src = await p.stat?.(word, join(pivot, acc));
      if (existing === undefined) await this.#put(t, src?.type === 'directory' ? this.#copied(src) : this.#createdDir());
      else if (existing.type !== 'directory') throw this.#err('NOT_A_DIRECTORY', `cannot copy a directory to /${t}, which is a file in the image; copy to another path`);
      else if (src !== undefined) await this.#put(t, { ...existing, mode: src.mode & 0o7777 }); // fsutil chmods an existing parent, nothing more
    }
    await this.#copyTree(m, join(dst, rel), true);
  }

  #under(root: string, rel: string): string {
    if (root === '') return rel;
    if (rel === root) return '';
    if (rel.startsWith(`${root}/`)) return rel.slice(root.length + 1);
    throw this.#err('BAD_SOURCE', `source path ${rel} is not below ${root}; this is a bug in hoist`);
  }

  async #copyTree(m: SourceMatch, target: string, overwriteTop: boolean): Promise<void> {
    const top = m.entries[0]!.rel;
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i]!;
      await this.#copyEntry(e, join(target, i === 0 ? '' : this.#under(top, e.rel)), i === 0 ? overwriteTop : true);
    }
  }

  async #copyEntry(e: SourceEntry, t: string, overwrite: boolean): Promise<void> {
    const existing = await this.#get(t);
    if (e.type !== 'directory') {
      if (existing?.type === 'directory') {
        throw this.#err('FILE_OVER_DIR', `cannot replace directory /${t} with a file; copy to another path or remove the directory in an earlier step`);
      }
      await this.#put(t, this.#copied(e));
      return;
    }
    if (existing === undefined || (existing.type === 'directory' && overwrite)) {
      await this.#put(t, this.#copied(e));
    } else if (existing.type !== 'directory') {
      throw this.#err('DIR_OVER_FILE', `cannot copy a directory to /${t}, which is a file in the image; copy to another path`);
    } else {
      // The copy's top directory existed: its mode and owner stay, fsutil restores the source's mtime on it.
      await this.#put(t, { ...existing, mtimeMs: e.mtimeMs });
    }
  }

  // ---- ADD of a local archive ----

  async #extract(m: ArchiveMatch): Promise<void> {
    const where = m.rel !== '' ? m.rel : m.archive.path;
    const reader = await openArchive(m.archive.path, m.archive.tmpDir, where);
    this.#readers.push(reader);
    const owner = this.#o.chown;
    const dst = await this.#resolve(this.#dest, true);
    // unpack.go: copy.MkdirAll(dest, 0755, chown, time)
    await this.#mkdirAll(dst, () => ({ type: 'directory', mode: 0o755, uid: owner?.uid ?? 0, gid: owner?.gid ?? 0, mtimeMs: this.#now, size: 0 }));
    const implied = (): PlannedNode => ({ type: 'directory', mode: 0o755, uid: 0, gid: 0, mtimeMs: this.#now, size: 0 });
    for (const e of reader.entries) {
      const name = archivePath(e.name, where);
      if (name === '') continue;
      const op = await this.#resolve(name, e.type === 'directory', dst, where);
      if (op === dst) continue; // resolves to the extraction root itself: BuildKit skips it
      const rel = this.#under(dst, op);
      let acc = dst;
      for (const s of segments(parentOf(rel))) {
        acc = join(acc, s);
        const x = await this.#get(acc);
        if (x === undefined) await this.#put(acc, implied());
        else if (x.type !== 'directory') throw this.#notDir(acc);
      }
      const existing = await this.#get(op);
      const uid = owner?.uid ?? e.uid;
      const gid = owner?.gid ?? e.gid;
      const mtimeMs = e.mtimeMs < 0 ? 0 : e.mtimeMs; // boundRootTime: before the epoch → the epoch
      if (e.type === 'link') {
        const ln = archivePath(e.linkname ?? '', where);
        if (ln === '') throw new HoistError('BAD_ARCHIVE', `ADD ${where}: hard link "${e.name}" points at the extraction root; the archive is corrupt`);
        const lt = await this.#resolve(ln, false, dst, where);
        const target = await this.#get(lt);
        if (target === undefined) throw new HoistError('BAD_ARCHIVE', `ADD ${where}: hard link "${e.name}" points to "${e.linkname}", which does not exist; the archive is corrupt`);
        if (target.type === 'directory') throw new HoistError('BAD_ARCHIVE', `ADD ${where}: hard link "${e.name}" points to a directory; the archive is corrupt`);
        if (target.type === 'file' && target.data === undefined) {
          throw new HoistError('UNSUPPORTED', `ADD ${where}: hard link "${e.name}" points to /${lt} of the image, whose bytes hoist cannot read here; add the file to the archive`);
        }
        if (existing !== undefined && op !== lt) this.#remove(op, existing);
        if (op === lt) continue;
        // One inode in BuildKit: the link's owner (and, for a file, mode and times) apply to both names.
        const copy: PlannedNode = target.type === 'symlink'
          ? { ...target, uid, gid, lower: false, opaque: false }
          : { ...target, uid, gid, mode: e.mode, mtimeMs, lower: false, opaque: false };
        await this.#put(op, copy);
        if (this.#upper.get(lt) === target) {
          target.uid = uid;
          target.gid = gid;
          if (target.type !== 'symlink') {
            target.mode = e.mode;
            target.mtimeMs = mtimeMs;
          }
        }
        continue;
      }
      if (existing !== undefined && (existing.type !== 'directory' || e.type !== 'directory')) this.#remove(op, existing);
      if (e.type === 'directory') {
        await this.#put(op, { type: 'directory', mode: e.mode, uid, gid, mtimeMs, size: 0 });
      } else if (e.type === 'symlink') {
        await this.#put(op, { type: 'symlink', mode: 0o777, uid, gid, mtimeMs, size: 0, linkname: e.linkname ?? '' });
      } else {
        await this.#put(op, { type: 'file', mode: e.mode, uid, gid, mtimeMs, size: e.size, data: { kind: 'archive', reader, offset: e.offset } });
      }
    }
  }

  // ---- the result ----

  async #entries(): Promise<CopyPlan['entries']> {
    const all = new Map(this.#upper);
    for (const p of this.#upper.keys()) {
      for (let a = parentOf(p); a !== '' && !all.has(a); a = parentOf(a)) {
        const l = await this.#lowerGet(a);
        if (l === undefined || l.type !== 'directory') throw this.#err('INTERNAL', `no directory at /${a} above /${p}; this is a bug in hoist`);
        all.set(a, l);
      }
    }
    const keyed = [...all].map(([path, node]) => ({ path, node, key: path.split('/').map((s) => Buffer.from(s)) }));
    keyed.sort((a, b) => compareKeys(a.key, b.key));
    return keyed.map(({ path, node }) => ({ path, node }));
  }
}

function compareKeys(a: Buffer[], b: Buffer[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = Buffer.compare(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** BuildKit's cleanRootTarPath: leading '/' dropped, cleaned; '' for the root; a path climbing out is an error. */
function archivePath(name: string, where: string): string {
  const parts: string[] = [];
  for (const s of segments(name)) {
    if (s !== '..') parts.push(s);
    else if (parts.length > 0) parts.pop();
    else throw new HoistError('BAD_ARCHIVE', `ADD ${where}: archive path "${name}" is outside the extraction root; the archive is unsafe`);
  }
  return parts.join('/');
}

function fromEntry(e: SourceEntry, lower: boolean): PlannedNode {
  const node: PlannedNode = {
    type: e.type,
    mode: e.type === 'symlink' ? 0o777 : e.mode & 0o7777,
    uid: e.uid,
    gid: e.gid,
    mtimeMs: e.mtimeMs,
    size: 0,
    lower,
  };
  if (e.type === 'symlink') node.linkname = e.linkname ?? '';
  if (e.xattrs !== undefined && Object.keys(e.xattrs).length > 0) node.xattrs = e.xattrs;
  if (e.type === 'file') {
    if (e.content !== undefined) {
      node.data = { kind: 'buffer', buf: e.content };
      node.size = e.content.length;
    } else if (e.abs !== undefined) {
      node.data = { kind: 'file', abs: e.abs };
      node.size = e.size;
    }
  }
  return node;
}

// ---- writing ----


export async function writePlan(entries: CopyPlan['entries'], pack: Pack, clamp: Date | undefined, onEntry?: WrittenEntry): Promise<void> {
  const clampS = clamp === undefined ? MAX_MTIME_S : Math.min(MAX_MTIME_S, Math.floor(clamp.getTime() / 1000));
  const mtime = (ms: number): Date => new Date(Math.max(0, Math.min(Math.floor(ms / 1000), clampS)) * 1000);
  for (const { path, node } of entries) {
    const h: PackHeader = {
      name: node.type === 'directory' ? `${path}/` : path,
      type: node.type,
      // tar-stream replaces a falsy mode (0000) by a default and masks to 0o7777: the type bit keeps it truthy.
      mode: S_IFREG | node.mode,
      uid: node.uid,
      gid: node.gid,
      mtime: mtime(node.mtimeMs),
    };
    if (node.uid > USTAR_MAX_ID || node.gid > USTAR_MAX_ID) h.pax = { uid: String(node.uid), gid: String(node.gid) };
    if (node.type === 'symlink') h.linkname = node.linkname ?? '';
    const xattrs = Object.entries(node.xattrs ?? {}).sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    if (node.type === 'file') h.size = node.size;
    onEntry?.({ ...h, ...(h.pax ? { pax: { ...h.pax } } : {}) }, xattrs);
    if (node.type === 'file') {
      pushPaxXattrs(pack, h, xattrs);
      await writeFile(pack, h, node, path);
    } else {
      pushPaxXattrs(pack, h, xattrs);
      await put(pack, h);
    }
    if (node.opaque) {
      const marker: PackHeader = { name: `${path}/${OPAQUE}`, type: 'file', mode: S_IFREG, uid: 0, gid: 0, mtime: mtime(node.mtimeMs) };
      onEntry?.({ ...marker, size: 0 }, []);
      await put(pack, marker);
    }
  }
}

function put(pack: Pack, h: PackHeader): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
    const sink = h.type === 'file' ? pack.entry(h, EMPTY, cb) : pack.entry(h, cb);
    sink.on('error', ignoreSinkError);
  });
}

function openData(d: Data, size: number): Readable {
  switch (d.kind) {
    case 'buffer': return Readable.from([d.buf]);
    case 'archive': return d.reader.open({ offset: d.offset, size });
    case 'file': return size === 0 ? Readable.from([]) : createReadStream(d.abs, { start: 0, end: size - 1 });
  }
}

/**
 * Files up to this size are read whole, synchronously: most of a context is small files, and a ReadStream per file
 * (open, read, close as promise round trips and a stream's machinery) costs several times the read itself.
 */
const SMALL_READ = 64 * 1024;

/** The bytes of a small file: at most `size` + 1 (one more tells that it grew). */
function readSmall(abs: string, size: number): Buffer {
  const fd = openSync(abs, 'r');
  try {
    const buf = Buffer.allocUnsafe(size + 1);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

async function writeFile(pack: Pack, h: PackHeader, node: PlannedNode, path: string): Promise<void> {
  const size = node.size;
  const data = node.data!;
  if (data.kind === 'buffer' || (data.kind === 'file' && size <= SMALL_READ)) {
    let buf: Buffer;
    try {
      buf = data.kind === 'buffer' ? data.buf : readSmall(data.abs, size);
    } catch (e) {
      throw new HoistError('SOURCE_CHANGED', `cannot read ${data.kind === 'file' ? data.abs : `/${path}`} for /${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the source changed during the build`, { cause: e });
    }
    if (buf.length !== size) {
      throw new HoistError('SOURCE_CHANGED', `${data.kind === 'file' ? data.abs : `/${path}`} has ${buf.length > size ? `more than ${size}` : buf.length} bytes, not the ${size} it had when matched; the source changed during the build, run it again`);
    }
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry({ ...h, size }, buf, (err) => (err ? reject(err) : resolve()));
      sink.on('error', ignoreSinkError);
    });
    return;
  }
  const done = Promise.withResolvers<void>();
  done.promise.catch(() => undefined);
  const sink = pack.entry(h, (err) => (err ? done.reject(err) : done.resolve()));
  sink.on('error', ignoreSinkError);
  const src = openData(node.data!, size);
  let n = 0;
  try {
    for await (const chunk of src) {
      const b = chunk as Buffer;
      n += b.length;
      if (!sink.write(b)) await drained(sink);
    }
  } catch (e) {
    const where = node.data?.kind === 'file' ? node.data.abs : `/${path}`;
    const err = new HoistError('SOURCE_CHANGED', `cannot read ${where} for /${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the source changed during the build`, { cause: e });
    sink.destroy(err);
    throw err;
  }
  if (n !== size) {
    const where = node.data?.kind === 'file' ? node.data.abs : `/${path}`;
    const err = new HoistError('SOURCE_CHANGED', `${where} has ${n} bytes, not the ${size} it had when matched; the source changed during the build, run it again`);
    sink.destroy(err);
    throw err;
  }
  sink.end(null);
  await done.promise;
}

