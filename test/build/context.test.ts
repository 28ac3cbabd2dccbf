import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rename, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BuildContext } from '../../src/build/context.ts';
import { IgnoreMatcher, parseIgnore } from '../../src/build/dockerignore.ts';
import type { SourceMatch } from '../../src/build/source.ts';
import { HoistError } from '../../src/errors.ts';

type Tree = Record<string, string | { link: string } | { mode: number; data?: string } | null>;

/** Makes a context: 'a/b.txt': contents, 'dir/': null (empty dir), 'l': { link: target }. */
async function makeContext(t: { after(fn: () => Promise<void>): void }, tree: Tree): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hoist-ctx-'));
  // rm -rf: it copes with trees deeper than PATH_MAX, which one test makes.
  t.after(async () => { execFileSync('rm', ['-rf', dir]); });
  for (const [rel, v] of Object.entries(tree)) {
    const abs = join(dir, rel);
    if (v === null) {
      await mkdir(abs, { recursive: true });
      continue;
    }
    await mkdir(dirname(abs), { recursive: true });
    if (typeof v === 'string') await writeFile(abs, v);
    else if ('link' in v) await symlink(v.link, abs);
    else {
      await writeFile(abs, v.data ?? '');
      await chmod(abs, v.mode);
    }
  }
  return dir;
}

async function open(dir: string, ignore: string[] = []): Promise<BuildContext> {
  return BuildContext.open(dir, new IgnoreMatcher(ignore));
}

const rels = (ms: SourceMatch[]) => ms.map((m) => m.entries.map((e) => e.rel));
const matchRels = (ms: SourceMatch[]) => ms.map((m) => m.rel);

function isCode(code: string, re?: RegExp) {
  return (e: unknown) => e instanceof HoistError && e.code === code && !e.message.includes('\n') && (re === undefined || re.test(e.message));
}

test('the root: every entry, preorder, names sorted, owned by 0, modes and sizes from lstat', async (t) => {
  const dir = await makeContext(t, {
    'b.txt': 'bee',
    'a/z': 'z',
    'a/b/c': 'c',
    'a-c': 'dash', // sorts after the subtree of a, as Go's walk does
    'empty/': null,
    'run.sh': { mode: 0o4755, data: '#!/bin/sh\n' },
    'B': 'upper',
  });
  const ctx = await open(dir);
  const ms = await ctx.match('.');
  assert.equal(ms.length, 1);
  assert.equal(ms[0]!.rel, '');
  assert.deepEqual(rels(ms)[0], ['', 'B', 'a', 'a/b', 'a/b/c', 'a/z', 'a-c', 'b.txt', 'empty', 'run.sh']);
  const byRel = new Map(ms[0]!.entries.map((e) => [e.rel, e]));
  assert.equal(byRel.get('')!.type, 'directory');
  assert.equal(byRel.get('b.txt')!.size, 3);
  assert.equal(byRel.get('b.txt')!.abs, join(dir, 'b.txt'));
  assert.equal(byRel.get('a/b')!.type, 'directory');
  assert.equal(byRel.get('a/b')!.abs, undefined);
  assert.equal(byRel.get('run.sh')!.mode, 0o4755);
  for (const e of ms[0]!.entries) {
    assert.equal(e.uid, 0);
    assert.equal(e.gid, 0);
    assert.ok(e.mtimeMs > 0);
  }
  // '/', './' and '' all mean the root.
  for (const p of ['/', './', '', '/./']) assert.deepEqual(rels(await ctx.match(p)), rels(ms), p);
});

test('names sort by code point (UTF-8 byte order), not UTF-16 units', async (t) => {
  const dir = await makeContext(t, { '\u{1F600}': 'emoji', '\uE000': 'private use', z: 'z' });
  const ms = await (await open(dir)).match('.');
  assert.deepEqual(rels(ms)[0], ['', 'z', '\uE000', '\u{1F600}']);
});

test('plain paths: cleaned, a leading / or ./ is the root; missing fails like BuildKit; .. out of the context is refused', async (t) => {
  const dir = await makeContext(t, { 'src/app.js': 'x', 'src/lib/util.js': 'y' });
  const ctx = await open(dir);
  for (const p of ['src/app.js', '/src/app.js', './src/app.js', 'src//app.js', 'src/lib/../app.js', '/../src/app.js']) {
    const ms = await ctx.match(p);
    assert.deepEqual(matchRels(ms), ['src/app.js'], p);
    assert.deepEqual(rels(ms), [['src/app.js']], p);
  }
  assert.deepEqual(rels(await ctx.match('src/')), [['src', 'src/app.js', 'src/lib', 'src/lib/util.js']]);
  await assert.rejects(ctx.match('nope.txt'), isCode('NOT_FOUND', /^COPY failed: file not found in build context or excluded by \.dockerignore: stat nope\.txt: file does not exist$/));
  await assert.rejects(ctx.match('src/app.js/x'), isCode('NOT_FOUND'));
  await assert.rejects(ctx.match('../etc/passwd'), isCode('OUTSIDE_CONTEXT'));
  await assert.rejects(ctx.match('src/../../x'), isCode('OUTSIDE_CONTEXT'));
  await assert.rejects(ctx.match('..'), isCode('OUTSIDE_CONTEXT'));
});

