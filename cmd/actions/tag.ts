import type { GlobalOptions } from '../main.ts';
import { Store } from '../../src/store/store.ts';
import { normalizeStoreName } from '../../src/transport/store.ts';

export default async function tag(g: GlobalOptions, src: string, names: string[]): Promise<number> {
  const store = await Store.open(g.root);
  for (const n of names) await store.tag(src, normalizeStoreName(n));
  return 0;
}
