/**
 * TarIndex: offsets recorded in one pass must point at the right bytes in tars written by other tools
 * (GNU tar in gnu and pax formats with long and non-ASCII names, skopeo), links resolve, compressed archives are
 * read through a temp copy, and broken input fails with one clear line naming the file.
 */
import { test, before, after } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { mkdtemp, rm, mkdir, writeFile, symlink, link, readFile, truncate, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { TarIndex, normalizeTarPath } from '../../src/transport/tar-index.ts';
import { HoistError } from '../../src/errors.ts';
import { readAll } from '../../src/util/stream.ts';

const exec = promisify(execFile);

let tmp: string;
let tree: string;
const LONG_DIR = `${'d'.repeat(60)}/${'e'.repeat(70)}`;
const LONG_NAME = `${LONG_DIR}/${'f'.repeat(120)}.bin`;
const UNICODE = 'größe-ünïcödé-名前.txt';
const files: Record<string, Buffer> = {};

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'hoist-tarindex-'));
  tree = path.join(tmp, 'tree');
  await mkdir(path.join(tree, LONG_DIR), { recursive: true });
  await mkdir(path.join(tree, 'sub'), { recursive: true });
  files['small.txt'] = Buffer.from('hello\n');
  files['empty'] = Buffer.alloc(0);
  files['exact512'] = Buffer.alloc(512, 7);
  // Not a multiple of 512, larger than a read chunk boundary is not needed: offsets are what matter.
  files['sub/big.bin'] = Buffer.from(Array.from({ length: 200_003 }, (_, i) => (i * 31 + 7) & 0xff));
  files[LONG_NAME] = Buffer.from('deep and long\n'.repeat(100));
  files[UNICODE] = Buffer.from('unicode name\n');
  for (const [name, data] of Object.entries(files)) await writeFile(path.join(tree, name), data);
  await symlink('small.txt', path.join(tree, 'rel-link'));
  await symlink('../small.txt', path.join(tree, 'sub', 'up-link'));
  await symlink(`/${LONG_NAME}`, path.join(tree, 'abs-link'));
  await link(path.join(tree, 'sub', 'big.bin'), path.join(tree, 'hard.bin'));
  await symlink('loop-b', path.join(tree, 'loop-a'));
  await symlink('loop-a', path.join(tree, 'loop-b'));
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

async function gnuTar(format: string, name: string): Promise<string> {
  const out = path.join(tmp, name);
  await exec('tar', ['--format', format, '-cf', out, '-C', tree, '.']);
  return out;
}

async function expectAllFiles(idx: TarIndex): Promise<void> {
  for (const [name, data] of Object.entries(files)) {
    assert.ok(idx.has(name), `has ${name}`);
    assert.deepEqual(await readAll(idx.openEntry(name), 1 << 30), data, `content of ${name}`);
    assert.deepEqual(await readAll(idx.openEntry(`./${name}`), 1 << 30), data, `content of ./${name}`);
  }
  assert.deepEqual(await idx.readEntry('rel-link'), files['small.txt']);
  assert.deepEqual(await idx.readEntry('sub/up-link'), files['small.txt']);
  assert.deepEqual(await idx.readEntry('abs-link'), files[LONG_NAME]);
  assert.deepEqual(await readAll(idx.openEntry('hard.bin'), 1 << 30), files['sub/big.bin']);
  assert.equal(idx.has('sub'), false, 'a directory is not a file');
  assert.equal(idx.has('nope'), false);
  assert.throws(() => idx.resolve('loop-a'), (e: unknown) => e instanceof HoistError && /link loop/.test(e.message));
  assert.throws(() => idx.openEntry('nope'), (e: unknown) => e instanceof HoistError && e.code === 'NOT_FOUND' && /"nope" is missing/.test(e.message));
}