test('globs: Go filepath.Match per path, a matched directory whole, nothing matched copies nothing', async (t) => {
  const dir = await makeContext(t, {
    'a.txt': '1',
    'b.txt': '2',
    'c.md': '3',
    'a*b': 'literal star',
    'arr[0].txt': 'brackets',
    'docs/x.txt': '4',
    'docs/sub/y.txt': '5',
    'pkg/one/go.mod': 'm1',
    'pkg/two/go.mod': 'm2',
    'pkg/two/go.sum': 's2',
    'txtdir.txt/inner': 'i',
  });
  const ctx = await open(dir);
  assert.deepEqual(matchRels(await ctx.match('*.txt')), ['a.txt', 'arr[0].txt', 'b.txt', 'txtdir.txt']);
  assert.deepEqual(rels(await ctx.match('*.txt'))[3], ['txtdir.txt', 'txtdir.txt/inner']);
  assert.deepEqual(matchRels(await ctx.match('?.txt')), ['a.txt', 'b.txt']);
  assert.deepEqual(matchRels(await ctx.match('[a-b].*')), ['a.txt', 'b.txt']);
  assert.deepEqual(matchRels(await ctx.match('[^a]*')), ['b.txt', 'c.md', 'docs', 'pkg', 'txtdir.txt']);
  // Go's quirk: a class may match the '/', so a one-segment pattern can match two.
  assert.deepEqual(matchRels(await ctx.match('docs[^a]x.txt')), ['docs/x.txt']);
  assert.deepEqual(matchRels(await ctx.match('a*b')), ['a*b']);
  // Docker's documented way to name a file with brackets; a \ escape makes no wildcard, so the word is a plain
  // path, backslash included (fsutil's splitWildcards), as in BuildKit.
  assert.deepEqual(matchRels(await ctx.match('arr[[]0].txt')), ['arr[0].txt']);
  await assert.rejects(ctx.match('a\\*b'), isCode('NOT_FOUND'));
  assert.deepEqual(matchRels(await ctx.match('a\\*b*')), ['a*b']);
  assert.deepEqual(matchRels(await ctx.match('pkg/*/go.mod')), ['pkg/one/go.mod', 'pkg/two/go.mod']);
  assert.deepEqual(matchRels(await ctx.match('/pkg/*/go.*')), ['pkg/one/go.mod', 'pkg/two/go.mod', 'pkg/two/go.sum']);
  assert.deepEqual(matchRels(await ctx.match('docs/*')), ['docs/sub', 'docs/x.txt']);
  assert.deepEqual(rels(await ctx.match('docs/*'))[0], ['docs/sub', 'docs/sub/y.txt']);
  // BuildKit's AllowEmptyWildcard: nothing matched is not an error...
  assert.deepEqual(await ctx.match('*.nothing'), []);
  assert.deepEqual(await ctx.match('a.txt/*'), []);
  // ...but a missing directory before the wildcard is.
  await assert.rejects(ctx.match('nodir/*.txt'), isCode('NOT_FOUND'));
  await assert.rejects(ctx.match('[a-'), isCode('BAD_PATTERN'));
});

