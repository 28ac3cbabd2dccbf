/**
 * The namespace helper: runs INSIDE the user and mount namespaces that `unshare` made (see host.ts), as the
 * container's root. Everything that touches image files happens here, so owners and modes read and write as the
 * container sees them: unpacking layer snapshots, mounting the overlay, resolving the user and the executable,
 * running the OCI runtime, reading the change back, removing the container's files.
 *
 * Usage: node inner.ts REQUEST.json (an InnerRequest). Exit status: the container process's, or 125 when this helper
 * failed (one `hoist: …` line on stderr), 126/127 when the command can't be executed / isn't there (docker's codes).
 * The change layer, when asked for, goes to fd 3 as an uncompressed tar.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync, type Stats } from 'node:fs';
import { rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { HoistError, isHoistError } from '../errors.ts';
import { EXIT_CANNOT_EXECUTE, EXIT_HOIST_FAILED, EXIT_NOT_FOUND, type InnerRequest, type LayerRef } from './request.ts';
import { resolveInRoot } from './rootfs-path.ts';

let debug = false;

/** Layers unpacked at once on a first run. */
const UNPACK_PARALLELISM = 3;

function log(msg: string): void {
  // Milliseconds since this helper started: where the time of a `hoist run` goes.
  if (debug) process.stderr.write(`hoist: [ns +${performance.now().toFixed(0)}ms] ${msg}\n`);
}

async function main(): Promise<number> {
  const file = process.argv[2];
  if (!file) throw new HoistError('USAGE', 'inner.ts needs the request file');
  const req = JSON.parse(readFileSync(file, 'utf8')) as InnerRequest;
  debug = req.debug;
  if (req.op === 'remove') {
    await removeContainerDir(req.containerDir);
    return 0;
  }
  return runContainer(req);
}

/** Removes a container's directory; inside the namespace because its upper dir holds files of subordinate ids. */
async function removeContainerDir(dir: string): Promise<void> {
  await unmountQuietly(path.join(dir, 'rootfs'));
  await rm(dir, { recursive: true, force: true });
}

