/**
 * What the outer hoist process hands to the namespace helper (src/runtime/inner.ts): everything the helper needs to
 * prepare the root filesystem and start the OCI runtime, as one JSON file in the container's directory.
 * Resolved outside (cheap, needs the store index): the image's layers and config. Resolved inside (needs the
 * container's view of files): snapshots, the user, the executable.
 */
import type { Mount } from './spec.ts';

export interface LayerRef {
  /** Uncompressed digest: names the snapshot. */
  diffID: string;
  /** The blob in the store. */
  digest: string;
  size: number;
}

export type NetworkMode = 'host' | 'none';

/** 'auto': overlay, else a plain copy. 'native': overlay or fail. 'copy': always copy (slow; no change layer). */
export type RootfsMode = 'auto' | 'native' | 'copy';

export interface InnerRequest {
  /**
   * 'run' a container; 'remove' a container's files; 'unpack' only the snapshots of `layers` (an image just stored;
   * see unpack-image.ts); 'snapshot' the uncompressed layer tar read on stdin into the snapshot named by its digest
   * (a build step's layer while it is being written: see step.ts snapshotWriter). For 'remove', 'unpack' and
   * 'snapshot' the process, network and runtime fields are not read.
   */
  op: 'run' | 'remove' | 'unpack' | 'snapshot';
  storeRoot: string;
  /** The container's own directory: config.json (the bundle), upper/, work/, rootfs/, etc/. */
  containerDir: string;
  id: string;
  /** Bottom layer first. */
  layers: LayerRef[];
  process: {
    args: string[];
    env: string[];
    cwd: string;
    /** USER[:GROUP] as docker takes it; resolved against the image's /etc/passwd inside. */
    user?: string;
    terminal: boolean;
    hostname: string;
  };
  network: NetworkMode;
  mounts: Mount[];
  /** The OCI runtime executable (runc or crun) and its state directory. */
  runtime: string;
  runtimeRoot: string;
  /** In a user namespace (the spec then leaves out what an unprivileged runtime can't do). */
  rootless: boolean;
  /** Real root on the host: opaque directories also get the trusted.overlay.opaque xattr. */
  hostRoot: boolean;
  rootfs: RootfsMode;
  /** Write the change (upper dir) as an uncompressed OCI layer tar to fd 3 after the process exits. */
  diff: boolean;
  /** Newer mtimes in the change layer become this (ISO time; reproducible builds). */
  mtimeClamp?: string;
  /** Remove the container directory when done (--rm). */
  removeAfter: boolean;
  /**
   * With `diff` and `removeAfter`: after a run that exited 0, keep `upper/` (without the mountpoints the runtime
   * created) and remove the rest, so the caller can adopt the upper dir as the new layer's snapshot instead of
   * deleting it and unpacking the same files again later (src/runtime/step.ts).
   */
  keepUpper?: boolean;
  debug: boolean;
}

/** The exit codes of the helper itself, as docker and podman use them. */
export const EXIT_HOIST_FAILED = 125;
export const EXIT_CANNOT_EXECUTE = 126;
export const EXIT_NOT_FOUND = 127;
