import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync, chmodSync, utimesSync, lstatSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { extract as tarExtract } from 'tar-stream';
import { copyLayer, planCopy, splitParentsPivot, type CopyLayerOptions, type CopySource } from '../../src/build/copy-layer.ts';
import type { SourceEntry, SourceMatch } from '../../src/build/source.ts';
import { HoistError } from '../../src/errors.ts';
import { keepRawPaxXattrs, tarXattrs } from '../../src/layer/xattrs.ts';

// ---- helpers: a real context dir, a real image rootfs dir, real tar streams read back ----

interface Got {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname?: string;
  content: string;
  pax: Record<string, string> | undefined;
  xattrs: Map<string, Buffer>;
}

async function readTar(s: Readable): Promise<Got[]> {
  const ex = tarExtract();
  keepRawPaxXattrs(ex);
  const out: Got[] = [];
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('error', () => {}); // the pipeline reports it
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      const g: Got = {
        name: h.name, type: h.type ?? 'file', mode: (h.mode ?? 0) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0,
        mtime: (h.mtime?.getTime() ?? 0) / 1000, content: Buffer.concat(chunks).toString(), pax: (h.pax ?? undefined) as Record<string, string> | undefined, xattrs: tarXattrs(h.pax as Record<string, string> | undefined),
      };
      if (h.linkname) g.linkname = h.linkname;
      out.push(g);
      next();
    });
  });
  await pipeline(s, ex);
  return out;
}

