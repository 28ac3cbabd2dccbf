/**
 * `hoist run [flags] IMAGE [COMMAND [ARG...]]` — podman run's flags where they apply. Exit status: the container
 * process's; 125 when hoist itself failed, 126/127 when the command can't run / isn't there (docker's codes).
 */
import type { GlobalOptions } from '../main.ts';
import { HoistError, isHoistError } from '../../src/errors.ts';
import type { Store } from '../../src/store/store.ts';
import { storeRoot } from '../../src/store/root.ts';
import { parsePlatform, hostPlatform } from '../../src/oci/platform.ts';
import type { Descriptor, Platform } from '../../src/oci/types.ts';
import { detectHost, usernsMode, type HostInfo, type UsernsMode } from '../../src/runtime/host.ts';
import { pickRuntime } from '../../src/runtime/oci-runtime.ts';
import type { LaunchOptions, LaunchRequest } from '../../src/runtime/launch.ts';
import { startWaitingNamespace } from '../../src/runtime/waiting-namespace.ts';
import { parseEnvFile, runConfig } from '../../src/runtime/run-config.ts';
import { parseTmpfs, parseVolume } from '../../src/runtime/cli-parse.ts';
import type { NetworkMode, RootfsMode } from '../../src/runtime/request.ts';
import { registryAccess, type RegistryFlags } from '../registry-flags.ts';
import { loadImagePolicy, type PolicyFlags } from '../policy-flags.ts';

interface RunFlags extends RegistryFlags, PolicyFlags {
  rm?: boolean;
  interactive?: boolean;
  tty?: boolean;
  env: string[];
  envFile: string[];
  volume: string[];
  tmpfs: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  /** commander names the value of `--network, --net <mode>` after the last long flag. */
  net?: string;
  network?: string;
  hostname?: string;
  name?: string;
  pull?: string;
  runtime?: string;
  platform?: string;
  userns?: string;
  quiet?: boolean;
}

export default async function run(g: GlobalOptions, image: string, command: string[], flags: RunFlags): Promise<number> {
  try {
    return await runImage(g, image, command, flags);
  } catch (e) {
    // Anything hoist itself fails at is 125, as with docker and podman, so it can't be taken for the command's status.
    if (isHoistError(e) && e.exitCode === 1) throw new HoistError(e.code, e.message, { cause: e, exitCode: 125 });
    throw e;
  }
}

async function runImage(g: GlobalOptions, imageArg: string, command: string[], flags: RunFlags): Promise<number> {
  const network = parseNetwork(flags.network ?? flags.net);
  const pull = parsePull(flags.pull);
  const platform = flags.platform ? parsePlatform(flags.platform) : hostPlatform();
  const { openSync, closeSync, readFileSync, statSync } = await import('node:fs');
  const binds = flags.volume.map((spec) => {
    const m = parseVolume(spec);
    // Checked here, as podman does: otherwise runc fails inside the container's init with exit 1 and its own log lines.
    try {
      statSync(m.source!);
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be used (${(e as Error).message})`;
      throw new HoistError('BAD_MOUNT', `-v ${spec}: the host path ${m.source} ${why}; create it first or fix the path`, { exitCode: 125 });
    }
    return m;
  });
  const mounts = [...binds, ...flags.tmpfs.map(parseTmpfs)];
  if (flags.tty) {
    // runc run -t puts hoist's own terminal in raw mode: without one it fails late with "open /dev/tty".
    try {
      closeSync(openSync('/dev/tty', 'r'));
    } catch {
      throw new HoistError('NO_TTY', '-t: hoist is not running in a terminal (no /dev/tty); drop -t, or run it from a terminal', { exitCode: 125 });
    }
  }
  const envFromFiles = flags.envFile.flatMap((f) => {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw new HoistError('NOT_FOUND', `--env-file ${f}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, { exitCode: 125 });
    }
    return parseEnvFile(text, f, process.env);
  });

  const host = detectHost();
  const mode = usernsMode(host, flags.userns, (m) => process.stderr.write(`hoist: ${m}\n`));
  const runtime = pickRuntime(flags.runtime);
  // The namespace is made while the rest of this runs (src/runtime/waiting-namespace.ts); the fast path uses it.
  const rootfs = rootfsMode();
  const early = rootfs === 'copy' ? undefined : startWaitingNamespace(host, mode, flags.interactive ?? false);
  try {
    return await runIn(g, imageArg, command, flags, { network, pull, platform, mounts, envFromFiles, host, mode, runtime, rootfs, early });
  } finally {
    await early?.cancel();
  }
}

