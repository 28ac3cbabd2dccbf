import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChecksumCache, RACY_WINDOW_MS } from '../../src/build/checksum-cache.ts';
import { BuildContext } from '../../src/build/context.ts';
import { IgnoreMatcher } from '../../src/build/dockerignore.ts';

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
/** Files made by a test are seconds old at most: past the racy window only if their times are set back. */
const settled = { racyWindowMs: 0 };

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hoist-sums-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('hashFile: the sha256 of the contents, read once, then from the cache across runs', async (t) => {
  const dir = await tempDir(t);
  const f = join(dir, 'f');
  const big = Buffer.alloc(3 << 20, 7); // several stream chunks
  await writeFile(f, big);
  const cacheFile = join(dir, 'cache', 'sums.json');

  const c1 = await ChecksumCache.open(cacheFile, settled);
  const st = await lstat(f, { bigint: true });
  assert.equal(await c1.hashFile(f, st), sha256(big));
  assert.equal(await c1.hashFile(f, st), sha256(big));
  assert.deepEqual([c1.hits, c1.misses], [1, 1]);
  await c1.save();

  const c2 = await ChecksumCache.open(cacheFile, settled);
  assert.equal(await c2.hashFile(f, await lstat(f, { bigint: true })), sha256(big));
  assert.deepEqual([c2.hits, c2.misses], [1, 0]);

  // A different key (the file written again) is read again.
  await writeFile(f, 'new');
  assert.equal(await c2.hashFile(f, await lstat(f, { bigint: true })), sha256('new'));
  assert.equal(c2.misses, 1);
});

test('racy files: hashed, used, but not trusted next time', async (t) => {
  const dir = await tempDir(t);
  const f = join(dir, 'fresh');
  await writeFile(f, 'just written');
  const cacheFile = join(dir, 'sums.json');
  const c1 = await ChecksumCache.open(cacheFile); // the real window
  assert.ok(RACY_WINDOW_MS >= 1000);
  assert.equal(await c1.hashFile(f, await lstat(f, { bigint: true })), sha256('just written'));
  // Within the run the hash is reused...
  assert.equal(await c1.hashFile(f, await lstat(f, { bigint: true })), sha256('just written'));
  assert.deepEqual([c1.hits, c1.misses], [1, 1]);
  await c1.save();
  // ...but it was not kept: the file changed within the window before it was hashed.
  const c2 = await ChecksumCache.open(cacheFile);
  await c2.hashFile(f, await lstat(f, { bigint: true }));
  assert.equal(c2.misses, 1);
});

test('save: atomic, drops what was not seen, survives a corrupt file, concurrent saves leave a whole file', async (t) => {
  const dir = await tempDir(t);
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  await writeFile(a, 'aaa');
  await writeFile(b, 'bbb');
  const cacheFile = join(dir, 'sums.json');
  const c1 = await ChecksumCache.open(cacheFile, settled);
  await c1.hashFile(a, await lstat(a, { bigint: true }));
  await c1.hashFile(b, await lstat(b, { bigint: true }));
  await c1.save();
  assert.equal(Object.keys((JSON.parse(await readFile(cacheFile, 'utf8')) as { entries: object }).entries).length, 2);

  const c2 = await ChecksumCache.open(cacheFile, settled);
  await c2.hashFile(a, await lstat(a, { bigint: true }));
  await c2.save();
  const kept = (JSON.parse(await readFile(cacheFile, 'utf8')) as { entries: Record<string, string> }).entries;
  assert.deepEqual(Object.values(kept), [sha256('aaa')]);
  assert.deepEqual((await readdir(dir)).sort(), ['a', 'b', 'sums.json']); // no temp file left

  // Two builds saving at once: one wins, the file is whole.
  const c3 = await ChecksumCache.open(cacheFile, settled);
  const c4 = await ChecksumCache.open(cacheFile, settled);
  await c3.hashFile(b, await lstat(b, { bigint: true }));
  await c4.hashFile(a, await lstat(a, { bigint: true }));
  await c4.hashFile(b, await lstat(b, { bigint: true }));
  await Promise.all([c3.save(), c4.save(), c3.save()]);
  const after = (JSON.parse(await readFile(cacheFile, 'utf8')) as { entries: Record<string, string> }).entries;
  assert.ok(Object.keys(after).length >= 1);

  await writeFile(cacheFile, '{"format":"hoist-checksums/v1","entries":{"x":'); // torn by something else
  const c5 = await ChecksumCache.open(cacheFile, settled);
  await c5.hashFile(a, await lstat(a, { bigint: true }));
  assert.equal(c5.misses, 1);
});

