import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { Store } from '../../src/store/store.ts';
import { normalizeStoreName } from '../../src/transport/store.ts';

export default async function rmi(g: GlobalOptions, names: string[], flags: { force?: boolean }): Promise<number> {
  const store = await Store.open(g.root);
  const missing: string[] = [];
  for (const n of names) {
    // Its signature attachments go with the last name of the repository that reaches the image.
    const removed = await store.removeName(normalizeStoreName(n));
    if (removed) process.stdout.write(`Untagged: ${normalizeStoreName(n)}\n`);
    else missing.push(n);
  }
  if (missing.length && !flags.force) {
    throw new HoistError('NOT_FOUND', `no image named ${missing.map((m) => `"${m}"`).join(', ')} in the local store; list images with: hoist images`);
  }
  return 0;
}
