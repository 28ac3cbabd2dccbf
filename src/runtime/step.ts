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
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { newContainerId } from './containers.ts';
import { detectHost, usernsMode } from './host.ts';
import { launch } from './launch.ts';
import { pickRuntime } from './oci-runtime.ts';
import type { LayerRef, NetworkMode } from './request.ts';
import type { Mount } from './spec.ts';

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
}

export function runStep(o: StepOptions): StepRun {
  const host = detectHost();
  const mode = usernsMode(host, undefined, o.warn ?? ((m) => process.stderr.write(`hoist: ${m}\n`)));
  const id = newContainerId();
  const dir = path.join(o.storeRoot, 'containers', `build-${id.slice(0, 16)}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
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
    debug: o.debug ?? false,
    ...(o.mtimeClamp ? { mtimeClamp: o.mtimeClamp.toISOString() } : {}),
  }, { host, mode, stdin: false, output: 'pipe' });
  const exit = launched.exit.finally(() => rm(dir, { recursive: true, force: true }).catch(() => {}));
  return { layer: launched.diff!, stdout: launched.stdout!, stderr: launched.stderr!, exit };
}
