import type { GlobalOptions } from '../main.ts';
import { Store } from '../../src/store/store.ts';
import { prune as pruneLayout } from '../../src/store/prune.ts';
import { formatBytes } from '../progress.ts';

export default async function prune(g: GlobalOptions): Promise<number> {
  const store = await Store.open(g.root);
  const r = await pruneLayout(store.layout);
  for (const d of r.deleted) process.stdout.write(`${d}\n`);
  process.stderr.write(`Deleted ${r.deleted.length} blob(s), freed ${formatBytes(r.freedBytes)}\n`);
  return 0;
}
