/**
 * Real processes against one layout: writers putting the same blobs and setting the same and different refs at once,
 * and a prune looping while writers work. Afterwards the layout must be whole: index.json valid, every ref present,
 * every blob of every ref present and verified, no temp, lease or lock files left, and umoci must read it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseManifest, manifestReferences } from '../../src/oci/manifest.ts';
import { OciLayout } from '../../src/store/layout.ts';
import { prune } from '../../src/store/prune.ts';
import { readAll } from '../../src/util/stream.ts';
import { run, type RunResult } from '../helpers/run.ts';
import { blobBytes, blobDigest } from './fixtures/content.ts';
import type { WriterArgs } from './fixtures/writer.ts';

const WRITER = fileURLToPath(new URL('./fixtures/writer.ts', import.meta.url));
const PRUNER = fileURLToPath(new URL('./fixtures/pruner.ts', import.meta.url));
const HOUR = 3_600_000;
const ROUNDS = 4;
const WRITERS = 4;

let tmp: string;
before(async () => { tmp = await mkdtemp(path.join(tmpdir(), 'hoist-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

interface WriterResult { id: string; manifest: string; putCount: number }

function startWriter(args: WriterArgs): Promise<RunResult> {
  return run(process.execPath, [WRITER, JSON.stringify(args)]);
}

function parseWriter(r: RunResult): WriterResult {
  assert.equal(r.code, 0, `writer failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as WriterResult;
}

async function waitFor(file: string, what: string): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (await access(file).then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Every file under blobs/ hashes to its name. */
async function verifyAllBlobs(l: OciLayout): Promise<number> {
  const dir = path.join(l.dir, 'blobs', 'sha256');
  const names = await readdir(dir);
  for (const hex of names) {
    const got = createHash('sha256').update(await readFile(path.join(dir, hex))).digest('hex');
    assert.equal(got, hex, `blob ${hex} holds other bytes`);
  }
  return names.length;
}

/** The manifest a ref names and everything it reaches are stored and verify (through hoist's verified reads). */
async function verifyRef(l: OciLayout, name: string): Promise<void> {
  const d = await l.resolveRef(name);
  assert.ok(d, `ref ${name} present`);
  const bytes = await l.readBlob(d.digest, d.size);
  for (const child of manifestReferences(parseManifest(bytes, name, d.mediaType))) {
    await readAll(await l.openBlob(child.digest, child.size, `${name}: ${child.digest}`));
  }
}

/** Nothing left behind in .tmp/ or .leases/, and no lock file. */
async function assertClean(l: OciLayout): Promise<void> {
  assert.deepEqual(await readdir(l.tmpDir).catch(() => []), [], 'no temp files');
  assert.deepEqual(await readdir(l.leasesDir).catch(() => []), [], 'no leases');
  assert.deepEqual((await readdir(l.dir)).filter((f) => f.includes('.lock')), [], 'no lock files');
}

test('six processes put the same blobs and set the same and different refs into one layout at once', { timeout: 120_000 }, async () => {
  const dir = path.join(tmp, 'writers');
  const go = path.join(tmp, 'writers-go');
  const shared = [0, 1, 2, 3].map((k) => ({ seed: `shared-${k}`, size: 1024 * 1024 + k * 4099 }));
  const writers = Array.from({ length: 6 }, (_, i) => startWriter({
    dir, id: String(i), goFile: go,
    // even writers write byte-identical images (same manifest digest, written three times at once)
    layers: i % 2 === 0 ? shared : [...shared, { seed: `own-${i}`, size: 300_000 }],
    sharedRefs: ['latest'], ownRefs: [`w${i}`],
  }));
  setTimeout(() => { void writeFile(go, ''); }, 500);
  const results = (await Promise.all(writers)).map(parseWriter);

  const l = await OciLayout.open(dir, { create: false }); // index.json parses and checks
  JSON.parse(await readFile(l.indexPath, 'utf8'));
  const refs = await l.listRefs();
  assert.deepEqual(refs.map((r) => r.name).sort(), ['latest', 'w0', 'w1', 'w2', 'w3', 'w4', 'w5']);
  for (const r of results) assert.equal((await l.resolveRef(`w${r.id}`))?.digest, r.manifest);
  assert.equal(new Set(results.filter((r) => Number(r.id) % 2 === 0).map((r) => r.manifest)).size, 1);
  assert.ok(results.some((r) => r.manifest === refs.find((x) => x.name === 'latest')!.descriptor.digest), 'latest is one of the written images');
  for (const r of refs) await verifyRef(l, r.name);
  // 4 shared layers + 3 own layers + 4 configs + 4 manifests (the three even writers share theirs)
  assert.equal(await verifyAllBlobs(l), 4 + 3 + 4 + 4);
  await assertClean(l);

  const ls = await run('umoci', ['ls', '--layout', dir]);
  assert.equal(ls.code, 0, ls.stderr);
  assert.deepEqual(ls.stdout.trim().split('\n').sort(), ['latest', 'w0', 'w1', 'w2', 'w3', 'w4', 'w5']);
});

