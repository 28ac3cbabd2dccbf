/**
 * Runs one build step with src/runtime/step.ts on the busybox image in the store and prints, as JSON on stdout,
 * the exit code and the change layer's entries. Used by step.test.ts, as root and as the unprivileged CI user.
 * Usage: node step.ts STORE_ROOT IMAGE_NAME SHELL_SCRIPT
 */
import { extract } from 'tar-stream';
import { Store } from '../../../src/store/store.ts';
import { loadRunImage } from '../../../src/runtime/image.ts';
import { runStep } from '../../../src/runtime/step.ts';

const [root, name, script] = process.argv.slice(2) as [string, string, string];
const store = await Store.open(root);
const img = await loadRunImage(store, await store.resolve(name), name);
const step = runStep({
  storeRoot: store.root, layers: img.layers, args: ['/bin/sh', '-c', script],
  env: ['PATH=/bin', 'SECRET_FILE=/run/secrets/s'], cwd: '/', network: 'none',
  mounts: [{ type: 'bind', source: process.env['SECRET_SRC']!, destination: '/run/secrets/s', readonly: true }],
});
const entries: { name: string; type: string; size: number; uid: number; mode: number; linkname?: string | null }[] = [];
const ex = extract();
ex.on('entry', (h, stream, next) => {
  entries.push({ name: h.name, type: h.type ?? 'file', size: h.size ?? 0, uid: h.uid ?? 0, mode: h.mode ?? 0, linkname: h.linkname ?? null });
  stream.on('end', next);
  stream.resume();
});
const done = new Promise<void>((resolve, reject) => {
  ex.on('finish', resolve);
  ex.on('error', reject);
});
step.stdout.pipe(process.stderr);
step.stderr.pipe(process.stderr);
step.layer.pipe(ex);
await done;
const exit = await step.exit;
process.stdout.write(JSON.stringify({ exit, entries }) + '\n');
