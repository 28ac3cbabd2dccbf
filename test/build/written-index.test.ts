/**
 * A COPY layer's index is made from the headers as they are written (copy-layer.ts onEntry + writtenIndexEntry)
 * instead of parsing the tar back: it must be exactly what indexTar() reads from the same tar, or a later COPY
 * --from would read the wrong entry or metadata.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { copyLayer, type CopySource } from '../../src/build/copy-layer.ts';
import { indexTar, writtenIndexEntry, type IndexEntry, type TarHeader } from '../../src/build/layer-tree.ts';
import type { SourceEntry } from '../../src/build/source.ts';

const NOW = new Date(1_700_000_000_000);
const LONG = `deep/${'x'.repeat(60)}/${'y'.repeat(60)}/file-with-a-name-past-ustar.txt`;

function file(rel: string, content: string, extra: Partial<SourceEntry> = {}): SourceEntry {
  return { rel, type: 'file', mode: 0o644, uid: 0, gid: 0, size: Buffer.byteLength(content), mtimeMs: 1_600_000_000_500, content: Buffer.from(content), ...extra };
}
function dir(rel: string, extra: Partial<SourceEntry> = {}): SourceEntry {
  return { rel, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtimeMs: 1_600_000_000_000, ...extra };
}

async function both(matches: CopySource[][], lower: Record<string, SourceEntry>, clamp?: Date): Promise<{ written: IndexEntry[]; read: IndexEntry[] }> {
  const written: IndexEntry[] = [];
  let n = 0;
  const tar = copyLayer(matches, {
    dest: '/app/', sourceCount: matches.length, now: NOW, keepOwner: true,
    lower: async (abs) => lower[abs.replace(/^\/+/, '')],
    ...(clamp ? { mtimeClamp: clamp } : {}),
    onEntry: (h, xattrs) => {
      const e = writtenIndexEntry(h as TarHeader, xattrs, n++, 'test layer');
      if (e !== undefined) written.push(e);
    },
  });
  const side = new PassThrough();
  const reading = indexTar(side, 'test layer');
  tar.pipe(side);
  const read = await reading;
  return { written, read };
}

test('the index written alongside equals the one read back: dirs, files, symlinks, big ids, long names, binary xattrs', async () => {
  const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0xfe, 0x00, 0x80]);
  const entries: SourceEntry[] = [
    dir('', { mode: 0o750 }),
    dir('bin'),
    file('bin/tool', '#!/bin/sh\n', { mode: 0o4755, xattrs: { 'security.capability': cap, 'user.note': Buffer.from('héllo') } }),
    { rel: 'bin/link', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtimeMs: 1_600_000_000_000, linkname: '../bin/tool' },
    file('owned', 'big ids\n', { uid: 3_000_000, gid: 3_000_001 }),
    dir('deep'),
    dir(`deep/${'x'.repeat(60)}`),
    dir(`deep/${'x'.repeat(60)}/${'y'.repeat(60)}`),
    file(LONG, 'long\n'),
    file('empty', ''),
    dir('dirx', { xattrs: { 'user.d': Buffer.from('1') } }),
  ];
  const { written, read } = await both([[{ rel: '', entries }]], {});
  assert.ok(read.length >= entries.length, `indexTar read ${read.length} entries`);
  assert.deepEqual(written, read);
  assert.ok(read.some((e) => e.p === `app/${LONG}`));
  assert.equal(read.find((e) => e.p === 'app/owned')?.u, 3_000_000);
  assert.equal(read.find((e) => e.p === 'app/bin/tool')?.x?.['security.capability'], cap.toString('base64'));
});

test('opaque markers, clamped mtimes and parents made for the destination index the same way', async () => {
  // /app exists below as a directory the copy replaces (its old contents hidden by an opaque marker).
  const lower: Record<string, SourceEntry> = { app: dir('app', { mode: 0o700 }), 'app/old': file('app/old', 'x') };
  const entries = [dir(''), file('new', 'n\n', { mtimeMs: 2_000_000_000_000 })];
  const { written, read } = await both([[{ rel: '', entries }]], lower, new Date(1_650_000_000_000));
  assert.deepEqual(written, read);
  assert.ok(read.every((e) => e.mt === undefined || e.mt <= 1_650_000_000_000), 'mtimes clamped');
});