test('a prune looping alongside writers never deletes a blob a finished writer tagged', { timeout: 240_000 }, async () => {
  const dir = path.join(tmp, 'prune-race');
  const l = await OciLayout.open(dir, { create: true });
  const tagged: string[] = [];
  let reput = 0;

  for (let round = 0; round < ROUNDS; round++) {
    // Even rounds: the writers check while prune is held off (we hold the index lock), then prune runs before they
    // tag — a writer that relied on an untouched blob would lose it here. Odd rounds: everything runs freely, so
    // prune often deletes a blob before a writer checks it and the writer stores it again.
    const heldOff = round % 2 === 0;
    const stop = path.join(tmp, `stop-${round}`);
    const go = path.join(tmp, `go-${round}`);
    const pruner = run(process.execPath, [PRUNER, dir, stop, '5000']);
    await waitFor(`${stop}.running`, 'the pruner to start');

    // Blobs the writers will find already stored, old and unreachable: exactly what prune deletes, and exactly what
    // a writer relies on when it skips a put. Junk nobody uses must go.
    const pre = [0, 1, 2].map((k) => ({ seed: `r${round}-pre-${k}`, size: 256 * 1024 + k }));
    const junk = [0, 1].map((k) => ({ seed: `r${round}-junk-${k}`, size: 10_000 + k }));
    const writers = Array.from({ length: WRITERS }, (_, i) => startWriter({
      dir, id: `${round}-${i}`, goFile: go, jitterMs: 30, pauseBeforeTagMs: heldOff ? 500 : 0,
      layers: [...pre, { seed: `r${round}-own-${i}`, size: 64 * 1024 }],
      sharedRefs: [], ownRefs: [`r${round}-w${i}`],
    }));
    for (let i = 0; i < WRITERS; i++) await waitFor(`${go}.ready-${round}-${i}`, `writer ${i} to start`);

    const seed = async () => {
      const old = new Date(Date.now() - 2 * HOUR);
      for (const b of [...pre, ...junk]) {
        const d = await l.putBlobBytes(blobBytes(b.seed, b.size));
        await utimes(l.blobPath(d), old, old).catch(() => { /* the pruner was quicker: also fine */ });
      }
    };
    if (heldOff) {
      await l.withIndexLock(async () => {
        await seed();
        await writeFile(go, '');
        for (let i = 0; i < WRITERS; i++) await waitFor(`${go}.checked-${round}-${i}`, `writer ${i} to check its blobs`);
      });
    } else {
      await seed();
      await writeFile(go, '');
    }
    const finished = await Promise.all(writers);
    await writeFile(stop, ''); // before any assertion, so a failing round does not leave the pruner looping
    const p = await pruner;
    const results = finished.map(parseWriter);
    assert.equal(p.code, 0, p.stderr);
    assert.ok((JSON.parse(p.stdout) as { rounds: number }).rounds >= 1);

    for (const r of results) reput += r.putCount - 1; // minus its own layer
    for (let i = 0; i < WRITERS; i++) tagged.push(`r${round}-w${i}`);
    // The point of the test: every image any writer tagged, in this round or before, is whole.
    for (const name of tagged) await verifyRef(l, name);
  }

  // With no writer left, a last prune removes the junk of every round and keeps every tagged image.
  await prune(l);
  for (let round = 0; round < ROUNDS; round++) {
    for (const k of [0, 1]) assert.equal(await l.hasBlob(blobDigest(`r${round}-junk-${k}`, 10_000 + k)), false);
  }
  for (const name of tagged) await verifyRef(l, name);
  await verifyAllBlobs(l);
  await assertClean(l);
  assert.deepEqual((await l.listRefs()).map((r) => r.name).sort(), [...tagged].sort());
  // How often prune won the race and a writer had to store a "pre" blob again (informational, timing dependent).
  process.stderr.write(`# prune-race: writers re-put ${reput} of ${ROUNDS * WRITERS * 3} pre-stored blobs\n`);
});