/** A context of a few hundred files whose times are a minute old, as an edited checkout would be. */
async function makeContext(dir: string): Promise<string> {
  const ctx = join(dir, 'ctx');
  const old = new Date(Date.now() - 60_000);
  for (let d = 0; d < 10; d++) {
    await mkdir(join(ctx, `pkg${d}`), { recursive: true });
    for (let i = 0; i < 30; i++) {
      const f = join(ctx, `pkg${d}`, `file${i}.js`);
      await writeFile(f, `export const x = ${d * 100 + i};\n`);
      await utimes(f, old, old);
    }
  }
  await writeFile(join(ctx, 'run.sh'), '#!/bin/sh\n');
  await chmod(join(ctx, 'run.sh'), 0o755);
  await symlink('pkg0/file0.js', join(ctx, 'main.js'));
  for (const f of ['run.sh']) await utimes(join(ctx, f), old, old);
  return ctx;
}

/** One build: a fresh context (walked anew) and the cache read from disk, as a new hoist process would. */
async function build(ctx: string, cacheFile: string, sources: string[] = ['.']) {
  const context = await BuildContext.open(ctx, new IgnoreMatcher([]));
  const cache = await ChecksumCache.open(cacheFile, settled);
  const matches = (await Promise.all(sources.map((s) => context.match(s)))).flat();
  const sum = await context.checksum(matches, cache);
  await cache.save();
  return { sum, misses: cache.misses, hits: cache.hits };
}

test('context checksum: a rebuild of an unchanged context reads no file', async (t) => {
  const dir = await tempDir(t);
  const ctx = await makeContext(dir);
  const cacheFile = join(dir, 'checksums', 'ctx.json');
  const first = await build(ctx, cacheFile);
  assert.match(first.sum, /^sha256:[0-9a-f]{64}$/);
  assert.equal(first.misses, 301);
  const second = await build(ctx, cacheFile);
  assert.equal(second.sum, first.sum);
  assert.equal(second.misses, 0);
  assert.equal(second.hits, 301);
  // A subset of the context: its own checksum, still no reads.
  const sub = await build(ctx, cacheFile, ['pkg3']);
  assert.notEqual(sub.sum, first.sum);
  assert.equal(sub.misses, 0);
});

test('context checksum: touched is the same, any change of content, mode, name or link target is not', async (t) => {
  const dir = await tempDir(t);
  const ctx = await makeContext(dir);
  const cacheFile = join(dir, 'sums.json');
  const base = await build(ctx, cacheFile);

  // Touched, same bytes: re-read (its key changed), same checksum.
  const f = join(ctx, 'pkg2', 'file7.js');
  await utimes(f, new Date(), new Date());
  const touched = await build(ctx, cacheFile);
  assert.equal(touched.misses, 1);
  assert.equal(touched.sum, base.sum);

  const changes: [string, () => Promise<void>, () => Promise<void>][] = [
    ['content', () => writeFile(f, 'export const x = 207; // changed\n'), () => writeFile(f, 'export const x = 207;\n')],
    ['same size, other bytes', () => writeFile(f, 'export const x = 208;\n'), () => writeFile(f, 'export const x = 207;\n')],
    ['mode', () => chmod(f, 0o600), () => chmod(f, 0o644)],
    ['rename', () => rename(f, join(ctx, 'pkg2', 'file7b.js')), () => rename(join(ctx, 'pkg2', 'file7b.js'), f)],
    ['link target', async () => { await unlink(join(ctx, 'main.js')); await symlink('pkg0/file1.js', join(ctx, 'main.js')); },
      async () => { await unlink(join(ctx, 'main.js')); await symlink('pkg0/file0.js', join(ctx, 'main.js')); }],
    ['new empty dir', () => mkdir(join(ctx, 'empty')), () => rm(join(ctx, 'empty'), { recursive: true })],
  ];
  const seen = new Set([base.sum]);
  for (const [what, change, undo] of changes) {
    await change();
    const changed = await build(ctx, cacheFile);
    assert.ok(!seen.has(changed.sum), what);
    seen.add(changed.sum);
    await undo();
    assert.equal((await build(ctx, cacheFile)).sum, base.sum, `undo ${what}`);
  }
  // The mode of the original file: umask may differ, so set it explicitly above; check a rebuild is quiet again.
  const quiet = await build(ctx, cacheFile);
  assert.equal(quiet.misses, 0);
});

test('context checksum: the matched paths count, not just the entries', async (t) => {
  const dir = await tempDir(t);
  const ctx = await makeContext(dir);
  const cacheFile = join(dir, 'sums.json');
  // pkg1 and its files, whether asked for as pkg1 or pkg1/* (the latter has no pkg1 entry and 30 matches).
  const whole = await build(ctx, cacheFile, ['pkg1']);
  const glob = await build(ctx, cacheFile, ['pkg1/*']);
  assert.notEqual(whole.sum, glob.sum);
  // The same sources in another order: the same set of records.
  assert.equal((await build(ctx, cacheFile, ['pkg1', 'pkg2'])).sum, (await build(ctx, cacheFile, ['pkg2', 'pkg1'])).sum);
});
