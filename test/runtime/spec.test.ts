/**
 * The generated config.json, checked twice: its structure (what docker/runc would put there, and what hoist must
 * leave out), and by running runc 1.1 with it on a busybox rootfs, as root and rootless (runc inside
 * `unshare --user --map-root-user --map-auto --mount`, as hoist runs it), with and without a network namespace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  DEFAULT_CAPABILITIES, lockedFlags, makeRuntimeSpec, mountDestinations, type Mount, type OciRuntimeSpec, type SpecOptions,
} from '../../src/runtime/spec.ts';
import { HoistError } from '../../src/errors.ts';
import { run, type RunResult } from '../helpers/run.ts';
import { ciUser, hostIds, isRoot, rootlessSkipReason, runAs, userTempDir } from '../helpers/rootless.ts';

const ETC = { hosts: '/b/hosts', resolvConf: '/b/resolv.conf', hostname: '/b/hostname' };

function opts(over: Partial<SpecOptions> = {}): SpecOptions {
  return {
    rootfs: '/b/rootfs', args: ['sh'], env: ['PATH=/bin'], cwd: '/', uid: 0, gid: 0, additionalGids: [0],
    terminal: false, hostname: 'ctr', network: 'host', rootless: false, mounts: [], etc: ETC, ...over,
  };
}

const byDest = (s: OciRuntimeSpec, d: string) => s.mounts.find((m) => m.destination === d);

test('namespaces: pid, ipc, uts, mount, plus network for --network none; never user or cgroup', () => {
  const host = makeRuntimeSpec(opts());
  assert.deepEqual(host.linux.namespaces.map((n) => n.type), ['pid', 'ipc', 'uts', 'mount']);
  const none = makeRuntimeSpec(opts({ network: 'none' }));
  assert.deepEqual(none.linux.namespaces.map((n) => n.type), ['pid', 'ipc', 'uts', 'mount', 'network']);
  for (const s of [host, none, makeRuntimeSpec(opts({ rootless: true }))]) {
    const linux = s.linux as Record<string, unknown>;
    for (const k of ['resources', 'cgroupsPath', 'uidMappings', 'gidMappings', 'seccomp', 'devices']) assert.equal(linux[k], undefined, k);
    assert.equal((s.process as Record<string, unknown>)['rlimits'], undefined, 'rlimits are inherited');
    assert.equal(s.process.noNewPrivileges, false);
    assert.equal(s.ociVersion, '1.0.2-dev');
    assert.equal(s.hostname, 'ctr');
  }
  assert.deepEqual(none.linux.sysctl, { 'net.ipv4.ip_unprivileged_port_start': '0' });
  assert.equal(host.linux.sysctl, undefined);
});

test('process: args, env, cwd, user with additional gids, terminal; root path and readonly', () => {
  const s = makeRuntimeSpec(opts({
    args: ['/bin/sh', '-c', 'x'], env: ['A=1'], cwd: '/w', uid: 1000, gid: 100, additionalGids: [100, 7], terminal: true,
    readonlyRootfs: true,
  }));
  assert.deepEqual(s.process.args, ['/bin/sh', '-c', 'x']);
  assert.deepEqual(s.process.env, ['A=1']);
  assert.equal(s.process.cwd, '/w');
  assert.deepEqual(s.process.user, { uid: 1000, gid: 100, additionalGids: [100, 7] });
  assert.equal(s.process.terminal, true);
  assert.deepEqual(s.root, { path: '/b/rootfs', readonly: true });
  assert.deepEqual(byDest(s, '/etc/hosts')?.options, ['rbind', 'ro', 'rprivate'], 'a read-only rootfs has read-only /etc files');
  assert.deepEqual(makeRuntimeSpec(opts()).root, { path: '/b/rootfs', readonly: false });
});

test('capabilities: docker\'s 14 for root (no inheritable, no ambient); a non-root process only keeps the bounding set', () => {
  assert.deepEqual([...DEFAULT_CAPABILITIES], [
    'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
    'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
  ]);
  const root = makeRuntimeSpec(opts()).process.capabilities;
  assert.deepEqual(Object.keys(root).sort(), ['bounding', 'effective', 'permitted']);
  for (const set of [root.bounding, root.effective, root.permitted]) assert.deepEqual(set, [...DEFAULT_CAPABILITIES]);
  const user = makeRuntimeSpec(opts({ uid: 1000 })).process.capabilities;
  assert.deepEqual(user, { bounding: [...DEFAULT_CAPABILITIES], effective: [], permitted: [] });
});

test('default mounts: docker\'s /proc and /dev set; devpts gid=5 only rootful; /sys sysfs unless rootless on the host network', () => {
  const s = makeRuntimeSpec(opts());
  assert.deepEqual(s.mounts.slice(0, 6).map((m) => [m.destination, m.type, m.source]), [
    ['/proc', 'proc', 'proc'], ['/dev', 'tmpfs', 'tmpfs'], ['/dev/pts', 'devpts', 'devpts'], ['/sys', 'sysfs', 'sysfs'],
    ['/dev/mqueue', 'mqueue', 'mqueue'], ['/dev/shm', 'tmpfs', 'shm'],
  ]);
  assert.deepEqual(byDest(s, '/dev')?.options, ['nosuid', 'strictatime', 'mode=755', 'size=65536k']);
  assert.deepEqual(byDest(s, '/dev/pts')?.options, ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']);
  assert.deepEqual(byDest(s, '/dev/shm')?.options, ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']);
  assert.deepEqual(byDest(s, '/sys')?.options, ['nosuid', 'noexec', 'nodev', 'ro']);

  const rootlessHost = makeRuntimeSpec(opts({ rootless: true }));
  assert.deepEqual(byDest(rootlessHost, '/dev/pts')?.options, ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620']);
  assert.deepEqual(byDest(rootlessHost, '/sys'), { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] });
  assert.equal(byDest(makeRuntimeSpec(opts({ rootless: true, network: 'none' })), '/sys')?.type, 'sysfs');
  assert.equal(s.mounts.some((m) => m.type === 'cgroup'), false);

  assert.deepEqual(s.linux.maskedPaths, ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
    '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi']);
  assert.deepEqual(s.linux.readonlyPaths, ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']);
});

test('/etc files and user mounts: after the defaults, parents first, replacing a default at the same place', () => {
  const mounts: Mount[] = [
    { type: 'bind', source: '/h/deep', destination: '/data/sub/' },
    { type: 'bind', source: '/h/data', destination: '/data', readonly: true },
    { type: 'tmpfs', destination: '/run' },
    { type: 'tmpfs', destination: '/cache', readonly: true, options: ['size=1m'] },
    { type: 'bind', source: '/h/shared', destination: '/shared', options: ['rshared'] },
  ];
  const s = makeRuntimeSpec(opts({ mounts }));
  assert.deepEqual(s.mounts.slice(6), [
    { destination: '/data', type: 'bind', source: '/h/data', options: ['rbind', 'ro', 'rprivate'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['noexec', 'nosuid', 'nodev'] },
    { destination: '/cache', type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'ro'] },
    { destination: '/shared', type: 'bind', source: '/h/shared', options: ['rbind', 'rshared'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: ETC.resolvConf, options: ['rbind', 'rprivate'] },
    { destination: '/etc/hostname', type: 'bind', source: ETC.hostname, options: ['rbind', 'rprivate'] },
    { destination: '/etc/hosts', type: 'bind', source: ETC.hosts, options: ['rbind', 'rprivate'] },
    { destination: '/data/sub', type: 'bind', source: '/h/deep', options: ['rbind', 'rprivate'] },
  ]);

  const over = makeRuntimeSpec(opts({ mounts: [
    { type: 'bind', source: '/h/hosts', destination: '/etc/hosts' },
    { type: 'tmpfs', destination: '/dev/shm', options: ['size=1g'] },
  ] }));
  assert.deepEqual(over.mounts.filter((m) => m.destination === '/etc/hosts'), [
    { destination: '/etc/hosts', type: 'bind', source: '/h/hosts', options: ['rbind', 'rprivate'] },
  ]);
  assert.deepEqual(over.mounts.filter((m) => m.destination === '/dev/shm').map((m) => m.options), [['size=1g']]);

  const dev = makeRuntimeSpec(opts({ mounts: [{ type: 'bind', source: '/dev', destination: '/dev' }] }));
  assert.deepEqual(dev.mounts.filter((m) => m.destination.startsWith('/dev')).map((m) => [m.destination, m.source]), [['/dev', '/dev']],
    'a user /dev replaces every default mount below it');

  assert.throws(() => makeRuntimeSpec(opts({ mounts: [{ type: 'bind', source: 'rel', destination: '/x' }] })),
    (e: unknown) => e instanceof HoistError && e.exitCode === 125 && /absolute host path/.test(e.message));
});

test('mountDestinations: every mountpoint made in the rootfs, not those inside an earlier mount', () => {
  const s = makeRuntimeSpec(opts({ mounts: [
    { type: 'bind', source: '/h/a', destination: '/data' },
    { type: 'bind', source: '/h/b', destination: '/data/inner' },
    { type: 'tmpfs', destination: '/run/x/' },
    { type: 'tmpfs', destination: '/datax' },
  ] }));
  assert.deepEqual(mountDestinations(s), ['/proc', '/dev', '/sys', '/data', '/datax', '/etc/resolv.conf', '/etc/hostname', '/etc/hosts', '/run/x']);
  assert.deepEqual(mountDestinations({ mounts: [
    { destination: '/a/b', type: 'tmpfs', source: 'tmpfs' }, { destination: '/a', type: 'tmpfs', source: 'tmpfs' },
    { destination: '/a/b', type: 'tmpfs', source: 'tmpfs' },
  ] }), ['/a/b', '/a'], 'a mount below a later one was made in the rootfs first');
});

test('lockedFlags: the lockable options of the mount holding the path, escapes decoded', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hoist spec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'sub'));
  const real = realpathSync(dir);
  const esc = real.replace(/ /g, '\\040');
  const mountinfo = [
    '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    `90 22 0:50 / ${esc} rw,nosuid,nodev,noexec,relatime shared:40 - tmpfs tmpfs rw`,
    `91 90 0:51 / ${esc}/sub ro,nosuid,noatime shared:41 - tmpfs tmpfs rw`,
    `92 22 0:52 / ${esc}x rw,nodev shared:42 - tmpfs tmpfs rw`,
    '',
  ].join('\n');
  assert.deepEqual(lockedFlags(dir, mountinfo), ['nosuid', 'nodev', 'noexec', 'relatime']);
  assert.deepEqual(lockedFlags(path.join(dir, 'sub'), mountinfo), ['ro', 'nosuid', 'noatime']);
  assert.deepEqual(lockedFlags('/', mountinfo), ['relatime']);
  assert.deepEqual(lockedFlags(path.join(dir, 'missing'), mountinfo), [], 'a missing source adds nothing');
});

// ---- runc -------------------------------------------------------------------------------------------------------

const RUNC = ['/usr/sbin/runc', '/usr/bin/runc', '/usr/local/sbin/runc', '/usr/local/bin/runc'].find((p) => existsSync(p));
const rootfulSkip = RUNC === undefined ? 'runc is not installed' : !isRoot() ? 'not root' : false;
const rootlessSkip = RUNC === undefined ? 'runc is not installed' : rootlessSkipReason();
const BUSYBOX = '/bin/busybox';
const APPLETS = ['sh', 'id', 'cat', 'true', 'hostname', 'ls', 'touch', 'grep', 'echo', 'test', 'mount', 'awk'];

let seq = 0;
const containerId = (): string => `hoist-spec-test-${process.pid}-${++seq}`;

/** DIR/bundle/rootfs with busybox, passwd/group; DIR/etc files; DIR/data with a file to bind. */
function makeBundle(dir: string): { bundle: string; etc: SpecOptions['etc']; data: string } {
  const bundle = path.join(dir, 'bundle');
  const rootfs = path.join(bundle, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  mkdirSync(path.join(rootfs, 'etc'));
  mkdirSync(path.join(rootfs, 'tmp'));
  chmodSync(path.join(rootfs, 'tmp'), 0o1777);
  copyFileSync(BUSYBOX, path.join(rootfs, 'bin/busybox'));
  chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
  for (const a of APPLETS) symlinkSync('busybox', path.join(rootfs, 'bin', a));
  writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
  writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nwheel:x:7:app\napp:x:1000:\n');
  const etcDir = path.join(dir, 'etc');
  mkdirSync(etcDir);
  const etc = { hosts: path.join(etcDir, 'hosts'), resolvConf: path.join(etcDir, 'resolv.conf'), hostname: path.join(etcDir, 'hostname') };
  writeFileSync(etc.hosts, '127.0.0.1\tlocalhost\n127.0.1.1\tspec-test\n');
  writeFileSync(etc.resolvConf, 'nameserver 127.0.0.53\n');
  writeFileSync(etc.hostname, 'spec-test\n');
  const data = path.join(dir, 'data');
  mkdirSync(data);
  chmodSync(data, 0o777); // so only the read-only mount can stop a write
  writeFileSync(path.join(data, 'f'), 'from the host\n');
  return { bundle, etc, data };
}

async function runc(dir: string, bundle: string, spec: OciRuntimeSpec, user?: string): Promise<RunResult> {
  writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 2));
  const args = ['--root', path.join(dir, 'state'), 'run', '--bundle', bundle, containerId()];
  if (user === undefined) return run(RUNC!, args);
  return runAs(user, 'unshare', ['--user', '--map-root-user', '--map-auto', '--mount', '--fork', RUNC!, ...args]);
}

