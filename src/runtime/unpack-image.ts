/**
 * Unpacking when an image is stored, as podman does in `pull`: after a copy into the local store, the layers of the
 * image that `hoist run` would run (for an index: the platform's manifest) are unpacked into the snapshot cache, so
 * the first run starts like a repeated one. The unpacking is the runtime's own (inner.ts, op 'unpack'), in the same
 * user namespace a run would use, because snapshots must hold the container's owners and overlay whiteouts.
 *
 * Best effort: the image is stored whatever happens here. When the namespace can't be made (no unshare, user
 * namespaces disabled) or a layer fails to unpack, the caller gets one warning line and the first run unpacks (and
 * reports the error, if it is still there). Layers already unpacked are not touched: no helper starts when none is
 * missing. HOIST_NO_UNPACK=1 turns it off (as `hoist copy --no-unpack` does).
 */
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { hostPlatform } from '../oci/platform.ts';
import type { Descriptor, Platform } from '../oci/types.ts';
import { Snapshots } from '../store/snapshots.ts';
import type { Store } from '../store/store.ts';
import { newContainerId } from './containers.ts';
import { detectHost, usernsMode, type HostInfo, type UsernsMode } from './host.ts';
import type { LayerRef } from './request.ts';

export interface UnpackStoredOptions {
  /** The platform picked from an index, as `hoist run --platform`; default this machine's. */
  platform?: Platform;
  /** The namespace to unpack in, when the caller already decided it (hoist run); default as `hoist run` decides. */
  host?: HostInfo;
  mode?: UsernsMode;
  /** Show the helper's own lines (debug timings) on stderr. */
  debug?: boolean;
  /** One progress line before unpacking ("Unpacking N layer(s)…"); omitted: silent. */
  onProgress?: (line: string) => void;
  /** One line saying why nothing was unpacked and that the first run will do it; omitted: silent. */
  onWarning?: (line: string) => void;
}

export type UnpackOutcome =
  /** The missing layers were unpacked (`layers` of them; 0: all were there already). */
  | { status: 'unpacked'; layers: number }
  /** HOIST_NO_UNPACK, or nothing a run could use (no manifest for the platform, not an image). */
  | { status: 'skipped'; reason: string }
  /** The namespace or the unpacking failed; the warning was given. */
  | { status: 'failed'; reason: string };

/** HOIST_NO_UNPACK=1 (or any value but 0/false/empty): unpacking is left to the first run. */
export function unpackDisabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env['HOIST_NO_UNPACK'];
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** Unpacks the stored image `top` (named `where` in messages); never throws for what a later run would report. */
export async function unpackStoredImage(store: Store, top: Descriptor, where: string, o: UnpackStoredOptions = {}): Promise<UnpackOutcome> {
  if (unpackDisabled()) return { status: 'skipped', reason: 'HOIST_NO_UNPACK is set' };
  let missing: LayerRef[];
  try {
    const { loadRunImage } = await import('./image.ts');
    const img = await loadRunImage(store, top, where, o.platform ?? hostPlatform());
    const snaps = new Snapshots(store.root);
    // Once per diffID: an image may hold the same layer twice.
    const byDiffID = new Map<string, LayerRef>();
    for (const l of img.layers) {
      if (!byDiffID.has(l.diffID) && !snaps.has(l.diffID)) byDiffID.set(l.diffID, { diffID: l.diffID, digest: l.digest, size: l.size });
    }
    missing = [...byDiffID.values()];
  } catch (e) {
    // Not runnable as stored (an artifact, no manifest for this platform, a damaged config): `hoist run` says why.
    return { status: 'skipped', reason: (e as Error).message };
  }
  if (missing.length === 0) return { status: 'unpacked', layers: 0 };

  const fail = (reason: string): UnpackOutcome => {
    o.onWarning?.(`warning: could not unpack the layers of ${where} now (${reason}); the first hoist run will unpack them`);
    return { status: 'failed', reason };
  };
  let host: HostInfo;
  let mode: UsernsMode;
  try {
    host = o.host ?? detectHost();
    // The single-id warning is `hoist run`'s to give, on every run; here it would only repeat it.
    mode = o.mode ?? usernsMode(host, undefined, () => {});
  } catch (e) {
    return fail((e as Error).message);
  }
  o.onProgress?.(`Unpacking ${missing.length} layer(s)…`);
  // The request file's directory: under containers/ like a build step's, without a record (ps and rm don't list it).
  const dir = path.join(store.root, 'containers', `unpack-${newContainerId().slice(0, 16)}`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const code = await runHelper(store.root, dir, missing, host, mode, o.debug ?? false);
    return code.status === 0 ? { status: 'unpacked', layers: missing.length } : fail(code.reason);
  } catch (e) {
    return fail((e as Error).message);
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * Runs the namespace helper's 'unpack' op and waits for it. Its stderr is kept (the last line is the reason of a
 * failure: the helper's `hoist: …` line, or unshare's own); with `debug` it is shown as it comes. An interrupt
 * (SIGINT/SIGTERM/SIGHUP) reaches the helper through launch(); once it is gone this process dies of the same signal,
 * as it would have without the handlers launch() installs.
 */
async function runHelper(storeRoot: string, dir: string, layers: LayerRef[], host: HostInfo, mode: UsernsMode, debug: boolean): Promise<{ status: number; reason: string }> {
  const { launch } = await import('./launch.ts');
  let interrupted: NodeJS.Signals | undefined;
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (s: NodeJS.Signals): void => {
    interrupted ??= s;
  };
  for (const s of signals) process.on(s, onSignal);
  try {
    const launched = launch({
      op: 'unpack', storeRoot, containerDir: dir, id: path.basename(dir), layers,
      process: { args: [], env: [], cwd: '/', terminal: false, hostname: '' }, network: 'none', mounts: [],
      runtime: '', rootfs: 'auto', diff: false, removeAfter: false, debug,
    }, { host, mode, stdin: false, output: 'pipe' });
    launched.stdout!.resume();
    let tail = '';
    launched.stderr!.on('data', (b: Buffer) => {
      if (debug) process.stderr.write(b);
      tail = (tail + b.toString()).slice(-4096);
    });
    const [status] = await Promise.all([launched.exit, new Promise((r) => launched.stderr!.once('close', r))]);
    const last = tail.split('\n').map((l) => l.trim()).filter((l) => l !== '').pop() ?? `the namespace helper exited with ${status}`;
    return { status, reason: last.replace(/^hoist: /, '') };
  } finally {
    for (const s of signals) process.off(s, onSignal);
    if (interrupted !== undefined) {
      await rm(dir, { recursive: true, force: true }).catch(() => {});
      process.kill(process.pid, interrupted);
    }
  }
}