/** What runImage found out from the flags and the host before it started the namespace. */
interface Prepared {
  network: NetworkMode;
  pull: 'missing' | 'always' | 'never';
  platform: Platform;
  mounts: LaunchRequest['mounts'];
  envFromFiles: string[];
  host: HostInfo;
  mode: UsernsMode;
  runtime: string;
  rootfs: RootfsMode;
  early: ReturnType<typeof startWaitingNamespace> | undefined;
}

async function runIn(g: GlobalOptions, imageArg: string, command: string[], flags: RunFlags, p: Prepared): Promise<number> {
  const { network, pull, platform, mounts, envFromFiles, host, mode, runtime } = p;
  // Loaded only now: they are most of what `run` loads, and the namespace is being made meanwhile.
  const [{ Store }, { loadRunImage }, { Containers, newContainerId }, { launch }, { fastRun }] = await Promise.all([
    import('../../src/store/store.ts'), import('../../src/runtime/image.ts'), import('../../src/runtime/containers.ts'),
    import('../../src/runtime/launch.ts'), import('../../src/runtime/fast-run.ts'),
  ]);
  const root = storeRoot(g.root);
  const store = await Store.open(root);
  const top = await findOrPull(store, imageArg, pull, platform, flags, { host, mode, debug: g.debug, globals: g });
  const img = await loadRunImage(store, top, imageArg, platform);

  const containers = new Containers(store.root);
  const req = {
    entrypoint: flags.entrypoint,
    command,
    env: [...envFromFiles, ...flags.env],
    workdir: flags.workdir,
    user: flags.user,
    tty: flags.tty ?? false,
  };
  const id = newContainerId();
  const hostname = flags.hostname ?? id.slice(0, 12);
  // Before the record exists: a config error (no command, relative -w) leaves nothing behind.
  const cfg = runConfig(img.config.config, { ...req, hostname }, process.env);
  const rec = containers.create({
    id, ...(flags.name !== undefined ? { name: flags.name } : {}), image: imageArg, imageDigest: img.digest, command: cfg.args,
    pid: process.pid, ...(flags.rm ? { autoRemove: true } : {}),
  });

  const dir = containers.containerDir(rec.id);
  const request: LaunchRequest = {
    op: 'run',
    storeRoot: store.root,
    containerDir: dir,
    id: rec.id,
    layers: img.layers,
    process: { args: cfg.args, env: cfg.env, cwd: cfg.cwd, ...(cfg.user ? { user: cfg.user } : {}), terminal: flags.tty ?? false, hostname },
    network,
    mounts,
    runtime,
    rootfs: p.rootfs,
    diff: false,
    removeAfter: flags.rm ?? false,
    debug: g.debug,
  };
  const launchOpts: LaunchOptions = {
    host, mode, stdin: flags.interactive ?? false,
    onStart: () => {
      // The record names this hoist process: alive means the container runs (ps, and prune then leaves the unpacked
      // layers alone), gone means it exited. A --rm container's record goes with it.
      containers.write({ ...rec, pid: process.pid, state: 'running' });
    },
  };
  const debug = (m: string): void => {
    if (g.debug) process.stderr.write(`hoist: ${m}\n`);
  };
  // An image already unpacked runs without the namespace helper (src/runtime/fast-run.ts); otherwise, or when the
  // fast path finds it can't mount the overlay, the helper does everything inside the namespace.
  const fast = p.early ? await fastRun(request, launchOpts, debug, p.early) : undefined;
  let code = fast ? await fast.exit : undefined;
  if (code === undefined) {
    await p.early?.cancel();
    code = await launch(request, launchOpts).exit;
  }
  if (flags.rm) await removeRecordDir(dir);
  else containers.write({ ...rec, state: 'exited', exitCode: code, finishedAt: new Date().toISOString() });
  return code;
}

