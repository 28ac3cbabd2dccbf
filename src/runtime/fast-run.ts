/**
 * `hoist run`'s fast path, for an image whose layers are all unpacked already: no namespace helper (a second Node
 * start). The outer process checks the user and the command over the layer snapshots as overlay will merge them
 * (root-files.ts layeredRoot), writes the bundle, and has a shell inside the namespaces mount the overlay and
 * exec runc, which runs as PID 1 of a PID namespace of its own so that nothing outlives it. The namespace is the
 * one the caller started early (waiting-namespace.ts); when the fast path does not apply, the caller cancels it. After the exit, the
 * container's files go from outside: they belong to the calling user unless the container wrote as another uid,
 * and then the helper removes them.
 *
 * When the fast path can't be taken (a snapshot missing, a root file unreadable from outside, HOIST_ROOTFS=copy,
 * no overlay), the caller runs the helper (launch.ts), which does all of it inside the namespace.
 */
import { chmodSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { isErrno, isHoistError } from '../errors.ts';
import { Snapshots } from '../store/snapshots.ts';
import { writeBundle } from './bundle.ts';
import { childOf, innerRequest, removeInNamespace, type LaunchOptions, type LaunchRequest } from './launch.ts';
import { overlayOptions } from './overlay-options.ts';
import { layeredRoot, type XattrReader } from './root-files.ts';
import { passRuntimeStderr, runtimeFailure, runtimeRunArgs, runtimeStartError } from './runtime-log.ts';
import { shellQuote, type WaitingNamespace } from './waiting-namespace.ts';

/** Where the shell leaves mount's error when the overlay could not be mounted (the caller then runs the helper). */
const MOUNT_ERROR = 'mount.err';

/**
 * `cd BASE; mount the overlay (volatile first for --rm: see inner.ts mountRootfs) || exit 125; exec runc …`, every
 * word quoted.
 */
function script(base: string, options: string, rootfs: string, mountError: string, volatile: boolean, runtime: string[]): string {
  const q = shellQuote;
  const mount = (opts: string, err: string): string => `mount -t overlay overlay -o ${q(opts)} ${q(rootfs)} 2>${err}`;
  return [
    `cd ${q(base)} || exit 125`,
    `${volatile ? `${mount(`${options},volatile`, '/dev/null')} || ` : ''}${mount(options, q(mountError))} || exit 125`,
    `exec ${runtime.map(q).join(' ')}`,
  ].join('\n');
}

export interface FastRun {
  /** The exit status; undefined when the overlay could not be mounted and nothing ran (run the helper then). */
  exit: Promise<number | undefined>;
}

/**
 * Starts the container without the helper, or gives undefined when the fast path does not apply (nothing was
 * started or written then). Throws, as the helper would, for a command that is not there (127) or can't run (126).
 */
export async function fastRun(
  request: LaunchRequest, opts: LaunchOptions, debug: (msg: string) => void, ns: WaitingNamespace,
): Promise<FastRun | undefined> {
  if (request.op !== 'run' || request.diff || request.rootfs === 'copy' || request.layers.length === 0 || opts.stdin === 'pipe') return undefined;
  const req = innerRequest(request, opts);
  const snaps = new Snapshots(req.storeRoot);
  if (!req.layers.every((l) => snaps.has(l.diffID))) return undefined;
  const lowers = req.layers.map((l) => snaps.dir(l.diffID));

  const dir = req.containerDir;
  const rootfs = path.join(dir, 'rootfs');
  const upper = path.join(dir, 'upper');
  const work = path.join(dir, 'work');
  try {
    // The opaque-directory xattrs only matter where a layer lies under another one.
    const getXattr: XattrReader = lowers.length > 1 ? (await import('@napi-rs/xattr')).getAttributeSync : () => null;
    const opaqueXattrs = req.hostRoot ? ['trusted.overlay.opaque', 'user.overlay.opaque'] : ['user.overlay.opaque'];
    writeBundle(req, layeredRoot(lowers, opaqueXattrs, getXattr), rootfs);
  } catch (e) {
    if (isHoistError(e)) {
      // No such command or user: nothing ran, and only files of ours are there.
      if (req.removeAfter) rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    // Unreadable from outside (a directory of another container uid, mode 0700…): the helper looks from inside.
    debug(`fast path not taken: ${(e as Error).message}`);
    return undefined;
  }
  for (const d of [rootfs, upper, work]) mkdirSync(d, { recursive: true });

  const { base, options } = overlayOptions(lowers, upper, work, req.rootless);
  const sh = script(base, options, rootfs, path.join(dir, MOUNT_ERROR), req.removeAfter, [req.runtime, ...runtimeRunArgs(req)]);
  debug(`snapshots ready; no helper needed: ${sh.replace(/\n/g, '; ')}`);
  // Signals go to runc, which passes them on to the container. hoist's "kill it now" (SIGUSR2, from hoist rm -f)
  // is a SIGKILL to the container's first process, runc's child (the calling user owns its namespaces, so may):
  // runc then exits 137 as with `runc kill`. (A SIGKILL to runc itself, PID 1 here, would end everything too, but
  // unshare 2.38 then fails re-raising SIGKILL and exits 1.)
  const deliver = (sig: NodeJS.Signals, runc: number): void => {
    if (sig !== 'SIGUSR2') return void process.kill(runc, sig);
    process.kill(childOf(runc) ?? runc, 'SIGKILL');
  };
  const { child, exit } = ns.run(sh, opts.onStart, deliver);
  passRuntimeStderr(child.stderr!);
  return {
    exit: exit.then(async (code) => {
      if (code === 125 && nonEmpty(path.join(dir, MOUNT_ERROR))) {
        // Nothing ran; the container's directory stays for the helper.
        debug('fast path: the overlay mount failed; the helper takes over');
        return undefined;
      }
      try {
        if (code !== 0) {
          const failed = runtimeStartError(dir);
          if (failed !== undefined) throw runtimeFailure(failed, req.process.user);
        }
        return code;
      } finally {
        if (req.removeAfter) await removeContainerFiles(request, opts, debug);
      }
    }),
  };
}

function nonEmpty(file: string): boolean {
  try {
    return statSync(file).size > 0;
  } catch {
    return false;
  }
}

/**
 * --rm: the container's directory goes from outside when everything in it is the calling user's (the usual case:
 * the container ran as its root); otherwise the helper removes it from inside the namespace.
 */
async function removeContainerFiles(request: LaunchRequest, opts: LaunchOptions, debug: (msg: string) => void): Promise<void> {
  // overlay leaves directories of mode 000 in its work dir (work/work, work/work/incompat/volatile…); they are the
  // calling user's (overlay was mounted as the namespace's root), so they can be opened up and removed.
  openUp(path.join(request.containerDir, 'work'));
  try {
    rmSync(request.containerDir, { recursive: true, force: true });
    return;
  } catch (e) {
    if (!isErrno(e, 'EACCES') && !isErrno(e, 'EPERM') && !isErrno(e, 'ENOTEMPTY')) throw e;
    debug(`removing the container's files from inside the namespace (${(e as Error).message})`);
  }
  await removeInNamespace(request.storeRoot, request.containerDir, { host: opts.host, mode: opts.mode, debug: request.debug });
}

/** chmod 0700 on `dir` and every directory under it, each before it is read. */
function openUp(dir: string): void {
  try {
    chmodSync(dir, 0o700);
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) openUp(path.join(dir, e.name));
  } catch { /* not there, or not ours: rmSync then fails and the helper removes it */ }
}
