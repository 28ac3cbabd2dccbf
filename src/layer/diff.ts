/**
 * Turns an overlay upper directory (what a container or a build step changed) into an OCI layer tar stream.
 *
 * What the upper dir holds and what it becomes (see /work/shared/notes/machine.md, step 4):
 * - new or changed files, directories, symlinks → the same entries; a file seen again through another link
 *   (same device and inode) → a hard link entry naming the first path;
 * - a deleted name is a character device 0:0 → an empty `.wh.NAME` entry in its place;
 * - a directory removed and re-created is opaque (`opaqueXattr`; by default `user.overlay.opaque` or
 *   `trusted.overlay.opaque` = "y") → its entry followed by `DIR/.wh..wh..opq`;
 * - extended attributes of files and directories → pax `SCHILY.xattr.NAME` records with the raw bytes, except
 *   overlay's own state (`user.overlay.*`, `trusted.overlay.*`) and `security.selinux` (the host's label for the
 *   upper dir, not the image's: containers/storage leaves it out too);
 * - directories that only exist because something below them was copied up or created as a mountpoint
 *   (`dropIfUnchanged`) → nothing: a directory header is held back until its first child is emitted, so a
 *   directory left with no children can still be dropped. Only headers wait; contents stream.
 *
 * Reproducible by construction: children are visited in byte order of their names, headers carry only numeric
 * uid/gid (no user or group names), mode, size and a whole-second mtime clamped to `mtimeClamp`; no atime or
 * ctime pax records. The same tree gives the same bytes. File contents are streamed, never held whole.
 *
 * Filesystem calls are synchronous on purpose (as in unpack.ts): a promise call is a thread-pool round trip far
 * longer than the syscall, which made 20k small files take 3.8 s instead of about 0.4 s. The event loop still runs
 * between entries, whenever the tar's reader applies backpressure.
 *
 */
