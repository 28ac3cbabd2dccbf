/**
 * The namespace helper: runs INSIDE the user and mount namespaces that `unshare` made (see host.ts), as the
 * container's root. Everything that touches image files happens here, so owners and modes read and write as the
 * container sees them: unpacking layer snapshots, mounting the overlay, resolving the user and the executable,
 * running the OCI runtime, reading the change back, removing the container's files; and, right after an image is
 * stored, unpacking its snapshots alone (op 'unpack', see unpack-image.ts).
 *
 * Usage: node inner.ts REQUEST.json (an InnerRequest). Exit status: the container process's, or 125 when this helper
 * failed (one `hoist: …` line on stderr), 126/127 when the command can't be executed / isn't there (docker's codes).
 * The change layer, when asked for, goes to fd 3 as an uncompressed tar.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync, type Stats } from 'node:fs';
import { rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
import { HoistError, isHoistError } from '../errors.ts';
import { EXIT_HOIST_FAILED, type InnerRequest, type LayerRef } from './request.ts';
import { resolveInRoot } from './rootfs-path.ts';
import { overlayOptions } from './overlay-options.ts';
import { passRuntimeStderr, runtimeFailure, runtimeRunArgs, runtimeStartError } from './runtime-log.ts';

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
  if (req.op === 'unpack') {
    await ensureSnapshots(req);
    log('snapshots ready');
    return 0;
  }
  if (req.op === 'snapshot') {
    const diffID = await snapshotFromStdin(req);
    log(`snapshot ${diffID} ready`);
    process.stdout.write(`${diffID}\n`);
    return 0;
  }
  return runContainer(req);
}

/** Unpacks the uncompressed layer tar on stdin into a new snapshot named by its digest (Snapshots.unpack). Gives the diffID. */
async function snapshotFromStdin(req: InnerRequest): Promise<string> {
  const { Snapshots } = await import('../store/snapshots.ts');
  return new Snapshots(req.storeRoot).unpack(process.stdin, {
    whiteouts: 'keep-as-overlay',
    opaqueXattrs: req.hostRoot ? ['trusted.overlay.opaque', 'user.overlay.opaque'] : ['user.overlay.opaque'],
    where: 'build layer',
  });
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
  /** The upper dir stays for the caller to adopt (InnerRequest.keepUpper). */
  let keepUpper = false;
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

    const { writeBundle } = await import('./bundle.ts');
    const { mountDestinations } = await import('./spec.ts');
    const { dirRoot } = await import('./root-files.ts');
    const spec = writeBundle(req, dirRoot(rootfs), rootfs);
    // Mountpoints the runtime will create in the upper dir: left out of the change unless they were already there.
    const created = req.diff ? createdByRuntime(rootfs, mountDestinations(spec)) : { mountpoints: [], parents: new Set<string>() };

    const status = await runRuntime(req);
    log(`runtime exited ${status}`);
    if (status !== 0) {
      const failed = runtimeStartError(req.containerDir);
      if (failed !== undefined) throw runtimeFailure(failed, req.process.user);
    }

    if (mounted) {
      await unmountQuietly(rootfs);
      mounted = false;
    }
    if (req.diff) {
      const dropped = await writeChange(path.join(dir, 'upper'), lowers, created, req.mtimeClamp);
      log('change written');
      if (req.keepUpper && status === 0) {
        stripCreated(path.join(dir, 'upper'), created, dropped);
        keepUpper = true;
      }
    }
    return status;
  } finally {
    if (mounted) await unmountQuietly(rootfs);
    if (req.removeAfter) {
      if (keepUpper) await removeAllBut(dir, 'upper');
      else await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }
}

/**
 * Takes out of the upper dir what the runtime created only to mount on and the directories the change left out as
 * unchanged (copied up on the way to a mountpoint), so that the upper dir holds what the layer tar holds, to become
 * its snapshot. Only empty files and directories are removed. (Mtimes stay as the process left them, to the
 * nanosecond, where the tar has whole seconds: as BuildKit's and buildah's snapshots of a RUN.)
 */