for (const format of ['gnu', 'oldgnu', 'pax'] as const) {
  test(`offsets are right in a GNU tar archive (${format})`, async () => {
    const f = await gnuTar(format, `${format}.tar`);
    const idx = await TarIndex.open(f, `test:${f}`);
    try {
      assert.equal(idx.file, f, 'an uncompressed archive is read in place');
      await expectAllFiles(idx);
      const big = idx.resolve('sub/big.bin');
      assert.ok(big && big.size === files['sub/big.bin']!.length);
    } finally {
      await idx.close();
    }
  });
}

test('gzip and zstd archives are read through a temp copy that close() removes', async () => {
  const plain = await readFile(await gnuTar('pax', 'for-compress.tar'));
  for (const [name, bytes] of [['a.tar.gz', gzipSync(plain)], ['a.tar.zst', zstdCompressSync(plain)]] as const) {
    const f = path.join(tmp, name);
    await writeFile(f, bytes);
    const idx = await TarIndex.open(f, `test:${f}`);
    assert.notEqual(idx.file, f);
    assert.equal((await stat(idx.file)).size, plain.length);
    await expectAllFiles(idx);
    await idx.close();
    await assert.rejects(stat(idx.file), /ENOENT/);
  }
});

test('normalizeTarPath', () => {
  assert.equal(normalizeTarPath('./a//b/'), 'a/b');
  assert.equal(normalizeTarPath('/blobs/sha256/x'), 'blobs/sha256/x');
  assert.equal(normalizeTarPath('../../etc/passwd'), 'etc/passwd');
  assert.equal(normalizeTarPath('./'), '');
});

async function rejectsWith(file: string, re: RegExp, code?: string): Promise<void> {
  await assert.rejects(TarIndex.open(file, `oci-archive:${file}`), (e: unknown) => {
    assert.ok(e instanceof HoistError, `HoistError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.ok(e.message.startsWith(`oci-archive:${file}: `), `names the file: ${e.message}`);
    assert.match(e.message, re);
    if (code) assert.equal(e.code, code);
    return true;
  });
}

test('bad input: missing, directory, empty, not a tar, truncated, corrupt gzip, bzip2', async () => {
  await rejectsWith(path.join(tmp, 'missing.tar'), /no such file/, 'NOT_FOUND');
  await rejectsWith(tree, /is a directory/);
  const empty = path.join(tmp, 'empty.tar');
  await writeFile(empty, '');
  await rejectsWith(empty, /empty/);
  const text = path.join(tmp, 'text.tar');
  await writeFile(text, 'not a tar\n'.repeat(100));
  await rejectsWith(text, /not a tar archive \(bad header at byte 0\)/, 'BAD_ARCHIVE');
  const shortText = path.join(tmp, 'short.tar');
  await writeFile(shortText, 'tiny');
  await rejectsWith(shortText, /truncated|not a tar/, 'BAD_ARCHIVE');

  const cut = path.join(tmp, 'cut.tar');
  await writeFile(cut, await readFile(await gnuTar('pax', 'to-cut.tar')));
  await truncate(cut, 100_000); // inside sub/big.bin
  await rejectsWith(cut, /truncated/, 'BAD_ARCHIVE');

  const badGz = path.join(tmp, 'bad.tar.gz');
  await writeFile(badGz, gzipSync(Buffer.alloc(10_000, 1)).subarray(0, 30));
  await rejectsWith(badGz, /gzip-compressed archive is corrupt or truncated/);

  const bz = path.join(tmp, 'x.tar.bz2');
  await writeFile(bz, 'BZh91AY&SY');
  await rejectsWith(bz, /bzip2-compressed/, 'UNSUPPORTED');

  // Garbage after a valid first entry is reported as corruption, not as "not a tar".
  const one = path.join(tmp, 'one.tar');
  await exec('tar', ['--format', 'ustar', '-cf', one, '-C', tree, 'small.txt']);
  const garbage = path.join(tmp, 'garbage.tar');
  await writeFile(garbage, Buffer.concat([(await readFile(one)).subarray(0, 1024), Buffer.alloc(512, 0x41), Buffer.alloc(1024)]));
  await rejectsWith(garbage, /the tar archive is corrupt \(bad header at byte 1024\)/);
});
