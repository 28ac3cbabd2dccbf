/**
 * One build step (a Dockerfile RUN): a process on a given stack of layers, with env, cwd, user, extra mounts and a
 * network mode, in the same rootless runtime as `hoist run`. Gives the exit code and the change as an uncompressed
 * OCI layer tar: new and changed files, deletions as `.wh.NAME`, opaque directories as `.wh..wh..opq`, and nothing
 * of the mountpoints the runtime had to create (so `RUN true` gives an empty layer).
 *
 * Secrets and cache directories are bind mounts (`mounts`): they are never in the upper directory, so they never
 * reach the layer.
 */
import { mkdirSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { newContainerId } from './containers.ts';
import { detectHost, usernsMode } from './host.ts';
import { launch, removeInNamespace } from './launch.ts';
import { pickRuntime } from './oci-runtime.ts';
import type { LayerRef, NetworkMode } from './request.ts';
import type { Mount } from './spec.ts';
import { SNAPSHOT_TMP_PREFIX, Snapshots } from '../store/snapshots.ts';

export interface StepOptions {
  storeRoot: string;
  /** Bottom layer first; the blobs must be in the store. */
  layers: LayerRef[];
  args: string[];
  env: string[];
  cwd: string;
  /** USER[:GROUP], resolved in the layers' /etc/passwd and /etc/group. */
  user?: string;
  mounts?: Mount[];
  network?: NetworkMode;
  hostname?: string;
  runtime?: string;
  debug?: boolean;
  /** Newer mtimes in the layer become this (reproducible builds). */
  mtimeClamp?: Date;
  /**
   * Keep the upper dir after a successful run so that adopt() can make it the new layer's snapshot (ignored with
   * mtimeClamp: the snapshot's files would keep their unclamped mtimes). The caller must then call adopt().
   */
  keepUpper?: boolean;
  warn?: (msg: string) => void;
}

export interface StepRun {
  /** The change, as an uncompressed OCI layer tar. Consume it fully before awaiting `exit`. */
  layer: Readable;
  /** The process's output (build progress shows it on stderr; stdout carries data only). Consume both. */
  stdout: Readable;
  stderr: Readable;
  /** The process's exit status (125/126/127 as with hoist run when it could not start). */
  exit: Promise<number>;
  /**
   * After `exit` (with keepUpper; a no-op otherwise): moves the upper dir into the store's snapshot cache as the
   * snapshot of the layer whose diffID is `diffID` (the digest of the whole `layer` tar), or removes it when
   * `diffID` is undefined (no layer, or the step failed) or that snapshot exists already. Removes the step's
   * directory either way. Saves deleting thousands of files now and unpacking them again for the next RUN.
   */
  adopt(diffID: string | undefined): Promise<void>;
}

export function runStep(o: StepOptions): StepRun {
  const host = detectHost();
  const mode = usernsMode(host, undefined, o.warn ?? ((m) => process.stderr.write(`hoist: ${m}\n`)));
  const id = newContainerId();
  const dir = path.join(o.storeRoot, 'containers', `build-${id.slice(0, 16)}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keepUpper = (o.keepUpper ?? false) && o.mtimeClamp === undefined;
  const launched = launch({
    op: 'run',
    storeRoot: o.storeRoot,
    containerDir: dir,
    id,
    layers: o.layers,
    process: {
      args: o.args, env: o.env, cwd: o.cwd, ...(o.user ? { user: o.user } : {}), terminal: false,
      hostname: o.hostname ?? id.slice(0, 12),
    },
    network: o.network ?? 'host',
    mounts: o.mounts ?? [],
    runtime: pickRuntime(o.runtime),
    rootfs: 'native',
    diff: true,
    removeAfter: true,
    ...(keepUpper ? { keepUpper } : {}),
    debug: o.debug ?? false,
    ...(o.mtimeClamp ? { mtimeClamp: o.mtimeClamp.toISOString() } : {}),
  }, { host, mode, stdin: false, output: 'pipe' });
  const exit = keepUpper ? launched.exit : launched.exit.finally(() => rm(dir, { recursive: true, force: true }).catch(() => {}));
  const adopt = async (diffID: string | undefined): Promise<void> => {
    if (!keepUpper) return;
    await exit.catch(() => {});
    const upper = path.join(dir, 'upper');
    try {
      if (diffID !== undefined && await adoptSnapshot(o.storeRoot, upper, diffID)) return;
      // The upper dir may hold files of subordinate ids that only the namespace can delete.
      await rm(upper, { recursive: true, force: true }).catch(() => removeInNamespace(o.storeRoot, dir, { host, mode, debug: o.debug ?? false }));
    } finally {
      await rmdir(dir).catch(() => rm(dir, { recursive: true, force: true })).catch(() => {});
    }
  };
  return { layer: launched.diff!, stdout: launched.stdout!, stderr: launched.stderr!, exit, adopt };
}

/**
 * Renames `upper` into place as the snapshot of `diffID` (Snapshots' layout: `<root>/<hex>/fs`, complete once
 * `<hex>` exists), through a `.tmp-` name so that a reader never sees half of it. False (nothing moved) when the
 * snapshot exists already or the rename fails.
 */
async function adoptSnapshot(storeRoot: string, upper: string, diffID: string): Promise<boolean> {
  const snaps = new Snapshots(storeRoot);
  if (snaps.has(diffID)) return false;
  const final = path.dirname(snaps.dir(diffID));
  await mkdir(snaps.root, { recursive: true, mode: 0o700 });
  const tmp = await mkdtemp(path.join(snaps.root, `${SNAPSHOT_TMP_PREFIX}adopt-${process.pid}-`));
  try {
    await rename(upper, path.join(tmp, path.basename(snaps.dir(diffID))));
  } catch {
    await rmdir(tmp).catch(() => {});
    return false;
  }
  try {
    await rename(tmp, final);
    return true;
  } catch {
    // Another build put the same snapshot in place first: give the upper dir back to be removed.
    await rename(path.join(tmp, path.basename(snaps.dir(diffID))), upper).catch(() => {});
    await rmdir(tmp).catch(() => {});
    return false;
  }
}

export interface SnapshotWriter {
  /** Write the uncompressed layer tar here, then end it; destroy it to give up (nothing is kept then). */
  input: Writable;
  /** The snapshot's diffID once it is in place (rejects when the helper failed; then nothing was kept). */
  done: Promise<string>;
}

/**
 * Unpacks a layer tar into the store's snapshot cache while it is being written (a COPY layer a later RUN of the
 * stage will need), in the namespace helper as a RUN's own unpacking would: the RUN then finds it ready, and the
 * creation of its files overlaps the making of the layer instead of following it.
 */
export function snapshotWriter(o: { storeRoot: string; debug?: boolean; runtime?: string; warn?: (msg: string) => void }): SnapshotWriter {
  const host = detectHost();
  const mode = usernsMode(host, undefined, o.warn ?? (() => {}));
  const id = newContainerId();
  const dir = path.join(o.storeRoot, 'containers', `snap-${id.slice(0, 16)}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const launched = launch({
    op: 'snapshot', storeRoot: o.storeRoot, containerDir: dir, id, layers: [],
    process: { args: [], env: [], cwd: '/', terminal: false, hostname: '' }, network: 'none', mounts: [],
    runtime: '', rootfs: 'auto', diff: false, removeAfter: false, debug: o.debug ?? false,
  }, { host, mode, stdin: 'pipe', output: 'pipe' });
  let out = '';
  let err = '';
  launched.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  launched.stderr!.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-4096); });
  launched.input!.on('error', () => {}); // the helper gone early: its exit status says why
  const done = launched.exit.then((code) => {
    const diffID = out.trim().split('\n').pop() ?? '';
    if (code !== 0 || !diffID.startsWith('sha256:')) throw new Error(`snapshot helper exited with ${code}: ${err.trim().split('\n').pop() ?? ''}`);
    return diffID;
  }).finally(() => rm(dir, { recursive: true, force: true }).catch(() => {}));
  done.catch(() => {});
  return { input: launched.input!, done };
}