function stripCreated(upper: string, created: CreatedPaths, dropped: Set<string>): void {
  const gone = (rel: string): void => {
    const p = path.join(upper, rel);
    try {
      const st = lstatSync(p);
      if (st.isDirectory()) rmdirSync(p);
      else if (st.isFile() && st.size === 0) unlinkSync(p);
    } catch {
      // Not there, or not empty: it stays (harmless in a lower layer: the runtime mounts over it).
    }
  };
  const deepestFirst = (xs: Iterable<string>): string[] => [...xs].sort((a, b) => b.split('/').length - a.split('/').length);
  for (const m of deepestFirst(created.mountpoints)) gone(m);
  for (const p of deepestFirst(new Set([...created.parents, ...dropped]))) gone(p);
}

/** Removes every entry of `dir` except `keep`. */
async function removeAllBut(dir: string, keep: string): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  await Promise.all(names.filter((n) => n !== keep).map((n) => rm(path.join(dir, n), { recursive: true, force: true }).catch(() => {})));
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
    const { base, options } = overlayOptions(lowers, upper, work, req.rootless);
    const opts = [options];
    // A --rm container's upper dir is thrown away, so, as podman does for --rm, the overlay is `volatile`: its
    // unmount then skips syncing the upper filesystem, which otherwise writes back every dirty page on that disk
    // (right after a copy unpacked an image, hundreds of MiB). A build step's upper dir is read once and then thrown
    // away or adopted as a snapshot, and snapshots are never synced file by file either (a RUN writing 3000 files
    // waited ~150 ms in that unmount). Only a kept `hoist run` container's overlay syncs. Kernels before 5.10
    // refuse the option: retried without.
    let r = { code: 1, stderr: '' };
    if (req.removeAfter) r = await exec('mount', ['-t', 'overlay', 'overlay', '-o', [...opts, 'volatile'].join(','), rootfs], base);
    if (r.code !== 0) r = await exec('mount', ['-t', 'overlay', 'overlay', '-o', opts.join(','), rootfs], base);
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

/** `runc run` in the foreground: it owns the terminal when there is one and forwards signals to the container. */
function runRuntime(req: InnerRequest): Promise<number> {
  const args = runtimeRunArgs(req);
  log(`${req.runtime} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    // stderr goes through us: runc prints its start failure there as well as to the log ("runc run failed: …"),
    // and hoist reports that as one line of its own. The container's stderr is a pipe then, as with docker
    // and podman without -t; with -t the container writes to the terminal and only runc uses this stderr.
    const child = spawn(req.runtime, args, { stdio: ['inherit', 'inherit', 'pipe'] });
    passRuntimeStderr(child.stderr!);
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

function signalNumber(sig: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[sig] ?? 0;
}

/** Streams the change (the upper dir) as an OCI layer tar to fd 3. Gives the directories left out as unchanged. */
async function writeChange(upper: string, lowers: string[], created: CreatedPaths, mtimeClamp: string | undefined): Promise<Set<string>> {
  const dropped = new Set<string>();
  const { diffUpperDir } = await import('../layer/diff.ts');
  const exclude = (rel: string): boolean => created.mountpoints.some((c) => rel === c || rel.startsWith(`${c}/`));
  const topDown = [...lowers].reverse();
  const unchanged = (rel: string, st: Stats): boolean => {
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
  const dropIfUnchanged = (rel: string, st: Stats): boolean => {
    const drop = unchanged(rel, st);
    if (drop) dropped.add(rel);
    return drop;
  };
  await pipeline(
    diffUpperDir(upper, { exclude, dropIfUnchanged, ...(mtimeClamp ? { mtimeClamp: new Date(mtimeClamp) } : {}) }),
    batched(),
    createWriteStream('', { fd: 3 }),
  );
  return dropped;
}

/**
 * Passes bytes on in pieces of at least 128 KiB (the rest at the end): the tar writer emits a 512-byte header and
 * the small body of each file separately, and a pipe write (and the reader's wake-up) per piece costs more than
 * the bytes — a layer of thousands of small files went out as tens of thousands of writes.
 */
function batched(): Transform {
  const LIMIT = 128 * 1024;
  let parts: Buffer[] = [];
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      bytes += chunk.length;
      if (bytes >= LIMIT) {
        const out = Buffer.concat(parts, bytes);
        parts = [];
        bytes = 0;
        cb(null, out);
      } else {
        cb();
      }
    },
    flush(cb) {
      cb(null, bytes > 0 ? Buffer.concat(parts, bytes) : undefined);
    },
  });
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
