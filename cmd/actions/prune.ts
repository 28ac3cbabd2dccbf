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
  process.stderr.write(`Deleted ${r.deleted.length} blob(s), freed ${formatBytes(r.freedBytes)}; ${trimmed.removed} build-cache entr${trimmed.removed === 1 ? 'y' : 'ies'} removed, ${trimmed.keep.size} cached layer(s) kept\n`);
  return 0;
}
