/**
 * `hoist prune`'s part for unpacked layers: snapshots no stored image and no kept build-cache entry uses are moved
 * into one trash directory under snapshots/ (a rename each: the directory is the calling user's), which the caller
 * then removes from inside the user namespace (the files belong to subordinate ids). Abandoned unpacks (`.tmp-*`
 * older than an hour) and the trash of a prune that died half-way go with them.
 *
 * Snapshots are read in place by running containers (overlay lower dirs) and by builds, which take no part in the
 * blobs' lease protocol for them: so nothing is moved while a container runs (its record names a live hoist process)
 * or a writer holds a live lease (a copy unpacking, a build). A run or copy that starts after that check and finds a
 * snapshot gone unpacks it again from its blob.
 */
import { mkdir, readdir, rename, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { isErrno } from '../errors.ts';
import { parseConfig } from '../oci/config.ts';
import { parseManifest, manifestReferences } from '../oci/manifest.ts';
import { isManifest } from '../oci/mediatype.ts';
import type { Descriptor } from '../oci/types.ts';
import { readLeases } from './lease.ts';
import type { OciLayout } from './layout.ts';
import { pidAlive } from './lock.ts';
import { SNAPSHOT_TMP_PREFIX, SNAPSHOTS_DIR } from './snapshots.ts';

const TRASH_PREFIX = '.trash-';
const STALE_TMP_MS = 60 * 60 * 1000;

export interface SnapshotPrune {
  /** Why nothing was looked at (a container running, a live lease). */
  skipped?: string;
  /** Snapshots moved to the trash (not counting abandoned temp dirs). */
  moved: number;
  /** The directory to remove (from inside the user namespace), when anything was moved. */
  trash?: string;
}

export interface SnapshotPruneOptions {
  /** Layers (diffIDs) to keep besides those of the stored images: the build cache's. */
  keep: Set<string>;
  /** Whether a container is running now (hoist processes alive in container records). */
  containerRunning: () => boolean;
}

export async function pruneSnapshots(storeRoot: string, layout: OciLayout, opts: SnapshotPruneOptions): Promise<SnapshotPrune> {
  const root = path.join(path.resolve(storeRoot), SNAPSHOTS_DIR);
  let names: string[];
  try {
    names = await readdir(root);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return { moved: 0 };
    throw e;
  }
  if (opts.containerRunning()) return { skipped: 'a container is running', moved: 0 };
  if ((await readLeases(layout)).some((l) => l.live)) return { skipped: 'another hoist process is writing to the store', moved: 0 };

  const keep = new Set([...opts.keep, ...(await storedDiffIDs(layout))].map((d) => d.slice(d.indexOf(':') + 1)));
  const now = Date.now();
  const doomed: string[] = [];
  let moved = 0;
  for (const n of names) {
    if (/^[0-9a-f]{64}$/.test(n)) {
      if (keep.has(n)) continue;
      doomed.push(n);
      moved++;
    } else if (n.startsWith(SNAPSHOT_TMP_PREFIX)) {
      const st = await stat(path.join(root, n)).catch(() => undefined);
      if (st !== undefined && now - st.mtimeMs > STALE_TMP_MS) doomed.push(n);
    } else if (n.startsWith(TRASH_PREFIX)) {
      // `.trash-<pid>-…`: left by a prune that died before removing it.
      const pid = Number(n.slice(TRASH_PREFIX.length).split('-')[0]);
      if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) doomed.push(n);
    }
  }
  if (doomed.length === 0) return { moved: 0 };
  const trash = path.join(root, `${TRASH_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(trash, { mode: 0o700 });
  for (const n of doomed) {
    try {
      await rename(path.join(root, n), path.join(trash, n));
    } catch (e) {
      if (!isErrno(e, 'ENOENT')) throw e;
    }
  }
  return { moved, trash };
}

/** The diffIDs of every image the layout's index.json reaches (through indexes); configs that can't be read are skipped. */
export async function storedDiffIDs(layout: OciLayout): Promise<Set<string>> {
  const out = new Set<string>();
  const seen = new Set<string>();
  const queue: Descriptor[] = [...(await layout.readIndex()).manifests];
  for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
    if (seen.has(d.digest) || !isManifest(d.mediaType)) continue;
    seen.add(d.digest);
    try {
      const parsed = parseManifest(await layout.readBlob(d.digest, d.size, `prune: manifest ${d.digest}`), `manifest ${d.digest}`, d.mediaType);
      if (parsed.kind === 'index') {
        queue.push(...manifestReferences(parsed));
        continue;
      }
      const c = parsed.manifest.config;
      const config = parseConfig(await layout.readBlob(c.digest, c.size, `prune: config ${c.digest}`), `config ${c.digest}`);
      for (const id of config.rootfs?.diff_ids ?? []) out.add(id);
    } catch {
      // A manifest or config that is gone or unreadable has no layers to keep (prune of blobs already judged it).
    }
  }
  return out;
}
