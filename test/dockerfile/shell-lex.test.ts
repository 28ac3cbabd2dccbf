import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expandWord, expandWords } from '../../src/dockerfile/shell-lex.ts';
import { HoistError } from '../../src/errors.ts';

const TABLES = path.join(import.meta.dirname, '..', '..', 'testdata', 'conformance', 'buildkit-shell');

/** Lines as bufio.Scanner yields them: no empty element after the final newline, a trailing \r dropped. */
function lines(file: string): string[] {
  const text = readFileSync(path.join(TABLES, file), 'utf8');
  const out = text.split('\n').map((l) => l.replace(/\r$/, ''));
  if (text.endsWith('\n')) out.pop();
  return out;
}

const isBadExpansion = (e: unknown) => e instanceof HoistError && e.code === 'BAD_EXPANSION' && !e.message.includes('\n');

// ---- envVarTest: every A and U row through expandWord (README.md describes the format and environment) ----
const ENV_VAR_ENV = new Map([
  ['PWD', '/home'],
  ['SHELL', 'bash'],
  ['KOREAN', '한국어'],
  ['NULL', ''],
]);

test('buildkit envVarTest', async (t) => {
  let rows = 0;
  for (const [i, raw] of lines('envVarTest').entries()) {
    if (raw.startsWith('#')) continue;
    const line = raw.trim();
    if (line === '') continue;
    const fields = line.split('|');
    assert.equal(fields.length, 3, `envVarTest:${i + 1}: expected PLATFORM|INPUT|EXPECTED`);
    const [platform, input, expected] = fields.map((f) => f.trim()) as [string, string, string];
    assert.ok(['A', 'U', 'W'].includes(platform), `envVarTest:${i + 1}: bad platform ${platform}`);
    if (platform === 'W') continue;
    rows++;
    await t.test(`envVarTest:${i + 1} ${input}`, () => {
      if (expected === 'error') {
        assert.throws(() => expandWord(input, ENV_VAR_ENV), isBadExpansion);
      } else {
        assert.equal(expandWord(input, ENV_VAR_ENV).value, expected);
      }
    });
  }
  assert.ok(rows > 200, `only ${rows} rows read from envVarTest`);
});

// ---- wordsTest: every case through expandWords, ENV lines accumulating the environment ----
test('buildkit wordsTest', async (t) => {
  const env = new Map<string, string>();
  let rows = 0;
  for (const [i, line] of lines('wordsTest').entries()) {
    if (line.startsWith('#')) continue;
    if (line.startsWith('ENV ')) {
      const kv = line.slice(3).replace(/^ +/, '');
      const eq = kv.indexOf('=');
      if (eq < 0) env.set(kv, '');
      else env.set(kv.slice(0, eq), kv.slice(eq + 1));
      continue;
    }
    const fields = line.split('|');
    assert.equal(fields.length, 2, `wordsTest:${i + 1}: expected exactly one |`);
    const input = (fields[0] as string).trim();
    const expected = (fields[1] as string).replace(/^ +/, '').split(',');
    const snapshot = new Map(env);
    rows++;
    await t.test(`wordsTest:${i + 1} ${input}`, () => {
      let got: string[];
      try {
        got = expandWords(input, snapshot).words;
      } catch (e) {
        assert.ok(isBadExpansion(e), String(e));
        got = ['error'];
      }
      assert.deepEqual(got, expected);
    });
  }
  assert.ok(rows >= 24, `only ${rows} rows read from wordsTest`);
});

