/**
 * The OCI runtime-spec config.json hoist hands to runc (1.1), modelled on moby's default spec and
 * `runc spec --rootless`, shaped for how hoist runs containers:
 *   - no `user` namespace: rootless hoist is already inside one (unshare --map-root-user --map-auto), so the
 *     container's ids are that namespace's ids;
 *   - no `cgroup` namespace, no linux.resources, no cgroupsPath: cgroups are not delegated to us;
 *   - /sys is sysfs, except rootless without a network namespace of our own (mounting sysfs then fails with
 *     EPERM): there the host's /sys is bound read-only;
 *   - rootless binds repeat the source mount's locked flags (see lockedFlags);
 *   - the rest as docker: its 14 default capabilities (none inheritable; a non-root process starts with no
 *     effective/permitted ones, as after execve), its /proc,/dev,/dev/pts,/dev/mqueue,/dev/shm mounts, user
 *     mounts sorted parents-first and replacing a default mount at the same place, /etc/{resolv.conf,hostname,hosts}
 *     bound from files the caller prepared, runc's maskedPaths/readonlyPaths.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { posix } from 'node:path';
import { HoistError } from '../errors.ts';

export interface Mount {
  type: 'bind' | 'tmpfs';
  /** Host path for binds; ignored for tmpfs. */
  source?: string;
  /** Absolute path in the container. */
  destination: string;
  readonly?: boolean;
  /**
   * Binds: propagation and other flags after `rbind` (default `rprivate`, as docker).
   * Tmpfs: the whole option list (default docker's `noexec,nosuid,nodev`); parseTmpfs makes one.
   */
  options?: string[];
}

export interface SpecOptions {
  /** Host path of the root filesystem. */
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  terminal: boolean;
  hostname: string;
  /** 'host': share the network namespace hoist runs in; 'none': a new one (loopback only). */
  network: 'host' | 'none';
  /**
   * runc runs inside a user namespace hoist made (unshare), whoever the caller is: no gid=5 on /dev/pts, /sys
   * bound instead of mounted with the host network, binds keep their source's locked flags.
   */
  rootless: boolean;
  /** Extra mounts, from -v/--tmpfs or build steps. */
  mounts: Mount[];
  /** Host files bound onto /etc/hosts, /etc/resolv.conf, /etc/hostname. */
  etc: { hosts: string; resolvConf: string; hostname: string };
  readonlyRootfs?: boolean;
}

/** The subset of the OCI runtime spec hoist writes. */
export interface OciMount { destination: string; type: string; source: string; options?: string[] }
export interface OciRuntimeSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[] };
    rlimits?: Array<{ type: string; hard: number; soft: number }>;
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    namespaces: Array<{ type: string }>;
    sysctl?: Record<string, string>;
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

/** moby's oci.DefaultCapabilities(), in its order. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** runc spec's defaults (moby's are the same paths). */
const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Normalize an absolute container path: no `.`/`..`/duplicate or trailing slashes. */
export function cleanDestination(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

const depth = (p: string): number => p === '/' ? 0 : p.split('/').length - 1;

/** Mount flags the kernel locks on mounts seen from a user namespace (CL_UNPRIVILEGED); moby's list. */
const LOCKABLE = new Set(['ro', 'nodev', 'noexec', 'nosuid', 'noatime', 'relatime', 'nodiratime']);

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/**
 * The lockable flags of the mount holding host path `source` (per-mount options of its /proc/self/mountinfo
 * line; the last-mounted, longest mountpoint wins). In a user namespace a bind remount (for `ro`, say) that
 * would clear one of them fails with EPERM, and runc 1.1 does not add them itself, so, like moby, hoist
 * repeats them on every bind when rootless.
 */
export function lockedFlags(source: string, mountinfo: string = readFileSync('/proc/self/mountinfo', 'utf8')): string[] {
  let path: string;
  try {
    path = realpathSync(source);
  } catch {
    return []; // a missing source fails later with a clearer error
  }
  let best: { point: string; opts: string } | undefined;
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    const point = f[4];
    const opts = f[5];
    if (point === undefined || opts === undefined) continue;
    const p = unescape(point);
    const covers = p === '/' || path === p || path.startsWith(`${p}/`);
    if (covers && (best === undefined || p.length >= best.point.length)) best = { point: p, opts };
  }
  return best === undefined ? [] : best.opts.split(',').filter((o) => LOCKABLE.has(o));
}

function withLocked(options: string[], source: string, mountinfo: () => string): string[] {
  const extra = lockedFlags(source, mountinfo()).filter((f) => !options.includes(f));
  return [...options, ...extra];
}

