import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_PATH, parseEnvFile, runConfig, withHome, type ImageConfigPart } from '../../src/runtime/run-config.ts';
import { HoistError } from '../../src/errors.ts';

const IMG: ImageConfigPart = { Entrypoint: ['/docker-entrypoint.sh'], Cmd: ['nginx', '-g', 'daemon off;'] };

function hoistError(code: string, re: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof HoistError, String(e));
    assert.equal(e.code, code);
    assert.equal(e.exitCode, 125);
    assert.match(e.message, re);
    return true;
  };
}

test('args are Entrypoint + Cmd; command args replace Cmd only', () => {
  assert.deepEqual(runConfig(IMG, {}, {}).args, ['/docker-entrypoint.sh', 'nginx', '-g', 'daemon off;']);
  assert.deepEqual(runConfig(IMG, { command: ['sh', '-c', 'x'] }, {}).args, ['/docker-entrypoint.sh', 'sh', '-c', 'x']);
  assert.deepEqual(runConfig({ Cmd: ['sh'] }, {}, {}).args, ['sh']);
  assert.deepEqual(runConfig({ Cmd: ['sh'] }, { command: ['ls', '-l'] }, {}).args, ['ls', '-l']);
  assert.deepEqual(runConfig({ Entrypoint: null, Cmd: ['sh'] }, { command: [] }, {}).args, ['sh'], 'no args: the image Cmd');
  assert.deepEqual(runConfig(undefined, { command: ['true'] }, {}).args, ['true']);
});

test('--entrypoint replaces the Entrypoint and drops the image Cmd; "" clears it', () => {
  assert.deepEqual(runConfig(IMG, { entrypoint: '/bin/sh' }, {}).args, ['/bin/sh']);
  assert.deepEqual(runConfig(IMG, { entrypoint: '/bin/sh', command: ['-c', 'id'] }, {}).args, ['/bin/sh', '-c', 'id']);
  assert.deepEqual(runConfig(IMG, { entrypoint: 'a b' }, {}).args, ['a b'], 'one argument, never split');
  assert.deepEqual(runConfig(IMG, { entrypoint: '', command: ['id', '-u'] }, {}).args, ['id', '-u']);
  assert.throws(() => runConfig(IMG, { entrypoint: '' }, {}), hoistError('NO_COMMAND', /^no command specified/));
});

test('nothing to run is "no command specified", exit 125', () => {
  const noCmd = hoistError('NO_COMMAND', /^no command specified/);
  assert.throws(() => runConfig(undefined, {}, {}), noCmd);
  assert.throws(() => runConfig({ Entrypoint: null, Cmd: null }, { command: [] }, {}), noCmd);
  assert.throws(() => runConfig({ Env: ['A=1'] }, {}, {}), noCmd);
});

