import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { Store } from '../../src/store/store.ts';
import { prune as pruneLayout } from '../../src/store/prune.ts';
import { parseDuration, trimBuildCache } from '../../src/store/build-cache.ts';
import { formatBytes } from '../progress.ts';

interface PruneFlags {
  buildCache?: boolean;
  cacheTtl: string;
}

/** Blobs no image reaches go; so do build-cache entries unused for --cache-ttl (or all of them with --build-cache). */
export default async function prune(g: GlobalOptions, flags: PruneFlags): Promise<number> {
  const store = await Store.open(g.root);
  const maxAgeMs = parseDuration(flags.cacheTtl);
  if (maxAgeMs === undefined) throw new HoistError('BAD_FLAG', `--cache-ttl ${flags.cacheTtl}: expected a duration such as 24h or 30m`, { exitCode: 2 });
  const trimmed = await trimBuildCache(store.root, { maxAgeMs, all: flags.buildCache ?? false, hasBlob: (d) => store.layout.hasBlob(d) });
  const r = await pruneLayout(store.layout, { keep: trimmed.keep });
  for (const d of r.deleted) process.stdout.write(`${d}\n`);
  const snaps = await pruneUnpacked(g, store, trimmed.keepDiffIDs);
  process.stderr.write(`Deleted ${r.deleted.length} blob(s), freed ${formatBytes(r.freedBytes)}; ${trimmed.removed} build-cache entr${trimmed.removed === 1 ? 'y' : 'ies'} removed, ${trimmed.keep.size} cached layer(s) kept; ${snaps}\n`);
  return 0;
}

/**
 * Unpacked layers no stored image and no kept cache entry uses (src/store/snapshot-gc.ts), removed from inside the
 * user namespace (their files belong to subordinate ids). Gives the summary's words for them.
 */
async function pruneUnpacked(g: GlobalOptions, store: Store, keep: Set<string>): Promise<string> {
  const { pruneSnapshots } = await import('../../src/store/snapshot-gc.ts');
  const { Containers } = await import('../../src/runtime/containers.ts');
  const { pidAlive } = await import('../../src/store/lock.ts');
  const { detectHost, usernsMode } = await import('../../src/runtime/host.ts');
  const { removeInNamespace } = await import('../../src/runtime/launch.ts');
  const host = detectHost();
  const ns = { host, mode: usernsMode(host, undefined, () => {}), debug: g.debug };
  const remove = (dir: string): Promise<number> => removeInNamespace(store.root, dir, ns).catch(() => 125);
  const containers = new Containers(store.root);
  // What a killed `hoist run --rm` left: its hoist process is gone, so nothing else will remove it.
  let leftovers = 0;
  for (const c of containers.list()) {
    if (!c.autoRemove || c.state === 'running' || (c.pid !== undefined && pidAlive(c.pid))) continue;
    if (await remove(containers.containerDir(c.id)) === 0) leftovers++;
  }
  const left = leftovers > 0 ? `${leftovers} container(s) a killed run --rm left removed; ` : '';
  const res = await pruneSnapshots(store.root, store.layout, {
    keep,
    containerRunning: () => containers.list().some((c) => c.state === 'running'),
  });
  if (res.skipped !== undefined) return `${left}unpacked layers left as they are (${res.skipped})`;
  if (res.trash !== undefined && await remove(res.trash) !== 0) {
    return `${left}${res.moved} unpacked layer(s) moved to ${res.trash} but not removed; run hoist prune again`;
  }
  return `${left}${res.moved} unpacked layer(s) removed`;
}