async function runContainer(req: InnerRequest): Promise<number> {
  const dir = req.containerDir;
  const rootfs = path.join(dir, 'rootfs');
  let mounted = false;
  try {
    const lowers = await ensureSnapshots(req);
    mkdirSync(rootfs, { recursive: true });
    log('snapshots ready');
    const mode = await mountRootfs(req, lowers, rootfs);
    log(`root filesystem: ${mode}`);
    mounted = mode === 'overlay';
    if (req.diff && mode !== 'overlay') {
      throw new HoistError('NO_OVERLAY', 'an overlay mount is needed to record the change of a build step, and it failed here; see hoist info');
    }

    const { resolveUser } = await import('./passwd.ts');
    const { withHome } = await import('./run-config.ts');
    const { lookPath } = await import('./lookpath.ts');
    const { makeRuntimeSpec, mountDestinations } = await import('./spec.ts');
    const user = resolveUser(rootfs, req.process.user);
    const env = withHome(req.process.env, user.home);
    const cmd = req.process.args[0];
    if (cmd === undefined) throw new HoistError('NO_COMMAND', 'no command specified', { exitCode: EXIT_HOIST_FAILED });
    const found = lookPath(rootfs, cmd, env, req.process.cwd);
    if (found.kind === 'not-found') {
      const how = cmd.includes('/') ? 'no such file or directory' : 'executable file not found in $PATH';
      throw new HoistError('NOT_FOUND', `${cmd}: ${how} in the image; check the command, the image's PATH and the entrypoint`,
        { exitCode: EXIT_NOT_FOUND });
    }
    if (found.kind === 'not-executable') {
      throw new HoistError('CANNOT_EXECUTE', `${cmd}: permission denied (${found.path} is not an executable file)`,
        { exitCode: EXIT_CANNOT_EXECUTE });
    }

    const etc = writeEtcFiles(dir, req);
    const spec = makeRuntimeSpec({
      rootfs, args: req.process.args, env, cwd: req.process.cwd, uid: user.uid, gid: user.gid,
      additionalGids: user.additionalGids, terminal: req.process.terminal, hostname: req.process.hostname,
      network: req.network, rootless: req.rootless, mounts: req.mounts, etc,
    });
    // Mountpoints the runtime will create in the upper dir: left out of the change unless they were already there.
    const created = req.diff ? createdByRuntime(rootfs, mountDestinations(spec)) : { mountpoints: [], parents: new Set<string>() };
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(spec));

    const status = await runRuntime(req);
    log(`runtime exited ${status}`);
    if (status !== 0) {
      const failed = runtimeStartError(req);
      if (failed !== undefined) throw runtimeFailure(failed, req);
    }

    if (mounted) {
      await unmountQuietly(rootfs);
      mounted = false;
    }
    if (req.diff) await writeChange(path.join(dir, 'upper'), lowers, created, req.mtimeClamp);
    return status;
  } finally {
    if (mounted) await unmountQuietly(rootfs);
    if (req.removeAfter) await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

interface CreatedPaths {
  /** Mount destinations (relative, no leading /) missing from the image: the runtime creates them. */
  mountpoints: string[];
  /** Their missing parent directories, which the runtime creates too. */
  parents: Set<string>;
}

/** What the runtime will create in the upper dir for the spec's mounts, so the change can leave it out. */
function createdByRuntime(rootfs: string, destinations: string[]): CreatedPaths {
  const out: CreatedPaths = { mountpoints: [], parents: new Set() };
  for (const d of destinations) {
    if (existsInRoot(rootfs, d)) continue;
    const rel = d.replace(/^\/+/, '');
    out.mountpoints.push(rel);
    for (let p = path.posix.dirname(rel); p !== '.' && p !== '' && !existsInRoot(rootfs, p); p = path.posix.dirname(p)) out.parents.add(p);
  }
  return out;
}

/** Whether `dest` exists in the container's view: symlinks on the way resolve inside the rootfs, as runc resolves mount destinations. */
function existsInRoot(rootfs: string, dest: string): boolean {
  try {
    lstatSync(resolveInRoot(rootfs, `/${dest}`));
    return true;
  } catch {
    return false;
  }
}

/** Unpacks missing layers into the shared snapshot cache; returns the snapshot dirs, bottom layer first. */
async function ensureSnapshots(req: InnerRequest): Promise<string[]> {
  const { Snapshots } = await import('../store/snapshots.ts');
  const snaps = new Snapshots(req.storeRoot);
  const missing = req.layers.filter((l) => !snaps.has(l.diffID));
  if (missing.length) {
    const openLayer = await layerOpener(req.storeRoot);
    const opaqueXattrs = req.hostRoot ? ['trusted.overlay.opaque', 'user.overlay.opaque'] : ['user.overlay.opaque'];
    const warned = new Set<string>();
    // Layers unpack side by side: each goes to its own snapshot, and one layer's gunzip, hashing and small-file
    // syscalls leave the disk and the other core idle.
    const { default: pLimit } = await import('p-limit');
    const limit = pLimit(UNPACK_PARALLELISM);
    await Promise.all(missing.map((l) => limit(async () => {
      log(`unpacking ${l.digest}`);
      await snaps.ensure(l.diffID, () => openLayer(l), {
        whiteouts: 'keep-as-overlay',
        opaqueXattrs,
        where: `layer ${l.digest}`,
        onWarning: (m: string) => {
          if (warned.has(m)) return;
          warned.add(m);
          if (debug) process.stderr.write(`hoist: warning: ${m}\n`);
        },
      });
      log(`unpacked ${l.digest}`);
    })));
  }
  return req.layers.map((l) => snaps.dir(l.diffID));
}

/**
 * Overlay (userxattr inside a user namespace) of the snapshots plus a fresh upper dir; else a plain copy.
 * Lower dirs are passed relative to the snapshots directory (mount runs with that as its working directory) so
 * that many layers still fit in the one page that mount options may take.
 */
async function mountRootfs(req: InnerRequest, lowers: string[], rootfs: string): Promise<'overlay' | 'copy'> {
  if (req.rootfs !== 'copy') {
    const upper = path.join(req.containerDir, 'upper');
    const work = path.join(req.containerDir, 'work');
    mkdirSync(upper, { recursive: true });
    mkdirSync(work, { recursive: true });
    if (lowers.length === 0) {
      // overlay needs at least one lower dir: an empty one stands in for FROM scratch.
      const empty = path.join(req.containerDir, 'empty');
      mkdirSync(empty, { recursive: true });
      lowers = [empty];
    }
    const base = path.dirname(path.dirname(lowers[0]!));
    const rel = lowers.map((l) => (path.dirname(path.dirname(l)) === base ? path.relative(base, l) : l)).reverse();
    const opts = [...(req.rootless ? ['userxattr'] : []), `lowerdir=${rel.join(':')}`, `upperdir=${upper}`, `workdir=${work}`];
    const r = await exec('mount', ['-t', 'overlay', 'overlay', '-o', opts.join(','), rootfs], base);
    if (r.code === 0) return 'overlay';
    log(`overlay mount failed: ${r.stderr.trim()}`);
    if (req.rootfs === 'native') {
      throw new HoistError('NO_OVERLAY', `cannot mount the overlay root filesystem (${r.stderr.trim()}); set HOIST_ROOTFS=copy to use a plain copy, or see hoist info`);
    }
  }
  await copyRootfs(req, rootfs);
  return 'copy';
}

/** The fallback: every layer unpacked in order (whiteouts applied) into the container's own directory. */
async function copyRootfs(req: InnerRequest, rootfs: string): Promise<void> {
  const { unpackLayer } = await import('../layer/unpack.ts');
  const openLayer = await layerOpener(req.storeRoot);
  for (const l of req.layers) await unpackLayer(await openLayer(l), rootfs, { where: `layer ${l.digest}` });
}

/** Opens stored layers as uncompressed tar streams (the blob's digest verified as it is read). */
async function layerOpener(storeRoot: string): Promise<(l: LayerRef) => Promise<Readable>> {
  const { OciLayout } = await import('../store/layout.ts');
  const { autoDecompress } = await import('../layer/compression.ts');
  const layout = await OciLayout.open(storeRoot, { create: false });
  return async (l) => {
    const blob = await layout.openBlob(l.digest, l.size);
    const out = autoDecompress(`layer ${l.digest}`);
    blob.on('error', (e) => out.destroy(e));
    return blob.pipe(out);
  };
}

/** /etc/hosts, /etc/resolv.conf and /etc/hostname for the container, bind-mounted by the spec (as podman does). */
function writeEtcFiles(dir: string, req: InnerRequest): { hosts: string; resolvConf: string; hostname: string } {
  const etc = path.join(dir, 'etc');
  mkdirSync(etc, { recursive: true });
  const name = req.process.hostname;
  const hostHosts = req.network === 'host' ? readOr('/etc/hosts', '') : '';
  const hosts = (hostHosts || '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n')
    + (hostHosts.endsWith('\n') || hostHosts === '' ? '' : '\n') + `127.0.1.1\t${name}\n`;
  const files = { hosts: path.join(etc, 'hosts'), resolvConf: path.join(etc, 'resolv.conf'), hostname: path.join(etc, 'hostname') };
  writeFileSync(files.hosts, hosts);
  writeFileSync(files.resolvConf, readOr('/etc/resolv.conf', ''));
  writeFileSync(files.hostname, `${name}\n`);
  return files;
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** `runc run` in the foreground: it owns the terminal when there is one and forwards signals to the container. */
function runRuntime(req: InnerRequest): Promise<number> {
  // runc's own messages (warnings such as "unable to get oom kill count", and why it could not start the
  // container) go to a log file, not the container's stderr; a start failure is then reported as one hoist line.
  const args = ['--root', req.runtimeRoot, '--log', runtimeLog(req), '--log-format', 'json', 'run', '--bundle', req.containerDir, req.id];
  log(`${req.runtime} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    // stderr goes through us: runc prints its start failure there as well as to the log ("runc run failed: …"),
    // and hoist reports that as one line of its own. The container's stderr is a pipe then, as with docker
    // and podman without -t; with -t the container writes to the terminal and only runc uses this stderr.
    const child = spawn(req.runtime, args, { stdio: ['inherit', 'inherit', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => {
      if (/^runc (?:run|create) failed: /.test(chunk.toString('latin1', 0, 24))) return;
      if (!process.stderr.write(chunk)) {
        child.stderr!.pause();
        process.stderr.once('drain', () => child.stderr!.resume());
      }
    });
    const forward = (sig: NodeJS.Signals) => () => {
      child.kill(sig);
    };
    // SIGUSR2 is hoist's own "kill the container now" (hoist rm -f): a SIGKILL can't be forwarded through runc,
    // and PID 1 of a container ignores signals it has no handler for, so the runtime is asked to kill it.
    const killNow = (): void => {
      spawn(req.runtime, ['--root', req.runtimeRoot, 'kill', req.id, 'KILL'], { stdio: 'ignore' }).on('error', () => {});
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1'];
    const handlers: (readonly [NodeJS.Signals, () => void])[] = [...signals.map((s) => [s, forward(s)] as const), ['SIGUSR2', killNow] as const];
    for (const [s, h] of handlers) process.on(s, h);
    child.on('error', (e) => reject(new HoistError('NO_RUNTIME', `cannot start the OCI runtime ${req.runtime}: ${e.message}; install runc or pass --runtime`, { exitCode: EXIT_HOIST_FAILED })));
    child.on('close', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
    });
  });
}

/** One line for a container the runtime could not start, with a hint where the cause is a known one. */
function runtimeFailure(msg: string, req: InnerRequest): HoistError {
  const detail = msg.replace(/^runc (?:run|create) failed: /, '').replace(/^unable to start container process: /, '');
  let hint = 'check the flags (-w, -v, -u) and the image';
  if (/setup user|invalid argument/.test(detail) && req.process.user) {
    hint = `user ${req.process.user} may not be mapped in this user namespace (no subordinate ids?); run hoist info, or add a range to /etc/subuid and /etc/subgid`;
  } else if (/not a directory/.test(detail)) {
    hint = 'a path given to -w or -v is a file in the image';
  }
  return new HoistError('RUNTIME_FAILED', `the OCI runtime could not start the container: ${detail}; ${hint}`, { exitCode: EXIT_HOIST_FAILED });
}

function runtimeLog(req: InnerRequest): string {
  return path.join(req.containerDir, 'runtime.log');
}

/**
 * The error the OCI runtime logged when it could not start the container, if it did: runc writes one JSON line per
 * message, `{"level":"error","msg":"runc run failed: …"}`. Then the non-zero status is runc's, not the command's.
 */
function runtimeStartError(req: InnerRequest): string | undefined {
  let text: string;
  try {
    text = readFileSync(runtimeLog(req), 'utf8');
  } catch {
    return undefined;
  }
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const m = JSON.parse(line) as { level?: string; msg?: string };
      if (m.level === 'error' || m.level === 'fatal') last = m.msg;
    } catch { /* not JSON: a runtime that ignores --log-format */ }
  }
  return last;
}

function signalNumber(sig: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[sig] ?? 0;
}

/** Streams the change (the upper dir) as an OCI layer tar to fd 3. */
async function writeChange(upper: string, lowers: string[], created: CreatedPaths, mtimeClamp: string | undefined): Promise<void> {
  const { diffUpperDir } = await import('../layer/diff.ts');
  const exclude = (rel: string): boolean => created.mountpoints.some((c) => rel === c || rel.startsWith(`${c}/`));
  const topDown = [...lowers].reverse();
  const dropIfUnchanged = (rel: string, st: Stats): boolean => {
    // A directory the runtime made on the way to a mountpoint goes when nothing else was put in it.
    if (created.parents.has(rel)) return true;
    for (const l of topDown) {
      let lower: Stats;
      try {
        lower = lstatSync(path.join(l, rel));
      } catch {
        continue;
      }
      return lower.isDirectory() && lower.mode === st.mode && lower.uid === st.uid && lower.gid === st.gid;
    }
    return false;
  };
  await pipeline(diffUpperDir(upper, { exclude, dropIfUnchanged, ...(mtimeClamp ? { mtimeClamp: new Date(mtimeClamp) } : {}) }), createWriteStream('', { fd: 3 }));
}

function exec(cmd: string, args: string[], cwd?: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.on('error', (e) => resolve({ code: 127, stderr: e.message }));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}

async function unmountQuietly(target: string): Promise<void> {
  if (!existsSync(target)) return;
  await exec('umount', [target]);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (isHoistError(e)) {
      process.stderr.write(`hoist: ${e.message}\n`);
      if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
      process.exitCode = e.exitCode === 1 ? EXIT_HOIST_FAILED : e.exitCode;
    } else {
      process.stderr.write(`hoist: ${(e as Error)?.message ?? String(e)}\n`);
      if (debug) process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
      process.exitCode = EXIT_HOIST_FAILED;
    }
  },
);