/** What --rm leaves after the helper removed the container's files (our record, if the helper failed early). */
async function removeRecordDir(dir: string): Promise<void> {
  const { rm } = await import('node:fs/promises');
  await rm(dir, { recursive: true, force: true }).catch(() => {});
}

function parseNetwork(v: string | undefined): NetworkMode {
  // podman's rootless default is a private network namespace with user-mode networking (slirp4netns/pasta);
  // neither works on these machines, so hoist's default is the host's network (documented in the README).
  if (v === undefined || v === 'host') return 'host';
  if (v === 'none') return 'none';
  throw new HoistError('BAD_FLAG', `--network ${v}: not supported; use --network host or --network none`, { exitCode: 125 });
}

function parsePull(v: string | undefined): 'missing' | 'always' | 'never' {
  const p = v ?? 'missing';
  if (p === 'missing' || p === 'always' || p === 'never') return p;
  if (p === 'newer') return 'always';
  throw new HoistError('BAD_FLAG', `--pull ${v}: expected missing, always or never`, { exitCode: 125 });
}

function rootfsMode(): RootfsMode {
  // Not a user flag: lets tests and people with a broken overlay force the copy fallback (HOIST_ROOTFS=copy).
  const v = process.env['HOIST_ROOTFS'];
  return v === 'copy' || v === 'native' ? v : 'auto';
}

/**
 * The stored image, or the image pulled into the store. The signature policy is read and enforced on the pull only,
 * for the docker:// reference, before anything is stored — as podman does (its policy check lives in containers/image's
 * copy, which only a pull runs): an image already in the store is trusted as it was when it was pulled or built.
 */
async function findOrPull(
  store: Store, name: string, pull: 'missing' | 'always' | 'never', platform: Platform, flags: RunFlags,
  ns: { host: HostInfo; mode: UsernsMode; debug: boolean; globals: PolicyFlags },
): Promise<Descriptor> {
  if (pull !== 'always') {
    try {
      return await store.resolve(name);
    } catch (e) {
      if (!isHoistError(e) || e.code !== 'NOT_FOUND' || pull === 'never') {
        if (isHoistError(e) && e.code === 'NOT_FOUND') {
          throw new HoistError('NOT_FOUND', `image "${name}" is not in the local store and --pull never was given; pull it with: hoist copy docker://${name} ${name}`, { exitCode: 125 });
        }
        throw e;
      }
    }
  }
  const { normalizeStoreName } = await import('../../src/transport/store.ts');
  let full: string;
  try {
    full = normalizeStoreName(name);
  } catch {
    throw new HoistError('NOT_FOUND', `image "${name}" is not in the local store and is not a name that can be pulled`, { exitCode: 125 });
  }
  const { openSource, openDestination } = await import('../../src/transport/index.ts');
  const { copyImage } = await import('../../src/copy/engine.ts');
  const { makeProgress } = await import('../progress.ts');
  const policy = await loadImagePolicy(flags, store.root, ns.globals);
  const ref = { transport: 'docker' as const, ref: full };
  const opened = await openSource(ref, { registry: await registryAccess(flags) });
  try {
    process.stderr.write(`Trying to pull ${full}...\n`);
    const src = await policy.admit(ref, opened);
    const dst = await openDestination({ transport: 'store', name: full }, { storeRoot: store.root, platform });
    const progress = makeProgress(undefined, flags.quiet);
    const result = await copyImage(src, dst, { platforms: [platform], onEvent: progress?.onEvent });
    progress?.done(result);
  } finally {
    await opened.close();
  }
  const top = await store.resolve(full);
  // Unpacked as part of the pull, as podman's pull does (the run below then finds every snapshot in place). Best
  // effort and quiet about failing: the run right after unpacks again and reports the error itself, once.
  const { unpackStoredImage } = await import('../../src/runtime/unpack-image.ts');
  await unpackStoredImage(store, top, full, {
    platform, host: ns.host, mode: ns.mode, debug: ns.debug,
    ...(flags.quiet ? {} : { onProgress: (line: string) => process.stderr.write(`${line}\n`) }),
    ...(ns.debug ? { onWarning: (line: string) => process.stderr.write(`hoist: ${line}\n`) } : {}),
  });
  return top;
}
