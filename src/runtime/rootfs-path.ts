/**
 * Resolve container paths against a rootfs on the host, the way securejoin / openat2(RESOLVE_IN_ROOT) do:
 * symlinks are followed *inside* the rootfs (an absolute target starts again at the rootfs, `..` never climbs
 * above it), so an image's `/etc/passwd -> /usr/share/…` or a hostile `../../../../etc/shadow` link can never
 * make hoist read host files.
 *
 * Not a security boundary against a concurrently-changing rootfs (no openat2 in Node); hoist only resolves in
 * rootfs trees it prepared and nothing else is running in them.
 */
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';
import { HoistError, isErrno } from '../errors.ts';

/** Linux's own limit for symlinks followed in one path walk (MAXSYMLINKS). */
const MAX_LINKS = 40;

/**
 * Map `p` (a path as the container sees it; relative paths are taken from `/`) to a host path under `root`.
 * Every existing component is followed if it is a symlink; missing components (or components below a
 * non-directory) are kept as written, so the result may not exist. The result is always `root` or below it.
 */
export function resolveInRoot(root: string, p: string): string {
  const base = posix.resolve(root);
  const done = walkInRoot((rel) => {
    const host = posix.join(base, rel);
    try {
      return lstatSync(host).isSymbolicLink() ? readlinkSync(host) : null;
    } catch (e) {
      // Treat a missing component like a plain one: what follows is only joined on, lexically.
      if (!isErrno(e, 'ENOENT') && !isErrno(e, 'ENOTDIR')) throw e;
      return null;
    }
  }, p, base);
  return done.length === 0 ? base : posix.join(base, ...done);
}

/**
 * The walk behind resolveInRoot, over any tree: `linkAt(rel)` gives the target of the symlink at `rel` (components
 * joined by `/`, never a symlink on the way) or null when `rel` is anything else or missing. Returns the resolved
 * components. `where` names the root in the error for a symlink loop.
 */
export function walkInRoot(linkAt: (rel: string) => string | null, p: string, where: string): string[] {
  // `done` holds the already-resolved components (none of them a symlink); `todo` what is left to walk.
  const done: string[] = [];
  let todo = p.split('/');
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      done.pop(); // at the root, `..` is the root itself
      continue;
    }
    const target = linkAt([...done, part].join('/'));
    if (target === null) {
      done.push(part);
      continue;
    }
    if (++links > MAX_LINKS) {
      throw new HoistError('SYMLINK_LOOP',
        `${p}: too many levels of symbolic links in the image's root filesystem (${where}); fix the image's symlinks`,
        { exitCode: 125 });
    }
    if (target.startsWith('/')) done.length = 0;
    todo = [...target.split('/'), ...todo];
  }
  return done;
}

/**
 * The text of a file in the rootfs (e.g. /etc/passwd), following links inside it; undefined when it is missing.
 * Only for small config files: the whole file is read.
 */
export function readFileInRoot(root: string, p: string): string | undefined {
  const host = resolveInRoot(root, p);
  try {
    return readFileSync(host, 'utf8');
  } catch (e) {
    if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR')) return undefined;
    if (isErrno(e, 'EISDIR')) {
      throw new HoistError('NOT_A_FILE', `${p} in the image's root filesystem is a directory, not a file; fix the image`,
        { exitCode: 125, cause: e });
    }
    throw e;
  }
}
