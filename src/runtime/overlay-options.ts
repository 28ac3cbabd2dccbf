/**
 * The overlay mount options for a container's root: the snapshots as lower dirs (top layer first, as overlay
 * wants), a fresh upper and work dir, `userxattr` in a user namespace. Lower dirs are given relative to the
 * snapshots directory (mount then runs with that as its working directory, `base`) so that many layers still fit
 * in the one page that mount options may take.
 */
import path from 'node:path';

export function overlayOptions(lowers: string[], upper: string, work: string, rootless: boolean): { base: string; options: string } {
  const base = path.dirname(path.dirname(lowers[0]!));
  const rel = lowers.map((l) => (path.dirname(path.dirname(l)) === base ? path.relative(base, l) : l)).reverse();
  return { base, options: [...(rootless ? ['userxattr'] : []), `lowerdir=${rel.join(':')}`, `upperdir=${upper}`, `workdir=${work}`].join(',') };
}