test('.dockerignore: ignored files are invisible, an exception brings a file back with its excluded parent', async (t) => {
  const dir = await makeContext(t, {
    '.dockerignore': 'x',
    Dockerfile: 'FROM scratch',
    'app.js': 'a',
    'debug.log': 'l',
    'node_modules/left-pad/index.js': 'lp',
    'node_modules/keep/index.js': 'k',
    'node_modules/keep/sub/x.js': 'kx',
    'secrets/key': 'k',
    'sub/debug.log': 'kept: * stays in one segment',
  });
  const ignore = parseIgnore('*.log\nnode_modules\n!node_modules/keep\nsecrets/\n.dockerignore\nDockerfile\n');
  const ctx = await open(dir, ignore);
  const all = rels(await ctx.match('.'))[0];
  assert.deepEqual(all, ['', 'app.js', 'node_modules', 'node_modules/keep', 'node_modules/keep/index.js', 'node_modules/keep/sub', 'node_modules/keep/sub/x.js', 'sub', 'sub/debug.log']);
  // Excluded from COPY like anything else (BuildKit reads them separately, never through the context).
  await assert.rejects(ctx.match('Dockerfile'), isCode('NOT_FOUND'));
  await assert.rejects(ctx.match('.dockerignore'), isCode('NOT_FOUND'));
  await assert.rejects(ctx.match('debug.log'), isCode('NOT_FOUND', /excluded by \.dockerignore/));
  await assert.rejects(ctx.match('secrets/key'), isCode('NOT_FOUND'));
  assert.deepEqual(await ctx.match('*.log'), []);
  assert.deepEqual(rels(await ctx.match('node_modules')), [['node_modules', 'node_modules/keep', 'node_modules/keep/index.js', 'node_modules/keep/sub', 'node_modules/keep/sub/x.js']]);
  assert.equal(await ctx.stat('node_modules/left-pad'), undefined);
});

test('.dockerignore: an excluded directory that no exception can reach is not read at all', async (t) => {
  const dir = await makeContext(t, { 'app.js': 'a', 'cache/': null });
  // Below cache/: a tree whose paths are longer than PATH_MAX, which no walk by path can read (ENAMETOOLONG).
  // Built from short paths: three chains of 10 x 200 characters, each moved to the bottom of the one above.
  const chain = Array.from({ length: 10 }, () => 'd'.repeat(200)).join('/');
  const parts = [join(dir, 'cache'), await mkdtemp(join(tmpdir(), 'hoist-deep-')), await mkdtemp(join(tmpdir(), 'hoist-deep-'))];
  t.after(() => { execFileSync('rm', ['-rf', ...parts]); });
  for (const p of parts) await mkdir(join(p, chain), { recursive: true });
  await rename(join(parts[2]!, 'd'.repeat(200)), join(parts[1]!, chain, 'd'.repeat(200)));
  await rename(join(parts[1]!, 'd'.repeat(200)), join(parts[0]!, chain, 'd'.repeat(200)));
  // Skipped: nothing in it can come back.
  assert.deepEqual(rels(await (await open(dir, ['cache'])).match('.'))[0], ['', 'app.js']);
  assert.deepEqual(rels(await (await open(dir, ['cache', '!app.js', '!other/keep'])).match('.'))[0], ['', 'app.js']);
  // A plain exception lets the walk go only down its own path: cache/ is read, its subdirectory is not.
  assert.deepEqual(rels(await (await open(dir, ['cache', '!cache/keep'])).match('.'))[0], ['', 'app.js']);
  // A wildcard exception may reach anywhere below: the walk goes in, and fails on the unreadable tree, in one line.
  await assert.rejects((await open(dir, ['cache', '!cache/**/keep'])).match('.'), isCode('CONTEXT_UNREADABLE'));
  await assert.rejects((await open(dir)).match('.'), isCode('CONTEXT_UNREADABLE'));
});

test('symlinks: copied as links below a source, followed when they are the source', async (t) => {
  const dir = await makeContext(t, {
    'real/file.txt': 'content',
    'real/inner-link': { link: 'file.txt' },
    'file-link': { link: 'real/file.txt' },
    'dir-link': { link: 'real' },
    'abs-link': { link: '/real/file.txt' }, // absolute: from the context root
    'escape-link': { link: '../../../../real/file.txt' }, // .. stops at the context root
    'dangling': { link: 'nowhere' },
    'chain': { link: 'file-link' },
    'loop-a': { link: 'loop-b' },
    'loop-b': { link: 'loop-a' },
    'ignored.txt': 'secret',
    'to-ignored': { link: 'ignored.txt' },
    'glob/one.txt': { link: '../real/file.txt' },
  });
  const ctx = await open(dir, ['ignored.txt']);

  // Inside a copied directory a symlink is a symlink.
  const whole = (await ctx.match('real'))[0]!;
  const link = whole.entries.find((e) => e.rel === 'real/inner-link')!;
  assert.equal(link.type, 'symlink');
  assert.equal(link.linkname, 'file.txt');
  assert.equal(link.abs, undefined);
  const rootLinks = (await ctx.match('.'))[0]!.entries.filter((e) => e.type === 'symlink').map((e) => e.rel);
  assert.ok(rootLinks.includes('file-link') && rootLinks.includes('dangling'));

  // As the source itself it is followed: the match keeps the link's name, abs is the real file.
  for (const src of ['file-link', 'abs-link', 'escape-link', 'chain']) {
    const [m] = await ctx.match(src);
    assert.equal(m!.rel, src);
    assert.deepEqual(m!.entries.map((e) => [e.rel, e.type, e.abs]), [[src, 'file', join(dir, 'real/file.txt')]], src);
  }
  const [d] = await ctx.match('dir-link');
  assert.deepEqual(d!.entries.map((e) => [e.rel, e.type]), [['dir-link', 'directory'], ['dir-link/file.txt', 'file'], ['dir-link/inner-link', 'symlink']]);
  assert.equal(d!.entries[1]!.abs, join(dir, 'real/file.txt'));
  // A symlinked directory on the way is followed too.
  assert.equal((await ctx.match('dir-link/file.txt'))[0]!.entries[0]!.abs, join(dir, 'real/file.txt'));
  // Matched by a glob, each match is followed as well.
  assert.deepEqual((await ctx.match('glob/*.txt')).map((m) => [m.rel, m.entries[0]!.type]), [['glob/one.txt', 'file']]);

  await assert.rejects(ctx.match('dangling'), isCode('NOT_FOUND'));
  await assert.rejects(ctx.match('to-ignored'), isCode('NOT_FOUND'));
  await assert.rejects(ctx.match('loop-a'), isCode('TOO_MANY_LINKS'));

  // stat does not follow the last link.
  const st = await ctx.stat('file-link');
  assert.equal(st!.type, 'symlink');
  assert.equal(st!.linkname, 'real/file.txt');
  assert.equal((await ctx.stat('dir-link/file.txt'))!.type, 'file');
  assert.equal(await ctx.stat('missing'), undefined);
});

