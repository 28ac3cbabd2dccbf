import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, linkSync, lutimesSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { expandArchives, isArchive, isArchiveMatch, openArchive } from '../../src/build/add-archive.ts';
import { fetchUrl, isGitUrl, isHttpUrl, urlFileName } from '../../src/build/add-url.ts';
import { copyLayer, type CopyLayerOptions, type CopySource } from '../../src/build/copy-layer.ts';
import type { SourceEntry, SourceMatch } from '../../src/build/source.ts';
import { HoistError } from '../../src/errors.ts';
import { tarOf, type TarEntry } from '../layer/helpers.ts';

// ---- helpers (real files, real tar streams) ----

interface Got { name: string; type: string; mode: number; uid: number; gid: number; mtime: number; linkname?: string; content: string }

async function readTar(s: Readable): Promise<Got[]> {
  const ex = tarExtract();
  const out: Got[] = [];
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('error', () => {});
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      const g: Got = { name: h.name, type: h.type ?? 'file', mode: (h.mode ?? 0) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0, mtime: (h.mtime?.getTime() ?? 0) / 1000, content: Buffer.concat(chunks).toString() };
      if (h.linkname) g.linkname = h.linkname;
      out.push(g);
      next();
    });
  });
  await pipeline(s, ex);
  return out;
}

const brief = (g: Got): string => `${g.type} ${g.name} ${g.mode.toString(8)} ${g.uid}:${g.gid} ${g.mtime}${g.linkname ? ` -> ${g.linkname}` : ''}${g.type === 'file' ? ` "${g.content}"` : ''}`;

function fileEntry(abs: string, rel: string): SourceEntry {
  const st = statSync(abs);
  return { rel, type: 'file', mode: st.mode & 0o7777, uid: 0, gid: 0, size: st.size, mtimeMs: st.mtimeMs, abs };
}

function fileMatch(abs: string, rel = path.basename(abs)): SourceMatch {
  return { rel, entries: [fileEntry(abs, rel)] };
}

function lowerOf(rootfs: string): CopyLayerOptions['lower'] {
  return async (abs) => {
    const p = path.join(rootfs, abs);
    try {
      const st = lstatSync(p);
      const type = st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'file';
      const e: SourceEntry = { rel: abs.slice(1), type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: type === 'file' ? st.size : 0, mtimeMs: st.mtimeMs };
      if (type === 'symlink') e.linkname = readlinkSync(p);
      if (type === 'file') e.abs = p;
      return e;
    } catch {
      return undefined;
    }
  };
}

/** An archive made entry by entry with tar-stream (for names GNU tar would refuse to write), written to `file`. */
async function tarFile(file: string, entries: readonly TarEntry[]): Promise<void> {
  writeFileSync(file, await tarOf(entries));
}

const NOW = new Date(1_700_000_000_000);
const NOW_S = 1_700_000_000;
const T = (s: number): Date => new Date(s * 1000);

let base: string;
let rootfs: string;
let tmp: string;

function setTimes(p: string, s: number): void {
  utimesSync(p, T(s), T(s));
}

