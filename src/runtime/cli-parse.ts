/**
 * `hoist run -v` and `--tmpfs` values, parsed as docker does (moby's linux volume parser and
 * mount.MergeTmpfsOptions), into the Mounts that spec.ts turns into OCI mounts.
 *
 * hoist has no volume store: `-v NAME:/dst` (named volume) and `-v /dst` (anonymous volume) are refused.
 * Like docker CLI 23+, a host path starting with `.` is taken relative to the current directory.
 */
import { posix } from 'node:path';
import { HoistError } from '../errors.ts';
import { cleanDestination, type Mount } from './spec.ts';

const bad = (message: string): HoistError => new HoistError('BAD_MOUNT', message, { exitCode: 125 });

const PROPAGATION = new Set(['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave']);
const RW = new Set(['rw', 'ro']);
const LABEL = new Set(['z', 'Z']); // SELinux relabel: nothing to do without SELinux
const CONSISTENCY = new Set(['consistent', 'cached', 'delegated']); // macOS-only hints, ignored on Linux

function checkDestination(flag: string, value: string, dst: string): string {
  if (!dst.startsWith('/')) {
    throw bad(`${flag} ${value}: the container path '${dst}' must be absolute; write ${flag === '-v' ? 'SRC:/path' : '/path'}`);
  }
  const d = cleanDestination(dst);
  if (d === '/') throw bad(`${flag} ${value}: the container path can't be '/'; mount onto a directory below it`);
  return d;
}

/** `-v SRC:DST[:MODE[,MODE…]]` with SRC an absolute (or `./`-relative) host path. */
export function parseVolume(spec: string): Mount {
  const parts = spec.split(':');
  if (parts[0] === '' || parts.length > 3) {
    throw bad(`-v ${spec}: invalid volume specification; write -v /host/path:/container/path[:ro]`);
  }
  const isMode = (m: string): boolean => m.split(',').every((o) => RW.has(o) || LABEL.has(o) || PROPAGATION.has(o) || CONSISTENCY.has(o) || o === 'nocopy');
  if (parts.length === 1 || (parts.length === 2 && isMode(parts[1] ?? ''))) {
    throw bad(`-v ${spec}: anonymous volumes are not supported; bind a host directory with -v /host/path:${parts[0]}`);
  }
  const [src = '', dst = '', mode = ''] = parts;

  const counts = { rw: 0, label: 0, propagation: 0, consistency: 0 };
  let readonly = false;
  let propagation = 'rprivate';
  for (const o of mode === '' ? [] : mode.split(',')) {
    if (RW.has(o)) {
      counts.rw++;
      readonly = o === 'ro';
    } else if (LABEL.has(o)) {
      counts.label++;
    } else if (PROPAGATION.has(o)) {
      counts.propagation++;
      propagation = o;
    } else if (CONSISTENCY.has(o)) {
      counts.consistency++;
    } else if (o === 'nocopy') {
      throw bad(`-v ${spec}: 'nocopy' applies to named volumes only, not to a bind of a host path; drop it`);
    } else {
      throw bad(`-v ${spec}: invalid mode '${o}'; use ro, rw, z, Z or a propagation (private, rprivate, shared, rshared, slave, rslave)`);
    }
  }
  if (Object.values(counts).some((n) => n > 1)) {
    throw bad(`-v ${spec}: invalid mode '${mode}' (two values of the same kind); give each of ro/rw, z/Z, propagation at most once`);
  }

  let source: string;
  if (src.startsWith('/')) source = posix.normalize(src);
  else if (src === '.' || src === '..' || src.startsWith('./') || src.startsWith('../')) source = posix.resolve(process.cwd(), src);
  else throw bad(`-v ${spec}: named volumes are not supported (hoist has no volume store); bind a host directory with -v /host/path:${dst}`);
  if (source.length > 1) source = source.replace(/\/+$/, '');

  return { type: 'bind', source, destination: checkDestination('-v', spec, dst), readonly, options: [propagation] };
}

// moby/sys/mount's flag table: each name sets or clears one flag; later options override earlier ones that
// touch the same flag. All propagation-ish flags (bind too) share one slot.
const FLAG_SLOT: Record<string, string> = {
  ro: 'rdonly', rw: 'rdonly', suid: 'nosuid', nosuid: 'nosuid', dev: 'nodev', nodev: 'nodev', exec: 'noexec',
  noexec: 'noexec', sync: 'sync', async: 'sync', dirsync: 'dirsync', remount: 'remount', mand: 'mand', nomand: 'mand',
  atime: 'noatime', noatime: 'noatime', diratime: 'nodiratime', nodiratime: 'nodiratime', relatime: 'relatime',
  norelatime: 'relatime', strictatime: 'strictatime', nostrictatime: 'strictatime',
  unbindable: 'propagation', runbindable: 'propagation', private: 'propagation', rprivate: 'propagation',
  shared: 'propagation', rshared: 'propagation', slave: 'propagation', rslave: 'propagation',
};
const TMPFS_DATA = new Set(['size', 'mode', 'uid', 'gid', 'nr_inodes', 'nr_blocks', 'mpol']);

/** `--tmpfs DST[:OPTIONS]`: options on top of docker's `noexec,nosuid,nodev,rprivate`, merged like docker. */
export function parseTmpfs(spec: string): Mount {
  const colon = spec.indexOf(':');
  const dst = colon < 0 ? spec : spec.slice(0, colon);
  const data = colon < 0 ? '' : spec.slice(colon + 1);
  const destination = checkDestination('--tmpfs', spec, dst);

  const given = ['noexec', 'nosuid', 'nodev', 'rprivate', ...(data === '' ? [] : data.split(','))];
  // mount.MergeTmpfsOptions: walk from the end, keep the last option for each flag slot or data key.
  const seen = new Set<string>();
  const merged: string[] = [];
  for (const o of given.toReversed()) {
    if (o === 'defaults') continue;
    if (o === 'bind' || o === 'rbind') {
      throw bad(`--tmpfs ${spec}: '${o}' is not a tmpfs option; use -v /host/path:${dst} for a bind mount`);
    }
    const slot = FLAG_SLOT[o];
    const eq = o.indexOf('=');
    const key = slot ?? (eq > 0 ? `data:${o.slice(0, eq)}` : undefined);
    if (key === undefined || (slot === undefined && !TMPFS_DATA.has(o.slice(0, eq)))) {
      throw bad(`--tmpfs ${spec}: invalid tmpfs option '${o}'; use flags like ro, noexec, exec or size=, mode=, uid=, gid=, nr_inodes=`);
    }
    if (seen.has(key)) continue;
    seen.add(key);
    merged.unshift(o);
  }
  return { type: 'tmpfs', destination, readonly: merged.includes('ro'), options: merged };
}