async function bytesOf(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function entryAt(root: string, rel: string): SourceEntry {
  const abs = path.join(root, rel);
  const st = lstatSync(abs);
  const type = st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'file';
  const e: SourceEntry = { rel, type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: type === 'file' ? st.size : 0, mtimeMs: st.mtimeMs };
  if (type === 'symlink') e.linkname = readlinkSync(abs);
  if (type === 'file') e.abs = abs;
  return e;
}

/** The tiny walker: one match (the path and, for a directory, its subtree in walk order). */
function matchOf(root: string, rel: string): SourceMatch {
  const entries: SourceEntry[] = [];
  const walk = (r: string): void => {
    const e = entryAt(root, r);
    entries.push(e);
    if (e.type === 'directory') for (const n of readdirSync(path.join(root, r)).sort()) walk(r === '' ? n : `${r}/${n}`);
  };
  walk(rel);
  return { rel, entries };
}

/** The image below the layer: a real rootfs directory, stat'ed without following symlinks. */
function lowerOf(rootfs: string): CopyLayerOptions['lower'] {
  return async (abs) => {
    try {
      return entryAt(rootfs, abs.replace(/^\/+/, ''));
    } catch {
      return undefined;
    }
  };
}

const T = (s: number): Date => new Date(s * 1000);
const NOW = new Date(1_700_000_000_000);

function mk(root: string, rel: string, spec: { dir?: boolean; content?: string; link?: string; mode?: number; mtime?: number; owner?: [number, number] }): void {
  const abs = path.join(root, rel);
  mkdirSync(path.dirname(abs), { recursive: true });
  if (spec.link !== undefined) {
    symlinkSync(spec.link, abs);
    if (spec.owner) tryOwn(() => lchownSync(abs, ...spec.owner!));
    return;
  }
  if (spec.dir) mkdirSync(abs, { recursive: true });
  else writeFileSync(abs, spec.content ?? '');
  if (spec.mode !== undefined) chmodSync(abs, spec.mode);
  if (spec.owner) tryOwn(() => chownSync(abs, ...spec.owner!));
  if (spec.mtime !== undefined) utimesSync(abs, T(spec.mtime), T(spec.mtime));
}

/** chown needs root (CI runs as root); elsewhere the files keep the caller's ids and the tests read them back. */
function tryOwn(f: () => void): void {
  try {
    f();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
  }
}

const ids = (rel: string, root = ctx): string => {
  const st = lstatSync(path.join(root, rel));
  return `${st.uid}:${st.gid}`;
};

const brief = (g: Got): string => `${g.type} ${g.name} ${g.mode.toString(8)} ${g.uid}:${g.gid} ${g.mtime}${g.linkname ? ` -> ${g.linkname}` : ''}${g.type === 'file' ? ` "${g.content}"` : ''}`;

let base: string;
let ctx: string;
let rootfs: string;

before(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'hoist-copy-layer-'));
  ctx = path.join(base, 'ctx');
  rootfs = path.join(base, 'rootfs');
  // The build context; owned by 1000:1000 on disk, which COPY must not carry (BuildKit sends context files as 0:0).
  mk(ctx, 'a.txt', { content: 'A', mode: 0o644, mtime: 1_000_000_000, owner: [1000, 1000] });
  mk(ctx, 'dir/b.txt', { content: 'BB', mode: 0o600, mtime: 1_000_000_100, owner: [1000, 1000] });
  mk(ctx, 'dir/link', { link: 'b.txt', owner: [1000, 1000] });
  mk(ctx, 'dir/sub/c.sh', { content: '#!/bin/sh', mode: 0o755, mtime: 1_000_000_200, owner: [1000, 1000] });
  mk(ctx, 'dir/sub', { dir: true, mode: 0o700, mtime: 1_000_000_300, owner: [1000, 1000] });
  mk(ctx, 'dir', { dir: true, mode: 0o750, mtime: 1_100_000_000, owner: [1000, 1000] });
  mk(ctx, 'x/a.txt', { content: 'X-A', mode: 0o644, mtime: 1_000_000_400 });
  mk(ctx, 'clash/local', { content: 'a file named local', mtime: 1_000_000_500 });
  mk(ctx, 'clash2/old.txt/inner', { content: 'inner', mtime: 1_000_000_500 });
  mk(ctx, 'src/app/x.js', { content: 'x', mode: 0o644, mtime: 1_000_000_600 });
  mk(ctx, 'src/app', { dir: true, mode: 0o751, mtime: 1_000_000_700 });
  mk(ctx, 'src', { dir: true, mode: 0o711, mtime: 1_000_000_800 });
  // The image.
  utimesSync(ctx, T(1_000_000_900), T(1_000_000_900));
  mk(rootfs, 'usr/local', { dir: true, mode: 0o755, mtime: 500_000_000 });
  mk(rootfs, 'usr', { dir: true, mode: 0o755, mtime: 500_000_001 });
  mk(rootfs, 'etc', { dir: true, mode: 0o755, mtime: 500_000_002 });
  mk(rootfs, 'run', { dir: true, mode: 0o755, mtime: 500_000_003 });
  mk(rootfs, 'var/run', { link: '/run' });
  mk(rootfs, 'app-file', { content: 'old', mtime: 500_000_004 });
  mk(rootfs, 'existing-dir/old.txt', { content: 'old', mtime: 500_000_005 });
  mk(rootfs, 'existing-dir', { dir: true, mode: 0o700, mtime: 500_000_006, owner: [123, 456] });
});

after(() => rmSync(base, { recursive: true, force: true }));

async function layer(matches: CopySource[][], opts: Partial<CopyLayerOptions> & { dest: string }): Promise<Got[]> {
  return readTar(copyLayer(matches, { sourceCount: matches.length, lower: lowerOf(rootfs), now: NOW, ...opts }));
}

const NOW_S = NOW.getTime() / 1000;