/** The capability mask a list of names stands for (as /proc/PID/status prints it). */
function capMask(names: readonly string[]): string {
  const num: Record<string, number> = {
    CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_FOWNER: 3, CAP_FSETID: 4, CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7, CAP_SETPCAP: 8,
    CAP_NET_BIND_SERVICE: 10, CAP_NET_RAW: 13, CAP_SYS_CHROOT: 18, CAP_MKNOD: 27, CAP_AUDIT_WRITE: 29, CAP_SETFCAP: 31,
  };
  const m = names.reduce((acc, n) => acc | (1n << BigInt(num[n]!)), 0n);
  return m.toString(16).padStart(16, '0');
}

const SCRIPT = [
  'id -u; id -G; hostname; cat /etc/hostname /etc/resolv.conf',
  'grep -q spec-test /etc/hosts && echo hosts-ok',
  'cat /data/f; touch /data/new 2>/dev/null && echo data-rw || echo data-ro',
  'touch /scratch/x && echo scratch-rw',
  'awk \'/^CapEff/ {print $2}\' /proc/self/status',
  'echo $(ls /sys/class/net)',
  'cat /proc/sys/net/ipv4/ip_unprivileged_port_start',
  'touch /tmp/x 2>/dev/null && echo root-rw || echo root-ro',
  'exit 42',
].join('\n');

