/**
 * Garbage collection of a layout that other processes may be writing to at the same moment.
 *
 * The race to beat: a writer sees "blob exists, skip it", prune deletes that blob, the writer tags a manifest whose
 * blob is gone. The design:
 *
 *  Writers (see lease.ts)
 *   W1. create a lease file `.leases/<pid>-<rand>` before anything else; its mtime L is the lease start;
 *   W2. every existence check they rely on and every put goes through the lease: an existing blob gets
 *       mtime := max(now, L + 1ms) (utimes), a new blob is written after W1 so its mtime >= L;
 *   W3. name the result with setRef/addUnnamed (index lock held), then release the lease.
 *
 *  Prune, holding the index lock for its whole run (so no setRef happens in between):
 *   P1. create a marker file in .tmp/; its mtime T is "now" on the filesystem's clock;
 *   P2. list the leases; dead ones (pid gone on this host) are removed and ignored;
 *   P3. cutoff := min(T, start of every live lease);
 *   P4. reachable := every blob reachable from every index.json entry (indexes → manifests → config and layers;
 *       a manifest of a type hoist does not know keeps every descriptor in it);
 *   P5. for each blob under blobs/ that is unreachable and has mtime < cutoff: rename it into .tmp/ (a quarantine
 *       name), stat it again there, and if its mtime is now >= cutoff (touched in between) rename it back, else unlink.
 *
 *  Why a writer W that tags after prune P can never lose a blob b it relied on. P ran either entirely before W's setRef
 *  (which needs the lock P holds) or entirely after it (then b was reachable, and P4 keeps it). In the first case:
 *   - If W's lease existed when P listed leases (P2), cutoff <= L. If W's lease was created after P2 started, then it
 *     was created after P1, so L >= T >= cutoff (readdir returns every entry that existed when it began; all times
 *     compared are filesystem mtimes, ordered by the filesystem's clock). Either way cutoff <= L.
 *   - b's mtime after W's put/touch is >= L >= cutoff, so P5 skips b if it saw that mtime. If P saw an older mtime,
 *     the rename in P5 is the point that decides: W's touch (utimes on the blob path) happens either before the
 *     rename — then the re-stat in .tmp/ sees the new mtime and P renames b back — or after it, when utimes fails
 *     with ENOENT and W is told "not stored" and writes b again. A lease released before P2 means W's setRef had
 *     already happened (it precedes release), i.e. before P took the lock: then b is reachable.
 *  A writer that skips the lease is protected only for blobs written after T: tagging code must use a lease.
 *
 * Quarantine names carry the blob's digest, so a prune that crashed mid-way is repaired by the next one (under the
 * same lock no other prune can be mid-way): leftovers go back to blobs/ and are judged again. Temp files in .tmp/
 * older than an hour (abandoned writes: a live write keeps its file's mtime fresh) are removed.
 *
 * `subject` is not followed: a referrer (signature, SBOM) is kept by its own index.json entry, not by what it refers to.
 */
import { mkdir, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HoistError, isErrno } from '../errors.ts';
import { isDigest } from '../oci/digest.ts';
import { manifestReferences, parseManifest } from '../oci/manifest.ts';
import { isManifest } from '../oci/mediatype.ts';
import type { Descriptor } from '../oci/types.ts';
import { readLeases } from './lease.ts';
import { fsyncDir, type OciLayout } from './layout.ts';

export interface PruneResult {
  /** Digests of the blobs removed, sorted. */
  deleted: string[];
  freedBytes: number;
}

/** Temp files older than this are abandoned writes. */
const STALE_TEMP_MS = 60 * 60 * 1000;
const QUARANTINE_PREFIX = 'gc-';

export interface PruneOptions {
  /** Judge only these digests (a failed copy discarding what it wrote); the rules are the same. */
  only?: Set<string>;
  /** A lease file to leave out of the cutoff: the aborting writer's own, whose blobs are the ones being discarded. */
  ignoreLease?: string;
  /** Blobs to keep although no image reaches them (layers the build cache still uses). */
  keep?: Set<string>;
}

/**
 * Also used by a failed copy to discard the blobs it created (`only` + `ignoreLease`): the same argument applies, so a
 * concurrent writer that relies on one of them (its lease is live, or it touched the blob) keeps it.
 */
export async function prune(layout: OciLayout, opts: PruneOptions = {}): Promise<PruneResult> {
  return layout.withIndexLock(async () => {
    await mkdir(layout.tmpDir, { recursive: true });
    await restoreQuarantined(layout);

    const marker = layout.tempPath('prune');
    await writeFile(marker, '', { flag: 'wx' });
    try {
      const startMs = (await stat(marker)).mtimeMs; // P1

      let cutoff = startMs; // P2, P3
      for (const l of await readLeases(layout)) {
        if (l.file === opts.ignoreLease) continue;
        if (l.live) cutoff = Math.min(cutoff, l.mtimeMs);
        else await rm(l.file, { force: true });
      }

      const reachable = await reachableBlobs(layout); // P4
      for (const d of opts.keep ?? []) reachable.add(d);
      const result = await deleteUnreachable(layout, reachable, cutoff, opts.only); // P5
      await removeStaleTemps(layout, startMs);
      return result;
    } finally {
      await rm(marker, { force: true });
    }
  });
}

/**
 * Every digest reachable from index.json: the entries, and recursively what their manifests reference. An entry or
 * index child of a type hoist does not parse (an artifact manifest, say) is still walked: every descriptor-shaped
 * object in its JSON is kept, so prune never deletes what an unfamiliar manifest needs.
 */
