/**
 * Writes source entries out as a real directory tree: for `-o type=local` and for RUN bind mounts of another
 * stage's files. Owned by the current user (a rootless build can't give files other owners; inside the build's
 * user namespace they show as root's, as BuildKit's rootless mode does); modes and symlinks kept.
 */
import { copyFile, lstat, mkdir, symlink, utimes, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { HoistError } from '../errors.ts';
import type { SourceEntry } from './source.ts';

/** `entries` with `rel`s relative to `base` ('' = everything) are written under `dir`. */
export async function materialize(entries: SourceEntry[], base: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const dirs: Array<[string, SourceEntry]> = [];
  for (const e of entries) {
    let rel = e.rel;
    if (base !== '') {
      if (rel === base) rel = '';
      else if (rel.startsWith(`${base}/`)) rel = rel.slice(base.length + 1);
      else continue;
    }
    const target = path.join(dir, rel);
    if (!target.startsWith(dir)) throw new HoistError('UNSAFE_PATH', `refusing to write ${e.rel} outside ${dir}`);
    await mkdir(path.dirname(target), { recursive: true });
    if (e.type === 'directory') {
      await mkdir(target, { recursive: true });
      dirs.push([target, e]);
    } else if (e.type === 'symlink') {
      await symlink(e.linkname ?? '', target).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST' || !(await lstat(target)).isSymbolicLink()) throw err;
      });
    } else {
      if (e.content !== undefined) await writeFile(target, e.content);
      else if (e.abs !== undefined) await copyFile(e.abs, target);
      else await writeFile(target, '');
      await chmod(target, e.mode & 0o7777);
      const t = new Date(e.mtimeMs);
      await utimes(target, t, t);
    }
  }
  // Directories last, deepest first: writing their children changed their mtimes.
  for (const [target, e] of dirs.reverse()) {
    await chmod(target, (e.mode & 0o7777) | 0o700);
    const t = new Date(e.mtimeMs);
    await utimes(target, t, t);
  }
}
