/**
 * The build cache in the store: entries round-trip, --no-cache and the TTL hide them, and `hoist prune` keeps the
 * layers live entries use, drops old entries and (with --build-cache) all of them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, utimes, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { BuildCache, parseDuration, stepKey, trimBuildCache } from '../../src/store/build-cache.ts';
import { Store } from '../../src/store/store.ts';
import { prune } from '../../src/store/prune.ts';
import { hoist } from '../helpers/run.ts';

async function storeWithLayer(): Promise<{ store: Store; dir: string; digest: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hoist-bcache-'));
  const store = await Store.open(path.join(dir, 'store'));
  const digest = await store.layout.putBlobBytes(Buffer.from('a layer'));
  return { store, dir, digest };
}

test('entries round-trip; --no-cache and an expired TTL miss; keys depend on every part', async () => {
  const { store, dir, digest } = await storeWithLayer();
  try {
    const key = stepKey('parent', 'RUN', ['sh', '-c', 'x']);
    assert.notEqual(key, stepKey('parent', 'RUN', ['sh', '-c', 'y']));
    assert.notEqual(key, stepKey('other', 'RUN', ['sh', '-c', 'x']));
    const layer = { digest, size: 7, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: digest };
    await new BuildCache(store.root).put(key, { layer, created: '2024-01-01T00:00:00Z' });
    assert.deepEqual(await new BuildCache(store.root).get(key), { layer, created: '2024-01-01T00:00:00Z' });
    assert.equal(await new BuildCache(store.root, { disabled: true }).get(key), undefined);
    assert.equal(await new BuildCache(store.root).get(stepKey('nope')), undefined);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('soon'), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('prune keeps layers of live cache entries, drops stale entries, and --build-cache drops all', async () => {
  const { store, dir, digest } = await storeWithLayer();
  try {
    const cache = new BuildCache(store.root);
    const layer = { digest, size: 7, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: digest };
    await cache.put(stepKey('live'), { layer, created: 'x' });
    const old = await store.layout.putBlobBytes(Buffer.from('an old layer'));
    await cache.put(stepKey('old'), { layer: { ...layer, digest: old }, created: 'x' });
    const stepsDir = path.join(store.root, 'build-cache', 'steps');
    const oldFile = path.join(stepsDir, `${stepKey('old').slice(7)}.json`);
    const longAgo = new Date(Date.now() - 30 * 86_400_000);
    await utimes(oldFile, longAgo, longAgo);
    // Blobs must be older than the prune's cutoff to be judged at all.
    for (const d of [digest, old]) await utimes(store.layout.blobPath(d), longAgo, longAgo);

    const trimmed = await trimBuildCache(store.root, { maxAgeMs: 7 * 86_400_000, hasBlob: (d) => store.layout.hasBlob(d) });
    assert.equal(trimmed.removed, 1);
    assert.deepEqual([...trimmed.keep], [digest]);
    const r = await prune(store.layout, { keep: trimmed.keep });
    assert.deepEqual(r.deleted, [old]);
    assert.ok(await store.layout.hasBlob(digest));
    assert.ok(await cache.get(stepKey('live')));

    const cli = await hoist(store.root, ['prune', '--build-cache']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stderr, /1 build-cache entry removed/);
    assert.deepEqual(await readdir(stepsDir), []);
    assert.equal(await store.layout.hasBlob(digest), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
