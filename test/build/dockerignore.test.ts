import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compilePattern, IgnoreMatcher, parseIgnore, readIgnoreFile, type ParentMatch } from '../../src/build/dockerignore.ts';
import { HoistError } from '../../src/errors.ts';

// --- ignorefile.ReadAll (moby/patternmatcher ignorefile_test.go) ---

test('parseIgnore: moby ReadAll test content', () => {
  const content = 'test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ';
  assert.deepEqual(parseIgnore(content), ['test1', 'test2', 'a/file/here', 'lastfile', '!inverted/abs/path', '!', '!']);
});

test('parseIgnore: BOM, CRLF, cleaning, comments only at column 0', () => {
  assert.deepEqual(parseIgnore('\ufeff# c\r\nfoo/../bar/\r\n  ./x//y/.  \r\n #not-a-comment\n/\n'), ['bar', 'x/y', '#not-a-comment', '/']);
  assert.deepEqual(parseIgnore(''), []);
  assert.deepEqual(parseIgnore('\n\n   \n\t\n'), []);
  // A BOM is only stripped from the first line.
  assert.deepEqual(parseIgnore('a\n\ufeffb'), ['a', '\ufeffb']);
  // Go's TrimSpace: NBSP is space; JS's U+FEFF (inside a line) is not.
  assert.deepEqual(parseIgnore('\u00a0node_modules\u00a0'), ['node_modules']);
});

// --- patternmatcher compile (compileTests) ---