before(() => {
  base = mkdtempSync(path.join(os.tmpdir(), 'hoist-add-'));
  rootfs = path.join(base, 'rootfs');
  tmp = path.join(base, 'tmp');
  mkdirSync(path.join(rootfs, 'opt/dir'), { recursive: true });
  writeFileSync(path.join(rootfs, 'opt/dir/old.txt'), 'old');
  setTimes(path.join(rootfs, 'opt/dir'), 400_000_000);
  chmodSync(path.join(rootfs, 'opt'), 0o755);
  setTimes(path.join(rootfs, 'opt'), 400_000_001);

  // A tree to archive with the real tar: modes, a set-uid file, a symlink, a hard link, a whiteout-looking name.
  const tree = path.join(base, 'tree');
  mkdirSync(path.join(tree, 'bin'), { recursive: true });
  mkdirSync(path.join(tree, 'd'));
  writeFileSync(path.join(tree, 'top.txt'), 'top');
  chmodSync(path.join(tree, 'top.txt'), 0o640);
  writeFileSync(path.join(tree, 'bin/tool'), 'tool');
  chmodSync(path.join(tree, 'bin/tool'), 0o4755);
  writeFileSync(path.join(tree, 'd/f.txt'), 'eff');
  linkSync(path.join(tree, 'd/f.txt'), path.join(tree, 'd/hard'));
  symlinkSync('f.txt', path.join(tree, 'd/ln'));
  writeFileSync(path.join(tree, '.wh.gone'), '');
  chmodSync(path.join(tree, 'd'), 0o750);
  chmodSync(path.join(tree, 'bin'), 0o755);
  for (const p of ['top.txt', 'bin/tool', 'd/f.txt', '.wh.gone', 'bin', 'd', '.']) setTimes(path.join(tree, p), 1_000_000_000);
  lutimesSync(path.join(tree, 'd/ln'), T(1_000_000_000), T(1_000_000_000));
  const tar = (args: string[]): void => {
    execFileSync('tar', ['--sort=name', '--numeric-owner', '--owner=1234', '--group=5678', ...args], { cwd: base });
  };
  tar(['-C', tree, '-cf', 'a.tar', '.']);
  // Only files listed: no directory entries, so the archive implies its parents.
  tar(['-C', tree, '-cf', 'nodirs.tar', 'top.txt', 'd/f.txt']);
  execFileSync('sh', ['-c', 'gzip -c a.tar > a.tar.gz && bzip2 -c a.tar > a.tar.bz2 && xz -c a.tar > a.tar.xz && zstd -q -c a.tar > a.tar.zst && cp a.tar.gz notes.txt'], { cwd: base });
  writeFileSync(path.join(base, 'fake.tar'), 'just text, not a tar archive\n'.repeat(40));
  writeFileSync(path.join(base, 'text.gz'), gzipSync(Buffer.from('gzip, but not a tar\n'.repeat(50))));
  writeFileSync(path.join(base, 'short'), 'x'.repeat(511));
  writeFileSync(path.join(base, 'empty'), '');
});

after(() => rmSync(base, { recursive: true, force: true }));

async function add(matches: SourceMatch[], opts: Partial<CopyLayerOptions> = {}): Promise<Got[]> {
  const expanded = await expandArchives(matches, tmp);
  return readTar(copyLayer([expanded as CopySource[]], { dest: '/opt/', sourceCount: 1, lower: lowerOf(rootfs), now: NOW, instruction: 'ADD', ...opts }));
}

const EXPECTED_A = [
  'directory opt/ 755 0:0 400000001', // the image's /opt, as it is
  'file opt/.wh.gone 644 1234:5678 1000000000 ""', // extracted as a plain file, as BuildKit does
  'directory opt/bin/ 755 1234:5678 1000000000',
  'file opt/bin/tool 4755 1234:5678 1000000000 "tool"',
  'directory opt/d/ 750 1234:5678 1000000000',
  'file opt/d/f.txt 644 1234:5678 1000000000 "eff"',
  'file opt/d/hard 644 1234:5678 1000000000 "eff"', // a hard link becomes a copy
  'symlink opt/d/ln 777 1234:5678 1000000000 -> f.txt',
  'file opt/top.txt 640 1234:5678 1000000000 "top"',
];