// ---- lex_test.go TestProcessWithMatches: values and the `used` set (matched ∪ unmatched there) ----
const matchCases: { input: string; env: Record<string, string>; expected?: string; used?: string[] }[] = [
  { input: 'x', env: { DUMMY: 'dummy' }, expected: 'x', used: [] },
  { input: 'x ${UNUSED}', env: { DUMMY: 'dummy' }, expected: 'x ', used: ['UNUSED'] },
  { input: 'x ${FOO}', env: { FOO: 'y' }, expected: 'x y', used: ['FOO'] },
  { input: '${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}', env: { FOO: 'xxx', BAR: '' }, expected: 'xxx  ccc', used: ['FOO', 'BAR', 'BAZ'] },
  { input: '${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}', env: { FOO: 'xxx', BAR: '' }, expected: 'xxx bbb ccc', used: ['FOO', 'BAR', 'BAZ'] },
  { input: '${FOO:-}', env: { FOO: 'xxx', BAR: '' }, expected: 'xxx', used: ['FOO'] },
  { input: '${FOO:-}', env: {}, expected: '', used: ['FOO'] },
  { input: '${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}', env: { FOO: 'xxx', BAR: '' }, expected: 'aaa bbb ', used: ['FOO', 'BAR', 'BAZ'] },
  { input: '${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}', env: { FOO: 'xxx', BAR: '' }, expected: 'aaa  ', used: ['FOO', 'BAR', 'BAZ'] },
  { input: '${FOO?aaa}', env: { FOO: 'xxx', BAR: '' }, expected: 'xxx', used: ['FOO'] },
  { input: '${BAR?bbb}', env: { FOO: 'xxx', BAR: '' }, expected: '', used: ['BAR'] },
  { input: '${BAZ?ccc}', env: { FOO: 'xxx', BAR: '' } },
  { input: '${FOO:?aaa}', env: { FOO: 'xxx', BAR: '' }, expected: 'xxx', used: ['FOO'] },
  { input: '${BAR:?bbb}', env: { FOO: 'xxx', BAR: '' } },
  { input: '${BAZ:?ccc}', env: { FOO: 'xxx', BAR: '' } },
  { input: '${BAZ:?}', env: { FOO: 'xxx', BAR: '' } },
  { input: '${FOO=aaa}', env: { FOO: 'xxx', BAR: '' } },
  { input: '${FOO=:aaa}', env: { FOO: 'xxx', BAR: '' } },
  { input: '${FOO=}', env: {} },
  { input: '${FOO#()[]{\\}^$.\\*\\?|\\\\}', env: { FOO: '()[]{}^$.*?|\\x' }, expected: 'x', used: ['FOO'] },
  { input: '${FOO%%\\**}', env: { FOO: 'xx**' }, expected: 'xx', used: ['FOO'] },
  { input: '${FOO#*x*y}', env: { FOO: 'xxyy' }, expected: 'y', used: ['FOO'] },
  { input: '${FOO#*}', env: { FOO: 'xxyy' }, expected: 'xxyy', used: ['FOO'] },
  { input: '${FOO#$BAR}', env: { FOO: 'xxyy', BAR: 'x' }, expected: 'xyy', used: ['FOO', 'BAR'] },
  { input: '${FOO#$BAR}', env: { FOO: 'xxyy', BAR: '' }, expected: 'xxyy', used: ['FOO', 'BAR'] },
  { input: '${FOO#}', env: { FOO: 'xxyy' }, expected: 'xxyy', used: ['FOO'] },
  { input: '${FOO##*x}', env: { FOO: 'xxyy' }, expected: 'yy', used: ['FOO'] },
  { input: '${FOO##}', env: { FOO: 'xxyy' }, expected: 'xxyy', used: ['FOO'] },
  { input: '${FOO#?\\?}', env: { FOO: '???y' }, expected: '?y', used: ['FOO'] },
  { input: '${ABC:-.}${FOO%x}${ABC:-.}', env: { FOO: 'xxyy' }, expected: '.xxyy.', used: ['FOO', 'ABC'] },
  { input: '${FOO%%\\**\\*}', env: { FOO: 'a***yy*' }, expected: 'a', used: ['FOO'] },
  { input: '${FOO%}', env: { FOO: 'xxyy' }, expected: 'xxyy', used: ['FOO'] },
  { input: '${FOO%%$BAR}', env: { FOO: 'xxyy', BAR: '' }, expected: 'xxyy', used: ['FOO', 'BAR'] },
  { input: '${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}', env: { FOO: '/foo*/*/*.txt', NEEDLE: '\\*/' }, expected: '/foo.*/*.txt - /foo..*.txt', used: ['FOO', 'NEEDLE'] },
  { input: '${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}', env: { FOO: '/tmp/tmp/bar.txt', NEEDLE: '/tmp' }, expected: '/tmp/bar.txt - /bar.txt', used: ['FOO', 'NEEDLE'] },
  { input: '${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}', env: { FOO: '/a/foo/b/c.txt', NEEDLE: '/?/', REPLACEMENT: '/' }, expected: '/foo/b/c.txt - /foo/c.txt', used: ['FOO', 'NEEDLE', 'REPLACEMENT'] },
  { input: '${FOO/$NEEDLE/$REPLACEMENT}', env: { FOO: 'http://google.de', NEEDLE: 'http://', REPLACEMENT: 'https://' }, expected: 'https://google.de', used: ['FOO', 'NEEDLE', 'REPLACEMENT'] },
  { input: '${FOO//\\//\\/}', env: { FOO: '/tmp/foo.txt' }, expected: '\\/tmp\\/foo.txt', used: ['FOO'] },
  { input: '${FOO/$BAR/ww}', env: { FOO: 'xxyy', BAR: '' }, expected: 'wwxxyy', used: ['FOO', 'BAR'] },
  { input: '${FOO//ww}', env: { FOO: 'xxyy' } },
  { input: '${FOO//}', env: { FOO: 'xxyy' } },
  { input: '${FOO///}', env: { FOO: 'xxyy' }, expected: 'xxyy', used: ['FOO'] },
  { input: '${FOO///}', env: {}, expected: '', used: ['FOO'] },
  // From TestProcessWithMatchesPlatform.
  {
    input: 'something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz',
    env: { VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm', TARGETVARIANT: 'v7' },
    expected: 'something-v1.2.3.linux-arm-v7.tar.gz',
    used: ['VERSION', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT'],
  },
];

test('lex_test.go TestProcessWithMatches cases', async (t) => {
  for (const c of matchCases) {
    await t.test(`${c.input} ${JSON.stringify(c.env)}`, () => {
      const env = new Map(Object.entries(c.env));
      if (c.expected === undefined) {
        assert.throws(() => expandWord(c.input, env), isBadExpansion);
        return;
      }
      const r = expandWord(c.input, env);
      assert.equal(r.value, c.expected);
      assert.deepEqual([...r.used].sort(), [...(c.used ?? [])].sort());
    });
  }
});

test('used lists names whether set or not, including those only in defaults, patterns and quotes', () => {
  const env = new Map([['A', '1']]);
  assert.deepEqual([...expandWord('"$A" ${B:-$C} ${A#$D}', env).used].sort(), ['A', 'B', 'C', 'D']);
  assert.deepEqual([...expandWords('$A ${B:+$C}', env).used].sort(), ['A', 'B', 'C']);
  // Single quotes, escaped $, and $ followed by a non-name are not references.
  assert.deepEqual([...expandWord("'$A' \\$B $. $", env).used], []);
  // Positional and special parameters are looked up (and never set) like any other name.
  assert.deepEqual([...expandWord('$1 ${@} $#', env).used].sort(), ['#', '1', '@']);
});

test('mandatory variables (TestShellParserMandatoryEnvVars)', () => {
  const set = new Map([['VAR', 'plain'], ['ARG', 'x']]);
  const empty = new Map([['VAR', ''], ['ARG', 'x']]);
  const unset = new Map([['ARG', 'x']]);
  assert.equal(expandWord('${VAR:?message here$ARG}', set).value, 'plain');
  assert.throws(() => expandWord('${VAR:?message here$ARG}', empty), /VAR: message herex/);
  assert.throws(() => expandWord('${VAR:?message here$ARG}', unset), /VAR: message herex/);
  assert.equal(expandWord('${VAR?message here$ARG}', set).value, 'plain');
  assert.equal(expandWord('${VAR?message here$ARG}', empty).value, '');
  assert.throws(() => expandWord('${VAR?message here$ARG}', unset), /VAR: message herex/);
});

test('error messages are BuildKit’s, wrapped like errors.Wrapf(err, "failed to process %q")', () => {
  const env = new Map([['E', '']]);
  const msg = (w: string) => {
    try {
      expandWord(w, env);
    } catch (e) {
      assert.ok(isBadExpansion(e));
      return (e as Error).message;
    }
    assert.fail(`${w} did not fail`);
  };
  assert.equal(msg('${V:x}'), 'failed to process "${V:x}": unsupported modifier (:x) in substitution');
  assert.equal(msg('${V=x}'), 'failed to process "${V=x}": unsupported modifier (=) in substitution');
  assert.equal(msg('${V:?msg}'), 'failed to process "${V:?msg}": V: msg');
  assert.equal(msg('${V?}'), 'failed to process "${V?}": V: is not allowed to be unset');
  assert.equal(msg('${E:?}'), 'failed to process "${E:?}": E: is not allowed to be empty');
  assert.equal(msg('"abc'), 'failed to process "\\"abc": unexpected end of statement while looking for matching double-quote');
  assert.equal(msg("'abc"), `failed to process "'abc": unexpected end of statement while looking for matching single-quote`);
  assert.equal(msg('${}'), 'failed to process "${}": syntax error: bad substitution');
  assert.equal(msg('${V:-x'), `failed to process "\${V:-x": syntax error: missing '}'`);
  assert.equal(msg('${V/x'), "failed to process \"${V/x\": syntax error: missing '/' in ${}");
  assert.equal(msg('${V:#x}'), 'failed to process "${V:#x}": unsupported modifier (:#) in substitution');
  assert.equal(msg('${V#\\x}'), "failed to process \"${V#\\\\x}\": invalid pattern (\\x) in substitution: invalid escape '\\x'");
  assert.equal(msg('a\n${}'), 'failed to process "a\\n${}": syntax error: bad substitution');
});

test('backtick escape character (# escape=`)', () => {
  const env = new Map([['PWD', '/home']]);
  const bt = { escape: '`' } as const;
  assert.equal(expandWord('he`$PWD', env, bt).value, 'he$PWD');
  assert.equal(expandWord('C:\\dir\\$PWD', env, bt).value, 'C:\\dir\\/home'); // \ is an ordinary char
  assert.equal(expandWord('"a`"b"', env, bt).value, 'a"b');
  assert.equal(expandWord('"a\\b`$PWD``"', env, bt).value, 'a\\b$PWD`');
  assert.equal(expandWord('"a`b"', env, bt).value, 'a`b'); // only " $ ` are escapable inside double quotes
  assert.equal(expandWord('hello`', env, bt).value, 'hello');
  assert.equal(expandWord('${X:-a`}b}', env, bt).value, 'a}b');
  assert.deepEqual(expandWords('a` b c', env, bt).words, ['a b', 'c']);
  assert.throws(() => expandWord('"a`"', env, bt), isBadExpansion);
});

test('word splitting: expansions split, quotes and escapes do not', () => {
  const env = new Map([['S', ' x  y'], ['E', '']]);
  assert.deepEqual(expandWords('a$S"b"', env).words, ['a', 'x', 'yb']);
  assert.deepEqual(expandWords('"$S"', env).words, [' x  y']);
  assert.deepEqual(expandWords('a\\ \\ b  c', env).words, ['a  b', 'c']);
  assert.deepEqual(expandWords('"" $E', env).words, []);
  // A nested ${…} keeps the text before it in the same word.
  assert.deepEqual(expandWords('80${P:-80}/tcp 90', env).words, ['8080/tcp', '90']);
});

test('pattern substitution follows Go regexp semantics', () => {
  const env = new Map([['F', 'abc'], ['R', '$0'], ['U', 'aé👽b'], ['N', 'a\nb']]);
  // ReplaceAllString: no second (empty) replacement right after a match; $0 in the replacement is the match.
  assert.equal(expandWord('${F//*/x}', env).value, 'x');
  assert.equal(expandWord('${F//b/$R$R}', env).value, 'abbc');
  assert.equal(expandWord('${F/b/$R}', env).value, 'a$0c');
  // `[` is literal (no bracket expressions); `?` is one code point; `*` does not cross a newline.
  assert.equal(expandWord('${F#[a]}', new Map([['F', '[a]bc']])).value, 'bc');
  assert.equal(expandWord('${U#a??}', env).value, 'b');
  assert.equal(expandWord('${U%?b}', env).value, 'aé');
  assert.equal(expandWord('${N#*b}', env).value, 'a\nb');
  assert.equal(expandWord('${F%%b*}', env).value, 'a');
  assert.equal(expandWord('${F%b*}', env).value, 'a');
});