describe('copyLayer', () => {
  test('a directory source copies its contents into dest; missing parents are 0755, 0:0, stamped now; entries keep modes, mtimes and symlinks', async () => {
    const got = await layer([[matchOf(ctx, 'dir')]], { dest: '/opt/app/' });
    assert.deepEqual(got.map(brief), [
      `directory opt/ 755 0:0 ${NOW_S}`,
      // The dest takes the source directory's mtime (fsutil restores it) but not its mode.
      'directory opt/app/ 755 0:0 1100000000',
      'file opt/app/b.txt 600 0:0 1000000100 "BB"',
      `symlink opt/app/link 777 0:0 ${Math.floor(lstatSync(path.join(ctx, 'dir/link')).mtimeMs / 1000)} -> b.txt`,
      'directory opt/app/sub/ 700 0:0 1000000300',
      'file opt/app/sub/c.sh 755 0:0 1000000200 "#!/bin/sh"',
    ]);
  });

  test('a file goes to dest/basename when dest ends in / or is a directory in the image, else to dest', async () => {
    const a = [[matchOf(ctx, 'a.txt')]];
    assert.deepEqual((await layer(a, { dest: '/usr/' })).map(brief), ['directory usr/ 755 0:0 500000001', 'file usr/a.txt 644 0:0 1000000000 "A"']);
    assert.deepEqual((await layer(a, { dest: '/usr' })).map(brief), ['directory usr/ 755 0:0 500000001', 'file usr/a.txt 644 0:0 1000000000 "A"']);
    assert.deepEqual((await layer(a, { dest: '/renamed' })).map(brief), ['file renamed 644 0:0 1000000000 "A"']);
    assert.deepEqual((await layer(a, { dest: '/app-file' })).map(brief), ['file app-file 644 0:0 1000000000 "A"']);
    assert.deepEqual((await layer(a, { dest: '/new/dir/name' })).map(brief), [
      `directory new/ 755 0:0 ${NOW_S}`,
      `directory new/dir/ 755 0:0 ${NOW_S}`,
      'file new/dir/name 644 0:0 1000000000 "A"',
    ]);
  });

  test('existing parents come out with the image metadata; new ones below them are created', async () => {
    const got = await layer([[matchOf(ctx, 'a.txt')]], { dest: '/usr/local/bin/' });
    assert.deepEqual(got.map(brief), [
      'directory usr/ 755 0:0 500000001',
      'directory usr/local/ 755 0:0 500000000',
      `directory usr/local/bin/ 755 0:0 ${NOW_S}`,
      'file usr/local/bin/a.txt 644 0:0 1000000000 "A"',
    ]);
  });

  test('an existing dest directory keeps its mode and owner and takes the source directory mtime', async () => {
    const got = await layer([[matchOf(ctx, 'dir/sub')]], { dest: '/existing-dir/' });
    assert.deepEqual(got.map(brief), [`directory existing-dir/ 700 ${ids('existing-dir', rootfs)} 1000000300`, 'file existing-dir/c.sh 755 0:0 1000000200 "#!/bin/sh"']);
  });

  test('the dest is resolved through the image symlinks (/var/run -> /run)', async () => {
    const got = await layer([[matchOf(ctx, 'a.txt')]], { dest: '/var/run/' });
    assert.deepEqual(got.map(brief), ['directory run/ 755 0:0 500000003', 'file run/a.txt 644 0:0 1000000000 "A"']);
  });

  test('--chown owns every copied entry and the created parents, not the existing ones', async () => {
    const got = await layer([[matchOf(ctx, 'dir')]], { dest: '/usr/local/app/', chown: { uid: 1234, gid: 5678 } });
    assert.deepEqual(got.map((g) => `${g.name} ${g.uid}:${g.gid}`), [
      `usr/ ${ids('usr', rootfs)}`, `usr/local/ ${ids('usr/local', rootfs)}`, 'usr/local/app/ 1234:5678', 'usr/local/app/b.txt 1234:5678', 'usr/local/app/link 1234:5678',
      'usr/local/app/sub/ 1234:5678', 'usr/local/app/sub/c.sh 1234:5678',
    ]);
  });

  test('without --chown, context files are 0:0 and a stage or image keeps its owners (keepOwner)', async () => {
    const got = await layer([[matchOf(ctx, 'dir')]], { dest: '/d/', keepOwner: true });
    assert.deepEqual(got.map((g) => `${g.name} ${g.uid}:${g.gid}`), ['d/ 0:0', `d/b.txt ${ids('dir/b.txt')}`, `d/link ${ids('dir/link')}`, `d/sub/ ${ids('dir/sub')}`, `d/sub/c.sh ${ids('dir/sub/c.sh')}`]);
    assert.equal(ids('dir/b.txt'), process.getuid?.() === 0 ? '1000:1000' : ids('dir/b.txt'));
  });

  test('octal --chmod applies to files and directories (not symlinks) and to created parents (permission bits only)', async () => {
    const got = await layer([[matchOf(ctx, 'dir')]], { dest: '/p/q/', chmod: '4750' });
    assert.deepEqual(got.map((g) => `${g.name} ${g.mode.toString(8)}`), ['p/ 750', 'p/q/ 750', 'p/q/b.txt 4750', 'p/q/link 777', 'p/q/sub/ 4750', 'p/q/sub/c.sh 4750']);
  });

  test('symbolic --chmod edits each mode; created parents stay 0755', async () => {
    const got = await layer([[matchOf(ctx, 'dir')]], { dest: '/p/q/', chmod: 'go-rwx,u+x' });
    assert.deepEqual(got.map((g) => `${g.name} ${g.mode.toString(8)}`), ['p/ 755', 'p/q/ 755', 'p/q/b.txt 700', 'p/q/link 777', 'p/q/sub/ 700', 'p/q/sub/c.sh 700']);
  });

  test('a later source overrides an earlier one at the same path; the path is written once', async () => {
    const got = await layer([[matchOf(ctx, 'a.txt')], [matchOf(ctx, 'x/a.txt')]], { dest: '/d/' });
    assert.deepEqual(got.map(brief), [`directory d/ 755 0:0 ${NOW_S}`, 'file d/a.txt 644 0:0 1000000400 "X-A"']);
  });

  test('several sources need a dest ending in /, as BuildKit says', () => {
    assert.throws(() => copyLayer([[matchOf(ctx, 'a.txt')], [matchOf(ctx, 'x/a.txt')]], { dest: '/d', sourceCount: 2, lower: lowerOf(rootfs) }), (e: unknown) => {
      assert.ok(e instanceof HoistError);
      assert.equal(e.message, 'When using COPY with more than one source file, the destination must be a directory and end with a /');
      return true;
    });
    assert.throws(() => copyLayer([], { dest: '/d', sourceCount: 2, lower: lowerOf(rootfs), instruction: 'ADD' }), /When using ADD with more than one source file/);
  });

  test('a file over an image directory, or a directory over an image file, fails with one line', async () => {
    await assert.rejects(layer([[matchOf(ctx, 'clash')]], { dest: '/usr/' }), (e: unknown) => {
      assert.ok(e instanceof HoistError);
      assert.equal(e.code, 'FILE_OVER_DIR');
      assert.match(e.message, /^COPY to \/usr\/: cannot replace directory \/usr\/local with a file; /);
      return true;
    });
    await assert.rejects(layer([[matchOf(ctx, 'clash2')]], { dest: '/existing-dir/' }), (e: unknown) => {
      assert.ok(e instanceof HoistError);
      assert.equal(e.code, 'DIR_OVER_FILE');
      assert.match(e.message, /cannot copy a directory to \/existing-dir\/old\.txt, which is a file in the image/);
      return true;
    });
    await assert.rejects(layer([[matchOf(ctx, 'a.txt')]], { dest: '/app-file/sub/' }), (e: unknown) => e instanceof HoistError && e.code === 'NOT_A_DIRECTORY' && /\/app-file is not a directory/.test(e.message));
  });

  test('mtimes past the clamp become the clamp', async () => {
    const got = await layer([[matchOf(ctx, 'dir')]], { dest: '/d/', mtimeClamp: T(1_000_000_150) });
    assert.deepEqual(got.map((g) => `${g.name} ${g.mtime}`), ['d/ 1000000150', 'd/b.txt 1000000100', `d/link 1000000150`, 'd/sub/ 1000000150', 'd/sub/c.sh 1000000150']);
  });

  test('a heredoc (content in memory) is written like a file', async () => {
    const content = Buffer.from('hello\nworld\n');
    const m: SourceMatch = { rel: 'EOF', entries: [{ rel: 'EOF', type: 'file', mode: 0o644, uid: 0, gid: 0, size: content.length, mtimeMs: 1_234_000, content }] };
    const got = await layer([[m]], { dest: '/etc/motd' });
    assert.deepEqual(got.map(brief), ['directory etc/ 755 0:0 500000002', 'file etc/motd 644 0:0 1234 "hello\nworld\n"']);
  });

  test('--parents keeps paths below the /./ pivot; in-between directories take the source metadata', async () => {
    assert.deepEqual(splitParentsPivot('src/./app/*.js'), { pivot: 'src', pattern: 'app/*.js' });
    assert.deepEqual(splitParentsPivot('src/app/x.js'), { pivot: '', pattern: 'src/app/x.js' });
    const stat = async (_w: number, rel: string): Promise<SourceEntry | undefined> => entryAt(ctx, rel);
    const withPivot = await layer([[matchOf(ctx, 'src/app/x.js')]], { dest: '/out', parents: { pivots: ['src'], stat } });
    assert.deepEqual(withPivot.map(brief), [
      'directory out/ 755 0:0 1000000800', // created, then stamped with the pivot's mtime
      'directory out/app/ 751 0:0 1000000700',
      'file out/app/x.js 644 0:0 1000000600 "x"',
    ]);
    const noPivot = await layer([[matchOf(ctx, 'src/app/x.js')]], { dest: '/out/', parents: { stat } });
    assert.deepEqual(noPivot.map(brief), [
      'directory out/ 755 0:0 1000000900', // the pivot is the source root
      'directory out/src/ 711 0:0 1000000800',
      'directory out/src/app/ 751 0:0 1000000700',
      'file out/src/app/x.js 644 0:0 1000000600 "x"',
    ]);
    // A matched directory lands whole (not flattened) below the pivot.
    const dir = await layer([[matchOf(ctx, 'src/app')]], { dest: '/out/', parents: { pivots: ['src'], stat } });
    assert.deepEqual(dir.map((g) => g.name), ['out/', 'out/app/', 'out/app/x.js']);
  });

  test('headers are normalized: no user/group names, no pax unless needed; pax for long names, big ids and xattrs', async () => {
    const raw = await bytesOf(copyLayer([[matchOf(ctx, 'dir')]], { dest: '/d/', sourceCount: 1, lower: lowerOf(rootfs), now: NOW }));
    let headers = 0;
    for (let off = 0; off + 512 <= raw.length; off += 512) {
      const h = raw.subarray(off, off + 512);
      if (h.every((b) => b === 0)) break;
      headers++;
      assert.notEqual(String.fromCharCode(h[156]!), 'x', 'no pax header');
      assert.ok(h.subarray(265, 297).every((b) => b === 0), 'empty uname');
      assert.ok(h.subarray(297, 329).every((b) => b === 0), 'empty gname');
      const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/, '').trim() || '0', 8);
      off += Math.ceil(size / 512) * 512;
    }
    assert.equal(headers, 5);

    const long = `${'deep/'.repeat(60)}file.txt`; // past ustar's 155+100
    const content = Buffer.from('long');
    const m: SourceMatch = {
      rel: 'big', entries: [{ rel: 'big', type: 'file', mode: 0o644, uid: 3_000_000, gid: 7, size: 4, mtimeMs: 0, content, xattrs: { 'security.capability': Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0x80]) } }],
    };
    const m2: SourceMatch = { rel: 'l', entries: [{ rel: 'l', type: 'file', mode: 0o600, uid: 0, gid: 0, size: 4, mtimeMs: 0, content }] };
    const got = await readTar(copyLayer([[m], [m2]], { dest: '/', sourceCount: 2, lower: lowerOf(rootfs), keepOwner: true, now: NOW }));
    assert.equal(got.length, 2);
    const big = got.find((g) => g.name === 'big')!;
    assert.equal(big.pax?.uid, '3000000'); // (tar-stream leaves the clamped ustar field in .uid)
    assert.deepEqual(big.xattrs.get('security.capability'), Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0x80]));
    const got2 = await readTar(copyLayer([[{ rel: 'l', entries: [{ ...m2.entries[0]!, rel: 'l' }] }]], { dest: `/${long}`, sourceCount: 1, lower: lowerOf(rootfs), now: NOW }));
    assert.equal(got2.at(-1)!.name, long);
    assert.equal(got2.at(-1)!.pax?.path, long);
    assert.equal(got2.length, 61);
  });

  test('the same inputs give the same bytes, and GNU tar reads them', async () => {
    const run = (): Promise<Buffer> => bytesOf(copyLayer([[matchOf(ctx, 'dir')], [matchOf(ctx, 'a.txt')]], { dest: '/usr/local/x/', sourceCount: 2, lower: lowerOf(rootfs), now: NOW }));
    const [one, two] = [await run(), await run()];
    assert.ok(one.equals(two));
    const list = spawnSync('tar', ['-tvf', '-', '--numeric-owner'], { input: one });
    assert.equal(list.status, 0, list.stderr.toString());
    const names = list.stdout.toString().trim().split('\n').map((l) => l.replace(/ -> .*$/, '').split(/\s+/).at(-1));
    assert.deepEqual(names, ['usr/', 'usr/local/', 'usr/local/x/', 'usr/local/x/a.txt', 'usr/local/x/b.txt', 'usr/local/x/link', 'usr/local/x/sub/', 'usr/local/x/sub/c.sh']);
    // Extracted by tar: contents and modes as in the layer.
    const out = path.join(base, 'gnu-extract');
    mkdirSync(out);
    const x = spawnSync('tar', ['-xpf', '-', '-C', out], { input: one });
    assert.equal(x.status, 0, x.stderr.toString());
    assert.equal(statSync(path.join(out, 'usr/local/x/sub/c.sh')).mode & 0o7777, 0o755);
    assert.equal(readlinkSync(path.join(out, 'usr/local/x/link')), 'b.txt');
  });

  test('a file that changed size since it was matched fails the stream with one line', async () => {
    const f = path.join(base, 'shrinks.txt');
    writeFileSync(f, 'twelve bytes');
    const m: SourceMatch = { rel: 'shrinks.txt', entries: [{ rel: 'shrinks.txt', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 12, mtimeMs: 0, abs: f }] };
    writeFileSync(f, 'six b');
    await assert.rejects(readTar(copyLayer([[m]], { dest: '/x', sourceCount: 1, lower: lowerOf(rootfs) })), (e: unknown) => e instanceof HoistError && e.code === 'SOURCE_CHANGED' && !e.message.includes('\n'));
  });

  test('planCopy reports problems before any byte is written', async () => {
    await assert.rejects(planCopy([[matchOf(ctx, 'clash')]], { dest: '/usr/', sourceCount: 1, lower: lowerOf(rootfs) }), /cannot replace directory \/usr\/local/);
    const plan = await planCopy([[matchOf(ctx, 'a.txt')]], { dest: '/usr/', sourceCount: 1, lower: lowerOf(rootfs) });
    assert.deepEqual(plan.entries.map((e) => `${e.path} ${e.node.lower ? 'image' : 'layer'}`), ['usr image', 'usr/a.txt layer']);
    await plan.close();
  });
});

