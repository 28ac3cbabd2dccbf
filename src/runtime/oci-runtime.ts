/**
 * Which OCI runtime runs containers. runc by default: crun 1.8 (Debian 12) refuses to start on hosts whose cgroups
 * are in hybrid mode ("cgroups in hybrid mode not supported") even with cgroups disabled, and runc 1.1 works
 * rootless and rootful; crun is used when runc is missing, or when asked for with --runtime.
 */
import { HoistError } from '../errors.ts';
import { findExecutable } from './host.ts';

export function pickRuntime(requested: string | undefined): string {
  if (requested !== undefined && requested !== '') {
    const p = findExecutable(requested);
    if (!p) throw new HoistError('NO_RUNTIME', `--runtime ${requested}: not found or not executable; install it or name another (runc, crun, or a path)`, { exitCode: 125 });
    return p;
  }
  const p = findExecutable('runc') ?? findExecutable('crun');
  if (!p) throw new HoistError('NO_RUNTIME', 'no OCI runtime found (runc or crun); install runc (Debian: apt-get install runc) or pass --runtime PATH', { exitCode: 125 });
  return p;
}
