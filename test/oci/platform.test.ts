import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bestPlatformMatch, formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformMatches,
} from '../../src/oci/platform.ts';
import { HoistError } from '../../src/errors.ts';
import type { Descriptor, Platform } from '../../src/oci/types.ts';

test('parsePlatform reads os/arch[/variant] as written', () => {
  assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.deepEqual(parsePlatform('linux/x86_64'), { os: 'linux', architecture: 'x86_64' });
  for (const s of ['linux', 'linux/', '/amd64', 'linux/arm/v7/extra', '', 'linux amd64', 'linux//v7']) {
    assert.throws(() => parsePlatform(s), (e: unknown) => {
      assert.ok(e instanceof HoistError);
      assert.equal(e.code, 'BAD_PLATFORM');
      assert.ok(e.message.includes(`"${s}"`), e.message);
      assert.ok(e.message.includes('os/arch[/variant]'), e.message);
      return true;
    }, s);
  }
});

// [as written, normalized]
const table: Array<[string, string]> = [
  ['linux/amd64', 'linux/amd64'],
  ['linux/x86_64', 'linux/amd64'],
  ['linux/x86-64', 'linux/amd64'],
  ['linux/amd64/v1', 'linux/amd64'],
  ['linux/amd64/v3', 'linux/amd64/v3'],
  ['linux/aarch64', 'linux/arm64/v8'],
  ['linux/arm64', 'linux/arm64/v8'],
  ['linux/arm64/v8', 'linux/arm64/v8'],
  ['linux/arm64/8', 'linux/arm64/v8'],
  ['linux/arm64/v9.0', 'linux/arm64/v9'],
  ['linux/armhf', 'linux/arm/v7'],
  ['linux/armel', 'linux/arm/v6'],
  ['linux/arm', 'linux/arm/v7'],
  ['linux/arm/7', 'linux/arm/v7'],
  ['linux/arm/v6', 'linux/arm/v6'],
  ['linux/arm/5', 'linux/arm/v5'],
  ['linux/i386', 'linux/386'],
  ['linux/i686', 'linux/386'],
  ['linux/386', 'linux/386'],
  ['Linux/AMD64', 'linux/amd64'],
  ['linux/ppc64el', 'linux/ppc64le'],
  ['linux/s390x', 'linux/s390x'],
  ['linux/riscv64', 'linux/riscv64'],
  ['windows/amd64', 'windows/amd64'],
];

test('normalizePlatform table', () => {
  for (const [written, normalized] of table) {
    assert.equal(formatPlatform(normalizePlatform(parsePlatform(written))), normalized, written);
  }
});

test('normalizePlatform keeps os.version and does not change its input', () => {
  const p: Platform = { os: 'windows', architecture: 'x86_64', 'os.version': '10.0.17763.1234' };
  assert.deepEqual(normalizePlatform(p), { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1234' });
  assert.equal(p.architecture, 'x86_64');
});

test('formatPlatform', () => {
  assert.equal(formatPlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }), 'linux/arm/v7');
  assert.equal(formatPlatform({ os: 'linux', architecture: 'amd64' }), 'linux/amd64');
});

test('hostPlatform speaks OCI, not Node', () => {
  const h = hostPlatform();
  const expected: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', s390x: 's390x', riscv64: 'riscv64' };
  assert.equal(h.os, process.platform === 'win32' ? 'windows' : process.platform);
  if (expected[process.arch] !== undefined) assert.equal(h.architecture, expected[process.arch]);
  assert.ok(platformMatches(h, normalizePlatform(h)));
});

test('platformMatches', () => {
  const p = parsePlatform;
  // [want, have, matches]
  const cases: Array<[string, string, boolean]> = [
    ['linux/amd64', 'linux/amd64', true],
    ['linux/amd64', 'linux/x86_64', true],
    ['linux/x86_64', 'linux/amd64', true],
    ['linux/amd64', 'linux/arm64', false],
    ['linux/amd64', 'windows/amd64', false],
    ['linux/arm64', 'linux/arm64/v8', true],
    ['linux/arm64/v8', 'linux/arm64', true],
    ['linux/aarch64', 'linux/arm64/v8', true],
    ['linux/arm64', 'linux/arm64/v9', true], // no variant wanted: any variant
    ['linux/arm64/v8', 'linux/arm64/v9', false],
    ['linux/arm', 'linux/arm/v6', true],
    ['linux/arm/v7', 'linux/arm', true],
    ['linux/arm/v7', 'linux/arm/v6', false],
    ['linux/armhf', 'linux/arm/v7', true],
    ['linux/armhf', 'linux/arm/v6', false],
    ['linux/amd64/v3', 'linux/amd64', false],
    ['linux/amd64', 'linux/amd64/v3', true],
  ];
  for (const [want, have, expected] of cases) {
    assert.equal(platformMatches(p(want), p(have)), expected, `${want} vs ${have}`);
  }
});

function desc(n: number, platform?: Platform): Descriptor {
  const d: Descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${String(n).padStart(64, '0')}`, size: n };
  if (platform) d.platform = platform;
  return d;
}

test('bestPlatformMatch', () => {
  const index = [
    desc(1),
    desc(2, { os: 'unknown', architecture: 'unknown' }), // buildx attestation manifest
    desc(3, { os: 'linux', architecture: 'amd64' }),
    desc(4, { os: 'linux', architecture: 'arm', variant: 'v6' }),
    desc(5, { os: 'linux', architecture: 'arm', variant: 'v7' }),
    desc(6, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    desc(7, { os: 'linux', architecture: 'arm64', variant: 'v9' }),
  ];
  const best = (s: string) => bestPlatformMatch(parsePlatform(s), index)?.size;
  assert.equal(best('linux/amd64'), 3);
  assert.equal(best('linux/x86_64'), 3);
  assert.equal(best('linux/arm'), 5, 'the default variant v7 wins over an earlier v6');
  assert.equal(best('linux/arm/v6'), 4);
  assert.equal(best('linux/armel'), 4);
  assert.equal(best('linux/arm64'), 6);
  assert.equal(best('linux/aarch64'), 6);
  assert.equal(best('linux/arm64/v9'), 7);
  assert.equal(best('linux/s390x'), undefined);
  assert.equal(best('windows/amd64'), undefined);
  // Without an exact variant, the first compatible entry is taken.
  assert.equal(bestPlatformMatch(parsePlatform('linux/arm64'), [index[6]!])?.size, 7);
  assert.equal(bestPlatformMatch(parsePlatform('linux/arm64'), [desc(8, { os: 'linux', architecture: 'arm64' })])?.size, 8);
  assert.equal(bestPlatformMatch(parsePlatform('linux/amd64'), []), undefined);
});
