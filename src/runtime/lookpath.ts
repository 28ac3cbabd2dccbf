/**
 * Find the program a container will exec, before starting it, the way runc does (Go's exec.LookPath, run in
 * the container after its env is set): so `hoist run` can fail with docker's exit 127 ("executable file not
 * found in $PATH", "no such file or directory") or 126 ("permission denied") and a clear message instead of
 * runc's wrapped init error.
 *
 * exec.LookPath rules: a name with a `/` is checked as it is (relative to the working directory); otherwise
 * each $PATH entry is tried in order (an empty entry means the working directory) and the first regular file
 * with any execute bit wins; entries that exist but are not executable are skipped, so a PATH search only
 * ever ends in 'not-found'. Paths are followed inside the rootfs (resolveInRoot).
 */
import type { Stats } from 'node:fs';
import { posix } from 'node:path';
import { dirRoot, type RootFiles } from './root-files.ts';

export type LookPathResult =
  | { kind: 'ok'; path: string }
  | { kind: 'not-found' }
  | { kind: 'not-executable'; path: string };

const executable = (st: Stats): boolean => !st.isDirectory() && (st.mode & 0o111) !== 0;

/**
 * Look `cmd` up in the rootfs (a directory, or a RootFiles view). `env` is the container's final environment (its
 * last PATH= counts); `cwd` the container's working directory. Returned paths are absolute container paths.
 */
export function lookPath(rootfs: string | RootFiles, cmd: string, env: string[], cwd: string): LookPathResult {
  const root = typeof rootfs === 'string' ? dirRoot(rootfs) : rootfs;
  const inCwd = (p: string): string => posix.isAbsolute(p) ? posix.normalize(p) : posix.join(cwd, p);
  if (cmd.includes('/')) {
    const path = inCwd(cmd);
    const st = root.stat(path);
    if (st === undefined) return { kind: 'not-found' };
    return executable(st) ? { kind: 'ok', path } : { kind: 'not-executable', path };
  }
  const pathVar = env.findLast((e) => e.startsWith('PATH='))?.slice('PATH='.length) ?? '';
  if (pathVar === '') return { kind: 'not-found' }; // filepath.SplitList("") is empty
  for (const dir of pathVar.split(':')) {
    const path = inCwd(posix.join(dir === '' ? '.' : dir, cmd));
    const st = root.stat(path);
    if (st !== undefined && executable(st)) return { kind: 'ok', path };
  }
  return { kind: 'not-found' };
}