test('env: PATH, HOSTNAME, TERM first, user env (files, then -e) replacing by key, then the image\'s', () => {
  const img: ImageConfigPart = { Cmd: ['sh'], Env: ['PATH=/img/bin:/bin', 'A=1', 'B=2'] };
  const c = runConfig(img, { env: ['B=3', 'C=4'], envFiles: ['D=file', 'C=from-file'], hostname: 'h1', tty: true }, {});
  assert.deepEqual(c.env, ['PATH=/img/bin:/bin', 'HOSTNAME=h1', 'TERM=xterm', 'D=file', 'C=4', 'B=3', 'A=1']);
  // Without an image PATH: docker's default; without a tty: no TERM; no hostname given: no HOSTNAME.
  assert.deepEqual(runConfig({ Cmd: ['sh'] }, {}, {}).env, [`PATH=${DEFAULT_PATH}`]);
  assert.equal(DEFAULT_PATH, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  // Set by the user or the image, TERM and HOSTNAME keep their own values, in the default's place.
  assert.deepEqual(runConfig({ Cmd: ['sh'], Env: ['TERM=vt100'] }, { tty: true, hostname: 'h', env: ['HOSTNAME=mine'] }, {}).env,
    [`PATH=${DEFAULT_PATH}`, 'HOSTNAME=mine', 'TERM=vt100']);
});

test('env: -e K takes the host value; unset on the host it unsets K', () => {
  const img: ImageConfigPart = { Cmd: ['sh'], Env: ['A=image', 'B=image'] };
  const host = { A: 'from host', EMPTY: '' };
  assert.deepEqual(runConfig(img, { env: ['A', 'B', 'EMPTY', 'NOWHERE'] }, host).env,
    [`PATH=${DEFAULT_PATH}`, 'A=from host', 'EMPTY='], 'B and NOWHERE are unset');
  assert.deepEqual(runConfig({ Cmd: ['sh'] }, { env: ['PATH'], hostname: 'h' }, {}).env, ['HOSTNAME=h'], 'even PATH can go');
  assert.deepEqual(runConfig({ Cmd: ['sh'] }, { env: ['X=1', 'X=2', 'Y=', 'X=3'] }, {}).env, [`PATH=${DEFAULT_PATH}`, 'X=3', 'Y='],
    'a repeated key: first place, last value');
  assert.deepEqual(runConfig({ Cmd: ['sh'] }, { env: ['V=a=b'] }, {}).env, [`PATH=${DEFAULT_PATH}`, 'V=a=b']);
  assert.throws(() => runConfig({ Cmd: ['sh'] }, { env: ['=x'] }, {}), hoistError('BAD_ENV', /-e =x: invalid environment variable/));
});

test('cwd: -w, else the image WorkingDir, else /; normalized; must be absolute', () => {
  assert.equal(runConfig({ Cmd: ['sh'] }, {}, {}).cwd, '/');
  assert.equal(runConfig({ Cmd: ['sh'], WorkingDir: '/app/' }, {}, {}).cwd, '/app');
  assert.equal(runConfig({ Cmd: ['sh'], WorkingDir: '/app' }, { workdir: '/srv/../work//x/' }, {}).cwd, '/work/x');
  assert.equal(runConfig({ Cmd: ['sh'], WorkingDir: '/app' }, { workdir: '' }, {}).cwd, '/app');
  assert.throws(() => runConfig({ Cmd: ['sh'] }, { workdir: 'rel' }, {}), hoistError('BAD_WORKDIR', /^-w rel: .*absolute/));
  assert.throws(() => runConfig({ Cmd: ['sh'], WorkingDir: 'app' }, {}, {}), hoistError('BAD_WORKDIR', /image's WorkingDir "app"/));
});

test('user: --user, else the image User, else undefined (root)', () => {
  assert.equal(runConfig({ Cmd: ['sh'] }, {}, {}).user, undefined);
  assert.equal(runConfig({ Cmd: ['sh'], User: 'nginx' }, {}, {}).user, 'nginx');
  assert.equal(runConfig({ Cmd: ['sh'], User: 'nginx' }, { user: '0:0' }, {}).user, '0:0');
  assert.equal(runConfig({ Cmd: ['sh'], User: 'nginx' }, { user: '' }, {}).user, 'nginx');
  assert.equal(runConfig({ Cmd: ['sh'], User: '' }, {}, {}).user, undefined);
});

test('withHome adds HOME only when absent', () => {
  const env = ['PATH=/bin'];
  assert.deepEqual(withHome(env, '/root'), ['PATH=/bin', 'HOME=/root']);
  assert.deepEqual(env, ['PATH=/bin'], 'the input is not changed');
  assert.deepEqual(withHome(['HOME=/custom', 'A=1'], '/root'), ['HOME=/custom', 'A=1']);
  assert.deepEqual(withHome(['HOMEDIR=/x'], '/'), ['HOMEDIR=/x', 'HOME=/']);
});

test('parseEnvFile: literal values, comments, blanks, leading space, bare names from the host', () => {
  const text = [
    '\ufeffFIRST=bom stripped',
    '# comment',
    '   # indented comment',
    '',
    '   ',
    '  LEADING=spaces dropped before the name',
    'TRAILING=kept   ',
    'QUOTED="not unquoted"',
    "SINGLE='x'",
    'EMPTY=',
    'EQ=a=b',
    'CRLF=line\r',
    'FROM_HOST',
    'NOT_ON_HOST',
    'ESC=\\n stays',
    'LAST=no newline at end',
  ].join('\n');
  assert.deepEqual(parseEnvFile(text, 'app.env', { FROM_HOST: 'host value' }), [
    'FIRST=bom stripped',
    'LEADING=spaces dropped before the name',
    'TRAILING=kept   ',
    'QUOTED="not unquoted"',
    "SINGLE='x'",
    'EMPTY=',
    'EQ=a=b',
    'CRLF=line',
    'FROM_HOST=host value',
    'ESC=\\n stays',
    'LAST=no newline at end',
  ]);
  assert.deepEqual(parseEnvFile(Buffer.from('A=ü\n'), 'f', {}), ['A=ü']);
  assert.deepEqual(parseEnvFile('', 'f', {}), []);
});

test('parseEnvFile refuses lines without a name, names with spaces and bytes that are not UTF-8', () => {
  const bad = (re: RegExp) => hoistError('BAD_ENV_FILE', re);
  assert.throws(() => parseEnvFile('A=1\n=value\n', 'x.env', {}), bad(/^--env-file x\.env: line 2: no variable name/));
  assert.throws(() => parseEnvFile('MY VAR=1\n', 'x.env', {}), bad(/^--env-file x\.env: line 1: variable 'MY VAR' contains whitespaces/));
  assert.throws(() => parseEnvFile('A =1\n', 'x.env', {}), bad(/variable 'A ' contains whitespaces/));
  assert.throws(() => parseEnvFile(Buffer.from([0x41, 0x3d, 0xff, 0x0a]), 'x.env', {}), bad(/^--env-file x\.env: not valid UTF-8/));
});