import { closeSync, constants, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';
import { getAttributeSync, listAttributesSync } from '@napi-rs/xattr';
import { HoistError } from '../errors.ts';
import { drained, ignoreSinkError, pushPaxXattrs, type PackHeader } from './tar-pack.ts';
import { isOverlayXattr, xattrErrno } from './xattrs.ts';

export interface DiffOptions {
  /** Leaves a path (relative, no leading `/` or `./`) out of the layer; for a directory, its whole subtree. */
  exclude?: (relPath: string, st: Stats) => boolean;
  /** Whether a directory of the upper dir is opaque. Default: `overlayOpaque`. */
  opaqueXattr?: (absPath: string) => Promise<boolean>;
  /**
   * For a directory that ends up with no entries below it (none, or all excluded): true leaves its own entry out
   * too (the runtime answers true when the lower layers have the same directory, so runc's mountpoints and the
   * parents copied up for them make no layer). Not asked about directories with entries, or opaque ones.
   */
  dropIfUnchanged?: (relPath: string, st: Stats) => boolean;
  /** Newer mtimes become this one (SOURCE_DATE_EPOCH-style reproducible layers). */
  mtimeClamp?: Date;
}

const OPAQUE_MARKER = '.wh..wh..opq';
const WHITEOUT_PREFIX = '.wh.';
const CHUNK = 256 * 1024;
/** ustar octal fields hold 6 digits for ids; above this they go in a pax record. */
const USTAR_MAX_ID = 0o777777;
/** tar-stream encodes mtime seconds with `| 0`: keep them in int32 range (up to 2038-01-19). */
const MAX_MTIME_S = 2 ** 31 - 1;
/**
 * tar-stream replaces a falsy mode by 0644/0755, which would turn a real mode 0000 (and whiteouts) into 0644.
 * It masks the mode to 0o7777 when encoding, so passing the file-type bits along keeps the value truthy.
 */
const S_IFREG = 0o100000;
const EMPTY = Buffer.alloc(0);
/** Never carried into a layer; see the module comment. */
const SELINUX_XATTR = 'security.selinux';


/** A directory whose header waits for its first child (or for the end of its walk). */
interface PendingDir {
  header: PackHeader;
  xattrs: Array<[string, Buffer]>;
}

/** overlay's mark of an opaque directory: `user.overlay.opaque` (userxattr, rootless) or `trusted.overlay.opaque` = "y". */
export async function overlayOpaque(absPath: string): Promise<boolean> {
  for (const name of ['user.overlay.opaque', 'trusted.overlay.opaque']) {
    try {
      if (getAttributeSync(absPath, name)?.toString('latin1') === 'y') return true;
    } catch {
      // ENOTSUP and the like: no overlay xattrs here
    }
  }
  return false;
}

/** Streams the OCI layer tar for the overlay upper dir `upper`. Errors (unreadable files, a file shrinking while read) destroy the stream. */
export function diffUpperDir(upper: string, opts: DiffOptions = {}): Readable {
  const pack = tarPack();
  const root = path.resolve(upper);
  new UpperWalk(root, pack, opts).run().then(
    () => pack.finalize(),
    (e: unknown) => pack.destroy(asHoistError(e, root)),
  );
  return Readable.from(pack, { objectMode: false });
}

class UpperWalk {
  readonly #root: string;
  readonly #pack: Pack;
  readonly #opts: DiffOptions;
  readonly #opaque: (absPath: string) => Promise<boolean>;
  readonly #clampS: number;
  /** `dev:ino` of files with more than one link → the first path written, for hard link entries. */
  readonly #seen = new Map<string, string>();
  /** Directories above the current position whose headers are not written yet, outermost first. */
  readonly #pending: PendingDir[] = [];

  constructor(root: string, pack: Pack, opts: DiffOptions) {
    this.#root = root;
    this.#pack = pack;
    this.#opts = opts;
    this.#opaque = opts.opaqueXattr ?? overlayOpaque;
    this.#clampS = opts.mtimeClamp === undefined ? MAX_MTIME_S : Math.min(MAX_MTIME_S, Math.floor(opts.mtimeClamp.getTime() / 1000));
  }

  async run(): Promise<void> {
    const st = lstatSync(this.#root, { throwIfNoEntry: false });
    if (st === undefined) throw new HoistError('BAD_UPPER', `upper dir ${this.#root} does not exist; pass the overlay upperdir of the container`);
    if (!st.isDirectory()) throw new HoistError('BAD_UPPER', `upper dir ${this.#root} is not a directory; pass the overlay upperdir of the container`);
    await this.#walk('', this.#root);
  }

  #mtime(st: Stats): Date {
    const s = Math.max(0, Math.min(Math.floor(st.mtimeMs / 1000), this.#clampS));
    return new Date(s * 1000);
  }

  #header(name: string, st: Stats, type: NonNullable<Header['type']>): PackHeader {
    const h: PackHeader = {
      name,
      type,
      mode: S_IFREG | (st.mode & 0o7777),
      uid: st.uid,
      gid: st.gid,
      mtime: this.#mtime(st),
    };
    if (st.uid > USTAR_MAX_ID || st.gid > USTAR_MAX_ID) {
      h.pax = { uid: String(st.uid), gid: String(st.gid) };
    }
    return h;
  }

  /** Writes the held-back directory headers, outermost first: something below them is about to be emitted. */
  async #flushPending(): Promise<void> {
    const dirs = this.#pending.splice(0);
    for (const d of dirs) await this.#put(d.header, d.xattrs);
  }

  /** Adds an entry without content, after the directories above it. */
  async #add(h: PackHeader, xattrs: Array<[string, Buffer]> = []): Promise<void> {
    await this.#flushPending();
    await this.#put(h, xattrs);
  }

  /** Writes an entry without content and waits until the pack has taken it (keeps memory bounded to one entry). */
  #put(h: PackHeader, xattrs: Array<[string, Buffer]>): Promise<void> {
    return new Promise((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      pushPaxXattrs(this.#pack, h, xattrs);
      // A 'file' entry (whiteouts, opaque markers) waits for a body until it gets one, even an empty one.
      const sink = h.type === 'file' ? this.#pack.entry(h, EMPTY, cb) : this.#pack.entry(h, cb);
      sink.on('error', ignoreSinkError);
    });
  }

  /** The xattrs a layer carries for `abs`, by name in byte order. */
  #xattrs(abs: string): Array<[string, Buffer]> {
    let names: string[];
    try {
      names = listAttributesSync(abs);
    } catch (e) {
      const code = xattrErrno(e);
      if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return [];
      throw Object.assign(new Error(`listxattr: ${code}`), { code, path: abs });
    }
    const out: Array<[string, Buffer]> = [];
    for (const name of names.sort(byteOrder)) {
      if (isOverlayXattr(name) || name === SELINUX_XATTR) continue;
      let value: Buffer | null;
      try {
        value = getAttributeSync(abs, name);
      } catch (e) {
        throw Object.assign(new Error(`getxattr ${name}: ${xattrErrno(e)}`), { code: xattrErrno(e), path: abs });
      }
      if (value !== null) out.push([name, value]);
    }
    return out;
  }

  async #walk(rel: string, abs: string): Promise<void> {
    const names = readdirSync(abs).sort(byteOrder);
    for (const name of names) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const childAbs = path.join(abs, name);
      const st = lstatSync(childAbs);
      if (this.#opts.exclude?.(childRel, st)) continue;

      if (st.isDirectory()) {
        const dir: PendingDir = { header: this.#header(`${childRel}/`, st, 'directory'), xattrs: this.#xattrs(childAbs) };
        this.#pending.push(dir);
        if (await this.#opaque(childAbs)) {
          await this.#add({ name: `${childRel}/${OPAQUE_MARKER}`, type: 'file', mode: S_IFREG, uid: 0, gid: 0, mtime: this.#mtime(st) });
        }
        await this.#walk(childRel, childAbs);
        if (this.#pending.at(-1) === dir) {
          // Nothing below it made it into the layer.
          if (this.#opts.dropIfUnchanged?.(childRel, st)) this.#pending.pop();
          else await this.#flushPending();
        }
      } else if (st.isCharacterDevice() && st.rdev === 0) {
        const wh = rel === '' ? `${WHITEOUT_PREFIX}${name}` : `${rel}/${WHITEOUT_PREFIX}${name}`;
        await this.#add({ name: wh, type: 'file', mode: S_IFREG, uid: 0, gid: 0, mtime: this.#mtime(st) });
      } else if (st.isFile()) {
        await this.#file(childRel, childAbs, st);
      } else if (st.isSymbolicLink()) {
        await this.#add({ ...this.#header(childRel, st, 'symlink'), linkname: readlinkSync(childAbs) });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = splitRdev(st.rdev);
        const type = st.isCharacterDevice() ? 'character-device' : 'block-device';
        await this.#add({ ...this.#header(childRel, st, type), devmajor: major, devminor: minor });
      } else if (st.isFIFO()) {
        await this.#add(this.#header(childRel, st, 'fifo'));
      }
      // Sockets cannot be stored in a tar; docker and containerd leave them out too.
    }
  }

  async #file(rel: string, abs: string, st: Stats): Promise<void> {
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = this.#seen.get(key);
      if (first !== undefined) {
        await this.#add({ ...this.#header(rel, st, 'link'), linkname: first });
        return;
      }
      this.#seen.set(key, rel);
    }
    await this.#flushPending();
    const xattrs = this.#xattrs(abs);
    const fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const done = Promise.withResolvers<void>();
      // Observed here so that a failure after we stopped waiting (the pack destroyed meanwhile) is not an unhandled rejection.
      done.promise.catch(() => undefined);
      const finish = done.promise;
      const h: PackHeader = { ...this.#header(rel, st, 'file'), size: st.size };
      pushPaxXattrs(this.#pack, h, xattrs);
      const sink = this.#pack.entry(h, (err) => (err ? done.reject(err) : done.resolve()));
      sink.on('error', ignoreSinkError);
      let left = st.size;
      while (left > 0) {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
        const bytesRead = readSync(fd, buf, 0, buf.length, null);
        if (bytesRead === 0) {
          const e = new HoistError('UPPER_CHANGED', `upper dir file ${abs} shrank while being read; stop the container before committing its changes`);
          sink.destroy(e);
          await finish.catch(() => undefined);
          throw e;
        }
        left -= bytesRead;
        if (!sink.write(buf.subarray(0, bytesRead))) await drained(sink);
      }
      sink.end(null); // streamx's typings want an argument; null writes nothing
      await finish;
    } finally {
      closeSync(fd);
    }
  }
}

/** Filesystem failures while walking become one line naming the upper dir and the file. */
function asHoistError(e: unknown, root: string): Error {
  if (e instanceof HoistError) return e;
  const err = e as NodeJS.ErrnoException;
  const where = err.path ? ` at ${err.path}` : '';
  return new HoistError('DIFF_FAILED', `upper dir ${root}: cannot read${where} (${err.code ?? err.message}); `
    + `check that the container has stopped and the directory is readable`, { cause: e });
}


function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Linux's dev_t layout (glibc gnu_dev_major/minor); rdev fits a double exactly. */
function splitRdev(rdev: number): { major: number; minor: number } {
  const lo = rdev % 2 ** 32;
  const hi = Math.floor(rdev / 2 ** 32);
  const major = ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00) | ((hi & 0xfff) << 20);
  return { major: major >>> 0, minor: minor >>> 0 };
}
