import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { octalChmod, parseChmod } from '../../src/build/chmod.ts';
import { HoistError } from '../../src/errors.ts';

const oct = (n: number): string => `0${n.toString(8)}`;

test('octal --chmod sets exactly those bits, special bits included, on files and directories', () => {
  for (const [spec, want] of [['755', 0o755], ['0755', 0o755], ['644', 0o644], ['4755', 0o4755], ['2711', 0o2711], ['1777', 0o1777], ['0', 0], ['7777', 0o7777]] as const) {
    const f = parseChmod(spec);
    for (const from of [0o644, 0o7777, 0]) {
      assert.equal(oct(f(from, false)), oct(want), `${spec} on file ${oct(from)}`);
      assert.equal(oct(f(from, true)), oct(want), `${spec} on dir ${oct(from)}`);
    }
  }
  assert.equal(octalChmod('0755'), 0o755);
  assert.equal(octalChmod('4755'), 0o4755);
  assert.equal(octalChmod('u+x'), undefined);
});

test('numeric-looking values that are not octal up to 07777 fail with one line', () => {
  for (const spec of ['10000', '8', '0o755', '0x1ff', '9u+x', '1_0']) {
    assert.throws(() => parseChmod(spec), (e: unknown) => {
      assert.ok(e instanceof HoistError);
      assert.equal(e.code, 'BAD_CHMOD');
      assert.match(e.message, new RegExp(`^--chmod=${spec.replace(/[+]/g, '\\+')}: invalid chmod parameter`));
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
  }
});

test('symbolic syntax errors fail with one line', () => {
  for (const spec of ['', 'u', 'x+', 'u+q', 'u+x,', 'z+x', 'u+x;g-w', 'rwx', 'u+x g+w']) {
    assert.throws(() => parseChmod(spec), (e: unknown) => e instanceof HoistError && e.code === 'BAD_CHMOD' && !e.message.includes('\n'), spec);
  }
});

test('symbolic modes edit the source mode (chmod(1) clauses, umask 0)', () => {
  const cases: Array<[string, number, boolean, number]> = [
    ['u+x', 0o644, false, 0o744],
    ['go-w', 0o666, false, 0o644],
    ['+x', 0o644, false, 0o755],
    ['u=rwx,go=rx', 0o600, false, 0o755],
    ['g=u-w', 0o755, false, 0o755],
    ['go=', 0o777, false, 0o700],
    ['u+s', 0o755, false, 0o4755],
    ['o+s', 0o755, false, 0o755], // set-id is ignored for "other" alone
    ['+t', 0o755, true, 0o1755],
    ['a+X', 0o644, false, 0o644], // X: only when something is executable already…
    ['a+X', 0o744, false, 0o755],
    ['a+X', 0o700, true, 0o711], // …or it is a directory
    ['u-x,g+w', 0o755, false, 0o675],
    ['o=u', 0o640, false, 0o646],
  ];
  for (const [spec, from, isDir, want] of cases) {
    assert.equal(oct(parseChmod(spec)(from, isDir)), oct(want), `${spec} on ${isDir ? 'dir' : 'file'} ${oct(from)}`);
  }
});

test('BSD setmode quirks BuildKit inherits: X only counts after +, sticky stays under a bare =', () => {
  // GNU chmod gives 0555 for a=rX on an executable file; BSD's setmode (dchapes-mode, BuildKit) ignores X with '='.
  assert.equal(oct(parseChmod('a=rX')(0o755, false)), oct(0o444));
  assert.equal(oct(parseChmod('a=rX')(0o755, true)), oct(0o444));
  assert.equal(oct(parseChmod('a=r,a+X')(0o755, true)), oct(0o555));
  assert.equal(oct(parseChmod('=r')(0o1755, true)), oct(0o1444));
  // A copy clause (u=g) does not clear set-user-ID in BSD (GNU does).
  assert.equal(oct(parseChmod('u=g')(0o4755, false)), oct(0o4555));
});

test('symbolic results match the real chmod(1) on files for clauses GNU and BSD read alike', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hoist-chmod-'));
  try {
    const f = path.join(dir, 'f');
    writeFileSync(f, '');
    const specs = ['u+x', 'go-w', '+x', 'u=rwx,go=rx', 'g=u-w', 'go=', 'u+s', 'g+s', 'a-x', 'o=u', 'u-rwx', 'a+rwx', 'ug+w,o-r', 'a+X', 'u+X', 'g-s', 'u=rw,g=r,o=', 'o-rwx,g+r', 'u+x,u-x,g+x'];
    let compared = 0;
    for (const from of [0o644, 0o755, 0o600, 0o4755, 0o2711, 0o000, 0o640]) {
      for (const spec of specs) {
        // Copy clauses (g=u…) keep set-id bits in BSD and clear them in GNU: compared on plain modes only.
        if (/=[rwxXst]*[ugo]/.test(spec) && (from & 0o7000) !== 0) continue;
        chmodSync(f, from);
        execFileSync('sh', ['-c', 'umask 0; exec chmod "$1" "$2"', 'sh', spec, f]);
        const real = statSync(f).mode & 0o7777;
        assert.equal(oct(parseChmod(spec)(from, false)), oct(real), `chmod ${spec} on ${oct(from)}`);
        compared++;
      }
    }
    assert.ok(compared > 120, `${compared} comparisons`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
