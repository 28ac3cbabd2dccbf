/**
 * What this host offers the runtime: who we are, the subordinate id ranges, the namespace tools and the OCI runtime.
 * Detection is cheap (a few file reads and `access` calls; no process is started) because `hoist run` does it on
 * every call; `hoist info` adds the slower probes (runtime versions, an overlay test mount).
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HoistError } from '../errors.ts';

export interface IdRange {
  /** First host id of the range. */
  start: number;
  count: number;
}

export interface HostInfo {
  uid: number;
  gid: number;
  user: string;
  /** Real root: rootful by default, like podman. */
  root: boolean;
  /** The caller's /etc/subuid and /etc/subgid ranges (the first of each), when any. */
  subuid?: IdRange;
  subgid?: IdRange;
  unshare?: string;
  newuidmap?: string;
  newgidmap?: string;
  setpriv?: string;
}

/** How the user namespace maps ids: 'auto' = root → caller plus the subordinate range; 'single' = root → caller only. */
export type UsernsMode = 'host' | 'auto' | 'single';

const SEARCH_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The absolute path of an executable named `name` on $PATH (then the usual system dirs), or undefined. */
export function findExecutable(name: string): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? path.resolve(name) : undefined;
  const dirs = [...(process.env['PATH'] ?? '').split(':').filter(Boolean), ...SEARCH_PATH];
  for (const d of dirs) {
    const p = path.join(d, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Parses /etc/subuid-style text: the first range for `user` (by name or numeric uid). */
export function parseSubIds(text: string, user: string, uid: number): IdRange | undefined {
  for (const line of text.split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if (who === undefined || start === undefined || count === undefined) continue;
    if (who !== user && who !== String(uid)) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isInteger(s) && Number.isInteger(c) && c > 0) return { start: s, count: c };
  }
  return undefined;
}

function readSubIds(file: string, user: string, uid: number): IdRange | undefined {
  try {
    return parseSubIds(readFileSync(file, 'utf8'), user, uid);
  } catch {
    return undefined;
  }
}

export function detectHost(): HostInfo {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    user = String(uid);
  }
  const info: HostInfo = { uid, gid, user, root: uid === 0 };
  const subuid = readSubIds('/etc/subuid', user, uid);
  const subgid = readSubIds('/etc/subgid', user, uid);
  if (subuid) info.subuid = subuid;
  if (subgid) info.subgid = subgid;
  const unshare = findExecutable('unshare');
  const newuidmap = findExecutable('newuidmap');
  const newgidmap = findExecutable('newgidmap');
  if (unshare) info.unshare = unshare;
  if (newuidmap) info.newuidmap = newuidmap;
  if (newgidmap) info.newgidmap = newgidmap;
  const setpriv = findExecutable('setpriv');
  if (setpriv) info.setpriv = setpriv;
  return info;
}

/**
 * The user-namespace mode for this host and request. Root runs rootful (no user namespace) unless `--userns=auto`;
 * a user with subordinate ranges and newuidmap gets the full mapping; otherwise a single-id mapping, with `warn`
 * told how to add a range (files owned by other ids in the image then all belong to root in the container).
 */
export function usernsMode(host: HostInfo, requested: string | undefined, warn: (msg: string) => void): UsernsMode {
  if (requested !== undefined && requested !== '' && requested !== 'auto' && requested !== 'host') {
    throw new HoistError('BAD_FLAG', `--userns=${requested}: not supported; use --userns=auto or --userns=host`, { exitCode: 125 });
  }
  if (host.root && requested !== 'auto') return 'host';
  if (!host.unshare) {
    throw new HoistError('NO_UNSHARE', 'unshare (util-linux) not found; install util-linux (2.38 or newer)', { exitCode: 125 });
  }
  if (host.root) return host.subuid && host.subgid ? 'auto' : 'single';
  if (host.subuid && host.subgid && host.newuidmap && host.newgidmap) return 'auto';
  const why = !host.newuidmap || !host.newgidmap
    ? 'newuidmap/newgidmap are missing (install the uidmap package)'
    : `user ${host.user} has no range in /etc/subuid and /etc/subgid (add one, e.g. as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${host.user})`;
  warn(`warning: ${why}; running with a single-id user namespace, so every file in the image belongs to root inside the container`);
  return 'single';
}

/**
 * The `unshare` command line that enters the namespaces for `mode` and runs the rest of argv inside them.
 * `pidNamespace`: the command becomes PID 1 of a new PID namespace (with its own /proc), so that when it dies
 * everything under it dies too; unshare's child then gets SIGKILL rather than SIGUSR2 when unshare goes.
 */
export function namespaceArgv(host: HostInfo, mode: UsernsMode, opts: { pidNamespace?: boolean } = {}): string[] {
  const unshare = host.unshare ?? 'unshare';
  // A container must not outlive hoist (kill -9 of hoist, a CI job cancelled): setpriv makes unshare die with
  // hoist, and unshare's --kill-child then sends the helper SIGUSR2, which the helper turns into `runc kill … KILL`
  // (see inner.ts) before it cleans up. SIGKILL there would leave the container running under a dead runc; in a
  // PID namespace of its own, SIGKILL to its PID 1 ends every process in it, the container's included.
  const pdeath = host.setpriv ? [host.setpriv, '--pdeathsig', 'KILL'] : [];
  const tail = opts.pidNamespace ? ['--pid', '--mount-proc', '--fork', '--kill-child=SIGKILL', '--'] : ['--fork', '--kill-child=SIGUSR2', '--'];
  switch (mode) {
    case 'host': return [...pdeath, unshare, '--mount', '--propagation', 'private', ...tail];
    case 'auto': return [...pdeath, unshare, '--user', '--map-root-user', '--map-auto', '--mount', ...tail];
    case 'single': return [...pdeath, unshare, '--user', '--map-root-user', '--mount', ...tail];
  }
}
