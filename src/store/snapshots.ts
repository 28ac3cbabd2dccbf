/**
 * The unpacked-layer cache: one directory per layer, named by its diffID (the digest of the uncompressed tar),
 * shared by every container and build of a store and used as one overlay lowerdir each.
 *
 * Layout: `<storeRoot>/snapshots/<hex>/fs`. A snapshot is complete exactly when `<hex>` exists: it is unpacked
 * and verified in `snapshots/.tmp-…` (same filesystem) and only then renamed into place, and removal renames it
 * away before deleting. Two processes ensuring one layer at once both unpack; the second rename fails (the name
 * is taken by a non-empty directory) and that process deletes its own copy and uses the winner's.
 *
 * Ownership and modes are written as the caller sees them: the runtime calls this inside its user namespace, so
 * a snapshot holds the container's owners. The snapshot directories are 0700: they hold the image's setuid
 * files, which other host users must not reach (as /var/lib/docker does).
 *
 * Not here: keeping a snapshot alive while a container uses it (the caller's leases), and deleting `.tmp-*`
 * left by a process that was killed mid-unpack (safe to remove when no hoist process runs).
 */
import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import { HoistError, isErrno } from '../errors.ts';
// unpack.ts (tar-stream, the native xattr module) loads only when a snapshot is made or removed: `hoist run` of an
// image already unpacked only asks has()/dir().
import type { UnpackOptions } from '../layer/unpack.ts';
import { Digester, DigestMismatchError, parseDigest } from '../oci/digest.ts';

export const SNAPSHOTS_DIR = 'snapshots';
const FS_DIR = 'fs';
/** Temp names start with a dot, so they never look like a snapshot (hex). */
export const SNAPSHOT_TMP_PREFIX = '.tmp-';

export class Snapshots {
  /** `<storeRoot>/snapshots`. */
  readonly root: string;

  constructor(storeRoot: string) {
    this.root = path.join(path.resolve(storeRoot), SNAPSHOTS_DIR);
  }

  #base(diffID: string): string {
    return path.join(this.root, parseDigest(diffID, 'layer diffID').hex);
  }

  /** The lowerdir for a layer, whether or not it is unpacked yet. A malformed diffID: HoistError BAD_DIGEST. */
  dir(diffID: string): string {
    return path.join(this.#base(diffID), FS_DIR);
  }

  /** True when the layer's snapshot is complete. */
  has(diffID: string): boolean {
    return lstatSync(this.dir(diffID), { throwIfNoEntry: false })?.isDirectory() ?? false;
  }

  /**
   * The layer's snapshot directory, unpacking it first when missing. `open` gives the UNCOMPRESSED layer tar; it is
   * hashed while unpacked and refused (HoistError DIGEST_MISMATCH, nothing kept) unless it matches `diffID`.
   * `opts` default to whiteouts kept as overlay markers. Safe to call from several processes at once.
   */
  async ensure(diffID: string, open: () => Promise<Readable>, opts: UnpackOptions = {}): Promise<string> {
    const dir = this.dir(diffID);
    if (this.has(diffID)) return dir;
    await this.unpack(await open(), { whiteouts: 'keep-as-overlay', where: `layer ${diffID}`, ...opts }, diffID, `layer ${diffID}`);
    return dir;
  }

  /**
   * Unpacks the uncompressed layer tar `source` into a new snapshot named by the digest of what was read (its diffID,
   * which must be `expected` when given: DIGEST_MISMATCH otherwise, nothing kept), in a `.tmp-` directory first,
   * renamed into place at the end. When that snapshot exists already (another process made it meanwhile), that one
   * is used and this copy removed. Gives the diffID. `where` names the layer in this method's own errors.
   */
  async unpack(source: Readable, opts: UnpackOptions, expected?: string, where = opts.where ?? 'layer'): Promise<string> {
    const digester = new Digester(expected === undefined ? undefined : parseDigest(expected, 'layer diffID').algorithm);
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const tmp = await mkdtemp(path.join(this.root, `${SNAPSHOT_TMP_PREFIX}${process.pid}-`));
    let kept = false;
    try {
      let hashedToEnd = false;
      const hashing = new Transform({
        transform(chunk: Buffer, _enc, cb: TransformCallback) {
          digester.update(chunk);
          cb(null, chunk);
        },
        flush(cb: TransformCallback) {
          hashedToEnd = true;
          cb();
        },
      });
      // A source error reaches unpackLayer through `hashing`; unpackLayer destroying `hashing` stops the source.
      // The source's own error (a registry or decompression failure) is what the caller needs to see, not
      // unpackLayer's "not a valid tar stream" around it.
      let sourceError: unknown;
      source.on('error', (e) => {
        sourceError ??= e;
      });
      pipeline(source, hashing, () => {});
      try {
        const { unpackLayer } = await import('../layer/unpack.ts');
        await unpackLayer(hashing, path.join(tmp, FS_DIR), opts);
      } catch (e) {
        throw sourceError ?? e;
      }
      // tar-stream reads its input to the end (trailing garbage is an error), so this holds unless that changes.
      if (!hashedToEnd) {
        throw new HoistError('BAD_LAYER', `${where}: the layer tar was not read to its end; cannot ${expected === undefined ? 'name its snapshot' : 'verify it'}`);
      }
      const actual = digester.digest();
      if (expected !== undefined && actual !== expected) throw new DigestMismatchError(`${where} (uncompressed)`, expected, actual);

      try {
        await rename(tmp, this.#base(actual));
        kept = true;
      } catch (e) {
        // Another process (or call) put the same layer in place first: use that one.
        if (!(isErrno(e, 'ENOTEMPTY') || isErrno(e, 'EEXIST')) || !this.has(actual)) throw e;
      }
      return actual;
    } finally {
      if (!kept) await (await import('../layer/unpack.ts')).removeTree(tmp);
    }
  }

  /** The diffIDs of the complete snapshots, sorted. */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return [];
      throw e;
    }
    const out: string[] = [];
    for (const name of names.sort()) {
      const algorithm = /^[0-9a-f]{64}$/.test(name) ? 'sha256' : /^[0-9a-f]{128}$/.test(name) ? 'sha512' : undefined;
      if (algorithm === undefined) continue;
      const diffID = `${algorithm}:${name}`;
      if (this.has(diffID)) out.push(diffID);
    }
    return out;
  }

  /** Deletes a snapshot (no-op when absent). It stops counting as present at once, before its files are deleted. */
  async remove(diffID: string): Promise<void> {
    const base = this.#base(diffID);
    const trash = path.join(this.root, `${SNAPSHOT_TMP_PREFIX}rm-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await rename(base, trash);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return;
      throw e;
    }
    await (await import('../layer/unpack.ts')).removeTree(trash);
  }
}