test('COPY --exclude: dockerignore patterns relative to each match, exceptions bring files back', async (t) => {
  const dir = await makeContext(t, {
    'app/main.go': 'm',
    'app/README.md': 'r',
    'app/docs/a.md': 'a',
    'app/docs/keep.md': 'k',
    'app/vendor/x.go': 'x',
    'top.md': 't',
  });
  const ctx = await open(dir);
  assert.deepEqual(rels(await ctx.match('app', ['*.md', 'vendor'])), [['app', 'app/docs', 'app/docs/a.md', 'app/docs/keep.md', 'app/main.go']]);
  assert.deepEqual(rels(await ctx.match('app', ['**/*.md', 'vendor', '!docs/keep.md'])), [['app', 'app/docs', 'app/docs/keep.md', 'app/main.go']]);
  assert.deepEqual(rels(await ctx.match('app', ['docs', 'vendor'])), [['app', 'app/README.md', 'app/main.go']]);
  // An excluded directory goes unless an exception keeps something inside.
  assert.deepEqual(rels(await ctx.match('app', ['docs', '!docs/keep.md'])), [['app', 'app/README.md', 'app/docs', 'app/docs/keep.md', 'app/main.go', 'app/vendor', 'app/vendor/x.go']]);
  // The match itself is never excluded (paths are relative to it).
  assert.deepEqual(rels(await ctx.match('top.md', ['*.md'])), [['top.md']]);
  assert.deepEqual(rels(await ctx.match('.', ['app'])), [['', 'top.md']]);
  assert.throws(() => new IgnoreMatcher(['!']), isCode('BAD_PATTERN'));
  await assert.rejects(ctx.match('app', ['!']), isCode('BAD_PATTERN'));
});

test('the context is walked once: later changes on disk are not seen by the same BuildContext', async (t) => {
  const dir = await makeContext(t, { 'a.txt': 'a' });
  const ctx = await open(dir);
  assert.deepEqual(matchRels(await ctx.match('*.txt')), ['a.txt']);
  await writeFile(join(dir, 'b.txt'), 'b');
  assert.deepEqual(matchRels(await ctx.match('*.txt')), ['a.txt']);
  assert.deepEqual(matchRels(await (await open(dir)).match('*.txt')), ['a.txt', 'b.txt']);
});

test('sockets, FIFOs and devices are left out', async (t) => {
  const dir = await makeContext(t, { 'a.txt': 'a' });
  execFileSync('mkfifo', [join(dir, 'pipe')]);
  const ctx = await open(dir);
  assert.deepEqual(rels(await ctx.match('.'))[0], ['', 'a.txt']);
  await assert.rejects(ctx.match('pipe'), isCode('NOT_FOUND'));
});

test('open: a missing or non-directory context fails in one line', async (t) => {
  const dir = await makeContext(t, { 'f': 'x' });
  await assert.rejects(open(join(dir, 'nope')), isCode('NOT_FOUND'));
  await assert.rejects(open(join(dir, 'f')), isCode('BAD_CONTEXT'));
});