describe('ADD of a local archive', () => {
  test('isArchive: tar after optional gzip/bzip2/xz/zstd, by content not name', async () => {
    for (const f of ['a.tar', 'a.tar.gz', 'a.tar.bz2', 'a.tar.xz', 'a.tar.zst', 'notes.txt', 'nodirs.tar']) assert.equal(await isArchive(path.join(base, f)), true, f);
    for (const f of ['fake.tar', 'text.gz', 'short', 'empty', 'tree', 'missing']) assert.equal(await isArchive(path.join(base, f)), false, f);
  });

  for (const f of ['a.tar', 'a.tar.gz', 'a.tar.bz2', 'a.tar.xz', 'a.tar.zst']) {
    test(`${f} made by the real tool is extracted into dest with the archive's owners, modes and mtimes`, async () => {
      const got = await add([fileMatch(path.join(base, f))]);
      assert.deepEqual(got.map(brief), EXPECTED_A);
    });
  }

  test('the name does not matter, and a non-archive is copied as a file', async () => {
    assert.deepEqual((await add([fileMatch(path.join(base, 'notes.txt'))])).map(brief), EXPECTED_A);
    const got = await add([fileMatch(path.join(base, 'fake.tar'))]);
    assert.deepEqual(got.map((g) => g.name), ['opt/', 'opt/fake.tar']);
    const expanded = await expandArchives([fileMatch(path.join(base, 'fake.tar')), fileMatch(path.join(base, 'a.tar'))]);
    assert.deepEqual(expanded.map(isArchiveMatch), [false, true]);
  });

  test('the archive goes into dest as a directory, created 0755 with --chown; --chown owns the entries, implied parents stay 0:0; --chmod does not apply', async () => {
    const got = await add([fileMatch(path.join(base, 'nodirs.tar'))], { dest: '/srv/data', chown: { uid: 1, gid: 2 }, chmod: '600' });
    assert.deepEqual(got.map(brief), [
      `directory srv/ 755 1:2 ${NOW_S}`,
      `directory srv/data/ 755 1:2 ${NOW_S}`,
      `directory srv/data/d/ 755 0:0 ${NOW_S}`,
      'file srv/data/d/f.txt 644 1:2 1000000000 "eff"',
      'file srv/data/top.txt 640 1:2 1000000000 "top"',
    ]);
  });

  test('paths are contained: leading / is dropped; .. out of dest or a symlink out of it is an error', async () => {
    const ok = path.join(base, 'abs.tar');
    await tarFile(ok, [
      [{ name: '/abs.txt' }, 'abs'],
      [{ name: 'al', type: 'symlink', linkname: '/sub' }],
      [{ name: 'al/f', uid: 7, gid: 8 }, 'through an absolute link'],
      [{ name: 'x/../y.txt' }, 'y'],
    ]);
    const got = await add([fileMatch(ok)], { dest: '/' });
    assert.deepEqual(got.map((g) => `${g.type} ${g.name} ${g.uid}:${g.gid}${g.linkname ? ` -> ${g.linkname}` : ''}`), [
      'file abs.txt 0:0',
      'symlink al 0:0 -> /sub',
      // The link target is taken relative to the extraction root, and its missing directory is implied.
      'directory sub/ 0:0',
      'file sub/f 7:8',
      'file y.txt 0:0',
    ]);

    const dotdot = path.join(base, 'dotdot.tar');
    await tarFile(dotdot, [[{ name: 'a/../../evil' }, 'x']]);
    await assert.rejects(add([fileMatch(dotdot)]), (e: unknown) => {
      assert.ok(e instanceof HoistError);
      assert.equal(e.code, 'BAD_ARCHIVE');
      assert.match(e.message, /^ADD dotdot\.tar: archive path "a\/\.\.\/\.\.\/evil" is outside the extraction root; /);
      return true;
    });
    const viaLink = path.join(base, 'vialink.tar');
    await tarFile(viaLink, [[{ name: 'l', type: 'symlink', linkname: '../../etc' }], [{ name: 'l/passwd' }, 'pwned']]);
    await assert.rejects(add([fileMatch(viaLink)]), (e: unknown) => e instanceof HoistError && /points outside the extraction root/.test(e.message) && !e.message.includes('\n'));
  });

  test('an entry replaces what is there unless both are directories; a re-created directory hides the image below it', async () => {
    const f = path.join(base, 'replace.tar');
    await tarFile(f, [
      [{ name: 'dir', mtime: T(1_000_000_001) }, 'now a file'],
      [{ name: 'dir', type: 'directory', mode: 0o711, mtime: T(1_000_000_002) }],
      [{ name: 'dir/new', mtime: T(1_000_000_003) }, 'new'],
    ]);
    const got = await add([fileMatch(f)]);
    assert.deepEqual(got.map(brief), [
      'directory opt/ 755 0:0 400000001',
      'directory opt/dir/ 711 0:0 1000000002',
      'file opt/dir/.wh..wh..opq 0 0:0 1000000002 ""', // old.txt of the image must not come back
      'file opt/dir/new 644 0:0 1000000003 "new"',
    ]);
    const g = path.join(base, 'replace2.tar');
    await tarFile(g, [[{ name: 'dir', mtime: T(1_000_000_001) }, 'a file now']]);
    assert.deepEqual((await add([fileMatch(g)])).map(brief), ['directory opt/ 755 0:0 400000001', 'file opt/dir 644 0:0 1000000001 "a file now"']);
    // Both directories: merged, the archive's metadata wins, the image's children stay (not in the layer).
    const h = path.join(base, 'merge.tar');
    await tarFile(h, [[{ name: 'dir', type: 'directory', mode: 0o700, uid: 3, gid: 3, mtime: T(1_000_000_004) }]]);
    assert.deepEqual((await add([fileMatch(h)])).map(brief), ['directory opt/ 755 0:0 400000001', 'directory opt/dir/ 700 3:3 1000000004']);
  });

  test('devices and dangling hard links are refused with one line', async () => {
    const dev = path.join(base, 'dev.tar');
    await tarFile(dev, [[{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }]]);
    await assert.rejects(add([fileMatch(dev)]), (e: unknown) => e instanceof HoistError && e.code === 'UNSUPPORTED' && /"null" is a character-device/.test(e.message));
    const hl = path.join(base, 'hardlink.tar');
    await tarFile(hl, [[{ name: 'h', type: 'link', linkname: 'nowhere' }]]);
    await assert.rejects(add([fileMatch(hl)]), (e: unknown) => e instanceof HoistError && /hard link "h" points to "nowhere", which does not exist/.test(e.message));
  });

  test('openArchive indexes entries with their data offsets and removes its temp copy', async () => {
    const r = await openArchive(path.join(base, 'a.tar.gz'), tmp);
    assert.notEqual(r.file, path.join(base, 'a.tar.gz'));
    const f = r.entries.find((e) => e.name === './d/f.txt')!;
    const chunks: Buffer[] = [];
    for await (const c of r.open(f)) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'eff');
    assert.deepEqual(r.entries.find((e) => e.name === './d/hard'), { name: './d/hard', type: 'link', mode: 0o644, uid: 1234, gid: 5678, mtimeMs: 1e12, size: 0, linkname: './d/f.txt', offset: r.entries.find((e) => e.name === './d/hard')!.offset });
    await r.close();
    assert.throws(() => statSync(r.file));
    assert.deepEqual(readdirSync(tmp), []);
  });

  test('a missing bzip2 or xz program is one clear line', async () => {
    const saved = process.env.PATH;
    process.env.PATH = path.join(base, 'empty-bin');
    try {
      await assert.rejects(isArchive(path.join(base, 'a.tar.xz')), (e: unknown) => e instanceof HoistError && e.code === 'MISSING_PROGRAM' && /the xz program is not installed/.test(e.message));
      await assert.rejects(isArchive(path.join(base, 'a.tar.bz2')), (e: unknown) => e instanceof HoistError && e.code === 'MISSING_PROGRAM' && /bzip2/.test(e.message));
    } finally {
      process.env.PATH = saved;
    }
  });
});

