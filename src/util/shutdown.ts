/**
 * Work to do before a command returns: closing pooled registry connections, whose keep-alive sockets would
 * otherwise hold the process open for seconds. Modules register only when they are loaded and used.
 */
const hooks = new Set<() => Promise<void>>();

export function onShutdown(fn: () => Promise<void>): void {
  hooks.add(fn);
}

export async function runShutdown(): Promise<void> {
  const all = [...hooks];
  hooks.clear();
  await Promise.allSettled(all.map((f) => f()));
}
