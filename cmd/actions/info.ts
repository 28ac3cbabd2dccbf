/** `hoist info [--format json]` — what the runtime detected on this host, probed for real (overlay mount, runtime versions). */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { GlobalOptions } from '../main.ts';
import { storeRoot } from '../../src/store/root.ts';
import { detectHost, findExecutable, namespaceArgv, usernsMode } from '../../src/runtime/host.ts';

const run = promisify(execFile);

interface InfoFlags {
  format: string;
}

export default async function info(g: GlobalOptions, flags: InfoFlags): Promise<number> {
  const host = detectHost();
  const warnings: string[] = [];
  let mode: string;
  try {
    mode = usernsMode(host, undefined, (m) => warnings.push(m));
  } catch (e) {
    mode = `unavailable (${(e as Error).message})`;
  }
  const runtimes = await Promise.all(['runc', 'crun'].map(async (name) => {
    const p = findExecutable(name);
    return { name, path: p ?? null, version: p ? await firstLine(p, ['--version']) : null };
  }));
  const chosen = runtimes.find((r) => r.name === 'runc' && r.path) ?? runtimes.find((r) => r.path);
  const overlay = mode === 'auto' || mode === 'single' || mode === 'host' ? await probeOverlay(host, mode) : 'unknown';
  const out = {
    store: storeRoot(g.root),
    user: { name: host.user, uid: host.uid, gid: host.gid, root: host.root },
    userns: mode,
    idMappings: {
      uid: host.subuid ? { containerStart: 1, hostStart: host.subuid.start, size: host.subuid.count } : null,
      gid: host.subgid ? { containerStart: 1, hostStart: host.subgid.start, size: host.subgid.count } : null,
    },
    tools: { unshare: host.unshare ?? null, newuidmap: host.newuidmap ?? null, newgidmap: host.newgidmap ?? null },
    ociRuntime: chosen ? { name: chosen.name, path: chosen.path, version: chosen.version } : null,
    runtimes,
    rootfs: overlay,
    network: { default: 'host', available: ['host', 'none'], note: 'no user-mode networking (slirp4netns/pasta) is used: host is the default' },
    warnings,
  };
  if (flags.format === 'json') {
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    return 0;
  }
  const lines = [
    `store:        ${out.store}`,
    `user:         ${host.user} (uid ${host.uid}, gid ${host.gid})${host.root ? ', root: rootful by default' : ''}`,
    `userns:       ${mode}`,
    `subuid:       ${host.subuid ? `${host.subuid.start}+${host.subuid.count}` : 'none'}`,
    `subgid:       ${host.subgid ? `${host.subgid.start}+${host.subgid.count}` : 'none'}`,
    `oci runtime:  ${chosen ? `${chosen.name} ${chosen.path} (${chosen.version ?? '?'})` : 'none found'}`,
    `rootfs:       ${overlay}`,
    `network:      host (default), none`,
    ...warnings.map((w) => `warning:      ${w}`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

async function firstLine(cmd: string, args: string[]): Promise<string | null> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 5000 });
    return stdout.split('\n')[0]?.trim() ?? null;
  } catch {
    return null;
  }
}

/** Mounts a tiny overlay inside the same namespaces `run` uses: 'overlay' (with userxattr when rootless) or 'copy'. */
async function probeOverlay(host: ReturnType<typeof detectHost>, mode: 'auto' | 'single' | 'host'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hoist-probe-'));
  try {
    const opt = mode === 'host' ? '' : 'userxattr,';
    const script = `cd "$1" && mkdir l u w m && mount -t overlay overlay -o ${opt}lowerdir=l,upperdir=u,workdir=w m && umount m`;
    const argv = [...namespaceArgv(host, mode), 'sh', '-c', script, 'sh', dir];
    try {
      await run(argv[0]!, argv.slice(1), { timeout: 10_000 });
      return mode === 'host' ? 'overlay' : 'overlay (userxattr)';
    } catch {
      return 'copy (overlay cannot be mounted here; every container gets its own unpacked copy)';
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
