/** `hoist rm [-f] CONTAINER...` — removes containers: their files go from inside the user namespace (they belong to subordinate ids). */
import type { GlobalOptions } from '../main.ts';
import { HoistError, isHoistError } from '../../src/errors.ts';
import { storeRoot } from '../../src/store/root.ts';
import { Containers } from '../../src/runtime/containers.ts';
import { detectHost, usernsMode } from '../../src/runtime/host.ts';
import { removeInNamespace } from '../../src/runtime/launch.ts';

interface RmFlags {
  force?: boolean;
}

export default async function rm(g: GlobalOptions, names: string[], flags: RmFlags): Promise<number> {
  const root = storeRoot(g.root);
  const containers = new Containers(root);
  const host = detectHost();
  const mode = usernsMode(host, undefined, () => {});
  let failed = 0;
  for (const n of names) {
    try {
      const rec = containers.find(n);
      if (rec.state === 'running') {
        if (!flags.force) throw new HoistError('RUNNING', `container ${rec.name} is running; stop it first or use hoist rm -f`, { exitCode: 125 });
        if (rec.pid !== undefined) await killContainer(rec.pid);
      }
      const code = await removeInNamespace(root, containers.containerDir(rec.id), { host, mode, debug: g.debug });
      if (code !== 0) throw new HoistError('RM_FAILED', `could not remove the files of container ${rec.name} (${containers.containerDir(rec.id)})`, { exitCode: 125 });
      process.stdout.write(`${rec.id}\n`);
    } catch (e) {
      if (flags.force && isHoistError(e) && e.code === 'NOT_FOUND') continue;
      process.stderr.write(`hoist: ${(e as Error).message}\n`);
      failed = isHoistError(e) ? e.exitCode : 125;
    }
  }
  return failed;
}

/** Asks the hoist process running the container to kill it (SIGUSR2, see src/runtime/inner.ts) and waits for it to end. */
async function killContainer(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGUSR2');
  } catch {
    return;
  }
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
  }
  throw new HoistError('KILL_FAILED', `the container's hoist process ${pid} did not end after 10 s; kill it by hand`, { exitCode: 125 });
}