function userMount(m: Mount): OciMount {
  const destination = cleanDestination(m.destination);
  if (m.type === 'tmpfs') {
    const options = [...(m.options ?? ['noexec', 'nosuid', 'nodev'])];
    if (m.readonly === true && !options.includes('ro')) options.push('ro');
    return { destination, type: 'tmpfs', source: 'tmpfs', options };
  }
  if (m.source === undefined || !posix.isAbsolute(m.source)) {
    throw new HoistError('BAD_MOUNT', `bind mount onto ${destination}: the source must be an absolute host path`,
      { exitCode: 125 });
  }
  const options = ['rbind'];
  if (m.readonly === true) options.push('ro');
  options.push(...(m.options ?? ['rprivate']));
  return { destination, type: 'bind', source: m.source, options };
}

export function makeRuntimeSpec(o: SpecOptions): OciRuntimeSpec {
  const netns = o.network === 'none';
  // sysfs needs the network namespace's owner: ours when we make one, the real root's otherwise. A bind of the
  // host's /sys (read-only at the top only: its submounts stay as they are) is the rootless fallback.
  const sysfs = netns || !o.rootless;
  const defaults: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts', type: 'devpts', source: 'devpts',
      // gid=5 (tty) is what docker uses as root; in a user namespace that gid may not be mapped.
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', ...(o.rootless ? [] : ['gid=5'])],
    },
    sysfs
      ? { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] }
      : { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
  ];

  let mi: string | undefined;
  const mountinfo = (): string => (mi ??= readFileSync('/proc/self/mountinfo', 'utf8'));
  const user = o.mounts.map(userMount);
  const userDest = new Set(user.map((m) => m.destination));
  // The /etc files are "user" mounts in docker too (so a -v onto /etc/hosts wins, and they sort with the rest).
  const etcOpts = ['rbind', ...(o.readonlyRootfs === true ? ['ro'] : []), 'rprivate'];
  const etc: OciMount[] = ([
    ['/etc/resolv.conf', o.etc.resolvConf], ['/etc/hostname', o.etc.hostname], ['/etc/hosts', o.etc.hosts],
  ] as const)
    .filter(([d]) => !userDest.has(d))
    .map(([destination, source]) => ({ destination, type: 'bind', source, options: [...etcOpts] }));
  if (o.rootless) {
    for (const m of [...etc, ...user]) if (m.type === 'bind' && m.options) m.options = withLocked(m.options, m.source, mountinfo);
  }
  // Parents before children, otherwise in the order given (moby sorts user mounts by path depth).
  const extra = [...etc, ...user].sort((a, b) => depth(a.destination) - depth(b.destination));
  const devMounted = userDest.has('/dev');
  const kept = defaults.filter((m) => !userDest.has(m.destination) && !(devMounted && m.destination.startsWith('/dev/')));

  const caps = [...DEFAULT_CAPABILITIES];
  const root = o.uid === 0;
  const spec: OciRuntimeSpec = {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: o.terminal,
      user: { uid: o.uid, gid: o.gid, additionalGids: [...o.additionalGids] },
      args: [...o.args],
      env: [...o.env],
      cwd: o.cwd,
      capabilities: { bounding: caps, effective: root ? [...caps] : [], permitted: root ? [...caps] : [] },
      noNewPrivileges: false,
    },
    root: { path: o.rootfs, readonly: o.readonlyRootfs === true },
    hostname: o.hostname,
    mounts: [...kept, ...extra],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, ...(netns ? [{ type: 'network' }] : [])],
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
    },
  };
  // No rlimits: the process inherits hoist's, as docker's inherit dockerd's (moby sets none by default).
  // Raising NOFILE above the inherited hard limit needs CAP_SYS_RESOURCE in the initial user namespace,
  // which rootless never has and even root may lack (it does on the CI machines): runc then fails with EPERM.

  // docker lets a private network namespace bind ports < 1024 without CAP_NET_BIND_SERVICE.
  if (netns) spec.linux.sysctl = { 'net.ipv4.ip_unprivileged_port_start': '0' };
  return spec;
}

/**
 * The container paths runc creates in the rootfs as mountpoints (when missing): each mount's destination,
 * except those inside an earlier mount (they are created in that mount, not in the rootfs). The parents of
 * a returned path may be created too. Build steps use this to keep such empty mountpoints out of layers.
 */
export function mountDestinations(spec: Pick<OciRuntimeSpec, 'mounts'>): string[] {
  const out: string[] = [];
  const seen: string[] = [];
  for (const m of spec.mounts) {
    const d = cleanDestination(m.destination);
    const inside = seen.some((s) => s === '/' || d === s || d.startsWith(`${s}/`));
    seen.push(d);
    if (!inside && !out.includes(d)) out.push(d);
  }
  return out;
}