export async function reachableBlobs(layout: OciLayout): Promise<Set<string>> {
  const seen = new Set<string>();
  // `manifest`: the descriptor sits where a manifest belongs (index.json, an index's manifests), not a config or layer.
  const queue: { d: Descriptor; manifest: boolean }[] = (await layout.readIndex()).manifests.map((d) => ({ d, manifest: true }));
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
    const { d } = item;
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    const known = isManifest(d.mediaType);
    if (!item.manifest && !known) continue;
    let bytes: Buffer;
    try {
      bytes = await layout.readBlob(d.digest, d.size, `prune: manifest ${d.digest}`);
    } catch (e) {
      // Already missing: nothing of it to protect but what other entries reach. Anything else (corrupt, unparsable)
      // stops the prune: deleting the children of a manifest we cannot read could destroy a repairable image.
      if (e instanceof HoistError && e.code === 'NOT_FOUND') continue;
      if (!known && e instanceof HoistError && e.code === 'TOO_LARGE') continue; // not a manifest after all
      throw pruneStopped(layout, d, e);
    }
    if (!known) {
      for (const c of descriptorsIn(bytes)) queue.push({ d: c, manifest: true });
      continue;
    }
    try {
      const parsed = parseManifest(bytes, `${layout.dir}: manifest ${d.digest}`, d.mediaType);
      for (const c of manifestReferences(parsed)) queue.push({ d: c, manifest: parsed.kind === 'index' });
    } catch (e) {
      throw pruneStopped(layout, d, e);
    }
  }
  return seen;
}

/** Descriptor-shaped objects anywhere in a JSON document (not under `subject`); none when it is not JSON. */
function descriptorsIn(bytes: Buffer): Descriptor[] {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return [];
  }
  const out: Descriptor[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      v.forEach(visit);
    } else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (typeof o['digest'] === 'string' && isDigest(o['digest']) && typeof o['mediaType'] === 'string') out.push(o as unknown as Descriptor);
      for (const [k, child] of Object.entries(o)) if (k !== 'subject') visit(child);
    }
  };
  visit(doc);
  return out;
}

function pruneStopped(layout: OciLayout, d: Descriptor, e: unknown): HoistError {
  const why = e instanceof Error ? e.message : String(e);
  return new HoistError('PRUNE_STOPPED',
    `${layout.dir}: prune stopped, nothing deleted: cannot read manifest ${d.digest} (${why}); remove the image that uses it (hoist rmi) or copy it again, then prune`,
    { cause: e });
}

async function deleteUnreachable(layout: OciLayout, reachable: Set<string>, cutoff: number, only?: Set<string>): Promise<PruneResult> {
  const blobsDir = path.join(layout.dir, 'blobs');
  // A blob at the cutoff counts as in use in a full prune. When a failed copy discards its own blobs, one written
  // by it can share the cutoff's mtime (filesystem timestamps are coarse, ~4 ms on ext4), while any other writer's
  // touch lands at its lease start + 1 ms, after the cutoff: there, only a later mtime means in use.
  const inUse = (mtimeMs: number): boolean => (only ? mtimeMs > cutoff : mtimeMs >= cutoff);
  const deleted: string[] = [];
  let freedBytes = 0;
  for (const alg of await readdirIfAny(blobsDir)) {
    const algDir = path.join(blobsDir, alg);
    let changed = false;
    for (const hex of await readdirIfAny(algDir)) {
      const digest = `${alg}:${hex}`;
      // Names that are not digests are not ours (another tool's temp file): leave them.
      if (!isDigest(digest) || reachable.has(digest) || (only && !only.has(digest))) continue;
      const file = path.join(algDir, hex);
      const st = await stat(file).catch(() => undefined);
      if (st === undefined || !st.isFile() || inUse(st.mtimeMs)) continue;

      const quarantined = path.join(layout.tmpDir, `${QUARANTINE_PREFIX}${alg}-${hex}-${process.pid}`);
      try {
        await rename(file, quarantined);
      } catch (e) {
        if (isErrno(e, 'ENOENT')) continue;
        throw e;
      }
      const again = await stat(quarantined);
      if (inUse(again.mtimeMs)) {
        // A writer touched it between our stat and our rename: it is in use. Put it back (a copy a writer may have
        // stored meanwhile has the same bytes, so replacing it is harmless).
        await rename(quarantined, file);
        continue;
      }
      await unlink(quarantined);
      deleted.push(digest);
      freedBytes += again.size;
      changed = true;
    }
    if (changed) await fsyncDir(algDir);
  }
  deleted.sort();
  return { deleted, freedBytes };
}

/** Puts back blobs a crashed prune left in quarantine; this prune then judges them again. */
async function restoreQuarantined(layout: OciLayout): Promise<void> {
  for (const name of await readdirIfAny(layout.tmpDir)) {
    const m = /^gc-(sha256|sha512)-([0-9a-f]+)-\d+$/.exec(name); // QUARANTINE_PREFIX + alg-hex-pid
    if (!m) continue;
    const digest = `${m[1]}:${m[2]}`;
    const from = path.join(layout.tmpDir, name);
    if (!isDigest(digest)) continue;
    const to = layout.blobPath(digest);
    if (await stat(to).then(() => true, () => false)) {
      await rm(from, { force: true });
    } else {
      await mkdir(path.dirname(to), { recursive: true });
      await rename(from, to);
    }
  }
}

async function removeStaleTemps(layout: OciLayout, nowMs: number): Promise<void> {
  for (const name of await readdirIfAny(layout.tmpDir)) {
    if (name.startsWith(QUARANTINE_PREFIX)) continue;
    const file = path.join(layout.tmpDir, name);
    const st = await stat(file).catch(() => undefined);
    if (st !== undefined && nowMs - st.mtimeMs > STALE_TEMP_MS) await rm(file, { recursive: true, force: true });
  }
}

async function readdirIfAny(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR')) return [];
    throw e;
  }
}