// ---- ADD <url> ----

describe('ADD of a URL', () => {
  let server: Server;
  let origin: string;
  const hello = Buffer.from('hello from the server\n');
  const tgz = gzipSync(Buffer.from('pretend this is a tarball'));

  before(async () => {
    server = createServer((req, res) => {
      const u = req.url ?? '/';
      if (u === '/files/hello.txt' || u === '/files/hello.txt?x=1') {
        res.writeHead(200, { 'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT', 'content-type': 'text/plain' });
        res.end(hello);
      } else if (u === '/redirect') {
        res.writeHead(302, { location: '/files/hello.txt' });
        res.end();
      } else if (u === '/loop') {
        res.writeHead(301, { location: '/loop' });
        res.end();
      } else if (u === '/missing.txt') {
        res.writeHead(404);
        res.end('not here');
      } else if (u === '/gz/data.json') {
        res.writeHead(200, { 'content-encoding': 'gzip' });
        res.end(gzipSync(Buffer.from('{"a":1}')));
      } else if (u === '/pkg.tar.gz') {
        res.writeHead(200);
        res.end(tgz);
      } else if (u === '/space%20name.txt' || u === '/') {
        res.writeHead(200);
        res.end('x');
      } else {
        res.writeHead(500);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const dir = (): string => mkdtempSync(path.join(base, 'url-'));

  test('downloads to dir/<last path segment>: mode 0600, owner 0:0, mtime from Last-Modified, sha256 digest', async () => {
    const d = dir();
    const got = await fetchUrl(`${origin}/files/hello.txt?x=1`, { dir: d });
    assert.deepEqual({ ...got.entry }, { rel: 'hello.txt', type: 'file', mode: 0o600, uid: 0, gid: 0, size: hello.length, mtimeMs: Date.UTC(2015, 9, 21, 7, 28, 0), abs: path.join(d, 'hello.txt') });
    assert.deepEqual(readFileSync(path.join(d, 'hello.txt')), hello);
    assert.equal(statSync(path.join(d, 'hello.txt')).mode & 0o777, 0o600);
    assert.equal(got.digest, `sha256:${createHash('sha256').update(hello).digest('hex')}`);
  });

  test('redirects are followed; gzip transfer encoding is undone; no Last-Modified is the epoch; names per BuildKit', async () => {
    const r = await fetchUrl(`${origin}/redirect`, { dir: dir() });
    assert.equal(r.entry.rel, 'redirect'); // named after the URL asked for, not where it led
    assert.deepEqual(readFileSync(r.entry.abs!), hello);
    const g = await fetchUrl(`${origin}/gz/data.json`, { dir: dir() });
    assert.equal(readFileSync(g.entry.abs!).toString(), '{"a":1}');
    assert.equal(g.entry.mtimeMs, 0);
    assert.equal((await fetchUrl(`${origin}/space%20name.txt`, { dir: dir() })).entry.rel, 'space name.txt');
    assert.equal((await fetchUrl(`${origin}/`, { dir: dir() })).entry.rel, '__unnamed__');
    assert.equal(urlFileName('https://example.com/a/b/'), 'b');
    assert.equal(urlFileName('https://example.com/%2e%2e'), '__unnamed__');
  });

  test('--checksum is verified; a mismatch names both digests on one line', async () => {
    const sum = `sha256:${createHash('sha256').update(hello).digest('hex')}`;
    assert.equal((await fetchUrl(`${origin}/files/hello.txt`, { dir: dir(), checksum: sum })).digest, sum);
    const s512 = `sha512:${createHash('sha512').update(hello).digest('hex')}`;
    assert.equal((await fetchUrl(`${origin}/files/hello.txt`, { dir: dir(), checksum: s512 })).digest, sum);
    const wrong = `sha256:${'0'.repeat(64)}`;
    await assert.rejects(fetchUrl(`${origin}/files/hello.txt`, { dir: dir(), checksum: wrong }), (e: unknown) => {
      assert.ok(e instanceof HoistError);
      assert.equal(e.code, 'DIGEST_MISMATCH');
      assert.ok(e.message.includes(sum) && e.message.includes(wrong), e.message);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
    await assert.rejects(fetchUrl(`${origin}/files/hello.txt`, { dir: dir(), checksum: 'md5:abc' }), (e: unknown) => e instanceof HoistError && e.code === 'BAD_CHECKSUM');
  });

  test('non-2xx answers and redirect loops fail with one line', async () => {
    await assert.rejects(fetchUrl(`${origin}/missing.txt`, { dir: dir() }), (e: unknown) => e instanceof HoistError && e.code === 'HTTP_ERROR' && /answered 404/.test(e.message) && !e.message.includes('\n'));
    await assert.rejects(fetchUrl(`${origin}/loop`, { dir: dir() }), (e: unknown) => e instanceof HoistError && /stopped after 10 redirects/.test(e.message));
    await assert.rejects(fetchUrl('http://127.0.0.1:1/x.txt', { dir: dir() }), (e: unknown) => e instanceof HoistError && e.code === 'NETWORK' && /ECONNREFUSED/.test(e.message));
  });

  test('git sources are refused as UNSUPPORTED', async () => {
    for (const u of ['git@github.com:moby/buildkit.git', 'https://github.com/moby/buildkit.git', 'https://github.com/moby/buildkit.git#v0.12.0', 'ssh://git@host/repo', 'git://host/repo.git']) {
      assert.equal(isGitUrl(u), true, u);
      assert.equal(isHttpUrl(u), false, u);
      await assert.rejects(fetchUrl(u, { dir: dir() }), (e: unknown) => e instanceof HoistError && e.code === 'UNSUPPORTED' && /git sources are not supported/.test(e.message));
    }
    for (const u of ['https://example.com/file.tar.gz', 'http://example.com/x#frag', 'https://example.com/repo.git.txt']) assert.equal(isHttpUrl(u), true, u);
  });

  test('a remote archive is added as the file it is, never extracted', async () => {
    const r = await fetchUrl(`${origin}/pkg.tar.gz`, { dir: dir() });
    const got = await readTar(copyLayer([[{ rel: r.entry.rel, entries: [r.entry] }]], { dest: '/dl/', sourceCount: 1, lower: lowerOf(rootfs), now: NOW, instruction: 'ADD' }));
    assert.deepEqual(got.map(brief), [`directory dl/ 755 0:0 ${NOW_S}`, `file dl/pkg.tar.gz 600 0:0 0 "${tgz.toString()}"`]);
  });
});