/** Runs SCRIPT in a container from makeRuntimeSpec and checks what it saw. */
async function checkRun(dir: string, o: { network: 'host' | 'none'; uid: number; rootless: boolean; user?: string; readonlyRootfs?: boolean }): Promise<void> {
  const { bundle, etc, data } = makeBundle(dir);
  if (o.user !== undefined) {
    const { uid, gid } = hostIds(o.user);
    const r = spawnSync('chown', ['-R', `${uid}:${gid}`, dir]);
    assert.equal(r.status, 0, String(r.stderr));
  }
  const gid = o.uid === 0 ? 0 : 1000;
  const spec = makeRuntimeSpec({
    rootfs: path.join(bundle, 'rootfs'), args: ['sh', '-c', SCRIPT], env: ['PATH=/bin', 'HOME=/'], cwd: '/',
    uid: o.uid, gid, additionalGids: [gid, 7], terminal: false, hostname: 'spec-test', network: o.network,
    rootless: o.rootless, etc, readonlyRootfs: o.readonlyRootfs ?? false,
    mounts: [{ type: 'bind', source: data, destination: '/data', readonly: true }, { type: 'tmpfs', destination: '/scratch', options: ['mode=1777'] }],
  });
  const r = await runc(dir, bundle, spec, o.user);
  assert.equal(r.code, 42, `runc: ${r.stderr}\n${r.stdout}`);
  const lines = r.stdout.split('\n');
  const hostNets = readdirSync('/sys/class/net').sort().join(' ');
  const hostPortStart = readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim();
  assert.deepEqual(lines.slice(0, 13), [
    String(o.uid), `${gid} 7`, 'spec-test', 'spec-test', 'nameserver 127.0.0.53', 'hosts-ok', 'from the host', 'data-ro',
    'scratch-rw', capMask(o.uid === 0 ? DEFAULT_CAPABILITIES : []),
    o.network === 'none' ? 'lo' : hostNets, o.network === 'none' ? '0' : hostPortStart, o.readonlyRootfs ? 'root-ro' : 'root-rw',
  ]);
}

