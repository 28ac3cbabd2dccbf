/**
 * Feeds a small layer tar (a file, a directory, a whiteout, an opaque directory) to src/runtime/step.ts
 * snapshotWriter in chunks and prints as JSON: the diffID it gave, the tar's own sha256, the snapshot's entries
 * (path and type; whiteouts are character devices) and whether the opaque marker xattr is set.
 * Usage: node snapshot-writer.ts STORE_ROOT
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { getAttributeSync } from '@napi-rs/xattr';
import { snapshotWriter } from '../../../src/runtime/step.ts';
import { Snapshots } from '../../../src/store/snapshots.ts';
import { tarOf } from '../../layer/helpers.ts';

const [root] = process.argv.slice(2) as [string];
const tar = await tarOf([
  [{ name: 'app/', type: 'directory', mode: 0o755 }],
  [{ name: 'app/hello.txt', mode: 0o644 }, 'hello\n'],
  [{ name: 'app/.wh.gone', mode: 0o644 }, ''],
  [{ name: 'opq/', type: 'directory', mode: 0o755 }],
  [{ name: 'opq/.wh..wh..opq', mode: 0o644 }, ''],
]);
const w = snapshotWriter({ storeRoot: root });
for (let i = 0; i < tar.length; i += 1000) w.input.write(tar.subarray(i, i + 1000));
w.input.end();
const diffID = await w.done;
const snaps = new Snapshots(root);
const fs = snaps.dir(diffID);
const entries: string[] = [];
const walk = (rel: string): void => {
  for (const n of readdirSync(path.join(fs, rel)).sort()) {
    const r = rel === '' ? n : `${rel}/${n}`;
    const st = lstatSync(path.join(fs, r));
    entries.push(`${r} ${st.isDirectory() ? 'd' : st.isFile() ? 'f' : st.isCharacterDevice() ? 'c' : '?'}`);
    if (st.isDirectory()) walk(r);
  }
};
walk('');
let opaque = false;
try {
  opaque = getAttributeSync(path.join(fs, 'opq'), 'user.overlay.opaque')?.toString() === 'y'
    || getAttributeSync(path.join(fs, 'opq'), 'trusted.overlay.opaque')?.toString() === 'y';
} catch {
  opaque = false;
}
process.stdout.write(JSON.stringify({ diffID, expected: `sha256:${createHash('sha256').update(tar).digest('hex')}`, entries, opaque,
  left: readdirSync(path.join(root, 'containers')), tmp: readdirSync(snaps.root).filter((n) => n.startsWith('.')) }) + '\n');