const compileTests: [string, string, string][] = [
  ['*', 'regexp', '^[^/]*$'],
  ['file*', 'regexp', '^file[^/]*$'],
  ['*file', 'regexp', '^[^/]*file$'],
  ['a*/b', 'regexp', '^a[^/]*/b$'],
  ['**', 'suffix', ''],
  ['**/**', 'regexp', '^(.*/)?.*$'],
  ['dir/**', 'prefix', ''],
  ['**/dir', 'suffix', ''],
  ['**/dir2/*', 'regexp', '^(.*/)?dir2/[^/]*$'],
  ['**/dir2/**', 'regexp', '^(.*/)?dir2/.*$'],
  ['**file', 'suffix', ''],
  ['**/file*txt', 'regexp', '^(.*/)?file[^/]*txt$'],
  ['**/**/*.txt', 'regexp', '^(.*/)?(.*/)?[^/]*\\.txt$'],
  ['a[b-d]e', 'regexp', '^a[b-d]e$'],
  ['.*', 'regexp', '^\\.[^/]*$'],
  ['abc.def', 'exact', ''],
  ['abc?def', 'regexp', '^abc[^/]def$'],
  ['**/foo/bar', 'suffix', ''],
  ['a(b)c/def', 'exact', ''],
  ['a.|)$(}+{bc', 'exact', ''],
  ['dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'exact', ''],
];

test('compilePattern builds the regexps patternmatcher builds', () => {
  for (const [pattern, type, re] of compileTests) {
    const c = compilePattern(pattern);
    assert.equal(c.type, type, pattern);
    assert.equal(c.goRegexp ?? '', re, pattern);
  }
});

// --- patternmatcher TestMatches ---

type Pass = 'fail' | 'exact' | 'inexact';
const matchesTests: [string, string, Pass][] = [
  ['**', 'file', 'exact'],
  ['**', 'file/', 'exact'],
  ['**/', 'file', 'exact'],
  ['**/', 'file/', 'exact'],
  ['**', '/', 'exact'],
  ['**/', '/', 'exact'],
  ['**', 'dir/file', 'exact'],
  ['**/', 'dir/file', 'exact'],
  ['**', 'dir/file/', 'exact'],
  ['**/', 'dir/file/', 'exact'],
  ['**/**', 'dir/file', 'exact'],
  ['**/**', 'dir/file/', 'exact'],
  ['dir/**', 'dir/file', 'exact'],
  ['dir/**', 'dir/file/', 'exact'],
  ['dir/**', 'dir/dir2/file', 'exact'],
  ['dir/**', 'dir/dir2/file/', 'exact'],
  ['**/dir', 'dir', 'exact'],
  ['**/dir', 'dir/file', 'inexact'],
  ['**/dir2/*', 'dir/dir2/file', 'exact'],
  ['**/dir2/*', 'dir/dir2/file/', 'inexact'],
  ['**/dir2/**', 'dir/dir2/dir3/file', 'exact'],
  ['**/dir2/**', 'dir/dir2/dir3/file/', 'exact'],
  ['**file', 'file', 'exact'],
  ['**file', 'dir/file', 'exact'],
  ['**/file', 'dir/file', 'exact'],
  ['**file', 'dir/dir/file', 'exact'],
  ['**/file', 'dir/dir/file', 'exact'],
  ['**/file*', 'dir/dir/file', 'exact'],
  ['**/file*', 'dir/dir/file.txt', 'exact'],
  ['**/file*txt', 'dir/dir/file.txt', 'exact'],
  ['**/file*.txt', 'dir/dir/file.txt', 'exact'],
  ['**/file*.txt*', 'dir/dir/file.txt', 'exact'],
  ['**/**/*.txt', 'dir/dir/file.txt', 'exact'],
  ['**/**/*.txt2', 'dir/dir/file.txt', 'fail'],
  ['**/*.txt', 'file.txt', 'exact'],
  ['**/**/*.txt', 'file.txt', 'exact'],
  ['a**/*.txt', 'a/file.txt', 'exact'],
  ['a**/*.txt', 'a/dir/file.txt', 'exact'],
  ['a**/*.txt', 'a/dir/dir/file.txt', 'exact'],
  ['a/*.txt', 'a/dir/file.txt', 'fail'],
  ['a/*.txt', 'a/file.txt', 'exact'],
  ['a/*.txt**', 'a/file.txt', 'exact'],
  ['a[b-d]e', 'ae', 'fail'],
  ['a[b-d]e', 'ace', 'exact'],
  ['a[b-d]e', 'aae', 'fail'],
  ['a[^b-d]e', 'aze', 'exact'],
  ['.*', '.foo', 'exact'],
  ['.*', 'foo', 'fail'],
  ['abc.def', 'abcdef', 'fail'],
  ['abc.def', 'abc.def', 'exact'],
  ['abc.def', 'abcZdef', 'fail'],
  ['abc?def', 'abcZdef', 'exact'],
  ['abc?def', 'abcdef', 'fail'],
  ['**/foo/bar', 'foo/bar', 'exact'],
  ['**/foo/bar', 'dir/foo/bar', 'exact'],
  ['**/foo/bar', 'dir/dir2/foo/bar', 'exact'],
  ['abc/**', 'abc', 'fail'],
  ['abc/**', 'abc/def', 'exact'],
  ['abc/**', 'abc/def/ghi', 'exact'],
  ['**/.foo', '.foo', 'exact'],
  ['**/.foo', 'bar.foo', 'fail'],
  ['a(b)c/def', 'a(b)c/def', 'exact'],
  ['a(b)c/def', 'a(b)c/xyz', 'fail'],
  ['a.|)$(}+{bc', 'a.|)$(}+{bc', 'exact'],
  ['dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'exact'],
  ['dist/*.whl', 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'exact'],
  ['a\\\\', 'a\\', 'exact'],
  ['a\\*b', 'a*b', 'exact'],
];

const multiPatternTests: [string[], string, Pass][] = [
  [['**', '!util/docker/web'], 'util/docker/web/foo', 'fail'],
  [['**', '!util/docker/web', 'util/docker/web/foo'], 'util/docker/web/foo', 'exact'],
  [['**', '!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'fail'],
  [['**', '!dist/*.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl', 'fail'],
];

/** What a walker gets: every parent's info handed down (MatchesUsingParentResults with context). */
function walkMatch(m: IgnoreMatcher, text: string): boolean {
  const slash = text.lastIndexOf('/');
  const parent = slash < 0 ? '.' : text.slice(0, slash).replace(/\/+$/, '') || '/';
  let info: ParentMatch | undefined;
  if (parent !== '.') {
    const dirs = parent === '/' ? ['', ''] : parent.split('/');
    for (let i = 0; i < dirs.length; i++) info = m.matchWithParent(dirs.slice(0, i + 1).join('/'), info).info;
  }
  return m.matchWithParent(text, info).excluded;
}

test('patternmatcher TestMatches: exact, with parents, walking, without context', () => {
  for (const [pattern, text, pass] of matchesTests) {
    const m = new IgnoreMatcher([pattern]);
    const desc = `pattern=${JSON.stringify(pattern)} text=${JSON.stringify(text)}`;
    assert.equal(m.matchesExact(text), pass === 'exact', `MatchesExact ${desc}`);
    assert.equal(m.matchesOrParentMatches(text), pass !== 'fail', `MatchesOrParentMatches ${desc}`);
    assert.equal(m.matches(text), pass !== 'fail', `matches ${desc}`);
    assert.equal(walkMatch(m, text), pass !== 'fail', `MatchesUsingParentResults ${desc}`);
    assert.equal(m.matchWithParent(text, undefined).excluded, pass !== 'fail', `no context ${desc}`);
  }
  for (const [patterns, text, pass] of multiPatternTests) {
    const m = new IgnoreMatcher(patterns);
    const desc = `patterns=${JSON.stringify(patterns)} text=${JSON.stringify(text)}`;
    assert.equal(m.matchesOrParentMatches(text), pass !== 'fail', `MatchesOrParentMatches ${desc}`);
    assert.equal(m.matches(text), pass !== 'fail', `matches ${desc}`);
    assert.equal(walkMatch(m, text), pass !== 'fail', `MatchesUsingParentResults ${desc}`);
    assert.equal(m.matchWithParent(text, undefined).excluded, pass !== 'fail', `no context ${desc}`);
  }
});

// --- patternmatcher's single cases ---

test('patternmatcher: simple, exception and folder cases', () => {
  const ex = (text: string, patterns: string[]) => new IgnoreMatcher(patterns).matches(text);
  assert.equal(ex('fileutils.go', ['*']), true);
  assert.equal(ex('fileutils.go', ['*.go']), true);
  assert.equal(ex('fileutils.go', ['!fileutils.go', '*.go']), true); // exception before the pattern: last wins
  assert.equal(ex('fileutils.go', ['*.go', '!fileutils.go']), false);
  assert.equal(ex('docs/README.md', ['docs', '!docs/README.md']), false);
  assert.equal(ex('docs/README.md', ['docs/', '!docs/README.md']), false);
  assert.equal(ex('docs/README.md', ['docs/*', '!docs/README.md']), false);
  assert.equal(ex('.', ['*.go']), false); // the root is never excluded
  assert.equal(ex('', ['**']), false);
  assert.equal(ex('/any/path/there', []), false);
  // Leading and trailing spaces of a pattern are trimmed, and it is still an exception.
  const m = new IgnoreMatcher(['docs', '  !docs/README.md  ', '']);
  assert.equal(m.hasExceptions, true);
  assert.deepEqual(m.patterns, ['docs', '!docs/README.md']);
  assert.equal(new IgnoreMatcher([]).empty, true);
  assert.equal(new IgnoreMatcher(['', '  ']).empty, true);
});

test('patternmatcher: bad patterns fail in one line', () => {
  for (const bad of [['!'], ['['], ['[Local-Only]/'], ['a\\']]) {
    assert.throws(() => new IgnoreMatcher(bad), (e: unknown) => e instanceof HoistError && e.code === 'BAD_PATTERN' && !e.message.includes('\n'), String(bad));
  }
});

// Go's filepath.Match tests, run through Matches as patternmatcher's TestMatch does.
const goMatchTests: [string, string, boolean, boolean?][] = [
  ['abc', 'abc', true],
  ['*', 'abc', true],
  ['*c', 'abc', true],
  ['a*', 'a', true],
  ['a*', 'abc', true],
  ['a*', 'ab/c', true],
  ['a*/b', 'abc/b', true],
  ['a*/b', 'a/c/b', false],
  ['a*b*c*d*e*/f', 'axbxcxdxe/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxe/xxx/f', false],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/fff', false],
  ['a*b?c*x', 'abxbbxdbxebxczzx', true],
  ['a*b?c*x', 'abxbbxdbxebxczzy', false],
  ['ab[c]', 'abc', true],
  ['ab[b-d]', 'abc', true],
  ['ab[e-g]', 'abc', false],
  ['ab[^c]', 'abc', false],
  ['ab[^b-d]', 'abc', false],
  ['ab[^e-g]', 'abc', true],
  ['a\\*b', 'a*b', true],
  ['a\\*b', 'ab', false],
  ['a?b', 'a☺b', true],
  ['a[^a]b', 'a☺b', true],
  ['a???b', 'a☺b', false],
  ['a[^a][^a][^a]b', 'a☺b', false],
  ['[a-ζ]*', 'α', true],
  ['*[a-ζ]', 'A', false],
  ['a?b', 'a/b', false],
  ['a*b', 'a/b', false],
  ['[\\]a]', ']', true],
  ['[\\-]', '-', true],
  ['[x\\-]', 'x', true],
  ['[x\\-]', '-', true],
  ['[x\\-]', 'z', false],
  ['[\\-x]', 'x', true],
  ['[\\-x]', '-', true],
  ['[\\-x]', 'a', false],
  ['[]a]', ']', false, true],
  ['[-]', '-', false, true],
  ['[x-]', 'x', false, true],
  ['[-x]', 'x', false, true],
  ['\\', 'a', false, true],
  ['[a-b-c]', 'a', false, true],
  ['[', 'a', false, true],
  ['[^', 'a', false, true],
  ['[^bc', 'a', false, true],
  ['a[', 'a', false, true],
  ['a[', 'ab', false, true],
  ['*x', 'xxx', true],
];

test("patternmatcher TestMatch: Go's filepath.Match cases", () => {
  for (const [pattern, s, want, isErr] of goMatchTests) {
    if (isErr) {
      assert.throws(() => new IgnoreMatcher([pattern]), (e: unknown) => e instanceof HoistError && e.code === 'BAD_PATTERN', pattern);
      continue;
    }
    assert.equal(new IgnoreMatcher([pattern]).matches(s), want, `${pattern} ${s}`);
  }
});

// --- the parent-directory rule and exceptions ---

test('parent rule: a parent match excludes everything below, a later exception re-includes', () => {
  const m = new IgnoreMatcher(['node_modules', '!node_modules/keep', '*.log', '!important.log', 'build/**', '!build/out/app']);
  const cases: [string, boolean][] = [
    ['node_modules', true],
    ['node_modules/a/b.js', true],
    ['node_modules/keep', false],
    ['node_modules/keep/x.js', false], // the exception matches a parent of it
    ['x.log', true],
    ['sub/x.log', false], // * does not cross a /
    ['important.log', false],
    ['build', false], // build/** needs something after build/
    ['build/a', true],
    ['build/out/app', false],
    ['build/out/app/bin', false],
    ['build/out/other', true],
    ['src/main.ts', false],
  ];
  for (const [rel, want] of cases) {
    assert.equal(m.matches(rel), want, rel);
    assert.equal(walkMatch(m, rel), want, `walk ${rel}`);
  }
});

test('parent rule: the walk decides, pattern by pattern down the parents', () => {
  // "!foo" matches foo/bar only through its parent foo, which the walk never checked it against (foo was not
  // excluded, so the exception was skipped there): foo/bar stays out, and so does everything below — BuildKit's
  // walk. patternmatcher's MatchesOrParentMatches, checking every parent, would re-include all of it.
  const m = new IgnoreMatcher(['foo/bar', '!foo']);
  assert.equal(m.matches('foo/bar'), true);
  assert.equal(m.matches('foo/bar/x'), true);
  assert.equal(walkMatch(m, 'foo/bar/x'), true);
  assert.equal(m.matchesOrParentMatches('foo/bar/x'), false);
  assert.equal(m.matches('foo/baz'), false);
  // The other order: foo/bar stays out, and so does everything below it.
  const m2 = new IgnoreMatcher(['!foo', 'foo/bar']);
  assert.equal(m2.matches('foo/bar/x'), true);
  assert.equal(walkMatch(m2, 'foo/bar/x'), true);
  assert.equal(m2.matches('foo/baz'), false);
});

test('matches(rel, parentExcluded): the walker hint gives the full answer when there are no exceptions', () => {
  const m = new IgnoreMatcher(['a', 'b/*', '**/*.tmp']);
  for (const rel of ['a', 'a/x', 'a/x/y', 'b', 'b/c', 'b/c/d', 'c/d.tmp', 'c/d.tmp/e', 'c/e']) {
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    assert.equal(m.matches(rel, m.matches(parent)), m.matches(rel), rel);
  }
});

test('canSkipDir: only when no exception could bring something back below', () => {
  assert.equal(new IgnoreMatcher(['node_modules']).canSkipDir('node_modules'), true);
  const m = new IgnoreMatcher(['node_modules', 'dist', '!node_modules/keep/**', '!dist/a/*']);
  assert.equal(m.canSkipDir('node_modules'), false);
  assert.equal(m.canSkipDir('node_modules/keep'), false);
  assert.equal(m.canSkipDir('node_modules/other'), true);
  assert.equal(m.canSkipDir('dist'), false);
  assert.equal(m.canSkipDir('dist/a'), false);
  assert.equal(m.canSkipDir('dist/b'), true);
  // A wildcard exception can match anywhere: never skip.
  assert.equal(new IgnoreMatcher(['vendor', '!**/*.go']).canSkipDir('vendor'), false);
});

// --- which file is read ---

test('readIgnoreFile: <Dockerfile>.dockerignore, then .dockerignore, then .containerignore', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hoist-ignore-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ctx = join(dir, 'ctx');
  await mkdir(join(ctx, 'docker'), { recursive: true });
  const dockerfile = join(ctx, 'docker', 'app.Dockerfile');
  await writeFile(dockerfile, 'FROM scratch\n');

  assert.deepEqual(await readIgnoreFile(ctx, dockerfile), { patterns: [] });

  await writeFile(join(ctx, '.containerignore'), 'from-containerignore\n');
  assert.deepEqual(await readIgnoreFile(ctx, dockerfile), { patterns: ['from-containerignore'], file: join(ctx, '.containerignore') });

  await writeFile(join(ctx, '.dockerignore'), '# c\nfrom-dockerignore\n!keep\n');
  assert.deepEqual(await readIgnoreFile(ctx, dockerfile), { patterns: ['from-dockerignore', '!keep'], file: join(ctx, '.dockerignore') });

  // Next to the Dockerfile, named after it: wins over the context's.
  await writeFile(`${dockerfile}.dockerignore`, '/from-dockerfile-ignore/\n');
  assert.deepEqual(await readIgnoreFile(ctx, dockerfile), { patterns: ['from-dockerfile-ignore'], file: `${dockerfile}.dockerignore` });
  // Another Dockerfile has no such file: the context's is used.
  assert.equal((await readIgnoreFile(ctx, join(ctx, 'Dockerfile'))).file, join(ctx, '.dockerignore'));
  assert.equal((await readIgnoreFile(ctx, undefined)).file, join(ctx, '.dockerignore'));
});

test('readIgnoreFile: a symlinked .dockerignore is followed, a dangling one is absent', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hoist-ignore-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'shared-ignore'), 'secret\n');
  await symlink('shared-ignore', join(dir, '.dockerignore'));
  assert.deepEqual((await readIgnoreFile(dir, undefined)).patterns, ['secret']);
  await rm(join(dir, '.dockerignore'));
  await symlink('nowhere', join(dir, '.dockerignore'));
  assert.deepEqual(await readIgnoreFile(dir, undefined), { patterns: [] });
});
