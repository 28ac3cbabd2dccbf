import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Readable, type Duplex, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import {
  autoDecompress, compressStream, decompressStream, detectCompression, type DetectedCompression,
} from '../../src/layer/compression.ts';
import { HoistError } from '../../src/errors.ts';

/** A real layer: a tar holding busybox (about a megabyte, partly compressible) and a few small files. */
async function makeTar(): Promise<Buffer> {
  const p = tarPack();
  const big = existsSync('/bin/busybox') ? readFileSync('/bin/busybox') : readFileSync(process.execPath).subarray(0, 2 << 20);
  p.entry({ name: 'bin/busybox', mode: 0o755, mtime: new Date(0) }, big);
  for (let i = 0; i < 50; i++) p.entry({ name: `etc/file${i}`, mtime: new Date(0) }, `line ${i}\n`.repeat(i));
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const tar = await makeTar();

/** Runs bytes through a stream, fed in chunks of `chunkSize` to exercise boundaries. */
async function through(s: Transform | Duplex, input: Buffer, chunkSize = 64 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunkSize) parts.push(input.subarray(i, i + chunkSize));
  const out: Buffer[] = [];
  await pipeline(Readable.from(parts), s, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) out.push(c);
  });
  return Buffer.concat(out);
}

/** Runs a real command as a filter. */
const run = (cmd: string, args: string[], input: Buffer) => execFileSync(cmd, args, { input, maxBuffer: 1 << 28 });

test('detectCompression by magic, on what the real tools write', () => {
  assert.equal(detectCompression(run('gzip', ['-c'], tar)), 'gzip');
  assert.equal(detectCompression(run('zstd', ['-c', '-q'], tar)), 'zstd');
  assert.equal(detectCompression(run('bzip2', ['-c'], tar)), 'bzip2');
  assert.equal(detectCompression(run('xz', ['-c'], tar)), 'xz');
  assert.equal(detectCompression(tar), 'none');
  assert.equal(detectCompression(new Uint8Array()), 'none');
  assert.equal(detectCompression(new Uint8Array([0x1f])), 'none');
  assert.equal(detectCompression(new Uint8Array([0x28, 0xb5, 0x2f])), 'none');
  assert.equal(detectCompression(Buffer.from('{"schemaVersion":2}')), 'none');
});

for (const [kind, cli] of [['gzip', ['gzip']], ['zstd', ['zstd', '-q']]] as const) {
  test(`${kind}: ours → ${cli[0]} -d and ${cli[0]} → ours`, async () => {
    const ours = await through(compressStream(kind), tar);
    assert.equal(detectCompression(ours), kind);
    assert.ok(ours.length < tar.length);
    assert.ok(run(cli[0], [...cli.slice(1), '-d', '-c'], ours).equals(tar), `${cli[0]} reads our ${kind}`);

    const theirs = run(cli[0], [...cli.slice(1), '-c'], tar);
    assert.ok((await through(decompressStream(kind), theirs)).equals(tar), `we read ${cli[0]}'s output`);
    assert.ok((await through(autoDecompress(), theirs)).equals(tar), 'autoDecompress reads it too');
  });
}

test('compression level is applied', async () => {
  const stored = await through(compressStream('gzip', 0), tar);
  const best = await through(compressStream('gzip', 9), tar);
  assert.ok(stored.length > tar.length, 'level 0 stores');
  assert.ok(best.length < tar.length);
  assert.ok((await through(decompressStream('gzip'), stored)).equals(tar));
  const z1 = await through(compressStream('zstd', 1), tar);
  const z19 = await through(compressStream('zstd', 19), tar);
  assert.notEqual(z1.length, z19.length);
  assert.ok((await through(decompressStream('zstd'), z19)).equals(tar));
});

test('multi-member gzip (pigz, concatenated files) decodes whole', async () => {
  const half = tar.length >> 1;
  const two = Buffer.concat([run('gzip', ['-c'], tar.subarray(0, half)), run('gzip', ['-c'], tar.subarray(half))]);
  assert.ok((await through(autoDecompress(), two)).equals(tar));
});

test('autoDecompress: byte-at-a-time start, pass-through and empty input', async () => {
  const gz = run('gzip', ['-c'], tar.subarray(0, 20_000));
  assert.ok((await through(autoDecompress(), gz, 1)).equals(tar.subarray(0, 20_000)));
  const zs = run('zstd', ['-c', '-q'], tar.subarray(0, 20_000));
  assert.ok((await through(autoDecompress(), zs, 3)).equals(tar.subarray(0, 20_000)));
  assert.ok((await through(autoDecompress(), tar)).equals(tar), 'an uncompressed tar passes through unchanged');
  assert.ok((await through(autoDecompress(), tar.subarray(0, 4))).equals(tar.subarray(0, 4)), 'shorter than any magic');
  assert.equal((await through(autoDecompress(), Buffer.alloc(0))).length, 0);
});

test('autoDecompress stops inflating while nobody reads (backpressure)', async () => {
  const size = 64 << 20;
  const bomb = run('gzip', ['-c'], Buffer.alloc(size)); // 64 MiB of zeros in ~64 KiB
  const s = autoDecompress();
  s.end(bomb);
  // Let it run until the buffered output stops growing.
  let last = -1;
  while (s.readableLength !== last) {
    last = s.readableLength;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.ok(s.readableLength < 4 << 20, `buffered ${s.readableLength} bytes without a reader`);
  let total = 0;
  for await (const c of s) {
    total += (c as Buffer).length;
    if ((c as Buffer).some((b) => b !== 0)) assert.fail('non-zero byte');
  }
  assert.equal(total, size);
});

test('truncated or corrupt data fails with a HoistError naming the layer', async () => {
  const gz = run('gzip', ['-c'], tar);
  for (const [name, data] of [
    ['truncated gzip', gz.subarray(0, gz.length >> 1)],
    ['corrupt gzip', Buffer.concat([gz.subarray(0, 20), Buffer.alloc(200, 0xff), gz.subarray(220)])],
    ['truncated zstd', run('zstd', ['-c', '-q'], tar).subarray(0, 5000)],
  ] as const) {
    await assert.rejects(through(autoDecompress('layer sha256:abc'), data), (e: unknown) => {
      assert.ok(e instanceof HoistError, `${name}: ${String(e)}`);
      assert.equal(e.code, 'BAD_COMPRESSION');
      assert.ok(e.message.startsWith('layer sha256:abc: '), e.message);
      assert.ok(e.message.includes('corrupt or truncated'), e.message);
      return true;
    }, name);
  }
});

test('bzip2 and xz are recognised but not supported yet', async () => {
  for (const kind of ['bzip2', 'xz'] as DetectedCompression[]) {
    assert.throws(() => decompressStream(kind, 'layer x'), (e: unknown) =>
      e instanceof HoistError && e.code === 'UNSUPPORTED_COMPRESSION' && e.message.startsWith('layer x: ') && e.message.includes(kind));
    assert.throws(() => compressStream(kind), (e: unknown) => e instanceof HoistError && e.code === 'UNSUPPORTED_COMPRESSION');
    const data = run(kind, ['-c'], tar.subarray(0, 1000));
    await assert.rejects(through(autoDecompress('layer y'), data), (e: unknown) =>
      e instanceof HoistError && e.code === 'UNSUPPORTED_COMPRESSION' && e.message.startsWith('layer y: '));
  }
});