test('runc runs the spec as root: ids, groups, hostname, /etc files, mounts, caps, exit code (host network)', { skip: rootfulSkip }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hoist-spec-runc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await checkRun(dir, { network: 'host', uid: 1000, rootless: false });
});

test('runc runs the spec as root with --network none (sysfs in its own netns) and a read-only rootfs', { skip: rootfulSkip }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hoist-spec-runc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await checkRun(dir, { network: 'none', uid: 0, rootless: false, readonlyRootfs: true });
});

test('runc runs the spec rootless, host network (/sys bound from the host)', { skip: rootlessSkip }, async () => {
  const user = ciUser()!;
  const tmp = await userTempDir(user, 'hoist-spec-rootless-');
  try {
    await checkRun(tmp.dir, { network: 'host', uid: 0, rootless: true, user });
  } finally {
    await tmp.cleanup();
  }
});

test('runc runs the spec rootless with --network none, as a non-root container user', { skip: rootlessSkip }, async () => {
  const user = ciUser()!;
  const tmp = await userTempDir(user, 'hoist-spec-rootless-');
  try {
    await checkRun(tmp.dir, { network: 'none', uid: 1000, rootless: true, user });
  } finally {
    await tmp.cleanup();
  }
});

test('rootless read-only bind of a nosuid,nodev mount works (locked flags repeated)', { skip: rootlessSkip || (!isRoot() && 'needs root to make the mount') }, async () => {
  const user = ciUser()!;
  const tmp = await userTempDir(user, 'hoist-spec-locked-');
  const locked = path.join(tmp.dir, 'locked');
  mkdirSync(locked);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'nosuid,nodev,mode=755', 'tmpfs', locked]);
  assert.equal(m.status, 0, String(m.stderr));
  try {
    writeFileSync(path.join(locked, 'f'), 'locked\n');
    const { bundle, etc } = makeBundle(tmp.dir);
    const { uid, gid } = hostIds(user);
    assert.equal(spawnSync('chown', ['-R', `${uid}:${gid}`, bundle]).status, 0);
    const spec = makeRuntimeSpec({
      rootfs: path.join(bundle, 'rootfs'), args: ['sh', '-c', 'cat /locked/f; touch /locked/g 2>/dev/null || echo ro'], env: ['PATH=/bin'],
      cwd: '/', uid: 0, gid: 0, additionalGids: [0], terminal: false, hostname: 'l', network: 'host', rootless: true, etc,
      mounts: [{ type: 'bind', source: locked, destination: '/locked', readonly: true }],
    });
    assert.deepEqual(spec.mounts.find((x) => x.destination === '/locked')?.options?.slice(0, 5), ['rbind', 'ro', 'rprivate', 'nosuid', 'nodev']);
    const r = await runc(tmp.dir, bundle, spec, user);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'locked\nro\n');
  } finally {
    spawnSync('umount', [locked]);
    await tmp.cleanup();
  }
});
