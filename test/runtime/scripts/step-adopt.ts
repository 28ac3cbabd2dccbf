/**
 * Runs one build step with keepUpper on the busybox image in the store, hashes the change layer (its diffID) and
 * calls adopt() with it (or with nothing when the step failed or ADOPT=none), then prints as JSON: the exit code,
 * the diffID, the entries of the adopted snapshot (path type mode uid size, as the container's root sees them:
 * the store's files are the caller's) and what is left in the store's containers directory.
 * Usage: node step-adopt.ts STORE_ROOT IMAGE_NAME SHELL_SCRIPT
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Store } from '../../../src/store/store.ts';
import { loadRunImage } from '../../../src/runtime/image.ts';
import { runStep } from '../../../src/runtime/step.ts';
import { Snapshots } from '../../../src/store/snapshots.ts';

const [root, name, script] = process.argv.slice(2) as [string, string, string];
const store = await Store.open(root);
const img = await loadRunImage(store, await store.resolve(name), name);
const step = runStep({
  storeRoot: store.root, layers: img.layers, args: ['/bin/sh', '-c', script],
  env: ['PATH=/bin', 'SECRET_FILE=/run/secrets/s'], cwd: '/', network: 'none', keepUpper: true,
  mounts: [{ type: 'bind', source: process.env['SECRET_SRC']!, destination: '/run/secrets/s', readonly: true }],
});
step.stdout.pipe(process.stderr);
step.stderr.pipe(process.stderr);
const h = createHash('sha256');
for await (const c of step.layer) h.update(c as Buffer);
const exit = await step.exit;
const diffID = exit === 0 && process.env['ADOPT'] !== 'none' ? `sha256:${h.digest('hex')}` : undefined;
await step.adopt(diffID);

const entries: string[] = [];
const snaps = new Snapshots(store.root);
let content: string | null = null;
if (diffID !== undefined && snaps.has(diffID)) {
  const fs = snaps.dir(diffID);
  const walk = (rel: string): void => {
    for (const n of readdirSync(path.join(fs, rel)).sort()) {
      const r = rel === '' ? n : `${rel}/${n}`;
      const st = lstatSync(path.join(fs, r));
      const type = st.isDirectory() ? 'd' : st.isFile() ? 'f' : st.isSymbolicLink() ? 'l' : st.isCharacterDevice() ? 'c' : '?';
      entries.push(`${r} ${type}`);
      if (type === 'd') walk(r);
    }
  };
  walk('');
  try {
    content = readFileSync(path.join(fs, 'data', 'hello.txt'), 'utf8');
  } catch {
    content = null;
  }
}
const left = readdirSync(path.join(store.root, 'containers'));
process.stdout.write(JSON.stringify({ exit, diffID: diffID ?? null, adopted: diffID !== undefined && snaps.has(diffID), entries, content, left }) + '\n');
