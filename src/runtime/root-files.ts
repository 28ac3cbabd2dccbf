/**
 * Read access to a container's root filesystem as the container will see it, for the checks made before it starts
 * (the user in /etc/passwd, the command in $PATH): either a mounted root (`dirRoot`), or the image's layer snapshots
 * read straight from the store as overlay would merge them (`layeredRoot`), so `hoist run` can do those checks
 * before, and without, entering the user namespace. Symlinks are always followed inside the root (rootfs-path.ts).
 */
import { lstatSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { posix } from 'node:path';
import { HoistError, isErrno } from '../errors.ts';
import { readFileInRoot, resolveInRoot, walkInRoot } from './rootfs-path.ts';

export interface RootFiles {
  /** stat of what `p` names (every symlink followed inside the root); undefined when it is missing. */
  stat(p: string): Stats | undefined;
  /** Text of the file `p` names (small config files only); undefined when it is missing. */
  readText(p: string): string | undefined;
}

/** A root filesystem mounted (or copied) at `rootfs`. */
export function dirRoot(rootfs: string): RootFiles {
  return {
    stat(p) {
      try {
        return lstatSync(resolveInRoot(rootfs, p));
      } catch (e) {
        if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR')) return undefined;
        throw e;
      }
    },
    readText: (p) => readFileInRoot(rootfs, p),
  };
}

/** Reads the xattr `name` of `file`; null when it has none. */
export type XattrReader = (file: string, name: string) => Buffer | null;

/**
 * The merged view of overlay lower dirs (`lowers` bottom layer first, as unpacked with 'keep-as-overlay'): an entry
 * comes from the top-most layer that has it; a character device 0:0 is a whiteout (the entry is gone); a directory
 * with one of `opaqueXattrs` set to "y", or any non-directory, hides what the layers below hold under that path.
 * Errors other than "missing" (EACCES on a directory of another container uid…) are thrown as they are: the caller
 * then does its checks inside the user namespace instead.
 */
export function layeredRoot(lowers: string[], opaqueXattrs: string[], getXattr: XattrReader): RootFiles {
  const top = [...lowers].reverse();
  const stats = new Map<string, Stats | null>();
  const lst = (host: string): Stats | null => {
    let st = stats.get(host);
    if (st === undefined) {
      try {
        st = lstatSync(host);
      } catch (e) {
        if (!isErrno(e, 'ENOENT') && !isErrno(e, 'ENOTDIR')) throw e;
        st = null;
      }
      stats.set(host, st);
    }
    return st;
  };
  const whiteout = (st: Stats): boolean => st.isCharacterDevice() && st.rdev === 0;
  const opaque = (host: string): boolean => opaqueXattrs.some((n) => getXattr(host, n)?.toString() === 'y');
  /** Whether layer `dir` keeps the layers below it from showing `rel`: an ancestor there is not a plain directory. */
  const hidesBelow = (dir: string, rel: string): boolean => {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const host = posix.join(dir, ...parts.slice(0, i));
      const st = lst(host);
      if (st === null) return false; // this layer has nothing under here
      if (!st.isDirectory() || opaque(host)) return true;
    }
    return false;
  };
  /** The host path of what `rel` (no symlink on the way) is in the merged view, or null when it is missing. */
  const locate = (rel: string): string | null => {
    if (rel === '') return top[0] ?? null;
    for (let i = 0; i < top.length; i++) {
      const host = posix.join(top[i]!, rel);
      const st = lst(host);
      if (st !== null) return whiteout(st) ? null : host;
      if (i < top.length - 1 && hidesBelow(top[i]!, rel)) return null;
    }
    return null;
  };
  const resolve = (p: string): string | null => {
    const done = walkInRoot((rel) => {
      const host = locate(rel);
      return host !== null && lst(host)!.isSymbolicLink() ? readlinkSync(host) : null;
    }, p, 'the image layers');
    return locate(done.join('/'));
  };
  return {
    stat(p) {
      const host = resolve(p);
      return host === null ? undefined : lst(host)!;
    },
    readText(p) {
      const host = resolve(p);
      if (host === null) return undefined;
      if (lst(host)!.isDirectory()) {
        throw new HoistError('NOT_A_FILE', `${p} in the image's root filesystem is a directory, not a file; fix the image`, { exitCode: 125 });
      }
      return readFileSync(host, 'utf8');
    },
  };
}
