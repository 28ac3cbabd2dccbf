/**
 * LayerTree's memoryBytes: small files matched from layers are handed over as bytes (`content`) instead of temp
 * files (`abs`), within a budget; big files and files past the budget still go to temp files. Real layer tars in a
 * real OciLayout.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { LayerTree } from '../../src/build/layer-tree.ts';
import type { SourceEntry } from '../../src/build/source.ts';
import { digestBytes } from '../../src/oci/digest.ts';
import { OCI_LAYER_GZIP } from '../../src/oci/mediatype.ts';
import { OciLayout } from '../../src/store/layout.ts';
import { tarOf } from '../layer/helpers.ts';

const BIG = Buffer.alloc(300 * 1024, 7); // over the 256 KiB small-file limit

async function setup(t: { after(fn: () => Promise<void>): void }, memoryBytes?: number): Promise<{ tree: LayerTree; tmp: string }> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'hoist-ltm-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const layout = await OciLayout.open(path.join(base, 'store'), { create: true });
  const tar = await tarOf([
    [{ name: 'd/', type: 'directory', mode: 0o755 }],
    [{ name: 'd/a', mode: 0o644 }, 'alpha\n'],
    [{ name: 'd/b', mode: 0o600 }, 'bravo bravo\n'],
    [{ name: 'd/empty', mode: 0o644 }, ''],
    [{ name: 'd/big', mode: 0o644 }, BIG],
  ]);
  const gz = gzipSync(tar);
  const digest = await layout.putBlobBytes(gz);
  const tmp = path.join(base, 'tmp');
  const tree = await LayerTree.open(layout, [{ mediaType: OCI_LAYER_GZIP, digest, size: gz.length }], [digestBytes(tar)], {
    tmpDir: tmp, ...(memoryBytes !== undefined ? { memoryBytes } : {}),
  });
  return { tree, tmp };
}

function byRel(entries: SourceEntry[]): Map<string, SourceEntry> {
  return new Map(entries.map((e) => [e.rel, e]));
}

async function filesUnder(dir: string): Promise<number> {
  let n = 0;
  for (const d of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) if (d.isFile()) n++;
  return n;
}

test('with a budget, small files come as bytes and a big one as a temp file', async (t) => {
  const { tree, tmp } = await setup(t, 1024 * 1024);
  const [m] = await tree.match('d');
  const e = byRel(m!.entries);
  assert.deepEqual(e.get('d/a')!.content, Buffer.from('alpha\n'));
  assert.equal(e.get('d/a')!.abs, undefined);
  assert.deepEqual(e.get('d/b')!.content, Buffer.from('bravo bravo\n'));
  assert.equal(e.get('d/b')!.mode & 0o777, 0o600);
  assert.equal(e.get('d/empty')!.content!.length, 0);
  assert.equal(e.get('d/big')!.content, undefined);
  assert.deepEqual(await readFile(e.get('d/big')!.abs!), BIG);
  assert.equal(await filesUnder(tmp), 1, 'only the big file was written to disk');
  assert.deepEqual(await tree.readFile('d/a'), Buffer.from('alpha\n'));
});

test('past the budget, files go to temp files again', async (t) => {
  const { tree } = await setup(t, 8); // room for "alpha\n" (6 bytes) only
  const [m] = await tree.match('d');
  const e = byRel(m!.entries);
  assert.deepEqual(e.get('d/a')!.content, Buffer.from('alpha\n'));
  assert.equal(e.get('d/b')!.content, undefined);
  assert.equal(await readFile(e.get('d/b')!.abs!, 'utf8'), 'bravo bravo\n');
});

test('without a budget (the default), every file is a temp file', async (t) => {
  const { tree } = await setup(t);
  const [m] = await tree.match('d');
  for (const e of m!.entries.filter((x) => x.type === 'file')) {
    assert.equal(e.content, undefined, e.rel);
    assert.notEqual(e.abs, undefined, e.rel);
  }
  assert.equal(await readFile(byRel(m!.entries).get('d/a')!.abs!, 'utf8'), 'alpha\n');
});
